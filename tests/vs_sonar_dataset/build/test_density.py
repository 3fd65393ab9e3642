"""k-NN density and its weights: exact against a float64 brute force, the ivf method against exact."""

import numpy as np
import pytest

from vs_sonar_dataset.build import density as density_module
from vs_sonar_dataset.build.density import (METHOD_EXACT, METHOD_IVF, certified_top_k, density_weights,
                                            exact_density_of, exact_top_k, knn_density, mean_of_top, unit_rows)
from vs_sonar_dataset.core.config import DensityConfig


def clustered(n, dim=32, clusters=12, spread=0.6, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, dim))
    return (centers[rng.integers(0, clusters, n)] + spread * rng.standard_normal((n, dim))).astype(np.float32)


def brute_force(x, k):
    u = x.astype(np.float64) / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    s = u @ u.T
    np.fill_diagonal(s, -np.inf)  # self excluded
    return np.sort(s, axis=1)[:, -k:].mean(axis=1)


@pytest.mark.parametrize("block_rows", [7, 64, 4096])
def test_exact_density_is_the_mean_similarity_to_the_k_nearest_others(block_rows):
    x = clustered(300)
    density, record = knn_density(x, DensityConfig(k=5, method="exact", block_rows=block_rows))
    assert record["method"] == METHOD_EXACT and record["k_used"] == 5
    assert record["products"] == ("bfloat16, certified in float32" if density_module.native_bf16() else "float32")
    assert density.dtype == np.float32 and np.abs(density - brute_force(x, 5)).max() < 1e-6


@pytest.mark.parametrize("bf16", [True, False])
@pytest.mark.parametrize("block_rows", [13, 128, 4096])
def test_both_product_precisions_find_the_exact_top_k(bf16, block_rows):
    x = clustered(700, dim=64, clusters=20, spread=0.3, seed=2)
    top = exact_top_k(unit_rows(x), 9, block_rows, bf16=bf16)
    assert np.abs(mean_of_top(top) - brute_force(x, 9)).max() < 1e-6


def test_the_bfloat16_pass_recomputes_exactly_the_rows_its_rounding_could_have_misordered():
    rng = np.random.default_rng(3)
    spread = np.zeros((400, 64), np.float32)  # on a sphere in 3 dimensions: neighbours lie well apart
    spread[:, :3] = rng.standard_normal((400, 3))
    crowded = 1 + 0.002 * rng.standard_normal((100, 64)).astype(np.float32)  # similarities within 1e-5 of 1
    x = unit_rows(np.concatenate([spread, crowded]))
    top, recomputed = certified_top_k(x, 6, block_rows=64)
    assert set(range(400, 500)) <= set(recomputed.tolist()) and len(recomputed) < 200
    assert np.abs(mean_of_top(top) - brute_force(x.numpy(), 6)).max() < 1e-6


def test_a_twin_counts_as_a_neighbour_but_a_row_never_counts_itself():
    x = clustered(50)
    x[1] = x[0] * 3  # same direction: cosine 1 to row 0
    density, _ = knn_density(x, DensityConfig(k=1, method="exact"))
    assert density[0] == pytest.approx(1.0, abs=1e-6) and density[1] == pytest.approx(1.0, abs=1e-6)
    assert density[2:].max() < 0.9999


def test_density_of_some_rows_equals_the_whole_computation():
    x = clustered(500)
    density, _ = knn_density(x, DensityConfig(k=8, method="exact", block_rows=100))
    rows = np.array([0, 3, 99, 100, 499])
    assert np.abs(exact_density_of(unit_rows(x), rows, 8, block_rows=64) - density[rows]).max() < 1e-6


def test_ivf_never_exceeds_exact_and_stays_close_on_clustered_data():
    x = clustered(3000, dim=48, clusters=30, spread=0.5)
    exact, _ = knn_density(x, DensityConfig(k=10, method="exact"))
    approx, record = knn_density(x, DensityConfig(k=10, method="ivf", ivf_lists=40, ivf_probes=8,
                                                  ivf_training_rows=2000), seed=1)
    assert record["method"] == METHOD_IVF and record["ivf_lists"] == 40 and record["ivf_probes"] == 8
    diff = exact - approx
    assert diff.min() > -1e-5  # it can only miss neighbours
    assert np.abs(diff).mean() < 0.01 and (diff < 1e-4).mean() > 0.9
    again, _ = knn_density(x, DensityConfig(k=10, method="ivf", ivf_lists=40, ivf_probes=8,
                                            ivf_training_rows=2000), seed=1)
    assert np.array_equal(approx, again)  # seeded


def test_ivf_probing_every_list_is_exact():
    x = clustered(600, dim=32, clusters=12, spread=0.4)
    exact, _ = knn_density(x, DensityConfig(k=7, method="exact"))
    approx, _ = knn_density(x, DensityConfig(k=7, method="ivf", ivf_lists=20, ivf_probes=20, ivf_training_rows=300))
    assert np.abs(exact - approx).max() < 1e-5


def test_ivf_rows_whose_probed_lists_are_too_small_are_computed_exactly():
    x = clustered(200, clusters=50, spread=0.05)
    approx, record = knn_density(x, DensityConfig(k=15, method="ivf", ivf_lists=60, ivf_probes=1,
                                                  ivf_training_rows=150))
    assert record["exact_rows"] > 0 and np.isfinite(approx).all()
    assert (brute_force(x, 15) - approx).min() > -1e-5


def test_auto_picks_the_index_above_its_size():
    x = clustered(400)
    assert knn_density(x, DensityConfig(method="auto", index_above=1000))[1]["method"] == METHOD_EXACT
    assert knn_density(x, DensityConfig(method="auto", index_above=100, ivf_training_rows=300))[1]["method"] \
        == METHOD_IVF
    # a split no larger than the index's training sample is compared exactly, whatever the method
    assert knn_density(x, DensityConfig(method="ivf", ivf_training_rows=400))[1]["method"] == METHOD_EXACT


def test_small_splits_use_every_other_row_and_a_single_row_gets_weight_one():
    x = clustered(4)
    density, record = knn_density(x, DensityConfig(k=20, method="exact"))
    assert record["k_used"] == 3 and np.abs(density - brute_force(x, 3)).max() < 1e-6
    one, record = knn_density(x[:1], DensityConfig())
    assert record["k_used"] == 0 and one.tolist() == [0.0]
    assert density_weights(one, 0.01).tolist() == [1.0]


def test_weights_sum_to_one_favour_sparse_rows_and_stay_finite_for_negative_density():
    density = np.array([0.9, 0.5, 0.1, -0.2], np.float32)
    w = density_weights(density, 0.01)
    assert w.dtype == np.float64 and w.sum() == pytest.approx(1.0, abs=1e-15)
    assert w[0] < w[1] < w[2] < w[3]
    assert w[2] / w[0] == pytest.approx((0.01 + 0.9) / (0.01 + 0.1), rel=1e-6)
    assert w[3] / w[0] == pytest.approx((0.01 + 0.9) / 0.01, rel=1e-6)  # below 0 counts as 0
