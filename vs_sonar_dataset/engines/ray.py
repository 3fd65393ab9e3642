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
import importlib.util
import json
import logging
import os
import re
import socket
import subprocess
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from .. import shards
from ..embed.stage import (dropped_count, finish_embed, iter_chunks, open_embed, progress_bar, remaining_chunks,
                           write_chunk)
from ..envs import REPO_ROOT, stage_python
from ..errors import UserError
from ..shards import Manifest

log = logging.getLogger("vs_sonar.engines.ray")

SETUP_HINT = "run scripts/setup.sh --ray"
# seconds for the encoder's workers to start and load the model; a stuck start fails instead of hanging
START_TIMEOUT_S = float(os.environ.get("VS_SONAR_RAY_START_TIMEOUT", "600"))
PROBE_TIMEOUT_S = 120  # an environment's `import ray, pandas, pyarrow`
CONNECT_TIMEOUT_S = 10  # the Ray head's port
CHECKED_ENVIRONMENTS = "VS_SONAR_RAY_CHECKED"  # python=ray version of each environment checked (check_environment)
CPUS_PER_ACTOR = 0.5  # fractional: two pools at 1 CPU each on a 2-CPU machine wait for each other forever
RETRIES = 3  # restarts of an actor whose process died, and sends of the batch it held
# the last line of a traceback that ended in one of our one-line errors
USER_ERROR_LINE = re.compile(r"^vs_sonar_dataset\.errors\.(?:UserError|ShardError): (.+)$", re.MULTILINE)


def bounded_retries() -> dict:
    """Ray Data restarts a dead actor and resends its batch forever by default: a batch that kills its worker
    every time would then run forever instead of failing."""
    return {"max_restarts": RETRIES, "max_task_retries": RETRIES}


def require_ray():
    """The ray module of this environment, or a one-line error saying how to install it."""
    if importlib.util.find_spec("ray") is None:
        raise UserError(f"--engine ray: ray is not installed in this environment ({sys.executable}); "
                        f"{SETUP_HINT}")
    import ray

    return ray


def check_environment(python: str, stage: str, version: str) -> None:
    """The stage's python imports the driver's Ray version, pandas and pyarrow. A worker that cannot makes
    Ray wait forever rather than fail, so this is checked here first (on this machine). A check passed is noted
    in this process's environment: the stage commands of a `vs-sonar run` do not repeat the run's (about 1 s)."""
    passed = f"{python}={version}"
    if passed in os.environ.get(CHECKED_ENVIRONMENTS, "").split(os.pathsep):
        return
    probe = "import ray, pandas, pyarrow; print(ray.__version__)"
    try:
        done = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    except OSError as e:
        raise UserError(f"the {stage} environment's python cannot run ({python}: {e.strerror}); "
                        "run scripts/setup.sh") from None
    except subprocess.TimeoutExpired:
        raise UserError(f"the {stage} environment's python ({python}) did not import ray within "
                        f"{PROBE_TIMEOUT_S} s") from None
    if done.returncode != 0:
        missing = (done.stderr.strip().splitlines() or ["import failed"])[-1]
        raise UserError(f"--engine ray: the {stage} environment ({python}) lacks Ray Data ({missing}); "
                        f"{SETUP_HINT}")
    found = done.stdout.strip()
    if found != version:
        raise UserError(f"--engine ray: the {stage} environment has ray {found}, this one {version}; "
                        f"every environment needs the same version: {SETUP_HINT}")
    os.environ[CHECKED_ENVIRONMENTS] = os.pathsep.join(filter(None, (os.environ.get(CHECKED_ENVIRONMENTS), passed)))


def preflight(python: str | None = None, stage: str = "embed"):
    """(ray, the stage environment's python) once it and this environment are fit for the ray engine."""
    ray = require_ray()
    python = python or stage_python(stage)
    if not os.path.exists(python):
        raise UserError(f"the {stage} environment is missing ({python}); run scripts/setup.sh")
    check_environment(python, stage, ray.__version__)
    return ray, python


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
    from ..config import parse
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


def user_error(ray, e: BaseException) -> UserError | None:
    """The UserError raised inside a Ray task or actor, if that is what `e` carries, as an object or as the
    last line of a remote traceback. (Ray's own error also passes as a UserError then, but its text is the
    remote traceback.)"""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, UserError) and not isinstance(e, ray.exceptions.RayError):
            return UserError(str(e))
        if isinstance(e, ray.exceptions.RayError):  # raised in an actor's constructor or in a Ray Data call, it
            raised = USER_ERROR_LINE.findall(str(e))  # arrives as the text of the remote traceback only
            if raised:
                return UserError(raised[-1])
        seen.add(id(e))
        e = getattr(e, "cause", None) or e.__cause__
    return None


@contextmanager
def remote_user_errors(ray):
    """A user mistake met inside Ray (a model folder that is not there) ends as its own one line; anything
    else keeps Ray's traceback."""
    try:
        yield
    except ray.exceptions.RayError as e:
        error = user_error(ray, e)
        if error is None:
            raise
        raise error from None


