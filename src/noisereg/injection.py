"""Gaussian noise injection into the weights: perturb, take the gradient there, restore exactly.

Section 2 of Orvieto et al. (2023) (docs/THEORY.md §2). Each step evaluates the gradient at a
perturbed point and applies it at the clean point:

.. math::

    \\text{full:}\\quad  g = \\nabla R(w + \\sigma\\varepsilon),\\qquad \\varepsilon\\sim N(0, I_m)

    \\text{layer:}\\quad g = \\nabla R(w_1,\\dots,w_j + \\sigma\\sqrt{M} E_j,\\dots,w_M),
    \\qquad j\\sim\\mathrm{Unif}\\{1..M\\},\\ E_j\\sim N(0, I)

In expectation these are gradients of the smoothed risks :math:`R_\\sigma` and
:math:`\\tilde R_\\sigma`, whose second-order expansion is
:math:`R + \\tfrac{\\sigma^2}{2}\\operatorname{tr}(\\nabla^2 L\\, D\\Phi D\\Phi^\\top)` (Eq. (6)); the
:math:`\\sqrt M` makes the layer-wise regularizer equal to the full one.

How the weights are restored bit for bit: inside :meth:`NoiseInjector.perturb` each perturbed
parameter's ``.data`` points to a fresh tensor ``w + noise``; on exit ``.data`` points back to the
original, untouched tensor. Nothing is ever subtracted, so ``(w + e) - e != w`` rounding cannot
occur. The noise for all perturbed tensors of one device and dtype is drawn by one ``normal_`` call
into one flat buffer, so the extra memory is one copy of the perturbed tensors, only while inside
(``restore="regenerate"`` holds none: it adds the noise in place and subtracts it again on exit).

FSDP2 (DTensor) parameters are the exception: FSDP2 all-gathers each parameter from the storage of
its local shard, which a ``.data`` assignment would not reach. Their local shards are saved, the
noise is added in place, and the saved copies are copied back on exit: exact as well.

References:
    A. Orvieto, A. Raj, H. Kersting, F. Bach. Explicit Regularization in Overparametrized Models
    via Noise Injection. AISTATS 2023. https://arxiv.org/abs/2206.04613
"""

from __future__ import annotations

import contextlib
import numbers
import secrets
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from noisereg.layers import Layer
from noisereg.noise import (CONVENTIONS, MODES, ORDERS, NoiseLaw, add_noise_, check_choice, check_sigma, flat_layout,
                            noisy_copies)

__all__ = ["CONVENTIONS", "MODES", "NoiseInjector", "ORDERS", "check_sigma", "noisy_copies"]


def _seed_for(seed: int, *key: int) -> int:
    """A 63-bit seed for stream ``key`` derived from ``seed`` (numpy's SeedSequence mixing)."""
    return int(np.random.SeedSequence(seed, spawn_key=key).generate_state(1, np.uint64)[0] >> 1)


def _dtensor_type() -> type | None:
    """The DTensor class if torch.distributed's tensor module is loaded (no DTensor exists otherwise)."""
    for name in ("torch.distributed.tensor", "torch.distributed._tensor"):  # torch >= 2.4, 2.3
        cls = getattr(sys.modules.get(name), "DTensor", None)
        if cls is not None:
            return cls
    return None


def _shard_key(p: torch.Tensor) -> tuple[int, ...] | None:
    """Which shard of DTensor ``p`` this rank holds: its mesh coordinate along the sharded mesh dims.

    Replicated mesh dims count as 0, so replicas of one shard (HSDP) draw the same noise, as DDP
    ranks do; ``None`` if this rank is not in ``p``'s mesh (it holds no data of ``p``).
    """
    coordinate = p.device_mesh.get_coordinate()
    if coordinate is None:
        return None
    if any(pl.is_partial() for pl in p.placements):
        raise ValueError(
            f"a DTensor parameter has a Partial placement {tuple(p.placements)}; only Shard and "
            "Replicate parameters can be perturbed shard by shard"
        )
    return tuple(c if pl.is_shard() else 0 for c, pl in zip(coordinate, p.placements))


