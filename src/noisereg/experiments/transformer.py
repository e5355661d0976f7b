"""Transformers: does layer-wise noise help them? The paper's open question (c), on modular addition.

The paper ends by asking whether layer-wise noise helps other architectures such as Transformers.
We ask it where regularisation is known to matter most: a small decoder-style transformer
(:class:`noisereg.models.transformer.TinyTransformer`: learned token and position embeddings,
pre-norm blocks with separate q, k, v and output projections, a ReLU MLP, LayerNorms) learning
``(a + b) mod p`` from a share of the ``p²`` pairs (:func:`noisereg.data.modular.modular_addition`),
cross-entropy on the answer token, full-batch AdamW. Without regularisation it memorises its
training pairs long before (if ever) it generalises: the "grokking" regime (Power et al., 2022),
where weight decay is the known cure.

Arms, each on every seed (a seed fixes the initialisation and the noise; the data split is
``split_seed``'s):

* ``gd``: AdamW without weight decay and without perturbation (the base optimizer, as ``gd`` means
  on every experiment);
* ``wd``: AdamW with decoupled weight decay λ from ``weight_decays`` (results.json: method ``gd``,
  ``params["arm"] = "wd"``, and λ in the run's σ slot, the value selection picks);
* ``full`` / ``layer``: the paper's noise injection around AdamW (paper convention; layer-wise: one
  module, as ``layers="module"`` groups them, per step: each projection is its own layer);
* ``sam`` (ρ from ``rhos``) and ``sam_half`` (SAM with half the steps: as many gradients as GD).

σ, ρ and λ are chosen by mean validation accuracy over seeds; the validation pairs are a share
(``val_fraction``) of the pairs left out of training, disjoint from the test pairs. Every comparison
is seed-paired by the rule of :mod:`noisereg.verdicts`, and every row is "measured": the
paper claims nothing here. Metrics: test accuracy; the steps until test accuracy first reaches
``target_acc`` (95 %), read at the evaluation cadence ``eval_every`` (a run that never reaches it
counts its step budget and is marked); the GGN trace and Hutchinson's Hessian trace on the training
pairs at the end (``log_every``).

.. note::
    The GGN trace is the exact one (:func:`noisereg.ggn_trace`, about a second per run here), not the
    sampled estimate (``--set trace_estimator=sampled``). The sampled estimate is unbiased, but a run
    that memorises its training pairs predicts them with probabilities within ~1e-4 of 1, so its
    label draws almost never differ from the true label: with 8 draws per pair it read 1e-4 with a
    standard error of 0 where the exact trace is 5.8-7.9 (probe on AdamW's final weights, seeds 0-1).

The cpu preset (p = 31, half the pairs train, a quarter validate, a quarter test; d = 32, 4 heads,
one block, lr 3e-3, 3000 full-batch steps) was chosen from probe runs (seed 0): plain AdamW reached
100 % training accuracy by step 300 and stayed at chance on the test pairs for all 3000 steps, while
AdamW with weight decay 1 reached 100 % test accuracy by step 1500 (d = 64 behaved alike, at twice
the cost). It took 484.3 s with ``--jobs 2`` on 2 cores partly shared with other work (2026-12-06; 45 runs). The paper preset (p = 97, 30 % of the pairs, d = 128) is for a GPU and was not run here.

References:
    A. Power, Y. Burda, H. Edwards, I. Babuschkin, V. Misra. Grokking: Generalization beyond
    overfitting on small algorithmic datasets. 2022. https://arxiv.org/abs/2201.02177
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from noisereg.constraints import Each, Interval, OneOf, OrNone, Rule
from noisereg.data.modular import modular_addition
from noisereg.data.validate import check_classification
from noisereg.sweep.experiment import Run
from noisereg.experiments.classify import (ClassifyConfig, ClassifyExperiment, compare, judge_pair, noise_note, select,
                                          stage_lines, training_curves)
from noisereg.sweep.stages import SELECTION, has_confirmation, view
from noisereg.plotting.style import figure, save
from noisereg.verdicts import RULE, Sample, arm, final_stats, fmt, paired
from noisereg.models.transformer import TinyTransformer
from noisereg.training.loop import HUTCHINSON_PROBES
from noisereg.training.settings import POSITIVE_INT

ARMS = ("gd", "wd", "full", "layer", "sam")
LABELS = {"gd": "AdamW", "wd": "AdamW + weight decay", "full": "AdamW + noise", "layer": "AdamW + noise (layer)",
          "sam": "SAM around AdamW", "sam_half": "SAM, half the steps"}
_DEFAULT = ClassifyConfig()


@dataclass(frozen=True)
class TransformerConfig(ClassifyConfig):
    p: int = 97                       # the modulus: p² pairs, p classes
    train_fraction: float = 0.3       # share of the pairs that train
    val_fraction: float = 0.5         # share of the other pairs held out for validation (the rest: test)
    d_model: int = 128
    heads: int = 4
    blocks: int = 1
    d_mlp: int | None = None          # None: 4·d_model
    weight_decays: tuple[float, ...] = (1.0,)   # the wd arm's grid (AdamW's decoupled weight decay)
    target_acc: float = 0.95          # the test accuracy whose first step is reported
    methods: tuple[str, ...] = ARMS
    optimizer: str = "adamw"
    lr: float = 1e-3
    momentum: float = 0.0
    epochs: int = 20000               # full-batch steps
    eval_every: int = 100
    log: tuple[str, ...] = ("ggn_trace", "hessian_trace")
    log_every: int = 20000            # curvature at the end only
    certificate: bool = False

    CONSTRAINTS = {
        "p": Interval(2, integer=True),
        "train_fraction": Interval(0, 1, low_open=True, high_open=True),
        "val_fraction": Interval(0, 1, low_open=True, high_open=True),
        "d_model": POSITIVE_INT, "heads": POSITIVE_INT, "blocks": POSITIVE_INT, "d_mlp": OrNone(POSITIVE_INT),
        "weight_decays": Each(Interval(0, low_open=True)),
        "target_acc": Interval(0, 1, low_open=True),
        "methods": Each(OneOf(*ARMS), unique=True),
    }
    RULES = (
        Rule(("d_model", "heads"), "d_model must be a multiple of heads", lambda c: c.d_model % c.heads == 0),
        Rule(("weight_decay",), "weight_decay must be 0 (gd, full, layer and sam train without it; the wd arm "
             "takes its values from weight_decays)", lambda c: c.weight_decay == 0),
        Rule(("dataset", "n_train", "n_val"), "the data are generated (set p, train_fraction, val_fraction): "
             "dataset, n_train and n_val do not apply",
             lambda c: (c.dataset, c.n_train, c.n_val) == (_DEFAULT.dataset, _DEFAULT.n_train, _DEFAULT.n_val)),
    )


CPU = dict(p=31, train_fraction=0.5, d_model=32, heads=4, lr=3e-3, epochs=3000, eval_every=50, log_every=3000,
           seeds=(0, 1, 2), weight_decays=(0.3, 1.0), sigmas=(0.01, 0.03, 0.1, 0.3), rhos=(0.05, 0.2),
           checkpoint_every=500, confirm_seeds=tuple(range(3, 13)))


class Transformer(ClassifyExperiment):
    name = "transformer"
    description = "open question (c): noise injection on a small transformer, modular addition (grokking)"
    order = 15
    Config = TransformerConfig
    PRESETS = {
        "smoke": dict(p=11, train_fraction=0.5, d_model=16, heads=2, lr=3e-3, epochs=20, eval_every=5, log_every=20,
                      seeds=(0, 1, 2), weight_decays=(0.1, 1.0), sigmas=(0.05,), rhos=(0.05,), trace_points=32,
                      checkpoint_every=10),
        "cpu": CPU,
        "paper": dict(seeds=(0, 1, 2), confirm_seeds=(3, 4, 5), weight_decays=(0.1, 0.3, 1.0), sigmas=(0.003, 0.01, 0.03, 0.1),
                      rhos=(0.02, 0.05, 0.1), checkpoint_every=1000),
    }

    def data(self, cfg, data, data_dir):
        self.own_data_only(data, data_dir)
        return check_classification(modular_addition(cfg.p, cfg.train_fraction, cfg.val_fraction, cfg.split_seed))

    def model(self, cfg, run, data):
        return TinyTransformer(cfg.p + 1, 3, cfg.p, d_model=cfg.d_model, heads=cfg.heads, blocks=cfg.blocks,
                               d_mlp=cfg.d_mlp)

    def runs(self, cfg):
        def run(run_id, method, sigma, seed, params=None, **extra):
            spec = cfg.spec(method=method, sigma=sigma, seed=seed, loss="cross_entropy", **extra)
            return Run(run_id, "", spec, params or {})

        steps = max(1, cfg.epochs // 2)   # sam_half: as many gradient evaluations as GD; curvature still at its end
        half = dict(epochs=steps, eval_every=min(cfg.eval_every, steps),
                    log_every=cfg.log_every if cfg.log_every < cfg.epochs else steps)
        out = []
        for seed in cfg.seeds:
            if "gd" in cfg.methods:
                out.append(run(f"gd-s{seed}", "gd", 0.0, seed))
            if "wd" in cfg.methods:
                out += [run(f"wd{w:g}-s{seed}", "gd", w, seed, {"arm": "wd", "weight_decay": w}, weight_decay=w)
                        for w in cfg.weight_decays]
            for m in (m for m in ("full", "layer") if m in cfg.methods):
                out += [run(f"{m}-sigma{s:g}-s{seed}", m, s, seed) for s in cfg.sigmas]
            if "sam" in cfg.methods:
                out += [run(f"sam-rho{r:g}-s{seed}", "sam", r, seed) for r in cfg.rhos]
                if cfg.sam_half:
                    out += [run(f"sam_half-rho{r:g}-s{seed}", "sam", r, seed, {"arm": "sam_half"}, **half)
                            for r in cfg.rhos]
        return out

    # ------------------------------------------------------------------ what the runs say
    def figures(self, cfg):
        return [{"file": "transformer.png", "kind": "custom",
                 "title": f"(a + b) mod {cfg['p']}: accuracy over training at the σ / ρ / λ chosen on validation "
                          "(mean ± SE over seeds)"},
                {"file": "transformer_vs_sigma.png", "kind": "vs_sigma", "metrics": ["test_acc"], "clip": False,
                 "title": f"(a + b) mod {cfg['p']}: test accuracy vs σ (SAM: ρ; weight decay: λ)"},
                training_curves(self.name)]

    def draw(self, results, spec, out):
        from noisereg.plotting.style import style

        chosen = {"gd": 0.0, **select(results, "")}
        fig, axes = figure(1, 2, size=(5.5, 4.0))
        for ax, metric in zip(axes[0], ("train_acc", "test_acc")):
            for a, s in chosen.items():
                rows = [[(h["step"], 100 * h[metric]) for h in r["history"] if h["step"] > 0 and metric in h]
                        for r in results["runs"] if arm(r) == a and float(r["sigma"]) == s and not r.get("diverged")]
                if not rows:
                    continue
                width = min(len(row) for row in rows)
                steps = [step for step, _ in rows[0][:width]]
                stats = [Sample({i: row[k][1] for i, row in enumerate(rows)}).stat for k in range(width)]
                mean = [m for m, _, _ in stats]
                label = LABELS.get(a, a)
                label = label if a == "gd" else f"{label}, {'ρ' if a.startswith('sam') else 'λ' if a == 'wd' else 'σ'}={s:g}"
                line, = ax.plot(steps, mean, color=style(a)["color"], label=label)
                ax.fill_between(steps, [m - e for m, e, _ in stats], [m + e for m, e, _ in stats],
                                color=line.get_color(), alpha=0.2)
            target = 100 * results["config"]["target_acc"]
            if metric == "test_acc":
                ax.axhline(target, color="grey", ls=":", lw=1)
            ax.set(xscale="log", xlabel="step (full batch)", ylabel=metric.replace("_acc", " accuracy (%)"))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        return save(fig, out / spec["file"], spec.get("title"))

    def judge(self, results):
        """Every arm against GD (test accuracy, steps to the target, Hessian trace), noise against weight decay
        and layer-wise against full noise; all "measured", seed-paired at the σ chosen on validation."""
        gd, best, _ = compare(results, "")
        reach, reached = steps_to(results)
        budget = {arm(r): r["history"][-1]["step"] for r in results["runs"]}
        hess = final_stats(results, "hessian_trace")
        cadence = results["config"]["eval_every"]
        rows = []

        def row(claim, ours):
            rows.append({"claim": claim, "paper": "–", "ours": ours, "verdict": "measured"})

        order = [a for a in ("wd", "full", "layer", "sam", "sam_half") if a in best]
        for a in order:
            stat, s = best[a]
            row(f"{a} ({_knob(a)}={s:g}) raises test accuracy over gd (AdamW alone)",
                f"{a} {fmt(stat)} vs gd {fmt(gd)}; {judge_pair(results, stat, gd).text()}")
        target = f"{100 * results['config']['target_acc']:g} %"
        for a in order:
            s = best[a][1]
            if budget.get(a) == budget.get("gd"):
                p = paired(reach.get((a, s), Sample({})), reach.get(("gd", 0.0), Sample({})), lower_is_better=True,
                           r=cadence)
                row(f"{a} reaches {target} test accuracy in fewer steps than gd (a run that never does counts its "
                    f"budget of {budget['gd']} steps)",
                    f"{a} {_reach_text(reach.get((a, s)), reached.get((a, s)), budget[a])} vs gd "
                    f"{_reach_text(reach.get(('gd', 0.0)), reached.get(('gd', 0.0)), budget['gd'])}; "
                    f"{p.text(scale=1, unit=' steps')}")
        for a in ("full", "layer"):
            if a in best and "wd" in best:
                (stat, s), (w, lam) = best[a], best["wd"]
                row(f"{a} noise (σ={s:g}) at least matches weight decay (λ={lam:g}) in test accuracy",
                    f"{a} {fmt(stat)} vs wd {fmt(w)}; {judge_pair(results, stat, w, at_least=True).text()}")
        if "layer" in best and "full" in best:
            (lay, s), (full, sf) = best["layer"], best["full"]
            row("layer-wise noise raises test accuracy over full noise",
                f"layer {fmt(lay)} at σ={s:g} vs full {fmt(full)} at σ={sf:g}; {judge_pair(results, lay, full).text()}")
        gd_h = hess.get(("", "gd", 0.0))
        for a in order:
            s = best[a][1]
            if a != "sam_half" and gd_h is not None and ("", a, s) in hess:
                h = hess[("", a, s)]
                row(f"{a} ends at a smaller Hessian trace (Hutchinson, training pairs) than gd",
                    f"{a} {fmt(h, 1, '')} vs gd {fmt(gd_h, 1, '')}; "
                    f"{paired(h, gd_h, lower_is_better=True).text(scale=1, unit='')}")
        return rows

    def notes(self, results):
        """The selection table, the line on the stages, and the confirmation runs' table where there are some."""
        lines = self._notes(view(results, SELECTION))
        lines[4:4] = [*stage_lines(results), ""]   # after the rule and the noise convention
        if has_confirmation(results):
            conf = self._notes(self.judged(results))
            head = next(i for i, line in enumerate(conf) if line.startswith("| method |"))
            lines += ["", "Confirmation runs (each arm at the σ / ρ / λ chosen above, new seeds; the claims are judged "
                      "on these):", "", *conf[head:]]
        return lines

    def _notes(self, results):
        cfg = results["config"]
        sizes = results.get("sizes", {})
        (reach, reached), (memo, memorised) = steps_to(results), steps_to(results, "train_acc", 0.99)
        val, test = final_stats(results, "val_acc"), final_stats(results, "test_acc")
        hess, ggn = final_stats(results, "hessian_trace"), final_stats(results, "ggn_trace")
        target = f"{100 * cfg['target_acc']:g} %"
        lines = [f"Verdict rule: {RULE}", "", noise_note(cfg), "",
                 f"Data: (a + b) mod {cfg['p']}, {sizes.get('train')} training pairs ({cfg['train_fraction']:g} of "
                 f"the p² pairs); of the others {sizes.get('val')} validate and {sizes.get('test')} test (disjoint). "
                 "Selection: each arm's σ (SAM's ρ, weight decay λ) is the one with the best mean validation "
                 "accuracy over seeds (`results.json[\"selected\"]`). Steps to "
                 f"{target}: the first evaluation (every {cfg['eval_every']} steps) at which test accuracy is at "
                 f"least {target}; a run that never gets there counts its step budget (`≥`). Memorised: the first "
                 f"evaluation with training accuracy ≥ 99 %. Curvature: the {_ggn_text(cfg)} GGN trace and Hutchinson's "
                 f"Hessian trace ({HUTCHINSON_PROBES} probes; standard errors in results.json) on "
                 f"{min(cfg.get('trace_points') or math.inf, sizes.get('train') or math.inf):g} training pairs at the "
                 "end.", "",
                 f"| method | selected σ / ρ / λ | gradient evaluations per run | val acc | test acc | seeds reaching "
                 f"{target} | median steps to {target} (by seed; ≥: never, its budget) | median steps to memorise | Hessian trace | "
                 "GGN trace |",
                 "|---|---|---|---|---|---|---|---|---|---|"]
        has_gd = any(arm(r) == "gd" for r in results["runs"])
        for a, s in ({"gd": 0.0, **select(results, "")} if has_gd else select(results, "")).items():
            key = ("", a, s)
            evals = {r.get("grad_evals") for r in results["runs"] if arm(r) == a and float(r["sigma"]) == s}
            lines.append(f"| {a} | {'–' if a == 'gd' else f'{s:g}'} | {', '.join(str(e) for e in sorted(evals, key=str))} "
                         f"| {fmt(val[key])} | {fmt(test[key])} | {sum(reached.get((a, s), {}).values())} of "
                         f"{len(reach[(a, s)].values) if (a, s) in reach else 0} | "
                         f"{_median(reach.get((a, s)), reached.get((a, s)))} ({_by_seed(reach.get((a, s)), reached.get((a, s)))}) | "
                         f"{_median(memo.get((a, s)), memorised.get((a, s)))} | "
                         f"{fmt(hess[key], 1, '') if key in hess else '—'} | {fmt(ggn[key], 1, '') if key in ggn else '—'} |")
        return lines


