r"""The noise law of noise injection, defined once: which parameters, which std, and the draw.

Section 2 of Orvieto et al. (2023), restated in docs/THEORY.md §2-§3. Given the M layers of a
model, a scale σ, a mode and a convention, one noise sample perturbs

* ``mode="full"``: every trainable parameter, each entry with std :math:`s`;
* ``mode="layer"``: the parameters of one layer :math:`j`, each entry with std :math:`s\sqrt M`,
  where :math:`j` is uniform on :math:`\{0..M-1\}` (``order="random"``, the paper) or
  :math:`t \bmod M` at the :math:`t`-th perturbation (``order="cyclic"``, the official code),

where :math:`s` is σ expressed in the paper convention:

.. math::

    s = \begin{cases}\sigma & \text{convention ``paper''}\\
                     \sigma/\sqrt M & \text{convention ``official''}\end{cases}
    \qquad
    R^{\rm eff}_\sigma(w) = R(w) + \frac{s^2}{2}\operatorname{tr}\big(\nabla^2L\,D\Phi D\Phi^\top\big)
    \quad\text{(Eq. (6), both modes).}

The convention is applied in exactly one place, :func:`paper_sigma`; the std of each mode
(:func:`noise_std`) and the coefficient of the explicit regularizer (:func:`regularizer_coefficient`)
are derived from it. :class:`NoiseLaw` binds the law to a model's layers and draws from it; the
injector (:class:`noisereg.NoiseInjector`), the Monte-Carlo smoothed risks, the experiments and the
benchmarks all draw their noise through it. This module imports only torch and numpy.
"""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Iterator, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from noisereg.layers import Layer, resolve_layers

MODES = ("full", "layer")
ORDERS = ("random", "cyclic")
SCALES = ("absolute", "filter", "element")
"""Per-entry std multipliers of :class:`NoiseLaw` (``scale=``)."""
CONVENTIONS = ("paper", "official")
_ALIGN_BYTES = 64  # every tensor's slot in the flat noise buffer starts on a 64-byte boundary


def check_choice(name: str, value: Any, allowed: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``allowed``; else raise a ValueError naming ``name``."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {tuple(allowed)}, got {value!r}")
    return value


def check_sigma(sigma: Any, name: str = "sigma") -> float:
    """Return ``sigma`` as a float; raise unless it is a finite real number >= 0 (``name`` in the message)."""
    if isinstance(sigma, torch.Tensor) and sigma.numel() == 1:
        sigma = sigma.item()
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(sigma).__name__}")
    sigma = float(sigma)
    if not math.isfinite(sigma) or sigma < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {sigma}")
    return sigma


def _check_num_layers(num_layers: Any) -> int:
    if isinstance(num_layers, bool) or not isinstance(num_layers, numbers.Integral) or num_layers < 1:
        raise ValueError(f"num_layers must be an integer >= 1, got {num_layers!r}")
    return int(num_layers)


def paper_sigma(sigma: float, convention: str, num_layers: int) -> float:
    r"""σ of the paper convention that ``(sigma, convention)`` stands for: σ, or σ/√M for ``"official"``.

    The official code's full-noise std is σ/√M and its one-layer std is σ; the paper's are σ and
    σ√M. So ``official`` with σ is ``paper`` with σ/√M, in both modes (docs/THEORY.md §3).

    Example:
        >>> paper_sigma(0.3, "official", 9)
        0.09999999999999999
    """
    check_choice("convention", convention, CONVENTIONS)
    sigma, m = check_sigma(sigma), _check_num_layers(num_layers)
    return sigma if convention == "paper" else sigma / math.sqrt(m)


