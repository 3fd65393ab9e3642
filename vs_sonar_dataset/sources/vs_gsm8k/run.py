"""The generate run: plan requests, call the backend, parse, deduplicate, write candidate shards.

Resumability: request i depends only on (run seed, i), and shard k holds the accepted rows of the fixed
block of requests [k*R, (k+1)*R) sent in fixed batches, so a resumed run re-sends exactly the requests an
uninterrupted run sends next. Each shard is committed to the manifest together with the running counts;
on resume the dedup set is rebuilt from the committed shards and the counts are read back, so a run killed
at any point and resumed ends with exactly the rows (and counts) of an uninterrupted run.

The run stops at exactly `num_candidates` accepted rows: candidates after the one that reaches the target
are not examined, and later requests are not sent.

Output directory: shard-NNNNN.parquet (CANDIDATE_SCHEMA) + manifest.json (config = the resolved config,
stats = the counts below) + summary.json (the same counts, status and timing, for people).

Counts: target; requests (sent); completions_truncated (stopped at max_tokens); candidates_returned (items
in responses that parsed); accepted; unused_after_target (valid items after the one that reached the
target); rejected {reason: n} (`truncated`, `malformed_json` and `engine_error` count responses, the others
items). So candidates_returned = accepted + unused_after_target + the item-level rejections (duplicates
included).
"""

import json
import logging
import time
from pathlib import Path

import pyarrow as pa
from tqdm import tqdm

from ...core.errors import UserError
from ...core.outputs import check_output_dir
from ...core.schema import CANDIDATE_SCHEMA
from ...core.shards import MANIFEST, ShardWriter, iter_shards, read_manifest, write_json_atomic
from ...core.textnorm import text_id
from .backends import make_backend, recorded_revision, sampling_dict
from .config import GenerateConfig
from .parse import DUPLICATE, ENGINE_ERROR, REASONS, Limits, ResponseParser
from .problems import Gsm8kSource, Problem, fingerprint
from .prompt import TEMPLATE_VERSION, plan_request, response_schema, template_hash

log = logging.getLogger("vs_sonar.generate")
SUMMARY = "summary.json"


def resolved_config(config: GenerateConfig, source: Gsm8kSource, problems: list[Problem]) -> dict:
    """Everything that decides the output: a resumed run must present exactly this again."""
    return {
        "generate": config.to_dict(),
        "generator_revision": recorded_revision(config),
        "template_version": TEMPLATE_VERSION,
        "template_hash": template_hash(),
        "problems": {**source.describe(), "count": len(problems), "sha256": fingerprint(problems)},
    }


def empty_stats(config: GenerateConfig) -> dict:
    return {"target": config.num_candidates, "requests": 0, "completions_truncated": 0,
            "candidates_returned": 0, "accepted": 0, "unused_after_target": 0,
            "rejected": {reason: 0 for reason in REASONS}}


def planned_request(config: GenerateConfig, problems: list[Problem], index: int):
    """Request `index` of a run: its seed problems, prompt and seed follow from the config alone."""
    return plan_request(index, config.seed, problems, config.min_problems, config.max_problems,
                        config.candidates_per_request, config.min_chars, config.max_chars)


def run_schema(config: GenerateConfig) -> dict:
    """The JSON schema every completion of the run is constrained to."""
    return response_schema(config.candidates_per_request, config.min_chars, config.max_chars)


class Generator:
    """Turns request blocks into accepted rows, with dedup against everything accepted so far."""

    def __init__(self, config: GenerateConfig, resolved: dict, problems: list[Problem], backend,
                 seen: set[str], stats: dict):
        self.config, self.problems, self.backend = config, problems, backend
        self.seen, self.stats = seen, stats
        self.parser = ResponseParser(Limits(config.candidates_per_request, config.min_chars, config.max_chars,
                                            config.copied_ngram, config.min_english_word_share,
                                            config.reject_cut_texts))
        self.schema = run_schema(config)
        self.row_constants = {
            "generator_model": config.model_name or config.model,
            "generator_revision": resolved["generator_revision"],
            "sampling_params": json.dumps(sampling_dict(config), sort_keys=True),
            "template_hash": resolved["template_hash"],
        }

    @property
    def done(self) -> bool:
        return self.stats["accepted"] >= self.config.num_candidates

    def run_block(self, start: int, stop: int, on_batch=None) -> list[dict]:
        c = self.config
        rows: list[dict] = []
        for batch_start in range(start, stop, c.batch_size):
            if self.done:
                break
            requests = [planned_request(c, self.problems, i)
                        for i in range(batch_start, min(batch_start + c.batch_size, stop))]
            completions = self.backend.complete(requests, self.schema)
            self.stats["requests"] += len(requests)
            for request, completion in zip(requests, completions):
                if self.done:
                    break
                self._take(request, completion, rows)
            if on_batch:
                on_batch()
        return rows

    def _take(self, request, completion, rows: list[dict]) -> None:
        stats, rejected = self.stats, self.stats["rejected"]
        if completion.error:
            rejected[ENGINE_ERROR] = rejected.get(ENGINE_ERROR, 0) + 1
            log.warning("request %d rejected: %s", request.index, completion.error)
            return
        stats["completions_truncated"] += completion.truncated
        result = self.parser.parse(completion.text, request.problems, completion.truncated)
        stats["candidates_returned"] += result.returned
        for reason, count in result.rejected.items():
            rejected[reason] = rejected.get(reason, 0) + count  # a run resumed from older code lacks new reasons
        for position, candidate in enumerate(result.candidates):
            if self.done:  # deterministic truncation at the target
                stats["unused_after_target"] += len(result.candidates) - position
                return
            row_id = text_id(candidate.text)
            if row_id in self.seen:
                rejected[DUPLICATE] += 1
                continue
            self.seen.add(row_id)
            stats["accepted"] += 1
            rows.append({"id": row_id, "instruction": candidate.text, "probability": candidate.probability,
                         "seed_problem_ids": [p.id for p in request.problems], **self.row_constants,
                         "request_seed": request.seed})


