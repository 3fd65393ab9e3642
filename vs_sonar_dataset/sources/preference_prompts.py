"""The prompts of preference-pair datasets (HH-RLHF, UltraFeedback, Stack-Exchange-Preferences, ...) as
candidates: one row per distinct prompt (by default the first user message of the pair).

Each entry of `sources` is a Hub dataset (`dataset`, `dataset_config`, `split`, streamed, so that `max_pairs`
does not download everything) or local .jsonl/.parquet `files` read in the order given, or
`dataset = "preference-sample/<name>"`, a sample file written for this project and shipped in the package
(<name>: hh_rlhf_style, ultrafeedback_style, stack_exchange_style). `max_pairs` caps the pairs (rows) read from
that source, in file or stream order.

A row is one pair. Its prompt messages come from the first of these fields it has:
  prefix  a list of {"role", "content"} messages, or {"messages": [...]}, taken as is (the conversation
          shape: `prefix` ends with the user turn that `chosen` and `rejected` answer);
  prompt  a string: one user message (the legacy and UltraFeedback-binarized shapes); a string in HH-RLHF's
          raw form is split into turns as below;
  chosen  a message list (its messages through the last user turn), or HH-RLHF's raw form, a string of
          "\\n\\nHuman: ...\\n\\nAssistant: ..." turns: Human turns become user messages, Assistant turns
          assistant messages (each stripped of surrounding whitespace), through the last Human turn;
  question  a string: Stack-Exchange-Preferences' Hub rows, a question with its ranked `answers` (the pairs);
          the question is the user message, and the row counts as one pair.
A row with none of these fields is an error naming the file and line (or the dataset and row number).
A Stack Exchange question is HTML: its text is taken without the markup (block elements become line breaks,
entities are decoded).

The prompt text is the FIRST message whose role is "user" (`prompt_turn = "first"`, the default: in a
multi-turn conversation it says what the conversation is about, and it is the message users of these datasets
key prompts by), or the LAST one, the turn that `chosen` and `rejected` answer (`prompt_turn = "last"`); the
other turns stay in `prefix`. Surrounding whitespace is removed (a prompt padded with a line break is the same
prompt; inner whitespace is kept). Its id is the first 16 hex digits of md5 of that text's UTF-8 bytes. Pairs
are dropped and counted when their prompt messages are not a list of role/content strings (`malformed`), hold
no user message (`no_user_message`), end with another role's turn, so that the pair answers no user turn
(`last_turn_not_user`: a `prefix` that ends with an assistant turn), or the prompt is empty or only whitespace
(`empty_message`).

Candidate columns: id (string), text (string, the first user message), source (string, the `name` of the first
source it was seen in), prefix (string, JSON of the prompt messages of its first pair: sorted keys, not
ASCII-escaped), pair_count (int64, pairs across all sources with this first message), sources (list<string>,
the sorted distinct source names it appears in). Rows come in order of first occurrence (sources in the order
configured). All distinct prompts are held in memory until the end (pair_count needs every pair): cap large
sources with max_pairs.

Stats (manifest and summary.json): pairs_read {name: n}, pairs_kept, duplicate_pairs (kept pairs whose prompt
an earlier pair had), multi_turn (kept pairs with more than one user turn), padded (kept pairs whose prompt had
surrounding whitespace), rows, rows_first_seen {name: n}, dropped {malformed, no_user_message,
last_turn_not_user, empty_message}, capped [names of sources that had more pairs than max_pairs].

Resuming: an output that is complete, with the same configuration and local inputs, is left alone; an
incomplete one is removed and redone from the start; a complete output of another configuration is refused.
"""

import copy
import hashlib
import json
import re
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Iterator, Literal

import pyarrow as pa
from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from tqdm import tqdm

from ..core.errors import UserError
from ..core.outputs import check_output_dir
from ..core.settings import Table
from ..core.shards import Manifest, ShardWriter, write_json_atomic, xxh3_file
from .base import SUMMARY, CardInfo, SourceConfig, SourceContext, finished_output

