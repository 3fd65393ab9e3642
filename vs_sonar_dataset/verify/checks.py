"""`vs-sonar verify`: prove that a release folder is what the card says, by loading it as users will.

Every config is loaded with datasets.load_dataset(RELEASE, config) (streamed above STREAM_ABOVE_ROWS rows) and
checked: split sizes, features exactly fixed_size_list<float32>[dim], no NaN/inf, ids unique and in one split
only, nesting (each smaller config is a prefix of each larger one, split by split), every row bitwise equal to the
pool row with its id (over the pool's columns), stats recomputed equal. The derived columns (derived.check)
are recomputed from the published vectors: norms, lengths, robust stats, densities and their weights, and the
map places against the map's JSON. Then the card's YAML is parsed by huggingface_hub and datasets.
Model checks (alignment, and the round trip for encoders with a decoder) come from model_checks.json, written
by `vs-sonar model-check` in the embed environment.

Verify only reads the release and writes its report (verify_report.json), which lists every check and the
xxh3-128 checksum of every file but the card; `vs-sonar card` then writes the card with the results, and
publish pushes only a release whose files still match the report and whose card is exactly that card. Verify
removes the old report before anything else, so a verify that stops early leaves none. A damaged file (a data file missing, truncated or not Parquet, a stats
file missing or not JSON) is a failed check that names it, never a traceback. The report holds no times: two
verifies of the same release write the same bytes.
"""

import json
import logging
import operator
import os
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyarrow.dataset import ParquetFragmentScanOptions

from ..build.card import CARD
from ..build.release import MODEL_CHECKS, RELEASE_MANIFEST, code_version
from ..build.splits import SPLITS
from ..build.stats import ROBUST_KEYS, StatsAccumulator
from ..core.background import prefetched
from ..core.digests import add_row_digests, row_digests
from ..core.errors import CHECKS_FAILED_EXIT, UserError
from ..core.outputs import require_writable
from ..core.schema import embedding_matrix
from ..core.shards import iter_shard_batches, read_manifest, sha256_file, write_json_atomic, xxh3_file

HELP = "verify a release folder: load every config with datasets, compare with the pool, check stats and card"
log = logging.getLogger("vs_sonar.verify")

REPORT = "verify_report.json"
FILES_CHECKSUM = "xxh3_128"  # of each file in the report: fast, and publish asks the Hub for sha256 itself
BATCH_ROWS = 8192
STATS_DATA_FILE = "data/stats/stats-00000-of-00001.parquet"  # the `stats` config, as build_release writes it
STATS_KEYS = {"count", "ids_sha256", "mean", "std", "norm", "method"}  # what the checks and the card read


class Report:
    def __init__(self):
        self.checks: list[dict] = []

    def add(self, name: str, passed: bool, detail: str = "") -> bool:
        self.checks.append({"name": name, "passed": bool(passed), "detail": detail})
        (log.debug if passed else log.warning)("%s %s %s", "PASS" if passed else "FAIL", name, detail)
        return passed

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c["passed"] for c in self.checks)


def read_pool_digests(pool_dir) -> dict[str, bytes]:
    digests = {}
    for batch in iter_shard_batches(pool_dir, "pool", BATCH_ROWS):
        add_row_digests(digests, batch)
    return digests


# Configs above this many rows are loaded with streaming=True: the same files through the same builder, without
# the Arrow cache copy that a non-streaming load writes (for 1M rows, 4 GB written to disk a second time). The
# default 1k/5k/10k configs, like the small configs of a big release, load prepared, as most users load them, so
# both paths are checked.
STREAM_ABOVE_ROWS = 50_000


def iter_cached_batches(dataset):
    """The rows load_dataset produced, read from its Arrow cache files with plain reads (no memory map)."""
    for cache in dataset.cache_files:
        with pa.ipc.open_stream(pa.OSFile(cache["filename"])) as reader:
            for batch in reader:
                yield batch


def iter_streamed_batches(dataset):
    """The rows of a streaming load_dataset split, as Arrow record batches (no Python rows)."""
    for table in dataset.with_format("arrow").iter(batch_size=BATCH_ROWS):
        yield from table.to_batches()


