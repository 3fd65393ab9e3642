"""Reading a release as a consumer: one split's vectors as a float32 matrix, from a folder or a Hub repo.

A Hub repo is read at one commit: release.json first, then only the files of the splits asked for (and the
config's stats), all pinned to the commit release.json came from, so a push in between cannot mix releases.
"""

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..build.splits import SPLITS
from ..core.errors import ShardError, UserError
from ..core.schema import embedding_matrix

RELEASE_MANIFEST = "release.json"  # build/release.py's name for it, not imported: that module is the whole build


@dataclass(frozen=True)
class ReleaseFiles:
    """A release's manifest and the local paths of the splits asked for (a Hub repo's are in the HF cache)."""

    root: Path  # the release folder, or the Hub snapshot folder
    manifest: dict
    config: str
    files: dict[str, list[Path]]  # split -> data files, in order
    source: str  # what the caller named: a folder or a repo id
    revision: str | None  # the Hub commit read, None for a folder

    @property
    def text_column(self) -> str:
        return self.manifest.get("text_column", "instruction")  # releases before plug-in sources

    @property
    def dim(self) -> int:
        return int(self.manifest["embedding_dim"])

    @property
    def stats_path(self) -> Path:
        return self.root / "stats" / f"{self.config}.json"


def open_release(repo_or_folder, config: str, splits=None, *, revision: str | None = None,
                 with_stats: bool = False) -> ReleaseFiles:
    """Locate (and for a Hub repo download) the data files of `splits` (default: all) of `config`."""
    folder = Path(repo_or_folder)
    if folder.is_dir():
        if revision is not None:
            raise UserError(f"{folder}: a folder has no revisions; drop revision or name a Hub repo")
        manifest = _read_manifest(folder / RELEASE_MANIFEST, str(folder))
        files = _split_files(manifest, config, splits, str(folder))
        return ReleaseFiles(folder, manifest, config, _existing(folder, files), str(folder), None)
    repo = str(repo_or_folder)
    if not _looks_like_repo_id(repo):
        raise UserError(f"{repo}: no such folder; give a release folder or a Hub dataset repo id (org/name)")
    root = _download(repo, revision, [RELEASE_MANIFEST])
    manifest = _read_manifest(root / RELEASE_MANIFEST, repo)
    files = _split_files(manifest, config, splits, repo)
    wanted = [p for paths in files.values() for p in paths] + ([f"stats/{config}.json"] if with_stats else [])
    commit = root.name  # snapshot folders are named by commit: the rest comes from the same one
    _download(repo, commit, wanted)
    return ReleaseFiles(root, manifest, config, _existing(root, files), repo, commit)


def _looks_like_repo_id(text: str) -> bool:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return text.count("/") == 1


def _download(repo: str, revision: str | None, patterns: list[str]) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    try:
        return Path(snapshot_download(repo, repo_type="dataset", revision=revision, allow_patterns=patterns))
    except RepositoryNotFoundError:
        raise UserError(f"{repo}: no such folder here, and no dataset repo of that name on the Hub that this "
                        "token may read (set HF_TOKEN for a private repo)") from None
    except RevisionNotFoundError:
        raise UserError(f"{repo}: no revision {revision!r} on the Hub") from None
    except LocalEntryNotFoundError:
        raise UserError(f"{repo}: not in the local cache and the Hub is not reachable (offline mode?); connect "
                        "and run again") from None
    except HfHubHTTPError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{repo}: the Hub refused the download ({first})") from None


def _read_manifest(path: Path, where: str) -> dict:
    if not path.is_file():
        raise UserError(f"{where}: no {RELEASE_MANIFEST}; is it a release folder written by `vs-sonar build`?")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as e:
        raise UserError(f"{path}: not JSON ({e}); download or build the release again") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("data_files"), dict) \
            or not isinstance(manifest.get("embedding_dim"), int):
        raise UserError(f"{path}: not a release manifest (no data_files or embedding_dim)")
    return manifest


def _split_files(manifest: dict, config: str, splits, where: str) -> dict[str, list[str]]:
    configs = manifest["data_files"]
    if config not in configs:
        raise UserError(f"{where}: no config {config!r}; it has {', '.join(sorted(configs))}")
    have = configs[config]
    if splits is None:
        splits = sorted(have, key=_split_order)
    for split in splits:
        if split not in have:
            raise UserError(f"{where}: config {config!r} has no split {split!r}; it has "
                            f"{', '.join(sorted(have, key=_split_order))}")
    return {split: list(have[split]) for split in splits}


