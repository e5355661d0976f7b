r"""Noise injection in the ``torch.optim`` closure convention.

:class:`NoisyOptimizer` is the noisy gradient step of Section 2 of Orvieto et al. (2023) written
as an optimizer: the gradient is evaluated at a perturbed point and applied at the clean one,

.. math::

    w_{t+1} = \mathrm{step}\big(w_t,\ \nabla L(w_t + \varepsilon_t)\big),
    \qquad \varepsilon_t \text{ drawn by the injector (full or layer-wise noise)},

where ``step`` is the wrapped optimizer's update (SGD, Adam, ...). It is the three-line loop of
:class:`~noisereg.NoiseInjector` (``zero_grad``; ``with inj.perturb(): loss.backward()``;
``optimizer.step()``) behind ``opt.step(closure)``, bit for bit.

:class:`SAM` is the baseline it is compared with, in the same convention: sharpness-aware
minimization takes the gradient at the worst-case point :math:`w + \rho g/\|g\|` of a ball
instead of at a random one.

References:
    A. Orvieto, A. Raj, H. Kersting, F. Bach. Explicit Regularization in Overparametrized Models
    via Noise Injection. AISTATS 2023. https://arxiv.org/abs/2206.04613
"""

from __future__ import annotations

import contextlib

import numbers

from collections import OrderedDict
from collections.abc import Callable
import functools
from typing import Any

import torch

from noisereg.injection import NoiseInjector
from noisereg.noise import check_sigma

__all__ = ["NoisyOptimizer", "SAM"]


