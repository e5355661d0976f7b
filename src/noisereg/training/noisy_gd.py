r"""Full-batch noisy gradient descent for the theory experiments: lr schedules, averaging, resume.

The theory experiments (``lasso``, ``grouplasso``, ``logistic``, ``nuclear``, ``psd``) all run

.. math::

    w_{t+1} = w_t - \eta_t\,\nabla L(w_t + \varepsilon_t), \qquad t = 0, \dots, T-1,

with the noise :math:`\varepsilon_t` of a :class:`noisereg.NoiseInjector` (σ = 0: plain GD), a
named step-size schedule :math:`\eta_t` (:data:`SCHEDULES`), and a Polyak (uniform) average of a
chosen quantity :math:`q(w)` (β, a product matrix, the parameters) over the last iterates,

.. math::

    \bar q = \frac{1}{T - s}\sum_{t=s+1}^{T} q(w_t), \qquad s = \lfloor a\,T\rfloor,\ a = \texttt{average\_from},

which removes the iterate noise that a constant step leaves: each update is an unbiased
gradient step on the smoothed risk :math:`R_\sigma` (docs/THEORY.md §2, §4), and the noise of the
iterates averages out. :func:`run_noisy_gd` evaluates at chosen steps into a history and writes an
atomic checkpoint at every evaluation (model, optimizer, injector stream, averaging sums,
history); a resumed run repeats the uninterrupted one bit for bit.

Example:
    >>> import torch, noisereg as nr
    >>> from noisereg.training import run_noisy_gd
    >>> X, y = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, dtype=torch.float64)
    >>> w = torch.nn.Linear(3, 1, bias=False).double()
    >>> inj = nr.NoiseInjector(w, sigma=0.01, mode="full", seed=0)
    >>> out = run_noisy_gd(w, inj, lambda: (w(X)[:, 0] - y).pow(2).mean() / 2, steps=100, lr=0.1,
    ...                    schedule="geometric", lr_final=0.01, average=lambda: w.weight[0],
    ...                    evaluate=lambda t, avg: {"norm": float(w.weight.norm())}, eval_steps=[0, 50, 100])
    >>> [h["step"] for h in out["history"]], out["average"].shape
    ([0, 50, 100], torch.Size([3]))
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from noisereg.constraints import Constraint, Interval
from noisereg.injection import NoiseInjector
from noisereg.training.checkpoint import load_checkpoint, save_checkpoint


# ------------------------------------------------------------------------------ lr schedules
def constant(t: int, steps: int, lr: float, lr_final: float | None) -> float:
    """:math:`\\eta_t = \\eta` (``lr_final`` unused)."""
    return lr


def geometric(t: int, steps: int, lr: float, lr_final: float) -> float:
    """``lr`` while :math:`t/T < 1/2`, then geometric: :math:`\\eta_t = \\eta\\,(\\eta_T/\\eta)^{2t/T - 1}`."""
    frac = t / steps
    return lr if frac < 0.5 else lr * (lr_final / lr) ** ((frac - 0.5) / 0.5)


def harmonic(t: int, steps: int, lr: float, lr_final: float) -> float:
    """``lr`` for :math:`t < t_0 = \\lfloor T/2\\rfloor`, then :math:`\\eta_t = \\eta/(1 + (t - t_0)/k)`,
    :math:`k = (T - t_0)/(\\eta/\\eta_T - 1)`, reaching ``lr_final`` at :math:`t = T`."""
    t0 = steps // 2
    if t < t0:
        return lr
    k = max(steps - t0, 1) / max(lr / lr_final - 1.0, 1e-12)
    return lr / (1.0 + (t - t0) / k)


SCHEDULES: dict[str, Callable[[int, int, float, float | None], float]] = {
    "constant": constant, "geometric": geometric, "harmonic": harmonic}


def every(k: int, steps: int) -> list[int]:
    """Evaluation steps ``0, k, 2k, ...`` and ``steps``."""
    return sorted({*range(0, steps + 1, k), steps})


POSITIVE = Interval(0, low_open=True)        # constraints shared by the theory experiments' configs
NONNEG = Interval(0)
FRACTION = Interval(0, 1, high_open=True)


def _check(name: str, value: Any, constraint: Constraint) -> None:
    error = constraint.problem(value)
    if error is not None:
        raise error(f"{name} must be {constraint.rule}, got {value!r}")


def check_options(steps: int, lr: float, schedule: str = "constant", lr_final: float | None = None,
                  average_from: float = 0.5, eval_steps: Iterable[int] = ()) -> list[int]:
    """Check :func:`run_noisy_gd`'s schedule arguments (its Raises); the sorted evaluation steps."""
    _check("steps", steps, Interval(1, integer=True))
    _check("lr", lr, POSITIVE)
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {sorted(SCHEDULES)}, got {schedule!r}")
    if schedule != "constant":
        _check("lr_final", lr_final, POSITIVE)
    _check("average_from", average_from, FRACTION)
    evals = sorted(set(eval_steps))
    for t in evals[:1] + evals[-1:]:
        _check("eval_steps", t, Interval(0, steps, integer=True))
    return evals


