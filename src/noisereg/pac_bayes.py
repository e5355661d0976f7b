r"""PAC-Bayes risk certificates for classifiers trained with noise injection, and a sharpness measure.

Noise injection minimises the expected loss of the network under Gaussian weight noise: the empirical
term of a PAC-Bayes bound whose posterior is :math:`Q = N(w, \sigma^2 I)`, centred at the trained weights
(docs/THEORY.md §9). For a prior :math:`P = N(w_0, s_0^2 I)` fixed before seeing the data (e.g. the
network at initialisation), with probability at least 1 − δ over an i.i.d. sample of size n,

.. math::

    \mathrm{kl}\big(\hat e_Q \,\|\, e_Q\big) \le \frac{\mathrm{KL}(Q\|P) + \ln(2\sqrt n/\delta)}{n}
    \qquad\text{(Maurer 2004)},

where :math:`\hat e_Q`, :math:`e_Q` are the empirical and true 0-1 errors of the stochastic network and
kl the binary relative entropy. :math:`\hat e_Q` is itself estimated from ``samples`` weight draws, with
:math:`\mathrm{kl}(\hat{\hat e}\|\hat e_Q) \le \ln(2/\delta)/\text{samples}` (Langford & Caruana 2001);
δ/2 goes to each part. Searching ``grid_size`` = G prior stds costs a union bound in the first part:
ln(2√n/δ) becomes ln(4G√n/δ) after the δ/2 split (Maurer's bound holds for every posterior at once, so the
posterior needs no union there). Choosing among C posteriors (``candidates``) after looking at their
Monte-Carlo estimates costs a union bound in the second part: ln(2/δ) becomes ln(2C/δ). The weight draws
come from their own stream (:func:`monte_carlo_generator`), never the one ``torch.manual_seed(seed)`` gives
(which draws a run's initialisation).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

PRIOR_GRID = tuple(10.0 ** (-3 + 4 * j / 31) for j in range(32))
"""The prior stds searched when ``prior_sigma`` is None: 32 values log-uniform from 1e-3 to 10 (G = 32)."""


def binary_kl(q: float, p: float) -> float:
    """kl(q‖p) = q ln(q/p) + (1 − q) ln((1 − q)/(1 − p)), with 0 ln 0 = 0 (inf where p excludes q)."""
    out = 0.0
    for a, b in ((q, p), (1.0 - q, 1.0 - p)):
        if a > 0:
            out += math.inf if b <= 0 else a * math.log(a / b)
    return out


def kl_inverse(q: float, c: float, iters: int = 200) -> float:
    """The largest p in [q, 1] with kl(q‖p) ≤ c (the upper inverse of the binary kl), by bisection.

    kl(q‖·) increases on [q, 1], so bisection converges to the crossing; 1 when no p < 1 is excluded.

    Raises:
        ValueError: q outside [0, 1] or c negative or not finite.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be in [0, 1], got {q!r}")
    if not (c >= 0 and math.isfinite(c)):
        raise ValueError(f"c must be a finite number >= 0, got {c!r}")
    if q >= 1.0 or binary_kl(q, 1.0 - 1e-16) <= c:
        return 1.0
    lo, hi = q, 1.0
    for _ in range(iters):
        mid = (lo + hi) / 2
        if binary_kl(q, mid) > c:
            hi = mid
        else:
            lo = mid
    return hi   # the upper end of the final bracket: never below the true inverse


def gaussian_kl(w: torch.Tensor, w0: torch.Tensor, sigma: float, prior_sigma: float) -> float:
    r"""KL(N(w, σ²I) ‖ N(w₀, s₀²I)) = ½ [d σ²/s₀² + ‖w − w₀‖²/s₀² − d + d ln(s₀²/σ²)] (float64)."""
    d = w.numel()
    diff = float((w.double() - w0.double()).pow(2).sum())
    r = sigma**2 / prior_sigma**2
    return 0.5 * (d * r + diff / prior_sigma**2 - d - d * math.log(r))


