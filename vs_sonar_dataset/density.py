"""k-NN density of each row of a split, and the sampling weights derived from it.

density(i) = mean cosine similarity of row i to its k nearest other rows of the same split (self excluded);
weight(i)  = 1 / (eps + max(density(i), 0)), normalised to sum 1 over the split: rows in sparse regions (rare
prompts) are drawn more often by a weighted sampler. The clamp at 0 keeps the weight finite and positive for a
row whose neighbours all point away from it.

Two ways to find the neighbours:
  exact  every pair, as blocked matrix products over the upper triangle of the similarity matrix (each block
         gives candidates to its rows and to its columns), keeping a running top-k per row.
  ivf    for large splits on CPU: a seeded spherical k-means (faiss) puts every row in the list of its nearest
         centroid; the rows of a list are compared with the rows of every list that one of them has among its
         `ivf_probes` nearest centroids, as one matrix product per list. It can only miss
         neighbours, so its density is never above the exact one; verify checks a seeded sample against the
         exact value within IVF_TOLERANCE.
Similarities are float32 products of unit vectors; the k values of a row are summed in float64 after sorting,
so the result does not depend on the order in which blocks or lists were visited.
"""

import numpy as np
import torch

METHOD_EXACT = "exact-blocked-cosine"
METHOD_IVF = "faiss-ivf-cosine"
EXACT_TOLERANCE = 1e-5  # verify's bound for a recomputed exact density (float32 products)
# verify's bounds for the ivf density against exact on a sample: mean and 99th percentile of |difference|
IVF_TOLERANCE = {"mean_abs": 0.01, "p99_abs": 0.1}
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
        record.update(method=METHOD_EXACT, block_rows=config.block_rows)
        top = exact_top_k(x, k, config.block_rows)
    else:
        # few large lists: each list's candidates are gathered once, and one large product beats many small
        lists = config.ivf_lists or max(16, int(np.sqrt(n)))
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


def exact_top_k(x: torch.Tensor, k: int, block_rows: int) -> torch.Tensor:
    """float32 [n, k]: each row's k largest similarities to the other rows."""
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


def exact_density_of(x: torch.Tensor, rows: np.ndarray, k: int, block_rows: int = 8192) -> np.ndarray:
    """The exact density of the given rows only, against every row of x (verify's check of the ivf method)."""
    q = x[torch.from_numpy(rows)]
    best = torch.full((len(rows), k), -torch.inf)
    for b in range(0, len(x), block_rows):
        s = q @ x[b : b + block_rows].T
        own = (rows >= b) & (rows < b + block_rows)
        s[torch.from_numpy(np.flatnonzero(own)), torch.from_numpy(rows[own] - b)] = -torch.inf
        _offer(best, slice(None), s)
    return mean_of_top(best)


def ivf_top_k(x: torch.Tensor, k: int, lists: int, probes: int, training_rows: int, seed: int) -> torch.Tensor:
    """float32 [n, k]: each row's k largest similarities to the rows of its `probes` nearest lists, at least:
    the rows of a list are compared at once with the rows of every list any of them would probe."""
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
    own = near[:, 0]
    order = np.argsort(own, kind="stable")
    bounds = np.searchsorted(own[order], np.arange(lists + 1))
    ordered = x[torch.from_numpy(order)]  # each list's rows side by side: a probed list is a slice
    best = torch.full((n, k), -torch.inf)
    for l in np.flatnonzero(np.diff(bounds)):
        # the union of the lists its rows would probe, its own first: every row sees its own nearest lists
        wanted = np.unique(near[order[bounds[l] : bounds[l + 1]]])
        probed = [l] + [j for j in wanted.tolist() if j != l]
        candidates = torch.cat([ordered[bounds[j] : bounds[j + 1]] for j in probed])
        size = int(bounds[l + 1] - bounds[l])
        step = max(1, (1 << 24) // len(candidates))  # a similarity block of at most 64 MB
        for a in range(0, size, step):
            rows = slice(bounds[l] + a, bounds[l] + min(a + step, size))
            s = ordered[rows] @ candidates.T
            s[:, a : a + step].fill_diagonal_(-torch.inf)  # the rows themselves, at the head of `candidates`
            best[rows] = s.topk(min(k, s.shape[1]), dim=1, sorted=False).values if s.shape[1] >= k else \
                torch.cat([s, torch.full((len(s), k - s.shape[1]), -torch.inf)], dim=1)
    unsorted = torch.empty_like(best)
    unsorted[torch.from_numpy(order)] = best
    return unsorted
