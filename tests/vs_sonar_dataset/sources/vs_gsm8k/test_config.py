"""The vs_gsm8k [source] table: defaults, other stages' tables left to them, and one clear line per mistake."""

import pytest

from vs_sonar_dataset.core.errors import UserError
from vs_sonar_dataset.sources.vs_gsm8k.config import GenerateConfig, load_config

from .conftest import write_config


def test_reads_the_source_table_and_leaves_other_tables_alone(tmp_path):
    path = write_config(tmp_path / "c.toml", {"model": "org/model", "num_candidates": 12, "splits": ["train", "test"],
                                              "temperature": 1}, extra_tables="[embed]\nwhatever = 1\n[build]\nx = 'y'\n")
    config = load_config(path)
    assert config.model == "org/model" and config.num_candidates == 12 and config.splits == ("train", "test")
    assert config.temperature == 1.0 and isinstance(config.temperature, float)
    assert config.candidates_per_request == GenerateConfig(model="m").candidates_per_request
    assert config.to_dict()["splits"] == ["train", "test"] and "kind" not in config.to_dict()


def test_overrides_win(tmp_path):
    path = write_config(tmp_path / "c.toml", {"model": "org/model"})
    assert load_config(path, gsm8k="/local/gsm8k").gsm8k == "/local/gsm8k"


def test_max_requests_defaults_to_twenty_times_the_least_needed():
    assert GenerateConfig(model="m", num_candidates=100, candidates_per_request=5).effective_max_requests() == 400
    assert GenerateConfig(model="m", max_requests=7).effective_max_requests() == 7


@pytest.mark.parametrize("table,message", [
    ({"model": "m", "modle": "x"}, "modle: unknown key"),
    ({"num_candidates": 5}, "model: Field required"),
    ({"model": "m", "num_candidates": "10"}, "num_candidates: Input should be a valid integer"),
    ({"model": "m", "num_candidates": 0}, "num_candidates: Input should be greater than or equal to 1"),
    ({"model": "m", "enforce_eager": "yes"}, "enforce_eager: Input should be a valid boolean"),
    ({"model": "m", "temperature": "hot"}, "temperature: Input should be a valid number"),
    ({"model": "m", "splits": "train"}, "splits: Input should be a valid tuple"),
    ({"model": "m", "splits": []}, "splits: .*at least 1 item"),
    ({"model": "m", "backend": "tgi"}, "backend: Input should be 'vllm' or 'openai'"),
    ({"model": "m", "dtype": "fp8"}, "dtype: Input should be"),
    ({"model": "m", "min_problems": 6, "max_problems": 5}, "min_problems"),
    ({"model": "m", "min_chars": 500, "max_chars": 400}, "min_chars"),
    ({"model": "m", "top_p": 0}, "top_p"),
    ({"model": "m", "max_tokens": 4096, "max_model_len": 4096}, "max_tokens"),
    ({"model": "m", "cpu_kvcache_space_gib": 1.5}, "cpu_kvcache_space_gib: Input should be a valid integer"),
    ({"model": "m", "seed": -1}, "seed"),
    ({"kind": "vs_gsm9k", "model": "m"}, r"kind = 'vs_gsm9k': unknown \(known: .*vs_gsm8k"),
])
def test_bad_values_are_one_line_user_errors_naming_file_table_and_key(tmp_path, table, message):
    path = write_config(tmp_path / "c.toml", table)
    with pytest.raises(UserError, match=message) as error:
        load_config(path)
    assert "[source]" in str(error.value) and "\n" not in str(error.value)


def test_missing_file_missing_table_and_bad_toml(tmp_path):
    with pytest.raises(UserError, match="configuration file not found"):
        load_config(tmp_path / "absent.toml")
    (tmp_path / "other.toml").write_text("[embed]\nkind = 'sonar'\n")
    with pytest.raises(UserError, match=r"\[source\]: model: Field required"):
        load_config(tmp_path / "other.toml")
    (tmp_path / "broken.toml").write_text("[source\nmodel = 'm'\n")
    with pytest.raises(UserError, match="not valid TOML"):
        load_config(tmp_path / "broken.toml")
