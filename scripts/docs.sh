#!/usr/bin/env bash
# Build the documentation site into docs/_build/html: set up .venv with the `docs` extra (scripts/env.sh:
# Sphinx, myst-parser, sphinx-gallery, furo, and lightning + transformers for the gallery's examples),
# then sphinx-build with warnings as errors (-W). Offline once installed. Extra arguments go to sphinx-build
# (e.g. -E to reread every page). About a minute on 2 cores, most of it the gallery's examples (docs/conf.py).
set -euo pipefail
NOISEREG_EXTRAS=docs source "$(dirname "$0")/env.sh"
cd "$(dirname "$0")/../docs"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"   # the examples are toy-sized: one thread each is fastest
python -m sphinx -W --keep-going -q -b html . _build/html "$@"
PYTHONPATH="$PWD/../src${PYTHONPATH:+:$PYTHONPATH}" python _ext/noisereg_docs.py check _build/html   # noisereg.<name> for each public name
echo "docs built: $PWD/_build/html/index.html"
