"""Normalization statistics of a config's train split, and the helpers that use them.

mean and std per dimension (population std, ddof=0) are accumulated in float64 over fixed 8192-row blocks
aligned to the start of the split: each block's sum and sum of squares in one pass, 128 rows at a time (cast to
float64 in cache), then the blocks are merged with Chan's formula and stored as float32. The same blocks give
bitwise-equal results when verify recomputes them from the released files. Shipped as stats/{config}.json
beside the data and as the `stats` config (one row per config).
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from .errors import UserError

BLOCK_ROWS = 8192
CHUNK_ROWS = 128  # rows cast to float64 at a time: 1 MB, which stays in cache through the three reductions
METHOD = ("per-dimension mean and population standard deviation (ddof=0) of the train split: sums and sums of "
          "squares in float64 over 8192-row blocks, blocks merged with Chan et al.'s formula, stored as float32; "
          "normalize(x) = (x - mean) / std")
NORM_PERCENTILES = (1, 5, 50, 95, 99)


class StatsAccumulator:
    """Feed train rows in order with add(); snapshot() gives the stats of everything added so far."""

    def __init__(self, dim: int):
        self.dim = dim
        self.count = 0
        self.mean = np.zeros(dim, np.float64)
        self.m2 = np.zeros(dim, np.float64)
        self._block = np.empty((BLOCK_ROWS, dim), np.float32)  # rows of a block that arrived in pieces
        self._chunk = np.empty((CHUNK_ROWS, dim), np.float64)
        self.pending_rows = 0
        self.norms: list[np.ndarray] = []
        self.ids_digest = hashlib.sha256()

    def add(self, vectors: np.ndarray, ids: list[str]) -> None:
        if len(vectors) != len(ids):
            raise ValueError("vectors and ids differ in length")
        if ids:
            self.ids_digest.update(("\n".join(ids) + "\n").encode())
        while len(vectors):
            if self.pending_rows == 0 and len(vectors) >= BLOCK_ROWS:  # a whole block: no copy
                self._merge(vectors[:BLOCK_ROWS])
                vectors = vectors[BLOCK_ROWS:]
                continue
            take = min(len(vectors), BLOCK_ROWS - self.pending_rows)
            self._block[self.pending_rows : self.pending_rows + take] = vectors[:take]
            self.pending_rows += take
            vectors = vectors[take:]
            if self.pending_rows == BLOCK_ROWS:
                self._merge(self._block)
                self.pending_rows = 0

    def _merge(self, block: np.ndarray) -> None:
        norms, total, squares = self._sums(block)
        self.count, self.mean, self.m2 = _chan_merge(self.count, self.mean, self.m2, len(block), total, squares)
        self.norms.append(norms)

    def _sums(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row norms, column sums and column sums of squares of a block, in float64."""
        total, squares = np.zeros(self.dim), np.zeros(self.dim)
        norms = np.empty(len(block))
        for start in range(0, len(block), CHUNK_ROWS):
            x = self._chunk[: min(CHUNK_ROWS, len(block) - start)]
            np.copyto(x, block[start : start + len(x)])
            total += x.sum(axis=0)
            np.square(x, out=x)
            squares += x.sum(axis=0)
            norms[start : start + len(x)] = np.sqrt(x.sum(axis=1))
        return norms, total, squares

    def all_norms(self) -> np.ndarray:
        """L2 norms of every row added so far (float64)."""
        return np.concatenate(self.norms + [self._sums(self._block[: self.pending_rows])[0]])

    def snapshot(self, config: str) -> dict:
        count, mean, m2 = self.count, self.mean, self.m2
        if self.pending_rows:  # the partial block counts in this snapshot and stays pending
            _, total, squares = self._sums(self._block[: self.pending_rows])
            count, mean, m2 = _chan_merge(count, mean, m2, self.pending_rows, total, squares)
        if count == 0:
            raise UserError(f"config {config!r} has no train rows to compute stats from")
        std = np.sqrt(m2 / count)
        norms = self.all_norms()
        return {
            "config": config,
            "split": "train",
            "count": int(count),
            "dim": self.dim,
            "method": METHOD,
            "ids_sha256": self.ids_digest.hexdigest(),
            "mean": [float(v) for v in mean.astype(np.float32)],
            "std": [float(v) for v in std.astype(np.float32)],
            "norm": {
                "mean": float(norms.mean()), "std": float(norms.std()),
                "min": float(norms.min()), "max": float(norms.max()),
                **{f"p{p:02d}": float(v) for p, v in zip(NORM_PERCENTILES, np.percentile(norms, NORM_PERCENTILES))},
            },
        }


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

    @classmethod
    def from_json(cls, obj: dict) -> "Stats":
        return cls(obj["config"], obj["count"], np.asarray(obj["mean"], np.float32),
                   np.asarray(obj["std"], np.float32), obj["ids_sha256"], obj["method"], obj["norm"])


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


def normalize(x, stats: Stats):
    """(x - mean) / std for a numpy array or torch tensor of shape [..., dim]."""
    return (x - _as_like(x, stats.mean)) / _as_like(x, stats.std)


def denormalize(x, stats: Stats):
    """Inverse of normalize: x * std + mean (use before decoding model outputs with SONAR)."""
    return x * _as_like(x, stats.std) + _as_like(x, stats.mean)
