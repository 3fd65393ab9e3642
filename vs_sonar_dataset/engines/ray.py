"""What every stage on Ray shares: joining or starting an instance, checking that a stage environment can run
Ray workers, actor pools whose calls keep input order, bounded restarts, time limits on every wait Ray could
stretch forever (a worker whose python cannot start, an actor asking for resources no node has), and one-line
errors from remote tracebacks. The stages' pipelines are ray_embed.py, ray_dedup.py and ray_generate.py.

Only plain data crosses between environments (numbers in, float32 numpy out): a torch object pickled in one
environment does not unpickle in another.
"""

import importlib.util
import logging
import os
import re
import socket
import subprocess
import sys
import warnings
from contextlib import contextmanager

from ..core.envs import REPO_ROOT, stage_python
from ..core.errors import UserError

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
USER_ERROR_LINE = re.compile(rf"^{re.escape(UserError.__module__)}\.(?:UserError|ShardError): (.+)$", re.MULTILINE)


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