def _module_owners(model: nn.Module) -> dict[int, list[tuple[nn.Module, str]]]:
    """``id(parameter) -> [(module, attribute name), ...]`` for every parameter registered in ``model``."""
    owners: dict[int, list[tuple[nn.Module, str]]] = {}
    for module in model.modules():
        for name, p in module._parameters.items():
            if p is not None:
                owners.setdefault(id(p), []).append((module, name))
    return owners


def _shared_seed() -> int:
    """A fresh OS seed; under ``torch.distributed``, rank 0's, broadcast so every rank agrees."""
    seed = secrets.randbits(63)
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        box = [seed]
        dist.broadcast_object_list(box, src=0)
        seed = int(box[0])
    return seed


def _by_kind(params: list[torch.Tensor]) -> dict[tuple[torch.device, torch.dtype], list[torch.Tensor]]:
    """``params`` grouped by (device, dtype), in order: one noise draw per group (its device's generator)."""
    groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
    for p in params:
        groups.setdefault((p.device, p.dtype), []).append(p)
    return groups


class NoiseInjector:
    r"""Perturb a model's weights with Gaussian noise for one gradient evaluation, then restore them.

    Section 2 of Orvieto et al. (2023): ``mode="full"`` adds :math:`\sigma\varepsilon` to every
    trainable parameter ("GD+noise"); ``mode="layer"`` adds noise to one of the :math:`M` layers
    ("GD+noise (layer)"), with per-entry standard deviation:

    ============  =========================  ========================
    convention    full                       layer
    ============  =========================  ========================
    ``paper``     :math:`\sigma`             :math:`\sigma\sqrt{M}`
    ``official``  :math:`\sigma/\sqrt{M}`    :math:`\sigma`
    ============  =========================  ========================

    where :math:`M` = ``len(inj.layers)``. The two conventions differ only in what σ means: for the
    same layers, ``official`` with σ equals ``paper`` with σ/√M. The law itself (layers, std, the
    layer choice, the draw) is :class:`noisereg.noise.NoiseLaw`, exposed as ``inj.law``; the
    injector adds the noise stream, the exact restore and the checkpointed state.

    Args:
        model: ``nn.Module`` or an iterable of parameters. Only parameters with
            ``requires_grad=True`` are touched; a parameter shared by several modules is one
            parameter. Parameters may live on different devices and have different dtypes.
        sigma: noise scale σ ≥ 0 (finite). Settable later (``inj.sigma = ...``, for schedules);
            ``sigma == 0`` makes :meth:`perturb` a no-op that consumes no randomness.
        mode: ``"layer"`` (default; the paper's cure for the variance explosion of wide nets,
            Sec. 3.2) or ``"full"``.
        layers: ``"module"`` (default: a leaf module's own parameters form a layer), ``"tensor"``
            (each parameter tensor is a layer, as in the official code), or a list of
            ``(name, [Parameter, ...])`` groups. See :mod:`noisereg.layers`.
        order: layer choice in ``"layer"`` mode: ``"random"`` (default; uniform and independent
            per step, as in the paper) or ``"cyclic"`` (step ``t`` perturbs layer ``t % M``, as in
            the official code).
        convention: ``"paper"`` (default) or ``"official"``, see the table.
        seed: seed of the noise stream. With neither ``seed`` nor ``generator`` a fresh seed is
            drawn from the OS and stored in ``inj.seed`` so the run can be repeated; under
            ``torch.distributed`` rank 0's seed is broadcast, so every rank agrees (construct the
            injector on every rank then, as for any collective).
        generator: a ``torch.Generator`` to draw the noise from instead of ``seed``; all perturbed
            parameters must be on its device. The layer choice then uses a CPU generator seeded
            with ``generator.initial_seed()``.
        independent_ranks: under ``torch.distributed``, ``False`` (default) gives every rank the
            same noise, so data-parallel training equals single-process training on the union
            of the batches; ``True`` mixes the rank into the seed so ranks draw independent noise
            (the averaged gradient then averages ``world_size`` noise samples: same expectation,
            lower variance, a weaker effective noise per step).
        foreach: use ``torch._foreach_add_`` (default) or a for-loop (reference, same result).
        scale: ``"absolute"`` (default, the paper), ``"filter"`` or ``"element"``: the per-entry std
            multiplier (1, the row's / vector's norm, :math:`|w_i|`), computed from the clean weights at each
            perturbation; see :class:`noisereg.noise.NoiseLaw`. RWP and LPF-SGD use ``"filter"``.
        exclude: parameters never perturbed (name substrings or a predicate ``(name, param) -> bool``,
            e.g. ``exclude=["bias", "norm"]``); they form no layer, M counts the others. A substring
            that matches no parameter name raises ``ValueError``.
        restore: ``"copy"`` (default): the perturbed weights are new tensors and the clean ones come
            back bit for bit. ``"regenerate"``: the noise is added in place and, on exit, drawn again
            from the saved generator state and subtracted, so no copy of the weights is held during
            the block (for ``scale="filter"`` only the row norms are kept). On the CPU the noise is
            drawn, added and drawn again a tensor at a time (:func:`noisereg.noise.add_noise_`, the
            same values as the one-buffer draw), so the extra peak memory is the largest perturbed
            tensor, not a copy of them all (benchmarks/restore_memory.py); on other devices the
            group's noise is drawn into one buffer, which is freed before the block. Not bit-exact: each
            restore rounds twice (``w + noise``, then ``− noise``), an error of at most
            ``ε·(|w| + |noise|)`` per entry (ε the dtype's machine epsilon, float32 1.2e-7; measured up to
            0.994 ε), a random walk over steps. Refused with ``scale="element"``
            (:math:`|w_i|` cannot be recomputed from the perturbed weights) and for DTensor (FSDP2) parameters.

    Raises:
        ValueError: an argument out of range; ``seed`` with ``generator``; with DTensor (FSDP2)
            parameters, ``generator=``, ``independent_ranks=True`` or a ``Partial`` placement.
        TypeError: an argument of the wrong type; DeepSpeed ZeRO-3 or FSDP1 parameters; DTensor
            parameters given as an iterable instead of the ``nn.Module``.

    Example:
        >>> import torch, noisereg as nr
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> inj = nr.NoiseInjector(model, sigma=0.05, mode="layer", seed=0)
        >>> x, y = torch.randn(16, 4), torch.randn(16, 1)
        >>> with inj.perturb():
        ...     loss = 0.5 * (model(x) - y).pow(2).sum(1).mean()
        ...     loss.backward()
        >>> opt.step()
        >>> [name for name, _ in inj.layers]
        ['0', '2']

    .. note::
        Call ``backward()`` inside the ``with`` block and ``optimizer.step()`` outside it.
        A backward outside the block raises autograd's "modified by an inplace operation" error,
        and an in-place change of a parameter inside the block (e.g. ``optimizer.step()``)
        would be thrown away by the restore, so it raises a ``RuntimeError`` on exit.

    .. note::
        **Sharded and distributed models.** DDP and DeepSpeed ZeRO-1/2 keep whole parameters on
        every rank: the injector treats them as above. FSDP2 (``torch.distributed.fsdp.fully_shard``,
        DTensor parameters): build the injector after ``fully_shard``, from the module, on every
        rank. Each rank adds the noise in place to its local shards, from a generator seeded with
        ``seed`` and the shard's mesh coordinate, so shards draw independent noise, reproducible
        from (``seed``, world size); the layer choice is shared, so in ``"layer"`` mode every rank
        perturbs the same layer; on exit each shard is copied back from a saved copy (exact). The
        state (:meth:`state_dict`) differs per rank: save and load each rank's own. Differences
        from plain parameters: an in-place change of a shard inside the block still raises on
        exit, but a ``backward()`` after the block is not detected: FSDP2 gathers the restored
        shards again for it, silently mixing noisy activations with clean weights (so call
        ``backward()`` inside the block); ``generator=`` and ``independent_ranks=True`` raise
        ``ValueError``. Each perturbation checks that the modules hold their sharded
        parameters (a module left unsharded, e.g. by ``set_reshard_after_backward(False)``,
        would not see the noise) and raises ``RuntimeError`` otherwise. Not supported, with a
        ``TypeError`` on construction: DeepSpeed ZeRO-3 and FSDP1 (``FullyShardedDataParallel``),
        which rebuild the parameters from partitions the injector cannot reach.

    References:
        Orvieto, Raj, Kersting, Bach. Explicit Regularization in Overparametrized Models via
        Noise Injection. AISTATS 2023. https://arxiv.org/abs/2206.04613
    """

    def __init__(
        self,
        model: nn.Module | Iterable[torch.Tensor],
        sigma: float,
        *,
        mode: str = "layer",
        layers: str | Sequence[tuple[str, Iterable[torch.Tensor]]] = "module",
        order: str = "random",
        convention: str = "paper",
        seed: int | None = None,
        generator: torch.Generator | None = None,
        independent_ranks: bool = False,
        foreach: bool = True,
        scale: str = "absolute",
        exclude=None,
        restore: str = "copy",
    ) -> None:
        self.law = NoiseLaw(model, sigma, mode=mode, layers=layers, order=order, convention=convention, scale=scale,
                            exclude=exclude)
        self.foreach = bool(foreach)
        self.restore = check_choice("restore", restore, ("copy", "regenerate"))
        params = self.law.params
        devices = list(dict.fromkeys(p.device for p in params))
        dtensor = _dtensor_type()
        self._dtensors = frozenset(id(p) for p in params if dtensor is not None and isinstance(p, dtensor))
        if self.restore == "regenerate" and (self.law.scale == "element" or self._dtensors):
            raise ValueError("restore='regenerate' needs scale='absolute' or 'filter' and plain parameters "
                             "(scale='element' cannot recompute |w| from the perturbed weights; DTensor shards "
                             "are restored from a copy): use restore='copy'")
        if self.law.scale != "absolute" and self._dtensors:
            raise ValueError("scale='filter' / 'element' is not supported with DTensor (FSDP2) parameters")

        if seed is not None and generator is not None:
            raise ValueError("give seed or generator, not both")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0):
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        rank = 0
        if independent_ranks and torch.distributed.is_available() and torch.distributed.is_initialized():
            rank = torch.distributed.get_rank()
        if self._dtensors and generator is not None:
            raise ValueError(
                "DTensor (FSDP2) parameters need seed=, not generator=: each shard's noise generator "
                "is seeded from the seed and the shard's position, so that shards draw independent noise"
            )
        if self._dtensors and independent_ranks:
            raise ValueError(
                "independent_ranks=True is not supported with DTensor (FSDP2) parameters: every rank's "
                "forward uses all ranks' shards, so the ranks must perturb the same layer (the shards' "
                "noise is already independent)"
            )
        if generator is not None:
            if not isinstance(generator, torch.Generator):
                raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
            if any(d != generator.device for d in devices):
                raise ValueError(
                    f"generator is on {generator.device} but parameters live on {devices}; "
                    "pass seed= instead to get one generator per device"
                )
            if independent_ranks:
                raise ValueError("independent_ranks needs seed=, not generator= (the rank is mixed into the seed)")
            self.seed = None
            self._noise_gens = {generator.device: generator}
            selection_seed = generator.initial_seed()
        else:
            self.seed = int(seed) if seed is not None else _shared_seed()
            self._noise_gens = {
                d: torch.Generator(device=d).manual_seed(_seed_for(self.seed, rank, 1 + k))
                for k, d in enumerate(devices)
            }
            selection_seed = _seed_for(self.seed, rank, 0)
        self._selection_gen = torch.Generator().manual_seed(selection_seed)
        # DTensor parameters: one generator per (device, shard), seeded with the shard's mesh
        # coordinate, so shards draw independent noise, reproducible from (seed, world size); the
        # layer choice above is not rank-mixed, so every rank perturbs the same layer
        self._shard_of: dict[int, tuple[torch.device, tuple[int, ...]] | None] = {}
        self._shard_gens: dict[tuple[torch.device, tuple[int, ...]], torch.Generator] = {}
        for p in params:
            if id(p) in self._dtensors:
                key = _shard_key(p)
                self._shard_of[id(p)] = None if key is None else (p.device, key)
                if key is not None and (p.device, key) not in self._shard_gens:
                    seed_k = _seed_for(self.seed, rank, 1 + devices.index(p.device), *(1 + c for c in key))
                    self._shard_gens[p.device, key] = torch.Generator(device=p.device).manual_seed(seed_k)
        # parameters must still be the model's when perturbed (FSDP2 swaps in unsharded ones
        # between all-gather and reshard; fully_shard after the injector replaces them all)
        self._owner_checks: list[tuple[torch.Tensor, list[tuple[nn.Module, str]]]] | None = None
        self._model = model if isinstance(model, nn.Module) else None
        if isinstance(model, nn.Module):
            owners = _module_owners(model)
            self._owner_checks = [(p, owners[id(p)]) for p in params if id(p) in owners]
        elif self._dtensors:
            raise TypeError(
                "with DTensor (FSDP2) parameters, pass the nn.Module, not an iterable of parameters: "
                "the injector checks before each perturbation that the module holds its sharded "
                "parameters (an unsharded module would not see the noise)"
            )
        self._param_ids = frozenset(id(p) for p in params)  # the optimizer-step guard's lookup
        self.step = 0  # number of perturbations done (sigma > 0), drives the cyclic order
        self.last_layer: int | None = None  # index into self.layers of the last perturbed layer
        self._active = False
        self._flat_layout: tuple[list[int], int] | None = None   # draw_flat's layout, computed on first use
        self._flat_spans: dict[int, tuple[int, int]] = {}          # draw_flat's block of each layer, on first use

    # ----------------------------------------------------------------------------- settings
    # The law (layers, std, layer choice) lives in :class:`noisereg.noise.NoiseLaw`; these are views of it.
    @property
    def sigma(self) -> float:
        """Noise scale σ (read/write); see the class docstring for the std per mode."""
        return self.law.sigma

    @sigma.setter
    def sigma(self, value: float) -> None:
        self.law.sigma = value

    @property
    def layers(self) -> list[Layer]:
        """The M layers, ``[(name, [Parameter, ...]), ...]`` in model order."""
        return self.law.layers

    @property
    def mode(self) -> str:
        return self.law.mode

    @property
    def order(self) -> str:
        return self.law.order

    @property
    def convention(self) -> str:
        return self.law.convention

    def std(self) -> float:
        """Per-entry standard deviation of the noise added in the current mode and convention."""
        return self.law.std

    # ------------------------------------------------------------------------------ perturb
    @contextlib.contextmanager
    def perturb(self, negate: bool = False) -> Iterator[NoiseInjector]:
        """Context manager: inside, the chosen weights are ``w + noise``; on exit exactly ``w``.

        Each call draws fresh noise (and, in ``"layer"`` mode, a fresh layer). Yields the injector.
        ``negate=True``: ``w − noise`` for the same draw (for antithetic pairs: load the
        :meth:`state_dict` saved before the ``+noise`` block, then perturb with ``negate=True``;
        :class:`noisereg.NoisyOptimizer` does this with ``antithetic=True``).

        Raises:
            RuntimeError: if already inside ``perturb()`` of this injector, if a perturbed
                parameter was modified in place inside the block (the change would be lost), if
                a parameter is no longer the model's (replaced after the injector was built, or
                an FSDP2 module holding its unsharded parameters), if a parameter was frozen
                (``requires_grad=False``) after the injector was built, or if ``optimizer.step()``
                without a closure, of an optimizer holding these parameters, is called inside the
                block (refused before it changes anything, so the model stays as it was).
        """
        if self._active:
            raise RuntimeError(
                "perturb() is already active on this injector; nested perturb() would perturb "
                "twice. Exit the outer block first (use one block per gradient evaluation)"
            )
        self._active = True
        guard = None  # the hook that refuses optimizer.step() inside the block
        swapped: list[tuple[torch.Tensor, torch.Tensor]] = []  # (parameter, its original data)
        copied: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # DTensor: (param, shard, saved copy)
        regenerated: list[tuple[list[torch.Tensor], torch.device, torch.Tensor, float, Any]] = []  # restore="regenerate"
        try:
            law = self.law
            if law.sigma == 0.0:
                yield self
                return
            if self._owner_checks:
                self._check_owners()
            self.last_layer = law.choose(self.step, self._selection_gen)
            params = law.perturbed_params(self.last_layer)
            frozen = next((p for p in params if not p.requires_grad), None)  # only the ones about to be perturbed
            if frozen is not None:
                raise RuntimeError(
                    f"a parameter of shape {tuple(frozen.shape)} was frozen (requires_grad=False) after the "
                    "NoiseInjector was built; its layers are fixed at construction: build a new injector"
                )
            self.step += 1
            guard = register_optimizer_step_pre_hook(self._refuse_step)
            with torch.no_grad():
                if self._dtensors:
                    params = self._perturb_shards(params, copied, negate)  # in place; leaves the plain ones
                for (device, _), group in _by_kind(params).items():
                    gen = self._noise_gens[device]
                    if self.restore == "regenerate":   # in place; the exit redraws the noise and subtracts it
                        mult, std = law.multipliers(group), law.std   # kept: σ may change inside the block
                        regenerated.append((group, device, gen.get_state(), std, mult))
                        add_noise_(group, std, gen, negate, mult)   # a tensor at a time on the CPU
                        continue
                    noisy = law.perturb_copies(group, gen, self.foreach, negate)
                    for p, new in zip(group, noisy):
                        swapped.append((p, p.data))
                        p.data = new
            swapped += [(p, None) for group, *_ in regenerated for p in group]
            versions = [p._version for p, _ in swapped]
            shard_versions = [(p._version, t._version) for p, t, _ in copied]
            yield self
            changed = [p._version != v for (p, _), v in zip(swapped, versions)]
            changed += [(p._version, t._version) != v for (p, t, _), v in zip(copied, shard_versions)]
            if any(changed):
                raise RuntimeError(
                    "a perturbed parameter was modified in place inside perturb(); the change "
                    "is discarded by the restore. Call optimizer.step() after the with-block"
                )
        finally:
            if guard is not None:
                guard.remove()
            with torch.no_grad():
                for p, original in swapped:
                    if original is None:   # restored below, by regenerating its noise
                        continue
                    p.data = original
                    # a backward() after the block would see the clean weights: make it fail loudly
                    torch.autograd.graph.increment_version(p)
                for group, device, state, std, mult in regenerated:  # the same draw from the saved state, subtracted
                    gen = torch.Generator(device=device)
                    gen.set_state(state)
                    add_noise_(group, std, gen, negate, mult, subtract=True)
                for p, _, saved in copied:
                    # the shard FSDP holds now (its lazy init may re-pad it once, copying the values)
                    p.to_local().copy_(saved)
            self._active = False

    def draw(self, params: list[torch.Tensor] | None = None) -> dict[int, torch.Tensor]:
        """The next perturbation as values, without touching the model: ``{id(p): p + noise}`` for the
        parameters the next ``perturb()`` would perturb (empty when σ = 0).

        Advances the step counter and the generators exactly as ``perturb()`` does, so a sequence of
        ``draw()`` calls gives the noise that the same sequence of ``perturb()`` blocks would inject
        (tested bit for bit). For batched sweeps of many small models (one model per run stacked along a
        leading dimension): ``params``, if given, replaces the injector's parameters one for one (same
        order, shapes and dtypes), e.g. the views of the stacked tensors; the keys stay the ids of the
        injector's own parameters. Plain (non-sharded) parameters only.
        """
        law = self.law
        if law.sigma == 0.0:
            return {}
        self.last_layer = law.choose(self.step, self._selection_gen)
        chosen = law.perturbed_params(self.last_layer)
        values = dict(zip(map(id, law.params), params)) if params is not None else {id(p): p for p in law.params}
        self.step += 1
        out: dict[int, torch.Tensor] = {}
        with torch.no_grad():
            for (device, _), group in _by_kind(chosen).items():
                noisy = law.perturb_copies([values[id(p)] for p in group], self._noise_gens[device], self.foreach)
                out.update(zip(map(id, group), noisy))
        return out

    def draw_flat(self, out: torch.Tensor) -> bool:
        """Fill ``out`` with the next perturbation's noise in the layout :func:`noisereg.noise.flat_layout` gives
        the injector's parameters (``out[offset:offset + numel]`` is a parameter's noise; zero for the
        parameters a layer-wise step leaves alone), as ``perturb()`` would draw it, and advance the stream;
        False (nothing drawn, ``out`` untouched) when σ = 0.

        The fast path of batched sweeps (:mod:`noisereg.training.batched_gd`): one ``normal_`` per run.
        ``perturb()`` fills one flat buffer for the perturbed parameters; laid out from an aligned offset,
        the chosen layer's block of the whole layout is that buffer, so the values are the same.

        Raises:
            ValueError: parameters of several devices or dtypes, or a layer whose parameters are not
                consecutive in the injector's parameter order (use :meth:`draw`).
        """
        law = self.law
        params = law.params
        if self._flat_layout is None:   # checked and laid out once: the parameters are fixed at construction
            if len({(p.device, p.dtype) for p in params}) != 1 or law.scale != "absolute":
                raise ValueError("draw_flat needs parameters of one device and dtype and scale='absolute'; use draw()")
            self._flat_layout = flat_layout(params)
        if law.sigma == 0.0:
            return False
        offsets, total = self._flat_layout
        choice = law.choose(self.step, self._selection_gen)
        if choice is None:
            start, end = 0, total
        else:
            if choice not in self._flat_spans:
                where = {id(p): i for i, p in enumerate(params)}
                idx = [where[id(p)] for p in law.perturbed_params(choice)]
                if idx != list(range(idx[0], idx[0] + len(idx))):
                    raise ValueError("draw_flat needs each layer's parameters consecutive in the injector's order; "
                                     "use draw()")
                self._flat_spans[choice] = (offsets[idx[0]],
                                            offsets[idx[-1] + 1] if idx[-1] + 1 < len(params) else total)
            start, end = self._flat_spans[choice]
            out.zero_()
        self.last_layer = choice
        self.step += 1
        out[start:end].normal_(0.0, law.std, generator=self._noise_gens[params[0].device])
        return True

    def _perturb_shards(self, params: list[torch.Tensor], copied: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
                        negate: bool = False) -> list[torch.Tensor]:
        """Add the law's noise in place to the local shards of the DTensor ``params``; return the others.

        FSDP2 all-gathers each parameter from the storage of its local shard, so the noise must be
        written into that storage: assigning ``.data`` to a DTensor parameter would be ignored. The
        clean shard is saved first and copied back on exit (appended to ``copied``). Shards of one
        (device, shard key, dtype) are drawn by one :meth:`NoiseLaw.perturb_copies` call from the
        generator of that shard.
        """
        plain, by_shard = [], {}
        for p in params:
            if id(p) not in self._dtensors:
                plain.append(p)
            elif (shard := self._shard_of[id(p)]) is not None:
                by_shard.setdefault((*shard, p.dtype), []).append(p)
        for (device, key, _), group in by_shard.items():
            local = [p.to_local() for p in group]
            noisy = self.law.perturb_copies(local, self._shard_gens[device, key], self.foreach, negate)
            for p, t, new in zip(group, local, noisy):
                copied.append((p, t, t.clone()))
                t.copy_(new)
        return plain

    def _refuse_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        """Optimizer step pre-hook, active inside ``perturb()``: a step there would update the perturbed
        weights, and the restore would then discard part of it. Raise before anything changes.

        A step given a closure is let through: frameworks (Lightning's automatic optimization) call
        ``optimizer.step(closure)`` while the weights are perturbed and restore them inside the closure,
        after the backward pass, before the update; if they are not restored by then, the in-place check
        at the end of the block still raises."""
        # torch passes the step's positional arguments with the optimizer itself first: (self, closure?)
        rest = args[1:] if args and args[0] is optimizer else args
        closure = rest[0] if rest else kwargs.get("closure")
        if closure is None and any(id(p) in self._param_ids for group in optimizer.param_groups for p in group["params"]):
            raise RuntimeError(
                f"{type(optimizer).__name__}.step() was called inside perturb(); the restore would discard "
                "the update of the perturbed weights. Call optimizer.step() after the with-block (or use "
                "NoisyOptimizer.step(closure)); nothing was changed"
            )

    def _check_owners(self) -> None:
        """Raise unless every parameter is still registered on its module (the model reads it).

        Plain parameters are checked at the first perturbation (they are swapped by ``.data``,
        which every holder sees); DTensor parameters before every perturbation, since FSDP2
        registers its unsharded parameters in their place while a module is unsharded.
        """
        current = None
        for p, owners in self._owner_checks:
            if any(module._parameters.get(name) is p for module, name in owners):
                continue
            if current is None:  # moved rather than replaced (e.g. by a parametrization)?
                current = {id(q) for q in self._model.parameters()}
            if id(p) in current:
                continue
            module, name = owners[0]
            kind = type(module).__name__
            if id(p) in self._dtensors:
                raise RuntimeError(
                    f"the FSDP2 module {kind} holds its unsharded parameter {name!r} at perturb() "
                    "(after unshard() or set_reshard_after_backward(False)); the noise goes into the "
                    "shards, which it would not read. Reshard first"
                )
            raise RuntimeError(
                f"parameter {name!r} of {kind} was replaced after the NoiseInjector was built (e.g. by "
                "fully_shard or load_state_dict(assign=True)), so perturbing it would not reach the "
                "model. Build the NoiseInjector after fully_shard / loading"
            )
        self._owner_checks = [(p, o) for p, o in self._owner_checks if id(p) in self._dtensors]

    # ------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The noise stream and counters, as plain data (``torch.save``-able, ``weights_only``-safe)."""
        return {
            "sigma": self.sigma,
            "seed": self.seed,
            "mode": self.mode,
            "order": self.order,
            "convention": self.convention,
            "scale": self.law.scale,
            "layer_names": [name for name, _ in self.layers],
            "step": self.step,
            "last_layer": self.last_layer,
            "num_layers": len(self.layers),
            "selection_rng": self._selection_gen.get_state(),
            "noise_rng": [g.get_state() for g in self._noise_gens.values()],
            "shard_rng": [g.get_state() for g in self._shard_gens.values()],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output: the next perturbations repeat the saved run's noise.

        σ and the seed are restored too. States saved before these keys existed load as before.

        Raises:
            ValueError: the state belongs to an injector with another mode, order, convention,
                other layers (count or names) or devices; the message names what differs.
        """
        sd = dict(state_dict)
        missing = {"step", "selection_rng", "noise_rng"} - set(sd)
        if missing:
            raise ValueError(f"state_dict lacks keys {sorted(missing)}; is it a NoiseInjector state?")
        if sd.setdefault("scale", self.law.scale) != self.law.scale:
            raise ValueError(f"state_dict is for scale={sd['scale']!r}, this injector has scale={self.law.scale!r}: "
                             "build the injector as the saved one was")
        for key in ("mode", "order", "convention"):
            if sd.setdefault(key, getattr(self, key)) != getattr(self, key):
                raise ValueError(f"state_dict is for {key}={sd[key]!r}, this injector has {key}="
                                 f"{getattr(self, key)!r}: build the injector as the saved one was")
        if sd.setdefault("num_layers", len(self.layers)) != len(self.layers):
            raise ValueError(
                f"state_dict is for {sd['num_layers']} layers, this injector has {len(self.layers)}"
            )
        if len(sd["noise_rng"]) != len(self._noise_gens):
            raise ValueError(
                f"state_dict has {len(sd['noise_rng'])} noise generators (one per device), "
                f"this injector has {len(self._noise_gens)}"
            )
        if len(sd.setdefault("shard_rng", [])) != len(self._shard_gens):
            raise ValueError(
                f"state_dict has {len(sd['shard_rng'])} shard noise generators, this injector has "
                f"{len(self._shard_gens)}: under FSDP2 load each rank's own state, at the same world size"
            )
        names = [name for name, _ in self.layers]
        if sd.setdefault("layer_names", names) != names:
            diff = next(i for i, (a, b) in enumerate(zip(sd["layer_names"], names)) if a != b)
            raise ValueError(f"state_dict's layer {diff} is {sd['layer_names'][diff]!r}, this injector's is "
                             f"{names[diff]!r}: the layers (and their order) must match")
        self.sigma = sd.setdefault("sigma", self.sigma)
        self.seed = sd.setdefault("seed", self.seed)
        self.step = int(sd["step"])
        self.last_layer = sd.setdefault("last_layer", None)
        self._selection_gen.set_state(sd["selection_rng"])
        for g, s in zip(self._noise_gens.values(), sd["noise_rng"]):
            g.set_state(s)
        for g, s in zip(self._shard_gens.values(), sd["shard_rng"]):
            g.set_state(s)

    def __repr__(self) -> str:
        return (
            f"NoiseInjector(sigma={self.sigma}, mode={self.mode!r}, order={self.order!r}, "
            f"convention={self.convention!r}, scale={self.law.scale!r}, exclude={self.law.exclude!r}, "
            f"restore={self.restore!r}, num_layers={len(self.layers)}, seed={self.seed})"
        )
