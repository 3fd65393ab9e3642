import numpy as np
import pytest

from vs_sonar_dataset.core.config import load_table
from vs_sonar_dataset.dedup.dedupers import METHOD_IVF, ExactDeduper, IVFDeduper, make_deduper
from vs_sonar_dataset.fixtures.vectors import clustered as clustered_vectors

THRESHOLD = 0.95


def planted(n=400, dim=48, seed=0):
    """Random rows plus near-copies of earlier rows whose cosine straddles the threshold (none within 1e-3
    of it, so float rounding cannot flip a decision)."""
    rng = np.random.default_rng(seed)
    rows = [rng.standard_normal(dim)]
    while len(rows) < n:
        if rng.random() < 0.35:
            source = rows[rng.integers(len(rows))]
            row = source + rng.normal(scale=rng.uniform(0.05, 0.5), size=dim) * np.linalg.norm(source) / dim**0.5
            cos = row @ source / np.linalg.norm(row) / np.linalg.norm(source)
            if abs(cos - THRESHOLD) < 1e-3:
                continue
        else:
            row = rng.standard_normal(dim)
        rows.append(row)
    return np.array(rows, dtype=np.float32) * rng.uniform(0.5, 3.0, size=(n, 1)).astype(np.float32)


def reference(vectors, threshold=THRESHOLD, limit=None):
    """The definition, one row at a time in float64."""
    unit = vectors.astype(np.float64) / np.linalg.norm(vectors.astype(np.float64), axis=1, keepdims=True)
    kept, decisions = [], []
    for i, v in enumerate(unit):
        if limit is not None and len(kept) >= limit:
            break
        if kept:
            cos = unit[kept] @ v
            j = int(np.argmax(cos))
            if cos[j] >= threshold:
                decisions.append((False, j, cos[j]))
                continue
        kept.append(i)
        decisions.append((True, -1, np.nan))
    return decisions


def run(vectors, chunk, block, limit=None):
    deduper = ExactDeduper(vectors.shape[1], THRESHOLD, block_rows=block)
    decisions = []
    for start in range(0, len(vectors), chunk):
        remaining = None if limit is None else limit - sum(d[0] for d in decisions)
        if remaining is not None and remaining <= 0:
            break
        result = deduper.process(vectors[start:start + chunk], limit=remaining)
        decisions += list(zip(result.keep.tolist(), result.duplicate_of.tolist(), result.cosine.tolist()))
    return decisions, deduper


def assert_same(actual, expected):
    assert [a[0] for a in actual] == [e[0] for e in expected]
    assert [a[1] for a in actual] == [e[1] for e in expected]
    np.testing.assert_allclose([a[2] for a in actual], [e[2] for e in expected], atol=1e-5)


def test_matches_the_definition_and_finds_planted_duplicates():
    vectors = planted()
    expected = reference(vectors)
    assert 50 < sum(not d[0] for d in expected) < 200  # the data really has duplicates to find
    actual, deduper = run(vectors, chunk=64, block=100)
    assert_same(actual, expected)
    assert deduper.size == sum(d[0] for d in expected)


@pytest.mark.parametrize("chunk, block", [(1, 1), (7, 5), (400, 1000), (33, 64)])
def test_same_kept_set_whatever_chunk_and_block_size(chunk, block):
    vectors = planted(seed=1)
    assert_same(run(vectors, chunk, block)[0], reference(vectors))


def test_stops_at_the_target():
    vectors = planted(seed=2)
    actual, deduper = run(vectors, chunk=50, block=64, limit=120)
    expected = reference(vectors, limit=120)
    assert_same(actual, expected)
    assert deduper.size == 120 and actual[-1][0]  # the last decided row is the 120th kept


def test_resume_from_kept_vectors_gives_the_same_decisions():
    vectors = planted(seed=3)
    expected = reference(vectors)
    first, deduper = run(vectors[:170], chunk=40, block=50)
    kept_vectors = vectors[:170][[d[0] for d in first]]
    resumed = ExactDeduper(vectors.shape[1], THRESHOLD, block_rows=50)
    resumed.add_kept(kept_vectors)
    result = resumed.process(vectors[170:])
    second = list(zip(result.keep.tolist(), result.duplicate_of.tolist(), result.cosine.tolist()))
    assert_same(first + second, expected)


def test_a_chunk_duplicate_of_its_own_earlier_row():
    v = np.eye(4, dtype=np.float32)
    v[2] = v[0] * 2  # same direction as row 0, inside the same chunk
    result = ExactDeduper(4, THRESHOLD).process(v)
    assert result.keep.tolist() == [True, True, False, True]
    assert result.duplicate_of[2] == 0 and result.cosine[2] == pytest.approx(1.0)


def test_empty_chunk():
    deduper = ExactDeduper(4, THRESHOLD)
    deduper.add_kept(np.eye(4, dtype=np.float32))
    result = deduper.process(np.zeros((0, 4), dtype=np.float32))
    assert result.processed == 0 and deduper.size == 4


# -- the approximate (ivf) deduper ------------------------------------------------------------------------

IVF = dict(nlist=16, nprobe=3, train_rows=500)


@pytest.fixture(scope="module")
def clustered():
    """4000 rows shaped like an embedding space with 20% near-twins of earlier rows (fixtures/vectors.py)."""
    return clustered_vectors(4000, 64)


