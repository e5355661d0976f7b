"""Checks a classification data set must pass before any run starts: one line naming the array, the rule and
the value (a :class:`noisereg.errors.UserError`, exit 2 on the command line).

* inputs: every split non-empty, at least one feature per example, finite numbers (no NaN or inf);
  with ``image=True`` the (n, C, H, W) shape a convolutional model needs;
* labels: one integer per example (an (n, 1) array is squeezed; integer-valued floats are accepted),
  forming the classes 0..C−1 with every class present in the training split (so a gap, such as
  labels 0-9 and 12, is an error: it would silently add untrained outputs), and validation and test
  labels within 0..C−1;
* a stray label: a training class that no test example has and that is rare in training (examples
  at most a tenth of the median class) is an error, such as one label 10 among 0-9 data: it would make an
  (C+1)-class problem that the test never scores. ``train_only_classes=True`` (``--set
  train_only_classes=true``) accepts it.
"""

from __future__ import annotations

import dataclasses

import torch

from noisereg.data.embedded import Split
from noisereg.errors import UserError


_EVERY_CLASS = "y_train must use the classes 0..C-1 with every class in the training split"


def _labels(name: str, y: torch.Tensor) -> torch.Tensor:
    if y.dim() == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.dim() != 1:
        raise UserError(f"y_{name} must hold one class label per example, shape (n,) or (n, 1), got shape "
                        f"{tuple(y.shape)}")
    if y.dtype.is_floating_point:
        bad = ~torch.isfinite(y) | (y != torch.round(y))
        if bad.any():
            i = int(bad.nonzero()[0, 0])
            raise UserError(f"y_{name} must hold integer class labels, got {float(y[i])!r} at index {i}")
        y = y.long()
    elif y.dtype == torch.bool:
        y = y.long()
    if len(y) and int(y.min()) < 0:
        i = int((y < 0).nonzero()[0, 0])
        raise UserError(f"y_{name} must hold class labels 0..C-1, got {int(y[i])} at index {i}")
    return y


def check_classification(split: Split, image: bool = False, train_only_classes: bool = False) -> Split:
    """Check ``split`` as a classification data set (module docstring); return it with labels as int64 (n,).

    Args:
        split: the data (training, optional validation, test).
        image: whether the model needs images (n, C, H, W).
        train_only_classes: accept a rare training class that no test example has (else a stray label).

    Returns:
        The split, labels squeezed to (n,) and int64.

    Raises:
        UserError: the first rule broken, naming the array and the value.

    Example:
        >>> import torch
        >>> from noisereg.data import Split
        >>> s = Split(torch.zeros(5, 2), torch.tensor([0, 1, 3, 0, 1]), torch.zeros(1, 2), torch.tensor([0]), "x", 0)
        >>> check_classification(s)
        Traceback (most recent call last):
        ...
        noisereg.errors.UserError: y_train must use the classes 0..C-1 with every class in the training split, but class 2 of 0..3 has no training example
    """
    fixed = {}
    for name, x, y in split.splits():
        if len(x) == 0:
            raise UserError(f"x_{name} is empty: the {name} split needs at least one example")
        if len(y) != len(x):
            raise UserError(f"y_{name} has {len(y)} labels but x_{name} has {len(x)} examples")
        if x.dim() < 2 or x[0].numel() == 0:
            raise UserError(f"x_{name} must have at least one feature per example, got shape {tuple(x.shape)}")
        if image and x.dim() != 4:
            raise UserError(f"x_{name} must be images of shape (n, C, H, W) for this experiment's convolutional "
                            f"models, got shape {tuple(x.shape)} (flat features: use an MLP experiment)")
        if not x.dtype.is_floating_point:
            raise UserError(f"x_{name} must hold floating-point numbers, got {x.dtype}")
        finite = torch.isfinite(x)
        if not finite.all():
            bad = int((~finite).sum())
            i = int((~finite).reshape(len(x), -1).any(1).nonzero()[0, 0])
            raise UserError(f"x_{name} must hold finite numbers, got {bad} NaN or infinite value(s), the first in "
                            f"example {i}")
        fixed[f"y_{name}"] = _labels(name, y)
    y_train = fixed["y_train"]
    classes = int(y_train.max()) + 1
    if classes > len(y_train):  # more classes than examples: some class has none (checked without a huge array)
        raise UserError(f"{_EVERY_CLASS}, but its largest label is {classes - 1} with only {len(y_train)} training "
                        "examples")
    present = torch.zeros(classes, dtype=torch.bool)
    present[y_train] = True
    if not present.all():
        missing = [int(c) for c in (~present).nonzero()[:, 0]]
        shown = ", ".join(map(str, missing[:5])) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise UserError(f"{_EVERY_CLASS}, but class"
                        f"{'es' if len(missing) > 1 else ''} {shown} of 0..{classes - 1} "
                        f"{'have' if len(missing) > 1 else 'has'} no training example")
    for name in ("val", "test"):
        y = fixed.get(f"y_{name}")
        if y is not None and len(y) and int(y.max()) >= classes:
            i = int((y >= classes).nonzero()[0, 0])
            raise UserError(f"y_{name} holds label {int(y[i])} at index {i}, but the training labels are the classes "
                            f"0..{classes - 1}")
    stray, median = stray_classes(y_train, fixed.get("y_test"))
    if stray and not train_only_classes:
        c, n = stray[0]
        raise UserError(f"y_train has {len(stray)} stray class(es), e.g. label {c} with {n} training example(s) "
                        f"(median {median:g} per class) and no test example: it makes a {classes}-class problem whose "
                        "extra output the test never scores; fix the labels, or pass --set train_only_classes=true "
                        "to keep it")
    return dataclasses.replace(split, **fixed)


def stray_classes(y_train: torch.Tensor, y_test: torch.Tensor | None) -> tuple[list[tuple[int, int]], float]:
    """The stray classes of valid labels 0..C−1 (module docstring): ``([(class, training examples), ...], median
    training examples per class)``; none without test labels."""
    counts = torch.bincount(y_train)
    median = float(counts.double().median())
    if y_test is None or not len(y_test):
        return [], median
    in_test = torch.bincount(y_test, minlength=len(counts)) > 0
    return [(c, int(counts[c])) for c in range(len(counts)) if not in_test[c] and 10 * int(counts[c]) <= median], median
