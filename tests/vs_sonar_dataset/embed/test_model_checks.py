"""Model checks on release folders made from pools of the tiny SONAR fixture."""

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vs_sonar_dataset import shards
from vs_sonar_dataset.embed.config import EmbedConfig, ModelCheckConfig
from vs_sonar_dataset.embed.model_checks import largest_config_files, read_sample, run_model_checks, sample_indices
from vs_sonar_dataset.release import MODEL_CHECKS
from vs_sonar_dataset.embed.stage import run_embed
from vs_sonar_dataset.envs import REPO_ROOT
from vs_sonar_dataset.errors import UserError
from vs_sonar_dataset.fixtures.candidates import write_candidates

from .conftest import needs_sonar

pytestmark = needs_sonar

KEYS = {"passed", "encoder", "decoder", "sample_size", "seed", "alignment", "round_trip"}
ALIGNMENT_KEYS = {"threshold", "min_cosine", "mean_cosine", "failures", "passed"}
ROUND_TRIP_KEYS = {"mean", "p05", "p50", "p95", "pass_rate", "pass_threshold", "min_pass_rate",
                   "unrelated_baseline_mean", "exact_text_rate", "examples", "passed"}


@pytest.fixture(scope="module")
def pool_table(tmp_path_factory, tiny_sonar, encoder, train_texts):
    root = tmp_path_factory.mktemp("mc")
    cands = write_candidates(root / "cands", train_texts)
    cfg = EmbedConfig(encoder="tiny_sonar_encoder", asset_dir=str(tiny_sonar), device="cpu").validate()
    run_embed(cands, root / "pool", cfg, encoder)
    return shards.read_table(root / "pool", "pool")


def make_release(root, table: pa.Table):
    """Release layout: a small config and a larger one holding every row, split over two files."""
    half = table.num_rows // 2
    for config, parts in {"small": [table.slice(0, 8)], "all": [table.slice(0, half), table.slice(half)]}.items():
        folder = root / "data" / config
        folder.mkdir(parents=True)
        for i, part in enumerate(parts):
            split = ["train", "test"][i]
            pq.write_table(part, folder / f"{split}-00000-of-00001.parquet")
    return root


def check_config(**kw):
    return ModelCheckConfig(sample=None, beam_size=3, max_seq_len=128, **kw).validate()


def embed_config(tiny_sonar):
    return EmbedConfig(encoder="tiny_sonar_encoder", asset_dir=str(tiny_sonar), device="cpu").validate()


def test_a_good_release_passes(tmp_path, pool_table, tiny_sonar, encoder, decoder):
    release = make_release(tmp_path, pool_table)
    result = run_model_checks(release, embed_config(tiny_sonar), check_config(), encoder, decoder)
    assert json.loads((release / MODEL_CHECKS).read_text()) == result
    assert KEYS <= set(result) and ALIGNMENT_KEYS <= set(result["alignment"])
    assert ROUND_TRIP_KEYS <= set(result["round_trip"])
    assert result["sample_size"] == pool_table.num_rows and result["config"] == "all"
    rt = result["round_trip"]
    assert result["passed"] and result["alignment"]["min_cosine"] > 0.999
    assert rt["exact_text_rate"] >= 0.8 and rt["mean"] > rt["unrelated_baseline_mean"] + 0.3
    assert rt["p05"] <= rt["p50"] <= rt["p95"] and len(rt["examples"]) == 5 and rt["beats_unrelated_baseline"]


def test_misaligned_rows_fail_alignment_and_round_trip(tmp_path, pool_table, tiny_sonar, encoder, decoder):
    vectors = pool_table.column("embedding").combine_chunks()
    order = np.roll(np.arange(pool_table.num_rows), 1)  # every vector moved to the next row
    shifted = pool_table.set_column(pool_table.schema.get_field_index("embedding"), "embedding",
                                    vectors.take(pa.array(order)))
    release = make_release(tmp_path, shifted)
    result = run_model_checks(release, embed_config(tiny_sonar), check_config(), encoder, decoder)
    assert not result["passed"] and not result["alignment"]["passed"]
    assert len(result["alignment"]["failures"]) == pool_table.num_rows
    assert result["round_trip"]["exact_text_rate"] < 0.2


def test_sample_is_seeded(tmp_path, pool_table, tiny_sonar, encoder, decoder):
    release = make_release(tmp_path, pool_table)
    ids = []
    for seed in (1, 1, 2):
        check = ModelCheckConfig(sample=6, seed=seed, beam_size=2, max_seq_len=64)
        result = run_model_checks(release, embed_config(tiny_sonar), check, encoder, decoder)
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


def test_a_release_without_rows_is_a_user_error(tmp_path, pool_table, tiny_sonar, encoder, decoder):
    release = make_release(tmp_path, pool_table.slice(0, 0))
    with pytest.raises(UserError, match="no rows"):
        run_model_checks(release, embed_config(tiny_sonar), check_config(), encoder, decoder)


def run_cli(*args):
    env = {**os.environ}
    return subprocess.run([sys.executable, "-m", "vs_sonar_dataset.cli", "model-check", *map(str, args)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True)


def test_cli_exit_codes(tmp_path, pool_table, tiny_sonar):
    good = make_release(tmp_path / "good", pool_table)
    done = run_cli(good, "--asset-dir", tiny_sonar, "--sample", "10", "--device", "cpu")
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((good / MODEL_CHECKS).read_text())
    assert result["encoder"] == "tiny_sonar_encoder"  # found in the data's encoder column
    assert result["decoder"] == "tiny_sonar_decoder" and result["sample_size"] == 10

    vectors = pool_table.column("embedding").combine_chunks()
    shifted = pool_table.set_column(pool_table.schema.get_field_index("embedding"), "embedding",
                                    vectors.take(pa.array(np.roll(np.arange(pool_table.num_rows), 1))))
    failing = run_cli(make_release(tmp_path / "bad", shifted), "--asset-dir", tiny_sonar, "--sample", "5")
    assert failing.returncode == 1 and "FAILED" in failing.stdout

    strict = run_cli(good, "--asset-dir", tiny_sonar, "--sample", "10", "--min-pass-rate", "1.01")
    assert strict.returncode == 2 and "min_pass_rate" in strict.stderr

    bad = run_cli(good, "--sample", "lots")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--sample" in bad.stderr
    missing = run_cli(tmp_path / "nowhere")
    assert missing.returncode == 2 and "not found" in missing.stderr
