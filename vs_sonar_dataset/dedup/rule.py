"""The dedup rule's decisions without torch: DedupResult, the row-by-row `decide`, the recorded cosine, and
which method a config resolves to. The dedupers (dedupers.py) compute the cosines with torch and decide with these;
the Ray engine's driver (engines/ray_dedup.py) decides with these alone, from the pairs its actors found, so
under the exact rule it never loads torch (about 1 s to import and 0.5 s to unload on 2 cores).
"""

from dataclasses import dataclass

import numpy as np

METHOD_EXACT = "exact-blocked-cosine"
METHOD_IVF = "faiss-ivf-cosine"


def exact_method() -> dict:
    """The exact rule's record in the pool's manifest."""
    return {"method": METHOD_EXACT}


@dataclass
class DedupResult:
    """Decisions for the first `processed` rows of a chunk (fewer than given once the target is reached)."""

    processed: int
    keep: np.ndarray  # bool [processed]
    duplicate_of: np.ndarray  # int64 [processed]: global index of the kept row it duplicates, -1 if kept
    cosine: np.ndarray  # float32 [processed]: cosine to that row (nan if kept), as pair_cosines gives it

    @classmethod
    def empty(cls) -> "DedupResult":
        return cls(0, np.zeros(0, bool), np.zeros(0, np.int64), np.zeros(0, np.float32))


def decide(best: np.ndarray, best_index: np.ndarray, twins: dict, threshold: float, limit: int | None,
           base: int) -> DedupResult:
    """The decisions of one chunk, row by row in order, keeping at most `limit` rows (then stop).

    best / best_index: each row's highest cosine to the kept set and that kept row's global index; twins:
    {row: [(earlier row of this chunk, cosine >= threshold), ...]}; base: the global index the chunk's first
    kept row gets. A row duplicates the kept row of highest cosine once that reaches the threshold (an earlier
    twin wins a tie); else it is kept."""
    n = len(best)
    keep = np.zeros(n, dtype=bool)
    kept_index = np.full(n, -1, dtype=np.int64)  # global kept index of each kept row of the chunk
    duplicate_of = np.full(n, -1, dtype=np.int64)
    cosine = np.full(n, np.nan, dtype=np.float32)
    kept_here = processed = 0
    for i in range(n):
        if limit is not None and kept_here >= limit:
            break
        processed += 1
        dup, cos = (int(best_index[i]), float(best[i])) if best[i] >= threshold else (-1, -2.0)
        for e, c in sorted(twins.get(i, ())):  # ascending e: the earliest row wins a tie
            if keep[e] and c > cos:
                dup, cos = int(kept_index[e]), c
        if dup < 0:
            keep[i] = True
            kept_index[i] = base + kept_here
            kept_here += 1
        else:
            duplicate_of[i], cosine[i] = dup, cos
    return DedupResult(processed, keep[:processed], duplicate_of[:processed], cosine[:processed])


def pair_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float32 [n]: the cosine of each row pair as a dropped row records it, summed in float64 from the two unit
    rows as the decision compared them. A float32 product's last bit depends on how the work was blocked; this
    value does not, so every engine and chunking records the same."""
    return np.einsum("ij,ij->i", a.astype(np.float64), b.astype(np.float64)).astype(np.float32)


def concat_results(parts: list[DedupResult]) -> DedupResult:
    if not parts:
        return DedupResult.empty()
    if len(parts) == 1:
        return parts[0]
    return DedupResult(sum(p.processed for p in parts), np.concatenate([p.keep for p in parts]),
                       np.concatenate([p.duplicate_of for p in parts]), np.concatenate([p.cosine for p in parts]))


AUTO_IVF_MIN_ROWS = 200_000  # "auto" picks ivf on CPU above this many expected pool rows


def resolve_method(method: str, device: str, expected_rows: int | None) -> str:
    """"auto": exact on a GPU (all pairs are cheap there) and for pools up to AUTO_IVF_MIN_ROWS rows; ivf
    for larger pools on CPU, where exact all-pairs grows to hours."""
    if method != "auto":
        return method
    if str(device).startswith("cuda") or expected_rows is None or expected_rows <= AUTO_IVF_MIN_ROWS:
        return "exact"
    return "ivf"
