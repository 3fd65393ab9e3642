"""Model checks of a release: do its vectors belong to its texts, and do they decode back to them?

Read straight from the release's Parquet files (RELEASE/data/{config}/{split}-NNNNN-of-NNNNN.parquet; the
config with the most rows holds all the others), on a seeded sample:

- alignment (every encoder): re-encode each sampled text; the cosine to the stored vector must reach 0.99
  for every row (a misaligned or mis-encoded row falls far below);
- round trip (encoders with a decoder, such as SONAR's): decode each stored vector (beam search, 3-gram
  repeat blocking), re-encode the text and compare with the stored vector; a row passes at cosine ≥ 0.9, the
  sample passes at `min_pass_rate`; the cosine between unrelated rows is reported beside it (the level a
  broken decoder would reach: with small models unrelated rows can already sit near 0.9).

Writes RELEASE/model_checks.json (release.MODEL_CHECKS; `checks_run` lists the checks, `round_trip` is null
when it did not run) and returns it.
"""

import logging
import re
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..build.release import MODEL_CHECKS
from ..core.errors import UserError
from ..core.schema import embedding_matrix
from ..core.shards import write_json_atomic
from ..embed.stage import encode_texts
from ..encoders.base import EncoderConfig, TextDecoder, TextEncoder

log = logging.getLogger("vs_sonar.model_check")

_DATA_FILE = re.compile(r"^(train|validation|test)-\d{5}-of-\d{5}\.parquet$")


def largest_config_files(release: Path, text_column: str = "instruction") -> tuple[str, list[Path], list[int]]:
    """The config with the most rows: its name, its data files and their row counts (from the footers)."""
    data = release / "data"
    if not data.is_dir():
        raise UserError(f"{release}: no data/ folder; is this a release folder?")
    best: tuple[int, str, list[Path], list[int]] | None = None
    for folder in sorted(p for p in data.iterdir() if p.is_dir()):
        files = sorted(f for f in folder.iterdir() if _DATA_FILE.match(f.name))
        if not files:
            continue
        try:
            counts = [pq.ParquetFile(f).metadata.num_rows for f in files]
            names = set(pq.read_schema(files[0]).names)
        except (pa.ArrowException, OSError) as e:
            raise UserError(f"{folder}: unreadable Parquet ({e})") from None
        if not {"id", text_column, "embedding"} <= names:
            continue  # e.g. the stats config
        if best is None or sum(counts) > best[0]:
            best = (sum(counts), folder.name, files, counts)
    if best is None:
        raise UserError(f"{data}: no config with id, {text_column} and embedding columns")
    return best[1], best[2], best[3]


def encoder_in_data(release: Path, text_column: str = "instruction") -> str | None:
    """The encoder named in the first row of the largest config, if its files have an `encoder` column."""
    _, files, _ = largest_config_files(release, text_column)
    if "encoder" not in pq.read_schema(files[0]).names:
        return None
    column = pq.ParquetFile(files[0]).read_row_group(0, columns=["encoder"]).column("encoder")
    return column[0].as_py() if len(column) else None


def _unreadable(files: list[Path], e: Exception) -> UserError:
    return UserError(f"{files[0].parent}: unreadable Parquet ({e})")


def read_sample(files: list[Path], counts: list[int], picked: np.ndarray,
                text_column: str = "instruction") -> pa.Table:
    """The rows at the sorted positions `picked` of the files taken in order, holding one file at a time in
    memory (the largest config's vectors are 4 GB per million rows). Every file is read, sampled or not, so
    that an unreadable one still fails the check."""
    starts = np.cumsum([0, *counts[:-1]])
    parts = []
    for path, start, count in zip(files, starts, counts):
        low, high = np.searchsorted(picked, [start, start + count])
        try:
            table = pq.read_table(path, columns=["id", text_column, "embedding"])
        except (pa.ArrowException, OSError) as e:
            raise _unreadable(files, e) from None
        parts.append(table.take(pa.array(picked[low:high] - start, type=pa.int64())))
    try:
        table = pa.concat_tables(parts)  # refuses files of different schemas, as reading them together did
    except pa.ArrowException as e:
        raise _unreadable(files, e) from None
    if not pa.types.is_fixed_size_list(table.schema.field("embedding").type):
        raise UserError(f"{files[0].parent}: embedding is {table.schema.field('embedding').type}, "
                        "expected fixed_size_list<float32>")
    return table


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def rowwise_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(_unit(a.astype(np.float64)) * _unit(b.astype(np.float64)), axis=1)


