"""Figures from results.json alone, drawn like the paper's: curves over training, metrics vs σ.

Two kinds of figure spec (experiments declare them, see ``Experiment.figures``):

* ``curves``: one panel per (variant, metric), x = step, one line per (method, σ), mean over
  seeds with a ± standard-error band. ``"at": "selected"`` keeps each method at its σ chosen on
  validation data (``results.json["selected"]``); ``"paired": True`` adds a row with the seed-paired
  difference to GD at the final step against σ (:func:`~noisereg.plotting.panels.draw_paired`).
* ``vs_sigma``: one panel per (variant, metric), x = σ, one line per noisy method with
  ± standard-error bars over seeds, GD as a horizontal line with its band; below it (unless
  ``"paired": False``) the seed-paired difference to GD, what decides a verdict. ``"margin": True``
  draws the non-inferiority margin −δ there; ``"clip": False`` keeps every point on the axes (for
  arms tens of points apart, where clipping would hide the effects).

Every method has one colour and marker (:data:`~noisereg.plotting.style.STYLES`); each method's
selected σ is ringed; accuracy panels clip points more than 10 points below the best to their edge,
value written (:mod:`noisereg.plotting.panels`). Each figure is saved as PNG with an SVG beside it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from noisereg.plotting.panels import CLIP, Fit, band, differences, draw_paired, mark_clipped, mark_selected
from noisereg.plotting.panels import outside, scale, sigma_axis
from noisereg.plotting.style import figure, order, save, style
from noisereg.verdicts import arm, mean_se

TITLES = {"train_loss": "train loss R", "test_loss": "test loss", "train_acc": "train accuracy (%)",
          "test_acc": "test accuracy (%)", "reg_loss": "regularized loss R_eff", "ggn_trace": "GGN trace",
          "hessian_trace": "Hessian trace", "val_acc": "validation accuracy (%)"}
LINESTYLES = ("-", "--", ":", "-.")  # the σ values of one method in a curves panel, smallest first
KINDS = ("curves", "vs_sigma")


def selected_sigmas(results: dict, variant: str) -> dict[str, float]:
    """``{arm: σ}`` chosen on validation data for ``variant`` (``results["selected"]``, flat or by
    variant; else the experiment's :meth:`~noisereg.sweep.experiment.Experiment.selected`), {} if none."""
    sel = results.get("selected")
    if sel is None:
        from noisereg.sweep import EXPERIMENTS

        exp = EXPERIMENTS.get(results.get("experiment"))
        sel = exp.selected(results) if exp is not None and results.get("runs") else None
    if not isinstance(sel, dict):
        return {}
    if isinstance(sel.get(variant), dict):
        return sel[variant]
    return {a: s for a, s in sel.items() if isinstance(s, (int, float))}


def _draw_curves(ax, runs, metric, log, selected=None):
    groups = defaultdict(list)
    for r in runs:
        if selected is None or arm(r) == "gd" or selected.get(arm(r)) == r["sigma"]:
            groups[(arm(r), r["sigma"])].append(r)
    arms = order(a for a, _ in groups)
    k, finals = scale(metric), []
    for (a, sigma), rs in sorted(groups.items(), key=lambda kv: (arms.index(kv[0][0]), kv[0][1])):
        steps = [h["step"] for h in rs[0]["history"] if metric in h]
        if not steps:
            continue
        rows = [[k * v if v is not None else math.nan for v in (h.get(metric) for h in r["history"] if metric in h)]
                for r in rs]
        mean, se = band(rows)
        st, sigmas = style(a), sorted({s for b, s in groups if b == a})
        label = st["label"] + ("" if a == "gd" else f", {'ρ' if a.startswith('sam') else 'σ'}={sigma:g}") + (
            " (diverged)" if any(r.get("diverged") for r in rs) else "")
        line, = ax.plot(steps[:len(mean)], mean, color=st["color"], marker=st["marker"], markersize=4,
                        markevery=max(1, len(mean) // 12),
                        markerfacecolor=st["markerfacecolor"], label=label,
                        linestyle=st["linestyle"] if len(sigmas) == 1 else LINESTYLES[sigmas.index(sigma) % 4])
        ax.fill_between(steps[:len(mean)], mean - se, mean + se, color=line.get_color(), alpha=0.15)
        finals.append(mean[-1])
    if selected is not None and metric.endswith("_acc") and finals:  # the informative range: the plateau
        top = max(v for v in finals if math.isfinite(v)) if any(math.isfinite(v) for v in finals) else 100.0
        ax.set_ylim(min([top - CLIP] + [v for v in finals if math.isfinite(v)]) - 1, min(100.5, top + 2))
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("iteration")


def _draw_vs_sigma(ax, runs, metric, selected, clip: bool = True):
    """One line per noisy arm against σ, GD as a horizontal line; returns the points as drawn (``clip``:
    accuracies far below the best drawn at the edge, see :class:`~noisereg.plotting.panels.Fit`)."""
    k = scale(metric)
    points = {}  # arm -> [(σ, mean, se)]; nan where a run diverged (drawn at the edge, "diverged")
    for a in order(arm(r) for r in runs):
        points[a] = []
        for s in sorted({r["sigma"] for r in runs if arm(r) == a}):
            rs = [r for r in runs if arm(r) == a and r["sigma"] == s and (r.get("diverged") or
                                                                          r["final"].get(metric) is not None)]
            if not rs:  # the metric was not recorded at this σ
                continue
            values = [math.nan if r.get("diverged") else k * r["final"][metric] for r in rs]
            finite = all(math.isfinite(v) for v in values)
            points[a].append((s, *(mean_se(values)[:2] if finite else (math.nan, math.nan))))
    points = {a: pts for a, pts in points.items() if pts}
    gd = points.pop("gd", None)
    means = [m for pts in points.values() for _, m, _ in pts] + ([gd[0][1]] if gd else [])
    spread = [(m, m + sign * se) for pts in [*points.values(), gd or []] for _, m, se in pts for sign in (-1, 1)]
    fit = Fit(means, metric, extent=spread, clip=clip)
    if gd and math.isfinite(gd[0][1]):
        _, m, se = gd[0]
        st = style("gd")
        ax.axhline(m, color=st["color"], label=f"{st['label']} ({m:.4g})")
        ax.axhspan(m - se, m + se, color=st["color"], alpha=0.12)
    elif gd:
        ax.text(0.02, 0.96, "GD diverged", transform=ax.transAxes, va="top", fontsize=8)
    shown, ring = [], "σ chosen on validation"
    for a, pts in points.items():
        st = style(a)
        placed = [fit.place(a, s, m) for s, m, _ in pts]
        shown += placed
        ax.errorbar([p.x for p in placed], [math.nan if p.clipped else p.y for p in placed],  # clipped: mark_clipped
                    yerr=[0 if p.clipped or not math.isfinite(se) else se for p, (_, _, se) in zip(placed, pts)],
                    capsize=3, color=st["color"], marker=st["marker"], markerfacecolor=st["markerfacecolor"],
                    linestyle=st["linestyle"], label=st["label"])
        chosen = selected.get(a)
        for p in placed:
            if chosen is not None and float(chosen) == p.x:
                mark_selected(ax, p.x, p.y, ring)
                ring = None
    mark_clipped(ax, shown)
    fit.apply(ax)
    sigma_axis(ax, [s for pts in points.values() for s, _, _ in pts], rho=any(a.startswith("sam") for a in points))
    return shown


def draw(results: dict, spec: dict, out: Path) -> Path:
    """Render one figure spec from ``results`` into ``out/spec['file']`` (atomically; an SVG beside it).

    Raises:
        ValueError: ``spec["kind"]`` is not one of :data:`KINDS`.
    """
    if spec.get("kind") not in KINDS:
        raise ValueError(f"figure kind must be one of {KINDS}, got {spec.get('kind')!r}")
    runs = results["runs"]
    variants = list(dict.fromkeys(r["variant"] for r in runs)) if spec.get("panels") == "variant" else [None]
    metrics = spec["metrics"]
    pair = spec.get("paired", spec["kind"] == "vs_sigma") and any(arm(r) == "gd" for r in runs)
    rows = len(variants) * (2 if pair else 1)
    fig, axes = figure(rows, len(metrics), size=(8.2, 3.4), height_ratios=[3, 2] * len(variants) if pair else None)
    for i, variant in enumerate(variants):
        sub = [r for r in runs if variant is None or r["variant"] == variant]
        selected = selected_sigmas(results, variant or "")
        tag = f" — {variant}" if variant else ""
        for j, metric in enumerate(metrics):
            ax = axes[i * (2 if pair else 1)][j]
            if spec["kind"] == "curves":
                _draw_curves(ax, sub, metric, metric in spec.get("log", ()),
                             selected if spec.get("at") == "selected" else None)
            else:
                _draw_vs_sigma(ax, sub, metric, selected, clip=spec.get("clip", True))
            ax.set_title(TITLES.get(metric, metric) + tag + (", each method at its selected σ"
                                                             if spec.get("at") == "selected" else ""))
            ax.grid(alpha=0.3)
            if spec["kind"] == "vs_sigma" or j == len(metrics) - 1:  # curves: one legend per row
                outside(ax)
            if pair:
                below = axes[i * 2 + 1][j]
                diffs = differences(results, metric, variant or "", selected)
                draw_paired(below, diffs, metric, margin=spec.get("margin", False), clip=spec.get("clip", True))
                sigma_axis(below, [d.sigma for d in diffs], rho=any(d.arm.startswith("sam") for d in diffs))
                below.set_title(f"paired difference to GD{' at the final step' if spec['kind'] == 'curves' else ''}"
                                f"{tag}", fontsize=9)
                below.grid(alpha=0.3)
    return save(fig, Path(out) / spec["file"], spec.get("title", results["experiment"]))


def caption(spec: dict) -> str:
    """What a figure of ``spec`` shows and how to read it, one paragraph for REPORT.md (a custom
    figure: its ``spec["caption"]``, or "")."""
    if spec.get("caption") or spec.get("kind") not in KINDS:
        return spec.get("caption", "")
    ring = "the ringed point is each method's σ (SAM: ρ) chosen on validation data"
    clip = ("an accuracy more than 10 points below the best on its panel, or a diverged run, is drawn at the "
            "panel's lower edge (hollow triangle; cross: diverged) with its value written")
    paired = ("Lower panels: the seed-paired difference to GD (method − GD per seed: dots; mean d̄: the "
              "method's marker; bar: the interval [L, U] of the verdict rule), with the zero line: \"beats GD\" "
              "is reproduced where the whole bar lies above zero (by more than the resolution r), not reproduced "
              "where it lies below.")
    if any(not m.endswith("_acc") for m in spec.get("metrics", ())):
        paired += (" For a trace (lower is better) the panel still shows method − GD, the negative of the claim's "
                   "d̄ = GD − method.")
    if not spec.get("clip", True):
        clip = "every point is drawn on the axes (no clipping)"
    if spec["kind"] == "vs_sigma":
        text = (f"Final metrics against σ, mean ± standard error over seeds; GD is the horizontal line and band; "
                f"{ring}; {clip}.")
        return text + (" " + paired if spec.get("paired", True) else "")
    if spec.get("at") == "selected":
        return ("Training curves, mean ± standard error over seeds (band), each method at its σ (SAM: ρ) chosen "
                "on validation data; accuracy axes start at most 10 points below the best final accuracy, so the "
                "first steps of training may lie below them.")
    return ("Curves over training, mean ± standard error over seeds (band); line styles tell a method's σ "
            "apart (solid: the smallest)." + (" " + paired.replace("Lower panels", "Lower panels, at the final "
                                                                   "step against σ") if spec.get("paired") else ""))