def _summary(out_dir: Path, stats: dict, status: str, shards: int, elapsed: float, accepted_here: int) -> dict:
    summary = {"status": status, "shards": shards, **stats,
               "rejected_total": sum(stats["rejected"].values()),
               "this_invocation": {"wall_s": round(elapsed, 3), "accepted": accepted_here,
                                   "accepted_per_s": round(accepted_here / elapsed, 3) if elapsed > 0 else None}}
    write_json_atomic(out_dir / SUMMARY, summary)
    return summary


_SHORT = {"duplicate": "dup", "malformed_json": "json", "truncated": "trunc", "too_short": "short",
          "too_long": "long", "non_english": "non-en", "contains_answer": "answer", "copies_problem": "copy",
          "echoes_prompt": "echo", "probability_out_of_range": "p-range", "missing_probability": "no-p",
          "bad_probability": "bad-p", "engine_error": "engine"}


def nonzero_rejections(rejected: dict) -> list[tuple[str, int]]:
    """The reasons that rejected anything, most frequent first (ties keep the order of `rejected`)."""
    return sorted(((reason, n) for reason, n in rejected.items() if n), key=lambda kv: -kv[1])


def _postfix(stats: dict) -> str:
    parts = [f"{_SHORT.get(r, r)}={n}" for r, n in nonzero_rejections(stats["rejected"])]  # unknown: full name
    return "rejected: " + (" ".join(parts) if parts else "none")


def run_generate(config: GenerateConfig, out_dir: str | Path, *, progress: bool = True,
                 backend_factory=make_backend) -> dict:
    """Run (or resume) a generate run into out_dir and return its summary."""
    out_dir = check_output_dir(out_dir, "candidates")  # before GSM8K and the engine load
    started = time.monotonic()
    source = Gsm8kSource(config.gsm8k, config.splits)
    problems = source.load()
    if len(problems) < config.max_problems:
        raise UserError(f"GSM8K: {len(problems)} problems, fewer than max_problems={config.max_problems}")
    resolved = resolved_config(config, source, problems)

    if (out_dir / MANIFEST).exists():
        manifest = read_manifest(out_dir, "candidates")
        if manifest.complete and manifest.config == resolved:
            log.info("%s: already complete (%d candidates in %d shards)", out_dir, manifest.rows,
                     len(manifest.shards))
            if (out_dir / SUMMARY).is_file():  # keep the summary of the run that did the work
                return json.loads((out_dir / SUMMARY).read_text())
            return _summary(out_dir, manifest.stats, _status(manifest.stats), len(manifest.shards), 0.0, 0)
        if not manifest.shards and manifest.config != resolved:
            # a run that stopped before its first shard holds nothing: let a corrected config start over
            log.info("%s: replacing an empty run that had another configuration", out_dir)
            (out_dir / MANIFEST).unlink()
            (out_dir / SUMMARY).unlink(missing_ok=True)
    writer = ShardWriter(out_dir, "candidates", resolved)  # refuses a directory holding another config
    stats = writer.manifest.stats or empty_stats(config)
    seen = {row_id for table in iter_shards(out_dir, "candidates") for row_id in table.column("id").to_pylist()}
    if len(seen) != stats["accepted"] or writer.manifest.rows != stats["accepted"]:
        raise UserError(f"{out_dir}: shards hold {writer.manifest.rows} rows ({len(seen)} distinct) but the "
                        f"manifest counts {stats['accepted']} accepted; the directory was altered")
    if writer.resumed_shards:
        log.info("%s: resuming after %d shards (%d candidates, %d requests)", out_dir, writer.resumed_shards,
                 stats["accepted"], stats["requests"])

    accepted_before = stats["accepted"]
    max_requests = config.effective_max_requests()
    block = config.requests_per_shard
    backend = None
    generator = Generator(config, resolved, problems, None, seen, stats)  # the backend starts below, if needed
    bar = tqdm(total=config.num_candidates, initial=stats["accepted"], unit=" accepted", desc="generate",
               disable=not progress, dynamic_ncols=True, smoothing=0.1)
    try:
        next_start = writer.resumed_shards * block
        if not generator.done and next_start < max_requests:  # no engine start when nothing is left to do
            backend = generator.backend = backend_factory(config)

        def on_batch():
            bar.update(stats["accepted"] - bar.n)
            bar.set_postfix_str(_postfix(stats), refresh=False)

        while not generator.done and next_start < max_requests:
            rows = generator.run_block(next_start, min(next_start + block, max_requests), on_batch)
            writer.write(pa.Table.from_pylist(rows, schema=CANDIDATE_SCHEMA), stats)
            next_start += block
            _summary(out_dir, stats, "running", len(writer.manifest.shards), time.monotonic() - started,
                     stats["accepted"] - accepted_before)
    finally:
        bar.close()
        if backend is not None:
            backend.close()
    stats["target_reached"] = generator.done
    writer.finish(stats)
    status = _status(stats)
    if status == "short":
        log.warning("%s: stopped after max_requests=%d with %d of %d candidates", out_dir, max_requests,
                    stats["accepted"], config.num_candidates)
    return _summary(out_dir, stats, status, len(writer.manifest.shards), time.monotonic() - started,
                    stats["accepted"] - accepted_before)


def _status(stats: dict) -> str:
    # every complete manifest gets target_reached from run_generate before writer.finish
    return "complete" if stats["target_reached"] else "short"
