"""Interpolation between embedding vectors, for numpy arrays and torch tensors alike.

slerp moves the direction along the great circle and lerps the norm: SONAR vectors' norms vary, so a slerp on
the unit sphere alone would change them, and a plain lerp between distant directions shrinks the middle.
"""

import math

import numpy as np

METHODS = ("lerp", "slerp")
FLAT = 1e-4  # radians: an angle this close to 0 or pi has no (distinct) great circle, and lerp is used


def interpolate(a, b, t, method: str = "lerp"):
    """The point at t (0 gives a, 1 gives b) between vectors a and b of the same shape [..., dim].

    a and b are both numpy arrays or both torch tensors; t is a number or an array / tensor broadcastable
    against a.shape[:-1], one value per vector: with a, b of shape [dim], t = np.linspace(0, 1, 5) gives the
    [5, dim] path. method "lerp" is (1 - t) a + t b; "slerp" interpolates the direction on the great circle
    and the norm linearly, falling back to lerp where the angle is ~0, ~pi or a vector is zero."""
    if method not in METHODS:
        raise ValueError(f"unknown interpolation method {method!r}: use one of {', '.join(METHODS)}")
    xp, a, b, t = _operands(a, b, t)
    lerp = (1 - t) * a + t * b
    if method == "lerp":
        return lerp
    norm_a, norm_b = _norm(xp, a), _norm(xp, b)
    unit_a = a / xp.where(norm_a > 0, norm_a, 1)
    unit_b = b / xp.where(norm_b > 0, norm_b, 1)
    # the angle from atan2 of the chord lengths: exact near 0 and pi, where arccos(dot) loses its digits
    angle = 2 * xp.arctan2(_norm(xp, unit_a - unit_b), _norm(xp, unit_a + unit_b))
    flat = (angle < FLAT) | (angle > math.pi - FLAT) | (norm_a == 0) | (norm_b == 0)
    sin = xp.where(flat, 1, xp.sin(angle))
    direction = (xp.sin((1 - t) * angle) * unit_a + xp.sin(t * angle) * unit_b) / sin
    return xp.where(flat, lerp, direction * ((1 - t) * norm_a + t * norm_b))


def _norm(xp, x):
    return xp.sqrt((x * x).sum(-1))[..., None]


def _operands(a, b, t):
    """(namespace, a, b, t[..., None]) in one floating dtype, or a clear error."""
    import sys

    torch = sys.modules.get("torch")  # a tensor can only come from a torch already imported
    tensors = [torch is not None and isinstance(x, torch.Tensor) for x in (a, b)]
    if any(tensors) and not all(tensors):
        raise TypeError("a and b must both be numpy arrays or both torch tensors")
    if all(tensors):
        dtype = torch.promote_types(a.dtype, b.dtype)
        dtype = dtype if dtype.is_floating_point else torch.float32
        a, b = a.to(dtype), b.to(dtype)
        t = torch.as_tensor(t, dtype=dtype, device=a.device)
        xp, broadcast = torch, torch.broadcast_shapes
    else:
        a, b = np.asarray(a), np.asarray(b)
        dtype = np.result_type(a, b)
        dtype = dtype if np.issubdtype(dtype, np.floating) else np.float32
        a, b = a.astype(dtype, copy=False), b.astype(dtype, copy=False)
        t = np.asarray(t, dtype=dtype)
        xp, broadcast = np, np.broadcast_shapes
    if a.ndim == 0 or tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"a and b must be vectors of the same shape [..., dim], got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    try:
        broadcast(tuple(t.shape), tuple(a.shape[:-1]))
    except (ValueError, RuntimeError):
        raise ValueError(f"t of shape {tuple(t.shape)} does not broadcast against the {tuple(a.shape[:-1])} "
                         "vectors of a and b (one t per vector)") from None
    return xp, a, b, t[..., None]
