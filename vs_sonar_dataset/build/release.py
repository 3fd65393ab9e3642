"""`vs-sonar build`: pool shards -> release folder (Parquet per config/split, stats, plots, card).

Release layout (the Hub repo is this folder as it is):
    data/{config}/{split}-NNNNN-of-NNNNN.parquet   rows with the pool schema plus the derived columns
                                                   (derived.py: norm, length, density weight, map place)
    data/stats/stats-00000-of-00001.parquet        the `stats` config: one row per data config
    stats/{config}.json                            the same stats as JSON
    plots/*.png                                    figures shown in the card
    map/{config}.html, .json, .png                 the config's 3-D embedding map (embedding_map.py)
    release.json                                   how it was built (pool, seed, sizes, code version)
    README.md                                      the dataset card (rendered again by verify with its results)

One pass writes every config: rows arrive in split order and each config keeps its prefix of each split.
The folder is built beside OUT and renamed into place at the end, so a crash never leaves half a release.
"""

import logging
import shutil
import subprocess
import time
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from .. import __version__
from ..core.background import OrderedBackground
from ..core.errors import UserError
from ..core.outputs import check_output_dir
from ..core.schema import embedding_matrix
from ..core.shards import (ROW_GROUP_ROWS, check_vectors, parquet_options, read_manifest, sha256_file,
                           write_json_atomic, write_parquet_atomic)
from .shuffle import iter_rows_in_order
from .splits import SPLITS, make_plan, split_sizes
from .stats import StatsAccumulator, stats_table

HELP = "build a release folder (configs, splits, stats, plots, card) from a pool"
log = logging.getLogger("vs_sonar.build")

DEFAULT_CONFIGS = {"1k": 1000, "5k": 5000, "10k": 10000}
ROWS_PER_FILE = 100_000  # ~410 MB of 1024-d vectors per file
RELEASE_MANIFEST = "release.json"
MODEL_CHECKS = "model_checks.json"  # written by `vs-sonar model-check` (embed environment), read by verify


