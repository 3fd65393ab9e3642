"""Release-builder benchmark: build + stats + release + verify of a synthetic pool, against plain pyarrow.

    .venv/bin/python benchmarks/bench_release.py --rows 1000000 --sizes 10k=10000,100k=100000,1m=1000000

Prints, all measured in this run:
- build+verify wall time and its ratio to a plain pyarrow write of the same Parquet bytes (target <= 3x);
- peak RSS of the build+verify process (target <= 2 GiB);
- load_dataset(RELEASE, smallest config) cold, against pyarrow.parquet.read_table of the same files (target <= 1.5x).
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def run_child(code: str) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of a fresh Python process running `code`."""
    started = time.time()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return time.time() - started, max(peak, before) * 1024


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--sizes", default="10k=10000,100k=100000,1m=1000000")
    p.add_argument("--workdir", help="where to put the pool and release (default: a temporary folder)")
    args = p.parse_args()
    sizes = dict(item.split("=") for item in args.sizes.split(","))
    work = Path(args.workdir or tempfile.mkdtemp(prefix="vs-sonar-bench-"))
    pool, release = work / "pool", work / "release"

    from vs_sonar_dataset.synth import write_synthetic_pool

    t = time.time()
    write_synthetic_pool(pool, args.rows, seed=0, progress=False)
    print(f"synthetic pool: {args.rows:,} rows in {time.time() - t:.1f} s")

    code = (f"from vs_sonar_dataset.release import build_release; from vs_sonar_dataset.verify import verify_release\n"
            f"import time; t = time.time()\n"
            f"d = {{}}; build_release({str(pool)!r}, {str(release)!r}, {sizes!r}, progress=False, pool_digests=d)\n"
            f"b = time.time() - t\n"
            f"r = verify_release({str(release)!r}, {str(pool)!r}, progress=False, pool_digests=d)\n"
            f"assert r['passed'], [c for c in r['checks'] if not c['passed']]\n"
            f"print(f'build {{b:.1f}} s, verify {{time.time() - t - b:.1f}} s')")
    wall, rss = run_child(code)

    import pyarrow.parquet as pq

    from vs_sonar_dataset.shards import PARQUET_OPTIONS

    files = sorted(p for p in (release / "data").rglob("*.parquet") if p.parent.name != "stats")
    data_bytes = sum(f.stat().st_size for f in files)
    write_seconds = 0.0
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        for f in files:
            table = pq.read_table(f)
            t = time.time()
            pq.write_table(table, Path(tmp) / "copy.parquet", row_group_size=10_000, **PARQUET_OPTIONS)
            write_seconds += time.time() - t
            del table

    smallest = min(sizes, key=lambda k: int(sizes[k]))
    # both timed inside fresh processes, imports excluded; the files are in the page cache for both
    timed = ("import json, sys, time, tempfile, glob, datasets, pyarrow.parquet as pq\n"
             "datasets.disable_progress_bars()\n"
             f"files = sorted(glob.glob({str(release / 'data' / smallest)!r} + '/*.parquet'))\n"
             "t = time.time()\n{}\nprint(json.dumps(time.time() - t))")
    read_code = timed.format("for f in files: pq.read_table(f)")
    load_code = timed.format(f"datasets.load_dataset({str(release)!r}, {smallest!r}, cache_dir=tempfile.mkdtemp())")
    read_seconds = float(subprocess.run([sys.executable, "-c", read_code], check=True, capture_output=True,
                                        text=True).stdout.strip().splitlines()[-1])
    load_seconds = float(subprocess.run([sys.executable, "-c", load_code], check=True, capture_output=True,
                                        text=True).stdout.strip().splitlines()[-1])

    figures = {
        "rows": args.rows, "configs": sizes, "release_parquet_bytes": data_bytes,
        "build_verify_seconds": round(wall, 2), "plain_write_seconds": round(write_seconds, 2),
        "build_verify_over_plain_write": round(wall / write_seconds, 2),
        "peak_rss_gib": round(rss / 2**30, 3),
        f"load_dataset_{smallest}_seconds": round(load_seconds, 3), "read_table_seconds": round(read_seconds, 3),
        "load_over_read_table": round(load_seconds / read_seconds, 2),
    }
    print(json.dumps(figures, indent=2))
    print(f"targets: build+verify/plain write {figures['build_verify_over_plain_write']} (<= 3), "
          f"peak RSS {figures['peak_rss_gib']} GiB (<= 2), load/read_table {figures['load_over_read_table']} (<= 1.5)")
    if not args.workdir:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
