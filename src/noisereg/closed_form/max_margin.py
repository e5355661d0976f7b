r"""Max-margin directions of separable classification: the references of the App. B conjecture.

Orvieto et al. (2023), Appendix B, conjecture that on separable data with the logistic loss,
noisy GD diverges along the minimiser of :math:`\|D\Phi(\Delta)\|_F^2` subject to
:math:`y\circ\Phi(\Delta) \ge 1`. For the diagonal net :math:`\Phi = X(w_1^{\circ 2} - w_2^{\circ 2})`,
:math:`\|D\Phi(w)\|_F^2 = 4\sum_j\|X_j\|^2(w_{1j}^2 + w_{2j}^2) \ge 4\sum_j\|X_j\|^2|\beta_j|` (equality
for the balanced factorization; :math:`2n/\sigma^2` times Eq. (7), docs/THEORY.md §5.1), so in β the
conjectured direction is the weighted-ℓ1 max-margin solution (:func:`l1_max_margin` with
:math:`c_j = \|X_j\|^2`); plain GD is expected to approach the unweighted one (:math:`c = 1`,
Lyu & Li 2020). :func:`l2_max_margin` is the bias-free hard-margin SVM. Both need SciPy.

Example:
    >>> import torch
    >>> X = torch.tensor([[2.0, 1.0], [-1.0, -2.0]], dtype=torch.float64)
    >>> y = torch.tensor([1.0, -1.0], dtype=torch.float64)
    >>> l1_max_margin(X, y, torch.ones(2, dtype=torch.float64))     # the smallest ‖β‖₁ with margin 1
    tensor([0.3333, 0.3333], dtype=torch.float64)

References:
    A. Orvieto, A. Raj, H. Kersting, F. Bach. Explicit Regularization in Overparametrized Models
    via Noise Injection. AISTATS 2023. https://arxiv.org/abs/2206.04613

    K. Lyu, J. Li. Gradient Descent Maximizes the Margin of Homogeneous Neural Networks.
    ICLR 2020. https://arxiv.org/abs/1906.05890
"""

from __future__ import annotations

import numpy as np
import torch

from noisereg.closed_form._checks import check_data, check_shape, check_tensor


def _labels(X: torch.Tensor, y: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    n, _ = check_data(X, "d")
    check_shape("y", check_tensor("y", y, ("X", X)), ("n",), {"n": (n, "X.shape[0]")})
    if not bool(((y == 1) | (y == -1)).all()):
        raise ValueError(f"y must hold labels ±1, got values {sorted(set(y.tolist()))[:5]}")
    return X.detach().cpu().double().numpy(), y.detach().cpu().double().numpy()


def l1_max_margin(X: torch.Tensor, y: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    r"""Weighted-ℓ1 max-margin direction: a linear program solved by HiGHS.

    .. math::

        \hat\beta = \arg\min_\beta \sum_j c_j|\beta_j| \quad\text{s.t.}\quad y_i x_i^\top\beta \ge 1,

    solved as an LP in :math:`\beta = p - q`, :math:`p, q \ge 0`.

    Args:
        X: inputs, shape (n, d), floating point. y: labels ±1, shape (n,), dtype of X.
        weights: c, shape (d,), dtype of X, >= 0.

    Returns:
        :math:`\hat\beta`, shape (d,), dtype of X.

    Raises:
        TypeError: an argument is not a floating tensor of X's dtype.
        ValueError: a shape does not match, or y is not ±1.
        RuntimeError: the LP fails (e.g. the data are not linearly separable through 0).
    """
    from scipy.optimize import linprog

    Xn, yn = _labels(X, y)
    check_shape("weights", check_tensor("weights", weights, ("X", X)), ("d",), {"d": (X.shape[1], "X.shape[1]")})
    c = weights.detach().cpu().double().numpy()
    n, d = Xn.shape
    A = -(yn[:, None] * Xn)
    res = linprog(np.concatenate([c, c]), A_ub=np.hstack([A, -A]), b_ub=-np.ones(n), bounds=(0, None),
                  method="highs")
    if res.status != 0:
        raise RuntimeError(f"linprog failed for the l1 max-margin problem: {res.message}")
    return torch.from_numpy(res.x[:d] - res.x[d:]).to(X.dtype)


def l2_max_margin(X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""Bias-free hard-margin SVM :math:`\arg\min\|\beta\|^2` s.t. :math:`y_ix_i^\top\beta \ge 1`, via its dual.

    The dual :math:`\min_{\alpha\ge0}\frac12\alpha^\top AA^\top\alpha - \mathbf 1^\top\alpha` with
    :math:`A = \mathrm{diag}(y)X` is solved by L-BFGS-B, and :math:`\hat\beta = A^\top\alpha`
    (scikit-learn's ``SVC`` fits an intercept, a different problem).

    Args:
        X: inputs, shape (n, d), floating point. y: labels ±1, shape (n,), dtype of X.

    Returns:
        :math:`\hat\beta`, shape (d,), dtype of X.

    Raises:
        TypeError: an argument is not a floating tensor of X's dtype.
        ValueError: a shape does not match, or y is not ±1.

    Example:
        >>> import torch
        >>> X = torch.tensor([[2.0, 1.0], [-1.0, -2.0]], dtype=torch.float64)
        >>> l2_max_margin(X, torch.tensor([1.0, -1.0], dtype=torch.float64)).round(decimals=6)   # both margins 1
        tensor([0.3333, 0.3333], dtype=torch.float64)
    """
    from scipy.optimize import minimize

    Xn, yn = _labels(X, y)
    A = yn[:, None] * Xn
    K = A @ A.T
    res = minimize(lambda a: (0.5 * a @ K @ a - a.sum(), K @ a - 1), np.zeros(len(yn)), jac=True,
                   method="L-BFGS-B", bounds=[(0, None)] * len(yn),
                   options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 100_000})
    return torch.from_numpy(A.T @ res.x).to(X.dtype)
