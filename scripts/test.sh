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
# each stage environment runs the tests of the code that runs in it; the main environment runs the rest
T=tests/vs_sonar_dataset
GENERATE=($T/sources/vs_gsm8k $T/fixtures/test_tiny_llama.py $T/fixtures/test_smollm2.py)
EMBED=($T/embed $T/dedup $T/model_check $T/encoders)
run .venv/bin/python tests $(printf -- '--ignore=%s ' "${GENERATE[@]}" "${EMBED[@]}") "$@"
run .venv-generate/bin/python "${GENERATE[@]}" "$@"
run .venv-embed/bin/python "${EMBED[@]}" "$@"
exit $status
