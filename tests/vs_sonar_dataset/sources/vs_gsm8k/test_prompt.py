"""The VS prompt, its hash, the schema given to the decoder and the per-request plan."""

import json
import re

import pytest

from vs_sonar_dataset.sources.vs_gsm8k import prompt
from vs_sonar_dataset.sources.vs_gsm8k.problems import Problem

from .conftest import needs_vllm

PROBLEMS = [Problem(f"train-{i:05d}", f"Question number {i} about apples?", str(i)) for i in range(50)]


def plan(index, seed=0, problems=PROBLEMS):
    return prompt.plan_request(index, seed, problems, 3, 5, num_candidates=5, min_chars=40, max_chars=400)


def test_template_hash_is_stable_and_follows_the_wording(monkeypatch):
    first = prompt.template_hash()
    assert re.fullmatch(r"[0-9a-f]{64}", first) and prompt.template_hash() == first
    monkeypatch.setattr(prompt, "USER_TEMPLATE", prompt.USER_TEMPLATE.replace("Do not solve", "Never solve"))
    assert prompt.template_hash() != first


def test_messages_show_the_problems_and_ask_for_n_instructions_with_probabilities():
    messages = prompt.build_messages(PROBLEMS[:3], num_candidates=7, min_chars=40, max_chars=400)
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[1]["content"]
    assert all(p.question in user for p in PROBLEMS[:3]) and PROBLEMS[3].question not in user
    assert "write 7 different instructions" in user and "probability" in user and "Do not solve" in user
    assert "{" not in messages[0]["content"]  # no unformatted placeholder


def test_request_depends_only_on_run_seed_and_index():
    assert plan(17) == plan(17)
    assert plan(17).seed != plan(18).seed and plan(17).seed != plan(17, seed=1).seed
    assert len({plan(i).seed for i in range(500)}) == 500
    counts = {len(plan(i).problems) for i in range(200)}
    assert counts == {3, 4, 5}
    for i in range(50):
        ids = [p.id for p in plan(i).problems]
        assert len(set(ids)) == len(ids)
    assert 0 <= min(plan(i).seed for i in range(100)) and max(plan(i).seed for i in range(100)) < 2**63


@pytest.mark.parametrize("lo,hi", [(1, 1), (40, 128), (40, 400), (129, 300), (12, 60)])
def test_length_pattern_matches_exactly_the_length_range(lo, hi):
    pattern = re.compile(prompt.length_pattern(prompt.TEXT_CHARS, lo, hi))
    assert pattern.match("a" * lo) and pattern.match("b" * hi)
    assert not pattern.match("a" * (hi + 1)) and (lo == 1 or not pattern.match("a" * (lo - 1)))
    assert not pattern.match('say "hi" ' * 10) and not pattern.match("tab\there" * 10)
    assert all(int(n) <= prompt.MAX_REPEAT for n in re.findall(r"\d+", pattern.pattern))


def test_schema_asks_for_exactly_n_items():
    schema = prompt.response_schema(4, 40, 400)
    items = schema["properties"]["responses"]
    assert items["minItems"] == items["maxItems"] == 4
    assert set(items["items"]["required"]) == {"text", "probability"}
    assert "maxLength" not in json.dumps(schema)


@needs_vllm
@pytest.mark.parametrize("hi", [60, 400, 1000])
def test_schema_compiles_with_the_structured_output_backend(tiny_llama, hi):
    """xgrammar 0.2.8 rejects repetition bounds above 128: the schema must compile for long texts too."""
    import xgrammar
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    compiler = xgrammar.GrammarCompiler(xgrammar.TokenizerInfo.from_huggingface(tokenizer))
    compiler.compile_json_schema(json.dumps(prompt.response_schema(5, 40, hi)), any_whitespace=False)
