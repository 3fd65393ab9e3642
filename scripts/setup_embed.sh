#!/usr/bin/env bash
# The embed environment (.venv-embed): SONAR (sonar-space) on fairseq2, which pins one exact torch build.
# Runs `vs-sonar embed` and `vs-sonar model-check`, and the embed tests:
#   .venv-embed/bin/python -m pytest tests/vs_sonar_dataset/embed
# The CUDA build of torch 2.9.1 also runs on CPU, so the same pins serve both variants. faiss-cpu backs the
# approximate dedup (dedup_method = "ivf") used for large pools on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_lib.sh
make_env .venv-embed "embed" \
  "torch==2.9.1" "torchaudio==2.9.1" "fairseq2==0.8.1" "fairseq2n==0.8.1" "sonar-space==0.5.0" \
  "sentencepiece==0.2.3" "faiss-cpu==1.15.1" "pytest>=8" -e .
