"""`vs-sonar embed CANDIDATES --out VECTORS`: every candidate's vector, from the encoder [embed] names."""

ENVIRONMENT = "embed"  # the encoders' and torch's environment (envs.py)
HELP = ("Embed the candidates' texts with the encoder that [embed] names (kind = sonar | sentence_transformers | "
        "hf_auto; stored as fp32) and drop repeated texts and broken vectors. Semantic dedup is the next stage "
        "(vs-sonar dedup). Resumable: re-run the same command after a crash. --engine ray encodes on Ray Data "
        "(this machine or a cluster) and writes the same files.")


def environment(args) -> str:
    """The local engine runs in the embed environment; the ray engine's driver stays here (its encoder actors
    run in the embed environment)."""
    return "main" if args.engine == "ray" else ENVIRONMENT


def add_arguments(parser) -> None:
    from ..core.config import add_config_arguments
    from ..engines import add_engine_arguments

    parser.add_argument("candidates", metavar="CANDIDATES", help="candidates folder (from the source stage)")
    parser.add_argument("--out", required=True, metavar="VECTORS", help="vectors folder to write (or resume)")
    add_config_arguments(parser, "embed")
    add_engine_arguments(parser)


def main(args) -> int:
    from ..core.config import table_from_args
    from ..core.outputs import check_output_dir
    from ..core.shards import read_manifest
    from ..engines import check_engine_arguments
    from .stage import BROKEN_REASONS, DUPLICATE_ID, run_embed

    check_engine_arguments(args)
    config = table_from_args(args, "embed")
    read_manifest(args.candidates, "candidates")  # a bad input or output fails before the model loads
    check_output_dir(args.out, "vectors")
    if args.engine == "ray":
        from ..engines.ray_embed import run_embed_ray

        stats = run_embed_ray(args.candidates, args.out, config, address=args.address).stats
    else:
        from ..encoders import encoder_plugin

        encoder = encoder_plugin(config.kind).load(config)
        stats = run_embed(args.candidates, args.out, config, encoder).stats
    broken = sum(stats[f"dropped_{r}"] for r in BROKEN_REASONS)
    print(f"embed: {args.out}: {stats['rows']} vectors of {stats['input_rows_done']} candidates "
          f"(repeated texts {stats[f'dropped_{DUPLICATE_ID}']}, broken vectors {broken})")
    return 0
