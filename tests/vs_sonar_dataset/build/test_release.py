import hashlib
import json
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from release_fixtures import SMALL_SIZES

from vs_sonar_dataset.build.derived import DERIVED_COLUMNS
from vs_sonar_dataset.build.release import build_release
from vs_sonar_dataset.build.splits import SPLITS, make_plan
from vs_sonar_dataset.core.envs import REPO_ROOT
from vs_sonar_dataset.core.errors import UserError
from vs_sonar_dataset.core.shards import read_table
from vs_sonar_dataset.fixtures.synth import write_synthetic_pool


def _split(release, config, split):
    return pa.concat_tables(pq.read_table(p) for p in sorted((release / "data" / config).glob(f"{split}-*.parquet")))


def test_layout_and_file_numbering(small_release_master):
    r = small_release_master
    names = sorted(p.name for p in (r / "data" / "l").iterdir())
    assert names == ["test-00000-of-00001.parquet", "train-00000-of-00003.parquet", "train-00001-of-00003.parquet",
                     "train-00002-of-00003.parquet", "validation-00000-of-00001.parquet"]
    assert (r / "stats" / "s.json").is_file() and (r / "data" / "stats" / "stats-00000-of-00001.parquet").is_file()
    assert sorted(p.name for p in (r / "plots").iterdir()) == [
        "density_weights.png", "dimension_mean_std.png", "norm_histogram.png", "pca_projection.png",
        "probability_histogram.png"]
    assert sorted(p.name for p in (r / "map").iterdir()) == [f"{c}.{ext}" for c in "lms" for ext in ("html", "json", "png")]


def test_rows_follow_the_plan(small_pool, small_release_master):
    pool = read_table(small_pool)
    plan = make_plan(pool.num_rows, SMALL_SIZES, seed=3)
    for config in SMALL_SIZES:
        for split in SPLITS:
            rows = _split(small_release_master, config, split)
            assert rows.select(pool.column_names).equals(pool.take(plan.rows(config, split)))
            assert rows.column_names == pool.column_names + list(DERIVED_COLUMNS)  # derived.py appends them


def test_stats_are_from_train_only(small_release_master):
    import numpy as np

    from vs_sonar_dataset.core.schema import embedding_matrix

    s = json.loads((small_release_master / "stats" / "m.json").read_text())
    train = embedding_matrix(_split(small_release_master, "m", "train")).astype(np.float64)
    assert s["count"] == len(train) == 240
    np.testing.assert_allclose(s["mean"], train.mean(0), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(s["std"], train.std(0), rtol=1e-6)


def test_card_front_matter(small_release_master):
    text = (small_release_master / "README.md").read_text()
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["license"] == "mit"
    assert {c["config_name"] for c in meta["configs"]} == {"s", "m", "l", "stats"}
    assert [c["config_name"] for c in meta["configs"] if c.get("default")] == ["l"]
    info = {i["config_name"]: i for i in meta["dataset_info"]}
    assert {s["name"]: s["num_examples"] for s in info["m"]["splits"]} == {"train": 240, "validation": 30, "test": 30}
    emb = next(f for f in info["l"]["features"] if f["name"] == "embedding")
    assert emb == {"name": "embedding", "list": "float32", "length": 16}
    assert "Synthetic build" in text and "Not verified yet" in text


def test_out_that_is_not_a_release_is_refused(small_pool, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match=r"holds 1 other entry \(notes.txt\), not a release"):
        build_release(small_pool, tmp_path / "mine", SMALL_SIZES, progress=False)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_too_small_pool_is_a_clear_error(small_pool, tmp_path):
    with pytest.raises(UserError, match="800 rows missing"):
        build_release(small_pool, tmp_path / "r", {"2k": 2000}, progress=False)


def test_failure_mid_build_leaves_previous_release(small_pool, small_release, tmp_path):
    before = (small_release / "release.json").read_text()
    shard = small_pool.parent / "broken"
    import shutil

    shutil.copytree(small_pool, shard)
    (shard / "shard-00003.parquet").write_bytes(b"garbage")
    from vs_sonar_dataset.core.errors import ShardError

    with pytest.raises(ShardError, match="shard-00003.parquet"):
        build_release(shard, small_release, SMALL_SIZES, progress=False)
    assert (small_release / "release.json").read_text() == before
    assert sorted(p.name for p in small_release.parent.iterdir()) == ["release"]  # no work folder, no spill


def _spills(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("vs-sonar-shuffle-*"))


def test_a_killed_build_spills_only_into_its_work_folder_and_the_next_build_removes_it(tmp_path):
    write_synthetic_pool(tmp_path / "pool", rows=300_000, seed=1, dim=32, shard_rows=100_000, progress=False)
    settings = tmp_path / "quick.toml"  # a coarse index and no map: the second build has to finish, not be good
    settings.write_text("[build.density]\nmethod = \"ivf\"\nivf_lists = 64\nivf_probes = 1\n"
                        "[build.map]\nenabled = false\n")
    cmd = [sys.executable, "-m", "vs_sonar_dataset.cli", "build", str(tmp_path / "pool"), "--out",
           str(tmp_path / "rel"), "--sizes", "a=300000", "--config", str(settings)]
    build = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO_ROOT)
    deadline = time.monotonic() + 60
    while not _spills(tmp_path) and build.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    build.kill()
    build.wait()
    spills = _spills(tmp_path)
    assert len(spills) == 1 and spills[0].parts[0] == "rel.partial", spills  # killed mid-shuffle, spill inside
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pool", "quick.toml", "rel"] and not _spills(tmp_path)


