"""Embedded data that needs no download: real Fashion-MNIST images shipped in the package
(:func:`load_fashion_mnist_subset`, the CPU presets' data for Figs. 3-4) and scikit-learn's bundled
8x8 digits (:func:`load_digits_split`, 1797 images, 10 classes).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
from dataclasses import KW_ONLY, dataclass
from importlib import resources

import numpy as np
import torch

from noisereg.errors import UserError


@dataclass(frozen=True)
class Split:
    """A train/test split as float32 inputs (n, ...) and int64 labels (n,), with an optional
    validation split held out of the training data (``x_val``, ``y_val``; see
    :func:`noisereg.data.holdout`)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    name: str
    seed: int
    _: KW_ONLY
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None

    @property
    def num_classes(self) -> int:
        """Number of classes (labels are 0..C-1)."""
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    def splits(self) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
        """``[(name, x, y)]`` of the splits present: ``"train"``, ``"val"`` (if held out), ``"test"``."""
        val = [] if self.x_val is None else [("val", self.x_val, self.y_val)]
        return [("train", self.x_train, self.y_train), *val, ("test", self.x_test, self.y_test)]

    def to(self, device: torch.device | str) -> Split:
        """This split with every tensor on ``device``."""
        moved = {f.name: v.to(device) for f in dataclasses.fields(self)
                 if isinstance(v := getattr(self, f.name), torch.Tensor)}
        return dataclasses.replace(self, **moved)


def load_digits_split(n_train: int = 1024, seed: int = 0, image: bool = False) -> Split:
    """scikit-learn's ``load_digits``, pixels scaled to [0, 1], split by a seeded permutation.

    Args:
        n_train: training points, 1 <= n_train < 1797 (default 1024); the rest are test points.
        seed: seed of the permutation (recorded in the result).
        image: return inputs as (n, 1, 8, 8) instead of (n, 64).

    Example:
        >>> d = load_digits_split()
        >>> tuple(d.x_train.shape), tuple(d.x_test.shape), d.num_classes
        ((1024, 64), (773, 64), 10)
    """
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    if not 1 <= n_train < len(x):
        raise UserError(f"n_train must be in [1, {len(x) - 1}], got {n_train}")
    perm = np.random.default_rng(seed).permutation(len(x))
    x = torch.from_numpy((x / 16.0).astype(np.float32))
    if image:
        x = x.reshape(-1, 1, 8, 8)
    y = torch.from_numpy(y.astype(np.int64))
    tr, te = torch.from_numpy(perm[:n_train]), torch.from_numpy(perm[n_train:])
    return Split(x[tr], y[tr], x[te], y[te], name=f"digits(n_train={n_train})", seed=seed)


FASHION_SUBSET_FILE = "fashion_mnist_subset.npy.gz"
FASHION_SUBSET_SHA256 = "6e77abf085e363791b1c954a6735c8989603b2fc05bde0dc16b27cb4d721cd56"
"""SHA-256 of the decompressed payload of :data:`FASHION_SUBSET_FILE` (six .npy arrays, see
:func:`load_fashion_mnist_subset`)."""


def fashion_mnist_subset_arrays() -> dict[str, np.ndarray]:
    """The embedded Fashion-MNIST subset as uint8 arrays, with the images' indices in the official files.

    Keys: ``x_train`` (4096, 28, 28), ``y_train`` (4096,), ``train_index`` (4096,) into the official
    ``train-*`` files; ``x_test`` (5000, 28, 28), ``y_test``, ``test_index`` into ``t10k-*``. The images
    are the first 4096 (5000) of ``np.random.default_rng(0).permutation(60000)`` (then ``(10000)``),
    sorted by index, byte for byte as in the official files; ``scripts/build_fashion_mnist_subset.py``
    builds the file from them. Fashion-MNIST is © Zalando SE, MIT License (``FASHION_MNIST_LICENSE.txt``
    beside the file).

    Raises:
        UserError: the packaged file is missing or damaged (its payload's SHA-256 differs).
    """
    from noisereg.errors import UserError

    try:
        payload = gzip.decompress((resources.files("noisereg.data") / FASHION_SUBSET_FILE).read_bytes())
    except (OSError, EOFError) as e:
        raise UserError(f"the embedded {FASHION_SUBSET_FILE} cannot be read ({e}): reinstall noisereg") from e
    if hashlib.sha256(payload).hexdigest() != FASHION_SUBSET_SHA256:
        raise UserError(f"the embedded {FASHION_SUBSET_FILE} is damaged (SHA-256 mismatch): reinstall noisereg")
    buf = io.BytesIO(payload)
    keys = ("x_train", "y_train", "train_index", "x_test", "y_test", "test_index")
    return {k: np.load(buf, allow_pickle=False) for k in keys}


def load_fashion_mnist_subset() -> Split:
    """Real Fashion-MNIST shipped in the package: a pool of 4,096 training images and 5,000 test images.

    The paper's Figs. 3-4 train on 1,024 Fashion-MNIST images; the pool is large enough for those
    plus a validation split (take them with :func:`noisereg.data.subset` and
    :func:`noisereg.data.holdout`, as ``noisereg run`` does with ``n_train``, ``n_val`` and
    ``split_seed``). Pixels are scaled to [0, 1] as in :func:`noisereg.data.load_fashion_mnist`; the
    images and their provenance are described in :func:`fashion_mnist_subset_arrays`.

    Returns:
        A :class:`Split` named ``fashion_mnist_subset`` with ``seed = 0``: ``x_*`` float32
        (n, 1, 28, 28), ``y_*`` int64 (n,).

    Example:
        >>> s = load_fashion_mnist_subset()
        >>> tuple(s.x_train.shape), tuple(s.x_test.shape), s.num_classes
        ((4096, 1, 28, 28), (5000, 1, 28, 28), 10)
    """
    a = fashion_mnist_subset_arrays()
    x = [torch.from_numpy(a[k][:, None].astype(np.float32) / 255) for k in ("x_train", "x_test")]
    y = [torch.from_numpy(a[k].astype(np.int64)) for k in ("y_train", "y_test")]
    return Split(x[0], y[0], x[1], y[1], name="fashion_mnist_subset", seed=0)
