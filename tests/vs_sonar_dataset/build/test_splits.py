import numpy as np
import pytest

from vs_sonar_dataset.build.splits import SPLITS, make_plan, parse_size, split_sizes
from vs_sonar_dataset.core.errors import UserError


def test_split_sizes_are_80_10_10_and_sum_to_size():
    assert split_sizes(1000) == {"train": 800, "validation": 100, "test": 100}
    for size in (10, 99, 1001, 123_457):
        sizes = split_sizes(size)
        assert sum(sizes.values()) == size and sizes["validation"] == sizes["test"] == size // 10


def test_parse_size():
    assert [parse_size(s) for s in ("1k", "5K", "1m", "2500", 7, "1.5k")] == [1000, 5000, 1_000_000, 2500, 7, 1500]
    with pytest.raises(UserError, match="not a number"):
        parse_size("big")


def test_configs_nest_split_by_split_and_splits_are_disjoint():
    plan = make_plan(5000, {"1k": 1000, "10k": 4000, "5k": "2k"}, seed=1)
    assert list(plan.configs) == ["1k", "5k", "10k"]
    for small, large in [("1k", "5k"), ("5k", "10k")]:
        for split in SPLITS:
            a, b = plan.rows(small, split), plan.rows(large, split)
            assert np.array_equal(a, b[: len(a)])
    rows = [plan.rows("10k", s) for s in SPLITS]
    assert len(np.unique(np.concatenate(rows))) == 4000


def test_plan_depends_on_seed_only():
    a = make_plan(3000, {"a": 1000}, seed=5)
    assert np.array_equal(a.order, make_plan(3000, {"a": 1000}, seed=5).order)
    assert not np.array_equal(a.order, make_plan(3000, {"a": 1000}, seed=6).order)


def test_too_few_rows_says_how_many_are_missing():
    with pytest.raises(UserError, match="1000 rows missing"):
        make_plan(9000, {"10k": 10_000}, seed=0)
