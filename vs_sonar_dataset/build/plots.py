"""Figures for the dataset card, drawn from the largest config (PNG, headless)."""

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from ..core.schema import embedding_matrix

PROJECTION_SAMPLE = 5000


def write_plots(release: Path, stats: dict, norms: np.ndarray, probabilities: np.ndarray | None,
                largest: str, maps: dict | None = None) -> dict:
    """Write plots/*.png from the largest config's stats, train-row norms, density columns and (for sources that
    have them) verbalized probabilities; returns {name: relative path}, with the largest config's map view
    (drawn by embedding_map.write_map) when there is one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = release / "plots"
    out.mkdir(exist_ok=True)
    written = {}

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(out / f"{name}.png", dpi=110)
        plt.close(fig)
        written[name] = f"plots/{name}.png"

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(norms, bins=60, color="#3b6ea5")
    ax.set(title=f"Embedding L2 norm, {largest} train (n={len(norms):,})", xlabel="L2 norm", ylabel="rows")
    save(fig, "norm_histogram")

    mean, std = np.asarray(stats["mean"]), np.asarray(stats["std"])
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(7, 4.5), sharex=True)
    a1.plot(mean, lw=0.6, color="#3b6ea5")
    a1.set(ylabel="mean", title=f"Per-dimension statistics, {largest} train")
    a2.plot(std, lw=0.6, color="#a53b3b")
    a2.set(ylabel="std", xlabel="dimension")
    save(fig, "dimension_mean_std")

    x = _sample_train_vectors(release, largest, PROJECTION_SAMPLE)
    centered = x - x.mean(axis=0)
    # principal axes from the dim x dim covariance: far cheaper than an SVD of the sample itself
    eigenvalues, eigenvectors = np.linalg.eigh(centered.T @ centered)
    top = eigenvectors[:, ::-1][:, :2]
    xy = centered @ top
    explained = eigenvalues[::-1][:2] / eigenvalues.sum()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(xy[:, 0], xy[:, 1], s=3, alpha=0.4, color="#3b6ea5")
    ax.set(title=f"PCA of {len(x):,} train embeddings", xlabel=f"PC1 ({explained[0]:.1%})",
           ylabel=f"PC2 ({explained[1]:.1%})")
    save(fig, "pca_projection")

    density = _train_column(release, largest, ["density", "density_weight"])
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.5))
    a1.hist(density["density"], bins=60, color="#3b6ea5")
    a1.set(title=f"k-NN density, {largest} train", xlabel="mean cosine to the k nearest rows", ylabel="rows")
    weights = density["density_weight"] * len(density["density_weight"])  # 1 = the uniform weight
    a2.hist(weights, bins=60, color="#a5713b")
    a2.set(title="Sampling weight × rows", xlabel="weight relative to uniform", ylabel="rows")
    save(fig, "density_weights")
    if maps and largest in maps:
        written["map"] = maps[largest]["png"]

    if probabilities is None:
        return written
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(probabilities, bins=40, range=(0, 1), color="#5a9e4b")
    ax.set(title="Verbalized probability of each instruction (train)", xlabel="probability", ylabel="rows")
    save(fig, "probability_histogram")
    return written


def _train_column(release: Path, config: str, columns: list[str]) -> dict[str, np.ndarray]:
    tables = [pq.read_table(p, columns=columns) for p in sorted((release / "data" / config).glob("train-*.parquet"))]
    return {c: np.concatenate([t.column(c).to_numpy() for t in tables]) for c in columns}


def _sample_train_vectors(release: Path, config: str, limit: int) -> np.ndarray:
    """The first rows of the train split: already a seeded random sample, since splits are shuffled."""
    first = sorted((release / "data" / config).glob("train-*.parquet"))[0]
    pf = pq.ParquetFile(first)
    parts, rows = [], 0
    for batch in pf.iter_batches(batch_size=min(limit, 4096), columns=["embedding"]):
        parts.append(embedding_matrix(batch))
        rows += batch.num_rows
        if rows >= limit:
            break
    return np.concatenate(parts)[:limit].astype(np.float64)
