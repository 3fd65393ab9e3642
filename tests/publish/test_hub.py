"""publish --push against a Hub-compatible server on 127.0.0.1, with the real huggingface_hub and datasets."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vs_sonar_dataset.build.card import render_card
from vs_sonar_dataset.core.envs import REPO_ROOT
from vs_sonar_dataset.verify.checks import verify_release

REPO = "org/vs-sonar"
LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d [A-Z]+ ")  # publish's logging format


@pytest.fixture
def verified_release(small_pool, small_release):
    verify_with_card(small_release, small_pool)
    return small_release


def verify_with_card(release, pool):
    """verify, then the card that shows its results (what `vs-sonar card` writes)."""
    report = verify_release(release, pool, progress=False)
    assert report["passed"]
    render_card(release, json.loads((release / "release.json").read_text()), report)


def publish(hub, release, *extra, role="write", env=None):
    """Run `python -m publish --push` against `hub`; retries wait 0.05 s (doubling) unless `extra` says otherwise."""
    env = {**os.environ, **hub.env(role), **(env or {})}
    cmd = [sys.executable, "-m", "publish", "--out", str(release), "--push", "--repo", REPO, "--retry-wait", "0.05",
           *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=300)


def error_lines(result) -> list[str]:
    """stderr without publish's log lines (retries are logged at INFO)."""
    return [line for line in result.stderr.splitlines() if line.strip() and not LOG_LINE.match(line)]


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
    stale = publish(hub_server, verified_release, "--allow-synthetic")  # verified, but the card shows plots
    assert stale.returncode == 2 and "README.md is not the card of this verified release" in stale.stderr
    verify_with_card(verified_release, small_pool)
    hub_server.reset()
    result = publish(hub_server, verified_release, "--allow-synthetic")
    assert result.returncode == 0, result.stderr
    assert "deleted 5" in result.stdout and hub_server.counts.get("commit") == 1
    assert not any(p.startswith("plots/") for p in hub_server.files(REPO))


def test_an_identical_rebuild_publishes_no_commit(hub_server, small_pool, tmp_path):
    """Same pool, settings and seed: the rebuilt, re-verified folder is byte-identical, so the Hub gets nothing."""
    from release_fixtures import SMALL_SIZES
    from vs_sonar_dataset.build.release import build_release

    release = tmp_path / "release"
    for attempt in range(2):
        build_release(small_pool, release, SMALL_SIZES, seed=3, rows_per_file=300, progress=False)
        verify_with_card(release, small_pool)
        result = publish(hub_server, release, "--allow-synthetic")
        assert result.returncode == 0, result.stderr
        if attempt == 0:
            head, files = hub_server.head(REPO), hub_server.files(REPO)
    assert "already up to date: no commit made" in result.stdout
    assert hub_server.head(REPO) == head and hub_server.files(REPO) == files


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


@pytest.mark.parametrize("point", ["create", "preupload", "commit"])
def test_dropped_connections_are_retried(hub_server, verified_release, point):
    hub_server.fail({"at": point, "status": 0, "times": 2})
    result = publish(hub_server, verified_release, "--allow-synthetic")
    assert result.returncode == 0, result.stderr
    assert hub_server.counts[point] == 3  # two dropped, then answered
    assert [status for (_, _, name, status) in hub_server.requests if name == point] == [0, 0, 200]
    if point != "preupload":  # the client retries preupload itself; create_repo and the commit POST it does not
        assert result.stderr.count("; retrying in ") == 2 and "(attempt 2 of 5); retrying in 0.1 s" in result.stderr
    assert len(hub_server.commits(REPO)) == 2  # the repo's initial commit, then exactly one for the release
    for path in ("README.md", "data/m/train-00000-of-00001.parquet", "verify_report.json"):
        assert hub_server.read_file(REPO, path) == (verified_release / path).read_bytes()


@pytest.mark.parametrize(("point", "status"), [("commit", 503), ("create", 429)])
def test_server_errors_and_rate_limits_are_retried(hub_server, verified_release, point, status):
    hub_server.fail({"at": point, "status": status, "times": 1})
    result = publish(hub_server, verified_release, "--allow-synthetic")
    assert result.returncode == 0, result.stderr
    assert f"Hub: HTTP {status} on POST " in result.stderr and "(attempt 1 of 5); retrying in 0.05 s" in result.stderr
    assert hub_server.counts[point] == 2 and len(hub_server.commits(REPO)) == 2


