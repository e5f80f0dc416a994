# Source this file (`. scripts/env.sh`) to build freet with plain cargo: it creates the project venv
# when missing (scripts/setup.sh) and exposes its torch to torch-sys's build script.
_freet_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
bash "$_freet_root/scripts/setup.sh" || return 1 2>/dev/null || exit 1
export VIRTUAL_ENV="$_freet_root/.venv"
case ":$PATH:" in *":$VIRTUAL_ENV/bin:"*) ;; *) export PATH="$VIRTUAL_ENV/bin:$PATH" ;; esac
export LIBTORCH_USE_PYTORCH=1
unset _freet_root
