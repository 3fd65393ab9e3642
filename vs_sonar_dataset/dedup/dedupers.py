"""Semantic dedup: a row is kept when its cosine to every row kept before it is below the threshold.

ExactDeduper compares each row with every kept row (the default; cheap on a GPU). IVFDeduper is an approximate
variant for large pools on CPU, where all pairs would take hours: see its docstring for its exact rule.

Rows are decided in input order, so the kept set depends only on the rows and their order, never on how they
are chunked, how the kept set is blocked, or where a run was resumed (up to float rounding of a cosine that
lies within ~1e-6 of the threshold). Each chunk is compared with the kept set as blocked matrix products on
the device in use, then with itself; only the few rows that have an earlier near-twin inside the chunk are
resolved one by one.
"""

import numpy as np
import torch

from .rule import METHOD_IVF, DedupResult, concat_results, decide, exact_method, pair_cosines, resolve_method


def unit_rows(vectors: np.ndarray | torch.Tensor, device: str | torch.device = "cpu") -> torch.Tensor:
    x = torch.as_tensor(vectors, dtype=torch.float32).to(device)
    return x / x.norm(dim=1, keepdim=True)


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
        return exact_method()

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
            self._append(unit_rows(vectors, self.device))

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
        if len(vectors) == 0:
            return DedupResult.empty()
        x = unit_rows(vectors, self.device)
        best, best_index = (t.cpu().numpy() for t in self._best_in_kept(x))
        # earlier near-twins inside the chunk: (row, earlier row, cosine) with cosine >= threshold
        inner = torch.tril(x @ x.T, diagonal=-1)
        rows, earlier = torch.nonzero(inner >= self.threshold, as_tuple=True)
        twin_cos = inner[rows, earlier].cpu().numpy()
        twins: dict[int, list[tuple[int, float]]] = {}
        for r, e, c in zip(rows.tolist(), earlier.tolist(), twin_cos.tolist()):
            twins.setdefault(r, []).append((e, c))
        result = decide(best, best_index, twins, self.threshold, limit, self.size)
        self._append(x[:result.processed][torch.as_tensor(result.keep, device=self.device)])
        dropped = np.flatnonzero(~result.keep)
        if len(dropped):  # every kept row is in _kept now, the chunk's own included
            result.cosine[dropped] = pair_cosines(x[torch.as_tensor(dropped, device=self.device)].cpu().numpy(),
                                                  self._kept[torch.as_tensor(result.duplicate_of[dropped],
                                                                             device=self.device)].cpu().numpy())
        return result


# kept rows in the lists are stored in half precision: 1M x 1024 takes 2 GB instead of 4. A stored component
# moves by at most 2^-11 of itself, so a cosine moves by about 1e-5 for 1024-d unit rows (2^-11 at worst).
LIST_DTYPE = torch.float16
EXACT_PHASE_CHUNK = 4096  # rows per exact-phase call (decisions do not depend on it)


def train_centroids(head: np.ndarray, nlist: int, seed: int, iterations: int) -> np.ndarray:
    """float32 [nlist, dim]: faiss spherical k-means (fixed seed) on the unit rows `head`."""
    import faiss

    kmeans = faiss.Kmeans(head.shape[1], nlist, niter=iterations, seed=seed, spherical=True,
                          min_points_per_centroid=1, max_points_per_centroid=10**9)
    kmeans.train(np.ascontiguousarray(head, dtype=np.float32))
    return np.ascontiguousarray(kmeans.centroids)


def probe_lists(x: torch.Tensor, centroids: torch.Tensor, nprobe: int) -> np.ndarray:
    """int64 [rows, nprobe]: each unit row's nearest centroids first; column 0 is the row's own list."""
    # scored with torch, not faiss: faiss's and torch's OpenMP thread pools, used in turn chunk after chunk,
    # spin-wait against each other on a small CPU (measured 14x slower than torch alone)
    return (x @ centroids.T).topk(nprobe, dim=1).indices.numpy()