class _Wrapper(torch.optim.Optimizer):
    """Shared machinery of the wrappers: the wrapped optimizer's own containers, hooks, pickling.

    ``Optimizer.__init__`` would build new ``param_groups``; :meth:`_wrap` sets up only what the
    base class's methods use and shares the rest with the wrapped optimizer through the
    properties below, so a scheduler built on the wrapper drives the real learning rate.
    """

    def _wrap(self, optimizer: torch.optim.Optimizer) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        if isinstance(optimizer, _Wrapper):   # each wrapper runs the closure its own way: nesting them is not defined
            raise TypeError(f"optimizer must be a plain torch.optim.Optimizer, got a {type(optimizer).__name__}: "
                            f"{type(self).__name__} cannot wrap another noisereg wrapper; wrap the torch optimizer once")
        self.optimizer = optimizer
        self._optimizer_step_pre_hooks: OrderedDict = OrderedDict()
        self._optimizer_step_post_hooks: OrderedDict = OrderedDict()
        self._optimizer_state_dict_pre_hooks: OrderedDict = OrderedDict()
        self._optimizer_state_dict_post_hooks: OrderedDict = OrderedDict()
        self._optimizer_load_state_dict_pre_hooks: OrderedDict = OrderedDict()
        self._optimizer_load_state_dict_post_hooks: OrderedDict = OrderedDict()
        self._patch_step_function()  # step pre/post hooks and profiling, as for any optimizer
        self._warned_capturable_if_run_uncaptured = True

    # ------------------------------------------------- the wrapped optimizer's own containers
    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        """The wrapped optimizer's ``param_groups`` list itself (schedulers write the real lr)."""
        return self.optimizer.param_groups

    @param_groups.setter
    def param_groups(self, value: list[dict[str, Any]]) -> None:
        self.optimizer.param_groups = value

    @property
    def state(self) -> Any:  # type: ignore[override]
        """The wrapped optimizer's per-parameter state."""
        return self.optimizer.state

    @state.setter
    def state(self, value: Any) -> None:
        self.optimizer.state = value

    @property
    def defaults(self) -> dict[str, Any]:  # type: ignore[override]
        """The wrapped optimizer's defaults."""
        return self.optimizer.defaults

    @defaults.setter
    def defaults(self, value: dict[str, Any]) -> None:
        self.optimizer.defaults = value

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zero the gradients of the wrapped optimizer's parameters."""
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a parameter group to the wrapped optimizer."""
        self.optimizer.add_param_group(param_group)

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


_LIGHTNING_ACCUMULATION = (
    "NoisyOptimizer under Lightning with accumulate_grad_batches > 1: Lightning runs the earlier "
    "micro-batches of each window outside step(), so they would see no noise. Return the plain "
    "optimizer from configure_optimizers and add the callback "
    "noisereg.integrations.lightning.NoiseInjection instead; nothing was updated")


def _attached_trainer_accumulates(model: Any) -> bool:
    """Whether ``model`` is a LightningModule attached to a Trainer that accumulates gradients under automatic
    optimization: then a NoisyOptimizer built in ``configure_optimizers`` (at fit start, before any step) is
    refused. Duck-typed: the core does not import Lightning."""
    trainer = getattr(model, "_trainer", None)
    return (trainer is not None and type(model).__module__ != "builtins"
            and getattr(model, "automatic_optimization", False) is True
            and isinstance(getattr(trainer, "accumulate_grad_batches", 1), int)
            and trainer.accumulate_grad_batches > 1)


def _lightning_accumulates(closure: Any) -> bool:
    """Whether ``closure`` is Lightning's automatic-optimization closure of the last micro-batch of an
    accumulation window (Lightning 2.x): its zero-grad function is None because the window's earlier
    micro-batches already added their gradients, while its backward function is set (both None means
    Lightning skips the backward pass, no accumulation)."""
    seen, todo = 0, [closure]
    while todo and seen < 8:  # Lightning hands the closure through functools.partial wrappers (precision plugins)
        c, seen = todo.pop(), seen + 1
        if isinstance(c, functools.partial):
            todo += [*c.args, *c.keywords.values()]
        elif type(c).__module__.startswith("lightning.pytorch.loops"):
            return getattr(c, "_zero_grad_fn", 0) is None and getattr(c, "_backward_fn", None) is not None
    return False


class NoisyOptimizer(_Wrapper):
    r"""Wrap an optimizer so that ``step(closure)`` evaluates the closure at noisy weights.

    ``step(closure)`` runs ``closure()`` (zero the gradients, forward, backward, return the loss)
    inside ``injector.perturb()``, so the gradient is taken at :math:`w + \varepsilon`; then the
    wrapped optimizer steps from the clean weights :math:`w`, restored bit for bit.

    The wrapper holds no optimizer state of its own: ``param_groups``, ``state`` and ``defaults``
    *are* the wrapped optimizer's (the same objects, also after ``load_state_dict``), so an LR
    scheduler built on the wrapper drives the real learning rate, and ``isinstance(opt,
    torch.optim.Optimizer)`` holds for schedulers and training frameworks (Lightning).

    Several evaluations per step (the weight-perturbation family: LPF-SGD averages k draws, NSO
    averages two-point pairs, m-RWP mixes in the clean gradient): with ``samples=k`` the closure runs
    at k independent draws :math:`w + \xi_i`; with ``antithetic=True`` also at :math:`w - \xi_i` for
    each draw (the same :math:`\xi_i`); with ``clean_weight=λ > 0`` once more at the clean weights.
    The optimizer then steps on

    .. math::

        g = \lambda\,\nabla L(w) + (1 - \lambda)\,\frac{1}{E}\sum_{e=1}^{E} \nabla L(w \pm \xi_{i(e)}),

    E = k evaluations (2k antithetic). The closure zeroes the gradients as usual; the wrapper keeps
    each evaluation's gradient and writes :math:`g` into ``.grad`` before stepping. A step costs
    E (+1 with λ > 0) gradient evaluations and k draws of the injector (``injector.step`` counts
    draws; an antithetic pair is one draw). For a quadratic loss the gradient is affine in w, so
    one antithetic pair averages to the clean gradient exactly (up to rounding; tested).
    The defaults (1, False, 0) are the paper's one-evaluation step.

    Args:
        optimizer: the ``torch.optim.Optimizer`` that applies the update.
        injector: the :class:`~noisereg.NoiseInjector` that draws the noise; its parameters must be
            the optimizer's, or a subset of them.
        samples: draws per step, an integer k >= 1.
        antithetic: evaluate each draw at ±ξ.
        clean_weight: λ in [0, 1), the weight of the clean gradient (λ = 1 would drop the noisy one).

    Raises:
        TypeError: ``optimizer`` is not a plain ``torch.optim.Optimizer`` (a :class:`SAM` or another
            ``NoisyOptimizer`` is refused: wrappers do not nest) or ``injector`` is not a
            ``NoiseInjector``; ``samples`` is not an integer or ``antithetic`` not a bool.
        ValueError: ``samples`` < 1, ``clean_weight`` outside [0, 1), or the injector perturbs a
            parameter the optimizer does not hold (an injector built on another model).

    Example:
        >>> import torch, noisereg as nr
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
        >>> inj = nr.NoiseInjector(model, sigma=0.05, mode="layer", seed=0)
        >>> opt = nr.NoisyOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), inj)
        >>> x, y = torch.randn(16, 4), torch.randn(16, 1)
        >>> def closure():
        ...     opt.zero_grad()
        ...     loss = 0.5 * (model(x) - y).pow(2).sum(1).mean()
        ...     loss.backward()
        ...     return loss
        >>> loss = opt.step(closure)
        >>> opt.param_groups is opt.optimizer.param_groups
        True

    .. note::
        ``step()`` needs the closure: the noisy weights exist only while ``step`` runs it. In a
        hand-written loop without a closure use ``with injector.perturb():`` around the backward
        and the plain optimizer instead (same result). Under gradient accumulation the closure
        must run every micro-batch's forward and backward, so that all of them see the same noise;
        Lightning with ``accumulate_grad_batches > 1`` runs the earlier micro-batches outside
        ``step()``, so there use :class:`noisereg.integrations.lightning.NoiseInjection`.
        ``torch.amp.GradScaler.step`` refuses closures: with fp16 use the three-line loop.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, injector: NoiseInjector, *, samples: int = 1,
                 antithetic: bool = False, clean_weight: float = 0.0) -> None:
        if not isinstance(injector, NoiseInjector):
            raise TypeError(f"injector must be a noisereg.NoiseInjector, got {type(injector).__name__}")
        if isinstance(samples, bool) or not isinstance(samples, numbers.Integral):
            raise TypeError(f"samples must be an integer >= 1, got {samples!r}")
        if samples < 1:
            raise ValueError(f"samples must be an integer >= 1, got {samples!r}")
        if not isinstance(antithetic, bool):
            raise TypeError(f"antithetic must be True or False, got {antithetic!r}")
        if (isinstance(clean_weight, bool) or not isinstance(clean_weight, numbers.Real)
                or not 0.0 <= float(clean_weight) < 1.0):
            raise ValueError(f"clean_weight must be a number in [0, 1) (1 gives the noisy gradient weight 0: use the "
                             f"plain optimizer), got {clean_weight!r}")
        if _attached_trainer_accumulates(getattr(injector, "_model", None)):
            raise RuntimeError(_LIGHTNING_ACCUMULATION)
        self._wrap(optimizer)
        held = {id(p) for group in optimizer.param_groups for p in group["params"]}
        foreign = [p for p in injector.law.params if id(p) not in held]
        if foreign:   # the noise would go to weights the optimizer never steps: training without noise
            raise ValueError(
                f"injector perturbs {len(foreign)} parameter(s) the optimizer does not hold (the first of shape "
                f"{tuple(foreign[0].shape)}): build the NoiseInjector on the model whose parameters the optimizer updates")
        self.injector = injector
        self.samples, self.antithetic, self.clean_weight = int(samples), antithetic, float(clean_weight)

    @staticmethod
    def evals_per_step(samples: int = 1, antithetic: bool = False, clean_weight: float = 0.0) -> int:
        """Gradient evaluations per step of these settings: k, 2k antithetic, +1 with ``clean_weight`` > 0."""
        return samples * (2 if antithetic else 1) + (1 if clean_weight > 0 else 0)

    @property
    def grad_evals_per_step(self) -> int:
        """Gradient evaluations (closure calls) per :meth:`step`: :meth:`evals_per_step` of its settings."""
        return self.evals_per_step(self.samples, self.antithetic, self.clean_weight)

    # ------------------------------------------------------------------------------- step
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """Evaluate ``closure()`` at noisy weights, restore them, and step the wrapped optimizer.

        Args:
            closure: zeroes the gradients, runs forward and backward, returns the loss.

        Returns:
            What ``closure()`` returned (the loss at the perturbed weights).

        Raises:
            TypeError: no closure was given.
            RuntimeError: Lightning's automatic optimization accumulates gradients over micro-batches
                (``accumulate_grad_batches > 1``): it runs the earlier micro-batches outside ``step()``,
                without noise; refused at the first step, before any update (the constructor already
                refuses it at fit start when the injector was built from the LightningModule).
        """
        if _lightning_accumulates(closure):
            raise RuntimeError(_LIGHTNING_ACCUMULATION)
        if closure is None:
            raise TypeError(
                "NoisyOptimizer.step() needs a closure (zero_grad, forward, backward, return loss): the "
                "gradient must be taken at the perturbed weights, which exist only while step() runs the "
                "closure inside injector.perturb(). Without a closure, write `with injector.perturb(): "
                "loss.backward()` and call the wrapped optimizer's step() after the block"
            )
        if self.grad_evals_per_step == 1:  # the paper's step: one evaluation, the gradient left where it is
            with self.injector.perturb():
                with torch.enable_grad():
                    loss = closure()
            self.optimizer.step()
            return loss
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        total: list[torch.Tensor | None] = [None] * len(params)
        losses = []

        def evaluate(block) -> Any:
            with block, torch.enable_grad():
                value = closure()
            for i, p in enumerate(params):
                if p.grad is not None:
                    total[i] = p.grad.detach().clone() if total[i] is None else total[i].add_(p.grad)
            return value

        for _ in range(self.samples):
            state = self.injector.state_dict() if self.antithetic else None
            losses.append(evaluate(self.injector.perturb()))
            if self.antithetic:   # the same draw, negated: rewind the stream, then w − ξ
                self.injector.load_state_dict(state)
                losses.append(evaluate(self.injector.perturb(negate=True)))
        mean = [None if t is None else t / len(losses) for t in total]
        if self.clean_weight > 0:
            total = [None] * len(params)
            evaluate(contextlib.nullcontext())
            lam = self.clean_weight
            mean = [None if m is None and c is None else        # a missing gradient counts as zero
                    lam * c if m is None else (1 - lam) * m if c is None else lam * c + (1 - lam) * m
                    for m, c in zip(mean, total)]
        for p, g in zip(params, mean):
            p.grad = g
        self.optimizer.step()
        return sum(losses) / len(losses)

    # ------------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """``{"optimizer": wrapped optimizer's state_dict, "injector": the injector's}``.

        Plain data: ``torch.save`` it and load it back with ``torch.load(..., weights_only=True)``.
        """
        return {"optimizer": self.optimizer.state_dict(), "injector": self.injector.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load :meth:`state_dict` output: the optimizer resumes and the noise stream continues.

        Raises:
            ValueError: ``state_dict`` lacks the ``"optimizer"`` or ``"injector"`` entry.
        """
        missing = {"optimizer", "injector"} - set(state_dict)
        if missing:
            raise ValueError(
                f"state_dict lacks {sorted(missing)}; is it a NoisyOptimizer state_dict? (a plain optimizer's "
                "state_dict goes to .optimizer.load_state_dict)"
            )
        self.optimizer.load_state_dict(state_dict["optimizer"])
        self.injector.load_state_dict(state_dict["injector"])

    def __repr__(self) -> str:
        return f"NoisyOptimizer({self.optimizer!r}, {self.injector!r})"


