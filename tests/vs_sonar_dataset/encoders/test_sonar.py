"""The SONAR plug-in, through sonar's real pipelines, on the tiny fixture pair loaded by card name."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
from sonar_fixtures import TEST_DIM, needs_sonar

from vs_sonar_dataset.core.errors import UserError

pytestmark = needs_sonar

LONG = " ".join(["check the units of every number before you add them"] * 40)


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def config(tiny_sonar, **kw):
    from vs_sonar_dataset.encoders.sonar import Config

    return Config(model="tiny_sonar_encoder", asset_dir=str(tiny_sonar), device="cpu", **kw)


@pytest.fixture(scope="module")
def sonar(tiny_sonar):
    from vs_sonar_dataset.encoders import encoder_plugin

    return encoder_plugin("sonar")


@pytest.fixture(scope="module")
def encoder(sonar, tiny_sonar):
    return sonar.load(config(tiny_sonar))


def test_fixture_cards_load_by_name(tiny_sonar, encoder):
    summary = json.loads((tiny_sonar / "fixture.json").read_text())
    assert summary["dim"] == TEST_DIM and summary["final_loss"] < 0.05
    assert "tiny_sonar_encoder" in (tiny_sonar / "cards.yaml").read_text()
    assert encoder.dim == TEST_DIM and encoder.name == "tiny_sonar_encoder"
    assert encoder.describe() == {"kind": "sonar", "name": "tiny_sonar_encoder", "tokenizer": "tiny_sonar_encoder",
                                  "source_lang": "eng_Latn", "dim": TEST_DIM, "max_tokens": 129,
                                  "compute_dtype": "float32", "storage_dtype": "float32"}  # fp32 on CPU


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


def test_token_counter_agrees_with_the_encoder_without_loading_it(sonar, tiny_sonar, encoder, train_texts):
    texts = [*train_texts[:5], "", LONG]
    counts = sonar.token_counter(config(tiny_sonar))(texts)
    assert counts == encoder.token_lengths(texts)
    assert counts[-1] == 129  # the tiny model's position table (128 + pad_idx + 1), below max_tokens = 512
    short = config(tiny_sonar, max_tokens=8)
    assert sonar.token_counter(short)(texts) == [min(c, 8) for c in counts]


def test_round_trip_decodes_training_sentences(sonar, tiny_sonar, encoder, train_texts):
    check = SimpleNamespace(decoder=None)  # None: the encoder card's partner
    decoder = sonar.load_decoder(config(tiny_sonar), check)
    assert decoder.name == "tiny_sonar_decoder" and decoder.target_lang == "eng_Latn"
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


def test_default_decoder_name_pairs_the_cards():
    from vs_sonar_dataset.encoders.sonar import default_decoder_name

    assert default_decoder_name("text_sonar_basic_encoder") == "text_sonar_basic_decoder"
    assert default_decoder_name("tiny_sonar_encoder") == "tiny_sonar_decoder"


def test_unknown_card_or_language_or_folder_is_a_user_error(sonar, tiny_sonar, tmp_path):
    with pytest.raises(UserError, match="no_such_encoder"):
        sonar.load(config(tiny_sonar).model_copy(update={"model": "no_such_encoder"}))
    with pytest.raises(UserError, match="no_such_encoder"):
        sonar.token_counter(config(tiny_sonar).model_copy(update={"model": "no_such_encoder"}))
    with pytest.raises(UserError, match="source_lang 'xx_Nope'"):
        sonar.token_counter(config(tiny_sonar, source_lang="xx_Nope"))
    with pytest.raises(UserError, match="asset directory not found"):
        sonar.load(config(tiny_sonar).model_copy(update={"asset_dir": str(tmp_path / "nowhere")}))
