"""vs-sonar: Verbalized Sampling math instructions with SONAR embeddings — the factory and its helpers."""

__version__ = "0.1.0"

from .interpolate import interpolate  # noqa: E402
from .loading import load_embeddings  # noqa: E402
from .stats import Stats, denormalize, load_stats, normalize  # noqa: E402

# the torch Dataset is vs_sonar_dataset.torch_data.EmbeddingDataset: imported on its own, since it needs torch
__all__ = ["Stats", "load_stats", "normalize", "denormalize", "load_embeddings", "interpolate", "__version__"]
