"""Faults for the error-boundary tests: a folder the command may not write, a disk that fills up, a Ctrl-C
right after a given call."""

import os
import shutil
import subprocess
from contextlib import contextmanager

import pytest


def without_write_permission(folder):
    """Make `folder` read-only for a command; returns the prefix to run that command with. As root, permission
    bits do not bind, so the command runs without the capability that overrides them."""
    folder.chmod(0o555)
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("needs setpriv to drop root's permission override")
        return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]
    return []


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB file system of its own (tmpfs), to fill up."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


@contextmanager
def interrupted_after(monkeypatch, module, name: str, calls: int = 1):
    """Within the block, `module.name` raises KeyboardInterrupt (as Ctrl-C would) right after its `calls`-th call
    has returned; the block must end that way. The original is back afterwards."""
    original = getattr(module, name)
    returned = []

    def interrupting(*args, **kwargs):
        result = original(*args, **kwargs)
        returned.append(1)
        if len(returned) == calls:
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(module, name, interrupting)
    try:
        with pytest.raises(KeyboardInterrupt):
            yield
    finally:
        monkeypatch.setattr(module, name, original)
