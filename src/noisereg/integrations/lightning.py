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

L = require("lightning", "lightning", "noisereg.integrations.lightning")

__all__ = ["NoiseInjection"]


class NoiseInjection(L.Callback):
    """A ``lightning.Callback`` that trains with weight-noise injection, one draw per optimizer step.

    Args:
        sigma: noise scale σ ≥ 0, as in :class:`~noisereg.NoiseInjector`; ``callback.injector.sigma``
            can be changed during training (schedules).
        **options: the other :class:`~noisereg.NoiseInjector` keyword arguments (``mode``,
            ``layers``, ``order``, ``convention``, ``seed``, ``independent_ranks``, ``foreach``).
            Without ``seed`` one is drawn on rank 0 and shared by all ranks.

    Attributes:
        injector: the :class:`~noisereg.NoiseInjector` on the LightningModule's trainable
            parameters, built when fitting starts (after the model is on its device); ``None``
            before.

    Raises:
        ValueError, TypeError: an invalid ``sigma`` or option (checked on construction).
        RuntimeError: at fit start, if the strategy accumulates gradients itself (DeepSpeed),
            which this callback does not support.

    Example:
        >>> import lightning as L
        >>> from noisereg.integrations.lightning import NoiseInjection
        >>> callback = NoiseInjection(sigma=0.05, mode="layer", seed=0)
        >>> trainer = L.Trainer(callbacks=[callback], max_epochs=1, logger=False,
        ...                     enable_checkpointing=False, enable_progress_bar=False)
    """

    def __init__(self, sigma: float, **options: Any) -> None:
        super().__init__()
        # fail now, not at fit time: build a throw-away injector with the same settings
        probe = {k: v for k, v in options.items() if k not in ("layers", "generator")}
        NoiseInjector([torch.nn.Parameter(torch.zeros(1))], sigma, **probe)
        self.sigma = sigma
        self.options = dict(options)
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

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        """Perturb the weights for this micro-batch's forward and backward."""
        self._restore()
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
        opts = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return f"NoiseInjection(sigma={self.sigma!r}{opts})"
