import hashlib
import json

import numpy as np
import pyarrow as pa
import pytest
import xxhash

from vs_sonar_dataset.core.errors import ShardError
from vs_sonar_dataset.core.shards import (MANIFEST, ROW_GROUP_ROWS, ShardWriter, iter_shard_batches, read_manifest,
                                          read_table)
from vs_sonar_dataset.fixtures.synth import synthetic_table


def _table(start, n, dim=8):
    return synthetic_table(start, n, np.random.default_rng(start), dim)


def test_write_then_read_round_trips(tmp_path):
    w = ShardWriter(tmp_path, "pool", {"a": 1}, embedding_dim=8)
    w.write(_table(0, 10))
    w.write(_table(10, 5))
    w.finish({"rows": 15})
    m = read_manifest(tmp_path, "pool")
    assert m.complete and m.rows == 15 and [s["rows"] for s in m.shards] == [10, 5]
    assert read_table(tmp_path).equals(pa.concat_tables([_table(0, 10), _table(10, 5)]))


@pytest.mark.parametrize("threads", [1, 2])
def test_batches_come_in_order_whatever_the_decoding_threads(tmp_path, threads):
    w = ShardWriter(tmp_path, "pool", {}, embedding_dim=8)
    for start, n in [(0, 2 * ROW_GROUP_ROWS + 100), (2 * ROW_GROUP_ROWS + 100, 50), (2 * ROW_GROUP_ROWS + 150, 9000)]:
        w.write(_table(start, n))
    batches = list(iter_shard_batches(tmp_path, "pool", batch_rows=5000, threads=threads))
    assert max(b.num_rows for b in batches) == 5000
    assert pa.Table.from_batches(batches).equals(read_table(tmp_path))


def test_an_altered_shard_is_named_by_parallel_readers_too(tmp_path):
    w = ShardWriter(tmp_path, "pool", {}, embedding_dim=8)
    w.write(_table(0, 10))
    w.write(_table(10, 10))
    path = tmp_path / "shard-00001.parquet"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ShardError, match="shard-00001.parquet: xxh3_128 differs"):
        list(iter_shard_batches(tmp_path, "pool", threads=2))


def test_truncated_shard_is_named(tmp_path):
    w = ShardWriter(tmp_path, "pool", {}, embedding_dim=8)
    w.write(_table(0, 10))
    path = tmp_path / "shard-00000.parquet"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ShardError, match="shard-00000.parquet: xxh3_128 differs"):
        read_table(tmp_path)


def test_manifest_lists_both_checksums_of_each_shard(tmp_path):
    w = ShardWriter(tmp_path, "pool", {}, embedding_dim=8)
    w.write(_table(0, ROW_GROUP_ROWS * 5))  # over 4 MB: the file is hashed in more than one read
    (entry,) = read_manifest(tmp_path, "pool").shards
    data = (tmp_path / entry["file"]).read_bytes()
    assert len(data) > 1 << 22
    assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert entry["xxh3_128"] == xxhash.xxh3_128(data).hexdigest()


def test_a_manifest_with_sha256_only_is_still_checked(tmp_path):
    w = ShardWriter(tmp_path, "pool", {}, embedding_dim=8)
    w.write(_table(0, 10))
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    for entry in manifest["shards"]:
        del entry["xxh3_128"]
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    assert read_table(tmp_path).num_rows == 10
    path = tmp_path / "shard-00000.parquet"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ShardError, match="shard-00000.parquet: sha256 differs"):
        read_table(tmp_path)


def test_altered_shard_is_named(tmp_path):
    w = ShardWriter(tmp_path, "pool", {}, embedding_dim=8)
    w.write(_table(0, 10))
    path = tmp_path / "shard-00000.parquet"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ShardError, match="shard-00000.parquet"):
        read_table(tmp_path)


def test_wrong_schema_is_refused_on_write_and_read(tmp_path):
    w = ShardWriter(tmp_path, "pool", {}, embedding_dim=8)
    with pytest.raises(ShardError, match="schema"):
        w.write(_table(0, 3, dim=4))
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    manifest["embedding_dim"] = 4
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    ShardWriter(tmp_path / "other", "pool", {}, embedding_dim=8).write(_table(0, 3))
    (tmp_path / "shard-00000.parquet").write_bytes((tmp_path / "other" / "shard-00000.parquet").read_bytes())
    manifest["shards"] = json.loads((tmp_path / "other" / MANIFEST).read_text())["shards"]
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match="schema does not match") as error:
        read_table(tmp_path)
    # one line that names the column, not two whole schemas
    message = str(error.value)
    assert "\n" not in message and "contract: embedding is fixed_size_list<" in message and ">[8]" in message
    assert message.endswith(">[4] not null"), message


def test_resume_keeps_committed_shards_and_overwrites_orphans(tmp_path):
    w = ShardWriter(tmp_path, "pool", {"seed": 1}, embedding_dim=8)
    w.write(_table(0, 4))
    (tmp_path / "shard-00001.parquet").write_bytes(b"half-written by a crashed run")
    again = ShardWriter(tmp_path, "pool", {"seed": 1}, embedding_dim=8)
    assert again.resumed_shards == 1
    again.write(_table(4, 4))
    assert read_table(tmp_path).num_rows == 8


def test_resume_with_other_config_is_refused(tmp_path):
    ShardWriter(tmp_path, "pool", {"seed": 1}, embedding_dim=8)
    with pytest.raises(ShardError, match="another configuration"):
        ShardWriter(tmp_path, "pool", {"seed": 2}, embedding_dim=8)


def test_missing_manifest_and_wrong_kind(tmp_path):
    with pytest.raises(ShardError, match="no manifest"):
        read_manifest(tmp_path)
    ShardWriter(tmp_path, "candidates", {})
    with pytest.raises(ShardError, match="expected 'pool'"):
        read_manifest(tmp_path, "pool")
