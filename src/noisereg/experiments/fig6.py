"""Fig. 6: ResNet-18 with BatchNorm on CIFAR-10, σ sweep, noise stopped near the end.

Paper: standard CIFAR SGD setting (augmentation: random crop + flip), lr 0.01 (official code:
momentum 0.9, weight decay 5e-4), batch 128, cosine annealing, 150 epochs, noise stopped at
epoch 135; for each σ, 3 runs; final test accuracy and Hessian trace (mean ± standard error).
Claims: baseline ≈ 94.4 %; all-parameter noise degrades for σ > 0.1; layer-wise noise is a more
consistent regularizer and adds ≈ +0.3 %. We follow the official code's momentum and weight decay.
The Hessian trace is the exact GGN trace of the eval-mode network on 512 training points.
σ is chosen on a validation split (5000 of the 50k training images at the paper preset). The cpu
preset (ResNet-18 of width 16 on 8x8 digits, 40 epochs, noise stopped at epoch 36, 3 seeds) sweeps
the paper's σ grid in the paper's convention; it keeps the digits because CIFAR-10 cannot ship in the
package and is not on our CPU machines.
"""

from __future__ import annotations

from dataclasses import dataclass

from noisereg.experiments.classify import OFFICIAL_NOISE, ClassifyConfig, ClassifyExperiment
from noisereg.experiments.classify import compare, judge_pair, scale_note, training_curves
from noisereg.verdicts import EMPTY, decide_all, final_stats, fmt
from noisereg.models import ResNet18
from noisereg.training.settings import POSITIVE_INT


@dataclass(frozen=True)
class Fig6Config(ClassifyConfig):
    resnet_width: int = 64            # channels of the first stage (ResNet-18: 64)

    CONSTRAINTS = {"resnet_width": POSITIVE_INT}


def paper_scale(results: dict) -> bool:
    """Whether the runs used the paper preset's model, data and noise convention (the claim "σ > 0.1 degrades"
    names a σ of the official convention on ResNet-18 and CIFAR-10; elsewhere it means another noise level)."""
    cfg, paper = results["config"], Fig6.PRESETS["paper"]
    keys = ("dataset", "resnet_width", "convention", "layers", "order")
    return results["preset"] == "paper" and all(cfg.get(k) == paper.get(k) for k in keys) and not cfg.get("data")


