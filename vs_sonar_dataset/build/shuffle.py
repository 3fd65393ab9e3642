"""Streaming a pool's rows in any given order with bounded memory: an external bucket shuffle.

Output positions are cut into buckets of `bucket_rows`, each with two temporary files: the vectors (raw
float32 rows) and the other columns (Arrow IPC, with each row's output position). Pass 1 reads the pool once
and appends every needed row to its bucket, in the same order in both files. Pass 2 reads the buckets in turn,
puts each in order and deletes its files at once, so the temporary space shrinks as the output grows.

Where it can, the vector files bypass the page cache (O_DIRECT): they are written once and read once, and
copying 4 GB per million rows into fresh page-cache pages was a large share of the build's CPU time. Big
buffers are reused rather than allocated per bucket for the same reason: fresh memory costs a page fault per
page. Decoding, temporary writes and read-backs run in background threads.
"""

import logging
import os
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from ..core.background import BoundedPool, OrderedBackground, prefetched
from ..core.schema import embedding_matrix
from ..core.shards import iter_shard_batches, read_manifest

ALIGN = 4096  # O_DIRECT wants buffer addresses, lengths and file offsets on block boundaries
MAX_BUCKETS = 256  # two open files each
log = logging.getLogger("vs_sonar.shuffle")


def iter_rows_in_order(pool_dir: str | Path, order: np.ndarray, bucket_rows: int | None = None,
                       tmp_dir: str | Path | None = None, on_rows=None, direct: bool | None = None
                       ) -> Iterator[pa.Table]:
    """Yield the pool rows listed in `order`, in that order, as consecutive tables of up to bucket_rows rows.

    `on_rows(rows)`, if given, sees the needed rows of each pool batch as read, e.g. to hash them on the way.
    `direct`: use O_DIRECT for the vector files (default: when the row width allows it and the file system
    accepts it).
    """
    pool = read_manifest(pool_dir, "pool")
    dim, field = pool.embedding_dim, pool.schema.field("embedding")
    field_index = pool.schema.get_field_index("embedding")
    width = dim * 4  # bytes per vector
    bucket_rows = bucket_rows or max(16384, -(-len(order) // MAX_BUCKETS))  # ~64 MB of vectors per bucket
    n_buckets = max(1, -(-len(order) // bucket_rows))
    dest = np.full(pool.rows, -1, dtype=np.int64)
    dest[order] = np.arange(len(order))
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="vs-sonar-shuffle-", dir=tmp_dir) as tmp:
        vectors = _VectorFiles(Path(tmp), n_buckets, width, direct)
        writers: dict[int, ipc.RecordBatchFileWriter] = {}
        try:
            # the small columns are appended in order by one thread; the vectors go to offsets reserved here,
            # so two threads can gather and write them (the disk wait of one overlaps the other's copying)
            with OrderedBackground() as background, BoundedPool(workers=2) as vector_writers:
                offset = 0
                for batch in iter_shard_batches(pool_dir, "pool", threads=2):
                    batch_dest = dest[offset : offset + batch.num_rows]
                    offset += batch.num_rows
                    keep = np.flatnonzero(batch_dest >= 0)
                    if not len(keep):
                        continue
                    if on_rows is not None:
                        on_rows(batch if len(keep) == batch.num_rows else batch.take(keep))
                    keep = keep[np.argsort(batch_dest[keep] // bucket_rows, kind="stable")]  # grouped by bucket
                    buckets = batch_dest[keep] // bucket_rows
                    starts = np.flatnonzero(np.r_[True, np.diff(buckets) != 0])
                    segments = [(int(buckets[s]), s, e) for s, e in zip(starts, np.r_[starts[1:], len(keep)])]
                    vector_writers.submit(vectors.write, embedding_matrix(batch), keep, vectors.reserve(segments))
                    small = pa.Table.from_batches([batch.drop_columns("embedding").take(keep)])
                    small = small.append_column("_dest", pa.array(batch_dest[keep]))
                    for b, start, end in segments:
                        if b not in writers:
                            writers[b] = ipc.new_file(Path(tmp) / f"{b}.arrow", small.schema)
                        background.submit(writers[b].write_table, small.slice(start, end - start))
            for w in writers.values():
                w.close()
            log.info("shuffle: %d rows spilled to %d buckets in %.1f s (%s)", len(order), n_buckets,
                     time.time() - started, "O_DIRECT" if vectors.direct else "page cache")

            def read_back():
                outputs = _Buffers()
                for b in range(n_buckets):
                    rows = min(bucket_rows, len(order) - b * bucket_rows)
                    path = Path(tmp) / f"{b}.arrow"
                    with pa.OSFile(str(path)) as source:
                        small = ipc.open_file(source).read_all()
                    path.unlink()
                    if small.num_rows != rows:  # a bug, not bad input
                        raise RuntimeError(f"shuffle bucket {b}: {small.num_rows} rows, expected {rows}")
                    ordering = np.argsort(small.column("_dest").to_numpy(), kind="stable")
                    ordered = outputs.get(rows * dim)
                    np.take(vectors.read(b, rows), ordering, axis=0, out=ordered.reshape(rows, dim))
                    column = pa.FixedSizeListArray.from_arrays(pa.array(ordered), type=field.type)
                    small = small.drop_columns("_dest").take(ordering)
                    yield small.add_column(field_index, field, column)

            yield from prefetched(read_back(), depth=1)
        finally:
            vectors.close()


def aligned_empty(rows: int, width: int) -> np.ndarray:
    """An uninitialised [rows, width // 4] float32 array whose data starts on an ALIGN boundary."""
    raw = np.empty(rows * width + ALIGN, np.uint8)
    start = -raw.ctypes.data % ALIGN
    return raw[start : start + rows * width].view(np.float32).reshape(rows, width // 4)


class _VectorFiles:
    """One file of raw vectors per bucket. Pass 1 reserves each bucket's next rows in order (reserve) and
    writes them from any thread (write); pass 2 reads whole buckets from one thread (read). Every thread has
    its own staging buffer."""

    def __init__(self, directory: Path, n_buckets: int, width: int, direct: bool | None):
        self.directory, self.width = directory, width
        if direct is None:
            direct = hasattr(os, "O_DIRECT") and width % ALIGN == 0
        self.direct = direct
        self.flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | (os.O_DIRECT if direct else 0)
        self.fds: list[int] = []
        try:
            self.fds.append(os.open(directory / "0.vectors", self.flags))
        except OSError:  # e.g. tmpfs refuses O_DIRECT
            self.direct, self.flags = False, self.flags & ~getattr(os, "O_DIRECT", 0)
            self.fds.append(os.open(directory / "0.vectors", self.flags))
        self.fds += [os.open(directory / f"{b}.vectors", self.flags) for b in range(1, n_buckets)]
        self.sizes = [0] * n_buckets
        self._local = threading.local()

    def _staging(self, rows: int) -> np.ndarray:
        staging = getattr(self._local, "staging", None)
        if staging is None or len(staging) < rows:
            staging = self._local.staging = aligned_empty(rows, self.width)
        return staging[:rows]

    def reserve(self, segments: list) -> list:
        """File offsets for (bucket, start, end) ranges of rows, after everything reserved before."""
        placed = []
        for b, start, end in segments:
            placed.append((b, start, end, self.sizes[b]))
            self.sizes[b] += (end - start) * self.width
        return placed

    def write(self, matrix: np.ndarray, rows: np.ndarray, placed: list) -> None:
        """Write matrix[rows] where reserve() placed it: placed holds (bucket, start, end, offset) ranges."""
        grouped = np.take(matrix, rows, axis=0, out=self._staging(len(rows)))
        raw = memoryview(grouped).cast("B")
        for b, start, end, offset in placed:
            _write_at(self.fds[b], raw[start * self.width : end * self.width], offset)

    def read(self, bucket: int, rows: int) -> np.ndarray:
        """A bucket's vectors in the order appended (valid until the next read); its file is deleted."""
        if self.sizes[bucket] != rows * self.width:  # a bug, not bad input
            raise RuntimeError(f"shuffle bucket {bucket}: {self.sizes[bucket]} bytes of vectors for {rows} rows")
        out = self._staging(rows)
        raw, done = memoryview(out).cast("B"), 0
        while done < len(raw):
            n = os.preadv(self.fds[bucket], [raw[done:]], done)
            if not n:
                raise RuntimeError(f"shuffle bucket {bucket}: vector file ends early")
            done += n
        os.close(self.fds[bucket])
        self.fds[bucket] = -1
        (self.directory / f"{bucket}.vectors").unlink()
        return out

    def close(self) -> None:
        for fd in self.fds:
            if fd >= 0:
                os.close(fd)
        self.fds = []


def _write_at(fd: int, data: memoryview, offset: int) -> int:
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done:], offset + done)
    return done


class _Buffers:
    """Hands out float32 arrays, reusing one once nothing refers to it any more (the tables built on it were
    written and dropped)."""

    def __init__(self):
        self._items: list[tuple[np.ndarray, weakref.ref | None]] = []

    def get(self, floats: int) -> np.ndarray:
        for i, (base, handed_out) in enumerate(self._items):
            if handed_out() is None and len(base) >= floats:
                break
        else:
            base, i = np.empty(floats, np.float32), len(self._items)
            self._items.append((base, None))
        array = base[:floats]
        self._items[i] = (base, weakref.ref(array))
        return array
