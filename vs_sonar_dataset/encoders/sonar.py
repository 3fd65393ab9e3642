"""SONAR text encoder (and the decoder the model checks use), through sonar's own pipelines.

Models load by fairseq2 asset card name: the real `text_sonar_basic_encoder` (weights fetched by fairseq2 on
first use) or a card from a local asset directory (`asset_dir`, read through FAIRSEQ2_USER_ASSET_DIR with
file:// checkpoints). The model is created on the chosen device in the chosen dtype by fairseq2 and then handed
to sonar's pipeline as an object: sonar does not move or cast model objects itself.
"""

import copy
import logging
import os
from pathlib import Path
from typing import Literal

import numpy as np

from ..core.errors import UserError
from ..core.devices import resolve_device
from ._torch_util import dtype_name, resolve_dtype
from .base import EncoderConfig

KIND = "sonar"
HAS_DECODER = True  # model checks decode vectors back to text and re-encode them
# for the card: SONAR's repository releases its code under MIT and gives each model its own license
DEFAULT_LICENSE = ("per model, see SONAR's LICENSE.md (code MIT; some SONAR models are MIT, others CC BY-NC 4.0): "
                   "check the card you use")
CITATION = """@article{duquenne2023sonar,
  title   = {SONAR: Sentence-Level Multimodal and Language-Agnostic Representations},
  author  = {Duquenne, Paul-Ambroise and Schwenk, Holger and Sagot, Beno{\\^i}t},
  journal = {arXiv preprint arXiv:2308.11466},
  year    = {2023}
}"""
LIMITATION = ("SONAR embeddings are capped at 512 tokens and are lossy: decoding a vector returns a paraphrase at "
              "best. The round-trip figures above measure how lossy for this data.")

log = logging.getLogger("vs_sonar.embed")


class Config(EncoderConfig):
    kind: Literal[KIND] = KIND
    model: str = "text_sonar_basic_encoder"  # fairseq2 asset card name
    tokenizer: str | None = None  # None: the model's card (SONAR cards carry both)
    source_lang: str = "eng_Latn"
    asset_dir: str | None = None  # a local folder of asset cards (FAIRSEQ2_USER_ASSET_DIR)


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


def _source_encoder(tokenizer, tokenizer_name: str, source_lang: str):
    try:
        return tokenizer.create_encoder(lang=source_lang, mode="source")
    except Exception as e:
        raise UserError(f"tokenizer {tokenizer_name!r} does not know source_lang {source_lang!r}: {e}") from None


def model_token_cap(name: str) -> int | None:
    """The longest input the encoder card's model takes (its position table), read from the card's config
    without loading weights; None when the model has no position table."""
    from sonar.models.sonar_text import get_sonar_text_encoder_hub
    from sonar.models.sonar_text.factory import SonarTextEncoderFactory

    config = _load("model", name, get_sonar_text_encoder_hub().get_model_config)
    if config.no_token_positional_embeddings:
        return None
    # the factory widens the table of fairseq-trained models by pad_idx + 1 (on the config it is given)
    return SonarTextEncoderFactory(copy.deepcopy(config)).config.max_seq_len


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
        self._token_encoder = _source_encoder(tokenizer, self.tokenizer_name, source_lang)
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
        tokenizer = tokenizer or encoder
        return cls(model, load_sonar_tokenizer(tokenizer), encoder, tokenizer, source_lang, device, torch_dtype,
                   max_tokens)

    def token_lengths(self, texts: list[str]) -> list[int]:
        return [min(len(self._token_encoder(t)), self.max_tokens) for t in texts]

    def encode_batch(self, texts: list[str]) -> np.ndarray:
        vectors = self.pipeline.predict(texts, source_lang=self.source_lang, batch_size=len(texts),
                                        max_seq_len=self.max_tokens)
        return vectors.float().cpu().numpy()

    def describe(self) -> dict:
        return {"kind": KIND, "name": self.name, "tokenizer": self.tokenizer_name,
                "source_lang": self.source_lang, "dim": self.dim, "max_tokens": self.max_tokens,
                "compute_dtype": dtype_name(self.dtype), "storage_dtype": "float32"}


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


def default_decoder_name(encoder: str) -> str:
    """SONAR cards come in pairs: text_sonar_basic_encoder / text_sonar_basic_decoder."""
    return encoder[: -len("encoder")] + "decoder" if encoder.endswith("encoder") else "text_sonar_basic_decoder"


def load(config: Config) -> SonarTextEncoder:
    return SonarTextEncoder.load(config.model, config.tokenizer, config.source_lang, config.device, config.dtype,
                                 config.max_tokens, config.asset_dir)


def token_counter(config: Config):
    """Tokens per text as the encoder counts them (language token and end of sentence included, truncated at
    max_tokens and at the model's position table), from the tokenizer and the card's config only."""
    use_asset_dir(config.asset_dir)
    name = config.tokenizer or config.model
    encode = _source_encoder(load_sonar_tokenizer(name), name, config.source_lang)
    model_cap = model_token_cap(config.model)
    cap = min(config.max_tokens, model_cap) if model_cap else config.max_tokens
    return lambda texts: [min(len(encode(t)), cap) for t in texts]


def load_decoder(config: Config, check) -> SonarTextDecoder:
    """check.decoder, else the encoder card's partner (`*_encoder` -> `*_decoder`); same cards, device and
    dtype; it writes in the source language."""
    return SonarTextDecoder(check.decoder or default_decoder_name(config.model), None, config.source_lang,
                            config.device, config.dtype, config.asset_dir)
