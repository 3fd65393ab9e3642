"""The file schemas that are the contract between stages.

candidates (written by generate, read by embed) and pool (written by embed or synth-pool, read by build).
A pool row is a candidate row plus its embedding, the encoder that made it and the text's length in that
encoder's tokens.
"""

import numpy as np
import pyarrow as pa

EMBEDDING_DIM = 1024

CANDIDATE_FIELDS = [
    pa.field("id", pa.string(), nullable=False),  # textnorm.text_id(instruction)
    pa.field("instruction", pa.string(), nullable=False),
    pa.field("probability", pa.float64(), nullable=False),  # verbalized by the generator, never invented
    pa.field("seed_problem_ids", pa.list_(pa.string()), nullable=False),  # e.g. "train-00042"
    pa.field("generator_model", pa.string(), nullable=False),
    pa.field("generator_revision", pa.string(), nullable=False),
    pa.field("sampling_params", pa.string(), nullable=False),  # JSON object, sorted keys
    pa.field("template_hash", pa.string(), nullable=False),
    pa.field("request_seed", pa.int64(), nullable=False),
]

CANDIDATE_SCHEMA = pa.schema(CANDIDATE_FIELDS)


def embedding_type(dim: int = EMBEDDING_DIM) -> pa.DataType:
    """fixed_size_list<float32>[dim] whose items are declared non-null: Parquet then writes and decodes no
    definition levels per float (a third faster to read). Readers that do not declare it (datasets) still see
    fixed_size_list<float32>[dim]."""
    return pa.list_(pa.field("item", pa.float32(), nullable=False), dim)


def pool_schema(dim: int = EMBEDDING_DIM) -> pa.Schema:
    return pa.schema(
        CANDIDATE_FIELDS
        + [
            pa.field("embedding", embedding_type(dim), nullable=False),
            pa.field("encoder", pa.string(), nullable=False),
            pa.field("text_tokens", pa.int32(), nullable=False),  # the text's length in the encoder's tokens
        ]
    )


POOL_SCHEMA = pool_schema()


def embedding_matrix(table: pa.Table | pa.RecordBatch) -> np.ndarray:
    """[rows, dim] float32 view of the embedding column (no Python floats); honours a sliced table's offset."""
    column = table.column("embedding")
    if isinstance(column, pa.ChunkedArray):
        # combine_chunks copies even a single chunk (4 KB per row)
        column = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    dim = column.type.list_size
    offset = column.offset * dim
    return column.values.to_numpy(zero_copy_only=False)[offset : offset + len(column) * dim].reshape(-1, dim)
