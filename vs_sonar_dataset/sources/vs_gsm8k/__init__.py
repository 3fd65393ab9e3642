"""Source `vs_gsm8k`: Verbalized-Sampling instructions from GSM8K problems, written by an LLM on vLLM (or an
OpenAI-compatible server). This module plugs it into the pipeline; the work is in the package's modules:
GSM8K problems -> Verbalized Sampling prompts -> vLLM -> strict parsing -> exact dedup -> candidate shards.
problems (GSM8K), prompt (template, request plan), parse (strict parser), backends (vLLM offline,
OpenAI-compatible HTTP), config (the [source] table), run (the resumable loop)."""

from ...core.schema import CANDIDATE_SCHEMA
from ..base import CardInfo, SourceContext

KIND = "vs_gsm8k"
ENVIRONMENT = "generate"
RAY = True  # --engine ray: vLLM engines on Ray Data (engines/ray_generate.py), this driver in main
TEXT_COLUMN = "instruction"
from .config import GenerateConfig as Config  # noqa: E402  (after KIND: the config module reads it)

GSM8K = {"name": "GSM8K (openai/gsm8k), © OpenAI", "url": "https://huggingface.co/datasets/openai/gsm8k",
         "license": "mit",
         "citation": "@article{cobbe2021gsm8k,\n  title   = {Training Verifiers to Solve Math Word Problems},\n"
                     "  author  = {Cobbe, Karl and Kosaraju, Vineet and Bavarian, Mohammad and others},\n"
                     "  journal = {arXiv preprint arXiv:2110.14168},\n  year    = {2021}\n}"}
VERBALIZED_SAMPLING = ("@article{zhang2025verbalized,\n"
                       "  title   = {Verbalized Sampling: How to Mitigate Mode Collapse and Unlock LLM Diversity},\n"
                       "  author  = {Zhang, Jiayi and Yu, Simon and Chong, Derek and Sicilia, Anthony and Tomz, "
                       "Michael R. and\n             Manning, Christopher D. and Shi, Weiyan},\n"
                       "  journal = {arXiv preprint arXiv:2510.01171},\n  year    = {2025}\n}")


def schema(config: Config):
    return CANDIDATE_SCHEMA


def run(config: Config, out_dir, context: SourceContext):
    from ...core.shards import read_manifest
    from .run import nonzero_rejections, run_generate

    options = {}
    if context.engine == "ray":
        from ...engines.ray_generate import backend_factory

        options["backend_factory"] = backend_factory(context.address)
    summary = run_generate(config, out_dir, progress=context.progress, **options)
    rejected = ", ".join(f"{k} {v}" for k, v in nonzero_rejections(summary["rejected"]))
    print(f"generate: {summary['status']}: {summary['accepted']} of {summary['target']} candidates in "
          f"{summary['shards']} shard{'' if summary['shards'] == 1 else 's'} from {summary['requests']} requests; "
          f"rejected {summary['rejected_total']}{' (' + rejected + ')' if rejected else ''}; "
          f"summary in {out_dir}/summary.json")
    return read_manifest(out_dir, "candidates")


def card(config: Config | None, stats: dict) -> CardInfo:
    return CardInfo(
        title="vs-sonar: meta-cognitive math instructions with SONAR embeddings",
        description="Each row is a short, general strategy for solving grade-school math word problems (\"before "
                    "computing, restate what the question asks for...\"), written by a language model that was "
                    "shown a few GSM8K problems and asked, with *Verbalized Sampling*, for several candidate "
                    "instructions together with the probability it assigns to each.",
        tags=["math", "gsm8k", "verbalized-sampling", "synthetic", "meta-cognition"],
        datasets=[GSM8K, {"name": "Verbalized Sampling (method)", "url": "https://arxiv.org/abs/2510.01171",
                          "license": "", "citation": VERBALIZED_SAMPLING}],
        task_categories=["text-generation"], license="mit",
        fields={
            "id": "string | sha256 of the normalized instruction text (NFKC, case-folded, whitespace collapsed); "
                  "unique",
            "instruction": "string | the meta-cognitive instruction",
            "probability": "float64 | the probability the generator verbalized for this instruction among its "
                           "candidates",
            "seed_problem_ids": "list of string | the GSM8K problems shown in the prompt (`split-index`)",
            "generator_model": "string | the model that wrote the instruction",
            "generator_revision": "string | its revision",
            "sampling_params": "string | the sampling parameters of the request, as JSON",
            "template_hash": "string | sha256 of the prompt template",
            "request_seed": "int64 | the seed of the request that produced the row",
        },
        method=[
            "**Seed problems**: GSM8K (`openai/gsm8k`, config `main`). Every request shows 3 to 5 problems "
            "sampled with its own seed.",
            "**Generation**: {{ provenance.generator_model | join(\", \") }} (revision "
            "{{ provenance.generator_revision | join(\", \") }}) on vLLM with a Verbalized Sampling prompt "
            "(template sha256 `{{ provenance.template_hash | join(\", \") }}`) and structured JSON output. Sampling "
            "parameters: {% for p in provenance.sampling_params %}`{{ p }}`{% if not loop.last %}, {% endif %}"
            "{% endfor %}. Output that does not parse, lacks a probability in [0, 1], is too short or too long, "
            "leaks a seed problem's answer or wording, is not English, or echoes the prompt is rejected and "
            "counted; a probability is never invented. Exact duplicates (after normalization) are dropped.",
        ],
        limitations=[
            "The instructions are model-written; they can be vague, repetitive in spirit, or occasionally wrong. "
            "Filters remove malformed output, answer leaks and copies of the seed problems, not every weak "
            "instruction.",
            "Verbalized probabilities are the generator's own statements, not calibrated likelihoods. They are "
            "stored as stated and never renormalised; a small model's values for one request rarely sum to 1 "
            "(SmolLM2-135M: 0 of 32 requests within 1 ± 0.1, half of all values exactly 1), so read them as a "
            "rank within a request at most.",
            "English only, and only the style of strategy that GSM8K-like problems call for.",
        ],
    )
