#!/usr/bin/env bash
# Rehearse a real recipe offline: its configuration file exactly as shipped (rows scaled with --set only),
# against replicas of the Hub datasets it reads (same repo ids, layouts, splits and row shapes), served by the
# project's loopback Hub; then verify, push the release to that Hub and load it back with load_dataset.
#   scripts/rehearse.sh                      every recipe that can be rehearsed here
#   scripts/rehearse.sh preference           configs/preference_minilm.toml (all-MiniLM-L6-v2, the real model)
#   scripts/rehearse.sh wikitext             configs/wikitext_qwen3.toml (Qwen3-Embedding-4B at its real width
#                                            with 2 of its 36 layers and random weights, on the CPU)
#   scripts/rehearse.sh --out DIR RECIPE...  into DIR instead of runs/rehearse
# The work folder holds the Hub's files, the replicas and one run folder per recipe; a run folder that exists
# is continued.
set -euo pipefail
cd "$(dirname "$0")/.."
work=runs/rehearse
if [ "${1:-}" = "--out" ]; then work=${2:?--out needs a folder}; shift 2; fi
bash scripts/setup.sh >/dev/null
recipes=("$@")
[ ${#recipes[@]} -gt 0 ] || recipes=(preference wikitext)
mkdir -p "$work"
work=$(cd "$work" && pwd)

# the replica Hub: the project's test server on a free port of 127.0.0.1, seeded with the replicas
.venv/bin/python -m vs_sonar_dataset.fixtures.hub_replicas "$work/replicas"
if [[ " ${recipes[*]} " == *" wikitext "* ]]; then  # the model repos at real width (a minute, 1.2 GB)
  .venv-embed/bin/python -m vs_sonar_dataset.fixtures.hub_replica_models "$work/replicas"
fi
.venv/bin/python tests/hub_server.py --root "$work/hub" --seed "$work/replicas" --port 0 > "$work/hub.log" 2>&1 &
hub_pid=$!
trap 'kill $hub_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q '^endpoint ' "$work/hub.log" 2>/dev/null && break; sleep 0.1; done
endpoint=$(sed -n 's/^endpoint //p' "$work/hub.log")
[ -n "$endpoint" ] || { echo "rehearse: the replica Hub did not start (see $work/hub.log)" >&2; exit 1; }
export HF_ENDPOINT=$endpoint HF_HUB_DISABLE_XET=1 HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0 HF_HOME=$work/hf-home
export HF_TOKEN=hf_test_write_org HF_HUB_DISABLE_PROGRESS_BARS=1  # the replica Hub's write token (namespace org)
echo "== replica Hub at $endpoint"

for recipe in "${recipes[@]}"; do
  case "$recipe" in
    preference)
      config=configs/preference_minilm.toml repo=org/preference-prompts-minilm
      overrides=(--set 'build.configs={"100" = 100, "200" = 200}') ;;
    wikitext)
      config=configs/wikitext_qwen3.toml repo=org/wikitext2-qwen3-embedding
      overrides=(--set 'build.configs={"20" = 20, "40" = 40}' --set model_check.sample=16) ;;
    vs) echo "rehearse.sh: vs needs its real-size models (Qwen2.5-7B-Instruct, SONAR) on the replica Hub," \
          "not there yet" >&2; exit 2 ;;
    *) echo "rehearse.sh: unknown recipe $recipe (preference, wikitext)" >&2; exit 2 ;;
  esac
  out=$work/$recipe
  echo "== rehearse $recipe: vs-sonar run $config --out $out ${overrides[*]}"
  unmodified="CHANGED since the last commit"
  if git diff --quiet HEAD -- "$config" 2>/dev/null; then unmodified="as committed"; fi
  echo "   $config: sha256 $(sha256sum "$config" | cut -d' ' -f1), $unmodified"
  .venv/bin/vs-sonar run "$config" --out "$out" "${overrides[@]}"
  .venv/bin/python -m publish --run "$out" --push --repo "$repo"
  .venv/bin/python scripts/show_release.py "$out/release" --repo "$repo" --where "from the replica Hub"
done
