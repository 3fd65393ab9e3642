"""Pushing a verified release folder to a Hub dataset repo.

One create_commit with explicit operations: files that changed or are new are added, files the release no
longer has are deleted, and when nothing differs no commit is made. A transient Hub error (a refused, dropped or
timed-out connection, 429, 5xx) restarts the push after a growing pause, a bounded number of times. The token
comes from huggingface_hub's usual places (HF_TOKEN, the login cache) and is never printed.
"""

import hashlib
import json
import logging
import time
from pathlib import Path

from vs_sonar_dataset.build.card import CARD, CARD_MARKER
from vs_sonar_dataset.build.release import RELEASE_MANIFEST
from vs_sonar_dataset.card.cli import card_is_current
from vs_sonar_dataset.core.errors import UserError
from vs_sonar_dataset.core.shards import sha256_file
from vs_sonar_dataset.verify.checks import REPORT, changed_since_verify

KEEP_REMOTE = {".gitattributes"}  # the Hub's own file, not part of a release

log = logging.getLogger(__name__)


def check_release(release: Path, allow_synthetic: bool, allow_fixture: bool) -> tuple[dict, dict]:
    """The release may be pushed: verify passed and every file is the one verify hashed. Returns the release
    manifest and the verify report (whose `files` are then the release's files, already checked)."""
    report_path = release / REPORT
    if not report_path.is_file():
        raise UserError(f"{release}: not verified; run `vs-sonar verify {release} --pool POOL` first")
    report = json.loads(report_path.read_text())
    if not report.get("passed"):
        failed = [c["name"] for c in report.get("checks", []) if not c["passed"]]
        raise UserError(f"{release}: verify failed ({', '.join(failed)}); refusing to push")
    if not any(c["name"].endswith("rows match pool") for c in report["checks"]):
        raise UserError(f"{release}: verified without --pool, so rows were not compared with the pool")
    changed = changed_since_verify(release, report)
    if changed:
        raise UserError(f"{release}: files changed since verify ({', '.join(changed[:5])}"
                        f"{'…' if len(changed) > 5 else ''}); verify again before pushing")
    if not card_is_current(release):
        raise UserError(f"{release}: README.md is not the card of this verified release; run "
                        f"`vs-sonar card {release}` before pushing")
    manifest = json.loads((release / RELEASE_MANIFEST).read_text())
    if manifest["pool"]["synthetic"] and not allow_synthetic:
        raise UserError("this release was built from a synthetic pool; pass --allow-synthetic to push it anyway")
    if manifest.get("fixture_models") and not allow_fixture:
        raise UserError("this release was made by fixture models (tests and demos); pass --allow-fixture-models "
                        "to push it to a test endpoint")
    return manifest, report


def git_blob_sha1(path: Path) -> str:
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    digest.update(path.read_bytes())
    return digest.hexdigest()


def _hub_cause(e: BaseException):
    """The Hub's answer or the transport error behind `e`, or None for a local fault. The client wraps them: in
    RuntimeError when an LFS upload fails, in LocalEntryNotFoundError when a download's HEAD fails."""
    import httpx2

    while e is not None and not isinstance(e, httpx2.HTTPError):
        e = e.__cause__
    return e


