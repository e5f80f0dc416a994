#!/usr/bin/env bash
# Seeds 2 and 3 of probes §11 arm B (self bias 4, bias lr x10, encoder lr x1) and of the recipe, kappa=1, 600 steps.
cd /work/main
source scripts/env.sh
F=runs/bin/freet-seeds
for seed in 2 3; do
  for arm in B recipe; do
    name=$arm-seed$seed
    extra=(--set train.seed=$seed --set train.threads=1 --set train.keep_last=4)
    if [[ $arm == B ]]; then extra+=(--set model.latent.inject_self_bias=4 --set train.rel_bias_lr_mult=10 --set train.encoder_lr_mult=1); fi
    echo "== $name $(date)"
    $F train --config experiments/figure4/kappa-1.toml "${extra[@]}" --out runs/seeds/$name/models/kappa-1 --quiet > runs/seeds/$name.train.log 2>&1
    $F experiment figure4 --arms kappa-1 --reuse --out runs/seeds/$name --report-dir runs/seeds/$name/report --groups 200 --quiet "${extra[@]}" > runs/seeds/$name.report.log 2>&1
    echo "   done $(date)"
  done
done
