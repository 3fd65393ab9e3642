"""The vectors contract dedup reads by: a vectors folder with a NaN/inf row, an id twice, or shards of another
width than its manifest says is refused in one line naming the file and the row, before any pool exists."""

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from vs_sonar_dataset.core import shards
from vs_sonar_dataset.core.schema import embedding_type, pool_schema
from vs_sonar_dataset.fixtures.synth import synthetic_table
from vs_sonar_dataset.fixtures.vectors import clustered, write_vectors


def dedup(vectors, out):
    return subprocess.run([sys.executable, "-m", "vs_sonar_dataset.cli", "dedup", str(vectors), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)


def refused(result, out, *words):
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert lines[-1].startswith("vs-sonar dedup: error: ") and all(w in lines[-1] for w in words), lines[-1]
    assert not out.exists()


def test_a_vector_with_nan_or_inf_is_refused(tmp_path):
    for value in (np.nan, np.inf):
        x = clustered(40, 16)
        x[13, 3] = value
        vectors = write_vectors(tmp_path / f"v{value}", x, rows_per_shard=10)
        refused(dedup(vectors, tmp_path / "pool"), tmp_path / "pool", "shard-00001.parquet", "row 3",
                "holds NaN or inf")


def test_an_id_twice_is_refused(tmp_path):
    writer = shards.ShardWriter(tmp_path / "v", "vectors", {"test": True}, embedding_dim=8, schema=pool_schema(8))
    table = synthetic_table(0, 5, np.random.default_rng(0), 8)
    embedding = pa.FixedSizeListArray.from_arrays(pa.array(clustered(5, 8).reshape(-1)), type=embedding_type(8))
    column = table.schema.get_field_index("embedding")
    table = table.set_column(column, table.schema.field(column), embedding)
    writer.write(table, {"rows": 5})
    writer.write(table.slice(2, 1), {"rows": 6})  # the third row's id again, in the next shard
    writer.finish({"rows": 6})
    refused(dedup(tmp_path / "v", tmp_path / "pool"), tmp_path / "pool", "shard-00001.parquet", "row 0",
            f"repeats id {table.column('id')[2].as_py()}")


def test_a_manifest_whose_width_was_edited_is_refused(tmp_path):
    vectors = write_vectors(tmp_path / "v", clustered(20, 16), rows_per_shard=10)
    manifest = json.loads((vectors / shards.MANIFEST).read_text())
    manifest["embedding_dim"] = 32
    (vectors / shards.MANIFEST).write_text(json.dumps(manifest))
    refused(dedup(vectors, tmp_path / "pool"), tmp_path / "pool", "vectors of width 16", "says 32")


@pytest.mark.parametrize("rows_per_shard", [7, 40])
def test_good_vectors_pass_the_contract(tmp_path, rows_per_shard):
    vectors = write_vectors(tmp_path / "v", clustered(40, 16), rows_per_shard=rows_per_shard)
    result = dedup(vectors, tmp_path / "pool")
    assert result.returncode == 0, result.stderr
    assert shards.read_manifest(tmp_path / "pool", "pool").complete