KIND = "preference_prompts"
ENVIRONMENT = "main"
TEXT_COLUMN = "text"

SAMPLE_PREFIX = "preference-sample/"
SAMPLE_DIR = Path(__file__).resolve().parent.parent / "data" / "preference_sample"
SAMPLE_NAMES = ("hh_rlhf_style", "ultrafeedback_style", "stack_exchange_style")
SHARD_ROWS = 4096
REASONS = ("malformed", "no_user_message", "last_turn_not_user", "empty_message")


class PreferenceSource(Table):
    name: str = Field(min_length=1)  # the `source` column value, e.g. "hh-rlhf"
    dataset: str = ""  # Hub id, or "preference-sample/<name>"
    files: list[str] = Field([], validate_default=True)  # local .jsonl / .parquet files, instead of a dataset
    dataset_config: str = ""
    split: str = "train"
    max_pairs: int | None = Field(None, ge=1)  # pairs read from this source at most, in file/stream order

    @field_validator("dataset")
    @classmethod
    def _known_sample(cls, dataset: str) -> str:
        if dataset.startswith(SAMPLE_PREFIX) and dataset[len(SAMPLE_PREFIX):] not in SAMPLE_NAMES:
            raise PydanticCustomError("config", "the preference samples are {names}",
                                      {"names": ", ".join(SAMPLE_PREFIX + n for n in SAMPLE_NAMES)})
        return dataset

    @field_validator("files")
    @classmethod
    def _one_origin(cls, files: list[str], info: ValidationInfo) -> list[str]:
        if "dataset" in info.data and bool(info.data["dataset"]) == bool(files):
            raise PydanticCustomError("config", "give exactly one of dataset (a Hub id) and files (local files) "
                                      "for source '{name}'", {"name": info.data.get("name", "?")})
        return files


class Config(SourceConfig):
    kind: Literal["preference_prompts"] = "preference_prompts"
    sources: list[PreferenceSource] = Field(min_length=1)
    # which user turn of a multi-turn pair is the prompt: the first (what the conversation is about) or the last
    # (the turn chosen and rejected answer)
    prompt_turn: Literal["first", "last"] = "first"

    @field_validator("sources")
    @classmethod
    def _distinct_names(cls, sources: list[PreferenceSource]) -> list[PreferenceSource]:
        names = [s.name for s in sources]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise PydanticCustomError("config", "source names must differ (repeated: {repeated})",
                                      {"repeated": ", ".join(repeated)})
        return sources


def schema(config: Config) -> pa.Schema:
    return pa.schema([("id", pa.string()), ("text", pa.string()), ("source", pa.string()), ("prefix", pa.string()),
                      ("pair_count", pa.int64()), ("sources", pa.list_(pa.string()))])


def prompt_id(text: str) -> str:
    """md5 of the message exactly as stored, first 16 hex digits."""
    return hashlib.md5(text.encode("utf-8")).hexdigest()[:16]


# --- the prompt of a pair ----------------------------------------------------------------------------------

_HH_TURN = re.compile(r"\n\n(Human|Assistant):")
_HH_ROLES = {"Human": "user", "Assistant": "assistant"}


def hh_turns(text: str) -> list[dict] | None:
    """HH-RLHF's raw "\\n\\nHuman: ...\\n\\nAssistant: ..." as messages; None when it is not in that form."""
    parts = _HH_TURN.split(text)
    if len(parts) < 3 or parts[0].strip():
        return None
    return [{"role": _HH_ROLES[role], "content": content.strip()} for role, content in zip(parts[1::2], parts[2::2])]


def _through_last_user(messages: list) -> list:
    last = max((i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "user"), default=-1)
    return messages[:last + 1] if last >= 0 else messages


