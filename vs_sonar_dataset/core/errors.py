"""Errors a user can cause and fix, and the one boundary every command runs behind.

The boundary prints a user mistake, a file-system fault or a network fault as one line that names the path or
host and says what to do (exit 2); anything else is a bug in vs-sonar and keeps its traceback (exit 1).
"""

import errno
import os
import sys
import traceback
from urllib.parse import urlsplit


class UserError(Exception):
    """Bad input, bad configuration or a broken file: the message says what and where."""


class ShardError(UserError):
    """A stage file is missing, truncated, altered or of the wrong schema."""


USER_ERROR_EXIT = 2
BUG_EXIT = 1
CHECKS_FAILED_EXIT = 3  # verify or model-check ran to the end and the release failed: not a crash

# errno -> what happened and what to do about it
_OS_ADVICE = {
    errno.ENOSPC: ("no space left on the device", "free some space (or use another --out), then run the same "
                   "command again"),
    errno.EDQUOT: ("disk quota exceeded", "free some space (or use another --out) and run the same command again"),
    errno.EACCES: ("permission denied", "choose a folder you may write to, or change its permissions"),
    errno.EPERM: ("operation not permitted", "choose a folder you may write to, or change its permissions"),
    errno.EROFS: ("the file system is read-only", "choose a folder on a writable disk"),
    errno.EEXIST: ("already exists", "remove it or choose another path"),
    errno.ENOTDIR: ("a part of this path is a file, not a folder", "choose a path under a folder"),
    errno.EISDIR: ("is a folder where a file was expected", "give the path of a file"),
    errno.ENOENT: ("no such file or folder", "check the path"),
    errno.ENAMETOOLONG: ("the name is too long", "choose a shorter path"),
}


def describe_os_error(e: OSError, output: str | None = None) -> str:
    """One line for an OSError: the path it names (else the command's output folder), what happened, what to do."""
    what, advice = _OS_ADVICE.get(e.errno, (e.strerror or str(e), "check the path and the disk"))
    if e.filename2 is not None:
        where = f"{e.filename} -> {e.filename2}: "
    elif e.filename is not None:
        where = f"{e.filename}: "
    else:  # a write error often names no file
        where = f"while writing {output}: " if output is not None else ""
    return f"{where}{what}; {advice}"


def network_error_types() -> tuple[type, ...]:
    """The transport errors of the HTTP clients the Hub libraries use (not OSError subclasses): huggingface_hub
    2.4 speaks httpx2, datasets' older paths requests."""
    types = []
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"), ("requests", "ConnectionError"),
                         ("requests", "Timeout")):
        mod = sys.modules.get(module)  # only a library already in use can have raised its errors
        if mod is not None and isinstance(getattr(mod, name, None), type):
            types.append(getattr(mod, name))
    return tuple(types)


def describe_network_error(e: Exception) -> str:
    request = getattr(e, "request", None)
    try:
        url = str(request.url) if request is not None else ""
    except RuntimeError:  # httpx raises when an exception carries no request
        url = ""
    host = urlsplit(url).netloc or "the Hub"
    hint = " (HF_ENDPOINT)" if os.environ.get("HF_ENDPOINT") else ""
    return (f"cannot reach {host}{hint}: {type(e).__name__}: {str(e) or 'connection failed'}; check the network "
            "and the endpoint, then run the same command again")


def run_command(prog: str, action, *, output: str | None = None) -> int:
    """Run `action()` and turn what it raises into an exit code and one line on stderr (tracebacks for bugs)."""
    try:
        return int(action() or 0)
    except UserError as e:
        message = str(e)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except OSError as e:  # pyarrow's I/O errors are OSErrors too
        message = describe_os_error(e, output)
    except UnicodeDecodeError as e:
        message = f"a file is not UTF-8 text ({e.reason} at byte {e.start}); convert it to UTF-8"
    except Exception as e:
        if isinstance(e, network_error_types()):
            message = describe_network_error(e)
        else:
            traceback.print_exc()
            print(f"{prog}: internal error: this is a bug in vs-sonar, not a problem with your input; "
                  "please report it with the traceback above", file=sys.stderr)
            return BUG_EXIT
    print(f"{prog}: error: {message}", file=sys.stderr)
    return USER_ERROR_EXIT
