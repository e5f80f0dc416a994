#!/bin/bash
# Probes §17 (docs/results/figure4-probes/README.md): what the κ = 8 copy stage does to the small
# budgets. H = 16, the recipe of experiments/figure4/, one thread per training (two trainings at once
# fit the 2 cores). Reports: ../{seq-8-to-1,seq-8-1200-then-1-8,seq-8-1200-then-1-8-seed2,
# seq-8-to-1-then-1-8,
# seq-8-600-then-1-8,sched-8-to-1-seed3,sched-8-to-1-seed3-long,tok-8-1800-then-2,tok-8-1200-then-2-seed2,
# tok-8-2-then-1,tok-8-2-then-1-seed2}/. Run from the repository root after
# `make build` and `scripts/with-env cargo build --release --example latent_info`.
set -u
B=target/release/freet
S=(--set train.threads=1 --set train.keep_last=4 --set train.checkpoint_every=600)
SEQ=(--set model.latent.free_bits=sequence)
run() { # NAME ARM STEPS [--set flags...]: train, report on 200 groups × 8, latent_info
  local name=$1 arm=$2 steps=$3; shift 3
  local sets=("${S[@]}" --set train.steps=$steps "$@")
  scripts/with-env $B train --config experiments/figure4/$arm.toml "${sets[@]}" --out runs/s9/$name/models/$arm --quiet
  scripts/with-env $B experiment figure4 --arms $arm --reuse --out runs/s9/$name \
    --report-dir runs/s9/$name/report --groups 200 --quiet "${sets[@]}"
  scripts/with-env target/release/examples/latent_info runs/s9/$name/models/$arm 512 2 > runs/s9/$name/report/latent-info.txt
}
warm8() { # NAME SEED: the per-sequence κ = 8 stage of a 2,400-step κ 8 → 1 run, stopped after its step-1,200 checkpoint
  local w=runs/s9/$1/models/kappa-1
  scripts/with-env $B train --config experiments/figure4/kappa-1.toml "${S[@]}" "${SEQ[@]}" --set train.seed=$2 \
    --set train.steps=2400 --set train.kappa_warm_bits=8 --set train.kappa_warm_steps=1400 --out $w --quiet &
  local pid=$!
  while [ ! -e $w/checkpoints/step-00001200/model.safetensors ] && kill -0 $pid 2>/dev/null; do sleep 5; done
  sleep 20; kill $pid; wait
}
K8=(--set train.kappa_warm_bits=8 --set train.kappa_warm_steps=1400)
case "${1:-}" in
  seq-8-to-1) # per-sequence free bits: κ = 8 for 1,400 steps, then κ = 1
    run seq-8-to-1 kappa-1 2400 "${SEQ[@]}" "${K8[@]}" ;;
  seq-8-1200-then-1-8) # needs seq-8-to-1: its step 1,200 (after the copy transition) into per-sequence κ = 1/8
    run seq-8-1200-then-1-8 kappa-1-8 1200 "${SEQ[@]}" \
      --set train.init_from=runs/s9/seq-8-to-1/models/kappa-1/checkpoints/step-00001200 ;;
  seq-8-1200-then-1-8-seed2) # the same at seed 2 (its own κ = 8 stage)
    warm8 seq-8-to-1-seed2 2
    run seq-8-1200-then-1-8-seed2 kappa-1-8 1200 "${SEQ[@]}" --set train.seed=2 \
      --set train.init_from=runs/s9/seq-8-to-1-seed2/models/kappa-1/checkpoints/step-00001200 ;;
  seq-8-to-1-then-1-8) # needs seq-8-to-1: its final model (κ = 1 after the copy stage) into per-sequence κ = 1/8
    run seq-8-to-1-then-1-8 kappa-1-8 1200 "${SEQ[@]}" \
      --set train.init_from=runs/s9/seq-8-to-1/models/kappa-1/checkpoints/step-00002400 ;;
  sched-8-to-1-seed3) # §16's token-wise κ 8 → 1 schedule at seed 3
    run tok-8-to-1-seed3 kappa-1 2400 "${K8[@]}" --set train.seed=3 ;;
  sched-8-to-1-seed3-long) # the same with the κ = 8 stage to step 2,200 of 3,000
    run tok-8-to-1-seed3-long kappa-1 3000 --set train.kappa_warm_bits=8 --set train.kappa_warm_steps=2200 --set train.seed=3 ;;
  k8-1800-then-2) # token-wise κ = 8 (2,400 steps, the flags of ../steps-2400/queue.sh's κ = 8 arm; retrained here) at step 1,800 into κ = 2
    k8=runs/s9/k8-2400/models/kappa-8
    [ -e $k8/checkpoints/step-00001800/model.safetensors ] ||
      scripts/with-env $B train --config experiments/figure4/kappa-8.toml "${S[@]}" --set train.steps=2400 --out $k8 --quiet
    run tok-8-1800-then-2 kappa-1 1200 --set model.latent.kappa_bits=2 --set train.init_from=$k8/checkpoints/step-00001800 ;;
  k8-1200-then-2-seed2) # needs ../steps-2400/queue.sh sched-8-to-1-seed2 (runs/s8/sched-8-to-1-seed2): its κ = 8 stage at step 1,200 into κ = 2
    run tok-8-1200-then-2-seed2 kappa-1 1200 --set model.latent.kappa_bits=2 --set train.seed=2 \
      --set train.init_from=runs/s8/sched-8-to-1-seed2/models/kappa-1/checkpoints/step-00001200 ;;
  seq-8-600-then-1-8) # needs seq-8-to-1: its step 600 (κ = 8, before the copy transition) into per-sequence κ = 1/8
    run seq-8-600-then-1-8 kappa-1-8 1200 "${SEQ[@]}" \
      --set train.init_from=runs/s9/seq-8-to-1/models/kappa-1/checkpoints/step-00000600 ;;
  k2-then-1) # needs k8-1800-then-2: its final model (κ = 2 after the copy stage) into κ = 1
    run tok-8-2-then-1 kappa-1 1200 --set train.init_from=runs/s9/tok-8-1800-then-2/models/kappa-1/checkpoints/step-00001200 ;;
  k2-then-1-seed2) # needs k8-1200-then-2-seed2: the same at seed 2
    run tok-8-2-then-1-seed2 kappa-1 1200 --set train.seed=2 \
      --set train.init_from=runs/s9/tok-8-1200-then-2-seed2/models/kappa-1/checkpoints/step-00001200 ;;
  *) echo "usage: $0 seq-8-to-1|seq-8-1200-then-1-8|seq-8-1200-then-1-8-seed2|seq-8-to-1-then-1-8|seq-8-600-then-1-8|sched-8-to-1-seed3|sched-8-to-1-seed3-long|k8-1800-then-2|k8-1200-then-2-seed2|k2-then-1|k2-then-1-seed2" >&2; exit 2 ;;
esac
