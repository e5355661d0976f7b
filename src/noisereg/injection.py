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
into one flat buffer, so the extra memory is one copy of the perturbed tensors, only while inside.

References:
    A. Orvieto, A. Raj, H. Kersting, F. Bach. Explicit Regularization in Overparametrized Models
    via Noise Injection. AISTATS 2023. https://arxiv.org/abs/2206.04613
"""

from __future__ import annotations

import contextlib
import numbers
import secrets
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from noisereg.layers import Layer
from noisereg.noise import CONVENTIONS, MODES, ORDERS, NoiseLaw, check_sigma, noisy_copies

__all__ = ["CONVENTIONS", "MODES", "NoiseInjector", "ORDERS", "check_sigma", "noisy_copies"]


def _seed_for(seed: int, *key: int) -> int:
    """A 63-bit seed for stream ``key`` derived from ``seed`` (numpy's SeedSequence mixing)."""
    return int(np.random.SeedSequence(seed, spawn_key=key).generate_state(1, np.uint64)[0] >> 1)


def _shared_seed() -> int:
    """A fresh OS seed; under ``torch.distributed``, rank 0's, broadcast so every rank agrees."""
    seed = secrets.randbits(63)
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        box = [seed]
        dist.broadcast_object_list(box, src=0)
        seed = int(box[0])
    return seed


class NoiseInjector:
    r"""Perturb a model's weights with Gaussian noise for one gradient evaluation, then restore them.

    Section 2 of Orvieto et al. (2023): ``mode="full"`` adds :math:`\sigma\varepsilon` to every
    trainable parameter ("GD+noise"); ``mode="layer"`` adds noise to one of the :math:`M` layers
    ("GD+noise (layer)"), with per-entry standard deviation:

    ============  ===================  ==================
    convention    full                 layer
    ============  ===================  ==================
    ``paper``     :math:`\sigma`        :math:`\sigma\sqrt{M}`
    ``official``  :math:`\sigma/\sqrt{M}`  :math:`\sigma`
    ============  ===================  ==================

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
    ) -> None:
        self.law = NoiseLaw(model, sigma, mode=mode, layers=layers, order=order, convention=convention)
        self.foreach = bool(foreach)
        params = self.law.params
        devices = list(dict.fromkeys(p.device for p in params))

        if seed is not None and generator is not None:
            raise ValueError("give seed or generator, not both")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0):
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        rank = 0
        if independent_ranks and torch.distributed.is_available() and torch.distributed.is_initialized():
            rank = torch.distributed.get_rank()
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
        self.step = 0  # number of perturbations done (sigma > 0), drives the cyclic order
        self.last_layer: int | None = None  # index into self.layers of the last perturbed layer
        self._active = False

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
    def perturb(self) -> Iterator[NoiseInjector]:
        """Context manager: inside, the chosen weights are ``w + noise``; on exit exactly ``w``.

        Each call draws fresh noise (and, in ``"layer"`` mode, a fresh layer). Yields the injector.

        Raises:
            RuntimeError: if already inside ``perturb()`` of this injector, or if a perturbed
                parameter was modified in place inside the block (the change would be lost).
        """
        if self._active:
            raise RuntimeError(
                "perturb() is already active on this injector; nested perturb() would perturb "
                "twice. Exit the outer block first (use one block per gradient evaluation)"
            )
        self._active = True
        swapped: list[tuple[torch.Tensor, torch.Tensor]] = []  # (parameter, its original data)
        try:
            law = self.law
            if law.sigma == 0.0:
                yield self
                return
            self.last_layer = law.choose(self.step, self._selection_gen)
            params = law.perturbed_params(self.last_layer)
            self.step += 1
            with torch.no_grad():
                by_kind: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
                for p in params:
                    by_kind.setdefault((p.device, p.dtype), []).append(p)
                for (device, _), group in by_kind.items():
                    noisy = law.perturb_copies(group, self._noise_gens[device], self.foreach)
                    for p, new in zip(group, noisy):
                        swapped.append((p, p.data))
                        p.data = new
            versions = [p._version for p, _ in swapped]
            yield self
            changed = [p._version != v for (p, _), v in zip(swapped, versions)]
            if any(changed):
                raise RuntimeError(
                    "a perturbed parameter was modified in place inside perturb(); the change "
                    "is discarded by the restore. Call optimizer.step() after the with-block"
                )
        finally:
            with torch.no_grad():
                for p, original in swapped:
                    p.data = original
                    # a backward() after the block would see the clean weights: make it fail loudly
                    torch.autograd.graph.increment_version(p)
            self._active = False

    # ------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The noise stream and counters, as plain data (``torch.save``-able, ``weights_only``-safe)."""
        return {
            "sigma": self.sigma,
            "step": self.step,
            "last_layer": self.last_layer,
            "num_layers": len(self.layers),
            "selection_rng": self._selection_gen.get_state(),
            "noise_rng": [g.get_state() for g in self._noise_gens.values()],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output: the next perturbations repeat the saved run's noise.

        Raises:
            ValueError: the state belongs to an injector with other layers or devices.
        """
        sd = dict(state_dict)
        missing = {"step", "selection_rng", "noise_rng"} - set(sd)
        if missing:
            raise ValueError(f"state_dict lacks keys {sorted(missing)}; is it a NoiseInjector state?")
        if sd.setdefault("num_layers", len(self.layers)) != len(self.layers):
            raise ValueError(
                f"state_dict is for {sd['num_layers']} layers, this injector has {len(self.layers)}"
            )
        if len(sd["noise_rng"]) != len(self._noise_gens):
            raise ValueError(
                f"state_dict has {len(sd['noise_rng'])} noise generators (one per device), "
                f"this injector has {len(self._noise_gens)}"
            )
        self.sigma = sd.setdefault("sigma", self.sigma)
        self.step = int(sd["step"])
        self.last_layer = sd.setdefault("last_layer", None)
        self._selection_gen.set_state(sd["selection_rng"])
        for g, s in zip(self._noise_gens.values(), sd["noise_rng"]):
            g.set_state(s)

    def __repr__(self) -> str:
        return (
            f"NoiseInjector(sigma={self.sigma}, mode={self.mode!r}, order={self.order!r}, "
            f"convention={self.convention!r}, num_layers={len(self.layers)}, seed={self.seed})"
        )
