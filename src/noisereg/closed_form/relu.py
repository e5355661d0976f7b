r"""One hidden ReLU layer: the GGN penalty of layer-wise noise (Sec. 3.3 of Orvieto et al. (2023)).

:math:`\Phi = W_2(W_1X^\top)_+ \in \mathbb{R}^{d_2\times n}` (no biases), square loss
:math:`L = \frac{1}{2n}\|Y^\top - \Phi\|_F^2`. With :math:`Z = W_1X^\top`,
:math:`\partial\Phi_{ki}/\partial (W_2)_{kj} = (Z_{ji})_+` and
:math:`\partial\Phi_{ki}/\partial (W_1)_{jl} = (W_2)_{kj}\,\mathbb 1[Z_{ji}>0]\,x_{il}`; summing the
squares gives the two terms below.

Example:
    >>> import torch
    >>> from noisereg.closed_form import relu_net_penalty
    >>> X = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    >>> W1 = torch.tensor([[1.0, -1.0]], dtype=torch.float64)      # active on x_1 only
    >>> W2 = torch.tensor([[2.0]], dtype=torch.float64)
    >>> relu_net_penalty(X, W1, W2, sigma=1.0)                     # (1·1 + 4·1) / 4
    tensor(1.2500, dtype=torch.float64)

References:
    A. Orvieto, A. Raj, H. Kersting, F. Bach. Explicit Regularization in Overparametrized Models
    via Noise Injection. AISTATS 2023. https://arxiv.org/abs/2206.04613
"""

from __future__ import annotations

import torch

from noisereg.closed_form._checks import check_sigma
from noisereg.closed_form.linear import _check_net


def relu_net_penalty(X: torch.Tensor, W1: torch.Tensor, W2: torch.Tensor,
                     sigma: float) -> torch.Tensor:
    r"""GGN penalty of a one-hidden-layer ReLU network, Sec. 3.3 of Orvieto et al. (2023).

    .. math::

        \frac{\sigma^2}{2}\operatorname{tr}(\mathrm{GGN}) = \frac{\sigma^2}{2n}\Big[
        d_2\,\|(W_1X^\top)_+\|_F^2
        + \sum_{j=1}^{d_1}\sum_{i=1}^{n}\|(W_2)_{\cdot j}\|^2\,\mathbb 1[(W_1X^\top)_{ji}>0]\,\|x_i\|^2
        \Big],

    the second-order term of :math:`\tilde R_\sigma - R` for layer-wise noise (std
    :math:`\sigma\sqrt2` on one of the two layers) and of :math:`R_\sigma - R` for full noise.

    .. note::
        A shorter form without the factor :math:`d_2` and without :math:`\|x_i\|^2` is only the
        case d2 = 1 with unit-norm inputs; this is the corrected general form of
        docs/THEORY.md §5.7, equal to σ²/2·tr(GGN) exactly. The derivative of the ReLU at 0 is
        taken to be 0, as in ``torch.relu``.

    Args:
        X: inputs :math:`x_i` as rows, shape (n, d0), floating point, n >= 1.
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
    Z = W1 @ X.T                                            # (d1, n)
    active = (Z > 0).to(X.dtype)
    first = W2.shape[0] * torch.relu(Z).pow(2).sum()
    second = W2.pow(2).sum(0) @ active @ X.pow(2).sum(1)    # Σ_j ||W2[:, j]||² Σ_i 1[Z_ji>0] ||x_i||²
    return sigma**2 / (2 * n) * (first + second)
