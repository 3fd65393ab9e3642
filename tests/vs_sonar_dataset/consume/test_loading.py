"""load_embeddings on real releases: a folder, and a Hub repo served by the test Hub."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from hub_upload import push_folder

from vs_sonar_dataset.consume.loading import load_embeddings
from vs_sonar_dataset.core.errors import UserError
from vs_sonar_dataset.core.schema import embedding_matrix

REPO = "org/vs-sonar"


def expected(release, config, split):
    manifest = json.loads((release / "release.json").read_text())
    table = pa.concat_tables(pq.read_table(release / p) for p in manifest["data_files"][config][split])
    return embedding_matrix(table), table.column("id").combine_chunks()


@pytest.mark.parametrize("config,split", [("l", "train"), ("l", "test"), ("m", "validation")])
def test_matrix_and_ids_are_the_split_in_file_order(small_release_master, config, split):
    matrix, ids = load_embeddings(small_release_master, config, split)
    want_matrix, want_ids = expected(small_release_master, config, split)
    assert matrix.dtype == np.float32 and matrix.shape == want_matrix.shape
    assert np.array_equal(matrix, want_matrix) and ids.equals(want_ids) and isinstance(ids, pa.StringArray)


def test_several_row_groups_are_copied_into_one_writable_matrix(small_release_master):
    matrix, _ = load_embeddings(small_release_master, "l", "train")  # three files
    assert matrix.flags.c_contiguous and matrix.flags.owndata and matrix.flags.writeable


def test_one_row_group_is_a_view_of_arrow_memory(small_release_master):
    matrix, ids = load_embeddings(small_release_master, "s", "train")  # one file, one row group
    assert not matrix.flags.owndata and not matrix.flags.writeable and len(matrix) == len(ids) == 80


def test_as_torch_shares_the_matrix(small_release_master):
    tensor, ids = load_embeddings(small_release_master, "m", "train", as_torch=True)
    want, _ = expected(small_release_master, "m", "train")
    assert tensor.dtype == torch.float32 and torch.equal(tensor, torch.from_numpy(want))


def test_user_mistakes_are_user_errors(small_release_master, tmp_path):
    cases = [((small_release_master, "xl"), "no config 'xl'; it has l, m, s"),
             ((small_release_master, "m", "dev"), "has no split 'dev'; it has train, validation, test"),
             ((tmp_path / "nowhere", "m"), "no such folder"),
             ((tmp_path, "m"), "no release.json")]
    for args, message in cases:
        with pytest.raises(UserError, match=message):
            load_embeddings(*args)


def test_hub_repo_downloads_only_that_split(hub_server, small_release_master, tmp_path):
    push_folder(hub_server, small_release_master, REPO)
    hub_server.reset()
    script = textwrap.dedent(f"""
        import json, numpy as np
        from vs_sonar_dataset.core.errors import UserError
        from vs_sonar_dataset.consume.loading import load_embeddings
        matrix, ids = load_embeddings({REPO!r}, "l", "train")
        np.save({str(tmp_path / "m.npy")!r}, matrix)
        print(json.dumps(ids.to_pylist()))
        for args in [({REPO!r}, "xl"), ("org/absent", "l")]:
            try:
                load_embeddings(*args)
            except UserError as e:
                print(e)
    """)
    env = {**os.environ, **hub_server.env("read", home=tmp_path / "home")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    want_matrix, want_ids = expected(small_release_master, "l", "train")
    assert np.array_equal(np.load(tmp_path / "m.npy"), want_matrix) and json.loads(out[0]) == want_ids.to_pylist()
    assert "no config 'xl'" in out[1] and "org/absent: no such folder here, and no dataset repo" in out[2]
    fetched = {path.split("/resolve/", 1)[1].split("/", 1)[1]
               for method, path, endpoint, status in hub_server.requests if endpoint == "resolve" and status == 200}
    assert fetched == {"release.json", *(f"data/l/train-0000{i}-of-00003.parquet" for i in range(3))}
