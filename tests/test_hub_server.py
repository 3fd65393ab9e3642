"""The test hub, exercised by the real huggingface_hub and datasets clients running in subprocesses."""

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hub_server import HubServer

REPO = "org/vs-sonar-test"
SPLITS = {"train": 40, "validation": 5, "test": 5}

# Runs first in every client process: helpers the snippets below use.
CLIENT_PRELUDE = """
import json, os, sys
from pathlib import Path
from huggingface_hub import HfApi, CommitOperationAdd, CommitOperationDelete
from huggingface_hub.errors import HfHubHTTPError

api = HfApi()

def emit(obj):
    print("RESULT " + json.dumps(obj), flush=True)

def error_info(exc):
    response = getattr(exc, "response", None)
    return {"type": type(exc).__name__, "status": getattr(response, "status_code", None), "message": str(exc)}

def push(folder, repo_id, message, **kwargs):
    '''One commit adding every file of `folder`, like the publish step does.'''
    folder = Path(folder)
    ops = [CommitOperationAdd(p.relative_to(folder).as_posix(), str(p))
           for p in sorted(folder.rglob("*")) if p.is_file()]
    try:
        info = api.create_commit(repo_id, ops, commit_message=message, repo_type="dataset", **kwargs)
        return {"oid": info.oid}
    except Exception as exc:
        return {"error": error_info(exc)}
"""


