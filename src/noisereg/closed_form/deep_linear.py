r"""Deep linear networks under layer-wise noise: an exact penalty (Sec. 4, Eq. (11)).

:math:`\Phi = W_M\cdots W_1X^\top`, square loss :math:`L = \frac{1}{2n}\|Y^\top - \Phi\|_F^2`.
Φ is linear in each layer, so perturbing layer j by :math:`sE_j` adds exactly
:math:`\frac{s^2}{2n}\|A_j\|_F^2\|B_j\|_F^2` in expectation, with
:math:`A_j = W_M\cdots W_{j+1}` and :math:`B_j = W_{j-1}\cdots W_1X^\top`
(:math:`\mathbb{E}\|AEB\|_F^2 = \|A\|_F^2\|B\|_F^2`). Averaging over the uniformly chosen layer with
the paper's std :math:`s = \sigma\sqrt M` gives Eq. (11) exactly; with the official code's
:math:`s = \sigma` it gives Eq. (11) / M.

Example:
    >>> import torch
    >>> from noisereg.closed_form import deep_linear_penalty
    >>> X = torch.eye(2, dtype=torch.float64)
    >>> Ws = [torch.eye(2, dtype=torch.float64)] * 3           # M = 3 identity layers
    >>> deep_linear_penalty(X, Ws, sigma=1.0)                   # 3 · (2 · 2) / 4
    tensor(3., dtype=torch.float64)

References:
    A. Orvieto, A. Raj, H. Kersting, F. Bach. Explicit Regularization in Overparametrized Models
    via Noise Injection. AISTATS 2023. https://arxiv.org/abs/2206.04613
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from noisereg.closed_form._checks import check_data, check_shape, check_sigma, check_tensor
from noisereg.closed_form.linear import _square_risk


def _check_layers(X: torch.Tensor, Ws: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    _, d0 = check_data(X)
    if isinstance(Ws, torch.Tensor) or not isinstance(Ws, Sequence):
        raise TypeError(f"Ws must be a list of weight matrices [W1, ..., WM], got {type(Ws).__name__}")
    if len(Ws) == 0:
        raise ValueError("Ws must hold at least one weight matrix (M >= 1), got an empty list")
    prev, src = d0, "X.shape[1]"
    for j, W in enumerate(Ws):
        name = f"Ws[{j}]"
        check_tensor(name, W, ("X", X))
        check_shape(name, W, (f"d{j + 1}", f"d{j}"), {f"d{j}": (prev, src)})
        prev, src = W.shape[0], f"Ws[{j}].shape[0]"
    return list(Ws)


def deep_linear_penalty(X: torch.Tensor, Ws: Sequence[torch.Tensor], sigma: float) -> torch.Tensor:
    r"""Layer-wise noise penalty of a deep linear network, Eq. (11) of Orvieto et al. (2023).

    .. math::

        \frac{\sigma^2}{2n}\sum_{j=1}^{M}\|W_M\cdots W_{j+1}\|_F^2\,\|W_{j-1}\cdots W_1X^\top\|_F^2
        = \frac{\sigma^2}{2}\operatorname{tr}(\mathrm{GGN}) = \tilde R_\sigma - R,

    empty products being identities (:math:`\|I_{d_M}\|_F^2 = d_M`, :math:`X^\top`). For M = 2 this
    is Eq. (9), :func:`linear_net_penalty`.

    .. note::
        The last equality (exact, no higher-order terms) holds in the paper's convention: one
        uniformly chosen layer gets std :math:`\sigma\sqrt M`.

    Args:
        X: inputs, shape (n, d0), floating point, n >= 1.
        Ws: ``[W1, ..., WM]``, M >= 1, ``Ws[j]`` of shape (d_{j+1}, d_j), dtype of X.
        sigma: noise scale σ, finite, >= 0.

    Returns:
        Scalar tensor, dtype of X.

    Raises:
        TypeError: Ws is not a list, an entry is not a floating tensor of X's dtype, or sigma is
            not a real number.
        ValueError: Ws is empty, shapes do not chain, X has no rows, or sigma is negative or not
            finite.

    References:
        A. Orvieto, A. Raj, H. Kersting, F. Bach. Explicit Regularization in Overparametrized
        Models via Noise Injection. AISTATS 2023. https://arxiv.org/abs/2206.04613
    """
    Ws = _check_layers(X, Ws)
    sigma = check_sigma(sigma)
    n = X.shape[0]
    right = [X.T]                                   # right[j] = W_j ... W_1 X^T (j = 0: X^T)
    for W in Ws[:-1]:
        right.append(W @ right[-1])
    total = X.new_zeros(())
    left = torch.eye(Ws[-1].shape[0], dtype=X.dtype, device=X.device)   # W_M ... W_{j+1}
    for j in range(len(Ws) - 1, -1, -1):
        total = total + left.pow(2).sum() * right[j].pow(2).sum()
        left = left @ Ws[j]
    return sigma**2 / (2 * n) * total


def deep_linear_layer_risk(X: torch.Tensor, Y: torch.Tensor, Ws: Sequence[torch.Tensor],
                           sigma: float) -> torch.Tensor:
    r"""Exact layer-wise risk :math:`\tilde R_\sigma` of a deep linear net, Sec. 4 of Orvieto et al. (2023).

    .. math::

        \tilde R_\sigma
        = \frac1M\sum_{j=1}^M \mathbb{E}\,L(W_M\cdots(W_j + \sigma\sqrt M E_j)\cdots W_1X^\top)
        = \frac{1}{2n}\|Y^\top - W_M\cdots W_1X^\top\|_F^2 + \text{Eq. (11)}.

    .. note::
        Paper convention: the chosen layer gets std :math:`\sigma\sqrt M`; with std σ (official
        code) the penalty term is divided by M.

    Args:
        X: inputs, shape (n, d0), floating point, n >= 1.
        Y: targets, shape (n, d_M), dtype of X.
        Ws: ``[W1, ..., WM]``, M >= 1, ``Ws[j]`` of shape (d_{j+1}, d_j), dtype of X.
        sigma: noise scale σ, finite, >= 0.

    Returns:
        Scalar tensor, dtype of X.

    Raises:
        TypeError: Ws is not a list, a tensor is not floating or not of X's dtype, or sigma is
            not a real number.
        ValueError: Ws is empty, shapes do not chain, X has no rows, or sigma is negative or not
            finite.

    References:
        A. Orvieto, A. Raj, H. Kersting, F. Bach. Explicit Regularization in Overparametrized
        Models via Noise Injection. AISTATS 2023. https://arxiv.org/abs/2206.04613
    """
    Ws = _check_layers(X, Ws)
    M = len(Ws)
    check_tensor("Y", Y, ("X", X))
    check_shape("Y", Y, ("n", f"d{M}"), {"n": (X.shape[0], "X.shape[0]"),
                                         f"d{M}": (Ws[-1].shape[0], f"Ws[{M - 1}].shape[0]")})
    prod = Ws[0]
    for W in Ws[1:]:
        prod = W @ prod
    return _square_risk(X, Y, prod) + deep_linear_penalty(X, Ws, sigma)
