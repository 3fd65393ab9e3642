"""Model checks on release folders whose vectors come from real encoders: the tiny SONAR pair (alignment and
round trip) and all-MiniLM-L6-v2 (alignment only: no decoder)."""

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sonar_fixtures import needs_sonar

from vs_sonar_dataset.build.release import MODEL_CHECKS, RELEASE_MANIFEST
from vs_sonar_dataset.core.config import ModelCheckConfig
from vs_sonar_dataset.core.envs import REPO_ROOT
from vs_sonar_dataset.core.errors import UserError
from vs_sonar_dataset.core.schema import embedding_type
from vs_sonar_dataset.model_check.checks import largest_config_files, read_sample, run_model_checks, sample_indices

pytestmark = needs_sonar

KEYS = {"passed", "checks_run", "encoder", "decoder", "config", "text_column", "sample_size", "seed", "alignment",
        "round_trip"}
ALIGNMENT_KEYS = {"threshold", "min_cosine", "mean_cosine", "failures", "passed"}
ROUND_TRIP_KEYS = {"mean", "p05", "p50", "p95", "pass_rate", "pass_threshold", "min_pass_rate",
                   "unrelated_baseline_mean", "exact_text_rate", "examples", "passed"}


def vectors_table(texts: list[str], vectors: np.ndarray, encoder_name: str, text_column="instruction") -> pa.Table:
    """Rows as a release holds them: id, text, fp32 vector, encoder name."""
    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    return pa.table({"id": [f"r{i:03d}" for i in range(len(texts))], text_column: texts,
                     "embedding": pa.FixedSizeListArray.from_arrays(flat, type=embedding_type(vectors.shape[1])),
                     "encoder": [encoder_name] * len(texts)})


def shifted(table: pa.Table) -> pa.Table:
    """Every vector moved to the next row."""
    vectors = table.column("embedding").combine_chunks()
    order = pa.array(np.roll(np.arange(table.num_rows), 1))
    return table.set_column(table.schema.get_field_index("embedding"), "embedding", vectors.take(order))


@pytest.fixture(scope="module")
def pool_table(encoder, train_texts):
    return vectors_table(train_texts, encoder.encode_batch(train_texts), encoder.name)


def make_release(root, table: pa.Table, embed: dict | None = None, text_column="instruction"):
    """Release layout: a small config and a larger one holding every row, split over two files, and the
    release.json fields model-check reads."""
    half = table.num_rows // 2
    for config, parts in {"small": [table.slice(0, 8)], "all": [table.slice(0, half), table.slice(half)]}.items():
        folder = root / "data" / config
        folder.mkdir(parents=True)
        for i, part in enumerate(parts):
            split = ["train", "test"][i]
            pq.write_table(part, folder / f"{split}-00000-of-00001.parquet")
    manifest = {"text_column": text_column, "pool": {"config": {"embed": embed or {}}}}
    (root / RELEASE_MANIFEST).write_text(json.dumps(manifest))
    return root


def check_config(**kw):
    return ModelCheckConfig(**{"sample": 1000, "beam_size": 3, "max_seq_len": 128, **kw})  # 1000: every row


def test_a_good_release_passes(tmp_path, pool_table, encoder, decoder):
    release = make_release(tmp_path, pool_table)
    result = run_model_checks(release, encoder, decoder, check_config())
    assert json.loads((release / MODEL_CHECKS).read_text()) == result
    assert set(result) == KEYS and ALIGNMENT_KEYS <= set(result["alignment"])
    assert ROUND_TRIP_KEYS <= set(result["round_trip"]) and result["checks_run"] == ["alignment", "round_trip"]
    assert result["sample_size"] == pool_table.num_rows and result["config"] == "all"
    assert result["decoder"] == "tiny_sonar_decoder" and result["text_column"] == "instruction"
    rt = result["round_trip"]
    assert result["passed"] and result["alignment"]["min_cosine"] > 0.999
    assert rt["exact_text_rate"] >= 0.8 and rt["mean"] > rt["unrelated_baseline_mean"] + 0.3
    assert rt["p05"] <= rt["p50"] <= rt["p95"] and len(rt["examples"]) == 5 and rt["beats_unrelated_baseline"]
    assert set(rt["examples"][0]) == {"id", "text", "decoded", "cosine"}


