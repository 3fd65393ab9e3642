"""Encoder plug-ins, one module each (see base.py for what a module provides)."""

from functools import cache

from ..plugins import discover, plugin


@cache
def encoders() -> dict:
    """kind -> module. Listed on first use, not on import: a plug-in module may import encoders.base."""
    return discover(__name__)


def encoder_plugin(kind: str):
    return plugin(encoders(), kind, "embed")
