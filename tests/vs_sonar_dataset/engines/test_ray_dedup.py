"""The dedup stage on a real local Ray instance (2 CPUs, fractional-CPU actors): the pool equals the one
`vs-sonar dedup` writes on the local engine, byte for byte, for both methods, at a target, and after a run
stopped part way and resumed. The driver runs here (the main environment); the tile actors and the ivf training
task run in the embed environment, as `vs-sonar dedup --engine ray` runs them.

Needs Ray in both environments (scripts/setup.sh --ray); skipped otherwise. About two minutes.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from vs_sonar_dataset.core import shards
from vs_sonar_dataset.core.config import parse
from vs_sonar_dataset.dedup import stage as dedup_stage
from vs_sonar_dataset.dedup.dedupers import ExactDeduper
from vs_sonar_dataset.engines.ray_dedup import CENTROIDS_FILE, EDGE, KEPT_MASKS_DIR, TileEdges, write_kept_mask
from vs_sonar_dataset.core.envs import REPO_ROOT
from vs_sonar_dataset.fixtures.vectors import clustered, write_vectors

from os_faults import interrupted_after
from torch_probe import NO_TORCH, vs_sonar_probed

from .conftest import needs_ray_and_embed

pytestmark = needs_ray_and_embed

ROWS, DIM, SHARD_ROWS = 1200, 32, 150  # 8 vector shards, 36 tiles
# 16 lists, 1 probed: ivf keeps 5 duplicates exact dedup drops (its rule is really in use), and its 300th kept
# row is row 370, inside the third shard (the exact phase ends part way through a shard)
IVF = {"method": "ivf", "ivf_lists": 16, "ivf_probes": 1, "ivf_training_rows": 300}
SETTINGS = {"exact": {}, "ivf": IVF, "ivf-target": {**IVF, "target_rows": 700}}


@pytest.fixture(scope="module")
def vectors(tmp_path_factory):
    return write_vectors(tmp_path_factory.mktemp("ray_dedup") / "vectors", clustered(ROWS, DIM), SHARD_ROWS)


def dedup_config(name: str):
    return parse("dedup", {"device": "cpu", **SETTINGS[name]})


@pytest.fixture(scope="module")
def local_pools(vectors):
    """The local engine's pools, as `vs-sonar dedup` writes them (in the embed environment)."""
    pools = {}
    for name, values in SETTINGS.items():
        toml = vectors.parent / f"{name}.toml"
        toml.write_text("[dedup]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in
                                              {"device": "cpu", **values}.items()))
        pools[name] = vectors.parent / f"local-{name}"
        done = subprocess.run([sys.executable, "-m", "vs_sonar_dataset.cli", "dedup", str(vectors), "--out",
                               str(pools[name]), "--config", str(toml)], cwd=REPO_ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    return pools


def assert_same_pool(a, b):
    """Every file of the pool, byte for byte (the manifest's config, counts and checksums; the kept shards;
    the dropped rows with the cosines they record)."""
    names = sorted(p.name for p in a.iterdir())
    assert sorted(p.name for p in b.iterdir()) == names
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.mark.parametrize("name", SETTINGS)
def test_same_pool_as_the_local_engine(ray_local, vectors, local_pools, tmp_path, name):
    from vs_sonar_dataset.engines.ray_dedup import run_dedup_ray

    manifest = run_dedup_ray(vectors, tmp_path / "pool", dedup_config(name))
    assert manifest.complete
    assert_same_pool(local_pools[name], tmp_path / "pool")


def test_the_ivf_rule_is_in_use(local_pools):
    """The fixture's ivf settings keep rows exact dedup drops, so the equality above checks the ivf rule."""
    exact, ivf = (shards.read_manifest(local_pools[n], "pool").stats["kept"] for n in ("exact", "ivf"))
    reference = ExactDeduper(DIM, 0.95).process(clustered(ROWS, DIM)).keep.sum()
    assert exact == reference and ivf > exact
    assert shards.read_manifest(local_pools["ivf-target"], "pool").stats["input_rows_done"] < ROWS


@pytest.mark.parametrize("stop_after", [1, 4])  # before the ivf training row, and after it
def test_stopped_part_way_then_resumed(ray_local, vectors, local_pools, tmp_path, monkeypatch, stop_after):
    """Stopped after `stop_after` pool shards (as Ctrl-C would), then run again with two actors: the pool of
    an uninterrupted run. A resume after the training row trains the centroids again from the kept rows."""
    from vs_sonar_dataset.engines.ray_dedup import run_dedup_ray

    with interrupted_after(monkeypatch, dedup_stage, "write_decisions", stop_after):
        run_dedup_ray(vectors, tmp_path / "pool", dedup_config("ivf"))
    partial = shards.read_manifest(tmp_path / "pool", "pool")
    assert not partial.complete and len(partial.shards) == stop_after
    assert (tmp_path / "pool" / CENTROIDS_FILE).exists() == (stop_after == 4)
    assert (tmp_path / "pool" / KEPT_MASKS_DIR).is_dir()  # gone once complete (assert_same_pool)
    run_dedup_ray(vectors, tmp_path / "pool", dedup_config("ivf"), actors=2)
    assert_same_pool(local_pools["ivf"], tmp_path / "pool")


@pytest.mark.parametrize("listed", [False, True])
def test_a_decided_shards_dropped_rows_are_left_out_of_later_tiles(vectors, tmp_path, listed):
    """Once the driver has written shard 0's kept mask, a tile against shard 0 returns exactly the edges it
    returned before, less those to the rows the mask drops (run in-process: the actor is a plain class)."""
    settings = None
    if listed:  # the ivf rule from row 0 on, with 16 of the rows as centroids
        np.save(tmp_path / "centroids.npy", clustered(ROWS, DIM)[::75] / 4)
        settings = {"centroids": str(tmp_path / "centroids.npy"), "nprobe": 2, "first": 0}

    def tile() -> np.ndarray:
        actor = TileEdges(str(vectors), str(tmp_path), 0.95, "cpu", 1, settings)
        return np.frombuffer(actor({"rows": np.array([3]), "columns": np.array([0])})["edges"][0], EDGE)

    before = tile()
    dropped = np.unique(before["b"])[::2]
    assert len(before) >= 4 and len(dropped) >= 2
    write_kept_mask(tmp_path, 0, ~np.isin(np.arange(SHARD_ROWS), dropped))
    after = tile()
    expected = before[~np.isin(before["b"], dropped)]
    assert after[["a", "b", "recorded"]].tolist() == expected[["a", "b", "recorded"]].tolist()
    np.testing.assert_allclose(after["cos"], expected["cos"], rtol=0, atol=1e-6)


def test_command_line(vectors, local_pools, tmp_path):
    """`vs-sonar dedup --engine ray` writes the local engine's pool, and its driver decides without torch (on
    2 cores the preference demo's dedup on a running instance took 7-9 s with it, 4.5-6 s without); a Ray head
    nobody listens on fails in seconds with one line."""
    def dedup(out, *flags):
        return vs_sonar_probed("dedup", str(vectors), "--out", str(out), "--config", str(vectors.parent / "exact.toml"),
                               *flags)

    done = dedup(tmp_path / "pool", "--engine", "ray")
    assert done.returncode == 0, done.stderr
    assert "Token authentication is enabled" not in done.stderr  # the local instance's notice: not news
    assert done.stderr.strip().splitlines()[-1] == NO_TORCH
    stats = shards.read_manifest(local_pools["exact"], "pool").stats
    assert done.stdout.strip() == (f"dedup: {tmp_path / 'pool'}: {stats['kept']} rows kept of {ROWS} "
                                   f"(duplicates {stats['dropped_duplicate']})")
    assert_same_pool(local_pools["exact"], tmp_path / "pool")
    done = dedup(tmp_path / "other", "--engine", "ray", "--address", "127.0.0.1:1")
    last = done.stderr.strip().splitlines()[-2]
    assert done.returncode == 2 and "cannot reach the Ray cluster" in last and "Traceback" not in done.stderr
