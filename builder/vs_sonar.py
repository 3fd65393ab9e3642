"""The vs-sonar `datasets` builder: nested configs with train / validation / test splits over a pool.

    from builder import VsSonar
    b = VsSonar(config_name="5k", pool_dir="runs/x/pool")
    b.download_and_prepare()
    ds = b.as_dataset()

Configs come from sizes, not code: builder_for_sizes({"1k": 1000, ..., "100k": 100_000}) returns a builder
class with those configs. The split plan is the one the release uses (vs_sonar_dataset.build.splits), so a config
built here equals the release's files row for row, in the pool's columns (the derived ones, such as density
weights and map coordinates, are computed by `vs-sonar build`).
"""

from dataclasses import dataclass, field

import datasets

from vs_sonar_dataset.build.release import DEFAULT_CONFIGS
from vs_sonar_dataset.build.shuffle import iter_rows_in_order
from vs_sonar_dataset.build.splits import SPLITS, make_plan, parse_size
from vs_sonar_dataset.core.shards import read_manifest


@dataclass
class VsSonarConfig(datasets.BuilderConfig):
    size: int = 0
    pool_dir: str | None = None
    seed: int = 0
    all_sizes: dict = field(default_factory=dict)  # the whole nest: the largest config decides the split pools


class VsSonar(datasets.ArrowBasedBuilder):
    BUILDER_CONFIG_CLASS = VsSonarConfig
    BUILDER_CONFIGS = [VsSonarConfig(name=n, size=parse_size(s), all_sizes=DEFAULT_CONFIGS)
                       for n, s in DEFAULT_CONFIGS.items()]
    DEFAULT_CONFIG_NAME = max(DEFAULT_CONFIGS, key=DEFAULT_CONFIGS.get)  # the card's default: the largest

    def _info(self):
        if not self.config.pool_dir:
            raise ValueError("pass pool_dir=... (a pool written by `vs-sonar embed` or `vs-sonar synth-pool`)")
        pool = read_manifest(self.config.pool_dir, "pool")
        return datasets.DatasetInfo(
            description=f"Texts ({pool.text_column}) with their embeddings, from a vs-sonar pool",
            features=datasets.Features.from_arrow_schema(pool.schema),
        )

    def _split_generators(self, dl_manager):
        pool = read_manifest(self.config.pool_dir, "pool")
        plan = make_plan(pool.rows, self.config.all_sizes, self.config.seed)
        return [datasets.SplitGenerator(name=split, gen_kwargs={"rows": plan.rows(self.config.name, split)})
                for split in SPLITS]

    def _generate_tables(self, rows):
        for index, table in enumerate(iter_rows_in_order(self.config.pool_dir, rows)):
            yield index, table


def builder_for_sizes(sizes: dict, default: str | None = None) -> type[VsSonar]:
    """A VsSonar subclass whose configs are `sizes` ({"1k": 1000, "100k": "100k", ...})."""
    parsed = {name: parse_size(size) for name, size in sizes.items()}
    return type("VsSonar", (VsSonar,), {
        "BUILDER_CONFIGS": [VsSonarConfig(name=n, size=s, all_sizes=parsed) for n, s in parsed.items()],
        "DEFAULT_CONFIG_NAME": default or max(parsed, key=parsed.get),
    })
