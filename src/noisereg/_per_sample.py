r"""Sums of squared per-sample gradients, per layer, without Jacobians: the engine behind
:func:`noisereg.ggn_trace` and :func:`noisereg.sampled_ggn_trace` (docs/THEORY.md §4).

For a model :math:`f`, samples :math:`x_i` and matrices :math:`S_i` (one column per "pseudo-output"
:math:`s_{ic}^\top f(x_i)`), :func:`chunk_sums` returns :math:`\sum_i \|S_i^\top J_i\|_F^2` per layer,
:math:`J_i = \partial f(x_i)/\partial w`:

1. one forward pass, recording each layer's input :math:`a` and output :math:`z`;
2. one batched backward (``is_grads_batched``) of the ``r`` columns of :math:`S` to the layer
   outputs, giving :math:`g_{c} = \partial (s_{\cdot c}^\top f)/\partial z` for all samples;
3. per layer, the squared per-sample gradient norms from :math:`a` and :math:`g` alone:
   ``Linear`` :math:`\|g_{ic}\|^2\|a_i\|^2` (weight) and :math:`\|g_{ic}\|^2` (bias);
   ``Conv1d/2d`` the per-sample gradient :math:`g_{ic} U_i^\top` of the unfolded input, one sample
   chunk at a time; eval-mode ``BatchNorm`` :math:`\sum g\hat a` and :math:`\sum g`.

Other modules with trainable parameters (and modules called twice, tied parameters) take the
general path: per-sample Jacobians with ``torch.func.vmap(jacrev)``. :func:`default_chunk` sizes
the sample chunks from the model, so the callers' peak memory does not grow with ``len(x)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jacrev, vmap
from torch.nn.modules.batchnorm import _BatchNorm

from noisereg.layers import resolve_layers
from noisereg.losses import as_predictions

CHUNK_ELEMENTS = 1 << 24  # bound on temporaries (entries) when materialising per-sample gradients
CHUNK_ACTIVATIONS = 1 << 28  # default sample chunk: layer outputs x (columns + 1) under this many entries


def _fast_kind(m: nn.Module) -> str | None:
    if type(m) is nn.Linear:
        return "linear"
    if type(m) in (nn.Conv1d, nn.Conv2d) and m.padding_mode == "zeros" and not isinstance(m.padding, str):
        return "conv"
    if isinstance(m, _BatchNorm) and m.affine and m.running_mean is not None:
        return "bn"
    return None


def _sum_sq_linear(m: nn.Linear, a: torch.Tensor, gs: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Σ over samples i and columns c of the squared per-sample gradient norms of a Linear layer.

    ``a``: the layer input (n, ..., din); ``gs``: per column c, ∂(s_cᵀf)/∂(layer output), (n, ..., dout).
    """
    if a.dim() == 2:  # per-sample weight gradient g aᵀ has norm ||g||·||a||
        gg = sum(g.pow(2).sum(-1) for g in gs)
        return {"weight": (gg * a.pow(2).sum(-1)).sum(), "bias": gg.sum()}
    a = a.flatten(1, -2)  # (n, T, din): the per-sample gradient sums over the T positions
    step = max(1, CHUNK_ELEMENTS // max(1, gs[0].shape[-1] * a.shape[-1]))
    weight = bias = 0.0
    for g in gs:
        g = g.flatten(1, -2)
        weight = weight + sum(torch.bmm(g[i:i + step].transpose(1, 2), a[i:i + step]).pow(2).sum()
                              for i in range(0, a.shape[0], step))
        bias = bias + g.sum(1).pow(2).sum()
    return {"weight": weight, "bias": bias}


def _sum_sq_conv(m: nn.Conv1d | nn.Conv2d, a: torch.Tensor, gs: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Same for Conv1d/Conv2d: the per-sample gradient is g · unfold(a)ᵀ, chunked over samples."""
    if isinstance(m, nn.Conv1d):  # as a 2-D convolution of height 1
        a = a.unsqueeze(2)
        k, d, p, s = (1, *m.kernel_size), (1, *m.dilation), (0, *m.padding), (1, *m.stride)
    else:
        k, d, p, s = m.kernel_size, m.dilation, m.padding, m.stride
    n, grp, r = a.shape[0], m.groups, len(gs)
    c_out, per = m.out_channels // grp, (m.in_channels // grp) * math.prod(k)
    gs = [g.reshape(n * grp, c_out, -1) for g in gs]  # (n·G, Cout/G, L)
    spots = gs[0].shape[-1]
    # Σ_c ||g_c Uᵀ||²: materialise g_c Uᵀ (cost r·Cout·P·L per sample), or use Gram matrices over
    # the L output positions, tr((Σ_c g_cᵀ g_c)(UᵀU)) (cost L²·(r·Cout + P)); take the cheaper
    gram = spots * (r * c_out + per) < r * c_out * per
    step = max(1, CHUNK_ELEMENTS // max(1, grp * (spots * spots if gram else max(c_out * per, per * spots))))
    weight = 0.0
    for i in range(0, n, step):
        u = F.unfold(a[i:i + step], k, dilation=d, padding=p, stride=s)  # (c, Cin·kk, L)
        u = u.reshape(-1, per, spots)  # (c·G, P, L)
        rows = slice(i * grp, (i + step) * grp)
        if gram:
            gg = sum(torch.bmm(g[rows].transpose(1, 2), g[rows]) for g in gs)  # (c·G, L, L)
            weight = weight + (gg * torch.bmm(u.transpose(1, 2), u)).sum()
        else:
            ut = u.transpose(1, 2)
            weight = weight + sum(torch.bmm(g[rows], ut).pow(2).sum() for g in gs)
    return {"weight": weight, "bias": sum(g.sum(-1).pow(2).sum() for g in gs)}


def _sum_sq_bn(m: _BatchNorm, a: torch.Tensor, gs: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Same for eval-mode BatchNorm: y = γ·â + β with â from the running statistics."""
    n, c = a.shape[:2]
    a_hat = (a.reshape(n, c, -1) - m.running_mean[:, None]) / torch.sqrt(m.running_var[:, None] + m.eps)
    gs = [g.reshape(n, c, -1) for g in gs]
    return {"weight": sum((g * a_hat).sum(-1).pow(2).sum() for g in gs),
            "bias": sum(g.sum(-1).pow(2).sum() for g in gs)}


_SUM_SQ = {"linear": _sum_sq_linear, "conv": _sum_sq_conv, "bn": _sum_sq_bn}


def backprop_columns(f, zs, grad_out, batched: bool) -> list[list[torch.Tensor] | None]:
    """Per layer output z, the list over columns c of ∂(grad_out[c] · f)/∂z (None if z is unused).

    ``batched``: one vmapped backward (``is_grads_batched``), fastest for matmul-only graphs;
    otherwise one backward per column, faster when the graph has ops without a vmap batching rule
    (max-pool's backward falls back to a slow per-column loop plus copies inside vmap).
    """
    if batched:
        gs = torch.autograd.grad(f, zs, grad_outputs=grad_out, is_grads_batched=True, allow_unused=True)
        return [None if g is None else list(g.unbind(0)) for g in gs]
    r = grad_out.shape[0]
    cols = [torch.autograd.grad(f, zs, grad_outputs=grad_out[c], retain_graph=c < r - 1, allow_unused=True)
            for c in range(r)]
    return [None if col[0] is None else list(col) for col in zip(*cols)]


def general_path(model, x, S, names: list[str], per_column: bool = False) -> dict[str, torch.Tensor]:
    """Σ_i ||S_iᵀ J_i||² per named parameter from per-sample Jacobians (torch.func), in chunks
    (``per_column``: one value per column of S)."""
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = dict(model.named_buffers())

    def f_one(sub, xi):
        out = as_predictions(functional_call(model, ({**params, **sub}, buffers), (xi.unsqueeze(0),)))
        if out.shape[0] != 1:
            raise ValueError(
                f"model maps one input row to {out.shape[0]} output rows; ggn_trace needs a per-sample "
                "model, whose output row i depends on input row i only"
            )
        return out.squeeze(0)

    sub = {k: params[k] for k in names}
    size = sum(v.numel() for v in sub.values()) * S.shape[1]
    step = max(1, CHUNK_ELEMENTS // max(1, size))
    jac = vmap(jacrev(f_one), in_dims=(None, 0))
    totals = {k: torch.zeros((S.shape[2],) if per_column else (), dtype=S.dtype, device=S.device) for k in names}
    for i in range(0, x.shape[0], step):
        for k, J in jac(sub, x[i:i + step]).items():  # J: (c, k, *shape)
            sq = torch.einsum("nkr,nkp->nrp", S[i:i + step], J.flatten(2)).pow(2)
            totals[k] = totals[k] + (sq.sum((0, 2)) if per_column else sq.sum())
    return totals


def plan(model: nn.Module, method: str):
    """The layers, each parameter's layer, and the modules with a fast per-sample formula."""
    layers = resolve_layers(model, "module")
    layer_of = {id(p): name for name, ps in layers for p in ps}
    owners: dict[int, int] = {}
    for m in model.modules():
        for p in m.parameters(recurse=False):
            owners[id(p)] = owners.get(id(p), 0) + 1
    fast = {} if method == "functorch" else {
        m: kind for m in model.modules()
        if (kind := _fast_kind(m)) and any(p.requires_grad for p in m.parameters(recurse=False))
        and all(owners[id(p)] == 1 for p in m.parameters(recurse=False))
    }
    return layers, layer_of, fast


def chunk_sums(model, x, plan, make_S, per_column: bool = False) -> dict[str, torch.Tensor]:
    """Σ_i ||S_iᵀ J_i||² per layer over the samples of ``x``, with ``S = make_S(model(x))`` (n, k, r).

    ``per_column``: one value per column of S (shape (r,)) instead of their sum.
    """
    layers, layer_of, fast = plan
    records: dict[nn.Module, list] = {m: [] for m in fast}
    hooks = [m.register_forward_hook(lambda mod, inp, out: records[mod].append((inp[0].detach(), out)))
             for m in fast]
    try:
        with torch.enable_grad():
            f = model(x)
    finally:
        for h in hooks:
            h.remove()
    f2 = as_predictions(f)
    S = make_S(f2)  # (n, k, r)
    once = [m for m in fast if len(records[m]) == 1 and records[m][0][1].requires_grad]
    done = {id(p) for m in once for p in m.parameters(recurse=False)}
    done |= {id(p) for m in fast if not records[m] for p in m.parameters(recurse=False)}  # unused
    shape = (S.shape[2],) if per_column else ()
    totals = {name: torch.zeros(shape, dtype=f2.dtype, device=f2.device) for name, _ in layers}
    if once:
        zs = [records[m][0][1] for m in once]
        grad_out = S.permute(2, 0, 1).reshape(S.shape[2], *f.shape)
        gs = backprop_columns(f, zs, grad_out, batched=all(fast[m] == "linear" for m in once))
        for m, z_grad in zip(once, gs):
            if z_grad is None:
                continue
            a, z_grad = records[m][0][0], [g.detach() for g in z_grad]
            if per_column:
                cols = [_SUM_SQ[fast[m]](m, a, [g]) for g in z_grad]
                sums = {k: torch.stack([torch.as_tensor(c[k], dtype=f2.dtype, device=f2.device) for c in cols])
                        for k in cols[0]}
            else:
                sums = _SUM_SQ[fast[m]](m, a, z_grad)
            for pname, p in m.named_parameters(recurse=False):
                if p.requires_grad:
                    totals[layer_of[id(p)]] += sums[pname]
    rest = [(k, p) for k, p in model.named_parameters() if p.requires_grad and id(p) not in done]
    if rest:
        for k, v in general_path(model, x, S, [k for k, _ in rest], per_column).items():
            totals[layer_of[id(dict(rest)[k])]] += v
    return totals


def default_chunk(model: nn.Module, x: torch.Tensor, columns: Callable[[torch.Tensor], int]) -> int:
    """Samples per chunk: the recorded layer outputs and their backpropagated columns stay under
    ``CHUNK_ACTIVATIONS`` entries. Sized from one sample's forward (outputs of the leaf modules)."""
    count = 0

    def hook(mod, inp, out):
        nonlocal count
        count += out.numel() if isinstance(out, torch.Tensor) else 0

    hooks = [m.register_forward_hook(hook) for m in model.modules() if not any(True for _ in m.children())]
    try:
        with torch.no_grad():
            out = as_predictions(model(x[:1]))
    finally:
        for h in hooks:
            h.remove()
    per_sample = max(1, count) * (columns(out) + 1)
    return max(1, CHUNK_ACTIVATIONS // per_sample)


def check_chunk_size(chunk_size) -> None:
    if chunk_size is None:
        return
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int):
        raise TypeError(f"chunk_size must be None or an integer >= 1, got {type(chunk_size).__name__}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be None or an integer >= 1, got {chunk_size}")
