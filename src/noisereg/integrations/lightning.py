"""Noise injection in PyTorch Lightning: the :class:`NoiseInjection` callback.

Needs the ``lightning`` package (``pip install "noisereg[lightning]"``). Each optimizer step takes
its gradient at :math:`w + \\varepsilon` and applies it at :math:`w` (Section 2 of Orvieto et al.,
2023), exactly as the three-line loop of :class:`~noisereg.NoiseInjector`:

- ``on_train_batch_start`` perturbs the weights, ``on_after_backward`` restores them, so every
  micro-batch's forward and backward see the noise and everything else (the optimizer step,
  gradient clipping, validation, checkpoints, logging) sees the clean weights.
- One noise draw per optimizer step: with ``accumulate_grad_batches=K`` the injector's stream
  state is saved before the step's draw and reloaded before each later micro-batch, so all K
  micro-batches see the same noise, bit for bit (the gradient of the noisy full batch).
- The injector's state (noise stream, counters, σ) is the callback's state in Lightning
  checkpoints: ``trainer.fit(model, ckpt_path=...)`` continues the same noise stream.

A :class:`~noisereg.NoisyOptimizer` returned from ``configure_optimizers`` also works under
automatic optimization, without this callback, when ``accumulate_grad_batches == 1``; with more,
Lightning runs the earlier micro-batches of an accumulation window outside ``optimizer.step``, so
:meth:`~noisereg.NoisyOptimizer.step` refuses it at the first step, before any update.

**The weight-perturbation family and SAM.** Several gradient evaluations per step (``samples=k``:
LPF-SGD; ``antithetic=True``: NSO; ``clean_weight=λ``: m-RWP) and :class:`SharpnessAware` (SAM) need
the closure Lightning hands to ``optimizer.step(closure)``: at fit start the callback wraps the
LightningModule's optimizer in a :class:`~noisereg.NoisyOptimizer` (or :class:`~noisereg.SAM`), which
runs the closure (training_step, backward) once per evaluation. Supported: automatic optimization with
``accumulate_grad_batches=1``, and manual optimization where ``training_step`` calls
``opt.step(closure=...)`` with a closure that zeroes the gradients, runs forward and
``manual_backward``; one optimizer; precision 32, 64 or bf16-mixed. Refused at fit start with a one-line
error: ``accumulate_grad_batches > 1`` under automatic optimization (the earlier micro-batches run outside
``step``), several optimizers, 16-mixed precision (its ``GradScaler.step`` takes no closure), a strategy
that accumulates gradients itself (DeepSpeed), and SAM together with a NoiseInjection callback. Lightning
clips gradients (``gradient_clip_val``) after each evaluation, before they are averaged; the LR
scheduler and ``self.log`` work as usual (the logged loss is the last evaluation's). The
injector's ``scale`` (RWP, LPF-SGD: ``"filter"``), ``exclude`` and ``restore`` options pass through
in every mode.

References:
    A. Orvieto, A. Raj, H. Kersting, F. Bach. Explicit Regularization in Overparametrized Models
    via Noise Injection. AISTATS 2023. https://arxiv.org/abs/2206.04613
"""

from __future__ import annotations

import contextlib
import secrets
from typing import Any

import torch

from noisereg.injection import NoiseInjector
from noisereg.integrations import require
from noisereg.integrations._family import CallbackNoisyOptimizer, CallbackSAM, check_options, scheduled_sigma
from noisereg.optim import SAM, NoisyOptimizer
from noisereg.schedules import check_schedule

L = require("lightning", "lightning", "noisereg.integrations.lightning")

__all__ = ["NoiseInjection", "SharpnessAware"]

_FAMILY_DEFAULTS = {"samples": 1, "antithetic": False, "clean_weight": 0.0}


def _install(trainer: Any, pl_module: Any, who: str, wrap: Any, kind: type) -> None:
    """Wrap the LightningModule's one optimizer with ``wrap(optimizer)`` (a ``kind``), refusing the setups
    where Lightning would not run the closure once per evaluation (the module docstring)."""
    if pl_module.automatic_optimization and trainer.accumulate_grad_batches > 1:
        raise RuntimeError(f"{who} evaluates Lightning's closure several times per step and needs "
                           f"accumulate_grad_batches=1 under automatic optimization, got {trainer.accumulate_grad_batches}"
                           ": the earlier micro-batches run outside optimizer.step (use a larger batch instead)")
    if getattr(trainer.precision_plugin, "scaler", None) is not None:
        raise RuntimeError(f"{who} needs optimizer.step(closure), which fp16 mixed precision's GradScaler does not "
                           "call: use precision='bf16-mixed' or '32-true'")
    optimizers = trainer.strategy.optimizers
    if len(optimizers) != 1:
        raise RuntimeError(f"{who} wraps one optimizer, but configure_optimizers returned {len(optimizers)}: "
                           "use one optimizer, or NoisyOptimizer / SAM in configure_optimizers yourself")
    opt = optimizers[0]
    if isinstance(opt, kind):   # a second fit with the same optimizer: wrap the plain one again
        opt = opt.optimizer
    trainer.strategy.optimizers = [wrap(opt)]


