"""The whole factory end to end: `vs-sonar run` on a scaled-down copy of configs/demo.toml, every stage in its
own environment with fixture models built by the run itself."""

import json
import os
import re
import subprocess
import sys

from vs_sonar_dataset.core.envs import REPO_ROOT

# demo.toml line -> the same setting for a run of a few minutes: the random tiny Llama instead of SmolLM2
SCALE_DOWN = {
    'fixtures = ["smollm2", "tiny_sonar"]': 'fixtures = ["tiny_llama", "tiny_sonar"]',
    'model = "{run_dir}/fixtures/smollm2"': 'model = "{run_dir}/fixtures/tiny_llama"',
    'model_name = "HuggingFaceTB/SmolLM2-135M-Instruct"': 'model_name = "fixture-tiny-llama-random-weights"',
    'dtype = "bfloat16"': 'dtype = "float32"',
    'temperature = 1.0': 'min_english_word_share = 0.0   # word salad\nreject_cut_texts = false\ntemperature = 1.0',
    'sample = 128': 'sample = 32',
}


def small_demo_config(tmp_path):
    text = (REPO_ROOT / "configs" / "demo.toml").read_text()
    for old, new in SCALE_DOWN.items():
        assert old in text, f"configs/demo.toml no longer has {old!r}"
        text = text.replace(old, new)
    path = tmp_path / "demo-small.toml"
    path.write_text(text)
    return path


def vs_sonar_run(config, run_dir, gsm8k=None):
    """`vs-sonar run`; without `gsm8k` the configuration's own (the sample shipped in the package)."""
    cmd = [sys.executable, "-m", "vs_sonar_dataset.cli", "run", str(config), "--out", str(run_dir),
           *(["--gsm8k", str(gsm8k)] if gsm8k else [])]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, timeout=1500,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_run_resumes_after_a_failure_then_reports_up_to_date(tmp_path):
    config, run_dir = small_demo_config(tmp_path), tmp_path / "run"

    failed = vs_sonar_run(config, run_dir, tmp_path / "no-such-gsm8k")
    assert failed.returncode == 2, failed.stdout[-3000:] + failed.stderr[-3000:]
    assert "stage source failed (exit 2): vs-sonar source: error: GSM8K:" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert json.loads((run_dir / "run.json").read_text())["stages"]["source"]["status"].startswith("failed")

    done = vs_sonar_run(config, run_dir)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-3000:]
    assert "release built at" in done.stdout and "verified" in done.stdout
    # a quiet console: each stage's progress and last line; vLLM's and fairseq2's start-up logs only in the logs
    assert "stage source: done in" in done.stdout and "stage verify: done in" in done.stdout
    assert not [line for line in (done.stdout + done.stderr).splitlines() if line.startswith(("INFO", "WARNING"))]
    assert "INFO" in (run_dir / "logs" / "source.log").read_text()
    state = json.loads((run_dir / "run.json").read_text())["stages"]
    assert {"source", "embed", "dedup", "build", "model-check", "verify", "card"} == set(state)
    for stage in ("source", "embed", "dedup", "build", "verify"):
        assert (run_dir / "logs" / f"{stage}.log").stat().st_size > 0

    report = json.loads((run_dir / "release" / "verify_report.json").read_text())
    assert report["passed"] and report["model_checks"]["alignment"]["passed"]
    card = (run_dir / "release" / "README.md").read_text()
    assert "Fixture models." in card and "fixture-tiny-llama-random-weights" in card

    import datasets

    ds = datasets.load_dataset(str(run_dir / "release"), "500", cache_dir=str(tmp_path / "cache"))
    assert {s: ds[s].num_rows for s in ds} == {"train": 400, "validation": 50, "test": 50}
    assert len(ds["train"][0]["embedding"]) == 1024

    again = vs_sonar_run(config, run_dir)
    assert again.returncode == 0 and "release up to date" in again.stdout
    assert json.loads((run_dir / "run.json").read_text())["stages"] == state

    # a new dedup threshold: dedup and what follows run again; the candidates and the vectors are reused
    vectors = (run_dir / "vectors" / "manifest.json").read_bytes()
    config.write_text(config.read_text().replace("threshold = 0.995", "threshold = 0.999"))  # keeps >= 500 rows
    edited = vs_sonar_run(config, run_dir)
    assert edited.returncode == 0, edited.stdout[-5000:] + edited.stderr[-3000:]
    assert "stage source: current, skipped" in edited.stdout and "stage embed: current, skipped" in edited.stdout
    assert "stage dedup: running ([dedup] changed" in edited.stdout
    for stage in ("build", "model-check", "verify", "card"):
        assert re.search(rf"stage {stage}: running \((dedup|build|verify) output changed", edited.stdout), edited.stdout
    assert (run_dir / "vectors" / "manifest.json").read_bytes() == vectors
    assert json.loads((run_dir / "pool" / "manifest.json").read_text())["config"]["dedup"]["threshold"] == 0.999

    push = subprocess.run([sys.executable, "-m", "publish", "--run", str(run_dir), "--push", "--repo", "org/x"],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert push.returncode == 2 and "--allow-fixture-models" in push.stderr


def test_an_unknown_fixture_or_a_file_that_is_not_utf8_is_refused_before_the_run_folder_exists(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text((REPO_ROOT / "configs" / "demo_preference.toml").read_text()
                      .replace('fixtures = ["minilm"]', 'fixtures = ["minilm", "gpt5"]'))
    result = vs_sonar_run(config, tmp_path / "run")
    assert result.returncode == 2 and "unknown fixture 'gpt5'" in result.stderr and str(config) in result.stderr
    assert not (tmp_path / "run").exists()
    config.write_bytes(b"[run]\nfixtures = []\n# caf\xe9\n")
    result = vs_sonar_run(config, tmp_path / "run")
    assert result.returncode == 2 and f"{config}: not UTF-8 text" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()
