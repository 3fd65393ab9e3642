"""Text encoders (and the decoder the model checks need) behind a small interface.

The stage only needs `name`, `dim`, `device`, `token_lengths(texts)`, `encode_batch(texts)` and `describe()`,
so a Hugging Face or sentence-transformers encoder can be added as another class without touching it.

SONAR models load by fairseq2 asset card name: the real `text_sonar_basic_encoder` (weights fetched by
fairseq2 on first use) or a card from a local asset directory (`asset_dir`, read through
FAIRSEQ2_USER_ASSET_DIR with file:// checkpoints). The model is created on the chosen device in the chosen
dtype by fairseq2 and then handed to sonar's pipeline as an object: sonar does not move or cast model
objects itself.
"""

import logging
import os
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import UserError

log = logging.getLogger("vs_sonar.embed")

_DTYPES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}


class TextEncoder(Protocol):
    name: str
    dim: int
    device: str

    def token_lengths(self, texts: list[str]) -> list[int]: ...

    def encode_batch(self, texts: list[str]) -> np.ndarray: ...  # float32 [len(texts), dim]

    def describe(self) -> dict: ...


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {device!r} asked for, but torch sees no CUDA device")
    return device


def resolve_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        dtype = "fp16" if device.startswith("cuda") else "fp32"
    return getattr(torch, _DTYPES[dtype])


def use_asset_dir(asset_dir: str | os.PathLike | None) -> None:
    """Point fairseq2 at a local folder of asset cards. fairseq2 reads the variable when its asset store is
    first built, so this must happen before anything in the process loads a model or tokenizer."""
    if asset_dir is None:
        return
    path = Path(asset_dir).resolve()
    if not path.is_dir():
        raise UserError(f"{asset_dir}: asset directory not found")
    current = os.environ.get("FAIRSEQ2_USER_ASSET_DIR")
    if current and Path(current).resolve() != path:
        log.warning("FAIRSEQ2_USER_ASSET_DIR was %s; using %s", current, path)
    os.environ["FAIRSEQ2_USER_ASSET_DIR"] = str(path)


def _load(kind: str, name: str, loader, **kwargs):
    try:
        return loader(name, **kwargs)
    except Exception as e:  # fairseq2 raises several unrelated types for a missing or broken card
        if type(e).__name__ == "AssetDownloadError":
            raise UserError(f"cannot load {kind} {name!r}: {e} (no network? point [embed] asset_dir at local "
                            "cards with file:// checkpoints)") from None
        if type(e).__name__.endswith(("NotKnownError", "NotFoundError", "AssetCardError")):
            raise UserError(f"cannot load {kind} {name!r}: {e} (set [embed] asset_dir to a folder of asset cards, "
                            "or use a card name known to fairseq2/sonar)") from None
        raise


def load_sonar_model(name: str, device: str, dtype):
    import torch
    from fairseq2.models import load_model

    return _load("model", name, load_model, device=torch.device(device), dtype=dtype).eval()


def load_sonar_tokenizer(name: str):
    from fairseq2.data.tokenizers import load_tokenizer

    return _load("tokenizer", name, load_tokenizer)


class SonarTextEncoder:
    """sonar's TextToEmbeddingModelPipeline; vectors come back as fp32 on the CPU."""

    def __init__(self, model, tokenizer, name: str, tokenizer_name: str | None = None,
                 source_lang: str = "eng_Latn", device: str = "cpu", dtype=None, max_tokens: int = 512):
        """From model and tokenizer objects; the model must already sit on `device` in `dtype`."""
        import torch
        from sonar.inference_pipelines.text import TextToEmbeddingModelPipeline

        self.name = name
        self.tokenizer_name = tokenizer_name or name
        self.source_lang = source_lang
        self.device = device
        self.dtype = dtype or next(model.parameters()).dtype
        self.pipeline = TextToEmbeddingModelPipeline(model.eval(), tokenizer, device=torch.device(device),
                                                     dtype=self.dtype)
        pos = model.encoder_frontend.pos_encoder
        model_cap = pos.max_seq_len if pos is not None else None
        self.max_tokens = min(max_tokens, model_cap) if model_cap else max_tokens
        try:
            self._token_encoder = tokenizer.create_encoder(lang=source_lang, mode="source")
        except Exception as e:
            raise UserError(f"tokenizer {self.tokenizer_name!r} does not know source_lang {source_lang!r}: {e}") \
                from None
        self.dim = int(self.encode_batch(["probe"]).shape[1])

    @classmethod
    def load(cls, encoder: str = "text_sonar_basic_encoder", tokenizer: str | None = None,
             source_lang: str = "eng_Latn", device: str = "auto", dtype: str = "auto", max_tokens: int = 512,
             asset_dir: str | None = None) -> "SonarTextEncoder":
        """By asset card name (from a local asset_dir, when given); no tokenizer: the encoder's card."""
        use_asset_dir(asset_dir)
        device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, device)
        model = load_sonar_model(encoder, device, torch_dtype)
        tokenizer = tokenizer or encoder  # for callers without an EmbedConfig (whose tokenizer_name says the same)
        return cls(model, load_sonar_tokenizer(tokenizer), encoder, tokenizer, source_lang, device, torch_dtype,
                   max_tokens)

    def token_lengths(self, texts: list[str]) -> list[int]:
        return [min(len(self._token_encoder(t)), self.max_tokens) for t in texts]

    def encode_batch(self, texts: list[str]) -> np.ndarray:
        vectors = self.pipeline.predict(texts, source_lang=self.source_lang, batch_size=len(texts),
                                        max_seq_len=self.max_tokens)
        return vectors.float().cpu().numpy()

    def describe(self) -> dict:
        return {"kind": "sonar", "name": self.name, "tokenizer": self.tokenizer_name,
                "source_lang": self.source_lang, "dim": self.dim, "max_tokens": self.max_tokens,
                "compute_dtype": str(self.dtype).removeprefix("torch."), "storage_dtype": "float32"}


class SonarTextDecoder:
    """sonar's EmbeddingToTextModelPipeline with beam search and 3-gram repeat blocking."""

    def __init__(self, decoder: str = "text_sonar_basic_decoder", tokenizer: str | None = None,
                 target_lang: str = "eng_Latn", device: str = "auto", dtype: str = "auto",
                 asset_dir: str | None = None):
        import torch
        from sonar.inference_pipelines.text import EmbeddingToTextModelPipeline

        use_asset_dir(asset_dir)
        self.name = decoder
        self.target_lang = target_lang
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        model = load_sonar_model(decoder, self.device, self.dtype)
        tok = load_sonar_tokenizer(tokenizer or decoder)
        self.pipeline = EmbeddingToTextModelPipeline(model, tok, device=torch.device(self.device), dtype=self.dtype)

    def decode(self, vectors: np.ndarray, *, beam_size: int = 5, max_seq_len: int = 256,
               batch_size: int = 32) -> list[str]:
        import torch
        from fairseq2.generation.step_processor import NGramRepeatBlockProcessor

        inputs = torch.from_numpy(np.array(vectors, dtype=np.float32)).to(self.device, self.dtype)  # own copy
        return self.pipeline.predict(inputs, target_lang=self.target_lang, batch_size=batch_size,
                                     beam_size=beam_size, max_seq_len=max_seq_len,
                                     step_processors=[NGramRepeatBlockProcessor(ngram_size=3)])


def make_encoder(config) -> TextEncoder:
    """The encoder an EmbedConfig asks for."""
    return SonarTextEncoder.load(config.encoder, config.tokenizer_name, config.source_lang, config.device,
                                 config.dtype, config.max_tokens, config.asset_dir)
