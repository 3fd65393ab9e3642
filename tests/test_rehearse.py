"""scripts/rehearse.sh: the recipes' own configuration files, run against replicas of their Hub datasets on the
loopback Hub (the preference recipe with the real all-MiniLM-L6-v2, the WikiText one with Qwen3-Embedding-4B at
its real width), verified, pushed to that Hub and loaded back from it."""

import json
import os
import subprocess

from vs_sonar_dataset.core.envs import REPO_ROOT


def rehearse(out, recipe) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    result = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "rehearse.sh"), "--out", str(out), recipe],
                            capture_output=True, text=True, env=env, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_the_preference_recipe_rehearses_end_to_end(tmp_path):
    out = rehearse(tmp_path, "preference")
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


def test_the_wikitext_recipe_rehearses_at_real_width(tmp_path):
    out = rehearse(tmp_path, "wikitext")
    assert "configs/wikitext_qwen3.toml: sha256" in out and "verify: passed" in out, out
    loaded = next(line for line in out.splitlines() if line.startswith("load_dataset("))
    assert loaded.startswith("load_dataset('org/wikitext2-qwen3-embedding', '20') from the replica Hub: ")
    assert "; 2560-d;" in loaded, loaded
    vectors = json.loads((tmp_path / "wikitext" / "vectors" / "manifest.json").read_text())
    encoder = vectors["config"]["encoder"]
    assert encoder["name"] == "Qwen/Qwen3-Embedding-4B" and encoder["dim"] == 2560
    source = json.loads((tmp_path / "wikitext" / "candidates" / "summary.json").read_text())
    # every paragraph of the replica passed the recipe's 100-token floor, counted by the model's own tokenizer
    assert source["per_split"]["train"]["kept"] > 40 and source["dropped"]["too_short"] == 0
