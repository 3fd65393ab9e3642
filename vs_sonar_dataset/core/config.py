"""Run configuration: one TOML file, one table per stage, each a pydantic model (settings.Table).

    [run]          fixtures the run builds locally (tiny or packaged models)
    [source]       kind = "vs_gsm8k" | "text_corpus" | "preference_prompts" | ...: where the texts come from
    [embed]        kind = "sonar" | "sentence_transformers" | "hf_auto" | ...: the encoder and its batching
    [dedup]        semantic dedup of the vectors
    [build]        nested configs, seed
    [model_check]  the release's model checks

`kind` picks a plug-in (sources/, encoders/), whose Config is the table's model. A table this code does not
know, an unknown key, a wrong type or a value out of range is one line naming the table and the key.
"""

import copy
import hashlib
import json
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from .devices import Device
from .errors import UserError
from .plugins import encoder_plugin, encoders, source_plugin, sources
from .settings import Table, parse_table

DEFAULT_SOURCE, DEFAULT_ENCODER = "vs_gsm8k", "sonar"


class RunSettings(Table):
    fixtures: list[str] = []  # models the run builds in RUN_DIR/fixtures/NAME before the stage that needs them
    fixture_args: dict[str, list[str]] = {}  # extra command-line arguments per fixture


class DedupConfig(Table):
    method: Literal["exact", "ivf", "auto"] = "exact"  # ivf: approximate (faiss lists) for large pools on CPU;
    # auto: exact on cuda or up to 200k rows, else ivf
    threshold: float = Field(0.95, gt=0.0, le=1.0)  # cosine at or above which a row duplicates a kept row
    # where the similarity products run: auto (cuda when available) | cpu | cuda | cuda:N
    device: Device = "auto"
    block_rows: int = Field(16384, ge=1)  # kept vectors per matrix product
    ivf_lists: int = Field(1024, ge=1)  # ivf only: k-means lists over the kept rows
    ivf_probes: int = Field(24, ge=1)  # ivf only: lists scanned per row (more: higher recall, slower)
    ivf_training_rows: int = Field(50_000, ge=1)  # ivf only: kept rows decided exactly, then used to train lists
    target_rows: int | None = Field(None, ge=1)  # stop once the pool holds this many rows

    @model_validator(mode="after")
    def _ivf_sizes(self) -> "DedupConfig":
        if not self.ivf_probes <= self.ivf_lists <= self.ivf_training_rows:
            raise ValueError(f"need ivf_probes ({self.ivf_probes}) <= ivf_lists ({self.ivf_lists}) <= "
                             f"ivf_training_rows ({self.ivf_training_rows})")
        return self


class DensityConfig(Table):
    """[build.density]: k-NN density weights, fitted per split on that split's rows (density.py)."""

    k: int = Field(20, ge=1)  # neighbours, self excluded
    eps: float = Field(0.01, gt=0.0)  # weight = 1 / (eps + max(density, 0)), normalised to sum 1 in the split
    method: Literal["exact", "ivf", "auto"] = "auto"  # auto: exact up to index_above rows, else ivf (faiss)
    index_above: int = Field(200_000, ge=1)  # auto: split sizes above this use the ivf index
    block_rows: int = Field(4096, ge=1)  # exact: rows per matrix product
    ivf_lists: int | None = Field(None, ge=1)  # ivf: k-means lists (default 4 * sqrt(rows), at least 16)
    ivf_probes: int = Field(16, ge=1)  # ivf: nearest lists each row is compared with (more: higher recall, slower)
    ivf_training_rows: int = Field(100_000, ge=1)  # ivf: seeded sample the lists are trained on (smaller
    # splits are compared exactly)


class MapConfig(Table):
    """[build.map]: the 3-D UMAP map of each config's train split (embedding_map.py)."""

    enabled: bool = True
    max_points: int = Field(20_000, ge=10)  # larger train splits are drawn from a seeded sample of this size
    n_neighbors: int = Field(15, ge=2)
    min_dist: float = Field(0.1, ge=0.0)
    seed: int = Field(0, ge=0)


class BuildConfig(Table):
    seed: int = Field(0, ge=0)  # the shuffle that makes the splits
    configs: dict[str, int | str] = Field({"1k": 1000, "5k": 5000, "10k": 10000}, min_length=1)  # name -> size
    rows_per_file: int = Field(100_000, ge=1)
    fixture_models: bool = False  # made with fixture models: the card says so and publish refuses without a flag
    density: DensityConfig = DensityConfig()
    map: MapConfig = MapConfig()


class ModelCheckConfig(Table):
    decoder: str | None = None  # for encoders with a decoder; default: the encoder's own (SONAR: *_decoder)
    sample: Annotated[int, Field(ge=1)] | Literal["all"] = 256  # rows to check
    seed: int = 0
    alignment_threshold: float = Field(0.99, ge=0.0, le=1.0)  # re-encoded vs stored cosine
    round_trip_threshold: float = Field(0.9, ge=0.0, le=1.0)  # decoded -> re-encoded vs stored that passes
    min_pass_rate: float = Field(0.9, ge=0.0, le=1.0)  # share of the sample that must pass the round trip
    beam_size: int = Field(5, ge=1)
    max_seq_len: int = Field(256, ge=1)
    batch_size: int = Field(32, ge=1)
    examples: int = Field(5, ge=0)

    @property
    def sample_rows(self) -> int | None:
        return None if self.sample == "all" else self.sample


FIXED_TABLES = {"run": RunSettings, "dedup": DedupConfig, "build": BuildConfig, "model_check": ModelCheckConfig}
TABLES = ("run", "source", "embed", "dedup", "build", "model_check")