def check_reachable(address: str) -> None:
    """A host:port that nothing answers on fails here in seconds: ray.init retries such an address for many
    minutes."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        if address == "auto":  # the cluster `ray start` left on this machine: ray.init finds it or says so
            return
        raise UserError(f"--address {address!r}: give host:port of the Ray head (as `ray start --head` prints it)")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise UserError(f"cannot reach the Ray cluster at {address} ({e.strerror or e}); start it with "
                        "`ray start --head` or check the address") from None


@contextmanager
def ray_session(ray, address: str | None):
    """Join the cluster at `address`, or start a local Ray instance; leave one that was already running."""
    if ray.is_initialized():
        yield
        return
    # no usage reports (the pipeline runs offline; Ray Data would also start an actor process to collect them)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address:
        check_reachable(address)
    else:  # Ray starts its workers at nice 15, behind the driver and its own processes: here they do the work
        os.environ.setdefault("RAY_worker_niceness", "0")
        # nor does it start idle workers of this environment for each driver: the work runs in actors of the
        # stage environments, and on few cores their start-up slows the model's loading
        os.environ.setdefault("RAY_prestart_worker_first_driver", "0")
        os.environ.setdefault("RAY_enable_worker_prestart", "0")
        # a local instance's notice that it uses the token it found, on every command's console: not news
        logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(
            lambda record: not record.getMessage().startswith("Token authentication is enabled"))
    try:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=False, configure_logging=True)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        hint = ""
        if address and "RAY_AUTH_MODE" not in os.environ:  # Ray sends no token to an address given by hand
            hint = ("; if the cluster uses token authentication (`ray start --head` turns it on where "
                    "~/.ray/auth_token exists), set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN to the head's "
                    "`ray get-auth-token`")
        raise UserError(f"cannot start or join {where}: {str(e).strip().splitlines()[0]}{hint}") from None
    try:
        yield
    finally:
        ray.shutdown()


def actor_environment(python: str) -> dict:
    """Ray's runtime_env for the encoder: the embed environment's python, importing this checkout's package
    (as `vs-sonar run` runs each stage from it), so driver and actors run the same code."""
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {"py_executable": python, "env_vars": {"PYTHONPATH": path}}


def actor_resources(ray, device: str) -> dict:
    """Per actor: a fraction of a CPU, and one GPU where the encoder computes on CUDA ("auto": when the
    cluster has GPUs)."""
    gpus = ray.cluster_resources().get("GPU", 0)
    wants_gpu = device.startswith("cuda") or (device == "auto" and gpus > 0)
    return {"num_cpus": CPUS_PER_ACTOR, "num_gpus": 1 if wants_gpu else 0}


def pool_size(ray, resources: dict, actors: int | None) -> tuple[int, int]:
    """(actors, torch threads per actor): by default one actor per GPU, else one per node using its cores,
    which is how the local engine computes on one machine."""
    if not actors:
        if resources["num_gpus"]:
            actors = int(ray.cluster_resources().get("GPU", 1))
        else:
            actors = sum(1 for node in ray.nodes() if node.get("Alive"))
    cpus = int(ray.cluster_resources().get("CPU", 1))
    return max(1, actors), max(1, cpus // max(1, actors))


def get_started(ray, ref, what: str):
    """ray.get with the start time limit."""
    try:
        return ray.get(ref, timeout=START_TIMEOUT_S)
    except ray.exceptions.GetTimeoutError:
        ray.cancel(ref, force=True)
        raise UserError(f"{what} did not start within {START_TIMEOUT_S:.0f} s (no node with the resources, or "
                        "a stage environment that cannot start Ray workers); check `ray status` and "
                        f"{SETUP_HINT} on every node") from None


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


def actor_pool(ray, actors: int):
    """Ray Data's compute strategy for a pool of `actors` model actors, each running one call at a time on the
    thread that loaded its model, in input order. (By default Ray Data runs every call on a helper thread, where
    OpenMP starts a second thread team beside the one the model was set up with: vLLM on 2 cores then ran at half
    speed. Calls queued on such an actor may start out of order: one call in flight per actor keeps the order.)"""
    return ray.data.ActorPoolStrategy(size=actors, enable_true_multi_threading=True,
                                      max_concurrent_calls_per_actor=1, max_tasks_in_flight_per_actor=1)


def finished_batches(ds):
    """The pipeline's output blocks as numpy batches, each as soon as the call that made it has returned.
    (With Ray Data's default prefetch of one batch, a call's output reached the driver only when the next call
    had returned too: a generation run that needed two batches waited for a third.)"""
    return ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0)


def ordered_quiet_context() -> None:
    """Ray Data's settings for every ray engine pipeline: output in input order (shards are written in order),
    actors that cannot start fail the run, and the stage's own progress line instead of Ray's console output."""
    from ray.data import DataContext

    # known: Ray 2.60 takes an actor's retry bounds only through this route (see bounded_retries)
    warnings.filterwarnings("ignore", message=".*ray_remote_args_fn.*deprecated")
    context = DataContext.get_current()
    context.execution_options.preserve_order = True
    context.wait_for_min_actors_s = int(START_TIMEOUT_S)
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.issue_detectors_config.detectors = []  # its memory warnings would flood the console
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # each pipeline's start and finish lines
    from ray.util.debug import log_once

    log_once("ray_data_progress_manager_disabled")  # marks as said Ray's note that its progress bars are off


def _pipeline(ray, items: list, constructor: dict, runtime_env: dict, resources: dict, actors: int):
    """One row per chunk in, one row per new text out, in order, through `actors` ChunkEncoder actors."""
    ordered_quiet_context()
    return ray.data.from_items(items).map_batches(
        ChunkEncoder, batch_size=1, batch_format="numpy", compute=actor_pool(ray, actors),
        fn_constructor_kwargs=constructor, runtime_env=runtime_env, ray_remote_args_fn=bounded_retries,
        **resources)
