"""Panels shared by the figures of the classification experiments: the seed-paired difference to GD,
accuracy axes fitted to the informative range, and the mark of each method's selected σ.

The paired-difference panel draws what decides a verdict (the rule of :mod:`noisereg.verdicts`):
for each arm and σ, the differences d_s = method_s − GD_s of the seeds (dots), their mean d̄ (the
arm's marker) and the rule's interval [L, U] = d̄ ∓ t·SE (the bar), around a zero line. A claim
"method beats GD" is reproduced when the bar lies above the line (L > r).

Accuracy axes (metrics ``*_acc``, drawn in points) show the range that carries information: a value
more than :data:`CLIP` points below the best one on the panel, or a diverged run's, is drawn at the
panel's lower edge with a hollow triangle (a cross when diverged) and its value written beside it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from noisereg.plotting.style import order, style
from noisereg.verdicts import MARGIN, Paired, arm, final_stats, paired, resolution

CLIP = 10.0
"""Accuracy points: a value further below the best on its panel is drawn at the panel's edge."""


def scale(metric: str) -> float:
    """100 for accuracies (drawn in percent / points), 1 otherwise."""
    return 100.0 if metric.endswith("_acc") else 1.0


@dataclass(frozen=True)
class Diff:
    """One arm at one σ against GD, seed-paired, in the metric's own units (fractions for accuracies).

    ``diffs[seed]`` = method − GD on the seeds present in both; ``paired`` the rule's numbers on them
    (:func:`~noisereg.verdicts.paired`, method as A, GD as B, the metric's resolution);
    ``selected``: σ is the arm's σ chosen on validation data."""

    arm: str
    sigma: float
    diffs: dict[int, float]
    paired: Paired
    selected: bool


def differences(results: dict, metric: str, variant: str = "", selected: dict | None = None) -> list[Diff]:
    """Every non-GD arm at every σ of ``variant`` against GD, by the rule (empty without GD runs that
    recorded ``metric``).

    Args:
        results: a results.json dict.
        metric: a key of the runs' ``final`` (``"test_acc"``).
        variant: the runs' variant label ("" for experiments without variants).
        selected: ``{arm: σ}`` chosen on validation data (marks :attr:`Diff.selected`); None: none marked.
    """
    stats = final_stats(results, metric)
    gd = stats.get((variant, "gd", 0.0))
    if gd is None or not any(r["final"].get(metric) is not None for r in results["runs"]
                             if r["variant"] == variant and arm(r) == "gd"):
        return []
    r, selected = resolution(results, metric), selected or {}
    keys = [k for k in stats if k[0] == variant and k[1] != "gd"]
    rank = {a: i for i, a in enumerate(order(k[1] for k in keys))}
    out = []
    for key in sorted(keys, key=lambda k: (rank[k[1]], k[2])):
        sample = stats[key]
        seeds = sorted(set(sample.values) & set(gd.values))
        out.append(Diff(key[1], key[2], {s: sample.values[s] - gd.values[s] for s in seeds}, paired(sample, gd, r=r),
                        selected.get(key[1]) is not None and float(selected[key[1]]) == key[2]))
    return out


@dataclass(frozen=True)
class Shown:
    """A point as drawn: ``arm``, ``x``, its ``value`` (scaled; nan when diverged), the ``y`` it is drawn
    at (the panel's edge when ``clipped``) and the ``text`` written beside a clipped point."""

    arm: str
    x: float
    value: float
    y: float
    clipped: bool
    text: str = ""