def read_document(path) -> dict:
    """The whole TOML document; a missing or malformed file, or an unknown table, is a user error naming it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: configuration file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not valid TOML ({e})") from None
    return parse_document(text, str(path))


def parse_document(text: str, where: str) -> dict:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{where}: not valid TOML ({e})") from None
    unknown = sorted(set(document) - set(TABLES))
    if unknown:
        raise UserError(f"{where}: unknown table(s) {', '.join(f'[{t}]' for t in unknown)} "
                        f"(known: {', '.join(f'[{t}]' for t in TABLES)})")
    for name, value in document.items():
        if not isinstance(value, dict):
            raise UserError(f"{where}: [{name}] must be a table")
    return document


def table_model(table: str, values: dict) -> type[Table]:
    """The model of a table: fixed, or the Config of the plug-in its `kind` names."""
    if table in FIXED_TABLES:
        return FIXED_TABLES[table]
    if not isinstance(values.get("kind", ""), str):
        example = DEFAULT_SOURCE if table == "source" else DEFAULT_ENCODER
        raise UserError(f"[{table}] kind: expected a string such as \"{example}\" (got {values['kind']!r})")
    if table == "source":
        return source_plugin(values.get("kind", DEFAULT_SOURCE)).Config
    if table == "embed":
        return encoder_plugin(values.get("kind", DEFAULT_ENCODER)).Config
    raise KeyError(table)


def parse(table: str, values: dict, where: str = "") -> Table:
    """One table's model from its TOML values (flags already merged in)."""
    try:
        model = table_model(table, values)
    except UserError as e:  # an unknown or malformed kind: name the file too
        raise UserError(f"{where}: {e}" if where else str(e)) from None
    return parse_table(model, values, f"{where}[{table}]" if not where else f"{where} [{table}]")


def load_table(path, table: str, overrides: dict | None = None) -> Table:
    """One table of the file, with the non-None overrides (command-line flags) applied first: flags override
    config fields by one rule everywhere."""
    document = read_document(path) if path is not None else {}
    values = {**document.get(table, {}), **{k: v for k, v in (overrides or {}).items() if v is not None}}
    return parse(table, values, str(path) if path is not None else "")


def load_config(path) -> dict[str, Table]:
    """Every table of the file (absent tables take their defaults; [source] and [embed] must say enough)."""
    return config_of(read_document(path), str(path))


def config_of(document: dict, where: str) -> dict[str, Table]:
    return {table: parse(table, document.get(table, {}), where) for table in TABLES}


def parse_assignment(text: str) -> tuple[str, object]:
    """`--set key=value`: the value as TOML reads it (numbers, true/false, lists, inline tables), else a string."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set {text!r}: expected KEY=VALUE, such as threshold=0.9")
    try:
        parsed = tomllib.loads(f"v = {value}")
    except tomllib.TOMLDecodeError:
        return key.strip(), value
    if set(parsed) != {"v"}:  # a value with a line break would set other keys
        raise UserError(f"--set {text!r}: one value per --set, on one line")
    return key.strip(), parsed["v"]


def with_overrides(document: dict, assignments: list[str], where: str) -> tuple[dict, str]:
    """The document with each `TABLE.KEY=VALUE` of `vs-sonar run --set` applied, in order: dotted keys walk
    tables (a missing one is added), a number picks an entry of a list of tables
    (`source.sources.2.max_pairs=1000`), and the last key is set. The file itself is never changed; the tables
    are checked again as a whole. Returns the document and its TOML text (what the run folder keeps)."""
    import tomli_w  # the run's copy of the file is written back as TOML

    document = copy.deepcopy(document)
    for text in assignments:
        key, value = parse_assignment(text)
        *path, last = key.split(".")
        if not path:
            raise UserError(f"--set {text!r}: name the table too, such as build.seed=1")
        node = document
        for depth, part in enumerate(path):
            if isinstance(node, list):
                if not (part.isdigit() and int(part) < len(node)):
                    raise UserError(f"--set {text!r}: {'.'.join(path[:depth])} has entries 0 to {len(node) - 1}")
                node = node[int(part)]
            else:
                node = node.setdefault(part, {})
            if not isinstance(node, (dict, list)):
                raise UserError(f"--set {text!r}: {'.'.join(path[:depth + 1])} is a value, not a table")
        if isinstance(node, list):
            raise UserError(f"--set {text!r}: {'.'.join(path)} is a list of tables; pick an entry by its number")
        node[last] = value
    text = tomli_w.dumps(document)
    return parse_document(text, f"{where} with --set"), text


def add_config_arguments(parser, table: str, config_flag: bool = True) -> None:
    """--config and --set: one rule for every stage command (flags override the file's fields)."""
    keys = f"; keys: {', '.join(FIXED_TABLES[table].model_fields)}" if table in FIXED_TABLES else \
        f"; keys by kind: {plugin_keys(table)}"
    if config_flag:
        parser.add_argument("--config", metavar="CONFIG.toml", help=f"TOML file whose [{table}] table "
                            "configures this stage (see configs/)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override one [{table}] key (repeatable){keys}")


def plugin_keys(table: str) -> str:
    """`kind: key, key, ...` for each plug-in of [source] or [embed], for --help."""
    plugins = sources() if table == "source" else encoders()
    return "; ".join(f"{kind}: {', '.join(k for k in module.Config.model_fields if k != 'kind')}"
                     for kind, module in plugins.items())


def table_from_args(args, table: str) -> Table:
    return load_table(getattr(args, "config", None), table, dict(parse_assignment(a) for a in args.set))


def table_digest(model: Table) -> str:
    """sha256 of a table's settings (defaults included): what a stage's output depends on."""
    text = json.dumps(model.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