def prompt_messages(row: dict, where: str) -> list | None:
    """The prompt messages of a pair (not yet checked), or None when a field has the wrong type."""
    if "prefix" in row:
        prefix = row["prefix"]
        return prefix.get("messages") if isinstance(prefix, dict) else prefix
    if "prompt" in row:
        prompt = row["prompt"]
        if not isinstance(prompt, str):
            return None
        turns = hh_turns(prompt) if prompt.lstrip(" ").startswith("\n\nHuman:") else None
        return _through_last_user(turns) if turns else [{"role": "user", "content": prompt}]
    if "chosen" in row:
        chosen = row["chosen"]
        if isinstance(chosen, str):
            turns = hh_turns(chosen)
            return _through_last_user(turns) if turns else None
        return _through_last_user(chosen) if isinstance(chosen, list) else None
    if "question" in row:
        question = row["question"]
        return [{"role": "user", "content": html_text(question)}] if isinstance(question, str) else None
    raise UserError(f"{where}: a pair needs a `prefix` (messages), a `prompt` (string), a `chosen` (messages or "
                    f"HH-RLHF text) or a `question` (string) field; this row has {sorted(row)}")


class _HtmlText(HTMLParser):
    """The text of an HTML fragment: block elements end lines, entities are decoded (convert_charrefs)."""
    BLOCKS = {"p", "br", "div", "li", "pre", "blockquote", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "ul",
              "ol", "table"}

    def __init__(self):
        super().__init__()
        self.parts: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data):
        self.parts.append(data)


def html_text(html: str) -> str:
    """A Stack Exchange question without its markup: one line per block, no blank runs, no trailing spaces."""
    parser = _HtmlText()
    parser.feed(html)
    parser.close()
    lines = [line.rstrip() for line in "".join(parser.parts).split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def prompt_turn(messages, turn: str = "first") -> tuple[str | None, str | None]:
    """(the prompt turn as stored: the first or the last user turn, None) or (None, the reason the pair is
    dropped)."""
    if not isinstance(messages, list) or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in messages):
        return None, "malformed"
    users = [m["content"] for m in messages if m["role"] == "user"]
    if not users:
        return None, "no_user_message"
    if messages[-1]["role"] != "user":
        return None, "last_turn_not_user"
    text = users[0] if turn == "first" else users[-1]
    if not text.strip():
        return None, "empty_message"
    return text, None


# --- reading -----------------------------------------------------------------------------------------------