def data_files(config: str, split: str, rows: int, rows_per_file: int = ROWS_PER_FILE) -> list[str]:
    n = max(1, -(-rows // rows_per_file))
    return [f"data/{config}/{split}-{i:05d}-of-{n:05d}.parquet" for i in range(n)]


class SplitWriter:
    """Writes one config's split to its numbered files, rolling over every rows_per_file rows."""

    def __init__(self, root: Path, config: str, split: str, rows: int, schema: pa.Schema, rows_per_file: int):
        self.root, self.schema, self.rows_per_file = root, schema, rows_per_file
        self.files = data_files(config, split, rows, rows_per_file)
        self.remaining = rows
        self.written = 0
        self.writer = None

    def write(self, table: pa.Table) -> None:
        while table.num_rows:
            if self.writer is None:
                path = self.root / self.files[self.written // self.rows_per_file]
                path.parent.mkdir(parents=True, exist_ok=True)
                self.writer = pq.ParquetWriter(path, self.schema, **parquet_options(self.schema))
            room = self.rows_per_file - self.written % self.rows_per_file
            part, table = table.slice(0, room), table.slice(room)
            self.writer.write_table(part, row_group_size=ROW_GROUP_ROWS)
            self.written += part.num_rows
            if self.written % self.rows_per_file == 0:
                self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def code_version() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{__version__}+{commit}" if commit else __version__


def build_release(pool_dir, out_dir, configs: dict | None = None, seed: int = 0,
                  rows_per_file: int = ROWS_PER_FILE, plots: bool = True, progress: bool = True,
                  repo_id: str | None = None, fixture_models: bool = False,
                  pool_digests: dict | None = None, settings=None) -> dict:
    """Build OUT from POOL; returns the release manifest. Pass a dict as pool_digests to collect the digest of
    every pool row used (id -> digest), so that verify need not read the pool a second time.
    settings: the [build] table, for its density and map tables (their defaults when None).
    The release is written into OUT.partial and renamed into place at the end."""
    started = time.time()
    pool_dir, out_dir = Path(pool_dir), Path(out_dir)
    pool = read_manifest(pool_dir, "pool")
    if not pool.complete:
        raise UserError(f"{pool_dir}: the pool is unfinished (the embed stage has not completed); resume it first")
    check_output_dir(out_dir, "release")
    if out_dir.resolve().is_relative_to(pool_dir.resolve()):
        raise UserError(f"{out_dir}: inside the pool {pool_dir}; write the release to a folder of its own")
    check_vectors(pool_dir, pool)  # finite vectors of the pool's width, unique ids: before any work
    plan = make_plan(pool.rows, configs or DEFAULT_CONFIGS, seed)
    work = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    try:
        header = {"format_version": 1, "code_version": code_version(), "repo_id": repo_id or "org/vs-sonar",
                  "fixture_models": fixture_models, "seed": seed}
        if settings is None:
            from ..core.config import BuildConfig

            settings = BuildConfig()
        manifest = _write_release(work, pool_dir, pool, plan, header, rows_per_file, plots, progress, pool_digests,
                                  settings)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)  # a failed build leaves nothing beside OUT (a kill: the next one)
        raise
    if out_dir.exists():
        shutil.rmtree(out_dir)
    work.rename(out_dir)
    log.info("release at %s: configs %s in %.1f s", out_dir, ", ".join(plan.configs), time.time() - started)
    return manifest


def _write_release(work: Path, pool_dir: Path, pool, plan, header: dict, rows_per_file: int, plots: bool,
                   progress: bool, pool_digests: dict | None, settings) -> dict:
    """Write every config's files, the stats, plots, release.json and the card into `work`."""
    from .card import render_card  # matplotlib and jinja only when building

    schema = pool.schema
    writers = {(c, s): SplitWriter(work, c, s, split_sizes(size)[s], schema, rows_per_file)
               for c, size in plan.configs.items() for s in SPLITS}
    pool_sizes = plan.pool_sizes()
    train_rows = {c: split_sizes(size)["train"] for c, size in plan.configs.items()}
    acc = StatsAccumulator(pool.embedding_dim, ends=train_rows.values())
    probabilities = [] if "probability" in schema.names else None  # Verbalized-Sampling rows only
    position = {s: 0 for s in SPLITS}  # rows of each split's pool written so far
    current = 0  # index into SPLITS
    collect = None
    if pool_digests is not None:
        from ..core.digests import add_row_digests

        collect = partial(add_row_digests, pool_digests)  # sees each pool batch's needed rows once

    # Parquet encoding and writing run in one background thread, in order, while this one does the stats
    with tqdm(total=len(plan.order), unit="row", desc="build", disable=not progress) as bar, \
            OrderedBackground() as background:
        # the shuffle spills inside the work folder, so a killed build's spill goes with its work folder
        for table in iter_rows_in_order(pool_dir, plan.order, tmp_dir=work, on_rows=collect):
            while table.num_rows:
                split = SPLITS[current]
                take = min(table.num_rows, pool_sizes[split] - position[split])
                piece, table = table.slice(0, take), table.slice(take)
                background.submit(_write_piece, piece, split, position[split], writers, plan)
                if split == "train":
                    acc.add(embedding_matrix(piece), piece.column("id").to_pylist(), position["train"])
                    if probabilities is not None:  # a copy: a view would keep the whole bucket's buffers alive
                        probabilities.append(piece.column("probability").to_numpy().copy())
                position[split] += take
                bar.update(take)
                if position[split] == pool_sizes[split]:
                    current += 1
    for w in writers.values():
        w.close()

    from .derived import derive  # here: it needs torch, which every command that imports this module would load

    data_files = {c: {s: w.files for (c2, s), w in writers.items() if c2 == c} for c in plan.configs}
    derived = derive(work, {"configs": plan.configs, "data_files": data_files, "text_column": pool.text_column},
                     settings, header["seed"], progress=log.info if progress else log.debug)
    stats_list = [{**acc.stats(train_rows[c], c), **derived["robust"][c]} for c in plan.configs]
    (work / "stats").mkdir()
    for s in stats_list:
        write_json_atomic(work / "stats" / f"{s['config']}.json", s)
    (work / "data" / "stats").mkdir(parents=True)
    write_parquet_atomic(stats_table(stats_list), work / "data" / "stats" / "stats-00000-of-00001.parquet")

    manifest = {
        **header,
        "configs": plan.configs,
        "splits": {c: split_sizes(size) for c, size in plan.configs.items()},
        "data_files": data_files,
        "embedding_dim": pool.embedding_dim,
        "pool": {"rows": pool.rows, "synthetic": pool.synthetic, "config": without_local_paths(pool.config),
                 "stats": pool.stats,
                 "manifest_sha256": sha256_file(pool_dir / "manifest.json")},
        "text_column": pool.text_column,
        "provenance": _provenance(work, plan.largest, schema),
        "pool_columns": schema.names,  # the columns that come from the pool; derived.py adds the others
        "density": derived["density"],
        "map": derived["map"],
    }
    if plots:
        from .plots import write_plots

        manifest["plots"] = write_plots(work, stats_list[-1], acc.norms,
                                        None if probabilities is None else np.concatenate(probabilities), plan.largest,
                                        manifest["map"])
    write_json_atomic(work / RELEASE_MANIFEST, manifest)
    render_card(work, manifest, verification=None)
    return manifest


def without_local_paths(value):
    """The run config as published: absolute local paths (model folders, asset dirs) keep only their last part."""
    if isinstance(value, dict):
        return {k: without_local_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_local_paths(v) for v in value]
    if isinstance(value, str) and value.startswith("/"):
        return f"<local>/{Path(value).name}"
    return value


def _write_piece(piece: pa.Table, split: str, start: int, writers: dict, plan) -> None:
    """Give each config the part of this piece that falls inside its prefix of the split."""
    for config, size in plan.configs.items():
        room = split_sizes(size)[split] - start
        if room > 0:
            writers[(config, split)].write(piece.slice(0, room))


PROVENANCE_COLUMNS = ("generator_model", "generator_revision", "sampling_params", "template_hash", "encoder", "source")


def _provenance(work: Path, largest: str, schema: pa.Schema) -> dict:
    """Models, template and sources as recorded in the rows (one pass over the largest config's columns)."""
    cols = [c for c in PROVENANCE_COLUMNS if c in schema.names]
    tables = [pq.read_table(p, columns=cols) for p in sorted((work / "data" / largest).glob("*.parquet"))]
    table = pa.concat_tables(tables)
    return {c: sorted(set(table.column(c).unique().to_pylist())) for c in cols}


def add_arguments(parser):
    parser.add_argument("pool", help="pool directory (written by embed or synth-pool)")
    parser.add_argument("--out", required=True, help="release folder to write (replaced if it is a release)")
    add_build_options(parser)


def add_build_options(parser) -> None:
    """The flags build_settings reads (shared with python -m publish)."""
    parser.add_argument("--config", help="TOML file whose [build] table sets seed, configs and rows_per_file")
    parser.add_argument("--seed", type=int, help="shuffle seed (default 0)")
    parser.add_argument("--sizes", help="configs as NAME=SIZE,... (default 1k=1000,5k=5000,10k=10000)")


def build_settings(args):
    """The [build] table of --config, with --seed and --sizes overriding its fields."""
    from ..core.config import load_table

    overrides = {"seed": getattr(args, "seed", None)}
    if getattr(args, "sizes", None) is not None:  # given, even empty: never the defaults in silence
        try:
            overrides["configs"] = dict(item.split("=", 1) for item in args.sizes.split(","))
        except ValueError:
            raise UserError(f"--sizes {args.sizes!r}: expected NAME=SIZE,... such as 1k=1000,5k=5000") from None
    return load_table(getattr(args, "config", None), "build", overrides)


def main(args) -> int:
    s = build_settings(args)
    manifest = build_release(args.pool, args.out, s.configs, s.seed, s.rows_per_file,
                             fixture_models=s.fixture_models, settings=s)
    sizes = ", ".join(f"{c}: {sum(v.values())}" for c, v in manifest["splits"].items())
    print(f"release written to {args.out} ({sizes}); run `vs-sonar verify {args.out}` next")
    return 0