def _transient(e) -> bool:
    """Worth another try: a refused, dropped or timed-out connection, a rate limit (429) or a server error (5xx)."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(e, HfHubHTTPError):
        return e.response is not None and (e.response.status_code == 429 or e.response.status_code >= 500)
    # A URL the client cannot speak to (e.g. HF_ENDPOINT without http(s)://) or a request it cannot form stays so.
    return isinstance(e, httpx2.TransportError) and not isinstance(e, (httpx2.UnsupportedProtocol,
                                                                          httpx2.LocalProtocolError))


def _what(e) -> str:
    """A transient error in a few words: what failed on which request."""
    from huggingface_hub.errors import HfHubHTTPError

    try:
        request = e.response.request if isinstance(e, HfHubHTTPError) else e.request
        where = f" on {request.method} {request.url.path}"
    except (AttributeError, RuntimeError):  # httpx2 raises when an error carries no request
        where = ""
    if isinstance(e, HfHubHTTPError):
        return f"HTTP {e.response.status_code}{where}"
    return f"{type(e).__name__}{where}: {str(e).rstrip('.') or 'connection failed'}"


def _explain(e: Exception, repo: str, endpoint: str) -> UserError:
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(e, HfHubHTTPError) and e.response is not None:
        status = e.response.status_code
        if status == 401:
            return UserError(f"the Hub at {endpoint} rejected the token (401): log in again (`hf auth login`) "
                             "or set HF_TOKEN to a valid token")
        if status == 403:
            return UserError(f"the token has no write permission on {repo} (403): use a token with write access "
                             "to that namespace")
        code = e.response.headers.get("X-Error-Code", "")
        message = e.response.headers.get("X-Error-Message", "") or str(e).splitlines()[0]
        return UserError(f"the Hub refused the request ({status}{' ' + code if code else ''}): {message}")
    return UserError(f"cannot reach the Hub at {endpoint}: {type(e).__name__}: {e}")


def use_timeouts(read: float, connect: float = 10.0) -> None:
    """The Hub client waits forever by default (timeout None): a Hub that accepts the connection and never
    answers would hang the push. Every client it makes from now on gives up after these seconds, which counts
    as a transient error (retried, then one line)."""
    import httpx2
    from huggingface_hub import close_session, set_client_factory
    from huggingface_hub.utils._http import default_client_factory  # huggingface_hub is pinned (pyproject)

    def factory():
        client = default_client_factory()
        client.timeout = httpx2.Timeout(read, connect=connect)
        return client

    set_client_factory(factory)
    close_session()  # a client made before keeps no timeout


def push_release(release: Path, repo: str, *, private: bool = False, revision: str | None = None,
                 force: bool = False, allow_synthetic: bool = False, allow_fixture: bool = False,
                 retries: int = 4, retry_wait: float = 2.0, timeout: float = 300.0) -> dict:
    """Push; returns {"commit": sha or None, "added": [...], "deleted": [...], "url": ...}.

    A transient Hub error (see `_transient`) restarts the whole push, up to `retries` more times, `retry_wait`
    seconds after the first failure and twice as long after each next one; any other error fails at once.
    """
    import httpx2
    from huggingface_hub import HfApi, constants, get_token

    if retries < 0 or retry_wait < 0:
        raise UserError(f"--retries and --retry-wait must not be negative (got {retries} and {retry_wait})")
    if not timeout > 0:
        raise UserError(f"--timeout must be a positive number of seconds (got {timeout})")
    use_timeouts(timeout)
    release = Path(release)
    manifest, report = check_release(release, allow_synthetic, allow_fixture)
    token = get_token()
    if not token:
        raise UserError("no Hugging Face token: run `hf auth login` or set HF_TOKEN (needs write access)")
    endpoint = constants.ENDPOINT
    api = HfApi(token=token)
    attempts = retries + 1
    for attempt in range(1, attempts + 1):
        # Retrying is safe: each attempt compares the remote tree afresh and ends in one atomic create_commit, so a
        # failed attempt committed nothing, and one whose commit landed before its answer was lost finds nothing
        # left to push (identical content makes no commit).
        try:
            return _push(api, release, repo, manifest, report, private, revision, force, endpoint)
        except (OSError, RuntimeError, httpx2.HTTPError) as e:  # HfHubHTTPError is both an OSError and an HTTPError
            cause = _hub_cause(e)
            if cause is not None and _transient(cause):
                if attempt == attempts:
                    raise UserError(f"the Hub at {endpoint} failed {attempts} times (last: {_what(cause)}); nothing "
                                    f"was committed to {repo}: check the network and the endpoint, then re-run the "
                                    "same command") from None
                wait = retry_wait * 2 ** (attempt - 1)
                log.info("Hub: %s (attempt %d of %d); retrying in %g s", _what(cause), attempt, attempts, wait)
                time.sleep(wait)
                continue
            if isinstance(e, RuntimeError):  # the client wraps failed file uploads; nothing was committed
                detail = _explain(cause, repo, endpoint) if cause is not None else e.__cause__ or "no detail"
                raise UserError(f"upload interrupted, nothing was committed to {repo} ({e}: {detail}); "
                                "re-run the same command to finish") from None
            if cause is None:
                raise  # a local file fault: the command boundary names the path
            raise _explain(cause, repo, endpoint) from None


def _push(api, release: Path, repo: str, manifest: dict, report: dict, private: bool, revision: str | None,
          force: bool, endpoint: str) -> dict:
    """One attempt: create the repo (and branch), compare the remote tree, then one create_commit."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete
    from huggingface_hub.errors import RemoteEntryNotFoundError, RevisionNotFoundError

    branch = revision or "main"
    api.create_repo(repo, repo_type="dataset", private=private, exist_ok=True)
    if revision:
        api.create_branch(repo, branch=revision, repo_type="dataset", exist_ok=True)
    try:
        remote_card = Path(api.hf_hub_download(repo, "README.md", repo_type="dataset", revision=branch))
        ours = CARD_MARKER in remote_card.read_text(errors="replace")
    except (RemoteEntryNotFoundError, RevisionNotFoundError):  # the Hub said so; a failed look-up is no answer
        ours = True  # no card yet
    if not ours and not force:
        raise UserError(f"{repo} has a README.md that vs-sonar did not write; pass --force to replace it")
    remote = {f.path: f for f in api.list_repo_tree(repo, repo_type="dataset", revision=branch, recursive=True)
              if hasattr(f, "blob_id")}
    local = sorted([*report["files"], CARD]) + [REPORT]  # the verified files, their card (checked), the report
    added = [p for p in local if not _same(release / p, remote.get(p))]
    deleted = sorted(p for p in remote if p not in local and p not in KEEP_REMOTE)
    if not added and not deleted:
        return {"commit": None, "added": [], "deleted": [], "url": f"{endpoint}/datasets/{repo}"}
    operations = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(release / p)) for p in added]
    operations += [CommitOperationDelete(path_in_repo=p) for p in deleted]
    info = api.create_commit(
        repo, operations, repo_type="dataset", revision=branch,
        commit_message=f"vs-sonar release ({', '.join(manifest['configs'])}; code {manifest['code_version']})",
    )
    return {"commit": info.oid, "added": added, "deleted": deleted, "url": info.commit_url}


def _same(path: Path, remote) -> bool:
    """The remote file has these bytes: compared by the hashes the Hub reports (sha256 for LFS files, the git
    blob id for the others)."""
    if remote is None:
        return False
    if remote.lfs is not None:
        return remote.lfs.size == path.stat().st_size and remote.lfs.sha256 == sha256_file(path)
    return remote.blob_id == git_blob_sha1(path)
