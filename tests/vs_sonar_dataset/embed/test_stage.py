"""The embed and dedup stages end to end on the tiny SONAR fixture: pool contents, dedup records, broken vectors,
target size, and SIGKILL at random points followed by a resume."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

from vs_sonar_dataset.core import shards
from vs_sonar_dataset.core.config import parse
from vs_sonar_dataset.dedup.stage import dropped_schema, run_dedup
from vs_sonar_dataset.embed.stage import DROPPED_FILE, DROPPED_SCHEMA, run_embed as embed_stage
from vs_sonar_dataset.core.envs import REPO_ROOT
from vs_sonar_dataset.core.errors import UserError
from vs_sonar_dataset.fixtures.candidates import write_candidates
from vs_sonar_dataset.core.schema import embedding_matrix, pool_schema
from vs_sonar_dataset.core.textnorm import text_id

from os_faults import interrupted_after

from sonar_fixtures import TEST_DIM, needs_sonar

pytestmark = needs_sonar


@pytest.fixture(scope="module")
def texts(train_texts):
    """Training sentences, then case variants (same id) and punctuation variants (near-duplicates)."""
    return train_texts + [t.upper() for t in train_texts[:4]] + [t[:-1] + "!" for t in train_texts[4:9]]


DEDUP_KEYS = {"dedup_method": "method", "dedup_threshold": "threshold", "dedup_block_rows": "block_rows",
              "target_rows": "target_rows", "ivf_lists": "ivf_lists", "ivf_probes": "ivf_probes",
              "ivf_training_rows": "ivf_training_rows"}


def config(tiny_sonar, **overrides):
    """([embed], [dedup]) tables; the dedup keys may be given as they were named before dedup was a stage."""
    embed = {"kind": "sonar", "model": "tiny_sonar_encoder", "asset_dir": str(tiny_sonar), "device": "cpu"}
    dedup = {"device": "cpu"}
    for key, value in overrides.items():
        if key in DEDUP_KEYS:
            dedup[DEDUP_KEYS[key]] = value
        else:
            embed[key] = value
    return parse("embed", embed), parse("dedup", dedup)


def run_embed(cands, pool, configs, encoder):
    """Embed then dedup: the pool the two stages make together (the vectors go beside it)."""
    embed, dedup = configs
    vectors = pool.with_name(pool.name + "-vectors")
    embed_stage(cands, vectors, embed, encoder)
    return run_dedup(vectors, pool, dedup)


def dropped(pool):
    """Both stages' dropped rows in input order: repeated texts and broken vectors (embed), then duplicates."""
    by_embed = pq.read_table(pool.with_name(pool.name + "-vectors") / DROPPED_FILE).to_pylist()
    by_dedup = pq.read_table(pool / DROPPED_FILE).to_pylist()
    rows = [{k: r.get(k) for k in ("id", "reason", "duplicate_of", "cosine")} for r in by_embed]
    rows += [{"id": r["id"], "reason": "duplicate", "duplicate_of": r["duplicate_of"], "cosine": r["cosine"]}
             for r in by_dedup]
    return rows


