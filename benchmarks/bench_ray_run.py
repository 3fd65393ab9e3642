"""A whole pipeline run on the local engine and on the ray engine (a local Ray instance), the same config: wall time
of `vs-sonar run` as a user runs it, each stage's seconds from the run's own record (run.json), and the ratios.
The target is ray / local <= 1.3 on one machine. The stages without a ray engine (build, verify, ...) run the
same code in both. The run starts one local Ray instance as it begins: what of its start the fixtures and the
stages before the first on Ray do not hide is in the whole run's time, not in a stage's. Both runs use the same
folder (the manifests record the model's path in it).

Run it from the main environment, with Ray in every environment (scripts/setup.sh --ray):

    .venv/bin/python benchmarks/bench_ray_run.py [--config configs/demo_preference.toml] [--pairs 5]

It also says whether the two runs of each pair wrote the same release bytes.
"""

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vs_sonar_dataset.core.envs import REPO_ROOT
from vs_sonar_dataset.pipeline import STAGES


def timed_run(config: Path, out: Path, *flags: str) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "vs_sonar_dataset.cli", "run", str(config), "--out", str(out),
                           *flags], cwd=REPO_ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"bench: vs-sonar run {config} {' '.join(flags)} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - started


def stage_seconds(run_dir: Path) -> dict[str, float]:
    return {name: entry["seconds"] for name, entry in json.loads((run_dir / "run.json").read_text())["stages"].items()
            if "seconds" in entry}


def release_digests(run_dir: Path) -> dict[str, str]:
    release = run_dir / "release"
    return {str(p.relative_to(release)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(release.rglob("*")) if p.is_file()}


def one_pair(config: Path, ray_first: bool) -> dict:
    """Both engines' whole-run seconds, stage seconds and release digests, in a fresh folder."""
    with tempfile.TemporaryDirectory(prefix="bench_ray_run_") as tmp:
        tmp, pair = Path(tmp), {"whole": {}, "stages": {}, "digests": {}}
        for engine in (["ray", "local"] if ray_first else ["local", "ray"]):
            flags = ["--engine", "ray"] if engine == "ray" else []
            pair["whole"][engine] = timed_run(config, tmp / "run", *flags)
            (tmp / "run").rename(tmp / engine)
            pair["stages"][engine] = stage_seconds(tmp / engine)
            pair["digests"][engine] = release_digests(tmp / engine)
        return pair


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "configs" / "demo_preference.toml")
    parser.add_argument("--pairs", type=int, default=1,
                        help="local/ray pairs to run, in alternating order; the table shows each stage's median "
                             "and the whole run of the median pair (a small config's whole run moves by 10-20%% "
                             "from run to run on a shared 2-core machine)")
    args = parser.parse_args()
    if args.pairs < 1:
        parser.error("--pairs: at least 1")

    pairs = []
    for n in range(args.pairs):
        pairs.append(one_pair(args.config.resolve(), ray_first=n % 2 == 1))
        whole = pairs[-1]["whole"]
        print(f"  pair {n + 1}: local {whole['local']:.1f} s, ray {whole['ray']:.1f} s, "
              f"ratio {whole['ray'] / whole['local']:.2f}", flush=True)
    print(f"vs-sonar run {args.config.name}: local and ray engine (a local Ray instance), seconds"
          + (f", medians of {len(pairs)} pairs" if len(pairs) > 1 else ""))
    for name in [stage.name for stage in STAGES if stage.name in pairs[0]["stages"]["local"]]:
        seconds = statistics.median(p["stages"]["local"][name] for p in pairs)
        other = statistics.median(p["stages"]["ray"].get(name, float("nan")) for p in pairs)
        print(f"  {name:<12} {seconds:8.1f} {other:8.1f}  {other / seconds if seconds > 0 else float('nan'):6.2f}")
    ratios = [p["whole"]["ray"] / p["whole"]["local"] for p in pairs]
    middle = sorted(range(len(pairs)), key=ratios.__getitem__)[len(pairs) // 2]  # the median pair (the upper one)
    print(f"  {'whole run':<12} {pairs[middle]['whole']['local']:8.1f} {pairs[middle]['whole']['ray']:8.1f}  "
          f"{ratios[middle]:6.2f}  (target <= 1.3{'; the median pair' if len(pairs) > 1 else ''})")
    differing = sorted({name for p in pairs for name in p["digests"]["local"].keys() | p["digests"]["ray"].keys()
                        if p["digests"]["local"].get(name) != p["digests"]["ray"].get(name)})
    print(f"  same release bytes: {'yes' if not differing else 'no: ' + ', '.join(differing[:8])}")


if __name__ == "__main__":
    main()
