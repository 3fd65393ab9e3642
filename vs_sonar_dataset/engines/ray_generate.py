"""The vs_gsm8k source's generation on Ray Data: the same requests, batches, shards and counts as the local
engine, with the completions written by a pool of vLLM engines that run in the generate environment.

sources/vs_gsm8k/run.py stays the driver: it plans the requests, parses and deduplicates the completions, stops at the
target and writes each block of requests as a shard, resuming after the last shard written. Only where the
completions come from changes: RayBackend is its backend, and behind it one Ray Data pipeline carries every batch
the run may still send (the same request ranges the local engine sends, so each engine sees the same batches)
to `LlmActor`s, each holding the local engine's own VllmBackend (one GPU, or `tensor_parallel_size` GPUs, each;
a CPU share without GPUs). The driver reads the completions in request order and stops the pipeline when the
target is reached.

A worker that dies is restarted and its batch sent again (ray.py's bounded_retries); a batch whose worker dies
every time ends the run with Ray's error after the shards before it were written, so a re-run resumes. A batch
the engine raises an error on is sent again one request at a time, and a request that fails alone too is
recorded as rejected (engine_error) with the error in the log.
"""

import logging

import numpy as np

from ..core.errors import UserError
from ..sources.vs_gsm8k.backends import Completion
from .ray import (CPUS_PER_ACTOR, actor_environment, actor_pool, bounded_retries, finished_batches,
                  ordered_quiet_context, preflight, ray_session, remote_user_errors, user_error)

log = logging.getLogger("vs_sonar.engines.ray")


def batch_ranges(config, first: int, max_requests: int) -> list[tuple[int, int]]:
    """The request ranges sources/vs_gsm8k/run.py sends from request `first` (a shard's first): blocks of
    requests_per_shard, each sent in batches of batch_size."""
    ranges = []
    for block in range(first, max_requests, config.requests_per_shard):
        stop = min(block + config.requests_per_shard, max_requests)
        ranges += [(start, min(start + config.batch_size, stop)) for start in range(block, stop, config.batch_size)]
    return ranges


class LlmActor:
    """A Ray Data actor in the generate environment: one input row is one batch's request range, planned here
    from the run's config and problems exactly as the driver plans it; one output row per request."""

    def __init__(self, config_values: dict, problems: list[dict]):
        from ..core.config import parse
        from ..sources.vs_gsm8k.backends import VllmBackend
        from ..sources.vs_gsm8k.problems import Problem
        from ..sources.vs_gsm8k.run import run_schema

        self.config = parse("source", config_values)
        self.problems = [Problem(**p) for p in problems]
        self.schema = run_schema(self.config)
        self.load_error = None
        try:
            self.backend = VllmBackend(self.config)
        except UserError as e:  # raised by the first call instead (see engines/ray_embed.ChunkEncoder)
            self.load_error = e

    def __call__(self, batch: dict) -> dict:
        from ..sources.vs_gsm8k.run import planned_request

        if self.load_error is not None:
            raise self.load_error
        start, stop = int(batch["start"][0]), int(batch["stop"][0])
        requests = [planned_request(self.config, self.problems, i) for i in range(start, stop)]
        try:
            completions = self.backend.complete(requests, self.schema)
        except UserError:  # a mistake in the run's settings fails every request alike: it ends the run
            raise
        except Exception:  # whatever else the engine raises: find the request(s) it fails on
            completions = [self._alone(request) for request in requests]
        return {"index": np.arange(start, stop), "text": np.array([c.text for c in completions], dtype=object),
                "truncated": np.array([c.truncated for c in completions]),
                "error": np.array([c.error for c in completions], dtype=object)}

    def _alone(self, request) -> Completion:
        """The request's completion when sent alone, or the engine's error as the reason it is rejected."""
        try:
            return self.backend.complete([request], self.schema)[0]
        except UserError:
            raise
        except Exception as e:
            return Completion("", False, error=" ".join(f"{type(e).__name__}: {e}".split())[:500])


