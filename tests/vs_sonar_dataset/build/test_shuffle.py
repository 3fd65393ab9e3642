import gc

import numpy as np
import pyarrow as pa
import pytest

from vs_sonar_dataset.build.shuffle import _Buffers, aligned_empty, iter_rows_in_order
from vs_sonar_dataset.core.shards import read_table
from vs_sonar_dataset.fixtures.synth import write_synthetic_pool

pytest_plugins = ["tests.release_fixtures"]


def test_rows_stream_in_order_across_buckets(small_pool, tmp_path):
    pool = read_table(small_pool)
    order = np.random.default_rng(0).permutation(pool.num_rows)[:700]  # a subset: other rows are skipped
    tables = list(iter_rows_in_order(small_pool, order, bucket_rows=128, tmp_dir=tmp_path))
    assert [t.num_rows for t in tables] == [128] * 5 + [60]
    assert pa.concat_tables(tables).equals(pool.take(order))
    assert list(tmp_path.iterdir()) == []  # the temporary files are gone


@pytest.mark.parametrize("direct", [None, False])
def test_page_sized_rows_go_through_o_direct_where_the_file_system_allows(tmp_path, direct):
    """1024-d float32 rows are exactly one 4 KiB block: by default O_DIRECT (or its fallback on a file system
    that refuses it), else the page cache; both must give the pool's rows."""
    write_synthetic_pool(tmp_path / "pool", rows=300, seed=1, shard_rows=70, progress=False)
    pool = read_table(tmp_path / "pool")
    order = np.random.default_rng(1).permutation(300)
    got = pa.concat_tables(iter_rows_in_order(tmp_path / "pool", order, bucket_rows=64, tmp_dir=tmp_path,
                                             direct=direct))
    assert got.equals(pool.take(order))


def test_on_rows_sees_each_needed_row_once(small_pool):
    order = np.random.default_rng(2).permutation(1200)[:500]
    seen = []
    for _ in iter_rows_in_order(small_pool, order, bucket_rows=100, on_rows=lambda rows: seen.extend(
            rows.column("id").to_pylist())):
        pass
    assert sorted(seen) == sorted(read_table(small_pool).take(order).column("id").to_pylist())


def test_abandoning_the_stream_removes_the_temporary_files(small_pool, tmp_path):
    rows = iter_rows_in_order(small_pool, np.arange(1200), bucket_rows=100, tmp_dir=tmp_path)
    next(rows)
    rows.close()
    assert list(tmp_path.iterdir()) == []


def test_buffers_are_reused_only_once_nothing_refers_to_them():
    buffers = _Buffers()
    first = buffers.get(1000)
    address = first.ctypes.data
    table = pa.table({"x": pa.array(first)})  # zero-copy: the table holds the array
    del first
    assert buffers.get(1000).ctypes.data != address  # still in use by the table
    del table
    gc.collect()
    assert buffers.get(800).ctypes.data == address


def test_aligned_empty_starts_on_a_block_boundary():
    for rows in (1, 3, 64):
        array = aligned_empty(rows, 4096)
        assert array.shape == (rows, 1024) and array.ctypes.data % 4096 == 0
