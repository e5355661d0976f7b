r"""Hadamard (group) factorizations: noise injection is a group Lasso (Sec. 2.5 of Orvieto et al. (2023)).

Columns of X are split into groups g (``groups``, a partition of the column indices), and
:math:`\beta_g = u_g v_g` with a scalar :math:`u_g` and a vector :math:`v_g`, so
:math:`\Phi = \sum_g X_g u_g v_g \in \mathbb{R}^n`, square loss :math:`\frac{1}{2n}\|y-\Phi\|^2`.
Since :math:`\partial\Phi/\partial u_g = X_gv_g` and :math:`\partial\Phi/\partial v_g = u_gX_g`,

.. math::

    \frac{\sigma^2}{2}\operatorname{tr}(\mathrm{GGN})
    = \frac{\sigma^2}{2n}\sum_g \Big(\|X_gv_g\|^2 + u_g^2\|X_g\|_F^2\Big)
    = \frac{\sigma^2}{2n}\sum_g \Big(\frac{\|X_g\beta_g\|^2}{u_g^2} + u_g^2\|X_g\|_F^2\Big)
    \;\ge\; \frac{\sigma^2}{n}\sum_g \|X_g\|_F\,\|X_g\beta_g\|,

with equality at :math:`u_g^2 = \|X_g\beta_g\|/\|X_g\|_F` (AM-GM). Groups of size one give the
Lasso :math:`\sigma^2\sum_j (X^\top X/n)_{jj}|\beta_j|`: half the weights of the diagonal net's
Eq. (8), with the same number of parameters (u_j and v_j for each coordinate: 2d, as the diagonal
net's w1, w2).

Example:
    >>> import torch
    >>> from noisereg.closed_form import group_lasso_penalty, balanced_group_factorization
    >>> from noisereg.closed_form import hadamard_group_penalty
    >>> X = torch.eye(3, dtype=torch.float64)
    >>> groups, beta = [[0, 1], [2]], torch.tensor([3.0, 4.0, -1.0], dtype=torch.float64)
    >>> group_lasso_penalty(X, groups, beta, sigma=1.0)     # (√2 · 5 + 1 · 1) / 3
    tensor(2.6904, dtype=torch.float64)
    >>> u, v = balanced_group_factorization(X, groups, beta)
    >>> hadamard_group_penalty(X, groups, u, v, sigma=1.0)
    tensor(2.6904, dtype=torch.float64)

References:
    A. Orvieto, A. Raj, H. Kersting, F. Bach. Explicit Regularization in Overparametrized Models
    via Noise Injection. AISTATS 2023. https://arxiv.org/abs/2206.04613
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from noisereg.closed_form._checks import check_data, check_groups, check_shape, check_sigma, check_tensor


def _coef(name: str, t: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    check_tensor(name, t, ("X", X))
    return check_shape(name, t, ("d",), {"d": (X.shape[1], "X.shape[1]")})


def group_lasso_penalty(X: torch.Tensor, groups: Sequence[Sequence[int]], beta: torch.Tensor,
                        sigma: float) -> torch.Tensor:
    r"""Group-Lasso penalty of a Hadamard factorization, Sec. 2.5 of Orvieto et al. (2023).

    .. math::

        \frac{\sigma^2}{n}\sum_g \|X_g\|_F\,\|X_g\beta_g\|_2
        = \min_{u_gv_g = \beta_g} \frac{\sigma^2}{2n}\sum_g\Big(\|X_gv_g\|^2 + u_g^2\|X_g\|_F^2\Big)

    (an infimum for a group with :math:`X_g\beta_g = 0 \ne \beta_g`).

    .. note::
        The constant and the data-weighted group norm are derived in docs/THEORY.md §5.2, not
        taken from the paper; the form is checked in the tests against a numerical minimisation
        over factorizations.

    Args:
        X: inputs, shape (n, d), floating point, n >= 1.
        groups: list of non-empty lists of column indices of X that partitions range(d).
        beta: coefficients β, shape (d,), dtype of X.
        sigma: noise scale σ, finite, >= 0.

    Returns:
        Scalar tensor, dtype of X.

    Raises:
        TypeError: X or beta is not a floating tensor of X's dtype, groups is not a list of lists
            of integers, or sigma is not a real number.
        ValueError: a shape does not match X, groups does not partition the columns, X has no
            rows, or sigma is negative or not finite.

    References:
        A. Orvieto, A. Raj, H. Kersting, F. Bach. Explicit Regularization in Overparametrized
        Models via Noise Injection. AISTATS 2023. https://arxiv.org/abs/2206.04613
    """
    _, d = check_data(X, "d")
    groups = check_groups(groups, d)
    _coef("beta", beta, X)
    sigma = check_sigma(sigma)
    total = X.new_zeros(())
    for idx in groups:
        Xg = X[:, idx]
        total = total + torch.linalg.matrix_norm(Xg) * torch.linalg.vector_norm(Xg @ beta[idx])
    return sigma**2 / X.shape[0] * total


def hadamard_group_penalty(X: torch.Tensor, groups: Sequence[Sequence[int]], u: torch.Tensor,
                           v: torch.Tensor, sigma: float) -> torch.Tensor:
    r"""GGN penalty of a Hadamard factorization :math:`\beta_g = u_gv_g`, Sec. 2.5 of Orvieto et al. (2023).

    .. math::

        \frac{\sigma^2}{2}\operatorname{tr}(\mathrm{GGN})
        = \frac{\sigma^2}{2n}\sum_g \Big(\|X_gv_g\|^2 + u_g^2\|X_g\|_F^2\Big)

    for :math:`\Phi = \sum_g X_g u_g v_g` and :math:`L = \frac{1}{2n}\|y-\Phi\|^2`.

    Args:
        X: inputs, shape (n, d), floating point, n >= 1.
        groups: list of G non-empty lists of column indices of X that partitions range(d).
        u: one scalar per group, shape (G,), dtype of X; ``u[g]`` multiplies group ``groups[g]``.
        v: one entry per column, shape (d,), dtype of X; ``v[groups[g]]`` is :math:`v_g`.
        sigma: noise scale σ, finite, >= 0.

    Returns:
        Scalar tensor, dtype of X.

    Raises:
        TypeError: a tensor is not floating or not of X's dtype, groups is not a list of lists of
            integers, or sigma is not a real number.
        ValueError: a shape does not match X or groups, groups does not partition the columns,
            X has no rows, or sigma is negative or not finite.

    References:
        A. Orvieto, A. Raj, H. Kersting, F. Bach. Explicit Regularization in Overparametrized
        Models via Noise Injection. AISTATS 2023. https://arxiv.org/abs/2206.04613
    """
    _, d = check_data(X, "d")
    groups = check_groups(groups, d)
    check_tensor("u", u, ("X", X))
    check_shape("u", u, ("G",), {"G": (len(groups), "len(groups)")})
    _coef("v", v, X)
    sigma = check_sigma(sigma)
    total = X.new_zeros(())
    for g, idx in enumerate(groups):
        Xg = X[:, idx]
        total = total + (Xg @ v[idx]).pow(2).sum() + u[g].pow(2) * Xg.pow(2).sum()
    return sigma**2 / (2 * X.shape[0]) * total


def balanced_group_factorization(X: torch.Tensor, groups: Sequence[Sequence[int]],
                                 beta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Factorization :math:`\beta_g = u_gv_g` minimising the GGN penalty, Sec. 2.5 of Orvieto et al. (2023).

    .. math::

        u_g = \sqrt{\|X_g\beta_g\| / \|X_g\|_F},\qquad v_g = \beta_g / u_g,

    with :math:`u_g = v_g = 0` for :math:`\beta_g = 0` and :math:`u_g = 1` for :math:`X_g = 0`.

    Args:
        X: inputs, shape (n, d), floating point, n >= 1.
        groups: list of G non-empty lists of column indices of X that partitions range(d).
        beta: coefficients β, shape (d,), dtype of X.

    Returns:
        ``(u, v)`` of shapes (G,) and (d,), dtype of X, with ``u[g] * v[groups[g]] == beta[groups[g]]``.

    Raises:
        TypeError: X or beta is not a floating tensor of X's dtype, or groups is not a list of
            lists of integers.
        ValueError: a shape does not match X, groups does not partition the columns, X has no
            rows, or a group has :math:`X_g\beta_g = 0` with :math:`X_g \ne 0` and
            :math:`\beta_g \ne 0` (the minimum is then not attained: :math:`u_g \to 0`).

    References:
        A. Orvieto, A. Raj, H. Kersting, F. Bach. Explicit Regularization in Overparametrized
        Models via Noise Injection. AISTATS 2023. https://arxiv.org/abs/2206.04613
    """
    _, d = check_data(X, "d")
    groups = check_groups(groups, d)
    _coef("beta", beta, X)
    u = X.new_zeros(len(groups))
    v = torch.zeros_like(beta)
    for g, idx in enumerate(groups):
        Xg, bg = X[:, idx], beta[idx]
        x_norm, xb_norm = torch.linalg.matrix_norm(Xg), torch.linalg.vector_norm(Xg @ bg)
        if not bool(bg.any()):
            continue
        if x_norm == 0:
            u[g] = 1.0
        elif xb_norm == 0:
            raise ValueError(f"beta[groups[{g}]] must not lie in the null space of X[:, groups[{g}]] "
                             f"for the minimum to be attained, got X_g beta_g = 0 with beta_g = "
                             f"{bg.tolist()}")
        else:
            u[g] = (xb_norm / x_norm).sqrt()
        v[idx] = bg / u[g]
    return u, v


