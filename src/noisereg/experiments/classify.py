"""Shared machinery of the classification experiments (Figs. 3-6): config fields, data, runs, claims."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from noisereg.constraints import Each, OrNone, Satisfies
from noisereg.data import DATASETS, Split, load
from noisereg.errors import UserError
from noisereg.experiments.base import Experiment, Run, data_note
from noisereg.experiments.stats import final_stats
from noisereg.training.settings import METHOD, POSITIVE_INT, SEED, SIGMA, TrainSettings

_SETTINGS = {f.name for f in dataclasses.fields(TrainSettings)}
_DIR_DATASETS = ("fashion_mnist", "cifar10")  # the data sets read from --data-dir


@dataclass(frozen=True)
class ClassifyConfig(TrainSettings):
    """The training settings (:class:`TrainSettings`, defaults of Sec. 5 here), the data and the sweep;
    each figure adds its model fields."""

    epochs: int = 100                 # with batch_size None: full-batch GD iterations
    lr: float = 0.05
    momentum: float = 0.9
    eval_every: int = 10
    dataset: str = "digits"           # digits (embedded) | fashion_mnist | cifar10 | a .npz path | standin:NAME
    n_train: int | None = 1024        # seeded training subset (None: all)
    sigmas: tuple[float, ...] = (0.05,)
    methods: tuple[str, ...] = ("gd", "full", "layer")
    seeds: tuple[int, ...] = (0,)

    CONSTRAINTS = {
        "dataset": Satisfies(lambda v: v in DATASETS or v.endswith(".npz"),
                             f"one of {DATASETS} or a path ending in .npz", str),
        "n_train": OrNone(POSITIVE_INT),
        "sigmas": Each(SIGMA),
        "methods": Each(METHOD),
        "seeds": Each(SEED),
    }


class ClassifyExperiment(Experiment):
    """Runs: GD once per seed, each noisy method per σ and seed, for every variant."""

    image_input: bool = False  # convolutional models: flat 8x8 digits become 1x8x8 images

    def variants(self, cfg) -> list[tuple[str, dict[str, Any]]]:
        """``(label, params)`` of each variant. A param that names a training setting (``lr``, say)
        sets it for the variant's runs; the others are for :meth:`model`."""
        return [("", {})]

    def data(self, cfg, data, data_dir) -> Split:
        if data_dir and not data and cfg.dataset not in _DIR_DATASETS:
            raise UserError(f"--data-dir holds the files of {' or '.join(_DIR_DATASETS)}, but dataset is "
                            f"{cfg.dataset!r}: add --set dataset=fashion_mnist (or cifar10)")
        split = load(data or cfg.dataset, data_dir=data_dir, n_train=cfg.n_train, seed=0)
        if self.image_input and split.x_train.dim() == 2 and split.x_train.shape[1] == 64:
            split = dataclasses.replace(split, x_train=split.x_train.reshape(-1, 1, 8, 8),
                                        x_test=split.x_test.reshape(-1, 1, 8, 8))
        return split

    def runs(self, cfg):
        out = []
        for label, params in self.variants(cfg):
            tag = f"{label}-" if label else ""
            settings = {k: v for k, v in params.items() if k in _SETTINGS}

            def run(run_id, method, sigma, seed, label=label, params=params, settings=settings):
                spec = cfg.spec(method=method, sigma=sigma, seed=seed, loss="cross_entropy", **settings)
                return Run(run_id, label, spec, params)

            for seed in cfg.seeds:
                if "gd" in cfg.methods:
                    out.append(run(f"{tag}gd-s{seed}", "gd", 0.0, seed))
                for m in (m for m in cfg.methods if m != "gd"):
                    out += [run(f"{tag}{m}-sigma{s:g}-s{seed}", m, s, seed) for s in cfg.sigmas]
        return out


def compare(results: dict, variant: str, metric: str = "test_acc"):
    """Final ``metric`` (mean, se, n) for GD, and the best σ of each noisy method, in a variant."""
    stats = final_stats(results, metric)
    gd = stats.get((variant, "gd", 0.0), (math.nan, math.nan, 0))
    best = {}
    for m in sorted({mm for (_, mm, _) in stats if mm != "gd"}):
        cands = [(v, s) for (var, mm, s), v in stats.items() if var == variant and mm == m and math.isfinite(v[0])]
        if cands:
            best[m] = max(cands, key=lambda c: c[0][0])
    return gd, best, stats


def scale_note(results: dict) -> str:
    """`` (preset P[, reduced model]; DATA)``: the scale and the data a claim was judged on."""
    scale = "" if results["preset"] == "paper" else ", reduced model"
    return f" (preset {results['preset']}{scale}; {data_note(results)})"
