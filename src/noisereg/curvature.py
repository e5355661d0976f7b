r"""Curvature of the risk: the exact GGN trace (the paper's regularizer) and Hutchinson's tr(H).

Eq. (6) of Orvieto et al. (2023): the explicit regularizer of noise injection is

.. math::

    \tfrac{\sigma^2}{2}\operatorname{tr}\big(\nabla^2 L(\Phi)\, D\Phi\, D\Phi^\top\big)
    = \tfrac{\sigma^2}{2}\sum_i \big\|S_i^\top J_i\big\|_F^2,
    \qquad \nabla^2 L = \operatorname{blockdiag}_i(S_i S_i^\top),\ J_i = \partial f(x_i)/\partial w,

the trace of the generalized Gauss-Newton matrix (GGN), a sum of squared per-sample gradient
norms of the "pseudo-outputs" :math:`s_{ic}^\top f(x_i)` (:mod:`noisereg.losses` gives
:math:`S_i`). :func:`ggn_trace` computes it without Jacobians, from one forward and one batched
backward per chunk of samples and closed forms per layer (``Linear``, ``Conv1d/2d``, eval-mode
``BatchNorm``; :mod:`noisereg._per_sample` holds that engine and states them).

The samples go through in chunks whose size is set by the model, not by ``len(x)``,
so peak memory does not grow with the number of samples. :func:`sampled_ggn_trace` replaces the
``r`` columns of :math:`S` by one column per label draw from the model's predictive
distribution: an unbiased estimate at about one gradient per draw.

Any other module with trainable parameters (and a module called twice, or a tied parameter) goes
through the general path: per-sample Jacobians with ``torch.func.vmap(jacrev)``, exact but slower.
Supported around them: any parameter-free module (ReLU, max-pool, residual additions, reshapes).
Attention modules (``nn.MultiheadAttention``, ``nn.TransformerEncoderLayer``, a hand-written softmax attention) work
through the general path; their scaled-dot-product attention runs on the math kernel here
(:func:`math_attention`), whose operations have double backward and batching rules.
Not supported: modules whose output mixes samples or is random (``BatchNorm`` in training mode or
without running statistics, active ``Dropout``): call ``model.eval()``; an error says so.

For networks that are piecewise linear in each single weight (linear/conv layers, ReLU,
max-pool, eval BatchNorm, residual additions) :math:`D^2\Phi[I] = 0`, so the Hessian's diagonal
equals the GGN's and ``ggn_trace`` is exactly the Hessian trace, cheaply. For smooth nets (tanh)
they differ by :math:`\sum_i \nabla L_i \cdot D^2 f_i[I]`; :func:`hessian_trace` estimates tr(H).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd

from noisereg import _per_sample as per_sample
from noisereg.losses import check_loss, check_targets, hessian_sqrt, loss_value

METHODS = ("auto", "functorch")


def math_attention(fn):
    """Run ``fn`` with ``F.scaled_dot_product_attention`` on its math kernel.

    The fused kernels (flash / memory-efficient attention, which ``nn.MultiheadAttention`` and
    ``nn.TransformerEncoderLayer`` call) have no double backward, which :func:`hessian_trace`
    needs, and no ``vmap`` batching rule, which the per-sample Jacobians need; the math kernel
    computes the same attention with differentiable operations. Models without attention are
    unaffected.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with sdpa_kernel(SDPBackend.MATH):
            return fn(*args, **kwargs)

    return wrapped


def check_eval_mode(model: nn.Module) -> None:
    """Raise if a module mixes samples or is random, so that the risk is not a per-sample sum."""
    for name, m in model.named_modules():
        if isinstance(m, _BatchNorm) and (m.training or not m.track_running_stats):
            raise ValueError(
                f"module {name!r} ({type(m).__name__}) normalises with batch statistics, which mixes "
                "samples: the GGN is then not a sum over samples. Call model.eval() first"
            )
        if isinstance(m, _DropoutNd) and m.training and m.p > 0:
            raise ValueError(f"module {name!r} ({type(m).__name__}) is random in training mode; call model.eval() first")


