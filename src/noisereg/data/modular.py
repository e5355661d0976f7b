"""Modular addition as a classification task: the sequences ``(a, b, =)`` labelled ``(a + b) mod p``.

The task of the "grokking" experiments (Power et al., 2022): every one of the ``p²`` pairs is an
example, a seeded share of them is the training set, and the rest is split into validation and
test points (disjoint). Small training shares make a network memorise its training pairs long
before it generalises to the others. Generated here; nothing is downloaded.

References:
    A. Power, Y. Burda, H. Edwards, I. Babuschkin, V. Misra. Grokking: Generalization beyond
    overfitting on small algorithmic datasets. 2022. https://arxiv.org/abs/2201.02177
"""

from __future__ import annotations

import numpy as np
import torch

from noisereg.data.embedded import Split
from noisereg.errors import UserError


def modular_addition(p: int, train_fraction: float, val_fraction: float = 0.5, seed: int = 0) -> Split:
    r"""All pairs :math:`(a, b) \in \{0..p-1\}^2` as token sequences ``(a, b, p)`` (``p`` is the ``=`` token),
    labelled :math:`(a + b) \bmod p`, split by a seeded permutation.

    The first ``round(train_fraction · p²)`` pairs of ``np.random.default_rng(seed).permutation(p²)``
    train; of the others, the first ``round(val_fraction · rest)`` are the validation split and the
    rest the test split. Tokens are stored as float32 (the classification data contract); a model
    rounds them back to integers (:class:`noisereg.models.transformer.TinyTransformer`).

    Args:
        p: the modulus, an integer >= 2 (vocabulary ``p + 1`` tokens, ``p`` classes).
        train_fraction: share of the ``p²`` pairs that train, in (0, 1).
        val_fraction: share of the remaining pairs held out for validation, in (0, 1) (default 0.5).
        seed: seed of the permutation, an integer >= 0.

    Returns:
        A :class:`~noisereg.data.Split` with ``x_val``/``y_val``; inputs (n, 3), labels (n,).

    Raises:
        TypeError: ``p`` or ``seed`` is not an integer, a fraction is not a number.
        UserError: a value out of range, or a split left empty.

    Example:
        >>> s = modular_addition(7, 0.5)
        >>> tuple(s.x_train.shape), len(s.x_val), len(s.x_test)
        ((24, 3), 12, 13)
        >>> bool(((s.x_test[:, 0] + s.x_test[:, 1]) % 7 == s.y_test).all())
        True
    """
    for name, value, low in (("p", p, 2), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an integer >= {low}, got {type(value).__name__}")
        if value < low:
            raise UserError(f"{name} must be an integer >= {low}, got {value}")
    for name, value in (("train_fraction", train_fraction), ("val_fraction", val_fraction)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number in (0, 1), got {type(value).__name__}")
        if not 0 < value < 1:
            raise UserError(f"{name} must be in (0, 1), got {value}")
    total = p * p
    n_train = round(train_fraction * total)
    n_val = round(val_fraction * (total - n_train))
    sizes = {"training": n_train, "validation": n_val, "test": total - n_train - n_val}
    for name, n in sizes.items():
        if n < 1:
            raise UserError(f"the {name} split of p={p} (p²={total} pairs) with train_fraction={train_fraction}, "
                            f"val_fraction={val_fraction} is empty; raise p or move the fractions away from 0 and 1")
    a, b = np.divmod(np.arange(total), p)
    x = torch.from_numpy(np.stack([a, b, np.full(total, p)], 1).astype(np.float32))
    y = torch.from_numpy(((a + b) % p).astype(np.int64))
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(total))
    tr, va, te = perm[:n_train], perm[n_train:n_train + n_val], perm[n_train + n_val:]
    return Split(x[tr], y[tr], x[te], y[te], name=f"modular_addition(p={p}, train_fraction={train_fraction:g})",
                 seed=seed, x_val=x[va], y_val=y[va])
