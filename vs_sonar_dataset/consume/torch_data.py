"""One split of a release as a torch Dataset, normalised on the fly, with a sampler over its density weights.

    ds = EmbeddingDataset("org/vs-sonar", "5k", "train", normalize="standard", weighted=True, seed=0)
    for batch in ds.loader(batch_size=256):    # DataLoader(ds, 256, sampler=ds.weighted_sampler, collate_fn=collate)
        batch["vector"]                          # float32 [256, dim], normalised with the config's shipped stats

The whole split is held in memory (4 KB per 1024-d row). A DataLoader with a batch size calls __getitems__
once per batch, which gathers the rows with one index_select and normalises them in place, so no per-row
Python runs; its result is already a batch, hence `collate`.
"""

import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler, default_collate

from ..build.stats import denormalize, load_stats
from ..core.errors import UserError
from .loading import as_tensor, open_release, read_matrix

NORMALIZATIONS = (None, "standard", "robust")
WEIGHT_COLUMN = "density_weight"


def collate(batch):
    """collate_fn for a DataLoader over an EmbeddingDataset: __getitems__ already returns a batch."""
    return batch if isinstance(batch, dict) else default_collate(batch)


class EmbeddingDataset(Dataset):
    """Items are {"text": str, "vector": float32 [dim], "id": str, "weight": float64 density weight} (no
    "weight" for a release built before density weights); a batch has lists of texts and ids, a [B, dim]
    tensor and a [B] tensor.

    normalize: None (vectors as shipped), "standard" or "robust", with the stats of this config's train split.
    weighted: set `weighted_sampler`, a WeightedRandomSampler over the density weights (rarer rows drawn more
    often), seeded by `seed`; it is what `loader()` uses. `sampler()` makes others."""

    def __init__(self, repo_or_folder, config: str, split: str = "train", *, normalize: str | None = None,
                 weighted: bool = False, seed: int | None = None, revision: str | None = None):
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {NORMALIZATIONS}, not {normalize!r}")
        release = open_release(repo_or_folder, config, [split], revision=revision, with_stats=normalize is not None)
        paths = release.files[split]
        has_weights = WEIGHT_COLUMN in pq.read_schema(paths[0]).names
        columns = ["id", release.text_column] + [WEIGHT_COLUMN] * has_weights
        matrix, rest = read_matrix(paths, release.dim, columns)
        self.vectors = as_tensor(matrix)  # as shipped; normalised per batch, never in place
        self.ids = rest.column("id").to_numpy(zero_copy_only=False)  # object arrays: a batch is one fancy index
        self.texts = rest.column(release.text_column).to_numpy(zero_copy_only=False)
        self.weights = torch.from_numpy(rest.column(WEIGHT_COLUMN).to_numpy()) if has_weights else None
        self.config, self.split, self.normalization, self.where = config, split, normalize, release.source
        self.stats = load_stats(release.root, config) if normalize else None
        self._scale = self._shift = None
        if normalize:
            # (x - shift) / scale as one fused x * (1 / scale) + (-shift / scale) per batch
            shift, scale = self.stats.shift_scale(normalize)
            self._scale = torch.from_numpy((1 / scale).astype(np.float32))
            self._shift = torch.from_numpy((-shift / scale).astype(np.float32))
        self.weighted_sampler = self.sampler(seed=seed) if weighted else None

    def __len__(self) -> int:
        return len(self.vectors)

    def __getitem__(self, i: int) -> dict:
        vector = self.vectors[i]
        if self._scale is not None:
            vector = torch.addcmul(self._shift, vector, self._scale)
        item = {"text": self.texts[i], "vector": vector, "id": self.ids[i]}
        if self.weights is not None:
            item["weight"] = self.weights[i]
        return item

    def __getitems__(self, indices) -> dict:
        index = torch.as_tensor(indices, dtype=torch.long)
        vectors = torch.index_select(self.vectors, 0, index)
        if self._scale is not None:
            # in place on the gathered copy, one pass (mul_ then add_ is two, and costs a third more)
            torch.addcmul(self._shift, vectors, self._scale, out=vectors)
        rows = index.numpy()
        batch = {"text": self.texts[rows].tolist(), "vector": vectors, "id": self.ids[rows].tolist()}
        if self.weights is not None:
            batch["weight"] = torch.index_select(self.weights, 0, index)
        return batch

    def denormalize(self, z):
        """Vectors in this dataset's normalised space back to the release's space (identity if not normalised)."""
        return z if self.stats is None else denormalize(z, self.stats, method=self.normalization)

    def sampler(self, num_samples: int | None = None, *, replacement: bool = True,
                generator: torch.Generator | None = None, seed: int | None = None) -> WeightedRandomSampler:
        """A WeightedRandomSampler drawing num_samples (default: len) rows per epoch by density weight."""
        if self.weights is None:
            raise UserError(f"{self.where}: config {self.config!r} has no {WEIGHT_COLUMN} column (built before "
                            "density weights); build the release again, or sample uniformly")
        if generator is None and seed is not None:
            generator = torch.Generator().manual_seed(seed)
        return WeightedRandomSampler(self.weights, num_samples or len(self), replacement=replacement,
                                     generator=generator)

    def loader(self, batch_size: int = 256, **kwargs) -> DataLoader:
        """A DataLoader of batches: the weighted sampler when weighted=True (unless kwargs name another)."""
        if self.weighted_sampler is not None and "sampler" not in kwargs and not kwargs.get("shuffle"):
            kwargs["sampler"] = self.weighted_sampler
        return DataLoader(self, batch_size=batch_size, collate_fn=collate, **kwargs)
