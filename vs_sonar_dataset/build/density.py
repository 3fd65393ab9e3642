"""k-NN density of each row of a split, and the sampling weights derived from it.

density(i) = mean cosine similarity of row i to its k nearest other rows of the same split (self excluded);
weight(i)  = 1 / (eps + max(density(i), 0)), normalised to sum 1 over the split: rows in sparse regions (rare
prompts) are drawn more often by a weighted sampler. The clamp at 0 keeps the weight finite and positive for a
row whose neighbours all point away from it.

Two ways to find the neighbours:
  exact  every pair, as blocked matrix products over the upper triangle of the similarity matrix (each block
         gives candidates to its rows and to its columns). Where the CPU multiplies bfloat16 natively, the
         products are bfloat16, each row keeps its 2k best candidates, float32 rescores them and a bound on the
         bfloat16 rounding proves the top k exact (certified_top_k); other rows, and other CPUs, use float32.
  ivf    for large splits on CPU: a seeded spherical k-means (faiss) puts every row in the list of its nearest
         centroid, and every row is compared with the rows of its `ivf_probes` nearest lists: list by list, as
         one matrix product of the rows probing the list with the list's rows. It can only miss neighbours, so
         its density is never above the exact one; verify checks a seeded sample against the exact value within
         IVF_TOLERANCE.
Similarities kept are float32 products of unit vectors; the k values of a row are summed in float64 after
sorting, so the result does not depend on the order in which blocks or lists were visited.
"""

from pathlib import Path

import numpy as np
import torch

METHOD_EXACT = "exact-blocked-cosine"
METHOD_IVF = "faiss-ivf-cosine"
EXACT_TOLERANCE = 1e-5  # verify's bound for a recomputed exact density (float32 products)
# verify's bounds for the ivf density against exact on a sample: mean and 99th percentile of |difference|
IVF_TOLERANCE = {"mean_abs": 0.01, "p99_abs": 0.1}
# how far a bfloat16 similarity of unit vectors can lie below the float32 one: both inputs rounded to 8
# significant bits (2 * 2^-8 of sum |x_i y_i| <= 1), float32 accumulation (< 1e-4 over 1024 terms) and the
# product rounded to bfloat16 (2^-9 below 1)
BF16_ERROR = 2**-7 + 2**-9 + 1e-4
FORMULA = "weight = 1 / (eps + max(density, 0)), normalised to sum 1 within the split"