MC_STREAM = 0x4D43
"""The spawn key of the Monte-Carlo weight draws' stream (:func:`monte_carlo_generator`)."""


def monte_carlo_generator(seed: int) -> torch.Generator:
    """The CPU generator of a certificate's weight draws for ``seed``: seeded with numpy's SeedSequence(seed)
    spawned on :data:`MC_STREAM`, so it never replays ``torch.manual_seed(seed)`` (a run's initialisation)."""
    state = np.random.SeedSequence(int(seed), spawn_key=(MC_STREAM,)).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state >> 1))


def certificate(empirical_risk: float, kl: float, n: int, samples: int, delta: float, grid_size: int = 1,
                candidates: int = 1) -> dict:
    """The two inversions of the module docstring from their inputs: ``empirical_risk_bound`` =
    kl⁻¹(ê, ln(2C/δ)/samples) and ``risk_bound`` = kl⁻¹(empirical_risk_bound, (KL + ln(4 G √n/δ))/n), with
    G = ``grid_size`` the prior stds searched and C = ``candidates`` the posteriors whose Monte-Carlo
    estimates were compared to pick this one (δ/2 to each part, split G and C ways by the union bound).

    Example:
        >>> round(certificate(0.19, 100.0, 2048, 10000, 0.05, grid_size=32)["risk_bound"], 3)
        0.351
    """
    for name, v in (("grid_size", grid_size), ("candidates", candidates)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    emp_bound = kl_inverse(empirical_risk, math.log(2 * candidates / delta) / samples)
    risk = kl_inverse(emp_bound, (kl + math.log(4 * grid_size * math.sqrt(n) / delta)) / n)
    return {"empirical_risk_bound": emp_bound, "risk_bound": risk}


_RANDOM_IN_TRAINING = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm)


@torch.no_grad()
def check_classifier(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Refuse what would make a 0-1 error meaningless; return the clean logits ``model(x)``.

    Raises:
        TypeError: ``y`` is not a tensor of integer class labels.
        ValueError: ``y`` is not 1-d with one label per row of ``x``; a label outside 0..C−1 for a model with
            C outputs; a Dropout or BatchNorm layer in training mode (random or batch-dependent predictions).
    """
    if not isinstance(y, torch.Tensor) or y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise TypeError(f"y must be a tensor of integer class labels, got {getattr(y, 'dtype', type(y).__name__)}: "
                        "convert with y.long() if the values are whole numbers")
    if y.dim() != 1 or len(y) != len(x):
        raise ValueError(f"y must hold one label per row of x ({len(x)}), got shape {tuple(y.shape)}")
    training = sorted({type(m).__name__ for m in model.modules() if isinstance(m, _RANDOM_IN_TRAINING) and m.training})
    if training:
        raise ValueError(f"model has {', '.join(training)} in training mode, so its predictions are random or depend "
                         "on the batch: call model.eval() first")
    out = model(x)
    if out.dim() != 2:
        raise ValueError(f"model(x) must be logits of shape (n, classes), got shape {tuple(out.shape)}")
    classes = out.shape[1]
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= classes):
        raise ValueError(f"y must be class labels in 0..{classes - 1} (the model has {classes} outputs), got labels "
                         f"from {int(y.min())} to {int(y.max())}: check the labels or the model's output size")
    return out


def _flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters() if p.requires_grad])


@torch.no_grad()
def stochastic_error(model: nn.Module, x: torch.Tensor, y: torch.Tensor, sigma: float, samples: int,
                     seed: int = 0, chunk: int = 4096) -> tuple[float, float]:
    """Monte-Carlo 0-1 error of the network with weights w + σε (ε ~ N(0, I) on the trainable parameters), each
    of ``samples`` draws scored on all of (x, y): (mean error, its standard error over draws). The draws come
    from :func:`monte_carlo_generator` (``seed``), not from ``torch.manual_seed(seed)``'s stream."""
    params = {k: p.detach() for k, p in model.named_parameters() if p.requires_grad}
    buffers = dict(model.named_buffers())
    gen = monte_carlo_generator(seed)
    errors = []
    for _ in range(samples):
        noisy = {k: p + sigma * torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device) for k, p in params.items()}
        wrong = 0
        for i in range(0, len(x), chunk):
            out = functional_call(model, (noisy, buffers), (x[i:i + chunk],))
            wrong += int((out.argmax(1) != y[i:i + chunk]).sum())
        errors.append(wrong / len(x))
    e = torch.tensor(errors, dtype=torch.float64)
    return float(e.mean()), float(e.std() / math.sqrt(samples)) if samples > 1 else 0.0


