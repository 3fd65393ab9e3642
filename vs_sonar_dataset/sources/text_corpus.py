"""Paragraphs of a plain-text corpus (WikiText-2 by default) as candidates, inside a token window.

Input: a Hub dataset (`dataset`, `dataset_config`, one `text_field` column, read one split at a time), local
files per split (`files = {train = ["a.tokens"], ...}`: plain text, .jsonl or .parquet), or
`dataset = "corpus-sample"`, the WikiText-shaped sample written for this project and shipped in the package.
Rows of a Hub dataset or of a .jsonl/.parquet file are read as lines of one stream, in order (WikiText's Hub
copy holds one line per row); the end of a file ends a paragraph, the end of a row does not.

Paragraphs: consecutive non-empty lines are joined into one paragraph; an empty (or all-space) line ends it.
With `line_is_paragraph`, every non-empty line is a paragraph of its own: WikiText itself writes one Wikipedia
paragraph per line, so the default (blank lines) gives WikiText's sections, not its paragraphs.

WikiText clean-up (`wikitext_cleanup`, on by default), in this order:
  - heading lines (` = Title = `, ` = = Section = = `, any depth) are dropped and end the paragraph;
  - `@-@`, `@.@`, `@,@` join their neighbours (`well @-@ known` -> `well-known`, `3 @.@ 5` -> `3.5`,
    `1 @,@ 000` -> `1,000`); `<unk>` is removed;
  - the spaces WikiText's tokenizer adds are taken out where that is unambiguous: before `, . ; ! ? % ) ] }`
    standing alone, before the clitics `'s 're 've 'll 'd 'm n't`, after `( [ {`, and before a `:` unless a
    digit precedes it (times and scores such as `2 : 1` keep theirs). Quotes are left as they are (an opening
    and a closing `"` look alike), and so is a lone `'` (a plural possessive or a quote);
  - whitespace is collapsed to single spaces.
Without clean-up only whitespace is collapsed.

Filters, in this order (each paragraph is dropped for the first that applies): `empty` (nothing left after
clean-up), `symbols` (more than `max_symbol_share` of its non-space characters are punctuation, symbols or
digits: tables, scores, lists of dates), `too_short` / `too_long` (outside [min_tokens, max_tokens], inclusive,
counted by the encoder's tokenizer), `duplicate` (same `textnorm.text_id` as a kept paragraph of any split:
the first is kept). `max_rows` stops the run once that many paragraphs are kept.

Candidate columns: id (string, textnorm.text_id of text), text (string), source (string, `name`, by default
the dataset id, "corpus-sample" or "local"), split (string), paragraph_index (int64, the paragraph's position
in its split, counting dropped ones too), tokens (int64). Rows come in split order (as configured), then
paragraph order. Shards hold SHARD_ROWS rows.

Stats (manifest and summary.json): lines_read, heading_lines, paragraphs_read, kept, dropped {empty, symbols,
too_short, too_long, duplicate}, per_split {split: {paragraphs_read, kept}}, max_rows_reached. Paragraphs are
judged in batches of TOKEN_BATCH (one count_tokens call each), so when max_rows stops the run, lines_read and
heading_lines include the lines of the batch read ahead.

Resuming: the whole run is one cheap pass, so an output that is complete, with the same configuration, inputs
and tokenizer, is left alone; an incomplete one (a run that stopped part way) is removed and redone from the
start; a complete output of another configuration is refused (use a new folder).
"""

import copy
import json
import re
import time
import unicodedata
from pathlib import Path
from typing import Iterable, Iterator, Literal

import pyarrow as pa
from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from tqdm import tqdm

from ..core.errors import UserError
from ..core.outputs import check_output_dir
from ..core.shards import Manifest, ShardWriter, write_json_atomic, xxh3_file
from ..core.textnorm import text_id
from .base import SUMMARY, CardInfo, SourceConfig, SourceContext, finished_output

KIND = "text_corpus"
ENVIRONMENT = "embed"  # the token window needs the encoder's tokenizer
TEXT_COLUMN = "text"
USES_TOKENIZER = True  # the token window counts with the [embed] encoder's tokenizer

SAMPLE = "corpus-sample"
SAMPLE_DIR = Path(__file__).resolve().parent.parent / "data" / "corpus_sample"
SAMPLE_FILES = {"train": "wiki.train.tokens", "validation": "wiki.valid.tokens", "test": "wiki.test.tokens"}
SHARD_ROWS = 4096
TOKEN_BATCH = 512  # paragraphs per count_tokens call
REASONS = ("empty", "symbols", "too_short", "too_long", "duplicate")
# fixed texts whose token counts fingerprint the tokenizer: a complete output made with another one is redone
TOKENIZER_PROBE = ["The quick brown fox jumps over the lazy dog.",
                   "Paragraphs of an encyclopedia, measured in tokens (about 1,000 of them).",
                   "Überraschung: naïve café owners' déjà vu — 3.5 km²!"]


