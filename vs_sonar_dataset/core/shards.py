"""Sharded stage directories: Parquet shards plus a manifest.json that lists every shard's rows and checksums.

Writes are atomic (temporary file, fsync, rename) and the manifest is rewritten after each shard, so a crash
leaves the directory as it was after the last complete shard. Readers check schema, row counts and checksums
and name the offending file when one does not match. Each shard has two checksums: sha256 for anyone checking
by hand, and xxh3-128, which readers check because it is ten times faster (a million-row pool is 4 GB).

manifest.json:
    {"format_version": 1, "kind": "candidates" | "vectors" | "pool", "complete": bool, "synthetic": bool,
     "embedding_dim": int | null, "config": {...run config...}, "stats": {...stage counts...},
     "text_column": "text", "arrow_schema": base64 of the Arrow IPC schema every shard must have,
     "shards": [{"file": "shard-00000.parquet", "rows": int, "sha256": hex, "xxh3_128": hex}, ...]}

A source declares its candidate columns (always `id` and its text column), so the writer records the schema;
manifests written before that (no "arrow_schema") hold the Verbalized-Sampling columns.
"""

import base64
import hashlib
import json
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from .errors import ShardError, UserError
from .outputs import check_output_dir
from .schema import CANDIDATE_SCHEMA, embedding_matrix, pool_schema

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
KINDS = ("candidates", "vectors", "pool")  # vectors: every candidate with its vector; pool: after dedup
ROW_GROUP_ROWS = 8192  # readers decode a row group at a time: this bounds their memory (~32 MB of vectors)
# Dictionary-encode only the columns that repeat: on float vectors it costs time on write and read and saves nothing.
# Min/max statistics for every column but the vectors, where they mean nothing and cost ~12% of the write.
REPEATING_COLUMNS = ("generator_model", "generator_revision", "sampling_params", "template_hash", "encoder",
                     "source", "split")


def parquet_options(schema: pa.Schema) -> dict:
    return {"compression": "snappy",
            "use_dictionary": [name for name in schema.names if name in REPEATING_COLUMNS],
            "write_statistics": [name for name in schema.names if name != "embedding"]}


def sha256_file(path: str | os.PathLike) -> str:
    return _hash_file(path, hashlib.sha256())[0]


def xxh3_file(path: str | os.PathLike) -> str:
    """xxh3-128 of a file (hex): a checksum against corruption and changes, not forgery, at memory speed."""
    return _hash_file(path, xxhash.xxh3_128())[0]


def _hash_file(path, *digests, chunk: int = 1 << 22) -> list[str]:
    """Hex digests of the file's bytes, read once for all of them."""
    # one reused buffer: a fresh 4 MB bytes object per read costs a page fault per page
    buffer = bytearray(chunk)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buffer):
            for digest in digests:
                digest.update(view[:n])
    return [digest.hexdigest() for digest in digests]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def write_parquet_atomic(table: pa.Table, path: str | os.PathLike) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, row_group_size=ROW_GROUP_ROWS, **parquet_options(table.schema))
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def schema_for(kind: str, embedding_dim: int | None) -> pa.Schema:
    """The schema of manifests that predate recorded schemas."""
    return CANDIDATE_SCHEMA if kind == "candidates" else pool_schema(embedding_dim)


def encode_schema(schema: pa.Schema) -> str:
    return base64.b64encode(schema.remove_metadata().serialize().to_pybytes()).decode("ascii")


def decode_schema(text: str) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))


@dataclass
class Manifest:
    kind: str
    config: dict = field(default_factory=dict)
    synthetic: bool = False
    embedding_dim: int | None = None
    complete: bool = False
    stats: dict = field(default_factory=dict)
    shards: list = field(default_factory=list)
    text_column: str = "instruction"
    arrow_schema: str | None = None

    @property
    def rows(self) -> int:
        return sum(s["rows"] for s in self.shards)

    @property
    def schema(self) -> pa.Schema:
        if self.arrow_schema is None:
            return schema_for(self.kind, self.embedding_dim)
        return decode_schema(self.arrow_schema)

    def to_json(self) -> dict:
        return {"format_version": FORMAT_VERSION, **self.__dict__}


def read_manifest(directory: str | os.PathLike, kind: str | None = None) -> Manifest:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise ShardError(f"{path}: no manifest; is {directory} a stage output directory?")
    try:
        raw = json.loads(path.read_text())
        version = raw.pop("format_version")
        manifest = Manifest(**raw)
    except (ValueError, TypeError, KeyError) as e:
        raise ShardError(f"{path}: not a valid manifest ({e})") from None
    if version != FORMAT_VERSION:
        raise ShardError(f"{path}: format_version {version}, this code reads {FORMAT_VERSION}")
    if manifest.kind not in KINDS or (kind and manifest.kind != kind):
        raise ShardError(f"{path}: holds {manifest.kind!r} shards, expected {kind!r}")
    if manifest.kind != "candidates" and not isinstance(manifest.embedding_dim, int):
        raise ShardError(f"{path}: a {manifest.kind} manifest needs an integer embedding_dim")
    return manifest


