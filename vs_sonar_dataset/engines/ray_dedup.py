"""The dedup stage on Ray Data: the same decisions, pool shards, dropped rows and manifest as the local engine,
with the cosine products computed by a pool of actors that read the vector shards themselves.

The local rule (dedup/dedupers.py) is sequential: a row is kept when its cosine to every earlier kept row is below
the threshold. It only ever needs, for each row, its earlier rows at or above the threshold (its edges), and
those do not depend on any decision. So the actors compute the edges, tile by tile: a tile is a pair of vector
shards (rows i, columns j <= i), read from the vectors folder where each actor runs, and it returns only the
pairs that reach the threshold. The driver takes the tiles in order, decides each shard's rows with the local
engine's own `decide` once all its tiles are in, and writes the pool as the local engine does (dedup/stage.py),
shard by shard. The driver holds the edges and two int64 per row, never the vectors; once the target is reached
it stops the tiles still to come.

The rule each method compares by:
    exact   every earlier row, float32 (on GPUs where the cluster has them).
    ivf     rows up to the one that makes `ivf_training_rows` kept rows are decided as exact; a k-means task
            then trains the centroids on those kept rows (the local deduper's own training), and each later
            row is compared with the earlier rows whose own list is one of its `ivf_probes` nearest lists, at
            the lists' half precision (IVFDeduper's rule). Only these pairs are multiplied.

Rows the driver has dropped cannot be anyone's nearest kept row, so a tile leaves them out once it can: the driver
writes each decided shard's kept mask to the pool folder (KEPT_MASKS_DIR, removed at the end), and an actor
multiplies only the kept columns of a shard whose mask is there (the local deduper likewise compares with kept rows
only; on 20% near-twins, the masks save a fifth of the products). A tile that comes before the mask compares all
columns: the decisions are the same either way, as `Decisions.decide` ignores edges to dropped rows.

Resume: the pool's manifest is the checkpoint, as for the local engine; a re-run reads which rows were kept
(ids only) and computes the tiles of the shards still to decide. On a cluster, the run folder must be on storage
that every node mounts at the same path: the actors read the vector shards from there.
"""

import io
import logging
import shutil
from collections import OrderedDict
from itertools import islice
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from ..core import shards
from ..core.errors import UserError
from ..core.shards import Manifest
from .ray import (CPUS_PER_ACTOR, RETRIES, actor_environment, actor_pool, actor_resources, bounded_retries,
                  finished_batches, get_started, ordered_quiet_context, pool_size, preflight, ray_session,
                  remote_user_errors)

log = logging.getLogger("vs_sonar.engines.ray")

# one edge: row a (global input index) has the earlier row b at cosine `cos` >= threshold (the float32 product the
# decision uses; `recorded`: the value a dropped row records, embed/dedup.pair_cosines)
EDGE = np.dtype([("a", "<i8"), ("b", "<i8"), ("cos", "<f4"), ("recorded", "<f4")])
TILE_ROW_BLOCK = 4096  # rows of a tile multiplied at once: bounds an actor's cosine buffer
DIAGONAL_ROW_BLOCK = 1024  # the same for a shard against itself, where each block needs the columns before it
CACHED_SHARDS = 4  # vector shards an actor keeps (a tile's row shard stays while its columns go by)
CENTROIDS_FILE = "ivf_centroids.npy"  # in the pool folder while the ivf rule runs; removed when it is complete
KEPT_MASKS_DIR = "kept_masks"  # in the pool folder while the run lasts: one bool mask per decided vector shard


def shard_layout(vectors: Manifest) -> tuple[list[str], list[int]]:
    """The vector shards' files, and the input index of each one's first row (then the total)."""
    return ([s["file"] for s in vectors.shards],
            np.concatenate([[0], np.cumsum([s["rows"] for s in vectors.shards])]).astype(int).tolist())


def kept_mask_path(pool_dir, shard: int) -> Path:
    return Path(pool_dir) / KEPT_MASKS_DIR / f"{shard:05d}.npy"


def write_kept_mask(pool_dir, shard: int, mask: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(mask, dtype=bool))
    kept_mask_path(pool_dir, shard).parent.mkdir(exist_ok=True)
    shards.write_bytes_atomic(kept_mask_path(pool_dir, shard), buffer.getvalue())


