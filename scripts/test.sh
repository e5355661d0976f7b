#!/usr/bin/env bash
# Quick start, part 2: set up .venv if needed, then run the test suite (slow and GPU tests skip
# with a reason unless NOISEREG_SLOW=1 / a GPU is present).
set -e
NOISEREG_EXTRAS=test source "$(dirname "$0")/env.sh"
cd "$(dirname "$0")/.."
ruff check src tests benchmarks examples
exec python -m pytest -q "$@"
