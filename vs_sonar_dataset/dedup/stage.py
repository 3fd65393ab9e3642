"""The dedup stage: vector shards -> pool shards, dropping rows whose vector duplicates a kept row.

Vector shards are read in order; each is decided by the deduper (dedupers.py: a row is kept when its cosine to
every earlier kept row is below the threshold) and its kept rows are written as one pool shard. The ray engine
(engines/ray_dedup.py) computes the cosines elsewhere and writes through the same open_dedup, write_decisions
and finish_dedup. The shard's
manifest entry is the checkpoint: a resumed run reloads the kept vectors and continues with the next vector
shard, and the pool equals that of a run never interrupted. Dropped rows keep their columns, their vector, the
id of the kept row they duplicate and the cosine to it.

POOL/ layout:
    manifest.json, shard-NNNNN.parquet       (shards.ShardWriter, kind "pool"; the vectors' columns)
    dropped/chunk-NNNNN.parquet              (dropped rows of each vector shard, written before its pool shard)
    dropped_rows.parquet                     (all dropped rows, dropped_schema(), written when complete)
"""

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from ..core import shards
from ..core.devices import resolve_device
from ..core.errors import UserError
from ..core.schema import embedding_matrix
from ..embed.stage import DROPPED_DIR, finish_with_dropped, input_fingerprint, write_dropped_part
from .rule import DedupResult

log = logging.getLogger("vs_sonar.dedup")

DUPLICATE = "duplicate"


def dropped_schema(pool: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field("input_index", pa.int64(), nullable=False), *pool,
                      pa.field("duplicate_of", pa.string(), nullable=False),
                      pa.field("cosine", pa.float32(), nullable=False)])


@dataclass
class DedupRun:
    """A pool opened for writing: where it stands and what it already holds. Both engines decide the vector
    shards in order and hand each shard's decisions to write_decisions."""
    vectors_dir: Path
    pool_dir: Path
    config: object  # the [dedup] table
    vectors: shards.Manifest
    writer: shards.ShardWriter
    stats: dict
    kept_ids: list  # ids of the kept rows, in kept order (what duplicate_of names)
    done_shards: int  # vector shards already decided (one pool shard each)
    bar: tqdm | None = None

    def limit(self) -> int | None:
        """How many more rows may be kept."""
        return None if self.config.target_rows is None else self.config.target_rows - self.stats["kept"]


def check_dedup_input(vectors_dir, pool_dir) -> tuple[shards.Manifest, dict]:
    """(the vectors' manifest, their fingerprint): a finished vectors folder that is not the pool's and that
    keeps the vectors contract (shards.check_vectors)."""
    vectors_dir, pool_dir = Path(vectors_dir), Path(pool_dir)
    if vectors_dir.resolve() == pool_dir.resolve():
        raise UserError("the pool must go to its own directory, not the vectors directory")
    vectors = shards.read_manifest(vectors_dir, "vectors")
    shards.check_vectors(vectors_dir, vectors)
    return vectors, input_fingerprint(vectors_dir, "vectors")


def open_dedup(vectors_dir, pool_dir, config, algorithm: dict) -> "DedupRun | shards.Manifest":
    """The pool to write (or resume), or its manifest when it is complete. algorithm: the deduper's method()."""
    vectors_dir, pool_dir = Path(vectors_dir), Path(pool_dir)
    vectors, fingerprint = check_dedup_input(vectors_dir, pool_dir)
    dedup = {"method": config.method, "threshold": config.threshold, "algorithm": algorithm,
             "order": "input order; a row is kept when its cosine to every earlier kept row is below the threshold"}
    # the encoder and embed settings travel on: the card and the model checks read them from the pool
    run_config = {"stage": "dedup", "dedup": dedup, "settings": config.model_dump(mode="json"),
                  "input": fingerprint,
                  **{key: vectors.config.get(key, {}) for key in ("encoder", "embed", "source", "source_stats")}}
    writer = shards.ShardWriter(pool_dir, "pool", run_config, embedding_dim=vectors.embedding_dim,
                                schema=vectors.schema, text_column=vectors.text_column)
    stats = dict(writer.manifest.stats) or {"input_rows": fingerprint["rows"], "input_rows_done": 0, "kept": 0,
                                            f"dropped_{DUPLICATE}": 0, "target_rows": config.target_rows,
                                            "target_reached": False}
    if writer.manifest.complete:
        log.info("%s is complete (%d rows); nothing to do", pool_dir, writer.manifest.rows)
        shutil.rmtree(pool_dir / DROPPED_DIR, ignore_errors=True)  # left by a kill just after finishing
        return writer.manifest
    kept_ids = [i for path in writer.manifest.shards  # resume: what earlier runs kept
                for i in pq.read_table(pool_dir / path["file"], columns=["id"]).column("id").to_pylist()]
    run = DedupRun(vectors_dir, pool_dir, config, vectors, writer, stats, kept_ids, writer.resumed_shards)
    run.bar = tqdm(total=fingerprint["rows"], initial=stats["input_rows_done"], unit="row", desc="dedup")
    return run