def test_pool_rows_vectors_and_dropped_records(tmp_path, tiny_sonar, encoder, texts, train_texts):
    cands = write_candidates(tmp_path / "cands", texts)
    manifest = run_embed(cands, tmp_path / "pool", config(tiny_sonar, chunk_rows=16), encoder)
    pool = shards.read_table(tmp_path / "pool", "pool")
    assert manifest.complete and manifest.embedding_dim == TEST_DIM
    assert pool.schema.equals(pool_schema(TEST_DIM), check_metadata=False)
    assert pool.column("instruction").to_pylist() == train_texts
    assert set(pool.column("encoder").to_pylist()) == {"tiny_sonar_encoder"}
    assert pool.column("text_tokens").to_pylist() == encoder.token_lengths(train_texts)
    np.testing.assert_allclose(embedding_matrix(pool), encoder.encode_batch(train_texts), atol=1e-5)

    vectors = tmp_path / "pool-vectors"
    assert pq.read_schema(vectors / DROPPED_FILE).equals(DROPPED_SCHEMA)
    by_dedup = pq.read_table(tmp_path / "pool" / DROPPED_FILE)
    assert by_dedup.schema.equals(dropped_schema(pool.schema), check_metadata=False)
    # a dropped duplicate keeps its row and its vector, which is the vector of its own text
    np.testing.assert_allclose(embedding_matrix(by_dedup), encoder.encode_batch(texts[-5:]), atol=1e-5)
    assert by_dedup.column("instruction").to_pylist() == texts[-5:]
    rows = dropped(tmp_path / "pool")
    assert [r["reason"] for r in rows] == ["duplicate_id"] * 4 + ["duplicate"] * 5
    for r, source in zip(rows[4:], train_texts[4:9]):
        assert r["duplicate_of"] == text_id(source) and 0.95 <= r["cosine"] <= 1.0
    assert by_dedup.column("input_index").to_pylist() == list(range(len(train_texts), len(train_texts) + 5))
    stats = manifest.stats
    assert (stats["kept"], stats["dropped_duplicate"]) == (len(train_texts), 5)
    assert shards.read_manifest(vectors).stats["dropped_duplicate_id"] == 4
    assert manifest.config["dedup"]["method"] == "exact" and stats["dropped_rows_sha256"]
    assert manifest.config["encoder"]["kind"] == "sonar"  # the card reads the encoder from the pool


def test_same_pool_whatever_batching_and_chunking(tmp_path, tiny_sonar, encoder, texts):
    cands = write_candidates(tmp_path / "cands", texts)
    results = []
    for i, settings in enumerate([dict(chunk_rows=3, tokens_per_batch=512, dedup_block_rows=2),
                                  dict(chunk_rows=1000, tokens_per_batch=100000, dedup_block_rows=1000)]):
        run_embed(cands, tmp_path / f"pool{i}", config(tiny_sonar, **settings), encoder)
        pool = shards.read_table(tmp_path / f"pool{i}", "pool")
        results.append((pool.column("id").to_pylist(), [r["id"] for r in dropped(tmp_path / f"pool{i}")],
                        embedding_matrix(pool)))
    assert results[0][0] == results[1][0] and results[0][1] == results[1][1]
    np.testing.assert_allclose(results[0][2], results[1][2], atol=1e-5)


def test_ivf_dedup_probing_every_list_keeps_what_exact_keeps(tmp_path, tiny_sonar, encoder, texts):
    """With every list probed the approximation has nothing to miss: the stage's ivf path (train after a few
    exact rows, then listed scans of fp16 rows) must then keep and drop exactly what exact dedup does."""
    cands = write_candidates(tmp_path / "cands", texts)
    pools = {}
    for method, extra in [("exact", {}), ("ivf", dict(ivf_lists=4, ivf_probes=4, ivf_training_rows=8))]:
        manifest = run_embed(cands, tmp_path / method, config(tiny_sonar, chunk_rows=5, dedup_method=method,
                                                              **extra), encoder)
        pools[method] = (shards.read_table(tmp_path / method, "pool").column("id").to_pylist(),
                         [r["duplicate_of"] for r in dropped(tmp_path / method) if r["reason"] == "duplicate"])
    algorithm = manifest.config["dedup"]["algorithm"]
    assert (algorithm["method"], algorithm["nlist"], algorithm["nprobe"], algorithm["training_rows"]) == \
        ("faiss-ivf-cosine", 4, 4, 8)
    assert pools["ivf"] == pools["exact"] and len(pools["exact"][1]) == 5


def test_stops_at_target_rows(tmp_path, tiny_sonar, encoder, texts):
    cands = write_candidates(tmp_path / "cands", texts)
    manifest = run_embed(cands, tmp_path / "pool", config(tiny_sonar, chunk_rows=8, target_rows=20), encoder)
    assert manifest.rows == 20 and manifest.stats["target_reached"] and manifest.complete
    assert manifest.stats["input_rows_done"] == 20  # no duplicates among the first 20 candidates
    finished = [tmp_path / folder / name for folder in ("pool", "pool-vectors")
                for name in ("manifest.json", DROPPED_FILE)]
    for path in finished:  # back-dated: a rewrite, however quick, then shows in st_mtime_ns
        os.utime(path, ns=(10**18, 10**18))
    before = [(p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_ino) for p in finished]
    again = run_embed(cands, tmp_path / "pool", config(tiny_sonar, chunk_rows=8, target_rows=20), encoder)
    assert again.rows == 20  # a complete pool is left as it is
    assert [(p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_ino) for p in finished] == before  # not rewritten


