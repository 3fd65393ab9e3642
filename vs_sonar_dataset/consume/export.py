"""`vs-sonar export`: one config of a release (a folder or a Hub repo) in the files a training script loads
without `datasets`. Every format writes stats.json (the config's normalisation stats, as shipped) and
export.json (what was exported from where), then per split:

    pt           {split}.pt: a dict of embeddings (float32 [rows, dim]), {text_column}s and ids (lists of str),
                 density_weights (float64 [rows], when the release has them), config, split, stats (the
                 per-dimension vectors of stats.json as tensors: mean, std, and median, robust_std... when shipped)
    safetensors  {split}.safetensors (embeddings, density_weights) + {split}.parquet (every other column)
    npy          {split}/embeddings.npy, density_weights.npy, ids.json, {text_column}s.json, metadata.json

Rows keep the release's order. The same release gives the same bytes. The export is written into OUT.partial
and renamed into place at the end.
"""

import json
import shutil
from pathlib import Path

from ..core.errors import UserError
from ..core.outputs import describe_folder, require_writable

HELP = ("export one config of a release (folder or Hub repo) as .pt files, safetensors + Parquet, or .npy "
        "arrays, with its normalisation stats")
FORMATS = ("pt", "safetensors", "npy")
MARKER = "export.json"  # marks a folder as an export, which a later export may replace
WEIGHTS = "density_weight"


def add_arguments(parser):
    parser.add_argument("release", help="a release folder, or a Hub dataset repo id (org/name)")
    parser.add_argument("--config", required=True, help="the config to export, e.g. 5k")
    parser.add_argument("--format", choices=FORMATS, default="pt", help="the layout to write")
    parser.add_argument("--out", required=True, help="folder to write: new, empty, or an earlier export")
    parser.add_argument("--revision", help="for a Hub repo: branch, tag or commit (default: main)")


def main(args) -> int:
    summary = export_release(args.release, args.config, args.format, args.out, revision=args.revision)
    rows = ", ".join(f"{split} {n:,}" for split, n in summary["splits"].items())
    print(f"export: config {args.config!r} as {args.format} in {args.out} ({rows} rows)")
    return 0


def export_release(repo_or_folder, config: str, fmt: str, out, *, revision: str | None = None) -> dict:
    """Write the export; returns what export.json records."""
    import pyarrow.parquet as pq

    from .loading import open_release, read_matrix

    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
    out = _check_out(Path(out))
    release = open_release(repo_or_folder, config, revision=revision, with_stats=True)
    stats_path = release.stats_path
    try:
        stats = json.loads(stats_path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{stats_path}: no readable stats for config {config!r} ({type(e).__name__}); the "
                        "release is incomplete") from None
    summary = {"format": fmt, "config": config, "dim": release.dim, "text_column": release.text_column,
               "source": {"repo": release.manifest.get("repo_id"), "revision": release.revision,
                          "config": config, "code_version": release.manifest.get("code_version")},
               "splits": {}}
    work = out.with_name(out.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        for split, paths in release.files.items():
            columns = [c for c in pq.read_schema(paths[0]).names if c != "embedding"]
            matrix, rest = read_matrix(paths, release.dim, columns)
            WRITERS[fmt](work, split, matrix, rest, summary, stats)
            summary["splits"][split] = len(matrix)
            del matrix, rest
        shutil.copyfile(stats_path, work / "stats.json")
        _write_json(work / MARKER, summary)
        if out.exists():
            shutil.rmtree(out)  # empty, or an earlier export (_check_out)
        work.rename(out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return summary


def _check_out(out: Path) -> Path:
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: is a file, not a folder; choose a new or empty folder for the export")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise UserError(f"{out}: holds {describe_folder(out)}, not an export; export to a new or empty folder")
    parent = out.absolute().parent
    if not parent.is_dir():
        raise UserError(f"{parent}: no such folder; create it or choose another --out")
    require_writable(parent, f"export writes {out.name}.partial there")
    return out


def _write_json(path: Path, obj) -> None:
    indent = 2 if isinstance(obj, dict) else None  # a list of a million ids stays one line
    path.write_text(json.dumps(obj, indent=indent, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def _vectors(stats: dict) -> dict:
    """The per-dimension entries of a stats file (mean, std, median, robust_std, p01, p99...), by name."""
    dim = stats["dim"]
    return {k: v for k, v in sorted(stats.items()) if isinstance(v, list) and len(v) == dim}


def _write_pt(work: Path, split: str, matrix, rest, summary: dict, stats: dict) -> None:
    import torch

    from .loading import as_tensor

    text = summary["text_column"]
    data = {"embeddings": as_tensor(matrix), f"{text}s": rest.column(text).to_pylist(),
            "ids": rest.column("id").to_pylist()}
    if WEIGHTS in rest.column_names:
        data["density_weights"] = torch.from_numpy(rest.column(WEIGHTS).to_numpy())
    data.update(config=summary["config"], split=split,
                stats={k: torch.tensor(v, dtype=torch.float32) for k, v in _vectors(stats).items()})
    torch.save(data, work / f"{split}.pt")


def _write_safetensors(work: Path, split: str, matrix, rest, summary: dict, stats: dict) -> None:
    import pyarrow.parquet as pq
    from safetensors.numpy import save_file

    from ..core.shards import ROW_GROUP_ROWS, parquet_options

    tensors = {"embeddings": matrix}
    if WEIGHTS in rest.column_names:
        tensors["density_weights"] = rest.column(WEIGHTS).to_numpy()
    # one metadata entry: safetensors writes several in hash order, which differs from run to run
    about = json.dumps({"config": summary["config"], "split": split, "source": summary["source"]}, sort_keys=True)
    save_file(tensors, str(work / f"{split}.safetensors"), metadata={"vs_sonar_export": about})
    pq.write_table(rest, work / f"{split}.parquet", row_group_size=ROW_GROUP_ROWS, **parquet_options(rest.schema))


def _write_npy(work: Path, split: str, matrix, rest, summary: dict, stats: dict) -> None:
    import numpy as np

    folder = work / split
    folder.mkdir()
    np.save(folder / "embeddings.npy", matrix)
    if WEIGHTS in rest.column_names:
        np.save(folder / "density_weights.npy", rest.column(WEIGHTS).to_numpy())
    text = summary["text_column"]
    _write_json(folder / "ids.json", rest.column("id").to_pylist())
    _write_json(folder / f"{text}s.json", rest.column(text).to_pylist())
    _write_json(folder / "metadata.json", {"config": summary["config"], "split": split, "rows": len(matrix),
                                           "dim": summary["dim"], "text_column": text, "source": summary["source"]})


WRITERS = {"pt": _write_pt, "safetensors": _write_safetensors, "npy": _write_npy}
