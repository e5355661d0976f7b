r"""Noise injection in the ``torch.optim`` closure convention.

:class:`NoisyOptimizer` is the noisy gradient step of Section 2 of Orvieto et al. (2023) written
as an optimizer: the gradient is evaluated at a perturbed point and applied at the clean one,

.. math::

    w_{t+1} = \mathrm{step}\big(w_t,\ \nabla L(w_t + \varepsilon_t)\big),
    \qquad \varepsilon_t \text{ drawn by the injector (full or layer-wise noise)},

where ``step`` is the wrapped optimizer's update (SGD, Adam, ...). It is the three-line loop of
:class:`~noisereg.NoiseInjector` (``zero_grad``; ``with inj.perturb(): loss.backward()``;
``optimizer.step()``) behind ``opt.step(closure)``, bit for bit.

References:
    A. Orvieto, A. Raj, H. Kersting, F. Bach. Explicit Regularization in Overparametrized Models
    via Noise Injection. AISTATS 2023. https://arxiv.org/abs/2206.04613
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch

from noisereg.injection import NoiseInjector

__all__ = ["NoisyOptimizer"]


class NoisyOptimizer(torch.optim.Optimizer):
    r"""Wrap an optimizer so that ``step(closure)`` evaluates the closure at noisy weights.

    ``step(closure)`` runs ``closure()`` (zero the gradients, forward, backward, return the loss)
    inside ``injector.perturb()``, so the gradient is taken at :math:`w + \varepsilon`; then the
    wrapped optimizer steps from the clean weights :math:`w`, restored bit for bit.

    The wrapper holds no optimizer state of its own: ``param_groups``, ``state`` and ``defaults``
    *are* the wrapped optimizer's (the same objects, also after ``load_state_dict``), so an LR
    scheduler built on the wrapper drives the real learning rate, and ``isinstance(opt,
    torch.optim.Optimizer)`` holds for schedulers and training frameworks (Lightning).

    Args:
        optimizer: the ``torch.optim.Optimizer`` that applies the update.
        injector: the :class:`~noisereg.NoiseInjector` that draws the noise (its parameters
            should be the optimizer's, or a subset of them).

    Raises:
        TypeError: ``optimizer`` is not a ``torch.optim.Optimizer`` or ``injector`` is not a
            ``NoiseInjector``.

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

    def __init__(self, optimizer: torch.optim.Optimizer, injector: NoiseInjector) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        if not isinstance(injector, NoiseInjector):
            raise TypeError(f"injector must be a noisereg.NoiseInjector, got {type(injector).__name__}")
        # Optimizer.__init__ would build new param_groups; set up only what its methods use and
        # share the rest with the wrapped optimizer (see the properties below).
        self.optimizer = optimizer
        self.injector = injector
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

    # ------------------------------------------------------------------------------- step
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """Evaluate ``closure()`` at noisy weights, restore them, and step the wrapped optimizer.

        Args:
            closure: zeroes the gradients, runs forward and backward, returns the loss.

        Returns:
            What ``closure()`` returned (the loss at the perturbed weights).

        Raises:
            TypeError: no closure was given.
        """
        if closure is None:
            raise TypeError(
                "NoisyOptimizer.step() needs a closure (zero_grad, forward, backward, return loss): the "
                "gradient must be taken at the perturbed weights, which exist only while step() runs the "
                "closure inside injector.perturb(). Without a closure, write `with injector.perturb(): "
                "loss.backward()` and call the wrapped optimizer's step() after the block"
            )
        with self.injector.perturb():
            with torch.enable_grad():
                loss = closure()
        self.optimizer.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zero the gradients of the wrapped optimizer's parameters."""
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a parameter group to the wrapped optimizer."""
        self.optimizer.add_param_group(param_group)

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

    # ------------------------------------------------------------------------------ misc
    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"NoisyOptimizer({self.optimizer!r}, {self.injector!r})"
