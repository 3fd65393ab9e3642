"""Plug-ins are the modules of a package (sources/, encoders/), each naming its `KIND` and `Config`. Adding one
is adding a module: the package lists its modules itself, and the configuration accepts the new `kind`."""

import importlib
import pkgutil
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