def test_same_pool_and_settings_give_a_byte_identical_release(small_pool, tmp_path):
    def digests(folder):
        return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(folder.rglob("*")) if p.is_file()}

    for name in ("a", "b"):
        build_release(small_pool, tmp_path / name, SMALL_SIZES, seed=3, rows_per_file=300, progress=False)
    assert digests(tmp_path / "a") == digests(tmp_path / "b")
    assert "build_seconds" not in (tmp_path / "a" / "release.json").read_text()


def test_the_card_names_the_vectors_the_pool_recorded(tmp_path):
    write_synthetic_pool(tmp_path / "pool", rows=200, seed=1, dim=512, progress=False)
    build_release(tmp_path / "pool", tmp_path / "rel", {"a": 100}, progress=False)
    card = (tmp_path / "rel" / "README.md").read_text()
    assert "512-dimensional synthetic vector (seeded Gaussian noise, not an embedding)" in card
    assert "SONAR text embedding" not in card and "computed in" not in card  # no encoder made them


def test_published_config_keeps_no_local_paths():
    from vs_sonar_dataset.build.release import without_local_paths

    config = {"embed": {"asset_dir": "/home/me/runs/x/fixtures/tiny_sonar", "encoder": "tiny"},
              "paths": ["/data/gsm8k", "openai/gsm8k"], "seed": 3}
    assert without_local_paths(config) == {"embed": {"asset_dir": "<local>/tiny_sonar", "encoder": "tiny"},
                                           "paths": ["<local>/gsm8k", "openai/gsm8k"], "seed": 3}


@pytest.mark.parametrize("sizes", ["", "1k", "a=1000,b"])
def test_sizes_that_say_nothing_usable_are_refused_not_replaced_by_the_defaults(small_pool, tmp_path, sizes):
    cmd = [sys.executable, "-m", "vs_sonar_dataset.cli", "build", str(small_pool), "--out", str(tmp_path / "rel"),
           "--sizes", sizes]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert result.returncode == 2 and f"--sizes {sizes!r}: expected NAME=SIZE" in result.stderr, result.stderr
    assert not (tmp_path / "rel").exists()


def test_a_pool_that_breaks_the_vectors_contract_is_refused_before_any_work(tmp_path):
    """NaN or inf vectors (build ended in an ArrowInvalid traceback) and repeated ids (build wrote a config
    holding an id twice) are refused in one line naming the file and the row; so is --out inside the pool."""
    import numpy as np

    from vs_sonar_dataset.fixtures.vectors import clustered, write_vectors

    x = clustered(30, 8)
    x[17, 0] = np.inf
    pool = write_vectors(tmp_path / "pool", x, rows_per_shard=10)
    manifest = json.loads((pool / "manifest.json").read_text())
    (pool / "manifest.json").write_text(json.dumps({**manifest, "kind": "pool"}))
    for out, words in [(tmp_path / "rel", ["shard-00001.parquet: row 7", "holds NaN or inf"]),
                       (pool / "rel", ["inside the pool"])]:
        cmd = [sys.executable, "-m", "vs_sonar_dataset.cli", "build", str(pool), "--out", str(out), "--sizes", "a=20"]
        result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert all(w in result.stderr for w in words) and not out.exists(), result.stderr