class NoiseInjection(L.Callback):
    """A ``lightning.Callback`` that trains with weight-noise injection, one draw per optimizer step.

    Args:
        sigma: noise scale σ ≥ 0, as in :class:`~noisereg.NoiseInjector`; ``callback.injector.sigma``
            can be changed during training (or use ``sigma_schedule``).
        samples, antithetic, clean_weight: the :class:`~noisereg.NoisyOptimizer` options of the
            weight-perturbation family (LPF-SGD: ``samples=k``; NSO: ``antithetic=True``; m-RWP:
            ``clean_weight=0.5``); with any of them the callback wraps the optimizer (module docstring).
        sigma_schedule: None (default: σ is left alone) or a name of :data:`noisereg.schedules.SIGMA_SCHEDULES`:
            before each optimizer step i of n (``trainer.estimated_stepping_batches``) the injector's σ is
            set to ``sigma · sigma_factor(sigma_schedule, i / n, sigma_factor)``.
        sigma_factor: ``cosine_up``'s end factor (default 2).
        **options: the other :class:`~noisereg.NoiseInjector` keyword arguments (``mode``,
            ``layers``, ``order``, ``convention``, ``seed``, ``independent_ranks``, ``foreach``,
            ``scale``, ``exclude``, ``restore``). Without ``seed`` one is drawn on rank 0 and shared by
            all ranks.

    Attributes:
        injector: the :class:`~noisereg.NoiseInjector` on the LightningModule's trainable
            parameters, built when fitting starts (after the model is on its device); ``None``
            before.

    Raises:
        ValueError, TypeError: an invalid ``sigma`` or option (checked on construction).
        RuntimeError: at fit start, if the strategy accumulates gradients itself (DeepSpeed),
            which this callback does not support; with the family's options, the setups refused in the
            module docstring.

    Example:
        >>> import lightning as L
        >>> from noisereg.integrations.lightning import NoiseInjection
        >>> callback = NoiseInjection(sigma=0.05, mode="layer", seed=0)
        >>> trainer = L.Trainer(callbacks=[callback], max_epochs=1, logger=False,
        ...                     enable_checkpointing=False, enable_progress_bar=False)
    """

    def __init__(self, sigma: float, *, samples: int = 1, antithetic: bool = False, clean_weight: float = 0.0,
                 sigma_schedule: str | None = None, sigma_factor: float = 2.0, **options: Any) -> None:
        super().__init__()
        family = {"samples": samples, "antithetic": antithetic, "clean_weight": clean_weight}
        check_options(sigma, options, family, sigma_schedule, sigma_factor)  # fail now, not at fit time
        self.sigma = sigma
        self.options = dict(options)
        self.family = family
        self.sigma_schedule, self.sigma_factor = sigma_schedule, sigma_factor
        self.closure = NoisyOptimizer.evals_per_step(**family) > 1   # several evaluations: the optimizer wrapper
        self.injector: NoiseInjector | None = None
        self._module: Any = None
        self._pending: dict[str, Any] | None = None  # state loaded before the injector exists
        self._stack: contextlib.ExitStack | None = None  # open while the weights are perturbed
        self._window: dict[str, Any] | None = None  # stream state at the start of this step's draw

    # ------------------------------------------------------------------------- perturb/restore
    def _perturb(self) -> None:
        stack = contextlib.ExitStack()
        stack.enter_context(self.injector.perturb())
        self._stack = stack

    def _restore(self) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.close()

    # ------------------------------------------------------------------------------- hooks
    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        """Build the injector on ``pl_module`` (now on its device), once per module."""
        if trainer.strategy.handles_gradient_accumulation:
            raise RuntimeError(
                f"NoiseInjection does not support {type(trainer.strategy).__name__}, which accumulates "
                "gradients itself; use a DDP or single-device strategy"
            )
        if self.injector is None or self._module is not pl_module:
            options = dict(self.options)
            if options.get("seed") is None and options.get("generator") is None:
                options["seed"] = trainer.strategy.broadcast(secrets.randbits(63), src=0)
            self.injector = NoiseInjector(pl_module, self.sigma, **options)
            self._module = pl_module
        if self._pending is not None:
            self.injector.load_state_dict(self._pending)
            self._pending = None
        if self.closure:
            _install(trainer, pl_module, f"NoiseInjection({self._family_text()})",
                     lambda opt: CallbackNoisyOptimizer(opt, self.injector, **self.family), CallbackNoisyOptimizer)

    def _family_text(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.family.items() if v != _FAMILY_DEFAULTS[k])

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        """Set the scheduled σ; perturb the weights for this micro-batch's forward and backward (without the
        family's options: with them the wrapped optimizer perturbs inside ``step``)."""
        self._restore()
        if self.sigma_schedule is not None:
            self.injector.sigma = scheduled_sigma(self.sigma, self.sigma_schedule, self.sigma_factor,
                                                  trainer.global_step, trainer.estimated_stepping_batches)
        if self.closure:
            return
        if trainer.accumulate_grad_batches > 1:
            if self._window is None:
                self._window = self.injector.state_dict()  # first micro-batch: a fresh draw
            else:
                self.injector.load_state_dict(self._window)  # later ones: the same draw again
        self._perturb()

    def on_after_backward(self, trainer: Any, pl_module: Any) -> None:
        """Restore the weights right after the backward (gradients stay those of the noisy point)."""
        self._restore()

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        """The step is applied at the clean weights; the next micro-batch draws fresh noise."""
        self._restore()
        self._window = None

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._restore()  # a training_step that returned None skipped the backward

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self._restore()

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        self._restore()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._restore()

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._restore()
        self._window = None

    # ------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """``{"injector": injector.state_dict()}``, saved in Lightning checkpoints."""
        if self.injector is not None:
            return {"injector": self.injector.state_dict()}
        return {"injector": self._pending} if self._pending is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the injector's state (now, or when it is built at fit start)."""
        state = state_dict.get("injector")
        if state is None:
            return
        if self.injector is not None:
            self.injector.load_state_dict(state)
        else:
            self._pending = state

    def __repr__(self) -> str:
        extra = {**{k: v for k, v in self.family.items() if v != _FAMILY_DEFAULTS[k]},
                 **({"sigma_schedule": self.sigma_schedule, "sigma_factor": self.sigma_factor}
                    if self.sigma_schedule is not None else {}), **self.options}
        opts = "".join(f", {k}={v!r}" for k, v in extra.items())
        return f"NoiseInjection(sigma={self.sigma!r}{opts})"


