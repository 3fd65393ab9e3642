import json

import pytest

from vs_sonar_dataset.core.errors import UserError
from vs_sonar_dataset.core.outputs import check_output_dir
from vs_sonar_dataset.core.shards import ShardWriter


def test_new_empty_and_own_folders_are_accepted(tmp_path, small_pool, small_release):
    assert check_output_dir(tmp_path / "new" / "deeper", "pool") == tmp_path / "new" / "deeper"
    (tmp_path / "empty").mkdir()
    check_output_dir(tmp_path / "empty", "release")
    check_output_dir(small_pool, "pool")
    check_output_dir(small_release, "release")


@pytest.mark.parametrize("kind", ["pool", "candidates", "run"])
def test_a_release_folder_is_refused_to_other_stages(small_release, kind):
    with pytest.raises(UserError, match=r"holds a release \(release.json\), not a " + kind):
        check_output_dir(small_release, kind)


def test_a_pool_is_refused_as_candidates_or_release(small_pool):
    with pytest.raises(UserError, match="holds a stage output of kind 'pool'"):
        check_output_dir(small_pool, "candidates")
    with pytest.raises(UserError, match="not a release"):
        check_output_dir(small_pool, "release")


def test_other_files_are_named(tmp_path):
    for name in ("a.txt", "b.txt", "c.txt", "d.txt"):
        (tmp_path / name).write_text("x")
    with pytest.raises(UserError, match=r"holds 4 other entries \(a.txt, b.txt, c.txt, …\)"):
        check_output_dir(tmp_path, "pool")


def test_a_file_is_not_a_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="is a file, not a folder"):
        check_output_dir(tmp_path / "f", "release")
    with pytest.raises(UserError, match="is a file, so"):
        check_output_dir(tmp_path / "f" / "below", "pool")


def test_a_run_folder_with_foreign_entries_is_not_a_run(tmp_path):
    (tmp_path / "config.toml").write_text("")
    check_output_dir(tmp_path, "run")
    (tmp_path / "holiday.jpg").write_text("")
    with pytest.raises(UserError, match="a run that also holds holiday.jpg, which no stage wrote"):
        check_output_dir(tmp_path, "run")


def test_a_release_holding_a_users_file_is_refused_before_build_and_the_file_stays(small_pool, small_release):
    """Build replaces its output folder: a file of the user's inside an earlier release would be deleted."""
    import subprocess
    import sys

    (small_release / "MY_NOTES.md").write_text("mine")
    before = {p: p.read_bytes() for p in small_release.rglob("*") if p.is_file()}
    result = subprocess.run([sys.executable, "-m", "vs_sonar_dataset.cli", "build", str(small_pool), "--out",
                             str(small_release)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "also holds MY_NOTES.md, which no stage wrote" in result.stderr, result.stderr
    assert {p: p.read_bytes() for p in small_release.rglob("*") if p.is_file()} == before


def test_shard_writer_refuses_a_release_and_writes_nothing(small_release):
    before = sorted(p.name for p in small_release.rglob("*"))
    with pytest.raises(UserError, match="holds a release"):
        ShardWriter(small_release, "pool", {"x": 1}, embedding_dim=16)
    assert sorted(p.name for p in small_release.rglob("*")) == before


def test_shard_writer_resumes_its_own_folder(tmp_path):
    ShardWriter(tmp_path / "pool", "pool", {"x": 1}, embedding_dim=16)
    writer = ShardWriter(tmp_path / "pool", "pool", {"x": 1}, embedding_dim=16)
    assert json.loads((tmp_path / "pool" / "manifest.json").read_text())["kind"] == "pool"
    assert writer.resumed_shards == 0