def noise_std(sigma: float, mode: str, convention: str, num_layers: int) -> float:
    r"""Per-entry std of the noise: :math:`s` for ``"full"``, :math:`s\sqrt M` for ``"layer"``.

    ============  ===================  ==================
    convention    full                 layer
    ============  ===================  ==================
    ``paper``     σ                    σ·√M
    ``official``  σ/√M                 σ
    ============  ===================  ==================

    Example:
        >>> noise_std(0.1, "layer", "paper", 4), noise_std(0.1, "layer", "official", 4)
        (0.2, 0.1)
    """
    check_choice("mode", mode, MODES)
    s = paper_sigma(sigma, convention, num_layers)
    return s if mode == "full" else s * math.sqrt(num_layers)


def regularizer_coefficient(sigma: float, convention: str, num_layers: int) -> float:
    r"""The factor :math:`c` of the explicit regularizer :math:`c\,\operatorname{tr}(\nabla^2L\,D\Phi D\Phi^\top)`, Eq. (6).

    :math:`c = s^2/2` with :math:`s` = :func:`paper_sigma`: σ²/2 under ``"paper"``, σ²/(2M) under
    ``"official"``; the same in both modes (the √M of layer-wise noise cancels the 1/M of picking
    one of M layers).

    Example:
        >>> regularizer_coefficient(0.2, "paper", 3), round(regularizer_coefficient(0.3, "official", 3), 12)
        (0.020000000000000004, 0.015)
    """
    return 0.5 * paper_sigma(sigma, convention, num_layers) ** 2


def _is_dense(p: torch.Tensor) -> bool:
    """True if ``p`` fills its memory without gaps in a standard layout (so ``as_strided`` fits)."""
    return (
        p.is_contiguous()
        or (p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last))
        or (p.dim() == 5 and p.is_contiguous(memory_format=torch.channels_last_3d))
    )