def group_lasso_solution(X: torch.Tensor, y: torch.Tensor, groups: Sequence[Sequence[int]], sigma: float, *,
                         tol: float = 1e-10, max_iter: int = 200_000) -> tuple[torch.Tensor, float]:
    r"""Minimiser of the group Lasso that noisy GD on a Hadamard factorization targets (Sec. 2.5).

    .. math::

        \hat\beta = \arg\min_\beta \frac{1}{2n}\|y - X\beta\|^2
        + \frac{\sigma^2}{n}\sum_g \|X_g\|_F\,\|X_g\beta_g\|_2

    (:func:`group_lasso_penalty`; docs/THEORY.md §5.2). With the thin QR :math:`X_g = Q_gR_g` and
    :math:`\theta_g = R_g\beta_g`, :math:`\|X_g\beta_g\| = \|\theta_g\|`: a standard group Lasso
    :math:`\frac{1}{2n}\|y - \sum_g Q_g\theta_g\|^2 + \sum_g \mu_g\|\theta_g\|`,
    :math:`\mu_g = \sigma^2\|X_g\|_F/n`, solved by FISTA (group soft-thresholding, step 1/L,
    :math:`L = \|Q\|_2^2/n`) until its optimality conditions hold to ``tol``:
    :math:`Q_g^\top r/n = \mu_g\theta_g/\|\theta_g\|` for :math:`\theta_g \ne 0`,
    :math:`\|Q_g^\top r/n\| \le \mu_g` otherwise (:math:`r = y - Q\theta`). Computed in float64.

    Args:
        X: inputs, shape (n, d), floating point, n >= 1; each group's columns linearly independent.
        y: targets, shape (n,), dtype of X.
        groups: a partition of ``range(d)`` into non-empty lists of column indices.
        sigma: noise scale σ, finite, >= 0.
        tol: bound on the optimality violation (default 1e-10).
        max_iter: FISTA iterations at most (default 200 000).

    Returns:
        ``(beta, violation)``: :math:`\hat\beta` of shape (d,), dtype of X, and the final
        violation of the optimality conditions (a float <= ``tol``).

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: a shape does not match X, ``groups`` is not a partition, sigma is negative or
            not finite, or a group's columns are linearly dependent.
        RuntimeError: the conditions do not hold to ``tol`` within ``max_iter`` iterations.

    Example:
        >>> import torch
        >>> X, y = torch.eye(3, dtype=torch.float64), torch.tensor([3.0, 4.0, 0.1], dtype=torch.float64)
        >>> beta, _ = group_lasso_solution(X, y, [[0, 1], [2]], sigma=1.0)   # shrinks ‖β_g‖ by nμ_g = √|g|
        >>> beta
        tensor([2.1515, 2.8686, 0.0000], dtype=torch.float64)
    """
    import numpy as np

    n, d = check_data(X, "d")
    check_shape("y", check_tensor("y", y, ("X", X)), ("n",), {"n": (n, "X.shape[0]")})
    idx = check_groups(groups, d)
    sigma = check_sigma(sigma)
    Xn, yn = X.detach().cpu().double().numpy(), y.detach().cpu().double().numpy()
    Qs, Rs = [], []
    for g, cols in enumerate(idx):
        Q, R = np.linalg.qr(Xn[:, cols])
        if np.abs(np.diag(R)).min() <= 1e-10 * np.abs(np.diag(R)).max():
            raise ValueError(f"X[:, groups[{g}]] must have full column rank for the whitening, got rank "
                             f"{np.linalg.matrix_rank(Xn[:, cols])} < {len(cols)}")
        Qs.append(Q)
        Rs.append(R)
    Q = np.hstack(Qs)
    cuts = np.cumsum([0] + [len(c) for c in idx])
    sl = [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:])]
    mu = np.array([sigma**2 * np.linalg.norm(Xn[:, cols]) / n for cols in idx])
    L = np.linalg.norm(Q, 2) ** 2 / n

    def prox(v: np.ndarray, step: float) -> np.ndarray:
        out = np.zeros_like(v)
        for g, s in enumerate(sl):
            norm = np.linalg.norm(v[s])
            if norm > step * mu[g]:
                out[s] = v[s] * (1 - step * mu[g] / norm)
        return out

    def kkt(theta: np.ndarray) -> float:
        grad = Q.T @ (yn - Q @ theta) / n
        worst = 0.0
        for g, s in enumerate(sl):
            nt = np.linalg.norm(theta[s])
            v = np.linalg.norm(grad[s] - mu[g] * theta[s] / nt) if nt > 0 else np.linalg.norm(grad[s]) - mu[g]
            worst = max(worst, float(v))
        return worst

    theta = np.zeros(Q.shape[1])
    z, t, viol = theta.copy(), 1.0, np.inf
    for it in range(max_iter):
        new = prox(z + Q.T @ (yn - Q @ z) / (n * L), 1 / L)
        t_new = (1 + np.sqrt(1 + 4 * t * t)) / 2
        z, theta, t = new + (t - 1) / t_new * (new - theta), new, t_new
        if it % 20 == 0 and (viol := kkt(theta)) <= tol:
            break
    else:
        viol = kkt(theta)
        if viol > tol:
            raise RuntimeError(f"FISTA did not reach tol={tol:g} in max_iter={max_iter} iterations "
                               f"(optimality violation {viol:.3g})")
    beta = np.zeros(d)
    for cols, R, s in zip(idx, Rs, sl):
        beta[cols] = np.linalg.solve(R, theta[s]) + 0.0   # + 0.0: no -0.0 in zero groups
    return torch.from_numpy(beta).to(X.dtype), viol
