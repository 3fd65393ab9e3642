"""Columns and files a release derives from each config's rows once they are written (the last step of build).

Per row, in every config's files:
    embedding_norm   float32  L2 norm of the embedding
    text_chars       int32    length of the text column in characters
    density          float32  mean cosine to its k nearest rows of the same config and split (density.py)
    density_weight   float64  1 / (eps + max(density, 0)), normalised to sum 1 within the split
    map_x/y/z        float32  the row's place in the config's 3-D map (embedding_map.py); null outside the
                              rows the map was drawn from (the first max_points train rows, a seeded sample
                              since the split is shuffled), and in validation and test
Per config: robust statistics of its train split (stats.robust_stats) and the map's files.

A config's split is a prefix of the largest config's split, so each split of the largest config is read once
and every config takes its prefix of the matrix; each config's files are then rewritten with the new columns.
"""

import logging
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..core.schema import embedding_matrix
from ..core.shards import write_parquet_atomic
from .density import density_weights, knn_density
from .splits import SPLITS, split_sizes
from .stats import robust_stats

log = logging.getLogger("vs_sonar.build")

MAP_COLUMNS = ("map_x", "map_y", "map_z")
DERIVED_FIELDS = (
    pa.field("embedding_norm", pa.float32(), nullable=False),
    pa.field("text_chars", pa.int32(), nullable=False),
    pa.field("density", pa.float32(), nullable=False),
    pa.field("density_weight", pa.float64(), nullable=False),
    *(pa.field(name, pa.float32()) for name in MAP_COLUMNS),
)
DERIVED_COLUMNS = tuple(f.name for f in DERIVED_FIELDS)
MEANINGS = {
    "embedding_norm": "float32 | L2 norm of `embedding`",
    "text_chars": "int32 | length of the text in characters",
    "text_tokens": "int32 | length of the text in the encoder's tokens (as many as it read, at most its maximum)",
    "density": "float32 | mean cosine similarity to the row's k nearest rows of the same config and split",
    "density_weight": "float64 | 1 / (eps + max(density, 0)), normalised to sum 1 within the split: sample "
                      "rows in proportion to it to see rare texts more often",
    "map_x": "float32 | x of the row in the config's 3-D UMAP map, in [-1, 1] (null outside the map's rows)",
    "map_y": "float32 | y of the row in the 3-D map",
    "map_z": "float32 | z of the row in the 3-D map",
}


def source_labels(table: pa.Table) -> list[str] | None:
    """What the map colours by when a source tells rows apart: `source`, or `sources` joined with '+'."""
    if "source" in table.column_names:
        return [str(v) for v in table.column("source").to_pylist()]
    if "sources" in table.column_names:
        return ["+".join(v or []) for v in table.column("sources").to_pylist()]
    return None


def read_split(release: Path, files: list[str], text_column: str) -> tuple[np.ndarray, pa.Table]:
    """(float32 [rows, dim] vectors, the split's other columns the map needs) of one split, in order."""
    wanted = ["id", text_column, "source", "sources"]
    tables = []
    for name in files:
        names = pq.read_schema(release / name).names
        tables.append(pq.read_table(release / name, columns=["embedding", *[c for c in wanted if c in names]]))
    table = pa.concat_tables(tables)
    vectors = np.empty((table.num_rows, table.schema.field("embedding").type.list_size), np.float32)
    start = 0
    for batch in table.to_batches():  # one copy into one matrix
        vectors[start : start + batch.num_rows] = embedding_matrix(batch)
        start += batch.num_rows
    return vectors, table.drop_columns(["embedding"])


