"""`vs-sonar embed` and `vs-sonar dedup` as a user runs them: mistakes are one-line errors with exit status 2."""

import subprocess
import sys

from sonar_fixtures import needs_sonar

from vs_sonar_dataset.core.envs import REPO_ROOT
from vs_sonar_dataset.fixtures.candidates import write_candidates


def embed(*args, command="embed"):
    return subprocess.run([sys.executable, "-m", "vs_sonar_dataset.cli", command, *map(str, args)],
                          cwd=REPO_ROOT, capture_output=True, text=True)


@needs_sonar
def test_unknown_key_in_embed_table(tmp_path):
    cands = write_candidates(tmp_path / "cands", ["one sentence"])
    (tmp_path / "run.toml").write_text('[source]\nanything = 1\n[embed]\nkind = "sonar"\ndedup_treshold = 0.9\n')
    done = embed(cands, "--out", tmp_path / "vectors", "--config", tmp_path / "run.toml")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "[embed]: dedup_treshold: unknown key" in done.stderr and not (tmp_path / "vectors").exists()


@needs_sonar
def test_a_bad_flag_value_and_a_bad_dedup_table(tmp_path):
    cands = write_candidates(tmp_path / "cands", ["one sentence"])
    done = embed(cands, "--out", tmp_path / "vectors", "--set", "chunk_rows=0")
    assert done.returncode == 2 and "[embed]: chunk_rows: Input should be greater than or equal to 1" in done.stderr
    (tmp_path / "run.toml").write_text('[dedup]\nthreshold = "high"\n')
    done = embed(tmp_path / "vectors", "--out", tmp_path / "pool", "--config", tmp_path / "run.toml", command="dedup")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "[dedup]: threshold: Input should be a valid number" in done.stderr


@needs_sonar
def test_missing_candidates(tmp_path):
    done = embed(tmp_path / "nothing", "--out", tmp_path / "pool")
    assert done.returncode == 2 and "no manifest" in done.stderr and done.stderr.count("\n") == 1


def test_help_explains_itself():
    for command, words in (("embed", ("--set", "sentence_transformers", "Resumable")),
                           ("dedup", ("--set", "threshold", "target_rows", "Resumable"))):
        done = subprocess.run([sys.executable, "-m", "vs_sonar_dataset.cli", command, "--help"], cwd=REPO_ROOT,
                              capture_output=True, text=True)
        assert done.returncode == 0
        for word in words:
            assert word in done.stdout, (command, word)


@needs_sonar
def test_a_release_folder_is_not_a_pool(tmp_path):
    """A pool written into a release would be published with it: refused before the model loads."""
    cands = write_candidates(tmp_path / "cands", ["one sentence"])
    release = tmp_path / "release"
    release.mkdir()
    (release / "release.json").write_text("{}")
    done = embed(cands, "--out", release)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "holds a release (release.json), not a vectors folder" in done.stderr
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
                               str(locked / "vectors")], cwd=REPO_ROOT, capture_output=True, text=True)
    finally:
        locked.chmod(0o755)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert f"{locked}: permission denied" in done.stderr
