"""Factorized models of Sections 2-4: diagonal networks, deep linear networks, the PSD factorization.

All return predictions of shape (n, k) so that :func:`noisereg.ggn_trace`,
:func:`noisereg.smoothed_risk` and :class:`noisereg.NoiseInjector` apply to them directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class DiagonalNet(nn.Module):
    r"""Diagonal linear network :math:`\Phi = X(w_1\circ w_1 - w_2\circ w_2)` (Sec. 2.3), output (n, 1).

    Args:
        d: number of features. init: initial value of every entry of w1 and w2 (default 0.1;
            equal values give β = 0).

    Example:
        >>> net = DiagonalNet(3)
        >>> net(torch.ones(2, 3)).shape, net.beta.tolist()
        (torch.Size([2, 1]), [0.0, 0.0, 0.0])
    """

    def __init__(self, d: int, init: float = 0.1) -> None:
        super().__init__()
        self.w1 = nn.Parameter(torch.full((d,), float(init)))
        self.w2 = nn.Parameter(torch.full((d,), float(init)))

    @property
    def beta(self) -> torch.Tensor:
        """The linear predictor β = w1∘w1 − w2∘w2."""
        return (self.w1 * self.w1 - self.w2 * self.w2).detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x @ (self.w1 * self.w1 - self.w2 * self.w2)).unsqueeze(1)


class DeepLinearNet(nn.Sequential):
    r"""Deep linear network :math:`\Phi = W_M\cdots W_1 X^\top` (Sec. 2.4, 4), bias-free Linear layers.

    ``widths = (d0, d1, ..., dM)``; layer j holds :math:`W_j` of shape (d_j, d_{j-1}), as in the
    paper. ``init="mean_field"`` draws entries of :math:`W_j` from N(0, 1/(d_j d_{j-1})) (Sec. 3.1,
    so that Frobenius norms do not grow with width); ``"default"`` keeps PyTorch's initialisation.

    Example:
        >>> [tuple(W.shape) for W in DeepLinearNet((4, 6, 2)).weights]
        [(6, 4), (2, 6)]
    """

    def __init__(self, widths: Sequence[int], init: str = "default", generator: torch.Generator | None = None) -> None:
        if len(widths) < 2 or any(int(w) != w or w < 1 for w in widths):
            raise ValueError(f"widths must be >= 2 positive integers, got {tuple(widths)}")
        if init not in ("default", "mean_field"):
            raise ValueError(f"init must be 'default' or 'mean_field', got {init!r}")
        super().__init__(*(nn.Linear(a, b, bias=False) for a, b in zip(widths[:-1], widths[1:])))
        if init == "mean_field":
            with torch.no_grad():
                for lin in self:
                    lin.weight.copy_(torch.randn(lin.weight.shape, generator=generator) / (lin.weight.numel() ** 0.5))

    @property
    def weights(self) -> list[torch.Tensor]:
        """[W1, ..., WM] (the parameters themselves)."""
        return [lin.weight for lin in self]


class PSDFactorization(nn.Module):
    r""":math:`\Phi = w w^\top` with :math:`w\in\mathbb R^{d\times r}` (Sec. 2.5).

    ``forward(x) = x w wᵀ``: with ``x = torch.eye(d)`` the output is Φ itself, row k being sample
    k (n = d samples, k = d outputs), so per-sample tools such as :func:`noisereg.ggn_trace` apply.

    Example:
        >>> net = PSDFactorization(3, 5, generator=torch.Generator().manual_seed(0))
        >>> torch.allclose(net(torch.eye(3)), net.w @ net.w.T)
        True
    """

    def __init__(self, d: int, r: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(d, r, generator=generator) / r ** 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.w @ self.w.T
