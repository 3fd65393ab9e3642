"""Release-builder benchmark: build + stats + release + verify of a synthetic pool, against plain pyarrow.

    .venv/bin/python benchmarks/bench_release.py --rows 1000000 --sizes 10k=10000,100k=100000,1m=1000000

Prints, all measured in this run:
- build+verify wall time and its ratio to a plain pyarrow write of the same Parquet bytes (target <= 3x);
- peak RSS of the build+verify process (target <= 2 GiB);
- load_dataset(RELEASE, "10k") cold (empty cache) against pyarrow.parquet.read_table of the same files
  (target <= 1.5x).
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

BUILD_AND_VERIFY = """
import time
from vs_sonar_dataset.build.release import build_release
from vs_sonar_dataset.verify.checks import verify_release
t = time.time()
digests = {{}}
build_release({pool!r}, {release!r}, {sizes!r}, progress=False, pool_digests=digests)
built = time.time() - t
report = verify_release({release!r}, {pool!r}, progress=False, pool_digests=digests)
assert report["passed"], [c for c in report["checks"] if not c["passed"]]
print(f"build {{built:.1f}} s, verify {{time.time() - t - built:.1f}} s")
"""

# one fresh process, imports done first; best of 5 each; every load_dataset starts from an empty cache
LOAD_VS_READ = """
import glob, json, tempfile, time
import datasets, pyarrow.parquet as pq
datasets.disable_progress_bars()
files = sorted(glob.glob({folder!r} + "/*.parquet"))
def best(f):
    times = []
    for _ in range(5):
        t = time.time(); f(); times.append(time.time() - t)
    return min(times)
read = best(lambda: [pq.read_table(f) for f in files])
load = best(lambda: datasets.load_dataset({release!r}, {config!r}, cache_dir=tempfile.mkdtemp()))
print(json.dumps([read, load]))
"""


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000, help="synthetic pool rows")
    p.add_argument("--sizes", default="10k=10000,100k=100000,1m=1000000", help="configs as NAME=SIZE,...")
    p.add_argument("--workdir", help="where to put the pool and release (default: a temporary folder, removed)")
    p.add_argument("--reuse-pool", action="store_true", help="keep WORKDIR/pool if it already has --rows rows")
    args = p.parse_args()
    sizes = dict(item.split("=") for item in args.sizes.split(","))
    work = Path(args.workdir or tempfile.mkdtemp(prefix="vs-sonar-bench-"))
    pool, release = work / "pool", work / "release"

    from vs_sonar_dataset.fixtures.synth import write_synthetic_pool

    from vs_sonar_dataset.core.errors import ShardError
    from vs_sonar_dataset.core.shards import read_manifest

    try:
        reuse = args.reuse_pool and read_manifest(pool, "pool").rows == args.rows
    except ShardError:
        reuse = False
    if not reuse:
        t = time.time()
        shutil.rmtree(pool, ignore_errors=True)
        write_synthetic_pool(pool, args.rows, seed=0, progress=False)
        print(f"synthetic pool: {args.rows:,} rows in {time.time() - t:.1f} s")
    shutil.rmtree(release, ignore_errors=True)

    # each timed phase starts with no dirty pages left by the one before, so none pays for another's writeback
    os.sync()
    started = time.time()
    code = BUILD_AND_VERIFY.format(pool=str(pool), release=str(release), sizes=sizes)
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
    wall = time.time() - started
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024

    import pyarrow.parquet as pq

    from vs_sonar_dataset.core.shards import PARQUET_OPTIONS, ROW_GROUP_ROWS

    files = sorted(p for p in (release / "data").rglob("*.parquet") if p.parent.name != "stats")
    os.sync()
    write_seconds = 0.0
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        for f in files:
            table = pq.read_table(f)
            t = time.time()
            pq.write_table(table, Path(tmp) / "copy.parquet", row_group_size=ROW_GROUP_ROWS, **PARQUET_OPTIONS)
            write_seconds += time.time() - t
            del table

    os.sync()
    target = "10k" if "10k" in sizes else min(sizes, key=lambda k: int(sizes[k]))
    code = LOAD_VS_READ.format(folder=str(release / "data" / target), release=str(release), config=target)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=REPO)
    read_seconds, load_seconds = json.loads(out.stdout.strip().splitlines()[-1])

    figures = {
        "rows": args.rows, "configs": sizes,
        "release_parquet_bytes": sum(f.stat().st_size for f in files),
        "build_verify_seconds": round(wall, 2), "plain_write_seconds": round(write_seconds, 2),
        "build_verify_over_plain_write": round(wall / write_seconds, 2),
        "peak_rss_gib": round(rss / 2**30, 3),
        f"load_dataset_{target}_cold_seconds": round(load_seconds, 3),
        "read_table_seconds": round(read_seconds, 3),
        "load_over_read_table": round(load_seconds / read_seconds, 2),
    }
    print(json.dumps(figures, indent=2))
    print(f"targets: build+verify / plain write {figures['build_verify_over_plain_write']} (<= 3), "
          f"peak RSS {figures['peak_rss_gib']} GiB (<= 2), load_dataset / read_table "
          f"{figures['load_over_read_table']} (<= 1.5)")
    if not args.workdir:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
