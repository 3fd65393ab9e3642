"""Where seed problems come from. A source yields Problem records with stable ids; the generate stage only
needs `load() -> list[Problem]` and `describe() -> dict`, so other sources (plain text corpora, preference
prompts) plug in beside GSM8K without touching the stage.

GSM8K rows: {"question": str, "answer": "... #### <final answer>"}; problem id = "<split>-<index:05d>".
"""

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ...core.errors import UserError

GSM8K_HUB_ID = "openai/gsm8k"
# `gsm8k = "gsm8k-sample"`: the first 1,000 train problems, shipped in the package with GSM8K's MIT license, so
# the demo runs offline; a real release loads the whole set from the Hub
GSM8K_SAMPLE = "gsm8k-sample"
GSM8K_SAMPLE_DIR = Path(__file__).resolve().parents[2] / "data" / "gsm8k"
GSM8K_ENV = "VS_SONAR_GSM8K"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class Problem:
    id: str  # stable across runs: split + index in that split
    question: str
    final_answer: str  # what follows "####" in GSM8K; "" when the source has none


class ProblemSource(Protocol):
    def load(self) -> list[Problem]: ...

    def describe(self) -> dict: ...


def final_answer(answer: str) -> str:
    """GSM8K's answer after '####' (commas dropped: '1,200' and '1200' are the same number)."""
    if "####" not in answer:
        raise ValueError("no '####' marker")
    value = answer.rsplit("####", 1)[1].strip().replace(",", "")
    if not value:
        raise ValueError("empty final answer after '####'")
    return value


def fingerprint(problems: list[Problem]) -> str:
    """sha256 over ids, questions and answers: a resumed run must see exactly the same problems."""
    digest = hashlib.sha256()
    for p in problems:
        digest.update(json.dumps([p.id, p.question, p.final_answer]).encode())
    return digest.hexdigest()


def _read_rows(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except Exception as e:  # pyarrow raises several types for a bad file
            raise UserError(f"{path}: unreadable Parquet ({e})") from None
    rows = []
    for line_no, line in enumerate(path.read_bytes().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise UserError(f"{path}:{line_no}: not UTF-8 text (byte {e.start} of the line); "
                            "convert the file to UTF-8") from None
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{line_no}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise UserError(f"{path}:{line_no}: expected a JSON object per line")
        rows.append(row)
    return rows


def problems_from_rows(rows: list[dict], split: str, where: str) -> list[Problem]:
    problems = []
    for index, row in enumerate(rows):
        question, answer = row.get("question"), row.get("answer")
        if not isinstance(question, str) or not question.strip() or not isinstance(answer, str):
            raise UserError(f"{where}: row {index} needs string fields 'question' and 'answer'")
        try:
            value = final_answer(answer)
        except ValueError as e:
            raise UserError(f"{where}: row {index}: {e}") from None
        problems.append(Problem(f"{split}-{index:05d}", question.strip(), value))
    if not problems:
        raise UserError(f"{where}: no problems")
    return problems


class Gsm8kSource:
    """GSM8K from the Hub (`openai/gsm8k`, config `main`) or from local files.

    location: a Hub dataset id, a .jsonl/.parquet file (its split is taken from the file name, e.g.
    train.jsonl), a directory holding <split>.jsonl or <split>.parquet for each requested split, or
    "gsm8k-sample" for the sample shipped in the package (train only).
    """

    def __init__(self, location: str = GSM8K_HUB_ID, splits: tuple[str, ...] = ("train",)):
        self.location = location
        self.splits = tuple(splits)

    def is_local(self) -> bool:
        return self.location == GSM8K_SAMPLE or Path(self.location).exists() or not _HUB_ID.match(self.location)

    def describe(self) -> dict:
        return {"kind": "gsm8k", "location": self.location, "splits": list(self.splits)}

    def load(self) -> list[Problem]:
        problems: list[Problem] = []
        for split in self.splits:
            problems += self._load_local(split) if self.is_local() else self._load_hub(split)
        return problems

    def _load_local(self, split: str) -> list[Problem]:
        path = GSM8K_SAMPLE_DIR if self.location == GSM8K_SAMPLE else Path(self.location)
        if not path.exists():
            raise UserError(f"GSM8K: {path} does not exist (give a .jsonl/.parquet file, a directory "
                            f"holding {split}.jsonl, or a Hub id such as {GSM8K_HUB_ID})")
        if path.is_dir():
            candidates = [path / f"{split}.jsonl", path / f"{split}.parquet"]
            found = [c for c in candidates if c.is_file()]
            if not found:
                raise UserError(f"GSM8K: {path} holds neither {split}.jsonl nor {split}.parquet")
            path = found[0]
        elif path.suffix not in (".jsonl", ".parquet"):
            raise UserError(f"GSM8K: {path}: expected a .jsonl or .parquet file")
        elif len(self.splits) > 1:
            raise UserError(f"GSM8K: {path} is one file; it cannot provide splits {list(self.splits)}")
        elif path.stem in ("train", "test") and path.stem != split:
            raise UserError(f"GSM8K: {path} looks like the {path.stem} split, the config asks for {split!r}")
        return problems_from_rows(_read_rows(path), split, str(path))

    def _load_hub(self, split: str) -> list[Problem]:
        try:
            import datasets
        except ImportError:
            raise UserError(f"GSM8K: loading {self.location} from the Hub needs the `datasets` package; "
                            f"install it or pass a local copy (--gsm8k PATH or {GSM8K_ENV})") from None
        try:
            rows = datasets.load_dataset(self.location, "main", split=split)
        except Exception as e:  # network, auth, missing split: all are the user's to fix
            raise UserError(f"GSM8K: could not load {self.location} (main, {split}) from the Hub: "
                            f"{type(e).__name__}: {e}".splitlines()[0]) from None
        return problems_from_rows(list(rows), split, f"{self.location}[{split}]")


def resolve_gsm8k_location(cli_value: str | None) -> str | None:
    """--gsm8k, else $VS_SONAR_GSM8K, else None: the config's own `gsm8k` (default: the Hub) then stays."""
    return cli_value or os.environ.get(GSM8K_ENV) or None
