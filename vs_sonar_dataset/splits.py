"""Nested configs and their splits, and streaming a pool's rows in split order with bounded memory.

One seeded shuffle of the pool. The largest config's rows are cut 80/10/10 into train / validation / test
pools; a config of size s takes the first n_split(s) rows of each pool, so every smaller config is a prefix of
every larger one, split by split, and no row can sit in two splits.
"""

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from .background import OrderedBackground, prefetched
from .errors import UserError
from .shards import iter_shard_batches, read_manifest

SPLITS = ("train", "validation", "test")
HOLDOUT_FRACTION = 0.1  # for validation and for test each


def split_sizes(size: int) -> dict[str, int]:
    """80/10/10, rounding the held-out splits down so that train absorbs the remainder."""
    held = int(size * HOLDOUT_FRACTION)
    return {"train": size - 2 * held, "validation": held, "test": held}


def parse_size(text: str | int) -> int:
    """'1k' -> 1000, '1m' -> 1000000, '2500' -> 2500."""
    if isinstance(text, int):
        return text
    units = {"k": 1_000, "m": 1_000_000}
    s = str(text).strip().lower()
    try:
        return int(float(s[:-1]) * units[s[-1]]) if s and s[-1] in units else int(s)
    except ValueError:
        raise UserError(f"config size {text!r} is not a number such as 1000, '5k' or '1m'") from None


@dataclass(frozen=True)
class SplitPlan:
    """Which pool rows go where. `order` lists pool row indices: train pool, then validation, then test."""

    pool_rows: int
    seed: int
    configs: dict  # name -> size, ascending by size
    order: np.ndarray

    @property
    def largest(self) -> str:
        return max(self.configs, key=self.configs.get)

    def pool_sizes(self) -> dict[str, int]:
        return split_sizes(self.configs[self.largest])

    def split_offsets(self) -> dict[str, int]:
        """Where each split's pool starts in `order`."""
        offsets, start = {}, 0
        for split, n in self.pool_sizes().items():
            offsets[split] = start
            start += n
        return offsets

    def rows(self, config: str, split: str) -> np.ndarray:
        """Pool row indices of one config's split, in order."""
        start = self.split_offsets()[split]
        return self.order[start : start + split_sizes(self.configs[config])[split]]


def make_plan(pool_rows: int, configs: dict, seed: int) -> SplitPlan:
    if not configs:
        raise UserError("no configs to build: give at least one size, e.g. {'1k': 1000}")
    sizes = {name: parse_size(size) for name, size in configs.items()}
    for name, size in sizes.items():
        if size < 10:
            raise UserError(f"config {name!r} has {size} rows; at least 10 are needed for an 80/10/10 split")
    largest = max(sizes.values())
    if pool_rows < largest:
        raise UserError(f"the pool has {pool_rows} rows but config {max(sizes, key=sizes.get)!r} needs "
                        f"{largest}: {largest - pool_rows} rows missing")
    order = np.random.default_rng(seed).permutation(pool_rows)[:largest]
    return SplitPlan(pool_rows, seed, dict(sorted(sizes.items(), key=lambda kv: kv[1])), order)


def iter_rows_in_order(pool_dir: str | Path, order: np.ndarray, bucket_rows: int | None = None,
                       tmp_dir: str | Path | None = None, on_rows=None) -> Iterator[pa.Table]:
    """Yield the pool rows listed in `order`, in that order, as consecutive tables.

    An external bucket shuffle: one sequential pass sends each needed row to the temporary Arrow file of the
    bucket that holds its output position; then each bucket is read back, put in order and yielded.
    Memory stays at a few batches plus one bucket, whatever the pool size. Decoding, temporary writes and
    read-backs run in background threads (see background.py). `on_rows(table)`, if given, sees the needed rows
    of each pool batch as read (grouped by bucket), e.g. to hash them on the way.
    """
    pool_rows = read_manifest(pool_dir, "pool").rows
    # ~64 MB buckets of 1024-d rows, but never more than 512 temporary files open at once
    bucket_rows = bucket_rows or max(16384, -(-len(order) // 512))
    dest = np.full(pool_rows, -1, dtype=np.int64)
    dest[order] = np.arange(len(order))
    n_buckets = max(1, -(-len(order) // bucket_rows))
    with tempfile.TemporaryDirectory(prefix="vs-sonar-shuffle-", dir=tmp_dir) as tmp:
        writers: dict[int, ipc.RecordBatchFileWriter] = {}
        with OrderedBackground() as background:
            offset = 0
            for batch in prefetched(iter_shard_batches(pool_dir, "pool")):
                batch_dest = dest[offset : offset + batch.num_rows]
                offset += batch.num_rows
                keep = np.flatnonzero(batch_dest >= 0)
                if not len(keep):
                    continue
                keep = keep[np.argsort(batch_dest[keep] // bucket_rows, kind="stable")]  # grouped by bucket
                picked = pa.Table.from_batches([batch.take(keep)])  # the one copy of this pass
                if on_rows is not None:
                    on_rows(picked)
                picked = picked.append_column("_dest", pa.array(batch_dest[keep]))
                buckets = batch_dest[keep] // bucket_rows
                starts = np.flatnonzero(np.r_[True, np.diff(buckets) != 0])
                for start, end in zip(starts, np.r_[starts[1:], len(keep)]):
                    b = int(buckets[start])
                    if b not in writers:
                        writers[b] = ipc.new_file(Path(tmp) / f"{b}.arrow", picked.schema)
                    background.submit(writers[b].write_table, picked.slice(start, end - start))
        for w in writers.values():
            w.close()

        def read_back():
            for b in range(n_buckets):
                path = Path(tmp) / f"{b}.arrow"
                with pa.memory_map(str(path)) as source:
                    table = ipc.open_file(source).read_all()  # zero-copy views of the map
                    ordering = np.argsort(table.column("_dest").to_numpy(), kind="stable")
                    ordered = table.drop_columns("_dest").take(ordering)  # a copy: outlives the map
                    del table
                path.unlink()
                yield ordered

        yield from prefetched(read_back(), depth=1)