def remove_run_files(pool_dir) -> None:
    """What the ray engine keeps in the pool folder only while it runs."""
    shutil.rmtree(Path(pool_dir) / KEPT_MASKS_DIR, ignore_errors=True)
    (Path(pool_dir) / CENTROIDS_FILE).unlink(missing_ok=True)


def read_unit_rows(vectors_dir: str, file: str):
    """A vector shard's rows as float32 unit rows (the local deduper's normalisation)."""
    from ..core.schema import embedding_matrix
    from ..dedup.dedupers import unit_rows

    path = Path(vectors_dir) / file
    if not path.is_file():
        raise UserError(f"a dedup worker cannot read {path}: on a cluster the run folder must be on storage every "
                        "node mounts at the same path")
    return unit_rows(embedding_matrix(pq.read_table(path, columns=["embedding"])).copy())


class TileEdges:
    """A Ray Data actor in the embed environment: one input row is one tile (rows, columns); one output row per
    tile holds its edges as EDGE bytes. listed: None (every pair, float32), or the ivf rule's centroids file,
    nprobe and `first`, the first row it applies to (earlier rows of a tile are not compared). The arguments are
    small on purpose: Ray keeps large ones in its object store, from where a restarted actor may not get them."""

    def __init__(self, vectors_dir: str, pool_dir: str, threshold: float, device: str, threads: int,
                 listed: dict | None):
        import torch

        if device == "cpu":  # Ray gives a fractional-CPU actor one thread; use its share of cores
            torch.set_num_threads(threads)
        self.vectors_dir, self.pool_dir = vectors_dir, pool_dir
        self.files, self.offsets = shard_layout(shards.read_manifest(vectors_dir, "vectors"))
        self.threshold, self.device, self.listed = float(threshold), device, listed
        if listed is not None:
            self.centroids = torch.from_numpy(np.load(listed["centroids"]))
        self.cache: OrderedDict[int, dict] = OrderedDict()

    def _shard(self, index: int) -> dict:
        if index in self.cache:
            self.cache.move_to_end(index)
            return self.cache[index]
        from ..dedup.dedupers import LIST_DTYPE, probe_lists

        x = read_unit_rows(self.vectors_dir, self.files[index])
        shard = {"x": x.to(self.device)}
        if self.listed is not None:
            shard["probes"] = probe_lists(x, self.centroids, self.listed["nprobe"])
            shard["half"] = x.to(LIST_DTYPE)
        self.cache[index] = shard
        if len(self.cache) > CACHED_SHARDS:
            self.cache.popitem(last=False)
        return shard

    def _kept_columns(self, index: int, shard: dict) -> np.ndarray | None:
        """The positions of shard `index`'s kept rows, once the driver has decided it (else None: all rows)."""
        if "kept" not in shard:
            try:
                shard["kept"] = np.flatnonzero(np.load(kept_mask_path(self.pool_dir, index)))
            except FileNotFoundError:  # not decided yet
                return None
        return shard["kept"]

    def __call__(self, batch: dict) -> dict:
        edges = [self._edges(int(i), int(j)).tobytes() for i, j in zip(batch["rows"], batch["columns"])]
        return {"rows": batch["rows"], "columns": batch["columns"], "edges": np.array(edges, dtype=object)}

    def _edges(self, i: int, j: int) -> np.ndarray:
        rows, columns = self._shard(i), self._shard(j)
        base_a, base_b = self.offsets[i], self.offsets[j]
        first = 0 if self.listed is None else max(0, self.listed["first"] - base_a)
        kept = None if i == j else self._kept_columns(j, columns)
        if self.listed is None:
            if kept is None:
                found = self._all_pairs(rows["x"], columns["x"], first, i == j)
            else:
                import torch

                if "kept_x" not in columns:
                    columns["kept_x"] = columns["x"][torch.from_numpy(kept).to(columns["x"].device)]
                found = [(a, kept[b], cos, recorded)
                         for a, b, cos, recorded in self._all_pairs(rows["x"], columns["kept_x"], first, False)]
        else:
            found = self._listed_pairs(rows, columns, first, i == j, kept)
        out = np.empty(sum(len(a) for a, _, _, _ in found), EDGE)
        at = 0
        for columns_found in found:
            for name, values, base in zip(EDGE.names, columns_found, (base_a, base_b, 0, 0)):
                out[name][at:at + len(values)] = values + base
            at += len(columns_found[0])
        return out

    def _all_pairs(self, x, y, first: int, same: bool) -> list:
        import torch

        from ..dedup.rule import pair_cosines

        found = []
        # a shard against itself: smaller row blocks, each against the columns before its end only (half the work)
        step = DIAGONAL_ROW_BLOCK if same else TILE_ROW_BLOCK
        for start in range(first, len(x), step):
            stop = min(start + step, len(x))
            columns = y[:stop] if same else y
            cos = x[start:stop] @ columns.T
            hits = cos >= self.threshold
            if same:  # only earlier rows: b < a
                rows = torch.arange(start, stop, device=cos.device)[:, None]
                hits &= torch.arange(stop, device=cos.device)[None, :] < rows
            a, b = torch.nonzero(hits, as_tuple=True)
            found.append(((a + start).cpu().numpy(), b.cpu().numpy(), cos[a, b].cpu().numpy(),
                          pair_cosines(x[a + start].cpu().numpy(), columns[b].cpu().numpy())))
        return found

    def _listed_pairs(self, rows: dict, columns: dict, first: int, same: bool, kept: np.ndarray | None) -> list:
        """List by list, as IVFDeduper scans: the rows that probe the list times the (kept) columns it owns."""
        import torch

        from ..dedup.rule import pair_cosines

        probes = rows["probes"][first:]
        own = columns["probes"][:, 0]
        if kept is not None:  # a dropped column owns no list
            own = np.full_like(own, -1)
            own[kept] = columns["probes"][kept, 0]
        flat = probes.reshape(-1)
        order = np.argsort(flat, kind="stable")
        askers_all = order // probes.shape[1] + first
        nlist = len(self.centroids)
        bounds = np.searchsorted(flat[order], np.arange(nlist + 1))
        own_order = np.argsort(own, kind="stable")
        own_bounds = np.searchsorted(own[own_order], np.arange(nlist + 1))
        found = []
        for l in np.flatnonzero((np.diff(bounds) > 0) & (np.diff(own_bounds) > 0)):
            askers = askers_all[bounds[l]:bounds[l + 1]]
            members = own_order[own_bounds[l]:own_bounds[l + 1]]
            q, listed = rows["x"][torch.from_numpy(askers)], columns["half"][torch.from_numpy(members)].float()
            cos = q @ listed.T
            hits = cos >= self.threshold
            if same:
                hits &= torch.from_numpy(members)[None, :] < torch.from_numpy(askers)[:, None]
            a, m = torch.nonzero(hits, as_tuple=True)
            found.append((askers[a.numpy()], members[m.numpy()], cos[a, m].numpy(),
                          pair_cosines(q[a].numpy(), listed[m].numpy())))
        return found


