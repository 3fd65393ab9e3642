import hashlib

from vs_sonar_dataset.core.textnorm import normalize_text, text_id


def test_normalization_ignores_case_width_and_spacing():
    assert normalize_text("  Check  the UNITS\tfirst.\n") == "check the units first."
    assert normalize_text("ＣＨＥＣＫ units") == "check units"  # full-width letters fold under NFKC


def test_id_is_sha256_of_normalized_text():
    assert text_id("Check the units") == hashlib.sha256(b"check the units").hexdigest()
    assert text_id("Check  the units ") == text_id("check the UNITS")
    assert text_id("check the units") != text_id("check the unit")