def _rows(ds):
    """The pipeline's completions one request at a time, as dicts; closing this stops the pipeline."""
    batches = iter(finished_batches(ds))
    try:
        for batch in batches:
            for values in zip(*batch.values()):
                yield dict(zip(batch, values))
    finally:
        getattr(batches, "close", lambda: None)()


class RayBackend:
    """sources/vs_gsm8k/run.py's backend on Ray: `complete` hands back, in order, the completions of the pipeline
    started at the first request asked for."""

    def __init__(self, config, address: str | None = None, actors: int | None = None, python: str | None = None):
        from ..sources.vs_gsm8k.problems import Gsm8kSource

        self.ray, self.python = preflight(python, stage="generate")
        self.config, self.actors = config, actors
        self.problems = [vars(p) for p in Gsm8kSource(config.gsm8k, config.splits).load()]
        self._session = ray_session(self.ray, address)
        self._session.__enter__()
        self.rows = None

    def _start(self, first: int):
        ray = self.ray
        ranges = batch_ranges(self.config, first, self.config.effective_max_requests())
        gpus = self.config.tensor_parallel_size if ray.cluster_resources().get("GPU", 0) else 0
        actors = self.actors or (int(ray.cluster_resources()["GPU"]) // gpus if gpus else 1)
        runtime_env = actor_environment(self.python)
        if not gpus:  # Ray gives a fractional-CPU actor one OpenMP thread; vLLM on CPU gets its share of cores,
            # as many threads as the local engine (fewer would be slower and round differently)
            threads = max(1, int(ray.cluster_resources().get("CPU", 1)) // max(1, actors))
            runtime_env["env_vars"]["OMP_NUM_THREADS"] = str(threads)
        log.info("ray engine: up to %d batches of requests for %d vLLM actor(s)", len(ranges), actors)
        ordered_quiet_context()  # completions come back in request order
        ds = ray.data.from_items([{"start": a, "stop": b} for a, b in ranges]).map_batches(
            LlmActor, batch_size=1, batch_format="numpy", compute=actor_pool(ray, max(1, actors)),
            fn_constructor_kwargs={"config_values": self.config.model_dump(mode="json"), "problems": self.problems},
            runtime_env=runtime_env, num_cpus=CPUS_PER_ACTOR, num_gpus=gpus,
            ray_remote_args_fn=bounded_retries)
        return _rows(ds)

    def complete(self, requests, schema: dict) -> list[Completion]:
        """(schema: the actors constrain to run_schema(config), which is what the driver passes)"""
        with remote_user_errors(self.ray):
            if self.rows is None:
                self.rows = self._start(requests[0].index)
            completions = []
            for request in requests:
                row = self._next(request.index)
                if int(row["index"]) != request.index:  # the pipeline must follow the driver's plan exactly
                    raise RuntimeError(f"ray engine: completion of request {row['index']} where {request.index} "
                                       "was expected")
                completions.append(Completion(str(row["text"]), bool(row["truncated"]), str(row["error"])))
        return completions

    def _next(self, index: int) -> dict:
        """The pipeline's next row; a failure Ray gave up on (a worker that died at every retry) is one line,
        with Ray's account in the log."""
        try:
            return next(self.rows)
        except self.ray.exceptions.RayError as e:
            if user_error(self.ray, e) is not None:  # our own one-line error, raised in an actor
                raise
            log.error("ray engine: the batch of request %d failed", index, exc_info=True)
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise UserError(f"ray engine: the vLLM workers failed at request {index} ({first[:300]}); the shards "
                            "written so far are kept: run the same command again to resume") from None

    def close(self) -> None:
        stop = getattr(self.rows, "close", None)  # ends the pipeline's work ahead of the driver
        if stop is not None:
            stop()
        self._session.__exit__(None, None, None)


def backend_factory(address: str | None = None, actors: int | None = None):
    """run_generate's backend_factory for the ray engine."""
    return lambda config: RayBackend(config, address, actors)
