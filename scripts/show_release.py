"""Load the smallest config of a release with datasets, as a user would, and print one line: its splits, the
vector width and the first train text. Used by scripts/demo.sh and scripts/rehearse.sh.

    python scripts/show_release.py RELEASE                          from the release folder
    python scripts/show_release.py RELEASE --repo ORG/NAME --where "from the replica Hub"   from a Hub repo
"""

import argparse
import json

from datasets import load_dataset

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("release", help="the release folder (its release.json names the configs and text column)")
parser.add_argument("--repo", help="load this Hub dataset repo instead of the folder")
parser.add_argument("--where", default="", help="words printed after the call, e.g. 'from the replica Hub'")
args = parser.parse_args()
manifest = json.load(open(f"{args.release}/release.json"))
name = min(manifest["configs"], key=manifest["configs"].get)
source = args.repo or args.release
ds = load_dataset(source, name)
text = manifest["text_column"]
print(f"load_dataset({source!r}, {name!r}){' ' + args.where if args.where else ''}: "
      + ", ".join(f"{s} {ds[s].num_rows}" for s in ds) + f"; {len(ds['train'][0]['embedding'])}-d; "
      + f"first train {text}: {ds['train'][0][text][:80]!r}")
