import subprocess
import sys

import pytest

from vs_sonar_dataset.envs import REPO_ROOT


def vs_sonar(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "vs_sonar_dataset.cli", *args], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=120, **kwargs)


def test_help_lists_every_command():
    result = vs_sonar("--help")
    assert result.returncode == 0
    for command in ("synth-pool", "build", "verify"):
        assert command in result.stdout


@pytest.mark.parametrize("command", ["synth-pool", "build", "verify"])
def test_each_command_explains_itself(command):
    result = vs_sonar(command, "--help")
    assert result.returncode == 0 and "usage: vs-sonar " + command in result.stdout


def test_user_mistakes_are_one_line_errors(tmp_path):
    cases = [
        (["build", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")], "no manifest"),
        (["verify", str(tmp_path)], "not a release folder"),
        (["synth-pool", str(tmp_path / "p"), "--rows", "0"], "must be positive"),
    ]
    (tmp_path / "bad.toml").write_text("[build]\nseeds = 3\n")
    cases.append((["build", str(tmp_path), "--out", str(tmp_path / "r"), "--config", str(tmp_path / "bad.toml")],
                  "unknown key(s) in [build]: seeds"))
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
