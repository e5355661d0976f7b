r"""Diagonal linear networks: noise injection is a weighted Lasso (Sec. 2.3 of Orvieto et al. (2023)).

The predictor is :math:`\Phi(w) = X(w_1\circ w_1 - w_2\circ w_2) = X\beta` with square loss
:math:`L(\phi) = \frac{1}{2n}\|y-\phi\|^2`. The GGN penalty (Eq. (7)) is linear in
:math:`w_1^2 + w_2^2 \ge |\beta|`, so minimising it over the factorizations of β gives the weighted
Lasso of Eq. (8).

Example:
    >>> import torch
    >>> from noisereg.closed_form import diagonal_net_penalty, lasso_weights
    >>> X = torch.tensor([[1.0, 0.0], [1.0, 2.0]], dtype=torch.float64)
    >>> lasso_weights(X, sigma=0.5)                      # 2 σ² diag(XᵀX/n)
    tensor([0.5000, 1.0000], dtype=torch.float64)
    >>> w1, w2 = torch.tensor([1.0, 0.0]).double(), torch.tensor([0.0, 1.0]).double()
    >>> diagonal_net_penalty(X, w1, w2, sigma=0.5)       # β = (1, -1): Σ_j λ_j |β_j|
    tensor(1.5000, dtype=torch.float64)

References:
    A. Orvieto, A. Raj, H. Kersting, F. Bach. Explicit Regularization in Overparametrized Models
    via Noise Injection. AISTATS 2023. https://arxiv.org/abs/2206.04613
"""

from __future__ import annotations

import torch

from noisereg.closed_form._checks import check_data, check_shape, check_sigma, check_tensor


