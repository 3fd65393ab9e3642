"""Put a folder on the test Hub as it is (no verify, no card): for tests of readers of a published release."""

import os
import subprocess
import sys
import textwrap


def push_folder(hub, folder, repo_id: str) -> None:
    """upload_folder(folder) into a new dataset repo `repo_id` of `hub`, in a fresh process (HF_ENDPOINT is read
    at import time)."""
    script = textwrap.dedent(f"""
        from huggingface_hub import HfApi
        api = HfApi()
        api.create_repo({repo_id!r}, repo_type="dataset", exist_ok=True)
        api.upload_folder(folder_path={str(folder)!r}, repo_id={repo_id!r}, repo_type="dataset")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            env={**os.environ, **hub.env("write")})
    assert result.returncode == 0, result.stderr
