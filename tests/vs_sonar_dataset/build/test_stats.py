from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from vs_sonar_dataset.build.stats import (BLOCK_ROWS, IQR_TO_STD, Stats, StatsAccumulator, denormalize, load_stats,
                                          normalize, robust_stats)
from vs_sonar_dataset.core.errors import UserError


def _data(n, dim=12, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, dim)) * rng.uniform(0.1, 3, dim) + rng.uniform(-1, 1, dim)).astype(np.float32)


def _fed(x, ends, piece, order=None, threads=1):
    """An accumulator fed x in pieces of `piece` rows, in the given order of pieces, from `threads` threads."""
    acc = StatsAccumulator(x.shape[1], ends)
    starts = list(range(0, len(x), piece))
    if order is not None:
        starts = [starts[i] for i in order(len(starts))]
    ids = [str(i) for i in range(len(x))]
    feed = lambda a: acc.add(x[a : a + piece], ids[a : a + piece], a)  # noqa: E731
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(feed, starts))
    return acc


def test_mean_and_std_match_float64_numpy():
    x = _data(3 * BLOCK_ROWS + 123)
    s = _fed(x, [len(x)], 1000).stats(len(x), "c")
    assert s["count"] == len(x)
    np.testing.assert_allclose(s["mean"], x.astype(np.float64).mean(0), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(s["std"], x.astype(np.float64).std(0), rtol=1e-6)
    norms = np.linalg.norm(x.astype(np.float64), axis=1)
    assert s["norm"]["max"] == pytest.approx(norms.max()) and s["norm"]["p50"] == pytest.approx(np.median(norms))


def test_a_prefix_equals_a_split_that_ends_there_bitwise():
    x = _data(BLOCK_ROWS + 5000)
    both = _fed(x, [7000, len(x)], 3000)
    alone = _fed(x[:7000], [7000], 999)  # other pieces, same aligned blocks
    assert both.stats(7000, "small") == alone.stats(7000, "small")
    assert both.stats(len(x), "big")["count"] == len(x)


@pytest.mark.parametrize("piece", [BLOCK_ROWS, 1000, BLOCK_ROWS + 1])
def test_any_pieces_in_any_order_from_any_threads_give_bitwise_equal_stats(piece):
    x = _data(3 * BLOCK_ROWS + 77)
    ends = [5000, len(x)]
    reference = _fed(x, ends, len(x))
    backwards = _fed(x, ends, piece, order=lambda n: range(n - 1, -1, -1), threads=2)
    shuffled = _fed(x, ends, piece, order=lambda n: np.random.default_rng(piece).permutation(n), threads=2)
    for end in ends:
        assert backwards.stats(end, "c") == reference.stats(end, "c") == shuffled.stats(end, "c")


def test_stats_of_rows_not_all_added_is_an_error():
    x = _data(2 * BLOCK_ROWS)
    acc = StatsAccumulator(12, [len(x)])
    acc.add(x[: BLOCK_ROWS + 10], [str(i) for i in range(BLOCK_ROWS + 10)], 0)
    with pytest.raises(RuntimeError, match="not all added"):
        acc.stats(len(x), "c")
    with pytest.raises(ValueError, match="outside"):
        acc.add(x[:10], [str(i) for i in range(10)], len(x) - 5)


def test_a_constant_dimension_has_zero_std():
    x = _data(BLOCK_ROWS + 10)
    x[:, 3] = 0.1  # not exact in binary: sum of squares minus squared sum rounds around zero
    snapshot = _fed(x, [len(x)], len(x)).stats(len(x), "c")
    assert snapshot["std"][3] == 0.0 and np.isfinite(snapshot["std"]).all()


def test_ids_hash_depends_on_order():
    x = _data(4)
    a, b = StatsAccumulator(12, [4]), StatsAccumulator(12, [4])
    a.add(x, ["a", "b", "c", "d"], 0)
    b.add(x, ["b", "a", "c", "d"], 0)
    assert a.stats(4, "c")["ids_sha256"] != b.stats(4, "c")["ids_sha256"]


def _stats(x):
    return Stats.from_json(_fed(x, [len(x)], len(x)).stats(len(x), "c"))


def test_normalize_numpy_and_torch_agree_and_invert():
    x = _data(500)
    stats = _stats(x)
    z = normalize(x, stats)
    assert z.dtype == np.float32
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(z.std(0), 1, atol=1e-4)
    np.testing.assert_allclose(denormalize(z, stats), x, rtol=1e-5, atol=1e-5)
    zt = normalize(torch.from_numpy(x), stats)
    assert isinstance(zt, torch.Tensor) and zt.dtype == torch.float32
    np.testing.assert_allclose(zt.numpy(), z, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(denormalize(zt, stats).numpy(), x, rtol=1e-5, atol=1e-5)


def test_normalize_rejects_other_types():
    with pytest.raises(TypeError, match="numpy array or a torch tensor"):
        normalize([1.0, 2.0], _stats(_data(10)))


def test_load_stats_from_release_folder(small_release_master):
    stats = load_stats(str(small_release_master), "m")
    assert stats.count == 240 and stats.mean.dtype == np.float32 and stats.mean.shape == (16,)
    with pytest.raises(UserError, match="no stats for config 'xl'"):
        load_stats(str(small_release_master), "xl")


def test_robust_stats_are_numpys_percentiles_of_every_row():
    x = _data(5000, dim=70)  # more dimensions than one column block
    x[:25, 3] = 1e6  # outliers move the mean and std, hardly the median and IQR
    r = robust_stats(x, columns=64)
    q = np.percentile(x.astype(np.float64), [50, 25, 75, 1, 99], axis=0).astype(np.float32)
    assert np.array_equal(np.float32(r["median"]), q[0]) and np.array_equal(np.float32(r["p01"]), q[3])
    assert np.array_equal(np.float32(r["p99"]), q[4])
    assert np.allclose(r["robust_std"], IQR_TO_STD * (q[2] - q[1]), rtol=1e-6)
    assert abs(r["robust_std"][3] - r["robust_std"][4]) < 1 and x[:, 3].std() > 1e4


def test_robust_normalize_uses_median_and_robust_std_and_inverts():
    x = _data(2000)
    acc = _fed(x, [len(x)], 500)
    stats = Stats.from_json({**acc.stats(len(x), "c"), **robust_stats(x)})
    z = normalize(x, stats, method="robust")
    assert np.allclose(np.median(z, axis=0), 0, atol=1e-5)
    iqr = np.subtract(*np.percentile(z, [75, 25], axis=0))
    assert np.allclose(iqr * IQR_TO_STD, 1, atol=1e-4)
    assert np.allclose(denormalize(z, stats, method="robust"), x, atol=1e-4)
    t = normalize(torch.from_numpy(x), stats, method="robust")
    assert torch.allclose(t, torch.from_numpy(z), atol=1e-6)
    assert not np.allclose(normalize(x, stats), z)  # the standard method differs


def test_robust_method_needs_robust_stats_and_a_known_name():
    x = _data(100)
    old = Stats.from_json(_fed(x, [100], 50).stats(100, "c"))  # a release made before robust stats
    with pytest.raises(UserError, match="no robust statistics"):
        normalize(x, old, method="robust")
    with pytest.raises(UserError, match="use one of standard, robust"):
        normalize(x, old, method="minmax")
