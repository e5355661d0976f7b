"""Noise injection in the Hugging Face ``transformers.Trainer``: :class:`NoiseInjectionCallback`.

Needs ``transformers`` and ``accelerate`` (``pip install "noisereg[transformers]"``). Each
optimizer step takes its gradient at :math:`w + \\varepsilon` and applies it at :math:`w`
(Section 2 of Orvieto et al., 2023):

- ``on_step_begin`` (before the first micro-batch of an optimizer step) perturbs the weights;
  they stay perturbed through the forward and backward of all ``gradient_accumulation_steps``
  micro-batches, so the step draws noise once and accumulates the gradient at one noisy point.
- ``on_pre_optimizer_step`` (after gradient clipping, right before ``optimizer.step()``) restores
  them bit for bit; logging, evaluation and checkpoints happen after the step, at clean weights.
- The injector's state is JSON in ``trainer_state.json`` of every checkpoint (the callback is an
  ``ExportableState``), and ``trainer.train(resume_from_checkpoint=...)`` continues the same
  noise stream.
- ``sigma_schedule`` sets σ before each optimizer step from :func:`noisereg.schedules.sigma_factor`
  at the fraction ``state.global_step / state.max_steps`` of training.

**What the Trainer allows of the weight-perturbation family.** The injector's options pass through:
``scale="filter"`` (RWP's per-filter noise), ``exclude``, ``restore``. The options that evaluate the
gradient several times per step (``samples`` > 1: LPF-SGD; ``antithetic``: NSO; ``clean_weight``:
m-RWP) and SAM need ``optimizer.step(closure)``, and ``transformers.Trainer`` calls
``optimizer.step()`` without a closure after running the forward and backward itself: they are
refused on construction with a one-line error. Use the Lightning callbacks
(:mod:`noisereg.integrations.lightning`) or :class:`noisereg.NoisyOptimizer` / :class:`noisereg.SAM`
in a loop of your own for them.

References:
    A. Orvieto, A. Raj, H. Kersting, F. Bach. Explicit Regularization in Overparametrized Models
    via Noise Injection. AISTATS 2023. https://arxiv.org/abs/2206.04613
"""

from __future__ import annotations

import base64
import contextlib
from typing import Any

import torch

from noisereg.injection import NoiseInjector
from noisereg.integrations import require
from noisereg.integrations._family import check_options, scheduled_sigma

_tc = require("transformers.trainer_callback", "transformers", "noisereg.integrations.transformers")
require("accelerate", "transformers", "noisereg.integrations.transformers (the Trainer needs accelerate)")

__all__ = ["NoiseInjectionCallback"]

_JSON_SCALARS = (str, int, float, bool, type(None))