LANES = 2  # splits of several files are read in this many parallel lanes (datasets' contiguous shards)


class Lane(NamedTuple):
    batches: Iterator[pa.RecordBatch]
    split: str
    start: int  # position of the lane's first row in its split


class LaneResult(NamedTuple):
    rows: int
    types: set
    nonfinite: int
    bad_rows: int
    ids: list[pa.Array]


def _lanes(split_data, split: str, streaming: bool, release: Path, files: list[str]) -> list[Lane]:
    """The split as LANES contiguous shards of its files when streamed from several files, else as one lane.
    A shard's start is counted from the Parquet footers of the files before it; _check_lane's row counts
    confirm it."""
    if not streaming or split_data.num_shards < LANES or len(files) != split_data.num_shards:
        batches = iter_streamed_batches(split_data) if streaming else iter_cached_batches(split_data)
        return [Lane(batches, split, 0)]
    lanes, start, first_file = [], 0, 0
    for index in range(LANES):  # datasets gives the first shards one file more when they do not divide evenly
        n_files = len(files) // LANES + (index < len(files) % LANES)
        lanes.append(Lane(iter_streamed_batches(split_data.shard(LANES, index, contiguous=True)), split, start))
        start += sum(pq.read_metadata(release / f).num_rows for f in files[first_file : first_file + n_files])
        first_file += n_files
    return lanes


def _check_lane(batches, split: str, start: int, acc: StatsAccumulator, digests: dict | None, bar,
                pool_columns: list[str] | None) -> LaneResult:
    """Checks each row of one lane; train rows go to the stats at their position in the split. Rows are
    compared with the pool over the pool's columns (the derived ones are checked by derived.check)."""
    rows, types, nonfinite, bad_rows, ids = 0, set(), 0, 0, []
    for batch in prefetched(batches):
        types.add(batch.schema.field("embedding").type)
        vectors = embedding_matrix(batch)
        batch_ids = batch.column("id").to_pylist()
        nonfinite += int((~np.isfinite(vectors)).any(axis=1).sum())
        # a copy: the column is a slice of the batch's body, embeddings included
        ids.append(pc.take(batch.column("id"), np.arange(batch.num_rows)))
        if split == "train" and start + rows + batch.num_rows <= acc.rows:  # more rows fail the size check
            acc.add(vectors, batch_ids, start + rows)
        if digests is not None:
            expected, actual = list(map(digests.get, batch_ids)), row_digests(batch.select(pool_columns) if pool_columns else batch)
            if expected != actual:
                bad_rows += sum(map(operator.ne, expected, actual))
        rows += batch.num_rows
        bar.update(batch.num_rows)
    return LaneResult(rows, types, nonfinite, bad_rows, ids)


