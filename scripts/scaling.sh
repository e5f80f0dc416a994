#!/usr/bin/env bash
# Data-parallel scaling on this machine: training tokens/s of 2 ranks × 1 intra-op thread
# (`freet train --nproc 2`, Gloo over 127.0.0.1) against 1 process × 2 threads and 1 process ×
# 1 thread, and the share of the 2-rank step spent in the all-reduce (waiting for the slower rank
# included), at two model sizes of the demo's synthetic task: `demo` (configs/demo.toml: 4 blocks,
# d_model 128, H = 16, batch 32 × 65 tokens) and `wide` (the same with 8 blocks, d_model 256, FFN
# 768). Prints a Markdown table with the command, machine and date. Run it on an idle machine.
#
#   scripts/scaling.sh               STEPS=40 by default (tok/s excludes evaluation and start-up)
#   SMOKE=1 scripts/scaling.sh       a tiny model for 3 steps: checks the script, measures nothing
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
freet="$root/target/release/freet"
[ -x "$freet" ] || { echo "scaling: build first (scripts/with-env cargo build --release)" >&2; exit 1; }
STEPS="${STEPS:-40}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
common=(--set train.eval_every=0 --set train.checkpoint_every=0 --set train.log_every=1 --set train.eval_batches=1
  --quiet --device cpu)
declare -A sizes=(
  [demo]=""
  [wide]="--set model.n_layers=8 --set model.d_model=256 --set model.ffn_hidden=768"
)
order=(demo wide)
if [ -n "${SMOKE:-}" ]; then
  STEPS=3
  sizes=([tiny]="--set model.d_model=32 --set model.n_layers=2 --set model.ffn_hidden=64 --set model.latent.bits=6 --set train.batch_size=4")
  order=(tiny)
fi

# Runs one arm; prints "tok/s all-reduce-percent" from freet's summary.
arm() {
  local size="$1" threads="$2" nproc="$3" out="$tmp/$1-$2-$3"
  local extra=()
  [ "$nproc" -gt 1 ] && extra=(--nproc "$nproc")
  # shellcheck disable=SC2086
  "$freet" train --config configs/demo.toml --out "$out" --set "train.steps=$STEPS" --set "train.threads=$threads" \
    ${sizes[$size]} "${common[@]}" "${extra[@]}" >"$out.log" 2>&1 || { cat "$out.log" >&2; exit 1; }
  local tps share
  tps="$(sed -n 's/.* tokens in [0-9.]* s, \([0-9]*\) tok\/s).*/\1/p' "$out.log")"
  share="$(sed -n 's/^all-reduce: [0-9.]* s, \([0-9.]*\) % .*/\1/p' "$out.log")"
  echo "$tps ${share:--}"
}

echo "Data-parallel scaling, \`${SMOKE:+SMOKE=1 }scripts/scaling.sh\` (STEPS=$STEPS), $(date -u +%Y-%m-%d)," \
  "$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1), $(nproc) cores, at $(git rev-parse --short HEAD):"
echo
echo "| size | 1 process × 1 thread | 1 process × 2 threads | 2 ranks × 1 thread | 2 ranks vs 1 × 2 | all-reduce share (2 ranks) |"
echo "|---|---|---|---|---|---|"
for size in "${order[@]}"; do
  read -r a _ <<<"$(arm "$size" 1 1)"
  read -r b _ <<<"$(arm "$size" 2 1)"
  read -r c share <<<"$(arm "$size" 1 2)"
  echo "| $size | $a tok/s | $b tok/s | $c tok/s | $(awk -v c="$c" -v b="$b" 'BEGIN { printf "%.2f×", c / b }') | $share % |"
done
