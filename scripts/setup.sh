#!/usr/bin/env bash
# Idempotent set-up: creates the project-local venv (.venv) carrying PyTorch 2.11.0, whose libtorch
# freet links against (tch 0.24 <-> torch 2.11.0). Safe to run repeatedly; does nothing when ready.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
want="2.11.0"
have="$("$venv/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null || true)"
if [ "$have" = "$want" ]; then
  exit 0
fi
echo "freet setup: creating $venv with torch==$want (one-time, large download)" >&2
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
"$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off "torch==$want" >&2
"$venv/bin/python" -c 'import torch; print("freet setup: torch", torch.__version__)' >&2