def verify_release(release, pool=None, model_checks: str = "existing", progress: bool = True,
                   pool_digests: dict | None = None) -> dict:
    """Run every check; write verify_report.json (verify writes nothing else); return the report.
    pool_digests: digests of the pool rows collected while building (see build_release), else read from pool."""
    release = Path(release)
    manifest = _read_release_manifest(release)
    if pool is not None:
        read_manifest(pool, "pool")  # a bad --pool is a user error before any work starts
    # the inputs are there: the previous report goes now, so that a verify that stops from here on (a damaged
    # file, Ctrl-C) leaves none for publish to push on; an input error above leaves it as it was (publish still
    # compares it with the release's files)
    with suppress(FileNotFoundError, NotADirectoryError):
        (release / REPORT).unlink()
        log.debug("removed the previous %s", REPORT)

    import datasets
    from tqdm import tqdm

    report = Report()
    dim = manifest["embedding_dim"]
    pool_columns = manifest.get("pool_columns")  # None: a release made before derived columns
    damaged = _check_data_files(release, manifest, report)
    stored_stats = _read_stats(release, manifest, report)
    # The data files are hashed in a background thread while they are checked (xxhash releases the GIL);
    # the other files are hashed at the end.
    data_files = [p for p in release_paths(release) if p.is_relative_to(release / "data")]
    hashing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checksum")
    data_hashes = hashing.submit(release_files, release, data_files, 1)
    hashing.shutdown(wait=False)

    digests = None
    if pool is not None:
        pool_manifest_sha = sha256_file(Path(pool) / "manifest.json")
        if report.add("pool_is_source", pool_manifest_sha == manifest["pool"]["manifest_sha256"],
                      f"pool manifest sha256 {pool_manifest_sha[:16]}…"):
            if pool_digests is None:
                log.info("hashing pool rows")
            digests = pool_digests if pool_digests is not None else read_pool_digests(pool)
    else:
        report.add("rows_match_pool", False, "no --pool given: rows not compared with the pool")

    if not progress:
        datasets.disable_progress_bars()
    ids: dict[tuple[str, str], pa.ChunkedArray] = {}
    with tempfile.TemporaryDirectory(prefix="vs-sonar-verify-") as cache_dir, _without_torch(datasets):
        for config, expected_splits in manifest["splits"].items():
            bad = [f for files in manifest["data_files"][config].values() for f in files if f in damaged]
            if bad:  # load_dataset would skip a missing file, and a streamed one would fail half way
                report.add(f"{config}: load_dataset", False, f"not loaded: damaged {', '.join(bad)}")
                continue
            streaming = sum(expected_splits.values()) > STREAM_ABOVE_ROWS
            how = "streaming" if streaming else "prepared"
            # streamed row group by row group: pre-buffering would hold a whole file (400 MB) in each lane
            options = {"fragment_scan_options": ParquetFragmentScanOptions(pre_buffer=False)} if streaming else {}
            try:
                ds = datasets.load_dataset(str(release), config, cache_dir=cache_dir, streaming=streaming, **options)
            except Exception as e:  # any failure to load is the finding itself
                report.add(f"{config}: load_dataset", False, f"{type(e).__name__}: {e}")
                continue
            # sorted: datasets lists the splits in the order of the card it read, which the last verify wrote
            report.add(f"{config}: load_dataset", True, f"{how}; splits {', '.join(sorted(ds))}")
            feature = (ds["train"].features or {}).get("embedding") if "train" in ds else None
            train_rows = expected_splits.get("train", 0)
            acc = StatsAccumulator(dim, [train_rows])
            lanes = [lane for split in SPLITS if split in ds
                     for lane in _lanes(ds[split], split, streaming, release, manifest["data_files"][config][split])]
            try:
                with tqdm(total=sum(expected_splits.values()), desc=f"verify {config}", unit="row",
                          disable=not progress, leave=False) as bar, \
                        ThreadPoolExecutor(max_workers=LANES, thread_name_prefix="lane") as workers:
                    results = list(workers.map(lambda lane: _check_lane(*lane, acc, digests, bar, pool_columns),
                                               lanes))
            except (OSError, pa.ArrowException) as e:  # pages a readable footer does not vouch for (streamed)
                report.add(f"{config}: rows readable", False, f"{type(e).__name__}: {e}")
                continue
            sizes = {split: sum(r.rows for lane, r in zip(lanes, results) if lane.split == split)
                     for split in SPLITS if split in ds}
            types = set().union(*(r.types for r in results))
            nonfinite, bad_rows = sum(r.nonfinite for r in results), sum(r.bad_rows for r in results)
            # each lane must end where the next one of its split starts, or the positions given to the stats were wrong
            contiguous = all(a.start + r.rows == b.start for (a, r), b in zip(zip(lanes, results), lanes[1:])
                             if a.split == b.split)
            for split in sizes:
                ids[(config, split)] = pa.chunked_array(
                    [chunk for lane, r in zip(lanes, results) if lane.split == split for chunk in r.ids], pa.string())
            report.add(f"{config}: split sizes", sizes == expected_splits, json.dumps(sizes))
            report.add(f"{config}: embedding feature", types == {pa.list_(pa.float32(), dim)}
                       and isinstance(feature, datasets.List) and feature.length == dim,
                       ", ".join(sorted(map(str, types))))
            report.add(f"{config}: finite vectors", nonfinite == 0, f"{nonfinite} rows with NaN or inf")
            if digests is not None:
                report.add(f"{config}: rows match pool", bad_rows == 0,
                           f"{bad_rows} rows differ from the pool row with their id")
            all_ids = pa.chunked_array([ids[(config, s)] for s in SPLITS if (config, s) in ids], pa.string())
            unique = pc.count_distinct(all_ids).as_py()
            report.add(f"{config}: ids unique across splits", unique == len(all_ids),
                       f"{len(all_ids) - unique} repeated ids")
            stored = stored_stats.get(config)
            recomputed = acc.stats(train_rows, config) if sizes.get("train") == train_rows and contiguous else None
            standard = stored and {k: v for k, v in stored.items() if k not in (*ROBUST_KEYS, "robust_method")}
            report.add(f"{config}: stats recomputed equal", stored is not None and recomputed == standard,
                       f"train rows {stored['count']}, ids sha256 {stored['ids_sha256'][:16]}…" if stored
                       else f"not checked: stats/{config}.json unreadable")
            del ds
        _check_nesting(manifest, ids, report)
        broken = {c for c, splits in manifest["data_files"].items() for f in sum(splits.values(), []) if f in damaged}
        from ..build import derived  # here: it needs torch, which every command that imports this module would load

        for name, passed, detail in derived.check(release, manifest, skip=broken):
            report.add(name, passed, detail)
        _check_stats_config(release, manifest, stored_stats, cache_dir, report)

    model_report = _model_checks(release, model_checks, report)
    try:
        files = data_hashes.result()
    except OSError as e:  # a data file removed or made unreadable while verifying
        files = {}
        report.add("data files hashed", False, f"{os.path.relpath(e.filename or '?', release)}: {e.strerror}")
    _check_card(release, manifest, report)  # the card as build wrote it; `vs-sonar card` adds these results
    verification = {"passed": report.passed, "code_version": code_version(), "checks": report.checks,
                    "model_checks": model_report}
    verification["passed"] = report.passed
    hashed = set(data_files)
    files.update(release_files(release, [p for p in release_paths(release) if p not in hashed]))
    verification["files_checksum"] = FILES_CHECKSUM
    verification["files"] = dict(sorted(files.items()))
    write_json_atomic(release / REPORT, verification)
    return verification


