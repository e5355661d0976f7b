"""Embedded data that needs no download: scikit-learn's bundled 8x8 digits (1797 images, 10 classes).

The CPU stand-in for Fashion-MNIST (Sec. 5): ``n_train`` points for training (default 1024, the
paper's subset size), the rest for testing, split by a seeded permutation.
"""

from __future__ import annotations

import dataclasses
from dataclasses import KW_ONLY, dataclass

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
