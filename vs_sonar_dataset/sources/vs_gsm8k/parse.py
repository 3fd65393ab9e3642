"""Strict parsing of one model response into candidate instructions.

Expected response: {"responses": [{"text": str, "probability": number in [0, 1]}, ...]}. Anything else is
rejected and counted under a reason; nothing is repaired and a probability is never invented or coerced
(a string "0.3" is rejected like a missing one). The first failing check names the reason.
"""

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field

from ...core.textnorm import normalize_text
from .problems import Problem
from .prompt import SYSTEM_TEMPLATE, USER_TEMPLATE

# response-level reasons (the whole response is lost) and item-level reasons (one candidate is lost)
TRUNCATED = "truncated"  # cut at max_tokens before the JSON closed
MALFORMED_JSON = "malformed_json"
NOT_AN_OBJECT = "not_an_object"
EXTRA_ITEM = "extra_item"
MISSING_PROBABILITY = "missing_probability"
BAD_PROBABILITY = "bad_probability"  # present but not a finite JSON number
PROBABILITY_OUT_OF_RANGE = "probability_out_of_range"
MISSING_TEXT = "missing_text"
EMPTY_TEXT = "empty_text"
TOO_SHORT = "too_short"
TOO_LONG = "too_long"
CUT_AT_MAX_CHARS = "cut_at_max_chars"  # as long as the grammar allows: the model was stopped mid-sentence
CONTROL_CHARACTERS = "control_characters"
NON_ENGLISH = "non_english"
ECHOES_PROMPT = "echoes_prompt"
COPIES_PROBLEM = "copies_problem"
CONTAINS_ANSWER = "contains_answer"
DUPLICATE = "duplicate"  # counted by the run's dedup, after parsing
ENGINE_ERROR = "engine_error"  # the engine failed on the request itself (ray engine: sent alone after its batch
# failed), a response-level count like truncated

REASONS = (TRUNCATED, MALFORMED_JSON, NOT_AN_OBJECT, EXTRA_ITEM, MISSING_PROBABILITY, BAD_PROBABILITY,
           PROBABILITY_OUT_OF_RANGE, MISSING_TEXT, EMPTY_TEXT, TOO_SHORT, TOO_LONG, CUT_AT_MAX_CHARS,
           CONTROL_CHARACTERS, NON_ENGLISH, ECHOES_PROMPT, COPIES_PROBLEM, CONTAINS_ANSWER, DUPLICATE, ENGINE_ERROR)

# Frequent English words (function words and the vocabulary of instructions). A share of them among the
# words of a text is a cheap, dependency-free sign that the text is English prose.
ENGLISH_WORDS = frozenset("""
a about after all also an and any are as at be before been being both but by can could do does each either
every few first for from has have how if in into is it its itself just less like make many may more most
much must need no not of on once one only or other our out over same see should since so some such than that
the their them then there these they this those through to two under until up use used using was way we
were what when where whether which while who whole why will with within without would you your yours
add amount answer apply ask break calculate change check compare compute consider convert count decide
define determine divide draw equation estimate each equal example find given group identify information
know known look multiply number numbers part parts per problem problems quantity quantities rate ratio
read relation result rule set simplify situation solve solution start step steps strategy subtract sum
table think total try unit units unknown value values verify whether work write
""".split())

_WORD = re.compile(r"[a-z0-9]+")
_LETTER = re.compile(r"[^\W\d_]")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_PLACEHOLDERS = ("<instruction>", "<number>", '"responses"', '"probability"')


@dataclass(frozen=True)
class Limits:
    num_candidates: int = 5
    min_chars: int = 40
    max_chars: int = 400
    copied_ngram: int = 6  # a run of this many words shared with a seed problem or the prompt is a copy
    min_english_word_share: float = 0.2  # share of words from ENGLISH_WORDS
    # The schema closes every text at max_chars, so a text of that length was cut there, mostly mid-sentence
    # (a third of SmolLM2-135M's items at max_chars 120). Random weights never end a text: their configs keep them.
    reject_cut_texts: bool = True


@dataclass(frozen=True)
class Candidate:
    text: str
    probability: float


@dataclass
class ParseResult:
    candidates: list[Candidate] = field(default_factory=list)
    rejected: Counter = field(default_factory=Counter)
    returned: int = 0  # items the response held (0 when it did not parse)


