#!/usr/bin/env bash
# Fetches the CUDA host headers that the PyPI CUDA wheels torch depends on leave out (`crt/` from
# nvidia-cuda-crt, `nv/target` from nvidia-cuda-cccl), so that build.rs can compile the NCCL half
# of the c10d shim (csrc/c10d_nccl.cpp). They go into
# the repository's ignored `.cuda-headers/` (pip --target), never into the venv; the version
# follows the venv's nvidia-cuda-runtime (major.minor). Idempotent; a no-op when present.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.cuda-headers"
if compgen -G "$dest/nvidia/*/include/crt/host_config.h" >/dev/null \
  && compgen -G "$dest/nvidia/*/include/nv/target" >/dev/null; then
  exit 0
fi
py="$root/.venv/bin/python"
rt="$("$py" -m pip show nvidia-cuda-runtime 2>/dev/null | sed -n 's/^Version: //p')"
if [ -z "$rt" ]; then
  echo "cuda-headers: the venv has no nvidia-cuda-runtime (a CPU-only torch?): nothing to do" >&2
  exit 0
fi
mm="$(echo "$rt" | cut -d. -f1,2)"
echo "cuda-headers: nvidia-cuda-crt and nvidia-cuda-cccl $mm.* (for nvidia-cuda-runtime $rt) into $dest" >&2
"$py" -m pip install --quiet --disable-pip-version-check --no-deps --upgrade --target "$dest" \
  "nvidia-cuda-crt==$mm.*" "nvidia-cuda-cccl==$mm.*" >&2