class BreaksSomeVectors:
    """The real encoder, with the vectors of chosen texts replaced by broken ones (which a healthy encoder
    cannot be made to produce on demand)."""

    def __init__(self, inner, broken: dict):
        self.inner, self.broken = inner, broken
        self.name, self.dim, self.device = inner.name, inner.dim, inner.device

    def token_lengths(self, texts):
        return self.inner.token_lengths(texts)

    def encode_batch(self, texts):
        out = self.inner.encode_batch(texts)
        for i, t in enumerate(texts):
            if t in self.broken:
                out[i] = self.broken[t]
        return out

    def describe(self):
        return self.inner.describe()


def test_broken_vectors_are_rejected_and_never_written(tmp_path, tiny_sonar, encoder, train_texts):
    bad = {train_texts[1]: np.nan, train_texts[5]: np.inf, train_texts[9]: 0.0}
    cands = write_candidates(tmp_path / "cands", train_texts)
    run_embed(cands, tmp_path / "pool", config(tiny_sonar), BreaksSomeVectors(encoder, bad))
    pool = shards.read_table(tmp_path / "pool", "pool")
    assert set(pool.column("instruction").to_pylist()) == set(train_texts) - set(bad)
    assert np.isfinite(embedding_matrix(pool)).all()
    reasons = {r["id"]: r["reason"] for r in dropped(tmp_path / "pool")}
    assert reasons == {text_id(train_texts[1]): "nan", text_id(train_texts[5]): "inf",
                       text_id(train_texts[9]): "zero_norm"}
    stats = shards.read_manifest(tmp_path / "pool-vectors").stats
    assert (stats["dropped_nan"], stats["dropped_inf"], stats["dropped_zero_norm"]) == (1, 1, 1)


def test_resume_with_another_configuration_is_refused(tmp_path, tiny_sonar, encoder, train_texts):
    cands = write_candidates(tmp_path / "cands", train_texts)
    run_embed(cands, tmp_path / "pool", config(tiny_sonar, target_rows=5), encoder)
    with pytest.raises(UserError, match="another configuration"):
        run_embed(cands, tmp_path / "pool", config(tiny_sonar, target_rows=6), encoder)


def embed_command(cands, pool, tiny_sonar):
    return [sys.executable, "-m", "vs_sonar_dataset.cli", "embed", str(cands), "--out", str(pool),
            "--set", "kind='sonar'", "--set", "model='tiny_sonar_encoder'", "--set", f"asset_dir='{tiny_sonar}'",
            "--set", "device='cpu'", "--set", "chunk_rows=2", "--set", "tokens_per_batch=512"]


def dedup_command(vectors, pool):
    return [sys.executable, "-m", "vs_sonar_dataset.cli", "dedup", str(vectors), "--out", str(pool),
            "--set", "device='cpu'"]


def shard_count(pool):
    try:
        return len(json.loads((pool / "manifest.json").read_text())["shards"])
    except (OSError, ValueError, KeyError):
        return 0