class Fig6(ClassifyExperiment):
    name = "fig6"
    description = "ResNet-18 + BatchNorm on CIFAR-10: final accuracy and Hessian trace vs σ (Fig. 6)"
    order = 6
    Config = Fig6Config
    image_input = True
    PRESETS = {
        "smoke": dict(n_train=64, resnet_width=4, epochs=2, batch_size=32, eval_every=1, sigmas=(0.05,),
                      log=("hessian_trace",), trace_points=16, noise_stop_epoch=1, augment=True, checkpoint_every=1),
        "cpu": dict(resnet_width=16, epochs=40, batch_size=128, lr=0.05, weight_decay=5e-4, schedule="cosine",
                    sigmas=(0.01, 0.02, 0.05, 0.1, 0.2), noise_stop_epoch=36, augment=True, eval_every=10,
                    seeds=(0, 1, 2), log=("hessian_trace",), trace_points=256,
                    confirm_seeds=tuple(range(3, 13))),
        "paper": dict(**OFFICIAL_NOISE,
                      dataset="cifar10", n_train=None, n_val=5000, resnet_width=64, epochs=150, batch_size=128, lr=0.01,
                      weight_decay=5e-4, schedule="cosine", sigmas=(0.01, 0.02, 0.05, 0.1, 0.2),
                      noise_stop_epoch=135, augment=True, eval_every=10, seeds=(0, 1, 2), confirm_seeds=(3, 4, 5),
                      log=("hessian_trace",),
                      checkpoint_every=5),
    }

    confirm_what = "GD, full and layer-wise noise at every σ (claims here speak of each σ), the others at their chosen σ"

    def confirm_keep(self, variant, arm, sigma, chosen):
        """Full and layer-wise noise at every σ (claims here speak of each σ), the other arms at their chosen σ."""
        return arm in ("full", "layer") or super().confirm_keep(variant, arm, sigma, chosen)

    def model(self, cfg, run, data):
        return ResNet18(data.num_classes, data.x_train.shape[1], width=cfg.resnet_width)

    def figures(self, cfg):
        return [{"file": "fig6.png", "kind": "vs_sigma", "metrics": ["test_acc", "hessian_trace"],
                 "title": "Fig. 6: ResNet-18, final test accuracy and Hessian trace"}, training_curves(self.name)]

    def judge(self, results):
        gd, best, stats = compare(results, "")
        paper = results["preset"] == "paper"
        rows = [{"claim": "SGD baseline ≈ 94.4 % test accuracy", "paper": "94.4 %", "ours": fmt(gd),
                 "verdict": ("reproduced" if abs(gd[0] - 0.944) < 0.005 else "not reproduced")
                 if paper else "not run at this scale"}]
        full = sorted((s, st) for (var, a, s), st in stats.items() if a == "full")  # every σ: no selection here
        big = [(s, st) for s, st in full if s > 0.1]
        worse = [(s, judge_pair(results, gd, st)) for s, st in big]  # GD beats full noise at each σ > 0.1
        rows.append({"claim": "all-parameter noise degrades accuracy for σ > 0.1" + scale_note(results), "paper": "yes",
                     "ours": f"GD {fmt(gd)}; " + ("; ".join(f"σ={s:g}: {fmt(st)}" for s, st in full) or "n/a")
                     + "".join(f"; GD − full(σ={s:g}): {p.text()}" for s, p in worse),
                     # the threshold 0.1 is in the figure's convention, on its model and data: judged there only
                     "verdict": decide_all([p.verdict for _, p in worse]) if big and paper_scale(results)
                     else "not run at this scale"})

        at_scale = paper_scale(results)  # σ values and effect sizes of the figure: its convention, model and data
        gate = lambda v: v if at_scale else "not run at this scale"  # noqa: E731
        traces = final_stats(results, "hessian_trace")
        tg = traces.get(("", "gd", 0.0), EMPTY)
        if "layer" in best:
            layer, s = best["layer"]
            p = judge_pair(results, layer, gd)
            rows.append({"claim": "layer-wise noise adds ≈ +0.3 %" + scale_note(results), "paper": "+0.3 %",
                         "ours": f"layer {fmt(layer)} at σ={s:g}; GD {fmt(gd)}; {p.text()}"
                         + ("" if at_scale else f"; by the rule: {p.verdict} (an effect of the figure's scale)"),
                         "verdict": gate(p.verdict)})
            tl = traces.get(("", "layer", s), EMPTY)
            if tg.stat[2]:  # the figure's second panel (runs that logged the trace)
                p = judge_pair(results, tl, tg, "hessian_trace", lower_is_better=True)
                rows.append({"claim": "layer-wise noise lowers the Hessian trace (trace panel; not a claim of the "
                             "paper's text)" + scale_note(results), "paper": "–",
                             "ours": f"GD {fmt(tg, 1, '')}; layer {fmt(tl, 1, '')} at σ={s:g}; {p.text(1, '')}",
                             "verdict": "measured"})
        full_tr = sorted((s, st) for (var, a, s), st in traces.items() if a == "full")
        if tg.stat[2] and full_tr:  # "the sharp increase of the Hessian trace at σ = 0.1" (all-parameter noise)
            at = next((st for s, st in full_tr if abs(s - 0.1) < 1e-12), None)
            prev = [(s, st) for s, st in full_tr if s < 0.1 - 1e-12]
            ps = [] if at is None else [("GD", judge_pair(results, at, tg, "hessian_trace"))] + (
                [(f"full(σ={prev[-1][0]:g})", judge_pair(results, at, prev[-1][1], "hessian_trace"))] if prev else [])
            rows.append({"claim": "all-parameter noise: the Hessian trace rises sharply at σ = 0.1 (trace panel)"
                         + scale_note(results), "paper": "yes (Fig. 6)",
                         "ours": "; ".join(f"σ={s:g}: {fmt(st, 1, '')}" for s, st in full_tr) + f"; GD {fmt(tg, 1, '')}"
                         + "".join(f"; full(σ=0.1) − {b}: {p.text(1, '')}" for b, p in ps)
                         + ("" if at is not None else "; σ = 0.1 not in the grid"),
                         "verdict": gate(decide_all([p.verdict for _, p in ps]))})
        if full:  # "full noise helps at very small σ": the grid's smallest σ against GD
            s0, st0 = full[0]
            p = judge_pair(results, st0, gd)
            rows.append({"claim": "all-parameter noise helps at very small σ" + scale_note(results), "paper": "yes",
                         "ours": f"full {fmt(st0)} at σ={s0:g} (the smallest); GD {fmt(gd)}; {p.text()}"
                         + ("" if at_scale else f"; by the rule: {p.verdict} (\"very small\" is a σ of the figure's scale)"),
                         "verdict": gate(p.verdict)})
        layers = sorted((s, st) for (var, a, s), st in stats.items() if a == "layer")
        if layers:  # "layer-wise noise is a much more consistent regularizer": it at least matches GD at every σ
            ps = [(s, judge_pair(results, st, gd, at_least=True)) for s, st in layers]
            rows.append({"claim": "layer-wise noise is the more consistent regularizer: it at least matches GD at "
                         "every σ" + scale_note(results), "paper": "yes (Fig. 6)",
                         "ours": "; ".join(f"layer(σ={s:g}) − GD: {p.text()}" for s, p in ps),
                         "verdict": decide_all([p.verdict for _, p in ps])})
        by_full = dict(full)
        both = [(s, st, by_full[s]) for s, st in layers if s in by_full]
        if both:  # beside it: layer-wise above full noise at each σ both were run at
            ps = [(s, judge_pair(results, st, fs)) for s, st, fs in both]
            rows.append({"claim": "layer-wise noise beats full noise at each σ" + scale_note(results),
                         "paper": "yes (Fig. 6)", "ours": "; ".join(f"layer − full (σ={s:g}): {p.text()}" for s, p in ps),
                         "verdict": decide_all([p.verdict for _, p in ps])})
        return rows
