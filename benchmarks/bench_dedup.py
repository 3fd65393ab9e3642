"""Exact semantic dedup: the stage's chunked, blocked matrix products against a per-row loop (one
matrix-vector product per row against everything kept, the original study's approach), and against an
all-pairs blocked matrix product over the whole pool, on the same vectors in the same run.

    .venv-embed/bin/python benchmarks/bench_dedup.py [--rows 10000] [--large 100000] [--device cpu|cuda]

Vectors are 1024-d Gaussian rows with ~10% planted near-duplicates (cosine 0.93-0.99 to an earlier row).

--approx measures the approximate (ivf) deduper instead, on CPU:
    .venv-embed/bin/python benchmarks/bench_dedup.py --approx [--sample 100000] [--huge 1000000]
(a) on a sample with 5% planted near-twins (cosine 0.96-0.99 to an earlier row) among rows shaped like an
embedding space (power-law spectrum plus a shared offset, so random pairs have cosine ~0.3), the recall of the
duplicates exact dedup drops, and the time of both; (b) ivf dedup of --huge rows generated chunk by chunk
(never two copies in memory), in a child process so that its wall time and peak RSS are its own.
"""

import argparse
import resource
import subprocess
import sys
import time

import numpy as np
import torch

from vs_sonar_dataset.dedup.dedupers import ExactDeduper, IVFDeduper

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
    return dedup_blocks(deduper, [x], chunk)[0].tolist()


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


def embedding_like_blocks(n: int, dim: int, block: int, seed: int = 0):
    """Yield [<=block, dim] float32 blocks of n rows; 5% are near-twins (cosine 0.96-0.99) of an earlier row
    of the same or the previous block."""
    rng = np.random.default_rng(seed)
    scales = (np.arange(1, dim + 1, dtype=np.float32) ** -0.6).astype(np.float32)
    offset = rng.standard_normal(dim).astype(np.float32) * 0.04
    previous = np.zeros((0, dim), np.float32)
    for start in range(0, n, block):
        rows = min(block, n - start)
        x = rng.standard_normal((rows, dim), dtype=np.float32) * scales + offset
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        twins = np.sort(rng.choice(np.arange(1, rows), size=rows // 20, replace=False))
        pool = np.concatenate([previous, x])
        sources = (rng.random(len(twins)) * (len(previous) + twins)).astype(np.int64)  # an earlier row
        src = pool[sources]
        noise = rng.standard_normal(src.shape, dtype=np.float32) * scales
        noise -= (noise * src).sum(1, keepdims=True) * src
        noise /= np.linalg.norm(noise, axis=1, keepdims=True)
        cos = rng.uniform(0.96, 0.99, size=(len(twins), 1)).astype(np.float32)
        x[twins] = cos * src + np.sqrt(1 - cos ** 2) * noise
        previous = x
        yield x


def dedup_blocks(deduper, blocks, chunk: int, progress: bool = False) -> tuple[np.ndarray, float]:
    keep, start, pending = [], time.perf_counter(), np.zeros((0, 0), np.float32)
    done = 0
    for block in blocks:
        pending = block if not len(pending) else np.concatenate([pending, block])
        while len(pending) >= chunk:
            keep.append(deduper.process(pending[:chunk]).keep)
            pending = pending[chunk:]
            done += chunk
            if progress and done % (chunk * 8) == 0:
                print(f"  {done} rows, {time.perf_counter() - start:.0f} s, {deduper.size} kept", flush=True)
    if len(pending):
        keep.append(deduper.process(pending).keep)
    return np.concatenate(keep), time.perf_counter() - start


def load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def make_ivf(args) -> IVFDeduper:
    return IVFDeduper(args.dim, THRESHOLD, args.block, nlist=args.nlist, nprobe=args.nprobe,
                      train_rows=args.train_rows)


def approx_sample(args) -> None:
    x = np.concatenate(list(embedding_like_blocks(args.sample, args.dim, 50_000, seed=2)))
    pairs = x[:2000] @ x[2000:4000].T
    print(f"sample: {args.sample} x {args.dim}, random-pair cosine mean {pairs.mean():.2f} (sd {pairs.std():.2f}); "
          f"load average {load()}")
    exact_keep, exact_s = dedup_blocks(ExactDeduper(args.dim, THRESHOLD, args.block), [x], args.chunk)
    deduper = make_ivf(args)
    ivf_keep, ivf_s = dedup_blocks(deduper, [x], args.approx_chunk)
    dropped = ~exact_keep
    found = (dropped & ~ivf_keep).sum()
    print(f"exact: {exact_s:.1f} s, {dropped.sum()} dropped | ivf {deduper.method()['nlist']} lists, nprobe "
          f"{args.nprobe}, trained on {args.train_rows}: {ivf_s:.1f} s, {(~ivf_keep).sum()} dropped")
    print(f"recall of exact's duplicates: {found / dropped.sum():.4f} ({found}/{dropped.sum()}); dropped by ivf "
          f"only: {(~ivf_keep & exact_keep).sum()}; speed-up {exact_s / ivf_s:.1f}x; load average {load()}")


def approx_huge(args) -> None:
    deduper = make_ivf(args)
    print(f"huge: {args.huge} x {args.dim}, ivf {deduper.method()}, chunk {args.approx_chunk}; "
          f"load average {load()}", flush=True)
    keep, seconds = dedup_blocks(deduper, embedding_like_blocks(args.huge, args.dim, 50_000, seed=3),
                                 args.approx_chunk, progress=True)
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"huge: {len(keep)} rows deduplicated in {seconds:.0f} s ({seconds / 60:.1f} min, includes generating "
          f"them), {keep.sum()} kept, peak RSS {peak_gib:.2f} GiB; load average {load()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=100_000, help="rows of the large run (0 to skip)")
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--chunk", type=int, default=4096, help="stage chunk_rows")
    parser.add_argument("--block", type=int, default=16384, help="stage dedup_block_rows")
    parser.add_argument("--skip-all-pairs", action="store_true")
    parser.add_argument("--approx", action="store_true", help="measure the ivf deduper (CPU) instead")
    parser.add_argument("--sample", type=int, default=100_000, help="--approx: rows compared with exact (0 skips)")
    parser.add_argument("--huge", type=int, default=1_000_000, help="--approx: rows of the timed run (0 skips)")
    parser.add_argument("--approx-chunk", type=int, default=16384, help="--approx: rows per process() call")
    parser.add_argument("--nlist", type=int, default=1024)
    parser.add_argument("--nprobe", type=int, default=24)
    parser.add_argument("--train-rows", type=int, default=50_000)
    parser.add_argument("--part", choices=["huge"], help=argparse.SUPPRESS)  # the child process of --approx
    args = parser.parse_args()
    if args.part == "huge":
        return approx_huge(args)
    if args.approx:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cpu")
        if args.sample:
            approx_sample(args)
        if args.huge:
            subprocess.run([sys.executable, *sys.argv, "--part", "huge"], check=True)
        return
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
