"""`vs-sonar generate CONFIG.toml --out DIR`: Verbalized Sampling instructions from GSM8K problems."""

import argparse

HELP = ("Generate candidate instructions with Verbalized Sampling prompts seeded by GSM8K problems (vLLM). "
        "Reads the [generate] table of CONFIG; resumes an unfinished run in DIR; stops at exactly "
        "num_candidates accepted, deduplicated instructions.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="TOML file whose [generate] table configures the run")
    parser.add_argument("--out", required=True, metavar="DIR", default=argparse.SUPPRESS,
                        help="output directory (candidate shards, manifest.json, summary.json); "
                             "a directory holding an unfinished run with the same config is resumed")
    parser.add_argument("--gsm8k", metavar="PATH", default=argparse.SUPPRESS,
                        help="local GSM8K copy: a .jsonl/.parquet file or a directory with train.jsonl/test.jsonl; "
                             "without it $VS_SONAR_GSM8K, else the config's `gsm8k` key (openai/gsm8k on the Hub)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    from .config import load_config
    from .problems import resolve_gsm8k_location
    from .run import nonzero_rejections, run_generate

    # --gsm8k, else $VS_SONAR_GSM8K, else the config's own `gsm8k` (a None override leaves it)
    config = load_config(args.config, gsm8k=resolve_gsm8k_location(getattr(args, "gsm8k", None)))
    summary = run_generate(config, args.out, progress=not args.no_progress)
    rejected = ", ".join(f"{k} {v}" for k, v in nonzero_rejections(summary["rejected"]))
    print(f"generate: {summary['status']}: {summary['accepted']} of {summary['target']} candidates in "
          f"{summary['shards']} shard{'' if summary['shards'] == 1 else 's'} from {summary['requests']} requests; "
          f"rejected {summary['rejected_total']}{' (' + rejected + ')' if rejected else ''}; "
          f"summary in {args.out}/summary.json")
    return 0 if summary["status"] == "complete" else 1
