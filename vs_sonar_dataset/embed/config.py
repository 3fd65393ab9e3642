"""Settings of the embed stage and of the model checks.

Both come from one TOML file that also holds the other stages' tables: `[embed]` for the encoder, batching
and dedup, `[model_check]` for the release's decode → re-encode checks. A key that a table does not know is a
mistake (a typo would otherwise silently fall back to a default), so it is refused. Command-line flags
override the file.
"""

import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..config import load_config as load_toml
from ..errors import UserError

DTYPES = ("auto", "fp16", "bf16", "fp32")  # compute dtype; auto: fp16 on cuda, fp32 on cpu
DEDUP_METHODS = ("exact", "ivf", "auto")  # see embed/dedup.py: ivf is approximate; auto = exact on cuda or
# up to 200k pool rows, ivf for larger pools on CPU


@dataclass
class EmbedConfig:
    encoder: str = "text_sonar_basic_encoder"  # fairseq2 asset card name
    tokenizer: str | None = None  # defaults to the encoder's name (SONAR cards carry both)
    source_lang: str = "eng_Latn"
    asset_dir: str | None = None  # a local folder of asset cards (FAIRSEQ2_USER_ASSET_DIR)
    device: str = "auto"  # auto: cuda when available, else cpu
    dtype: str = "auto"  # auto: fp16 on cuda, fp32 on cpu; vectors are stored as fp32 either way
    tokens_per_batch: int = 16384  # padded tokens per encoder call (batch rows × longest row)
    max_batch_rows: int = 512
    max_tokens: int = 512  # the SONAR encoder's cap; longer inputs are truncated by the tokenizer
    chunk_rows: int = 4096  # candidates per pool shard (and per checkpoint)
    dedup_threshold: float = 0.95  # cosine at or above which a row duplicates a kept row
    dedup_method: str = "exact"  # exact | ivf (approximate, faiss lists; large pools on CPU) | auto
    dedup_block_rows: int = 16384  # kept vectors per matrix product (chunk_rows × this fp32 scratch)
    ivf_lists: int = 1024  # ivf only: k-means lists over the kept rows
    ivf_probes: int = 24  # ivf only: lists scanned per row (more: higher recall, slower)
    ivf_training_rows: int = 50_000  # ivf only: kept rows decided exactly, then used to train the lists
    target_rows: int | None = None  # stop once the pool holds this many rows

    def validate(self) -> "EmbedConfig":
        if self.dtype not in DTYPES:
            raise UserError(f"[embed] dtype must be auto, fp16, bf16 or fp32, not {self.dtype!r}")
        if self.dedup_method not in DEDUP_METHODS:
            raise UserError(f"[embed] dedup_method must be one of {', '.join(DEDUP_METHODS)}, "
                            f"not {self.dedup_method!r}")
        if not 0.0 < self.dedup_threshold <= 1.0:
            raise UserError(f"[embed] dedup_threshold must be in (0, 1], not {self.dedup_threshold}")
        for name in ("tokens_per_batch", "max_batch_rows", "max_tokens", "chunk_rows", "dedup_block_rows",
                     "ivf_lists", "ivf_probes", "ivf_training_rows"):
            if getattr(self, name) < 1:
                raise UserError(f"[embed] {name} must be a positive integer")
        if not self.ivf_probes <= self.ivf_lists <= self.ivf_training_rows:
            raise UserError(f"[embed] need ivf_probes ({self.ivf_probes}) <= ivf_lists ({self.ivf_lists}) <= "
                            f"ivf_training_rows ({self.ivf_training_rows})")
        if self.target_rows is not None and self.target_rows < 1:
            raise UserError("[embed] target_rows must be a positive integer")
        if self.tokens_per_batch < self.max_tokens:
            raise UserError(f"[embed] tokens_per_batch ({self.tokens_per_batch}) must hold one row of "
                            f"max_tokens ({self.max_tokens})")
        return self

    @property
    def tokenizer_name(self) -> str:
        return self.tokenizer or self.encoder

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class ModelCheckConfig:
    decoder: str = "text_sonar_basic_decoder"
    sample: int | None = 256  # rows to check; None means all
    seed: int = 0
    alignment_threshold: float = 0.99  # re-encoded vs stored cosine
    round_trip_threshold: float = 0.9  # decoded → re-encoded vs stored cosine that counts as a pass
    min_pass_rate: float = 0.9  # fraction of the sample that must pass the round trip
    beam_size: int = 5
    max_seq_len: int = 256
    batch_size: int = 32
    examples: int = 5

    def validate(self) -> "ModelCheckConfig":
        if self.sample is not None and self.sample < 1:
            raise UserError("[model_check] sample must be a positive integer or \"all\"")
        for name in ("alignment_threshold", "round_trip_threshold", "min_pass_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UserError(f"[model_check] {name} must be in [0, 1]")
        for name in ("beam_size", "max_seq_len", "batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"[model_check] {name} must be a positive integer")
        return self


def _coerce(cls, table: str, raw: dict[str, Any]):
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise UserError(f"[{table}] unknown key(s): {', '.join(unknown)}; known: {', '.join(known)}")
    values = {}
    for name, value in raw.items():
        default = known[name].default
        if name == "sample" and value == "all":
            value = None
        elif default is not None and (isinstance(value, bool) != isinstance(default, bool)  # True is an int
                                      or not isinstance(value, type(default))
                                      and not (isinstance(default, float) and isinstance(value, int))):
            raise UserError(f"[{table}] {name} = {value!r}: expected a {type(default).__name__}")
        values[name] = value
    return cls(**values)


def read_toml(path: str | Path | None) -> dict:
    return {} if path is None else load_toml(path)


def load_config(cls, table: str, path: str | Path | None, overrides: dict[str, Any] | None = None,
                toml: dict | None = None):
    """The `[table]` of the TOML file (other tables are ignored), then the non-None overrides. `toml`: the
    file already parsed by read_toml(path), for callers that read several tables of it."""
    raw = (read_toml(path) if toml is None else toml).get(table, {})
    if not isinstance(raw, dict):
        raise UserError(f"{path}: [{table}] must be a table")
    config = _coerce(cls, table, raw)
    for name, value in (overrides or {}).items():
        if value is not None:
            setattr(config, name, value)
    return config.validate()


def load_embed_config(path=None, overrides=None, toml=None) -> EmbedConfig:
    return load_config(EmbedConfig, "embed", path, overrides, toml)


def load_model_check_config(path=None, overrides=None, toml=None) -> ModelCheckConfig:
    return load_config(ModelCheckConfig, "model_check", path, overrides, toml)
