"""Plug-ins are the modules of a package (sources/, encoders/), each naming its `KIND` and `Config`. Adding one
is adding a module: the package lists its modules itself, and the configuration accepts the new `kind`.

The two registries live here, below every stage, because the configuration (core/config.py) needs them to read
[source] and [embed]; they find the plug-in packages by name, so core imports no stage."""

import importlib
import pkgutil
from functools import cache
from types import ModuleType

from .errors import UserError


def discover(package: str) -> dict[str, ModuleType]:
    """kind -> module, for every module of `package` that names a KIND (base.py and cli.py do not). Plug-in
    modules import their heavy libraries inside functions, so listing them is cheap in every environment."""
    found = {}
    for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
        if info.name.startswith("_") or info.name in ("base", "cli"):
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        found[module.KIND] = module
    return dict(sorted(found.items()))


def plugin(plugins: dict[str, ModuleType], kind: str, table: str) -> ModuleType:
    if kind not in plugins:
        raise UserError(f"[{table}] kind = {kind!r}: unknown (known: {', '.join(plugins)})")
    return plugins[kind]


@cache
def sources() -> dict[str, ModuleType]:
    """kind -> source module. Listed on first use, not on import: a plug-in module may import sources.base."""
    return discover("vs_sonar_dataset.sources")


def source_plugin(kind: str) -> ModuleType:
    return plugin(sources(), kind, "source")


@cache
def encoders() -> dict[str, ModuleType]:
    """kind -> encoder module. Listed on first use, not on import: a plug-in module may import encoders.base."""
    return discover("vs_sonar_dataset.encoders")


def encoder_plugin(kind: str) -> ModuleType:
    return plugin(encoders(), kind, "embed")
