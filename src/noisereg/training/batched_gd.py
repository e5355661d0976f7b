r"""Many small full-batch noisy-GD runs as one batched model (the theory experiments' σ × seed grids).

A theory experiment trains R tiny models of one shape (a diagonal net, a factorisation) for tens of
thousands of steps; one run at a time, a step costs far more in Python and dispatch than in arithmetic.
:func:`run_noisy_gd_batch` trains the R runs together: their parameters are stacked along a leading run
dimension, one ``torch.func.vmap`` of ``torch.func.grad`` of the run's own loss gives the R gradients at
the R perturbed points, and one in-place update moves all of them. Everything else stays per run, as in
:func:`noisereg.training.run_noisy_gd`, the reference:

* the noise: each run's own :class:`noisereg.NoiseInjector` draws it into its row of one (R, P) buffer
  (:meth:`~noisereg.NoiseInjector.draw_flat`, the stream ``perturb()`` would use; the general
  :meth:`~noisereg.NoiseInjector.draw` where that layout does not apply), R small draws per step:
  that Python loop is the floor of the batched step;
* the step size (each run's schedule), the Polyak average, the evaluations and the history;
* each run's ``nn.Module`` keeps working: its parameters become views of the stacked tensors, so the
  run's ``evaluate`` and ``average`` callables read its current weights.

The update is :math:`w^{(r)}_{t+1} = w^{(r)}_t - \eta^{(r)}_t\,\nabla L(w^{(r)}_t + \varepsilon^{(r)}_t)`
for every run r, with the noise of the per-run path, so each run's numbers equal the per-run path's up
to summation order (batched matrix products; tested at rtol 1e-9). A run that diverges fills its own
slice with inf/nan and is recorded with ``"diverged": true`` (as on the per-run path); the others are
independent of it and go on.

One checkpoint holds the whole batch (stacked weights, each run's injector stream, averaging sums and
history), written atomically at every evaluation; a resumed batch repeats the uninterrupted one bit for bit.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, vmap

from noisereg.injection import NoiseInjector
from noisereg.noise import flat_layout
from noisereg.training.checkpoint import load_checkpoint, save_checkpoint
from noisereg.training.noisy_gd import SCHEDULES, checked_settings, run_noisy_gd


@dataclass
class Setup:
    """One run, ready to train: what :func:`run_noisy_gd` takes, and how its output becomes the run record.

    ``loss_fn`` must compute the loss from ``model`` alone (it is re-evaluated with each run's
    parameters swapped in); ``options`` are :func:`run_noisy_gd`'s keyword arguments other than the
    checkpoint; ``finish(out)`` turns its output into the run record. ``batched_loss`` (optional) is the
    same loss written for stacked parameters: ``{name: (R, *shape)} -> (R,)`` losses, the experiment's
    own batched forward; without it the batch evaluates ``loss_fn`` under ``torch.func.vmap``.
    ``batched_grad`` (optional) goes one step further: ``{name: (R, *shape)} -> {name: (R, *shape)}``, the R
    gradients written out by the experiment (its model's backward by hand: no autograd graph, whose
    bookkeeping dominates a step of a tiny model); it takes precedence over ``batched_loss``, and a test
    must hold it to autograd's gradient of ``loss_fn``. ``batched_average`` (optional): the ``average``
    option's quantity for stacked parameters, ``(R, *shape)``, used when every run averages from the same
    step. A batch uses its first run's ``batched_grad``, ``batched_loss`` or ``loss_fn`` and
    ``batched_average``: the runs of a batch share their data.
    """

    model: nn.Module
    injector: NoiseInjector
    loss_fn: Callable[[], torch.Tensor]
    options: dict[str, Any]
    finish: Callable[[dict[str, Any]], dict]
    batched_loss: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None = None
    batched_grad: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None
    batched_average: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None = None

    def run(self, checkpoint=None, resume: bool = False) -> dict:
        """The per-run path: :func:`run_noisy_gd`, then ``finish``."""
        return _mark(self.finish(run_noisy_gd(self.model, self.injector, self.loss_fn, **self.options,
                                              checkpoint=checkpoint, resume=resume)), self.model.parameters())


def _mark(record: dict, params) -> dict:
    """``record`` with ``"diverged": True`` when a final weight is not finite (absent otherwise)."""
    if not all(bool(torch.isfinite(p).all()) for p in params):
        record["diverged"] = True
    return record


class _Loss(nn.Module):
    """``loss_fn()`` as a module whose parameters are ``model``'s, for ``functional_call``."""

    def __init__(self, model: nn.Module, loss_fn: Callable[[], torch.Tensor]):
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self) -> torch.Tensor:
        return self.loss_fn()


