"""`vs-sonar card`: it needs verify's report, and writes the card that card_is_current recognises (the card of a
verified release is tested with verify, in tests/vs_sonar_dataset/verify/test_checks.py)."""

import subprocess
import sys

from vs_sonar_dataset.card.cli import card_is_current
from vs_sonar_dataset.core.errors import UserError


def card(release):
    return subprocess.run([sys.executable, "-m", "vs_sonar_dataset.cli", "card", str(release)], capture_output=True,
                          text=True)


def test_a_release_verify_has_not_checked_gets_no_card(small_release):
    before = (small_release / "README.md").read_bytes()
    result = card(small_release)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "no verify_report.json" in result.stderr and "vs-sonar verify" in result.stderr
    assert (small_release / "README.md").read_bytes() == before
    try:
        card_is_current(small_release)
    except UserError as e:
        assert "verify_report.json" in str(e)
    else:
        raise AssertionError("card_is_current answered without a verify report")