def _read_release_manifest(release: Path) -> dict:
    path = release / RELEASE_MANIFEST
    if not path.is_file():
        raise UserError(f"{release}: not a release folder (no {RELEASE_MANIFEST}); build one with `vs-sonar build`")
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise UserError(f"{path}: not valid JSON ({e}); build the release again with `vs-sonar build`") from None


def _check_data_files(release: Path, manifest: dict, report: Report) -> dict[str, str]:
    """Each data file the manifest lists, and the stats config's: present, with a Parquet footer that reads.
    Returns {file: what is wrong} for the others."""
    files = [f for splits in manifest["data_files"].values() for names in splits.values() for f in names]
    damaged = {}
    for f in [*files, STATS_DATA_FILE]:
        try:
            pq.read_metadata(release / f)
        except FileNotFoundError:
            damaged[f] = "missing"
        except (OSError, pa.ArrowException) as e:  # pyarrow says what is wrong with a file that is not Parquet
            errno = getattr(e, "errno", None)
            damaged[f] = f"unreadable ({os.strerror(errno)})" if errno else f"not Parquet ({e})"
    report.add("data files readable", not damaged,
               "; ".join(f"{f}: {what}" for f, what in damaged.items()) or f"{len(files) + 1} Parquet footers read")
    return damaged


def _read_stats(release: Path, manifest: dict, report: Report) -> dict[str, dict]:
    """stats/{config}.json of each config that reads as a stats file; the others fail "stats files readable"."""
    stats, bad = {}, []
    for config in manifest["configs"]:
        name = f"stats/{config}.json"
        try:
            value = json.loads((release / name).read_text())
            if not isinstance(value, dict) or not STATS_KEYS <= value.keys():
                raise ValueError(f"needs the keys {', '.join(sorted(STATS_KEYS))}")
            stats[config] = value
        except FileNotFoundError:
            bad.append(f"{name}: missing")
        except OSError as e:
            bad.append(f"{name}: unreadable ({e.strerror})")
        except ValueError as e:  # not JSON, not UTF-8, or not the object build writes
            bad.append(f"{name}: not a stats file ({e})")
    report.add("stats files readable", not bad, "; ".join(bad) or ", ".join(f"stats/{c}.json" for c in stats))
    return stats


