"""A whole pipeline run on the local engine and on the ray engine (a local Ray instance), the same config: wall time
of `vs-sonar run` as a user runs it, each stage's seconds from the run's own record (run.json), and the ratios.
The target is ray / local <= 1.3 on one machine. The stages without a ray engine (build, verify, ...) run the
same code in both. The run starts one local Ray instance as it begins: what of its start the fixtures and the
stages before the first on Ray do not hide is in the whole run's time, not in a stage's. Both runs use the same
folder (the manifests record the model's path in it).

Run it from the main environment, with Ray in every environment (scripts/setup.sh --ray):

    .venv/bin/python benchmarks/bench_ray_run.py [--config configs/demo_preference.toml]

It also says whether the two runs wrote the same release bytes.
"""

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vs_sonar_dataset.envs import REPO_ROOT
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "configs" / "demo_preference.toml")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_ray_run_") as tmp:
        tmp = Path(tmp)
        local = timed_run(args.config.resolve(), tmp / "run")
        (tmp / "run").rename(tmp / "local")
        ray = timed_run(args.config.resolve(), tmp / "run", "--engine", "ray")
        (tmp / "run").rename(tmp / "ray")
        stages = {"local": stage_seconds(tmp / "local"), "ray": stage_seconds(tmp / "ray")}
        digests = {"local": release_digests(tmp / "local"), "ray": release_digests(tmp / "ray")}
    print(f"vs-sonar run {args.config.name}: local and ray engine (a local Ray instance), seconds")
    for name in [stage.name for stage in STAGES if stage.name in stages["local"]]:
        seconds, other = stages["local"][name], stages["ray"].get(name)
        ratio = f"{other / seconds:6.2f}" if other is not None and seconds > 0 else "     -"
        print(f"  {name:<12} {seconds:8.1f} {other if other is not None else float('nan'):8.1f}  {ratio}")
    differing = sorted(name for name in digests["local"].keys() | digests["ray"].keys()
                       if digests["local"].get(name) != digests["ray"].get(name))
    print(f"  {'whole run':<12} {local:8.1f} {ray:8.1f}  {ray / local:6.2f}  (target <= 1.3)")
    print(f"  same release bytes: {'yes' if not differing else 'no: ' + ', '.join(differing[:8])}")


if __name__ == "__main__":
    main()