def _ggn_text(cfg: dict) -> str:
    return "sampled (8 label draws per pair)" if cfg.get("trace_estimator") == "sampled" else "exact"


def _knob(a: str) -> str:
    return "ρ" if a.startswith("sam") else "λ" if a == "wd" else "σ"


def steps_to(results: dict, metric: str = "test_acc", target: float | None = None):
    """``(steps, reached)``: ``steps[(arm, σ)]`` a Sample of the first evaluated step at which ``metric`` >=
    ``target`` (default the config's ``target_acc``), by seed, where a run that never gets there gives its last
    step (its budget) and a diverged run nan; ``reached[(arm, σ)][seed]`` whether the run got there."""
    target = results["config"]["target_acc"] if target is None else target
    steps: dict[tuple[str, float], dict[int, float]] = {}
    reached: dict[tuple[str, float], dict[int, bool]] = {}
    for r in results["runs"]:
        key, seed = (arm(r), float(r["sigma"])), int(r["seed"])
        hits = [h["step"] for h in r["history"] if h.get(metric) is not None and h[metric] >= target]
        steps.setdefault(key, {})[seed] = math.nan if r.get("diverged") else float(
            hits[0] if hits else r["history"][-1]["step"])
        reached.setdefault(key, {})[seed] = bool(hits and not r.get("diverged"))
    return {k: Sample(v) for k, v in steps.items()}, reached


def _median(sample: Sample | None, reached: dict[int, bool] | None) -> str:
    """The median step of a :func:`steps_to` sample, ``"≥ N"`` when at most half the runs reached the target
    (the median is then a budget, a lower bound)."""
    values = [] if sample is None else list(sample.values.values())
    if not values:
        return "—"
    return f"{'≥ ' if 2 * sum((reached or {}).values()) <= len(values) else ''}{statistics.median(values):g}"


def _by_seed(sample: Sample | None, reached: dict[int, bool] | None) -> str:
    """``"1450, ≥ 3000, 1300"``: each seed's step, ``≥`` marking a run that never reached the target (its budget)."""
    if sample is None:
        return "—"
    return ", ".join(f"{'' if (reached or {}).get(k) else '≥ '}{v:g}" for k, v in sorted(sample.values.items()))


def _reach_text(sample: Sample | None, reached: dict[int, bool] | None, budget: int) -> str:
    """``"2/3 seeds within 4000 steps (seeds: 1450, ≥ 4000, 1300)"``: how many runs reached the target and when."""
    n = 0 if sample is None else len(sample.values)
    return f"{sum((reached or {}).values())}/{n} seeds within {budget} steps (by seed: {_by_seed(sample, reached)})"
