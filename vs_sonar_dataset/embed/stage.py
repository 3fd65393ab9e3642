"""The embed stage: candidate shards → pool shards (candidate columns + fp32 embedding + encoder name).

Candidates are read in order, `chunk_rows` at a time. Each chunk is encoded (token-budget batches over
length-sorted rows), its broken vectors rejected, its rows deduplicated against everything kept so far, and
its kept rows written as one pool shard whose manifest entry also records how many candidates were consumed.
That entry is the checkpoint: a run killed at any point resumes after the last complete shard, reloads the
kept vectors from the shards, and produces the same pool as a run that was never interrupted.

POOL/ layout:
    manifest.json, shard-NNNNN.parquet       (shards.ShardWriter, kind "pool")
    dropped/chunk-NNNNN.parquet              (dropped rows of each chunk, written before its shard)
    dropped_rows.parquet                     (all dropped rows, DROPPED_SCHEMA, written when complete)
"""

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from .. import shards
from ..errors import UserError
from ..schema import embedding_matrix, pool_schema
from .batching import token_budget_batches
from .config import EmbedConfig
from .dedup import make_deduper
from .encoders import TextEncoder
from .vectors import REASON_INF, REASON_NAN, REASON_ZERO, invalid_reasons

log = logging.getLogger("vs_sonar.embed")

DROPPED_DIR = "dropped"
DROPPED_FILE = "dropped_rows.parquet"
DROPPED_SCHEMA = pa.schema([
    pa.field("id", pa.string(), nullable=False),
    pa.field("input_index", pa.int64(), nullable=False),  # position among all candidate rows
    pa.field("reason", pa.string(), nullable=False),  # duplicate | duplicate_id | nan | inf | zero_norm
    pa.field("duplicate_of", pa.string()),  # id of the kept row it duplicates
    pa.field("cosine", pa.float32()),  # cosine to that row (duplicate only)
])
DUPLICATE = "duplicate"
DUPLICATE_ID = "duplicate_id"
DUPLICATE_REASONS = (DUPLICATE, DUPLICATE_ID)
BROKEN_REASONS = (REASON_NAN, REASON_INF, REASON_ZERO)
REASONS = DUPLICATE_REASONS + BROKEN_REASONS


def encode_texts(encoder: TextEncoder, texts: list[str], config: EmbedConfig) -> np.ndarray:
    """fp32 [len(texts), dim] in input order, encoded in token-budget batches of length-sorted rows."""
    out = np.empty((len(texts), encoder.dim), dtype=np.float32)
    lengths = encoder.token_lengths(texts)
    for batch in token_budget_batches(lengths, config.tokens_per_batch, config.max_batch_rows):
        out[batch] = encoder.encode_batch([texts[i] for i in batch])
    return out


def _input_fingerprint(candidates_dir: Path) -> dict:
    manifest = shards.read_manifest(candidates_dir, "candidates")
    if not manifest.complete:
        log.warning("%s: the candidates run is not complete; embedding the %d rows it has",
                    candidates_dir, manifest.rows)
    return {"rows": manifest.rows, "shards_sha256": [s["sha256"] for s in manifest.shards]}


def _iter_chunks(candidates_dir: Path, chunk_rows: int, skip: int):
    """(start index, table) chunks of the candidate rows in order, from row `skip` on."""
    buffered: list[pa.Table] = []
    buffered_rows = 0
    position = 0  # index of the first buffered row
    for table in shards.iter_shards(candidates_dir, "candidates"):
        if position + buffered_rows + table.num_rows <= skip:
            position += table.num_rows
            continue
        if position < skip:  # the resume point falls inside this table (nothing is buffered before it)
            cut = skip - position
            table = table.slice(cut)
            position += cut
        buffered.append(table)
        buffered_rows += table.num_rows
        while buffered_rows >= chunk_rows:
            joined = pa.concat_tables(buffered)
            yield position, joined.slice(0, chunk_rows)
            buffered, buffered_rows, position = [joined.slice(chunk_rows)], buffered_rows - chunk_rows, \
                position + chunk_rows
    if buffered_rows:
        yield position, pa.concat_tables(buffered)


