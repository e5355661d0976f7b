"""Fully connected ReLU networks of any depth and width (Figs. 3 and 4)."""

from __future__ import annotations

from collections.abc import Sequence

import torch  # noqa: F401  (the doctest uses it)
from torch import nn


class MLP(nn.Sequential):
    """``in_features → hidden[0] → … → hidden[-1] → out_features`` with ReLU between layers.

    Inputs of any shape are flattened from dimension 1, so images work directly. PyTorch's
    default (Kaiming-uniform) initialisation.

    Args:
        in_features: input size (after flattening), > 0.
        hidden: hidden widths, e.g. ``(5000, 5000)`` for Fig. 3; may be empty (a linear model).
        out_features: number of outputs, > 0.
        activation: module class placed between layers (default ``nn.ReLU``).
        bias: whether the Linear layers have biases (default True; Sec. 3.3 uses none).

    Example:
        >>> MLP(64, (128, 128), 10)(torch.zeros(5, 1, 8, 8)).shape
        torch.Size([5, 10])
    """

    def __init__(self, in_features: int, hidden: Sequence[int], out_features: int,
                 activation: type[nn.Module] = nn.ReLU, bias: bool = True) -> None:
        widths = [in_features, *hidden, out_features]
        if any(not isinstance(w, int) or w <= 0 for w in widths):
            raise ValueError(f"layer widths must be positive integers, got {widths}")
        mods: list[nn.Module] = [nn.Flatten()]
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            mods.append(nn.Linear(a, b, bias=bias))
            if i < len(widths) - 2:
                mods.append(activation())
        super().__init__(*mods)
