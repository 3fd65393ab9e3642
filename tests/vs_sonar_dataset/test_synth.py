import pyarrow.compute as pc

from vs_sonar_dataset.schema import pool_schema
from vs_sonar_dataset.shards import read_manifest, read_table
from vs_sonar_dataset.synth import write_synthetic_pool
from vs_sonar_dataset.textnorm import text_id


def test_synthetic_pool_is_valid_unique_and_marked(tmp_path):
    write_synthetic_pool(tmp_path / "p", rows=700, seed=1, dim=32, shard_rows=300, progress=False)
    m = read_manifest(tmp_path / "p", "pool")
    assert m.synthetic and m.complete and m.rows == 700 and len(m.shards) == 3
    t = read_table(tmp_path / "p")
    assert t.schema.equals(pool_schema(32))
    assert pc.count_distinct(t.column("id")).as_py() == 700
    assert t.column("id")[5].as_py() == text_id(t.column("instruction")[5].as_py())


def test_same_seed_same_pool_and_resume_matches(tmp_path):
    write_synthetic_pool(tmp_path / "a", rows=500, seed=2, dim=8, shard_rows=200, progress=False)
    write_synthetic_pool(tmp_path / "b", rows=500, seed=2, dim=8, shard_rows=200, progress=False)
    assert read_table(tmp_path / "a").equals(read_table(tmp_path / "b"))
    # an interrupted run: the manifest lists only the first shard
    import json

    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    manifest["shards"], manifest["complete"] = manifest["shards"][:1], False
    (tmp_path / "b" / "manifest.json").write_text(json.dumps(manifest))
    write_synthetic_pool(tmp_path / "b", rows=500, seed=2, dim=8, shard_rows=200, progress=False)
    assert read_table(tmp_path / "b").equals(read_table(tmp_path / "a"))
