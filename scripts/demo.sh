#!/usr/bin/env bash
# The main job: set up (cheap when nothing changed), then run the demo offline, every stage on CPU.
#   scripts/demo.sh                 into runs/demo (resumes a run there)
#   scripts/demo.sh --out DIR       extra arguments go to `vs-sonar run`
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out=(--out runs/demo)
for arg in "$@"; do [ "$arg" = "--out" ] && out=(); done
exec .venv/bin/vs-sonar run configs/demo.toml "${out[@]}" "$@"
