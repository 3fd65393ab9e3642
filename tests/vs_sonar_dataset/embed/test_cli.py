"""`vs-sonar embed` as a user runs it: mistakes are one-line errors with exit status 2."""

import subprocess
import sys

from vs_sonar_dataset.envs import REPO_ROOT
from vs_sonar_dataset.fixtures.candidates import write_candidates

from .conftest import needs_sonar


def embed(*args):
    return subprocess.run([sys.executable, "-m", "vs_sonar_dataset.cli", "embed", *map(str, args)],
                          cwd=REPO_ROOT, capture_output=True, text=True)


@needs_sonar
def test_unknown_key_in_embed_table(tmp_path):
    cands = write_candidates(tmp_path / "cands", ["one sentence"])
    (tmp_path / "run.toml").write_text('[generate]\nanything = 1\n[embed]\ndedup_treshold = 0.9\n')
    done = embed(cands, "--out", tmp_path / "pool", "--config", tmp_path / "run.toml")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "dedup_treshold" in done.stderr and not (tmp_path / "pool").exists()


@needs_sonar
def test_missing_candidates(tmp_path):
    done = embed(tmp_path / "nothing", "--out", tmp_path / "pool")
    assert done.returncode == 2 and "no manifest" in done.stderr and done.stderr.count("\n") == 1


def test_help_explains_itself():
    done = subprocess.run([sys.executable, "-m", "vs_sonar_dataset.cli", "embed", "--help"], cwd=REPO_ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0
    for word in ("--target-rows", "--dedup-threshold", "--asset-dir", "Resumable"):
        assert word in done.stdout
