"""Exact semantic dedup: the stage's chunked, blocked matrix products against a per-row loop (one
matrix-vector product per row against everything kept, the original study's approach), and against an
all-pairs blocked matrix product over the whole pool, on the same vectors in the same run.

    .venv-embed/bin/python benchmarks/bench_dedup.py [--rows 10000] [--large 100000] [--device cpu|cuda]

Vectors are 1024-d Gaussian rows with ~10% planted near-duplicates (cosine 0.93-0.99 to an earlier row).
"""

import argparse
import time

import numpy as np
import torch

from vs_sonar_dataset.embed.dedup import ExactDeduper

THRESHOLD = 0.95


def planted(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    dups = rng.choice(np.arange(1, n), size=n // 10, replace=False)
    sources = (rng.random(len(dups)) * dups).astype(np.int64)  # an earlier row
    noise = rng.standard_normal((len(dups), dim), dtype=np.float32)
    scale = rng.uniform(0.1, 0.4, size=(len(dups), 1)).astype(np.float32)
    x[dups] = x[sources] + scale * noise
    return x


def per_row_loop(x: np.ndarray, device: str) -> list[bool]:
    xs = torch.as_tensor(x, device=device)
    xs = xs / xs.norm(dim=1, keepdim=True)
    kept = torch.empty((len(x), x.shape[1]), device=device)
    n_kept = 0
    keep = []
    for row in xs:
        if n_kept and float((kept[:n_kept] @ row).max()) >= THRESHOLD:
            keep.append(False)
            continue
        kept[n_kept] = row
        n_kept += 1
        keep.append(True)
    return keep


def stage_dedup(x: np.ndarray, device: str, chunk: int, block: int) -> list[bool]:
    deduper = ExactDeduper(x.shape[1], THRESHOLD, block_rows=block, device=device)
    keep: list[bool] = []
    for start in range(0, len(x), chunk):
        keep += deduper.process(x[start:start + chunk]).keep.tolist()
    return keep


def all_pairs_blocked(x: np.ndarray, device: str, block: int) -> None:
    """Every pair once over the full matrix (the cost the stage's triangle is compared with)."""
    xs = torch.as_tensor(x, device=device)
    xs = xs / xs.norm(dim=1, keepdim=True)
    for start in range(0, len(x), block):
        (xs[start:start + block] @ xs.T).max(dim=1)


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=100_000, help="rows of the large run (0 to skip)")
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--chunk", type=int, default=4096, help="stage chunk_rows")
    parser.add_argument("--block", type=int, default=16384, help="stage dedup_block_rows")
    parser.add_argument("--skip-all-pairs", action="store_true")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")

    x = planted(args.rows, args.dim)
    loop_keep, loop_s = timed(per_row_loop, x, args.device)
    stage_keep, stage_s = timed(stage_dedup, x, args.device, args.chunk, args.block)
    assert loop_keep == stage_keep, "the stage and the per-row loop disagree"
    print(f"{args.rows} rows: per-row loop {loop_s:.2f} s, stage {stage_s:.2f} s -> speed-up {loop_s / stage_s:.1f}x "
          f"(same {sum(stage_keep)} rows kept)")

    if args.large:
        big = planted(args.large, args.dim, seed=1)
        big_keep, big_s = timed(stage_dedup, big, args.device, args.chunk, args.block)
        line = f"{args.large} rows: stage {big_s:.1f} s ({sum(big_keep)} kept)"
        if not args.skip_all_pairs:
            _, pairs_s = timed(all_pairs_blocked, big, args.device, args.chunk)
            line += f"; all-pairs blocked matmul {pairs_s:.1f} s -> stage/all-pairs {big_s / pairs_s:.2f}"
        print(line)


if __name__ == "__main__":
    main()
