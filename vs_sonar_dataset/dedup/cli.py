"""`vs-sonar dedup VECTORS --out POOL`: semantic dedup of the vectors into the pool."""

ENVIRONMENT = "embed"  # the encoders' and torch's environment (envs.py)
HELP = ("Drop rows whose vector duplicates a kept row (cosine >= [dedup] threshold to any earlier kept row; exact "
        "blocked products, or the approximate ivf method for large pools on CPU) and write the pool. "
        "Resumable: re-run the same command after a crash. --engine ray computes the products on Ray Data "
        "(this machine or a cluster) and writes the same files.")


def environment(args) -> str:
    """The local engine runs in the embed environment; the ray engine's driver stays here (its actors run in
    the embed environment)."""
    return "main" if args.engine == "ray" else ENVIRONMENT


def add_arguments(parser) -> None:
    from ..core.config import add_config_arguments
    from ..engines import add_engine_arguments

    parser.add_argument("vectors", metavar="VECTORS", help="vectors folder (from embed)")
    parser.add_argument("--out", required=True, metavar="POOL", help="pool folder to write (or resume)")
    add_config_arguments(parser, "dedup")
    add_engine_arguments(parser)


def main(args) -> int:
    from ..core.config import table_from_args
    from ..core.outputs import check_output_dir
    from ..engines import check_engine_arguments
    from .stage import DUPLICATE, run_dedup

    check_engine_arguments(args)
    config = table_from_args(args, "dedup")
    check_output_dir(args.out, "pool")
    if args.engine == "ray":
        from ..engines.ray_dedup import run_dedup_ray

        stats = run_dedup_ray(args.vectors, args.out, config, address=args.address).stats
    else:
        stats = run_dedup(args.vectors, args.out, config).stats
    print(f"dedup: {args.out}: {stats['kept']} rows kept of {stats['input_rows_done']} "
          f"(duplicates {stats[f'dropped_{DUPLICATE}']})")
    return 0
