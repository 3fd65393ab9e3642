"""The embed stage: candidate shards -> vector shards (candidate columns + fp32 embedding + encoder name + the
text's length in the encoder's tokens).

Candidates are read in order, `chunk_rows` at a time. Each chunk's new texts are encoded (token-budget batches
over length-sorted rows), rows with broken vectors are dropped, and the rest are written as one shard whose
manifest entry also records how many candidates were consumed. That entry is the checkpoint: a run killed at
any point resumes after the last complete shard and produces the same vectors as a run never interrupted.
Semantic dedup is the next stage (dedup/stage.py), so a new threshold reuses these vectors.

VECTORS/ layout:
    manifest.json, shard-NNNNN.parquet       (shards.ShardWriter, kind "vectors"; the candidates' columns)
    dropped/chunk-NNNNN.parquet              (dropped rows of each chunk, written before its shard)
    dropped_rows.parquet                     (all dropped rows, DROPPED_SCHEMA, written when complete)
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
from ..core.errors import UserError
from ..core.schema import embedding_type
from .batching import token_budget_batches
from .vectors import REASON_INF, REASON_NAN, REASON_ZERO, invalid_reasons

log = logging.getLogger("vs_sonar.embed")

DROPPED_DIR = "dropped"
DROPPED_FILE = "dropped_rows.parquet"
DROPPED_SCHEMA = pa.schema([
    pa.field("id", pa.string(), nullable=False),
    pa.field("input_index", pa.int64(), nullable=False),  # position among all candidate rows
    pa.field("reason", pa.string(), nullable=False),  # duplicate_id | nan | inf | zero_norm
    pa.field("duplicate_of", pa.string()),  # duplicate_id: the id of the earlier row with the same text
])
DUPLICATE_ID = "duplicate_id"
BROKEN_REASONS = (REASON_NAN, REASON_INF, REASON_ZERO)
REASONS = (DUPLICATE_ID, *BROKEN_REASONS)


def encode_texts(encoder, texts: list[str], config, lengths: list[int] | None = None) -> np.ndarray:
    """fp32 [len(texts), dim] in input order, encoded in token-budget batches of length-sorted rows
    (lengths: the texts' token counts, when the caller has them already)."""
    out = np.empty((len(texts), encoder.dim), dtype=np.float32)
    lengths = encoder.token_lengths(texts) if lengths is None else lengths
    for batch in token_budget_batches(lengths, config.tokens_per_batch, config.max_batch_rows):
        out[batch] = encoder.encode_batch([texts[i] for i in batch])
    return out


def vectors_schema(candidates: pa.Schema, dim: int) -> pa.Schema:
    """The candidates' columns, then the vector, the encoder's name and the tokens it read."""
    return pa.schema(list(candidates) + [pa.field("embedding", embedding_type(dim), nullable=False),
                                         pa.field("encoder", pa.string(), nullable=False),
                                         pa.field("text_tokens", pa.int32(), nullable=False)])


def recorded_source(candidates_config: dict) -> dict:
    """The source table a candidates folder was made with (kind included). The Verbalized-Sampling source
    records its settings as "generate", and a test's candidates may record none."""
    if "source" in candidates_config:
        return candidates_config["source"]
    return {"kind": "vs_gsm8k", **candidates_config.get("generate", {})}


def input_fingerprint(directory: Path, kind: str) -> dict:
    manifest = shards.read_manifest(directory, kind)
    if not manifest.complete:
        raise UserError(f"{directory}: the {kind} stage has not finished; resume it first")
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


def with_vectors(rows: pa.Table, vectors: np.ndarray, encoder_name: str, tokens: list[int],
                 schema: pa.Schema) -> pa.Table:
    """The rows with their vectors, the encoder's name and token counts, in `schema`."""
    embedding = schema.field("embedding")
    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    table = rows.append_column(embedding, pa.FixedSizeListArray.from_arrays(flat, type=embedding.type))
    table = table.append_column(schema.field("encoder"), pa.array([encoder_name] * rows.num_rows, pa.string()))
    table = table.append_column(schema.field("text_tokens"), pa.array(tokens, pa.int32()))
    # not a no-op: ShardWriter's check ignores schema metadata, which a candidate shard may carry; this drops it
    return table.cast(schema)


def finish_with_dropped(directory: Path, writer: shards.ShardWriter, stats: dict, schema: pa.Schema) -> shards.Manifest:
    """Join the per-shard dropped files into one, record it, and mark the output complete."""
    parts = sorted((directory / DROPPED_DIR).glob("chunk-*.parquet"))  # none when the folder is missing
    tables = [pq.read_table(p) for p in parts[:len(writer.manifest.shards)]]
    dropped = pa.concat_tables(tables) if tables else schema.empty_table()
    shards.write_parquet_atomic(dropped, directory / DROPPED_FILE)
    stats["dropped_rows_file"] = DROPPED_FILE
    stats["dropped_rows_sha256"] = shards.sha256_file(directory / DROPPED_FILE)
    manifest = writer.finish(stats)
    shutil.rmtree(directory / DROPPED_DIR, ignore_errors=True)
    return manifest


def write_dropped_part(directory: Path, writer: shards.ShardWriter, table: pa.Table) -> None:
    """The dropped rows of the shard about to be written (its manifest entry commits both)."""
    (directory / DROPPED_DIR).mkdir(exist_ok=True)
    shards.write_parquet_atomic(table, directory / DROPPED_DIR / f"chunk-{len(writer.manifest.shards):05d}.parquet")


@dataclass
class EmbedRun:
    """An embed output opened for writing: where it stands and what it already holds."""
    out_dir: Path
    candidates_dir: Path
    writer: shards.ShardWriter
    schema: pa.Schema
    text_column: str
    stats: dict
    seen: set  # ids of every earlier candidate row, written or dropped
    total_rows: int


@dataclass
class Chunk:
    """One chunk of candidates: its rows, which of them are new texts (to encode), and the repeated ones."""
    start: int  # index of its first row among all candidate rows
    table: pa.Table
    ids: list
    fresh: list  # chunk positions of the rows to encode
    dropped: list  # DROPPED_SCHEMA rows so far (repeated texts)
    texts: list  # the texts of `fresh`, in order


def open_embed(candidates_dir: str | os.PathLike, out_dir: str | os.PathLike, config,
               encoder) -> EmbedRun | shards.Manifest:
    """Check the folders, open (or resume) the output; the finished manifest when the output is complete.
    encoder: anything with the TextEncoder's name, dim and describe()."""
    candidates_dir, out_dir = Path(candidates_dir), Path(out_dir)
    if candidates_dir.resolve() == out_dir.resolve():
        raise UserError("the vectors must go to their own directory, not the candidates directory")
    candidates = shards.read_manifest(candidates_dir, "candidates")
    fingerprint = input_fingerprint(candidates_dir, "candidates")
    # the source's settings and counts travel on to the pool: the card reads them there
    run_config = {"stage": "embed", "embed": config.model_dump(mode="json"), "encoder": encoder.describe(),
                  "input": fingerprint, "source": recorded_source(candidates.config),
                  "source_stats": candidates.stats}
    schema = vectors_schema(candidates.schema, encoder.dim)
    writer = shards.ShardWriter(out_dir, "vectors", run_config, embedding_dim=encoder.dim, schema=schema,
                                text_column=candidates.text_column)
    stats = dict(writer.manifest.stats) or {"input_rows": fingerprint["rows"], "input_rows_done": 0, "rows": 0,
                                            **{f"dropped_{r}": 0 for r in REASONS}}
    if writer.manifest.complete:
        log.info("%s is complete (%d rows); nothing to do", out_dir, writer.manifest.rows)
        shutil.rmtree(out_dir / DROPPED_DIR, ignore_errors=True)  # left by a kill just after finishing
        return writer.manifest

    if writer.resumed_shards:
        log.info("resuming %s: %d candidates done", out_dir, stats["input_rows_done"])
    return EmbedRun(out_dir, candidates_dir, writer, schema, candidates.text_column, stats,
                    seen_ids(out_dir, writer.resumed_shards), fingerprint["rows"])


def seen_ids(out_dir: Path, shards_done: int) -> set[str]:
    """The ids of the candidate rows an output's first `shards_done` shards hold, written or dropped."""
    seen: set[str] = set()
    for table in shards.iter_shards(out_dir, "vectors"):
        seen.update(table.column("id").to_pylist())
    for part in sorted((out_dir / DROPPED_DIR).glob("chunk-*.parquet"))[:shards_done]:
        seen.update(pq.read_table(part, columns=["id"]).column("id").to_pylist())
    return seen


def remaining_chunks(candidates_dir: str | os.PathLike, out_dir: str | os.PathLike,
                     chunk_rows: int) -> list[tuple[int, int, list[int]]]:
    """Each chunk a run of this output still encodes, as (its first candidate row, its rows, the positions of
    its repeated texts), [] once the output is complete: where its new texts are, for whoever reads them. Found
    without opening the output (the ray engine plans its pipeline before it has the encoder's description that
    opening needs) and without keeping a text (its actors read their chunk's texts themselves)."""
    out_dir = Path(out_dir)
    done_rows, seen = 0, set()
    if (out_dir / shards.MANIFEST).is_file():
        manifest = shards.read_manifest(out_dir, "vectors")
        if manifest.complete:
            return []
        done_rows, seen = manifest.stats.get("input_rows_done", 0), seen_ids(out_dir, len(manifest.shards))
    text_column = shards.read_manifest(candidates_dir, "candidates").text_column
    plan = EmbedRun(out_dir, Path(candidates_dir), None, None, text_column, {"input_rows_done": done_rows}, seen, 0)
    return [(chunk.start, chunk.table.num_rows, sorted(set(range(chunk.table.num_rows)) - set(chunk.fresh)))
            for chunk in iter_chunks(plan, chunk_rows)]


def iter_chunks(run: EmbedRun, chunk_rows: int):
    """The chunks still to do, in order, each with its repeated texts found (this updates run.seen)."""
    for start, table in _iter_chunks(run.candidates_dir, chunk_rows, run.stats["input_rows_done"]):
        ids = table.column("id").to_pylist()
        texts = table.column(run.text_column).to_pylist()
        dropped: list[dict] = []
        fresh = []
        for position, row_id in enumerate(ids):  # the same text (after normalization) as an earlier row
            if row_id in run.seen:
                dropped.append({"id": row_id, "input_index": start + position, "reason": DUPLICATE_ID,
                                "duplicate_of": row_id})
            else:
                run.seen.add(row_id)
                fresh.append(position)
        yield Chunk(start, table, ids, fresh, dropped, [texts[p] for p in fresh])


def write_chunk(run: EmbedRun, chunk: Chunk, vectors: np.ndarray, tokens: list[int], encoder_name: str) -> None:
    """Drop the broken vectors of the chunk's fresh rows and write the rest (with their token counts) as the
    next shard (its dropped rows first: the shard's manifest entry commits both)."""
    dropped = list(chunk.dropped)
    usable, usable_rows = [], []  # chunk positions and rows of `vectors` of the usable vectors
    for row, (position, reason) in enumerate(zip(chunk.fresh, invalid_reasons(vectors))):
        if reason:
            dropped.append({"id": chunk.ids[position], "input_index": chunk.start + position, "reason": reason,
                            "duplicate_of": None})
        else:
            usable.append(position)
            usable_rows.append(row)
    table = with_vectors(chunk.table.take(pa.array(usable, type=pa.int64())), vectors[usable_rows], encoder_name,
                         [tokens[r] for r in usable_rows], run.schema)
    stats = run.stats
    stats["input_rows_done"] = chunk.start + chunk.table.num_rows
    stats["rows"] += table.num_rows
    for d in dropped:
        stats[f"dropped_{d['reason']}"] += 1
    dropped.sort(key=lambda d: d["input_index"])
    write_dropped_part(run.out_dir, run.writer, pa.Table.from_pylist(dropped, schema=DROPPED_SCHEMA))
    run.writer.write(table, stats)


def progress_bar(run: EmbedRun) -> tqdm:
    return tqdm(total=run.total_rows, initial=run.stats["input_rows_done"], unit="row", desc="embed")


def finish_embed(run: EmbedRun) -> shards.Manifest:
    manifest = finish_with_dropped(run.out_dir, run.writer, run.stats, DROPPED_SCHEMA)
    stats = run.stats
    log.info("vectors %s: %d rows of %d candidates (%s)", run.out_dir, stats["rows"], stats["input_rows_done"],
             ", ".join(f"{r}: {stats[f'dropped_{r}']}" for r in REASONS))
    return manifest


def dropped_count(stats: dict) -> int:
    return sum(stats[f"dropped_{r}"] for r in REASONS)


def run_embed(candidates_dir: str | os.PathLike, out_dir: str | os.PathLike, config, encoder) -> shards.Manifest:
    """config: the [embed] table (encoders.base.EncoderConfig); encoder: the loaded TextEncoder.
    The local engine: every chunk encoded here, in this process."""
    run = open_embed(candidates_dir, out_dir, config, encoder)
    if isinstance(run, shards.Manifest):
        return run
    bar = progress_bar(run)
    for chunk in iter_chunks(run, config.chunk_rows):
        tokens = encoder.token_lengths(chunk.texts)
        write_chunk(run, chunk, encode_texts(encoder, chunk.texts, config, tokens), tokens, encoder.name)
        bar.update(chunk.table.num_rows)
        bar.set_postfix(dropped=dropped_count(run.stats))
    bar.close()
    return finish_embed(run)