def derive(release: Path, manifest: dict, settings, seed: int, progress=print) -> dict:
    """Add the derived columns to every data file under `release`; write the maps. Returns
    {"robust": {config: stats}, "density": {config: {split: method record}}, "map": {config: record}}.
    settings: the [build] table (its density and map tables)."""
    configs = sorted(manifest["configs"], key=manifest["configs"].get)
    largest = configs[-1]
    text_column = manifest["text_column"]
    result = {"robust": {}, "density": {c: {} for c in configs}, "map": {}}
    for split in SPLITS:
        vectors, columns = read_split(release, manifest["data_files"][largest][split], text_column)
        texts = columns.column(text_column).to_pylist()
        norms = np.linalg.norm(vectors, axis=1).astype(np.float32)
        chars = np.fromiter(map(len, texts), np.int32, len(texts))
        for config in configs:
            n = split_sizes(manifest["configs"][config])[split]
            started = time.time()
            density, record = knn_density(vectors[:n], settings.density, seed)
            result["density"][config][split] = record
            values = {"embedding_norm": norms[:n], "text_chars": chars[:n], "density": density,
                      "density_weight": density_weights(density, settings.density.eps)}
            if settings.map.enabled:
                values.update(_map_columns(n))
            if split == "train":
                result["robust"][config] = robust_stats(vectors[:n])
                if settings.map.enabled:
                    result["map"][config] = _draw_map(release, config, vectors[:n], columns.slice(0, n),
                                                      text_column, values, settings.map)
            _rewrite(release, manifest["data_files"][config][split], values)
            progress(f"derived columns of {config} {split}: {n:,} rows, density {record['method']} "
                     f"in {time.time() - started:.1f} s")
    return result


def _map_columns(n: int) -> dict:
    return {name: np.full(n, np.nan, np.float32) for name in MAP_COLUMNS}  # nan is written as null


def _draw_map(release: Path, config: str, vectors: np.ndarray, columns: pa.Table, text_column: str,
              values: dict, settings) -> dict:
    from .embedding_map import project, write_map

    m = min(len(vectors), settings.max_points)
    coords, params = project(vectors[:m], n_neighbors=settings.n_neighbors, min_dist=settings.min_dist,
                             seed=settings.seed)
    for axis, name in enumerate(MAP_COLUMNS):
        values[name][:m] = coords[:, axis]
    sources = source_labels(columns.slice(0, m))
    files = write_map(release, config, ids=columns.column("id").slice(0, m).to_pylist(),
                      texts=columns.column(text_column).slice(0, m).to_pylist(), sources=sources,
                      coords=coords, weights=values["density_weight"][:m], title=f"{config} train",
                      sampled_from=len(vectors) if m < len(vectors) else None)
    return {**files, "rows": m, "split_rows": len(vectors), "params": params}


def _rewrite(release: Path, files: list[str], values: dict) -> None:
    """Rewrite a split's files with the derived columns appended (after any from an earlier pass)."""
    start = 0
    for name in files:
        path = release / name
        table = pq.read_table(path)
        table = table.drop_columns([c for c in DERIVED_COLUMNS if c in table.column_names])
        n = table.num_rows
        for field in DERIVED_FIELDS:
            if field.name in values:
                column = values[field.name][start : start + n]
                table = table.append_column(field, pa.array(column, field.type, from_pandas=True))
        write_parquet_atomic(table, path)
        start += n


