import numpy as np
import pytest
import torch

from vs_sonar_dataset.errors import UserError
from vs_sonar_dataset.stats import BLOCK_ROWS, Stats, StatsAccumulator, denormalize, load_stats, normalize


def _data(n, dim=12, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, dim)) * rng.uniform(0.1, 3, dim) + rng.uniform(-1, 1, dim)).astype(np.float32)


def test_mean_and_std_match_float64_numpy():
    x = _data(3 * BLOCK_ROWS + 123)
    acc = StatsAccumulator(12)
    for start in range(0, len(x), 1000):
        acc.add(x[start : start + 1000], [str(i) for i in range(start, min(start + 1000, len(x)))])
    s = acc.snapshot("c")
    assert s["count"] == len(x)
    np.testing.assert_allclose(s["mean"], x.astype(np.float64).mean(0), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(s["std"], x.astype(np.float64).std(0), rtol=1e-6)
    norms = np.linalg.norm(x.astype(np.float64), axis=1)
    assert s["norm"]["max"] == pytest.approx(norms.max()) and s["norm"]["p50"] == pytest.approx(np.median(norms))


def test_snapshot_mid_stream_equals_fresh_prefix_bitwise():
    x = _data(BLOCK_ROWS + 5000)
    ids = [str(i) for i in range(len(x))]
    streaming = StatsAccumulator(12)
    streaming.add(x[:7000], ids[:7000])
    mid = streaming.snapshot("small")
    streaming.add(x[7000:], ids[7000:])
    fresh = StatsAccumulator(12)
    for start in range(0, 7000, 999):  # other batch sizes, same aligned blocks
        fresh.add(x[start : min(start + 999, 7000)], ids[start : min(start + 999, 7000)])
    assert fresh.snapshot("small") == mid
    assert streaming.snapshot("big")["count"] == len(x)


def test_whole_blocks_and_pieces_give_bitwise_equal_stats():
    x = _data(3 * BLOCK_ROWS + 77)
    ids = [str(i) for i in range(len(x))]
    snapshots = []
    for piece in (len(x), BLOCK_ROWS, 1000, BLOCK_ROWS + 1):  # whole blocks read in place, or gathered from pieces
        acc = StatsAccumulator(12)
        for start in range(0, len(x), piece):
            acc.add(x[start : start + piece], ids[start : start + piece])
        snapshots.append(acc.snapshot("c"))
    assert all(s == snapshots[0] for s in snapshots[1:])


def test_a_constant_dimension_has_zero_std():
    x = _data(BLOCK_ROWS + 10)
    x[:, 3] = 0.1  # not exact in binary: sum of squares minus squared sum rounds around zero
    s = StatsAccumulator(12)
    s.add(x, [str(i) for i in range(len(x))])
    snapshot = s.snapshot("c")
    assert snapshot["std"][3] == 0.0 and np.isfinite(snapshot["std"]).all()


def test_ids_hash_depends_on_order():
    x = _data(4)
    a, b = StatsAccumulator(12), StatsAccumulator(12)
    a.add(x, ["a", "b", "c", "d"])
    b.add(x, ["b", "a", "c", "d"])
    assert a.snapshot("c")["ids_sha256"] != b.snapshot("c")["ids_sha256"]


def _stats(x):
    acc = StatsAccumulator(x.shape[1])
    acc.add(x, [str(i) for i in range(len(x))])
    return Stats.from_json(acc.snapshot("c"))


def test_normalize_numpy_and_torch_agree_and_invert():
    x = _data(500)
    stats = _stats(x)
    z = normalize(x, stats)
    assert z.dtype == np.float32
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(z.std(0), 1, atol=1e-4)
    np.testing.assert_allclose(denormalize(z, stats), x, rtol=1e-5, atol=1e-5)
    zt = normalize(torch.from_numpy(x), stats)
    assert isinstance(zt, torch.Tensor) and zt.dtype == torch.float32
    np.testing.assert_allclose(zt.numpy(), z, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(denormalize(zt, stats).numpy(), x, rtol=1e-5, atol=1e-5)


def test_normalize_rejects_other_types():
    with pytest.raises(TypeError, match="numpy array or a torch tensor"):
        normalize([1.0, 2.0], _stats(_data(10)))


def test_load_stats_from_release_folder(small_release_master):
    stats = load_stats(str(small_release_master), "m")
    assert stats.count == 240 and stats.mean.dtype == np.float32 and stats.mean.shape == (16,)
    with pytest.raises(UserError, match="no stats for config 'xl'"):
        load_stats(str(small_release_master), "xl")
