#!/usr/bin/env bash
# Runs every benchmark of BENCHMARKS.md in one go, freet and the PyTorch reference side by side on
# this machine, then regenerates BENCHMARKS.md from the records.
#
#   bash bench/run.sh            # everything (~45 min on 2 CPU cores); run it on an idle machine
#   bash bench/run.sh --quick    # s1 only, 3 measured steps, no curves: a smoke test (~3 min)
#   DEVICE=cuda bash bench/run.sh   # the freet side on a GPU (the PyTorch side stays on the CPU)
#
# Each configuration runs in its own process, so peak RSS is that configuration's alone.
set -euo pipefail
cd "$(dirname "$0")/.."
QUICK=0
[[ "${1:-}" == "--quick" ]] && QUICK=1
DEVICE="${DEVICE:-cpu}"
bash scripts/setup.sh >/dev/null
source scripts/env.sh
cargo build --release --quiet
FREET=target/release/freet
PY=.venv/bin/python
OUT=bench/results.jsonl
[[ -f $OUT ]] && mv "$OUT" "$OUT.prev"
start=$(date +%s)

freet() { $FREET bench run --device "$DEVICE" --json "$OUT" "$@" >/dev/null; tail -n 1 "$OUT" | cut -c1-160; }
torch() { $PY bench/reference.py --json "$OUT" "$@" | grep -v '^#' | tail -n 1 | cut -c1-160; }

if [[ $QUICK == 1 ]]; then
  SIZES=(s1); STEPS=(--steps 3 --warmup 1); GEN=(--new-tokens 16)
else
  # Generation: medians over 5 timed generations on both sides (batch-1 decoding is short and noisy).
  SIZES=(s1 s2 s3); STEPS=(); GEN=(--steps 5)
fi

for size in "${SIZES[@]}"; do
  echo "== training, $size"
  for prec in fp32 bf16; do
    torch --size "$size" --variant baseline --precision "$prec" --mode train "${STEPS[@]}"
    freet --size "$size" --variant baseline --precision "$prec" --mode train "${STEPS[@]}"
    freet --size "$size" --variant ft --precision "$prec" --mode train "${STEPS[@]}"
  done
  if [[ $size != s3 ]]; then
    # The usual public formulation (dense one-hot × Linear(2^H → D)); O(B·T·2^H) memory, so not at s3.
    torch --size "$size" --variant ft-dense --precision fp32 --mode train "${STEPS[@]}"
    freet --size "$size" --variant ft-dense --precision fp32 --mode train "${STEPS[@]}"
  fi
  if [[ $size == s2 ]]; then
    # The paper's regime: the mapper is cheap at small H, so the overhead should approach 1/L.
    freet --size "$size" --variant ft --precision fp32 --mode train --bits 8 "${STEPS[@]}"
    freet --size "$size" --variant ft --precision bf16 --mode train --bits 8 "${STEPS[@]}"
    # E updated by dense AdamW (every row every step) beside the sizes file's lazy AdamW.
    freet --size "$size" --variant ft --precision fp32 --mode train --table-optimizer dense "${STEPS[@]}"
  fi
done

for size in "${SIZES[@]}"; do
  [[ $size == s3 ]] && continue
  echo "== generation, $size"
  for batch in 1 16; do
    for prec in fp32 bf16; do
      torch --size "$size" --variant baseline --precision "$prec" --mode generate --batch "$batch" "${GEN[@]}"
      freet --size "$size" --variant baseline --precision "$prec" --mode generate --batch "$batch" "${GEN[@]}"
    done
    torch --size "$size" --variant ft-dense --precision fp32 --mode generate --batch "$batch" "${GEN[@]}"
    freet --size "$size" --variant ft --precision fp32 --mode generate --batch "$batch" "${GEN[@]}"
  done
done

CURVES=()
if [[ $QUICK == 0 ]]; then
  echo "== bf16 vs fp32 loss curves (configs/demo-baseline.toml)"
  for run in "fp32 1" "fp32 2" "bf16 1"; do
    set -- $run
    dir=bench/runs/$1-seed$2; mkdir -p bench/runs
    rm -rf "$dir"
    $FREET train --config configs/demo-baseline.toml --set model.precision=$1 --set train.seed=$2 \
      --out "$dir" --quiet --device "$DEVICE" > "$dir.log"
    head -n 1 "$dir.log"
    CURVES+=(--curve "$1 seed $2=$dir")
  done
fi

minutes=$(( ($(date +%s) - start + 30) / 60 ))
cmd="bash bench/run.sh"; [[ $QUICK == 1 ]] && cmd="bash bench/run.sh --quick"
REPORT=BENCHMARKS.md; [[ $QUICK == 1 ]] && REPORT=bench/BENCHMARKS-quick.md
$FREET bench report --json "$OUT" --notes bench/notes.md --command "$cmd" --minutes "$minutes" \
  --out "$REPORT" "${CURVES[@]}"
