"""A small Hugging Face Hub-compatible HTTP server for tests (standard library only).

It speaks the subset of the Hub's HTTP API that `huggingface_hub` (with HF_HUB_DISABLE_XET=1, i.e. plain
LFS) and `datasets.load_dataset` use, so the real client code can run end to end against 127.0.0.1:

    upload    POST /api/repos/create, POST /api/repos/delete, POST /api/validate-yaml,
              POST /api/{type}s/{id}/preupload/{rev},
              POST /{prefix}{id}.git/info/lfs/objects/batch, PUT /_lfs/{oid}, POST /_lfs/{oid}/verify,
              POST /api/{type}s/{id}/commit/{rev} (ndjson), POST /api/{type}s/{id}/branch/{name}
    read      GET /api/whoami-v2, GET /api/{type}s/{id}[/revision/{rev}], GET /api/{type}s/{id}/refs,
              GET /api/{type}s/{id}/tree/{rev}[/{path}] (recursive, expand, cursor pagination),
              POST /api/{type}s/{id}/paths-info/{rev}, GET /api/{type}s/{id}/commits/{rev},
              HEAD/GET /{prefix}{id}/resolve/{rev}/{path} (Range supported)
    control   POST /_test/fail, POST /_test/reset, GET /_test/counts   (not part of the Hub)

{type} is model|dataset|space; {prefix} is "" for models, "datasets/" or "spaces/" otherwise.

Semantics that tests rely on:
- A commit is atomic: the whole ndjson payload is checked and applied to a copy of the parent tree, the commit
  record is written, and only then is the branch moved (one atomic file replace). Any error before that leaves
  the branch where it was; uploaded LFS objects that no commit references are simply unused blobs.
- `create_repo` makes an initial commit holding `.gitattributes`, as the real Hub does: a fresh repo already has
  one commit and one file.
- Upload mode (preupload) follows the Hub's rule of thumb: LFS when the file is ≥ 10 MB, looks binary (NUL byte
  in its first 512 bytes, e.g. Parquet) or matches an LFS pattern of the repo's `.gitattributes`; else regular.
- Auth: `Authorization: Bearer <token>`. No token on a write → 401; unknown token → 401 "Invalid credentials in
  Authorization header"; read-only token or foreign namespace on a write → 403. Private repos are visible to their
  owner only; otherwise they answer RepoNotFound (401 for anonymous callers, 404 for authenticated ones).
- Errors carry `X-Error-Code` (RepoNotFound, RevisionNotFound, EntryNotFound) and `X-Error-Message`, and a JSON
  body {"error": ...}, which the client maps to its exception classes.

On disk (under --root), so a restarted server sees the same repos:
    blobs/<sha256[:2]>/<sha256>                   file contents, content-addressed (regular and LFS alike)
    repos/<type>s/<ns>/<name>/repo.json           {"private", "created_at", "branches": {name: commit sha}}
    repos/<type>s/<ns>/<name>/commits/<sha>.json  {"id", "parents", "title", "message", "date", "author",
                                                   "files": {path: {"sha256", "size", "lfs", "oid"}}}

Fault injection (constructor `faults=[...]` or POST /_test/fail with one rule or a list): a rule is
    {"at": POINT, "after": N, "times": K|null, "status": 500 (0 = drop the connection without answering)}
and makes the (N+1)-th and later matching requests fail, K times (null: until reset). POINT is one step of a
push, named as in `counts`: "create" (POST /api/repos/create), "create_branch", "resolve" (HEAD/GET of a file),
"tree", "preupload", "lfs_batch", "lfs_put", "lfs_verify" or "commit". Shorthands: {"after_lfs_puts": N} and
{"die_at": "commit"}. The request body is read first, so a failed request has no effect. Note the client
itself retries preupload, tree listings, the LFS batch/PUT/verify calls and (once no file is cached) a file's
HEAD on 429/5xx and dropped connections (5 retries, ~23 s of backoff); a 4xx status fails at once, and
create_repo and a commit POST are never retried by the client.
"""

from __future__ import annotations

import argparse
import base64
import collections
import copy
import datetime
import fnmatch
import hashlib
import json
import os
import re
import socket
import tempfile
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DEFAULT_TOKENS = {
    "write": ("hf_test_write_org", "org", "write"),
    "read": ("hf_test_read_reader", "reader", "read"),
}
REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
INITIAL_GITATTRIBUTES = (
    b"# Files stored with Git LFS on this hub\n"
    b"*.parquet filter=lfs diff=lfs merge=lfs -text\n"
    b"*.arrow filter=lfs diff=lfs merge=lfs -text\n"
    b"*.npy filter=lfs diff=lfs merge=lfs -text\n"
    b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
)
FAULT_POINTS = ("create", "create_branch", "resolve", "tree", "preupload", "lfs_batch", "lfs_put", "lfs_verify",
                "commit")
