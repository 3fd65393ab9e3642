"""Plug-ins are found by listing a package: a new module that names its KIND and Config is all it takes."""

import sys
import textwrap

import pytest

from vs_sonar_dataset.core.errors import UserError
from vs_sonar_dataset.core.plugins import discover, plugin
from vs_sonar_dataset.core.settings import parse_table
from vs_sonar_dataset.encoders import encoders
from vs_sonar_dataset.sources import sources


def test_the_shipped_plugins_are_listed():
    assert {"vs_gsm8k", "text_corpus", "preference_prompts"} <= set(sources())
    assert {"sonar", "sentence_transformers", "hf_auto"} <= set(encoders())
    for module in [*sources().values(), *encoders().values()]:
        assert module.Config.model_fields["kind"].default == module.KIND


def test_a_new_module_is_a_new_kind(tmp_path, monkeypatch):
    package = tmp_path / "extra_encoders"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "base.py").write_text("KIND = 'never listed'\n")
    (package / "hashing.py").write_text(textwrap.dedent('''
        from typing import Literal
        from vs_sonar_dataset.encoders.base import EncoderConfig

        KIND = "hashing"

        class Config(EncoderConfig):
            kind: Literal["hashing"] = KIND
            buckets: int = 64
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    found = discover("extra_encoders")
    assert list(found) == ["hashing"]
    config = parse_table(plugin(found, "hashing", "embed").Config, {"kind": "hashing", "buckets": 8}, "[embed]")
    assert config.buckets == 8 and config.chunk_rows == 4096  # the shared [embed] keys come with the base
    with pytest.raises(UserError, match=r"\[embed\] kind = 'bm25': unknown \(known: hashing\)"):
        plugin(found, "bm25", "embed")
    sys.modules.pop("extra_encoders.hashing", None)
