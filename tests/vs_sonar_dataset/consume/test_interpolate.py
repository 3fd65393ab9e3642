"""interpolate: lerp and slerp for numpy and torch, on a release's vectors and on hand-made ones."""

import numpy as np
import pytest
import torch

from vs_sonar_dataset.build.stats import load_stats, normalize
from vs_sonar_dataset.consume.interpolate import interpolate
from vs_sonar_dataset.consume.loading import load_embeddings


def angle(x, y):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return np.arccos(np.clip((x * y).sum(-1) / np.linalg.norm(x, axis=-1) / np.linalg.norm(y, axis=-1), -1, 1))


@pytest.fixture(scope="module")
def pairs(small_release_master):
    """Eight pairs of rows of a real release, as shipped and normalised with its stats."""
    X, _ = load_embeddings(small_release_master, "m", "train")
    Z = normalize(X, load_stats(small_release_master, "m"))
    return {"shipped": (X[:8], X[8:16]), "normalised": (Z[:8], Z[8:16])}


@pytest.mark.parametrize("space", ["shipped", "normalised"])
def test_slerp_follows_the_great_circle_and_lerps_the_norm(pairs, space):
    a, b = pairs[space]
    t = np.linspace(0, 1, 7)[:, None]  # [7, 1] against 8 pairs: a [7, 8, dim] path
    path = interpolate(a, b, t, "slerp")
    assert path.shape == (7, 8, a.shape[1]) and path.dtype == np.float32
    assert np.allclose(path[0], a, atol=1e-6) and np.allclose(path[-1], b, atol=1e-6)
    norm_a, norm_b = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    assert np.allclose(np.linalg.norm(path, axis=2), (1 - t) * norm_a + t * norm_b, rtol=1e-5)
    total = angle(a, b)
    assert np.allclose(angle(a, path), t * total, atol=1e-4)  # constant angular speed
    assert np.allclose(angle(path, b), (1 - t) * total, atol=1e-4)


def test_lerp_is_exact_at_the_ends_and_linear_between(pairs):
    a, b = pairs["shipped"]
    assert np.array_equal(interpolate(a, b, 0.0), a) and np.array_equal(interpolate(a, b, 1.0), b)
    assert np.allclose(interpolate(a, b, 0.25), a + 0.25 * (b - a), atol=1e-7)


@pytest.mark.parametrize("method", ["lerp", "slerp"])
def test_torch_matches_numpy_and_keeps_dtype(pairs, method):
    a, b = pairs["normalised"]
    t = np.linspace(0, 1, 8)  # one t per pair
    want = interpolate(a.astype(np.float64), b.astype(np.float64), t, method)
    got = interpolate(torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(t), method)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32 and got.shape == a.shape
    assert np.allclose(got.numpy(), want, atol=1e-5)


def test_slerp_falls_back_to_lerp_without_a_great_circle():
    x = np.array([[0.3, -0.4, 1.2]], np.float32)
    for b in (x * 2.5, x * (1 + 1e-7), -x, np.zeros_like(x)):  # same direction, ~same, opposite, a zero vector
        for t in (0.0, 0.3, 1.0):
            got = interpolate(x, b, t, "slerp")
            assert np.all(np.isfinite(got)) and np.allclose(got, interpolate(x, b, t), atol=1e-6)
    nearly = x + np.array([[0, 1e-3, 0]], np.float32)  # a small but real angle: slerp, still finite and close
    assert np.allclose(interpolate(x, nearly, 0.5, "slerp"), interpolate(x, nearly, 0.5), atol=1e-6)


def test_mistakes_are_clear_errors():
    a, b = np.ones((4, 3)), np.ones((4, 3))
    with pytest.raises(ValueError, match="same shape"):
        interpolate(a, np.ones((4, 2)), 0.5)
    with pytest.raises(ValueError, match="same shape"):
        interpolate(np.float32(1), np.float32(2), 0.5)
    with pytest.raises(ValueError, match="unknown interpolation method 'cubic'"):
        interpolate(a, b, 0.5, "cubic")
    with pytest.raises(ValueError, match=r"t of shape \(3,\) does not broadcast"):
        interpolate(a, b, np.ones(3))
    with pytest.raises(ValueError, match="does not broadcast"):
        interpolate(torch.ones(4, 3), torch.ones(4, 3), torch.ones(3))
    with pytest.raises(TypeError, match="must both be numpy arrays or both torch tensors"):
        interpolate(a, torch.ones(4, 3), 0.5)
