"""Argument checks shared by the closed forms: one place for every error message.

Messages name the argument, the rule and the received value, e.g.
``W1 must have shape (d1, d0) with d0 = X.shape[1] = 5, got (3, 4)``.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import torch

from noisereg.injection import check_sigma  # noqa: F401  (re-exported for the closed forms)


def check_int(name: str, value: Any) -> int:
    """Return ``value``; it must be an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= 1, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value}")
    return int(value)


def check_tensor(name: str, t: Any, like: tuple[str, torch.Tensor] | None = None) -> torch.Tensor:
    """``t`` must be a floating-point tensor, of the same dtype as ``like = (name, tensor)``."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must have a floating-point dtype, got {t.dtype}")
    if like is not None and t.dtype != like[1].dtype:
        raise TypeError(f"{name} must have the dtype of {like[0]} ({like[1].dtype}), got {t.dtype}")
    return t


def check_shape(name: str, t: torch.Tensor, dims: Sequence[str],
                known: dict[str, tuple[int, str | None]] | None = None) -> torch.Tensor:
    """``t`` must have ``len(dims)`` axes; an axis named in ``known`` must have the size given there.

    ``known`` maps a dimension symbol to ``(size, where the size comes from)``, the second part
    ``None`` when the size is an argument of its own (``d2 = 3``).
    """
    known = known or {}
    ok = t.dim() == len(dims) and all(
        t.shape[i] == known[s][0] for i, s in enumerate(dims) if s in known)
    if not ok:
        spec = "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"
        rules = " and ".join(f"{s} = {src} = {v}" if src else f"{s} = {v}"
                             for s, (v, src) in known.items())
        rule = f" with {rules}" if rules else ""
        raise ValueError(f"{name} must have shape {spec}{rule}, got {tuple(t.shape)}")
    return t


def check_data(X: Any, d: str = "d0") -> tuple[int, int]:
    """``X`` must be an (n, d) floating-point matrix with n >= 1; return ``(n, d)``."""
    check_shape("X", check_tensor("X", X), ("n", d))
    if X.shape[0] < 1:
        raise ValueError(f"X must have n >= 1 rows, got shape {tuple(X.shape)}")
    return X.shape[0], X.shape[1]


def check_groups(groups: Any, d: int) -> list[list[int]]:
    """``groups`` must be a list of non-empty lists of column indices that partitions range(d)."""
    if isinstance(groups, (str, bytes, torch.Tensor)) or not isinstance(groups, Sequence):
        raise TypeError(f"groups must be a list of lists of column indices, got {type(groups).__name__}")
    owner: dict[int, int] = {}
    out = []
    for g, idx in enumerate(groups):
        if isinstance(idx, (str, bytes)) or not isinstance(idx, Sequence) or len(idx) == 0:
            raise ValueError(f"groups[{g}] must be a non-empty list of column indices, got {idx!r}")
        for j in idx:
            if isinstance(j, bool) or not isinstance(j, numbers.Integral):
                raise TypeError(f"groups[{g}] must hold integer column indices, got {j!r}")
            if not 0 <= j < d:
                raise ValueError(f"groups[{g}] must hold column indices in [0, d) with "
                                 f"d = X.shape[1] = {d}, got {j}")
            if int(j) in owner:
                raise ValueError(f"groups must be disjoint: column {j} is in groups[{owner[int(j)]}] "
                                 f"and groups[{g}]")
            owner[int(j)] = g
        out.append([int(j) for j in idx])
    missing = sorted(set(range(d)) - owner.keys())
    if missing:
        raise ValueError(f"groups must cover every column of X (d = X.shape[1] = {d}), "
                         f"got columns {missing} in no group")
    return out
