"""Checks on encoder output before anything is written: a NaN, an infinity or a zero vector is a broken
embedding (fp16 overflow, an empty input), and no cosine can be taken with it."""

import numpy as np

REASON_NAN = "nan"
REASON_INF = "inf"
REASON_ZERO = "zero_norm"


def invalid_reasons(vectors: np.ndarray) -> list[str | None]:
    """Per row: None when the vector is usable, else why not (NaN is reported before infinity)."""
    has_nan = np.isnan(vectors).any(axis=1)
    has_inf = np.isinf(vectors).any(axis=1)
    with np.errstate(over="ignore", invalid="ignore"):
        zero = ~(np.linalg.norm(vectors.astype(np.float64), axis=1) > 0)
    reasons: list[str | None] = []
    for nan, inf, z in zip(has_nan, has_inf, zero):
        reasons.append(REASON_NAN if nan else REASON_INF if inf else REASON_ZERO if z else None)
    return reasons
