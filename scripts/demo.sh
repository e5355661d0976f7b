#!/usr/bin/env bash
# Quick start, part 1: set up .venv if needed (noisereg and what it needs, no test extras), then run the
# main job on embedded data.
set -e
source "$(dirname "$0")/env.sh"
exec noisereg demo "$@"
