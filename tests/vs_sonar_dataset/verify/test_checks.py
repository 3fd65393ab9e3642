import json
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from vs_sonar_dataset.card.cli import card_is_current
from vs_sonar_dataset.verify import checks as verify
from vs_sonar_dataset.verify.checks import REPORT, changed_since_verify, verify_release


def _cli_card(release):
    return subprocess.run([sys.executable, "-m", "vs_sonar_dataset.cli", "card", str(release)], capture_output=True,
                          text=True)


def _failed(report):
    return {c["name"] for c in report["checks"] if not c["passed"]}


@pytest.fixture(params=["prepared", "streaming"])
def load_mode(request, monkeypatch):
    """Every check runs both ways: configs loaded into the Arrow cache, and streamed (as large configs are)."""
    monkeypatch.setattr(verify, "STREAM_ABOVE_ROWS", 0 if request.param == "streaming" else 10**9)
    return request.param


def test_good_release_passes_and_the_card_stage_shows_it(small_pool, small_release, load_mode):
    built_card = (small_release / "README.md").read_bytes()
    report = verify_release(small_release, small_pool, progress=False)
    assert (small_release / "README.md").read_bytes() == built_card  # verify only reads
    assert report["passed"], _failed(report)
    loads = {c["name"]: c["detail"] for c in report["checks"] if c["name"].endswith("load_dataset")}
    assert set(loads) == {"s: load_dataset", "m: load_dataset", "l: load_dataset"}
    assert all(d.startswith(f"{load_mode};") for d in loads.values())
    names = {c["name"] for c in report["checks"]}
    assert {"l: rows match pool", "nesting: s ⊂ m (test)", "card YAML valid", "m: stats recomputed equal"} <= names
    files = json.loads((small_release / REPORT).read_text())["files"]
    assert "README.md" not in files and REPORT not in files and "release.json" in files
    assert not card_is_current(small_release)  # the card build wrote says "not verified yet"
    assert _cli_card(small_release).returncode == 0
    card = (small_release / "README.md").read_text()
    assert "**passed**" in card and "Not verified yet" not in card and card_is_current(small_release)
    assert not changed_since_verify(small_release, json.loads((small_release / REPORT).read_text()))


def test_an_altered_vector_is_caught(small_pool, small_release, load_mode):
    path = small_release / "data" / "m" / "validation-00000-of-00001.parquet"
    table = pq.read_table(path)
    vectors = np.stack(table.column("embedding").to_numpy(zero_copy_only=False)).copy()
    vectors[3, 0] = np.nextafter(vectors[3, 0], np.float32(1))  # one ulp
    import pyarrow as pa

    column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), 16)
    pq.write_table(table.set_column(table.schema.get_field_index("embedding"), "embedding", column), path)
    report = verify_release(small_release, small_pool, progress=False)
    assert not report["passed"]
    assert "m: rows match pool" in _failed(report)


def test_tampered_stats_and_leaked_row_are_caught(small_pool, small_release, load_mode):
    stats_path = small_release / "stats" / "s.json"
    stats = json.loads(stats_path.read_text())
    stats["std"][0] *= 1.0001
    stats_path.write_text(json.dumps(stats))
    # copy a train row into the test split of config l
    train = pq.read_table(small_release / "data" / "l" / "train-00000-of-00003.parquet")
    test_path = small_release / "data" / "l" / "test-00000-of-00001.parquet"
    test = pq.read_table(test_path)
    import pyarrow as pa

    pq.write_table(pa.concat_tables([test.slice(0, 99), train.slice(0, 1)]), test_path)
    failed = _failed(verify_release(small_release, small_pool, progress=False))
    # the leaked row also changes the test split's densities, weights and map columns (it has a map place)
    assert failed == {"s: stats recomputed equal", "stats config matches stats/*.json", "l: ids unique across splits",
                      "l test: density recomputed", "l test: density weights", "l test: map columns"}


