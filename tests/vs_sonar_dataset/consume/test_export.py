"""vs-sonar export: each layout holds the release's rows, the same bytes every time, from a folder or the Hub."""

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from hub_upload import push_folder
from safetensors.numpy import load_file

from vs_sonar_dataset.consume.export import export_release
from vs_sonar_dataset.core.envs import REPO_ROOT
from vs_sonar_dataset.core.schema import embedding_matrix

SPLITS = ("train", "validation", "test")


def vs_sonar(*args, env=None):
    return subprocess.run([sys.executable, "-m", "vs_sonar_dataset.cli", *args], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=300, env=env)


def tree(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def release(small_release_master):
    return small_release_master


@pytest.fixture(scope="module")
def splits(release):
    manifest = json.loads((release / "release.json").read_text())
    return {s: pa.concat_tables(pq.read_table(release / p) for p in manifest["data_files"]["l"][s]) for s in SPLITS}


def has_weights(table):
    return "density_weight" in table.column_names


def test_pt_layout(release, splits, tmp_path):
    summary = export_release(release, "l", "pt", tmp_path / "out")
    out = tmp_path / "out"
    assert summary["splits"] == {"train": 800, "validation": 100, "test": 100}
    assert (out / "stats.json").read_bytes() == (release / "stats" / "l.json").read_bytes()
    stats = json.loads((out / "stats.json").read_text())
    for split, table in splits.items():
        data = torch.load(out / f"{split}.pt")
        assert torch.equal(data["embeddings"], torch.from_numpy(embedding_matrix(table).copy()))
        assert data["embeddings"].dtype == torch.float32
        assert data["instructions"] == table["instruction"].to_pylist() and data["ids"] == table["id"].to_pylist()
        assert data["config"] == "l" and data["split"] == split
        assert torch.equal(data["stats"]["mean"], torch.tensor(stats["mean"])) and "std" in data["stats"]
        assert ("median" in data["stats"]) == ("median" in stats)
        if has_weights(table):
            assert data["density_weights"].tolist() == table["density_weight"].to_pylist()
        else:
            assert "density_weights" not in data


def test_safetensors_layout(release, splits, tmp_path):
    export_release(release, "l", "safetensors", tmp_path / "out")
    for split, table in splits.items():
        tensors = load_file(tmp_path / "out" / f"{split}.safetensors")
        assert np.array_equal(tensors["embeddings"], embedding_matrix(table))
        assert ("density_weights" in tensors) == has_weights(table)
        if has_weights(table):
            assert tensors["density_weights"].tolist() == table["density_weight"].to_pylist()
        rest = pq.read_table(tmp_path / "out" / f"{split}.parquet")
        assert rest.equals(table.drop_columns(["embedding"]))


def test_npy_layout(release, splits, tmp_path):
    export_release(release, "l", "npy", tmp_path / "out")
    for split, table in splits.items():
        folder = tmp_path / "out" / split
        assert np.array_equal(np.load(folder / "embeddings.npy"), embedding_matrix(table))
        assert json.loads((folder / "ids.json").read_text()) == table["id"].to_pylist()
        assert json.loads((folder / "instructions.json").read_text()) == table["instruction"].to_pylist()
        assert (folder / "density_weights.npy").is_file() == has_weights(table)
        meta = json.loads((folder / "metadata.json").read_text())
        assert meta == {"config": "l", "split": split, "rows": len(table), "dim": 16, "text_column": "instruction",
                        "source": {"repo": "org/vs-sonar", "revision": None, "config": "l",
                                   "code_version": meta["source"]["code_version"]}}


def test_same_bytes_every_time_and_a_rerun_replaces_the_export(release, tmp_path):
    for fmt in ("pt", "safetensors"):
        first = vs_sonar("export", str(release), "--config", "m", "--format", fmt, "--out", str(tmp_path / "a"))
        assert first.returncode == 0, first.stderr
        assert "export: config 'm' as " + fmt in first.stdout
        second = vs_sonar("export", str(release), "--config", "m", "--format", fmt, "--out", str(tmp_path / "b"))
        assert second.returncode == 0 and tree(tmp_path / "a") == tree(tmp_path / "b"), fmt
    assert not (tmp_path / "a.partial").exists() and (tmp_path / "a" / "train.safetensors").is_file()
    assert not (tmp_path / "a" / "train.pt").exists()  # the second format replaced the first


def test_user_mistakes_are_one_line_errors(release, tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    cases = [(["export", str(release), "--config", "xl", "--out", str(tmp_path / "o")], "no config 'xl'"),
             (["export", str(tmp_path / "nowhere"), "--config", "m", "--out", str(tmp_path / "o")], "no such folder"),
             (["export", str(release), "--config", "m", "--out", str(tmp_path / "notes")],
              "holds 1 other entry (todo.txt), not an export"),
             (["export", str(release), "--config", "m", "--out", str(release)], "holds a release (release.json)")]
    for args, message in cases:
        result = vs_sonar(*args)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.strip().splitlines() == [result.stderr.strip()] and message in result.stderr
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me" and not (tmp_path / "o").exists()
    listed = vs_sonar("--help")
    assert listed.returncode == 0 and "export" in listed.stdout
    assert vs_sonar("export", "--help").stdout.startswith("usage: vs-sonar export")


def test_export_from_the_hub_matches_the_folder(hub_server, release, tmp_path):
    push_folder(hub_server, release, "org/vs-sonar")
    env = {**os.environ, **hub_server.env("read", home=tmp_path / "home")}
    out = tmp_path / "from_hub"  # not "hub": that is the server's root
    result = vs_sonar("export", "org/vs-sonar", "--config", "s", "--format", "pt", "--out", str(out), env=env)
    assert result.returncode == 0, result.stderr
    export_release(release, "s", "pt", tmp_path / "local")
    hub, local = tree(out), tree(tmp_path / "local")
    assert hub.pop("export.json") != local.pop("export.json") and hub == local
    source = json.loads((out / "export.json").read_text())["source"]
    assert source["repo"] == "org/vs-sonar" and source["revision"] == hub_server.head("org/vs-sonar")