def decide(deduper, vectors, chunk, limit=None):
    keep, dup = [], []
    for start in range(0, len(vectors), chunk):
        remaining = None if limit is None else limit - sum(keep)
        if remaining is not None and remaining <= 0:
            break
        result = deduper.process(vectors[start:start + chunk], limit=remaining)
        keep += result.keep.tolist()
        dup += result.duplicate_of.tolist()
    return np.array(keep), np.array(dup)


@pytest.fixture(scope="module")
def exact_and_ivf(clustered):
    exact = decide(ExactDeduper(clustered.shape[1], THRESHOLD), clustered, 1000)
    ivf = decide(IVFDeduper(clustered.shape[1], THRESHOLD, **IVF), clustered, 1000)
    return exact, ivf


def test_ivf_finds_the_duplicates_exact_finds(exact_and_ivf):
    (exact_keep, exact_dup), (ivf_keep, ivf_dup) = exact_and_ivf
    dropped = ~exact_keep
    assert 600 < dropped.sum() < 900
    recall = (dropped & ~ivf_keep).sum() / dropped.sum()
    assert recall >= 0.99
    assert (~ivf_keep & exact_keep).sum() == 0  # the approximation misses duplicates, never invents them
    same = dropped & ~ivf_keep
    assert (ivf_dup[same] == exact_dup[same]).mean() >= 0.99  # and names the same kept twin
    # the exact phase (the first 500 kept rows) decides exactly
    head = np.searchsorted(np.cumsum(exact_keep), IVF["train_rows"]) + 1
    assert np.array_equal(ivf_keep[:head], exact_keep[:head])


def test_ivf_needs_enough_lists_probed(clustered, exact_and_ivf):
    """A single probed list out of 16 loses duplicates: the list restriction really is in force."""
    (exact_keep, _), _ = exact_and_ivf
    keep, _ = decide(IVFDeduper(clustered.shape[1], THRESHOLD, nlist=16, nprobe=1, train_rows=500), clustered, 1000)
    assert (~exact_keep & ~keep).sum() / (~exact_keep).sum() < 0.99


@pytest.mark.parametrize("chunk", [1, 333, 4000])
def test_ivf_same_decisions_whatever_the_chunk_size(clustered, exact_and_ivf, chunk):
    _, (keep, dup) = exact_and_ivf
    vectors = clustered if chunk > 1 else clustered[:1200]  # row by row is slow; 1200 still crosses training
    actual_keep, actual_dup = decide(IVFDeduper(clustered.shape[1], THRESHOLD, **IVF), vectors, chunk)
    assert np.array_equal(actual_keep, keep[:len(vectors)]) and np.array_equal(actual_dup, dup[:len(vectors)])


@pytest.mark.parametrize("split", [300, 2500])  # resumed before and after the index is trained
def test_ivf_resume_from_kept_vectors(clustered, exact_and_ivf, split):
    _, (keep, dup) = exact_and_ivf
    first_keep, _ = decide(IVFDeduper(clustered.shape[1], THRESHOLD, **IVF), clustered[:split], 256)
    resumed = IVFDeduper(clustered.shape[1], THRESHOLD, **IVF)
    resumed.add_kept(clustered[:split][first_keep])
    assert resumed.size == first_keep.sum()
    rest_keep, rest_dup = decide(resumed, clustered[split:], 700)
    assert np.array_equal(np.concatenate([first_keep, rest_keep]), keep)
    assert np.array_equal(rest_dup, dup[split:])


def test_ivf_stops_at_the_target(clustered, exact_and_ivf):
    _, (keep, _) = exact_and_ivf
    deduper = IVFDeduper(clustered.shape[1], THRESHOLD, **IVF)
    actual, _ = decide(deduper, clustered, 900, limit=1500)
    assert deduper.size == 1500 and actual[-1] and np.array_equal(actual, keep[:len(actual)])


def test_ivf_method_records_the_index():
    method = IVFDeduper(8, THRESHOLD, nlist=4, nprobe=2, train_rows=50).method()
    assert (method["method"], method["nlist"], method["nprobe"], method["training_rows"]) == (METHOD_IVF, 4, 2, 50)
    with pytest.raises(ValueError, match="nprobe"):
        IVFDeduper(8, THRESHOLD, nlist=4, nprobe=5)


@pytest.mark.parametrize("method, device, rows, expected", [
    ("exact", "cpu", 10**6, ExactDeduper), ("ivf", "cpu", 10, IVFDeduper), ("auto", "cpu", 10**6, IVFDeduper),
    ("auto", "cpu", 200_000, ExactDeduper), ("auto", "cpu", None, ExactDeduper),
])
def test_make_deduper_resolves_auto(method, device, rows, expected):
    assert type(make_deduper(method, 8, THRESHOLD, 64, device, rows)) is expected


@pytest.mark.parametrize("method", ["exact", "ivf", "auto"])
def test_config_accepts_the_methods(tmp_path, method):
    path = tmp_path / "run.toml"
    path.write_text(f'[dedup]\nmethod = "{method}"\n')
    assert load_table(path, "dedup").method == method


def test_ivf_exact_phase_in_sub_chunks_decides_the_same(clustered, exact_and_ivf, monkeypatch):
    from vs_sonar_dataset.dedup import dedupers as dedup

    monkeypatch.setattr(dedup, "EXACT_PHASE_CHUNK", 97)
    _, (keep, dup) = exact_and_ivf
    actual_keep, actual_dup = decide(IVFDeduper(clustered.shape[1], THRESHOLD, **IVF), clustered, 4000, limit=3000)
    assert np.array_equal(actual_keep, keep[:len(actual_keep)]) and np.array_equal(actual_dup, dup[:len(actual_dup)])
    assert actual_keep.sum() == 3000