class Fit:
    """The y-range of a panel: it fits the values drawn (and ``extent``) at or above ``floor`` (accuracies: the
    best − :data:`CLIP`; otherwise −inf); the others are clipped, drawn at its lower edge."""

    def __init__(self, values, metric: str, extent=(), clip: bool = True):
        """``values``: the points drawn (nan: diverged); ``extent``: ``(point, value)`` pairs, values the
        range should also show (interval ends, bands) where their point is not clipped."""
        values = list(values)
        finite = [v for v in values if math.isfinite(v)]
        self.floor = max(finite, default=0.0) - CLIP if clip and metric.endswith("_acc") else -math.inf
        kept = [v for v in finite if v >= self.floor]
        self.clips = len(kept) < len(values)
        shown = kept + [v for p, v in extent if math.isfinite(v) and math.isfinite(p) and p >= self.floor]
        lo, hi = (min(shown), max(shown)) if shown else (0.0, 1.0)
        pad = 0.08 * (hi - lo) if hi > lo else max(abs(hi) * 0.05, 0.5)
        self.lo, self.hi = lo - (2.5 if self.clips else 1) * pad, hi + pad  # room at the bottom for clipped points

    @property
    def edge(self) -> float:
        """Where a clipped point is drawn: just inside the lower edge."""
        return self.lo + 0.04 * (self.hi - self.lo)

    def place(self, arm: str, x: float, v: float, digits: int = 1) -> Shown:
        if not math.isfinite(v):
            return Shown(arm, x, v, self.edge, True, "diverged")
        if v < self.floor:
            return Shown(arm, x, v, self.edge, True, f"{v:.{digits}f}")
        return Shown(arm, x, v, v, False)

    def apply(self, ax) -> None:
        ax.set_ylim(self.lo, self.hi)


def mark_clipped(ax, shown: list[Shown]) -> None:
    """Draw the clipped points of ``shown`` at the edge: a hollow down-triangle (a cross when diverged)
    in the arm's colour, the value written above it (stacked where several share an x); the arm's line
    stops short of them (their y is nan there)."""
    done: list[float] = []
    near = lambda a, b: a == b or (a > 0 and b > 0 and abs(math.log(a / b)) < 0.15)  # noqa: E731 - same σ, dodged
    for s in (s for s in shown if s.clipped):
        st, k = style(s.arm), sum(near(s.x, x) for x in done)
        done.append(s.x)
        ax.plot([s.x], [s.y], marker="x" if s.text == "diverged" else "v", color=st["color"], markersize=8,
                markerfacecolor="white", linestyle="none", zorder=4)
        ax.annotate(s.text, (s.x, s.y), textcoords="offset points", xytext=(0, 7 + 10 * k), ha="center", fontsize=7,
                    color=st["color"], bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8})


def mark_selected(ax, x: float, y: float, label: str | None = None) -> None:
    """A ring around the point of an arm's selected σ."""
    ax.plot([x], [y], marker="o", markersize=13, markerfacecolor="none", markeredgecolor="0.2", markeredgewidth=1.2,
            linestyle="none", zorder=5, label=label)