def checked_settings(*, steps: int, lr: float, schedule: str = "constant", lr_final: float | None = None,
                     average_from: float = 0.5, eval_steps: Iterable[int] = (), **_: Any) -> dict[str, Any]:
    """The schedule arguments of :func:`run_noisy_gd` (other keywords ignored), checked by :func:`check_options`,
    as its checkpoints record them (the sorted evaluation steps); a resumed run must present the same."""
    evals = check_options(steps, lr, schedule, lr_final, average_from, eval_steps)
    return {"steps": steps, "lr": lr, "schedule": schedule, "lr_final": lr_final,
            "average_from": average_from, "eval_steps": evals}


# ----------------------------------------------------------------------------------- driver
def run_noisy_gd(model: nn.Module, injector: NoiseInjector, loss_fn: Callable[[], torch.Tensor], *,
                 steps: int, lr: float, schedule: str = "constant", lr_final: float | None = None,
                 average: Callable[[], torch.Tensor] | None = None, average_from: float = 0.5,
                 evaluate: Callable[[int, torch.Tensor | None], dict] | None = None, eval_steps: Iterable[int] = (),
                 checkpoint: str | Path | None = None, resume: bool = False,
                 callback: Callable[[int], None] | None = None) -> dict[str, Any]:
    r"""Run ``steps`` full-batch noisy GD steps on ``model`` (``torch.optim.SGD``, no momentum).

    Args:
        model: the model; its parameters are updated in place.
        injector: a :class:`noisereg.NoiseInjector` on ``model`` (``sigma=0`` gives plain GD).
        loss_fn: computes the full-batch loss from ``model`` (called inside ``injector.perturb()``).
        steps: number of updates T >= 1.
        lr: step size η > 0. schedule: a name in :data:`SCHEDULES` (default ``"constant"``).
        lr_final: η_T > 0 for the decaying schedules.
        average: returns q(w) (e.g. ``lambda: net.beta``); None: no average.
        average_from: a in [0, 1): average the iterates after the updates t >= ⌊aT⌋.
        evaluate: ``evaluate(t, running_average)`` returns a dict of metrics of the iterate w_t
            (called under ``torch.no_grad()``; the average is None before its first term).
        eval_steps: the t in [0, T] at which to evaluate; history entries are
            ``{"step": t, "lr": η_t, **evaluate(t, ...)}`` (η_T: the schedule's end value).
        checkpoint: file written atomically after every evaluation. resume: continue from
            ``checkpoint`` if it exists (the same arguments must be given).
        callback: called with t after each evaluation and its checkpoint.

    Returns:
        ``{"history": [...], "average": q̄ (None without ``average``), "start": the step resumed from}``.

    Raises:
        TypeError: a number of the wrong type (e.g. a float ``steps``).
        ValueError: an argument out of its range, an unknown schedule, or a checkpoint written
            with other settings.
    """
    settings = checked_settings(steps=steps, lr=lr, schedule=schedule, lr_final=lr_final,
                                average_from=average_from, eval_steps=eval_steps)
    evals = settings["eval_steps"]
    at = set(evals)
    rate = SCHEDULES[schedule]
    first = int(average_from * steps)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    start, history, total, count = 0, [], None, 0
    if resume and checkpoint is not None and Path(checkpoint).exists():
        state = load_checkpoint(checkpoint)
        if state["settings"] != settings:
            raise ValueError(f"checkpoint {checkpoint} was written with other settings; delete it or use another --out")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        injector.load_state_dict(state["injector"])
        start, history, total, count = state["step"], state["history"], state["total"], state["count"]

    def log(t: int) -> None:
        with torch.no_grad():
            metrics = evaluate(t, None if count == 0 else total / count) if evaluate is not None else {}
        history.append({"step": t, "lr": rate(t, steps, lr, lr_final), **metrics})
        if checkpoint is not None:
            save_checkpoint(checkpoint, {"settings": settings, "step": t, "model": model.state_dict(),
                                         "optimizer": opt.state_dict(), "injector": injector.state_dict(),
                                         "total": total, "count": count, "history": history})
        if callback is not None:
            callback(t)

    if start == 0 and not history and 0 in at:
        log(0)
    for t in range(start, steps):
        for group in opt.param_groups:
            group["lr"] = rate(t, steps, lr, lr_final)
        opt.zero_grad(set_to_none=True)
        with injector.perturb():
            loss_fn().backward()
        opt.step()
        if average is not None and t >= first:
            with torch.no_grad():
                q = average()
                total = torch.zeros_like(q) if total is None else total
                total += q
            count += 1
        if t + 1 in at:
            log(t + 1)
    return {"history": history, "average": None if count == 0 else total / count, "start": start}
