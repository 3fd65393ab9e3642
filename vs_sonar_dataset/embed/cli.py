"""`vs-sonar embed CANDIDATES --out POOL`: SONAR vectors for the candidates, semantic dedup, pool shards."""

import argparse
from dataclasses import fields

from .config import DTYPES, EmbedConfig

HELP = ("Embed candidate instructions with a SONAR text encoder (fp16 on GPU, fp32 on CPU; stored as fp32), "
        "drop semantic duplicates (cosine >= threshold against every kept row) and broken vectors, and write "
        "pool shards. Resumable: re-run the same command after a crash.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("candidates", metavar="CANDIDATES", help="candidate shard directory (from generate)")
    parser.add_argument("--out", required=True, metavar="POOL", help="pool directory to write (or resume)")
    parser.add_argument("--config", metavar="CONFIG.toml",
                        help="TOML file; its [embed] table sets the options below (flags win)")
    parser.add_argument("--encoder", help="encoder asset card name (default text_sonar_basic_encoder)")
    parser.add_argument("--tokenizer", help="tokenizer asset card name (default: the encoder's)")
    parser.add_argument("--asset-dir", help="folder of local fairseq2 asset cards (FAIRSEQ2_USER_ASSET_DIR)")
    parser.add_argument("--source-lang", help="SONAR language code of the texts (default eng_Latn)")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N (default auto)")
    parser.add_argument("--dtype", choices=DTYPES,
                        help="compute dtype (default auto: fp16 on GPU, fp32 on CPU)")
    parser.add_argument("--tokens-per-batch", type=int, help="padded tokens per encoder call")
    parser.add_argument("--max-batch-rows", type=int, help="rows per encoder call at most")
    parser.add_argument("--chunk-rows", type=int, help="candidates per pool shard and checkpoint")
    parser.add_argument("--dedup-threshold", type=float, help="cosine that makes a duplicate (default 0.95)")
    parser.add_argument("--dedup-block-rows", type=int, help="kept vectors per similarity matrix product")
    parser.add_argument("--target-rows", type=int, help="stop once the pool holds this many rows")
    unset_flags_fall_back_to_config(parser)


def unset_flags_fall_back_to_config(parser: argparse.ArgumentParser) -> None:
    """Flags left unset do not reach the namespace, so the config file's value (or the default) applies, and
    --help shows no "None"."""
    for action in parser._actions:
        if action.option_strings and action.default is None:
            action.default = argparse.SUPPRESS


def main(args: argparse.Namespace) -> int:
    from .config import load_embed_config
    from .encoders import make_encoder
    from .stage import BROKEN_REASONS, DUPLICATE_REASONS, run_embed
    from ..outputs import check_output_dir
    from ..shards import read_manifest

    # every [embed] key that has a flag; the others come back None and leave the file's value
    overrides = {f.name: getattr(args, f.name, None) for f in fields(EmbedConfig)}
    config = load_embed_config(getattr(args, "config", None), overrides)
    read_manifest(args.candidates, "candidates")  # a bad input or output fails before the model loads
    check_output_dir(args.out, "pool")
    encoder = make_encoder(config)
    manifest = run_embed(args.candidates, args.out, config, encoder)
    stats = manifest.stats
    duplicates, broken = (sum(stats[f"dropped_{r}"] for r in group) for group in (DUPLICATE_REASONS, BROKEN_REASONS))
    print(f"embed: {args.out}: {stats['kept']} rows kept of {stats['input_rows_done']} candidates "
          f"(duplicates {duplicates}, broken vectors {broken})")
    return 0