@contextmanager
def _without_torch(datasets):
    """Verify hands no rows to torch, but a streaming IterableDataset imports it (a second on the critical path)
    just to share its epoch counter with DataLoader workers: tell datasets torch is absent while verifying."""
    saved = datasets.config.TORCH_AVAILABLE
    datasets.config.TORCH_AVAILABLE = False
    try:
        yield
    finally:
        datasets.config.TORCH_AVAILABLE = saved


def release_paths(release: Path) -> list[Path]:
    """Every file of a release but the report and the card: what verify vouches for. The card is rendered from
    these files and the report (`vs-sonar card`), and publish checks that it is exactly that."""
    return [p for p in sorted(Path(release).rglob("*"))
            if p.is_file() and p.relative_to(release).as_posix() not in (REPORT, CARD) and not p.name.startswith(".")]


def release_files(release: Path, paths: list[Path] | None = None, workers: int = 2) -> dict[str, str]:
    """xxh3-128 of each of `paths` (default: release_paths), `workers` files at a time."""
    paths = release_paths(release) if paths is None else paths
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return {str(p.relative_to(release)): digest for p, digest in zip(paths, pool.map(xxh3_file, paths))}


def changed_since_verify(release: Path, report: dict) -> list[str]:
    """Files added, removed or changed since the report was written (all of them for a report whose
    checksums are of another kind)."""
    local = release_files(release)
    expected = report.get("files", {}) if report.get("files_checksum") == FILES_CHECKSUM else {}
    return sorted(p for p in set(local) | set(expected) if local.get(p) != expected.get(p))


def report_is_current(release: Path) -> bool:
    """verify passed and no file changed since."""
    path = Path(release) / REPORT
    if not path.is_file():
        return False
    report = json.loads(path.read_text())
    return bool(report.get("passed")) and not changed_since_verify(Path(release), report)


def _check_nesting(manifest: dict, ids: dict, report: Report) -> None:
    configs = sorted(manifest["configs"], key=manifest["configs"].get)
    for small, large in zip(configs, configs[1:]):
        for split in SPLITS:
            a, b = ids.get((small, split)), ids.get((large, split))
            name = f"nesting: {small} ⊂ {large} ({split})"
            if a is None or b is None:
                report.add(name, False, f"not checked: {small if a is None else large} {split} not read")
                continue
            report.add(name, len(a) <= len(b) and b.slice(0, len(a)).equals(a),
                       f"{small} {split} is the first {len(a)} rows of {large} {split}")


def _check_stats_config(release: Path, manifest: dict, stored_stats: dict, cache_dir: str, report: Report) -> None:
    import datasets

    try:
        table = datasets.load_dataset(str(release), "stats", cache_dir=cache_dir)["stats"].data.table
    except Exception as e:
        report.add("stats config", False, f"{type(e).__name__}: {e}")
        return
    rows = {r["config"]: r for r in table.to_pylist()}
    ok = set(rows) == set(manifest["configs"])
    for config in manifest["configs"]:
        stored, row = stored_stats.get(config), rows.get(config, {})
        ok = ok and stored is not None and row.get("count") == stored["count"] \
            and row.get("ids_sha256") == stored["ids_sha256"] \
            and np.array_equal(np.float32(row.get("mean", [])), np.float32(stored["mean"])) \
            and np.array_equal(np.float32(row.get("std", [])), np.float32(stored["std"]))
    unread = [f"stats/{c}.json" for c in manifest["configs"] if c not in stored_stats]
    report.add("stats config matches stats/*.json", ok, f"configs {', '.join(sorted(rows))}"
               + (f"; {', '.join(unread)} unreadable" if unread else ""))


