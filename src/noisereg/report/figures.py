"""Figures from results.json alone, drawn like the paper's: curves over training, metrics vs σ.

Two kinds of figure spec (experiments declare them, see ``Experiment.figures``):

* ``curves``: one panel per (variant, metric), x = step, one line per (method, σ), mean over
  seeds with a ± standard-error band;
* ``vs_sigma``: one panel per (variant, metric), x = σ, one line per noisy method with
  ± standard-error bars over seeds, GD as a horizontal line with its band.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from noisereg.experiments.plotting import figure, save
from noisereg.experiments.stats import arm, mean_se

LABELS = {"gd": "GD", "full": "GD + noise", "layer": "GD + noise (layer)",  # other arms: their name
          "sam": "SAM (ρ on the σ axis)", "sam_half": "SAM, half the steps"}
COLORS = {"gd": "tab:blue", "full": "tab:orange", "layer": "tab:green",      # other arms: the color cycle
          "sam": "tab:red", "sam_half": "tab:purple"}


def _methods(runs) -> list[str]:
    """The arms of ``runs`` (their methods, see :func:`~noisereg.experiments.stats.arm`): those of
    LABELS first (in its order), then the others by name."""
    found = {arm(r) for r in runs}
    return [m for m in LABELS if m in found] + sorted(found - set(LABELS))
TITLES = {"train_loss": "train loss R", "test_loss": "test loss", "train_acc": "train accuracy (%)",
          "test_acc": "test accuracy (%)", "reg_loss": "regularized loss R_eff", "ggn_trace": "GGN trace",
          "hessian_trace": "Hessian trace"}


def _mean_se(values: list[float]) -> tuple[float, float]:
    return mean_se(values)[:2]


def _scale(metric: str, x: float) -> float:
    return 100 * x if metric.endswith("_acc") and x is not None else x


def _draw_curves(ax, runs, metric, log):
    groups = defaultdict(list)
    for r in runs:
        groups[(arm(r), r["sigma"])].append(r)
    order = _methods(runs)
    for (method, sigma), rs in sorted(groups.items(), key=lambda kv: (order.index(kv[0][0]), kv[0][1])):
        steps = [h["step"] for h in rs[0]["history"] if metric in h]
        if not steps:
            continue
        rows = [[_scale(metric, h.get(metric)) for h in r["history"] if metric in h] for r in rs]
        width = min(len(row) for row in rows)
        stats = [_mean_se([row[i] for row in rows]) for i in range(width)]
        mean, se = np.array([s[0] for s in stats]), np.array([s[1] for s in stats])
        label = LABELS.get(method, method) + ("" if method == "gd" else f", σ={sigma:g}") + (" (diverged)" if any(r.get("diverged") for r in rs) else "")
        line, = ax.plot(steps[:width], mean, color=COLORS.get(method), label=label)
        ax.fill_between(steps[:width], mean - se, mean + se, color=line.get_color(), alpha=0.2)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("iteration")


def _draw_vs_sigma(ax, runs, metric):
    gd = [(r["final"].get(metric)) for r in runs if arm(r) == "gd"]
    if gd:
        m, se = _mean_se([_scale(metric, v) for v in gd])
        ax.axhline(m, color=COLORS["gd"], label=LABELS["gd"])
        ax.axhspan(m - se, m + se, color=COLORS["gd"], alpha=0.15)
    for method in (m for m in _methods(runs) if m != "gd"):
        sigmas = sorted({r["sigma"] for r in runs if arm(r) == method})
        pts = [_mean_se([_scale(metric, r["final"].get(metric)) for r in runs if arm(r) == method and r["sigma"] == s])
               for s in sigmas]
        if any(math.isfinite(p[0]) for p in pts):
            ax.errorbar(sigmas, [p[0] for p in pts], yerr=[p[1] for p in pts], marker="o", capsize=3,
                        color=COLORS.get(method), label=LABELS.get(method, method))
    xs = sorted({r["sigma"] for r in runs if arm(r) != "gd"})
    if xs and min(xs) > 0:
        from matplotlib.ticker import NullFormatter

        ax.set_xscale("log")
        ax.set_xticks(xs, [f"{s:g}" for s in xs])  # the grid's values, not overlapping minor labels
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("σ")


def draw(results: dict, spec: dict, out: Path) -> Path:
    """Render one figure spec from ``results`` into ``out/spec['file']`` (atomically)."""
    runs = results["runs"]
    variants = list(dict.fromkeys(r["variant"] for r in runs)) if spec.get("panels") == "variant" else [None]
    metrics = spec["metrics"]
    fig, axes = figure(len(variants), len(metrics), size=(5.0, 3.6))
    for i, variant in enumerate(variants):
        sub = [r for r in runs if variant is None or r["variant"] == variant]
        for j, metric in enumerate(metrics):
            ax = axes[i][j]
            if spec["kind"] == "curves":
                _draw_curves(ax, sub, metric, log=metric in spec.get("log", ()))
            else:
                _draw_vs_sigma(ax, sub, metric)
            ax.set_title(TITLES.get(metric, metric) + (f" — {variant}" if variant else ""))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    return save(fig, Path(out) / spec["file"], spec.get("title", results["experiment"]))
