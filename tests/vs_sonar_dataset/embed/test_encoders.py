"""The SONAR encoder/decoder wrappers, through sonar's real pipelines, on the tiny fixture loaded by name."""

import json

import numpy as np
import pytest

from .conftest import TEST_DIM, needs_sonar

pytestmark = needs_sonar


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_fixture_cards_load_by_name(tiny_sonar, encoder):
    summary = json.loads((tiny_sonar / "fixture.json").read_text())
    assert summary["dim"] == TEST_DIM and summary["final_loss"] < 0.05
    assert "tiny_sonar_encoder" in (tiny_sonar / "cards.yaml").read_text()
    assert encoder.dim == TEST_DIM and encoder.name == "tiny_sonar_encoder"
    assert encoder.describe()["compute_dtype"] == "float32"  # fp32 on CPU


def test_encode_is_fp32_and_independent_of_batching(encoder, train_texts):
    whole = encoder.encode_batch(train_texts)
    assert whole.dtype == np.float32 and whole.shape == (len(train_texts), TEST_DIM)
    assert np.isfinite(whole).all()
    pieces = np.concatenate([encoder.encode_batch(train_texts[i:i + 5]) for i in range(0, len(train_texts), 5)])
    np.testing.assert_allclose(pieces, whole, atol=1e-5)
    # different sentences get different vectors
    cos = unit(whole) @ unit(whole).T
    assert cos[~np.eye(len(whole), dtype=bool)].max() < 0.999


def test_token_lengths_count_language_token_and_eos(encoder):
    short, longer = encoder.token_lengths(["a", "a much longer sentence with many more words in it"])
    assert 3 <= short < longer <= encoder.max_tokens


def test_round_trip_decodes_training_sentences(encoder, decoder, train_texts):
    vectors = encoder.encode_batch(train_texts)
    decoded = decoder.decode(vectors, beam_size=3, max_seq_len=128)
    exact = np.mean([d == t for d, t in zip(decoded, train_texts)])
    assert exact >= 0.8, list(zip(train_texts, decoded))[:3]
    cos = np.sum(unit(encoder.encode_batch(decoded)) * unit(vectors), axis=1)
    baseline = np.sum(unit(vectors) * unit(np.roll(vectors, 1, axis=0)), axis=1)
    assert cos.mean() > baseline.mean() + 0.3
    # a vector decodes to its own sentence, not to another row's
    shuffled = decoder.decode(vectors[::-1], beam_size=3, max_seq_len=128)
    assert np.mean([d == t for d, t in zip(shuffled, train_texts)]) < 0.2


def test_unknown_card_is_a_user_error(tiny_sonar):
    from vs_sonar_dataset.embed.encoders import SonarTextEncoder
    from vs_sonar_dataset.errors import UserError

    with pytest.raises(UserError, match="no_such_encoder"):
        SonarTextEncoder.load("no_such_encoder", device="cpu", asset_dir=str(tiny_sonar))
