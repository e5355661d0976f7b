"""One training run: (noisy) GD/SGD/Adam or SAM, periodic evaluation, checkpoints, exact resume.

Top to bottom: the run's settings (:class:`TrainSpec`), optimizer and schedule, the epoch loop
(noise injection around forward+backward, or :class:`noisereg.SAM`'s two gradients for method
``"sam"`` with ρ = ``sigma``; one host sync per epoch), evaluation, checkpoints.
A run whose training loss becomes non-finite is recorded as diverged and stops; the caller goes on.
Resuming from a checkpoint replays the same data order, augmentation and noise, so on the CPU a
resumed run ends with bit-identical numbers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from noisereg.curvature import ggn_trace, hessian_trace, is_piecewise_linear, sampled_ggn_trace
from noisereg.data import Split
from noisereg.injection import NoiseInjector
from noisereg.losses import loss_value
from noisereg.noise import NoiseLaw, paper_sigma
from noisereg.optim import SAM, NoisyOptimizer
from noisereg.schedules import sigma_factor
from noisereg.smoothing import effective_risk
from noisereg.training.checkpoint import load_checkpoint, save_checkpoint
from noisereg.training.settings import FAMILY, TrainSpec, family_options, grad_evals_per_step, sub_batches



def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random crop with zero padding (4 px for 32x32 images, 1 px for smaller) and horizontal flip."""
    n, _, h, w = x.shape
    pad = 4 if h >= 32 else 1
    padded = F.pad(x, (pad, pad, pad, pad))
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    rows = (dy[:, None] + torch.arange(h)[None]).to(x.device)
    cols = (dx[:, None] + torch.arange(w)[None]).to(x.device)
    cols = torch.where(flip.to(x.device)[:, None], cols.flip(1), cols)
    idx = torch.arange(n, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[idx, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def sigma_at(spec: TrainSpec, epoch: int) -> float:
    """σ used in ``epoch`` (0-based): the schedule applied to ``spec.sigma``, 0 from the noise stop on."""
    if spec.noise_stop_epoch is not None and epoch >= spec.noise_stop_epoch:
        return 0.0
    return spec.sigma * sigma_factor(spec.sigma_schedule, epoch / spec.epochs, spec.sigma_factor)


def _loss(spec: TrainSpec, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return loss_value("square" if spec.loss == "square" else "cross_entropy", out, y)


HUTCHINSON_PROBES = 100  # probes of the Hessian-trace estimate on models that are not piecewise linear
SAMPLED_DRAWS = 8        # label draws of sampled_ggn_trace under trace_estimator="sampled"


def curvature_metrics(model: nn.Module, xs: torch.Tensor, ys: torch.Tensor, spec: TrainSpec,
                      sigma_reg: float) -> dict[str, float]:
    """The metrics of ``spec.log`` on ``(xs, ys)``, model in eval mode (docs/THEORY.md §4).

    * ``ggn_trace``: the exact :func:`noisereg.ggn_trace`; with ``trace_estimator="sampled"``,
      :func:`noisereg.sampled_ggn_trace` (``SAMPLED_DRAWS`` label draws seeded by the run's seed,
      unbiased, about one gradient per draw) and its standard error as ``ggn_trace_se``, which
      ``reg_loss`` (``reg_loss_se``) and a GGN-valued ``hessian_trace`` (``hessian_trace_se``) carry.
    * ``reg_loss``: :func:`noisereg.effective_risk` at ``sigma_reg`` in the run's convention and
      layers: R + σ²/2·tr(GGN) (``paper``) or R + σ²/(2M)·tr(GGN) (``official``).
    * ``hessian_trace``: the Hessian's trace. Where :func:`noisereg.curvature.is_piecewise_linear`
      holds it equals the GGN trace exactly and that is logged; otherwise Hutchinson's estimate
      (:func:`noisereg.hessian_trace`, ``HUTCHINSON_PROBES`` probes seeded by the run's seed) with
      its standard error as ``hessian_trace_se``. Never a relabelled GGN trace on a smooth net.
    """
    loss = "square" if spec.loss == "square" else "cross_entropy"
    exact_hessian = is_piecewise_linear(model)
    out: dict[str, float] = {}
    with torch.enable_grad():
        need_ggn = {"ggn_trace", "reg_loss"} & set(spec.log) or ("hessian_trace" in spec.log and exact_hessian)
        trace, se = math.nan, None
        if need_ggn and spec.trace_estimator == "sampled":
            trace, se = sampled_ggn_trace(model, xs, ys, loss, num_samples=SAMPLED_DRAWS, seed=spec.seed)
        elif need_ggn:
            trace = ggn_trace(model, xs, ys, loss)
        if "ggn_trace" in spec.log:
            out["ggn_trace"] = trace
            if se is not None:
                out["ggn_trace_se"] = se
        if "hessian_trace" in spec.log:
            if exact_hessian:
                out["hessian_trace"] = trace
                if se is not None:
                    out["hessian_trace_se"] = se
            else:
                out["hessian_trace"], out["hessian_trace_se"] = hessian_trace(
                    model, xs, ys, loss, num_samples=HUTCHINSON_PROBES, seed=spec.seed)
    if "reg_loss" in spec.log and sigma_reg is not None:   # None: R_eff not defined for this run's law
        out["reg_loss"] = effective_risk(model, xs, ys, loss, sigma_reg, layers=spec.layers,
                                         convention=spec.convention, trace=trace)
        if se is not None:
            out["reg_loss_se"] = se * NoiseLaw(model, sigma_reg, layers=spec.layers,
                                               convention=spec.convention).regularizer_coefficient
    return out


@torch.no_grad()
def evaluate(model: nn.Module, data: Split, spec: TrainSpec, sigma_reg: float, chunk: int = 2048,
             curvature: bool = True) -> dict[str, float]:
    """Loss (and accuracy for classification) on every split (``train``, ``val`` when the data holds
    one out, ``test``); curvature metrics (``spec.log``) on a training subset unless ``curvature`` is False."""
    was_training = model.training
    model.eval()
    out: dict[str, float] = {}
    for split, x, y in data.splits():
        if len(x) == 0:
            continue
        total, correct = 0.0, 0
        for i in range(0, len(x), chunk):
            o = model(x[i:i + chunk])
            total += float(_loss(spec, o, y[i:i + chunk])) * len(o)
            if spec.loss == "cross_entropy":
                correct += int((o.argmax(1) == y[i:i + chunk]).sum())
        out[f"{split}_loss"] = total / len(x)
        if spec.loss == "cross_entropy":
            out[f"{split}_acc"] = correct / len(x)
    if curvature and spec.log and math.isfinite(out["train_loss"]):
        out.update(curvature_metrics(model, data.x_train[:spec.trace_points], data.y_train[:spec.trace_points],
                                     spec, sigma_reg))
    model.train(was_training)
    return out


def _make_optimizer(model: nn.Module, spec: TrainSpec):
    params = [p for p in model.parameters() if p.requires_grad]
    if spec.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay)
    elif spec.optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay)
    if spec.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=spec.epochs)
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    return opt, sched


