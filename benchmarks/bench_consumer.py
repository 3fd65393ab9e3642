"""Consumer-side benchmark: reading a split into one matrix, and feeding batches to a training loop.

    .venv/bin/python benchmarks/bench_consumer.py [--rows 1000000] [--dim 1024] [--batch 256]

Writes a one-split release of --rows random rows (id, text, embedding, density_weight; 100k rows per file,
written with the release's Parquet options) into a temporary folder, removed at the end, then prints, all
measured in this run (best of --repeats, the two sides alternating):
(a) load_embeddings(FOLDER, config, "train") against pyarrow.parquet.read_table of the same files and columns
    (target <= 1.2x);
(b) EmbeddingDataset.__getitems__ over shuffled index batches, raw and normalized, against gathering the same
    batches from the raw tensor, X[idx] (target >= 90% of its throughput), and torch.index_select(X, 0, idx),
    the faster gather that __getitems__ itself uses; the four take turns batch by batch. Measured with torch's
    default threads and with one (DataLoader workers run with one; on a busy machine it is often faster).
"""

import argparse
import gc
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vs_sonar_dataset.build.release import ROWS_PER_FILE, data_files  # noqa: E402
from vs_sonar_dataset.build.stats import StatsAccumulator  # noqa: E402
from vs_sonar_dataset.core.schema import embedding_type  # noqa: E402
from vs_sonar_dataset.core.shards import ROW_GROUP_ROWS, parquet_options  # noqa: E402

CONFIG, SPLIT = "bench", "train"


def write_release(folder: Path, rows: int, dim: int, seed: int = 0) -> list[str]:
    """A release folder with one config and one split, as build writes it (files, release.json, stats)."""
    schema = pa.schema([pa.field("id", pa.string(), nullable=False), pa.field("text", pa.string(), nullable=False),
                        pa.field("embedding", embedding_type(dim), nullable=False),
                        pa.field("density_weight", pa.float64(), nullable=False)])
    files = data_files(CONFIG, SPLIT, rows, ROWS_PER_FILE)
    rng = np.random.default_rng(seed)
    weights = rng.random(rows)
    weights /= weights.sum()
    stats = StatsAccumulator(dim, [rows])
    for i, name in enumerate(files):
        start, count = i * ROWS_PER_FILE, min(ROWS_PER_FILE, rows - i * ROWS_PER_FILE)
        vectors = rng.standard_normal((count, dim), dtype=np.float32) * np.float32(0.02)
        ids = [f"{start + j:032x}" for j in range(count)]
        table = pa.table({"id": ids, "text": [f"row {start + j} of the benchmark split" for j in range(count)],
                          "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)),
                                                                         type=embedding_type(dim)),
                          "density_weight": weights[start : start + count]}, schema=schema)
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / name, row_group_size=ROW_GROUP_ROWS, **parquet_options(schema))
        stats.add(vectors, ids, start)
    (folder / "stats").mkdir()
    (folder / "stats" / f"{CONFIG}.json").write_text(json.dumps(stats.stats(rows, CONFIG)))
    manifest = {"format_version": 1, "configs": {CONFIG: rows}, "splits": {CONFIG: {SPLIT: rows}},
                "data_files": {CONFIG: {SPLIT: files}}, "embedding_dim": dim, "text_column": "text"}
    (folder / "release.json").write_text(json.dumps(manifest))
    return [str(folder / name) for name in files]


def load() -> str:
    """The load average: the machine may be shared, and the figures are only as steady as it is."""
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def best_alternating(fns: dict, repeats: int) -> dict:
    """Best wall time of each function, calling them in turn `repeats` times (shared-machine noise hits both)."""
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            gc.collect()
            t = time.perf_counter()
            out = fn()
            times[name].append(time.perf_counter() - t)
            del out
    return {name: min(ts) for name, ts in times.items()}


