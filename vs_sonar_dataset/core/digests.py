"""Row digests: one xxh3-128 per row over every column, so that build (as it reads the pool) and verify (as it
loads the release) can compare rows bit for bit without holding them."""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from .schema import embedding_matrix


def _as_text(column: pa.Array) -> pa.Array:
    """A column as exact text: numbers in their shortest round-trip form, lists joined by a separator."""
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        return pc.binary_join(column, "\x1e")
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return column
    return pc.cast(column, pa.string())


def row_digests(batch: pa.RecordBatch) -> list[bytes]:
    """A 16-byte xxh3-128 digest per row over every column's value, in schema order: equal digests mean equal
    rows, bit for bit (vectors are hashed as raw bytes). Arrow builds one text per row for the other columns,
    so Python touches each row once. A non-cryptographic hash is enough: it guards against corruption and
    mix-ups, not against forgery, and it runs at memory speed."""
    names = [n for n in batch.schema.names if n != "embedding"]
    texts = pc.binary_join_element_wise(*[_as_text(batch.column(n)) for n in names], "\x1f").cast(pa.binary())
    _, offsets, data = texts.buffers()
    # the texts' bytes sliced in place: no Python str per row
    bounds = np.frombuffer(offsets, np.int32)[texts.offset : texts.offset + len(texts) + 1].tolist()
    text_bytes = memoryview(data) if data is not None else memoryview(b"")
    vectors = embedding_matrix(batch)
    raw, width = memoryview(np.ascontiguousarray(vectors)).cast("B"), vectors.shape[1] * 4
    digests = []
    for i in range(len(texts)):
        h = xxhash.xxh3_128(text_bytes[bounds[i] : bounds[i + 1]])
        h.update(raw[i * width : (i + 1) * width])
        digests.append(h.digest())
    return digests


def add_row_digests(digests: dict[str, bytes], rows: pa.RecordBatch) -> None:
    """digests[id] = row_digests of that row, for every row of `rows`."""
    digests.update(zip(rows.column("id").to_pylist(), row_digests(rows)))
