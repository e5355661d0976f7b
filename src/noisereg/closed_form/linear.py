r"""Two-layer linear networks: exact smoothed risks under full and layer-wise noise (Sec. 2.4, 3.1, 3.2).

:math:`\Phi = W_2 W_1 X^\top \in \mathbb{R}^{d_2\times n}`, square loss
:math:`L = \frac{1}{2n}\|Y^\top - \Phi\|_F^2`. Φ is linear in each layer, so perturbing one layer
gives an exactly quadratic risk, and perturbing both adds one quartic term.

Noise conventions (the ones under which the formulas below are exact, checked by Monte Carlo in
``tests/test_closed_form.py``):

* full noise: every entry of W1 and W2 gets std σ (``convention="paper"``, ``mode="full"``);
* layer-wise noise: one of the M = 2 layers, chosen uniformly, gets std σ√2
  (``convention="paper"``, ``mode="layer"``). With std σ instead (the official code) the
  excess risk is half of Eq. (9).

Example:
    >>> import torch
    >>> from noisereg.closed_form import linear_net_penalty, linear_net_full_noise_risk
    >>> X = torch.eye(2, dtype=torch.float64)                    # n = d0 = 2
    >>> W1, W2 = torch.eye(2, dtype=torch.float64), torch.ones(1, 2, dtype=torch.float64)
    >>> linear_net_penalty(X, W1, W2, sigma=1.0)                 # (1·2 + 2·2) / 4
    tensor(1.5000, dtype=torch.float64)
    >>> Y = X @ (W2 @ W1).T                                      # R = 0
    >>> linear_net_full_noise_risk(X, Y, W1, W2, sigma=1.0)      # 1.5 + d1·d2·||X||²/4
    tensor(2.5000, dtype=torch.float64)

References:
    A. Orvieto, A. Raj, H. Kersting, F. Bach. Explicit Regularization in Overparametrized Models
    via Noise Injection. AISTATS 2023. https://arxiv.org/abs/2206.04613
"""

from __future__ import annotations

import torch

from noisereg.closed_form._checks import check_data, check_shape, check_sigma, check_tensor


def _check_net(X: torch.Tensor, W1: torch.Tensor, W2: torch.Tensor,
               Y: torch.Tensor | None = None) -> int:
    """Validate X (n, d0), W1 (d1, d0), W2 (d2, d1) and Y (n, d2); return n."""
    n, d0 = check_data(X)
    check_tensor("W1", W1, ("X", X))
    check_shape("W1", W1, ("d1", "d0"), {"d0": (d0, "X.shape[1]")})
    check_tensor("W2", W2, ("X", X))
    check_shape("W2", W2, ("d2", "d1"), {"d1": (W1.shape[0], "W1.shape[0]")})
    if Y is not None:
        check_tensor("Y", Y, ("X", X))
        check_shape("Y", Y, ("n", "d2"), {"n": (n, "X.shape[0]"), "d2": (W2.shape[0], "W2.shape[0]")})
    return n