def unrelated_baseline(vectors: np.ndarray) -> float:
    """Mean cosine of each row to the next one: rows that share nothing but the model."""
    if len(vectors) < 2:
        return float("nan")
    return float(rowwise_cosine(vectors, np.roll(vectors, 1, axis=0)).mean())


def sample_indices(n: int, sample: int | None, seed: int) -> np.ndarray:
    if sample is None or sample >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=sample, replace=False))


def _sample_size(check) -> int | None:
    """check.sample as a row count; None (or "all") means every row."""
    sample = getattr(check, "sample_rows", check.sample)
    return None if sample in (None, "all") else sample


def _round_trip(decoder: TextDecoder, encoder: TextEncoder, stored: np.ndarray, ids: list, texts: list[str],
                check, batching) -> dict:
    decoded = decoder.decode(stored, beam_size=check.beam_size, max_seq_len=check.max_seq_len,
                             batch_size=check.batch_size)
    round_cos = rowwise_cosine(encode_texts(encoder, decoded, batching), stored)
    baseline = unrelated_baseline(stored)
    pass_rate = float(np.mean(round_cos >= check.round_trip_threshold))
    p05, p50, p95 = (float(v) for v in np.percentile(round_cos, [5, 50, 95]))
    round_trip = {
        "mean": float(round_cos.mean()), "p05": p05, "p50": p50, "p95": p95,
        "pass_rate": pass_rate, "pass_threshold": check.round_trip_threshold,
        "min_pass_rate": check.min_pass_rate,
        "unrelated_baseline_mean": baseline,
        "exact_text_rate": float(np.mean([d.strip() == t.strip() for d, t in zip(decoded, texts)])),
        "examples": [{"id": i, "text": t, "decoded": d, "cosine": float(c)}
                     for i, t, d, c in list(zip(ids, texts, decoded, round_cos))[: check.examples]],
    }
    # reported, not required: with min_pass_rate the user decides what a pass is; the baseline tells how
    # much a mean cosine means for this model
    round_trip["beats_unrelated_baseline"] = bool(len(stored) < 2 or round_trip["mean"] > baseline)
    round_trip["passed"] = pass_rate >= check.min_pass_rate
    return round_trip


def run_model_checks(release: str | Path, encoder: TextEncoder, decoder: TextDecoder | None, check,
                     text_column: str = "instruction", *, batching=None) -> dict:
    """Check the release against `encoder` (loaded by the caller, with the settings the release was made with)
    and, when given, `decoder`. check: the [model_check] settings (sample, seed, thresholds, beam search);
    batching: anything with tokens_per_batch and max_batch_rows (the [embed] table), else their defaults."""
    release = Path(release)
    batching = batching or EncoderConfig.model_construct(kind="")
    started = time.monotonic()
    config_name, files, counts = largest_config_files(release, text_column)
    total = sum(counts)
    picked = sample_indices(total, _sample_size(check), check.seed)
    rows = read_sample(files, counts, picked, text_column)  # an unreadable file is reported before "no rows"
    if total == 0:
        raise UserError(f"{files[0].parent}: no rows")
    ids = rows.column("id").to_pylist()
    texts = rows.column(text_column).to_pylist()
    stored = embedding_matrix(rows)
    log.info("model checks on %d of %d rows of config %s", len(ids), total, config_name)
    if encoder.dim != stored.shape[1]:
        raise UserError(f"encoder {encoder.name} makes {encoder.dim}-d vectors, the release holds "
                        f"{stored.shape[1]}-d ones")

    align = rowwise_cosine(encode_texts(encoder, texts, batching), stored)
    alignment = {
        "threshold": check.alignment_threshold,
        "min_cosine": float(align.min()),
        "mean_cosine": float(align.mean()),
        "failures": [i for i, c in zip(ids, align) if c < check.alignment_threshold],
    }
    alignment["passed"] = not alignment["failures"]
    # the round trip needs a decoder: an encoder without one is checked on alignment alone
    round_trip = None if decoder is None else _round_trip(decoder, encoder, stored, ids, texts, check, batching)
    result = {
        "passed": alignment["passed"] and (round_trip is None or round_trip["passed"]),
        "checks_run": ["alignment"] if round_trip is None else ["alignment", "round_trip"],
        "encoder": encoder.name,
        "decoder": None if decoder is None else decoder.name,
        "config": config_name,
        "text_column": text_column,
        "sample_size": len(ids),
        "seed": check.seed,
        "alignment": alignment,
        "round_trip": round_trip,
    }  # no timings: this file is published, and the same release must give the same bytes
    write_json_atomic(release / MODEL_CHECKS, result)
    log.info("model checks of %s done in %.1f s", config_name, time.monotonic() - started)
    return result
