"""The vs_gsm8k source on the ray engine, on a real local Ray instance (2 CPUs): vLLM actors in the generate
environment write, on a tiny random Llama, the candidates the local engine writes; a run stopped after its first
shard resumes to the same files; a worker killed mid-run is restarted and nothing is lost or written twice. The
driver runs here (the main environment), as `vs-sonar source --engine ray` runs it.

Needs Ray here and in the generate environment (scripts/setup.sh --ray); skipped otherwise. About three minutes.
"""

import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from vs_sonar_dataset.core import shards
from vs_sonar_dataset.core.config import load_table
from vs_sonar_dataset.core.envs import REPO_ROOT, STAGE_ENVS
from vs_sonar_dataset.core.errors import UserError

from os_faults import interrupted_after

GENERATE_PYTHON = REPO_ROOT / STAGE_ENVS["generate"][1] / "bin" / "python"
# the generate tests' fast settings: short texts, 2 requests per batch and per shard (one batch per shard)
FAST = {"num_candidates": 24, "candidates_per_request": 3, "min_problems": 3, "max_problems": 5, "seed": 7,
        "min_chars": 12, "max_chars": 60, "min_english_word_share": 0.0, "reject_cut_texts": False,
        "max_tokens": 200, "dtype": "float32", "max_model_len": 2048, "enforce_eager": True,
        "in_process_engine": True, "cpu_kvcache_space_gib": 1, "gpu_memory_utilization": 0.05, "batch_size": 2,
        "requests_per_shard": 2}


def _generate_env_has_ray() -> bool:
    if not GENERATE_PYTHON.exists():
        return False
    return subprocess.run([str(GENERATE_PYTHON), "-c", "import ray, pandas, pyarrow, vllm"],
                          capture_output=True).returncode == 0