def _jsonl_rows(path: Path) -> Iterator[tuple[str, dict]]:
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                raise UserError(f"{where}: not UTF-8 text (byte {e.start} of the line)") from None
            except json.JSONDecodeError as e:
                raise UserError(f"{where}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise UserError(f"{where}: expected a JSON object per line")
            yield where, row


def _parquet_rows(path: Path) -> Iterator[tuple[str, dict]]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a bad file
        raise UserError(f"{path}: unreadable Parquet ({e})") from None
    index = 0
    for batch in parquet.iter_batches(batch_size=4096):
        for row in batch.to_pylist():
            yield f"{path}: row {index}", row
            index += 1


def _file_rows(path: Path) -> Iterator[tuple[str, dict]]:
    if not path.is_file():
        raise UserError(f"{path}: no such file (preference_prompts files)")
    if path.suffix == ".jsonl":
        return _jsonl_rows(path)
    if path.suffix == ".parquet":
        return _parquet_rows(path)
    raise UserError(f"{path}: expected a .jsonl or .parquet file")


def _hub_rows(source: PreferenceSource) -> Iterator[tuple[str, dict]]:
    label = f"{source.dataset} ({source.dataset_config or 'default'}, {source.split})"
    try:
        import datasets
    except ImportError:
        raise UserError(f"preference_prompts: loading {source.dataset} from the Hub needs the `datasets` package; "
                        "install it or give local files") from None
    try:
        rows = iter(datasets.load_dataset(source.dataset, source.dataset_config or None, split=source.split,
                                          streaming=True))
    except Exception as e:  # network, auth, a missing config or split: all are the user's to fix
        raise UserError(f"preference_prompts: could not load {label} from the Hub: "
                        f"{type(e).__name__}: {e}".splitlines()[0]) from None
    index = 0
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except Exception as e:  # only the stream's own errors: what the rows become is checked below
            raise UserError(f"preference_prompts: reading {label} failed at row {index}: "
                            f"{type(e).__name__}: {e}".splitlines()[0]) from None
        yield f"{source.dataset}[{source.split}] row {index}", row
        index += 1


def source_rows(source: PreferenceSource) -> Iterator[tuple[str, dict]]:
    if source.files:
        for path in source.files:
            yield from _file_rows(Path(path))
    elif source.dataset.startswith(SAMPLE_PREFIX):
        yield from _jsonl_rows(SAMPLE_DIR / f"{source.dataset[len(SAMPLE_PREFIX):]}.jsonl")
    else:
        yield from _hub_rows(source)


# --- the run -----------------------------------------------------------------------------------------------

def empty_stats(config: Config) -> dict:
    names = [s.name for s in config.sources]
    return {"pairs_read": {n: 0 for n in names}, "pairs_kept": 0, "duplicate_pairs": 0, "multi_turn": 0,
            "padded": 0, "rows": 0,
            "rows_first_seen": {n: 0 for n in names}, "dropped": {reason: 0 for reason in REASONS}, "capped": []}


def collect(config: Config, stats: dict, progress: bool = False) -> dict[str, dict]:
    """first user message -> its row (without id), in first-occurrence order."""
    found: dict[str, dict] = {}
    bar = tqdm(unit=" pairs", desc=KIND, disable=not progress, dynamic_ncols=True)
    try:
        for source in config.sources:
            for number, (where, row) in enumerate(source_rows(source)):
                if source.max_pairs is not None and number >= source.max_pairs:
                    stats["capped"].append(source.name)  # one row past the cap: the source had more
                    break
                stats["pairs_read"][source.name] += 1
                bar.update()
                messages = prompt_messages(row, where)
                stored, reason = prompt_turn(messages, config.prompt_turn)
                if reason is not None:
                    stats["dropped"][reason] += 1
                    continue
                text = stored.strip()
                stats["pairs_kept"] += 1
                stats["multi_turn"] += sum(m["role"] == "user" for m in messages) > 1
                stats["padded"] += text != stored
                entry = found.get(text)
                if entry is None:
                    found[text] = {"text": text, "source": source.name, "pair_count": 1, "sources": {source.name},
                                   "prefix": json.dumps(messages, sort_keys=True, ensure_ascii=False)}
                    stats["rows_first_seen"][source.name] += 1
                else:
                    entry["pair_count"] += 1
                    entry["sources"].add(source.name)
                    stats["duplicate_pairs"] += 1
    finally:
        bar.close()
    stats["rows"] = len(found)
    return found


def local_inputs(config: Config) -> dict:
    """xxh3-128 of every local input file: a complete output of other inputs is not taken for this one."""
    found = {}
    for source in config.sources:
        for path in source.files:
            if not Path(path).is_file():
                raise UserError(f"{path}: no such file (preference_prompts source {source.name!r})")
            found[path] = xxh3_file(path)
    return found


def resolved_config(config: Config) -> dict:
    return {"source": config.model_dump(mode="json"), "inputs": local_inputs(config)}


def run(config: Config, out_dir, context: SourceContext) -> Manifest:
    out_dir = check_output_dir(out_dir, "candidates")
    started = time.monotonic()
    resolved = resolved_config(config)
    finished = finished_output(out_dir, resolved)
    if finished is not None:
        return finished
    stats = empty_stats(config)
    found = collect(config, stats, context.progress)
    if not found:  # an empty or all-blank input: nothing to embed is an error, not a complete output
        dropped = ", ".join(f"{reason} {n}" for reason, n in stats["dropped"].items() if n) or "none"
        raise UserError(f"source {KIND}: no prompts: {sum(stats['pairs_read'].values())} pairs read "
                        f"({', '.join(f'{k} {v}' for k, v in stats['pairs_read'].items())}), dropped: {dropped}")
    writer = ShardWriter(out_dir, "candidates", resolved, schema=schema(config), text_column=TEXT_COLUMN)
    table_schema = schema(config)
    entries = list(found.values())
    for start in range(0, len(entries), SHARD_ROWS):
        rows = [{**entry, "id": prompt_id(entry["text"]), "sources": sorted(entry["sources"])}
                for entry in entries[start:start + SHARD_ROWS]]
        writer.write(pa.Table.from_pylist(rows, schema=table_schema), copy.deepcopy(stats))
    manifest = writer.finish(stats)
    write_json_atomic(out_dir / SUMMARY, {"status": "complete", "shards": len(manifest.shards), **stats,
                                          "wall_s": round(time.monotonic() - started, 3)})
    return manifest


# --- the card ----------------------------------------------------------------------------------------------

HH_RLHF = {
    "name": "Anthropic HH-RLHF",
    "url": "https://huggingface.co/datasets/Anthropic/hh-rlhf",
    "license": "mit",
    "citation": ("@misc{bai2022training,\n"
                 "  title={Training a Helpful and Harmless Assistant with Reinforcement Learning from Human "
                 "Feedback},\n"
                 "  author={Yuntao Bai and Andy Jones and Kamal Ndousse and Amanda Askell and Anna Chen and Nova "
                 "DasSarma and Dawn Drain and Stanislav Fort and Deep Ganguli and Tom Henighan and Nicholas Joseph "
                 "and Saurav Kadavath and Jackson Kernion and Tom Conerly and Sheer El-Showk and Nelson Elhage and "
                 "Zac Hatfield-Dodds and Danny Hernandez and Tristan Hume and Scott Johnston and Shauna Kravec and "
                 "Liane Lovitt and Neel Nanda and Catherine Olsson and Dario Amodei and Tom Brown and Jack Clark "
                 "and Sam McCandlish and Chris Olah and Ben Mann and Jared Kaplan},\n"
                 "  year={2022},\n  eprint={2204.05862},\n  archivePrefix={arXiv},\n  primaryClass={cs.CL}\n}"),
}
_ULTRAFEEDBACK_CITATION = (
    "@misc{cui2023ultrafeedback,\n"
    "  title={UltraFeedback: Boosting Language Models with High-quality Feedback},\n"
    "  author={Ganqu Cui and Lifan Yuan and Ning Ding and Guanming Yao and Wei Zhu and Yuan Ni and Guotong Xie and "
    "Zhiyuan Liu and Maosong Sun},\n"
    "  year={2023},\n  eprint={2310.01377},\n  archivePrefix={arXiv},\n  primaryClass={cs.CL}\n}")
ULTRAFEEDBACK_BINARIZED = {"name": "UltraFeedback (binarized)",
                           "url": "https://huggingface.co/datasets/HuggingFaceH4/ultrafeedback_binarized",
                           "license": "mit", "citation": _ULTRAFEEDBACK_CITATION}
ULTRAFEEDBACK = {"name": "UltraFeedback", "url": "https://huggingface.co/datasets/openbmb/UltraFeedback",
                 "license": "mit", "citation": _ULTRAFEEDBACK_CITATION}
STACK_EXCHANGE = {
    "name": "Stack Exchange Preferences",
    "url": "https://huggingface.co/datasets/HuggingFaceH4/stack-exchange-preferences",
    "license": "cc-by-sa-4.0",
    "citation": """@online{h4stackexchange,
  author={Lambert, Nathan and Tunstall, Lewis and Rajani, Nazneen and Thrush, Tristan},
  title={HuggingFace H4 Stack Exchange Preference Dataset},
  year={2023},
  url={https://huggingface.co/datasets/HuggingFaceH4/stack-exchange-preferences}
}""",
}
KNOWN_DATASETS = {"Anthropic/hh-rlhf": HH_RLHF, "HuggingFaceH4/ultrafeedback_binarized": ULTRAFEEDBACK_BINARIZED,
                  "openbmb/UltraFeedback": ULTRAFEEDBACK, "HuggingFaceH4/stack-exchange-preferences": STACK_EXCHANGE}


def _dataset_entry(source: PreferenceSource) -> dict:
    if source.files:
        return {"name": f"local files ({source.name})", "url": "",
                "license": "not stated: the publisher must state the license of the local files", "citation": ""}
    if source.dataset.startswith(SAMPLE_PREFIX):
        return {"name": f"vs-sonar preference sample {source.dataset[len(SAMPLE_PREFIX):]} (written for the project)",
                "url": "", "license": "mit", "citation": ""}
    if source.dataset in KNOWN_DATASETS:
        return dict(KNOWN_DATASETS[source.dataset])
    return {"name": source.dataset, "url": f"https://huggingface.co/datasets/{source.dataset}",
            "license": "see the dataset's card", "citation": ""}


def _origin(source: PreferenceSource, stats: dict) -> str:
    where = "local files" if source.files else f"{source.dataset} ({source.split})"
    capped = (f", first {source.max_pairs:,} pairs" if source.name in stats.get("capped", []) else "")
    return f"{source.name} ({where}{capped})"


def card(config: Config, stats: dict) -> CardInfo:
    counts = ""
    if "rows" in stats:
        dropped = sum(stats.get("dropped", {}).values())
        counts = (f" {stats.get('pairs_kept', 0):,} pairs gave {stats['rows']:,} distinct prompts; {dropped:,} "
                  "pairs without a usable user message were dropped.")
    if any(s.files for s in config.sources):
        counts += " Some prompts come from local files, whose license the publisher must state."
    description = (f"The {config.prompt_turn} user message of each preference pair (chosen/rejected) of "
                   f"{'; '.join(_origin(s, stats) for s in config.sources)}, once per distinct message (keyed by "
                   "md5 of the text without surrounding whitespace), with the prompt messages of its first pair, "
                   f"how many pairs share it and in which sources.{counts}")
    entries: list[dict] = []
    for source in config.sources:
        entry = _dataset_entry(source)
        if entry not in entries:
            entries.append(entry)
    return CardInfo(
        title="Preference-pair prompts with text embeddings", description=description,
        tags=["preference-prompts", "prompts", "rlhf"], datasets=entries, task_categories=["feature-extraction"],
        fields={"id": "string | first 16 hex digits of md5 of the text; unique",
                "text": f"string | the {config.prompt_turn} user message of the pairs, without surrounding "
                        "whitespace (Stack Exchange questions without their HTML markup)",
                "source": "string | the source it was first seen in",
                "prefix": "string | JSON of the prompt messages of its first pair (the conversation before the "
                          "answers)",
                "pair_count": "int64 | pairs across all sources whose prompt this is",
                "sources": "list of string | the sources it appears in"},
        method=["**Prompts**: every pair of "
                + "; ".join(f"`{s.name}`" + (f" (first {s.max_pairs:,} pairs)" if s.max_pairs else "")
                            for s in config.sources)
                + f" is read in order; its {config.prompt_turn} user message is the prompt, without surrounding "
                  "whitespace. Pairs without one, or whose last turn is not a user turn, are dropped and "
                  "counted; repeated prompts become one row that counts its pairs."],
        limitations=["Prompts are users' messages as the source datasets hold them: they can be offensive, "
                     "personal or wrong, and are not filtered for that here.",
                     f"Only the {config.prompt_turn} user message is embedded; the other turns are in `prefix`, "
                     "not in the vector.",
                     "A source read up to `max_pairs` is a prefix of it, not a random sample."])
