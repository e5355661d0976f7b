"""The settings of a training run, checked on construction: :class:`TrainSettings` and :class:`TrainSpec`.

:class:`TrainSettings` holds how to train (epochs, optimizer, schedules, logging, the noise's
layers, order and convention); an experiment's config that trains networks derives from it, so
``--set lr=...`` names the same field everywhere and its rule is written once. :class:`TrainSpec`
adds what identifies one run (method, σ, seed, loss); :meth:`TrainSettings.spec` builds it from a
config without copying fields by hand.

Example:
    >>> s = TrainSettings(epochs=5, lr=0.1)
    >>> spec = s.spec(method="layer", sigma=0.05, seed=1)
    >>> (spec.method, spec.epochs, spec.lr)
    ('layer', 5, 0.1)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from noisereg.constraints import Checked, Each, Interval, IsBool, OneOf, OrNone
from noisereg.injection import CONVENTIONS, MODES, ORDERS
from noisereg.layers import LAYER_SCHEMES
from noisereg.schedules import SIGMA_SCHEDULES

METHODS = ("gd", *MODES, "sam", "rwp", "mrwp", "lpf", "nso")
"""``"gd"``: no noise; ``"full"``/``"layer"``: the paper's NoiseInjector modes; ``"sam"``: nr.SAM, ρ = sigma;
the weight-perturbation family (:data:`FAMILY`), σ their noise scale γ."""
FAMILY = {   # the family's rules as NoiseInjector + NoisyOptimizer settings (docs/EXPERIMENTS.md, "family")
    "rwp": {"scale": "filter"},                             # RWP (Li et al. 2022): per-filter std γ‖w_row‖
    "mrwp": {"scale": "filter", "clean_weight": 0.5},       # m-RWP: λ g(w + ξ) + (1 − λ) g(w), λ = 1/2
    "lpf": {"scale": "filter", "sub_batches": "lpf_samples"},  # LPF-SGD (Bisla et al. 2022): M sub-batches, a draw each
    "nso": {"scale": "absolute", "antithetic": True, "samples": "nso_pairs"},  # NSO: k pairs ½(g(w+ξ) + g(w−ξ))
}
"""Method -> injector ``scale`` and :class:`noisereg.NoisyOptimizer` settings (a string: the TrainSettings field);
``sub_batches``: the step's batch is split into that many sub-batches, one draw each (:func:`sub_batches`)."""
OPTIMIZERS = ("sgd", "adam", "adamw")      # "adam": L2 in the gradient; "adamw": decoupled weight decay
LR_SCHEDULES = ("constant", "cosine")          # "cosine": annealed to 0 over the epochs
LOGGABLE = ("reg_loss", "ggn_trace", "hessian_trace")
TRACE_ESTIMATORS = ("exact", "sampled")        # ggn_trace, or sampled_ggn_trace (with a standard error)
TRAIN_LOSSES = ("cross_entropy", "square")

# constraints shared by the training settings and by experiment configs (one definition each)
METHOD = OneOf(*METHODS)


def family_options(spec) -> dict:
    """The :class:`noisereg.NoisyOptimizer` settings (``samples``, ``antithetic``, ``clean_weight``) of a run's
    method by :data:`FAMILY` (a string there names the spec's field); the defaults for the other methods."""
    rule = FAMILY.get(spec.method, {})
    samples = rule.get("samples", 1)
    return {"samples": getattr(spec, samples) if isinstance(samples, str) else samples,
            "antithetic": rule.get("antithetic", False), "clean_weight": rule.get("clean_weight", 0.0)}


def grad_evals_per_step(spec) -> int:
    """Gradient evaluations (forward + backward on a batch) per update of a run, as the optimizer that runs it
    counts them: :attr:`noisereg.SAM.grad_evals_per_step` (2) for SAM, else
    :meth:`noisereg.NoisyOptimizer.evals_per_step` of :func:`family_options` (2 for m-RWP, 2·``nso_pairs`` for NSO, 1
    otherwise: LPF-SGD's M draws each take the gradient on 1/M of the batch, one batch gradient in all)."""
    from noisereg.optim import SAM, NoisyOptimizer

    if spec.method == "sam":
        return SAM.grad_evals_per_step
    return NoisyOptimizer.evals_per_step(**family_options(spec))


def sub_batches(batch: int, parts: int) -> list[slice]:
    """LPF-SGD's split of a batch of ``batch`` points into ``parts`` = M contiguous sub-batches: sizes ⌊B/M⌋ or
    ⌈B/M⌉, the first ``B mod M`` one larger (each sub-batch's loss is weighted by its share of the batch, so
    the M gradients add up to one batch gradient; with M dividing B every weight is 1/M).

    Raises:
        ValueError: ``parts`` exceeds ``batch`` (a sub-batch would be empty).

    Example:
        >>> [(s.start, s.stop) for s in sub_batches(10, 4)]
        [(0, 3), (3, 6), (6, 8), (8, 10)]
    """
    if parts > batch:
        raise ValueError(f"lpf_samples must be <= the smallest batch ({batch} points), got {parts}: "
                         "lower lpf_samples or raise batch_size")
    size, extra = divmod(batch, parts)
    bounds = [k * size + min(k, extra) for k in range(parts + 1)]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:])]


