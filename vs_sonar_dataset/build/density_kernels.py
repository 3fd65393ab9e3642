"""Compiled loops for density.py's bfloat16 candidate pass (numba, parallel over rows or columns).

A bfloat16 similarity block arrives as its int16 bit patterns. `_key` maps a pattern to an int16 whose order is
the float order, so a row's kept candidates are a min-heap of keys: offering a similarity is one integer
comparison with the heap's root, and a kept one is a sift-down of a heap of 2k entries. Most of a block loses to
every root, so the loops first test a run of entries at once and only walk the runs that hold a winner.
"""

import numpy as np
from numba import njit, prange

EMPTY = -32768  # below every key a similarity can have (it is the key of a NaN pattern)


@njit(inline="always")
def _key(bits):
    return bits ^ ((bits >> 15) & 0x7FFF)  # negative floats count down as their magnitude grows


def float_of_keys(keys: np.ndarray) -> np.ndarray:
    """float32 values of int16 keys (the inverse of _key, then the bfloat16 pattern widened)."""
    k = keys.astype(np.int32)
    bits = np.where(k >= 0, k, k ^ 0x7FFF).astype(np.uint32) & 0xFFFF
    return (bits << 16).view(np.float32)


@njit(inline="always")
def _push(keys, found, r, key, j):
    """Replace the root of row r's min-heap (its smallest key) by (key, j) and sift it down."""
    size = keys.shape[1]
    p = 0
    while True:
        c = 2 * p + 1
        if c >= size:
            break
        if c + 1 < size and keys[r, c + 1] < keys[r, c]:
            c += 1
        if keys[r, c] >= key:
            break
        keys[r, p] = keys[r, c]
        found[r, p] = found[r, c]
        p = c
    keys[r, p] = key
    found[r, p] = j


@njit(parallel=True, cache=True)
def offer_rows(bits, a, b, keys, found, diagonal):
    """Offer block bits[i, j] (rows a+i, columns b+j) to each row's heap; on the diagonal, not the row itself."""
    rows, cols = bits.shape
    run = 64
    for i in prange(rows):
        r = a + i
        for j0 in range(0, cols, run):
            j1 = min(cols, j0 + run)
            root = keys[r, 0]
            if root >= 0:  # a positive root's key is its raw pattern: the run's largest pattern decides
                top = bits[i, j0]
                for j in range(j0 + 1, j1):
                    top = max(top, bits[i, j])
                if top <= root:
                    continue
            for j in range(j0, j1):
                key = _key(bits[i, j])
                if key > keys[r, 0] and not (diagonal and i == j):
                    _push(keys, found, r, key, b + j)


@njit(parallel=True, cache=True)
def offer_columns(bits, a, b, keys, found):
    """Offer block bits[i, j] to the heaps of the columns' rows b+j (the upper triangle's other half), each
    thread walking a band of 32 columns down the block so that no two threads touch one heap."""
    rows, cols = bits.shape
    run = 32
    for band in prange((cols + run - 1) // run):
        j0 = band * run
        j1 = min(cols, j0 + run)
        for i in range(rows):
            hit = False
            for j in range(j0, j1):
                hit |= _key(bits[i, j]) > keys[b + j, 0]
            if not hit:
                continue
            for j in range(j0, j1):
                key = _key(bits[i, j])
                if key > keys[b + j, 0]:
                    _push(keys, found, b + j, key, a + i)


@njit(parallel=True, fastmath=True, cache=True)
def rescore(x, found, out):
    """out[i, t] = float32 x[i] . x[found[i, t]]; -inf where no candidate was found."""
    n, keep = found.shape
    for i in prange(n):
        for t in range(keep):
            j = found[i, t]
            if j < 0:
                out[i, t] = -np.inf
                continue
            acc = np.float32(0.0)
            for d in range(x.shape[1]):
                acc += x[i, d] * x[j, d]
            out[i, t] = acc