def _model_checks(release: Path, mode: str, report: Report) -> dict | None:
    """Hook for the model-based checks, which run in the embed environment and leave model_checks.json."""
    path = release / MODEL_CHECKS
    if mode == "run":
        from ..core.envs import REPO_ROOT, python_for

        command = [python_for("embed"), "-m", "vs_sonar_dataset.cli", "model-check", str(release)]
        result = subprocess.run(command, cwd=REPO_ROOT)
        if result.returncode not in (0, 1) or not path.is_file():
            report.add("model checks", False, f"model-check exited {result.returncode} without a result")
            return None
    if mode == "skip" or not path.is_file():
        return None
    try:
        results = json.loads(path.read_text())
        alignment, rt = results["alignment"], results["round_trip"]
        # files written before `checks_run` existed ran both checks
        round_trip_ran = "round_trip" in results.get("checks_run", ["alignment", "round_trip"])
        if round_trip_ran == (rt is None):
            raise ValueError("checks_run and round_trip disagree")
        detail = f"min cosine {alignment['min_cosine']:.4f} ≥ {alignment['threshold']}"
        if not round_trip_ran:
            detail += f"; round trip not run: encoder {results['encoder']} has no decoder"
        checks = [("model checks: alignment", alignment["passed"], detail)]
        if round_trip_ran:
            checks.append(("model checks: round trip", rt["passed"],
                           f"pass rate {rt['pass_rate']:.3f} (min {rt['min_pass_rate']}), mean cosine "
                           f"{rt['mean']:.4f}, unrelated baseline {rt['unrelated_baseline_mean']:.4f}"))
    except (ValueError, KeyError, TypeError) as e:  # not JSON, or not what model-check writes
        report.add("model checks", False, f"{MODEL_CHECKS} unreadable: {type(e).__name__}: {e}")
        return None
    for check in checks:
        report.add(*check)
    return results


def _check_card(release: Path, manifest: dict, report: Report) -> None:
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard

    from ..build.card import release_license, source_of

    try:
        card = DatasetCard.load(release / "README.md")
        configs = MetadataConfigs.from_dataset_card_data(card.data)
        infos = DatasetInfosDict.from_dataset_card_data(card.data)
        default = configs.get_default_config_name()
        ok = set(configs) == set(manifest["configs"]) | {"stats"} and set(infos) == set(manifest["configs"]) \
            and default in manifest["configs"] and card.data.license == release_license(source_of(manifest))
        detail = f"configs {', '.join(sorted(configs))}; default {default}; license {card.data.license}"
    except Exception as e:
        ok, detail = False, f"{type(e).__name__}: {e}"
    report.add("card YAML valid", ok, detail)


def summary(report: dict, seconds: float | None = None) -> str:
    """The checks, one a line, and the verdict; `seconds` (the caller's timing, never in the report) when given."""
    lines = [f"{'PASS' if c['passed'] else 'FAIL'}  {c['name']}: {c['detail']}" for c in report["checks"]]
    failed = sum(not c["passed"] for c in report["checks"])
    took = f" in {seconds:.1f} s" if seconds is not None else ""
    lines.append(f"verify: {'passed' if report['passed'] else 'FAILED'} — {len(report['checks']) - failed} "
                 f"passed, {failed} failed{took}")
    return "\n".join(lines)


def add_arguments(parser):
    parser.add_argument("release", help="release folder written by `vs-sonar build`")
    parser.add_argument("--pool", help="the pool the release was built from (rows are compared bitwise)")
    parser.add_argument("--model-checks", choices=["existing", "run", "skip"], default="existing",
                        help="SONAR checks: use model_checks.json if present, run `vs-sonar model-check` "
                        "in the embed environment first, or leave them out")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of a summary")


def main(args) -> int:
    started = time.monotonic()
    if Path(args.release).is_dir():
        require_writable(args.release, "verify writes its report there")
    report = verify_release(args.release, args.pool, args.model_checks)
    print(json.dumps(report, indent=2) if args.json else summary(report, time.monotonic() - started))
    return 0 if report["passed"] else CHECKS_FAILED_EXIT
