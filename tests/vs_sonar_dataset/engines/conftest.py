"""What the ray engine's tests share: a real local Ray instance on 2 CPUs, started once per test module."""

import pytest


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