SIGMA = Interval(0)
SEED = Interval(0, integer=True)
SEEDS = Each(SEED, unique=True)  # a sweep's seeds: a repeated seed would pair a run with itself
POSITIVE_INT = Interval(1, integer=True)


@dataclass(frozen=True)
class TrainSettings(Checked):
    """How to train. ``batch_size=None`` is full-batch GD (then one epoch = one step)."""

    epochs: int = 10
    batch_size: int | None = None
    lr: float = 0.01
    momentum: float = 0.0
    weight_decay: float = 0.0
    optimizer: str = "sgd"            # "sgd" | "adam" | "adamw"
    schedule: str = "constant"        # lr schedule: "constant" | "cosine" (over epochs)
    sigma_schedule: str = "constant"  # "constant" | "linear" (σ·(1 − t/T)) | "cosine" (σ·(1 + cos πt/T)/2), per epoch
    noise_stop_epoch: int | None = None  # sigma is set to 0 from this epoch on (Fig. 6: 135 of 150)
    eval_every: int = 1               # epochs between evaluations
    log: tuple[str, ...] = ()         # extra metrics: "reg_loss", "ggn_trace", "hessian_trace"
    log_every: int = 0                # epochs between the metrics of log (0: at every evaluation; else also at the end)
    trace_points: int | None = 512    # training points used for the curvature metrics (None: all)
    trace_estimator: str = "exact"    # curvature metrics: "exact" (ggn_trace) | "sampled" (sampled_ggn_trace, + *_se)
    layers: str = "module"            # NoiseInjector layers: "module" | "tensor"
    order: str = "random"             # layer-wise noise: "random" | "cyclic"
    convention: str = "paper"         # "paper" | "official" (docs/THEORY.md §3)
    augment: bool = False             # random crop (pad 4 for 32x32, 1 otherwise) + horizontal flip
    checkpoint_every: int = 0         # epochs between checkpoints (0: at every evaluation)
    amp: bool = False                 # bfloat16 autocast for forward and loss (no GradScaler needed)
    sigma_factor: float = 2.0         # "cosine_up": σ rises to σ·sigma_factor
    lpf_samples: int = 4              # lpf: M, the sub-batches of a step's batch, one noise draw each (one batch gradient)
    nso_pairs: int = 1                # nso: antithetic pairs per step (2k gradient evaluations)
    certificate: bool = False         # cross-entropy runs: a PAC-Bayes risk certificate at the end (run["certificate"])

    CONSTRAINTS = {
        "epochs": POSITIVE_INT,
        "batch_size": OrNone(POSITIVE_INT),
        "lr": Interval(0, low_open=True),
        "momentum": Interval(0, 1, high_open=True),
        "weight_decay": Interval(0),
        "optimizer": OneOf(*OPTIMIZERS),
        "schedule": OneOf(*LR_SCHEDULES),
        "sigma_schedule": OneOf(*SIGMA_SCHEDULES),
        "noise_stop_epoch": OrNone(Interval(0, integer=True)),
        "eval_every": POSITIVE_INT,
        "log": Each(OneOf(*LOGGABLE), empty=True),
        "log_every": Interval(0, integer=True),
        "trace_points": OrNone(POSITIVE_INT),
        "trace_estimator": OneOf(*TRACE_ESTIMATORS),
        "layers": OneOf(*LAYER_SCHEMES),
        "order": OneOf(*ORDERS),
        "convention": OneOf(*CONVENTIONS),
        "augment": IsBool(),
        "checkpoint_every": Interval(0, integer=True),
        "amp": IsBool(),
        "sigma_factor": Interval(1),
        "lpf_samples": POSITIVE_INT,
        "nso_pairs": POSITIVE_INT,
        "certificate": IsBool(),
    }

    def spec(self, **run) -> TrainSpec:
        """The :class:`TrainSpec` of one run: these settings, with ``run`` (method, sigma, seed,
        loss, ..., or a setting to override) on top."""
        settings = {f.name: getattr(self, f.name) for f in dataclasses.fields(TrainSettings)}
        return TrainSpec(**{**settings, **run})


@dataclass(frozen=True)
class TrainSpec(TrainSettings):
    """Settings of one run: :class:`TrainSettings` plus the method, σ, seed and loss."""

    method: str = "gd"                # "gd" | "full" | "layer" | "sam"
    sigma: float = 0.0                # noise scale (paper convention unless convention says otherwise); sam: ρ
    seed: int = 0                     # model init, data order, augmentation and noise
    loss: str = "cross_entropy"       # "cross_entropy" | "square"
    reg_sigma: float | None = None    # σ of reg_loss (default: sigma)

    CONSTRAINTS = {"method": METHOD, "sigma": SIGMA, "seed": SEED, "loss": OneOf(*TRAIN_LOSSES),
                   "reg_sigma": OrNone(SIGMA)}
