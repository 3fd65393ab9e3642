"""The columns and maps build derives from each config's rows, and verify's checks of them."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from release_fixtures import SMALL_SIZES

from vs_sonar_dataset.build.density import METHOD_EXACT, METHOD_IVF, knn_density
from vs_sonar_dataset.build.release import build_release
from vs_sonar_dataset.build.splits import SPLITS
from vs_sonar_dataset.core.config import BuildConfig, DensityConfig
from vs_sonar_dataset.verify.checks import verify_release


def split_table(release, config, split):
    return pa.concat_tables(pq.read_table(p) for p in sorted((release / "data" / config).glob(f"{split}-*.parquet")))


def failed(report):
    return {c["name"] for c in report["checks"] if not c["passed"]}


def test_every_split_carries_its_own_density_weights_norms_and_lengths(small_release_master):
    for config in SMALL_SIZES:
        for split in SPLITS:
            t = split_table(small_release_master, config, split)
            x = np.stack(t.column("embedding").to_numpy(zero_copy_only=False)).astype(np.float32)
            density, _ = knn_density(x, DensityConfig())  # fitted on this config's split alone
            assert np.array_equal(t.column("density").to_numpy(), density)
            weights = t.column("density_weight").to_numpy()
            assert weights.sum() == pytest.approx(1.0, abs=1e-12)
            assert weights[np.argmin(density)] == weights.max()  # the rarest row is drawn most
            assert np.array_equal(t.column("embedding_norm").to_numpy(), np.linalg.norm(x, axis=1).astype(np.float32))
            assert t.column("text_chars").to_pylist() == [len(s) for s in t.column("instruction").to_pylist()]


def test_nested_configs_fit_their_densities_separately(small_release_master):
    small = split_table(small_release_master, "s", "train")
    large = split_table(small_release_master, "l", "train").slice(0, small.num_rows)
    assert small.column("id").equals(large.column("id"))  # the same rows ...
    # ... with more neighbours to choose from in the larger config: never less dense
    assert (large.column("density").to_numpy() >= small.column("density").to_numpy() - 1e-6).all()
    assert not np.array_equal(large.column("density").to_numpy(), small.column("density").to_numpy())


def test_map_columns_place_the_train_rows_only(small_release_master):
    manifest = json.loads((small_release_master / "release.json").read_text())
    train = split_table(small_release_master, "m", "train")
    xyz = np.stack([train.column(c).to_numpy(zero_copy_only=False) for c in ("map_x", "map_y", "map_z")], axis=1)
    assert not np.isnan(xyz).any() and np.abs(xyz).max() <= 1.0 and np.isclose(np.abs(xyz).max(), 1.0)
    points = json.loads((small_release_master / manifest["map"]["m"]["json"]).read_text())["points"]
    assert [p["id"] for p in points] == train.column("id").to_pylist()
    for split in ("validation", "test"):
        assert split_table(small_release_master, "m", split).column("map_x").null_count == manifest["splits"]["m"][split]


@pytest.fixture(scope="module")
def sampled_ivf_release(small_pool, tmp_path_factory):
    """A release whose map is drawn from a sample and whose densities come from the ivf index."""
    out = tmp_path_factory.mktemp("derived") / "release"
    settings = BuildConfig.model_validate({
        "density": {"method": "ivf", "k": 5, "ivf_lists": 6, "ivf_probes": 4, "ivf_training_rows": 60},
        "map": {"max_points": 50}})
    digests = {}
    build_release(small_pool, out, {"a": 100}, seed=1, progress=False, settings=settings, pool_digests=digests)
    return out, digests


def test_a_sampled_ivf_release_records_both_and_verifies(sampled_ivf_release, small_pool):
    release, digests = sampled_ivf_release
    manifest = json.loads((release / "release.json").read_text())
    assert manifest["density"]["a"]["train"]["method"] == METHOD_IVF  # 80 rows: above the 60 it trains on
    assert manifest["density"]["a"]["test"]["method"] == METHOD_EXACT  # 10 rows: compared exactly
    assert manifest["map"]["a"]["rows"] == 50 and manifest["map"]["a"]["split_rows"] == 80
    train = split_table(release, "a", "train")
    placed = ~np.isnan(train.column("map_x").to_numpy(zero_copy_only=False))
    assert placed[:50].all() and not placed[50:].any()  # the first rows of the shuffled split: a seeded sample
    card = (release / "README.md").read_text()
    assert "drawn from a seeded sample" in card and "faiss-ivf-cosine (6 lists, 4 probed)" in card
    report = verify_release(release, small_pool, progress=False, pool_digests=digests)
    assert report["passed"], failed(report)
    detail = {c["name"]: c["detail"] for c in report["checks"]}["a train: density recomputed"]
    assert detail.startswith("ivf against exact on 80 sampled rows")


def _rewrite_column(path, name, change):
    table = pq.read_table(path)
    values = change(table.column(name).to_numpy(zero_copy_only=False).copy())
    index = table.schema.get_field_index(name)
    pq.write_table(table.set_column(index, table.schema.field(name), pa.array(values, table.schema.field(name).type,
                                                                               from_pandas=True)), path)


def test_verify_recomputes_densities_weights_and_map_places(small_release, small_pool):
    def bump(v):
        v[2] = v[2] * 1.001
        return v

    _rewrite_column(small_release / "data" / "m" / "validation-00000-of-00001.parquet", "density", bump)
    _rewrite_column(small_release / "data" / "s" / "test-00000-of-00001.parquet", "density_weight", bump)
    _rewrite_column(small_release / "data" / "s" / "train-00000-of-00001.parquet", "map_z", bump)
    _rewrite_column(small_release / "data" / "l" / "test-00000-of-00001.parquet", "text_chars", lambda v: v + 1)
    report = verify_release(small_release, small_pool, progress=False)
    assert failed(report) == {"m validation: density recomputed", "m validation: density weights",
                              "s test: density weights", "s train: map columns", "l test: norm and length columns"}