pytestmark = [pytest.mark.ray,
              pytest.mark.skipif(importlib.util.find_spec("ray") is None or not _generate_env_has_ray(),
                                 reason="needs Ray here and in the generate environment (scripts/setup.sh --ray)")]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A tiny Llama (built in the generate environment), GSM8K-format problems and a [source] config file."""
    root = tmp_path_factory.mktemp("ray_generate")
    subprocess.run([str(GENERATE_PYTHON), "-m", "vs_sonar_dataset.fixtures.tiny_llama", str(root / "llama")],
                   check=True, cwd=REPO_ROOT, capture_output=True)
    values = {"kind": "vs_gsm8k", "model": str(root / "llama"), "gsm8k": "gsm8k-sample", **FAST}  # shipped
    lines = [f"{k} = {_toml(v)}" for k, v in values.items()]
    (root / "source.toml").write_text("[source]\n" + "\n".join(lines) + "\n")
    return root, load_table(root / "source.toml", "source")


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f'"{value}"' if isinstance(value, str) else repr(value)


@pytest.fixture(scope="module")
def local_candidates(work):
    """The local engine's output, as `vs-sonar source` writes it (in the generate environment)."""
    root, _ = work
    done = subprocess.run([sys.executable, "-m", "vs_sonar_dataset.cli", "source", str(root / "source.toml"),
                           "--out", str(root / "local"), "--no-progress"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "local"


def snapshot(out) -> dict:
    """What must be identical between two runs: rows, counts, shard layout."""
    manifest = shards.read_manifest(out, "candidates")
    return {"rows": shards.read_table(out, "candidates").to_pylist(), "stats": manifest.stats,
            "config": manifest.config, "shard_rows": [s["rows"] for s in manifest.shards],
            "complete": manifest.complete}


def test_same_candidates_as_the_local_engine(ray_local, work, local_candidates):
    from vs_sonar_dataset.engines.ray_generate import backend_factory
    from vs_sonar_dataset.sources.vs_gsm8k.run import run_generate

    root, config = work
    summary = run_generate(config, root / "ray", progress=False, backend_factory=backend_factory())
    assert summary["status"] == "complete" and summary["accepted"] == FAST["num_candidates"]
    assert snapshot(root / "ray") == snapshot(local_candidates)


def test_tensor_parallel_inside_an_actor(ray_local, work, local_candidates, tmp_path):
    """tensor_parallel_size = 2 on CPU: the actor's vLLM runs its two ranks as processes of its own (one core
    each) and writes the rows, counts and shards of the local engine's one rank."""
    from vs_sonar_dataset.engines.ray_generate import backend_factory
    from vs_sonar_dataset.sources.vs_gsm8k.run import run_generate

    _, config = work
    split = config.model_copy(update={"tensor_parallel_size": 2})
    summary = run_generate(split, tmp_path / "tp", progress=False, backend_factory=backend_factory())
    assert summary["status"] == "complete"
    got, expected = snapshot(tmp_path / "tp"), snapshot(local_candidates)
    assert got["config"]["generate"]["tensor_parallel_size"] == 2
    got["config"]["generate"]["tensor_parallel_size"] = 1
    assert got == expected


def test_stopped_after_the_first_shard_then_resumed_with_a_worker_killed(ray_local, work, local_candidates,
                                                                        monkeypatch):
    """Stopped right after its first shard (as Ctrl-C would), then run again while its vLLM worker is killed
    once it has written a shard: the files of an uninterrupted local run."""
    from vs_sonar_dataset.engines.ray_generate import backend_factory
    from vs_sonar_dataset.sources.vs_gsm8k import run

    root, config = work
    with interrupted_after(monkeypatch, run, "_summary"):
        run.run_generate(config, root / "resumed", progress=False, backend_factory=backend_factory())
    assert len(shards.read_manifest(root / "resumed", "candidates").shards) == 1

    killed = []
    killer = threading.Thread(target=_kill_the_worker_after_shard, args=(root / "resumed", 3, killed), daemon=True)
    killer.start()
    run.run_generate(config, root / "resumed", progress=False, backend_factory=backend_factory())
    killer.join(timeout=5)
    assert killed, "the worker was not found to kill"
    assert snapshot(root / "resumed") == snapshot(local_candidates)


def _kill_the_worker_after_shard(out, shard: int, killed: list) -> None:
    """SIGKILL the vLLM actor's process once `shard` shards are committed."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            if len(shards.read_manifest(out, "candidates").shards) >= shard:
                break
        except Exception:  # the manifest is rewritten in place while we read it
            pass
        time.sleep(0.2)
    found = subprocess.run(["pgrep", "-f", "LlmActor"], capture_output=True, text=True).stdout.split()
    for pid in found:
        if int(pid) != os.getpid():
            os.kill(int(pid), signal.SIGKILL)
            killed.append(int(pid))


def test_a_missing_generate_environment_is_one_line_not_a_hang(work, tmp_path):
    from vs_sonar_dataset.engines.ray_generate import RayBackend

    _, config = work
    with pytest.raises(UserError, match="the generate environment is missing") as caught:
        RayBackend(config, python=str(tmp_path / "nowhere" / "python"))
    assert "\n" not in str(caught.value)


def test_the_source_command_takes_the_ray_engine(work, tmp_path):
    """`vs-sonar source --engine ray` reaches the ray engine (here: a Ray head nobody listens on, one line
    with exit status 2, in seconds)."""
    root, _ = work
    done = subprocess.run([sys.executable, "-m", "vs_sonar_dataset.cli", "source", str(root / "source.toml"),
                           "--out", str(tmp_path / "cands"), "--no-progress", "--engine", "ray", "--address",
                           "127.0.0.1:1"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 2 and "cannot reach the Ray cluster at 127.0.0.1:1" in last, done.stderr
    assert "Traceback" not in done.stderr


def test_a_request_the_engine_fails_on_is_rejected_with_its_reason(ray_local, work, tmp_path, caplog):
    """A context of 1,000 tokens: the prompts of some requests (680 to 1,200 tokens with the shown problems)
    do not fit, vLLM raises on their batch, and each is then sent alone: those that fail alone too are
    rejected as engine_error with vLLM's reason in the log, and the run goes on to its target."""
    from vs_sonar_dataset.engines.ray_generate import backend_factory
    from vs_sonar_dataset.sources.vs_gsm8k.run import run_generate

    _, config = work
    tight = config.model_copy(update={"max_model_len": 1000})
    with caplog.at_level("WARNING", logger="vs_sonar.generate"):
        summary = run_generate(tight, tmp_path / "cands", progress=False, backend_factory=backend_factory())
    assert summary["status"] == "complete" and summary["rejected"]["engine_error"] > 0
    reasons = [r.getMessage() for r in caplog.records if "rejected:" in r.getMessage()]
    assert len(reasons) == summary["rejected"]["engine_error"] and all("max" in r.lower() for r in reasons), reasons
    rows = shards.read_table(tmp_path / "cands", "candidates").to_pylist()
    assert len(rows) == FAST["num_candidates"] and len({r["id"] for r in rows}) == len(rows)


def test_a_model_folder_that_is_not_there_is_one_line(ray_local, work, tmp_path):
    """The vLLM actors meet it while loading: the run ends with the backend's own one-line error, once, and
    writes no shard."""
    from vs_sonar_dataset.engines.ray_generate import backend_factory
    from vs_sonar_dataset.sources.vs_gsm8k.run import run_generate

    _, config = work
    missing = config.model_copy(update={"model": str(tmp_path / "no-model")})
    with pytest.raises(UserError, match="no such model directory") as caught:
        run_generate(missing, tmp_path / "cands", progress=False, backend_factory=backend_factory())
    assert "\n" not in str(caught.value) and "Traceback" not in str(caught.value)
    assert not shards.read_manifest(tmp_path / "cands", "candidates").shards
