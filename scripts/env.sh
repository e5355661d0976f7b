#!/usr/bin/env bash
# Create (once) and activate the project's virtual environment in .venv.
# Without a GPU, torch is pinned to the 2.13.0 CPU build (a local wheel on our machines; a
# ~200 MB CPU download elsewhere); with `nvidia-smi` present, pip picks a CUDA build of torch>=2.3.
# Source it: `source scripts/env.sh`.
set -e
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
stamp="$venv/.noisereg-installed"
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  if [ -n "${NOISEREG_TORCH:-}" ]; then
    "$venv/bin/python" -m pip install -q "$NOISEREG_TORCH"
  elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
    "$venv/bin/python" -m pip install -q "torch>=2.3"
  else
    "$venv/bin/python" -m pip install -q torch==2.13.0 \
      || "$venv/bin/python" -m pip install -q torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
  fi
  "$venv/bin/python" -m pip install -q -e "$root[test]"
  touch "$stamp"
fi
# shellcheck disable=SC1091
source "$venv/bin/activate"