def build_model(model_fn: Callable[[], nn.Module], seed: int, device: torch.device | str) -> nn.Module:
    """Build ``model_fn()`` with its initialisation drawn from ``seed``, leaving the global RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_fn().to(device)


POSTERIOR_GRID = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05)
"""Posterior stds searched for the certificate of a run whose own noise is not the paper's isotropic law (GD, SAM,
the per-filter family); each one counts in the Monte-Carlo term's union bound (``candidates`` = 6; the prior stds
searched are ``grid_size`` = 32)."""
CERTIFICATE_SHARE = 0.05  # the share of the training's forward passes a certificate may use (measured below 10 %)
CERTIFICATE_SAMPLES = (10, 1000)   # ... within these bounds on its weight draws


def certify(model: nn.Module, model_fn: Callable[[], nn.Module], data: Split, spec: TrainSpec, steps: int,
            device: torch.device) -> dict[str, Any]:
    """The PAC-Bayes certificate of a trained classifier (:func:`noisereg.pac_bayes_bound`, docs/THEORY.md §9).

    Prior: the run's own initialisation (``model_fn`` under the run's seed: fixed before the data), std
    searched over :data:`noisereg.pac_bayes.PRIOR_GRID`. Posterior std: the run's σ in the paper convention
    for ``full`` and ``layer`` (layer-wise noise's per-layer std σ√M is a different law; its all-parameter
    counterpart σ is certified), else the best of :data:`POSTERIOR_GRID` (paid by the Monte-Carlo term's union
    bound). The
    number of weight draws is set by a deterministic cost model, so that the same seed gives the same
    certificate: training costs about 3 forward passes per gradient evaluation on its batch, a draw one
    forward pass over the n training points, and all draws together get :data:`CERTIFICATE_SHARE` of the
    training's forward passes: ``samples = 0.05 · 3 · grad_evals · batch / (n · posterior stds)``, clamped to
    :data:`CERTIFICATE_SAMPLES` (the lower clamp can exceed the share for very short runs); the record says
    how many. Seed: the run's, through :func:`noisereg.pac_bayes.monte_carlo_generator` (a stream of its own,
    not the one that drew the initialisation).
    """
    from noisereg.pac_bayes import pac_bayes_bound

    prior = build_model(model_fn, spec.seed, device)
    x, y = data.x_train, data.y_train
    n = len(x)
    batch = n if spec.batch_size is None else min(spec.batch_size, n)
    model.eval()
    if spec.method in ("full", "layer"):
        sigmas = (paper_sigma(spec.sigma, spec.convention, NoiseLaw(model, 1.0, layers=spec.layers).num_layers),)
    else:
        sigmas = POSTERIOR_GRID
    lo, hi = CERTIFICATE_SAMPLES
    budget = CERTIFICATE_SHARE * 3 * grad_evals_per_step(spec) * steps * batch   # forward passes of single points
    samples = int(min(hi, max(lo, budget // (n * len(sigmas)))))
    best = None
    for s in sigmas:
        b = pac_bayes_bound(model, x, y, s, prior=prior, samples=samples, seed=spec.seed, candidates=len(sigmas))
        if best is None or (b["risk_bound"], b["kl"]) < (best["risk_bound"], best["kl"]):   # ties: smaller KL
            best = b
    model.train()
    best["prior_data"] = {"kind": "data-independent", "source": f"the run's initialisation (seed {spec.seed})",
                          "indices": []}
    return best


def train(model_fn: Callable[[], nn.Module], data: Split, spec: TrainSpec, *, device: str | torch.device = "cpu",
          checkpoint: str | Path | None = None, resume: bool = False, progress=None,
          callback: Callable[[int], None] | None = None,
          on_eval: Callable[[list[dict[str, Any]]], None] | None = None) -> dict[str, Any]:
    """Train one run and return its record ``{"method", "sigma", "seed", "final", "history", ...}``.

    The record also states the run's cost: ``grad_evals_per_step`` (forward + backward passes on a
    batch per update, :func:`~noisereg.training.settings.grad_evals_per_step`: 2 for ``"sam"``, 1 for the
    paper's noise) and ``grad_evals`` (that times the updates done). Method ``"lpf"`` (LPF-SGD) splits each
    step's batch into ``lpf_samples`` = M sub-batches (:func:`~noisereg.training.settings.sub_batches`; with
    ``batch_size=None`` the batch is the whole training set), perturbs the weights afresh for each (per-filter
    std γ‖w_row‖), backpropagates its loss times its share of the batch (1/M when M divides B) and steps once:
    one batch gradient per step.
    Method ``"sam"`` reads ``sigma`` as SAM's ρ (scheduled like σ) and logs ``reg_loss`` at
    ``reg_sigma`` (default 0: it injects no noise).

    Args:
        model_fn: builds the model (called once, under ``spec.seed``).
        data: the data, already on ``device`` (or moved there here).
        spec: the run's settings. device: where to train.
        checkpoint: file for checkpoints (written atomically every ``spec.checkpoint_every``
            epochs, or at every evaluation when it is 0, and at the end).
        resume: continue from ``checkpoint`` if it exists.
        progress: an object with ``update(n)`` (e.g. a tqdm bar), advanced once per epoch.
        callback: called with the epoch number after each epoch (and its checkpoint).
        on_eval: called with the history after each evaluation, the new entry last (live logging,
            :mod:`noisereg.tracking`); on resume, first after the first evaluation past the checkpoint.
    """
    device = torch.device(device)
    data = data.to(device)
    model = build_model(model_fn, spec.seed, device)
    opt, sched = _make_optimizer(model, spec)
    rule = FAMILY.get(spec.method, {})
    inj = None if spec.method in ("gd", "sam") else NoiseInjector(
        model, spec.sigma, mode="full" if rule else spec.method, layers=spec.layers, order=spec.order,
        convention=spec.convention, seed=spec.seed, scale=rule.get("scale", "absolute"))
    sam = SAM(opt, rho=spec.sigma) if spec.method == "sam" else None  # ρ = sigma, scheduled like σ
    several = None  # the family's several-evaluation steps (m-RWP, LPF-SGD, NSO): NoisyOptimizer
    if rule and grad_evals_per_step(spec) > 1:
        several = NoisyOptimizer(opt, inj, **family_options(spec))
    gen = torch.Generator().manual_seed(spec.seed + 7919)  # data order and augmentation
    sigma_reg = spec.reg_sigma if spec.reg_sigma is not None else 0.0 if sam is not None else spec.sigma
    if rule.get("scale", "absolute") != "absolute" and spec.reg_sigma is None:
        sigma_reg = None   # a per-filter law's R_eff is a weighted GGN trace: not computed, reg_loss not logged
    history: list[dict[str, float]] = []
    start, seconds, diverged = 0, 0.0, False
    if resume and checkpoint is not None and Path(checkpoint).exists():
        state = load_checkpoint(checkpoint)
        if state["spec"] != dataclasses.asdict(spec):
            raise ValueError(f"checkpoint {checkpoint} was written for other settings; delete it or use another --out")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        if inj is not None:
            inj.load_state_dict(state["injector"])
        gen.set_state(state["generator"])
        start, history, seconds, diverged = state["epoch"], state["history"], state["seconds"], state["diverged"]
        if progress is not None:
            progress.update(start)
    else:
        history.append({"step": 0, **evaluate(model, data, spec, sigma_reg, curvature=spec.log_every == 0)})
        if on_eval is not None:
            on_eval(history)

    def save(epoch: int) -> None:
        if checkpoint is not None:
            save_checkpoint(checkpoint, {
                "spec": dataclasses.asdict(spec), "epoch": epoch, "model": model.state_dict(),
                "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "injector": inj.state_dict() if inj is not None else {}, "generator": gen.get_state(),
                "history": history, "seconds": seconds, "diverged": diverged})

    n = len(data.x_train)
    bs = n if spec.batch_size is None else min(spec.batch_size, n)
    steps_per_epoch = math.ceil(n / bs)
    parts = getattr(spec, rule["sub_batches"]) if "sub_batches" in rule else None   # LPF-SGD's M
    if parts is not None:
        sub_batches(n - (steps_per_epoch - 1) * bs, parts)   # the smallest batch (the last): refused up front
    model.train()
    for epoch in range(start, spec.epochs if not diverged else start):
        t0 = time.perf_counter()
        if inj is not None:
            inj.sigma = sigma_at(spec, epoch)
        if sam is not None:
            sam.rho = sigma_at(spec, epoch)
        order = torch.randperm(n, generator=gen).to(device) if bs < n else None
        loss_sum = torch.zeros((), device=device)
        for b in range(steps_per_epoch):
            idx = order[b * bs:(b + 1) * bs] if order is not None else slice(None)
            xb, yb = data.x_train[idx], data.y_train[idx]
            if spec.augment:
                xb = _augment(xb, gen)
            if parts is not None:   # LPF-SGD: M sub-batches, a fresh draw for each, loss · |S_m|/B, one step
                opt.zero_grad(set_to_none=True)
                for part in sub_batches(len(xb), parts):
                    with inj.perturb():
                        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=spec.amp):
                            loss = _loss(spec, model(xb[part]).float(), yb[part]) * ((part.stop - part.start) / len(xb))
                        loss.backward()
                    loss_sum += loss.detach()
                opt.step()
                continue
            if sam is not None or several is not None:  # SAM: at w (logged) and w + ρ g/‖g‖; family: see FAMILY
                def closure(xb=xb, yb=yb):
                    opt.zero_grad(set_to_none=True)
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=spec.amp):
                        loss = _loss(spec, model(xb).float(), yb)
                    loss.backward()
                    return loss
                loss = (sam or several).step(closure)
                loss_sum += loss.detach()
                continue
            opt.zero_grad(set_to_none=True)
            with inj.perturb() if inj is not None else contextlib.nullcontext():
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=spec.amp):
                    loss = _loss(spec, model(xb).float(), yb)
                loss.backward()
            opt.step()
            loss_sum += loss.detach()
        sched.step()
        seconds += time.perf_counter() - t0
        last = epoch + 1 == spec.epochs
        if not math.isfinite(float(loss_sum)):  # one host sync per epoch
            diverged = True
        evaluated = diverged or last or (epoch + 1) % spec.eval_every == 0
        if evaluated:
            curvature = diverged or last or spec.log_every == 0 or (epoch + 1) % spec.log_every == 0
            history.append({"step": (epoch + 1) * steps_per_epoch, "epoch": epoch + 1,
                            **evaluate(model, data, spec, sigma_reg, curvature=curvature)})
            if on_eval is not None:
                on_eval(history)
        every = spec.checkpoint_every
        if evaluated if every == 0 else (diverged or last or (epoch + 1) % every == 0):
            save(epoch + 1)
        if progress is not None:
            progress.update(1)
        if callback is not None:
            callback(epoch + 1)
        if diverged:
            break
    final = {k: v for k, v in history[-1].items() if k not in ("step", "epoch")}
    per_step = grad_evals_per_step(spec)  # gradient evaluations (forward + backward on a batch) per step
    record = {"method": spec.method, "sigma": spec.sigma, "seed": spec.seed, "diverged": diverged,
              "final": final, "history": history, "seconds": round(seconds, 3),
              "grad_evals_per_step": per_step, "grad_evals": per_step * history[-1]["step"]}
    if spec.certificate and spec.loss == "cross_entropy" and not diverged:
        record["certificate"] = certify(model, model_fn, data, spec, history[-1]["step"], device)
        final["risk_bound"] = record["certificate"]["risk_bound"]
    return record