def _square_risk(X: torch.Tensor, Y: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
    """:math:`R = \\frac{1}{2n}\\|Y^\\top - M X^\\top\\|_F^2` (no checks; shapes as in the module)."""
    return (Y - X @ M.T).pow(2).sum() / (2 * X.shape[0])


def linear_net_penalty(X: torch.Tensor, W1: torch.Tensor, W2: torch.Tensor,
                       sigma: float) -> torch.Tensor:
    r"""Noise-injection penalty of a two-layer linear network, Eq. (9) of Orvieto et al. (2023).

    .. math::

        \frac{\sigma^2}{2n}\left[d_2\,\|W_1 X^\top\|_F^2 + \|W_2\|_F^2\,\|X\|_F^2\right]
        = \frac{\sigma^2}{2}\operatorname{tr}(\mathrm{GGN})
        = \tilde R_\sigma - R .

    It is σ²/2 times the GGN trace, and exactly the excess risk of layer-wise noise with std σ√2
    on one of the two layers (paper convention), see :func:`linear_net_layer_risk`.

    Args:
        X: inputs, shape (n, d0), floating point, n >= 1.
        W1: first layer, shape (d1, d0), dtype of X.
        W2: second layer, shape (d2, d1), dtype of X.
        sigma: noise scale σ, finite, >= 0.

    Returns:
        Scalar tensor, dtype of X.

    Raises:
        TypeError: an argument is not a floating tensor of X's dtype, or sigma is not a real number.
        ValueError: shapes do not chain, X has no rows, or sigma is negative or not finite.

    References:
        A. Orvieto, A. Raj, H. Kersting, F. Bach. Explicit Regularization in Overparametrized
        Models via Noise Injection. AISTATS 2023. https://arxiv.org/abs/2206.04613
    """
    n = _check_net(X, W1, W2)
    sigma = check_sigma(sigma)
    d2 = W2.shape[0]
    return sigma**2 / (2 * n) * (d2 * (W1 @ X.T).pow(2).sum() + W2.pow(2).sum() * X.pow(2).sum())


def linear_net_layer_risk(X: torch.Tensor, Y: torch.Tensor, W1: torch.Tensor, W2: torch.Tensor,
                          sigma: float) -> torch.Tensor:
    r"""Exact layer-wise risk :math:`\tilde R_\sigma` of a linear net, Sec. 3.2 of Orvieto et al. (2023).

    .. math::

        \tilde R_\sigma = \tfrac12\,\mathbb{E}\,L\big((W_2 + \sigma\sqrt2 E_2) W_1 X^\top\big)
        + \tfrac12\,\mathbb{E}\,L\big(W_2 (W_1 + \sigma\sqrt2 E_1) X^\top\big)
        = R + \frac{\sigma^2}{2n}\left[\|W_2\|_F^2\|X\|_F^2 + d_2\|W_1X^\top\|_F^2\right]

    with no σ⁴ term (Eq. (9) is exact).

    .. note::
        Exact in the paper's convention: the perturbed layer gets std :math:`\sigma\sqrt{M}`,
        M = 2. With std σ (the official code's convention) the excess risk is half of this.

    Args:
        X: inputs, shape (n, d0), floating point, n >= 1.
        Y: targets, shape (n, d2), dtype of X.
        W1: first layer, shape (d1, d0), dtype of X.
        W2: second layer, shape (d2, d1), dtype of X.
        sigma: noise scale σ, finite, >= 0.

    Returns:
        Scalar tensor, dtype of X.

    Raises:
        TypeError: an argument is not a floating tensor of X's dtype, or sigma is not a real number.
        ValueError: shapes do not chain, X has no rows, or sigma is negative or not finite.

    References:
        A. Orvieto, A. Raj, H. Kersting, F. Bach. Explicit Regularization in Overparametrized
        Models via Noise Injection. AISTATS 2023. https://arxiv.org/abs/2206.04613
    """
    _check_net(X, W1, W2, Y)
    return _square_risk(X, Y, W2 @ W1) + linear_net_penalty(X, W1, W2, sigma)


def linear_net_full_noise_risk(X: torch.Tensor, Y: torch.Tensor, W1: torch.Tensor,
                               W2: torch.Tensor, sigma: float) -> torch.Tensor:
    r"""Exact full-noise risk :math:`R_\sigma` of a linear net, Sec. 3.1 of Orvieto et al. (2023).

    With every entry of W1 and W2 perturbed by independent :math:`N(0, \sigma^2)` noise,

    .. math::

        R_\sigma = R + \frac{\sigma^2}{2n}\left[\|W_2\|_F^2\|X\|_F^2 + d_2\|W_1X^\top\|_F^2\right]
                 + \frac{\sigma^4}{2n}\, d_1 d_2\, \|X\|_F^2 .

    The σ⁴ term, :math:`\mathbb{E}\|E_2E_1X^\top\|_F^2`, grows with the width d1: the variance
    explosion of full noise injection.

    .. note::
        Exact for full-scheme std σ (paper convention). The official code's full mode uses
        std σ/√M (M = 2): replace σ by σ/√2.

    Args:
        X: inputs, shape (n, d0), floating point, n >= 1.
        Y: targets, shape (n, d2), dtype of X.
        W1: first layer, shape (d1, d0), dtype of X.
        W2: second layer, shape (d2, d1), dtype of X.
        sigma: noise scale σ, finite, >= 0.

    Returns:
        Scalar tensor, dtype of X.

    Raises:
        TypeError: an argument is not a floating tensor of X's dtype, or sigma is not a real number.
        ValueError: shapes do not chain, X has no rows, or sigma is negative or not finite.

    References:
        A. Orvieto, A. Raj, H. Kersting, F. Bach. Explicit Regularization in Overparametrized
        Models via Noise Injection. AISTATS 2023. https://arxiv.org/abs/2206.04613
    """
    n = _check_net(X, W1, W2, Y)
    pen = linear_net_penalty(X, W1, W2, sigma)
    sigma = check_sigma(sigma)
    d1, d2 = W1.shape[0], W2.shape[0]
    return _square_risk(X, Y, W2 @ W1) + pen + sigma**4 / (2 * n) * d1 * d2 * X.pow(2).sum()
