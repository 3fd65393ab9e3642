"""The embed stage on Ray Data: the same chunks, drops, shards and manifest as the local engine, with the
encoding done by a pool of encoder actors that run in the embed environment.

The driver (any environment with Ray, pyarrow and this package; no torch needed) finds where each chunk's new
texts still to encode are (embed/stage.py: resume, repeated texts), hands that to Ray Data one chunk per row,
opens the output as the local engine does once the first vectors bring the encoder's description (so the model
loads in the actors only), and writes the returned vectors as shards in chunk order. Each actor call reads its
chunk's texts from the candidates folder and encodes them with the local engine's own batching (encode_texts),
so the vectors are those the local engine computes; the texts of the chunks to come wait on disk, not in the
driver's memory or Ray's object store.

Only plain data crosses between environments (numbers in, float32 numpy out): a torch object pickled in one
environment does not unpickle in another. Every wait that Ray could stretch forever (a worker whose python
cannot start, an actor asking for resources no node has) has a time limit.
"""

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from ..core import shards
from ..core.errors import UserError
from ..core.shards import Manifest
from ..embed.stage import (dropped_count, finish_embed, iter_chunks, open_embed, progress_bar, remaining_chunks,
                           write_chunk)
from .ray import (actor_environment, actor_pool, actor_resources, bounded_retries, finished_batches, get_started,
                  ordered_quiet_context, pool_size, preflight, ray_session, remote_user_errors)

log = logging.getLogger("vs_sonar.engines.ray")


@dataclasses.dataclass(frozen=True)
class EncoderInfo:
    """What the driver records of the encoder, as the TextEncoder loaded in the embed environment gives it
    (the driver never loads the model)."""
    name: str
    dim: int
    description: dict

    def describe(self) -> dict:
        return self.description


def _load_encoder(config_values: dict):
    from ..core.config import parse
    from ..encoders import encoder_plugin

    config = parse("embed", config_values)
    return config, encoder_plugin(config.kind).load(config)


def encoder_summary(encoder) -> dict:
    """The encoder's name, width and description, as plain data (EncoderInfo's fields)."""
    return {"name": encoder.name, "dim": int(encoder.dim), "description": encoder.describe()}


def describe_encoder(config_values: dict) -> dict:
    """Run in the embed environment: encoder_summary of the configured encoder."""
    return encoder_summary(_load_encoder(config_values)[1])


class CandidateTexts:
    """The texts of candidate rows, read where an actor runs from the candidates folder (on a cluster: storage
    every node mounts at the same path), keeping the shard last read: consecutive chunks share shards."""

    def __init__(self, candidates_dir: str):
        manifest = shards.read_manifest(candidates_dir, "candidates")
        self.dir, self.text_column = Path(candidates_dir), manifest.text_column
        self.files = [s["file"] for s in manifest.shards]
        self.offsets = np.cumsum([0] + [s["rows"] for s in manifest.shards])
        self.last: tuple[int, list] | None = None

    def read(self, start: int, rows: int, repeated: np.ndarray) -> list[str]:
        """Rows start..start+rows-1, less the chunk positions `repeated`, in order."""
        texts = []
        keep = np.setdiff1d(np.arange(rows), repeated) + start
        for index in np.unique(np.searchsorted(self.offsets, keep, side="right") - 1).tolist():
            if self.last is None or self.last[0] != index:
                path = self.dir / self.files[index]
                if not path.is_file():
                    raise UserError(f"an encoder worker cannot read {path}: on a cluster the run folder must be on "
                                    "storage every node mounts at the same path")
                self.last = (index, pq.read_table(path, columns=[self.text_column]).column(0).to_pylist())
            lo, hi = self.offsets[index], self.offsets[index + 1]
            texts += [self.last[1][i - lo] for i in keep[(keep >= lo) & (keep < hi)].tolist()]
        return texts


class ChunkEncoder:
    """A Ray Data actor in the embed environment: one batch is one chunk (a single row: where its new texts
    are), whose texts it reads from the candidates folder and encodes with the local engine's token-budget
    batching; one output row per text. Each call's first row also carries the encoder_summary (as JSON), which
    the driver needs before it writes anything. (The driver sends positions, not texts: its memory and Ray's
    object store then hold no text of the chunks still to come.)

    A user mistake met while loading (a model folder that is not there) is raised by the first call: Ray keeps
    an error raised in a constructor as text only, and restarts the actor meanwhile, printing the traceback each
    time, while a call's error reaches the driver as itself, once."""

    def __init__(self, config_values: dict, threads: int, candidates_dir: str):
        self.load_error = None
        try:
            self.candidates = CandidateTexts(candidates_dir)
            self.config, self.encoder = _load_encoder(config_values)
        except UserError as e:  # raised by the first call instead (see the class docstring)
            self.load_error = e
            return
        self.summary = json.dumps(encoder_summary(self.encoder))
        if self.encoder.device == "cpu":  # Ray gives a fractional-CPU actor one thread; use its share of cores
            import torch

            torch.set_num_threads(threads)

    def __call__(self, batch: dict) -> dict:
        from ..embed.stage import encode_texts

        if self.load_error is not None:
            raise self.load_error
        texts = [text for start, rows, repeated in zip(batch["start"], batch["rows"], batch["repeated"])
                 for text in self.candidates.read(int(start), int(rows), np.frombuffer(repeated, np.int64))]
        tokens = self.encoder.token_lengths(texts)
        vectors = encode_texts(self.encoder, texts, self.config, tokens)
        return {"vector": np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(texts), self.encoder.dim),
                "tokens": np.asarray(tokens, dtype=np.int32),
                "encoder": np.array([self.summary] + [""] * (len(texts) - 1), dtype=object)}