def _pool_table(kept: pa.Table, vectors: np.ndarray, encoder_name: str, schema: pa.Schema) -> pa.Table:
    """The kept candidate rows with their vectors and the encoder's name, in the pool schema."""
    embedding = schema.field("embedding")
    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    table = kept.append_column(embedding, pa.FixedSizeListArray.from_arrays(flat, type=embedding.type))
    table = table.append_column(schema.field("encoder"), pa.array([encoder_name] * kept.num_rows, pa.string()))
    # not a no-op: ShardWriter's check ignores schema metadata, which a candidate shard may carry; this drops it
    return table.cast(schema)


def _empty_stats(input_rows: int, config: EmbedConfig) -> dict:
    return {"input_rows": input_rows, "input_rows_done": 0, "kept": 0,
            **{f"dropped_{r}": 0 for r in REASONS}, "target_rows": config.target_rows, "target_reached": False}


def _finish(pool_dir: Path, writer: shards.ShardWriter, stats: dict) -> shards.Manifest:
    parts = sorted((pool_dir / DROPPED_DIR).glob("chunk-*.parquet"))  # none when the folder is missing
    expected = len(writer.manifest.shards)
    tables = [pq.read_table(p) for p in parts[:expected]]
    dropped = pa.concat_tables(tables) if tables else DROPPED_SCHEMA.empty_table()
    shards.write_parquet_atomic(dropped, pool_dir / DROPPED_FILE)
    stats["dropped_rows_file"] = DROPPED_FILE
    stats["dropped_rows_sha256"] = shards.sha256_file(pool_dir / DROPPED_FILE)
    manifest = writer.finish(stats)
    shutil.rmtree(pool_dir / DROPPED_DIR, ignore_errors=True)
    return manifest


