"""The weight-perturbation family at equal compute: which rule buys the most test accuracy per gradient?

Every method takes the gradient at perturbed weights; they differ in the noise law and in how many
gradients a step costs (``noisereg.training.settings.FAMILY``; docs/EXPERIMENTS.md, "family"):

* ``full`` / ``layer``: the paper's noise injection, one gradient per step;
* ``rwp``: random weight perturbation (Li et al. 2022), per-filter std γ‖w_row‖, one gradient;
* ``mrwp``: m-RWP, ½·g(w + ξ) + ½·g(w), two gradients;
* ``lpf``: LPF-SGD (Bisla et al. 2022) as its authors run it: the step's batch (here the whole training set)
  split into M = ``lpf_samples`` sub-batches, a fresh per-filter draw for each, their gradients (loss/M)
  summed into one step: one batch gradient per step; γ constant (``lpf_schedule="cosine_up"`` raises it);
* ``nso``: NSO (Zhang et al. 2024), the mean over k antithetic pairs ½(g(w + ξ) + g(w − ξ)), 2k gradients;
* ``sam``: SAM, two gradients.

Each is compared with GD at equal steps and, for the methods that cost more than one gradient per
step, also at equal gradient evaluations (the arm ``<method>_eq``, SAM's ``sam_half``: its own run with the
steps divided by its gradients per step, so an lr or σ schedule ends within that budget). An equal-gradient
arm is read against GD twice: GD's final numbers (the same gradient evaluations) and GD's history at the
arm's own number of steps (the same steps), so a gain that stopping GD as early would give shows as such.
Each method's σ (γ, ρ) is chosen on validation data from its own grid of at least 4 points (a choice at a
grid's edge, or a tie, is flagged); the comparisons are seed-paired (:mod:`noisereg.verdicts`).
Per budget (equal gradient evaluations; equal steps at k gradients a step) one row names the methods, if any,
that beat GD and each noise injection scheme (full and layer-wise noise at their chosen σ) by the rule
(:func:`budget_rows`). The paper claims nothing about these methods, so every row is "measured". Model and data are Fig. 3's cpu
preset: an MLP 2×512 on 1,024 real Fashion-MNIST images (the embedded subset), full-batch GD with
momentum, 1000 steps.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from noisereg.constraints import IsBool, OneOf
from noisereg.experiments.classify import TIE_RULE, compare, judge_pair, select, selection_flags, training_curves
from noisereg.experiments.fig3 import Fig3, Fig3Config
from noisereg.plotting.panels import Fit, differences, draw_paired, mark_clipped, outside
from noisereg.plotting.style import figure, order, save, style
from noisereg.verdicts import Sample, arm, final_stats, fmt
from noisereg.training.settings import FAMILY, SIGMA_SCHEDULES, grad_evals_per_step

ALL = ("gd", "full", "layer", "sam", "rwp", "mrwp", "lpf", "nso")


@dataclass(frozen=True)
class FamilyConfig(Fig3Config):
    methods: tuple[str, ...] = ALL
    lpf_schedule: str = "constant"    # LPF-SGD's σ schedule (its authors' code: constant; the others keep sigma_schedule)
    equal_compute: bool = True        # also each several-gradient method with its steps divided by its cost

    CONSTRAINTS = {"lpf_schedule": OneOf(*SIGMA_SCHEDULES), "equal_compute": IsBool()}


CPU = dict(dataset="fashion_mnist_subset", n_val=1024, hidden=(512, 512), epochs=1000, lr=0.05, eval_every=100,
           seeds=(0, 1, 2), sigmas=(0.005, 0.01, 0.02, 0.035, 0.05), rhos=(0.02, 0.05, 0.1, 0.2),
           rwp_sigmas=(0.0025, 0.005, 0.01, 0.02), mrwp_sigmas=(0.005, 0.01, 0.02, 0.04),
           lpf_sigmas=(0.005, 0.01, 0.02, 0.04), nso_sigmas=(0.01, 0.02, 0.035, 0.05), lpf_samples=4, nso_pairs=1,
           confirm_seeds=tuple(range(3, 13)))
"""Every grid has at least 4 points, spanning the σ the 2-point grids of the first run chose (several at an edge)."""


class Family(Fig3):
    name = "family"
    description = "the weight-perturbation family (noise, RWP, m-RWP, LPF-SGD, NSO, SAM) at equal steps and gradients"
    order = 14
    Config = FamilyConfig
    PRESETS = {
        "smoke": dict(hidden=(32, 32), n_train=128, epochs=6, eval_every=3, sigmas=(0.01, 0.02, 0.05, 0.1),
                      rhos=(0.02, 0.05, 0.1, 0.2), rwp_sigmas=(0.005, 0.01, 0.02, 0.04),
                      mrwp_sigmas=(0.005, 0.01, 0.02, 0.04), lpf_sigmas=(0.005, 0.01, 0.02, 0.04),
                      nso_sigmas=(0.005, 0.01, 0.02, 0.04), lpf_samples=2, checkpoint_every=2, seeds=(0, 1)),
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
                stop = r.spec.noise_stop_epoch
                steps = max(1, r.spec.epochs // cost)   # its own run: an lr / σ schedule ends within the budget
                eq = dataclasses.replace(r.spec, epochs=steps, eval_every=min(r.spec.eval_every, steps),
                                         noise_stop_epoch=None if stop is None else stop // cost)
                out.append(dataclasses.replace(r, id=r.id.replace(f"{r.spec.method}-", f"{r.spec.method}_eq-", 1),
                                               spec=eq, params={**r.params, "arm": f"{r.spec.method}_eq"}))
        # GD is read at every equal-gradient arm's number of steps: evaluate it there too
        every = math.gcd(*(r.spec.epochs for r in out if r.params.get("arm", "").endswith(("_eq", "_half"))),
                         *(r.spec.eval_every for r in out if r.spec.method == "gd"))
        return [dataclasses.replace(r, spec=dataclasses.replace(r.spec, eval_every=every))
                if r.spec.method == "gd" and every and every != r.spec.eval_every else r for r in out]

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
        """Every arm at its validation-chosen σ against GD, seed-paired; all "measured" (no paper claim). An arm at
        equal gradient evaluations is also read against GD at its own number of steps (GD's history)."""
        gd, best, _ = compare(results, "")
        flags = selection_flags(results, "")
        cost, gd_total = costs(results, "")
        rows = []
        for a, (stat, sig) in best.items():
            per_step, total = cost.get(a, (1, None))
            at = f"at {'ρ' if a.startswith('sam') else 'σ'}={sig:g}" + (f" ({flags[a]})" if flags.get(a) else "")
            head = f"{a} {fmt(stat)} {at}"
            if total == gd_total and per_step > 1:   # an equal-gradient arm: two readings of GD
                steps = total // per_step
                early = gd_at_step(results, steps)
                rows.append({"claim": f"{a} vs GD (equal gradient evaluations; {total} vs {gd_total} gradient "
                             f"evaluations, {steps} vs {gd_total} steps)", "paper": "–",
                             "ours": f"{head} vs GD {fmt(gd)}; " + judge_pair(results, stat, gd).text(),
                             "verdict": "measured"})
                rows.append({"claim": f"{a} vs GD read at step {steps} (equal steps; GD's history: what stopping GD "
                             "as early gives)", "paper": "–",
                             "ours": f"{head} vs GD at step {steps} {fmt(early)}; "
                             + (judge_pair(results, stat, early).text() if early.values else
                                f"GD was not evaluated at step {steps}"), "verdict": "measured"})
                continue
            budget = budget_name(per_step, total, gd_total)
            rows.append({"claim": f"{a} vs GD ({budget}; {total} vs {gd_total} gradient evaluations)",
                         "paper": "–", "ours": f"{head} vs GD {fmt(gd)}; " + judge_pair(results, stat, gd).text(),
                         "verdict": "measured"})
        return rows + budget_rows(results)

    def notes(self, results):
        lines = super().notes(results)
        val = final_stats(results, "val_acc")
        old_lpf = any(r.get("params", {}).get("arm") == "lpf_eq" for r in results["runs"])
        if val and old_lpf:   # written before lpf followed its authors' code (it then had an lpf_eq twin)
            lines += ["", "These results predate LPF-SGD as its authors run it: `lpf` here is the earlier variant, "
                      "k per-filter draws each on the whole batch (k gradients a step, hence its `lpf_eq` arm); "
                      "rerun the experiment for the sub-batch rule (docs/EXPERIMENTS.md, family)."]
        if val:
            lines += ["", "Rules: rwp per-filter std γ‖w_row‖; mrwp ½ g(w+ξ) + ½ g(w); lpf (LPF-SGD as its authors run "
                      "it) the step's batch split into M sub-batches, a fresh per-filter draw for each, loss/M "
                      "backpropagated for each, one step (one batch gradient per step); nso the mean of k antithetic "
                      "pairs; `<method>_eq` (and `sam_half`) is the method's own run with its steps divided by its "
                      "gradients per step (equal gradient evaluations to GD; a schedule ends within that budget), "
                      "compared with GD's final numbers (equal gradient evaluations) and with GD read from its "
                      "history at the arm's number of steps (equal steps): a gain over the first that the second "
                      "does not show is what stopping GD early gives.",
                      "", f"Grids and ties: each method's σ (γ, ρ) comes from its own grid; a choice at the lowest or "
                      f"highest point is flagged \"at the grid's edge\" (a better σ may lie outside it); {TIE_RULE}."]
        return lines


def costs(results: dict, variant: str) -> tuple[dict[str, tuple[int, int | None]], int | None]:
    """``({arm: (gradient evaluations per step, per run)}, GD's per run)`` in a variant, read from the runs
    (a record without the per-step count counts 1)."""
    cost = {arm(r): (r.get("grad_evals_per_step") or 1, r.get("grad_evals")) for r in results["runs"]
            if r["variant"] == variant}
    return cost, cost.get("gd", (1, None))[1]


def budget_name(per_step: int, total: int | None, gd_total: int | None) -> str:
    """The budget an arm runs at: "equal gradient evaluations" (GD's per run), else "equal steps, k gradient
    evaluations per step"."""
    return ("equal gradient evaluations" if total == gd_total else
            f"equal steps, {per_step} gradient evaluations per step")


NOISE = ("full", "layer")   # the paper's noise injection: the reference the family must beat besides GD


def budget_rows(results: dict, variant: str = "") -> list[dict[str, str]]:
    """One ``measured`` row per budget: which method, if any, beats GD and noise injection there.

    A budget is a number of gradient evaluations per run together with a number of steps. "Equal gradient
    evaluations" holds GD's: GD, full and layer-wise noise, the one-gradient methods (rwp, lpf) and every ``_eq``
    arm (``sam_half``) at fewer steps. "Equal steps, k gradients per step" holds the several-gradient methods at
    GD's steps (mrwp, nso, sam), against GD and noise injection at the same steps (their finals). Noise injection
    is each of full and layer-wise noise at its chosen σ: a method must beat GD *and every* noise scheme, so no
    choice of reference (which could favour one) enters the row. A method *beats* a reference when the
    seed-paired rule says reproduced (:mod:`noisereg.verdicts`)."""
    gd, best, _ = compare(results, variant)
    if not gd.values:
        return []
    noise = [a for a in NOISE if a in best]
    cost, gd_total = costs(results, variant)
    budgets: dict[str, list[str]] = {}
    for a in order(best):
        if a not in NOISE:
            budgets.setdefault(budget_name(*cost.get(a, (1, None)), gd_total), []).append(a)
    against = "GD" + "".join(f" and {n} noise (σ={best[n][1]:g})" for n in noise)
    rows = []
    for budget, arms in budgets.items():
        parts, winners = [], []
        for a in arms:
            stat, sig = best[a]
            verdicts = [("GD", judge_pair(results, stat, gd))]
            verdicts += [(f"{n} noise", judge_pair(results, stat, best[n][0])) for n in noise]
            parts.append(f"{a} ({'ρ' if a.startswith('sam') else 'σ'}={sig:g}): "
                         + ", ".join(f"vs {name} {_word(p)}" for name, p in verdicts))
            winners += [a] if all(p.verdict == "reproduced" for _, p in verdicts) else []
        rows.append({"claim": f"{variant + ': ' if variant else ''}which method beats {against} at {budget}",
                     "paper": "–", "ours": f"{', '.join(winners) if winners else 'none'}; each method: {'; '.join(parts)}",
                     "verdict": "measured"})
    return rows


def _word(p) -> str:
    """A paired comparison in a few words: "beats" (the rule's reproduced), "behind" (not reproduced) or "not
    separated", with d̄ [L, U] in points."""
    word = {"reproduced": "beats", "not reproduced": "behind"}.get(p.verdict, "not separated")
    if p.n < 2 or p.diverged:
        return f"{word} ({p.text()})"
    return f"{word} (d̄ = {100 * p.mean:+.2f} [{100 * p.low:+.2f}, {100 * p.high:+.2f}] pts)"


def gd_at_step(results: dict, step: int, metric: str = "test_acc", variant: str = "") -> Sample:
    """GD's ``metric`` at training step ``step``, by seed, read from its runs' histories (an entry with exactly
    that step; a seed without one is left out)."""
    values = {}
    for r in results["runs"]:
        if r["variant"] == variant and arm(r) == "gd":
            hit = [h for h in r["history"] if h.get("step") == step and metric in h]
            if hit and not r.get("diverged"):
                values[int(r["seed"])] = float(hit[-1][metric])
    return Sample(values)
