"""The hf_auto plug-in (AutoModel + pooling) on a tiny random Qwen3 built locally."""

import json

import numpy as np
import pytest


from .conftest import check_missing_models_are_user_errors, needs_transformers

pytestmark = needs_transformers

A = "Check the units of every number before adding them."
OTHERS = ["Hi.", "Read the problem twice and write down every quantity it gives before you start to compute.",
          "Name the unknown."]
LONG = " ".join(["Break the story into steps and solve each step in order."] * 30)


def config(folder, **kw):
    from vs_sonar_dataset.encoders.hf_auto import Config

    return Config(model=str(folder), model_name="tiny-qwen3", device="cpu", **kw)


@pytest.fixture(scope="module")
def plugin():
    from vs_sonar_dataset.encoders import encoder_plugin

    return encoder_plugin("hf_auto")


@pytest.fixture(scope="module")
def last_token(plugin, tiny_qwen3_dir):
    return plugin.load(config(tiny_qwen3_dir))


@pytest.fixture(scope="module")
def mean(plugin, tiny_qwen3_dir):
    return plugin.load(config(tiny_qwen3_dir, pooling="mean"))


def test_fixture_loads_like_a_qwen3_embedding_checkpoint(tiny_qwen3_dir):
    from transformers import AutoModel, AutoTokenizer

    from vs_sonar_dataset.fixtures.tiny_qwen3 import is_built

    assert is_built(tiny_qwen3_dir)
    tokenizer, model = AutoTokenizer.from_pretrained(tiny_qwen3_dir), AutoModel.from_pretrained(tiny_qwen3_dir)
    assert type(model).__name__ == "Qwen3Model" and tokenizer.padding_side == "left"
    assert tokenizer(A)["input_ids"][-1] == tokenizer.eos_token_id  # appended, as Qwen3-Embedding does
    settings = json.loads((tiny_qwen3_dir / "config.json").read_text())
    assert (settings["hidden_size"], settings["num_hidden_layers"], settings["head_dim"]) == (64, 2, 16)


def test_describe_and_output(last_token):
    vectors = last_token.encode_batch([A, *OTHERS])
    assert vectors.dtype == np.float32 and vectors.shape == (4, 64) and np.isfinite(vectors).all()
    assert last_token.describe() == {"kind": "hf_auto", "name": "tiny-qwen3", "revision": "", "dim": 64,
                                     "pooling": "last_token", "normalize": True, "query_instruction": "",
                                     "max_tokens": 512, "compute_dtype": "float32", "storage_dtype": "float32"}
    cos = vectors @ vectors.T
    assert cos[~np.eye(4, dtype=bool)].max() < 0.99  # different texts, different vectors


@pytest.mark.parametrize("encoder_name", ["last_token", "mean"])
def test_a_text_gets_the_vector_it_gets_alone_in_any_padded_batch(encoder_name, request):
    encoder = request.getfixturevalue(encoder_name)
    alone = encoder.encode_batch([A])[0]
    for batch in ([A, *OTHERS], [OTHERS[1], A], [OTHERS[0], OTHERS[2], A]):
        np.testing.assert_allclose(encoder.encode_batch(batch)[batch.index(A)], alone, atol=1e-6)


def test_last_token_pooling_reads_the_last_real_token(last_token):
    """Right padding would put a pad at position -1 for every shorter text; the pooled state would then move
    with the batch."""
    alone = last_token.encode_batch([A])[0]
    last_token.tokenizer.padding_side = "right"
    last_token._position_ids = False  # as a model fed right padding without position ids would see it
    try:
        padded_wrong = last_token.encode_batch([OTHERS[1], A])[1]
    finally:
        last_token.tokenizer.padding_side = "left"
        last_token._position_ids = True
    assert np.abs(padded_wrong - alone).max() > 1e-3  # the check above can fail


def test_mean_pooling_differs_from_last_token(last_token, mean):
    a, b = last_token.encode_batch([A, *OTHERS]), mean.encode_batch([A, *OTHERS])
    assert mean.describe()["pooling"] == "mean"
    assert np.max(np.sum(a * b, axis=1)) < 0.99


def test_normalize_on_and_off(plugin, tiny_qwen3_dir, last_token):
    raw = plugin.load(config(tiny_qwen3_dir, normalize=False)).encode_batch([A, *OTHERS])
    normed = last_token.encode_batch([A, *OTHERS])
    np.testing.assert_allclose(np.linalg.norm(normed, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0, atol=1e-2)
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), normed, atol=1e-5)


def test_query_instruction_changes_the_vector_and_the_count(plugin, tiny_qwen3_dir, last_token):
    query = plugin.load(config(tiny_qwen3_dir, query_instruction="Find the step that solves the problem"))
    plain, asked = last_token.encode_batch([A])[0], query.encode_batch([A])[0]
    assert plain @ asked < 0.99
    texts = [A, *OTHERS]
    assert all(q > p for q, p in zip(query.token_lengths(texts), last_token.token_lengths(texts)))
    counter = plugin.token_counter(config(tiny_qwen3_dir, query_instruction="Find the step that solves the problem"))
    assert counter(texts) == query.token_lengths(texts)
    # the format Qwen3-Embedding's queries use
    ids = query.tokenizer(f"Instruct: Find the step that solves the problem\nQuery: {A}")["input_ids"]
    assert query.token_lengths([A]) == [len(ids)]


def test_token_counter_truncates_at_max_tokens(plugin, tiny_qwen3_dir, last_token):
    texts = [A, *OTHERS, LONG]
    full = plugin.token_counter(config(tiny_qwen3_dir))(texts)
    assert full == last_token.token_lengths(texts) and full[-1] > 100
    short = config(tiny_qwen3_dir, max_tokens=8)
    counts = plugin.token_counter(short)(texts)
    assert counts == [min(n, 8) for n in full]
    encoder = plugin.load(short)
    assert encoder.token_lengths(texts) == counts
    assert encoder.tokenizer(LONG, truncation=True, max_length=8)["input_ids"][-1] == encoder.tokenizer.eos_token_id


def test_bf16_compute_returns_fp32_close_to_fp32(plugin, tiny_qwen3_dir, last_token):
    half = plugin.load(config(tiny_qwen3_dir, dtype="bf16"))
    assert half.describe()["compute_dtype"] == "bfloat16"
    vectors = half.encode_batch([A, *OTHERS])
    assert vectors.dtype == np.float32
    assert np.min(np.sum(vectors * last_token.encode_batch([A, *OTHERS]), axis=1)) > 0.98


def test_a_missing_model_is_a_user_error(plugin, tmp_path):
    check_missing_models_are_user_errors(plugin, config, tmp_path, "qwen3")


def test_no_decoder(plugin, tiny_qwen3_dir):
    assert plugin.load_decoder(config(tiny_qwen3_dir), check=None) is None
