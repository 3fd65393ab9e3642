"""The [generate] table: defaults, other stages' tables ignored, and one clear error per mistake."""

import pytest

from vs_sonar_dataset.errors import UserError
from vs_sonar_dataset.generate.config import GenerateConfig, load_config

from .conftest import write_config


def test_reads_generate_table_and_ignores_other_stages(tmp_path):
    path = write_config(tmp_path / "c.toml", {"model": "org/model", "num_candidates": 12, "splits": ["train", "test"],
                                              "temperature": 1}, extra_tables="[embed]\nwhatever = 1\n[build]\nx = 'y'\n")
    config = load_config(path)
    assert config.model == "org/model" and config.num_candidates == 12 and config.splits == ("train", "test")
    assert config.temperature == 1.0 and isinstance(config.temperature, float)
    assert config.candidates_per_request == GenerateConfig.candidates_per_request
    assert config.to_dict()["splits"] == ["train", "test"]


def test_overrides_win(tmp_path):
    path = write_config(tmp_path / "c.toml", {"model": "org/model"})
    assert load_config(path, gsm8k="/local/gsm8k").gsm8k == "/local/gsm8k"


def test_max_requests_defaults_to_twenty_times_the_least_needed():
    assert GenerateConfig(model="m", num_candidates=100, candidates_per_request=5).effective_max_requests() == 400
    assert GenerateConfig(model="m", max_requests=7).effective_max_requests() == 7


@pytest.mark.parametrize("table,message", [
    ({"model": "m", "modle": "x"}, "unknown key.*modle"),
    ({"num_candidates": 5}, "`model` is required"),
    ({"model": "m", "num_candidates": "10"}, "`num_candidates` must be an integer"),
    ({"model": "m", "num_candidates": 0}, "`num_candidates` must be at least 1"),
    ({"model": "m", "enforce_eager": "yes"}, "must be true or false"),
    ({"model": "m", "temperature": "hot"}, "`temperature` must be a number"),
    ({"model": "m", "splits": "train"}, "non-empty list of strings"),
    ({"model": "m", "splits": []}, "non-empty list of strings"),
    ({"model": "m", "backend": "tgi"}, "`backend` must be one of"),
    ({"model": "m", "dtype": "fp8"}, "`dtype` must be one of"),
    ({"model": "m", "min_problems": 6, "max_problems": 5}, "min_problems"),
    ({"model": "m", "min_chars": 500, "max_chars": 400}, "min_chars"),
    ({"model": "m", "top_p": 0}, "top_p"),
    ({"model": "m", "max_tokens": 4096, "max_model_len": 4096}, "max_tokens"),
    ({"model": "m", "cpu_kvcache_space_gib": 1.5}, "must be an integer"),
    ({"model": "m", "seed": -1}, "seed"),
])
def test_bad_values_are_user_errors_naming_file_and_key(tmp_path, table, message):
    path = write_config(tmp_path / "c.toml", table)
    with pytest.raises(UserError, match=message) as error:
        load_config(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_missing_file_missing_table_and_bad_toml(tmp_path):
    with pytest.raises(UserError, match="configuration file not found"):
        load_config(tmp_path / "absent.toml")
    (tmp_path / "other.toml").write_text("[embed]\nbatch_size = 4\n")
    with pytest.raises(UserError, match=r"no \[generate\] table"):
        load_config(tmp_path / "other.toml")
    (tmp_path / "broken.toml").write_text("[generate\nmodel = 'm'\n")
    with pytest.raises(UserError, match="not valid TOML"):
        load_config(tmp_path / "broken.toml")
