r"""Two-layer linear networks over their factorizations: a nuclear-norm penalty (Sec. 2.4, Eq. (10)).

For :math:`M = W_2W_1` the penalty of Eq. (9) is
:math:`\frac{\sigma^2}{2n}[d_2\|B\|_F^2 + c^2\|W_2\|_F^2]` with :math:`B = W_1X^\top`,
:math:`c = \|X\|_F` and :math:`W_2B = MX^\top`. By AM-GM and
:math:`\|W_2B\|_* \le \|W_2\|_F\|B\|_F`,

.. math::

    d_2\|B\|_F^2 + c^2\|W_2\|_F^2 \;\ge\; 2\sqrt{d_2}\,c\,\|W_2\|_F\|B\|_F
    \;\ge\; 2\sqrt{d_2}\,c\,\|MX^\top\|_*,

with equality for the balanced factorization built from the SVD :math:`MX^\top = USV^\top`:
:math:`W_2 = \alpha\,US^{1/2}`, :math:`W_1 = \alpha^{-1}S^{-1/2}U^\top M` (zero-padded to width
d1), :math:`\alpha^2 = \sqrt{d_2}/c`. Then :math:`W_1X^\top = \alpha^{-1}S^{1/2}V^\top` and
:math:`W_2W_1 = UU^\top M = M` whenever :math:`\operatorname{range} M = \operatorname{range} MX^\top`
(always when X has full column rank).

Example:
    >>> import torch
    >>> from noisereg.closed_form import nuclear_norm_penalty, balanced_factorization
    >>> from noisereg.closed_form import linear_net_penalty
    >>> X = torch.eye(2, dtype=torch.float64)
    >>> M = torch.tensor([[3.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    >>> nuclear_norm_penalty(X, M, d2=2, sigma=1.0)    # √2 · √2 · 4 / 2
    tensor(4.0000, dtype=torch.float64)
    >>> W1, W2 = balanced_factorization(X, M, d1=3, d2=2)
    >>> torch.allclose(W2 @ W1, M), round(linear_net_penalty(X, W1, W2, 1.0).item(), 12)
    (True, 4.0)

References:
    A. Orvieto, A. Raj, H. Kersting, F. Bach. Explicit Regularization in Overparametrized Models
    via Noise Injection. AISTATS 2023. https://arxiv.org/abs/2206.04613
"""

from __future__ import annotations

import math

import torch

from noisereg.closed_form._checks import check_data, check_int, check_shape, check_sigma, check_tensor


def _check_product(X: torch.Tensor, M: torch.Tensor, d2: int) -> tuple[int, int]:
    n, d0 = check_data(X)
    d2 = check_int("d2", d2)
    check_tensor("M", M, ("X", X))
    check_shape("M", M, ("d2", "d0"), {"d2": (d2, None), "d0": (d0, "X.shape[1]")})
    return n, d2


def nuclear_norm_penalty(X: torch.Tensor, M: torch.Tensor, d2: int, sigma: float) -> torch.Tensor:
    r"""Nuclear-norm penalty of a linear net's end-to-end map, Eq. (10) of Orvieto et al. (2023).

    .. math::

        \frac{\sigma^2}{n}\,\sqrt{d_2}\,\|X\|_F\,\|M X^\top\|_*
        = \min_{W_2W_1 = M} \frac{\sigma^2}{2n}\left[d_2\|W_1X^\top\|_F^2 + \|W_2\|_F^2\|X\|_F^2\right]

    (an infimum when :math:`\operatorname{range} M \ne \operatorname{range} MX^\top`; the
    minimum needs d1 >= rank M). Eq. (10) is :math:`\frac{1}{2n}\|Y^\top - MX^\top\|_F^2` plus
    this penalty.

    Args:
        X: inputs, shape (n, d0), floating point, n >= 1.
        M: end-to-end map :math:`W_2W_1`, shape (d2, d0), dtype of X.
        d2: number of outputs, M.shape[0], integer >= 1.
        sigma: noise scale σ, finite, >= 0.

    Returns:
        Scalar tensor, dtype of X.

    Raises:
        TypeError: X or M is not a floating tensor of X's dtype, d2 is not an integer, or sigma
            is not a real number.
        ValueError: M's shape is not (d2, d0), d2 < 1, X has no rows, or sigma is negative or
            not finite.

    References:
        A. Orvieto, A. Raj, H. Kersting, F. Bach. Explicit Regularization in Overparametrized
        Models via Noise Injection. AISTATS 2023. https://arxiv.org/abs/2206.04613
    """
    n, d2 = _check_product(X, M, d2)
    sigma = check_sigma(sigma)
    nuc = torch.linalg.matrix_norm(M @ X.T, ord="nuc")
    return sigma**2 / n * math.sqrt(d2) * torch.linalg.matrix_norm(X) * nuc


