#!/usr/bin/env bash
# freet on a GPU: build here, run there. The run phase checks the device test subset
# (tests/device.rs: model, training and data-parallel training on the device against the CPU), a
# bf16 training benchmark of the largest bench size with MFU against the GPU's peak, and, when the
# machine has 2 or more GPUs, 1 rank against 2 NCCL ranks (in the device tests). It writes
# OUT/<date>-<device>.md with every output.
#
#   scripts/gpu-check.sh build          here: CUDA host headers (for the NCCL shim), freet, test binary
#   scripts/gpu-check.sh run            there: needs only target/release/{freet,deps/device-*} and a
#                                       torch 2.11.0 whose torch/lib is found (TORCH_LIB or python3)
#   DEVICE=cpu scripts/gpu-check.sh     both phases on the CPU path: every step runs, nothing on a GPU
#
# Variables: DEVICE (cuda | cpu; default cuda), OUT (default docs/results/gpu), PEAK_TFLOPS (the
# device's dense bf16 peak; default from the GPU's name), BENCH_SIZE (default s3, the largest; the
# CPU path: s1), BENCH_STEPS and BENCH_WARMUP (default: the sizes file's; the CPU path: 1 and 1, one
# thread), TORCH_LIB. The build honours cargo's own variables (CARGO_BUILD_JOBS=1 on a busy machine).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
DEVICE="${DEVICE:-cuda}"
case "$DEVICE" in cuda | cpu) ;; *) echo "gpu-check: DEVICE must be cuda or cpu, not $DEVICE" >&2; exit 1 ;; esac
OUT="${OUT:-docs/results/gpu}"
if [ "$DEVICE" = cpu ]; then BENCH_SIZE="${BENCH_SIZE:-s1}"; else BENCH_SIZE="${BENCH_SIZE:-s3}"; fi
phase="${1:-all}"
case "$phase" in build | run | all) ;; *) echo "gpu-check: usage: $0 [build|run|all]" >&2; exit 1 ;; esac

build() {
  bash scripts/cuda-headers.sh
  scripts/with-env cargo build --release
  scripts/with-env cargo test --release --no-run --test device
}

device_test_bin() {
  ls -t target/release/deps/device-* 2>/dev/null | grep -v '\.d$' | head -n 1
}

# libtorch for a binary built elsewhere: TORCH_LIB, else this machine's python3 torch.
find_torch() {
  if [ -z "${TORCH_LIB:-}" ] && command -v python3 >/dev/null; then
    TORCH_LIB="$(python3 -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null || true)"
  fi
  if [ -n "${TORCH_LIB:-}" ]; then
    export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
}

# Dense bf16 peak in TFLOP/s from the GPU's name (NVIDIA datasheets), or empty when unknown.
peak_for() {
  case "$1" in
    *H200* | *H100*SXM* | *"H100 80GB HBM3"*) echo 989.4 ;;
    *H100*PCIe* | *H100*) echo 756 ;;
    *A100*) echo 312 ;;
    *L40S*) echo 362.05 ;;
    *"RTX 4090"*) echo 165.2 ;;
    *L4*) echo 121 ;;
    *A10G* | *"A10 "* | *A10) echo 125 ;;
    *) echo "" ;;
  esac
}

# The numeric value of "key": in a one-line JSON record.
field() {
  sed -n "s/.*\"$1\":\([-0-9.eE+]*\).*/\1/p" <<<"$2"
}

