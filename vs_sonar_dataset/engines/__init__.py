"""How a stage's work is executed. `local` is each stage's own code in one process (the default); `ray` runs
the work on Ray Data, on this machine or on a cluster: the embed stage's encoders (ray.py), the vs_gsm8k source's
vLLM engines (ray_generate.py) and the dedup stage's cosine products (ray_dedup.py). Both write the same files.
Ray is imported only when the ray engine is asked for: the local engine needs no Ray installed."""

from ..core.errors import UserError

ENGINES = ("local", "ray")


def add_engine_arguments(parser) -> None:
    parser.add_argument("--engine", choices=ENGINES, default="local",
                        help="where the work runs (the vs_gsm8k source's LLM, the encoder, dedup's products): in "
                        "this process (local) or on Ray Data (ray: needs scripts/setup.sh --ray); both write the "
                        "same files")
    parser.add_argument("--address", metavar="ADDR", default=None,
                        help="--engine ray: the Ray cluster to join (host:port of `ray start --head`); "
                        "unset: a local Ray instance on this machine's CPUs")


def check_engine_arguments(args) -> None:
    if args.address and args.engine != "ray":
        raise UserError("--address is for --engine ray")


def engine_flags(engine: str, address: str | None) -> list[str]:
    """The flags that pass an engine choice on to a stage's command (none for the default)."""
    if engine == "local":
        return []
    return ["--engine", engine] + (["--address", address] if address else [])
