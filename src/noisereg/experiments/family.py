"""The weight-perturbation family at equal compute: which rule buys the most test accuracy per gradient?

Every method takes the gradient at perturbed weights; they differ in the noise law and in how many
gradients a step costs (``noisereg.training.settings.FAMILY``; docs/EXPERIMENTS.md, "family"):

* ``full`` / ``layer``: the paper's noise injection, one gradient per step;
* ``rwp``: random weight perturbation (Li et al. 2022), per-filter std γ‖w_row‖, one gradient;
* ``mrwp``: m-RWP, ½·g(w + ξ) + ½·g(w), two gradients;
* ``lpf``: LPF-SGD (Bisla et al. 2022), the mean of k per-filter draws, γ raised along a half cosine
  to γ·``sigma_factor`` (``lpf_schedule``), k gradients;
* ``nso``: NSO (Zhang et al. 2024), the mean over k antithetic pairs ½(g(w + ξ) + g(w − ξ)), 2k gradients;
* ``sam``: SAM, two gradients.

Each is compared with GD at equal steps and, for the methods that cost more than one gradient per
step, also at equal gradient evaluations (the arm ``<method>_eq``: the steps divided by its gradients
per step; SAM's is ``sam_half``). Each method's σ (γ, ρ) is chosen on validation data from its own
grid; the comparisons are seed-paired (:mod:`noisereg.verdicts`). The paper claims nothing
about these methods, so every row is "measured". Model and data are Fig. 3's cpu preset: an MLP 2×512
on 1,024 real Fashion-MNIST images (the embedded subset), full-batch GD with momentum, 1000 steps.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from noisereg.constraints import IsBool, OneOf
from noisereg.experiments.classify import compare, judge_pair, select, training_curves
from noisereg.experiments.fig3 import Fig3, Fig3Config
from noisereg.plotting.panels import Fit, differences, draw_paired, mark_clipped, outside
from noisereg.plotting.style import figure, order, save, style
from noisereg.verdicts import arm, final_stats, fmt
from noisereg.training.settings import FAMILY, SIGMA_SCHEDULES, grad_evals_per_step

ALL = ("gd", "full", "layer", "sam", "rwp", "mrwp", "lpf", "nso")


@dataclass(frozen=True)
class FamilyConfig(Fig3Config):
    methods: tuple[str, ...] = ALL
    lpf_schedule: str = "cosine_up"   # LPF-SGD's σ schedule (the others keep sigma_schedule)
    equal_compute: bool = True        # also each several-gradient method with its steps divided by its cost

    CONSTRAINTS = {"lpf_schedule": OneOf(*SIGMA_SCHEDULES), "equal_compute": IsBool()}


CPU = dict(dataset="fashion_mnist_subset", n_val=1024, hidden=(512, 512), epochs=1000, lr=0.05, eval_every=100,
           seeds=(0, 1, 2), sigmas=(0.01, 0.035), rhos=(0.05, 0.1), rwp_sigmas=(0.005, 0.02),
           mrwp_sigmas=(0.005, 0.02), lpf_sigmas=(0.005, 0.02), nso_sigmas=(0.01, 0.035), lpf_samples=2, nso_pairs=1,
           confirm_seeds=tuple(range(3, 13)))


class Family(Fig3):
    name = "family"
    description = "the weight-perturbation family (noise, RWP, m-RWP, LPF-SGD, NSO, SAM) at equal steps and gradients"
    order = 14
    Config = FamilyConfig
    PRESETS = {
        "smoke": dict(hidden=(32, 32), n_train=128, epochs=6, eval_every=3, sigmas=(0.05,), rhos=(0.05,),
                      lpf_samples=2, checkpoint_every=2, seeds=(0, 1)),
        "cpu": CPU,
    }

    def runs(self, cfg):
        out = []
        for r in super().runs(cfg):
            if r.spec.method == "lpf" and cfg.lpf_schedule != r.spec.sigma_schedule:
                r = dataclasses.replace(r, spec=dataclasses.replace(r.spec, sigma_schedule=cfg.lpf_schedule))
            out.append(r)
            cost = grad_evals_per_step(r.spec)
            if cfg.equal_compute and r.spec.method in FAMILY and cost > 1:
                steps = max(1, r.spec.epochs // cost)
                eq = dataclasses.replace(r.spec, epochs=steps, eval_every=min(r.spec.eval_every, steps))
                out.append(dataclasses.replace(r, id=r.id.replace(f"{r.spec.method}-", f"{r.spec.method}_eq-", 1),
                                               spec=eq, params={**r.params, "arm": f"{r.spec.method}_eq"}))
        return out

    def figures(self, cfg):
        return [{"file": "family.png", "kind": "custom",
                 "title": "Test accuracy against gradient evaluations (σ chosen on validation; mean ± SE over seeds)",
                 "caption": "Top: each method at its σ (γ, ρ) chosen on validation data, test accuracy against the "
                 "gradient evaluations of a run (mean ± standard error over seeds; an accuracy more than 10 points "
                 "below the best is drawn at the lower edge, value written). Bottom: the seed-paired difference to "
                 "GD at that σ (dots: seeds; marker: mean d̄; bar: the interval [L, U] of the verdict rule)."},
                training_curves(self.name)]

    def draw(self, results, spec, out):
        fig, axes = figure(2, 1, size=(10.0, 4.4), height_ratios=[3, 2])
        ax, below = axes[0][0], axes[1][0]
        gd, best, _ = compare(results, "")
        evals = {arm(r): r.get("grad_evals") for r in results["runs"]}
        arms = [("gd", (gd, None)), *((a, best[a]) for a in order(best))]
        points = [(a, s, sig) for a, (s, sig) in arms if evals.get(a) is not None]
        fit = Fit([100 * st[0] for _, st, _ in points], "test_acc",
                  extent=[(100 * st[0], 100 * (st[0] + sign * st[1])) for _, st, _ in points for sign in (-1, 1)])
        shown = []
        for k, (a, stat, sig) in enumerate(points):
            mean, se, n = stat
            x = evals[a] * math.exp(0.03 * (k - len(points) / 2))   # spread the arms of one budget apart
            p = fit.place(a, x, 100 * mean)
            shown.append(p)
            st = style(a)
            ax.errorbar([x], [p.y], yerr=[100 * se if n > 1 and not p.clipped else 0], capsize=3, color=st["color"],
                        marker=st["marker"], markerfacecolor=st["markerfacecolor"], linestyle="none",
                        label=st["label"] + ("" if sig is None else f" ({'ρ' if a.startswith('sam') else 'σ'}={sig:g})"))
        mark_clipped(ax, shown)
        fit.apply(ax)
        ax.set(xscale="log", xlabel="gradient evaluations per run", ylabel="test accuracy (%)")
        ax.grid(alpha=0.3)
        outside(ax)
        diffs = [d for d in differences(results, "test_acc", "", select(results, "")) if d.selected]
        names = [d.arm for d in diffs]
        draw_paired(below, diffs, "test_acc", position=lambda d: names.index(d.arm))
        below.set_xticks(range(len(names)), names, rotation=30, fontsize=8)
        below.set_title("paired difference to GD, each method at its selected σ", fontsize=9)
        below.grid(alpha=0.3)
        return save(fig, out / spec["file"], spec.get("title"))

    def judge(self, results):
        """Every arm at its validation-chosen σ against GD, seed-paired; all "measured" (no paper claim)."""
        gd, best, _ = compare(results, "")
        cost = {arm(r): (r.get("grad_evals_per_step"), r.get("grad_evals")) for r in results["runs"]}
        rows = []
        for a, (stat, sig) in best.items():
            per_step, total = cost.get(a, (None, None))
            gd_total = cost.get("gd", (None, None))[1]
            budget = ("equal gradient evaluations" if total == gd_total else
                      f"equal steps, {per_step} gradient evaluations per step")
            rows.append({"claim": f"{a} vs GD ({budget}; {total} vs {gd_total} gradient evaluations)",
                         "paper": "–", "ours": f"{a} {fmt(stat)} at {'ρ' if a.startswith('sam') else 'σ'}={sig:g} vs GD {fmt(gd)}; "
                         + judge_pair(results, stat, gd).text(), "verdict": "measured"})
        return rows

    def notes(self, results):
        lines = super().notes(results)
        val = final_stats(results, "val_acc")
        if val:
            lines += ["", "Rules: rwp per-filter std γ‖w_row‖; mrwp ½ g(w+ξ) + ½ g(w); lpf the mean of k per-filter "
                      "draws with γ raised by cosine_up; nso the mean of k antithetic pairs; `<method>_eq` runs the "
                      "method with its steps divided by its gradients per step (equal gradient evaluations to GD)."]
        return lines