def test_misaligned_rows_fail_alignment_and_round_trip(tmp_path, pool_table, encoder, decoder):
    release = make_release(tmp_path, shifted(pool_table))
    result = run_model_checks(release, encoder, decoder, check_config())
    assert not result["passed"] and not result["alignment"]["passed"]
    assert len(result["alignment"]["failures"]) == pool_table.num_rows
    assert result["round_trip"]["exact_text_rate"] < 0.2


def test_the_text_column_is_read_by_name(tmp_path, pool_table, encoder):
    table = pool_table.rename_columns(["id", "text", "embedding", "encoder"])
    release = make_release(tmp_path, table, text_column="text")
    result = run_model_checks(release, encoder, None, check_config(), text_column="text")
    assert result["passed"] and result["text_column"] == "text" and result["alignment"]["min_cosine"] > 0.999
    with pytest.raises(UserError, match="no config with id, instruction and embedding"):
        run_model_checks(release, encoder, None, check_config())


def test_sample_is_seeded(tmp_path, pool_table, encoder, decoder):
    release = make_release(tmp_path, pool_table)
    ids = []
    for seed in (1, 1, 2):
        result = run_model_checks(release, encoder, decoder, check_config(sample=6, seed=seed, max_seq_len=64))
        assert result["sample_size"] == 6
        ids.append([e["id"] for e in result["round_trip"]["examples"]])
    assert ids[0] == ids[1] != ids[2]


def test_sample_read_file_by_file_is_the_sample_of_the_whole_config(tmp_path, pool_table):
    release = make_release(tmp_path, pool_table)
    name, files, counts = largest_config_files(release)
    assert name == "all" and len(files) == 2 and sum(counts) == pool_table.num_rows
    whole = pa.concat_tables(pq.read_table(f, columns=["id", "instruction", "embedding"]) for f in files)
    for sample, seed in [(12, 1), (None, 0), (1, 5)]:
        picked = sample_indices(whole.num_rows, sample, seed)
        if sample == 12:
            assert picked.min() < counts[0] <= picked.max()  # rows from both files
        assert read_sample(files, counts, picked).to_pydict() == whole.take(pa.array(picked)).to_pydict()


def test_a_release_without_rows_is_a_user_error(tmp_path, pool_table, encoder, decoder):
    release = make_release(tmp_path, pool_table.slice(0, 0))
    with pytest.raises(UserError, match="no rows"):
        run_model_checks(release, encoder, decoder, check_config())


def test_an_encoder_of_another_width_is_a_user_error(tmp_path, pool_table, minilm):
    release = make_release(tmp_path, pool_table)
    with pytest.raises(UserError, match="makes 384-d vectors, the release holds 1024-d ones"):
        run_model_checks(release, minilm, None, check_config())


# --- an encoder without a decoder: alignment only ---

@pytest.fixture(scope="module")
def minilm_dir(tmp_path_factory):
    from vs_sonar_dataset.fixtures.minilm import build

    return build(tmp_path_factory.mktemp("minilm") / "minilm")


def minilm_settings(folder) -> dict:
    return {"kind": "sentence_transformers", "model": str(folder),
            "model_name": "sentence-transformers/all-MiniLM-L6-v2", "device": "cpu"}


@pytest.fixture(scope="module")
def minilm(minilm_dir):
    from vs_sonar_dataset.encoders import encoder_plugin

    plugin = encoder_plugin("sentence_transformers")
    return plugin.load(plugin.Config(**minilm_settings(minilm_dir)))


@pytest.fixture(scope="module")
def minilm_table(minilm, train_texts):
    return vectors_table(train_texts, minilm.encode_batch(train_texts), minilm.name, "text")


def verify_checks(release):
    """What verify makes of the release's model_checks.json."""
    from vs_sonar_dataset.verify.checks import Report, _model_checks

    report = Report()
    results = _model_checks(release, "existing", report)
    return report, results


