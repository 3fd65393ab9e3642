"""The Verbalized Sampling (VS) prompt and the plan of requests.

Each request shows 3-5 GSM8K problems and asks for N meta-cognitive instructions (strategies for problems
like these, never solutions), each with the probability the model gives it. The template is versioned and
its sha256 (`template_hash`) is stored with every row, so a change of wording is visible in the data.

Request i is fully determined by (run seed, i): its sampling seed and its problems. Resumed runs therefore
send exactly the requests an uninterrupted run would have sent.
"""

import hashlib
import json
import random
from dataclasses import dataclass

from .problems import Problem

TEMPLATE_VERSION = "vs-metacog-v1"

SYSTEM_TEMPLATE = """\
You write meta-cognitive instructions for math reasoning: short, general strategies a student can apply to \
a whole family of word problems. You never solve the problems you are shown."""

USER_TEMPLATE = """\
Here are {num_problems} grade-school math word problems:

{problems}

Do not solve them. Instead, write {num_candidates} different instructions that would help someone solve \
problems like these. Each instruction must be a general strategy in plain English (one or two sentences, \
{min_chars} to {max_chars} characters) that does not mention the names, numbers or answers of the problems \
above.

Sample the instructions at random from the full distribution of instructions you could give, including \
unusual ones from its tails. For each instruction, state its probability: a number between 0 and 1 that \
estimates how likely you are to give this instruction.

Reply with JSON only: {{"responses": [{{"text": "<instruction>", "probability": <number>}}, ...]}}"""

# Printable ASCII except '"' and '\\': keeps the text free of escapes and control characters. A `pattern`
# rather than maxLength because maxLength let raw control characters through in vLLM's structured output.
TEXT_CHARS = r"[ !#-\[\]-~]"
# xgrammar 0.2.8 (vLLM's default structured-output backend) fails to compile a repetition bound above 128,
# so longer ranges are written as a chain of bounded repetitions.
MAX_REPEAT = 128


def length_pattern(chars: str, min_len: int, max_len: int) -> str:
    """Regex for min_len..max_len characters of class `chars`, no repetition bound above MAX_REPEAT."""
    pieces, mandatory, optional = [], min_len, max_len - min_len
    while mandatory > 0:
        step = min(mandatory, MAX_REPEAT)
        pieces.append(f"{chars}{{{step}}}")
        mandatory -= step
    while optional > 0:
        step = min(optional, MAX_REPEAT)
        pieces.append(f"{chars}{{0,{step}}}")
        optional -= step
    return "^" + "".join(pieces) + "$"


def template_hash() -> str:
    payload = json.dumps({"version": TEMPLATE_VERSION, "system": SYSTEM_TEMPLATE, "user": USER_TEMPLATE,
                          "text_pattern": length_pattern(TEXT_CHARS, 1, 2 * MAX_REPEAT)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def response_schema(num_candidates: int, min_chars: int, max_chars: int) -> dict:
    """JSON schema the decoder is held to (the parser checks everything again: HTTP backends may not)."""
    return {
        "type": "object",
        "properties": {
            "responses": {
                "type": "array",
                "minItems": num_candidates,
                "maxItems": num_candidates,
                "items": {
                    "type": "object",
                    "properties": {
                        "text": {"type": "string", "pattern": length_pattern(TEXT_CHARS, min_chars, max_chars)},
                        "probability": {"type": "number", "minimum": 0, "maximum": 1},
                    },
                    "required": ["text", "probability"],
                    "additionalProperties": False,
                },
            }
        },
        "required": ["responses"],
        "additionalProperties": False,
    }


def format_problems(problems: list[Problem]) -> str:
    return "\n\n".join(f"Problem {n}: {p.question}" for n, p in enumerate(problems, 1))


def build_messages(problems: list[Problem], num_candidates: int, min_chars: int, max_chars: int) -> list[dict]:
    user = USER_TEMPLATE.format(num_problems=len(problems), problems=format_problems(problems),
                                num_candidates=num_candidates, min_chars=min_chars, max_chars=max_chars)
    return [{"role": "system", "content": SYSTEM_TEMPLATE}, {"role": "user", "content": user}]


@dataclass(frozen=True)
class Request:
    index: int
    seed: int  # sampling seed of this request alone (one seed shared by a batch repeats completions)
    problems: tuple[Problem, ...]
    messages: list


def request_seed(run_seed: int, index: int) -> int:
    """A 62-bit seed derived from (run seed, request index) only: fits int64 and vLLM's seed field."""
    digest = hashlib.sha256(f"vs-sonar/generate/{run_seed}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 2


def plan_request(index: int, run_seed: int, problems: list[Problem], min_problems: int, max_problems: int,
                 num_candidates: int, min_chars: int, max_chars: int) -> Request:
    seed = request_seed(run_seed, index)
    rng = random.Random(seed)
    count = rng.randint(min_problems, max_problems)
    chosen = tuple(problems[i] for i in rng.sample(range(len(problems)), count))
    return Request(index, seed, chosen, build_messages(list(chosen), num_candidates, min_chars, max_chars))
