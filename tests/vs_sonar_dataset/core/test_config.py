"""The run configuration: every table's mistakes are one line naming the file, the table and the key; the
digest that keys a stage's output follows its table's settings and nothing else."""

import pytest

from vs_sonar_dataset.core.config import (TABLES, config_of, load_config, load_table, parse_assignment,
                                         read_document, table_digest, with_overrides)
from vs_sonar_dataset.core.envs import REPO_ROOT
from vs_sonar_dataset.core.errors import UserError

GOOD = {"source": 'kind = "vs_gsm8k"\nmodel = "m"', "embed": 'kind = "sonar"'}

BAD = [  # (table, body, what the line must say)
    ("run", 'fixtures = "tiny_sonar"', "[run]: fixtures: Input should be a valid list"),
    ("run", "fixture = []", "[run]: fixture: unknown key"),
    ("source", 'kind = "vs_gsm8k"\nmodel = "m"\nseed = "0"', "[source]: seed: Input should be a valid integer"),
    ("source", 'kind = "nope"', "[source] kind = 'nope': unknown (known: "),
    ("source", 'kind = ["vs_gsm8k"]', "[source] kind: expected a string"),
    ("embed", "kind = 3", "[embed] kind: expected a string"),
    ("source", 'kind = "text_corpus"\nmin_tokens = "a"', "[source]: min_tokens: Input should be a valid integer"),
    ("source", 'kind = "preference_prompts"\nsources = []\nx = 1', "[source]: "),
    ("embed", 'kind = "sonar"\ndtype = "fp8"', "[embed]: dtype: Input should be 'auto', 'fp16', 'bf16' or 'fp32'"),
    ("embed", 'kind = "sentence_transformers"', "[embed]: model: Field required"),
    ("embed", 'kind = "hf_auto"\nmodel = "m"\npooling = "max"', "[embed]: pooling: Input should be"),
    ("embed", 'kind = "sonar"\nencoder = "x"', "[embed]: encoder: unknown key"),
    ("embed", 'kind = "sonar"\ndevice = "bad"', "[embed]: device: expected auto, cpu, mps, cuda or cuda:N (got 'bad')"),
    ("dedup", 'device = "gpu0"', "[dedup]: device: expected auto, cpu, mps, cuda or cuda:N (got 'gpu0')"),
    ("dedup", "threshold = 1.5", "[dedup]: threshold: Input should be less than or equal to 1"),
    ("dedup", 'method = "hnsw"', "[dedup]: method: Input should be 'exact', 'ivf' or 'auto'"),
    ("dedup", "ivf_lists = 10\nivf_probes = 20", "ivf_probes (20) <= ivf_lists (10)"),
    ("build", 'seed = "0"', "[build]: seed: Input should be a valid integer (got '0')"),
    ("build", "configs = {}", "[build]: configs: "),
    ("build", "density = { k = 0 }", "[build]: density.k: Input should be greater than or equal to 1"),
    ("build", 'density = { method = "hnsw" }', "[build]: density.method: Input should be 'exact', 'ivf' or 'auto'"),
    ("build", "map = { max_points = 5 }", "[build]: map.max_points: Input should be greater than or equal to 10"),
    ("build", "map = { colour = 1 }", "[build]: map.colour: unknown key"),
    ("model_check", 'sample = "some"', "[model_check]: sample: "),
    ("model_check", "min_pass_rate = 2", "[model_check]: min_pass_rate: Input should be less than or equal to 1"),
]


def write(tmp_path, tables: dict) -> str:
    path = tmp_path / "c.toml"
    path.write_text("\n".join(f"[{name}]\n{body}" for name, body in {**GOOD, **tables}.items()) + "\n")
    return str(path)


def test_every_shipped_config_loads():
    for path in sorted((REPO_ROOT / "configs").glob("*.toml")):
        config = load_config(path)
        assert set(config) == set(TABLES), path


@pytest.mark.parametrize("table, body, message", BAD)
def test_each_tables_mistakes_are_one_line(tmp_path, table, body, message):
    path = write(tmp_path, {table: body})
    with pytest.raises(UserError) as error:
        load_config(path)
    line = str(error.value)
    assert message in line and "\n" not in line, line
    assert path in line or "kind" in line


def test_unknown_table_and_non_table(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[dedupe]\nthreshold = 0.9\n")
    with pytest.raises(UserError, match=r"unknown table\(s\) \[dedupe\] \(known: \[run\], \[source\]"):
        load_config(path)
    path.write_text("dedup = 3\n")
    with pytest.raises(UserError, match=r"\[dedup\] must be a table"):
        load_config(path)


def test_flags_override_the_file_by_one_rule(tmp_path):
    path = write(tmp_path, {"dedup": "threshold = 0.9\nmethod = 'ivf'"})
    assert load_table(path, "dedup").threshold == 0.9
    overridden = load_table(path, "dedup", dict([parse_assignment("threshold=0.8")]))
    assert (overridden.threshold, overridden.method) == (0.8, "ivf")
    assert parse_assignment("model=some/name") == ("model", "some/name")  # not TOML: taken as a string
    assert parse_assignment("configs={a = 10}") == ("configs", {"a": 10})
    with pytest.raises(UserError, match="expected KEY=VALUE"):
        parse_assignment("threshold")
    with pytest.raises(UserError, match="one value per --set"):
        parse_assignment("threshold=0.9\nmethod = 'ivf'")


def test_digest_follows_the_settings_defaults_included(tmp_path):
    plain = load_table(write(tmp_path, {"dedup": ""}), "dedup")
    explicit = load_table(write(tmp_path, {"dedup": "threshold = 0.95"}), "dedup")
    other = load_table(write(tmp_path, {"dedup": "threshold = 0.9"}), "dedup")
    assert table_digest(plain) == table_digest(explicit) != table_digest(other)


def test_run_overrides_set_keys_in_tables_and_in_lists_of_tables():
    path = REPO_ROOT / "configs" / "preference_minilm.toml"
    document = read_document(path)
    changed, _ = with_overrides(document, ['build.configs={"100" = 100, "200" = 200}', "source.sources.2.max_pairs=50",
                                        "build.map.seed=7", "dedup.threshold=0.9"], str(path))
    config = config_of(changed, "x")
    assert config["build"].configs == {"100": 100, "200": 200} and config["build"].map.seed == 7
    assert config["source"].sources[2].max_pairs == 50 and config["dedup"].threshold == 0.9
    assert read_document(path) == document  # the file and the given document are left as they were


@pytest.mark.parametrize("assignment,message", [
    ("seed=1", "name the table too"), ("source.sources.3.max_pairs=1", "entries 0 to 2"),
    ("source.sources.max_pairs=1", "pick an entry by its number"), ("build.seed.x=1", "build.seed is a value"),
    ("nosuch.key=1", "unknown table"), ("build", "expected KEY=VALUE")])
def test_run_override_mistakes_are_one_line(assignment, message):
    path = REPO_ROOT / "configs" / "preference_minilm.toml"
    with pytest.raises(UserError, match=message) as error:
        with_overrides(read_document(path), [assignment], str(path))
    assert "\n" not in str(error.value)
