"""scripts/rehearse.sh: the preference recipe's own configuration file, run against replicas of its Hub datasets
on the loopback Hub with the real all-MiniLM-L6-v2, verified, pushed to that Hub and loaded back from it."""

import json
import os
import subprocess

from vs_sonar_dataset.core.envs import REPO_ROOT


def test_the_preference_recipe_rehearses_end_to_end(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    result = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "rehearse.sh"), "--out", str(tmp_path), "preference"],
                            capture_output=True, text=True, env=env, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "configs/preference_minilm.toml: sha256" in out
    assert "verify: passed" in out, out
    loaded = next(line for line in out.splitlines() if line.startswith("load_dataset("))
    assert loaded.startswith("load_dataset('org/preference-prompts-minilm', '100') from the replica Hub: ")
    assert all(part in loaded for part in ("train 80", "validation 10", "test 10", "; 384-d;")), loaded
    candidates = json.loads((tmp_path / "preference" / "candidates" / "summary.json").read_text())
    # every replica was read through the real datasets client, red-team transcripts not among HH-RLHF's pairs
    assert candidates["pairs_read"] == {"hh-rlhf": 108, "ultrafeedback": 102, "stack-exchange": 124}
    assert candidates["multi_turn"] > 0 and candidates["padded"] > 0
    release = json.loads((tmp_path / "preference" / "release" / "release.json").read_text())
    assert release["configs"] == {"100": 100, "200": 200}
    # the hub holds the pushed release beside the replicas
    assert (tmp_path / "hub" / "repos" / "datasets" / "org" / "preference-prompts-minilm" / "repo.json").is_file()