def balanced_factorization(X: torch.Tensor, M: torch.Tensor, d1: int,
                           d2: int) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Factorization :math:`M = W_2W_1` minimising Eq. (9), Sec. 2.4 of Orvieto et al. (2023).

    .. math::

        MX^\top = USV^\top,\quad \alpha^2 = \sqrt{d_2}/\|X\|_F,\quad
        W_2 = \alpha\,U S^{1/2},\quad W_1 = \alpha^{-1} S^{-1/2} U^\top M,

    zero-padded to inner width d1; :func:`linear_net_penalty` at ``(W1, W2)`` equals
    :func:`nuclear_norm_penalty` at M. The rank r of :math:`MX^\top` counts singular values
    above ``max(d2, n) · eps · s_max``.

    Args:
        X: inputs, shape (n, d0), floating point, n >= 1.
        M: end-to-end map, shape (d2, d0), dtype of X.
        d1: inner width, integer >= rank(M Xᵀ).
        d2: number of outputs, M.shape[0], integer >= 1.

    Returns:
        ``(W1, W2)`` of shapes (d1, d0) and (d2, d1), dtype of X.

    Raises:
        TypeError: X or M is not a floating tensor of X's dtype, or d1, d2 are not integers.
        ValueError: M's shape is not (d2, d0), d1 or d2 < 1, d1 < rank(M Xᵀ), X has no rows, or
            the minimum is not attained because range(M) is not within range(M Xᵀ).

    References:
        A. Orvieto, A. Raj, H. Kersting, F. Bach. Explicit Regularization in Overparametrized
        Models via Noise Injection. AISTATS 2023. https://arxiv.org/abs/2206.04613
    """
    n, d2 = _check_product(X, M, d2)
    d1 = check_int("d1", d1)
    A = M @ X.T
    U, S, _ = torch.linalg.svd(A, full_matrices=False)
    eps = torch.finfo(X.dtype).eps
    r = int((S > max(A.shape) * eps * S.max()).sum()) if S.numel() and S.max() > 0 else 0
    if r > d1:
        raise ValueError(f"d1 must be >= rank(M Xᵀ) = {r} for a factorization to exist, got {d1}")
    U, S = U[:, :r], S[:r]
    W1 = M.new_zeros(d1, M.shape[1])
    W2 = M.new_zeros(d2, d1)
    if r:
        alpha = math.sqrt(math.sqrt(d2) / torch.linalg.matrix_norm(X).item())
        W2[:, :r] = alpha * U * S.sqrt()
        W1[:r] = (U.T @ M) / (alpha * S.sqrt())[:, None]
    resid = torch.linalg.matrix_norm(M - U @ (U.T @ M)).item()
    if resid > math.sqrt(eps) * max(torch.linalg.matrix_norm(M).item(), 1.0):
        raise ValueError(
            "M must map into range(M Xᵀ) for the minimum over factorizations to be attained "
            f"(it is then only an infimum; X lacks full column rank), got ||M - UUᵀM||_F = {resid:.3g}")
    return W1, W2


def _check_targets(X: torch.Tensor, Y: torch.Tensor) -> tuple[int, int, int]:
    n, d0 = check_data(X)
    check_tensor("Y", Y, ("X", X))
    check_shape("Y", Y, ("n", "d2"), {"n": (n, "X.shape[0]")})
    return n, d0, Y.shape[1]


def nuclear_norm_objective(X: torch.Tensor, Y: torch.Tensor, M: torch.Tensor, sigma: float) -> torch.Tensor:
    r"""Nuclear-norm regression objective F(M), Eq. (10) of Orvieto et al. (2023).

    .. math::

        F(M) = \frac{1}{2n}\|Y^\top - MX^\top\|_F^2 + \frac{\sigma^2}{n}\sqrt{d_2}\,\|X\|_F\,\|MX^\top\|_*

    (docs/THEORY.md §5.3), the minimum of the square loss plus Eq. (9) over the factorizations
    :math:`M = W_2W_1`; the penalty is :func:`nuclear_norm_penalty` with d2 = Y.shape[1].

    Args:
        X: inputs, shape (n, d0), floating point, n >= 1.
        Y: targets, shape (n, d2), dtype of X.
        M: end-to-end map, shape (d2, d0), dtype of X.
        sigma: noise scale σ, finite, >= 0.

    Returns:
        Scalar tensor, dtype of X.

    Raises:
        TypeError: an argument is not a floating tensor of X's dtype, or sigma is not a real number.
        ValueError: a shape does not match, or sigma is negative or not finite.

    Example:
        >>> import torch
        >>> X, Y = torch.eye(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64)
        >>> nuclear_norm_objective(X, Y, 0.5 * Y, sigma=0.5)   # ¼ · ½ · 2/2 + ¼ · √2 · √2 · 1 / 2
        tensor(0.3750, dtype=torch.float64)
    """
    _, _, d2 = _check_targets(X, Y)
    return (Y.T - M @ X.T).pow(2).sum() / (2 * X.shape[0]) + nuclear_norm_penalty(X, M, d2, sigma)


def nuclear_norm_regression(X: torch.Tensor, Y: torch.Tensor, sigma: float) -> torch.Tensor:
    r"""Minimiser of Eq. (10) of Orvieto et al. (2023) by singular-value soft-thresholding.

    With the thin QR :math:`X = QR` (X of full column rank) and :math:`B = MR^\top`:
    :math:`MX^\top = BQ^\top`, :math:`\|BQ^\top\|_* = \|B\|_*` and

    .. math::

        nF(M) = \tfrac12\|Y^\top Q - B\|_F^2 + \tau\|B\|_* + \tfrac12\|Y^\top(I - QQ^\top)\|_F^2,
        \qquad \tau = \sigma^2\sqrt{d_2}\,\|X\|_F,

    minimised by soft-thresholding the singular values of :math:`Y^\top Q` at τ; then
    :math:`\hat M = BR^{-\top}`. Noisy GD on a two-layer linear net (full or layer-wise noise)
    converges to :math:`\hat M` (docs/THEORY.md §5.3, §5.5); :func:`nuclear_norm_kkt` certifies it.

    Args:
        X: inputs, shape (n, d0), floating point, full column rank.
        Y: targets, shape (n, d2), dtype of X.
        sigma: noise scale σ, finite, >= 0.

    Returns:
        :math:`\hat M`, shape (d2, d0), dtype of X.

    Raises:
        TypeError: X or Y is not a floating tensor of X's dtype, or sigma is not a real number.
        ValueError: a shape does not match, sigma is negative or not finite, or X does not have
            full column rank (the minimiser is then not unique).

    Example:
        >>> import torch
        >>> X, Y = torch.eye(2, dtype=torch.float64), torch.diag(torch.tensor([3.0, 1.0], dtype=torch.float64))
        >>> M = nuclear_norm_regression(X, Y, sigma=1.0)   # singular values 3, 1 minus τ = √2 · √2
        >>> torch.linalg.svdvals(M).round(decimals=12).tolist()
        [1.0, 0.0]
    """
    _check_targets(X, Y)
    sigma = check_sigma(sigma)
    Q, R = torch.linalg.qr(X)
    diag = R.diagonal().abs()
    if diag.min() <= X.shape[0] * torch.finfo(X.dtype).eps * diag.max():
        raise ValueError(f"X must have full column rank {X.shape[1]} (the minimiser of Eq. (10) is then unique)")
    tau = sigma**2 * math.sqrt(Y.shape[1]) * torch.linalg.matrix_norm(X)
    U, S, Vh = torch.linalg.svd(Y.T @ Q, full_matrices=False)
    B = (U * (S - tau).clamp_min(0)) @ Vh
    return torch.linalg.solve_triangular(R, B.T, upper=True).T           # B R^{-T}


def nuclear_norm_kkt(X: torch.Tensor, Y: torch.Tensor, M: torch.Tensor, sigma: float) -> float:
    r"""Violation of the optimality condition of Eq. (10) at M (0 at the minimiser).

    With the notation of :func:`nuclear_norm_regression`, M minimises F iff
    :math:`G = (Y^\top Q - B)/\tau` is a subgradient of :math:`\|\cdot\|_*` at
    :math:`B = USV^\top` (rank k): :math:`U^\top GV = I_k`, :math:`U^\top G(I - VV^\top) = 0`,
    :math:`(I - UU^\top)GV = 0` and :math:`\|(I - UU^\top)G(I - VV^\top)\|_2 \le 1`. Returns the
    largest violation (Frobenius norms; the excess of the spectral norm over 1).

    Args:
        X: inputs, shape (n, d0), floating point, full column rank.
        Y: targets, shape (n, d2), dtype of X.
        M: candidate, shape (d2, d0), dtype of X.
        sigma: noise scale σ, finite, > 0.

    Returns:
        A float >= 0.

    Raises:
        TypeError: an argument is not a floating tensor of X's dtype, or sigma is not a real number.
        ValueError: a shape does not match, or sigma is not > 0 and finite.

    Example:
        >>> import torch
        >>> X, Y = torch.eye(2, dtype=torch.float64), torch.diag(torch.tensor([3.0, 1.0], dtype=torch.float64))
        >>> nuclear_norm_kkt(X, Y, nuclear_norm_regression(X, Y, 1.0), 1.0) < 1e-12
        True
    """
    _check_targets(X, Y)
    _check_product(X, M, Y.shape[1])
    if check_sigma(sigma) == 0:
        raise ValueError("sigma must be > 0 for the optimality condition of Eq. (10), got 0.0")
    Q, R = torch.linalg.qr(X)
    tau = sigma**2 * math.sqrt(Y.shape[1]) * torch.linalg.matrix_norm(X)
    B = M @ R.T
    G = (Y.T @ Q - B) / tau
    U, S, Vh = torch.linalg.svd(B, full_matrices=False)
    k = int((S > 1e-9 * max(S.max().item(), 1.0)).sum())
    U, V = U[:, :k], Vh[:k].T
    Pu, Pv = torch.eye(B.shape[0], dtype=B.dtype) - U @ U.T, torch.eye(B.shape[1], dtype=B.dtype) - V @ V.T
    parts = [torch.linalg.matrix_norm(U.T @ G @ V - torch.eye(k, dtype=B.dtype)),
             torch.linalg.matrix_norm(U.T @ G @ Pv), torch.linalg.matrix_norm(Pu @ G @ V),
             (torch.linalg.matrix_norm(Pu @ G @ Pv, ord=2) - 1).clamp_min(0)]
    return max(float(p) for p in parts)