def _vector_rows(ds):
    """The pipeline's vectors and token counts in chunk order: (float32 [rows, dim], int32 [rows], the block's
    first encoder summary or "") per block."""
    for batch in finished_batches(ds):
        vectors = batch["vector"]
        if vectors.dtype == object:  # blocks Ray could not store as a tensor come back as arrays of arrays
            vectors = np.stack(list(vectors))
        summary = next((str(s) for s in batch["encoder"] if s), "")
        yield np.asarray(vectors, dtype=np.float32), np.asarray(batch["tokens"], dtype=np.int32), summary


def _take(rows, buffer: list, n: int, dim: int) -> tuple[np.ndarray, list[int]]:
    """The next n vectors of the stream and their token counts."""
    have = sum(len(b[0]) for b in buffer)
    while have < n:
        block = next(rows, None)
        if block is None:
            raise RuntimeError(f"the Ray pipeline ended {n - have} vectors short")
        buffer.append(block[:2])
        have += len(block[0])
    vectors = np.concatenate([b[0] for b in buffer]) if buffer else np.empty((0, dim), np.float32)
    tokens = np.concatenate([b[1] for b in buffer]) if buffer else np.empty(0, np.int32)
    buffer[:] = [(vectors[n:], tokens[n:])] if len(vectors) > n else []
    return vectors[:n].reshape(n, dim), tokens[:n].tolist()


def run_embed_ray(candidates_dir, out_dir, config, *, address: str | None = None, python: str | None = None,
                  actors: int | None = None) -> Manifest:
    """The embed stage on Ray Data. python: the embed environment's interpreter for the actors (default: the
    environment envs.py names); actors: the pool size (default: one per GPU, else one per node)."""
    ray, python = preflight(python)
    values = config.model_dump(mode="json")
    runtime_env = actor_environment(python)
    with ray_session(ray, address), remote_user_errors(ray):
        resources = actor_resources(ray, config.device)
        # the pipeline starts before the output is opened (which needs the encoder's description): the actors
        # send the description with their first vectors, so the model loads in them only
        # (a chunk with no new text is written without a trip through Ray)
        items = [{"start": start, "rows": rows, "repeated": np.array(repeated, np.int64).tobytes()}
                 for start, rows, repeated in remaining_chunks(candidates_dir, out_dir, config.chunk_rows)
                 if len(repeated) < rows]
        actors, threads = pool_size(ray, resources, actors)
        rows, buffer = iter(()), []
        try:
            if items:
                log.info("ray engine: %d chunks to encode by %d actor(s), %s", len(items), actors,
                         "one GPU each" if resources["num_gpus"] else f"{threads} CPU thread(s) each")
                constructor = {"config_values": values, "threads": threads,
                               "candidates_dir": str(Path(candidates_dir).resolve())}
                rows = _vector_rows(_pipeline(ray, items, constructor, runtime_env, resources, actors))
                first = next(rows, None)
                if first is None:
                    raise RuntimeError("the Ray pipeline ended before its first vectors")
                buffer.append(first[:2])
                info = EncoderInfo(**json.loads(first[2]))
            else:  # nothing left to encode: the description alone, to check or finish the output
                describe = ray.remote(describe_encoder).options(runtime_env=runtime_env, max_retries=0, **resources)
                info = EncoderInfo(**get_started(ray, describe.remote(values), "the embed environment's encoder"))
            run = open_embed(candidates_dir, out_dir, config, info)
            if isinstance(run, Manifest):
                return run
            bar = progress_bar(run)
            try:
                for chunk in iter_chunks(run, config.chunk_rows):
                    vectors, tokens = _take(rows, buffer, len(chunk.texts), info.dim)
                    write_chunk(run, chunk, vectors, tokens, info.name)
                    bar.update(chunk.table.num_rows)
                    bar.set_postfix(dropped=dropped_count(run.stats))
            finally:
                bar.close()
        finally:
            getattr(rows, "close", lambda: None)()
        return finish_embed(run)


def _pipeline(ray, items: list, constructor: dict, runtime_env: dict, resources: dict, actors: int):
    """One row per chunk in, one row per new text out, in order, through `actors` ChunkEncoder actors."""
    ordered_quiet_context()
    return ray.data.from_items(items).map_batches(
        ChunkEncoder, batch_size=1, batch_format="numpy", compute=actor_pool(ray, actors),
        fn_constructor_kwargs=constructor, runtime_env=runtime_env, ray_remote_args_fn=bounded_retries,
        **resources)
