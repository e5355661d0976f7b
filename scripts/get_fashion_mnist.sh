#!/usr/bin/env bash
# Fetch the official Fashion-MNIST files from Debian's package dataset-fashion-mnist into .data/ (no root
# install): prints the directory that holds them, for NOISEREG_DATA_DIR or --data-dir. On Debian/Ubuntu,
# `apt-get install dataset-fashion-mnist` instead puts them where noisereg finds them by itself
# (/usr/share/datasets/fashion-mnist). Needs apt-get and a reachable Debian mirror.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.data/dataset-fashion-mnist"
dir="$dest/usr/share/datasets/fashion-mnist"
if [ ! -f "$dir/t10k-labels-idx1-ubyte.gz" ]; then
  mkdir -p "$dest"
  tmp="$(mktemp -d)"
  (cd "$tmp" && { apt-get download dataset-fashion-mnist >/dev/null 2>&1 \
                  || { apt-get update -qq >/dev/null && apt-get download dataset-fashion-mnist >/dev/null; }; })
  dpkg-deb -x "$tmp"/dataset-fashion-mnist_*.deb "$dest"
  rm -rf "$tmp"
fi
echo "$dir"
