import errno
import os

import pytest

from vs_sonar_dataset.core.errors import UserError, describe_os_error, run_command


def _raise(e):
    def action():
        raise e
    return action


@pytest.mark.parametrize("error, expected", [
    (OSError(errno.ENOSPC, "No space left on device"),
     "while writing OUT: no space left on the device; free some space"),
    (PermissionError(errno.EACCES, "Permission denied", "/x/y"), "/x/y: permission denied; choose a folder"),
    (FileExistsError(errno.EEXIST, "File exists", "/x/y"), "/x/y: already exists"),
    (NotADirectoryError(errno.ENOTDIR, "Not a directory", "/x/f/y"), "/x/f/y: a part of this path is a file"),
    (OSError(errno.EROFS, "Read-only file system", "/ro"), "/ro: the file system is read-only"),
    (OSError(errno.EIO, "Input/output error", "/disk"), "/disk: Input/output error; check"),
])
def test_os_errors_name_the_path_and_what_to_do(error, expected):
    assert describe_os_error(error, "OUT").startswith(expected)


def test_user_errors_and_os_errors_are_one_line_with_exit_2(capsys):
    assert run_command("vs-sonar x", _raise(UserError("bad thing"))) == 2
    assert capsys.readouterr().err == "vs-sonar x: error: bad thing\n"
    assert run_command("vs-sonar x", _raise(PermissionError(errno.EACCES, "Permission denied", "/p"))) == 2
    assert capsys.readouterr().err == ("vs-sonar x: error: /p: permission denied; choose a folder you may write "
                                       "to, or change its permissions\n")
    assert run_command("vs-sonar x", lambda: b"\xff".decode()) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_a_bug_keeps_its_traceback_and_says_it_is_one(capsys):
    assert run_command("vs-sonar x", _raise(ZeroDivisionError("oops"))) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError: oops" in err and "this is a bug in vs-sonar" in err


def test_success_and_interrupt(capsys):
    assert run_command("p", lambda: None) == 0
    assert run_command("p", lambda: 1) == 1
    assert run_command("p", _raise(KeyboardInterrupt())) == 130
    assert "run the same command again to resume" in capsys.readouterr().err


def test_network_errors_name_the_host(capsys):
    httpx = pytest.importorskip("httpx2")  # the client huggingface_hub speaks
    request = httpx.Request("POST", "http://127.0.0.1:9/api/repos/create")
    error = httpx.ConnectError("All connection attempts failed", request=request)
    assert run_command("publish", _raise(error)) == 2
    err = capsys.readouterr().err
    assert err.startswith("publish: error: cannot reach 127.0.0.1:9") and err.count("\n") == 1
    assert os.linesep not in err.rstrip("\n")
