"""publish --push against a Hub-compatible server on 127.0.0.1, with the real huggingface_hub and datasets."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vs_sonar_dataset.envs import REPO_ROOT
from vs_sonar_dataset.verify import verify_release

REPO = "org/vs-sonar"


@pytest.fixture
def verified_release(small_pool, small_release):
    assert verify_release(small_release, small_pool, progress=False)["passed"]
    return small_release


def publish(hub, release, *extra, role="write"):
    env = {**os.environ, **hub.env(role)}
    cmd = [sys.executable, "-m", "publish", "--out", str(release), "--push", "--repo", REPO, *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=300)


def load_in_fresh_process(hub, config, out_dir, role="read"):
    """load_dataset(REPO, config) in a new process with an empty cache; each split saved as Arrow."""
    script = textwrap.dedent(f"""
        import pyarrow as pa, datasets
        ds = datasets.load_dataset({REPO!r}, {config!r})
        for split, d in ds.items():
            with pa.OSFile({str(out_dir)!r} + "/" + split + ".arrow", "wb") as f:
                with pa.ipc.new_file(f, d.data.table.schema) as w:
                    w.write_table(d.data.table)
        from vs_sonar_dataset import load_stats
        print(load_stats({REPO!r}, {config!r}).count)
    """)
    env = {**os.environ, **hub.env(role), "HF_HOME": str(out_dir / "home")}
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)


def test_push_then_load_dataset_returns_the_release(hub_server, verified_release, tmp_path):
    result = publish(hub_server, verified_release, "--allow-synthetic")
    assert result.returncode == 0, result.stderr
    assert "pushed" in result.stdout and hub_server.tokens["write"] not in result.stdout + result.stderr
    commits = hub_server.commits(REPO)
    assert len(commits) == 2  # the repo's initial commit, then exactly one for the release
    remote = hub_server.files(REPO)
    for path in ("README.md", "data/m/train-00000-of-00001.parquet", "stats/m.json", "verify_report.json"):
        assert hub_server.read_file(REPO, path) == (verified_release / path).read_bytes()

    loaded = load_in_fresh_process(hub_server, "m", tmp_path)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip().splitlines()[-1] == "240"
    for split in ("train", "validation", "test"):
        expected = pa.concat_tables(pq.read_table(p) for p in sorted((verified_release / "data" / "m").glob(f"{split}-*")))
        with pa.ipc.open_file(str(tmp_path / f"{split}.arrow")) as reader:
            got = reader.read_all()
        assert got.cast(expected.schema).equals(expected), split

    again = publish(hub_server, verified_release, "--allow-synthetic")
    assert again.returncode == 0 and "already up to date: no commit made" in again.stdout
    assert len(hub_server.commits(REPO)) == 2 and hub_server.files(REPO) == remote


@pytest.mark.parametrize("rule", [{"at": "lfs_put", "after": 2, "status": 403}, {"die_at": "commit"}])
def test_interrupted_push_leaves_remote_unchanged_and_rerun_succeeds(hub_server, verified_release, rule):
    hub_server.create_repo(REPO)
    head = hub_server.head(REPO)
    hub_server.fail(rule)
    failed = publish(hub_server, verified_release, "--allow-synthetic")
    assert failed.returncode == 2 and "publish: error:" in failed.stderr and "Traceback" not in failed.stderr
    assert hub_server.head(REPO) == head and set(hub_server.files(REPO)) == {".gitattributes"}
    hub_server.fail()
    rerun = publish(hub_server, verified_release, "--allow-synthetic")
    assert rerun.returncode == 0, rerun.stderr
    assert len(hub_server.commits(REPO)) == 2


def test_changed_release_pushes_only_the_difference(hub_server, verified_release, small_pool):
    assert publish(hub_server, verified_release, "--allow-synthetic").returncode == 0
    (verified_release / "model_checks.json").write_text("{}")  # not verified: push must refuse
    refused = publish(hub_server, verified_release, "--allow-synthetic")
    assert refused.returncode == 2 and "files changed since verify (model_checks.json)" in refused.stderr
    (verified_release / "model_checks.json").unlink()
    shutil.rmtree(verified_release / "plots")
    manifest = json.loads((verified_release / "release.json").read_text())
    manifest.pop("plots")
    (verified_release / "release.json").write_text(json.dumps(manifest))
    assert verify_release(verified_release, small_pool, progress=False)["passed"]
    hub_server.reset()
    result = publish(hub_server, verified_release, "--allow-synthetic")
    assert result.returncode == 0, result.stderr
    assert "deleted 4" in result.stdout and hub_server.counts.get("commit") == 1
    assert not any(p.startswith("plots/") for p in hub_server.files(REPO))


def test_errors_are_clear(hub_server, verified_release, small_release_master):
    no_token = publish(hub_server, verified_release, "--allow-synthetic", role=None)
    assert no_token.returncode == 2 and "no Hugging Face token" in no_token.stderr
    read_only = publish(hub_server, verified_release, "--allow-synthetic", role="read")
    assert read_only.returncode == 2 and "no write permission on org/vs-sonar (403)" in read_only.stderr
    assert hub_server.tokens["read"] not in read_only.stderr
    synthetic = publish(hub_server, verified_release)
    assert synthetic.returncode == 2 and "--allow-synthetic" in synthetic.stderr
    unverified = publish(hub_server, small_release_master, "--allow-synthetic")
    assert unverified.returncode == 2 and "not verified" in unverified.stderr
    for result in (no_token, read_only, synthetic, unverified):
        assert "Traceback" not in result.stderr


def test_foreign_card_is_refused_unless_forced(hub_server, verified_release, tmp_path):
    script = textwrap.dedent(f"""
        from huggingface_hub import HfApi
        api = HfApi()
        api.create_repo({REPO!r}, repo_type="dataset")
        api.upload_file(path_or_fileobj=b"# someone else's dataset\\n", path_in_repo="README.md",
                        repo_id={REPO!r}, repo_type="dataset")
    """)
    env = {**os.environ, **hub_server.env("write")}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=120)
    refused = publish(hub_server, verified_release, "--allow-synthetic")
    assert refused.returncode == 2 and "did not write; pass --force" in refused.stderr
    assert hub_server.read_file(REPO, "README.md") == b"# someone else's dataset\n"
    forced = publish(hub_server, verified_release, "--allow-synthetic", "--force")
    assert forced.returncode == 0, forced.stderr
    assert hub_server.read_file(REPO, "README.md") == (verified_release / "README.md").read_bytes()


def test_push_to_a_branch_and_private_repo(hub_server, verified_release):
    result = publish(hub_server, verified_release, "--allow-synthetic", "--private", "--revision", "v1")
    assert result.returncode == 0, result.stderr
    assert "README.md" in hub_server.files(REPO, revision="v1")
    assert set(hub_server.files(REPO, revision="main")) == {".gitattributes"}