def test_an_encoder_without_decoder_gets_alignment_only_and_verify_accepts_it(tmp_path, minilm, minilm_table):
    release = make_release(tmp_path, minilm_table, text_column="text")
    result = run_model_checks(release, minilm, None, check_config(), text_column="text")
    assert set(result) == KEYS and result["checks_run"] == ["alignment"]
    assert result["round_trip"] is None and result["decoder"] is None and result["passed"]
    assert result["encoder"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert result["alignment"]["min_cosine"] > 0.9999
    assert json.loads((release / MODEL_CHECKS).read_text()) == result
    report, results = verify_checks(release)
    assert results == result and report.passed
    assert [c["name"] for c in report.checks] == ["model checks: alignment"]
    assert "round trip not run: encoder sentence-transformers/all-MiniLM-L6-v2 has no decoder" \
        in report.checks[0]["detail"]


def test_misaligned_rows_fail_alignment_without_a_decoder_too(tmp_path, minilm, minilm_table):
    release = make_release(tmp_path, shifted(minilm_table), text_column="text")
    result = run_model_checks(release, minilm, None, check_config(), text_column="text")
    assert not result["passed"] and len(result["alignment"]["failures"]) == minilm_table.num_rows
    report, _ = verify_checks(release)
    assert not report.passed and report.checks[0]["name"] == "model checks: alignment"


def test_verify_reads_the_sonar_file_old_and_new(tmp_path, pool_table, encoder, decoder):
    release = make_release(tmp_path, pool_table)
    result = run_model_checks(release, encoder, decoder, check_config(sample=8))
    report, _ = verify_checks(release)
    assert [c["name"] for c in report.checks] == ["model checks: alignment", "model checks: round trip"]
    assert report.passed
    # a file written before `checks_run` existed: both checks ran
    legacy = {k: v for k, v in result.items() if k not in ("checks_run", "text_column")}
    (release / MODEL_CHECKS).write_text(json.dumps(legacy))
    report, _ = verify_checks(release)
    assert [c["name"] for c in report.checks] == ["model checks: alignment", "model checks: round trip"]
    # a file that says the round trip ran but holds none is not what model-check writes
    (release / MODEL_CHECKS).write_text(json.dumps({**result, "round_trip": None}))
    report, _ = verify_checks(release)
    assert [c["name"] for c in report.checks] == ["model checks"] and not report.passed


# --- the command ---

def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "vs_sonar_dataset.cli", "model-check", *map(str, args)],
                          cwd=REPO_ROOT, env={**os.environ}, capture_output=True, text=True)


SONAR_RECORD = {"kind": "sonar", "model": "tiny_sonar_encoder", "asset_dir": "<local>/tiny_sonar", "device": "cpu"}


def test_cli_exit_codes(tmp_path, pool_table, tiny_sonar):
    good = make_release(tmp_path / "good", pool_table, SONAR_RECORD)
    cards = f"asset_dir={tiny_sonar}"  # a published release keeps only the folder's name
    done = run_cli(good, "--encoder-set", cards, "--set", "sample=10")
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((good / MODEL_CHECKS).read_text())
    assert result["encoder"] == "tiny_sonar_encoder" and result["checks_run"] == ["alignment", "round_trip"]
    assert result["decoder"] == "tiny_sonar_decoder" and result["sample_size"] == 10

    failing = run_cli(make_release(tmp_path / "bad", shifted(pool_table), SONAR_RECORD), "--encoder-set", cards,
                      "--set", "sample=5")
    assert failing.returncode == 3 and "FAILED" in failing.stdout

    strict = run_cli(good, "--encoder-set", cards, "--set", "sample=10", "--set", "min_pass_rate=1.01")
    assert strict.returncode == 2 and "min_pass_rate" in strict.stderr

    bad = run_cli(good, "--set", "sample=lots")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "sample" in bad.stderr
    missing = run_cli(tmp_path / "nowhere")
    assert missing.returncode == 2 and "nowhere" in missing.stderr


def test_cli_checks_a_sentence_transformers_release_on_alignment(tmp_path, minilm_dir, minilm_table):
    release = make_release(tmp_path, minilm_table, minilm_settings(minilm_dir), text_column="text")
    done = run_cli(release, "--set", "sample=10")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "PASSED" in done.stdout and "no round trip" in done.stdout
    result = json.loads((release / MODEL_CHECKS).read_text())
    assert result["checks_run"] == ["alignment"] and result["round_trip"] is None and result["sample_size"] == 10