def draw_paired(ax, diffs: list[Diff], metric: str, *, position=None, margin: bool = False,
                legend: bool = True, clip: bool = True) -> list[Shown]:
    """Draw the seed-paired difference to GD of each :class:`Diff` on ``ax``; return the means as drawn.

    Args:
        ax: a matplotlib axes.
        diffs: from :func:`differences` (any subset: the selected σ only, say).
        metric: the metric's name (``*_acc``: drawn in points and clipped, see the module docstring).
        position: ``Diff -> x`` (default its σ, the arms pulled apart by a few percent).
        margin: also draw −δ, the non-inferiority margin of "at least matches" (accuracies only).
        legend: label each arm with d̄ and [L, U] at its selected σ.
        clip: clip accuracies far below the best (False: the axis shows every point, for arms tens of
            points apart, where the clipping would hide the effects that are there).

    Raises:
        TypeError: ``diffs`` holds something other than :class:`Diff`.
    """
    if any(not isinstance(d, Diff) for d in diffs):
        raise TypeError("diffs must be Diff records (from panels.differences)")
    arms = list(dict.fromkeys(d.arm for d in diffs))
    if position is None:  # σ, the arms pulled apart a little on the log axis so their bars do not overlap
        position = lambda d: d.sigma * math.exp(0.03 * (arms.index(d.arm) - (len(arms) - 1) / 2))  # noqa: E731
    k = scale(metric)
    fit = Fit([k * d.paired.mean for d in diffs] + [0.0], metric, clip=clip,
              extent=[(k * d.paired.mean, k * v) for d in diffs for v in (d.paired.low, d.paired.high)])
    shown, selected_label = [], "σ chosen on validation"
    for a in arms:
        st, rows = style(a), [d for d in diffs if d.arm == a]
        pts = [fit.place(a, position(d), k * d.paired.mean, 2) for d in rows]
        shown += pts
        for d, p in zip(rows, pts):
            dots = [min(max(k * v, fit.edge), fit.hi) for v in d.diffs.values() if math.isfinite(v)]
            ax.plot([p.x] * len(dots), dots, linestyle="none", marker=".", color=st["color"], alpha=0.45, markersize=5)
            if not p.clipped and math.isfinite(d.paired.low):
                ax.errorbar([p.x], [p.y], yerr=[[p.y - k * d.paired.low], [k * d.paired.high - p.y]], capsize=4,
                            color=st["color"], linestyle="none", elinewidth=1.6)
            if d.selected:
                mark_selected(ax, p.x, p.y, selected_label)
                selected_label = None
        chosen = next((d for d in rows if d.selected), None)
        label = st["label"]
        if legend and chosen is not None:
            p = chosen.paired
            label += (f": d̄ = {k * p.mean:+.2f}, [L, U] = [{k * p.low:+.2f}, {k * p.high:+.2f}]"
                      if math.isfinite(p.low) else ": diverged" if p.diverged else f": d̄ = {k * p.mean:+.2f}")
        ax.plot([p.x for p in pts], [math.nan if p.clipped else p.y for p in pts], color=st["color"], marker=st["marker"],
                markerfacecolor=st["markerfacecolor"], linestyle=st["linestyle"], linewidth=1, label=label)
    mark_clipped(ax, shown)
    ax.axhline(0.0, color="0.25", linewidth=1, zorder=1)
    if margin and metric.endswith("_acc"):
        ax.axhline(-100 * MARGIN, color="0.4", linewidth=0.8, linestyle=":", label=f"−δ = −{100 * MARGIN:g} pts")
    fit.apply(ax)
    unit = " (pts)" if metric.endswith("_acc") else ""
    lower = "" if metric.endswith("_acc") else "; lower is better"
    ax.set_ylabel(f"method − GD{unit}\nper seed (dots), d̄ and [L, U]{lower}", fontsize=8)
    if legend:
        outside(ax)
    return shown


def outside(ax) -> None:
    """The legend of ``ax`` to the right of it, off the data."""
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def sigma_axis(ax, xs, rho: bool = False) -> None:
    """A log σ axis ticked at the grid's values (linear when a σ is 0); ``rho``: SAM's ρ shares it."""
    xs = sorted(set(xs))
    if xs and min(xs) > 0:
        from matplotlib.ticker import NullFormatter

        ax.set_xscale("log")
        ax.set_xticks(xs, [f"{s:g}" for s in xs])
        ax.xaxis.set_minor_formatter(NullFormatter())
        if len(xs) == 1:
            ax.set_xlim(xs[0] / 1.5, xs[0] * 1.5)
    ax.set_xlabel("σ (SAM: ρ)" if rho else "σ")


def band(values_by_seed: list[list[float]]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error over seeds at each position (rows: seeds, cut to the shortest)."""
    width = min(len(r) for r in values_by_seed)
    a = np.array([r[:width] for r in values_by_seed], dtype=float)
    with warnings.catch_warnings():  # a step where every seed diverged is nan, without a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(a, axis=0) if len(a) else np.zeros(width)
        se = np.nanstd(a, axis=0, ddof=1) / math.sqrt(len(a)) if len(a) > 1 else np.zeros(width)
    return mean, se
