"""Fixtures of the generate tests: a tiny random-weight Llama (built once, cached under pytest's cache
folder), a small GSM8K-format problem set and a config writer.

The vLLM tests need the generate environment:
    .venv-generate/bin/python -m pytest tests/vs_sonar_dataset/sources/vs_gsm8k
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vs_sonar_dataset.core.envs import REPO_ROOT, runs_here

HAS_VLLM = runs_here("generate")
needs_vllm = pytest.mark.skipif(not HAS_VLLM, reason="needs the generate environment (.venv-generate)")

# GSM8K-format problems written for the tests (question, worked answer, "#### final answer").
PROBLEMS = [
    ("Tom has 14 marbles and buys 9 more. How many marbles does he have now?", "14 + 9 = 23\n#### 23"),
    ("A box holds 6 rows of 8 eggs. How many eggs are in the box?", "6 * 8 = 48\n#### 48"),
    ("Mia reads 12 pages a day for 7 days. How many pages does she read?", "12 * 7 = 84\n#### 84"),
    ("A shirt costs $25 and is sold at 20% off. What is the sale price?", "25 * 0.8 = 20\n#### 20"),
    ("Sam splits 96 stickers equally among 8 friends. How many does each get?", "96 / 8 = 12\n#### 12"),
    ("A train travels 180 miles in 3 hours. What is its average speed in miles per hour?", "180 / 3 = 60\n#### 60"),
    ("Lena had 1,250 dollars and spent 430. How much money is left?", "1250 - 430 = 820\n#### 820"),
    ("A garden is 15 feet long and 4 feet wide. What is its area in square feet?", "15 * 4 = 60\n#### 60"),
    ("Ben is 3 times as old as his son, who is 11. How old is Ben?", "3 * 11 = 33\n#### 33"),
    ("A baker makes 144 rolls and packs them in bags of 12. How many bags does he fill?", "144 / 12 = 12\n#### 12"),
    ("Each of 5 classes has 27 students. How many students are there in all?", "5 * 27 = 135\n#### 135"),
    ("A tank holds 50 liters and leaks 2 liters an hour. How much is left after 9 hours?", "50 - 18 = 32\n#### 32"),
]


def write_gsm8k(directory: Path, split: str = "train", rows=PROBLEMS) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{split}.jsonl"
    path.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in rows))
    return path


@pytest.fixture(scope="session")
def gsm8k_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("gsm8k")
    write_gsm8k(directory, "train")
    write_gsm8k(directory, "test", PROBLEMS[:5])
    return directory


@pytest.fixture(scope="session")
def tiny_llama(request) -> Path:
    """A tiny Llama model directory made by the project's builder (in a subprocess: it imports torch)."""
    if not HAS_VLLM:
        pytest.skip("needs the generate environment (.venv-generate)")
    from vs_sonar_dataset.fixtures.tiny_llama import is_built

    out = Path(request.config.cache.mkdir("tiny_llama"))
    if not is_built(out):
        subprocess.run([sys.executable, "-m", "vs_sonar_dataset.fixtures.tiny_llama", str(out)], check=True,
                       cwd=REPO_ROOT, capture_output=True)
    return out


# Small and fast on 2 CPU cores: short texts, few candidates per request, an in-process engine without
# graph compilation. Random weights write gibberish that the schema cuts at max_chars, so the English-word and
# cut-text filters are off.
FAST = {
    "num_candidates": 30, "candidates_per_request": 3, "min_problems": 3, "max_problems": 5, "seed": 7,
    "min_chars": 12, "max_chars": 60, "min_english_word_share": 0.0, "reject_cut_texts": False,
    "max_tokens": 200, "dtype": "float32",
    "max_model_len": 2048, "enforce_eager": True, "in_process_engine": True, "cpu_kvcache_space_gib": 1,
    "gpu_memory_utilization": 0.05, "batch_size": 2, "requests_per_shard": 2,
}


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def write_config(path: Path, table: dict, extra_tables: str = "") -> Path:
    lines = ["[source]"] + [f"{k} = {toml_value(v)}" for k, v in table.items()]
    path.write_text("\n".join(lines) + "\n" + extra_tables)
    return path


@pytest.fixture
def fast_config(tiny_llama, gsm8k_dir, tmp_path):
    """Write a fast config for the tiny model (keyword overrides win) and return its path."""
    def make(**overrides) -> Path:
        table = {"model": str(tiny_llama), "gsm8k": str(gsm8k_dir), **FAST, **overrides}
        return write_config(tmp_path / "generate.toml", table)
    return make
