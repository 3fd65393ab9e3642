"""What every stage on Ray shares (engines/ray.py), on a real local Ray instance: a call's output reaches the
driver before the next call returns, and an environment checked once is not probed again."""

import subprocess
import sys
import time

import numpy as np
import pytest

from vs_sonar_dataset.core.envs import REPO_ROOT
from vs_sonar_dataset.core.errors import UserError

from .conftest import needs_ray_and_embed

pytestmark = needs_ray_and_embed


def test_each_output_reaches_the_driver_before_the_next_call_returns(ray_local, tmp_path):
    """The driver gets a call's output while the actor works on the next one: call k waits (up to 20 s) for a
    file the driver writes when it has call k-1's output. (With Ray Data's default prefetch it got it only after
    call k had returned: a generation run that needed two batches waited for a third.)"""
    from pathlib import Path

    from vs_sonar_dataset.engines.ray import CPUS_PER_ACTOR, actor_pool, finished_batches, ordered_quiet_context

    class WaitsForTheDriver:
        def __init__(self, folder: str):
            self.folder = Path(folder)

        def __call__(self, batch: dict) -> dict:
            k = int(batch["k"][0])
            deadline = time.monotonic() + 20
            while k and not (self.folder / f"got-{k - 1}").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            return {"k": batch["k"], "driver_had_the_last": np.array([k == 0 or time.monotonic() < deadline])}

    ordered_quiet_context()
    ds = ray_local.data.from_items([{"k": k} for k in range(4)]).map_batches(
        WaitsForTheDriver, batch_size=1, batch_format="numpy", compute=actor_pool(ray_local, 1),
        fn_constructor_kwargs={"folder": str(tmp_path)}, num_cpus=CPUS_PER_ACTOR)
    received = []
    for batch in finished_batches(ds):
        for k, driver_had_the_last in zip(batch["k"], batch["driver_had_the_last"]):
            (tmp_path / f"got-{k}").touch()
            received.append((int(k), bool(driver_had_the_last)))
    assert received == [(k, True) for k in range(4)]


def test_an_environment_checked_once_is_not_probed_again(tmp_path, monkeypatch):
    """The stage commands of a `vs-sonar run` skip the probe the run made (noted in the environment they
    inherit); a probe that failed is not noted."""
    from vs_sonar_dataset.engines.ray import CHECKED_ENVIRONMENTS, check_environment

    monkeypatch.delenv(CHECKED_ENVIRONMENTS, raising=False)
    calls = tmp_path / "calls"
    python = tmp_path / "python"  # answers the probe with a Ray version and counts its calls
    python.write_text(f"#!/bin/sh\necho probed >> {calls}\necho 9.9.9\n")
    python.chmod(0o755)
    with pytest.raises(UserError, match="has ray 9.9.9, this one 1.0.0"):
        check_environment(str(python), "embed", "1.0.0")
    check_environment(str(python), "embed", "9.9.9")
    check_environment(str(python), "embed", "9.9.9")
    assert calls.read_text().split() == ["probed", "probed"]
    child = subprocess.run([sys.executable, "-c", "from vs_sonar_dataset.engines.ray import check_environment;"
                            f"check_environment({str(python)!r}, 'embed', '9.9.9')"], cwd=REPO_ROOT)
    assert child.returncode == 0 and calls.read_text().split() == ["probed", "probed"]
