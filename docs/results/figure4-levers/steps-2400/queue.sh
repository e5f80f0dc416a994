#!/bin/bash
# Probes §16 (docs/results/figure4-probes/README.md): the committed recipe of experiments/figure4/
# (token-wise free bits) trained 4× longer, 2,400 steps, 1 thread per training; κ = 8 also for
# 4,800 steps; and a κ schedule for the 1-bit arm (κ = 8 for 1,400 steps, then 1), seeds 1 and 2, and
# the same schedule into κ = 1/8.
# Reports: this folder (arms) and ../sched-8-to-1*/. Run from the
# repository root after `make build` and
# `scripts/with-env cargo build --release --example latent_info`. About 4 h of one core in all
# (two trainings at once fit 2 cores: start two copies with different arguments).
set -u
B=target/release/freet
S=(--set train.threads=1 --set train.keep_last=4 --set train.checkpoint_every=600)
run() { # NAME ARM STEPS [--set flags...]
  local name=$1 arm=$2 steps=$3; shift 3
  local sets=("${S[@]}" --set train.steps=$steps "$@")
  scripts/with-env $B train --config experiments/figure4/$arm.toml "${sets[@]}" --out runs/s8/$name/models/$arm --quiet
  scripts/with-env $B experiment figure4 --arms $arm --reuse --out runs/s8/$name \
    --report-dir runs/s8/$name/report --groups 200 --quiet "${sets[@]}"
  [ "$arm" = baseline ] ||
    scripts/with-env target/release/examples/latent_info runs/s8/$name/models/$arm 512 2 > runs/s8/$name/report/latent-info.txt
}
case "${1:-}" in
  arms) # the five arms at 2,400 steps, then one report over all of them (this folder)
    for arm in baseline kappa-1-64 kappa-1-8 kappa-1 kappa-8; do run fig4-2400-$arm $arm 2400; done
    mkdir -p runs/s8/fig4-2400/models
    for arm in baseline kappa-1-64 kappa-1-8 kappa-1 kappa-8; do
      ln -sfn "$PWD/runs/s8/fig4-2400-$arm/models/$arm" runs/s8/fig4-2400/models/$arm
    done
    scripts/with-env $B experiment figure4 --reuse --out runs/s8/fig4-2400 --report-dir runs/s8/fig4-2400/report \
      --groups 200 --quiet "${S[@]}" --set train.steps=2400 ;;
  k8-4800) run k8-4800 kappa-8 4800 ;;
  sched-8-to-1) run sched-8-to-1 kappa-1 2400 --set train.kappa_warm_bits=8 --set train.kappa_warm_steps=1400 ;;
  sched-8-to-1-seed2) run sched-8-to-1-seed2 kappa-1 2400 --set train.kappa_warm_bits=8 --set train.kappa_warm_steps=1400 --set train.seed=2 ;;
  sched-8-to-1-8) run sched-8-to-1-8 kappa-1-8 2400 --set train.kappa_warm_bits=8 --set train.kappa_warm_steps=1400 ;;
  *) echo "usage: $0 arms|k8-4800|sched-8-to-1|sched-8-to-1-seed2|sched-8-to-1-8" >&2; exit 2 ;;
esac
