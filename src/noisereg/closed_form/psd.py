r"""PSD factorizations :math:`\Phi = ww^\top`: noise injection is a trace penalty (Sec. 2.5).

:math:`w \in \mathbb{R}^{d\times r}`, :math:`\Phi(w) = ww^\top \in \mathbb{R}^{d\times d}`. We use
the plain square loss :math:`L(\Phi) = \frac12\|Y - \Phi\|_F^2` (Y a d×d target, no sample
average: the matrix-completion/sensing-free version; with :math:`\frac{1}{2N}` put 1/N in front of
every term below). From :math:`\partial\Phi_{kl}/\partial w_{pa} = \delta_{pk}w_{la} + \delta_{pl}w_{ka}`,

.. math::

    \operatorname{tr}(\mathrm{GGN}) = \sum_{k,l}\|\partial\Phi_{kl}/\partial w\|^2
    = \sum_{k,l}\big(\|w_l\|^2 + \|w_k\|^2 + 2\delta_{kl}\|w_k\|^2\big)
    = 2(d+1)\operatorname{tr}(\Phi).

Unlike the other models, :math:`D^2\Phi[I] = \sum_{p,a}\partial^2\Phi/\partial w_{pa}^2 = 2r\,I \ne 0`,
so the full-noise risk gets the extra first-order term
:math:`\frac{\sigma^2}{2}\langle\nabla L, 2rI\rangle = \sigma^2 r\operatorname{tr}(\Phi - Y)`
(only Theorem 2 of the paper applies); it is also a trace, see :func:`psd_full_noise_risk`.

Example:
    >>> import torch
    >>> from noisereg.closed_form import psd_trace_penalty
    >>> w = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]], dtype=torch.float64)  # d = 2, r = 3
    >>> psd_trace_penalty(w, sigma=1.0)                    # (d + 1) tr(w wᵀ) = 3 · 5
    tensor(15., dtype=torch.float64)

References:
    A. Orvieto, A. Raj, H. Kersting, F. Bach. Explicit Regularization in Overparametrized Models
    via Noise Injection. AISTATS 2023. https://arxiv.org/abs/2206.04613
"""

from __future__ import annotations

import torch

from noisereg.closed_form._checks import check_shape, check_sigma, check_tensor


def psd_trace_penalty(w: torch.Tensor, sigma: float) -> torch.Tensor:
    r"""GGN penalty of the PSD factorization :math:`\Phi = ww^\top`, Sec. 2.5 of Orvieto et al. (2023).

    .. math::

        \frac{\sigma^2}{2}\operatorname{tr}(\mathrm{GGN}) = \sigma^2 (d+1)\operatorname{tr}(ww^\top)
        = \sigma^2 (d+1)\operatorname{tr}(\Phi)

    for :math:`L(\Phi) = \frac12\|Y - \Phi\|_F^2`: a trace (nuclear-norm) penalty on the PSD
    matrix Φ.

    .. note::
        The paper states only that the penalty is a trace penalty; the constant d + 1 is derived
        in this module's docstring and checked against a brute-force GGN. It does not depend on r.

    Args:
        w: factor, shape (d, r), floating point.
        sigma: noise scale σ, finite, >= 0.

    Returns:
        Scalar tensor, dtype of w.

    Raises:
        TypeError: w is not a floating tensor, or sigma is not a real number.
        ValueError: w is not 2-D, or sigma is negative or not finite.

    References:
        A. Orvieto, A. Raj, H. Kersting, F. Bach. Explicit Regularization in Overparametrized
        Models via Noise Injection. AISTATS 2023. https://arxiv.org/abs/2206.04613
    """
    check_shape("w", check_tensor("w", w), ("d", "r"))
    sigma = check_sigma(sigma)
    return sigma**2 * (w.shape[0] + 1) * w.pow(2).sum()


