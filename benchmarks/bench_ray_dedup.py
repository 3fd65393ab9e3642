"""The dedup stage on the local engine and on the ray engine (a local Ray instance), the same vectors: wall time
of each command as a user runs it, start-up included (process, Ray instance, actors), and the ratio. The target
is ray / local <= 1.3 on one machine: Ray is for many machines, and must not cost much on one.

The vectors are 1024-d rows shaped like an embedding space with 20% near-twins (fixtures/vectors.py), written as
vector shards. Run it from the main environment, with Ray in every environment (scripts/setup.sh --ray):

    .venv/bin/python benchmarks/bench_ray_dedup.py [--rows 40000] [--shard-rows 5000] [--method exact|ivf]

It also says whether the two engines wrote the same pool bytes.
"""

import argparse
import json
import tempfile
from pathlib import Path

from bench_ray_embed import timed_command

from vs_sonar_dataset.core import shards
from vs_sonar_dataset.fixtures.vectors import clustered, write_vectors


def same_files(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.iterdir())
    return names == sorted(p.name for p in b.iterdir()) and all(
        (a / n).read_bytes() == (b / n).read_bytes() for n in names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=40_000)
    parser.add_argument("--shard-rows", type=int, default=5_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--method", choices=("exact", "ivf"), default="exact")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_ray_dedup_") as tmp:
        tmp = Path(tmp)
        vectors = write_vectors(tmp / "vectors", clustered(args.rows, args.dim), args.shard_rows)
        values = {"device": "cpu", "method": args.method}
        if args.method == "ivf":  # lists trained on a quarter of the rows
            values.update(ivf_training_rows=args.rows // 4, ivf_lists=int(4 * (args.rows // 4) ** 0.5),
                          ivf_probes=8)
        config = tmp / "dedup.toml"
        config.write_text("[dedup]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))

        command = ("dedup", str(vectors), "--config", str(config), "--out")
        local = timed_command(*command, str(tmp / "local"))
        ray = timed_command(*command, str(tmp / "ray"), "--engine", "ray")
        same = same_files(tmp / "local", tmp / "ray")
        kept = shards.read_manifest(tmp / "local", "pool").stats["kept"]
    print(f"dedup {args.rows} x {args.dim} rows in shards of {args.shard_rows} ({args.method}, cpu; {kept} kept)")
    print(f"  local engine      {local:7.1f} s  ({args.rows / local:8.1f} rows/s)")
    print(f"  ray engine, local {ray:7.1f} s  ({args.rows / ray:8.1f} rows/s)")
    print(f"  ratio ray/local   {ray / local:7.2f}  (target <= 1.3); same pool bytes: {'yes' if same else 'no'}")


if __name__ == "__main__":
    main()