def check_schema(actual: pa.Schema, expected: pa.Schema, where: str) -> None:
    """One line naming what differs (a column missing, extra, of another type or nullability, or the order)."""
    actual, expected = actual.remove_metadata(), expected.remove_metadata()
    if actual.equals(expected):
        return
    def describe(f: pa.Field) -> str:
        return f"{f.type}{'' if f.nullable else ' not null'}"
    found = {f.name: f for f in actual}
    differences = [f"{f.name} missing" if f.name not in found else
                   f"{f.name} is {describe(found[f.name])}, not {describe(f)}"
                   for f in expected if f.name not in found or not found[f.name].equals(f)]
    differences += [f"{name} not expected" for name in found if name not in expected.names]
    shown = "; ".join(differences[:3]) + ("; …" if len(differences) > 3 else "") or "the columns are in another order"
    raise ShardError(f"{where}: schema does not match the {len(expected)}-field contract: {shown}")


def _checked_shards(directory: Path, kind: str | None) -> Iterator[tuple[Path, pq.ParquetFile, Manifest]]:
    """Each shard after checking it against the manifest. The checksums are computed in a background thread
    that runs ahead of the reader (hashing releases the GIL), but no shard is yielded before its own passed."""
    manifest = read_manifest(directory, kind)
    paths = [directory / entry["file"] for entry in manifest.shards]
    for path in paths:
        if not path.is_file():
            raise ShardError(f"{path}: listed in the manifest but missing")
    # manifests written before xxh3-128 was added list sha256 only
    algorithm = "xxh3_128" if all("xxh3_128" in entry for entry in manifest.shards) else "sha256"
    hash_file = xxh3_file if algorithm == "xxh3_128" else sha256_file
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="checksum") as hasher:
        digests = [hasher.submit(hash_file, path) for path in paths]
        try:
            for entry, path, digest in zip(manifest.shards, paths, digests):
                if digest.result() != entry[algorithm]:
                    raise ShardError(f"{path}: {algorithm} differs from the manifest (truncated or altered)")
                with _naming_unreadable(path):
                    parquet = pq.ParquetFile(path)
                check_schema(parquet.schema_arrow, manifest.schema, str(path))
                if parquet.metadata.num_rows != entry["rows"]:
                    raise ShardError(f"{path}: {parquet.metadata.num_rows} rows, the manifest says {entry['rows']}")
                yield path, parquet, manifest
        finally:
            for digest in digests:
                digest.cancel()


def iter_shards(directory: str | os.PathLike, kind: str | None = None) -> Iterator[pa.Table]:
    """Yield each shard as a table after checking it against the manifest."""
    for path, parquet, manifest in _checked_shards(Path(directory), kind):
        with _naming_unreadable(path):
            table = parquet.read()
        yield table


def check_vectors(directory: Path, manifest: Manifest) -> None:
    """The contract of a vectors or pool folder, which dedup and build check before any work, one shard in
    memory at a time: every vector of the manifest's width and finite, every id once. The stages write no
    other (embed drops broken vectors); an edited or foreign folder is refused here, naming the file and the
    row, instead of being carried into the next stage's output."""
    seen: set[str] = set()
    for where, parquet, _ in _checked_shards(Path(directory), manifest.kind):
        with _naming_unreadable(where):
            table = parquet.read(columns=["id", "embedding"])  # the text and provenance columns are not needed
        width = table.schema.field("embedding").type.list_size
        if width != manifest.embedding_dim:
            raise UserError(f"{where}: vectors of width {width}, but {Path(directory) / MANIFEST} says "
                            f"{manifest.embedding_dim}; make the folder again with its stage")
        broken = np.flatnonzero(~np.isfinite(embedding_matrix(table)).all(axis=1))
        ids = table.column("id").to_pylist()
        if len(broken):
            raise UserError(f"{where}: row {broken[0]} (id {ids[broken[0]]}) holds NaN or inf "
                            f"({len(broken)} such rows in this file); make the folder again with its stage")
        for row, row_id in enumerate(ids):
            if row_id in seen:
                raise UserError(f"{where}: row {row} repeats id {row_id}; ids must be unique")
            seen.add(row_id)


