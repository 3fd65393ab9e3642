"""The strict parser against a corpus of bad model outputs: each is rejected under the expected reason,
nothing is repaired, and a probability is never invented."""

import json

import pytest

from vs_sonar_dataset.sources.vs_gsm8k import parse
from vs_sonar_dataset.sources.vs_gsm8k.parse import Limits, ResponseParser
from vs_sonar_dataset.sources.vs_gsm8k.problems import Problem

SEEDS = (
    Problem("train-00001", "Natalia sold clips to 48 of her friends in April, and then she sold half as many "
                           "clips in May. How many clips did Natalia sell altogether in April and May?", "72"),
    Problem("train-00002", "Lena had 1,250 dollars and spent 430 on a new bicycle for her daughter. "
                           "How much money is left?", "820"),
    Problem("test-00003", "A tank holds 50 liters and leaks 2 liters an hour. How much is left?", "-4"),
)
GOOD = "Write down every quantity the problem gives and name the unknown before you compute anything."
GOOD2 = "Estimate the result first, then check that your final answer is close to that estimate."
LIMITS = Limits(num_candidates=3, min_chars=40, max_chars=200, copied_ngram=6, min_english_word_share=0.2)


def response(*items) -> str:
    return json.dumps({"responses": list(items)})


def item(text=GOOD, probability=0.3) -> dict:
    return {"text": text, "probability": probability}


# (raw model output, reason it must be rejected under)
BAD_OUTPUTS = [
    ("", parse.MALFORMED_JSON),
    ("I cannot help with that.", parse.MALFORMED_JSON),
    ('{"responses": [{"text": "Write down every quantity", "probability": 0.3}', parse.MALFORMED_JSON),
    ("[" + json.dumps(item()) + "]", parse.MALFORMED_JSON),  # a list, not the object
    (json.dumps({"answers": [item()]}), parse.MALFORMED_JSON),
    (json.dumps({"responses": item()}), parse.MALFORMED_JSON),  # responses must be a list
    ('{"responses": [{"text": "' + GOOD + '", "probability": NaN}]}', parse.MALFORMED_JSON),
    ('{"responses": [{"text": "' + GOOD + '", "probability": Infinity}]}', parse.MALFORMED_JSON),
    ("```json\n" + response(item()) + "\n```", parse.MALFORMED_JSON),  # fenced: not repaired
    (response(item()) + " I hope these help!", parse.MALFORMED_JSON),
    (response(GOOD), parse.NOT_AN_OBJECT),
    (response([GOOD, 0.3]), parse.NOT_AN_OBJECT),
    (response({"text": GOOD}), parse.MISSING_PROBABILITY),
    (response(item(probability=None)), parse.MISSING_PROBABILITY),
    (response(item(probability="0.3")), parse.BAD_PROBABILITY),
    (response(item(probability="30%")), parse.BAD_PROBABILITY),
    (response(item(probability=True)), parse.BAD_PROBABILITY),
    (response(item(probability=[0.3])), parse.BAD_PROBABILITY),
    (response(item(probability=1.5)), parse.PROBABILITY_OUT_OF_RANGE),
    (response(item(probability=-0.1)), parse.PROBABILITY_OUT_OF_RANGE),
    (response(item(probability=30)), parse.PROBABILITY_OUT_OF_RANGE),  # a percent is not a probability
    (response({"probability": 0.3}), parse.MISSING_TEXT),
    (response(item(text=None)), parse.MISSING_TEXT),
    (response(item(text=42)), parse.MISSING_TEXT),
    (response(item(text="")), parse.EMPTY_TEXT),
    (response(item(text="   \n\t ")), parse.EMPTY_TEXT),
    (response(item(text="Check units.")), parse.TOO_SHORT),
    (response(item(text=" ".join([GOOD] * 4))), parse.TOO_LONG),
    (response(item(text=(GOOD + " " + GOOD2 + " " + GOOD)[:200])), parse.CUT_AT_MAX_CHARS),  # ends at max_chars
    (response(item(text="Write down every quantity\x07 the problem gives, then name the unknown.")),
     parse.CONTROL_CHARACTERS),
    (response(item(text="Escribe todas las cantidades que da el problema y nombra la incógnita primero.")),
     parse.NON_ENGLISH),
    (response(item(text="Запишите все величины из задачи и назовите неизвестное прежде всего.")),
     parse.NON_ENGLISH),
    (response(item(text="把题目中给出的每个数量都写下来，然后在计算之前先确定未知数是什么。这样做可以让每一步都更加清楚，也更容易检查。")),
     parse.NON_ENGLISH),
    (response(item(text="zxq vbnm qwerty plok frindle gastrop wumble yexil trundlebop skrazz")),
     parse.NON_ENGLISH),
    (response(item(text="Do not solve them. Instead, write 3 different instructions that would help.")),
     parse.ECHOES_PROMPT),
    (response(item(text="You write meta-cognitive instructions for math reasoning: short, general ones.")),
     parse.ECHOES_PROMPT),
    (response(item(text="<instruction> about how to check each step of the problem again.")),
     parse.ECHOES_PROMPT),
    (response(item(text="Natalia sold clips to 48 of her friends in April; find how many in May.")),
     parse.COPIES_PROBLEM),
    (response(item(text="Remember how many clips did natalia sell altogether when you add the months.")),
     parse.COPIES_PROBLEM),
    (response(item(text="Add the two months together and you will find the total is 72 in this case.")),
     parse.CONTAINS_ANSWER),
    (response(item(text="Subtract what was spent from the savings; the result should come to 820.")),
     parse.CONTAINS_ANSWER),
    (response(item(text="Subtract what was spent from the savings, which should leave exactly 820.00")),
     parse.CONTAINS_ANSWER),
    (response(item(text="A leak that loses water each hour can leave you with a value of -4 at the end.")),
     parse.CONTAINS_ANSWER),
]


