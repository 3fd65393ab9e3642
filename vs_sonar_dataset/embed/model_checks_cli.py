"""`vs-sonar model-check RELEASE`: alignment and decode → re-encode round trip on a sample of a release."""

import argparse
import json
from pathlib import Path

from .cli import unset_flags_fall_back_to_config
from .config import DTYPES

HELP = ("Check a release with the SONAR models: re-encode a seeded sample of instructions (cosine >= 0.99 to "
        "the stored vectors) and decode → re-encode the stored vectors (pass rate at cosine >= 0.9, against the "
        "unrelated-rows baseline). Writes RELEASE/model_checks.json; exits 1 when a check fails.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("release", metavar="RELEASE", help="release folder (from build)")
    parser.add_argument("--config", metavar="CONFIG.toml",
                        help="TOML file: [embed] names the encoder (else the one recorded in RELEASE/release.json), "
                             "[model_check] the decoder and thresholds")
    parser.add_argument("--sample", help="rows to check, or 'all' (default 256)")
    parser.add_argument("--seed", type=int, help="sampling seed (default 0)")
    parser.add_argument("--min-pass-rate", type=float, help="round-trip pass rate required (default 0.9)")
    parser.add_argument("--encoder", help="encoder asset card name (default: [embed] of --config, else the "
                                          "release's record, else its `encoder` column)")
    parser.add_argument("--decoder", help="decoder asset card name (default: the encoder's name with "
                                          "'encoder' → 'decoder')")
    parser.add_argument("--asset-dir", help="folder of local fairseq2 asset cards")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--dtype", choices=DTYPES)
    unset_flags_fall_back_to_config(parser)


def _recorded_embed_settings(release: Path) -> dict:
    """The [embed] settings the release's pool was made with, from release.json when it has them."""
    from ..release import RELEASE_MANIFEST

    path = release / RELEASE_MANIFEST
    if not path.is_file():
        return {}
    try:
        embed = json.loads(path.read_text())["pool"]["config"]["embed"]
    except (ValueError, KeyError, TypeError):
        return {}
    keep = ("encoder", "tokenizer", "source_lang", "asset_dir", "max_tokens")
    settings = {k: v for k, v in embed.items() if k in keep}
    if settings.get("asset_dir") and not Path(settings["asset_dir"]).is_dir():
        del settings["asset_dir"]  # published releases keep only the folder's name; pass --asset-dir
    return settings


def main(args: argparse.Namespace) -> int:
    from ..errors import UserError
    from ..outputs import require_writable
    from .config import load_embed_config, load_model_check_config, read_toml
    from .model_checks import default_decoder_name, encoder_in_data, run_model_checks

    def flag(name):
        return getattr(args, name, None)

    release = Path(args.release)
    if not release.is_dir():
        raise UserError(f"{release}: release folder not found")
    require_writable(release, "model-check writes model_checks.json there")  # before the models load
    sample = flag("sample")
    if sample is not None and sample != "all":
        if not (sample.isdigit() and int(sample) > 0):
            raise UserError(f"--sample must be a positive integer or 'all', not {sample!r}")
        sample = int(sample)
    toml = read_toml(flag("config"))  # read once: both tables and the decoder default come from it
    base = {} if "embed" in toml else _recorded_embed_settings(release)
    if "embed" not in toml and "encoder" not in base:
        recorded = encoder_in_data(release)
        if recorded:
            base["encoder"] = recorded
    embed = load_embed_config(flag("config"), {**base, "encoder": flag("encoder") or base.get("encoder"),
                                               "asset_dir": flag("asset_dir") or base.get("asset_dir"),
                                               "device": flag("device"), "dtype": flag("dtype")}, toml)
    check = load_model_check_config(flag("config"), {"seed": flag("seed"), "min_pass_rate": flag("min_pass_rate"),
                                                     "decoder": flag("decoder")}, toml)
    if sample is not None:
        check.sample = None if sample == "all" else sample
    if flag("decoder") is None and "decoder" not in toml.get("model_check", {}):
        check.decoder = default_decoder_name(embed.encoder)
    result = run_model_checks(release, embed, check)
    rt, al = result["round_trip"], result["alignment"]
    print(f"model-check {release}: {'PASSED' if result['passed'] else 'FAILED'} on {result['sample_size']} rows; "
          f"alignment min cosine {al['min_cosine']:.4f} ({len(al['failures'])} failures); round trip mean "
          f"{rt['mean']:.4f}, pass rate {rt['pass_rate']:.3f} (min {rt['min_pass_rate']}), unrelated baseline "
          f"{rt['unrelated_baseline_mean']:.4f}, exact text {rt['exact_text_rate']:.3f}")
    return 0 if result["passed"] else 1