run() {
  find_torch
  local freet="$root/target/release/freet" tests
  tests="$(device_test_bin)"
  [ -x "$freet" ] && [ -n "$tests" ] || { echo "gpu-check: run '$0 build' first" >&2; exit 1; }
  local date dev_name n_gpus slug
  date="$(date -u +%Y-%m-%d)"
  if [ "$DEVICE" = cuda ]; then
    dev_name="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)"
    n_gpus="$(nvidia-smi --query-gpu=name --format=csv,noheader | wc -l)"
  else
    dev_name="$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1), $(nproc) cores"
    n_gpus=0
  fi
  slug="$(echo "$DEVICE-$dev_name" | tr -cs 'A-Za-z0-9' '-' | sed 's/-$//' | cut -c1-60)"
  mkdir -p "$OUT/raw"
  local report="$OUT/$date-$slug.md" raw="$OUT/raw/$date-$slug"
  local t0=$SECONDS
  echo "gpu-check: device tests on $DEVICE ($dev_name)" >&2
  local tests_rc=0
  FREET_TEST_DEVICE="$DEVICE" FREET_BIN="$freet" "$tests" --test-threads=1 --nocapture >"$raw-tests.log" 2>&1 || tests_rc=$?
  echo "gpu-check: bf16 benchmark of $BENCH_SIZE" >&2
  local steps=() threads=()
  if [ "$DEVICE" = cpu ]; then
    steps=(--steps "${BENCH_STEPS:-1}" --warmup "${BENCH_WARMUP:-1}")
    threads=(env OMP_NUM_THREADS=1)
  else
    [ -n "${BENCH_STEPS:-}" ] && steps+=(--steps "$BENCH_STEPS")
    [ -n "${BENCH_WARMUP:-}" ] && steps+=(--warmup "$BENCH_WARMUP")
  fi
  : >"$raw-bench.jsonl"
  local bench_rc=0 variant
  for variant in baseline ft; do
    "${threads[@]}" "$freet" bench run --size "$BENCH_SIZE" --variant "$variant" --precision bf16 --device "$DEVICE" \
      "${steps[@]}" --json "$raw-bench.jsonl" >/dev/null 2>>"$raw-bench.log" || bench_rc=$?
  done
  local peak="${PEAK_TFLOPS:-}"
  [ -z "$peak" ] && [ "$DEVICE" = cuda ] && peak="$(peak_for "$dev_name")"
  {
    echo "# freet GPU check: $dev_name ($date)"
    echo
    echo "\`DEVICE=$DEVICE scripts/gpu-check.sh run\` at $(git rev-parse --short HEAD 2>/dev/null || echo '?')," \
      "$((SECONDS - t0)) s; $n_gpus GPU(s); device tests exit $tests_rc, benchmark exit $bench_rc."
    echo
    if [ "$DEVICE" = cpu ]; then
      echo "CPU path: every step of the script ran; nothing here measures a GPU (benchmark: $BENCH_SIZE," \
        "${BENCH_STEPS:-1} measured step, one thread, on whatever else the machine was running)."
      echo
    fi
    echo "## bf16 training benchmark, size $BENCH_SIZE"
    echo
    echo "| variant | step ms (median) | tokens/s | FLOP/step (model) | MFU |"
    echo "|---|---|---|---|---|"
    local line ms tps fl mfu
    while IFS= read -r line; do
      ms="$(field step_ms_median "$line")"; tps="$(field tokens_per_s "$line")"; fl="$(field train_flops "$line")"
      mfu="n/a (no peak for this device: set PEAK_TFLOPS)"
      if [ -n "$peak" ] && [ -n "$ms" ] && [ -n "$fl" ]; then
        mfu="$(awk -v f="$fl" -v m="$ms" -v p="$peak" 'BEGIN { printf "%.1f %% of %s TFLOP/s", 100 * f / (m / 1e3) / (p * 1e12), p }')"
      fi
      echo "| $(sed -n 's/.*"variant":"\([^"]*\)".*/\1/p' <<<"$line") | $(awk -v m="$ms" -v t="$tps" -v f="$fl" \
        'BEGIN { printf "%.1f | %.0f | %.3g", m, t, f }') | $mfu |"
    done <"$raw-bench.jsonl"
    echo
    echo "MFU = FLOP/step of freet's FLOP model (src/bench/flops.rs) / median step time / the dense bf16 peak."
    echo
    echo "## Device tests (tests/device.rs, FREET_TEST_DEVICE=$DEVICE)"
    echo
    echo '```'
    grep -v '^$' "$raw-tests.log" || true
    echo '```'
    if [ -s "$raw-bench.log" ]; then
      echo
      echo "## Benchmark stderr"
      echo
      echo '```'
      cat "$raw-bench.log"
      echo '```'
    fi
  } >"$report"
  echo "gpu-check: wrote $report" >&2
  [ "$tests_rc" = 0 ] && [ "$bench_rc" = 0 ]
}

case "$phase" in
  build) build ;;
  run) run ;;
  all) build && run ;;
esac
