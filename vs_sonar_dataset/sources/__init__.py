"""Source plug-ins, one module each (see base.py for what a module provides)."""

from functools import cache

from ..plugins import discover, plugin


@cache
def sources() -> dict:
    """kind -> module. Listed on first use, not on import: a plug-in module may import sources.base."""
    return discover(__name__)


def source_plugin(kind: str):
    return plugin(sources(), kind, "source")