def train_listing(vectors_dir: str, files: list[str], picks: list[tuple[int, list[int]]], nlist: int, seed: int,
                  iterations: int, threads: int) -> np.ndarray:
    """A task in the embed environment: the ivf centroids, trained as IVFDeduper trains them on the first
    kept rows (picks: (shard, rows of it) in kept order)."""
    import faiss
    import torch

    from ..dedup.dedupers import train_centroids

    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)
    head = torch.cat([read_unit_rows(vectors_dir, files[shard])[torch.as_tensor(rows)] for shard, rows in picks])
    return train_centroids(head.numpy(), nlist, seed, iterations)


class Decisions:
    """The driver's side: each row's kept index (-1: dropped or not decided), and the decisions of a range of
    rows from their edges, made by the local engine's `decide`."""

    def __init__(self, total_rows: int):
        self.kept_index = np.full(total_rows, -1, dtype=np.int64)
        self.kept_rows = np.full(total_rows, -1, dtype=np.int64)  # by kept index: the row's input index
        self.kept = 0

    def _keep(self, rows: np.ndarray) -> None:
        self.kept_index[rows] = self.kept + np.arange(len(rows))
        self.kept_rows[self.kept:self.kept + len(rows)] = rows
        self.kept += len(rows)

    def restore(self, kept_rows: np.ndarray) -> None:
        self._keep(kept_rows)

    def decide(self, edges: np.ndarray, lo: int, hi: int, threshold: float, limit: int | None):
        """Rows lo..hi-1 in order, keeping at most `limit` more: a DedupResult as the local deduper gives."""
        from ..dedup.rule import decide

        edges = edges[(edges["a"] >= lo) & (edges["a"] < hi)]
        earlier = edges[edges["b"] < lo]
        earlier = earlier[self.kept_index[earlier["b"]] >= 0]
        best = np.full(hi - lo, -2.0, dtype=np.float32)
        best_index = np.full(hi - lo, -1, dtype=np.int64)
        if len(earlier):
            # per row: the highest cosine, the earliest kept row on a tie (the local deduper's choice)
            earlier = earlier[np.lexsort((earlier["b"], -earlier["cos"], earlier["a"]))]
            head = np.r_[True, earlier["a"][1:] != earlier["a"][:-1]]
            rows = earlier["a"][head] - lo
            best[rows], best_index[rows] = earlier["cos"][head], self.kept_index[earlier["b"][head]]
        twins: dict[int, list[tuple[int, float]]] = {}
        for a, b, cos in edges[edges["b"] >= lo][["a", "b", "cos"]].tolist():
            twins.setdefault(a - lo, []).append((b - lo, cos))
        result = decide(best, best_index, twins, threshold, limit, self.kept)
        self._keep(lo + np.flatnonzero(result.keep))
        recorded = {(a, b): value for a, b, value in edges[["a", "b", "recorded"]].tolist()}
        for d in np.flatnonzero(~result.keep).tolist():
            result.cosine[d] = recorded[(lo + d, int(self.kept_rows[result.duplicate_of[d]]))]
        return result


