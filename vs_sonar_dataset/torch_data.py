"""The public import path of the torch Dataset, as release cards give it:
`from vs_sonar_dataset.torch_data import EmbeddingDataset`. It lives in consume/torch_data.py (needs torch)."""

from .consume.torch_data import EmbeddingDataset, collate

__all__ = ["EmbeddingDataset", "collate"]