def _to_json(obj: Any) -> Any:
    """Injector state → JSON-safe data: tensors (the RNG states) become base64 strings."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        return {"__tensor__": base64.b64encode(t.view(torch.uint8).numpy().tobytes()).decode("ascii"),
                "dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape)}
    if isinstance(obj, dict):
        return {k: _to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_json(v) for v in obj]
    return obj


def _from_json(obj: Any) -> Any:
    if isinstance(obj, dict) and "__tensor__" in obj:
        raw = bytearray(base64.b64decode(obj["__tensor__"]))
        t = torch.frombuffer(raw, dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
        return t.view(getattr(torch, obj["dtype"])).reshape(obj["shape"]).clone()
    if isinstance(obj, dict):
        return {k: _from_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_from_json(v) for v in obj]
    return obj


class NoiseInjectionCallback(_tc.TrainerCallback, _tc.ExportableState):
    """A ``transformers.TrainerCallback`` that trains with weight-noise injection.

    Args:
        sigma: noise scale σ ≥ 0, as in :class:`~noisereg.NoiseInjector`; ``callback.injector.sigma``
            can be changed during training (schedules).
        sigma_schedule: None (default: σ is left alone) or a name of :data:`noisereg.schedules.SIGMA_SCHEDULES`:
            before optimizer step i of n (``state.max_steps``) the injector's σ is set to
            ``sigma · sigma_factor(sigma_schedule, i / n, sigma_factor)``.
        sigma_factor: ``cosine_up``'s end factor (default 2).
        **options: the other :class:`~noisereg.NoiseInjector` keyword arguments (``mode``,
            ``layers``, ``order``, ``convention``, ``seed``, ``independent_ranks``, ``foreach``,
            ``scale``, ``exclude``, ``restore``). Without ``seed``, rank 0's random seed is shared by
            all ranks. ``samples`` > 1, ``antithetic=True`` and ``clean_weight`` > 0 are refused (module
            docstring).

    Attributes:
        injector: the :class:`~noisereg.NoiseInjector` on the Trainer's model, built when
            training starts; ``None`` before.

    Raises:
        ValueError, TypeError: an invalid ``sigma`` or option (checked on construction); the family's
            several-evaluation options (``ValueError``: the Trainer gives no closure).

    Example:
        >>> from noisereg.integrations.transformers import NoiseInjectionCallback
        >>> callback = NoiseInjectionCallback(sigma=0.05, mode="layer", seed=0)
        >>> callback.injector is None   # built by Trainer.train(), on the Trainer's model
        True

    .. note::
        The Trainer has no hook for exceptions: if a training step raises, the weights are still
        perturbed; call :meth:`restore` before using the model. A resumed run restores rank 0's
        noise stream on every rank, which is exact for the default ``independent_ranks=False``.
    """

    def __init__(self, sigma: float, *, sigma_schedule: str | None = None, sigma_factor: float = 2.0,
                 **options: Any) -> None:
        family = {k: options.pop(k) for k in ("samples", "antithetic", "clean_weight") if k in options}
        check_options(sigma, options, family, sigma_schedule, sigma_factor)  # fail now, not in train()
        several = {k: v for k, v in family.items() if v != {"samples": 1, "antithetic": False, "clean_weight": 0.0}[k]}
        if several:
            raise ValueError(
                f"NoiseInjectionCallback cannot take {', '.join(f'{k}={v!r}' for k, v in several.items())}: they "
                "evaluate the gradient several times per step, which needs optimizer.step(closure), and "
                "transformers.Trainer calls optimizer.step() without one; use the Lightning callback or "
                "noisereg.NoisyOptimizer in your own loop")
        self.sigma = sigma
        self.sigma_schedule, self.sigma_factor = sigma_schedule, sigma_factor
        self.options = dict(options)
        self.injector: NoiseInjector | None = None
        self.injector_state: dict[str, Any] | None = None  # JSON form, from a checkpoint
        self._model: Any = None
        self._stack: contextlib.ExitStack | None = None  # open while the weights are perturbed

    # ------------------------------------------------------------------------- perturb/restore
    def restore(self) -> None:
        """Put the clean weights back if they are perturbed (a no-op otherwise)."""
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.close()

    # ------------------------------------------------------------------------------- hooks
    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        """Build the injector on the Trainer's model; load the state of a resumed checkpoint."""
        if self.injector is None or self._model is not model:
            self.injector = NoiseInjector(model, self.sigma, **self.options)
            self._model = model
        saved = (state.stateful_callbacks or {}).get(type(self).__name__)
        if isinstance(saved, list):  # one entry per callback of this class: ours is the first
            saved = saved[0] if saved else None
        encoded = (saved or {}).get("attributes", {}).get("injector_state") or self.injector_state
        if encoded is not None:
            self.injector.load_state_dict(_from_json(encoded))
            self.injector_state = None

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Set the scheduled σ; perturb the weights for all micro-batches of this optimizer step."""
        self.restore()
        if self.sigma_schedule is not None:
            self.injector.sigma = scheduled_sigma(self.sigma, self.sigma_schedule, self.sigma_factor,
                                                  state.global_step, state.max_steps)
        stack = contextlib.ExitStack()
        stack.enter_context(self.injector.perturb())
        self._stack = stack

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Restore the clean weights: the optimizer steps from them."""
        if self._stack is None:
            raise RuntimeError(
                "NoiseInjectionCallback: the weights were not perturbed for this optimizer step "
                "(on_step_begin did not run); the step would be taken without noise"
            )
        self.restore()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.restore()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.restore()

    # ------------------------------------------------------------------------- checkpoints
    def state(self) -> dict[str, Any]:
        """Checkpoint entry (JSON): constructor args and the injector's state."""
        json_args = {k: v for k, v in self._settings().items() if isinstance(v, _JSON_SCALARS)}
        encoded = _to_json(self.injector.state_dict()) if self.injector is not None else self.injector_state
        return {"args": {"sigma": self.sigma, **json_args}, "attributes": {"injector_state": encoded}}

    def _settings(self) -> dict[str, Any]:
        schedule = ({"sigma_schedule": self.sigma_schedule, "sigma_factor": self.sigma_factor}
                    if self.sigma_schedule is not None else {})
        return {**schedule, **self.options}

    def __repr__(self) -> str:
        opts = "".join(f", {k}={v!r}" for k, v in self._settings().items())
        return f"NoiseInjectionCallback(sigma={self.sigma!r}{opts})"
