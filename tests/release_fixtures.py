"""Pools and releases for the tests of build, verify, builder and publish (small, synthetic, built once)."""

import shutil

import pytest

from vs_sonar_dataset.build.release import build_release
from vs_sonar_dataset.fixtures.synth import write_synthetic_pool

SMALL_SIZES = {"s": 100, "m": 300, "l": 1000}
SMALL_DIM = 16


@pytest.fixture(scope="session")
def small_pool(tmp_path_factory):
    """1,200 synthetic rows of 16-d vectors in 5 shards."""
    path = tmp_path_factory.mktemp("pool") / "pool"
    write_synthetic_pool(path, rows=1200, seed=7, dim=SMALL_DIM, shard_rows=250, progress=False)
    return path


@pytest.fixture(scope="session")
def small_release_master(small_pool, tmp_path_factory):
    out = tmp_path_factory.mktemp("release") / "release"
    build_release(small_pool, out, SMALL_SIZES, seed=3, rows_per_file=300, progress=False)
    return out


@pytest.fixture
def small_release(small_release_master, tmp_path):
    """A private copy of the small release, free to alter."""
    out = tmp_path / "release"
    shutil.copytree(small_release_master, out)
    return out
