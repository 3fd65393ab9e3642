"""The run's own Ray instance: it answers its address, which another process can join, writes Ray's lines to the
log, and stops when told to or when the run that started it ends in any way (a SIGKILLed run leaves no Ray
behind)."""

import importlib.util
import subprocess
import sys
import time

import pytest

from vs_sonar_dataset.core.envs import REPO_ROOT
from vs_sonar_dataset.engines.ray_instance import AUTH_MODE, RunInstance

from .conftest import answers

pytestmark = [pytest.mark.ray, pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                                  reason="needs Ray (scripts/setup.sh --ray)")]


def gone_within(address: str, seconds: float) -> bool:
    deadline = time.time() + seconds
    while answers(address):
        if time.time() > deadline:
            return False
        time.sleep(0.5)
    return True


def test_it_answers_its_address_and_stops_when_closed(tmp_path, monkeypatch):
    monkeypatch.delenv(AUTH_MODE, raising=False)  # as a run starts: what a join needs comes from the instance
    log = tmp_path / "ray.log"
    with RunInstance(log) as instance:
        address = instance.address()
        assert answers(address)
        assert instance.address() == address  # asked again: the same, without waiting
        # a stage command joins it by address (refused where Ray chose token authentication and the command
        # was not told)
        joins = (f"import ray; ray.init(address={address!r}, log_to_driver=False)\n"
                 "print(ray.get(ray.remote(lambda: 'joined').remote()))")
        joined = subprocess.run([sys.executable, "-c", joins], capture_output=True, text=True, timeout=120)
        assert joined.stdout.strip() == "joined", joined.stderr[-2000:]
    assert not answers(address)
    lines = log.read_text()
    assert f"=== local Ray instance at {address}" in lines and f"=== stopped the Ray instance at {address}" in lines


def test_a_killed_run_leaves_no_instance_behind(tmp_path):
    starts_and_dies = (f"import os, sys; sys.path.insert(0, {str(REPO_ROOT)!r})\n"
                       "from vs_sonar_dataset.engines.ray_instance import RunInstance\n"
                       f"print(RunInstance({str(tmp_path / 'ray.log')!r}).address(), flush=True)\n"
                       "os.kill(os.getpid(), 9)\n")
    run = subprocess.run([sys.executable, "-c", starts_and_dies], capture_output=True, text=True, timeout=120)
    address = run.stdout.strip()
    assert run.returncode == -9 and address, run.stderr
    assert gone_within(address, 60), f"the instance at {address} still answers a minute after its run died"
