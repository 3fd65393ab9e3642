"""`vs-sonar dedup VECTORS --out POOL`: semantic dedup of the vectors into the pool."""

ENVIRONMENT = "embed"  # the encoders' and torch's environment (envs.py)
HELP = ("Drop rows whose vector duplicates a kept row (cosine >= [dedup] threshold to any earlier kept row; exact "
        "blocked products, or the approximate ivf method for large pools on CPU) and write the pool. "
        "Resumable: re-run the same command after a crash.")


def add_arguments(parser) -> None:
    from ..config import add_config_arguments

    parser.add_argument("vectors", metavar="VECTORS", help="vectors folder (from embed)")
    parser.add_argument("--out", required=True, metavar="POOL", help="pool folder to write (or resume)")
    add_config_arguments(parser, "dedup")


def main(args) -> int:
    from ..config import table_from_args
    from ..outputs import check_output_dir
    from .dedup_stage import DUPLICATE, run_dedup

    config = table_from_args(args, "dedup")
    check_output_dir(args.out, "pool")
    stats = run_dedup(args.vectors, args.out, config).stats
    print(f"dedup: {args.out}: {stats['kept']} rows kept of {stats['input_rows_done']} "
          f"(duplicates {stats[f'dropped_{DUPLICATE}']})")
    return 0
