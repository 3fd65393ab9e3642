"""Nested configs and their splits, and streaming a pool's rows in split order with bounded memory.

One seeded shuffle of the pool. The largest config's rows are cut 80/10/10 into train / validation / test
pools; a config of size s takes the first n_split(s) rows of each pool, so every smaller config is a prefix of
every larger one, split by split, and no row can sit in two splits. shuffle.py streams the rows in that order.
"""

import re
from dataclasses import dataclass

import numpy as np

from ..core.errors import UserError

SPLITS = ("train", "validation", "test")
HOLDOUT_FRACTION = 0.1  # for validation and for test each
CONFIG_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def split_sizes(size: int) -> dict[str, int]:
    """80/10/10, rounding the held-out splits down so that train absorbs the remainder."""
    held = int(size * HOLDOUT_FRACTION)
    return {"train": size - 2 * held, "validation": held, "test": held}


def parse_size(text: str | int) -> int:
    """'1k' -> 1000, '1m' -> 1000000, '2500' -> 2500."""
    if isinstance(text, int):
        return text
    units = {"k": 1_000, "m": 1_000_000}
    s = str(text).strip().lower()
    try:
        return int(float(s[:-1]) * units[s[-1]]) if s and s[-1] in units else int(s)
    except ValueError:
        raise UserError(f"config size {text!r} is not a number such as 1000, '5k' or '1m'") from None


@dataclass(frozen=True)
class SplitPlan:
    """Which pool rows go where. `order` lists pool row indices: train pool, then validation, then test."""

    pool_rows: int
    seed: int
    configs: dict  # name -> size, ascending by size
    order: np.ndarray

    @property
    def largest(self) -> str:
        return max(self.configs, key=self.configs.get)

    def pool_sizes(self) -> dict[str, int]:
        return split_sizes(self.configs[self.largest])

    def split_offsets(self) -> dict[str, int]:
        """Where each split's pool starts in `order`."""
        offsets, start = {}, 0
        for split, n in self.pool_sizes().items():
            offsets[split] = start
            start += n
        return offsets

    def rows(self, config: str, split: str) -> np.ndarray:
        """Pool row indices of one config's split, in order."""
        start = self.split_offsets()[split]
        return self.order[start : start + split_sizes(self.configs[config])[split]]


def make_plan(pool_rows: int, configs: dict, seed: int) -> SplitPlan:
    if not configs:
        raise UserError("no configs to build: give at least one size, e.g. {'1k': 1000}")
    sizes = {name: parse_size(size) for name, size in configs.items()}
    for name, size in sizes.items():
        if not CONFIG_NAME.fullmatch(name) or name == "stats":  # names become folders; `stats` is taken
            raise UserError(f"config name {name!r}: use letters, digits, '_', '-' or '.' (and not 'stats')")
        if size < 10:
            raise UserError(f"config {name!r} has {size} rows; at least 10 are needed for an 80/10/10 split")
    largest = max(sizes.values())
    if pool_rows < largest:
        raise UserError(f"the pool has {pool_rows} rows but config {max(sizes, key=sizes.get)!r} needs "
                        f"{largest}: {largest - pool_rows} rows missing")
    order = np.random.default_rng(seed).permutation(pool_rows)[:largest]
    return SplitPlan(pool_rows, seed, dict(sorted(sizes.items(), key=lambda kv: kv[1])), order)