class Config(SourceConfig):
    kind: Literal["text_corpus"] = "text_corpus"
    dataset: str = "Salesforce/wikitext"  # Hub id, or "corpus-sample"; not read when `files` is given
    dataset_config: str = "wikitext-2-v1"
    splits: list[str] = Field(default_factory=lambda: ["train", "validation", "test"], min_length=1)
    files: dict[str, list[str]] = {}  # split -> local files read instead of the Hub, in `splits` order
    text_field: str = "text"  # the column of Hub, .jsonl and .parquet rows; plain text files are lines
    line_is_paragraph: bool = False
    wikitext_cleanup: bool = True
    min_tokens: int = Field(100, ge=1)
    max_tokens: int = Field(2000, ge=1)
    max_symbol_share: float = Field(0.5, ge=0.0, le=1.0)
    max_rows: int | None = Field(None, ge=1)
    name: str = ""  # the `source` column; "" = the dataset id ("local" for files)

    @field_validator("splits")
    @classmethod
    def _known_splits(cls, splits: list[str], info: ValidationInfo) -> list[str]:
        if len(set(splits)) != len(splits):
            raise PydanticCustomError("config", "a split is listed twice")
        missing = [split for split in splits if split not in SAMPLE_FILES]
        if info.data.get("dataset") == SAMPLE and missing:
            raise PydanticCustomError("config", "the corpus sample has splits {have}, not {missing}",
                                      {"have": list(SAMPLE_FILES), "missing": missing})
        return splits

    @field_validator("files")
    @classmethod
    def _files_of_splits(cls, files: dict[str, list[str]], info: ValidationInfo) -> dict[str, list[str]]:
        splits = info.data.get("splits", [])
        unknown = [split for split in files if split not in splits]
        if unknown:
            raise PydanticCustomError("config", "names split(s) {unknown} that are not in splits {splits}",
                                      {"unknown": unknown, "splits": splits})
        if any(not paths for paths in files.values()):
            raise PydanticCustomError("config", "every split needs at least one file")
        return files

    @field_validator("max_tokens")
    @classmethod
    def _window(cls, max_tokens: int, info: ValidationInfo) -> int:
        min_tokens = info.data.get("min_tokens", max_tokens)
        if min_tokens > max_tokens:
            raise PydanticCustomError("config", "is below min_tokens ({min_tokens})", {"min_tokens": min_tokens})
        return max_tokens

    def source_name(self) -> str:
        return self.name or ("local" if self.files else self.dataset)

    def read_splits(self) -> list[str]:
        """The splits read, in order: with local files, those of `splits` that have files."""
        return [split for split in self.splits if split in self.files] if self.files else list(self.splits)


def schema(config: Config) -> pa.Schema:
    return pa.schema([("id", pa.string()), ("text", pa.string()), ("source", pa.string()), ("split", pa.string()),
                      ("paragraph_index", pa.int64()), ("tokens", pa.int64())])


# --- WikiText clean-up -------------------------------------------------------------------------------------

_HEADING = re.compile(r"^\s*=(?:\s*=)*\s+\S.*?\s+=(?:\s*=)*\s*$")
_JOINER = re.compile(r"\s*@([-.,])@\s*")
_UNK = re.compile(r"<unk>")
_SPACES = re.compile(r"\s+")
_CLITIC = re.compile(r" +('s|'re|'ve|'ll|'d|'m|n't)(?=[\s,.;:!?]|$)")
_BEFORE = re.compile(r"(?<=\S) +([,.;!?%)\]}])(?=\s|$)")
_BEFORE_COLON = re.compile(r"(?<=[^\d\s]) +:(?=\s|$)")
_AFTER = re.compile(r"([(\[{]) +")


def is_heading(line: str) -> bool:
    return bool(_HEADING.match(line))


def clean_wikitext(text: str) -> str:
    text = _JOINER.sub(r"\1", text)
    text = _SPACES.sub(" ", _UNK.sub(" ", text))
    text = _CLITIC.sub(r"\1", text)
    text = _BEFORE.sub(r"\1", text)
    text = _BEFORE_COLON.sub(":", text)
    text = _AFTER.sub(r"\1", text)
    return _SPACES.sub(" ", text).strip()