def run_embed(candidates_dir: str | os.PathLike, pool_dir: str | os.PathLike, config: EmbedConfig,
              encoder: TextEncoder) -> shards.Manifest:
    candidates_dir, pool_dir = Path(candidates_dir), Path(pool_dir)
    if candidates_dir.resolve() == pool_dir.resolve():
        raise UserError("the pool must go to its own directory, not the candidates directory")
    fingerprint = _input_fingerprint(candidates_dir)
    # built before the run config so that the algorithm and its index parameters are recorded there
    expected_rows = fingerprint["rows"] if config.target_rows is None else min(config.target_rows,
                                                                               fingerprint["rows"])
    deduper = make_deduper(config.dedup_method, encoder.dim, config.dedup_threshold, config.dedup_block_rows,
                           encoder.device, expected_rows,
                           ivf={"nlist": config.ivf_lists, "nprobe": config.ivf_probes,
                                "train_rows": config.ivf_training_rows})
    dedup = {"method": config.dedup_method, "threshold": config.dedup_threshold, "algorithm": deduper.method(),
             "order": "input order; a row is kept when its cosine to every earlier kept row is below the threshold"}
    run_config = {"stage": "embed", "embed": config.to_json(), "encoder": encoder.describe(), "dedup": dedup,
                  "input": fingerprint}
    writer = shards.ShardWriter(pool_dir, "pool", run_config, embedding_dim=encoder.dim)
    manifest = writer.manifest
    stats = dict(manifest.stats) or _empty_stats(fingerprint["rows"], config)
    if manifest.complete:
        log.info("%s is complete (%d rows); nothing to do", pool_dir, manifest.rows)
        shutil.rmtree(pool_dir / DROPPED_DIR, ignore_errors=True)  # left by a kill just after finishing
        return manifest

    kept_ids: list[str] = []
    for table in shards.iter_shards(pool_dir, "pool"):  # resume: reload what earlier runs kept
        deduper.add_kept(embedding_matrix(table))
        kept_ids.extend(table.column("id").to_pylist())
    if writer.resumed_shards:
        log.info("resuming %s: %d candidates done, %d rows kept", pool_dir, stats["input_rows_done"], len(kept_ids))
    kept_id_set = set(kept_ids)
    (pool_dir / DROPPED_DIR).mkdir(exist_ok=True)
    schema = pool_schema(encoder.dim)

    bar = tqdm(total=fingerprint["rows"], initial=stats["input_rows_done"], unit="row", desc="embed",
               disable=False)  # the runner shows it as the stage's progress line
    for start, chunk in _iter_chunks(candidates_dir, config.chunk_rows, stats["input_rows_done"]):
        limit = None if config.target_rows is None else config.target_rows - stats["kept"]
        if limit is not None and limit <= 0:
            break
        ids = chunk.column("id").to_pylist()
        texts = chunk.column("instruction").to_pylist()
        dropped: list[dict] = []

        def drop(position, reason, duplicate_of=None, cosine=None):
            dropped.append({"id": ids[position], "input_index": start + position, "reason": reason,
                            "duplicate_of": duplicate_of, "cosine": cosine})

        fresh, seen = [], set()
        for position, row_id in enumerate(ids):  # same text (after normalization) as a kept row
            if row_id in kept_id_set or row_id in seen:
                drop(position, DUPLICATE_ID, duplicate_of=row_id)
            else:
                seen.add(row_id)
                fresh.append(position)
        vectors = encode_texts(encoder, [texts[p] for p in fresh], config)
        valid, valid_rows = [], []  # chunk positions and rows of `vectors` of the usable vectors
        for row, (position, reason) in enumerate(zip(fresh, invalid_reasons(vectors))):
            if reason:
                drop(position, reason)
            else:
                valid.append(position)
                valid_rows.append(row)
        valid_vectors = vectors[valid_rows]
        result = deduper.process(valid_vectors, limit=limit)
        stop_at = valid[result.processed] if result.processed < len(valid) else len(ids)
        kept_rows = np.flatnonzero(result.keep)  # rows of valid_vectors (and indices into valid)
        kept_positions = [valid[k] for k in kept_rows]
        kept_ids.extend(ids[p] for p in kept_positions)  # before the duplicates: they may name a row kept here
        kept_id_set.update(ids[p] for p in kept_positions)
        for k in np.flatnonzero(~result.keep):
            drop(valid[k], DUPLICATE, duplicate_of=kept_ids[result.duplicate_of[k]], cosine=float(result.cosine[k]))
        dropped = sorted((d for d in dropped if d["input_index"] < start + stop_at),
                         key=lambda d: d["input_index"])
        pool_table = _pool_table(chunk.take(pa.array(kept_positions, type=pa.int64())), valid_vectors[kept_rows],
                                 encoder.name, schema)

        stats["input_rows_done"] = start + stop_at
        stats["kept"] += len(kept_positions)
        for d in dropped:
            stats[f"dropped_{d['reason']}"] += 1
        stats["target_reached"] = config.target_rows is not None and stats["kept"] >= config.target_rows
        # the chunk's dropped rows first, then its shard: the shard's manifest entry commits both
        shards.write_parquet_atomic(pa.Table.from_pylist(dropped, schema=DROPPED_SCHEMA),
                                    pool_dir / DROPPED_DIR / f"chunk-{len(writer.manifest.shards):05d}.parquet")
        writer.write(pool_table, stats)
        bar.update(stop_at)
        bar.set_postfix(kept=stats["kept"], dropped=sum(stats[f"dropped_{r}"] for r in REASONS))
        if stats["target_reached"]:
            break
    bar.close()
    manifest = _finish(pool_dir, writer, stats)
    log.info("pool %s: %d rows kept of %d candidates read (%s)", pool_dir, stats["kept"], stats["input_rows_done"],
             ", ".join(f"{r}: {stats[f'dropped_{r}']}" for r in REASONS))
    if config.target_rows is not None and not stats["target_reached"]:
        log.warning("the pool holds %d rows, short of target_rows=%d: generate more candidates and re-run",
                    stats["kept"], config.target_rows)
    return manifest
