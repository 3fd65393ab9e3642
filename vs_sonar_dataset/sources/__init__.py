"""Source plug-ins, one module each (see base.py for what a module provides). The registry is in core/plugins.py,
which the configuration reads too."""

from ..core.plugins import source_plugin, sources

__all__ = ["source_plugin", "sources"]
