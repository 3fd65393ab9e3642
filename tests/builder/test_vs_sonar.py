import pyarrow as pa
import pyarrow.parquet as pq

from builder import VsSonar, builder_for_sizes
from release_fixtures import SMALL_SIZES
from vs_sonar_dataset.build.derived import DERIVED_COLUMNS


def _release_split(release, config, split):
    return pa.concat_tables(pq.read_table(p) for p in sorted((release / "data" / config).glob(f"{split}-*.parquet")))


def test_builder_equals_release_files(small_pool, small_release_master, tmp_path):
    cls = builder_for_sizes(SMALL_SIZES)
    for config in ("s", "l"):
        b = cls(config_name=config, pool_dir=str(small_pool), seed=3, cache_dir=str(tmp_path / "cache"))
        b.download_and_prepare()
        ds = b.as_dataset()
        for split in ("train", "validation", "test"):
            # the pool's columns; the derived ones (density, map) only `vs-sonar build` computes
            expected = _release_split(small_release_master, config, split).drop_columns(list(DERIVED_COLUMNS))
            got = ds[split].data.table.cast(expected.schema)
            assert got.equals(expected), (config, split)


def test_sizes_come_from_configuration():
    cls = builder_for_sizes({"1k": 1000, "5k": "5k", "10k": 10_000, "100k": "100k"})
    assert [c.name for c in cls.BUILDER_CONFIGS] == ["1k", "5k", "10k", "100k"]
    assert cls.DEFAULT_CONFIG_NAME == "100k"
    assert {c.name for c in VsSonar.BUILDER_CONFIGS} == {"1k", "5k", "10k"}