def _kept_rows(run, offsets: list[int]) -> np.ndarray:
    """Resume: the input indices of the rows earlier runs kept (open_dedup read their ids from the pool)."""
    kept_ids, kept = set(run.kept_ids), []
    for index in range(run.done_shards):
        ids = pq.read_table(run.vectors_dir / run.vectors.shards[index]["file"], columns=["id"]).column("id")
        kept.append(offsets[index] + np.flatnonzero([i in kept_ids for i in ids.to_pylist()]))
    return np.concatenate(kept) if kept else np.zeros(0, np.int64)


def run_dedup_ray(vectors_dir, pool_dir, config, *, address: str | None = None, python: str | None = None,
                  actors: int | None = None) -> Manifest:
    """The dedup stage on Ray Data. python: the embed environment's interpreter for the actors (default: the
    environment envs.py names); actors: the pool size (default: one per GPU, else one per node)."""
    from ..dedup.rule import concat_results, exact_method, resolve_method
    from ..dedup.stage import check_dedup_input, expected_rows, finish_dedup, ivf_settings, open_dedup, write_decisions

    ray, python = preflight(python)
    vectors, fingerprint = check_dedup_input(vectors_dir, pool_dir)
    runtime_env = actor_environment(python)
    with ray_session(ray, address), remote_user_errors(ray):
        resources = actor_resources(ray, config.device)
        method = resolve_method(config.method, "cuda" if resources["num_gpus"] else "cpu",
                                expected_rows(config, fingerprint["rows"]))
        ivf = None
        if method == "ivf":  # the local ivf deduper computes on CPU
            resources["num_gpus"] = 0
            from ..dedup.dedupers import IVFDeduper  # torch; the exact rule's driver does without

            # it only names the algorithm, checks the settings and holds them; the actors do the work
            ivf = IVFDeduper(vectors.embedding_dim, config.threshold, config.block_rows, **ivf_settings(config))
        run = open_dedup(vectors_dir, pool_dir, config, exact_method() if ivf is None else ivf.method())
        remove_run_files(pool_dir)  # a stopped run's, which may be another config's
        if isinstance(run, Manifest):
            return run
        actors, threads = pool_size(ray, resources, actors)
        files, offsets = shard_layout(vectors)
        decisions = Decisions(fingerprint["rows"])
        decisions.restore(_kept_rows(run, offsets))
        pool_dir = Path(pool_dir).resolve()  # for the actors: read where they run
        for index in range(run.done_shards):
            write_kept_mask(pool_dir, index, decisions.kept_index[offsets[index]:offsets[index + 1]] >= 0)
        pool = {"vectors_dir": str(Path(vectors_dir).resolve()), "pool_dir": str(pool_dir),
                "threshold": config.threshold, "device": "cuda" if resources["num_gpus"] else "cpu",
                "threads": threads, "listed": None}

        def listing() -> dict:
            """The ivf rule's settings, once its training rows are kept: the centroids, from a task."""
            train_rows = np.flatnonzero(decisions.kept_index >= 0)[:ivf.train_rows]
            picks = []
            for shard in np.unique(np.searchsorted(offsets, train_rows, side="right") - 1).tolist():
                inside = train_rows[(train_rows >= offsets[shard]) & (train_rows < offsets[shard + 1])]
                picks.append((shard, (inside - offsets[shard]).tolist()))
            task = ray.remote(train_listing).options(runtime_env=runtime_env, max_retries=RETRIES,
                                                      num_cpus=CPUS_PER_ACTOR)
            centroids = get_started(ray, task.remote(pool["vectors_dir"], files, picks, ivf.nlist, ivf.seed,
                                              ivf.kmeans_iterations, threads), "the ivf training task")
            path = pool_dir / CENTROIDS_FILE
            buffer = io.BytesIO()
            np.save(buffer, centroids)
            shards.write_bytes_atomic(path, buffer.getvalue())
            return {"centroids": str(path), "nprobe": ivf.nprobe, "first": int(train_rows[-1]) + 1}

        if ivf is not None and decisions.kept >= ivf.train_rows:
            pool["listed"] = listing()
        log.info("ray engine: dedup (%s) of %d vector shards from shard %d by %d actor(s)", method, len(files),
                 run.done_shards, actors)
        shard, parts = run.done_shards, []  # parts: decisions of the shard's first rows, when it is split
        tables = islice(shards.iter_shards(run.vectors_dir, "vectors"), shard, None)  # to write, in order
        while shard < len(files) and not run.stats["target_reached"]:
            tiles = _tiles(ray, shard, len(files), pool, runtime_env, resources, actors)
            try:
                for i, edges in tiles:
                    lo = offsets[i] + sum(p.processed for p in parts)
                    limit = run.limit()
                    training = ivf is not None and pool["listed"] is None
                    if training:  # the exact phase ends with the training_rows-th kept row
                        room = ivf.train_rows - decisions.kept
                        limit = room if limit is None else min(limit, room)
                    parts.append(decisions.decide(edges, lo, offsets[i + 1], config.threshold, limit))
                    trained = training and decisions.kept >= ivf.train_rows
                    if trained:
                        pool["listed"] = listing()
                    finished = lo + parts[-1].processed == offsets[i + 1]
                    if finished:
                        write_kept_mask(pool_dir, i, decisions.kept_index[offsets[i]:offsets[i + 1]] >= 0)
                    if finished or (run.limit() is not None and sum(p.keep.sum() for p in parts) >= run.limit()):
                        write_decisions(run, next(tables), concat_results(parts))
                        parts, shard = [], i + 1
                    if trained or run.stats["target_reached"]:
                        break  # trained: the rows after it are compared by the ivf rule, in new tiles
            finally:
                tiles.close()
        remove_run_files(pool_dir)
        return finish_dedup(run)


def _tiles(ray, start: int, count: int, pool: dict, runtime_env: dict, resources: dict, actors: int):
    """(shard i, its edges) for i = start..count-1, in order, each once all tiles (i, 0..i) are computed."""
    ordered_quiet_context()
    items = [{"rows": i, "columns": j} for i in range(start, count) for j in range(i + 1)]
    ds = ray.data.from_items(items).map_batches(
        TileEdges, batch_size=1, batch_format="numpy", compute=actor_pool(ray, actors),
        fn_constructor_kwargs=pool, runtime_env=runtime_env, ray_remote_args_fn=bounded_retries, **resources)
    collected = []
    for batch in finished_batches(ds):
        for i, j, edges in zip(batch["rows"], batch["columns"], batch["edges"]):
            collected.append(np.frombuffer(edges, EDGE))
            if int(j) == int(i):
                yield int(i), np.concatenate(collected)
                collected = []