def psd_full_noise_risk(Y: torch.Tensor, w: torch.Tensor, sigma: float) -> torch.Tensor:
    r"""Exact full-noise smoothed risk of :math:`\Phi = ww^\top`, Sec. 2.5 of Orvieto et al. (2023).

    With every entry of w perturbed by independent :math:`N(0,\sigma^2)` noise and
    :math:`L(\Phi) = \frac12\|Y-\Phi\|_F^2`,

    .. math::

        R_\sigma = R + \sigma^2\big[(d+1+r)\operatorname{tr}(\Phi) - r\operatorname{tr}(Y)\big]
                 + \frac{\sigma^4}{2}\,d\,r\,(d+r+1),

    where :math:`\sigma^2(d+1)\operatorname{tr}\Phi` is :func:`psd_trace_penalty`,
    :math:`\sigma^2 r\operatorname{tr}(\Phi - Y)` comes from :math:`D^2\Phi[I] = 2rI`
    (:math:`\mathbb{E}\,EE^\top = rI`) and the constant is
    :math:`\frac{\sigma^4}{2}\mathbb{E}\|EE^\top\|_F^2`.

    .. note::
        Derived here (not printed in the paper); checked by Monte Carlo in the tests.

    Args:
        Y: target, shape (d, d), dtype of w.
        w: factor, shape (d, r), floating point.
        sigma: noise scale σ, finite, >= 0.

    Returns:
        Scalar tensor, dtype of w.

    Raises:
        TypeError: w or Y is not a floating tensor of w's dtype, or sigma is not a real number.
        ValueError: w is not 2-D, Y's shape is not (d, d), or sigma is negative or not finite.

    References:
        A. Orvieto, A. Raj, H. Kersting, F. Bach. Explicit Regularization in Overparametrized
        Models via Noise Injection. AISTATS 2023. https://arxiv.org/abs/2206.04613
    """
    check_shape("w", check_tensor("w", w), ("d", "r"))
    d, r = w.shape
    check_tensor("Y", Y, ("w", w))
    check_shape("Y", Y, ("d", "d"), {"d": (d, "w.shape[0]")})
    pen = psd_trace_penalty(w, sigma)
    sigma = check_sigma(sigma)
    phi = w @ w.T
    risk = 0.5 * (Y - phi).pow(2).sum()
    return (risk + pen + sigma**2 * r * (torch.trace(phi) - torch.trace(Y))
            + 0.5 * sigma**4 * d * r * (d + r + 1))


def psd_soft_threshold(Y: torch.Tensor, c: float) -> torch.Tensor:
    r"""Minimiser over PSD Φ of :math:`\frac12\|Y - \Phi\|_F^2 + c\operatorname{tr}\Phi` (Sec. 2.5).

    Since :math:`\frac12\|Y-\Phi\|_F^2 + c\operatorname{tr}\Phi = \frac12\|(Y - cI) - \Phi\|_F^2 + \text{const}`,
    the minimiser is the projection of :math:`Y - cI` onto the PSD cone, i.e. eigenvalue
    soft-thresholding:

    .. math::

        \hat\Phi = V\max(\Lambda - c, 0)V^\top, \qquad Y = V\Lambda V^\top.

    With :math:`c = \sigma^2(d+1)` it minimises the effective risk (:func:`psd_trace_penalty`);
    with :math:`c = \sigma^2(d+1+r)` the exact full-noise risk (:func:`psd_full_noise_risk`), the
    target of noisy GD on :math:`\Phi = ww^\top` (docs/THEORY.md §5.4).

    Args:
        Y: symmetric target, shape (d, d), floating point.
        c: trace weight, a real number (c < 0 is allowed: it thresholds at a negative level).

    Returns:
        :math:`\hat\Phi`, shape (d, d), dtype of Y.

    Raises:
        TypeError: Y is not a floating tensor.
        ValueError: Y is not square or not symmetric (up to 1e-10 relative).

    Example:
        >>> import torch
        >>> psd_soft_threshold(torch.diag(torch.tensor([3.0, 0.5, -1.0], dtype=torch.float64)), c=1.0).diagonal()
        tensor([2., 0., 0.], dtype=torch.float64)
    """
    check_tensor("Y", Y)
    check_shape("Y", Y, ("d", "d"), {"d": (Y.shape[0], "Y.shape[0]")} if Y.dim() == 2 else None)
    if not torch.allclose(Y, Y.T, rtol=0, atol=1e-10 * max(float(Y.abs().max()), 1.0)):
        raise ValueError("Y must be symmetric, got max |Y - Yᵀ| = "
                         f"{float((Y - Y.T).abs().max()):.3g}")
    lam, V = torch.linalg.eigh(Y)
    return (V * (lam - c).clamp_min(0)) @ V.T