class SAM(_Wrapper):
    r"""Sharpness-aware minimization: step with the gradient at the worst-case nearby point.

    ``step(closure)`` takes one SAM step (Foret et al., 2021) around the wrapped optimizer:

    .. math::

        g = \nabla L(w),\qquad
        \varepsilon = \rho\,\frac{g}{\|g\|_2}
        \quad\Big(\text{ASAM: } \varepsilon = \rho\,\frac{T^2 g}{\|T g\|_2},\ T = \operatorname{diag}|w|\Big),
        \qquad w \leftarrow \mathrm{step}\big(w,\ \nabla L(w + \varepsilon)\big),

    where ``step`` is the wrapped optimizer's update and :math:`\|\cdot\|_2` is the norm over all
    its parameters together. The closure runs twice, at :math:`w` and at :math:`w + \varepsilon`,
    so one SAM step costs two gradient evaluations. Between them the weights are put back exactly
    (from a saved copy, never by subtracting :math:`\varepsilon`). :math:`g = 0` gives
    :math:`\varepsilon = 0`.

    As :class:`NoisyOptimizer`, the wrapper holds no optimizer state of its own: ``param_groups``,
    ``state`` and ``defaults`` *are* the wrapped optimizer's, so an LR scheduler built on the
    wrapper drives the real learning rate. ``rho`` may be changed between steps (a schedule).

    Args:
        optimizer: the ``torch.optim.Optimizer`` that applies the update (its parameters with a
            gradient are the ones perturbed).
        rho: the radius ρ >= 0 of the perturbation (default 0.05; 0 gives the wrapped optimizer).
        adaptive: ASAM (Kwon et al., 2021): the perturbation is scaled elementwise by
            :math:`T = |w|`, which makes the sharpness invariant to rescaling the weights.

    Raises:
        TypeError: ``optimizer`` is not a plain ``torch.optim.Optimizer`` (a ``SAM`` or a
            :class:`NoisyOptimizer` is refused: wrappers do not nest); ``rho`` is not a real number;
            ``adaptive`` is not a bool.
        ValueError: ``rho`` is negative or not finite.

    Example:
        >>> import torch, noisereg as nr
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
        >>> sam = nr.SAM(torch.optim.SGD(model.parameters(), lr=0.1), rho=0.05)
        >>> x, y = torch.randn(16, 4), torch.randn(16, 1)
        >>> def closure():
        ...     sam.zero_grad()
        ...     loss = 0.5 * (model(x) - y).pow(2).sum(1).mean()
        ...     loss.backward()
        ...     return loss
        >>> loss = sam.step(closure)  # the loss at w, before the step
        >>> sam.param_groups is sam.optimizer.param_groups
        True

    .. note::
        In ASAM, Kwon et al. add a small constant to :math:`|w|` in their experiments (so that zero
        weights are perturbed too); here :math:`T = |w|` exactly. With BatchNorm in training mode
        both forward passes of a step update the running statistics.

    References:
        P. Foret, A. Kleiner, H. Mobahi, B. Neyshabur. Sharpness-Aware Minimization for Efficiently
        Improving Generalization. ICLR 2021. https://arxiv.org/abs/2010.01412

        J. Kwon, J. Kim, H. Park, I. K. Choi. ASAM: Adaptive Sharpness-Aware Minimization for
        Scale-Invariant Learning of Deep Neural Networks. ICML 2021. https://arxiv.org/abs/2102.11600
    """

    grad_evals_per_step = 2
    """Gradient evaluations (closure calls) per :meth:`step`: at w and at w + ε."""

    def __init__(self, optimizer: torch.optim.Optimizer, rho: float = 0.05, adaptive: bool = False) -> None:
        if not isinstance(adaptive, bool):
            raise TypeError(f"adaptive must be a bool, got {type(adaptive).__name__}")
        self._wrap(optimizer)
        self.rho = rho  # checked by the setter
        self.adaptive = adaptive

    @property
    def rho(self) -> float:
        """The radius ρ >= 0 of the perturbation."""
        return self._rho

    @rho.setter
    def rho(self, value: float) -> None:
        self._rho = check_sigma(value, "rho")  # the same rule as σ: a finite real number >= 0

    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """Evaluate ``closure()`` at w and at w + ε, restore w, and step the wrapped optimizer.

        Args:
            closure: zeroes the gradients, runs forward and backward, returns the loss.

        Returns:
            What the first ``closure()`` returned (the loss at w).

        Raises:
            TypeError: no closure was given.
        """
        if closure is None:
            raise TypeError(
                "SAM.step() needs a closure (zero_grad, forward, backward, return loss): SAM evaluates the "
                "gradient twice, at w and at the perturbed weights w + rho*g/||g||, and only the closure can "
                "recompute it there"
            )
        with torch.enable_grad():
            loss = closure()
        params = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
        if not params:
            self.optimizer.step()
            return loss
        with torch.no_grad():
            saved = [p.detach().clone() for p in params]
            direction = [p.grad * p.abs() for p in params] if self.adaptive else [p.grad for p in params]
            device = params[0].device
            norm = torch.linalg.vector_norm(
                torch.stack([torch.linalg.vector_norm(d).to(device) for d in direction]))
            scale = torch.where(norm > 0, self.rho / norm, torch.zeros_like(norm))  # no host sync
            for p, d in zip(params, direction):
                # ASAM: ε = ρ T²g/‖Tg‖ = ρ |w| (|w| g)/‖|w| g‖
                p.add_(d * p.abs() * scale.to(p.device) if self.adaptive else d * scale.to(p.device))
        try:
            with torch.enable_grad():
                closure()
        finally:
            with torch.no_grad():
                for p, s in zip(params, saved):
                    p.copy_(s)
        self.optimizer.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        """``{"optimizer": wrapped optimizer's state_dict, "rho": ρ, "adaptive": bool}``: plain data."""
        return {"optimizer": self.optimizer.state_dict(), "rho": self.rho, "adaptive": self.adaptive}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load :meth:`state_dict` output (the wrapped optimizer's state and ρ, as torch.optim loads lr).

        Raises:
            ValueError: ``state_dict`` lacks the ``"optimizer"``, ``"rho"`` or ``"adaptive"`` entry.
        """
        missing = {"optimizer", "rho", "adaptive"} - set(state_dict)
        if missing:
            raise ValueError(
                f"state_dict lacks {sorted(missing)}; is it a SAM state_dict? (a plain optimizer's "
                "state_dict goes to .optimizer.load_state_dict)"
            )
        self.optimizer.load_state_dict(state_dict["optimizer"])
        self.rho = state_dict["rho"]
        self.adaptive = bool(state_dict["adaptive"])

    def __repr__(self) -> str:
        return f"SAM({self.optimizer!r}, rho={self.rho}, adaptive={self.adaptive})"
