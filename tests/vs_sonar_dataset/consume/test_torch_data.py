"""EmbeddingDataset over a real release: items, batches, on-the-fly normalisation, the weighted sampler."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from torch.utils.data import DataLoader, WeightedRandomSampler

from vs_sonar_dataset.build.stats import denormalize, load_stats, normalize
from vs_sonar_dataset.consume.torch_data import EmbeddingDataset, collate
from vs_sonar_dataset.core.errors import UserError
from vs_sonar_dataset.core.schema import embedding_matrix


def split_table(release, config="l", split="train") -> pa.Table:
    manifest = json.loads((release / "release.json").read_text())
    return pa.concat_tables(pq.read_table(release / p) for p in manifest["data_files"][config][split])


def rewrite_weights(release, fn, config="l", split="train") -> None:
    """Set the density weights of one split to fn(table, first row) for each file, or drop them if it is None."""
    manifest = json.loads((release / "release.json").read_text())
    start = 0
    for path in manifest["data_files"][config][split]:
        table = pq.read_table(release / path)
        weights, i = fn(table, start), table.schema.get_field_index("density_weight")
        start += len(table)
        if i >= 0:
            table = table.remove_column(i)
        if weights is not None:
            table = table.append_column("density_weight", pa.array(weights, pa.float64()))
        pq.write_table(table, release / path)


@pytest.fixture(scope="module")
def weighted_release(small_release_master):
    assert "density_weight" in pq.read_schema(next((small_release_master / "data" / "l").glob("train-*"))).names
    return small_release_master


def test_items_and_batches_are_the_rows(weighted_release):
    ds = EmbeddingDataset(weighted_release, "l", "train")
    table = split_table(weighted_release)
    X = embedding_matrix(table).copy()  # writable, for torch.from_numpy
    assert len(ds) == len(X) == 800
    item = ds[5]
    assert item["text"] == table["instruction"][5].as_py() and item["id"] == table["id"][5].as_py()
    assert torch.equal(item["vector"], torch.from_numpy(X[5])) and item["weight"] == table["density_weight"][5].as_py()
    rows = [7, 0, 799, 7]
    batch = ds.__getitems__(rows)
    assert torch.equal(batch["vector"], torch.from_numpy(X[rows])) and batch["vector"].dtype == torch.float32
    assert batch["text"] == [table["instruction"][i].as_py() for i in rows]
    assert batch["id"] == [table["id"][i].as_py() for i in rows]
    assert batch["weight"].tolist() == [table["density_weight"][i].as_py() for i in rows]


@pytest.mark.parametrize("method", ["standard", "robust"])
def test_normalised_on_the_fly_with_the_shipped_stats(weighted_release, method):
    ds = EmbeddingDataset(weighted_release, "l", "validation", normalize=method)
    raw = EmbeddingDataset(weighted_release, "l", "validation")
    stats = load_stats(weighted_release, "l")
    rows = torch.tensor([3, 1, 4, 1, 5])
    want = normalize(raw.vectors[rows], stats, method=method)
    got = ds.__getitems__(rows)["vector"]
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5) and torch.allclose(ds[4]["vector"], want[2], atol=1e-5)
    assert torch.equal(ds.vectors, raw.vectors)  # the held vectors are never normalised in place
    assert torch.allclose(ds.denormalize(got), raw.vectors[rows], atol=1e-6)
    assert torch.allclose(denormalize(got, ds.stats, method=method), raw.vectors[rows], atol=1e-6)


def test_a_dataloader_fetches_whole_batches(weighted_release, monkeypatch):
    ds = EmbeddingDataset(weighted_release, "m", "train", normalize="standard")
    monkeypatch.setattr(EmbeddingDataset, "__getitem__", None)  # a per-row fetch would fail
    batches = list(DataLoader(ds, batch_size=64, shuffle=True, collate_fn=collate))
    assert [len(b["id"]) for b in batches] == [64, 64, 64, 48]
    assert all(b["vector"].shape == (len(b["id"]), 16) and b["weight"].shape == (len(b["id"]),) for b in batches)
    assert sorted(i for b in batches for i in b["id"]) == sorted(split_table(weighted_release, "m")["id"].to_pylist())


def test_collate_stacks_items_too(weighted_release):
    ds = EmbeddingDataset(weighted_release, "s", "test")
    batch, want = collate([ds[0], ds[1]]), ds.__getitems__([0, 1])
    assert torch.equal(batch["vector"], want["vector"]) and batch["id"] == want["id"] and collate(want) is want


def test_weighted_sampler_draws_rows_by_density_weight(small_release):
    classes = np.arange(800) % 4  # weights 1:2:3:4 by row position, so the frequencies are known
    weights = (classes + 1) / (classes + 1).sum()
    rewrite_weights(small_release, lambda table, start: weights[start : start + len(table)])
    ds = EmbeddingDataset(small_release, "l", "train", weighted=True, seed=0)
    assert isinstance(ds.weighted_sampler, WeightedRandomSampler) and len(ds.weighted_sampler) == len(ds)
    draws = np.array(list(ds.sampler(200_000, seed=1)))
    freq = np.bincount(classes[draws], minlength=4) / len(draws)
    assert np.allclose(freq, [0.1, 0.2, 0.3, 0.4], atol=0.01), freq

    same = EmbeddingDataset(small_release, "l", "train", weighted=True, seed=0).weighted_sampler
    other = EmbeddingDataset(small_release, "l", "train", weighted=True, seed=1).weighted_sampler
    assert list(same) == list(ds.weighted_sampler) != list(other)
    loader_ids = [i for b in ds.loader(batch_size=100) for i in b["id"]]
    assert len(loader_ids) == len(ds) and len(set(loader_ids)) < len(ds)  # drawn with replacement
    assert EmbeddingDataset(small_release, "l", "train").weighted_sampler is None


def test_a_release_without_density_weights_has_no_sampler(small_release):
    rewrite_weights(small_release, lambda table, start: None, config="m")
    ds = EmbeddingDataset(small_release, "m", "train")
    assert "weight" not in ds[0] and "weight" not in ds.__getitems__([0, 1])
    with pytest.raises(UserError, match="has no density_weight column"):
        ds.sampler()
    with pytest.raises(UserError, match="has no density_weight column"):
        EmbeddingDataset(small_release, "m", "train", weighted=True)


def test_unknown_normalisation_is_refused(small_release_master):
    with pytest.raises(ValueError, match="normalize must be one of"):
        EmbeddingDataset(small_release_master, "s", normalize="minmax")
