"""Fixtures of the embed tests: a tiny trained SONAR encoder/decoder pair (built once, cached between sessions
under pytest's cache folder) and candidate shards made of its training sentences.

The model tests need the embed environment: .venv-embed/bin/python -m pytest tests/vs_sonar_dataset/embed
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vs_sonar_dataset import shards
from vs_sonar_dataset.envs import REPO_ROOT
from vs_sonar_dataset.schema import CANDIDATE_SCHEMA
from vs_sonar_dataset.textnorm import text_id

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
    from vs_sonar_dataset.embed.encoders import SonarTextEncoder

    return SonarTextEncoder.load("tiny_sonar_encoder", device="cpu", asset_dir=str(tiny_sonar))


@pytest.fixture(scope="session")
def decoder(tiny_sonar):
    from vs_sonar_dataset.embed.encoders import SonarTextDecoder

    return SonarTextDecoder("tiny_sonar_decoder", device="cpu", asset_dir=str(tiny_sonar))


def candidate_rows(texts: list[str], seed_offset: int = 0) -> list[dict]:
    return [{"id": text_id(t), "instruction": t, "probability": 0.1, "seed_problem_ids": [f"train-{i:05d}"],
             "generator_model": "tiny", "generator_revision": "0", "sampling_params": "{}",
             "template_hash": "t", "request_seed": seed_offset + i} for i, t in enumerate(texts)]


def write_candidates(directory: Path, texts: list[str], rows_per_shard: int = 7) -> Path:
    import pyarrow as pa

    writer = shards.ShardWriter(directory, "candidates", {"test": True})
    rows = candidate_rows(texts)
    for start in range(0, len(rows), rows_per_shard):
        writer.write(pa.Table.from_pylist(rows[start:start + rows_per_shard], schema=CANDIDATE_SCHEMA))
    writer.finish({"rows": len(rows)})
    return directory