def expected_rows(config, input_rows: int) -> int:
    """The pool's size at most: what method "auto" decides by."""
    return input_rows if config.target_rows is None else min(config.target_rows, input_rows)


def write_decisions(run: DedupRun, table: pa.Table, result: DedupResult) -> None:
    """One vector shard decided (result: its first `processed` rows): its kept rows as the next pool shard,
    its duplicates as that shard's dropped part."""
    stats = run.stats
    kept_rows = np.flatnonzero(result.keep)
    run.kept_ids.extend(table.column("id").take(pa.array(kept_rows, type=pa.int64())).to_pylist())
    duplicates = np.flatnonzero(~result.keep)
    dropped = table.take(pa.array(duplicates, type=pa.int64()))
    start = stats["input_rows_done"]
    dropped = dropped.add_column(0, "input_index", pa.array(start + duplicates, pa.int64()))
    dropped = dropped.append_column("duplicate_of", pa.array([run.kept_ids[result.duplicate_of[d]]
                                                              for d in duplicates], pa.string()))
    dropped = dropped.append_column("cosine", pa.array(result.cosine[duplicates], pa.float32()))
    stats["input_rows_done"] = start + result.processed
    stats["kept"] += len(kept_rows)
    stats[f"dropped_{DUPLICATE}"] += len(duplicates)
    stats["target_reached"] = run.config.target_rows is not None and stats["kept"] >= run.config.target_rows
    write_dropped_part(run.pool_dir, run.writer, dropped.cast(dropped_schema(run.vectors.schema)))
    run.writer.write(table.take(pa.array(kept_rows, type=pa.int64())), stats)
    run.bar.update(result.processed)
    run.bar.set_postfix(kept=stats["kept"], duplicates=stats[f"dropped_{DUPLICATE}"])


def finish_dedup(run: DedupRun) -> shards.Manifest:
    run.bar.close()
    stats = run.stats
    manifest = finish_with_dropped(run.pool_dir, run.writer, stats, dropped_schema(run.vectors.schema))
    log.info("pool %s: %d rows kept of %d read (%d duplicates)", run.pool_dir, stats["kept"],
             stats["input_rows_done"], stats[f"dropped_{DUPLICATE}"])
    if run.config.target_rows is not None and not stats["target_reached"]:
        log.warning("the pool holds %d rows, short of target_rows=%d: make more candidates and re-run",
                    stats["kept"], run.config.target_rows)
    return manifest


def run_dedup(vectors_dir: str | os.PathLike, pool_dir: str | os.PathLike, config) -> shards.Manifest:
    """config: the [dedup] table (config.DedupConfig). The local engine: every shard decided here."""
    from .dedupers import make_deduper  # torch, which the ray engine's driver does without

    vectors, fingerprint = check_dedup_input(vectors_dir, pool_dir)
    device = resolve_device(config.device)
    deduper = make_deduper(config.method, vectors.embedding_dim, config.threshold, config.block_rows, device,
                           expected_rows(config, fingerprint["rows"]), ivf=ivf_settings(config))
    run = open_dedup(vectors_dir, pool_dir, config, deduper.method())
    if isinstance(run, shards.Manifest):
        return run
    for table in shards.iter_shards(pool_dir, "pool"):  # resume: reload what earlier runs kept
        deduper.add_kept(embedding_matrix(table))
    for index, table in enumerate(shards.iter_shards(vectors_dir, "vectors")):
        if index < run.done_shards:
            continue
        if run.stats["target_reached"]:
            break
        # a writable copy: the deduper hands the vectors to torch, which warns on Parquet's read-only buffers
        write_decisions(run, table, deduper.process(embedding_matrix(table).copy(), limit=run.limit()))
    return finish_dedup(run)


def ivf_settings(config) -> dict:
    return {"nlist": config.ivf_lists, "nprobe": config.ivf_probes, "train_rows": config.ivf_training_rows}
