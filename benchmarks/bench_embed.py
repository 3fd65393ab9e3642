"""Embed-stage throughput against sonar's raw `TextToEmbeddingModelPipeline.predict` at its best batch
setting: same model, same texts, same run. The stage's number includes everything it does besides encoding
(reading candidate shards, token counting, Parquet shards, checkpoints).

The stage here is embed alone: semantic dedup is its own stage (bench_dedup.py measures it).

The model is the SONAR text encoder architecture with random weights (real weights cannot be downloaded
here; the cost is the same): by default the real configuration, 24 layers, width 1024, FFN 8192, with a
SentencePiece tokenizer trained on the benchmark texts. On a GPU box:

    .venv-embed/bin/python benchmarks/bench_embed.py --device cuda --dtype fp16 --texts 20000
    .venv-embed/bin/python benchmarks/bench_embed.py --device cuda --dtype fp32 --texts 20000

On a small CPU, shrink it: --layers 2 --texts 1000.
"""

import argparse
import random
import tempfile
import time
from pathlib import Path

DTYPES = ("auto", "fp16", "bf16", "fp32")


def make_texts(n: int, seed: int = 0) -> list[str]:
    """Unique instruction-like texts of one to four sentences (varied lengths, like the real candidates)."""
    from vs_sonar_dataset.fixtures.tiny_sonar import default_texts

    pool = default_texts(200, seed)
    rng = random.Random(seed)
    texts = []
    for i in range(n):
        texts.append(f"Step {i}: " + " ".join(rng.sample(pool, rng.randint(1, 4))))
    return texts


def build_encoder(texts, args, workdir: Path):
    import torch
    from fairseq2.models.nllb.tokenizer import NllbTokenizerConfig, load_nllb_tokenizer
    from sonar.models.sonar_text import get_sonar_text_encoder_hub

    from vs_sonar_dataset.encoders._torch_util import resolve_dtype
    from vs_sonar_dataset.encoders.sonar import SonarTextEncoder
    from vs_sonar_dataset.fixtures.tiny_sonar import LANG, _train_tokenizer

    _train_tokenizer(texts[:5000], workdir, vocab_size=2000)
    tokenizer = load_nllb_tokenizer(workdir / "tokenizer.model", NllbTokenizerConfig(langs=[LANG], default_lang=LANG))
    hub = get_sonar_text_encoder_hub()
    config = hub.get_arch_config("basic")
    config.vocab_info = tokenizer.vocab_info
    config.num_encoder_layers = args.layers
    config.model_dim, config.ffn_inner_dim = args.width, args.ffn
    dtype = resolve_dtype(args.dtype, args.device)
    torch.manual_seed(0)
    model = hub.create_new_model(config, device=torch.device(args.device), dtype=dtype)
    return SonarTextEncoder(model, tokenizer, "random_sonar_basic_encoder", "bench_tokenizer", LANG,
                            args.device, dtype)


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def raw_predict(encoder, texts, batch_size: int, device: str) -> float:
    start = time.perf_counter()
    out = encoder.pipeline.predict(texts, source_lang=encoder.source_lang, batch_size=batch_size,
                                   max_seq_len=encoder.max_tokens)
    out.float().cpu()
    sync(device)
    return len(texts) / (time.perf_counter() - start)


def stage(encoder, texts, args, workdir: Path) -> float:
    from vs_sonar_dataset.core.config import parse
    from vs_sonar_dataset.embed.stage import run_embed
    from vs_sonar_dataset.fixtures.candidates import write_candidates

    cands = write_candidates(workdir / "cands", texts, rows_per_shard=1000)
    config = parse("embed", {"kind": "sonar", "device": args.device, "dtype": args.dtype,
                             "tokens_per_batch": args.tokens_per_batch, "max_batch_rows": args.max_batch_rows,
                             "chunk_rows": args.chunk_rows})
    start = time.perf_counter()
    manifest = run_embed(cands, workdir / "vectors", config, encoder)
    elapsed = time.perf_counter() - start
    assert manifest.stats["input_rows_done"] == len(texts)
    return len(texts) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto", choices=DTYPES)
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--ffn", type=int, default=8192)
    parser.add_argument("--batch-sizes", default="16,32,64,128,256", help="raw predict batch sizes to try")
    parser.add_argument("--tokens-per-batch", type=int, default=16384)
    parser.add_argument("--max-batch-rows", type=int, default=512)
    parser.add_argument("--chunk-rows", type=int, default=4096)
    args = parser.parse_args()

    import torch

    texts = make_texts(args.texts)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        encoder = build_encoder(texts, args, workdir)
        lengths = encoder.token_lengths(texts)
        print(f"torch {torch.__version__} on {args.device} ({torch.get_num_threads()} threads), dtype "
              f"{encoder.dtype}, encoder {args.layers} layers x {args.width} (FFN {args.ffn}), {len(texts)} texts, "
              f"{sum(lengths) / len(lengths):.0f} tokens on average")
        raw_predict(encoder, texts[:64], 32, args.device)  # warm-up
        raw = {b: raw_predict(encoder, texts, b, args.device) for b in map(int, args.batch_sizes.split(","))}
        for b, rate in raw.items():
            print(f"raw predict batch_size={b}: {rate:.1f} rows/s")
        best_b = max(raw, key=raw.get)
        stage_rate = stage(encoder, texts, args, workdir)
        again = raw_predict(encoder, texts, best_b, args.device)  # the best setting again, after the stage
        best = max(raw[best_b], again)
        print(f"embed stage (tokens_per_batch={args.tokens_per_batch}, max_batch_rows={args.max_batch_rows}): "
              f"{stage_rate:.1f} rows/s")
        print(f"stage / best raw predict (batch_size={best_b}, {best:.1f} rows/s): {stage_rate / best:.1%}")


if __name__ == "__main__":
    main()
