"""Normalization statistics of a config's train split, and the helpers that use them.

mean and std per dimension (population std, ddof=0) are accumulated in float64 over fixed 8192-row blocks
aligned to the start of the split: each block's sum and sum of squares in one pass, 128 rows at a time (cast to
float64 in cache), then the blocks are merged in order with Chan's formula and stored as float32. Rows may
arrive in any order and from several threads: the blocks fix the arithmetic, so the build and verify get
bitwise-equal results however they read. Shipped as stats/{config}.json beside the data and as the `stats`
config (one row per config).

Robust statistics sit beside them, computed exactly from the whole train split (robust_stats): per-dimension
median, robust_std = 0.7413 * IQR (the standard deviation of a normal with that IQR), and the 1st / 99th
percentiles. normalize(x, stats, method="robust") uses median and robust_std, which one outlier cannot move.
"""

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..core.errors import UserError

BLOCK_ROWS = 8192
CHUNK_ROWS = 128  # rows cast to float64 at a time: 1 MB, which stays in cache through the three reductions
METHOD = ("per-dimension mean and population standard deviation (ddof=0) of the train split: sums and sums of "
          "squares in float64 over 8192-row blocks, blocks merged with Chan et al.'s formula, stored as float32; "
          "normalize(x) = (x - mean) / std")
NORM_PERCENTILES = (1, 5, 50, 95, 99)
IQR_TO_STD = 0.7413  # 1 / (2 * 0.6745): the IQR of a normal distribution is 1.349 standard deviations
ROBUST_KEYS = ("median", "robust_std", "p01", "p99")
ROBUST_METHOD = ("per-dimension median, robust_std = 0.7413 * (75th - 25th percentile), 1st and 99th percentiles "
                 "of the train split (numpy linear interpolation, float64, stored as float32); "
                 "normalize(x, method='robust') = (x - median) / robust_std")
METHODS = ("standard", "robust")


