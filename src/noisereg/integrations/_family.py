"""What the framework callbacks share: their options checked on construction (the injector's, the
weight-perturbation family's, the σ schedule), and the optimizer wrappers they install where the framework
hands ``optimizer.step`` a closure. Imports no framework."""

from __future__ import annotations

from typing import Any

import torch

from noisereg.injection import NoiseInjector
from noisereg.optim import SAM, NoisyOptimizer
from noisereg.schedules import check_schedule, sigma_factor


def check_options(sigma: float, options: dict[str, Any], family: dict[str, Any],
                  schedule: str | None, factor: float) -> None:
    """Build throw-away objects with the callback's settings so a mistake fails at construction, not at fit time.

    ``layers``, ``generator`` and ``exclude`` depend on the model and are checked when the injector is built.
    """
    p = torch.nn.Parameter(torch.zeros(1))
    probe = {k: v for k, v in options.items() if k not in ("layers", "generator", "exclude")}
    injector = NoiseInjector([p], sigma, **probe)
    NoisyOptimizer(torch.optim.SGD([p], lr=0.0), injector, **family)
    if schedule is not None:
        check_schedule(schedule, factor)


def scheduled_sigma(sigma: float, schedule: str | None, factor: float, step: int, total: int | float | None) -> float:
    """σ at optimizer step ``step`` of ``total``: ``sigma · sigma_factor(schedule, step / total, factor)``."""
    if schedule is None:
        return sigma
    if not total or total == float("inf") or total < 1:
        raise RuntimeError(f"sigma_schedule={schedule!r} needs the number of training steps, which the trainer does "
                           "not know (set max_steps or max_epochs)")
    return sigma * sigma_factor(schedule, step / total, factor)


class CallbackNoisyOptimizer(NoisyOptimizer):
    """The :class:`~noisereg.NoisyOptimizer` a callback installs: its checkpoint is the wrapped optimizer's own
    (the callback saves the injector), so checkpoints load into a plain optimizer and back."""

    def state_dict(self) -> dict[str, Any]:
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state_dict)


class CallbackSAM(SAM):
    """The :class:`~noisereg.SAM` a callback installs: its checkpoint is the wrapped optimizer's own (ρ is the
    callback's)."""

    def state_dict(self) -> dict[str, Any]:
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state_dict)
