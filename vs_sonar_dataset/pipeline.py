"""The stages, in order: what each reads and writes, the config tables its output depends on, and the
`vs-sonar` command that runs it. `vs-sonar run` (run.py) walks this list, and the command line (cli.py) offers
each stage's command; a stage's module holds its HELP, add_arguments, main and the environment it runs in.
"""

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from .build.release import MODEL_CHECKS, RELEASE_MANIFEST
from .core.config import table_digest
from .core.errors import CHECKS_FAILED_EXIT
from .core.shards import MANIFEST


@dataclass(frozen=True)
class Stage:
    name: str  # also its `vs-sonar` command
    module: str  # the command's module
    tables: tuple[str, ...]  # config tables its output depends on
    inputs: tuple[str, ...]  # earlier stages whose outputs it reads
    output: str  # inside RUN_DIR: the folder or file it writes
    record: str  # inside RUN_DIR: the file that identifies what it wrote
    args: Callable[[Any], list[str]]  # its command's arguments, from the run's Runner (run.py imports this module)
    ok_codes: tuple[int, ...] = (0,)
    extra: Callable[[Any], dict] | None = None  # what else its output depends on
    plugin_environment: Callable[[dict], str | None] | None = None  # when a plug-in decides where it runs
    # whether, for the parsed configuration, its command runs work on Ray with --engine ray (its driver then runs
    # in the main environment); every such command takes --engine/--address
    ray_driver: Callable[[dict], bool] | None = None

    def environment(self, config: dict) -> str | None:
        """The environment it runs in (None: the main one), for the parsed configuration."""
        if self.plugin_environment is not None:
            return self.plugin_environment(config)
        return getattr(importlib.import_module(self.module), "ENVIRONMENT", None)


def _source_extra(runner) -> dict:
    """A source's local files and, for one that counts tokens, the encoder whose tokenizer it uses."""
    from .sources import source_plugin

    config = runner.config["source"]
    plugin = source_plugin(config.kind)
    extra = {"files": plugin.local_inputs(config)} if hasattr(plugin, "local_inputs") else {}
    if getattr(plugin, "USES_TOKENIZER", False):
        extra["[embed]"] = table_digest(runner.config["embed"])
    return extra


def _source_on_ray(config) -> bool:
    from .sources import source_plugin

    return getattr(source_plugin(config["source"].kind), "RAY", False)


def _source_environment(config) -> str | None:
    from .sources import source_plugin

    environment = source_plugin(config["source"].kind).ENVIRONMENT
    return None if environment == "main" else environment


STAGES = (
    Stage("source", "vs_sonar_dataset.sources.cli", ("source", "run"), (), "candidates", f"candidates/{MANIFEST}",
          lambda r: [str(r.config_path), "--out", str(r.path("candidates")), *r.source_flags, *r.engine_flags],
          extra=_source_extra, plugin_environment=_source_environment, ray_driver=_source_on_ray),
    Stage("embed", "vs_sonar_dataset.embed.cli", ("embed", "run"), ("source",), "vectors", f"vectors/{MANIFEST}",
          lambda r: [str(r.path("candidates")), "--out", str(r.path("vectors")), *r.config_flag, *r.engine_flags],
          ray_driver=lambda config: True),
    Stage("dedup", "vs_sonar_dataset.dedup.cli", ("dedup",), ("embed",), "pool", f"pool/{MANIFEST}",
          lambda r: [str(r.path("vectors")), "--out", str(r.path("pool")), *r.config_flag, *r.engine_flags],
          ray_driver=lambda config: True),
    Stage("build", "vs_sonar_dataset.build.release", ("build",), ("dedup",), "release", f"release/{RELEASE_MANIFEST}",
          lambda r: [str(r.path("pool")), "--out", str(r.path("release")), *r.config_flag]),
    # CHECKS_FAILED_EXIT: the checks ran and failed, which verify reports; any other exit is a crash
    Stage("model-check", "vs_sonar_dataset.model_check.cli", ("model_check", "embed", "run"), ("build",),
          f"release/{MODEL_CHECKS}", f"release/{MODEL_CHECKS}",
          lambda r: [str(r.path("release")), *r.config_flag], ok_codes=(0, CHECKS_FAILED_EXIT)),
    # CHECKS_FAILED_EXIT: the release failed verify; the card then says so, and `run` reports it
    Stage("verify", "vs_sonar_dataset.verify.checks", (), ("build", "model-check"), "release/verify_report.json",
          "release/verify_report.json", lambda r: [str(r.path("release")), "--pool", str(r.path("pool"))],
          ok_codes=(0, CHECKS_FAILED_EXIT)),
    Stage("card", "vs_sonar_dataset.card.cli", (), ("verify",), "release/README.md", "release/README.md",
          lambda r: [str(r.path("release"))]),
)