# Modules whose output is piecewise linear in each single weight and in their input (eval mode).
_PIECEWISE_LINEAR = (
    nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ReLU, nn.LeakyReLU, nn.ReLU6, nn.Hardtanh,
    nn.PReLU, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d, nn.Flatten, nn.Unflatten, nn.Identity, _DropoutNd, _BatchNorm,
)
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def is_piecewise_linear(model: nn.Module) -> bool:
    r"""True if every diagonal second derivative of the model's output vanishes: :math:`D^2\Phi[I] = 0`.

    Then :math:`\operatorname{tr}\nabla^2 R = \operatorname{tr}(\nabla^2L\,D\Phi D\Phi^\top)` exactly
    (docs/THEORY.md §4), and :func:`ggn_trace` is the Hessian's trace. Decided from the module
    tree, conservatively: every module is a linear/conv/ReLU-type/pooling/reshaping/eval-BatchNorm
    module of :mod:`torch.nn`, a plain container (``nn.Sequential`` and subclasses that keep its
    ``forward``, ``nn.ModuleList``, ``nn.ModuleDict``), or a class that declares
    ``piecewise_linear = True`` (its own ``forward`` only combines its children with additions,
    ReLUs, pooling and reshapes, as :class:`noisereg.models.ResNet18`). Anything else (``Tanh``,
    ``GELU``, attention, a custom ``forward``) gives ``False``, and so does a parameter registered
    twice (tied weights enter the output more than once). A module *called* twice in a forward
    cannot be seen from the tree: such a model must not declare ``piecewise_linear``.

    Example:
        >>> is_piecewise_linear(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)))
        True
        >>> is_piecewise_linear(nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)))
        False
    """
    names = [name for name, _ in model.named_parameters(remove_duplicate=False)]
    if len(names) != len(list(model.parameters())):
        return False
    for m in model.modules():
        if getattr(type(m), "piecewise_linear", False) is True or isinstance(m, _PIECEWISE_LINEAR):
            continue
        if isinstance(m, (nn.ModuleList, nn.ModuleDict)):
            continue
        if isinstance(m, nn.Sequential) and type(m).forward is nn.Sequential.forward:
            continue
        return False
    return True




