"""The sentence-transformers plug-in on the real all-MiniLM-L6-v2 (copied from its PyPI package)."""

import json

import numpy as np
import pytest


from .conftest import check_missing_models_are_user_errors, needs_sentence_transformers

pytestmark = needs_sentence_transformers

NAME = "sentence-transformers/all-MiniLM-L6-v2"
TEXTS = ["How do I bake a chocolate cake?", "Check the units of every number before adding them.",
         "  Leading and trailing SPACES, Upper Case  ", "Hi.",
         " ".join(["a long sentence that goes on and on"] * 60)]


def config(folder, **kw):
    from vs_sonar_dataset.encoders.sentence_transformers import Config

    return Config(model=str(folder), model_name=NAME, device="cpu", **kw)


@pytest.fixture(scope="module")
def plugin():
    from vs_sonar_dataset.encoders import encoder_plugin

    return encoder_plugin("sentence_transformers")


@pytest.fixture(scope="module")
def encoder(plugin, minilm_dir):
    return plugin.load(config(minilm_dir))


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_the_fixture_is_a_self_contained_copy(minilm_dir):
    from vs_sonar_dataset.fixtures.minilm import is_built, package_folder

    assert is_built(minilm_dir) and not (minilm_dir / "model.safetensors").is_symlink()
    assert (minilm_dir / "model.safetensors").stat().st_size == (package_folder() / "model.safetensors").stat().st_size
    assert json.loads((minilm_dir / "1_Pooling" / "config.json").read_text())["word_embedding_dimension"] == 384


def test_loads_offline_as_a_384_d_encoder(encoder):
    assert encoder.dim == 384 and encoder.name == NAME
    assert encoder.describe() == {"kind": "sentence_transformers", "name": NAME, "dim": 384, "normalize": True,
                                  "max_tokens": 256, "pooling": "mean", "compute_dtype": "float32",
                                  "storage_dtype": "float32"}  # 256: the model's max_seq_length below 512


def test_vectors_are_unit_fp32_in_input_order(encoder):
    vectors = encoder.encode_batch(TEXTS)
    assert vectors.dtype == np.float32 and vectors.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # in input order: each row is the row its text gets when encoded alone
    for i, text in enumerate(TEXTS):
        assert float(unit(encoder.encode_batch([text]))[0] @ unit(vectors)[i]) > 0.9999


def test_a_paraphrase_is_closer_than_an_unrelated_sentence(encoder):
    a, paraphrase, unrelated = encoder.encode_batch(["How do I bake a chocolate cake?",
                                                     "What is a good recipe for chocolate cake?",
                                                     "The train to the airport leaves at nine."])
    assert a @ paraphrase > 0.7 and a @ unrelated < 0.2


def test_same_text_gives_the_same_vector_in_any_batch(encoder):
    text = TEXTS[1]
    first = encoder.encode_batch([text, TEXTS[0]])[0]
    assert encoder.encode_batch([text, TEXTS[0]])[0].tobytes() == first.tobytes()  # deterministic
    # another batch of the same padded width: the same bytes
    same_width = [t for t in ("Can you tell me how to bake a chocolate cake?", "How can I bake a chocolate cake?")
                  if encoder.token_lengths([t]) == encoder.token_lengths([TEXTS[0]])]
    assert same_width
    assert encoder.encode_batch([text, same_width[0]])[0].tobytes() == first.tobytes()
    # other padding changes the floating-point order of the sums, not the vector
    for batch in ([text], [TEXTS[4], text, TEXTS[3]]):
        np.testing.assert_allclose(encoder.encode_batch(batch)[batch.index(text)], first, atol=1e-6)


def test_token_counter_agrees_with_token_lengths_and_the_model_input(plugin, minilm_dir, encoder):
    counts = plugin.token_counter(config(minilm_dir))(TEXTS)
    assert counts == encoder.token_lengths(TEXTS) and counts[-1] == 256 and counts[3] == 4  # [CLS] hi . [SEP]
    features = encoder.model.preprocess(TEXTS) if hasattr(encoder.model, "preprocess") else \
        encoder.model.tokenize(TEXTS)
    assert features["attention_mask"].sum(1).tolist() == counts  # what the model is fed


def test_max_tokens_truncates_both_the_counts_and_the_input(plugin, minilm_dir):
    short = config(minilm_dir, max_tokens=8)
    counts = plugin.token_counter(short)(TEXTS)
    assert max(counts) == 8 and counts[3] == 4
    encoder = plugin.load(short)
    assert encoder.token_lengths(TEXTS) == counts and encoder.describe()["max_tokens"] == 8
    long, prefix = encoder.encode_batch([TEXTS[4], "a long sentence that goes on and on"])
    np.testing.assert_allclose(long, prefix, atol=1e-5)  # 8 tokens: [CLS] + the first 6 words + [SEP]


def test_normalize_off_keeps_the_raw_pooled_vectors(plugin, minilm_dir, tmp_path):
    # a copy of the model without its own Normalize module, so that the plug-in's setting decides
    folder = tmp_path / "minilm_no_norm"
    folder.mkdir()
    for path in minilm_dir.iterdir():
        (folder / path.name).symlink_to(path)
    (folder / "modules.json").unlink()
    modules = json.loads((minilm_dir / "modules.json").read_text())
    (folder / "modules.json").write_text(json.dumps([m for m in modules if not m["type"].endswith("Normalize")]))
    raw = plugin.load(config(folder, normalize=False))
    unit_vectors = plugin.load(config(folder, normalize=True))
    a, b = raw.encode_batch(TEXTS[:3]), unit_vectors.encode_batch(TEXTS[:3])
    assert not np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-2)
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(unit(a), b, atol=1e-5)
    assert raw.describe()["normalize"] is False and unit_vectors.describe()["normalize"] is True


def test_a_missing_model_is_a_user_error(plugin, tmp_path):
    check_missing_models_are_user_errors(plugin, config, tmp_path, "minilm")


def test_no_decoder(plugin, minilm_dir):
    assert plugin.load_decoder(config(minilm_dir), check=None) is None