def flat_layout(params: Sequence[torch.Tensor]) -> tuple[list[int], int]:
    """Where :func:`noisy_copies` puts each parameter's noise in its one flat buffer: (offsets, length);
    each block is rounded up to :data:`_ALIGN_BYTES`."""
    align = max(1, _ALIGN_BYTES // params[0].element_size())
    offsets, total = [], 0
    for p in params:
        offsets.append(total)
        total += -(-p.numel() // align) * align
    return offsets, total


def draw_noise(params: Sequence[torch.Tensor], std: float, generator: torch.Generator, negate: bool = False,
               multipliers: Sequence[torch.Tensor | None] | None = None) -> list[torch.Tensor]:
    """New tensors ``± std · m ∘ N(0, I)`` shaped and strided like ``params`` (one device and dtype).

    One ``normal_`` call fills a flat buffer (:func:`flat_layout`); each result is a view of it laid
    out like its parameter. ``negate``: the same draw with its sign flipped (the antithetic point).
    ``multipliers``: per-parameter std multipliers m broadcastable to the parameter (None: 1), see
    :meth:`NoiseLaw.multipliers`.
    """
    p0 = params[0]
    offsets, total = flat_layout(params)
    flat = torch.empty(total, dtype=p0.dtype, device=p0.device)
    flat.normal_(0.0, std, generator=generator)
    if negate:
        flat.neg_()
    views = [
        torch.as_strided(flat, p.size(), p.stride(), off) if _is_dense(p)
        else flat[off:off + p.numel()].view(p.size())
        for p, off in zip(params, offsets)
    ]
    for v, m in zip(views, multipliers or ()):
        if m is not None:
            v.mul_(m)
    return views


NORMAL_BLOCK = 16
"""The CPU ``normal_`` kernel fills a tensor of >= 16 entries by 16-entry blocks from uniforms drawn in order (and
redraws the last 16 when the size is not a multiple of 16): so drawing a flat buffer in consecutive pieces whose
sizes are multiples of 16, the last piece >= 16 entries, gives the same values and generator state as one
``normal_`` over the whole buffer (tests/test_family_optim.py checks float32, float64 and bfloat16)."""


def _pieces(offsets: Sequence[int], sizes: Sequence[int], total: int) -> list[tuple[int, int]]:
    """``(first, target)`` of each slot ``[offset, offset + size)`` of the flat buffer: its values lie in
    ``[first, target)``, of which ``[first, drawn)`` were drawn with the previous slot and ``[drawn, target)``
    are drawn for it; ``target`` is a multiple of :data:`NORMAL_BLOCK` 16 entries or more before the end, or the
    end (the last slot's ``target`` is the end: the padding after it is drawn as well)."""
    out, drawn = [], 0
    for k, (off, size) in enumerate(zip(offsets, sizes)):
        end, target = off + size, drawn
        if end > drawn:
            target = min(total, -(-end // NORMAL_BLOCK) * NORMAL_BLOCK)
        if k == len(sizes) - 1 or total - target < NORMAL_BLOCK:   # the padding at the end too; never a
            target = total                                         # last piece of 1-15 entries
        out.append((min(off, drawn), target))
        drawn = target
    return out


def _slots(params: Sequence[torch.Tensor], std: float, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """The 1-d noise of each of ``params``' slots in :func:`draw_noise`'s flat buffer, in order, drawn (CPU) in
    pieces that end on :data:`NORMAL_BLOCK` boundaries, so values and generator state are the one-buffer draw's.
    Every slot is a view of one reused buffer, the size of the largest slot plus fewer than 64 entries: a slot
    is valid until the next one is drawn."""
    p0 = params[0]
    offsets, total = flat_layout(params)
    pieces = _pieces(offsets, [p.numel() for p in params], total)
    buf = torch.empty(max((t - f for f, t in pieces), default=0), dtype=p0.dtype, device=p0.device)
    drawn, start, carry = 0, 0, buf[:0]   # the stream is drawn up to `drawn`; carry: its values [start, drawn) unused
    for p, off, (first, target) in zip(params, offsets, pieces):
        end, block = off + p.numel(), buf[:target - first]
        if drawn > first:
            block[:drawn - first].copy_(carry[first - start:])
        if target > drawn:
            block[drawn - first:].normal_(0.0, std, generator=generator)
        yield block[off - first:end - first]
        start, drawn, carry = end, target, block[end - first:].clone()


def add_noise_(params: Sequence[torch.Tensor], std: float, generator: torch.Generator, negate: bool = False,
               multipliers: Sequence[torch.Tensor | None] | None = None, subtract: bool = False) -> None:
    """In place: ``p += ± std · m ∘ N(0, I)`` (``p -=`` with ``subtract``), the very values :func:`draw_noise`
    gives, for ``params`` of one device and dtype.

    On the CPU the noise is drawn a parameter at a time (:func:`_slots`), so the extra memory is the largest
    parameter plus a few entries, not a copy of them all; elsewhere (CUDA's ``normal_`` depends on the size of
    the call) one :func:`draw_noise` buffer, as before. Used by ``restore="regenerate"`` in
    :class:`noisereg.NoiseInjector` to perturb and to restore.
    """
    if params[0].device.type != "cpu":
        views = draw_noise(params, std, generator, negate, multipliers)
        (torch._foreach_sub_ if subtract else torch._foreach_add_)(list(params), views)
        return
    for k, (p, flat) in enumerate(zip(params, _slots(params, std, generator))):
        v = torch.as_strided(flat, p.size(), p.stride()) if _is_dense(p) else flat.view(p.size())
        if negate:
            v.neg_()
        m = multipliers[k] if multipliers else None
        if m is not None:
            v.mul_(m)
        p.sub_(v) if subtract else p.add_(v)


def noisy_copies(params: Sequence[torch.Tensor], std: float, generator: torch.Generator,
                 foreach: bool = True, negate: bool = False,
                 multipliers: Sequence[torch.Tensor | None] | None = None) -> list[torch.Tensor]:
    """Return new tensors ``p ± std · m ∘ N(0, I)`` for ``params`` (one device and dtype), same strides:
    :func:`draw_noise` plus the parameters; ``foreach=False`` is the for-loop reference of the same
    computation (tested equal).
    """
    views = draw_noise(params, std, generator, negate, multipliers)
    if foreach:
        torch._foreach_add_(views, list(params))
    else:
        for v, p in zip(views, params):
            v.add_(p)
    return views


def check_supported(model: nn.Module | Iterable[torch.Tensor], params: Sequence[torch.Tensor]) -> None:
    """Raise unless every parameter can be perturbed where the forward pass reads it.

    Plain tensors (also under DDP and DeepSpeed ZeRO-1/2, which keep whole parameters on every
    rank) and FSDP2 DTensor shards are supported. DeepSpeed ZeRO-3 and FSDP1
    (``FullyShardedDataParallel``) gather parameters from their own partitions, which a
    perturbation of ``model.parameters()`` would not reach: the model would train without noise.

    Raises:
        TypeError: a parameter is a DeepSpeed ZeRO-3 partition or an FSDP1 flat parameter, or
            ``model`` holds an FSDP1 module.
    """
    for p in params:
        if any(hasattr(p, a) for a in ("ds_id", "ds_status", "ds_numel")):
            raise TypeError(
                "DeepSpeed ZeRO-3 partitioned parameters are not supported: the forward pass gathers "
                "them from DeepSpeed's partitions, so the noise would never reach it. Use ZeRO stage "
                "1 or 2 (they keep whole parameters, like DDP) or FSDP2 (torch.distributed.fsdp.fully_shard)"
            )
    fsdp1 = sys.modules.get("torch.distributed.fsdp.fully_sharded_data_parallel")
    flat = sys.modules.get("torch.distributed.fsdp._flat_param")  # neither is imported unless in use
    if (flat is not None and any(isinstance(p, flat.FlatParameter) for p in params)) or (
            fsdp1 is not None and isinstance(model, nn.Module)
            and any(isinstance(m, fsdp1.FullyShardedDataParallel) for m in model.modules())):
        raise TypeError(
            "FSDP1 (FullyShardedDataParallel) is not supported: it rebuilds the parameters from its "
            "flat shards at every forward, so the noise would never reach it. Use FSDP2 "
            "(torch.distributed.fsdp.fully_shard), whose DTensor shards are perturbed in place"
        )


class NoiseLaw:
    r"""The noise law bound to a model's layers: which parameters a sample perturbs, with which std.

    Args:
        model: ``nn.Module`` or an iterable of parameters (see :func:`noisereg.resolve_layers`).
        sigma: σ ≥ 0, finite; read/write.
        mode: ``"layer"`` (default) or ``"full"``.
        layers: ``"module"`` (default), ``"tensor"`` or a list of ``(name, [Parameter, ...])`` groups.
        order: ``"random"`` (default) or ``"cyclic"``: how :meth:`choose` picks the layer.
        convention: ``"paper"`` (default) or ``"official"``; see :func:`noise_std`.
        scale: the per-entry std multiplier m, computed from the clean weights at each draw:
            ``"absolute"`` (default, the paper: 1), ``"filter"`` (‖w_row‖ for each slice along dim 0
            of a parameter with ≥ 2 dims, ‖w‖ for a 1-d one: the per-filter noise of RWP and LPF-SGD)
            or ``"element"`` (|w_i|); the mode's factor and the convention apply on top.
        exclude: parameters never perturbed: a name substring, a list of them, or a predicate
            ``(name, parameter) -> bool``; names are ``model.named_parameters()``'s (an iterable of
            parameters: their positions, ``"0"``, ``"1"``, ...). They form no layer: M counts the others.
            A name substring that matches no parameter name raises ``ValueError`` (a typo).

    Attributes:
        layers: the M layers, ``[(name, [Parameter, ...]), ...]`` in model order.
        params: every perturbable parameter, in layer order.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
        >>> law = NoiseLaw(net, sigma=0.1, mode="layer")
        >>> law.num_layers, round(law.std, 6), law.regularizer_coefficient
        (2, 0.141421, 0.005000000000000001)
        >>> g = torch.Generator().manual_seed(0)
        >>> j = law.choose(0, g); [p.shape for p in law.perturbed_params(j)] in ([(4, 3), (4,)], [(1, 4), (1,)])
        True
    """

    def __init__(self, model: nn.Module | Iterable[torch.Tensor], sigma: float, *, mode: str = "layer",
                 layers: str | Sequence[tuple[str, Iterable[torch.Tensor]]] = "module", order: str = "random",
                 convention: str = "paper", scale: str = "absolute", exclude=None) -> None:
        self.mode = check_choice("mode", mode, MODES)
        self.order = check_choice("order", order, ORDERS)
        self.convention = check_choice("convention", convention, CONVENTIONS)
        self.scale = check_choice("scale", scale, SCALES)
        if isinstance(model, Iterator):
            model = list(model)   # read twice (layers, exclude names)
        self.layers: list[Layer] = _without(resolve_layers(model, layers), model, exclude)
        self.exclude = [exclude] if isinstance(exclude, str) else exclude   # as given (for repr)
        self.params: list[torch.Tensor] = [p for _, ps in self.layers for p in ps]
        check_supported(model, self.params)
        self.sigma = sigma

    @property
    def sigma(self) -> float:
        """σ (read/write, validated)."""
        return self._sigma

    @sigma.setter
    def sigma(self, value: float) -> None:
        self._sigma = check_sigma(value)
        self._std = (None, None)

    @property
    def num_layers(self) -> int:
        """M, the number of layers."""
        return len(self.layers)

    @property
    def std(self) -> float:
        """Per-entry std of a perturbed entry, :func:`noise_std` of this law (cached per σ)."""
        if self._std[0] != self._sigma:
            self._std = (self._sigma, noise_std(self._sigma, self.mode, self.convention, len(self.layers)))
        return self._std[1]

    @property
    def regularizer_coefficient(self) -> float:
        """:math:`c` of the explicit regularizer :math:`c\\,\\mathrm{tr(GGN)}`, :func:`regularizer_coefficient`."""
        return regularizer_coefficient(self._sigma, self.convention, len(self.layers))

    def choose(self, step: int, generator: torch.Generator) -> int | None:
        """The layer the ``step``-th perturbation (0-based) perturbs; ``None`` in ``"full"`` mode.

        ``"random"``: uniform, one ``torch.randint`` draw from ``generator`` (a CPU generator);
        ``"cyclic"``: ``step % M``, no randomness.
        """
        if self.mode == "full":
            return None
        if self.order == "cyclic":
            return step % len(self.layers)
        return int(torch.randint(len(self.layers), (1,), generator=generator))

    def multipliers(self, params: Sequence[torch.Tensor]) -> list[torch.Tensor] | None:
        """The std multipliers of ``params`` under :attr:`scale`, from their current (clean) values:
        None for ``"absolute"``; else one tensor per parameter, broadcastable to it."""
        if self.scale == "absolute":
            return None
        with torch.no_grad():
            if self.scale == "element":
                return [p.detach().abs() for p in params]
            return [p.detach().flatten(1).norm(dim=1).view(-1, *[1] * (p.dim() - 1)) if p.dim() >= 2
                    else p.detach().norm() for p in params]

    def perturbed_params(self, choice: int | None) -> list[torch.Tensor]:
        """The parameters a sample with layer ``choice`` perturbs (``None``: all of them)."""
        return self.params if choice is None else self.layers[choice][1]

    def sample(self, params: Sequence[torch.Tensor], generator: torch.Generator,
               batch: tuple[int, ...] = ()) -> list[torch.Tensor]:
        """Independent noise ``std · m ∘ N(0, I)`` of shape ``(*batch, *p.shape)`` for each of ``params``
        (m: :meth:`multipliers`, 1 for ``scale="absolute"``).

        Drawn on the CPU ``generator`` in the parameters' dtype, one ``randn`` per tensor in the
        given order, then moved to each parameter's device (for Monte-Carlo estimators; the
        training hot path uses :meth:`perturb_copies`).
        """
        std = self.std
        noise = [torch.randn((*batch, *p.shape), generator=generator, dtype=p.dtype).to(p.device) * std
                 for p in params]
        mult = self.multipliers(params)
        return noise if mult is None else [e * m for e, m in zip(noise, mult)]

    def sample_batch(self, num: int, generator: torch.Generator) -> list[torch.Tensor]:
        """``num`` i.i.d. samples of the whole law at once: one tensor ``(num, *p.shape)`` per parameter.

        ``"full"``: every entry is noisy. ``"layer"``: each sample keeps the noise of one
        uniformly chosen layer (drawn after the noise, one ``randint`` of size ``num``) and is zero
        elsewhere. ``order="cyclic"`` has no i.i.d. form and raises.
        """
        noise = self.sample(self.params, generator, (num,))
        if self.mode == "full":
            return noise
        if self.order == "cyclic":
            raise ValueError("sample_batch draws i.i.d. samples; order='cyclic' is deterministic, use 'random'")
        pick = torch.randint(len(self.layers), (num,), generator=generator)
        layer_of = [j for j, (_, ps) in enumerate(self.layers) for _ in ps]
        return [e * (pick == j).to(e.dtype).to(e.device).view(-1, *[1] * (e.dim() - 1))
                for e, j in zip(noise, layer_of)]

    def perturb_copies(self, params: Sequence[torch.Tensor], generator: torch.Generator,
                       foreach: bool = True, negate: bool = False) -> list[torch.Tensor]:
        """New tensors ``p ± std · m ∘ N(0, I)`` for ``params`` (one device and dtype): :func:`noisy_copies`
        with this law's :meth:`multipliers`."""
        return noisy_copies(params, self.std, generator, foreach, negate, self.multipliers(params))

    def __repr__(self) -> str:
        return (f"NoiseLaw(sigma={self._sigma}, mode={self.mode!r}, order={self.order!r}, "
                f"convention={self.convention!r}, scale={self.scale!r}, num_layers={len(self.layers)})")


def _without(layers: list[Layer], model, exclude) -> list[Layer]:
    """``layers`` without the parameters ``exclude`` names (see :class:`NoiseLaw`); empty layers dropped."""
    if exclude is None:
        return layers
    if isinstance(exclude, str):
        exclude = [exclude]
    if callable(exclude):
        hit = exclude
    elif isinstance(exclude, (list, tuple)) and all(isinstance(e, str) for e in exclude):
        hit = lambda name, p: any(e in name for e in exclude)  # noqa: E731
    else:
        raise TypeError("exclude must be a name substring, a list of them, or a predicate (name, parameter) -> bool, "
                        f"got {type(exclude).__name__}")
    named = (list(model.named_parameters()) if isinstance(model, nn.Module)
             else [(str(i), p) for i, p in enumerate(model)])
    if not callable(exclude):   # a typo would exclude nothing and perturb what the caller meant to spare
        unmatched = [e for e in exclude if not any(e in name for name, _ in named)]
        if unmatched:
            raise ValueError(f"exclude entries {unmatched} match no parameter name (names look like "
                             f"{[n for n, _ in named[:3]]}): fix or drop them")
    name_of = {id(p): n for n, p in named}
    kept = [(name, [p for p in ps if not hit(name_of.get(id(p), ""), p)]) for name, ps in layers]
    kept = [(name, ps) for name, ps in kept if ps]
    if not kept:
        raise ValueError("exclude leaves no parameter to perturb")
    return kept