def symbol_share(text: str) -> float:
    """The share of non-space characters that are punctuation, symbols or digits (0 for an empty text)."""
    chars = [c for c in text if not c.isspace()]
    if not chars:
        return 0.0
    return sum(unicodedata.category(c)[0] in "PSN" for c in chars) / len(chars)


def paragraphs(lines: Iterable[str], config: Config, stats: dict) -> Iterator[str]:
    """The raw paragraphs of one file (or one Hub split): lines joined by a space."""
    block: list[str] = []
    for line in lines:
        stats["lines_read"] += 1
        if config.wikitext_cleanup and is_heading(line):
            stats["heading_lines"] += 1
        elif line.strip():
            block.append(line.strip())
            if not config.line_is_paragraph:
                continue
        if block:
            yield " ".join(block)
            block = []
    if block:
        yield " ".join(block)


# --- reading -----------------------------------------------------------------------------------------------

def _text_lines(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8") as f:
        try:
            yield from (line.rstrip("\n") for line in f)
        except UnicodeDecodeError as e:
            raise UserError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); convert it to UTF-8") from None


def _row_lines(text, where: str) -> list[str]:
    if not isinstance(text, str):
        raise UserError(f"{where}: the text field is {type(text).__name__}, not a string")
    return text.splitlines() or [""]  # an empty row is an empty line


def _jsonl_lines(path: Path, field: str) -> Iterator[str]:
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                raise UserError(f"{path}:{line_no}: not UTF-8 text (byte {e.start} of the line)") from None
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{line_no}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict) or field not in row:
                raise UserError(f"{path}:{line_no}: expected a JSON object with a {field!r} field (text_field)")
            yield from _row_lines(row[field], f"{path}:{line_no}")


def _parquet_lines(path: Path, field: str) -> Iterator[str]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a bad file
        raise UserError(f"{path}: unreadable Parquet ({e})") from None
    if field not in parquet.schema_arrow.names:
        raise UserError(f"{path}: no column {field!r} (text_field); columns: {parquet.schema_arrow.names}")
    for batch in parquet.iter_batches(columns=[field]):
        for text in batch.column(0).to_pylist():
            yield from _row_lines(text, f"{path}: column {field!r}")


def _file_lines(path: Path, field: str) -> Iterator[str]:
    if not path.is_file():
        raise UserError(f"{path}: no such file (text_corpus files)")
    if path.suffix == ".jsonl":
        return _jsonl_lines(path, field)
    if path.suffix == ".parquet":
        return _parquet_lines(path, field)
    return _text_lines(path)


def _hub_lines(config: Config, split: str) -> Iterator[str]:
    try:
        import datasets
    except ImportError:
        raise UserError(f"text_corpus: loading {config.dataset} from the Hub needs the `datasets` package; "
                        "install it or give local files (files = {split = [paths]})") from None
    try:
        rows = datasets.load_dataset(config.dataset, config.dataset_config or None, split=split)
    except Exception as e:  # network, auth, a missing config or split: all are the user's to fix
        raise UserError(f"text_corpus: could not load {config.dataset} ({config.dataset_config or 'default'}, "
                        f"{split}) from the Hub: {type(e).__name__}: {e}".splitlines()[0]) from None
    if config.text_field not in rows.column_names:
        raise UserError(f"text_corpus: {config.dataset} has no column {config.text_field!r} (text_field); "
                        f"columns: {rows.column_names}")
    where = f"{config.dataset}[{split}]"
    for batch in rows.select_columns([config.text_field]).iter(batch_size=1000):
        for text in batch[config.text_field]:
            yield from _row_lines(text, where)


def split_paragraphs(config: Config, split: str, stats: dict) -> Iterator[str]:
    if config.files:
        for path in config.files[split]:
            yield from paragraphs(_file_lines(Path(path), config.text_field), config, stats)
    elif config.dataset == SAMPLE:
        yield from paragraphs(_text_lines(SAMPLE_DIR / SAMPLE_FILES[split]), config, stats)
    else:
        yield from paragraphs(_hub_lines(config, split), config, stats)


# --- the run -----------------------------------------------------------------------------------------------

def empty_stats(config: Config) -> dict:
    return {"lines_read": 0, "heading_lines": 0, "paragraphs_read": 0, "kept": 0,
            "dropped": {reason: 0 for reason in REASONS},
            "per_split": {split: {"paragraphs_read": 0, "kept": 0} for split in config.read_splits()},
            "max_rows_reached": False}