@math_attention
def ggn_trace(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str = "square",
              per_layer: bool = False, method: str = "auto",
              chunk_size: int | None = None) -> float | dict[str, float]:
    r"""Exact trace of the generalized Gauss-Newton matrix, :math:`\operatorname{tr}(\nabla^2 L(\Phi) D\Phi D\Phi^\top)`.

    Eq. (6) of Orvieto et al. (2023): :math:`R_\sigma^{\rm eff}(w) = R(w) + \tfrac{\sigma^2}{2}`
    ``ggn_trace``. For the square loss this is :math:`\tfrac1n\|D\Phi(w)\|_F^2` (the empirical
    NTK's trace over n). See the module docstring for the algorithm and what is supported.

    The trace is a sum over samples, so it is computed chunk by chunk: a chunk :math:`C` of
    :math:`n_C` samples gives the trace of its own mean loss, :math:`\tfrac1{n_C}\sum_{i\in C}t_i`,
    and :math:`\operatorname{tr} = \sum_C \tfrac{n_C}{n}\cdot\tfrac1{n_C}\sum_{i\in C}t_i`. Peak
    memory grows with the chunk, not with ``len(x)``.

    Args:
        model: ``model(x)`` returns (n, k) (or (n,) for k = 1); in eval mode if it has BatchNorm
            or Dropout. Only parameters with ``requires_grad`` count.
        x: inputs (n, ...). y: targets, as for :func:`noisereg.losses.loss_value`.
        loss: ``"square"``, ``"logistic"`` or ``"cross_entropy"`` (the paper's conventions).
        per_layer: return ``{layer name: trace}`` with the layer names of
            ``NoiseInjector(model, layers="module")``, instead of the total.
        method: ``"auto"`` (fast path where possible) or ``"functorch"`` (per-sample Jacobians
            for every parameter: slow, a reference).
        chunk_size: samples per chunk, >= 1. Default ``None``: as many as keep the chunk's layer
            outputs times (columns of the loss-Hessian root + 1) under ``per_sample.CHUNK_ACTIVATIONS``
            (2^28) entries, sized from one sample's forward: e.g. all 256 samples of a small CNN
            at once, 14 samples of a CIFAR ResNet-18.

    Returns:
        The trace as a float, or a dict of floats per layer.

    Raises:
        ValueError: unknown loss or method; BatchNorm in training mode or active Dropout;
            targets that do not fit the loss; ``chunk_size`` < 1.
        TypeError: ``chunk_size`` is not an integer.

    Example:
        >>> lin = torch.nn.Linear(3, 1, bias=False)
        >>> x = torch.eye(3)
        >>> round(ggn_trace(lin, x, torch.zeros(3)), 6)  # (1/n)·Σ_i ||x_i||² = 3/3
        1.0
        >>> round(ggn_trace(lin, x, torch.zeros(3), chunk_size=2), 6)  # same, in chunks of 2 and 1
        1.0
    """
    check_loss(loss)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    per_sample.check_chunk_size(chunk_size)
    check_eval_mode(model)
    plan = per_sample.plan(model, method)
    n = x.shape[0]
    columns = {"square": lambda f: f.shape[1], "logistic": lambda f: 1, "cross_entropy": lambda f: max(1, f.shape[1] - 1)}
    step = chunk_size or per_sample.default_chunk(model, x, columns[loss])  # the columns of hessian_sqrt
    totals: dict[str, torch.Tensor] = {}
    for lo in range(0, n, step):
        xc, yc = x[lo:lo + step], y[lo:lo + step]
        sums = per_sample.chunk_sums(model, xc, plan, lambda f, yc=yc: hessian_sqrt(loss, f, yc))
        for name, v in sums.items():
            v = v if len(xc) == n else v * (len(xc) / n)  # one chunk: the numbers of the whole batch
            totals[name] = totals[name] + v if name in totals else v
    if per_layer:
        return {name: float(totals.get(name, 0.0)) for name, _ in plan[0]}
    return float(sum(totals.values()))


def _pseudo_gradients(loss: str, f: torch.Tensor, draw: torch.Tensor) -> torch.Tensor:
    r"""Per-sample loss gradients :math:`u = \nabla_f \ell(f_i, \hat y)` at labels drawn from the model.

    ``f``: predictions (n, k); ``draw``: the draws' randomness (n, r, k) for the square loss
    (standard normals), (n, r) otherwise (uniforms on [0, 1)). Returns u (n, k, r), one column per
    draw, with :math:`\mathbb E[u u^\top] = \nabla_f^2 \ell(f_i)` (the per-sample loss Hessian):

    * square: :math:`\hat y = f + z`, :math:`z\sim N(0, I)`: :math:`u = f - \hat y = -z`;
    * logistic: :math:`\hat y = \pm1` with :math:`P(+1) = p = \operatorname{sigmoid}(f)`:
      :math:`u = -\hat y\,\operatorname{sigmoid}(-\hat y f)`, :math:`\mathbb E u^2 = p(1-p)`;
    * cross-entropy: :math:`\hat y \sim \operatorname{softmax}(f)`: :math:`u = p - e_{\hat y}`,
      :math:`\mathbb E[uu^\top] = \operatorname{diag}(p) - pp^\top`.
    """
    f = f.detach()
    if loss == "square":
        return -draw.transpose(1, 2)
    if loss == "logistic":
        y_hat = torch.where(draw < torch.sigmoid(f), 1.0, -1.0).to(f.dtype)  # (n, r)
        return (-y_hat * torch.sigmoid(-y_hat * f)).unsqueeze(1)
    p = torch.softmax(f, dim=1)
    y_hat = torch.searchsorted(p.cumsum(1), draw.contiguous(), right=True).clamp_(max=f.shape[1] - 1)  # (n, r)
    return p.unsqueeze(2) - F.one_hot(y_hat, f.shape[1]).transpose(1, 2).to(f.dtype)


