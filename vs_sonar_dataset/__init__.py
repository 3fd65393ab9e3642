"""vs-sonar: a factory for embedding datasets (texts from a source, vectors from an encoder, verified Hub
releases), and the helpers that read its releases.

The public API is imported on first use, so that `import vs_sonar_dataset.core...` in a stage's process loads
nothing of the consumer side: `from vs_sonar_dataset import load_embeddings` works as before.
"""

import importlib

__version__ = "0.1.0"

_PUBLIC = {  # name -> module that defines it
    "Stats": "build.stats", "load_stats": "build.stats", "normalize": "build.stats", "denormalize": "build.stats",
    "load_embeddings": "consume.loading", "interpolate": "consume.interpolate",
    "EmbeddingDataset": "consume.torch_data",  # needs torch
}
__all__ = [*_PUBLIC, "__version__"]


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)


def __dir__():
    return sorted(__all__)
