"""Any transformers model that `AutoModel` loads, pooled into one vector per text: Qwen3-Embedding and its kin
(last-token pooling) or encoder models (mean pooling).

Last-token pooling reads the hidden state at the last position, so batches are padded on the left and every
text ends at that position (Qwen3-Embedding's tokenizer also appends its end-of-text token there). With left
padding a text's positions would start after its padding; the position ids count from its first real token
instead, so a text gets the vector it gets alone, whatever else is in its batch. Mean pooling pads on the right
and averages the real tokens only.

`query_instruction` turns every text into a query in the Qwen3-Embedding format,
"Instruct: {query_instruction}\\nQuery: {text}"; documents are embedded without one (leave it empty).
"""

import inspect
from typing import Literal

import numpy as np

from ..core.devices import resolve_device
from ._torch_util import dtype_name, load_error, model_label, model_source, resolve_dtype
from .base import NamedModelConfig

KIND = "hf_auto"
HAS_DECODER = False
MODEL_LICENSES = {"Qwen/Qwen3-Embedding-0.6B": "Apache-2.0", "Qwen/Qwen3-Embedding-4B": "Apache-2.0",
                  "Qwen/Qwen3-Embedding-8B": "Apache-2.0"}  # for the card
CITATIONS = {name: """@article{zhang2025qwen3embedding,
  title   = {Qwen3 Embedding: Advancing Text Embedding and Reranking Through Foundation Models},
  author  = {Zhang, Yanzhao and Li, Mingxin and Long, Dingkun and Zhang, Xin and Lin, Huan and Yang, Baosong and
             Xie, Pengjun and Yang, An and Liu, Dayiheng and Lin, Junyang and Huang, Fei and Zhou, Jingren},
  journal = {arXiv preprint arXiv:2506.05176},
  year    = {2025}
}""" for name in MODEL_LICENSES}
LIMITATION = ("Texts longer than the encoder's token cap are truncated before embedding, and the vectors have no "
              "decoder: they cannot be turned back into text.")


class Config(NamedModelConfig):
    kind: Literal[KIND] = KIND
    revision: str = ""  # Hub revision (branch, tag or commit); "": the default branch
    pooling: Literal["last_token", "mean"] = "last_token"
    normalize: bool = True  # L2
    query_instruction: str = ""  # set: every text is embedded as a query with this task description


def with_instruction(texts: list[str], instruction: str) -> list[str]:
    return [f"Instruct: {instruction}\nQuery: {t}" for t in texts] if instruction else list(texts)


def _load_tokenizer(config: Config):
    """The tokenizer, padding on the side the pooling needs, and the token cap: max_tokens, the tokenizer's
    model_max_length and the model's position table (from its config; no weights are read)."""
    from transformers import AutoConfig, AutoTokenizer

    source = model_source(config.model)
    revision = config.revision or None
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)
        model_config = AutoConfig.from_pretrained(source, revision=revision)
    except (OSError, ValueError) as e:  # no such folder or id, offline, no tokenizer files
        raise load_error("model", config.model, e) from None
    tokenizer.padding_side = "left" if config.pooling == "last_token" else "right"
    if tokenizer.pad_token is None:  # decoder models often have none; the pad id never reaches a pooled vector
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    caps = [config.max_tokens, tokenizer.model_max_length]
    positions = getattr(model_config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        caps.append(positions)
    return tokenizer, min(caps)


def _counter(tokenizer, cap: int, instruction: str):
    def count(texts: list[str]) -> list[int]:
        if not texts:
            return []
        ids = tokenizer(with_instruction(texts, instruction), truncation=True, max_length=cap)["input_ids"]
        return [len(row) for row in ids]
    return count


class HFAutoEncoder:
    def __init__(self, config: Config):
        from transformers import AutoModel

        self.tokenizer, self.max_tokens = _load_tokenizer(config)
        self.device = resolve_device(config.device)
        self.dtype = resolve_dtype(config.dtype, self.device)
        try:
            model = AutoModel.from_pretrained(model_source(config.model), revision=config.revision or None,
                                              dtype=self.dtype)
        except (OSError, ValueError) as e:
            raise load_error("model", config.model, e) from None
        self.model = model.to(self.device).eval()
        self.name = model_label(config)
        self.revision = config.revision
        self.pooling = config.pooling
        self.normalize = config.normalize
        self.query_instruction = config.query_instruction
        self._count = _counter(self.tokenizer, self.max_tokens, config.query_instruction)
        accepted = set(inspect.signature(model.forward).parameters)
        self._inputs = [name for name in self.tokenizer.model_input_names if name in accepted]
        self._position_ids = config.pooling == "last_token" and "position_ids" in accepted
        self._extra = {"use_cache": False} if "use_cache" in accepted else {}
        self.dim = int(self.encode_batch(["probe"]).shape[1])

    def token_lengths(self, texts: list[str]) -> list[int]:
        return self._count(texts)

    def encode_batch(self, texts: list[str]) -> np.ndarray:
        import torch

        batch = self.tokenizer(with_instruction(texts, self.query_instruction), padding=True, truncation=True,
                               max_length=self.max_tokens, return_tensors="pt")
        mask = batch["attention_mask"].to(self.device)
        inputs = {name: batch[name].to(self.device) for name in self._inputs if name in batch}
        if self._position_ids:  # 0 at each text's first real token (see the module docstring)
            inputs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            hidden = self.model(**inputs, **self._extra).last_hidden_state.float()
            if self.pooling == "last_token":
                pooled = hidden[:, -1]
            else:
                weights = mask.unsqueeze(-1).float()
                pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
            if self.normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=-1)
        return pooled.cpu().numpy()

    def describe(self) -> dict:
        return {"kind": KIND, "name": self.name, "revision": self.revision, "dim": self.dim,
                "pooling": self.pooling, "normalize": self.normalize, "query_instruction": self.query_instruction,
                "max_tokens": self.max_tokens, "compute_dtype": dtype_name(self.dtype), "storage_dtype": "float32"}


def load(config: Config) -> HFAutoEncoder:
    return HFAutoEncoder(config)


def token_counter(config: Config):
    """The encoder's token counts (instruction and special tokens included, truncated at its cap) from the
    tokenizer and the model's config alone."""
    tokenizer, cap = _load_tokenizer(config)
    return _counter(tokenizer, cap, config.query_instruction)


def load_decoder(config: Config, check) -> None:
    """No decoder: the model checks run the alignment check only."""
    return None
