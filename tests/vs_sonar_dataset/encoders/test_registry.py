"""The encoder plug-ins are found by listing the package, and an [embed] table is checked against the one its
`kind` names. Runs in every environment: listing the plug-ins imports no model library."""

import subprocess
import sys

import pytest


from vs_sonar_dataset.encoders import encoder_plugin, encoders
from vs_sonar_dataset.core.errors import UserError
from vs_sonar_dataset.core.settings import parse_table

KINDS = {"sonar", "sentence_transformers", "hf_auto"}


def embed_table(values: dict):
    """As the configuration reads [embed]: the plug-in that `kind` names, then its Config."""
    return parse_table(encoder_plugin(values["kind"]).Config, values, "[embed]")


def test_the_three_kinds_are_discovered_with_the_module_contract():
    assert KINDS <= set(encoders())
    for kind in KINDS:
        module = encoder_plugin(kind)
        assert module.KIND == kind and module.Config.model_fields["kind"].default == kind
        assert all(callable(getattr(module, name)) for name in ("load", "token_counter", "load_decoder"))


def test_listing_the_plugins_imports_no_model_library():
    code = ("import sys; from vs_sonar_dataset.encoders import encoders; encoders(); "
            "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers', 'sonar', 'fairseq2') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_each_kind_parses_with_its_own_keys_and_the_shared_ones():
    sonar = embed_table({"kind": "sonar", "model": "tiny_sonar_encoder", "asset_dir": "cards", "max_tokens": 128})
    assert type(sonar) is encoder_plugin("sonar").Config and sonar.source_lang == "eng_Latn"
    assert sonar.tokenizer is None and sonar.max_tokens == 128 and sonar.chunk_rows == 4096
    assert encoder_plugin("sonar").Config().model == "text_sonar_basic_encoder"
    st = embed_table({"kind": "sentence_transformers", "model": "runs/x/fixtures/minilm"})
    assert st.normalize and st.model_name == "" and st.dtype == "auto"
    hf = embed_table({"kind": "hf_auto", "model": "m", "pooling": "mean", "query_instruction": "Find it"})
    assert hf.pooling == "mean" and hf.revision == "" and hf.normalize


@pytest.mark.parametrize("values, expected", [
    ({"kind": "sonar", "encoder": "text_sonar_basic_encoder"}, "encoder: unknown key"),
    ({"kind": "sentence_transformers", "model": "m", "normalise": False}, "normalise: unknown key"),
    ({"kind": "hf_auto", "model": "m", "normalize": "yes"}, "normalize"),
    ({"kind": "hf_auto", "model": "m", "max_tokens": "512"}, "max_tokens"),
    ({"kind": "hf_auto", "model": "m", "pooling": "cls"}, "pooling"),
    ({"kind": "sonar", "dtype": "fp8"}, "dtype"),
    ({"kind": "hf_auto"}, "model: Field required"),
    ({"kind": "bm25", "model": "m"}, "kind = 'bm25': unknown"),
])
def test_a_bad_embed_table_is_one_user_error_line(values, expected):
    with pytest.raises(UserError) as caught:
        embed_table(values)
    message = str(caught.value)
    assert message.startswith("[embed]") and expected in message and "\n" not in message, message


def test_an_unknown_kind_by_name_lists_the_known_ones():
    with pytest.raises(UserError, match=r"\[embed\] kind = 'bm25': unknown \(known: .*sonar"):
        encoder_plugin("bm25")