def local_inputs(config: Config) -> dict:
    """xxh3-128 of every local input file: a complete output of other inputs is not taken for this one."""
    if not config.files:
        return {}
    found = {}
    for paths in config.files.values():
        for path in paths:
            if not Path(path).is_file():
                raise UserError(f"{path}: no such file (text_corpus files)")
            found[path] = xxh3_file(path)
    return found


def _token_counter(context: SourceContext):
    if context.count_tokens is None:
        raise UserError("[source] kind = 'text_corpus' measures paragraphs with the encoder's tokenizer, and none "
                        "was given; run this source in the embed environment, with an [embed] table")

    def count(texts: list[str]) -> list[int]:
        counts = list(context.count_tokens(texts))
        if len(counts) != len(texts):
            raise ValueError(f"count_tokens gave {len(counts)} counts for {len(texts)} texts")
        return [int(n) for n in counts]
    return count


def resolved_config(config: Config, count) -> dict:
    """Everything that decides the output; a complete output is reused only when this matches."""
    return {"source": config.model_dump(mode="json"), "inputs": local_inputs(config),
            "tokenizer_probe": count(TOKENIZER_PROBE)}


class _Filter:
    """Turns paragraphs into rows, in order, with the counts; stops at max_rows."""

    def __init__(self, config: Config, count, stats: dict):
        self.config, self.count, self.stats = config, count, stats
        self.seen: set[str] = set()
        self.source = config.source_name()

    @property
    def done(self) -> bool:
        return self.config.max_rows is not None and self.stats["kept"] >= self.config.max_rows

    def rows(self, split: str, texts: Iterable[str]) -> Iterator[dict]:
        pending: list[tuple[int, str, str | None]] = []  # (paragraph_index, text, reason or None)
        for index, raw in enumerate(texts):
            text = clean_wikitext(raw) if self.config.wikitext_cleanup else _SPACES.sub(" ", raw).strip()
            reason = "empty" if not text else "symbols" if symbol_share(text) > self.config.max_symbol_share \
                else None
            pending.append((index, text, reason))
            if len(pending) >= TOKEN_BATCH:
                yield from self._judge(split, pending)
                pending = []
                if self.done:
                    return
        yield from self._judge(split, pending)

    def _judge(self, split: str, pending: list) -> Iterator[dict]:
        c, stats = self.config, self.stats
        texts = [text for _, text, reason in pending if reason is None]
        counts = iter(self.count(texts) if texts else [])
        for index, text, reason in pending:
            tokens = next(counts) if reason is None else 0
            if self.done:
                return
            stats["paragraphs_read"] += 1
            stats["per_split"][split]["paragraphs_read"] += 1
            if reason is None:
                row_id = text_id(text)
                reason = ("too_short" if tokens < c.min_tokens else "too_long" if tokens > c.max_tokens
                          else "duplicate" if row_id in self.seen else None)
            if reason is not None:
                stats["dropped"][reason] += 1
                continue
            self.seen.add(row_id)
            stats["kept"] += 1
            stats["per_split"][split]["kept"] += 1
            yield {"id": row_id, "text": text, "source": self.source, "split": split, "paragraph_index": index,
                   "tokens": tokens}


def run(config: Config, out_dir, context: SourceContext) -> Manifest:
    out_dir = check_output_dir(out_dir, "candidates")
    count = _token_counter(context)
    started = time.monotonic()
    resolved = resolved_config(config, count)
    finished = finished_output(out_dir, resolved)
    if finished is not None:
        return finished
    writer = ShardWriter(out_dir, "candidates", resolved, schema=schema(config), text_column=TEXT_COLUMN)
    stats = empty_stats(config)
    filt = _Filter(config, count, stats)
    table_schema = schema(config)
    rows: list[dict] = []
    bar = tqdm(unit=" paragraphs", desc=KIND, disable=not context.progress, dynamic_ncols=True)
    try:
        for split in config.read_splits():
            if filt.done:
                break
            for row in filt.rows(split, split_paragraphs(config, split, stats)):
                rows.append(row)
                if len(rows) == SHARD_ROWS:
                    writer.write(pa.Table.from_pylist(rows, schema=table_schema), copy.deepcopy(stats))
                    rows = []
                bar.update(stats["paragraphs_read"] - bar.n)
            bar.update(stats["paragraphs_read"] - bar.n)
    finally:
        bar.close()
    if rows:
        writer.write(pa.Table.from_pylist(rows, schema=table_schema), copy.deepcopy(stats))
    if stats["kept"] == 0:  # an empty or all-blank input: nothing to embed is an error, not a complete output
        dropped = ", ".join(f"{reason} {n}" for reason, n in stats["dropped"].items() if n) or "none"
        raise UserError(f"source {KIND}: no paragraphs: {stats['lines_read']} lines read, "
                        f"{stats['paragraphs_read']} paragraphs, dropped: {dropped}")
    stats["max_rows_reached"] = filt.done
    manifest = writer.finish(stats)
    write_json_atomic(out_dir / SUMMARY, {"status": "complete", "rows": manifest.rows, "shards": len(manifest.shards),
                                          **stats, "wall_s": round(time.monotonic() - started, 3)})
    return manifest


