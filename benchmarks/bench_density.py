"""k-NN density weights (vs_sonar_dataset/build/density.py) on clustered 1024-d vectors, against baselines measured in
the same run.

    .venv/bin/python benchmarks/bench_density.py [--rows 100000] [--huge 1000000] [--centres 4000] [--skip-huge]

(a) exact density of --rows rows against the bare cost of float32 similarity products: the same upper-triangle
    blocked matrix products with no selection at all (what the exact method cost before its bfloat16 pass; with
    that pass, on CPUs with native bfloat16, the ratio falls below 1).
(b) the ivf index on --huge rows (the method `auto` picks above 200k rows), its wall time and peak RSS in a
    child process of its own, and its recall of the true 20 nearest neighbours on a seeded sample of 1,000
    rows (a neighbour found is a true one when its similarity reaches the row's exact 20th).
Rows are drawn around --centres centres (4,000) with a power-law spectrum, so that, as in a text embedding
space, rows have close neighbours and random pairs are far apart (more centres: fewer rows per centre, and
clusters the index's lists follow less well); targets: (a) <= 60 s for 100k rows, (b) <= 10 min and
recall >= 0.95 for 1M rows, on 2 CPU cores.
"""

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch

from vs_sonar_dataset.build.density import ivf_top_k, knn_density, mean_of_top, unit_rows
from vs_sonar_dataset.core.config import DensityConfig

K = 20


def clustered(n: int, dim: int = 1024, centres: int = 4000, seed: int = 0, block: int = 65536) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scales = (np.arange(1, dim + 1, dtype=np.float32) ** -0.5).astype(np.float32)
    mean = rng.standard_normal((centres, dim), dtype=np.float32) * scales
    x = np.empty((n, dim), np.float32)
    for a in range(0, n, block):  # in blocks: never a second n x dim temporary
        rows = min(block, n - a)
        x[a : a + rows] = mean[rng.integers(0, centres, rows)] + 0.6 * rng.standard_normal((rows, dim),
                                                                                           dtype=np.float32) * scales
    return x


def bare_products(x: torch.Tensor, block: int) -> None:
    for a in range(0, len(x), block):
        for b in range(a, len(x), block):
            x[a : a + block] @ x[b : b + block].T


def exact_part(rows: int) -> None:
    x = clustered(rows)
    u = unit_rows(x)
    started = time.perf_counter()
    bare_products(u, 4096)
    bare = time.perf_counter() - started
    started = time.perf_counter()
    density, record = knn_density(x, DensityConfig(method="exact"))
    took = time.perf_counter() - started
    print(f"(a) exact density, {rows:,} x {x.shape[1]} [products: {record['products']}]: {took:.1f} s "
          f"({rows / took:,.0f} rows/s); bare float32 products {bare:.1f} s; ratio {took / bare:.2f}x; "
          f"target <= 60 s for 100k: {'met' if rows < 100_000 or took <= 60 else 'MISSED'}")


def huge_child(rows: int, centres: int) -> None:
    """Run in a child: the ivf density of `rows` rows, as knn_density computes it, then the recall of the
    neighbours it found on a sample; prints one JSON line."""
    x = clustered(rows, centres=centres)
    config = DensityConfig(method="ivf", ivf_training_rows=min(100_000, rows // 2))  # smaller: a quick trial
    lists = max(16, int(4 * np.sqrt(rows)))  # knn_density's default
    started = time.perf_counter()
    u = unit_rows(x)
    del x
    top = ivf_top_k(u, K, lists, config.ivf_probes, config.ivf_training_rows, 0)  # knn_density's steps, kept
    density = mean_of_top(top)  # for the recall check (knn_density returns the densities only)
    took = time.perf_counter() - started
    sample = np.sort(np.random.default_rng(1).choice(rows, 1000, replace=False))
    approx = top[torch.from_numpy(sample)]
    exact = torch.full((len(sample), K), -torch.inf)
    q = u[torch.from_numpy(sample)]
    for b in range(0, rows, 65536):  # the sample's exact top K against every row, self excluded
        s = q @ u[b : b + 65536].T
        own = (sample >= b) & (sample < b + 65536)
        s[torch.from_numpy(np.flatnonzero(own)), torch.from_numpy(sample[own] - b)] = -torch.inf
        exact = torch.cat([exact, s], dim=1).topk(K, dim=1).values
    kth = exact[:, -1:]
    recall = float((approx >= kth - 1e-6).sum(dim=1).clamp(max=K).float().mean() / K)
    gap = np.abs(exact.double().mean(dim=1).numpy() - density[sample])
    record = {"ivf_lists": lists, "ivf_probes": config.ivf_probes}
    print(json.dumps({"seconds": took, "recall": recall, "record": record, "density_gap_mean": float(gap.mean()),
                      "density_gap_max": float(gap.max()),
                      "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--huge", type=int, default=1_000_000)
    parser.add_argument("--centres", type=int, default=4000, help="clusters of the ivf part's rows")
    parser.add_argument("--skip-huge", action="store_true")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return huge_child(args.child, args.centres)
    print(f"torch threads: {torch.get_num_threads()}")
    exact_part(args.rows)
    if args.skip_huge:
        return
    started = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--child", str(args.huge), "--centres", str(args.centres)],
                         capture_output=True, text=True)
    if out.returncode:
        sys.exit(out.stderr)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"(b) ivf density, {args.huge:,} x 1024 around {args.centres:,} centres: {result['seconds']:.0f} s ({args.huge / result['seconds']:,.0f} "
          f"rows/s; {result['record']['ivf_lists']} lists, {result['record']['ivf_probes']} probed), peak RSS "
          f"{result['peak_rss_gib']:.1f} GiB, recall of the true {K}-NN {result['recall']:.3f}, density against exact "
          f"mean |diff| {result['density_gap_mean']:.4f}, max {result['density_gap_max']:.4f} (child wall "
          f"{time.perf_counter() - started:.0f} s with data generation and the recall check); targets <= 600 s, "
          f"recall >= 0.95: {'met' if result['seconds'] <= 600 and result['recall'] >= 0.95 else 'MISSED'}")


if __name__ == "__main__":
    main()
