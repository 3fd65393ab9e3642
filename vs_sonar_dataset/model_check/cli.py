"""`vs-sonar model-check RELEASE`: alignment (and, for encoders with a decoder, the decode → re-encode round
trip) on a sample of a release."""

import argparse
import json
from pathlib import Path

ENVIRONMENT = "embed"  # the encoders' and torch's environment (envs.py)
HELP = ("Check a release with its encoder: re-encode a seeded sample of texts (cosine >= 0.99 to the stored "
        "vectors) and, when the encoder has a decoder (SONAR), decode → re-encode the stored vectors (pass rate at "
        "cosine >= 0.9, against the unrelated-rows baseline). Writes RELEASE/model_checks.json; exits 3 when a "
        "check fails.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..core.config import add_config_arguments

    parser.add_argument("release", metavar="RELEASE", help="release folder (from build)")
    add_config_arguments(parser, "model_check")
    parser.add_argument("--encoder-set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one [embed] key (e.g. asset_dir=..., device='cpu'); without --config the "
                             "[embed] settings recorded in RELEASE/release.json are used")


def recorded_embed_settings(release: Path) -> dict:
    """The [embed] table the release's vectors were made with, from release.json (a published release keeps
    only the last part of a local path: such a folder must be given again)."""
    from ..build.release import RELEASE_MANIFEST

    path = release / RELEASE_MANIFEST
    try:
        embed = dict(json.loads(path.read_text())["pool"]["config"]["embed"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    for key in ("asset_dir", "model"):
        if str(embed.get(key, "")).startswith("<local>/"):
            del embed[key]
    return embed


def main(args: argparse.Namespace) -> int:
    from ..build.release import RELEASE_MANIFEST
    from ..core.config import load_table, parse, parse_assignment, table_from_args
    from ..core.errors import CHECKS_FAILED_EXIT, UserError
    from ..core.outputs import require_writable
    from ..encoders import encoder_plugin
    from .checks import run_model_checks

    release = Path(args.release)
    if not (release / RELEASE_MANIFEST).is_file():
        raise UserError(f"{release}: not a release folder (no {RELEASE_MANIFEST})")
    require_writable(release, "model-check writes model_checks.json there")  # before the models load
    check = table_from_args(args, "model_check")
    overrides = dict(parse_assignment(a) for a in args.encoder_set)
    if getattr(args, "config", None):
        embed = load_table(args.config, "embed", overrides)
    else:
        embed = parse("embed", {**recorded_embed_settings(release), **overrides}, f"{release / RELEASE_MANIFEST}")
    plugin = encoder_plugin(embed.kind)
    encoder = plugin.load(embed)
    decoder = plugin.load_decoder(embed, check)
    text_column = json.loads((release / RELEASE_MANIFEST).read_text()).get("text_column", "instruction")
    result = run_model_checks(release, encoder, decoder, check, text_column=text_column, batching=embed)
    al, rt = result["alignment"], result.get("round_trip")
    line = (f"model-check {release}: {'PASSED' if result['passed'] else 'FAILED'} on {result['sample_size']} rows; "
            f"alignment min cosine {al['min_cosine']:.4f} ({len(al['failures'])} failures)")
    if rt:
        line += (f"; round trip mean {rt['mean']:.4f}, pass rate {rt['pass_rate']:.3f} (min {rt['min_pass_rate']}), "
                 f"unrelated baseline {rt['unrelated_baseline_mean']:.4f}, exact text {rt['exact_text_rate']:.3f}")
    else:
        line += "; no round trip (the encoder has no decoder)"
    print(line)
    return 0 if result["passed"] else CHECKS_FAILED_EXIT
