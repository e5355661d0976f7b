#!/usr/bin/env bash
# Create (once) and activate the project's virtual environment in .venv.
# Without a GPU, torch is pinned to the 2.13.0 CPU build (a local wheel on our machines; a
# ~200 MB CPU download elsewhere); with `nvidia-smi` present, pip picks a CUDA build of torch>=2.3.
# NOISEREG_EXTRAS names the extras to add (scripts/test.sh: "test", which brings pytest, ruff,
# lightning, transformers, accelerate, ray, tensorboard and mlflow); empty (scripts/demo.sh) installs noisereg alone.
# Extras are installed with the torch above pinned, so they never swap it.
# Source it: `source scripts/env.sh`.
set -e
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
extras="${NOISEREG_EXTRAS:-}"
stamp="$venv/.noisereg-installed${extras:+-$extras}"
# reinstall when the dependencies or the version (installed metadata) changed
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ] || [ "$root/src/noisereg/_version.py" -nt "$stamp" ]; then
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
  # keep the torch just installed: the extras (lightning, transformers, accelerate) must not swap it
  pin="$(mktemp)"
  "$venv/bin/python" -c 'import torch; print("torch==" + torch.__version__)' >"$pin"
  "$venv/bin/python" -m pip install -q -e "$root${extras:+[$extras]}" -c "$pin"
  rm -f "$pin"
  touch "$stamp"
fi
# shellcheck disable=SC1091
source "$venv/bin/activate"
