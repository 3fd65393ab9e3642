"""`vs-sonar run --engine ray` on the preference demo (the real all-MiniLM-L6-v2, 298 prompts), against the same
command on the local engine: the same release, byte for byte; one local Ray instance for every stage on Ray,
not left running; none of Ray's lines on the console.

Needs Ray in the main and embed environments (scripts/setup.sh --ray); skipped otherwise. About two minutes.
"""

import os
import subprocess
import sys

from vs_sonar_dataset.core.envs import REPO_ROOT
from vs_sonar_dataset.engines.ray_instance import AUTH_MODE

from .conftest import answers, needs_ray_and_embed

pytestmark = needs_ray_and_embed

CONFIG = REPO_ROOT / "configs" / "demo_preference.toml"


def run(out, *flags) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != AUTH_MODE}  # as a user's shell (no other test's Ray)
    done = subprocess.run([sys.executable, "-m", "vs_sonar_dataset.cli", "run", str(CONFIG), "--out", str(out),
                           *flags], cwd=REPO_ROOT, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


def release_files(run_dir) -> dict[str, bytes]:
    release = run_dir / "release"
    return {str(p.relative_to(release)): p.read_bytes() for p in sorted(release.rglob("*")) if p.is_file()}


def commands(run_dir, stage: str) -> list[str]:
    """The command lines logs/{stage}.log records, one per time the stage ran."""
    return [line for line in (run_dir / "logs" / f"{stage}.log").read_text().splitlines() if line.startswith("=== ")]


def test_a_run_on_ray_makes_the_local_release(tmp_path):
    run(tmp_path / "run")
    # the manifests record the model's path, which is inside the run folder: both runs use the same folder
    (tmp_path / "run").rename(tmp_path / "local")
    on_ray = run(tmp_path / "run", "--engine", "ray")
    local, ray = release_files(tmp_path / "local"), release_files(tmp_path / "run")
    assert sorted(ray) == sorted(local)
    assert [name for name in local if local[name] != ray[name]] == []

    # embed and dedup joined one instance, started by the run (its lines in logs/ray.log, not on the console)
    joined = [line.split("--address ")[1].split()[0] for stage in ("embed", "dedup")
              for line in commands(tmp_path / "run", stage)]
    assert len(joined) == 2 and len(set(joined)) == 1, joined
    ray_log = (tmp_path / "run" / "logs" / "ray.log").read_text()
    assert f"=== local Ray instance at {joined[0]}" in ray_log
    assert f"=== stopped the Ray instance at {joined[0]}" in ray_log
    console = on_ray.stdout + on_ray.stderr
    assert not [line for line in console.splitlines() if "Token authentication" in line or ".py:" in line
                or ".cc:" in line], console  # Ray's log lines name their source file
    assert not answers(joined[0]), f"the run's Ray instance at {joined[0]} still answers"  # stopped, not left behind
