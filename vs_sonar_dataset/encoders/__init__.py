"""Encoder plug-ins, one module each (see base.py for what a module provides). The registry is in core/plugins.py,
which the configuration reads too."""

from ..core.plugins import encoder_plugin, encoders

__all__ = ["encoder_plugin", "encoders"]
