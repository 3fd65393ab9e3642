"""The whole factory end to end: `vs-sonar run` on a scaled-down copy of configs/demo.toml, every stage in its
own environment with fixture models built by the run itself."""

import json
import os
import subprocess
import sys

import pytest

from vs_sonar_dataset.envs import REPO_ROOT, SHARED_GSM8K as GSM8K

SCALE_DOWN = {  # demo.toml line -> the same setting for a run of a few minutes
    'num_candidates = 10500': 'num_candidates = 1150',
    'target_rows = 10000': 'target_rows = 1000',
    'configs = { "1k" = 1000, "5k" = 5000, "10k" = 10000 }': 'configs = { "100" = 100, "500" = 500, "1k" = 1000 }',
    'sample = 128': 'sample = 32',
}

pytestmark = pytest.mark.skipif(not GSM8K.is_dir(), reason="needs the local GSM8K copy beside the checkout")


def small_demo_config(tmp_path):
    text = (REPO_ROOT / "configs" / "demo.toml").read_text()
    for old, new in SCALE_DOWN.items():
        assert old in text, f"configs/demo.toml no longer has {old!r}"
        text = text.replace(old, new)
    path = tmp_path / "demo-small.toml"
    path.write_text(text)
    return path


def vs_sonar_run(config, run_dir, gsm8k):
    cmd = [sys.executable, "-m", "vs_sonar_dataset.cli", "run", str(config), "--out", str(run_dir),
           "--gsm8k", str(gsm8k)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, timeout=1500,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_run_resumes_after_a_failure_then_reports_up_to_date(tmp_path):
    config, run_dir = small_demo_config(tmp_path), tmp_path / "run"

    failed = vs_sonar_run(config, run_dir, tmp_path / "no-such-gsm8k")
    assert failed.returncode == 2, failed.stdout[-3000:] + failed.stderr[-3000:]
    assert "stage generate failed" in failed.stderr and "Traceback" not in failed.stderr
    assert json.loads((run_dir / "run.json").read_text())["stages"]["generate"]["status"].startswith("failed")

    done = vs_sonar_run(config, run_dir, GSM8K)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-3000:]
    assert "release built at" in done.stdout and "verified" in done.stdout
    state = json.loads((run_dir / "run.json").read_text())["stages"]
    assert {"generate", "embed", "build", "model-check", "verify"} <= set(state)
    for stage in ("generate", "embed", "build", "verify"):
        assert (run_dir / "logs" / f"{stage}.log").stat().st_size > 0

    report = json.loads((run_dir / "release" / "verify_report.json").read_text())
    assert report["passed"] and report["model_checks"]["alignment"]["passed"]
    card = (run_dir / "release" / "README.md").read_text()
    assert "Fixture models." in card and "fixture-tiny-llama-random-weights" in card

    import datasets

    ds = datasets.load_dataset(str(run_dir / "release"), "500", cache_dir=str(tmp_path / "cache"))
    assert {s: ds[s].num_rows for s in ds} == {"train": 400, "validation": 50, "test": 50}
    assert len(ds["train"][0]["embedding"]) == 1024

    again = vs_sonar_run(config, run_dir, GSM8K)
    assert again.returncode == 0 and "release up to date" in again.stdout
    assert json.loads((run_dir / "run.json").read_text())["stages"] == state

    push = subprocess.run([sys.executable, "-m", "publish", "--run", str(run_dir), "--push", "--repo", "org/x"],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert push.returncode == 2 and "--allow-fixture-models" in push.stderr
