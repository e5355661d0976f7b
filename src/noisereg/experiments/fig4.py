"""Fig. 4: deep MLPs (5 hidden ReLU layers), narrow vs wide: test accuracy and Hessian trace.

Paper: same data as Fig. 3; 5 hidden layers of 1000 (narrow, lr 0.005) or 5000 (wide, lr 0.001);
full-batch GD vs the two schemes with σ = 0.05. Claims: layer-wise perturbation gives the best
test accuracy, and the regularizer (Hessian trace) is smallest for the best-performing method.
The Hessian trace is computed exactly as the GGN trace (the nets are piecewise linear in each
weight, see noisereg.curvature) on 512 training points (256 at the cpu preset).
The paper preset runs σ in the official code's convention (``convention="official"``, tensor layers
in turn): the figure's σ = 0.05 is that σ.

The cpu preset trains on the real Fashion-MNIST images embedded in the package (1024 training, 1024
validation, 5000 test images) with widths 256 and 512 (the paper's 1000 and 5000 cut for two CPU
cores), lr 0.02 for both, momentum 0.9, 1200 iterations, σ ∈ {0.01, 0.03} in the paper's convention,
3 seeds. Width 128 was tried first (2026-12-06): its GD runs at lr 0.02 oscillated and one ended at
97.3 % training accuracy (lr 0.01 and 0.005, no momentum, or a cosine schedule did not fix it within
the budget), while width 256 reaches 100 % on every seed. The demo runs width 256 alone at σ = 0.01 (the
σ the cpu sweep selected) with the same 3 seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

from noisereg.constraints import Each, Interval, Rule
from noisereg.experiments.classify import NOISY, OFFICIAL_NOISE, ClassifyConfig, ClassifyExperiment
from noisereg.experiments.classify import compare, judge_pair, scale_note, training_curves
from noisereg.verdicts import decide_all, fmt
from noisereg.models import MLP
from noisereg.training.settings import POSITIVE_INT


@dataclass(frozen=True)
class Fig4Config(ClassifyConfig):
    depth: int = 5
    widths: tuple[int, ...] = (1000, 5000)   # narrow, wide
    lrs: tuple[float, ...] = (0.005, 0.001)  # one per width

    CONSTRAINTS = {"depth": POSITIVE_INT, "widths": Each(POSITIVE_INT), "lrs": Each(Interval(0, low_open=True))}
    RULES = (Rule(("widths", "lrs"), "lrs needs one learning rate per width", lambda c: len(c.lrs) == len(c.widths)),)


CPU = dict(dataset="fashion_mnist_subset", n_val=1024, widths=(256, 512), lrs=(0.02, 0.02), epochs=1200,
           eval_every=100, sigmas=(0.01, 0.03), log=("hessian_trace",), trace_points=256, seeds=(0, 1, 2),
           confirm_seeds=tuple(range(3, 13)))


class Fig4(ClassifyExperiment):
    name = "fig4"
    description = "deep MLPs (5 hidden layers), narrow vs wide: accuracy and Hessian trace (Fig. 4)"
    order = 4
    Config = Fig4Config
    PRESETS = {
        "smoke": dict(widths=(16, 48), lrs=(0.05, 0.05), n_train=128, epochs=6, eval_every=3,
                      log=("hessian_trace",), trace_points=64, checkpoint_every=2),
        "cpu": CPU,
        # a quarter of the cpu preset's steps, one width, one σ, one stage: illustrative verdicts (demo ≤ 5 minutes)
        "demo": {**CPU, "widths": (256,), "lrs": (0.02,), "sigmas": (0.01,), "epochs": 300, "eval_every": 150,
                 "confirm_seeds": ()},
        "paper": dict(**OFFICIAL_NOISE,
                      dataset="fashion_mnist", widths=(1000, 5000), lrs=(0.005, 0.001), epochs=10000, n_val=5000,
                      eval_every=500, log=("hessian_trace",), seeds=(0, 1, 2), confirm_seeds=(3, 4, 5),
                      checkpoint_every=1000),
    }

    def variants(self, cfg):
        return [(f"width {w}", {"width": w, "lr": lr}) for w, lr in zip(cfg.widths, cfg.lrs)]

    def model(self, cfg, run, data):
        return MLP(data.x_train[0].numel(), (run.params["width"],) * cfg.depth, data.num_classes)

    def figures(self, cfg):
        return [{"file": "fig4.png", "kind": "curves", "metrics": ["test_acc", "hessian_trace"], "panels": "variant",
                 "log": ("hessian_trace",), "paired": True,
                 "title": f"Fig. 4: {cfg['depth']} hidden layers, σ ∈ {{{', '.join(f'{s:g}' for s in cfg['sigmas'])}}}"},
                training_curves(self.name)]

    def judge(self, results):
        rows = []
        for v in dict.fromkeys(r["variant"] for r in results["runs"]):
            gd, best, _ = compare(results, v)
            tgd, tbest, _ = compare(results, v, "hessian_trace")
            acc = {"gd": gd, **{a: b[0] for a, b in best.items() if a in NOISY}}
            trace = {"gd": tgd, **{a: b[0] for a, b in tbest.items() if a in NOISY}}
            if "layer" in acc:
                ps = {a: judge_pair(results, acc["layer"], t) for a, t in acc.items() if a != "layer"}
                rows.append({"claim": f"{v}: layer-wise noise gives the best test accuracy" + scale_note(results),
                             "paper": "yes (Fig. 4)", "ours": "; ".join(f"{a} {fmt(t)}" for a, t in acc.items())
                             + "".join(f"; layer − {a}: {p.text()}" for a, p in ps.items()),
                             "verdict": decide_all([p.verdict for p in ps.values()])})
            rows.append(best_has_smallest_trace(results, v, acc, trace))
        return rows


def best_has_smallest_trace(results: dict, v: str, acc: dict, trace: dict) -> dict:
    """The row "the best method has the smallest Hessian trace" of variant ``v`` (``acc``, ``trace``: {method: Sample}).

    The best method is one whose test accuracy beats every other's by the rule, the flattest one whose trace is below
    every other's (lower is better). **reproduced**: a best method whose trace is below every other's; **not
    reproduced**: a best method with a trace above another's, or a flattest method whose accuracy another method
    beats (the smallest trace belongs to a method that is not the best); else (no best and no beaten flattest, or
    a comparison undecided) **inconclusive**."""
    def wins(stats, a, **kw):
        return decide_all([judge_pair(results, stats[a], t, **kw).verdict for b, t in stats.items() if b != a])

    tr = dict(metric="hessian_trace", lower_is_better=True)
    winner = next((a for a in acc if wins(acc, a) == "reproduced"), None)
    flattest = next((a for a in trace if wins(trace, a, **tr) == "reproduced"), None)
    beaten_by = [b for b in acc if flattest is not None and b != flattest
                 and judge_pair(results, acc[b], acc[flattest]).verdict == "reproduced"]
    if winner is not None:
        verdict = wins(trace, winner, **tr)
    else:
        verdict = "not reproduced" if beaten_by else "inconclusive"
    ps = {a: judge_pair(results, trace[winner], t, **tr) for a, t in trace.items() if a != winner} if winner else {}
    names = list(acc)   # no best method: each pair's accuracy comparison, with what its data exclude
    pairs = {} if winner else {(a, b): judge_pair(results, acc[a], acc[b]) for i, a in enumerate(names)
                               for b in names[i + 1:]}
    return {"claim": f"{v}: the best method has the smallest Hessian trace", "paper": "yes (Fig. 4)",
            "ours": f"best by test accuracy: {winner or 'none by the rule'}; smallest trace by the rule: "
                    f"{flattest or 'none'}" + (f" (beaten in test accuracy by {', '.join(beaten_by)})" if beaten_by else "")
                    + "; traces " + "; ".join(f"{a} {fmt(t, 1, '')}" for a, t in trace.items())
                    + "".join(f"; {a} − {winner} trace: {p.text(1, '')}" for a, p in ps.items())
                    + "".join(f"; test accuracy {a} − {b}: {p.text()}" for (a, b), p in pairs.items()),
            "verdict": verdict}