def bench_read(folder: Path, paths: list[str], rows: int, dim: int, repeats: int) -> None:
    from vs_sonar_dataset.consume.loading import load_embeddings

    t = best_alternating({"read_table": lambda: pq.read_table(paths, columns=["id", "embedding"]),
                          "load_embeddings": lambda: load_embeddings(folder, CONFIG, SPLIT)}, repeats)
    gb = rows * dim * 4 / 1e9
    print(f"(a) {rows:,} x {dim} ({gb:.1f} GB of vectors, {len(paths)} files): pq.read_table {t['read_table']:.2f} s, "
          f"load_embeddings {t['load_embeddings']:.2f} s -> {t['load_embeddings'] / t['read_table']:.2f}x "
          "(target <= 1.2x)", flush=True)


def bench_batches(folder: Path, batch: int, batches: int, repeats: int) -> None:
    import torch

    from vs_sonar_dataset.consume.torch_data import EmbeddingDataset

    datasets = {"raw": EmbeddingDataset(folder, CONFIG, SPLIT),
                "standard": EmbeddingDataset(folder, CONFIG, SPLIT, normalize="standard")}
    X = datasets["raw"].vectors
    datasets["standard"].vectors = X  # every side reads the same memory (and 4 GB fewer are held)
    order = torch.randperm(len(X), generator=torch.Generator().manual_seed(0))
    index = [order[i : i + batch] for i in range(0, min(len(X), batch * batches) - batch + 1, batch)]

    fns = {"X[idx]": X.__getitem__, "index_select": lambda idx: torch.index_select(X, 0, idx),
           **{name: ds.__getitems__ for name, ds in datasets.items()}}
    threads = torch.get_num_threads()
    # torch's default threads (a loop in the main process), then one (what DataLoader workers run with)
    for n in dict.fromkeys([threads, 1]):
        torch.set_num_threads(n)
        seconds = interleaved(fns, index, repeats)
        rate = {name: len(index) * batch / s for name, s in seconds.items()}
        print(f"(b) {len(index)} shuffled batches of {batch}, {n} torch thread{'s' * (n > 1)}: X[idx] "
              f"{rate['X[idx]']:,.0f} rows/s, torch.index_select(X, 0, idx) {rate['index_select']:,.0f} rows/s",
              flush=True)
        for name in datasets:
            print(f"    EmbeddingDataset ({name}; with text, id, weight): {rate[name]:,.0f} rows/s -> "
                  f"{rate[name] / rate['X[idx]']:.0%} of X[idx] (target >= 90%), "
                  f"{rate[name] / rate['index_select']:.0%} of index_select", flush=True)
    torch.set_num_threads(threads)


def interleaved(fns: dict, index: list, repeats: int) -> dict:
    """Seconds each function takes over all batches, best of `repeats` passes. Within a pass the functions
    take turns batch by batch, so a burst of load from elsewhere hits all of them; each walks the same batches
    in the same order from its own starting point, so none reads rows another has just brought into cache."""
    best = {name: float("inf") for name in fns}
    starts = {name: k * len(index) // len(fns) for k, name in enumerate(fns)}
    for _ in range(repeats):
        spent = dict.fromkeys(fns, 0.0)
        for i in range(len(index)):
            for name, fn in fns.items():
                idx = index[(starts[name] + i) % len(index)]
                t = time.perf_counter()
                fn(idx)
                spent[name] += time.perf_counter() - t
        best = {name: min(best[name], spent[name]) for name in fns}
    return best


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000, help="rows of the split")
    p.add_argument("--dim", type=int, default=1024, help="embedding dimension")
    p.add_argument("--batch", type=int, default=256, help="rows per batch in (b)")
    p.add_argument("--batches", type=int, default=2000, help="batches per pass in (b)")
    p.add_argument("--repeats", type=int, default=5, help="passes of each side; the best counts")
    p.add_argument("--workdir", help="where to write the release (default: a temporary folder); removed at the end")
    args = p.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="vs-sonar-consumer-", dir=args.workdir))
    try:
        t = time.perf_counter()
        paths = write_release(folder, args.rows, args.dim)
        size = sum(Path(p).stat().st_size for p in paths) / 1e9
        print(f"wrote {args.rows:,} rows ({size:.1f} GB) in {time.perf_counter() - t:.0f} s; load average {load()}",
              flush=True)
        bench_read(folder, paths, args.rows, args.dim, args.repeats)
        bench_batches(folder, args.batch, args.batches, args.repeats)
        print(f"load average {load()}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
