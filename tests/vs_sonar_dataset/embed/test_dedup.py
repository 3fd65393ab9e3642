import numpy as np
import pytest

from vs_sonar_dataset.embed.dedup import ExactDeduper

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
