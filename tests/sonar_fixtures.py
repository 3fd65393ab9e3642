"""Fixtures of the SONAR tests (embed, dedup, model checks, encoders): a tiny trained SONAR encoder/decoder pair
(built once, cached between test runs under pytest's cache folder) and its training sentences; candidate shards
of them come from vs_sonar_dataset.fixtures.candidates (shared with benchmarks/bench_embed.py).

The model tests need the embed environment (.venv-embed) and skip elsewhere.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vs_sonar_dataset.core.envs import REPO_ROOT

HAS_SONAR = importlib.util.find_spec("sonar") is not None
needs_sonar = pytest.mark.skipif(not HAS_SONAR, reason="needs the embed environment (.venv-embed)")
TEST_DIM = 1024  # the width the demo release uses


@pytest.fixture(scope="session")
def tiny_sonar(request) -> Path:
    """Asset dir with cards tiny_sonar_encoder / tiny_sonar_decoder (dim TEST_DIM), made by the project's builder.

    Built in a subprocess: fairseq2 reads FAIRSEQ2_USER_ASSET_DIR once per process, so this process must not
    touch fairseq2 before the variable points at the finished cards."""
    if not HAS_SONAR:
        pytest.skip("needs the embed environment (.venv-embed)")
    from vs_sonar_dataset.fixtures.tiny_sonar import is_built

    out = Path(request.config.cache.mkdir(f"tiny_sonar_{TEST_DIM}"))
    if not is_built(out, TEST_DIM):
        subprocess.run([sys.executable, "-m", "vs_sonar_dataset.fixtures.tiny_sonar", str(out),
                        "--dim", str(TEST_DIM), "--time-limit", "240"], check=True, cwd=REPO_ROOT)
    os.environ["FAIRSEQ2_USER_ASSET_DIR"] = str(out)
    return out


@pytest.fixture(scope="session")
def train_texts(tiny_sonar) -> list[str]:
    return (tiny_sonar / "train_texts.txt").read_text().splitlines()


@pytest.fixture(scope="session")
def encoder(tiny_sonar):
    from vs_sonar_dataset.encoders.sonar import SonarTextEncoder

    return SonarTextEncoder.load("tiny_sonar_encoder", device="cpu", asset_dir=str(tiny_sonar))


@pytest.fixture(scope="session")
def decoder(tiny_sonar):
    from vs_sonar_dataset.encoders.sonar import SonarTextDecoder

    return SonarTextDecoder("tiny_sonar_decoder", device="cpu", asset_dir=str(tiny_sonar))
