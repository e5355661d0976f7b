"""Build the embedded Fashion-MNIST subset shipped in the package (noisereg/data/fashion_mnist_subset.npy.gz).

Reads the four official Fashion-MNIST files (found as `noisereg run` finds them: DIR if given, else
$NOISEREG_DATA_DIR, else Debian's /usr/share/datasets/fashion-mnist), checks each against the SHA-256
of the official decompressed bytes, and keeps

* a pool of POOL training images: the first POOL of np.random.default_rng(SEED).permutation(60000),
  sorted by their index in the official training file;
* TEST test images: the first TEST of the next draw, permutation(10000), sorted likewise;

with their labels and their indices in the official files. The archive is six .npy arrays written one
after another (x_train uint8 (POOL, 28, 28), y_train uint8, train_index int32, x_test, y_test,
test_index) and gzip-compressed at level 9 with mtime 0 and no file name: no timestamp, so the same
inputs and zlib give the same bytes. Prints the SHA-256 of the decompressed payload, which
noisereg.data.embedded.FASHION_SUBSET_SHA256 records.

Usage: python scripts/build_fashion_mnist_subset.py [DIR] [--out FILE]   (FILE: default the packaged file)
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import sys
from pathlib import Path

import numpy as np

from noisereg.data.files import load_fashion_mnist

SEED, POOL, TEST = 0, 4096, 5000
OUT = Path(__file__).resolve().parents[1] / "src" / "noisereg" / "data" / "fashion_mnist_subset.npy.gz"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", nargs="?", default=None, help="directory of the official files (default: searched)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"archive to write (default: {OUT})")
    args = parser.parse_args(argv)
    full = load_fashion_mnist(args.dir, verify=True)  # raises unless these are the official files
    rng = np.random.default_rng(SEED)
    train_index = np.sort(rng.permutation(len(full.x_train))[:POOL]).astype(np.int32)
    test_index = np.sort(rng.permutation(len(full.x_test))[:TEST]).astype(np.int32)

    def u8(x):  # back to the files' bytes: the loader scaled them by 1/255 exactly
        return np.rint(x.numpy()[:, 0] * 255).astype(np.uint8)

    arrays = [u8(full.x_train[train_index]), full.y_train.numpy()[train_index].astype(np.uint8), train_index,
              u8(full.x_test[test_index]), full.y_test.numpy()[test_index].astype(np.uint8), test_index]
    buf = io.BytesIO()
    for a in arrays:
        np.save(buf, a, allow_pickle=False)
    payload = buf.getvalue()
    with open(args.out, "wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, compresslevel=9, mtime=0) as gz:
        gz.write(payload)
    print(f"{args.out}: {args.out.stat().st_size} bytes; payload SHA-256 {hashlib.sha256(payload).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
