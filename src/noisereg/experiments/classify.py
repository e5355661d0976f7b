"""Shared machinery of the classification experiments (Figs. 3-6): config fields, data, runs, claims."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from noisereg.data import Split, load
from noisereg.experiments.base import Experiment, Run
from noisereg.experiments.stats import final_stats
from noisereg.training import TrainSpec


@dataclass(frozen=True)
class ClassifyConfig:
    """Fields every classification experiment has; each figure adds its model fields."""

    dataset: str = "digits"           # digits (embedded) | fashion_mnist | cifar10 | a .npz path
    n_train: int | None = 1024        # seeded training subset (None: all)
    epochs: int = 100                 # with batch_size None: full-batch GD iterations
    batch_size: int | None = None
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"
    sigmas: tuple[float, ...] = (0.05,)
    methods: tuple[str, ...] = ("gd", "full", "layer")
    seeds: tuple[int, ...] = (0,)
    sigma_schedule: str = "constant"
    noise_stop_epoch: int | None = None
    augment: bool = False
    eval_every: int = 10
    log: tuple[str, ...] = ()
    trace_points: int = 512
    checkpoint_every: int = 0
    layers: str = "module"
    order: str = "random"
    convention: str = "paper"
    amp: bool = False                 # bfloat16 autocast (GPU runs)


class ClassifyExperiment(Experiment):
    """Runs: GD once per seed, each noisy method per σ and seed, for every variant."""

    variants: tuple[str, ...] = ("",)
    image_input: bool = False  # convolutional models: flat 8x8 digits become 1x8x8 images

    def data(self, cfg, data, data_dir) -> Split:
        spec = data or cfg.dataset
        split = load(spec, data_dir=data_dir, n_train=cfg.n_train, seed=0)
        if self.image_input and split.x_train.dim() == 2 and split.x_train.shape[1] == 64:
            split = dataclasses.replace(split, x_train=split.x_train.reshape(-1, 1, 8, 8),
                                        x_test=split.x_test.reshape(-1, 1, 8, 8))
        return split

    def spec(self, cfg, variant: str, method: str, sigma: float, seed: int) -> TrainSpec:
        return TrainSpec(method=method, sigma=sigma, seed=seed, epochs=cfg.epochs, batch_size=cfg.batch_size,
                         lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, schedule=cfg.schedule,
                         sigma_schedule=cfg.sigma_schedule, noise_stop_epoch=cfg.noise_stop_epoch, loss="cross_entropy", eval_every=cfg.eval_every,
                         log=cfg.log, trace_points=cfg.trace_points, layers=cfg.layers, order=cfg.order,
                         convention=cfg.convention, augment=cfg.augment, checkpoint_every=cfg.checkpoint_every,
                         amp=cfg.amp)

    def variant_names(self, cfg) -> list[str]:
        return list(self.variants)

    def runs(self, cfg):
        out = []
        for v in self.variant_names(cfg):
            tag = f"{v}-" if v else ""
            for seed in cfg.seeds:
                if "gd" in cfg.methods:
                    out.append(Run(f"{tag}gd-s{seed}", v, self.spec(cfg, v, "gd", 0.0, seed)))
                for m in (m for m in cfg.methods if m != "gd"):
                    out += [Run(f"{tag}{m}-sigma{s:g}-s{seed}", v, self.spec(cfg, v, m, s, seed)) for s in cfg.sigmas]
        return out


def compare(results: dict, variant: str, metric: str = "test_acc"):
    """Final ``metric`` (mean, se, n) for GD, and the best σ of each noisy method, in a variant."""
    stats = final_stats(results, metric)
    gd = stats.get((variant, "gd", 0.0), (math.nan, math.nan, 0))
    best = {}
    for m in ("full", "layer"):
        cands = [(v, s) for (var, mm, s), v in stats.items() if var == variant and mm == m and math.isfinite(v[0])]
        if cands:
            best[m] = max(cands, key=lambda c: c[0][0])
    return gd, best, stats


def scale_note(results: dict) -> str:
    return "" if results["preset"] == "paper" else f" (preset {results['preset']}: embedded data, reduced model)"
