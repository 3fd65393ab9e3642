"""A sentence-transformers model (a local folder or a Hub id), such as all-MiniLM-L6-v2.

Texts are encoded as documents: no prompt, not even a default one the model's config names. Inputs longer
than min(max_tokens, the model's max_seq_length) tokens are truncated, as the model's own tokenizer does it.
"""

import json
from pathlib import Path
from typing import Literal

import numpy as np

from ..core.devices import resolve_device
from ._torch_util import dtype_name, load_error, model_label, model_source, resolve_dtype
from .base import NamedModelConfig

KIND = "sentence_transformers"
HAS_DECODER = False
MODEL_LICENSES = {"sentence-transformers/all-MiniLM-L6-v2": "Apache-2.0"}  # for the card
CITATION = """@inproceedings{reimers2019sentencebert,
  title     = {Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks},
  author    = {Reimers, Nils and Gurevych, Iryna},
  booktitle = {Proceedings of EMNLP-IJCNLP},
  year      = {2019}
}"""
LIMITATION = ("Texts longer than the encoder's token cap are truncated before embedding, and the vectors have no "
              "decoder: they cannot be turned back into text.")


class Config(NamedModelConfig):
    kind: Literal[KIND] = KIND
    normalize: bool = True  # unit-length vectors (normalize_embeddings)


def _count(tokenizer, cap: int):
    """Tokens per text after truncation at `cap`, special tokens included: what the model is fed."""
    def count(texts: list[str]) -> list[int]:
        if not texts:
            return []
        return [len(ids) for ids in tokenizer(list(texts), truncation=True, max_length=cap)["input_ids"]]
    return count


class SentenceTransformerEncoder:
    def __init__(self, config: Config):
        from sentence_transformers import SentenceTransformer

        source = model_source(config.model)
        self.device = resolve_device(config.device)
        self.dtype = resolve_dtype(config.dtype, self.device)
        try:
            model = SentenceTransformer(source, device=self.device)
        except (OSError, ValueError) as e:  # no such folder or id, offline, not a sentence-transformers model
            raise load_error("sentence-transformers model", config.model, e) from None
        self.model = model.to(self.dtype).eval()
        self.max_tokens = min(config.max_tokens, model.max_seq_length or config.max_tokens)
        model.max_seq_length = self.max_tokens
        self.name = model_label(config)
        self.normalize = config.normalize
        self._count = _count(model.tokenizer, self.max_tokens)
        self.dim = int(self.encode_batch(["probe"]).shape[1])

    def token_lengths(self, texts: list[str]) -> list[int]:
        return self._count(texts)

    def encode_batch(self, texts: list[str]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            vectors = self.model.encode(list(texts), prompt="", batch_size=max(len(texts), 1),
                                        convert_to_tensor=True, normalize_embeddings=self.normalize,
                                        show_progress_bar=False)
        return vectors.float().cpu().numpy().reshape(len(texts), -1)

    def _pooling(self) -> str | None:
        """The Pooling module's mode (mean, cls, lasttoken, ...), None for a model without one."""
        modes = [getattr(module, "pooling_mode", None) for module in self.model]
        return next((str(mode) for mode in modes if mode is not None), None)

    def describe(self) -> dict:
        model_normalizes = any(type(m).__name__ == "Normalize" for m in self.model)
        return {"kind": KIND, "name": self.name, "dim": self.dim, "normalize": self.normalize or model_normalizes,
                "max_tokens": self.max_tokens, "pooling": self._pooling(),
                "compute_dtype": dtype_name(self.dtype), "storage_dtype": "float32"}


def load(config: Config) -> SentenceTransformerEncoder:
    return SentenceTransformerEncoder(config)


def _small_files(model: str) -> Path:
    """The folder holding the model's configs and tokenizer: the model itself, or (for a Hub id) only those
    files from the Hub cache, without the weights."""
    source = model_source(model)
    if Path(source).is_dir():
        return Path(source)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(source, allow_patterns=["*.json", "*.txt", "*.model"]))
    except Exception as e:  # offline, unknown id, no access: the huggingface_hub errors share no useful base
        raise load_error("sentence-transformers model", model, e) from None


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def token_counter(config: Config):
    """The encoder's token counts from the tokenizer and configs alone: the folder of the model's Transformer
    module (modules.json), its max_seq_length (sentence_bert_config.json, else the tokenizer's
    model_max_length capped at max_position_embeddings, as sentence-transformers does) and lower-casing."""
    from transformers import AutoTokenizer

    root = _small_files(config.model)
    modules = json.loads((root / "modules.json").read_text()) if (root / "modules.json").is_file() else []
    sub = next((m.get("path", "") for m in modules if str(m.get("type", "")).endswith("Transformer")), "")
    folder = root / sub
    settings = _read_json(folder / "sentence_bert_config.json")
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as e:
        raise load_error("tokenizer of", config.model, e) from None
    model_cap = settings.get("max_seq_length")
    if model_cap is None:
        positions = _read_json(folder / "config.json").get("max_position_embeddings", -1)
        model_cap = tokenizer.model_max_length if positions == -1 else min(tokenizer.model_max_length, positions)
    count = _count(tokenizer, min(config.max_tokens, model_cap))
    if settings.get("do_lower_case"):
        return lambda texts: count([t.lower() for t in texts])
    return count


def load_decoder(config: Config, check) -> None:
    """No decoder: the model checks run the alignment check only."""
    return None