def test_sigkill_at_random_points_then_resume_gives_the_identical_pool(tmp_path, tiny_sonar, texts):
    cands = write_candidates(tmp_path / "cands", texts)
    env = {**os.environ, "FAIRSEQ2_USER_ASSET_DIR": str(tiny_sonar)}
    reference = tmp_path / "reference"
    subprocess.run(embed_command(cands, reference, tiny_sonar), check=True, cwd=REPO_ROOT, env=env,
                   capture_output=True)
    total = shard_count(reference)
    pool = tmp_path / "pool"
    rng = random.Random(7)
    kills = 0
    for attempt in range(4):
        proc = subprocess.Popen(embed_command(cands, pool, tiny_sonar), cwd=REPO_ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # kill once the run has committed a random number of new shards, after a random extra delay
        goal = min(total, shard_count(pool) + rng.randint(1, max(1, total // 4)))
        deadline = time.monotonic() + 120
        while proc.poll() is None and shard_count(pool) < goal and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.05))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 2
    subprocess.run(embed_command(cands, pool, tiny_sonar), check=True, cwd=REPO_ROOT, env=env,
                   capture_output=True)
    ref_manifest, manifest = (json.loads((p / "manifest.json").read_text()) for p in (reference, pool))
    assert manifest["complete"] and manifest["shards"] == ref_manifest["shards"]  # same files, same sha256
    assert manifest["stats"] == ref_manifest["stats"]
    assert pq.read_table(pool / DROPPED_FILE).equals(pq.read_table(reference / DROPPED_FILE))
    assert not (pool / "dropped").exists()


def test_sigkill_during_dedup_then_resume_gives_the_identical_pool(tmp_path, tiny_sonar, texts):
    cands = write_candidates(tmp_path / "cands", texts)
    env = {**os.environ, "FAIRSEQ2_USER_ASSET_DIR": str(tiny_sonar)}
    vectors = tmp_path / "vectors"
    subprocess.run(embed_command(cands, vectors, tiny_sonar), check=True, cwd=REPO_ROOT, env=env,
                   capture_output=True)
    reference, pool = tmp_path / "reference", tmp_path / "pool"
    subprocess.run(dedup_command(vectors, reference), check=True, cwd=REPO_ROOT, capture_output=True)
    total = shard_count(reference)
    kills = 0
    for goal in (total // 3, 2 * total // 3):
        proc = subprocess.Popen(dedup_command(vectors, pool), cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while proc.poll() is None and shard_count(pool) < goal and time.monotonic() < deadline:
            time.sleep(0.002)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 1
    subprocess.run(dedup_command(vectors, pool), check=True, cwd=REPO_ROOT, capture_output=True)
    ref_manifest, manifest = (json.loads((p / "manifest.json").read_text()) for p in (reference, pool))
    assert manifest["complete"] and manifest["shards"] == ref_manifest["shards"]
    assert manifest["stats"] == ref_manifest["stats"]
    assert pq.read_table(pool / DROPPED_FILE).equals(pq.read_table(reference / DROPPED_FILE))


def test_chunk_of_only_repeated_ids(tmp_path, tiny_sonar, encoder, train_texts):
    texts = train_texts[:4] + [t.lower() for t in train_texts[:4]] + train_texts[4:6]
    cands = write_candidates(tmp_path / "cands", texts)
    embed, _ = config(tiny_sonar, chunk_rows=4)
    manifest = embed_stage(cands, tmp_path / "vectors", embed, encoder)
    assert manifest.rows == 6 and manifest.stats["dropped_duplicate_id"] == 4
    assert [s["rows"] for s in manifest.shards] == [4, 0, 2]  # the all-duplicate chunk still checkpoints


def test_remaining_chunks_are_what_the_run_still_encodes(tmp_path, tiny_sonar, encoder, train_texts, monkeypatch):
    """What the ray engine plans before it opens the output (it has no encoder description yet): where each
    chunk's new texts are, on a fresh output, after a stop at the first shard, and nothing once complete."""
    from vs_sonar_dataset.embed import stage

    texts = train_texts[:6] + [t.lower() for t in train_texts[:3]] + train_texts[6:9]  # repeats in a later chunk
    cands = write_candidates(tmp_path / "cands", texts)
    embed, _ = config(tiny_sonar, chunk_rows=4)
    seen, expected = set(), []
    for start in range(0, len(texts), 4):
        rows = texts[start:start + 4]
        expected.append((start, len(rows), [p for p, t in enumerate(rows) if text_id(t) in seen]))
        seen.update(text_id(t) for t in rows)
    assert expected == [(0, 4, []), (4, 4, [2, 3]), (8, 4, [0])]  # the later chunks repeat earlier texts
    out = tmp_path / "vectors"
    assert stage.remaining_chunks(cands, out, 4) == expected

    with interrupted_after(monkeypatch, stage, "write_chunk"):
        embed_stage(cands, out, embed, encoder)
    assert stage.remaining_chunks(cands, out, 4) == expected[1:]
    embed_stage(cands, out, embed, encoder)
    assert stage.remaining_chunks(cands, out, 4) == []