def test_splits_of_several_files_stream_in_lanes_that_start_where_the_last_ended(small_release):
    import datasets

    ds = datasets.load_dataset(str(small_release), "l", streaming=True)
    files = [f"data/l/train-{i:05d}-of-00003.parquet" for i in range(3)]
    lanes = verify._lanes(ds["train"], "train", True, small_release, files)
    assert [lane.start for lane in lanes] == [0, 600]  # datasets gives the first lane two of the three files
    assert [sum(b.num_rows for b in lane.batches) for lane in lanes] == [600, 200]
    assert len(verify._lanes(ds["test"], "test", True, small_release, ["data/l/test-00000-of-00001.parquet"])) == 1


def test_a_row_missing_from_a_first_lane_fails_sizes_and_stats(small_pool, small_release, monkeypatch):
    monkeypatch.setattr(verify, "STREAM_ABOVE_ROWS", 0)
    path = small_release / "data" / "l" / "train-00001-of-00003.parquet"
    pq.write_table(pq.read_table(path).slice(1), path)  # the second lane would start one row too late
    failed = _failed(verify_release(small_release, small_pool, progress=False))
    assert {"l: split sizes", "l: stats recomputed equal"} <= failed


def test_without_pool_rows_are_not_compared_and_cli_exits_nonzero(small_release):
    result = subprocess.run([sys.executable, "-m", "vs_sonar_dataset.cli", "verify", str(small_release)],
                            capture_output=True, text=True)
    assert result.returncode == 3
    assert "FAIL  rows_match_pool: no --pool given" in result.stdout
    assert "verify: FAILED" in result.stdout


def test_model_checks_file_is_included(small_pool, small_release):
    results = {"passed": False, "encoder": "e", "decoder": "d", "sample_size": 10, "seed": 0,
               "alignment": {"threshold": 0.99, "min_cosine": 0.999, "mean_cosine": 0.9995, "failures": [],
                             "passed": True},
               "round_trip": {"mean": 0.5, "p05": 0.1, "p50": 0.5, "p95": 0.9, "pass_rate": 0.2, "pass_threshold": 0.9,
                              "min_pass_rate": 0.5, "unrelated_baseline_mean": 0.3, "exact_text_rate": 0.1,
                              "examples": [], "passed": False}}
    (small_release / "model_checks.json").write_text(json.dumps(results))
    report = verify_release(small_release, small_pool, progress=False)
    assert _failed(report) == {"model checks: round trip"}
    assert _cli_card(small_release).returncode == 0  # a failed verify is written into the card too
    assert "Round trip" in (small_release / "README.md").read_text()


def test_digests_collected_while_building_are_the_pool_rows(small_pool, tmp_path):
    from release_fixtures import SMALL_SIZES

    from vs_sonar_dataset.build.release import build_release
    from vs_sonar_dataset.verify.checks import read_pool_digests

    collected = {}
    build_release(small_pool, tmp_path / "r", SMALL_SIZES, seed=3, progress=False, plots=False,
                  pool_digests=collected)
    from_pool = read_pool_digests(small_pool)
    assert len(collected) == 1000 and all(from_pool[i] == d for i, d in collected.items())
    report = verify_release(tmp_path / "r", small_pool, progress=False, pool_digests=collected)
    assert report["passed"], _failed(report)