# --- the card ----------------------------------------------------------------------------------------------

WIKITEXT = {
    "name": "WikiText",
    "url": "https://huggingface.co/datasets/Salesforce/wikitext",
    "license": "cc-by-sa-3.0",
    "citation": """@misc{merity2016pointer,
  title={Pointer Sentinel Mixture Models},
  author={Stephen Merity and Caiming Xiong and James Bradbury and Richard Socher},
  year={2016},
  eprint={1609.07843},
  archivePrefix={arXiv},
  primaryClass={cs.CL}
}""",
}
KNOWN_DATASETS = {"Salesforce/wikitext": WIKITEXT, "wikitext": WIKITEXT}
SAMPLE_ENTRY = {"name": "vs-sonar corpus sample (WikiText-shaped paragraphs written for the project)", "url": "",
                "license": "mit", "citation": ""}
LOCAL_ENTRY = {"name": "local files", "url": "", "license": "not stated: the publisher must state the license of "
               "the local files", "citation": ""}


def _dataset_entry(config: Config) -> dict:
    if config.files:
        return {**LOCAL_ENTRY, "name": f"local files ({config.name})" if config.name else "local files"}
    if config.dataset == SAMPLE:
        return dict(SAMPLE_ENTRY)
    if config.dataset in KNOWN_DATASETS:
        return dict(KNOWN_DATASETS[config.dataset])
    return {"name": config.dataset, "url": f"https://huggingface.co/datasets/{config.dataset}",
            "license": "see the dataset's card", "citation": ""}


def card(config: Config, stats: dict) -> CardInfo:
    if config.files:
        origin = "local files (their license is for the publisher to state)"
    elif config.dataset == SAMPLE:
        origin = "the WikiText-shaped sample written for the vs-sonar project (MIT)"
    else:
        origin = f"{config.dataset} ({config.dataset_config}), splits {', '.join(config.read_splits())}"
    unit = "line" if config.line_is_paragraph else "block of lines ended by a blank line"
    kept = stats.get("kept")
    counts = (f" {kept:,} of {stats.get('paragraphs_read', 0):,} paragraphs were kept." if kept is not None else "")
    cleanup = (" WikiText's headings were dropped, its @-@/@.@/@,@ markers joined, <unk> removed and its "
               "tokenizer's spaces before punctuation taken out." if config.wikitext_cleanup else "")
    description = (f"Paragraphs (one per {unit}) of {origin}.{cleanup} Paragraphs with more than "
                   f"{config.max_symbol_share:.0%} punctuation, symbols or digits, outside {config.min_tokens}–"
                   f"{config.max_tokens} encoder tokens, or repeating an earlier paragraph after normalization "
                   f"were dropped.{counts}")
    tags = ["text-corpus", "paragraphs"] + (["wikitext"] if "wikitext" in config.dataset.lower() and not config.files
                                            else [])
    return CardInfo(
        title=f"Paragraphs of {_dataset_entry(config)['name']} with text embeddings", description=description,
        tags=tags, datasets=[_dataset_entry(config)], task_categories=["feature-extraction"],
        fields={"id": "string | sha256 of the normalized paragraph (NFKC, case-folded, whitespace collapsed); unique",
                "text": "string | the paragraph, cleaned",
                "source": "string | the corpus it comes from",
                "split": "string | the corpus split it comes from (the release's own splits are drawn anew)",
                "paragraph_index": "int64 | its position among the paragraphs of that split, dropped ones counted",
                "tokens": "int64 | its length in the encoder's tokens"},
        method=[f"**Paragraphs**: {origin} read split by split; "
                + ("each non-empty line is one paragraph" if config.line_is_paragraph
                   else "consecutive non-empty lines make one paragraph") + f".{cleanup} Paragraphs "
                f"outside {config.min_tokens}–{config.max_tokens} encoder tokens, with more than "
                f"{config.max_symbol_share:.0%} punctuation, symbols or digits, or repeating an earlier one were "
                "dropped and counted."],
        limitations=["Encyclopedic prose of one corpus: its topics, its era and its style, in English only.",
                     "WikiText's `<unk>` tokens are removed, which can leave a sentence with a gap."])