def run_noisy_gd_batch(setups: list[Setup], *, checkpoint: str | Path | None = None,
                       resume: bool = False) -> list[dict]:
    """Train the runs of ``setups`` as one batched model; their records, in order (see the module docstring).

    Every run must have the same parameter names and shapes, ``steps`` and ``eval_steps``; step sizes,
    schedules, σ, seeds and averaging may differ. Arguments are checked as in :func:`run_noisy_gd`
    (which runs one setup's options through its own checks first).

    Runs on one intra-op thread (restored after): the stacked tensors are tiny.

    Raises:
        ValueError: no setups, runs of different shapes or evaluation steps, or a checkpoint written
            for another batch.
    """
    if not setups:
        raise ValueError("run_noisy_gd_batch needs at least one setup")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # tiny stacked tensors: thread handoffs cost more than the arithmetic
    try:
        return _run_batch(setups, checkpoint, resume)
    finally:
        torch.set_num_threads(threads)


def _run_batch(setups: list[Setup], checkpoint, resume: bool) -> list[dict]:
    settings = [checked_settings(**s.options) for s in setups]   # the reference driver's checks
    steps, evals = settings[0]["steps"], settings[0]["eval_steps"]
    if any(st["steps"] != steps or st["eval_steps"] != evals for st in settings):
        raise ValueError("runs of one batch need the same steps and eval_steps")
    names = [k for k, _ in setups[0].model.named_parameters()]
    shapes = [tuple(p.shape) for _, p in setups[0].model.named_parameters()]
    for s in setups[1:]:
        if [k for k, _ in s.model.named_parameters()] != names or [tuple(p.shape) for p in s.model.parameters()] != shapes:
            raise ValueError("runs of one batch need models with the same parameter names and shapes")

    R = len(setups)
    with torch.no_grad():
        stacked = {k: torch.stack([dict(s.model.named_parameters())[k].detach() for s in setups]) for k in names}
    own = [[p for _, p in s.model.named_parameters()] for s in setups]
    for r, params in enumerate(own):          # each run's parameters become views of its slice
        for k, p in zip(names, params):
            p.data = stacked[k][r]
    first = [int(st["average_from"] * steps) for st in settings]
    rates = [SCHEDULES[st["schedule"]] for st in settings]
    at = set(evals)
    start, histories = 0, [[] for _ in setups]
    totals: list[torch.Tensor | None] = [None] * R
    counts = [0] * R
    if resume and checkpoint is not None and Path(checkpoint).exists():
        state = load_checkpoint(checkpoint)
        if state["settings"] != settings:
            raise ValueError(f"checkpoint {checkpoint} was written for another batch; delete it or use another --out")
        with torch.no_grad():
            for k in names:
                stacked[k].copy_(state["params"][k])
        for s, inj_state in zip(setups, state["injectors"]):
            s.injector.load_state_dict(inj_state)
        start, totals, counts = state["step"], state["totals"], state["counts"]
        histories = json.loads(state["histories"])
    average_all = setups[0].batched_average   # one batched average for all runs, when they average alike
    if average_all is not None and (len(set(first)) != 1 or any(s.options.get("average") is None for s in setups)):
        average_all = None
    total_all = None
    if average_all is not None and totals[0] is not None:   # resumed: the runs' sums as rows of one tensor again
        total_all = torch.stack(totals)
        totals = list(total_all.unbind(0))

    def lr_of(r: int, t: int) -> float:
        st = settings[r]
        return rates[r](t, steps, st["lr"], st["lr_final"])

    dtype = stacked[names[0]].dtype   # every step's R step sizes, tabulated once (as the per-run path computes them)
    columns: dict[tuple, list[float]] = {}   # runs with the same schedule share their column
    for r, st in enumerate(settings):
        key = (st["schedule"], st["lr"], st["lr_final"])
        if key not in columns:
            columns[key] = [lr_of(r, t) for t in range(steps)]
    lr_table = torch.tensor([columns[(st["schedule"], st["lr"], st["lr_final"])] for st in settings], dtype=dtype).T.contiguous()

    def log(t: int) -> None:
        with torch.no_grad():
            for r, s in enumerate(setups):
                evaluate = s.options.get("evaluate")
                avg = None if counts[r] == 0 else totals[r] / counts[r]
                metrics = evaluate(t, avg) if evaluate is not None else {}
                histories[r].append({"step": t, "lr": lr_of(r, t), **metrics})
        if checkpoint is not None:
            save_checkpoint(checkpoint, {"settings": settings, "step": t, "params": stacked,
                                         "injectors": [s.injector.state_dict() for s in setups],
                                         "totals": totals, "counts": counts,
                                         "histories": json.dumps(histories)})   # text: far cheaper to pickle

    loss = _Loss(setups[0].model, setups[0].loss_fn)
    losses = setups[0].batched_loss or vmap(lambda p: functional_call(loss, {f"model.{k}": v for k, v in p.items()}, ()))

    def autograd_grads(noisy: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # the R losses are independent, so the gradient of their sum is each run's own gradient
        leaves = {k: v.requires_grad_() for k, v in noisy.items()}
        return dict(zip(leaves, torch.autograd.grad(losses(leaves).sum(), list(leaves.values()))))
    grads = setups[0].batched_grad or autograd_grads
    views = [{id(p): stacked[k][r] for k, p in zip(names, own[r])} for r in range(R)]
    if start == 0 and not any(histories) and 0 in at:
        log(0)
    flat = _flat_noise(setups, names, own)   # full-noise runs: one (R, length) buffer, one normal_ per run

    if flat is not None:   # the buffer's rows and each parameter's (R, *shape) view of it, made once
        rows = list(flat[0].unbind(0))
        noise = {k: flat[0][:, a:b].view(stacked[k].shape) for k, (a, b) in zip(names, flat[1])}
        injectors = [s.injector for s in setups]

    def perturbed() -> dict[str, torch.Tensor]:
        if flat is not None:
            for inj, row in zip(injectors, rows):
                if not inj.draw_flat(row):
                    row.zero_()
            return {k: stacked[k] + noise[k] for k in names}
        drawn = [s.injector.draw([views[r][id(p)] for p in s.injector.law.params]) for r, s in enumerate(setups)]
        return {k: torch.stack([drawn[r].get(id(own[r][i]), stacked[k][r]) for r in range(R)])
                for i, k in enumerate(names)}

    lr_shaped = {k: lr_table.view(steps, R, *[1] * (stacked[k].dim() - 1)) for k in names}
    for t in range(start, steps):
        g = grads(perturbed())
        with torch.no_grad():
            for k in names:
                stacked[k].addcmul_(lr_shaped[k][t], g[k], value=-1)
            if average_all is not None:
                if t >= first[0]:
                    q = average_all(stacked)
                    if total_all is None:
                        total_all = q.clone()
                        totals = list(total_all.unbind(0))
                    else:
                        total_all.add_(q)
                    counts = [c + 1 for c in counts]
            else:
                for r, s in enumerate(setups):
                    average = s.options.get("average")
                    if average is not None and t >= first[r]:
                        q = average()
                        totals[r] = q.clone() if totals[r] is None else totals[r].add_(q)
                        counts[r] += 1
        if t + 1 in at:
            log(t + 1)
    return [_mark(s.finish({"history": histories[r], "average": None if counts[r] == 0 else totals[r] / counts[r],
                            "start": start}), own[r]) for r, s in enumerate(setups)]


def _flat_noise(setups, names, own):
    """``(buffer (R, length), [(start, end) per parameter name])`` when every run's injector holds all its
    parameters in model order, on one device and dtype, each layer's consecutively
    (:meth:`NoiseInjector.draw_flat`); else None (the general path, :meth:`NoiseInjector.draw`)."""
    for r, s in enumerate(setups):
        law = s.injector.law
        where = {id(p): i for i, p in enumerate(law.params)}
        consecutive = all([where[id(p)] for p in ps] == list(range(where[id(ps[0])], where[id(ps[0])] + len(ps)))
                          for _, ps in law.layers)
        if (not consecutive or law.scale != "absolute" or [id(p) for p in law.params] != [id(p) for p in own[r]]
                or len({(p.device, p.dtype) for p in own[r]}) != 1 or not all(p.is_contiguous() for p in own[r])):
            return None
    offsets, total = flat_layout(own[0])
    p0 = own[0][0]
    buf = torch.zeros(len(setups), total, dtype=p0.dtype, device=p0.device)
    return buf, [(a, a + p.numel()) for a, p in zip(offsets, own[0])]
