#!/usr/bin/env bash
# The test command: set up (with Ray; cheap when nothing changed), then run each environment's tests.
#   scripts/test.sh            everything
#   scripts/test.sh -k push    extra arguments go to every pytest run
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --ray || { echo "test: setup failed" >&2; exit 1; }  # --ray: the ray engine's tests run too

status=0
run() {  # run PYTHON DIR... : pytest in one environment; exit code 5 (nothing collected) is an error too
  local python=$1; shift
  echo "== $python -m pytest $*"
  "$python" -m pytest "$@"
  local rc=$?
  [ $rc -eq 0 ] || { echo "test: pytest exited $rc in $python" >&2; status=1; }
}
run .venv/bin/python tests --ignore=tests/vs_sonar_dataset/generate --ignore=tests/vs_sonar_dataset/embed \
  --ignore=tests/vs_sonar_dataset/encoders \
  --ignore=tests/vs_sonar_dataset/fixtures/test_tiny_llama.py --ignore=tests/vs_sonar_dataset/fixtures/test_smollm2.py "$@"
run .venv-generate/bin/python tests/vs_sonar_dataset/generate tests/vs_sonar_dataset/fixtures/test_tiny_llama.py \
  tests/vs_sonar_dataset/fixtures/test_smollm2.py "$@"
run .venv-embed/bin/python tests/vs_sonar_dataset/embed tests/vs_sonar_dataset/encoders "$@"
exit $status
