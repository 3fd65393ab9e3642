"""The generate stage: GSM8K problems -> Verbalized Sampling prompts -> vLLM -> strict parsing -> exact dedup
-> candidate shards. Modules: problems (sources), prompt (template, request plan), parse (strict parser),
backends (vLLM offline, OpenAI-compatible HTTP), config ([generate] table), run (resumable loop), cli."""
