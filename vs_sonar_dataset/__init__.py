"""vs-sonar: Verbalized Sampling math instructions with SONAR embeddings — the factory and its helpers."""

__version__ = "0.1.0"

from .stats import Stats, denormalize, load_stats, normalize  # noqa: E402

__all__ = ["Stats", "load_stats", "normalize", "denormalize", "__version__"]