def _split_order(split: str):
    return (SPLITS.index(split) if split in SPLITS else len(SPLITS), split)


def _existing(root: Path, files: dict[str, list[str]]) -> dict[str, list[Path]]:
    out = {}
    for split, names in files.items():
        out[split] = [root / name for name in names]
        for path in out[split]:
            if not path.is_file():
                raise UserError(f"{path}: listed in {RELEASE_MANIFEST} but missing; the release is incomplete")
    return out


def read_matrix(paths: list[Path], dim: int, columns=("id",)) -> tuple[np.ndarray, pa.Table]:
    """The embedding column of `paths` as one float32 [rows, dim] matrix, and the other `columns` as a table.

    A single row group is returned as a view (read-only: numpy cannot write into Arrow's buffer). Otherwise
    row groups are decoded in parallel threads, each copied once into its rows of a preallocated matrix:
    one copy, and memory for a few row groups beyond the matrix."""
    columns = [c for c in columns if c != "embedding"] + ["embedding"]
    groups, rows = [], 0  # (path, row group, first row)
    for path in paths:
        metadata = _open(path, dim).metadata
        for group in range(metadata.num_row_groups):
            groups.append((path, group, rows))
            rows += metadata.row_group(group).num_rows
    if len(groups) <= 1:  # one row group: a view; none: an empty split
        table = _read(*groups[0][:2], columns) if groups else pq.read_table(paths[0], columns=columns)
        return embedding_matrix(table), table.drop_columns(["embedding"])
    matrix = np.empty((rows, dim), np.float32)

    def fill(task) -> pa.Table:
        path, group, start = task
        table = _read(path, group, columns)
        for batch in table.select(["embedding"]).to_batches():
            part = embedding_matrix(batch)
            matrix[start : start + len(part)] = part
            start += len(part)
        return table.drop_columns(["embedding"])

    with ThreadPoolExecutor(min(len(groups), pa.cpu_count()), thread_name_prefix="read") as pool:
        rest = list(pool.map(fill, groups))
    return matrix, pa.concat_tables(rest)


def _open(path: Path, dim: int) -> pq.ParquetFile:
    """The file, once its embedding column is known to be what the release says."""
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise ShardError(f"{path}: unreadable ({e})") from None
    schema = parquet.schema_arrow
    kind = schema.field("embedding").type if "embedding" in schema.names else None
    if kind is None or not pa.types.is_fixed_size_list(kind) or kind.list_size != dim \
            or kind.value_type != pa.float32():
        raise ShardError(f"{path}: embedding is {kind}, the release says fixed_size_list<float32>[{dim}]")
    return parquet


def _read(path: Path, group: int, columns: list[str]) -> pa.Table:
    try:  # a ParquetFile per call: threads do not share a reader
        table = pq.ParquetFile(path).read_row_group(group, columns=columns, use_threads=False)
    except (pa.ArrowInvalid, OSError) as e:
        raise ShardError(f"{path}: row group {group} unreadable ({e})") from None
    if table.column("embedding").null_count:
        raise ShardError(f"{path}: the embedding column has nulls")
    return table


def load_embeddings(repo_or_folder, config: str, split: str = "train", *, as_torch: bool = False,
                    revision: str | None = None):
    """(matrix, ids) of one split: a float32 [rows, dim] numpy array (a torch tensor sharing its memory when
    as_torch) and the ids as a pyarrow StringArray in the same order (ids[i].as_py(), ids.to_pylist()).

    repo_or_folder is a release folder or a Hub dataset repo id ("org/vs-sonar", revision optional); a Hub
    repo downloads only that split's files."""
    release = open_release(repo_or_folder, config, [split], revision=revision)
    matrix, rest = read_matrix(release.files[split], release.dim)
    ids = rest.column("id").combine_chunks()
    if not as_torch:
        return matrix, ids
    return as_tensor(matrix), ids


def as_tensor(matrix: np.ndarray):
    """torch.from_numpy without a copy; a read-only view (one Arrow chunk) is shared as it is, since nothing
    but the returned tensor holds that buffer (torch warns about non-writable arrays, needlessly here)."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(matrix)
