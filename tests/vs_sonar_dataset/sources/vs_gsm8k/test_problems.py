"""GSM8K sources: local JSONL / Parquet / directory, stable ids, final answers, and clear errors."""

import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vs_sonar_dataset.core.envs import SHARED_GSM8K
from vs_sonar_dataset.core.errors import UserError
from vs_sonar_dataset.sources.vs_gsm8k.config import load_config
from vs_sonar_dataset.sources.vs_gsm8k.problems import (GSM8K_ENV, Gsm8kSource, final_answer, fingerprint,
                                                        resolve_gsm8k_location)

from .conftest import PROBLEMS, write_config, write_gsm8k


def test_directory_gives_ids_by_split_and_index_and_final_answers(gsm8k_dir):
    problems = Gsm8kSource(str(gsm8k_dir), ("train", "test")).load()
    assert len(problems) == len(PROBLEMS) + 5
    assert problems[0].id == "train-00000" and problems[len(PROBLEMS)].id == "test-00000"
    assert problems[11].id == "train-00011" and problems[11].final_answer == "32"
    assert problems[6].final_answer == "820" and problems[0].question == PROBLEMS[0][0]


def test_parquet_and_jsonl_give_the_same_problems(tmp_path):
    jsonl = write_gsm8k(tmp_path / "a", "train")
    (tmp_path / "b").mkdir()
    pq.write_table(pa.Table.from_pylist([{"question": q, "answer": a} for q, a in PROBLEMS]),
                   tmp_path / "b" / "train.parquet")
    from_jsonl = Gsm8kSource(str(jsonl)).load()
    assert from_jsonl == Gsm8kSource(str(tmp_path / "b")).load()
    assert from_jsonl == Gsm8kSource(str(tmp_path / "b" / "train.parquet")).load()
    assert fingerprint(from_jsonl) != fingerprint(from_jsonl[:-1])


def test_final_answer_is_what_follows_the_marker():
    assert final_answer("so 3 + 4 = 7\n#### 1,234") == "1234"
    with pytest.raises(ValueError):
        final_answer("no marker here")


@pytest.mark.parametrize("content,message", [
    ("not json\n", "not valid JSON"),
    ('{"question": "Q?"}\n', "needs string fields"),
    ('{"question": "Q?", "answer": "12"}\n', "no '####' marker"),
    ('{"question": "Q?", "answer": "#### "}\n', "empty final answer"),
    ("\n", "no problems"),
    ('[1, 2]\n', "JSON object per line"),
])
def test_bad_rows_are_user_errors_with_file_and_line(tmp_path, content, message):
    path = tmp_path / "train.jsonl"
    path.write_text(content)
    with pytest.raises(UserError, match=message) as error:
        Gsm8kSource(str(path)).load()
    assert str(path) in str(error.value)


def test_missing_locations_and_wrong_files_are_user_errors(tmp_path, gsm8k_dir):
    with pytest.raises(UserError, match="does not exist"):
        Gsm8kSource(str(tmp_path / "nope" / "train.jsonl")).load()
    with pytest.raises(UserError, match="neither validation.jsonl"):
        Gsm8kSource(str(gsm8k_dir), ("validation",)).load()
    with pytest.raises(UserError, match="looks like the test split"):
        Gsm8kSource(str(gsm8k_dir / "test.jsonl"), ("train",)).load()
    (tmp_path / "train.csv").write_text("question,answer\n")
    with pytest.raises(UserError, match="expected a .jsonl or .parquet"):
        Gsm8kSource(str(tmp_path / "train.csv")).load()


def test_hub_id_goes_through_datasets_and_fails_clearly_offline(tmp_path):
    """The Hub path is the real `datasets.load_dataset` call; offline it must end in one clear UserError."""
    source = Gsm8kSource("openai/gsm8k")
    assert not source.is_local()
    code = ("from vs_sonar_dataset.sources.vs_gsm8k.problems import Gsm8kSource\n"
            "from vs_sonar_dataset.core.errors import UserError\n"
            "try:\n    Gsm8kSource('openai/gsm8k').load()\nexcept UserError as e:\n    print('USERERROR', e)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert "USERERROR GSM8K:" in out.stdout and "openai/gsm8k" in out.stdout, out.stderr[-2000:]


def test_location_precedence_flag_then_environment_then_config(monkeypatch, tmp_path):
    config = write_config(tmp_path / "c.toml", {"model": "org/model", "gsm8k": "/data/config"})

    def location(flag):  # as the CLI resolves it: a None override leaves the config's own value
        return load_config(config, gsm8k=resolve_gsm8k_location(flag)).gsm8k

    monkeypatch.delenv(GSM8K_ENV, raising=False)
    assert resolve_gsm8k_location(None) is None and location(None) == "/data/config"
    monkeypatch.setenv(GSM8K_ENV, "")
    assert location(None) == "/data/config"
    monkeypatch.setenv(GSM8K_ENV, "/data/env")
    assert resolve_gsm8k_location(None) == "/data/env" and location(None) == "/data/env"
    assert resolve_gsm8k_location("/data/flag") == "/data/flag" and location("/data/flag") == "/data/flag"


@pytest.mark.skipif(not SHARED_GSM8K.is_dir(), reason="no local GSM8K copy beside the checkout")
def test_real_gsm8k_copy_loads_with_known_sizes():
    problems = Gsm8kSource(str(SHARED_GSM8K), ("train", "test")).load()
    assert len(problems) == 7473 + 1319
    assert problems[0].id == "train-00000" and problems[0].final_answer == "72"
    assert problems[-1].id == "test-01318"
    assert all(p.final_answer for p in problems)


def test_a_file_that_is_not_utf8_is_a_user_error_naming_the_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_bytes(b'{"question": "q", "answer": "#### 1"}\n{"question": "caf\xe9", "answer": "#### 2"}\n')
    with pytest.raises(UserError, match=r"train.jsonl:2: not UTF-8 text"):
        Gsm8kSource(str(path)).load()


def test_the_packaged_sample_loads_offline_with_its_license():
    from vs_sonar_dataset.sources.vs_gsm8k.problems import GSM8K_SAMPLE, GSM8K_SAMPLE_DIR

    source = Gsm8kSource(GSM8K_SAMPLE)
    assert source.is_local()
    problems = source.load()
    assert len(problems) == 1000 and problems[0].id == "train-00000" and problems[-1].id == "train-00999"
    assert all(p.final_answer for p in problems)
    assert "MIT License" in (GSM8K_SAMPLE_DIR / "LICENSE").read_text()
    if SHARED_GSM8K.is_dir():  # the sample is the head of the full train split, so ids mean the same problems
        assert problems == Gsm8kSource(str(SHARED_GSM8K / "train.jsonl")).load()[:1000]
    with pytest.raises(UserError, match="neither test.jsonl"):
        Gsm8kSource(GSM8K_SAMPLE, ("test",)).load()