def unit_rows(vectors: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def density_weights(density: np.ndarray, eps: float) -> np.ndarray:
    """float64 weights summing to 1 (see the module docstring)."""
    w = 1.0 / (eps + np.maximum(density.astype(np.float64), 0.0))
    return w / w.sum()


def resolve_method(method: str, rows: int, index_above: int, training_rows: int) -> str:
    """auto: the index above index_above rows. A split no larger than the index's training sample is always
    compared exactly: that costs no more than training the index."""
    if rows <= training_rows:
        return "exact"
    return method if method != "auto" else ("ivf" if rows > index_above else "exact")


def knn_density(vectors: np.ndarray, config, seed: int = 0) -> tuple[np.ndarray, dict]:
    """(float32 density per row, the method record) for one split; config: the [build.density] table."""
    n = len(vectors)
    k = min(config.k, n - 1)
    method = resolve_method(config.method, n, config.index_above, config.ivf_training_rows)
    record = {"k": config.k, "k_used": max(k, 0), "eps": config.eps, "formula": FORMULA}
    if k < 1:  # a single row has no neighbours: density 0, and the weight 1 follows
        return np.zeros(n, np.float32), {**record, "method": METHOD_EXACT}
    x = unit_rows(vectors)
    if method == "exact":
        bf16 = native_bf16()
        record.update(method=METHOD_EXACT, block_rows=config.block_rows,
                      products="bfloat16, certified in float32" if bf16 else "float32")
        top = exact_top_k(x, k, config.block_rows, bf16)
    else:
        # many small lists: they follow the clusters of the space closely, so few of them hold a row's neighbours
        lists = config.ivf_lists or max(16, int(4 * np.sqrt(n)))
        lists = min(lists, n)
        probes = min(config.ivf_probes, lists)
        top = ivf_top_k(x, k, lists, probes, config.ivf_training_rows, seed)
        short = np.flatnonzero(torch.isinf(top).any(dim=1).numpy())  # probed lists held fewer than k rows
        density = mean_of_top(top)
        density[short] = exact_density_of(x, short, k)
        record.update(method=METHOD_IVF, ivf_lists=lists, ivf_probes=probes,
                      ivf_training_rows=config.ivf_training_rows, kmeans_seed=seed,
                      kmeans="faiss spherical, 10 iterations", exact_rows=len(short))
        return density, record
    return mean_of_top(top), record


def mean_of_top(top: torch.Tensor) -> np.ndarray:
    values = np.sort(top.numpy().astype(np.float64), axis=1)  # sorted: the sum is order-independent
    return values.mean(axis=1).astype(np.float32)


def _offer(best: torch.Tensor, rows: torch.Tensor | slice, s: torch.Tensor) -> None:
    """Merge the similarities s (one row per entry of `rows`, contiguous) into those rows' top lists."""
    k = best.shape[1]
    candidates = s.topk(min(k, s.shape[1]), dim=1, sorted=False).values
    best[rows] = torch.cat([best[rows], candidates], dim=1).topk(k, dim=1, sorted=False).values


def exact_top_k(x: torch.Tensor, k: int, block_rows: int, bf16: bool | None = None) -> torch.Tensor:
    """float32 [n, k]: each row's k largest similarities to the other rows. bf16: the certified bfloat16
    candidate pass (default: where the CPU multiplies bfloat16 natively), else float32 products throughout."""
    if bf16 is None:
        bf16 = native_bf16()
    return certified_top_k(x, k, block_rows)[0] if bf16 and len(x) > k + 1 else float32_top_k(x, k, block_rows)


def native_bf16() -> bool:
    """Whether this CPU has bfloat16 matrix instructions (emulated bfloat16 products are slower than float32)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def float32_top_k(x: torch.Tensor, k: int, block_rows: int) -> torch.Tensor:
    n = len(x)
    best = torch.full((n, k), -torch.inf)
    for a in range(0, n, block_rows):
        xa = x[a : a + block_rows]
        for b in range(a, n, block_rows):
            s = xa @ x[b : b + block_rows].T
            if a == b:
                s.fill_diagonal_(-torch.inf)
            _offer(best, slice(a, a + len(xa)), s)
            if b != a:  # the block's columns get the same similarities as candidates (a contiguous copy:
                # top-k along the other axis is several times slower)
                _offer(best, slice(b, b + s.shape[1]), s.T.contiguous())
    return best


def certified_top_k(x: torch.Tensor, k: int, block_rows: int) -> tuple[torch.Tensor, np.ndarray]:
    """(the top k as exact_top_k gives it, the rows recomputed in float32). The products are bfloat16 (2.6x
    float32's speed on CPUs with AVX-512 BF16) and each row keeps its 2k best candidates, which float32 rescores.
    A row's top k among them is its true top k when its k-th rescored similarity is at least the best dropped
    candidate's bfloat16 score plus BF16_ERROR (the most that score can lie below the true one); the rows
    without that proof are recomputed in float32."""
    from . import density_kernels as kernels

    n = len(x)
    keep = min(2 * k, n - 1)
    xb = x.to(torch.bfloat16)
    keys = np.full((n, keep), kernels.EMPTY, np.int16)  # per row: a min-heap of bfloat16 scores as int16 keys
    found = np.full((n, keep), -1, np.int32)  # and the rows they belong to
    for a in range(0, n, block_rows):
        xa = xb[a : a + block_rows]
        for b in range(a, n, block_rows):
            bits = (xa @ xb[b : b + block_rows].T).view(torch.int16).numpy()
            kernels.offer_rows(bits, a, b, keys, found, a == b)
            if b != a:
                kernels.offer_columns(bits, a, b, keys, found)
    rescored = np.empty((n, keep), np.float32)
    kernels.rescore(x.numpy(), found, rescored)
    top = torch.from_numpy(rescored).topk(k, dim=1).values
    dropped_at_most = kernels.float_of_keys(keys.min(axis=1)) + BF16_ERROR
    uncertain = np.flatnonzero(top[:, -1].numpy() < dropped_at_most) if keep < n - 1 else np.array([], int)
    if len(uncertain):
        top[torch.from_numpy(uncertain)] = exact_top_of(x, uncertain, k)
    return top, uncertain


def exact_top_of(x: torch.Tensor, rows: np.ndarray, k: int, block_rows: int = 8192) -> torch.Tensor:
    """float32 [len(rows), k]: the top k of the given rows only, against every row of x, in float32."""
    q = x[torch.from_numpy(rows)]
    best = torch.full((len(rows), k), -torch.inf)
    for b in range(0, len(x), block_rows):
        s = q @ x[b : b + block_rows].T
        own = (rows >= b) & (rows < b + block_rows)
        s[torch.from_numpy(np.flatnonzero(own)), torch.from_numpy(rows[own] - b)] = -torch.inf
        _offer(best, slice(None), s)
    return best


def exact_density_of(x: torch.Tensor, rows: np.ndarray, k: int, block_rows: int = 8192) -> np.ndarray:
    """The exact density of the given rows only, against every row of x (verify's check of the ivf method)."""
    return mean_of_top(exact_top_of(x, rows, k, block_rows))


def ivf_top_k(x: torch.Tensor, k: int, lists: int, probes: int, training_rows: int, seed: int) -> torch.Tensor:
    """float32 [n, k]: each row's k largest similarities to the rows of its `probes` nearest lists. Lists are
    visited in turn: the rows that probe a list are multiplied with its rows as one product, so every row is
    compared with exactly the rows it probes."""
    import faiss

    n, dim = x.shape
    sample = np.sort(np.random.default_rng(seed).choice(n, training_rows, replace=False))
    kmeans = faiss.Kmeans(dim, lists, niter=10, seed=seed, spherical=True, min_points_per_centroid=1,
                          max_points_per_centroid=10**9)
    kmeans.train(x[torch.from_numpy(sample)].numpy())
    centroids = torch.from_numpy(np.ascontiguousarray(kmeans.centroids))
    # scored with torch, not faiss: the two OpenMP pools used in turn spin against each other on a small CPU
    near = torch.cat([(x[a : a + 65536] @ centroids.T).topk(probes, dim=1).indices
                      for a in range(0, n, 65536)]).numpy()  # each row's `probes` nearest lists, nearest first
    members, member_bounds = _group(near[:, 0], lists)  # a row belongs to its nearest list
    probers, prober_bounds = _group(near.ravel(), lists)  # and probes `probes` lists (entry // probes: the row)
    probers //= probes
    rank = np.empty(n, np.int64)  # a row's column within its own list's block
    rank[members] = np.arange(n) - member_bounds[near[members, 0]]
    best = torch.full((n, k), -torch.inf)
    for l in np.flatnonzero(np.diff(member_bounds) * np.diff(prober_bounds)):
        own = members[member_bounds[l] : member_bounds[l + 1]]
        columns = x[torch.from_numpy(own)]
        queries = probers[prober_bounds[l] : prober_bounds[l + 1]]
        step = max(1, (1 << 24) // len(own))  # a similarity block of at most 64 MB
        for a in range(0, len(queries), step):
            rows = queries[a : a + step]
            s = x[torch.from_numpy(rows)] @ columns.T
            selves = np.flatnonzero(near[rows, 0] == l)  # rows of this list: not their own neighbour
            s[torch.from_numpy(selves), torch.from_numpy(rank[rows[selves]])] = -torch.inf
            picked = s.topk(min(k, s.shape[1]), dim=1, sorted=False).values
            index = torch.from_numpy(rows)
            best[index] = torch.cat([best[index], picked], dim=1).topk(k, dim=1, sorted=False).values
    return best


def _group(labels: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(positions sorted by label, stable; bounds: label l's positions are order[bounds[l]:bounds[l + 1]])."""
    order = np.argsort(labels, kind="stable")
    return order, np.searchsorted(labels[order], np.arange(count + 1))
