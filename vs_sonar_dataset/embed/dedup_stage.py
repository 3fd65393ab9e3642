"""The dedup stage: vector shards -> pool shards, dropping rows whose vector duplicates a kept row.

Vector shards are read in order; each is decided by the deduper (dedup.py: a row is kept when its cosine to
every earlier kept row is below the threshold) and its kept rows are written as one pool shard. The shard's
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
from pathlib import Path

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from .. import shards
from ..devices import resolve_device
from ..errors import UserError
from ..schema import embedding_matrix
from .dedup import make_deduper
from .stage import DROPPED_DIR, finish_with_dropped, input_fingerprint, write_dropped_part

log = logging.getLogger("vs_sonar.dedup")

DUPLICATE = "duplicate"


def dropped_schema(pool: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field("input_index", pa.int64(), nullable=False), *pool,
                      pa.field("duplicate_of", pa.string(), nullable=False),
                      pa.field("cosine", pa.float32(), nullable=False)])


def run_dedup(vectors_dir: str | os.PathLike, pool_dir: str | os.PathLike, config) -> shards.Manifest:
    """config: the [dedup] table (config.DedupConfig)."""
    vectors_dir, pool_dir = Path(vectors_dir), Path(pool_dir)
    if vectors_dir.resolve() == pool_dir.resolve():
        raise UserError("the pool must go to its own directory, not the vectors directory")
    vectors = shards.read_manifest(vectors_dir, "vectors")
    fingerprint = input_fingerprint(vectors_dir, "vectors")
    device = resolve_device(config.device)
    expected = fingerprint["rows"] if config.target_rows is None else min(config.target_rows, fingerprint["rows"])
    deduper = make_deduper(config.method, vectors.embedding_dim, config.threshold, config.block_rows, device,
                           expected, ivf={"nlist": config.ivf_lists, "nprobe": config.ivf_probes,
                                          "train_rows": config.ivf_training_rows})
    dedup = {"method": config.method, "threshold": config.threshold, "algorithm": deduper.method(),
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
    kept_ids: list[str] = []
    for table in shards.iter_shards(pool_dir, "pool"):  # resume: reload what earlier runs kept
        deduper.add_kept(embedding_matrix(table))
        kept_ids.extend(table.column("id").to_pylist())
    done_shards = writer.resumed_shards  # one pool shard per vector shard
    schema = dropped_schema(vectors.schema)

    bar = tqdm(total=fingerprint["rows"], initial=stats["input_rows_done"], unit="row", desc="dedup")
    for index, table in enumerate(shards.iter_shards(vectors_dir, "vectors")):
        if index < done_shards:
            continue
        if stats["target_reached"]:
            break
        limit = None if config.target_rows is None else config.target_rows - stats["kept"]
        # a writable copy: the deduper hands the vectors to torch, which warns on Parquet's read-only buffers
        result = deduper.process(embedding_matrix(table).copy(), limit=limit)
        kept_rows = np.flatnonzero(result.keep)
        kept_ids.extend(table.column("id").take(pa.array(kept_rows, type=pa.int64())).to_pylist())
        duplicates = np.flatnonzero(~result.keep)
        dropped = table.take(pa.array(duplicates, type=pa.int64()))
        start = stats["input_rows_done"]
        dropped = dropped.add_column(0, "input_index", pa.array(start + duplicates, pa.int64()))
        dropped = dropped.append_column("duplicate_of", pa.array([kept_ids[result.duplicate_of[d]] for d in duplicates],
                                                                 pa.string()))
        dropped = dropped.append_column("cosine", pa.array(result.cosine[duplicates], pa.float32())).cast(schema)
        stats["input_rows_done"] = start + result.processed
        stats["kept"] += len(kept_rows)
        stats[f"dropped_{DUPLICATE}"] += len(duplicates)
        stats["target_reached"] = config.target_rows is not None and stats["kept"] >= config.target_rows
        write_dropped_part(pool_dir, writer, dropped)
        writer.write(table.take(pa.array(kept_rows, type=pa.int64())), stats)
        bar.update(result.processed)
        bar.set_postfix(kept=stats["kept"], duplicates=stats[f"dropped_{DUPLICATE}"])
    bar.close()
    manifest = finish_with_dropped(pool_dir, writer, stats, schema)
    log.info("pool %s: %d rows kept of %d read (%d duplicates)", pool_dir, stats["kept"], stats["input_rows_done"],
             stats[f"dropped_{DUPLICATE}"])
    if config.target_rows is not None and not stats["target_reached"]:
        log.warning("the pool holds %d rows, short of target_rows=%d: make more candidates and re-run",
                    stats["kept"], config.target_rows)
    return manifest