def _vector(name: str, v: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    check_tensor(name, v, ("X", X))
    return check_shape(name, v, ("d",), {"d": (X.shape[1], "X.shape[1]")})


def _col_sq(X: torch.Tensor) -> torch.Tensor:
    """:math:`\\mathrm{diag}(X^\\top X/n)`, shape (d,)."""
    return X.pow(2).sum(0) / X.shape[0]


def diagonal_net_penalty(X: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor,
                         sigma: float) -> torch.Tensor:
    r"""Noise-injection penalty of a diagonal linear network, Eq. (7) of Orvieto et al. (2023).

    .. math::

        \frac{\sigma^2}{2}\operatorname{tr}(\mathrm{GGN})
        = 2\sigma^2\,\mathrm{diag}\!\left(\tfrac{X^\top X}{n}\right)^{\!\top}(w_1\circ w_1 + w_2\circ w_2)

    for :math:`\Phi = X(w_1\circ w_1 - w_2\circ w_2)` and :math:`L = \frac{1}{2n}\|y-\Phi\|^2`.

    Args:
        X: inputs, shape (n, d), floating point, n >= 1.
        w1: first factor :math:`w_1`, shape (d,), dtype of X.
        w2: second factor :math:`w_2`, shape (d,), dtype of X.
        sigma: noise scale σ, finite, >= 0.

    Returns:
        Scalar tensor, dtype of X.

    Raises:
        TypeError: an argument is not a floating tensor of X's dtype, or sigma is not a real number.
        ValueError: a shape does not match X, X has no rows, or sigma is negative or not finite.

    References:
        A. Orvieto, A. Raj, H. Kersting, F. Bach. Explicit Regularization in Overparametrized
        Models via Noise Injection. AISTATS 2023. https://arxiv.org/abs/2206.04613
    """
    check_data(X, "d")
    _vector("w1", w1, X)
    _vector("w2", w2, X)
    sigma = check_sigma(sigma)
    return 2 * sigma**2 * torch.dot(_col_sq(X), w1.pow(2) + w2.pow(2))


def lasso_weights(X: torch.Tensor, sigma: float) -> torch.Tensor:
    r"""Per-feature weights :math:`\lambda_j` of the weighted Lasso, Eq. (8) of Orvieto et al. (2023).

    .. math::

        \lambda_j = 2\sigma^2\,(X^\top X/n)_{jj}
        = \min_{w_{1j}^2 - w_{2j}^2 = \beta_j} 2\sigma^2 (X^\top X/n)_{jj}(w_{1j}^2 + w_{2j}^2)/|\beta_j|

    (the minimum is at :math:`w_{1j}^2 = \beta_j^+`, :math:`w_{2j}^2 = \beta_j^-`).

    Args:
        X: inputs, shape (n, d), floating point, n >= 1.
        sigma: noise scale σ, finite, >= 0.

    Returns:
        Tensor of shape (d,), dtype of X.

    Raises:
        TypeError: X is not a floating tensor, or sigma is not a real number.
        ValueError: X is not 2-D or has no rows, or sigma is negative or not finite.

    References:
        A. Orvieto, A. Raj, H. Kersting, F. Bach. Explicit Regularization in Overparametrized
        Models via Noise Injection. AISTATS 2023. https://arxiv.org/abs/2206.04613
    """
    check_data(X, "d")
    sigma = check_sigma(sigma)
    return 2 * sigma**2 * _col_sq(X)


def diagonal_net_lasso_objective(X: torch.Tensor, y: torch.Tensor, beta: torch.Tensor,
                                 sigma: float) -> torch.Tensor:
    r"""Weighted-Lasso objective of noisy GD on a diagonal net, Eq. (8) of Orvieto et al. (2023).

    .. math::

        \frac{1}{2n}\|y - X\beta\|^2 + \sum_j \lambda_j |\beta_j|,
        \qquad \lambda_j = 2\sigma^2 (X^\top X/n)_{jj},

    the minimum of :math:`R(w) + ` Eq. (7) over the factorizations
    :math:`\beta = w_1\circ w_1 - w_2\circ w_2`.

    Args:
        X: inputs, shape (n, d), floating point, n >= 1.
        y: targets, shape (n,), dtype of X.
        beta: coefficients β, shape (d,), dtype of X.
        sigma: noise scale σ, finite, >= 0.

    Returns:
        Scalar tensor, dtype of X.

    Raises:
        TypeError: an argument is not a floating tensor of X's dtype, or sigma is not a real number.
        ValueError: a shape does not match X, X has no rows, or sigma is negative or not finite.

    References:
        A. Orvieto, A. Raj, H. Kersting, F. Bach. Explicit Regularization in Overparametrized
        Models via Noise Injection. AISTATS 2023. https://arxiv.org/abs/2206.04613
    """
    n, _ = check_data(X, "d")
    check_shape("y", check_tensor("y", y, ("X", X)), ("n",), {"n": (n, "X.shape[0]")})
    _vector("beta", beta, X)
    lam = lasso_weights(X, sigma)
    return (y - X @ beta).pow(2).sum() / (2 * n) + torch.dot(lam, beta.abs())


def diagonal_net_full_noise_risk(X: torch.Tensor, y: torch.Tensor, w1: torch.Tensor,
                                 w2: torch.Tensor, sigma: float) -> torch.Tensor:
    r"""Exact full-noise risk :math:`R_\sigma` of a diagonal net, Sec. 2.3 of Orvieto et al. (2023).

    With :math:`\varepsilon_1, \varepsilon_2 \sim N(0, I_d)` (full-scheme std σ),

    .. math::

        R_\sigma = \mathbb{E}\,\tfrac{1}{2n}\|y - X((w_1+\sigma\varepsilon_1)^{\circ 2}
                   - (w_2+\sigma\varepsilon_2)^{\circ 2})\|^2
        = R(w) + \text{Eq. (7)} + 2\sigma^4 \operatorname{tr}(X^\top X/n):

    the gap to the effective risk of Eq. (6) does not depend on w, so noisy GD targets the
    Lasso of Eq. (8) exactly.

    .. note::
        The σ⁴ constant is derived here, not printed in the paper: the quadratic part of the
        noise, :math:`\sigma^2 X(\varepsilon_1^{\circ 2} - \varepsilon_2^{\circ 2})`, has mean
        zero and :math:`\mathbb{E}\|\cdot\|^2 = 4\sigma^4\|X\|_F^2`.

    Args:
        X: inputs, shape (n, d), floating point, n >= 1.
        y: targets, shape (n,), dtype of X.
        w1: first factor, shape (d,), dtype of X.
        w2: second factor, shape (d,), dtype of X.
        sigma: noise scale σ, finite, >= 0.

    Returns:
        Scalar tensor, dtype of X.

    Raises:
        TypeError: an argument is not a floating tensor of X's dtype, or sigma is not a real number.
        ValueError: a shape does not match X, X has no rows, or sigma is negative or not finite.

    References:
        A. Orvieto, A. Raj, H. Kersting, F. Bach. Explicit Regularization in Overparametrized
        Models via Noise Injection. AISTATS 2023. https://arxiv.org/abs/2206.04613
    """
    n, _ = check_data(X, "d")
    check_shape("y", check_tensor("y", y, ("X", X)), ("n",), {"n": (n, "X.shape[0]")})
    pen = diagonal_net_penalty(X, w1, w2, sigma)
    sigma = check_sigma(sigma)
    risk = (y - X @ (w1.pow(2) - w2.pow(2))).pow(2).sum() / (2 * n)
    return risk + pen + 2 * sigma**4 * _col_sq(X).sum()


def weighted_lasso(X: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, *, tol: float = 1e-12) -> torch.Tensor:
    r"""Minimiser of the weighted Lasso, Eq. (8) of Orvieto et al. (2023) (scikit-learn).

    .. math::

        \hat\beta = \arg\min_\beta \frac{1}{2n}\|y - X\beta\|^2 + \sum_j \lambda_j|\beta_j|,

    with ``weights`` :math:`= \lambda`; :func:`lasso_weights` gives the λ of noisy GD on a diagonal
    net, whose averaged iterates converge to :math:`\hat\beta` (docs/THEORY.md §5.1).
    scikit-learn's ``Lasso`` minimises :math:`\frac{1}{2n}\|y - \tilde Xb\|^2 + c\|b\|_1`; with
    :math:`\tilde X_j = X_j c/\lambda_j` and :math:`\beta_j = b_j c/\lambda_j` the two objectives
    agree term by term (:math:`c = \mathrm{mean}(\lambda)` keeps the columns near their scale).
    Coordinate descent runs until its duality gap is below ``tol``. Needs scikit-learn.

    Args:
        X: inputs, shape (n, d), floating point, n >= 1.
        y: targets, shape (n,), dtype of X.
        weights: λ, shape (d,), dtype of X, every entry > 0.
        tol: duality-gap tolerance of coordinate descent (default 1e-12).

    Returns:
        :math:`\hat\beta`, shape (d,), dtype of X (computed in float64).

    Raises:
        TypeError: an argument is not a floating tensor of X's dtype.
        ValueError: a shape does not match X, or a weight is not > 0.

    Example:
        >>> import torch
        >>> X, y = torch.eye(2, dtype=torch.float64), torch.tensor([1.0, 0.1], dtype=torch.float64)
        >>> weighted_lasso(X, y, torch.full((2,), 0.25, dtype=torch.float64))   # soft-threshold y at nλ
        tensor([0.5000, 0.0000], dtype=torch.float64)
    """
    from sklearn.linear_model import Lasso

    n, _ = check_data(X, "d")
    check_shape("y", check_tensor("y", y, ("X", X)), ("n",), {"n": (n, "X.shape[0]")})
    _vector("weights", weights, X)
    lam = weights.detach().cpu().double().numpy()
    if not (lam > 0).all():
        raise ValueError(f"weights must be > 0, got min {lam.min()}")
    c = float(lam.mean())
    model = Lasso(alpha=c, fit_intercept=False, tol=tol, max_iter=1_000_000, selection="cyclic")
    model.fit(X.detach().cpu().double().numpy() * (c / lam), y.detach().cpu().double().numpy())
    return torch.from_numpy(model.coef_ * (c / lam)).to(X.dtype)


def weighted_lasso_kkt(X: torch.Tensor, y: torch.Tensor, beta: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    r"""Largest violation of the optimality conditions of the weighted Lasso (Eq. (8)) at β.

    With :math:`g = X^\top(y - X\beta)/n`, β is the minimiser iff :math:`g_j = \lambda_j\,\mathrm{sign}(\beta_j)`
    where :math:`\beta_j \ne 0` and :math:`|g_j| \le \lambda_j` where :math:`\beta_j = 0`; the result is
    :math:`\max_j` of :math:`|g_j - \lambda_j\mathrm{sign}(\beta_j)|` resp. :math:`(|g_j| - \lambda_j)^+`.

    Args:
        X: inputs, shape (n, d), floating point, n >= 1.
        y: targets, shape (n,), dtype of X.
        beta: coefficients β, shape (d,), dtype of X.
        weights: λ, shape (d,), dtype of X.

    Returns:
        Scalar tensor >= 0, dtype of X (0 at the minimiser).

    Raises:
        TypeError: an argument is not a floating tensor of X's dtype.
        ValueError: a shape does not match X.

    Example:
        >>> import torch
        >>> X, y = torch.eye(2, dtype=torch.float64), torch.tensor([1.0, 0.1], dtype=torch.float64)
        >>> lam = torch.full((2,), 0.25, dtype=torch.float64)
        >>> float(weighted_lasso_kkt(X, y, torch.tensor([0.5, 0.0], dtype=torch.float64), lam))
        0.0
        >>> round(float(weighted_lasso_kkt(X, y, torch.tensor([0.8, 0.0], dtype=torch.float64), lam)), 12)
        0.15
    """
    n, _ = check_data(X, "d")
    check_shape("y", check_tensor("y", y, ("X", X)), ("n",), {"n": (n, "X.shape[0]")})
    _vector("beta", beta, X)
    _vector("weights", weights, X)
    g = X.T @ (y - X @ beta) / n
    nz = beta != 0
    viol = torch.where(nz, (g - weights * beta.sign()).abs(), (g.abs() - weights).clamp_min(0))
    return viol.max() if viol.numel() else viol.sum()
