import pytest

from vs_sonar_dataset.embed.config import load_embed_config, load_model_check_config
from vs_sonar_dataset.errors import UserError


def write(tmp_path, text):
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def test_reads_embed_table_and_ignores_other_stages(tmp_path):
    path = write(tmp_path, '[generate]\nmodel = "x"\nwhatever = 1\n[embed]\nencoder = "e"\ndedup_threshold = 0.9\n'
                           'target_rows = 10\n')
    config = load_embed_config(path)
    assert (config.encoder, config.dedup_threshold, config.target_rows) == ("e", 0.9, 10)
    assert config.tokenizer_name == "e"


def test_flags_override_the_file(tmp_path):
    path = write(tmp_path, '[embed]\nchunk_rows = 10\ndevice = "cpu"\n')
    config = load_embed_config(path, {"chunk_rows": 99, "device": None})
    assert config.chunk_rows == 99 and config.device == "cpu"


@pytest.mark.parametrize("body, message", [
    ('[embed]\nencodr = "x"\n', "unknown key(s): encodr"),
    ('[embed]\nchunk_rows = "many"\n', "chunk_rows"),
    ('[embed]\nchunk_rows = true\n', "chunk_rows = True: expected a int"),
    ('[embed]\ndedup_threshold = true\n', "dedup_threshold = True: expected a float"),
    ('[embed]\ndedup_threshold = 1.5\n', "dedup_threshold"),
    ('[embed]\ndedup_method = "lsh"\n', "dedup_method"),
    ('[embed]\ndtype = "int8"\n', "dtype"),
    ('[embed]\ntokens_per_batch = 10\n', "tokens_per_batch"),
    ('[embed]\nivf_lists = 64\nivf_probes = 128\n', "need ivf_probes (128) <= ivf_lists (64)"),
    ('[embed]\nivf_training_rows = 0\n', "ivf_training_rows must be a positive integer"),
    ("[embed\n", "not valid TOML"),
])
def test_bad_config_is_a_user_error(tmp_path, body, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_embed_config(write(tmp_path, body))


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_embed_config(tmp_path / "nope.toml")


def test_model_check_table(tmp_path):
    path = write(tmp_path, '[model_check]\nsample = "all"\nmin_pass_rate = 0.5\n')
    config = load_model_check_config(path)
    assert config.sample is None and config.min_pass_rate == 0.5 and config.alignment_threshold == 0.99
    with pytest.raises(UserError, match="unknown key"):
        load_model_check_config(write(tmp_path, "[model_check]\nsamples = 3\n"))