def words(text: str) -> list[str]:
    return _WORD.findall(normalize_text(text))


def ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


def _template_ngrams(n: int) -> set[tuple[str, ...]]:
    fixed = re.sub(r"\{[a-z_]+\}", " ", SYSTEM_TEMPLATE + "\n" + USER_TEMPLATE)
    return ngrams(words(fixed), n)


def canonical_number(value: str) -> str:
    """'1,250' -> '1250', '820.00' -> '820', '$-4' -> '4': the forms of a number a text may repeat."""
    value = value.replace(",", "").lstrip("+-$")
    if "." in value:
        value = value.rstrip("0").rstrip(".")
    return value


def _numbers(text: str) -> set[str]:
    return {canonical_number(m) for m in _NUMBER.findall(text)}


def is_english(text: str, min_word_share: float) -> bool:
    letters = _LETTER.findall(text)
    if not letters or sum(c.isascii() for c in letters) / len(letters) < 0.95:
        return False
    tokens = [w for w in words(text) if not w.isdigit()]
    if not tokens:
        return False
    return sum(w in ENGLISH_WORDS for w in tokens) / len(tokens) >= min_word_share


class ResponseParser:
    def __init__(self, limits: Limits):
        self.limits = limits
        self._prompt_ngrams = _template_ngrams(limits.copied_ngram)

    def parse(self, raw: str, seed_problems: tuple[Problem, ...] | list[Problem],
              truncated: bool = False) -> ParseResult:
        result = ParseResult()
        try:
            data = json.loads(raw, parse_constant=_reject_constant)
        except ValueError:  # json.JSONDecodeError included, and the NaN / Infinity refusal
            result.rejected[TRUNCATED if truncated else MALFORMED_JSON] += 1
            return result
        items = data.get("responses") if isinstance(data, dict) else None
        if not isinstance(items, list):
            result.rejected[MALFORMED_JSON] += 1
            return result
        result.returned = len(items)
        problem_ngrams = set().union(*(ngrams(words(p.question), self.limits.copied_ngram)
                                       for p in seed_problems)) if seed_problems else set()
        answers = {canonical_number(p.final_answer) for p in seed_problems if p.final_answer}
        for position, item in enumerate(items):
            reason = (EXTRA_ITEM if position >= self.limits.num_candidates
                      else self._check_item(item, problem_ngrams, answers))
            if reason:
                result.rejected[reason] += 1
            else:
                result.candidates.append(Candidate(item["text"].strip(), float(item["probability"])))
        return result

    def _check_item(self, item, problem_ngrams: set, answers: set[str]) -> str | None:
        if not isinstance(item, dict):
            return NOT_AN_OBJECT
        probability = item.get("probability")
        if probability is None:  # absent or null
            return MISSING_PROBABILITY
        if isinstance(probability, bool) or not isinstance(probability, (int, float)) or not math.isfinite(probability):
            return BAD_PROBABILITY
        if not 0.0 <= probability <= 1.0:
            return PROBABILITY_OUT_OF_RANGE
        text = item.get("text")
        if not isinstance(text, str):
            return MISSING_TEXT
        text = text.strip()
        if not text:
            return EMPTY_TEXT
        if len(text) < self.limits.min_chars:
            return TOO_SHORT
        if len(text) > self.limits.max_chars:
            return TOO_LONG
        if self.limits.reject_cut_texts and len(item["text"]) >= self.limits.max_chars:
            return CUT_AT_MAX_CHARS
        if _CONTROL.search(text):
            return CONTROL_CHARACTERS
        if not is_english(text, self.limits.min_english_word_share):
            return NON_ENGLISH
        tokens = words(text)
        grams = ngrams(tokens, self.limits.copied_ngram)
        lowered = text.casefold()
        if grams & self._prompt_ngrams or any(p in lowered for p in _PLACEHOLDERS):
            return ECHOES_PROMPT
        if grams & problem_ngrams:
            return COPIES_PROBLEM
        if answers & _numbers(text):
            return CONTAINS_ANSWER
        return None


def _reject_constant(name: str):
    raise ValueError(f"non-standard JSON constant {name}")  # NaN / Infinity are not JSON