class StatsAccumulator:
    """The stats of a split's prefixes: `ends` are the prefix lengths asked for, the largest one the split size.

    add(vectors, ids, start) takes rows at positions start.. of the split, in any order and from any thread;
    stats(end) gives the stats of rows [0, end) once they were all added.
    """

    def __init__(self, dim: int, ends):
        self.dim = dim
        self.ends = sorted(set(ends))
        self.rows = self.ends[-1]
        self.norms = np.empty(self.rows)
        self._sums: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}  # (block start, end) -> sums
        self._partial: dict[int, list] = {}  # block start -> [float32 rows, rows filled]
        self._id_pieces: dict[int, tuple[int, bytes]] = {}  # start -> (end, ids) waiting for their turn
        self._ids_digest, self._ids_hashed = hashlib.sha256(), 0
        self._ids_sha256: dict[int, str] = {}
        self._lock = threading.Lock()

    def add(self, vectors: np.ndarray, ids: list[str], start: int) -> None:
        if len(vectors) != len(ids):
            raise ValueError("vectors and ids differ in length")
        end = start + len(vectors)
        if start < 0 or end > self.rows:
            raise ValueError(f"rows {start}..{end} fall outside the split's {self.rows}")
        with self._lock:
            bounds = [start] + [e for e in self.ends if start < e < end] + [end]
            for a, b in zip(bounds, bounds[1:]):  # the ids digest is recorded at every end
                self._id_pieces[a] = (b, ("\n".join(ids[a - start : b - start]) + "\n").encode())
            self._hash_ready_ids()
        for block in range(start - start % BLOCK_ROWS, end, BLOCK_ROWS):
            size = min(BLOCK_ROWS, self.rows - block)
            lo, hi = max(start, block), min(end, block + size)
            if lo == block and hi == block + size:  # a whole block: read in place
                self._reduce(block, vectors[block - start : block - start + size])
                continue
            with self._lock:
                partial = self._partial.setdefault(block, [np.empty((size, self.dim), np.float32), 0])
            # pieces fill disjoint rows, so the copy needs no lock; only the count does
            partial[0][lo - block : hi - block] = vectors[lo - start : hi - start]
            with self._lock:
                partial[1] += hi - lo
                complete = partial[1] == size
                if complete:
                    del self._partial[block]
            if complete:
                self._reduce(block, partial[0])

    def _hash_ready_ids(self) -> None:
        while self._ids_hashed in self._id_pieces:
            end, data = self._id_pieces.pop(self._ids_hashed)
            self._ids_digest.update(data)
            self._ids_hashed = end
            if end in self.ends:
                self._ids_sha256[end] = self._ids_digest.hexdigest()

    def _reduce(self, block: int, rows: np.ndarray) -> None:
        """Sums over the whole block, and over its first rows up to each end that falls inside it."""
        chunk = np.empty((CHUNK_ROWS, self.dim), np.float64)
        inner = [e - block for e in self.ends if block < e < block + len(rows)]
        # an end inside a block is reduced as a block of its own (as verify sees that config's last block)
        for size in inner + [len(rows)]:
            total, squares = _block_sums(rows[:size], chunk, self.norms[block : block + size])
            with self._lock:
                self._sums[(block, block + size)] = (total, squares)

    def stats(self, end: int, config: str) -> dict:
        """The stats of rows [0, end): every one of them must have been added."""
        if end not in self.ends:
            raise ValueError(f"{end} is not one of the prefix ends {self.ends}")
        if end == 0:
            raise UserError(f"config {config!r} has no train rows to compute stats from")
        count, mean, m2 = 0, np.zeros(self.dim), np.zeros(self.dim)
        for block in range(0, end, BLOCK_ROWS):
            key = (block, min(block + BLOCK_ROWS, end))
            if key not in self._sums:
                raise RuntimeError(f"stats: rows {key[0]}..{key[1]} were not all added")  # a bug, not bad input
            count, mean, m2 = _chan_merge(count, mean, m2, key[1] - key[0], *self._sums[key])
        std = np.sqrt(m2 / count)
        norms = self.norms[:end]
        return {
            "config": config,
            "split": "train",
            "count": int(count),
            "dim": self.dim,
            "method": METHOD,
            "ids_sha256": self._ids_sha256[end],
            "mean": [float(v) for v in mean.astype(np.float32)],
            "std": [float(v) for v in std.astype(np.float32)],
            "norm": {
                "mean": float(norms.mean()), "std": float(norms.std()),
                "min": float(norms.min()), "max": float(norms.max()),
                **{f"p{p:02d}": float(v) for p, v in zip(NORM_PERCENTILES, np.percentile(norms, NORM_PERCENTILES))},
            },
        }


def robust_stats(train: np.ndarray, columns: int = 64) -> dict:
    """Median, robust_std, p01 and p99 per dimension of float32 [rows, dim] train vectors, exactly (numpy's
    linear interpolation), a few columns at a time so that the copy numpy sorts stays small."""
    parts = []
    for a in range(0, train.shape[1], columns):
        block = train[:, a : a + columns].astype(np.float64)  # a contiguous copy: faster to partition
        parts.append(np.percentile(block, [50, 25, 75, 1, 99], axis=0))
    median, q1, q3, p01, p99 = np.concatenate(parts, axis=1)
    values = {"median": median, "robust_std": IQR_TO_STD * (q3 - q1), "p01": p01, "p99": p99}
    return {**{k: [float(v) for v in values[k].astype(np.float32)] for k in ROBUST_KEYS},
            "robust_method": ROBUST_METHOD}