SHA1_RE = re.compile(r"^[0-9a-f]{40}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
REPO_PART_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class HubError(Exception):
    """An HTTP error answer: status, message, optional X-Error-Code and extra headers."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _lfs_patterns(gitattributes: bytes) -> list[str]:
    patterns = []
    for line in gitattributes.decode(errors="replace").splitlines():
        parts = line.split()
        if parts and not parts[0].startswith("#") and "filter=lfs" in parts[1:]:
            patterns.append(parts[0])
    return patterns


def _matches(path: str, patterns: list[str]) -> bool:
    name = path.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(path, p.lstrip("/")) for p in patterns)


def _check_repo_id(repo_id: str) -> str:
    """Reject ids that are not `namespace/name` (they also become paths under the root)."""
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(REPO_PART_RE.match(p) and ".." not in p for p in parts):
        raise HubError(400, f"Invalid repo id {repo_id!r}")
    return repo_id


class HubStore:
    """Repos, commits and blobs under a root dir. All metadata changes happen under one lock."""

    def __init__(self, root: Path, tokens: dict[str, tuple[str, str, str]]):
        self.root = Path(root)
        self.lock = threading.RLock()
        self.users = {token: {"name": user, "role": role} for token, user, role in tokens.values()}
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)

    # ---- blobs
    def blob_path(self, sha256: str) -> Path:
        return self.root / "blobs" / sha256[:2] / sha256

    def has_blob(self, sha256: str, size: int | None = None) -> bool:
        p = self.blob_path(sha256)
        return p.is_file() and (size is None or p.stat().st_size == size)

    def put_blob(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        if not self.has_blob(sha):
            _write_atomic(self.blob_path(sha), data)
        return sha

    # ---- repos
    def repo_dir(self, repo_type: str, repo_id: str) -> Path:
        return self.root / "repos" / f"{repo_type}s" / repo_id

    def repo_meta(self, repo_type: str, repo_id: str) -> dict | None:
        p = self.repo_dir(repo_type, repo_id) / "repo.json"
        return json.loads(p.read_text()) if p.is_file() else None

    def commit(self, repo_type: str, repo_id: str, sha: str) -> dict | None:
        p = self.repo_dir(repo_type, repo_id) / "commits" / f"{sha}.json"
        return json.loads(p.read_text()) if p.is_file() else None

    def resolve_revision(self, repo_type: str, repo_id: str, meta: dict, revision: str) -> dict:
        sha = meta["branches"].get(revision)
        if sha is None and SHA1_RE.match(revision):
            sha = revision
        commit = self.commit(repo_type, repo_id, sha) if sha else None
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    def history(self, repo_type: str, repo_id: str, head: dict) -> list[dict]:
        """Commits reachable from head, newest first (first-parent chain: this hub never merges)."""
        out, commit = [], head
        while commit is not None:
            out.append(commit)
            commit = self.commit(repo_type, repo_id, commit["parents"][0]) if commit["parents"] else None
        return out

    def _write_commit(self, repo_type, repo_id, parent, files, title, message, author) -> dict:
        record = {"parents": [parent] if parent else [], "title": title, "message": message, "date": _now(),
                  "author": author, "files": files}
        record["id"] = hashlib.sha1(json.dumps(record, sort_keys=True).encode()).hexdigest()
        _write_atomic(self.repo_dir(repo_type, repo_id) / "commits" / f"{record['id']}.json",
                      json.dumps(record, sort_keys=True).encode())
        return record

    def _write_meta(self, repo_type, repo_id, meta) -> None:
        _write_atomic(self.repo_dir(repo_type, repo_id) / "repo.json", json.dumps(meta, indent=1).encode())

    def file_entry(self, data: bytes, lfs: bool) -> dict:
        sha = self.put_blob(data)
        oid = git_blob_oid(lfs_pointer(sha, len(data)) if lfs else data)
        return {"sha256": sha, "size": len(data), "lfs": lfs, "oid": oid}

    def create_repo(self, repo_type: str, repo_id: str, private: bool, author: str) -> None:
        with self.lock:
            if self.repo_meta(repo_type, repo_id) is not None:
                raise HubError(409, f"You already created this {repo_type} repo")
            files = {".gitattributes": self.file_entry(INITIAL_GITATTRIBUTES, lfs=False)}
            first = self._write_commit(repo_type, repo_id, None, files, "initial commit", "", author)
            self._write_meta(repo_type, repo_id, {"private": private, "created_at": _now(),
                                                  "branches": {"main": first["id"]}})

    def delete_repo(self, repo_type: str, repo_id: str) -> None:
        with self.lock:
            meta_path = self.repo_dir(repo_type, repo_id) / "repo.json"
            if not meta_path.is_file():
                raise HubError(404, "Repository not found", "RepoNotFound")
            # Only the metadata file makes a repo exist: removing it first makes the delete atomic.
            gone = meta_path.with_name(f".deleted-{os.getpid()}-{threading.get_ident()}")
            os.replace(meta_path, gone)
            gone.unlink()
            for p in sorted((self.repo_dir(repo_type, repo_id) / "commits").glob("*.json")):
                p.unlink()

    def apply_commit(self, repo_type: str, repo_id: str, branch: str, header: dict, ops: list[dict],
                     author: str) -> dict:
        """Check every operation, then write the new commit and move the branch: all or nothing."""
        with self.lock:
            meta = self.repo_meta(repo_type, repo_id)
            if branch not in meta["branches"]:
                raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            head = self.commit(repo_type, repo_id, meta["branches"][branch])
            parent_commit = header.get("parentCommit")
            if parent_commit and parent_commit != head["id"]:
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            files = copy.deepcopy(head["files"])
            for op in ops:
                key, value = op.get("key"), op.get("value") or {}
                path = value.get("path", "")
                if not path or path.startswith("/") or ".." in path.split("/"):
                    raise HubError(400, f"Invalid path in commit: {path!r}")
                if key == "file":
                    if value.get("encoding", "base64") != "base64":
                        raise HubError(400, f"Unsupported encoding {value.get('encoding')!r}")
                    files[path] = self.file_entry(base64.b64decode(value["content"]), lfs=False)
                elif key == "lfsFile":
                    oid = value.get("oid", "")
                    size = value.get("size")
                    if not SHA256_RE.match(oid) or not self.has_blob(oid, size):
                        raise HubError(400, f"Your push was rejected because an LFS pointer pointed to a file "
                                            f"that does not exist: {path} ({oid})")
                    size = self.blob_path(oid).stat().st_size
                    files[path] = {"sha256": oid, "size": size, "lfs": True,
                                   "oid": git_blob_oid(lfs_pointer(oid, size))}
                elif key == "deletedFile":
                    if files.pop(path, None) is None:
                        raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                elif key == "deletedFolder":
                    prefix = path.rstrip("/") + "/"
                    doomed = [p for p in files if p.startswith(prefix)]
                    if not doomed:
                        raise HubError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                    for p in doomed:
                        del files[p]
                else:
                    raise HubError(400, f"Unknown commit operation {key!r}")
            record = self._write_commit(repo_type, repo_id, head["id"], files, header.get("summary") or "",
                                        header.get("description") or "", author)
            meta["branches"][branch] = record["id"]
            self._write_meta(repo_type, repo_id, meta)
            return record

    def add_repo(self, repo_type: str, repo_id: str, files: dict[str, bytes], author: str) -> dict:
        """A public repo holding `files` in one commit after the initial one, written directly (seeding, no HTTP);
        LFS by the same rule as preupload."""
        patterns = _lfs_patterns(INITIAL_GITATTRIBUTES)
        with self.lock:
            self.create_repo(repo_type, repo_id, False, author)
            meta = self.repo_meta(repo_type, repo_id)
            entries = dict(self.commit(repo_type, repo_id, meta["branches"]["main"])["files"])
            for path, data in sorted(files.items()):
                lfs = len(data) >= LFS_SIZE_THRESHOLD or b"\0" in data[:512] or _matches(path, patterns)
                entries[path] = self.file_entry(data, lfs)
            record = self._write_commit(repo_type, repo_id, meta["branches"]["main"], entries, "Add files", "",
                                        author)
            meta["branches"]["main"] = record["id"]
            self._write_meta(repo_type, repo_id, meta)
            return record

    def create_branch(self, repo_type, repo_id, branch: str, start: dict) -> None:
        with self.lock:
            meta = self.repo_meta(repo_type, repo_id)
            if branch in meta["branches"]:
                raise HubError(409, f"Reference already exists: {branch}")
            meta["branches"][branch] = start["id"]
            self._write_meta(repo_type, repo_id, meta)


class FaultPlan:
    """Counts requests per fault point and decides which ones fail."""

    def __init__(self):
        self.lock = threading.Lock()
        self.rules: list[dict] = []
        self.seen = collections.Counter()

    @staticmethod
    def normalize(rule: dict) -> dict:
        if "after_lfs_puts" in rule:
            rule = {"at": "lfs_put", "after": rule["after_lfs_puts"], **{k: v for k, v in rule.items()
                                                                          if k != "after_lfs_puts"}}
        if "die_at" in rule:
            rule = {"at": rule["die_at"], **{k: v for k, v in rule.items() if k != "die_at"}}
        if rule.get("at") not in FAULT_POINTS:
            raise ValueError(f"fault point must be one of {FAULT_POINTS}, got {rule.get('at')!r}")
        return {"at": rule["at"], "after": int(rule.get("after", 0)), "times": rule.get("times"),
                "status": int(rule.get("status", 500)), "fired": 0}

    def set(self, rules: list[dict]) -> None:
        with self.lock:
            self.rules = [self.normalize(dict(r)) for r in rules]
            self.seen.clear()

    def check(self, point: str) -> int | None:
        """Register one request at `point`; return the status to fail it with (0 = drop), or None."""
        with self.lock:
            self.seen[point] += 1
            for rule in self.rules:
                if rule["at"] != point or self.seen[point] <= rule["after"]:
                    continue
                if rule["times"] is not None and rule["fired"] >= rule["times"]:
                    continue
                rule["fired"] += 1
                return rule["status"]
            return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_HTTPServer"

    # ---- plumbing
    def log_message(self, fmt, *args):  # keep test output quiet; the request log is in HubServer.requests
        if self.server.hub.verbose:
            super().log_message(fmt, *args)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", content_type: str = "application/json",
              headers: dict | None = None, head_only: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if body and not head_only and self._method != "HEAD":  # a HEAD answer never has a body
            self.wfile.write(body)
        self._status = status

    def _json(self, status: int, obj, headers: dict | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers=headers)

    def _drop(self) -> None:
        self.close_connection = True
        self._status = 0
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _handle(self, method: str) -> None:
        hub = self.server.hub
        self._status = None
        self._method = method
        split = urllib.parse.urlsplit(self.path)
        self._query = urllib.parse.parse_qs(split.query)
        self._segments = [urllib.parse.unquote(s) for s in split.path.split("/")[1:]]
        self._body = self._read_body() if method in ("POST", "PUT", "DELETE") else b""
        endpoint = "unknown"
        try:
            endpoint, handler, args = self._route(method)
            fault = hub.faults.check(endpoint) if endpoint in FAULT_POINTS else None
            if fault == 0:
                return self._drop()
            if fault is not None:
                raise HubError(fault, f"Simulated failure at {endpoint}")
            handler(*args)
        except HubError as e:
            headers = dict(e.headers)
            if e.code:
                headers["X-Error-Code"] = e.code
            headers["X-Error-Message"] = e.message
            self._json(e.status, {"error": e.message}, headers=headers)
        finally:
            hub.count(endpoint)
            hub.log(method, split.path, endpoint, self._status)

    def do_GET(self):
        self._handle("GET")

    def do_HEAD(self):
        self._handle("HEAD")

    def do_POST(self):
        self._handle("POST")

    def do_PUT(self):
        self._handle("PUT")

    def do_DELETE(self):
        self._handle("DELETE")

    # ---- routing
    def _route(self, method: str):
        s = self._segments
        if s[:1] == ["_test"]:
            return "test_control", self._test_control, (method, s[1:])
        if s[:1] == ["_lfs"] and len(s) >= 2:
            if method == "PUT" and len(s) == 2:
                return "lfs_put", self._lfs_put, (s[1],)
            if method == "POST" and s[2:] == ["verify"]:
                return "lfs_verify", self._lfs_verify, (s[1],)
        if s[:1] == ["api"]:
            rest = s[1:]
            if rest == ["whoami-v2"] and method == "GET":
                return "whoami", self._whoami, ()
            if rest == ["repos", "create"] and method == "POST":
                return "create", self._create_repo, ()
            if rest == ["repos", "delete"] and method in ("POST", "DELETE"):
                return "delete_repo", self._delete_repo, ()
            if rest == ["validate-yaml"] and method == "POST":
                return "validate_yaml", self._validate_yaml, ()
            if len(rest) >= 3 and rest[0] in REPO_TYPES:
                repo_type, repo_id, tail = REPO_TYPES[rest[0]], f"{rest[1]}/{rest[2]}", rest[3:]
                return self._route_api(method, repo_type, repo_id, tail)
        # Git-side URLs: /{prefix}{ns}/{name}(.git)/...
        repo_type, rest = "model", s
        if s and s[0] in REPO_TYPES and s[0] != "models":
            repo_type, rest = REPO_TYPES[s[0]], s[1:]
        if len(rest) >= 3 and rest[1].endswith(".git") and rest[2:] == ["info", "lfs", "objects", "batch"] \
                and method == "POST":
            return "lfs_batch", self._lfs_batch, (repo_type, _check_repo_id(f"{rest[0]}/{rest[1][:-4]}"))
        if len(rest) >= 5 and rest[2] == "resolve" and method in ("GET", "HEAD"):
            _check_repo_id(f"{rest[0]}/{rest[1]}")
            return "resolve", self._resolve, (repo_type, f"{rest[0]}/{rest[1]}", rest[3], "/".join(rest[4:]))
        raise HubError(404, f"No such endpoint: {method} /{'/'.join(s)}")

    def _route_api(self, method: str, repo_type: str, repo_id: str, tail: list[str]):
        _check_repo_id(repo_id)
        name = tail[0] if tail else ""
        if not tail and method == "GET":
            return "info", self._info, (repo_type, repo_id, None)
        if name == "revision" and len(tail) == 2 and method == "GET":
            return "revision", self._info, (repo_type, repo_id, tail[1])
        if name == "refs" and len(tail) == 1 and method == "GET":
            return "refs", self._refs, (repo_type, repo_id)
        if name == "tree" and len(tail) >= 2 and method == "GET":
            return "tree", self._tree, (repo_type, repo_id, tail[1], "/".join(tail[2:]))
        if name == "paths-info" and len(tail) == 2 and method == "POST":
            return "paths_info", self._paths_info, (repo_type, repo_id, tail[1])
        if name == "commits" and len(tail) == 2 and method == "GET":
            return "commits", self._commits, (repo_type, repo_id, tail[1])
        if name == "preupload" and len(tail) == 2 and method == "POST":
            return "preupload", self._preupload, (repo_type, repo_id, tail[1])
        if name == "commit" and len(tail) == 2 and method == "POST":
            return "commit", self._commit, (repo_type, repo_id, tail[1])
        if name.startswith("xet-") and name.endswith("-token"):
            raise HubError(400, "This test hub speaks plain LFS only: set HF_HUB_DISABLE_XET=1 before "
                                "huggingface_hub is imported")
        if name == "branch" and len(tail) == 2 and method == "POST":
            return "create_branch", self._create_branch, (repo_type, repo_id, tail[1])
        raise HubError(404, f"No such endpoint: {method} /api/{repo_type}s/{repo_id}/{'/'.join(tail)}")

    # ---- auth
    def _user(self) -> dict | None:
        auth = self.headers.get("Authorization", "")
        if not auth:
            return None
        token = auth.split(" ", 1)[1].strip() if auth.lower().startswith("bearer ") else ""
        user = self.server.hub.store.users.get(token)
        if user is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        return user

    def _readable_repo(self, repo_type: str, repo_id: str) -> dict:
        user = self._user()
        meta = self.server.hub.store.repo_meta(repo_type, repo_id)
        owner = repo_id.split("/")[0]
        if meta is None or (meta["private"] and (user is None or user["name"] != owner)):
            # The Hub hides private repos behind the same answer as missing ones.
            raise HubError(401 if user is None else 404, "Repository not found", "RepoNotFound")
        return meta

    def _require_writer(self, namespace: str, what: str) -> dict:
        user = self._user()
        if user is None:
            raise HubError(401, "Invalid username or password.")
        if user["role"] != "write" or user["name"] != namespace:
            raise HubError(403, f"You don't have the rights to {what} under the namespace \"{namespace}\"")
        return user

    def _writable_repo(self, repo_type: str, repo_id: str, what: str) -> tuple[dict, dict]:
        user = self._user()
        if user is None:
            raise HubError(401, "Invalid username or password.")
        meta = self._readable_repo(repo_type, repo_id)
        return self._require_writer(repo_id.split("/")[0], what), meta

    def _commit_at(self, repo_type: str, repo_id: str, revision: str) -> dict:
        meta = self._readable_repo(repo_type, repo_id)
        return self.server.hub.store.resolve_revision(repo_type, repo_id, meta, revision)

    # ---- endpoints: account and repos
    def _whoami(self):
        user = self._user()
        if user is None:
            raise HubError(401, "Invalid username or password.")
        self._json(200, {"type": "user", "id": hashlib.sha1(user["name"].encode()).hexdigest()[:24],
                         "name": user["name"], "fullname": user["name"], "email": None, "orgs": [],
                         "auth": {"type": "access_token",
                                  "accessToken": {"displayName": f"{user['name']}-{user['role']}",
                                                  "role": user["role"]}}})

    def _repo_url(self, repo_type: str, repo_id: str) -> str:
        return f"{self.server.hub.endpoint}/{URL_PREFIX[repo_type]}{repo_id}"

    def _payload_repo(self) -> tuple[str, str, dict]:
        payload = json.loads(self._body or b"{}")
        repo_type = payload.get("type") or "model"
        if repo_type not in URL_PREFIX:
            raise HubError(400, f"Invalid repo type {repo_type!r}")
        name, org = payload.get("name"), payload.get("organization")
        if not name:
            raise HubError(400, "Missing repo name")
        return repo_type, name, {**payload, "organization": org}

    def _create_repo(self):
        repo_type, name, payload = self._payload_repo()
        user = self._user()
        namespace = payload["organization"] or (user["name"] if user else "")
        user = self._require_writer(namespace, "create a repo")
        repo_id = f"{namespace}/{name}"
        _check_repo_id(repo_id)
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        try:
            self.server.hub.store.create_repo(repo_type, repo_id, private, user["name"])
        except HubError as e:
            if e.status == 409:
                return self._json(409, {"error": e.message, "url": self._repo_url(repo_type, repo_id)},
                                  headers={"X-Error-Message": e.message})
            raise
        self._json(200, {"url": self._repo_url(repo_type, repo_id), "name": repo_id, "id": repo_id})

    def _delete_repo(self):
        repo_type, name, payload = self._payload_repo()
        user = self._user()
        namespace = payload["organization"] or (user["name"] if user else "")
        self._require_writer(namespace, "delete a repo")
        self.server.hub.store.delete_repo(repo_type, _check_repo_id(f"{namespace}/{name}"))
        self._json(200, {})

    def _validate_yaml(self):
        content = json.loads(self._body or b"{}").get("content", "")
        lines = content.splitlines()
        if lines and lines[0].strip() == "---" and "---" not in (line.strip() for line in lines[1:]):
            return self._json(400, {"errors": [{"message": "YAML front matter is not closed by '---'"}],
                                    "warnings": []})
        self._json(200, {"errors": [], "warnings": []})

    # ---- endpoints: read
    def _siblings(self, commit: dict, with_blobs: bool) -> list[dict]:
        out = []
        for path, f in sorted(commit["files"].items()):
            entry = {"rfilename": path}
            if with_blobs:
                entry.update(size=f["size"], blobId=f["oid"])
                if f["lfs"]:
                    entry["lfs"] = {"size": f["size"], "sha256": f["sha256"],
                                    "pointerSize": len(lfs_pointer(f["sha256"], f["size"]))}
            out.append(entry)
        return out

    def _info(self, repo_type: str, repo_id: str, revision: str | None):
        meta = self._readable_repo(repo_type, repo_id)
        store = self.server.hub.store
        commit = store.resolve_revision(repo_type, repo_id, meta, revision or "main")
        with_blobs = self._query.get("blobs", ["false"])[0].lower() in ("1", "true")
        self._json(200, {
            "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24], "id": repo_id,
            "author": repo_id.split("/")[0], "sha": commit["id"], "private": meta["private"], "gated": False,
            "disabled": False, "downloads": 0, "likes": 0, "tags": [], "createdAt": meta["created_at"],
            "lastModified": commit["date"], "siblings": self._siblings(commit, with_blobs),
            "usedStorage": sum(f["size"] for f in commit["files"].values()),
        })

    def _refs(self, repo_type: str, repo_id: str):
        meta = self._readable_repo(repo_type, repo_id)
        branches = [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": sha}
                    for b, sha in sorted(meta["branches"].items())]
        self._json(200, {"branches": branches, "converts": [], "tags": []})

    def _last_commits(self, repo_type: str, repo_id: str, commit: dict) -> dict[str, dict]:
        """Path (file or folder) -> the newest commit that changed it, walking history once."""
        history = self.server.hub.store.history(repo_type, repo_id, commit)
        last: dict[str, dict] = {}
        for newer, older in zip(history, history[1:] + [None]):
            old_files = older["files"] if older else {}
            changed = {p for p, f in newer["files"].items() if old_files.get(p, {}).get("oid") != f["oid"]}
            changed |= set(old_files) - set(newer["files"])
            for path in changed:
                parts = path.split("/")
                for i in range(1, len(parts) + 1):
                    last.setdefault("/".join(parts[:i]), newer)
        return last

    def _entries(self, repo_type: str, repo_id: str, commit: dict, paths: list[str] | None, folder: str,
                 recursive: bool, expand: bool) -> list[dict]:
        """Tree entries, folders first then files, each sorted by path (like the Hub)."""
        files = commit["files"]
        folders: dict[str, list[str]] = collections.defaultdict(list)
        for p in files:
            parts = p.split("/")
            for i in range(1, len(parts)):
                folders["/".join(parts[:i])].append(p)
        if paths is None:
            prefix = folder + "/" if folder else ""
            wanted = set()
            for p in files:
                if not p.startswith(prefix):
                    continue
                rel = p[len(prefix):].split("/")
                limit = len(rel) if recursive else 1
                for i in range(1, limit + 1):
                    wanted.add(prefix + "/".join(rel[:i]))
        else:
            wanted = {p.strip("/") for p in paths if p.strip("/") in files or p.strip("/") in folders}
        last = self._last_commits(repo_type, repo_id, commit) if expand else {}
        out_dirs, out_files = [], []
        for path in sorted(wanted):
            if path in files:
                f = files[path]
                entry = {"type": "file", "oid": f["oid"], "size": f["size"], "path": path}
                if f["lfs"]:
                    entry["lfs"] = {"oid": f["sha256"], "size": f["size"],
                                    "pointerSize": len(lfs_pointer(f["sha256"], f["size"]))}
                if expand:
                    entry["securityFileStatus"] = {"status": "safe", "avScan": {"virusFound": False,
                                                   "virusNames": None}, "pickleImportScan": None}
                out_files.append(entry)
            else:
                listing = "".join(f"{p}:{files[p]['oid']}\n" for p in sorted(folders[path]))
                entry = {"type": "directory", "oid": hashlib.sha1(listing.encode()).hexdigest(), "size": 0,
                         "path": path}
                out_dirs.append(entry)
            if expand:
                c = last.get(path, commit)
                entry["lastCommit"] = {"id": c["id"], "title": c["title"], "date": c["date"]}
        return out_dirs + out_files

    def _paginated(self, items: list, page_size: int):
        cursor = int(self._query.get("cursor", ["0"])[0] or 0)
        page = items[cursor:cursor + page_size]
        headers = {}
        if cursor + page_size < len(items):
            query = {k: v[0] for k, v in self._query.items()}
            query["cursor"] = str(cursor + page_size)
            path = urllib.parse.urlsplit(self.path).path
            url = f"{self.server.hub.endpoint}{path}?{urllib.parse.urlencode(query)}"
            headers["Link"] = f'<{url}>; rel="next"'
        self._json(200, page, headers=headers)

    def _flag(self, name: str) -> bool:
        return self._query.get(name, ["false"])[0].lower() in ("1", "true")

    def _tree(self, repo_type: str, repo_id: str, revision: str, path: str):
        commit = self._commit_at(repo_type, repo_id, revision)
        path = path.strip("/")
        if path and path in commit["files"]:
            raise HubError(404, f"{path} is a file, not a folder", "EntryNotFound")
        if path and not any(p.startswith(path + "/") for p in commit["files"]):
            raise HubError(404, f"Path {path} does not exist at {revision}", "EntryNotFound",
                           headers={"X-Repo-Commit": commit["id"]})
        expand = self._flag("expand")
        entries = self._entries(repo_type, repo_id, commit, None, path, self._flag("recursive"), expand)
        hub = self.server.hub
        self._paginated(entries, hub.expand_page_size if expand else hub.page_size)

    def _paths_info(self, repo_type: str, repo_id: str, revision: str):
        commit = self._commit_at(repo_type, repo_id, revision)
        if self.headers.get("Content-Type", "").startswith("application/json"):
            form = json.loads(self._body or b"{}")
            paths, expand = form.get("paths", []), bool(form.get("expand"))
        else:
            form = urllib.parse.parse_qs(self._body.decode())
            paths, expand = form.get("paths", []), form.get("expand", ["false"])[0].lower() in ("1", "true")
        self._json(200, self._entries(repo_type, repo_id, commit, paths, "", False, expand))

    def _commits(self, repo_type: str, repo_id: str, revision: str):
        commit = self._commit_at(repo_type, repo_id, revision)
        items = [{"id": c["id"], "title": c["title"], "message": c["message"], "date": c["date"],
                  "authors": [{"user": c["author"], "avatar": None}]}
                 for c in self.server.hub.store.history(repo_type, repo_id, commit)]
        self._paginated(items, self.server.hub.commits_page_size)

    def _resolve(self, repo_type: str, repo_id: str, revision: str, path: str):
        commit = self._commit_at(repo_type, repo_id, revision)
        f = commit["files"].get(path)
        headers = {"X-Repo-Commit": commit["id"], "Accept-Ranges": "bytes"}
        if f is None:
            raise HubError(404, "Entry not found", "EntryNotFound", headers=headers)
        if f["lfs"]:
            headers.update({"ETag": f'"{f["sha256"]}"', "X-Linked-Etag": f'"{f["sha256"]}"',
                            "X-Linked-Size": str(f["size"])})
        else:
            headers["ETag"] = f'"{f["oid"]}"'
        data = self.server.hub.store.blob_path(f["sha256"]).read_bytes()
        status, rng = 200, self.headers.get("Range")
        if rng:
            m = re.match(r"bytes=(\d*)-(\d*)$", rng.strip())
            if not m or (not m.group(1) and not m.group(2)):
                raise HubError(416, f"Bad range {rng}")
            size = len(data)
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            else:
                start, end = max(0, size - int(m.group(2))), size - 1
            if start >= size and size > 0:
                raise HubError(416, "Range not satisfiable", headers={"Content-Range": f"bytes */{size}"})
            data, status = data[start:end + 1], 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        self._send(status, data, "application/octet-stream", headers, head_only=self._method == "HEAD")

    # ---- endpoints: upload
    def _preupload(self, repo_type: str, repo_id: str, revision: str):
        self._writable_repo(repo_type, repo_id, "upload files")
        commit = self._commit_at(repo_type, repo_id, revision)
        payload = json.loads(self._body or b"{}")
        attributes = commit["files"].get(".gitattributes")
        patterns = _lfs_patterns(self.server.hub.store.blob_path(attributes["sha256"]).read_bytes()) \
            if attributes else []
        ignore = [line.strip() for line in (payload.get("gitIgnore") or "").splitlines()
                  if line.strip() and not line.startswith("#")]
        out = []
        for item in payload.get("files", []):
            path, size = item["path"], int(item["size"])
            sample = base64.b64decode(item.get("sample", ""))
            lfs = size >= LFS_SIZE_THRESHOLD or b"\0" in sample or _matches(path, patterns)
            existing = commit["files"].get(path)
            oid = None
            if existing is not None:
                oid = existing["sha256"] if existing["lfs"] else existing["oid"]
            out.append({"path": path, "uploadMode": "lfs" if lfs else "regular",
                        "shouldIgnore": _matches(path, ignore), "oid": oid})
        self._json(200, {"files": out, "commitOid": commit["id"]})

    def _lfs_batch(self, repo_type: str, repo_id: str):
        self._writable_repo(repo_type, repo_id, "upload LFS files")
        payload = json.loads(self._body or b"{}")
        if payload.get("operation") != "upload":
            raise HubError(400, "Only the upload operation is supported")
        store, endpoint = self.server.hub.store, self.server.hub.endpoint
        objects = []
        for obj in payload.get("objects", []):
            oid, size = obj.get("oid", ""), obj.get("size")
            if not SHA256_RE.match(oid) or not isinstance(size, int):
                objects.append({"oid": str(oid), "size": int(size or 0),
                                "error": {"code": 422, "message": "Invalid oid or size"}})
            elif store.has_blob(oid, size):
                objects.append({"oid": oid, "size": size})  # already stored: nothing to upload
            else:
                objects.append({"oid": oid, "size": size, "authenticated": True, "actions": {
                    "upload": {"href": f"{endpoint}/_lfs/{oid}", "header": {}},
                    "verify": {"href": f"{endpoint}/_lfs/{oid}/verify", "header": {}},
                }})
        self._send(200, json.dumps({"transfer": "basic", "objects": objects}).encode(),
                   "application/vnd.git-lfs+json")

    def _lfs_put(self, oid: str):
        if not SHA256_RE.match(oid):
            raise HubError(400, "Invalid oid")
        if hashlib.sha256(self._body).hexdigest() != oid:
            raise HubError(400, "Uploaded content does not match its sha256 oid")
        self.server.hub.store.put_blob(self._body)
        self._send(200, b"", headers={"ETag": f'"{oid}"'})

    def _lfs_verify(self, oid: str):
        if not SHA256_RE.match(oid):
            raise HubError(400, "Invalid oid")
        size = json.loads(self._body or b"{}").get("size")
        if not self.server.hub.store.has_blob(oid, size):
            raise HubError(404, f"LFS object {oid} of size {size} not found")
        self._json(200, {"success": True})

    def _commit(self, repo_type: str, repo_id: str, revision: str):
        user, _ = self._writable_repo(repo_type, repo_id, "create a commit")
        lines = [json.loads(line) for line in self._body.decode().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "The first line of a commit payload must be its header")
        if self._query.get("create_pr"):
            raise HubError(400, "Pull requests are not supported by this test hub")
        record = self.server.hub.store.apply_commit(repo_type, repo_id, revision, lines[0]["value"], lines[1:],
                                                    user["name"])
        self._json(200, {"success": True, "commitOid": record["id"], "pullRequestUrl": None,
                         "commitUrl": f"{self._repo_url(repo_type, repo_id)}/commit/{record['id']}"})

    def _create_branch(self, repo_type: str, repo_id: str, branch: str):
        self._writable_repo(repo_type, repo_id, "create a branch")
        start = json.loads(self._body or b"{}").get("startingPoint") or "main"
        self.server.hub.store.create_branch(repo_type, repo_id, branch,
                                            self._commit_at(repo_type, repo_id, start))
        self._json(200, {})

    # ---- test control
    def _test_control(self, method: str, rest: list[str]):
        hub = self.server.hub
        if rest == ["fail"] and method == "POST":
            rules = json.loads(self._body or b"[]")
            try:
                hub.faults.set(rules if isinstance(rules, list) else [rules])
            except (ValueError, TypeError) as e:
                raise HubError(400, str(e))
            return self._json(200, {"rules": hub.faults.rules})
        if rest == ["reset"] and method == "POST":
            hub.reset()
            return self._json(200, {})
        if rest == ["counts"] and method == "GET":
            return self._json(200, dict(hub.counts))
        raise HubError(404, "Unknown test control endpoint")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    hub: "HubServer"


class HubServer:
    """The test hub: `start()` serves on 127.0.0.1 in a background thread; `stop()` shuts it down.

    `tokens` maps role -> (token, user, access) with access "write" or "read"; a write token may write to its
    user's namespace. `counts` holds requests per endpoint name (e.g. "commit", "lfs_put", "resolve").
    """

    def __init__(self, root: str | os.PathLike, port: int = 0, tokens: dict | None = None,
                 faults: list[dict] | None = None, page_size: int = 1000, expand_page_size: int = 50,
                 commits_page_size: int = 50, verbose: bool = False):
        self.root = Path(root)
        self.token_table = dict(tokens or DEFAULT_TOKENS)
        self.tokens = {role: token for role, (token, _, _) in self.token_table.items()}
        self.store = HubStore(self.root, self.token_table)
        self.faults = FaultPlan()
        self.faults.set(faults or [])
        self.page_size, self.expand_page_size, self.commits_page_size = page_size, expand_page_size, \
            commits_page_size
        self.verbose = verbose
        self.counts: collections.Counter = collections.Counter()
        self.requests: list[tuple[str, str, str, int | None]] = []
        self._log_lock = threading.Lock()
        self._httpd = _HTTPServer(("127.0.0.1", port), _Handler)
        self._httpd.hub = self
        self.port = self._httpd.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread: threading.Thread | None = None

    # ---- lifecycle
    def start(self) -> "HubServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hub-server", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- bookkeeping
    def count(self, endpoint: str) -> None:
        with self._log_lock:
            self.counts[endpoint] += 1

    def log(self, method: str, path: str, endpoint: str, status: int | None) -> None:
        with self._log_lock:
            self.requests.append((method, path, endpoint, status))

    def reset(self) -> None:
        """Forget request counts, the request log and fault rules (repos stay)."""
        with self._log_lock:
            self.counts.clear()
            self.requests.clear()
        self.faults.set([])

    def fail(self, *rules: dict) -> None:
        """Replace the fault rules (see the module docstring); no argument clears them."""
        self.faults.set(list(rules))

    # ---- inspection helpers for tests
    def env(self, role: str | None = "write", home: str | os.PathLike | None = None) -> dict[str, str]:
        """Environment variables that point huggingface_hub / datasets at this server.

        Both libraries read HF_ENDPOINT and HF_HUB_DISABLE_XET at import time: give these to a fresh process.
        HF_HOME (client caches, stored token) defaults to `<root>/.client-home`, so no token saved on the
        machine leaks in when role is None (anonymous); the token variables are then set empty, which the
        client reads as no token, so none leaks in from the caller's environment either.
        """
        env = {"HF_ENDPOINT": self.endpoint, "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
               "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0",
               "HF_HOME": str(home or self.root / ".client-home")}
        if role is None:
            env.update(HF_TOKEN="", HUGGING_FACE_HUB_TOKEN="")
        else:
            env["HF_TOKEN"] = self.tokens[role]
        return env

    def _meta(self, repo_id: str, repo_type: str) -> dict:
        meta = self.store.repo_meta(repo_type, repo_id)
        if meta is None:
            raise KeyError(f"no {repo_type} repo {repo_id}")
        return meta

    def commits(self, repo_id: str, repo_type: str = "dataset", branch: str = "main") -> list[dict]:
        """Commit records of a branch, newest first (keys: id, parents, title, message, date, author, files)."""
        meta = self._meta(repo_id, repo_type)
        head = self.store.commit(repo_type, repo_id, meta["branches"][branch])
        return self.store.history(repo_type, repo_id, head)

    def head(self, repo_id: str, repo_type: str = "dataset", branch: str = "main") -> str:
        return self._meta(repo_id, repo_type)["branches"][branch]

    def files(self, repo_id: str, repo_type: str = "dataset", revision: str = "main") -> dict[str, dict]:
        """path -> {"sha256", "size", "lfs", "oid"} at a branch or commit sha."""
        meta = self._meta(repo_id, repo_type)
        return self.store.resolve_revision(repo_type, repo_id, meta, revision)["files"]

    def read_file(self, repo_id: str, path: str, repo_type: str = "dataset", revision: str = "main") -> bytes:
        return self.store.blob_path(self.files(repo_id, repo_type, revision)[path]["sha256"]).read_bytes()

    def seed(self, folder) -> list[str]:
        """Every FOLDER/<type>s/<namespace>/<name>/ as a repo of that type holding the folder's files, unless the
        repo exists already (a restarted server keeps its root). Returns the repo ids added."""
        added = []
        for type_dir in sorted(Path(folder).iterdir()):
            if type_dir.name not in REPO_TYPES:
                continue
            for repo_dir in sorted(p for p in type_dir.glob("*/*") if p.is_dir()):
                repo_id = f"{repo_dir.parent.name}/{repo_dir.name}"
                if self.store.repo_meta(REPO_TYPES[type_dir.name], repo_id) is None:
                    files = {p.relative_to(repo_dir).as_posix(): p.read_bytes() for p in repo_dir.rglob("*")
                             if p.is_file()}
                    self.store.add_repo(REPO_TYPES[type_dir.name], repo_id, files, repo_id.split("/")[0])
                    added.append(repo_id)
        return added

    def create_repo(self, repo_id: str, repo_type: str = "dataset", private: bool = False) -> None:
        """Create a repo directly (owner = its namespace), bypassing HTTP."""
        self.store.create_repo(repo_type, repo_id, private, repo_id.split("/")[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve a Hugging Face Hub-compatible test API on 127.0.0.1. "
                                                 "Point clients at it with HF_ENDPOINT=http://127.0.0.1:PORT "
                                                 "HF_HUB_DISABLE_XET=1 HF_TOKEN=<token printed at start>.")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: pick a free one)")
    parser.add_argument("--root", required=True, help="directory holding repos and blobs (kept across runs)")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    parser.add_argument("--seed", action="append", default=[], metavar="DIR",
                        help="serve each DIR/<type>s/<namespace>/<name>/ as a public repo (repeatable)")
    args = parser.parse_args(argv)
    hub = HubServer(args.root, port=args.port, verbose=args.verbose)
    for folder in args.seed:
        hub.seed(folder)
    print(f"endpoint {hub.endpoint}", flush=True)
    for role, (token, user, access) in hub.token_table.items():
        print(f"token {role}: {token} (user {user}, {access})", flush=True)
    try:
        hub.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
