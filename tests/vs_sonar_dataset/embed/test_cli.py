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


@needs_sonar
def test_a_release_folder_is_not_a_pool(tmp_path):
    """A pool written into a release would be published with it: refused before the model loads."""
    cands = write_candidates(tmp_path / "cands", ["one sentence"])
    release = tmp_path / "release"
    release.mkdir()
    (release / "release.json").write_text("{}")
    done = embed(cands, "--out", release)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "holds a release (release.json), not a pool" in done.stderr
    assert sorted(p.name for p in release.iterdir()) == ["release.json"]


@needs_sonar
def test_an_output_folder_without_write_permission_is_one_line(tmp_path):
    from os_faults import without_write_permission

    cands = write_candidates(tmp_path / "cands", ["one sentence"])
    locked = tmp_path / "locked"
    locked.mkdir()
    prefix = without_write_permission(locked)
    try:
        done = subprocess.run([*prefix, sys.executable, "-m", "vs_sonar_dataset.cli", "embed", str(cands), "--out",
                               str(locked / "pool")], cwd=REPO_ROOT, capture_output=True, text=True)
    finally:
        locked.chmod(0o755)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert f"{locked}: permission denied" in done.stderr