@math_attention
def sampled_ggn_trace(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str = "square",
                      num_samples: int = 8, seed: int = 0, chunk_size: int | None = None) -> tuple[float, float]:
    r"""Unbiased estimate of :math:`\operatorname{tr}(\nabla^2 L\, D\Phi D\Phi^\top)` from labels drawn from the model.

    The loss of each sample is :math:`\ell(f_i, y_i)/n`, and for the paper's three losses the
    gradient :math:`u_i = \nabla_f\ell(f_i, \hat y)` at a label :math:`\hat y` drawn from the model's
    own predictive distribution has second moment :math:`\mathbb E[u_iu_i^\top] = \nabla_f^2\ell(f_i)`
    (the Fisher information equals the loss Hessian for these losses; :func:`_pseudo_gradients`), so

    .. math::

        \operatorname{tr}(\nabla^2 L\, D\Phi D\Phi^\top)
        = \frac1n\sum_i \operatorname{tr}\big(J_i^\top\, \mathbb E[u_iu_i^\top]\, J_i\big)
        = \mathbb E\Big[\frac1n\sum_i \|J_i^\top u_i\|^2\Big],

    the mean squared per-sample gradient norm at the drawn labels: unbiased, since the expectation
    is linear and :math:`\|J^\top u\|^2 = \operatorname{tr}(J^\top uu^\top J)`. Each draw is one
    column in :func:`ggn_trace`'s algorithm (one backward of that column to the layer outputs and the
    per-layer norm formulas) instead of the loss-Hessian root's ``k`` (square) or ``k − 1``
    (cross-entropy) columns: about one gradient per draw. The labels ``y`` are not used (only
    checked), since the GGN does not depend on them for these losses. Unlike the empirical Fisher
    (gradients at the true labels), this is unbiased at every w.

    Args:
        model, x, y, loss: as in :func:`ggn_trace` (same models supported; eval mode).
        num_samples: number of label draws per sample, >= 2.
        seed: seed of the draws (a CPU generator; the draws are the same for every ``chunk_size``).
        chunk_size: samples per chunk, as in :func:`ggn_trace` (default sized by memory).

    Returns:
        ``(estimate, standard error)``: the mean over the draws of :math:`\frac1n\sum_i\|J_i^\top u_i\|^2`
        and its standard deviation over the draws divided by :math:`\sqrt{\texttt{num\_samples}}`.

    Raises:
        ValueError: unknown loss, ``num_samples`` < 2, ``seed`` < 0, ``chunk_size`` < 1, or what
            :func:`ggn_trace` refuses.
        TypeError: ``num_samples``, ``seed`` or ``chunk_size`` is not an integer.

    Example:
        >>> lin = torch.nn.Linear(3, 1, bias=False)
        >>> est, se = sampled_ggn_trace(lin, torch.eye(3), torch.zeros(3), num_samples=4000, seed=0)
        >>> abs(est - 1.0) < 4 * se  # the exact trace is 1 (see ggn_trace)
        True

    References:
        J. Martens. New insights and perspectives on the natural gradient method. JMLR 21(146),
        2020 (Sec. 9.2: the Fisher with the model's own labels equals the GGN).
        https://arxiv.org/abs/1412.1193
    """
    check_loss(loss)
    for name, value, low in (("num_samples", num_samples, 2), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an integer >= {low}, got {type(value).__name__}")
        if value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value}")
    per_sample.check_chunk_size(chunk_size)
    check_eval_mode(model)
    plan = per_sample.plan(model, "auto")
    n = x.shape[0]
    step = chunk_size or per_sample.default_chunk(model, x, lambda f: num_samples)
    gen = torch.Generator().manual_seed(seed)
    draws, totals = None, None
    for lo in range(0, n, step):
        xc, yc = x[lo:lo + step], y[lo:lo + step]

        def make_S(f, lo=lo, yc=yc):
            nonlocal draws
            check_targets(loss, f, yc)
            if draws is None:  # all samples' draws at once: the same for every chunk size
                shape = (n, num_samples, f.shape[1]) if loss == "square" else (n, num_samples)
                draws = (torch.randn if loss == "square" else torch.rand)(shape, generator=gen, dtype=torch.float64)
            u = _pseudo_gradients(loss, f, draws[lo:lo + f.shape[0]].to(f.device, f.dtype))
            return u / f.shape[0] ** 0.5

        per_draw = sum(per_sample.chunk_sums(model, xc, plan, make_S, per_column=True).values())  # (num_samples,)
        per_draw = per_draw if len(xc) == n else per_draw * (len(xc) / n)
        totals = per_draw if totals is None else totals + per_draw
    if totals is None:
        return 0.0, 0.0
    totals = totals.double().cpu()
    return totals.mean().item(), (totals.std() / math.sqrt(num_samples)).item()


