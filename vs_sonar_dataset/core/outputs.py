"""Where a stage may write: a folder that is new, empty, or already that stage's own output.

Anything else is refused before any work, with one line saying what the folder holds, so that no stage ever
mixes its files into another's (a pool written into a release folder would be published with it).
"""

import json
import os
from pathlib import Path

from .errors import UserError

# output kind -> the file that marks a folder as that kind's own
MARKERS = {"candidates": "manifest.json", "vectors": "manifest.json", "pool": "manifest.json",
           "release": "release.json", "run": "config.toml"}
NOUNS = {"candidates": "candidates folder", "vectors": "vectors folder"}  # other kinds read as they are
RUN_ENTRIES = {"config.toml", "run.json", "logs", "fixtures", "candidates", "vectors", "pool", "release",
               "release.partial"}
# what build, model-check, verify and card write at the top of a release folder (build replaces the folder)
RELEASE_ENTRIES = {"release.json", "README.md", "data", "stats", "map", "plots", "model_checks.json",
                   "verify_report.json"}


def describe_folder(path: Path) -> str:
    """What a non-empty folder holds, in a few words."""
    if (path / "release.json").is_file():
        return "a release (release.json)"
    if (path / "manifest.json").is_file():
        try:
            kind = json.loads((path / "manifest.json").read_text()).get("kind", "unknown")
        except (OSError, ValueError, AttributeError):
            kind = "unreadable"
        return f"a stage output of kind {kind!r} (manifest.json)"
    if (path / "run.json").is_file() or (path / "config.toml").is_file():
        return "a run folder (config.toml)"
    names = sorted(p.name for p in path.iterdir())
    shown = ", ".join(names[:3]) + (", …" if len(names) > 3 else "")
    return f"{len(names)} other entr{'y' if len(names) == 1 else 'ies'} ({shown})"


def foreign_entries(path: Path, kind: str) -> list[str]:
    """Entries of a run or release folder that no stage writes there (a user's own files): a stage that
    replaces the folder would delete them."""
    own = {"run": RUN_ENTRIES, "release": RELEASE_ENTRIES}.get(kind)
    return sorted(p.name for p in path.iterdir() if p.name not in own) if own else []


def _is_own(path: Path, kind: str) -> bool:
    marker = path / MARKERS[kind]
    if not marker.is_file():
        return False
    if kind in ("run", "release"):
        return not foreign_entries(path, kind)
    if kind in ("candidates", "vectors", "pool"):
        try:
            return json.loads(marker.read_text()).get("kind") == kind
        except (OSError, ValueError, AttributeError):
            return False
    return True


def require_writable(folder, why: str = "") -> None:
    """A folder the command will write into must let it; `why` says what it writes there."""
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"{folder}: permission denied; {why + ', so ' if why else ''}choose a folder you may write "
                        "to, or change its permissions")


def check_output_dir(path, kind: str) -> Path:
    """Refuse an output folder that exists and is neither empty nor `kind`'s own; returns the path.

    Checked before a stage starts any work; writing itself may still fail (permissions, a full disk), which
    the command boundary reports in one line."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: is a file, not a folder; choose a new or empty folder for the {kind}")
    if not path.exists():
        parent = next((p for p in path.parents if p.exists()), None)
        if parent is not None and not parent.is_dir():
            raise UserError(f"{parent}: is a file, so {path} cannot be created; choose another path")
        if parent is not None and not os.access(parent, os.W_OK | os.X_OK):
            raise UserError(f"{parent}: permission denied, so {path} cannot be created; choose a folder you "
                            "may write to")
        return path
    require_writable(path)
    if not any(path.iterdir()) or _is_own(path, kind):
        return path
    noun = NOUNS.get(kind, kind)
    foreign = foreign_entries(path, kind) if (path / MARKERS[kind]).is_file() else []
    if foreign:
        shown = ", ".join(foreign[:3]) + (", …" if len(foreign) > 3 else "")
        raise UserError(f"{path}: a {noun} that also holds {shown}, which no stage wrote and which would be lost; "
                        "move it out, or write to a new or empty folder")
    raise UserError(f"{path}: holds {describe_folder(path)}, not a {noun}; write the {noun} to a new or empty "
                    "folder")