def iter_shard_batches(directory: str | os.PathLike, kind: str | None = None,
                       batch_rows: int = ROW_GROUP_ROWS, threads: int = 1) -> Iterator[pa.RecordBatch]:
    """Like iter_shards, as record batches: memory stays near one batch whatever the shard size.
    threads > 1 decodes that many row groups at once, ahead of the reader and in order (Parquet decoding
    releases the GIL), for readers that would otherwise wait on a single decoding thread."""
    if threads == 1:
        for path, parquet, manifest in _checked_shards(Path(directory), kind):
            with _naming_unreadable(path):
                yield from parquet.iter_batches(batch_size=batch_rows, use_threads=False)
        return
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="decode") as pool:
        pending: deque = deque()
        try:
            for path, parquet, manifest in _checked_shards(Path(directory), kind):
                for group in range(parquet.num_row_groups):
                    pending.append((path, pool.submit(_read_row_group, path, group)))
                    while len(pending) > 2 * threads:
                        yield from _batches_of(*pending.popleft(), batch_rows)
            while pending:
                yield from _batches_of(*pending.popleft(), batch_rows)
        finally:
            for _, future in pending:
                future.cancel()


def _read_row_group(path: Path, group: int) -> pa.Table:
    return pq.ParquetFile(path).read_row_group(group, use_threads=False)  # a reader per call: no shared state


def _batches_of(path: Path, table: Future, batch_rows: int) -> Iterator[pa.RecordBatch]:
    with _naming_unreadable(path):
        batches = table.result().to_batches(max_chunksize=batch_rows)
    yield from batches


@contextmanager
def _naming_unreadable(path: Path) -> Iterator[None]:
    """A Parquet or I/O error inside the block becomes a ShardError that names the shard."""
    try:
        yield
    except (pa.ArrowException, OSError) as e:
        raise ShardError(f"{path}: unreadable Parquet ({e})") from None


def read_table(directory: str | os.PathLike, kind: str | None = None) -> pa.Table:
    manifest = read_manifest(directory, kind)
    tables = list(iter_shards(directory, kind))
    return pa.concat_tables(tables) if tables else manifest.schema.empty_table()


class ShardWriter:
    """Appends shards to a stage directory; resumes from the manifest when the directory holds one."""

    def __init__(self, directory: str | os.PathLike, kind: str, config: dict, *,
                 embedding_dim: int | None = None, synthetic: bool = False, prefix: str = "shard",
                 schema: pa.Schema | None = None, text_column: str = "instruction"):
        """schema: the columns every shard has (None: the Verbalized-Sampling candidate or pool schema)."""
        self.directory = Path(directory)
        self.prefix = prefix
        check_output_dir(self.directory, kind)
        self.directory.mkdir(parents=True, exist_ok=True)
        if (self.directory / MANIFEST).exists():
            self.manifest = read_manifest(self.directory, kind)
            if self.manifest.config != config:
                raise ShardError(f"{self.directory}: holds a run with another configuration; "
                                 "use a new output directory or the same configuration")
        else:
            if schema is not None and text_column not in schema.names:
                raise ShardError(f"{self.directory}: text column {text_column!r} is not among {schema.names}")
            self.manifest = Manifest(kind=kind, config=config, synthetic=synthetic, embedding_dim=embedding_dim,
                                     text_column=text_column,
                                     arrow_schema=None if schema is None else encode_schema(schema))
            self._save()

    def _save(self) -> None:
        write_json_atomic(self.directory / MANIFEST, self.manifest.to_json())

    @property
    def resumed_shards(self) -> int:
        return len(self.manifest.shards)

    def write(self, table: pa.Table, stats: dict | None = None) -> dict:
        """Write one shard and commit it to the manifest (with the stage's running counts, if given)."""
        schema = self.manifest.schema
        check_schema(table.schema, schema, f"shard for {self.directory}")
        # the recorded field names, which a table read back from Parquet may not carry (list items come back
        # as "element"): a shard's bytes must not depend on where its rows were read from
        table = table.cast(schema)
        name = f"{self.prefix}-{len(self.manifest.shards):05d}.parquet"
        write_parquet_atomic(table, self.directory / name)
        sha256, xxh3 = _hash_file(self.directory / name, hashlib.sha256(), xxhash.xxh3_128())
        entry = {"file": name, "rows": table.num_rows, "sha256": sha256, "xxh3_128": xxh3}
        self.manifest.shards.append(entry)
        if stats is not None:
            self.manifest.stats = stats
        self._save()
        return entry

    def finish(self, stats: dict | None = None) -> Manifest:
        if stats is not None:
            self.manifest.stats = stats
        self.manifest.complete = True
        self._save()
        return self.manifest
