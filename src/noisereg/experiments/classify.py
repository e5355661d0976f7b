"""Shared machinery of the classification experiments (Figs. 3-6): config fields, data, runs,
σ selection on validation data, and the claims every figure shares (SAM at equal compute).

σ is never chosen on test data: the training data loses ``n_val`` seeded points to a validation
split; each noisy arm's σ (SAM's ρ) is the one with the best mean validation accuracy over seeds
(:func:`select`, saved as ``results.json["selected"]``), and every claim is judged on the test
metrics at that σ (:func:`compare`) by the rule of :mod:`noisereg.verdicts`.

With ``confirm_seeds`` (the cpu and paper presets) the sweep has two stages
(:mod:`noisereg.sweep.stages`): the selection runs (every σ over ``seeds``) only choose σ; the
claims are judged on new runs at the chosen σ over ``confirm_seeds`` (:meth:`ClassifyExperiment.confirm_runs`),
seeds disjoint from the selection's, so a seed that chose σ never judges it. Without them (smoke,
demo, and results written before the two stages) one stage both chooses and judges, and the report
says so; the demo's verdicts are then labelled illustrative, beside the committed cpu verdict
(:func:`illustrative`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import re
from pathlib import Path

from noisereg.constraints import Each, Interval, IsBool, OrNone, Rule, Satisfies
from noisereg.data import DATASETS, Split, holdout, load
from noisereg.data.validate import check_classification
from noisereg.errors import UserError
from noisereg.sweep.experiment import Experiment, Run
from noisereg.sweep.run import data_note
from noisereg.sweep.stages import CONFIRMATION, SELECTION, has_confirmation, single_stage, view
from noisereg.verdicts import EMPTY, RULE, Paired, Sample, arm, final_stats, fmt, paired, resolution
from noisereg.training.settings import FAMILY, METHOD, METHODS, POSITIVE_INT, SEED, SEEDS, SIGMA, TrainSettings

_SETTINGS = {f.name for f in dataclasses.fields(TrainSettings)}
_DIR_DATASETS = ("fashion_mnist", "cifar10")  # the data sets read from --data-dir
NOISY = ("full", "layer")  # the arms the paper's claims are about (SAM is the baseline added here)
OFFICIAL_NOISE = dict(convention="official", layers="tensor", order="cyclic")
"""The noise of the code that drew Figs. 3-6, for their paper presets: every parameter tensor is a layer, visited
in turn, std σ on it (layer-wise) or σ/√T on every entry (full noise, T tensors); docs/THEORY.md §3."""


def _given_ok(text: str) -> bool:
    """Whether ``text`` reads ``ARM=σ``: ARM a method with a σ (not GD, not SAM), σ a positive float."""
    arm_, _, value = text.partition("=")
    try:
        return arm_ in METHODS and arm_ not in ("gd", "sam") and float(value) > 0 and math.isfinite(float(value))
    except ValueError:
        return False


def given(cfg) -> dict[str, float]:
    """``{arm: σ}`` of ``cfg.given_sigmas`` (empty when σ is chosen by this sweep)."""
    return {a: float(v) for a, _, v in (g.partition("=") for g in getattr(cfg, "given_sigmas", ()))}


@dataclass(frozen=True)
class ClassifyConfig(TrainSettings):
    """The training settings (:class:`TrainSettings`, defaults of Sec. 5 here), the data and the sweep;
    each figure adds its model fields."""

    epochs: int = 100                 # with batch_size None: full-batch GD iterations
    certificate: bool = True          # every run ends with a PAC-Bayes risk certificate (docs/THEORY.md §9)
    lr: float = 0.05
    momentum: float = 0.9
    eval_every: int = 10
    dataset: str = "digits"           # digits (embedded) | fashion_mnist | cifar10 | a .npz path | standin:NAME
    n_train: int | None = 1024        # seeded training subset (None: all but the validation points)
    n_val: int = 256                  # validation points held out of the training data (σ is chosen on them)
    split_seed: int = 0               # seed of the training subset and of the validation split
    train_only_classes: bool = False  # accept a rare training class no test example has (else refused as stray)
    sigmas: tuple[float, ...] = (0.05,)
    methods: tuple[str, ...] = ("gd", "full", "layer")
    seeds: tuple[int, ...] = (0,)
    confirm_seeds: tuple[int, ...] = ()   # seeds of the confirmation runs at the chosen σ (none: one stage)
    given_sigmas: tuple[str, ...] = ()    # "arm=σ": σ chosen by an earlier sweep, not here (no selection; see runs())
    rhos: tuple[float, ...] = (0.05,)  # SAM's ρ grid (method "sam")
    sam_half: bool = True             # with "sam": also SAM with half the epochs (as many gradients as GD)
    rwp_sigmas: tuple[float, ...] = (0.01,)    # the weight-perturbation family's grids (methods rwp, mrwp, lpf, nso;
    mrwp_sigmas: tuple[float, ...] = (0.01,)   # per-filter γ for rwp/mrwp/lpf, isotropic σ for nso)
    lpf_sigmas: tuple[float, ...] = (0.01,)
    nso_sigmas: tuple[float, ...] = (0.01,)

    CONSTRAINTS = {
        "dataset": Satisfies(lambda v: v in DATASETS or v.endswith(".npz"),
                             f"one of {DATASETS} or a path ending in .npz", str),
        "n_train": OrNone(POSITIVE_INT),
        "n_val": POSITIVE_INT,
        "split_seed": SEED,
        "train_only_classes": IsBool(),
        "sigmas": Each(SIGMA),
        "methods": Each(METHOD),
        "seeds": SEEDS,
        "confirm_seeds": Each(SEED, empty=True, unique=True),
        "given_sigmas": Each(Satisfies(_given_ok, "'ARM=σ' with ARM a noisy method and σ > 0 (full=0.035, say)", str),
                             empty=True, unique=True),
        "rhos": Each(Interval(0, low_open=True)),
        "sam_half": IsBool(),
        "rwp_sigmas": Each(Interval(0, low_open=True)),
        "mrwp_sigmas": Each(Interval(0, low_open=True)),
        "lpf_sigmas": Each(Interval(0, low_open=True)),
        "nso_sigmas": Each(Interval(0, low_open=True)),
    }
    RULES = (Rule(("seeds", "confirm_seeds"), "confirm_seeds must share no seed with seeds (a seed that chose σ "
                  "cannot confirm it): pick other confirmation seeds",
                  lambda c: not set(c.seeds) & set(c.confirm_seeds)),
             Rule(("given_sigmas", "confirm_seeds"), "given_sigmas fixes σ, so there is nothing to select and "
                  "confirm: leave confirm_seeds empty (the seeds judge σ chosen elsewhere)",
                  lambda c: not (c.given_sigmas and c.confirm_seeds)),
             Rule(("given_sigmas", "methods"), "given_sigmas names each arm once, and only arms in methods",
                  lambda c: len(given(c)) == len(c.given_sigmas) and set(given(c)) <= set(c.methods)))


class ClassifyExperiment(Experiment):
    """Runs: GD once per seed, each noisy method per σ and seed (SAM per ρ; the family's methods per their own
    grid, ``rwp_sigmas`` ...), for every variant.

    Subclasses judge the paper's claims in :meth:`judge`; :meth:`claims` adds the SAM rows and
    refuses to judge results without a validation split."""

    image_input: bool = False  # convolutional models: flat 8x8 digits become 1x8x8 images
    confirm_what = "each method at the σ (ρ, λ) the selection runs choose"   # noisereg show's words

    def variants(self, cfg) -> list[tuple[str, dict[str, Any]]]:
        """``(label, params)`` of each variant. A param that names a training setting (``lr``, say)
        sets it for the variant's runs; the others are for :meth:`model`."""
        return [("", {})]

    def data(self, cfg, data, data_dir) -> Split:
        if data_dir and not data and cfg.dataset not in _DIR_DATASETS:
            raise UserError(f"--data-dir holds the files of {' or '.join(_DIR_DATASETS)}, but dataset is "
                            f"{cfg.dataset!r}: add --set dataset=fashion_mnist (or cifar10)")
        n_load = None if cfg.n_train is None else cfg.n_train + cfg.n_val  # the validation points come out of these
        try:
            split = load(data or cfg.dataset, data_dir=data_dir, n_train=n_load, seed=cfg.split_seed)
            if self.image_input and split.x_train.dim() == 2 and split.x_train.shape[1] == 64:
                split = dataclasses.replace(split, x_train=split.x_train.reshape(-1, 1, 8, 8),
                                            x_test=split.x_test.reshape(-1, 1, 8, 8))
            split = holdout(split, cfg.n_val, seed=cfg.split_seed)
        except UserError as e:
            if "n_train" not in str(e) and "n_val" not in str(e):
                raise
            raise UserError(f"{e} (n_train={cfg.n_train} training points plus n_val={cfg.n_val} validation "
                            "points are drawn from the training data)") from None
        return check_classification(split, image=self.image_input, train_only_classes=cfg.train_only_classes)

    def runs(self, cfg):
        out = []
        for label, params in self.variants(cfg):
            tag = f"{label}-" if label else ""
            settings = {k: v for k, v in params.items() if k in _SETTINGS}

            def run(run_id, method, sigma, seed, label=label, params=params, settings=settings, **extra):
                spec = cfg.spec(method=method, sigma=sigma, seed=seed, loss="cross_entropy", **{**settings, **extra})
                return Run(run_id, label, spec, params if not extra else {**params, "arm": "sam_half"})

            epochs = settings.get("epochs", cfg.epochs)
            stop = settings.get("noise_stop_epoch", cfg.noise_stop_epoch)
            half = dict(epochs=max(1, epochs // 2), noise_stop_epoch=None if stop is None else stop // 2)
            fixed = given(cfg)   # σ chosen by an earlier sweep replaces its arm's grid
            for seed in cfg.seeds:
                if "gd" in cfg.methods:
                    out.append(run(f"{tag}gd-s{seed}", "gd", 0.0, seed))
                for m in (m for m in cfg.methods if m not in ("gd", "sam")):
                    grid = (fixed[m],) if m in fixed else getattr(cfg, f"{m}_sigmas") if m in FAMILY else cfg.sigmas
                    out += [run(f"{tag}{m}-sigma{s:g}-s{seed}", m, s, seed) for s in grid]
                if "sam" in cfg.methods:
                    out += [run(f"{tag}sam-rho{r:g}-s{seed}", "sam", r, seed) for r in cfg.rhos]
                    if cfg.sam_half:
                        out += [run(f"{tag}sam_half-rho{r:g}-s{seed}", "sam", r, seed, **half) for r in cfg.rhos]
        return out

    def selected(self, results: dict) -> dict:
        """``{arm: σ}`` chosen on validation data (:func:`select`); with named variants
        ``{variant: {arm: σ}}``."""
        variants = list(dict.fromkeys(r["variant"] for r in results["runs"]))
        if variants == [""]:
            return select(results, "")
        return {v: select(results, v) for v in variants}

    def confirms(self, cfg) -> bool:
        """Two stages when ``confirm_seeds`` is set (:mod:`noisereg.sweep.stages`)."""
        return bool(getattr(cfg, "confirm_seeds", ()))

    def confirm_keep(self, variant: str, arm: str, sigma: float, chosen: dict[str, float]) -> bool:
        """Whether the confirmation reruns ``arm`` at ``sigma`` in ``variant``: GD, and each other arm at its
        chosen σ (``chosen``: ``{arm: σ}`` of the variant). An experiment whose claims speak of every σ keeps more."""
        return arm == "gd" or (arm in chosen and float(chosen[arm]) == float(sigma))

    def confirm_runs(self, cfg, selected: dict | None) -> list[Run]:
        """The runs of :meth:`runs` over ``confirm_seeds`` instead of ``seeds`` that :meth:`confirm_keep` keeps
        at the choice ``selected`` (:meth:`selected`'s value; None: each arm's first σ, a placeholder of the
        same size), their ids prefixed ``confirm-``."""
        if not self.confirms(cfg):
            return []
        fresh = dataclasses.replace(cfg, seeds=cfg.confirm_seeds, confirm_seeds=())
        runs = self.runs(fresh)
        if selected is None:   # placeholder: the first σ each arm meets
            first: dict[tuple[str, str], float] = {}
            for r in runs:
                first.setdefault((r.variant, r.params.get("arm", r.spec.method)), r.spec.sigma)
            chosen = {}
            for (v, a), sig in first.items():
                chosen.setdefault(v, {})[a] = sig
        else:
            chosen = by_variant(selected, [r.variant for r in runs])
        return [dataclasses.replace(r, id=f"confirm-{r.id}") for r in runs
                if self.confirm_keep(r.variant, r.params.get("arm", r.spec.method), r.spec.sigma,
                                     chosen.get(r.variant, {}))]

    def judged(self, results: dict) -> dict:
        """The runs the claims are judged on: the confirmation runs, each arm at the σ the selection runs chose
        with the selection stage's results beside them (``"selection"``: its choice of σ, read by :func:`select`,
        its grids and validation means, for every choice a report makes), or all runs of a single-stage sweep."""
        if not has_confirmation(results):
            return results
        return {**view(results, CONFIRMATION), "selection": view(results, SELECTION)}

    def claims(self, results: dict) -> list[dict[str, str]]:
        if not _has_validation(view(results, SELECTION)):
            return [{"claim": "every claim of this section", "paper": "", "verdict": "inconclusive",
                     "ours": "not judged: these results hold no validation split, so σ could only be chosen on "
                             "the test data; rerun them with this version"}]
        if not single_stage(results) and not has_confirmation(results):
            return [{"claim": "every claim of this section", "paper": "", "verdict": "inconclusive",
                     "ours": "not judged: the confirmation runs are missing (the selection runs only choose σ); "
                             "rerun the command with --resume"}]
        judged = self.judged(results)
        rows = self.judge(judged) + sam_rows(judged) + certificate_rows(judged)
        return illustrative(self.name, rows) if results.get("preset") == "demo" else rows

    def judge(self, results: dict) -> list[dict[str, str]]:
        """Rows ``{"claim", "paper", "ours", "verdict"}`` on the paper's claims (see :meth:`claims`)."""
        return []

    def notes(self, results: dict) -> list[str]:
        """The report's lines on σ selection and compute: one row per arm and variant (the selection stage),
        then the confirmation stage's runs, or a line saying that one stage chose σ and judged the claims."""
        full = results
        results = view(results, SELECTION)
        if not _has_validation(results):
            return []
        cfg = results["config"]
        how = ("σ is not chosen on them here: it was given (`given_sigmas`, above)" if cfg.get("given_sigmas") else
               "each noisy method's σ (SAM's ρ) is the one with the best mean validation accuracy over seeds "
               "(`results.json[\"selected\"]`)")
        lines = [f"Verdict rule: {RULE}", "", noise_note(cfg), "", *stage_lines(full), "",
                 f"{'Validation' if cfg.get('given_sigmas') else 'Selection'}: {cfg.get('n_val')} training points "
                 f"held out as validation data (seed {cfg.get('split_seed')}); {how}. Compute: gradient evaluations "
                 "(forward + backward passes on a batch) per run; SAM takes two per step, `sam_half` is SAM with half "
                 "the steps, as many gradient evaluations as GD.", "",
                 f"| variant | method | {'given' if cfg.get('given_sigmas') else 'selected'} σ / ρ | gradient "
                 "evaluations per run | val acc | test acc | "
                 "PAC-Bayes risk certificate |",
                 "|---|---|---|---|---|---|---|"]
        val, test = final_stats(results, "val_acc"), final_stats(results, "test_acc")
        cert = final_stats(results, "risk_bound")
        for v in dict.fromkeys(r["variant"] for r in results["runs"]):
            has_gd = any(arm(r) == "gd" and r["variant"] == v for r in results["runs"])
            chosen = {"gd": 0.0, **select(results, v)} if has_gd else select(results, v)
            for a, s in chosen.items():
                evals = {r.get("grad_evals") for r in results["runs"]
                         if r["variant"] == v and arm(r) == a and float(r["sigma"]) == s}
                lines.append(f"| {v or '–'} | {a} | {'–' if a == 'gd' else f'{s:g}'} | "
                             f"{', '.join(str(e) for e in sorted(evals, key=str))} | {fmt(val[(v, a, s)])} | "
                             f"{fmt(test[(v, a, s)])} | {_cert_text(cert.get((v, a, s)))} |")
        return lines + confirmation_table(self.judged(full)) if has_confirmation(full) else lines


def training_curves(name: str, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """The figure spec of ``<name>_curves.png``: test accuracy and training loss (and ``extra`` metrics,
    log-scaled) over training steps, mean ± standard error over seeds, each method at its σ chosen on
    validation data, one row per variant. Every classification experiment lists it in ``figures()``."""
    return {"file": f"{name}_curves.png", "kind": "curves", "metrics": ["test_acc", "train_loss", *extra],
            "log": ("train_loss", *extra), "panels": "variant", "at": "selected",
            "title": f"{name}: training curves at the selected σ"}


def noise_note(cfg: dict) -> str:
    """One line on the noise convention of the runs (docs/THEORY.md §3), for the report."""
    conv, layers, order = cfg.get("convention", "paper"), cfg.get("layers", "module"), cfg.get("order", "random")
    unit = "parameter tensors" if layers == "tensor" else "modules" if layers == "module" else f"layers ({layers})"
    if conv == "official":
        std = f"full noise std σ/√T per entry, layer-wise std σ on one of the T {unit}"
        tail = "the convention of the code that drew the paper's figures, so σ is the figures' σ"
    else:
        std = f"full noise std σ per entry, layer-wise std σ·√M on one of the M {unit}"
        tail = "the paper's text; the same noise as the official convention at σ·√T (T parameter tensors)"
    return (f"Noise: convention `{conv}` ({std}, chosen {'in turn' if order == 'cyclic' else 'at random'}): "
            f"{tail} (docs/THEORY.md §3).")


def _has_validation(results: dict) -> bool:
    """Whether the runs logged validation metrics (results written before the split have none)."""
    return any("val_acc" in r["final"] for r in results["runs"])


TIE_RULE = "a tie in mean validation accuracy goes to the smaller σ (ρ): the weaker perturbation, the one closer to GD"
"""How :func:`select` breaks ties, in the words a report states it."""


def select(results: dict, variant: str, metric: str = "val_acc") -> dict[str, float]:
    """Each noisy arm's σ with the highest mean ``metric`` over seeds, in a variant (ties: the smaller σ,
    :data:`TIE_RULE`).

    An arm whose every σ diverged gets its smallest σ, so its claims are still judged (the rule calls a
    diverged arm inconclusive) instead of vanishing from the report. GD (no σ) has no entry. Results that
    carry ``"selection"`` (the confirmation runs, :meth:`ClassifyExperiment.judged`) return the selection
    stage's choice: σ is never chosen again on the seeds that judge it."""
    if "selection" in results:
        return select(results["selection"], variant)
    best: dict[str, tuple[float, float]] = {}
    for (var, a, s), (m, _, _) in sorted(final_stats(results, metric).items(), key=lambda kv: kv[0][2]):
        if var != variant or a == "gd":
            continue
        m = m if math.isfinite(m) else -math.inf
        if a not in best or m > best[a][0]:
            best[a] = (m, s)
    return {a: s for a, (_, s) in sorted(best.items())}


def selection_flags(results: dict, variant: str, metric: str = "val_acc") -> dict[str, str]:
    """``{arm: flag}`` for each arm :func:`select` chose σ for: "" for an inner point of its grid, else what a
    reader must know: "at the grid's edge (the lowest | highest of k: ...)" (a better σ may lie outside the
    grid), "a grid of one point", and "tied on validation with σ=...: the smaller kept" (:data:`TIE_RULE`;
    means equal within 1e-12). Results that carry ``"selection"`` (the confirmation runs,
    :meth:`ClassifyExperiment.judged`) are read through it: the grid is the selection stage's, not the one σ per
    arm the confirmation reruns."""
    results = results.get("selection", results)
    stats = final_stats(results, metric)
    out = {}
    for a, s in select(results, variant, metric).items():
        grid = sorted(g for (v, b, g) in stats if v == variant and b == a)
        flags = []
        if len(grid) == 1:
            flags.append("a grid of one point")
        elif s in (grid[0], grid[-1]):
            flags.append(f"at the grid's edge (the {'lowest' if s == grid[0] else 'highest'} of {len(grid)}: "
                         f"{', '.join(f'{g:g}' for g in grid)})")
        best = stats[(variant, a, s)][0]
        tied = [g for g in grid if g != s and math.isfinite(best) and abs(stats[(variant, a, g)][0] - best) <= 1e-12]
        if tied:
            flags.append(f"tied on validation with {', '.join(f'{g:g}' for g in tied)}: the smaller kept")
        out[a] = "; ".join(flags)
    return out


def compare(results: dict, variant: str, metric: str = "test_acc"):
    """``(gd, best, stats)`` in a variant: GD's final ``metric`` (a :class:`~noisereg.verdicts.Sample`,
    by seed); ``best[arm] = (Sample, σ)`` of ``metric`` at the σ chosen on validation data (:func:`select`);
    and ``stats`` (:func:`~noisereg.verdicts.final_stats` of ``metric``)."""
    stats = final_stats(results, metric)
    gd = stats.get((variant, "gd", 0.0), EMPTY)
    best = {a: (stats.get((variant, a, s), EMPTY), s) for a, s in select(results, variant).items()}
    return gd, best, stats


def judge_pair(results: dict, a: Sample, b: Sample, metric: str = "test_acc", **kwargs) -> Paired:
    """:func:`~noisereg.verdicts.paired` on ``a`` vs ``b`` with the resolution of ``metric`` in ``results``."""
    return paired(a, b, r=resolution(results, metric), **kwargs)


def best_on_validation(results: dict, variant: str, chosen: dict[str, float]) -> str | None:
    """The arm of ``chosen`` (arm → its σ, 0 for GD) with the highest mean final validation accuracy in
    ``variant``; never test data, and in two-stage results the selection stage's (``results["selection"]``,
    :meth:`ClassifyExperiment.judged`), so the seeds that judge choose nothing. A tie goes to the arm listed
    first; an arm without a finite validation mean ranks last; None when ``chosen`` is empty."""
    val = final_stats(results.get("selection", results), "val_acc")
    means = {a: val.get((variant, a, s), EMPTY)[0] for a, s in chosen.items()}
    return max(means, key=lambda a: means[a] if math.isfinite(means[a]) else -math.inf, default=None)


def sam_rows(results: dict) -> list[dict[str, str]]:
    """``measured`` rows: SAM (at its selected ρ) against the best of GD and the noisy arms (the best chosen
    by mean validation accuracy, never on test data), at equal steps (SAM computing twice the gradients) and
    at equal gradient evaluations (``sam_half``)."""
    rows = []
    for v in dict.fromkeys(r["variant"] for r in results["runs"]):
        gd, best, _ = compare(results, v)
        if "sam" not in best:
            continue
        others = {"gd": (gd, None), **{a: b for a, b in best.items() if a in NOISY}}
        ref = best_on_validation(results, v, {a: 0.0 if s is None else s for a, (_, s) in others.items()})
        (rs, rsig) = others[ref]
        ref_text = f"{ref} {fmt(rs)}" + ("" if rsig is None else f" (σ={rsig:g})")
        tag = f"{v}: " if v else ""
        for a, what in (("sam", "at equal steps (SAM: 2 gradient evaluations per step)"),
                        ("sam_half", "at equal gradient evaluations (SAM with half the steps)")):
            if a in best:
                stat, rho = best[a]
                rows.append({"claim": f"{tag}SAM vs the best of GD and noise injection (on validation), {what}",
                             "paper": "–", "ours": f"{a} {fmt(stat)} (ρ={rho:g}) vs {ref_text}; "
                             + judge_pair(results, stat, rs).text(), "verdict": "measured"})
    return rows


def _cert_text(stat) -> str:
    """The certificate cell: the mean risk bound over seeds as a percentage, "—" where none was recorded."""
    if stat is None or not math.isfinite(stat[0]):
        return "—"
    return fmt(stat)


def certificate_text(certs: list[dict], classes: int) -> str:
    """Certificates in words with their parts: the median ``risk_bound`` over the records, then each one's ê (its
    Monte-Carlo estimate), KL, n, δ, the prior stds searched (G), the posteriors compared (C) and the prior's data;
    "vacuous" when the median is at least the error of guessing (1 − 1/classes), "trivial" at 1."""
    if not certs:
        return "no certificate recorded"
    bounds = sorted(c["risk_bound"] for c in certs)
    k = len(bounds)
    median = bounds[k // 2] if k % 2 else (bounds[k // 2 - 1] + bounds[k // 2]) / 2
    parts = "; ".join(f"{c['risk_bound']:.3f} = bound(ê {c['empirical_risk']:.3f}, KL {c['kl']:.4g}, n {c['n']}, "
                      f"δ {c['delta']:g}, G {c.get('grid_size', 1)}, C {c.get('candidates', 1)})" for c in certs)
    default = {"kind": "data-independent", "source": "the run's initialisation"}
    priors = [c.get("prior_data", default) for c in certs]
    prior = {"kind": priors[0].get("kind"), "source": " / ".join(dict.fromkeys(p.get("source", "?") for p in priors))}
    status = ("trivial (1.0): it certifies nothing" if median >= 1 - 1e-12 else
              f"vacuous (≥ {1 - 1 / classes:.2f}, the error of guessing)" if median >= 1 - 1 / classes else
              "non-vacuous")
    return (f"median {median:.3f} over {k} seed{'s' if k > 1 else ''} ({parts}); prior {prior.get('source', prior.get('kind'))} "
            f"({prior.get('kind', 'data-independent')}); {status}")


def certificate_rows(results: dict) -> list[dict[str, str]]:
    """``measured`` rows: each arm's PAC-Bayes risk certificate (GD, and each noisy arm at its σ chosen on
    validation), with its parts and a plain statement where it is vacuous (at least the error of guessing,
    1 − 1/classes). The prior is each run's initialisation (data-independent). No paired test: a certificate at
    its trivial value 1 is a constant, and a test between bounds says nothing about the networks."""
    stats = final_stats(results, "risk_bound")
    if not any(math.isfinite(m) for m, _, _ in stats.values()):
        return []
    rows = []
    classes = results.get("classes") or 10
    for v in dict.fromkeys(r["variant"] for r in results["runs"]):
        has_gd = any(arm(r) == "gd" and r["variant"] == v for r in results["runs"])
        chosen = {**({"gd": 0.0} if has_gd else {}), **{a: s for a, s in select(results, v).items() if a in NOISY}}
        for a, s in chosen.items():
            certs = [r["certificate"] for r in results["runs"] if r["variant"] == v and arm(r) == a
                     and float(r["sigma"]) == s and r.get("certificate") and not r.get("diverged")]
            if not certs:
                continue
            where = "" if a == "gd" else f" at σ={s:g}"
            rows.append({"claim": f"{v + ': ' if v else ''}PAC-Bayes risk certificate (0-1 loss) of {a}{where}",
                         "paper": "–", "ours": certificate_text(certs, classes), "verdict": "measured"})
    return rows


def scale_note(results: dict) -> str:
    """`` (preset P[, reduced model]; DATA)``: the scale and the data a claim was judged on."""
    scale = "" if results["preset"] == "paper" else ", reduced model"
    return f" (preset {results['preset']}{scale}; {data_note(results)})"


def by_variant(selected: dict | None, variants: list[str]) -> dict[str, dict[str, float]]:
    """``{variant: {arm: σ}}`` from :meth:`ClassifyExperiment.selected`'s value (flat ``{arm: σ}`` when the only
    variant is ``""``)."""
    if not selected:
        return {}
    if all(isinstance(v, dict) for v in selected.values()):
        return {v: dict(c) for v, c in selected.items()}
    return {"": dict(selected)} if set(variants) <= {""} else {}


def stage_lines(results: dict) -> list[str]:
    """The report's line on the stages: seeds that chose σ, seeds that judged the claims."""
    cfg = results["config"]
    if cfg.get("given_sigmas"):
        fixed = ", ".join(f"{g.replace('=', ' σ = ')}" for g in cfg["given_sigmas"])
        return [f"σ given, not chosen here ({fixed}: `given_sigmas`, the choice of an earlier sweep's selection seeds, "
                f"see the preset's docs); every run here judges the claims and none chose anything, so the "
                f"{len(cfg.get('seeds', ()))} seeds {tuple(cfg.get('seeds', ()))} act as confirmation seeds."]
    if has_confirmation(results):
        n = len({int(r["seed"]) for r in view(results, CONFIRMATION)["runs"]})
        return [f"Two stages: σ (ρ, λ) of each method was chosen on validation accuracy over the selection seeds "
                f"{tuple(cfg.get('seeds', ()))} (the table below); every claim is judged on the test metrics of new "
                f"runs at the chosen settings over the {n} confirmation seeds {tuple(cfg.get('confirm_seeds', ()))} "
                "(the table after it). The selection runs enter no verdict; the figures show them."]
    return ["One stage: σ was chosen and the claims judged on the same seeds"
            + (" (these results were written before selection and confirmation had separate seeds)"
               if cfg.get("confirm_seeds") is None else "")
            + ", so a verdict here is not confirmed on fresh seeds."]


def confirmation_table(judged: dict) -> list[str]:
    """The confirmation stage's runs: each arm at its chosen σ over the confirmation seeds."""
    val, test = final_stats(judged, "val_acc"), final_stats(judged, "test_acc")
    lines = ["", "Confirmation runs (each method at the σ chosen above, new seeds; the claims are judged on these):",
             "", "| variant | method | σ / ρ | seeds | val acc | test acc |", "|---|---|---|---|---|---|"]
    for (v, a, s), t in test.items():
        lines.append(f"| {v or '–'} | {a} | {'–' if a == 'gd' else f'{s:g}'} | {len(t.values)} | "
                     f"{fmt(val.get((v, a, s), EMPTY))} | {fmt(t)} |")
    return lines


_SCALE = re.compile(r" \(preset \w+[^()]*\)$")


def _claim_key(claim: str) -> str:
    """A claim's text without its scale note (``" (preset cpu, reduced model; DATA)"``), to match presets."""
    return _SCALE.sub("", claim)


COMMITTED = Path(__file__).resolve().parents[3] / "docs" / "results"
"""Where the committed cpu results live in a source checkout (absent from an installed package)."""


def committed_verdicts(name: str, root: Path | None = None) -> dict[str, str] | None:
    """``{claim (without its scale note): verdict}`` of the committed cpu results of experiment ``name``
    (``docs/results/NAME/results.json`` of the source checkout), judged now by the same rule; None when absent."""
    import json

    from noisereg.sweep import EXPERIMENTS

    path = (root or COMMITTED) / name / "results.json"
    if not path.is_file():
        return None
    results = json.loads(path.read_text())
    if results.get("preset") != "cpu":
        return None
    return {_claim_key(r["claim"]): r["verdict"] for r in EXPERIMENTS[name].claims(results)}


def illustrative(name: str, rows: list[dict[str, str]], root: Path | None = None) -> list[dict[str, str]]:
    """The demo's rows: a judged verdict becomes ``"illustrative: V; committed cpu: W"`` (the demo keeps a fixed σ
    and chose nothing; W: the same claim on the committed cpu results, :func:`committed_verdicts`)."""
    committed = committed_verdicts(name, root)
    out = []
    for r in rows:
        if r["verdict"] not in ("reproduced", "not reproduced", "inconclusive"):
            out.append(r)
            continue
        cpu = "not in this checkout (docs/results)" if committed is None else \
            committed.get(_claim_key(r["claim"]), "not judged at the cpu preset")
        out.append({**r, "verdict": f"illustrative: {r['verdict']}; committed cpu: {cpu}"})
    return out