def pac_bayes_bound(model: nn.Module, x: torch.Tensor, y: torch.Tensor, sigma: float, *, prior: nn.Module | None = None,
                    prior_sigma: float | None = None, delta: float = 0.05, samples: int = 1000, seed: int = 0,
                    candidates: int = 1) -> dict:
    r"""A PAC-Bayes certificate on the 0-1 risk of the stochastic classifier :math:`Q = N(w, \sigma^2 I)`.

    See the module docstring for the bound. The posterior perturbs every trainable parameter with std σ
    (the paper convention's full noise); the prior is :math:`N(w_0, s_0^2 I)` with :math:`w_0` the
    parameters of ``prior`` (same structure; it must not depend on (x, y): the network at initialisation
    is the usual choice) or 0 without one. With ``prior_sigma=None`` the bound is minimised over
    :data:`PRIOR_GRID` (G = 32, paid by the union bound), else G = 1. The empirical error is estimated
    once (``samples`` draws from :func:`monte_carlo_generator` (``seed``)) and shared by every prior std.

    Args:
        model: a classifier (``argmax`` of its output is the prediction), in eval mode if it has dropout or
            batch-norm layers. x, y: the training data (the bound holds for the data it is computed on
            being an i.i.d. sample, and for a prior chosen without it). sigma: posterior std σ > 0.
        prior, prior_sigma, delta, samples, seed: see above; 0 < δ < 1, samples >= 1.
        candidates: how many posterior σ the caller scores with the same δ and seed to keep the best: C of the
            Monte-Carlo term's union bound (the Maurer term holds for every posterior at once and needs none).

    Returns:
        ``{"risk_bound", "empirical_risk", "empirical_risk_bound", "kl", "n", "samples", "delta",
        "prior_sigma", "grid_size", "candidates", "sigma", "empirical_risk_se"}`` (``grid_size``: the prior
        stds searched). A ``risk_bound`` near or above
        the error of guessing (1 − 1/classes) is vacuous.

    Raises:
        ValueError: σ, δ or samples out of range, or a prior of another structure; ``y`` not one label per row
            of ``x``, a label outside 0..C−1 (C: the model's outputs), or a Dropout / BatchNorm layer in
            training mode (:func:`check_classifier`).
        TypeError: ``y`` is not a tensor of integer labels.
    """
    if not (sigma > 0 and math.isfinite(sigma)):
        raise ValueError(f"sigma must be a finite number > 0, got {sigma!r}")
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be an integer >= 1, got {samples!r}")
    if prior_sigma is not None and not (prior_sigma > 0 and math.isfinite(prior_sigma)):
        raise ValueError(f"prior_sigma must be a finite number > 0, got {prior_sigma!r}")
    check_classifier(model, x, y)
    w = _flat(model)
    if prior is None:
        w0 = torch.zeros_like(w)
    else:
        w0 = _flat(prior)
        if w0.shape != w.shape:
            raise ValueError(f"prior has {w0.numel()} trainable parameters, the model {w.numel()}: the prior must "
                             "be a module of the same structure (e.g. the network at initialisation)")
    if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1:
        raise ValueError(f"candidates must be an integer >= 1, got {candidates!r}")
    n = len(x)
    emp, se = stochastic_error(model, x, y, sigma, samples, seed)
    grid = (prior_sigma,) if prior_sigma is not None else PRIOR_GRID
    best = None
    for s0 in grid:
        kl = gaussian_kl(w, w0, sigma, s0)
        cert = certificate(emp, kl, n, samples, delta, len(grid), candidates)
        if best is None or (cert["risk_bound"], kl) < (best[0]["risk_bound"], best[1]):   # ties (vacuous): smaller KL
            best = (cert, kl, s0)
    cert, kl, s0 = best
    return {"risk_bound": cert["risk_bound"], "empirical_risk": emp, "empirical_risk_bound": cert["empirical_risk_bound"],
            "kl": kl, "n": n, "samples": samples, "delta": delta, "prior_sigma": s0, "grid_size": len(grid),
            "candidates": candidates,
            "sigma": float(sigma), "empirical_risk_se": se}


