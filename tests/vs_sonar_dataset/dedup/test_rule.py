import numpy as np

from vs_sonar_dataset.dedup.rule import DedupResult, concat_results, decide, pair_cosines

THRESHOLD = 0.9


def test_a_row_duplicates_its_nearest_kept_row_and_a_dropped_twin_does_not_count():
    # twins: the pairs at or above the threshold. Rows 0 and 1: no kept row near, row 1 is row 0's twin. Row 2:
    # at 0.9375 to the kept set's row 7 and to row 0 (equal: the kept set's row stays, only a higher cosine
    # replaces it), and at 0.99 to row 1, which is dropped
    best = np.array([0.1, 0.2, 0.9375], np.float32)
    best_index = np.array([-1, -1, 7])
    twins = {1: [(0, 0.97)], 2: [(0, 0.9375), (1, 0.99)]}
    result = decide(best, best_index, twins, THRESHOLD, None, base=10)
    assert result.keep.tolist() == [True, False, False]
    assert result.duplicate_of.tolist() == [-1, 10, 7]  # row 0 was kept as global kept index 10
    assert np.isnan(result.cosine[0]) and np.allclose(result.cosine[1:], [0.97, 0.9375])


def test_of_two_earlier_twins_at_the_same_cosine_the_first_wins():
    best = np.zeros(3, np.float32)
    result = decide(best, np.full(3, -1), {2: [(1, 0.93), (0, 0.93)]}, THRESHOLD, None, base=0)
    assert result.keep.tolist() == [True, True, False] and result.duplicate_of[2] == 0


def test_rows_below_the_threshold_are_kept_with_consecutive_kept_indices():
    best = np.array([0.5, 0.89, -1.0], np.float32)
    result = decide(best, np.full(3, -1), {}, THRESHOLD, None, base=4)
    assert result.keep.all() and result.processed == 3 and (result.duplicate_of == -1).all()


def test_a_limit_stops_once_that_many_rows_are_kept():
    best = np.array([0.0, 0.99, 0.0, 0.0], np.float32)
    result = decide(best, np.array([-1, 3, -1, -1]), {}, THRESHOLD, 2, base=0)
    # row 1 is dropped on the way, so the second kept row is row 2, and row 3 is not decided
    assert result.processed == 3 and result.keep.tolist() == [True, False, True]


def test_results_concatenate_in_order():
    parts = [DedupResult(2, np.array([True, False]), np.array([-1, 0]), np.array([np.nan, 0.96], np.float32)),
             DedupResult.empty(),
             DedupResult(1, np.array([True]), np.array([-1]), np.array([np.nan], np.float32))]
    joined = concat_results(parts)
    assert joined.processed == 3 and joined.keep.tolist() == [True, False, True]
    assert joined.duplicate_of.tolist() == [-1, 0, -1]
    assert concat_results([]).processed == 0


def test_the_recorded_cosine_does_not_depend_on_the_order_of_the_products():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((64, 256)).astype(np.float32)
    b = rng.standard_normal((64, 256)).astype(np.float32)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    whole = pair_cosines(a, b)
    assert whole.dtype == np.float32
    # the same pairs one by one and reversed give the same bits
    assert np.array_equal(whole, np.concatenate([pair_cosines(a[i:i + 1], b[i:i + 1]) for i in range(64)]))
    assert np.array_equal(whole[::-1], pair_cosines(a[::-1], b[::-1]))
