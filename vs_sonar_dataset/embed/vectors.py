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
    # every component == 0 (-0.0 too): for the float32 rows encode_texts gives, the rows of zero float64 norm
    zero = ~vectors.any(axis=1)
    # np.select takes the first true condition: the order is the precedence
    reasons = np.select([has_nan, has_inf, zero], [REASON_NAN, REASON_INF, REASON_ZERO], default=None)
    return reasons.tolist()