def sharpness(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, drop: float = 0.1, samples: int = 100,
              seed: int = 0, iters: int = 20, high: float = 1.0) -> dict:
    """The largest σ at which the stochastic network's accuracy on (x, y) is at most ``drop`` below the clean
    accuracy, by bisection on σ (``high`` doubled until the drop is exceeded, at most 30 times).

    Each σ is scored with ``samples`` draws of the same seed (common random numbers along the bisection).
    The model must be a deterministic classifier (eval mode) scored on labels in its range, as for
    :func:`pac_bayes_bound`.

    Not every model has a sharpness at a given ``drop``: when the accuracy cannot fall by ``drop`` (the clean
    accuracy is already at most ``drop``, e.g. labels that do not belong to the inputs; or the noisy network
    still scores within ``drop`` at ``high``·2³⁰) no σ is measured and a ``ValueError`` says so; nothing is
    returned that could be mistaken for a measurement.

    Returns:
        ``{"sigma", "low", "high", "se", "clean_accuracy", "accuracy"}``: ``sigma`` = ``low``, the largest σ
        found within the drop; ``[low, high]`` the final bracket; ``accuracy`` and ``se`` the stochastic
        accuracy at ``sigma`` and its Monte-Carlo standard error.

    Raises:
        ValueError: ``drop`` outside (0, 1), samples < 1, ``high`` not a finite number > 0; the accuracy cannot
            fall by ``drop`` (not measurable, see above); labels or a train-mode model refused by
            :func:`check_classifier`.
        TypeError: ``y`` is not a tensor of integer labels.
    """
    if not 0 < drop < 1:
        raise ValueError(f"drop must be in (0, 1), got {drop!r}")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be an integer >= 1, got {samples!r}")
    if not (high > 0 and math.isfinite(high)):
        raise ValueError(f"high must be a finite number > 0, got {high!r}")
    clean = float((check_classifier(model, x, y).argmax(1) == y).double().mean())
    if clean <= drop:
        raise ValueError(f"sharpness is not measurable: the clean accuracy {clean:.4g} is not above drop={drop}, so "
                         "no noise can lower it by drop; check that y are the labels of x, or use a smaller drop")

    def acc(s: float) -> tuple[float, float]:
        e, se = stochastic_error(model, x, y, s, samples, seed)
        return 1.0 - e, se

    lo, hi = 0.0, float(high)
    for _ in range(30):
        if clean - acc(hi)[0] > drop:
            break
        lo, hi = hi, 2 * hi
    else:
        raise ValueError(f"sharpness is not measurable: the accuracy stays within drop={drop} of the clean accuracy "
                         f"{clean:.4g} up to sigma={lo:.3g}; the noisy network's chance-level accuracy is too close to "
                         "the clean one: use a smaller drop")
    for _ in range(iters):
        mid = (lo + hi) / 2
        if clean - acc(mid)[0] > drop:
            hi = mid
        else:
            lo = mid
    a, se = acc(lo) if lo > 0 else (clean, 0.0)
    return {"sigma": lo, "low": lo, "high": hi, "se": se, "clean_accuracy": clean, "accuracy": a}