def run_client(hub: HubServer, code: str, role: str | None = "write", home: Path | None = None) -> dict:
    """Run `code` (after CLIENT_PRELUDE) in a fresh interpreter pointed at `hub`; return what it emitted."""
    env = {**os.environ, **hub.env(role, home=home)}
    proc = subprocess.run([sys.executable, "-c", CLIENT_PRELUDE + textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=180)
    results = [line[len("RESULT "):] for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and results, f"client failed (rc={proc.returncode}):\n{proc.stderr[-4000:]}"
    return json.loads(results[-1])


def split_table(split: str, n: int, offset: int = 0) -> pa.Table:
    ids = [f"{split}-{offset + i:05d}" for i in range(n)]
    embedding = pa.array([[float(offset + i), float(i) / 7.0, -1.5] for i in range(n)],
                         type=pa.list_(pa.float32(), 3))
    return pa.table({"id": ids, "instruction": [f"Think about step {i} of {split}." for i in range(n)],
                     "embedding": embedding})


def make_release(folder: Path, offset: int = 0, big_file: bool = False) -> Path:
    """A release folder laid out like the Hub repo: README with `configs:` and one Parquet file per split."""
    data = folder / "data" / "5k"
    data.mkdir(parents=True, exist_ok=True)
    for split, n in SPLITS.items():
        pq.write_table(split_table(split, n, offset), data / f"{split}-00000-of-00001.parquet")
    config_lines = "".join(f"  - split: {s}\n    path: data/5k/{s}-*.parquet\n" for s in SPLITS)
    (folder / "README.md").write_text(f"---\nconfigs:\n- config_name: 5k\n  data_files:\n{config_lines}---\n"
                                      "# vs-sonar test card\n")
    if big_file:
        # Plain text (no NUL byte) above the 10 MB threshold: LFS only because of its size.
        line = b'{"note": "padding to cross the LFS size threshold"}\n'
        (folder / "extra").mkdir(exist_ok=True)
        (folder / "extra" / "big.jsonl").write_bytes(line * (10_600_000 // len(line)))
    return folder


def test_push_then_load_dataset_round_trip(hub_server, tmp_path):
    release = make_release(tmp_path / "release", big_file=True)
    out = run_client(hub_server, f"""
        first = str(api.create_repo({REPO!r}, repo_type="dataset"))
        again = str(api.create_repo({REPO!r}, repo_type="dataset", exist_ok=True))
        result = push({str(release)!r}, {REPO!r}, "Upload vs-sonar 5k")
        commits = [c.title for c in api.list_repo_commits({REPO!r}, repo_type="dataset")]
        files = sorted(api.list_repo_files({REPO!r}, repo_type="dataset"))
        emit({{"urls": [first, again], "push": result, "commits": commits, "files": files}})
    """)
    assert out["urls"] == [f"{hub_server.endpoint}/datasets/{REPO}"] * 2
    assert "oid" in out["push"], out["push"]
    # create_repo made the initial commit (as the Hub does); the push made exactly one more.
    assert out["commits"] == ["Upload vs-sonar 5k", "initial commit"]
    assert [c["id"] for c in hub_server.commits(REPO)][0] == out["push"]["oid"] == hub_server.head(REPO)
    expected_files = sorted([".gitattributes", "README.md", "extra/big.jsonl"]
                            + [f"data/5k/{s}-00000-of-00001.parquet" for s in SPLITS])
    assert out["files"] == expected_files
    remote = hub_server.files(REPO)
    assert {p for p, f in remote.items() if f["lfs"]} == {p for p in expected_files if p.startswith(("data", "extra"))}
    assert hub_server.counts["lfs_put"] == 4 and hub_server.counts["lfs_verify"] == 4
    assert hub_server.read_file(REPO, "README.md") == (release / "README.md").read_bytes()

    # A fresh process with an empty cache loads the config and gets back exactly the rows written.
    loaded = run_client(hub_server, f"""
        import datasets
        ds = datasets.load_dataset({REPO!r}, "5k")
        big = api.hf_hub_download({REPO!r}, "extra/big.jsonl", repo_type="dataset")
        import hashlib
        emit({{"splits": {{name: split.to_dict() for name, split in ds.items()}},
              "big_sha256": hashlib.sha256(Path(big).read_bytes()).hexdigest()}})
    """, home=tmp_path / "fresh-home")
    assert set(loaded["splits"]) == set(SPLITS)
    for split, n in SPLITS.items():
        expected = split_table(split, n).to_pydict()
        got = loaded["splits"][split]
        assert got["id"] == expected["id"] and got["instruction"] == expected["instruction"]
        assert got["embedding"] == expected["embedding"]  # float32 values, compared exactly
    assert loaded["big_sha256"] == hashlib.sha256((release / "extra" / "big.jsonl").read_bytes()).hexdigest()

    # Re-pushing the same folder: the client sees every file unchanged and makes no commit, uploads nothing.
    hub_server.reset()
    again = run_client(hub_server, f"emit(push({str(release)!r}, {REPO!r}, 'Upload again'))")
    assert again == {"oid": out["push"]["oid"]}
    assert hub_server.counts["commit"] == 0 and hub_server.counts["lfs_put"] == 0
    assert len(hub_server.commits(REPO)) == 2


def test_auth_errors_and_private_repos(hub_server, tmp_path):
    hub_server.create_repo(REPO)
    hub_server.create_repo("org/private-set", private=True)
    release = make_release(tmp_path / "release")
    tokens = hub_server.tokens
    out = run_client(hub_server, f"""
        def attempt(fn):
            try:
                fn()
                return "ok"
            except Exception as exc:
                return error_info(exc)
        emit({{
            "no_token_create": attempt(lambda: api.create_repo("org/new", repo_type="dataset", token=False)),
            "bad_token_create": attempt(lambda: api.create_repo("org/new", repo_type="dataset", token="hf_nope")),
            "read_token_whoami": api.whoami(token={tokens['read']!r})["name"],
            "read_token_create": attempt(lambda: api.create_repo("org/new", repo_type="dataset",
                                                                 token={tokens['read']!r})),
            "read_token_commit": push({str(release)!r}, {REPO!r}, "nope", token={tokens['read']!r}),
            "read_token_delete": attempt(lambda: api.create_commit({REPO!r}, [CommitOperationDelete(".gitattributes")],
                                         commit_message="nope", repo_type="dataset", token={tokens['read']!r})),
            "read_token_reads_public": attempt(lambda: api.list_repo_files({REPO!r}, repo_type="dataset",
                                                                          token={tokens['read']!r})),
            "anonymous_private": attempt(lambda: api.dataset_info("org/private-set", token=False)),
            "reader_private": attempt(lambda: api.dataset_info("org/private-set", token={tokens['read']!r})),
            "owner_private": attempt(lambda: api.dataset_info("org/private-set", token={tokens['write']!r})),
            "missing_repo": attempt(lambda: api.dataset_info("org/absent", token={tokens['write']!r})),
            "missing_revision": attempt(lambda: api.list_repo_files({REPO!r}, repo_type="dataset",
                                                                    revision="no-such-branch")),
            "missing_file": attempt(lambda: api.hf_hub_download({REPO!r}, "nope.txt", repo_type="dataset")),
        }})
    """, role=None)
    assert out["no_token_create"]["status"] == 401
    assert out["bad_token_create"]["status"] == 401
    assert "Invalid credentials in Authorization header" in out["bad_token_create"]["message"]
    assert out["read_token_whoami"] == "reader"
    assert out["read_token_create"]["status"] == 403
    assert out["read_token_commit"]["error"]["status"] == 403
    assert out["read_token_delete"]["status"] == 403
    assert out["read_token_reads_public"] == "ok"
    assert out["anonymous_private"]["type"] == "RepositoryNotFoundError"
    assert out["reader_private"]["type"] == "RepositoryNotFoundError"
    assert out["owner_private"] == "ok"
    assert out["missing_repo"]["type"] == "RepositoryNotFoundError"
    assert out["missing_revision"]["type"] == "RevisionNotFoundError"
    assert out["missing_file"]["type"] == "RemoteEntryNotFoundError"
    assert len(hub_server.commits(REPO)) == 1 and hub_server.counts["commit"] == 1  # only the rejected delete


def test_commit_failure_leaves_remote_unchanged_and_retry_succeeds(hub_server, tmp_path):
    hub_server.create_repo(REPO)
    old_release = make_release(tmp_path / "old")
    assert "oid" in run_client(hub_server, f"emit(push({str(old_release)!r}, {REPO!r}, 'v1'))")
    before_head, before_files = hub_server.head(REPO), hub_server.files(REPO)

    new_release = make_release(tmp_path / "new", offset=1000)
    hub_server.reset()
    hub_server.fail({"die_at": "commit", "times": 1})
    failed = run_client(hub_server, f"emit(push({str(new_release)!r}, {REPO!r}, 'v2'))")
    assert failed["error"]["status"] == 500
    assert hub_server.counts["lfs_put"] == 3  # the LFS uploads happened; the commit that would use them did not
    assert hub_server.head(REPO) == before_head and hub_server.files(REPO) == before_files

    hub_server.reset()
    retried = run_client(hub_server, f"emit(push({str(new_release)!r}, {REPO!r}, 'v2'))")
    assert "oid" in retried and hub_server.head(REPO) == retried["oid"]
    assert hub_server.counts["lfs_put"] == 0  # objects already on the server are not sent twice
    assert [c["title"] for c in hub_server.commits(REPO)] == ["v2", "v1", "initial commit"]
    new_train = (new_release / "data/5k/train-00000-of-00001.parquet").read_bytes()
    assert hub_server.read_file(REPO, "data/5k/train-00000-of-00001.parquet") == new_train


def test_interrupted_lfs_upload_leaves_remote_unchanged_and_rerun_finishes(hub_server, tmp_path):
    hub_server.create_repo(REPO)
    before_head, before_files = hub_server.head(REPO), hub_server.files(REPO)
    release = make_release(tmp_path / "release")
    # A 4xx is not retried by the client, so the push stops right there (a 5xx would be retried for ~23 s).
    hub_server.fail({"after_lfs_puts": 1, "status": 403})
    failed = run_client(hub_server, f"emit(push({str(release)!r}, {REPO!r}, 'v1'))")
    assert failed["error"]["type"] in ("RuntimeError", "HfHubHTTPError"), failed
    put_statuses = sorted(status for (_, _, name, status) in hub_server.requests if name == "lfs_put")
    assert put_statuses == [200, 403, 403] and hub_server.counts["commit"] == 0  # the client tries every file
    assert hub_server.head(REPO) == before_head and hub_server.files(REPO) == before_files

    hub_server.reset()
    rerun = run_client(hub_server, f"emit(push({str(release)!r}, {REPO!r}, 'v1'))")
    assert "oid" in rerun and hub_server.head(REPO) == rerun["oid"]
    assert hub_server.counts["lfs_put"] == 2  # the object stored before the failure is skipped
    assert len(hub_server.commits(REPO)) == 2


def test_dropped_connection_is_retried_by_the_client(hub_server, tmp_path):
    hub_server.create_repo(REPO)
    release = make_release(tmp_path / "release")
    hub_server.fail({"at": "lfs_put", "status": 0, "times": 1})
    out = run_client(hub_server, f"emit(push({str(release)!r}, {REPO!r}, 'v1'))")
    assert "oid" in out
    assert hub_server.counts["lfs_put"] == 4  # 3 files + 1 retry of the dropped request
    assert [status for (_, _, name, status) in hub_server.requests if name == "lfs_put"].count(0) == 1


def test_faults_at_the_other_steps_of_a_push(hub_server):
    hub_server.fail({"at": "create", "status": 0, "times": 1}, {"at": "create_branch", "status": 0, "times": 1},
                    {"at": "tree", "status": 0, "times": 2}, {"at": "resolve", "status": 503, "times": 1})
    out = run_client(hub_server, f"""
        def attempt(fn):
            try:
                return fn()
            except Exception as exc:
                return error_info(exc)
        created = [attempt(lambda: str(api.create_repo({REPO!r}, repo_type="dataset"))) for _ in range(2)]
        branched = [attempt(lambda: api.create_branch({REPO!r}, branch="v1", repo_type="dataset")) for _ in range(2)]
        tree = [e.path for e in api.list_repo_tree({REPO!r}, repo_type="dataset")]
        card = Path(api.hf_hub_download({REPO!r}, ".gitattributes", repo_type="dataset")).read_bytes()
        emit({{"created": created, "branched": branched, "tree": tree, "card": len(card)}})
    """)

    def statuses(point):
        return [status for (_, _, name, status) in hub_server.requests if name == point]

    # The client does not retry create_repo or create_branch: the dropped request fails, the next one works.
    assert out["created"][0]["type"] == "RemoteProtocolError" and statuses("create") == [0, 200]
    assert out["created"][1] == f"{hub_server.endpoint}/datasets/{REPO}"
    assert out["branched"][0]["type"] == "RemoteProtocolError" and out["branched"][1] is None
    assert statuses("create_branch") == [0, 200]
    # It retries tree listings, and a file's HEAD once nothing is cached.
    assert out["tree"] == [".gitattributes"] and statuses("tree") == [0, 0, 200]
    assert out["card"] > 0 and statuses("resolve") == [503, 200, 200]  # HEAD, HEAD again, GET
    assert set(hub_server.files(REPO, revision="v1")) == {".gitattributes"}


def test_unknown_fault_point_is_refused(hub_server):
    with pytest.raises(ValueError, match="fault point must be one of"):
        hub_server.fail({"at": "nowhere"})
    request = urllib.request.Request(f"{hub_server.endpoint}/_test/fail", data=b'{"at": "nowhere"}', method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request)
    assert refused.value.code == 400


def test_commit_with_a_bad_operation_changes_nothing(hub_server, tmp_path):
    hub_server.create_repo(REPO)
    before = hub_server.files(REPO)
    out = run_client(hub_server, f"""
        ops = [CommitOperationAdd("new.txt", b"hello"), CommitOperationDelete("not-there.txt")]
        try:
            api.create_commit({REPO!r}, ops, commit_message="mixed", repo_type="dataset")
            emit("committed")
        except Exception as exc:
            emit(error_info(exc))
    """)
    assert out["type"] == "RemoteEntryNotFoundError" and out["status"] == 404
    assert hub_server.files(REPO) == before and len(hub_server.commits(REPO)) == 1


def test_listings_follow_pagination(tmp_path):
    with HubServer(tmp_path / "hub", page_size=2, expand_page_size=2, commits_page_size=2) as hub:
        hub.create_repo(REPO)
        out = run_client(hub, f"""
            for i in range(3):
                api.upload_file(path_or_fileobj=f"file {{i}}".encode(), path_in_repo=f"dir/f{{i}}.txt",
                                repo_id={REPO!r}, repo_type="dataset", commit_message=f"add f{{i}}")
            tree = [e.path for e in api.list_repo_tree({REPO!r}, repo_type="dataset", recursive=True)]
            top = [e.path for e in api.list_repo_tree({REPO!r}, repo_type="dataset")]
            expanded = {{e.path: e.last_commit.title for e in api.list_repo_tree({REPO!r}, "dir",
                         repo_type="dataset", expand=True)}}
            info = [e.path for e in api.get_paths_info({REPO!r}, ["dir", "dir/f1.txt", "absent"],
                                                       repo_type="dataset")]
            commits = [c.title for c in api.list_repo_commits({REPO!r}, repo_type="dataset")]
            api.create_commit({REPO!r}, [CommitOperationDelete("dir/")], commit_message="drop dir",
                              repo_type="dataset")
            after_delete = api.list_repo_files({REPO!r}, repo_type="dataset")
            emit({{"tree": tree, "top": top, "expanded": expanded, "info": info, "commits": commits,
                   "after_delete": after_delete}})
        """)
        assert out["tree"] == ["dir", ".gitattributes", "dir/f0.txt", "dir/f1.txt", "dir/f2.txt"]
        assert out["top"] == ["dir", ".gitattributes"]
        assert out["expanded"] == {"dir/f0.txt": "add f0", "dir/f1.txt": "add f1", "dir/f2.txt": "add f2"}
        assert out["info"] == ["dir", "dir/f1.txt"]
        assert out["commits"] == ["add f2", "add f1", "add f0", "initial commit"]
        assert hub.counts["tree"] >= 3 + 1 + 2 and hub.counts["commits"] == 2
        assert out["after_delete"] == [".gitattributes"]


def test_state_survives_a_restart_and_the_command_line_serves_it(tmp_path):
    root = tmp_path / "hub"
    with HubServer(root) as hub:
        hub.create_repo(REPO)
        head = hub.head(REPO)
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("hub_server.py")), "--port", "0",
                             "--root", str(root)], stdout=subprocess.PIPE, text=True)
    try:
        endpoint = proc.stdout.readline().split()[1]
        with urllib.request.urlopen(f"{endpoint}/api/datasets/{REPO}") as response:
            info = json.load(response)
        assert info["sha"] == head and [s["rfilename"] for s in info["siblings"]] == [".gitattributes"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
