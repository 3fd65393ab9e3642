"""`vs-sonar synth-pool`: a valid pool of synthetic rows, for tests and benchmarks of the stages after embed.

Texts are assembled from phrase lists (each row unique), vectors are seeded Gaussian noise scaled to norms
like SONAR's; the manifest says `synthetic: true` and publish refuses such a pool unless told otherwise.
"""

import json

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from .errors import UserError
from .schema import EMBEDDING_DIM, embedding_type, pool_schema
from .shards import ShardWriter
from .textnorm import text_id

HELP = "write a pool of synthetic rows (valid schema, random vectors) for tests and benchmarks"

_OPENERS = ["Before computing anything,", "When a problem mixes several quantities,", "If the numbers feel large,",
            "After a first reading,", "When rates or ratios appear,", "Whenever units change,",
            "If a step feels uncertain,", "Before writing the final answer,"]
_ACTIONS = ["restate what the question actually asks for", "list every given quantity with its unit",
            "estimate the size of the answer", "split the story into independent steps",
            "check whether each number is used exactly once", "write the relationship as one equation",
            "work backwards from what is asked", "draw a small table of the changes"]
_REASONS = ["so that no step answers the wrong question.", "so that a unit slip shows up early.",
            "so that an implausible result stands out.", "so that each step can be checked alone.",
            "so that forgotten information becomes visible.", "so that the arithmetic stays simple."]


def synthetic_texts(start: int, count: int) -> list[str]:
    out = []
    for i in range(start, start + count):
        a, rest = i % len(_OPENERS), i // len(_OPENERS)
        b, rest = rest % len(_ACTIONS), rest // len(_ACTIONS)
        c, variant = rest % len(_REASONS), rest // len(_REASONS)
        out.append(f"{_OPENERS[a]} {_ACTIONS[b]} {_REASONS[c]} (variant {variant})")
    return out


def synthetic_table(start: int, count: int, rng: np.random.Generator, dim: int, seed: int = 0) -> pa.Table:
    texts = synthetic_texts(start, count)
    vectors = rng.standard_normal((count, dim), dtype=np.float32) * np.float32(0.2 / np.sqrt(dim) * 2)
    # an offset shared by every row of the pool, as SONAR space has one
    vectors += np.random.default_rng([seed, 2**32]).standard_normal(dim, dtype=np.float32) * np.float32(0.01)
    seeds = [[f"train-{int(x):05d}" for x in rng.integers(0, 7473, 3)] for _ in range(count)]
    columns = {
        "id": [text_id(t) for t in texts],
        "instruction": texts,
        "probability": rng.uniform(0.01, 0.5, count),
        "seed_problem_ids": seeds,
        "generator_model": ["synthetic"] * count,
        "generator_revision": ["none"] * count,
        "sampling_params": [json.dumps({"synthetic": True})] * count,
        "template_hash": ["synthetic"] * count,
        "request_seed": np.arange(start, start + count, dtype=np.int64),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), type=embedding_type(dim)),
        "encoder": ["synthetic-gaussian"] * count,
        "text_tokens": [len(t.split()) for t in texts],  # no tokenizer made these rows: words stand in
    }
    return pa.table(columns, schema=pool_schema(dim))


def write_synthetic_pool(out, rows: int, seed: int = 0, dim: int = EMBEDDING_DIM, shard_rows: int = 50_000,
                         progress: bool = True):
    if rows <= 0 or shard_rows <= 0 or dim <= 0:
        raise UserError("--rows, --shard-rows and --dim must be positive")
    config = {"rows": rows, "seed": seed, "dim": dim, "shard_rows": shard_rows}
    writer = ShardWriter(out, "pool", config, embedding_dim=dim, synthetic=True)
    if writer.manifest.complete:
        return writer.manifest
    done = writer.manifest.rows
    with tqdm(total=rows, initial=done, unit="row", desc="synth-pool", disable=not progress) as bar:
        while done < rows:
            count = min(shard_rows, rows - done)
            rng = np.random.default_rng([seed, writer.resumed_shards])  # each shard's rows depend on its index only
            writer.write(synthetic_table(done, count, rng, dim, seed), stats={"rows": done + count})
            done += count
            bar.update(count)
    return writer.finish()


def add_arguments(parser):
    parser.add_argument("out", help="pool directory to write (resumed if it holds an unfinished pool)")
    parser.add_argument("--rows", type=int, required=True, help="number of rows")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--dim", type=int, default=EMBEDDING_DIM, help="embedding dimension")
    parser.add_argument("--shard-rows", type=int, default=50_000, help="rows per shard")


def main(args) -> int:
    manifest = write_synthetic_pool(args.out, args.rows, args.seed, args.dim, args.shard_rows)
    print(f"synthetic pool: {manifest.rows} rows in {len(manifest.shards)} shards at {args.out}")
    return 0
