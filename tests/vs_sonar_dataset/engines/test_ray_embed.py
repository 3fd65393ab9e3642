"""The ray engine on a real local Ray instance (2 CPUs, fractional-CPU actors): the embed stage's files equal
the local engine's, an interrupted run resumes to the same files, and broken set-ups end in one line, not a
hang. The driver runs here (the main environment); the encoder actors run in the embed environment on a tiny
random Qwen3 (hf_auto), as `vs-sonar embed --engine ray` runs them.

Needs Ray in both environments (scripts/setup.sh --ray); skipped otherwise. About a minute and a half.
"""

import json
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
from os_faults import interrupted_after

from vs_sonar_dataset.core import shards
from vs_sonar_dataset.core.config import parse
from vs_sonar_dataset.core.envs import REPO_ROOT
from vs_sonar_dataset.core.errors import UserError
from vs_sonar_dataset.embed.stage import DROPPED_FILE
from vs_sonar_dataset.fixtures.candidates import write_candidates

from .conftest import EMBED_PYTHON, needs_ray_and_embed

pytestmark = needs_ray_and_embed

# sentences of every length (token-budget batches differ), one repeated text, 60 rows: 4 chunks of 16
TEXTS = [f"Step {i}: " + " ".join(["check the units"] * (i % 9)) + f" and write down result {i}." for i in range(59)]
TEXTS.append(TEXTS[5].upper())  # the same id as row 5: dropped as a repeated text


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A tiny Qwen3 model folder (built in the embed environment), candidates and an [embed] config file."""
    root = tmp_path_factory.mktemp("ray_engine")
    subprocess.run([str(EMBED_PYTHON), "-m", "vs_sonar_dataset.fixtures.tiny_qwen3", str(root / "qwen")],
                   check=True, cwd=REPO_ROOT, capture_output=True)
    write_candidates(root / "cands", TEXTS)
    values = {"kind": "hf_auto", "model": str(root / "qwen"), "model_name": "tiny-qwen3", "device": "cpu",
              "chunk_rows": 16, "tokens_per_batch": 256}
    (root / "embed.toml").write_text("[embed]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
    return root, parse("embed", values)


@pytest.fixture(scope="module")
def local_vectors(work):
    """The local engine's output, as `vs-sonar embed` writes it (in the embed environment)."""
    root, _ = work
    done = subprocess.run([sys.executable, "-m", "vs_sonar_dataset.cli", "embed", str(root / "cands"), "--out",
                           str(root / "local"), "--config", str(root / "embed.toml")], cwd=REPO_ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return root / "local"


def assert_same_output(a, b):
    """The same manifest (config, counts, rows per shard), rows and dropped rows; vectors equal to float
    rounding at most (the engines may compute on different thread counts)."""
    ma, mb = shards.read_manifest(a, "vectors"), shards.read_manifest(b, "vectors")
    assert mb.complete and (ma.config, ma.stats) == (mb.config, mb.stats)
    assert [s["rows"] for s in ma.shards] == [s["rows"] for s in mb.shards]
    for ta, tb in zip(shards.iter_shards(a, "vectors"), shards.iter_shards(b, "vectors")):
        assert ta.drop(["embedding"]).equals(tb.drop(["embedding"]))
        assert tb.schema.equals(ta.schema)  # fixed_size_list<float32>, as the local engine writes it
        va, vb = (np.stack(t.column("embedding").to_numpy(zero_copy_only=False)) for t in (ta, tb))
        np.testing.assert_allclose(vb, va, rtol=0, atol=1e-6)
    assert pq.read_table(a / DROPPED_FILE).equals(pq.read_table(b / DROPPED_FILE))


def test_same_files_as_the_local_engine(ray_local, work, local_vectors):
    from vs_sonar_dataset.engines.ray_embed import run_embed_ray

    root, config = work
    manifest = run_embed_ray(root / "cands", root / "ray", config)
    assert manifest.stats["rows"] == len(TEXTS) - 1 and manifest.stats["dropped_duplicate_id"] == 1
    assert len(manifest.shards) == 4
    assert_same_output(local_vectors, root / "ray")


def test_interrupted_after_the_first_shard_then_resumed(ray_local, work, local_vectors, monkeypatch):
    """Stopped right after its first shard (as Ctrl-C would), then run again with two actors (chunks encoded
    out of order, written in order): the files of an uninterrupted run."""
    from vs_sonar_dataset.engines import ray_embed as engine

    root, config = work
    with interrupted_after(monkeypatch, engine, "write_chunk"):
        engine.run_embed_ray(root / "cands", root / "resumed", config)
    partial = shards.read_manifest(root / "resumed", "vectors")
    assert not partial.complete and len(partial.shards) == 1
    engine.run_embed_ray(root / "cands", root / "resumed", config, actors=2)
    assert_same_output(local_vectors, root / "resumed")


def test_a_missing_embed_environment_is_one_line_not_a_hang(ray_local, work, tmp_path):
    from vs_sonar_dataset.engines.ray_embed import run_embed_ray

    root, config = work
    subprocess.run([sys.base_prefix + "/bin/python3", "-m", "venv", "--without-pip", str(tmp_path / "bare")],
                   check=True)
    started = time.monotonic()
    for python, message in [(tmp_path / "nowhere" / "python", "the embed environment is missing"),
                            (tmp_path / "bare" / "bin" / "python", r"lacks Ray Data .* scripts/setup.sh --ray")]:
        with pytest.raises(UserError, match=message) as caught:
            run_embed_ray(root / "cands", tmp_path / "vectors", config, python=str(python))
        assert "\n" not in str(caught.value)
    assert time.monotonic() - started < 60
    assert not (tmp_path / "vectors").exists()


def test_a_model_folder_that_is_not_there_is_one_line(ray_local, work, tmp_path):
    """The encoder actors meet it while loading (Ray Data hands their errors back as traceback text): the user
    gets the encoder's own one-line error, and no output folder."""
    from vs_sonar_dataset.engines.ray_embed import run_embed_ray

    root, config = work
    missing = config.model_copy(update={"model": str(tmp_path / "no-model")})
    with pytest.raises(UserError, match="no-model") as caught:
        run_embed_ray(root / "cands", tmp_path / "vectors", missing)
    assert "\n" not in str(caught.value) and "Traceback" not in str(caught.value)
    assert not (tmp_path / "vectors").exists()


def test_an_actor_reads_its_chunks_new_texts_across_shards(tmp_path):
    """The driver sends where a chunk's new texts are; the actor reads them from the candidate shards (here a
    chunk that spans two shards of 10 rows, less two repeated texts, then the last, shorter chunk)."""
    from vs_sonar_dataset.engines.ray_embed import CandidateTexts

    texts = [f"Step {i}: add the two numbers." for i in range(25)]
    reader = CandidateTexts(str(write_candidates(tmp_path / "cands", texts, rows_per_shard=10)))
    assert reader.read(8, 6, np.array([1, 4])) == [texts[8], texts[10], texts[11], texts[13]]
    assert reader.read(20, 5, np.array([], np.int64)) == texts[20:]
    with pytest.raises(UserError, match="storage every node mounts"):
        (tmp_path / "cands" / "shard-00000.parquet").unlink()
        CandidateTexts(str(tmp_path / "cands")).read(0, 4, np.array([], np.int64))


def test_command_line_errors(work, tmp_path):
    """`vs-sonar embed --engine ray`: a Ray head nobody listens on fails in seconds, and --address needs the
    ray engine; each a one-line error with exit status 2."""
    root, _ = work

    def embed(*flags):
        return subprocess.run([sys.executable, "-m", "vs_sonar_dataset.cli", "embed", str(root / "cands"),
                               "--out", str(tmp_path / "vectors"), "--config", str(root / "embed.toml"), *flags],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)

    for flags, message in [(["--engine", "ray", "--address", "127.0.0.1:1"], "cannot reach the Ray cluster"),
                           (["--address", "127.0.0.1:1"], "--address is for --engine ray")]:
        done = embed(*flags)
        last = done.stderr.strip().splitlines()[-1]
        assert done.returncode == 2 and message in last and last.startswith("vs-sonar embed: error:"), done.stderr
        assert "Traceback" not in done.stderr