class IVFDeduper:
    """Approximate dedup for large pools on CPU: same interface and decision order as ExactDeduper.

    The first `train_rows` kept rows are decided exactly (an ExactDeduper). Once that many rows are kept, a
    faiss spherical k-means (fixed seed) on exactly those rows gives `nlist` centroids; every kept row goes
    to the list of its nearest centroid, and each later row is compared only with the kept rows in the
    `nprobe` lists whose centroids are nearest to it. So the rule for a row decided after training is:

        it duplicates the earlier kept row of highest cosine among those whose list is one of its nprobe
        probed lists, when that cosine reaches the threshold; else it is kept.

    That rule names no chunk: rows of the same chunk are compared with each other under the same list
    restriction, so the kept set does not depend on chunking or on where a run was resumed (add_kept
    retrains on the same first rows). Caveats: float rounding of a cosine within ~1e-6 of the threshold,
    or of a centroid score within ~1e-6 of a neighbour's, may decide differently under another chunking;
    the k-means may round differently on another machine or thread count, so resume on the same machine.
    A duplicate whose kept twin sits outside the probed lists is kept (the approximation: lower recall).
    Listed rows are stored in half precision (LIST_DTYPE), and a later row meets its own chunk's earlier rows
    at that precision too, so a cosine to them may be off by ~1e-5: a row that close to the threshold may be
    decided otherwise than by exact dedup.

    faiss trains the centroids; the lists are torch tensors scanned list by list as matrix products (all
    rows of a chunk that probe a list at once). faiss's own IndexIVFFlat scans one query at a time, which is
    memory-bound here (~1.5 GMAC/s on 2 cores against ~30 for the grouped products), so bigger chunks help.
    Defaults (1024 lists, 24 probed, trained on 50k rows): see benchmarks/bench_dedup.py --approx for the
    recall of the duplicates exact dedup finds, time and memory. Memory: the kept vectors at 2 bytes a
    component plus at most 1/4 growth slack per list.
    """

    def __init__(self, dim: int, threshold: float = 0.95, block_rows: int = 16384, nlist: int = 1024,
                 nprobe: int = 24, train_rows: int = 50_000, seed: int = 0, kmeans_iterations: int = 10):
        if not 1 <= nprobe <= nlist <= train_rows:
            raise ValueError(f"need 1 <= nprobe ({nprobe}) <= nlist ({nlist}) <= train_rows ({train_rows})")
        self.dim = dim
        self.threshold = float(threshold)
        self.nlist, self.nprobe, self.train_rows = int(nlist), int(nprobe), int(train_rows)
        self.seed, self.kmeans_iterations = int(seed), int(kmeans_iterations)
        self._exact: ExactDeduper | None = ExactDeduper(dim, threshold, block_rows, "cpu")
        self._centroids: torch.Tensor | None = None  # [nlist, dim] unit rows, once trained
        self._lists: list[torch.Tensor] = []  # per list: kept unit vectors (capacity >= size)
        self._list_ids: list[torch.Tensor] = []  # per list: their global kept indices, ascending
        self._list_sizes = np.zeros(nlist, dtype=np.int64)
        self._own = np.zeros(0, dtype=np.int64)  # per kept row (once trained): its list
        self.size = 0

    def method(self) -> dict:
        return {"method": METHOD_IVF, "nlist": self.nlist, "nprobe": self.nprobe,
                "training_rows": self.train_rows, "exact_before_training": True, "kmeans_seed": self.seed,
                "list_dtype": str(LIST_DTYPE).removeprefix("torch."),
                "kmeans": "faiss spherical", "kmeans_iterations": self.kmeans_iterations,
                "rule": "after the first training_rows kept rows, a row is compared only with the kept rows in "
                        "the nprobe lists whose centroids are nearest to it"}

    # -- state -------------------------------------------------------------------------------------------

    def _train(self) -> None:
        head = self._exact._kept[: self.train_rows].numpy()
        self._centroids = torch.from_numpy(train_centroids(head, self.nlist, self.seed, self.kmeans_iterations))
        self._lists = [torch.empty((0, self.dim), dtype=LIST_DTYPE) for _ in range(self.nlist)]
        self._list_ids = [torch.empty(0, dtype=torch.int64) for _ in range(self.nlist)]
        size, self.size, self._own = self.size, 0, np.zeros(0, dtype=np.int64)
        x = torch.from_numpy(head.copy())
        self._exact = None  # frees the exact phase's buffer
        self._append(x, self._probes(x)[:, 0])
        assert self.size == size

    def _probes(self, x: torch.Tensor) -> np.ndarray:
        return probe_lists(x, self._centroids, self.nprobe)

    def _append(self, x: torch.Tensor, lists: np.ndarray) -> None:
        order = np.argsort(lists, kind="stable")  # stable: ids stay ascending inside each list
        bounds = np.searchsorted(lists[order], np.arange(self.nlist + 1))
        for l in np.flatnonzero(np.diff(bounds)):
            rows = torch.from_numpy(order[bounds[l]:bounds[l + 1]])
            size, need = int(self._list_sizes[l]), int(self._list_sizes[l]) + len(rows)
            if need > self._lists[l].shape[0]:  # grow by 1/4: small slack, still amortized linear
                grown = torch.empty((max(need, self._lists[l].shape[0] * 5 // 4 + 16), self.dim),
                                    dtype=LIST_DTYPE)
                grown[:size] = self._lists[l][:size]
                self._lists[l] = grown
                grown_ids = torch.empty(grown.shape[0], dtype=torch.int64)
                grown_ids[:size] = self._list_ids[l][:size]
                self._list_ids[l] = grown_ids
            self._lists[l][size:need] = x[rows]
            self._list_ids[l][size:need] = rows + self.size
            self._list_sizes[l] = need
        self.size += len(x)
        self._own = np.concatenate([self._own, lists])

    def add_kept(self, vectors: np.ndarray) -> None:
        """Load rows kept by an earlier run (resume), in their kept order."""
        vectors = np.asarray(vectors)
        if self._exact is not None:
            head = vectors[: self.train_rows - self.size]
            self._exact.add_kept(head)
            self.size = self._exact.size
            vectors = vectors[len(head):]
            if self.size >= self.train_rows:
                self._train()
        if len(vectors):
            x = unit_rows(vectors)
            self._append(x, self._probes(x)[:, 0])

    # -- decisions ---------------------------------------------------------------------------------------

    def process(self, vectors: np.ndarray, limit: int | None = None) -> DedupResult:
        """Decide each row in order, keeping at most `limit` more rows (then stop)."""
        vectors = np.asarray(vectors)
        parts = []
        if self._exact is not None:
            # in sub-chunks: the exact deduper's in-chunk similarity matrix is chunk_rows² floats
            for start in range(0, len(vectors), EXACT_PHASE_CHUNK):
                room = self.train_rows - self._exact.size
                left = None if limit is None else limit - sum(int(p.keep.sum()) for p in parts)
                if room <= 0 or (left is not None and left <= 0):
                    break
                parts.append(self._exact.process(vectors[start:start + EXACT_PHASE_CHUNK],
                                                 limit=room if left is None else min(left, room)))
                if parts[-1].processed < len(vectors[start:start + EXACT_PHASE_CHUNK]):
                    break
            head = concat_results(parts)
            parts = [head]
            self.size = self._exact.size
            if self.size >= self.train_rows:
                self._train()
            kept_head = int(head.keep.sum())
            limit = None if limit is None else limit - kept_head
            if head.processed == len(vectors) or (limit is not None and limit <= 0):
                return head
            vectors = vectors[head.processed:]
        parts.append(self._process_listed(vectors, limit))
        return concat_results(parts)

    def _process_listed(self, vectors: np.ndarray, limit: int | None) -> DedupResult:
        n = len(vectors)
        if n == 0:
            return DedupResult.empty()
        x = unit_rows(vectors)
        probes = self._probes(x)
        own = probes[:, 0]
        best = torch.full((n,), -2.0)
        best_id = torch.full((n,), np.iinfo(np.int64).max, dtype=torch.int64)
        twins: dict[int, list[tuple[int, float]]] = {}
        # rows grouped by probed list; members: chunk rows whose own list it is
        flat = probes.reshape(-1)
        order = np.argsort(flat, kind="stable")
        askers_all = order // self.nprobe
        bounds = np.searchsorted(flat[order], np.arange(self.nlist + 1))
        own_order = np.argsort(own, kind="stable")
        own_bounds = np.searchsorted(own[own_order], np.arange(self.nlist + 1))
        for l in np.flatnonzero(np.diff(bounds)):
            askers = torch.from_numpy(askers_all[bounds[l]:bounds[l + 1]])  # ascending
            q = x[askers]
            size = int(self._list_sizes[l])
            if size:
                # fp32 products of the fp16-stored rows: fast wherever fp32 matmul is
                value, index = (q @ self._lists[l][:size].float().T).max(dim=1)  # first max: lowest id
                ids = self._list_ids[l][index]
                current, current_id = best[askers], best_id[askers]
                better = (value > current) | ((value == current) & (ids < current_id))
                best[askers] = torch.where(better, value, current)
                best_id[askers] = torch.where(better, ids, current_id)
            members = own_order[own_bounds[l]:own_bounds[l + 1]]
            if len(members) and len(askers) > 1:
                # members at the lists' precision: the rule is the same whether a twin is listed yet or not
                cos = q @ x[torch.from_numpy(members)].to(LIST_DTYPE).float().T
                earlier = torch.from_numpy(members)[None, :] < askers[:, None]
                a, m = torch.nonzero((cos >= self.threshold) & earlier, as_tuple=True)
                for r, e, c in zip(askers[a].tolist(), members[m.numpy()].tolist(), cos[a, m].tolist()):
                    twins.setdefault(r, []).append((e, c))
        result = decide(best.numpy(), best_id.numpy(), twins, self.threshold, limit, self.size)
        rows = torch.from_numpy(np.flatnonzero(result.keep))
        self._append(x[rows], own[rows.numpy()])
        dropped = np.flatnonzero(~result.keep)
        if len(dropped):  # compared with the listed (half precision) copy of the kept row: record that cosine
            result.cosine[dropped] = pair_cosines(x[torch.from_numpy(dropped)].numpy(),
                                                  self._listed_rows(result.duplicate_of[dropped]))
        return result

    def _listed_rows(self, ids: np.ndarray) -> np.ndarray:
        """float32 [len(ids), dim]: the listed copies of kept rows, by kept index."""
        rows = np.empty((len(ids), self.dim), dtype=np.float32)
        for n, i in enumerate(ids.tolist()):
            l = int(self._own[i])
            position = int(np.searchsorted(self._list_ids[l][: self._list_sizes[l]].numpy(), i))
            rows[n] = self._lists[l][position].float().numpy()
        return rows


def make_deduper(method: str, dim: int, threshold: float, block_rows: int, device: str,
                 expected_rows: int | None = None, ivf: dict | None = None):
    """ivf: IVFDeduper's nlist / nprobe / train_rows, when the method resolves to ivf."""
    method = resolve_method(method, device, expected_rows)
    if method == "exact":
        return ExactDeduper(dim, threshold, block_rows, device)
    if method == "ivf":
        return IVFDeduper(dim, threshold, block_rows, **(ivf or {}))
    raise ValueError(f"unknown dedup method {method!r}")
