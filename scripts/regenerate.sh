#!/usr/bin/env bash
# Rerun every experiment's documented preset (the cpu presets) into docs/results at one commit, then rebuild
# docs/results/REPORT.md. About 45 minutes on 2 cores with the default --jobs 2 (plus the family experiment, about 25) (each run at one thread).
# Refuses a dirty work tree, so every results.json records the same clean commit.
# Usage: bash scripts/regenerate.sh [--jobs N] [NAME ...]     (default: every experiment)
# NAME is an experiment (run at its cpu preset) or fig3-long (fig3 at its cpu-long preset, about 85 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
jobs=2
if [ "${1:-}" = "--jobs" ]; then jobs="$2"; shift 2; fi
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  echo "regenerate.sh: the work tree has changes; commit them first (results record the commit)" >&2
  exit 2
fi
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(fig2 fig3 fig4 fig5 fig6 variance taylor lasso grouplasso nuclear psd logistic family transformer)
# every run goes into an untracked folder and all are swapped in at the end, so the tracked files stay as
# committed while any experiment runs and each results.json records the clean commit
for name in "${names[@]}"; do
  tmp="docs/results/.$name.new"
  rm -rf "$tmp"
  case "$name" in
    fig3-long) run=(fig3 --preset cpu-long) ;;
    *) run=("$name" --preset cpu) ;;
  esac
  echo "== $name (${run[*]}, --jobs $jobs)"
  OMP_NUM_THREADS=1 noisereg run "${run[@]}" --jobs "$jobs" --out "$tmp" --quiet
done
for name in "${names[@]}"; do
  rm -rf "docs/results/$name" && mv "docs/results/.$name.new" "docs/results/$name"
done
noisereg report docs/results