def test_corpus_is_large_and_covers_every_parser_reason():
    assert len(BAD_OUTPUTS) >= 30
    parser_reasons = set(parse.REASONS) - {parse.DUPLICATE, parse.TRUNCATED, parse.EXTRA_ITEM, parse.ENGINE_ERROR}
    assert {reason for _, reason in BAD_OUTPUTS} == parser_reasons


@pytest.mark.parametrize("raw,reason", BAD_OUTPUTS, ids=[f"{i:02d}-{r}" for i, (_, r) in enumerate(BAD_OUTPUTS)])
def test_bad_output_is_rejected_under_its_reason(raw, reason):
    result = ResponseParser(LIMITS).parse(raw, SEEDS)
    assert result.candidates == []
    assert dict(result.rejected) == {reason: 1}


def test_good_items_are_kept_with_their_own_probability_beside_rejected_ones():
    raw = response(item(GOOD, 0.25), item("Too short.", 0.5), item(GOOD2, 0))
    result = ResponseParser(LIMITS).parse(raw, SEEDS)
    assert [(c.text, c.probability) for c in result.candidates] == [(GOOD, 0.25), (GOOD2, 0.0)]
    assert dict(result.rejected) == {parse.TOO_SHORT: 1}
    assert result.returned == 3


def test_items_beyond_the_requested_count_are_rejected():
    raw = response(*(item(f"{GOOD} Variant {'abcd'[i]}.", 0.1) for i in range(4)))
    result = ResponseParser(LIMITS).parse(raw, SEEDS)
    assert len(result.candidates) == 3 and dict(result.rejected) == {parse.EXTRA_ITEM: 1}


def test_unclosed_json_cut_at_max_tokens_counts_as_truncated():
    raw = response(item(), item(GOOD2))[:-20]
    assert dict(ResponseParser(LIMITS).parse(raw, SEEDS, truncated=True).rejected) == {parse.TRUNCATED: 1}
    assert dict(ResponseParser(LIMITS).parse(raw, SEEDS, truncated=False).rejected) == {parse.MALFORMED_JSON: 1}


def test_whitespace_around_text_is_stripped_and_length_measured_without_it():
    result = ResponseParser(LIMITS).parse(response(item("   " + GOOD + "\n")), SEEDS)
    assert [c.text for c in result.candidates] == [GOOD]


def test_numbers_that_are_not_a_seed_answer_are_allowed():
    text = "Split the work into 2 or 3 steps and check each partial result before going on."
    assert [c.text for c in ResponseParser(LIMITS).parse(response(item(text)), SEEDS).candidates] == [text]


def test_copy_threshold_is_the_configured_ngram_length():
    text = "Think about how she sold half as many items in the second month as in the first."
    # shares "she sold half as many" (5 words) with a seed problem: a copy at n=5, not at n=6
    strict = ResponseParser(Limits(3, 40, 200, copied_ngram=5, min_english_word_share=0.2))
    assert dict(strict.parse(response(item(text)), SEEDS).rejected) == {parse.COPIES_PROBLEM: 1}
    assert ResponseParser(LIMITS).parse(response(item(text)), SEEDS).candidates


def test_english_share_threshold_is_configurable():
    gibberish = "zxq vbnm qwerty plok frindle gastrop wumble yexil trundlebop skrazz"
    assert ResponseParser(Limits(3, 40, 200, 6, min_english_word_share=0.0)).parse(
        response(item(gibberish)), SEEDS).candidates


def test_a_text_as_long_as_the_schema_allows_was_cut_there():
    limits = Limits(num_candidates=3, min_chars=40, max_chars=len(GOOD), copied_ngram=6, min_english_word_share=0.2)
    cut = GOOD[:-12]  # what the grammar leaves of a longer sentence: exactly max_chars
    cut += "x" * (len(GOOD) - len(cut))
    result = ResponseParser(limits).parse(response(item(GOOD), item(cut), item(GOOD2[:60])), SEEDS)
    assert result.rejected == {parse.CUT_AT_MAX_CHARS: 2} and [c.text for c in result.candidates] == [GOOD2[:60]]
    keep = Limits(3, 40, len(GOOD), 6, 0.2, reject_cut_texts=False)  # random weights: every text is cut
    assert len(ResponseParser(keep).parse(response(item(GOOD), item(cut)), SEEDS).candidates) == 2
