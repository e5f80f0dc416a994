#!/bin/bash
# Probes §14 (docs/results/figure4-probes/README.md): free bits per sequence at every κ, and the
# κ schedule (κ = 1 for 600 steps, then 1/8). H = 16, the recipe of experiments/figure4/, 2 threads,
# 200 groups × 8. Run from the repository root after `make build` and
# `scripts/with-env cargo build --release --example latent_info`; about 95 min on 2 cores.
set -u
B=target/release/freet
run() { # NAME ARM [--set flags...]
  local name=$1 arm=$2; shift 2
  local sets=(--set train.threads=2 --set train.keep_last=4 --set model.latent.free_bits=sequence "$@")
  scripts/with-env $B train --config experiments/figure4/$arm.toml "${sets[@]}" --out runs/s7/$name/models/$arm --quiet
  scripts/with-env $B experiment figure4 --arms $arm --reuse --out runs/s7/$name \
    --report-dir runs/s7/$name/report --groups 200 --quiet "${sets[@]}"
  scripts/with-env target/release/examples/latent_info runs/s7/$name/models/$arm 512 2 > runs/s7/$name/report/latent-info.txt
}
SCHED=(--set train.steps=1800 --set train.kappa_warm_bits=1 --set train.kappa_warm_steps=600 --set train.checkpoint_every=600)
run seqfb-k1 kappa-1
run sched-1-to-1-8-1800 kappa-1-8 "${SCHED[@]}"
run seqfb-k8 kappa-8
run seqfb-k1-64 kappa-1-64
# Follow-ups: a longer warm stage, and the per-sequence κ = 1 code moved to token-wise free bits.
run sched-1200-1-8-2400 kappa-1-8 --set train.steps=2400 --set train.kappa_warm_bits=1 --set train.kappa_warm_steps=1200 --set train.checkpoint_every=600
run sched-1-8-seed2 kappa-1-8 "${SCHED[@]}" --set train.seed=2
run sched-1-8-seed3 kappa-1-8 "${SCHED[@]}" --set train.seed=3
run sched-1-to-1-64-1800 kappa-1-64 "${SCHED[@]}"
run seq-to-tok-k1 kappa-1 --set model.latent.free_bits=token --set train.init_from=runs/s7/seqfb-k1/models/kappa-1/checkpoints/step-00000600