def _block_sums(rows: np.ndarray, chunk: np.ndarray, norms_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column sums and sums of squares of rows in float64, CHUNK_ROWS at a time; row norms into norms_out."""
    dim = rows.shape[1]
    total, squares = np.zeros(dim), np.zeros(dim)
    for a in range(0, len(rows), CHUNK_ROWS):
        x = chunk[: min(CHUNK_ROWS, len(rows) - a)]
        np.copyto(x, rows[a : a + len(x)])
        total += x.sum(axis=0)
        np.square(x, out=x)
        squares += x.sum(axis=0)
        norms_out[a : a + len(x)] = np.sqrt(x.sum(axis=1))
    return total, squares


def _chan_merge(count: int, mean: np.ndarray, m2: np.ndarray, n_b: int, total: np.ndarray, squares: np.ndarray):
    """(count, mean, m2) with a block of n_b rows merged in, the block given by its sums (Chan et al.)."""
    mean_b = total / n_b
    m2_b = np.maximum(squares - total * mean_b, 0.0)  # rounding can take a constant dimension below zero
    n = count + n_b
    delta = mean_b - mean
    return n, mean + delta * (n_b / n), m2 + m2_b + delta**2 * (count * n_b / n)


@dataclass(frozen=True)
class Stats:
    config: str
    count: int
    mean: np.ndarray  # float32 [dim]
    std: np.ndarray  # float32 [dim]
    ids_sha256: str
    method: str
    norm: dict
    median: np.ndarray | None = None  # float32 [dim]; None in releases made before robust stats
    robust_std: np.ndarray | None = None
    p01: np.ndarray | None = None
    p99: np.ndarray | None = None

    @classmethod
    def from_json(cls, obj: dict) -> "Stats":
        robust = {k: np.asarray(obj[k], np.float32) for k in ROBUST_KEYS if k in obj}
        return cls(obj["config"], obj["count"], np.asarray(obj["mean"], np.float32),
                   np.asarray(obj["std"], np.float32), obj["ids_sha256"], obj["method"], obj["norm"], **robust)

    def shift_scale(self, method: str = "standard") -> tuple[np.ndarray, np.ndarray]:
        """(shift, scale) with normalize(x) = (x - shift) / scale."""
        if method == "standard":
            return self.mean, self.std
        if method == "robust":
            if self.median is None:
                raise UserError(f"config {self.config!r}: this release has no robust statistics; "
                                "use method='standard'")
            # a dimension whose middle half is constant is only centred
            return self.median, np.where(self.robust_std > 0, self.robust_std, np.float32(1))
        raise UserError(f"normalization method {method!r}: use one of {', '.join(METHODS)}")


def stats_table(all_stats: list[dict]) -> pa.Table:
    """The `stats` config: one row per data config."""
    dim = all_stats[0]["dim"]
    vec = pa.list_(pa.float32(), dim)
    columns = {
        "config": pa.array([s["config"] for s in all_stats]),
        "split": pa.array([s["split"] for s in all_stats]),
        "count": pa.array([s["count"] for s in all_stats], pa.int64()),
        "mean": pa.array([s["mean"] for s in all_stats], vec),
        "std": pa.array([s["std"] for s in all_stats], vec),
        **{f"norm_{k}": pa.array([s["norm"][k] for s in all_stats], pa.float64()) for k in all_stats[0]["norm"]},
        **{k: pa.array([s[k] for s in all_stats], vec) for k in ROBUST_KEYS if k in all_stats[0]},
        "ids_sha256": pa.array([s["ids_sha256"] for s in all_stats]),
        "method": pa.array([s["method"] for s in all_stats]),
    }
    return pa.table(columns)


def load_stats(repo_or_folder: str, config: str, revision: str | None = None) -> Stats:
    """Stats of one config, from a release folder or a Hub dataset repo ("org/vs-sonar")."""
    folder = Path(repo_or_folder)
    if folder.is_dir():
        path = folder / "stats" / f"{config}.json"
        if not path.is_file():
            raise UserError(f"{path}: no stats for config {config!r} in this release")
    else:
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(repo_or_folder, f"stats/{config}.json", repo_type="dataset", revision=revision)
    return Stats.from_json(json.loads(Path(path).read_text()))


def _as_like(x, values: np.ndarray):
    if isinstance(x, np.ndarray):
        return values.astype(x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32, copy=False)
    import torch

    if isinstance(x, torch.Tensor):
        return torch.as_tensor(values, device=x.device,
                               dtype=x.dtype if x.is_floating_point() else torch.float32)
    raise TypeError(f"expected a numpy array or a torch tensor, got {type(x).__name__}")


def normalize(x, stats: Stats, method: str = "standard"):
    """(x - mean) / std ("standard") or (x - median) / robust_std ("robust"), for a numpy array or torch
    tensor of shape [..., dim]."""
    shift, scale = stats.shift_scale(method)
    return (x - _as_like(x, shift)) / _as_like(x, scale)


def denormalize(x, stats: Stats, method: str = "standard"):
    """Inverse of normalize with the same method (use before decoding model outputs with SONAR)."""
    shift, scale = stats.shift_scale(method)
    return x * _as_like(x, scale) + _as_like(x, shift)