def _rademacher(params: list[torch.Tensor], seed: int, q: int) -> list[torch.Tensor]:
    """Probe number ``q``: ±1 entries shaped like ``params``, the same for every data chunk and pass size."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + q)
    return [(torch.randint(0, 2, p.shape, generator=gen) * 2 - 1).to(p) for p in params]


@math_attention
def hessian_trace(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str = "square",
                  num_samples: int = 100, seed: int = 0, probes_per_pass: int = 10,
                  batch_size: int | None = None) -> tuple[float, float]:
    r"""Hutchinson estimate of :math:`\operatorname{tr}\nabla^2 R(w)` with Rademacher probes.

    .. math::

        \operatorname{tr} H = \mathbb E_v[v^\top H v],\quad v_a\in\{\pm1\}\ \text{i.i.d.}
        \qquad(\text{since } \mathbb E[vv^\top] = I),

    averaged over ``num_samples`` probes; Hessian-vector products by double backward, batched
    over ``probes_per_pass`` probes (``is_grads_batched``) and, with ``batch_size``, over chunks of
    the data (the risk is a mean over samples, so :math:`H = \sum_b \tfrac{n_b}{n} H_b`).

    Args:
        model, x, y, loss: as in :func:`ggn_trace` (any model; BatchNorm in eval mode).
        num_samples: number of probes, >= 2. seed: seed of the probes (CPU generator).
        probes_per_pass: probes per batched backward (memory ~ this many gradients).
        batch_size: data chunk size (default: all of ``x`` at once).

    Returns:
        ``(estimate, standard error)``, the standard error being std(vᵀHv)/√num_samples.

    Example:
        >>> lin = torch.nn.Linear(3, 1, bias=False)
        >>> est, se = hessian_trace(lin, torch.eye(3), torch.zeros(3))  # H = XᵀX/n = I/3
        >>> round(est, 6), round(se, 6)
        (1.0, 0.0)
    """
    check_loss(loss)
    if num_samples < 2:
        raise ValueError(f"num_samples must be >= 2, got {num_samples}")
    if probes_per_pass < 1:
        raise ValueError(f"probes_per_pass must be >= 1, got {probes_per_pass}")
    check_eval_mode(model)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters")
    n = x.shape[0]
    bs = n if batch_size is None else batch_size
    if bs < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    quad = torch.zeros(num_samples, dtype=torch.float64)
    for lo in range(0, n, bs):
        xb, yb = x[lo:lo + bs], y[lo:lo + bs]
        with torch.enable_grad():
            grads = torch.autograd.grad(loss_value(loss, model(xb), yb), params, create_graph=True)
        for start in range(0, num_samples, probes_per_pass):
            b = min(probes_per_pass, num_samples - start)
            vs = [torch.stack(v) for v in zip(*(_rademacher(params, seed, q) for q in range(start, start + b)))]
            hvs = torch.autograd.grad(grads, params, grad_outputs=vs, is_grads_batched=True, retain_graph=True)
            q = sum((v * hv).flatten(1).sum(1) for v, hv in zip(vs, hvs))
            quad[start:start + b] += q.double().cpu() * (xb.shape[0] / n)
    return quad.mean().item(), (quad.std() / math.sqrt(num_samples)).item()
