"""`vs-sonar source CONFIG --out CANDIDATES` (also `vs-sonar generate`): the texts of the run, from the source
plug-in that [source] kind names, as a candidates folder."""

import argparse

HELP = ("Write the candidate texts from the source [source] names (kind = vs_gsm8k: Verbalized-Sampling "
        "instructions from GSM8K problems on vLLM; text_corpus: paragraphs of a corpus; preference_prompts: first "
        "user messages of preference pairs). Resumes an unfinished run in the output folder. --engine ray runs "
        "vs_gsm8k's vLLM engines on Ray Data (this machine or a cluster) and writes the same files.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..core.config import add_config_arguments

    parser.add_argument("config", metavar="CONFIG.toml", help="TOML file whose [source] table configures the texts")
    parser.add_argument("--out", required=True, metavar="DIR", help="candidates folder to write (or resume)")
    add_config_arguments(parser, "source", config_flag=False)
    parser.add_argument("--gsm8k", metavar="PATH", default=None,
                        help="vs_gsm8k: a local GSM8K copy (.jsonl/.parquet file or a folder with train.jsonl); "
                             "without it $VS_SONAR_GSM8K, else the config's `gsm8k` (openai/gsm8k on the Hub)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    from ..engines import add_engine_arguments

    add_engine_arguments(parser)


def _source_table(args):
    """[source] with --set applied; for vs_gsm8k, --gsm8k, else $VS_SONAR_GSM8K, wins over its `gsm8k`."""
    from ..core.config import load_table, parse_assignment
    from ..core.errors import UserError
    from .vs_gsm8k.problems import resolve_gsm8k_location

    overrides = dict(parse_assignment(a) for a in args.set)
    table = load_table(args.config, "source", overrides)
    gsm8k = resolve_gsm8k_location(args.gsm8k)
    if table.kind != "vs_gsm8k":
        if args.gsm8k:
            raise UserError(f"--gsm8k is for [source] kind = \"vs_gsm8k\", not {table.kind!r}")
        return table
    return load_table(args.config, "source", {**overrides, "gsm8k": gsm8k}) if gsm8k else table


def environment(args) -> str | None:
    """The environment this command needs: its source plug-in's, or main for the driver of a source that
    runs its model on Ray."""
    from . import source_plugin

    plugin = source_plugin(_source_table(args).kind)
    return "main" if args.engine == "ray" and getattr(plugin, "RAY", False) else plugin.ENVIRONMENT


def main(args: argparse.Namespace) -> int:
    from ..core.config import load_table
    from ..engines import check_engine_arguments
    from .base import SourceContext
    from . import source_plugin

    check_engine_arguments(args)
    config = _source_table(args)
    plugin = source_plugin(config.kind)
    if args.engine == "ray" and not getattr(plugin, "RAY", False):
        print(f"source {config.kind}: no model to run, so --engine ray changes nothing here")

    def count_tokens(texts):  # the encoder's tokenizer, loaded only by a source that asks for it
        from ..encoders import encoder_plugin

        embed = load_table(args.config, "embed")
        if not hasattr(count_tokens, "counter"):
            count_tokens.counter = encoder_plugin(embed.kind).token_counter(embed)
        return count_tokens.counter(texts)

    context = SourceContext(count_tokens=count_tokens, progress=not args.no_progress, engine=args.engine,
                            address=args.address)
    manifest = plugin.run(config, args.out, context)
    status = "complete" if manifest.complete else "unfinished"
    print(f"source {config.kind}: {args.out}: {manifest.rows} rows, {status}")
    return 0 if manifest.stats.get("target_reached", True) else 1
