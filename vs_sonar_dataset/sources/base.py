"""What every source plug-in shares.

A source plug-in is one module in this package with
    KIND = "name"                    the `kind` that selects it in `[source]`
    ENVIRONMENT = "main" | "generate" | "embed"   the environment its `run` needs
    TEXT_COLUMN = "text"             the column the later stages embed
    class Config(SourceConfig)       its own keys, with `kind: Literal[KIND]`
    def schema(config) -> pa.Schema  its candidate columns: `id` (string), TEXT_COLUMN (string), `source`
                                     (string), then its own
    def run(config, out_dir, context: SourceContext) -> shards.Manifest
                                     writes a candidates folder (shards.ShardWriter(out_dir, "candidates",
                                     config_json, schema=schema(config), text_column=TEXT_COLUMN)); resumable
    def card(config, stats) -> CardInfo   what the dataset card says about where the texts come from
and, when the output depends on more than the table:
    def local_inputs(config) -> dict      {path: checksum} of the local files it reads
    USES_TOKENIZER = True                 it counts tokens with the [embed] encoder's tokenizer
    RAY = True                            with --engine ray its model runs on Ray Data (context.engine), and
                                          its driver in the main environment
(`vs-sonar run` runs the source again when either changes).
and nothing outside the package names it: the package finds its modules.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..core.settings import Table
from ..core.shards import MANIFEST, Manifest, read_manifest

SUMMARY = "summary.json"  # a source's counts, beside its manifest


class SourceConfig(Table):
    kind: str


@dataclass
class SourceContext:
    """What a source may need from the rest of the run."""

    count_tokens: Callable[[list[str]], list[int]] | None = None  # the encoder's tokenizer (no model loaded)
    progress: bool = True
    engine: str = "local"  # "ray": a source that declares RAY = True runs its model on Ray Data
    address: str | None = None  # the Ray cluster to join (None: a local Ray instance)


@dataclass
class CardInfo:
    """The card's account of the texts: tags, licenses and citations of the datasets they come from. The
    strings of `fields`, `method` and `limitations` may use the card's Jinja context (provenance, manifest)."""

    description: str  # one paragraph: what the rows are and how they were made
    tags: list[str] = field(default_factory=list)
    datasets: list[dict] = field(default_factory=list)  # [{"name", "url", "license", "citation"}] each
    task_categories: list[str] = field(default_factory=list)
    title: str = ""  # the card's heading; default: the text column's name and the encoder
    fields: dict[str, str] = field(default_factory=dict)  # column -> "type | meaning" of the source's columns
    method: list[str] = field(default_factory=list)  # how the texts were made, one numbered step each
    limitations: list[str] = field(default_factory=list)
    license: str = ""  # the license of the published texts (Hub license id); default: from `datasets`


def finished_output(out_dir: Path, resolved: dict) -> Manifest | None:
    """For sources that make their output in one cheap pass: the finished manifest when out_dir already holds
    this exact output; else None, after removing an incomplete run (it is redone from the start)."""
    if not (out_dir / MANIFEST).exists():
        return None
    manifest = read_manifest(out_dir, "candidates")
    if manifest.complete:
        return manifest if manifest.config == resolved else None  # another config: ShardWriter refuses it
    # committed shards, a shard renamed into place but not yet committed, and temporary files
    for path in [*out_dir.glob("shard-*.parquet"), *out_dir.glob(".*.tmp"), out_dir / SUMMARY]:
        path.unlink(missing_ok=True)
    (out_dir / MANIFEST).unlink()
    return None
