"""Exact semantic dedup: a row is kept when its cosine to every row kept before it is below the threshold.

Rows are decided in input order, so the kept set depends only on the rows and their order, never on how they
are chunked, how the kept set is blocked, or where a run was resumed (up to float rounding of a cosine that
lies within ~1e-6 of the threshold). Each chunk is compared with the kept set as blocked matrix products on
the device in use, then with itself; only the few rows that have an earlier near-twin inside the chunk are
resolved one by one.
"""

from dataclasses import dataclass

import numpy as np
import torch

METHOD_EXACT = "exact-blocked-cosine"


@dataclass
class DedupResult:
    """Decisions for the first `processed` rows of a chunk (fewer than given once the target is reached)."""

    processed: int
    keep: np.ndarray  # bool [processed]
    duplicate_of: np.ndarray  # int64 [processed]: global index of the kept row it duplicates, -1 if kept
    cosine: np.ndarray  # float32 [processed]: cosine to that row (nan if kept)


class ExactDeduper:
    def __init__(self, dim: int, threshold: float = 0.95, block_rows: int = 16384,
                 device: str | torch.device = "cpu"):
        self.dim = dim
        self.threshold = float(threshold)
        self.block_rows = int(block_rows)
        self.device = torch.device(device)
        self._kept = torch.empty((0, dim), dtype=torch.float32, device=self.device)
        self.size = 0

    @staticmethod
    def method() -> dict:
        return {"method": METHOD_EXACT}

    def _normalized(self, vectors: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(vectors, dtype=torch.float32).to(self.device)
        return x / x.norm(dim=1, keepdim=True)

    def _append(self, x: torch.Tensor) -> None:
        # grow geometrically so appending chunk after chunk stays linear in the pool size
        need = self.size + x.shape[0]
        if need > self._kept.shape[0]:
            grown = torch.empty((max(need, 2 * self._kept.shape[0], 1024), self.dim),
                                dtype=torch.float32, device=self.device)
            grown[: self.size] = self._kept[: self.size]
            self._kept = grown
        self._kept[self.size:need] = x
        self.size = need

    def add_kept(self, vectors: np.ndarray) -> None:
        """Load rows kept by an earlier run (resume)."""
        if len(vectors):
            self._append(self._normalized(vectors))

    def _best_in_kept(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        best = torch.full((x.shape[0],), -2.0, device=self.device)
        best_index = torch.full((x.shape[0],), -1, dtype=torch.int64, device=self.device)
        for start in range(0, self.size, self.block_rows):
            block = self._kept[start:min(start + self.block_rows, self.size)]
            value, index = (x @ block.T).max(dim=1)  # first maximum on ties: the earliest kept row
            better = value > best  # strict: an earlier block wins a tie
            best = torch.where(better, value, best)
            best_index = torch.where(better, index + start, best_index)
        return best, best_index

    def process(self, vectors: np.ndarray, limit: int | None = None) -> DedupResult:
        """Decide each row in order, keeping at most `limit` more rows (then stop)."""
        n = len(vectors)
        if n == 0:
            return DedupResult(0, np.zeros(0, bool), np.zeros(0, np.int64), np.zeros(0, np.float32))
        x = self._normalized(vectors)
        best, best_index = (t.cpu().numpy() for t in self._best_in_kept(x))
        # earlier near-twins inside the chunk: (row, earlier row, cosine) with cosine >= threshold
        inner = torch.tril(x @ x.T, diagonal=-1)
        rows, earlier = torch.nonzero(inner >= self.threshold, as_tuple=True)
        twin_cos = inner[rows, earlier].cpu().numpy()
        twins: dict[int, list[tuple[int, float]]] = {}
        for r, e, c in zip(rows.tolist(), earlier.tolist(), twin_cos.tolist()):
            twins.setdefault(r, []).append((e, c))

        keep = np.zeros(n, dtype=bool)
        duplicate_of = np.full(n, -1, dtype=np.int64)
        cosine = np.full(n, np.nan, dtype=np.float32)
        kept_here = 0
        processed = 0
        for i in range(n):
            if limit is not None and kept_here >= limit:
                break
            processed += 1
            dup, cos = (int(best_index[i]), float(best[i])) if best[i] >= self.threshold else (-1, -2.0)
            for e, c in twins.get(i, ()):  # ascending e: the earliest row wins a tie
                if keep[e] and c > cos:
                    dup, cos = self.size + int(np.count_nonzero(keep[:e])), c
            if dup < 0:
                keep[i] = True
                kept_here += 1
            else:
                duplicate_of[i], cosine[i] = dup, cos
        keep, duplicate_of, cosine = keep[:processed], duplicate_of[:processed], cosine[:processed]
        self._append(x[:processed][torch.as_tensor(keep, device=self.device)])
        return DedupResult(processed, keep, duplicate_of, cosine)


def make_deduper(method: str, dim: int, threshold: float, block_rows: int, device: str) -> ExactDeduper:
    if method == "exact":
        return ExactDeduper(dim, threshold, block_rows, device)
    raise ValueError(f"unknown dedup method {method!r}")
