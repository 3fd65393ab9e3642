#!/usr/bin/env bash
# The main job: set up (cheap when nothing changed), then run the three recipes' demo twins offline, every
# stage on CPU, each ending with verify and a load_dataset of one of its configs.
#   scripts/demo.sh                   all three, into runs/demo, runs/demo_wikitext, runs/demo_preference
#   scripts/demo.sh vs|wikitext|preference ...   only those (a run folder that exists is continued)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
recipes=("$@")
[ ${#recipes[@]} -gt 0 ] || recipes=(vs wikitext preference)
for recipe in "${recipes[@]}"; do
  case "$recipe" in
    vs) config=configs/demo.toml out=runs/demo ;;
    wikitext) config=configs/demo_wikitext.toml out=runs/demo_wikitext ;;
    preference) config=configs/demo_preference.toml out=runs/demo_preference ;;
    *) echo "demo.sh: unknown recipe $recipe (vs, wikitext, preference)" >&2; exit 2 ;;
  esac
  echo "== demo $recipe: vs-sonar run $config --out $out"
  .venv/bin/vs-sonar run "$config" --out "$out"
  .venv/bin/python scripts/show_release.py "$out/release"
done