def check(release: Path, manifest: dict, skip=()) -> list[tuple[str, bool, str]]:
    """Verify's checks of the derived columns and maps, recomputed from the published vectors:
    [(check name, passed, detail)]. Configs in `skip` (with damaged files, failed already) are left out."""
    from .density import (EXACT_TOLERANCE, IVF_TOLERANCE, METHOD_EXACT, exact_density_of, exact_top_k, mean_of_top,
                          unit_rows)

    results = []
    text_column = manifest["text_column"]
    for config in sorted(set(manifest["configs"]) - set(skip), key=manifest["configs"].get):
        for split in SPLITS:
            name = f"{config} {split}"
            files = manifest["data_files"][config][split]
            try:
                vectors, columns = read_split(release, files, text_column)
                stored = pa.concat_tables([pq.read_table(release / f, columns=[
                    c for c in DERIVED_COLUMNS if c in pq.read_schema(release / f).names]) for f in files])
            except (OSError, pa.ArrowException) as e:
                results.append((f"{name}: derived columns", False, f"unreadable: {e}"))
                continue
            expected = manifest["splits"][config][split]
            if len(vectors) != expected:  # the split sizes check names the problem
                results.append((f"{name}: derived columns", False, f"not checked: {len(vectors)} rows, not {expected}"))
                continue
            missing = [c for c in DERIVED_COLUMNS[:4] if c not in stored.column_names]
            if missing:
                results.append((f"{name}: derived columns", False, f"missing {', '.join(missing)}"))
                continue
            col = {c: stored.column(c).to_numpy(zero_copy_only=False) for c in stored.column_names}
            texts = columns.column(text_column).to_pylist()
            same_scalars = np.array_equal(col["embedding_norm"], np.linalg.norm(vectors, axis=1).astype(np.float32)) \
                and np.array_equal(col["text_chars"], np.fromiter(map(len, texts), np.int32, len(texts)))
            results.append((f"{name}: norm and length columns", same_scalars, "recomputed equal"))
            if split == "train":
                results.append(_check_robust(release, config, vectors))
            record = manifest["density"][config][split]
            density = col["density"]
            if record["method"] == METHOD_EXACT:
                recomputed = mean_of_top(exact_top_k(unit_rows(vectors), record["k_used"], record["block_rows"])) \
                    if record["k_used"] else np.zeros(len(vectors), np.float32)
                gap = float(np.abs(recomputed - density).max()) if len(density) else 0.0
                results.append((f"{name}: density recomputed", gap <= EXACT_TOLERANCE,
                                f"exact, k={record['k_used']}: max difference {gap:.2e} (≤ {EXACT_TOLERANCE:g})"))
            else:
                sample = np.sort(np.random.default_rng(0).choice(len(vectors), min(1000, len(vectors)), replace=False))
                exact = exact_density_of(unit_rows(vectors), sample, record["k_used"])
                diff = exact - density[sample]  # ivf can only miss neighbours: never above exact
                gaps = np.abs(diff)
                ok = diff.min() >= -EXACT_TOLERANCE and gaps.mean() <= IVF_TOLERANCE["mean_abs"] \
                    and np.quantile(gaps, 0.99) <= IVF_TOLERANCE["p99_abs"]
                results.append((f"{name}: density recomputed", bool(ok),
                                f"ivf against exact on {len(sample)} sampled rows: mean difference "
                                f"{gaps.mean():.2e}, 99th percentile {np.quantile(gaps, 0.99):.2e}, max {gaps.max():.2e} "
                                f"(bounds {IVF_TOLERANCE})"))
            weights = density_weights(density, record["eps"])
            results.append((f"{name}: density weights", bool(np.allclose(col["density_weight"], weights, rtol=1e-12,
                                                                          atol=0)),
                            f"1 / (eps + density) normalised, eps {record['eps']}; sum {col['density_weight'].sum():.12f}"))
            if "map_x" in col:
                results.append(_check_map(release, manifest, config, split, col))
    return results


def _check_robust(release: Path, config: str, vectors: np.ndarray) -> tuple[str, bool, str]:
    import json

    from .stats import ROBUST_KEYS

    try:
        stored = json.loads((release / "stats" / f"{config}.json").read_text())
    except (OSError, ValueError) as e:
        return f"{config}: robust stats recomputed equal", False, f"stats/{config}.json unreadable: {e}"
    recomputed = robust_stats(vectors)
    ok = all(stored.get(k) == recomputed[k] for k in (*ROBUST_KEYS, "robust_method"))
    return f"{config}: robust stats recomputed equal", ok, "median, robust_std, p01, p99 of the train split"


def _check_map(release: Path, manifest: dict, config: str, split: str, col: dict) -> tuple[str, bool, str]:
    import json

    xyz = np.stack([col[c] for c in MAP_COLUMNS], axis=1)
    drawn = ~np.isnan(xyz).any(axis=1)
    record = manifest["map"].get(config) if split == "train" else None
    if record is None:
        return f"{config} {split}: map columns", not drawn.any(), f"{int(drawn.sum())} rows placed (none expected)"
    try:
        points = json.loads((release / record["json"]).read_text())["points"]
    except (OSError, ValueError, KeyError) as e:
        return f"{config} {split}: map columns", False, f"{record['json']} unreadable: {e}"
    m = record["rows"]
    ok = len(points) == m <= len(xyz) and drawn[:m].all() and not drawn[m:].any() and np.abs(xyz[:m]).max() <= 1.0 \
        and np.allclose([[p["x"], p["y"], p["z"]] for p in points], xyz[:m], atol=1e-4) \
        and (release / record["html"]).is_file() and (release / record["png"]).is_file()
    return (f"{config} {split}: map columns", bool(ok),
            f"{int(drawn.sum())} rows placed, {len(points)} points in {record['json']}, coordinates equal")