DATA_FILE = "data/m/validation-00000-of-00001.parquet"
DATA_FILE_FAILS = {"data files readable", "m: load_dataset",
                   *(f"nesting: {pair} ({split})" for pair in ("s ⊂ m", "m ⊂ l")
                     for split in ("train", "validation", "test"))}


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbage(path):
    path.write_bytes(bytes(range(256)) * (path.stat().st_size // 256 + 1))


# damage -> (file, how, the failed checks, the check that names the file, how its detail starts)
DAMAGE = {
    "truncated data file": (DATA_FILE, _truncate, DATA_FILE_FAILS, "data files readable",
                            f"{DATA_FILE}: not Parquet (Parquet magic bytes not found"),
    "deleted data file": (DATA_FILE, lambda p: p.unlink(), DATA_FILE_FAILS, "data files readable",
                          f"{DATA_FILE}: missing"),
    "garbage data file": (DATA_FILE, _garbage, DATA_FILE_FAILS, "data files readable", f"{DATA_FILE}: not Parquet ("),
    "deleted stats file": ("stats/m.json", lambda p: p.unlink(),
                           {"stats files readable", "m: stats recomputed equal", "stats config matches stats/*.json",
                            "m: robust stats recomputed equal"},
                           "stats files readable", "stats/m.json: missing"),
}


def _cli_verify(release, pool):
    return subprocess.run([sys.executable, "-m", "vs_sonar_dataset.cli", "verify", str(release), "--pool", str(pool)],
                          capture_output=True, text=True)


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_file_is_a_failed_check_that_names_it(small_pool, small_release, damage):
    name, how, fails, check, detail = DAMAGE[damage]
    how(small_release / name)
    report = verify_release(small_release, small_pool, progress=False)
    assert _failed(report) == fails
    on_disk = json.loads((small_release / REPORT).read_text())
    assert on_disk["passed"] is False and on_disk["checks"] == report["checks"]
    details = {c["name"]: c["detail"] for c in on_disk["checks"]}
    assert details[check].startswith(detail)


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_file_fails_verify_on_the_command_line_without_a_traceback(small_pool, small_release, damage):
    name, how, _, check, detail = DAMAGE[damage]
    how(small_release / name)
    result = _cli_verify(small_release, small_pool)
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    assert f"FAIL  {check}: {detail}" in result.stdout and "verify: FAILED" in result.stdout
    assert json.loads((small_release / REPORT).read_text())["passed"] is False
    card = _cli_card(small_release)  # no card can show a release it cannot read: one line, no traceback
    assert card.returncode == 2 and "Traceback" not in card.stderr and name in card.stderr, card.stderr


def test_a_verify_that_cannot_finish_leaves_no_report(small_pool, small_release, tmp_path):
    import shutil

    from vs_sonar_dataset.core.shards import read_manifest

    pool = tmp_path / "pool"
    shutil.copytree(small_pool, pool)
    assert verify_release(small_release, pool, progress=False)["passed"]
    shard = pool / read_manifest(pool).shards[2]["file"]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(data)  # the pool manifest is unchanged: reading the shard raises ShardError
    result = _cli_verify(small_release, pool)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if " INFO " not in line and " DEBUG " not in line]
    assert len(errors) == 1 and errors[0].startswith("vs-sonar verify: error: ") and shard.name in errors[0]
    assert not (small_release / REPORT).exists()


def test_an_input_error_leaves_the_previous_report_as_it_was(small_pool, small_release, tmp_path):
    """A mistyped --pool or a release without release.json is refused before verify touches its report."""
    assert verify_release(small_release, small_pool, progress=False)["passed"]
    before = (small_release / REPORT).read_bytes()
    result = _cli_verify(small_release, tmp_path / "no-such-pool")
    assert result.returncode == 2 and "Traceback" not in result.stderr and "no-such-pool" in result.stderr
    assert (small_release / REPORT).read_bytes() == before
    (small_release / "release.json").rename(tmp_path / "release.json")
    result = _cli_verify(small_release, small_pool)
    assert result.returncode == 2 and "release.json" in result.stderr
    assert (small_release / REPORT).read_bytes() == before


def test_two_verifies_write_the_same_bytes(small_pool, small_release):
    import hashlib

    def digests():
        return [hashlib.sha256((small_release / f).read_bytes()).hexdigest() for f in (REPORT, "README.md")]

    report = verify_release(small_release, small_pool, progress=False)
    assert report["passed"] and "seconds" not in report
    first = digests()
    assert verify_release(small_release, small_pool, progress=False) == report
    assert digests() == first
