"""What every encoder plug-in shares: its `[embed]` settings and the interface the stages use.

An encoder plug-in is one module in this package with
    KIND = "name"                 the `kind` that selects it in `[embed]`
    class Config(EncoderConfig)   its own keys, with `kind: Literal[KIND]`
    def load(config) -> TextEncoder                            the model, ready to encode
    def token_counter(config) -> Callable[[list[str]], list[int]]   tokens per text, tokenizer only (no model)
    def load_decoder(config, check) -> TextDecoder | None      vectors back to text (None: no decoder)
    HAS_DECODER: bool                                          whether load_decoder can give one
and, for the card: MODEL_LICENSES {model name: license} and DEFAULT_LICENSE, CITATION (BibTeX; CITATIONS by
model name where it depends on the model) and LIMITATION (a sentence). Nothing outside the package names a
plug-in: the package finds its modules.
"""

from typing import Literal, Protocol

import numpy as np
from pydantic import Field

from ..core.devices import Device
from ..core.settings import Table


class EncoderConfig(Table):
    kind: str
    # auto: cuda when available, else cpu; the device names torch takes
    device: Device = "auto"
    dtype: Literal["auto", "fp16", "bf16", "fp32"] = "auto"  # compute dtype; stored as fp32 either way
    tokens_per_batch: int = Field(16384, ge=1)  # padded tokens per encoder call (batch rows x longest row)
    max_batch_rows: int = Field(512, ge=1)
    max_tokens: int = Field(512, ge=1)  # longer inputs are truncated by the tokenizer
    chunk_rows: int = Field(4096, ge=1)  # candidates per pool shard (and per checkpoint)


class NamedModelConfig(EncoderConfig):
    """For encoders that load a model by folder or Hub id and record a name for it."""

    model: str  # a local model folder or a Hub id
    model_name: str = ""  # recorded in each row's `encoder` column and on the card; "": the Hub id or the folder's name


class TextEncoder(Protocol):
    name: str  # recorded in each row's `encoder` column
    dim: int
    device: str

    def token_lengths(self, texts: list[str]) -> list[int]: ...

    def encode_batch(self, texts: list[str]) -> np.ndarray: ...  # float32 [len(texts), dim]

    def describe(self) -> dict: ...  # kind, name, dim, compute_dtype, storage_dtype, ... (for manifest and card)


class TextDecoder(Protocol):
    name: str

    def decode(self, vectors: np.ndarray, *, beam_size: int, max_seq_len: int, batch_size: int) -> list[str]: ...