def test_a_fault_that_never_stops_ends_in_one_line(hub_server, verified_release):
    hub_server.create_repo(REPO)
    head = hub_server.head(REPO)
    hub_server.fail({"at": "commit", "status": 0})
    result = publish(hub_server, verified_release, "--allow-synthetic", "--retries", "2")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [line] = error_lines(result)
    assert line.startswith(f"publish: error: the Hub at {hub_server.endpoint} failed 3 times (last: "
                           "RemoteProtocolError on POST /api/datasets/org/vs-sonar/commit/main")
    assert "nothing was committed to org/vs-sonar" in line and "re-run the same command" in line
    assert hub_server.counts["commit"] == 3 and hub_server.head(REPO) == head


def test_unreachable_endpoint_ends_in_one_line(hub_server, verified_release):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    result = publish(hub_server, verified_release, "--allow-synthetic", "--retries", "2",
                     env={"HF_ENDPOINT": f"http://127.0.0.1:{port}"})
    assert time.monotonic() - start < 60
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [line] = error_lines(result)
    assert line.startswith("publish: error: ") and f"127.0.0.1:{port}" in line and "ConnectError" in line
    assert result.stderr.count("; retrying in ") == 2


def test_a_hub_that_never_answers_ends_in_one_line_after_the_timeout(hub_server, verified_release):
    """The port accepts connections (the kernel's backlog) and never answers: each try gives up after --timeout,
    is retried, and the push ends in the network line instead of hanging."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        result = publish(hub_server, verified_release, "--allow-synthetic", "--retries", "1", "--timeout", "1",
                         env={"HF_ENDPOINT": f"http://127.0.0.1:{port}"})
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    [line] = error_lines(result)
    assert line.startswith("publish: error: the Hub at ") and "failed 2 times" in line and "Timeout" in line, line
    assert result.stderr.count("; retrying in ") == 1


def test_rejected_token_is_not_retried(hub_server, verified_release):
    result = publish(hub_server, verified_release, "--allow-synthetic", env={"HF_TOKEN": "hf_not_a_token"})
    assert result.returncode == 2 and "rejected the token (401)" in result.stderr
    assert hub_server.counts["create"] == 1 and "retrying" not in result.stderr and "Traceback" not in result.stderr


def test_a_failed_card_look_up_does_not_count_as_no_card(hub_server, verified_release):
    hub_server.create_repo(REPO)
    env = {**os.environ, **hub_server.env("write")}
    subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        from huggingface_hub import HfApi
        HfApi().upload_file(path_or_fileobj=b"# someone else's dataset\\n", path_in_repo="README.md",
                            repo_id={REPO!r}, repo_type="dataset")
    """)], check=True, env=env, timeout=120)
    head = hub_server.head(REPO)
    hub_server.reset()
    hub_server.fail({"at": "resolve", "status": 400})  # the README's HEAD fails: that says nothing about the card
    result = publish(hub_server, verified_release, "--allow-synthetic")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert hub_server.head(REPO) == head and hub_server.counts["commit"] == 0


def test_retry_options():
    from publish.__main__ import build_parser

    args = build_parser().parse_args([])
    assert (args.retries, args.retry_wait) == (4, 2.0)
    assert build_parser().parse_args(["--retries", "0", "--retry-wait", "0.5"]).retry_wait == 0.5


def test_transient_errors_are_found_behind_the_client_wrappers():
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    from publish.hub import _hub_cause, _transient

    def wrapped(outer, cause):
        outer.__cause__ = cause
        return outer

    def http(status):
        request = httpx2.Request("POST", "http://127.0.0.1:1/api/repos/create")
        return HfHubHTTPError(f"{status}", response=httpx2.Response(status, request=request))

    upload = "Error while uploading 'data/m/train-00000-of-00001.parquet' to the Hub."
    for error, transient in [(httpx2.ConnectError("refused"), True), (httpx2.ReadTimeout("slow"), True),
                             (wrapped(RuntimeError(upload), httpx2.RemoteProtocolError("dropped")), True),
                             (wrapped(LocalEntryNotFoundError("no card"), http(503)), True),
                             (http(429), True), (http(500), True), (http(401), False), (http(404), False),
                             (wrapped(RuntimeError(upload), http(403)), False),
                             (httpx2.UnsupportedProtocol("Request URL has an unsupported protocol 'ftp://'"), False)]:
        assert _transient(_hub_cause(error)) is transient, error
    assert _hub_cause(wrapped(RuntimeError(upload), PermissionError(13, "denied"))) is None  # a local fault


@pytest.mark.parametrize("repo", ["my repo", "../../etc", "org/a/b", "vs-sonar"])
def test_a_repo_id_that_is_not_one_is_refused_before_any_work(hub_server, verified_release, repo):
    cmd = [sys.executable, "-m", "publish", "--out", str(verified_release), "--push", "--repo", repo]
    result = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **hub_server.env("write")},
                            timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"publish: error: --repo {repo!r}")
    assert hub_server.counts == {}  # nothing reached the Hub