class SharpnessAware(L.Callback):
    """A ``lightning.Callback`` that trains with SAM (:class:`~noisereg.SAM`): at fit start it wraps the
    LightningModule's optimizer, so each ``optimizer.step(closure)`` evaluates the closure at w and at
    w + ρ g/‖g‖ (supported setups: the module docstring).

    Args:
        rho: the radius ρ >= 0 (default 0.05). adaptive: ASAM.
        rho_schedule, rho_factor: as ``sigma_schedule`` / ``sigma_factor`` of :class:`NoiseInjection`, for ρ.

    Attributes:
        sam: the installed :class:`~noisereg.SAM` (``None`` before fit start).

    Raises:
        ValueError, TypeError: an invalid ``rho``, ``adaptive`` or schedule (on construction).
        RuntimeError: at fit start, a setup refused in the module docstring.

    Example:
        >>> import lightning as L
        >>> from noisereg.integrations.lightning import SharpnessAware
        >>> trainer = L.Trainer(callbacks=[SharpnessAware(rho=0.05)], max_epochs=1, logger=False,
        ...                     enable_checkpointing=False, enable_progress_bar=False)
    """

    def __init__(self, rho: float = 0.05, adaptive: bool = False, *, rho_schedule: str | None = None,
                 rho_factor: float = 2.0) -> None:
        super().__init__()
        SAM(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.0), rho, adaptive)   # fail now
        if rho_schedule is not None:
            check_schedule(rho_schedule, rho_factor)
        self.rho, self.adaptive = rho, adaptive
        self.rho_schedule, self.rho_factor = rho_schedule, rho_factor
        self.sam: CallbackSAM | None = None

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        """Wrap the optimizer in SAM (refusing the setups Lightning would not run correctly)."""
        if any(isinstance(c, NoiseInjection) for c in trainer.callbacks):
            raise RuntimeError("SharpnessAware and NoiseInjection cannot train together (SAM's second evaluation "
                               "would see no noise): use one of them")
        if trainer.strategy.handles_gradient_accumulation:
            raise RuntimeError(f"SharpnessAware does not support {type(trainer.strategy).__name__}, which accumulates "
                               "gradients itself; use a DDP or single-device strategy")

        def wrap(opt: Any) -> CallbackSAM:
            self.sam = CallbackSAM(opt, self.rho, self.adaptive)
            return self.sam

        _install(trainer, pl_module, "SharpnessAware", wrap, CallbackSAM)

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        """Set the scheduled ρ."""
        if self.rho_schedule is not None and self.sam is not None:
            self.sam.rho = scheduled_sigma(self.rho, self.rho_schedule, self.rho_factor, trainer.global_step,
                                           trainer.estimated_stepping_batches)

    def __repr__(self) -> str:
        sched = f", rho_schedule={self.rho_schedule!r}, rho_factor={self.rho_factor!r}" if self.rho_schedule else ""
        return f"SharpnessAware(rho={self.rho!r}, adaptive={self.adaptive!r}{sched})"
