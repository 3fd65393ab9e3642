import shutil
import subprocess
import sys

import pytest

from os_faults import without_write_permission
from torch_probe import NO_TORCH, vs_sonar_probed
from vs_sonar_dataset.core.envs import REPO_ROOT


def vs_sonar(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "vs_sonar_dataset.cli", *args], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=120, **kwargs)


def test_help_lists_every_command():
    result = vs_sonar("--help")
    assert result.returncode == 0
    for command in ("source", "embed", "dedup", "synth-pool", "build", "model-check", "verify", "run"):
        assert command in result.stdout


@pytest.mark.parametrize("command", ["source", "embed", "dedup", "synth-pool", "build", "model-check", "verify",
                                     "run"])
def test_each_command_explains_itself(command):
    result = vs_sonar(command, "--help")
    assert result.returncode == 0 and "usage: vs-sonar " + command in result.stdout


@pytest.mark.parametrize("command", ["embed", "dedup", "run"])
def test_a_command_that_drives_other_environments_does_not_load_torch(command):
    """The `vs-sonar` process that hands a stage to another environment or drives it on Ray starts in a fraction
    of a second: importing torch here (for what the release build alone needs) cost every such command about
    1.8 s on 2 cores."""
    result = vs_sonar_probed(command, "--help", timeout=120)
    assert result.stderr.strip().splitlines()[-1] == NO_TORCH, result.stderr[-2000:]


def test_user_mistakes_are_one_line_errors(tmp_path):
    cases = [
        (["build", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")], "no manifest"),
        (["verify", str(tmp_path)], "not a release folder"),
        (["synth-pool", str(tmp_path / "p"), "--rows", "0"], "must be positive"),
    ]
    (tmp_path / "bad.toml").write_text("[build]\nseeds = 3\n")
    cases.append((["build", str(tmp_path), "--out", str(tmp_path / "r"), "--config", str(tmp_path / "bad.toml")],
                  "[build]: seeds: unknown key"))
    for args, message in cases:
        result = vs_sonar(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_synth_build_verify_from_the_command_line(tmp_path):
    assert vs_sonar("synth-pool", str(tmp_path / "pool"), "--rows", "1100", "--dim", "8").returncode == 0
    built = vs_sonar("build", str(tmp_path / "pool"), "--out", str(tmp_path / "rel"), "--sizes", "a=100,b=1000")
    assert built.returncode == 0, built.stderr
    verified = vs_sonar("verify", str(tmp_path / "rel"), "--pool", str(tmp_path / "pool"))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "verify: passed" in verified.stdout


def _one_line_error(result, message):
    """Exit 2 and one error line, the last one (progress lines may come before it), holding `message`."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr and message in lines[-1], result.stderr
    assert [line for line in lines if ": error: " in line] == lines[-1:], result.stderr


def _tree(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_no_stage_writes_into_another_stages_folder(tmp_path, small_pool, small_release):
    before = _tree(small_release)
    _one_line_error(vs_sonar("synth-pool", str(small_release), "--rows", "20"), "holds a release (release.json)")
    _one_line_error(vs_sonar("build", str(small_pool), "--out", str(small_pool)), "holds a stage output of kind 'pool'")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    _one_line_error(vs_sonar("synth-pool", str(tmp_path / "notes"), "--rows", "20"), "holds 1 other entry (todo.txt)")
    assert _tree(small_release) == before and _tree(tmp_path / "notes") == {"todo.txt": b"keep me"}


def test_an_output_that_is_a_file_is_one_line(tmp_path, small_pool):
    f = tmp_path / "file"
    f.write_text("x")
    config = REPO_ROOT / "configs" / "demo.toml"
    for args in (["synth-pool", str(f), "--rows", "20"], ["build", str(small_pool), "--out", str(f)],
                 ["run", str(config), "--out", str(f)], ["synth-pool", str(f / "below"), "--rows", "20"]):
        _one_line_error(vs_sonar(*args), f"{f}: is a file")


@pytest.mark.parametrize("toml, message", [
    ('[build]\nseed = "zero"\n', "[build]: seed: Input should be a valid integer (got 'zero')"),
    ("[build]\nseed = -1\n", "[build]: seed: Input should be greater than or equal to 0 (got -1)"),
    ("[build]\nconfigs = { a = true }\n", "[build]: configs.a: Input should be a valid integer (got True)"),
    ('[build]\nconfigs = { "../x" = 100 }\n', "config name '../x'"),
    ("[bulid]\nseed = 1\n", "unknown table(s) [bulid] (known: [run], [source], [embed], [dedup], [build], "
                             "[model_check])"),
])
def test_bad_build_configuration_is_one_line(tmp_path, small_pool, toml, message):
    (tmp_path / "c.toml").write_text(toml)
    _one_line_error(vs_sonar("build", str(small_pool), "--out", str(tmp_path / "r"), "--config",
                             str(tmp_path / "c.toml")), message)
    assert not (tmp_path / "r").exists() and not (tmp_path / "r.partial").exists()


def test_a_folder_without_write_permission_is_one_line(tmp_path, small_pool, small_release):
    locked = tmp_path / "locked"
    locked.mkdir()
    shutil.copytree(small_release, locked / "release")
    prefix = without_write_permission(locked)
    (locked / "release").chmod(0o555)
    cli = ["-m", "vs_sonar_dataset.cli"]
    try:
        for args in ([*cli, "synth-pool", str(locked / "p"), "--rows", "20"],
                     [*cli, "build", str(small_pool), "--out", str(locked / "r")],
                     [*cli, "run", str(REPO_ROOT / "configs" / "demo.toml"), "--out", str(locked / "run")],
                     [*cli, "verify", str(locked / "release"), "--pool", str(small_pool)],
                     ["-m", "publish", "--pool", str(small_pool), "--out", str(locked / "r")]):
            result = subprocess.run([*prefix, sys.executable, *args], capture_output=True, text=True,
                                    cwd=REPO_ROOT, timeout=120)
            _one_line_error(result, f"{locked}")
            assert "permission denied" in result.stderr
    finally:
        (locked / "release").chmod(0o755)
        locked.chmod(0o755)


def test_a_full_disk_is_one_line_and_leaves_no_partial_release(small_disk, small_pool):
    _one_line_error(vs_sonar("synth-pool", str(small_disk / "pool"), "--rows", "4000", "--dim", "256"),
                    "no space left on the device; free some space")
    shutil.rmtree(small_disk / "pool")  # an unfinished pool is kept to resume; this test needs the space back
    (small_disk / "filler").write_bytes(b"x" * (1024 * 1024 - 96 * 1024))  # the release needs more than is left
    result = vs_sonar("build", str(small_pool), "--out", str(small_disk / "release"), "--sizes", "a=1000")
    _one_line_error(result, "no space left on the device")
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]  # the work folder and its spill are gone
