r"""σ schedules: how the noise scale moves along training, one definition for every caller.

The experiments (``--set sigma_schedule=...``, per epoch), the three-line loop and the Lightning and
Hugging Face callbacks (per optimizer step) all take σ at the fraction :math:`t \in [0, 1]` of training from
:func:`sigma_factor`:

.. math::

    \sigma_t = \sigma \cdot f(t),\qquad
    f(t) = \begin{cases}
        1 & \texttt{constant}\\
        1 - t & \texttt{linear}\\
        \tfrac12\,(1 + \cos \pi t) & \texttt{cosine}\\
        1 + (c - 1)\,\tfrac12\,(1 - \cos \pi t) & \texttt{cosine\_up}\ (c = \texttt{factor})
    \end{cases}

``cosine_up`` rises from σ to c·σ along a half cosine: the radius schedule of LPF-SGD (Bisla et al.,
2022), used by the ``family`` experiment. ``linear`` and ``cosine`` anneal the noise to 0.

Example:
    >>> import torch, noisereg as nr
    >>> model = torch.nn.Linear(3, 1)
    >>> inj = nr.NoiseInjector(model, sigma=0.05, seed=0)
    >>> schedule = nr.sigma_schedule("cosine_up", 0.05, total=100, factor=2.0)
    >>> [round(schedule(step), 4) for step in (0, 50, 100)]
    [0.05, 0.075, 0.1]
    >>> for step in range(3):            # the three-line loop, σ set before each step's draw
    ...     inj.sigma = schedule(step)
    ...     with inj.perturb():
    ...         model(torch.randn(4, 3)).pow(2).mean().backward()

References:
    D. Bisla, J. Wang, A. Choromanska. Low-Pass Filtering SGD for Recovering Flat Optima in the Deep
    Learning Optimization Landscape. AISTATS 2022. https://arxiv.org/abs/2201.08025
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

from noisereg.noise import check_sigma

__all__ = ["SIGMA_SCHEDULES", "SigmaSchedule", "sigma_factor", "sigma_schedule"]

SIGMA_SCHEDULES: dict[str, Callable[[float, float], float]] = {
    "constant": lambda t, c: 1.0,
    "linear": lambda t, c: 1.0 - t,
    "cosine": lambda t, c: 0.5 * (1.0 + math.cos(math.pi * t)),
    "cosine_up": lambda t, c: 1.0 + (c - 1.0) * 0.5 * (1.0 - math.cos(math.pi * t)),
}
"""Name -> :math:`f(t, c)`, the factor on σ at the fraction t of training (c: ``factor``, used by ``cosine_up``)."""


def check_schedule(name: str, factor: float = 2.0) -> tuple[str, float]:
    """Check a schedule's name and factor; return them (the factor as a float).

    Raises:
        ValueError: an unknown name, or a factor that is not a finite number >= 0.
    """
    if name not in SIGMA_SCHEDULES:
        raise ValueError(f"sigma_schedule must be one of {tuple(SIGMA_SCHEDULES)}, got {name!r}")
    if isinstance(factor, bool) or not isinstance(factor, numbers.Real) or not (0 <= factor < math.inf):
        raise ValueError(f"sigma_factor must be a finite number >= 0, got {factor!r}")
    return name, float(factor)


def sigma_factor(schedule: str, t: float, factor: float = 2.0) -> float:
    """The factor :math:`f(t)` on σ at the fraction ``t`` of training (module docstring); ``t`` is clamped to
    [0, 1].

    Raises:
        ValueError: an unknown schedule or a bad factor (:func:`check_schedule`).
    """
    schedule, factor = check_schedule(schedule, factor)
    return SIGMA_SCHEDULES[schedule](min(max(float(t), 0.0), 1.0), factor)


class SigmaSchedule:
    """σ at step ``i`` of ``total``: ``sigma · sigma_factor(name, i / total, factor)``; a callable ``step -> σ``.

    Args:
        name: one of :data:`SIGMA_SCHEDULES`.
        sigma: σ ≥ 0, the scale the schedule multiplies.
        total: the number of steps (or epochs) t runs over, an integer >= 1; later steps keep the last σ.
        factor: ``cosine_up``'s end factor c >= 0 (default 2).

    Raises:
        ValueError: an unknown name, σ or factor out of range, ``total`` < 1.
        TypeError: σ not a real number, ``total`` not an integer.
    """

    def __init__(self, name: str, sigma: float, total: int, factor: float = 2.0) -> None:
        self.name, self.factor = check_schedule(name, factor)
        self.sigma = check_sigma(sigma)
        if isinstance(total, bool) or not isinstance(total, numbers.Integral):
            raise TypeError(f"total must be an integer >= 1, got {total!r}")
        if total < 1:
            raise ValueError(f"total must be an integer >= 1, got {total!r}")
        self.total = int(total)

    def __call__(self, step: int) -> float:
        return self.sigma * sigma_factor(self.name, step / self.total, self.factor)

    def __repr__(self) -> str:
        return f"SigmaSchedule({self.name!r}, sigma={self.sigma}, total={self.total}, factor={self.factor})"


def sigma_schedule(name: str, sigma: float, total: int, *, factor: float = 2.0) -> SigmaSchedule:
    """The σ schedule ``name`` from ``sigma`` over ``total`` steps: :class:`SigmaSchedule` (see the module example)."""
    return SigmaSchedule(name, sigma, total, factor)
