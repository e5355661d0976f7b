r"""The paper's loss conventions, with the square root of each loss Hessian (docs/THEORY.md §1).

For predictions :math:`f\in\mathbb R^{n\times k}` (``model(x)``) and targets ``y``:

.. math::

    \text{square: } L = \frac1{2n}\sum_i \|y_i - f_i\|^2, \qquad
    \text{logistic: } L = \frac1n\sum_i \log(1+e^{-y_i f_i}),\ y_i\in\{-1,+1\}, \qquad
    \text{cross\_entropy: } L = \frac1n\sum_i -\log \operatorname{softmax}(f_i)_{y_i}.

Each loss is a sum over samples, so :math:`\nabla^2_f L` is block diagonal with one
:math:`k\times k` block :math:`H_i` per sample; :func:`hessian_sqrt` returns :math:`S_i` with
:math:`H_i = S_i S_i^\top`:

* square: :math:`H_i = I_k/n`, :math:`S_i = I_k/\sqrt n`;
* logistic (k = 1): :math:`H_i = p_i(1-p_i)/n`, :math:`p_i = \operatorname{sigmoid}(f_i)`;
* cross-entropy: :math:`H_i = (\operatorname{diag}(p_i) - p_ip_i^\top)/n`,
  :math:`S_i = (\operatorname{diag}(\sqrt{p_i}) - p_i\sqrt{p_i}^\top)/\sqrt n`
  (expand :math:`S_iS_i^\top` and use :math:`\sum_c p_{ic} = 1`).

Note that ``torch.nn.MSELoss`` is not the square loss here: it averages over outputs and has no ½.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("square", "logistic", "cross_entropy")


def check_loss(loss: str) -> str:
    """Return ``loss`` if it is one of :data:`LOSSES`, else raise a ValueError naming them."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    return loss


def as_predictions(f: torch.Tensor) -> torch.Tensor:
    """Model outputs as (n, k): a 1-D output (n,) is read as k = 1."""
    if f.dim() == 1:
        return f.unsqueeze(1)
    if f.dim() != 2:
        raise ValueError(f"model(x) must have shape (n, k), got {tuple(f.shape)}")
    return f


def check_targets(loss: str, f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Validate ``y`` against predictions ``f`` (n, k) and return it in the shape the loss uses."""
    n, k = f.shape
    if y.shape[0] != n:
        raise ValueError(f"y must have {n} rows like model(x), got shape {tuple(y.shape)}")
    if loss == "cross_entropy":
        if y.dim() != 1 or y.dtype not in (torch.int64, torch.int32, torch.uint8):
            raise ValueError(f"cross_entropy needs integer class labels of shape (n,), got {y.dtype} {tuple(y.shape)}")
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= k):
            raise ValueError(f"class labels must lie in [0, {k - 1}] for {k} outputs, got [{int(y.min())}, {int(y.max())}]")
        return y.long()
    if y.dim() == 1 and k > 1 and not y.dtype.is_floating_point:
        raise ValueError(f"y holds integer class labels of shape {tuple(y.shape)}, but loss={loss!r} needs targets "
                         f"shaped like model(x), ({n}, {k}): pass loss='cross_entropy' for class labels")
    y = y.reshape(n, -1).to(f.dtype)
    if y.shape[1] != k:
        raise ValueError(f"y must have {k} columns like model(x), got shape {tuple(y.shape)}")
    if loss == "logistic":
        if k != 1:
            raise ValueError(f"logistic loss needs one output (k = 1), got k = {k}")
        if not torch.all((y == 1) | (y == -1)):
            raise ValueError("logistic loss needs labels in {-1, +1}")
    return y


def loss_value(loss: str, f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The loss ``L(f)`` of the paper's convention (a scalar tensor, differentiable in ``f``).

    Example:
        >>> loss_value("square", torch.zeros(2, 1), torch.ones(2))
        tensor(0.5000)
    """
    check_loss(loss)
    f = as_predictions(f)
    y = check_targets(loss, f, y)
    if loss == "square":
        return 0.5 * (y - f).pow(2).sum() / f.shape[0]
    if loss == "logistic":
        return F.softplus(-y * f).mean()
    return F.cross_entropy(f, y)


def per_sample_loss(loss: str, f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample terms ``ℓ_i`` with ``L = mean_i ℓ_i``; ``f`` may carry leading batch dims (..., n, k)."""
    if loss == "square":
        return 0.5 * (y - f).pow(2).sum(-1)
    if loss == "logistic":
        return F.softplus(-y * f).squeeze(-1)
    logp = torch.log_softmax(f, dim=-1)
    return -logp.gather(-1, y.expand(*f.shape[:-1]).unsqueeze(-1)).squeeze(-1)


def hessian_sqrt(loss: str, f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""Per-sample square roots ``S`` (n, k, r) of the loss Hessian: ``∇²L = blockdiag(S_i S_iᵀ)``.

    ``r = k`` for the square loss, ``r = 1`` for logistic, and ``r = k − 1`` for cross-entropy,
    whose per-sample Hessian :math:`(\mathrm{diag}(p) - pp^\top)/n` has rank :math:`k-1` (its null
    vector is :math:`\mathbf 1`). With :math:`q = \sqrt p` (a unit vector) and the Householder
    reflection :math:`P = I - 2vv^\top/\|v\|^2`, :math:`v = q + e_k`, which maps :math:`q` to
    :math:`-e_k`, the first :math:`k-1` columns :math:`Q` of :math:`P` are an orthonormal basis of
    :math:`q^\perp`, and

    .. math::

        S = \mathrm{diag}(q)\,Q/\sqrt n,\qquad
        SS^\top = \mathrm{diag}(q)(I - qq^\top)\mathrm{diag}(q)/n = (\mathrm{diag}(p) - pp^\top)/n.

    :math:`\|v\|^2 = 2(1 + q_k) \ge 2`, so the reflection is stable for every p. One column fewer
    is one backward pass fewer in :func:`noisereg.ggn_trace` (docs/THEORY.md §4).

    Example:
        >>> S = hessian_sqrt("cross_entropy", torch.zeros(1, 2), torch.tensor([0]))
        >>> S.shape
        torch.Size([1, 2, 1])
        >>> S @ S.transpose(1, 2)  # (diag(p) - p pᵀ) / n with p = (1/2, 1/2), n = 1
        tensor([[[ 0.2500, -0.2500],
                 [-0.2500,  0.2500]]])
    """
    check_loss(loss)
    f = as_predictions(f).detach()
    y = check_targets(loss, f, y)
    n, k = f.shape
    if loss == "square":
        return torch.eye(k, dtype=f.dtype, device=f.device).expand(n, k, k) / n ** 0.5
    if loss == "logistic":
        p = torch.sigmoid(f)
        return (p * (1 - p) / n).sqrt().unsqueeze(-1)
    q = torch.softmax(f, dim=1).sqrt()
    if k == 1:  # one class: the loss is constant
        return torch.zeros(n, 1, 1, dtype=f.dtype, device=f.device)
    v = q.clone()
    v[:, -1] += 1.0
    Q = v[:, :, None] * v[:, None, :-1] * (-2.0 / v.pow(2).sum(1))[:, None, None]  # (n, k, k-1)
    Q[:, :-1, :] += torch.eye(k - 1, dtype=f.dtype, device=f.device)
    return q[:, :, None] * Q / n ** 0.5
