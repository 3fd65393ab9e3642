"""Shared pytest fixtures."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hub_server import HubServer  # noqa: E402

pytest_plugins = ["release_fixtures", "os_faults", "sonar_fixtures"]


@pytest.fixture
def hub_server(tmp_path):
    """A Hub-compatible server on 127.0.0.1 (a free port), serving from a fresh root, run in a thread.

    Yields a `hub_server.HubServer`: `.endpoint` (URL), `.tokens` ({"write": token of user "org", may write
    org/*; "read": token of user "reader", read-only}), `.root`, `.env(role)` (the variables a client process
    needs: HF_ENDPOINT, HF_HUB_DISABLE_XET=1, HF_TOKEN, HF_HOME), `.commits(repo_id)`, `.head(repo_id)`,
    `.files(repo_id)`, `.read_file(repo_id, path)`, `.counts` (requests per endpoint), `.reset()`,
    `.fail(rule, ...)` (fault injection). huggingface_hub reads HF_ENDPOINT at import time, so run the client
    in a subprocess with `env={**os.environ, **hub_server.env("write")}`.
    """
    server = HubServer(tmp_path / "hub").start()
    try:
        yield server
    finally:
        server.stop()
