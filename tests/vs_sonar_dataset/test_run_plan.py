"""What `vs-sonar run` decides to re-run, without running the stages: each stage's output is keyed by the
digests of its tables, its inputs' records and, for a source, the local files it reads."""

import json

from vs_sonar_dataset.run import STAGES, Runner

STAGE = {s.name: s for s in STAGES}
CONFIG = """
[source]
kind = "preference_prompts"
[[source.sources]]
name = "local"
files = ["{prompts}"]
[embed]
kind = "sentence_transformers"
model = "some/model"
[dedup]
threshold = {threshold}
"""


def runner(tmp_path, threshold=0.95):
    prompts = tmp_path / "prompts.jsonl"
    if not prompts.exists():
        prompts.write_text(json.dumps({"prompt": "How do tides work?"}) + "\n")
    config = tmp_path / "c.toml"
    config.write_text(CONFIG.format(prompts=prompts, threshold=threshold))
    r = Runner(config, tmp_path / "run")
    r.prepare()
    return r, prompts


def done(r, name):
    """Record the stage as finished with its present inputs, as the runner does after it ran."""
    stage = STAGE[name]
    record = r.path(stage.record)
    record.parent.mkdir(parents=True, exist_ok=True)
    if not record.exists():
        record.write_text(json.dumps({"stage": name}))
    from vs_sonar_dataset.core.shards import sha256_file

    r.record(name, status="done", made_from=r.made_from(stage), output_sha256=sha256_file(record))


def test_a_recorded_stage_is_current_until_its_table_or_input_changes(tmp_path):
    r, prompts = runner(tmp_path)
    for name in ("source", "embed", "dedup"):
        assert r.why_run(STAGE[name], r.made_from(STAGE[name])) == "not run yet"
        done(r, name)
        assert r.why_run(STAGE[name], r.made_from(STAGE[name])) is None

    edited, _ = runner(tmp_path, threshold=0.9)  # the run folder accepts the edited file
    assert edited.why_run(STAGE["source"], edited.made_from(STAGE["source"])) is None
    assert edited.why_run(STAGE["embed"], edited.made_from(STAGE["embed"])) is None
    assert edited.why_run(STAGE["dedup"], edited.made_from(STAGE["dedup"])) == "[dedup] changed"

    prompts.write_text(json.dumps({"prompt": "Why is the sky blue?"}) + "\n")  # the source's own input
    assert r.why_run(STAGE["source"], r.made_from(STAGE["source"])) == "its input files changed"

    (r.path("candidates") / "manifest.json").write_text("{}")  # an output altered by hand
    assert r.why_run(STAGE["embed"], r.made_from(STAGE["embed"])) == "source output changed"


def test_a_stage_that_stopped_resumes_and_a_changed_one_starts_over(tmp_path):
    r, _ = runner(tmp_path)
    stage = STAGE["source"]
    r.record("source", status="failed (exit 1)", made_from=r.made_from(stage))
    assert r.why_run(stage, r.made_from(stage)) == "resuming after: failed (exit 1)"
    (r.path("candidates")).mkdir()
    (r.path("candidates") / "shard-00000.parquet").write_text("partial")
    r.remove_output(stage)
    assert not r.path("candidates").exists()


def test_the_ray_engine_moves_embed_and_dedup_and_changes_no_digest(tmp_path):
    """--engine ray: embed's and dedup's commands get the flags and their drivers run here (their actors run on
    Ray in the embed environment); the later stages run where they did. Both engines write the same files, so
    what a stage's output is made from does not name the engine."""
    local, _ = runner(tmp_path)
    r, _ = runner(tmp_path)
    r.engine, r.engine_flags = "ray", ["--engine", "ray", "--address", "head:6379"]
    for name in ("embed", "dedup"):
        assert STAGE[name].args(r)[-4:] == ["--engine", "ray", "--address", "head:6379"]
        assert "--engine" not in STAGE[name].args(local)
        assert (local.environment(STAGE[name]), r.environment(STAGE[name])) == ("embed", None)
        assert r.made_from(STAGE[name])["tables"] == local.made_from(STAGE[name])["tables"]
    assert "--engine" not in STAGE["build"].args(r)
    assert r.environment(STAGE["build"]) == local.environment(STAGE["build"])


def test_the_ray_engine_moves_a_generating_source_to_a_driver_here(tmp_path):
    """vs_gsm8k's vLLM engines run on Ray with --engine ray: its command gets the flags and runs here instead of
    in the generate environment."""
    config = tmp_path / "gsm8k.toml"
    config.write_text('[source]\nkind = "vs_gsm8k"\nmodel = "some/model"\ngsm8k = "gsm8k-sample"\n'
                      '[embed]\nkind = "sentence_transformers"\nmodel = "some/model"\n')
    local, r = Runner(config, tmp_path / "run"), Runner(config, tmp_path / "run", engine="ray")
    local.prepare()
    r.prepare()
    assert STAGE["source"].args(r)[-2:] == ["--engine", "ray"] and "--engine" not in STAGE["source"].args(local)
    assert (local.environment(STAGE["source"]), r.environment(STAGE["source"])) == ("generate", None)
    assert r.made_from(STAGE["source"]) == local.made_from(STAGE["source"])
