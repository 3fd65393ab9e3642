"""`vs-sonar card`: the last stage before publish. Build wrote a card that says "not verified yet"; this stage
renders it again (build/card.py) with verify's report, which it reads from the release folder."""

import json
from pathlib import Path

from ..build.card import CARD, card_text, render_card
from ..build.release import RELEASE_MANIFEST
from ..core.errors import UserError
from ..core.outputs import require_writable
from ..verify.checks import REPORT


def _verified(release: Path) -> tuple[dict, dict]:
    for name in (RELEASE_MANIFEST, REPORT):
        if not (release / name).is_file():
            raise UserError(f"{release}: no {name}; run `vs-sonar build` and `vs-sonar verify` first")
    return json.loads((release / RELEASE_MANIFEST).read_text()), json.loads((release / REPORT).read_text())


def card_is_current(release) -> bool:
    """README.md is the card of this release and its verify report, as `vs-sonar card` writes it."""
    release = Path(release)
    manifest, report = _verified(release)
    return (release / CARD).is_file() and (release / CARD).read_text() == card_text(release, manifest, report)


HELP = ("Write the release's card (README.md) with verify's results: the last stage before publish. verify only "
        "reads the release; this stage writes what it found into the card.")


def add_arguments(parser):
    parser.add_argument("release", help="a release folder that verify has checked")


def main(args) -> int:
    import pyarrow as pa

    release = Path(args.release)
    manifest, report = _verified(release)
    require_writable(release, "card writes README.md there")
    try:
        render_card(release, manifest, report)
    except (OSError, pa.ArrowException, ValueError, KeyError) as e:  # damage verify has reported
        damage = [c["detail"] for c in report["checks"] if not c["passed"] and c["name"].endswith("files readable")]
        raise UserError(f"{release}: no card can be rendered ({'; '.join(damage) or f'{type(e).__name__}: {e}'}); "
                        "build the release again") from None
    print(f"card: {release / CARD} written (verify {'passed' if report['passed'] else 'FAILED'})")
    return 0
