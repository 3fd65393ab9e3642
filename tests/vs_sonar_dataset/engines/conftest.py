"""What the ray engine's tests share: a real local Ray instance on 2 CPUs, started once per test module, and
the mark that skips a test where Ray is missing here or in the embed environment."""

import importlib.util
import socket
import subprocess

import pytest

from vs_sonar_dataset.core.envs import REPO_ROOT, STAGE_ENVS

EMBED_PYTHON = REPO_ROOT / STAGE_ENVS["embed"][1] / "bin" / "python"


def _embed_env_has_ray() -> bool:
    if not EMBED_PYTHON.exists():
        return False
    probe = "import ray, pandas, pyarrow, transformers"
    return subprocess.run([str(EMBED_PYTHON), "-c", probe], capture_output=True).returncode == 0


needs_ray_and_embed = [pytest.mark.ray,
                       pytest.mark.skipif(importlib.util.find_spec("ray") is None or not _embed_env_has_ray(),
                                          reason="needs Ray here and in the embed environment (scripts/setup.sh --ray)")]


def answers(address: str) -> bool:
    """Whether something listens at host:port (a Ray instance's address)."""
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
        return True
    except ConnectionRefusedError:
        return False


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
