r"""Taylor order (Theorem 1): R_σ − R_σ^eff = O(σ³) when D²Φ[I] = 0, but only O(σ²) otherwise.

For the square loss, :math:`R_\sigma^{\rm eff}(w) = \mathbb E_\varepsilon L(\Phi(w) + \sigma D\Phi(w)\varepsilon)`
exactly (L is quadratic), so the gap is the expectation of a per-sample difference that is itself
small, which makes a precise Monte-Carlo estimate possible at every σ:

.. math::

    R_\sigma - R_\sigma^{\rm eff} = \mathbb E_\varepsilon\big[L(\Phi(w+\sigma\varepsilon))
    - L(\Phi(w) + \sigma D\Phi(w)\varepsilon)\big],

with :math:`D\Phi(w)\varepsilon` a Jacobian-vector product (``torch.func.jvp``) and antithetic
pairs ±ε. Models: a 3-layer deep linear net (multilinear: :math:`D^2\Phi[I] = 0`, the gap is
even in σ and starts at σ⁴), a one-hidden-layer ReLU net (piecewise linear in each weight:
:math:`D^2\Phi[I] = 0` almost everywhere, Appendix A; kinks add higher-order terms), and a tanh net
(:math:`D^2\Phi[I] \ne 0`: the gap is :math:`\tfrac{\sigma^2}{2}DL\cdot D^2\Phi[I] + O(\sigma^3)`,
slope 2). Slopes are least-squares fits of log|gap| on log σ over the three smallest σ whose gap
is more than 3 standard errors from zero, up to the first sign change (the asymptotic regime).

What the ReLU net shows: for σ between 0.01 and 0.08 its gap grows like σ^1.4, not σ³: each unit
whose pre-activation lies within about σ·||x|| of the kink contributes like curvature, and with
hundreds of pre-activations some always do. Theorem 1's σ³ needs σ below the smallest
pre-activation margin σ* = min |z|/‖(x, 1)‖ (Appendix A; 6·10⁻⁴ at the cpu preset, recorded in each ReLU
run as ``margin_sigma``; σ*/√M for layer-wise noise, whose std on the first layer is σ√M), far below the noise
levels used in practice. The ReLU rows are therefore judged on the
σ below σ* alone (slope ± SE by :func:`~noisereg.verdicts.judge_range`), and are "not run at this scale" when fewer
than two of them resolve the gap from zero, whether the slope above σ* passes or fails (it is printed, as measured).
The σ grid includes 2, 3 and 4·10⁻⁴, below σ* for seeds 0 and 2 (σ* = 5.9·10⁻⁴ and 5.3·10⁻⁴; seed 1's model has a
pre-activation 1.4·10⁻⁶ from its kink, a σ* no grid here reaches). Monte Carlo cannot go much further: below σ* the
gap falls like σ⁴ or faster (the net is multilinear there, and the kink crossings vanish faster than any power) while
the antithetic estimate's standard error falls only like σ², and float64 rounding of the per-sample differences sets
a floor near 10⁻¹⁶. Measured (ReLU net, full noise, 200000 samples): seed 0, gap 1.5·10⁻⁹ ± 5·10⁻¹⁰ (2.9 SE: not
resolved) at σ = 2·10⁻⁴, 4.6·10⁻⁸ ± 1.4·10⁻⁹ at 3·10⁻⁴, 2.0·10⁻⁷ ± 3·10⁻⁹ at 4·10⁻⁴ (slope ≈ 5 over the last two); seed
2, −1.0·10⁻⁸ ± 6·10⁻¹⁰, −1.7·10⁻⁷ ± 2.7·10⁻⁹, −6.3·10⁻⁷ ± 6·10⁻⁹ (slope ≈ 6). The row says, per seed, how many σ below
its σ* resolve the gap.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, jvp, vmap

from noisereg.curvature import ggn_trace
from noisereg.constraints import Checked, Each, Interval
from noisereg.data import sparse_regression
from noisereg.sweep.experiment import Experiment, Job
from noisereg.plotting.style import figure, save
from noisereg.experiments.variance import log_slope
from noisereg.verdicts import MIN_PAIRS, across_seeds, judge_range
from noisereg.layers import resolve_layers
from noisereg.losses import as_predictions, check_targets, per_sample_loss
from noisereg.models import MLP, DeepLinearNet
from noisereg.training.settings import POSITIVE_INT, SEED, SEEDS


@dataclass(frozen=True)
class TaylorConfig(Checked):
    sigmas: tuple[float, ...] = (0.0002, 0.0003, 0.0004, 0.01, 0.02, 0.04, 0.08, 0.16)  # the first three: below
                                   # the ReLU nets' smallest pre-activation margin σ* (5-6e-4 for seeds 0 and 2)
    n: int = 30
    d: int = 10
    width: int = 16
    samples: int = 200000          # noise samples per point (antithetic pairs: samples / 2)
    seed: int = 0                  # the data
    seeds: tuple[int, ...] = (0, 1, 2)  # the models' initialisation and the noise draws: one fit per seed, and a
                                   # verdict needs 3 (verdicts.across_seeds)

    CONSTRAINTS = {"sigmas": Each(Interval(0, low_open=True)), "n": POSITIVE_INT, "d": POSITIVE_INT,
                   "width": POSITIVE_INT, "samples": Interval(4, integer=True), "seed": SEED, "seeds": SEEDS}


MODELS = {
    "deep linear (D²Φ[I] = 0)": lambda cfg: DeepLinearNet((cfg.d, cfg.width, cfg.width, 1)),
    "ReLU (D²Φ[I] = 0 a.e.)": lambda cfg: MLP(cfg.d, (cfg.width,), 1),
    "tanh (D²Φ[I] ≠ 0)": lambda cfg: MLP(cfg.d, (cfg.width,), 1, activation=nn.Tanh),
}

LAYER_MODELS = {  # layer-wise noise: R̃_σ − R against σ²/2·tr(GGN) (Sec. 3.2-4)
    "layer-wise, deep linear": lambda cfg: DeepLinearNet((cfg.d, cfg.width, cfg.width, 1)),
    "layer-wise, ReLU": lambda cfg: MLP(cfg.d, (cfg.width,), 1),
    "layer-wise, deep ReLU": lambda cfg: MLP(cfg.d, (cfg.width, cfg.width), 1),
}


def taylor_gap(model: nn.Module, x, y, sigma: float, samples: int, seed: int,
               names: set[str] | None = None) -> tuple[float, float]:
    """Antithetic Monte-Carlo estimate of R_σ − R_σ^eff (full noise, square loss): (mean, stderr).

    With ``names``, only those parameters are perturbed (std σ each) and R_σ^eff is linearised in them
    alone: one stratum of the layer-wise gap (:func:`layer_gap`)."""
    params = {k: p.detach() for k, p in model.named_parameters()}
    phi = lambda p: functional_call(model, p, (x,))  # noqa: E731
    g = torch.Generator().manual_seed(seed)
    names = set(params) if names is None else names
    with torch.no_grad():
        y = check_targets("square", as_predictions(model(x)), y)   # (n,) targets of an (n, 1) model: reshaped

    def pair(eps):
        f0, jeps = jvp(phi, (params,), (eps,))
        d = []
        for s in (sigma, -sigma):
            f = phi({k: params[k] + s * eps[k] for k in params})
            d.append(per_sample_loss("square", f, y).mean() - per_sample_loss("square", f0 + s * jeps, y).mean())
        return (d[0] + d[1]) / 2

    half = samples // 2
    vals = []
    for start in range(0, half, 2000):
        b = min(2000, half - start)
        eps = {k: torch.randn((b, *v.shape), generator=g, dtype=v.dtype) if k in names
               else torch.zeros((b, *v.shape), dtype=v.dtype) for k, v in params.items()}
        vals.append(vmap(pair)(eps))
    v = torch.cat(vals)
    return v.mean().item(), (v.std() / math.sqrt(len(v))).item()


def layer_gap(model: nn.Module, x, y, sigma: float, samples: int, seed: int) -> tuple[float, float]:
    r"""Antithetic Monte-Carlo estimate of :math:`\tilde R_\sigma - R_\sigma^{\rm eff}` for layer-wise noise:
    (mean, stderr).

    Layer-wise noise (paper convention, one of the M layers of ``resolve_layers(model)``, std σ√M on it) has
    :math:`\tilde R_\sigma = \frac1M\sum_j \mathbb E\,L(\Phi(w + \sigma\sqrt M\,\varepsilon_j))`, and
    linearising each stratum gives :math:`\frac1M\sum_j \frac{M\sigma^2}{2}\operatorname{tr}(GGN_{jj})
    = \frac{\sigma^2}{2}\operatorname{tr}(GGN)`, i.e. the same :math:`R_\sigma^{\rm eff}` (Eq. 6) as full noise
    (docs/THEORY.md §4). Each stratum is :func:`taylor_gap` on layer j at std σ√M with ``samples / M``
    samples; the strata are averaged (standard errors combined in quadrature)."""
    groups = resolve_layers(model)
    name_of = {id(p): k for k, p in model.named_parameters()}
    M = len(groups)
    parts = [taylor_gap(model, x, y, sigma * math.sqrt(M), max(samples // M, 4), seed + j,
                        {name_of[id(p)] for p in ps}) for j, (_, ps) in enumerate(groups)]
    return sum(m for m, _ in parts) / M, math.sqrt(sum(se**2 for _, se in parts)) / M


def relu_margin_sigma(model: nn.Module, x: torch.Tensor) -> float | None:
    """σ* = min over samples i and hidden units j of |z_ji| / ‖(x_i, 1)‖, z = W1 x + b1 the first layer's
    pre-activations: below σ*, full noise of std σ moves a pre-activation by σ‖(x_i, 1)‖·N(0, 1), so the
    kinks are crossed with a probability that vanishes faster than any power of σ and Theorem 1's σ³
    applies (Appendix A); at σ ≳ σ* units cross their kink and the gap grows like curvature. None for a
    model without a ReLU after a first Linear layer."""
    first = next((m for m in model.modules() if isinstance(m, nn.Linear)), None)
    if first is None or not any(isinstance(m, nn.ReLU) for m in model.modules()):
        return None
    with torch.no_grad():
        z = x @ first.weight.T + (first.bias if first.bias is not None else 0)
        scale = torch.sqrt((x ** 2).sum(1, keepdim=True) + (1.0 if first.bias is not None else 0.0))
        return float((z.abs() / scale).min())


class Taylor(Experiment):
    name = "taylor"
    description = "R_σ − R_σ^eff against σ: O(σ³) when D²Φ[I] = 0, O(σ²) otherwise (Theorem 1)"
    order = 8
    Config = TaylorConfig
    metrics = ("gap", "gap_se", "ratio", "ratio_se")
    PRESETS = {"smoke": dict(sigmas=(0.05, 0.2), samples=400, seeds=(0,)), "cpu": dict(), "demo": dict(samples=20000),
               "paper": dict(samples=1000000)}

    def data(self, cfg, data, data_dir):
        self.own_data_only(data, data_dir)
        return sparse_regression(n=cfg.n, d=cfg.d, seed=cfg.seed)

    def runs(self, cfg):
        split = self.data(cfg, None, None)
        x, y = split.x_train.double(), split.y_train.double()
        jobs = []
        for k in cfg.seeds:
            for name, make in MODELS.items():
                for s in cfg.sigmas:
                    jobs.append(Job(f"{name.split()[0]}-sigma{s:g}-s{k}", name,
                                    functools.partial(self.point, cfg, make, s, x, y, seed=k),
                                    {"model": name, "sigma": s, "seed": k}))
            for name, make in LAYER_MODELS.items():
                for s in cfg.sigmas:
                    key = name.split(", ")[1].replace(" ", "-")
                    jobs.append(Job(f"layer-{key}-sigma{s:g}-s{k}", name,
                                    functools.partial(self.point, cfg, make, s, x, y, "layer", seed=k),
                                    {"model": name, "sigma": s, "mode": "layer", "seed": k}))
        return jobs

    def point(self, cfg, make, sigma, x, y, mode="full", *, seed: int = 0, checkpoint=None, resume=False):
        """The gap at ``sigma`` for the model ``make`` builds (initialised from ``seed``, noise drawn from it), full
        or layer-wise noise; layer-wise points also record ``ratio`` = (R̃_σ − R)/(σ²/2·tr GGN) = 1 + gap/(σ²/2·tr GGN)
        and its standard error. In one go (``checkpoint``, ``resume`` unused)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = make(cfg).double()
        gap, se = (taylor_gap if mode == "full" else layer_gap)(model, x, y, sigma, cfg.samples, seed)
        final = {"gap": gap, "gap_se": se}
        if mode == "layer":
            half_trace = sigma**2 / 2 * ggn_trace(model, x, y)
            final.update(ratio=1 + gap / half_trace, ratio_se=se / half_trace, reg_term=half_trace)
        margin = relu_margin_sigma(model, x)  # ReLU nets: where Theorem 1's asymptotic regime starts
        if margin is not None:   # layer-wise noise puts std σ√M on the first layer: its kinks are crossed at σ*/√M
            final["margin_sigma"] = margin / (math.sqrt(len(resolve_layers(model))) if mode == "layer" else 1.0)
        return {"method": mode, "sigma": sigma, "seed": seed, "final": final, "history": [{"step": 0, **final}]}

    def slopes(self, results, points: int = 3):
        """Asymptotic slope per model: fit on the ``points`` smallest σ whose gap is > 3 SE from zero,
        stopping at the first sign change (past it a higher-order term has taken over): ``{name: (slope, k)}``."""
        first = min((r["seed"] for r in results["runs"]), default=0)   # the first seed's (the figure's legend)
        return {name: self.fit(results, name, points, seed=first)[::2][:2] for name in (*MODELS, *LAYER_MODELS)}

    @staticmethod
    def fit(results, name: str, points: int = 3, below: float = math.inf,
            seed: int | None = None) -> tuple[float, float, int, list[float]]:
        """``(slope, se, k, sigmas)``: the log-log slope of |gap| against σ (± SE from the gaps' Monte-Carlo
        errors, :func:`~noisereg.experiments.variance.log_slope`) over the ``k`` <= ``points`` smallest σ < ``below``
        whose gap is > 3 SE from zero, stopping at the first sign change; nan, nan for fewer than 2 such σ. ``seed``:
        that seed's runs only (None: every run, for results with one seed)."""
        rows = sorted((r["sigma"], r["final"]) for r in results["runs"] if r["variant"] == name and r["sigma"] < below
                      and (seed is None or r["seed"] == seed))
        ok = []
        for s, f in rows:
            if not abs(f["gap"]) > 3 * f["gap_se"]:
                continue
            if ok and (f["gap"] > 0) != (ok[0][2] > 0):
                break
            ok.append((s, abs(f["gap"]), f["gap"], f["gap_se"]))
        ok = ok[:points]
        sl, se = log_slope([s for s, *_ in ok], [g for _, g, _, _ in ok], [e for *_, e in ok])
        return sl, se, len(ok), [s for s, *_ in ok]

    def figures(self, cfg):
        return [{"file": "taylor.png", "kind": "custom", "title": "|R_σ − R_σ^eff| against σ (Theorem 1)"}]

    def draw(self, results, spec, out):
        layer = any(r["method"] == "layer" for r in results["runs"])
        fig, axes = figure(1, 2 if layer else 1, size=(6.5, 4.5))
        ax = axes[0][0]
        sl = self.slopes(results)
        for name, color in zip(MODELS, ("tab:purple", "tab:green", "tab:red")):
            for i, k in enumerate(_seeds(results, name)):   # one line per seed (model and noise draws)
                rows = sorted((r["sigma"], r["final"]) for r in results["runs"] if r["variant"] == name and r["seed"] == k)
                ax.errorbar([s for s, _ in rows], [abs(f["gap"]) for _, f in rows],
                            yerr=[2 * f["gap_se"] for _, f in rows], marker="o", capsize=3, color=color,
                            alpha=1.0 if i == 0 else 0.4,
                            label=f"{name}: slope {sl[name][0]:.2f} (seed {k})" if i == 0 else None)
        ax.set(xscale="log", yscale="log", xlabel="σ", ylabel="|R_σ − R_σ^eff| (± 2 SE; faint: other seeds)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        if layer:
            ax = axes[0][1]
            for name, color in zip(LAYER_MODELS, ("tab:purple", "tab:green", "tab:olive")):
                for i, k in enumerate(_seeds(results, name)):
                    rows = sorted((r["sigma"], r["final"]) for r in results["runs"]
                                  if r["variant"] == name and r["seed"] == k)
                    ax.errorbar([s for s, _ in rows], [f["ratio"] for _, f in rows],
                                yerr=[2 * f["ratio_se"] for _, f in rows], marker="o", capsize=3, color=color,
                                alpha=1.0 if i == 0 else 0.4, label=name if i == 0 else None)
            ax.axhline(1, color="gray", lw=0.8)
            ax.set(xscale="log", xlabel="σ", ylabel="(R̃_σ − R) / (σ²/2·tr GGN) (± 2 SE)",
                   title="layer-wise noise against Eq. (6)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        return save(fig, out / spec["file"], spec.get("title"))

    def claims(self, results):
        """One row per model, judged on each seed's runs (a fitted slope ± SE, :func:`~noisereg.verdicts.judge_range`)
        and combined over seeds by :func:`~noisereg.verdicts.across_seeds` (fewer than 3 seeds: inconclusive)."""
        rows = []
        for name in MODELS:
            if "≠" in name:
                claim, paper, low, high = f"{name}: gap is O(σ²)", "slope 2", 1.7, 2.3
            else:
                claim, paper, low, high = f"{name}: gap is O(σ³) (Theorem 1)", "slope ≥ 3", 2.7, math.inf
            rows.append(self._row(results, name, claim, paper, low, high))
        for name in LAYER_MODELS:
            seeds = _seeds(results, name)
            if not seeds:
                continue
            pts = {k: sorted((r["sigma"], r["final"]) for r in results["runs"] if r["variant"] == name and r["seed"] == k)
                   for k in seeds}
            ratios = "; ".join(f"seed {k}: " + ", ".join(f"{f['ratio']:.3f} ± {f['ratio_se']:.1g} (σ = {s:g})"
                                                         for s, f in p) for k, p in pts.items())
            if "linear" in name:   # Φ linear in each layer: the linearisation is exact, the gap is rounding
                worst = {k: max(abs(f["ratio"] - 1) - 3 * f["ratio_se"] for _, f in p) for k, p in pts.items()}
                # each sample's gap is zero up to rounding: no seed or draw can change it, an identity evaluated
                rows.append({"claim": f"{name}: R̃_σ − R = σ²/2·tr(GGN) exactly at every σ (Eq. 11)",
                             "paper": "ratio 1", "ours": f"ratio (R̃_σ − R)/(σ²/2·tr GGN): {ratios} (every sample's "
                             "gap is rounding: an identity evaluated, not a Monte-Carlo estimate)",
                             # an identity: one seed suffices (min_seeds=1), each one must agree
                             "verdict": across_seeds(["computed" if w <= 1e-9 else "inconclusive" if math.isnan(w)
                                                      else "not reproduced" for w in worst.values()], min_seeds=1)})
                continue
            row = self._row(results, name, f"{name}: R̃_σ − R = σ²/2·tr(GGN) + O(σ³) (Sec. 3.3 via App. A)",
                            "gap slope ≥ 3, ratio → 1", 2.7, math.inf)
            row["ours"] = f"ratio {ratios}; gap " + row["ours"]
            rows.append(row)
        return rows

    def _row(self, results, name, claim, paper, low, high) -> dict:
        """A claims row from the gap slope fitted on each seed's runs (:meth:`_judge`), combined over the seeds."""
        seeds = _seeds(results, name)
        parts = [self._judge(results, name, low, high, k) for k in seeds]
        ours = "; ".join(f"seed {k}: {text}" for k, (_, text) in zip(seeds, parts)) or "no run"
        if any(v == "not run at this scale" for v, _ in parts):
            ours += ("; Theorem 1's σ³ (via App. A) concerns σ below σ*, the smallest pre-activation margin "
                     "|z|/‖(x, 1)‖ (per seed): a seed is judged on the σ below its σ* alone, and is not run at this "
                     "scale where fewer than 2 of them resolve the gap from zero (> 3 SE), whether its slope above σ* "
                     "passes or fails; below σ* the Monte-Carlo SE falls only like σ² while the gap falls like σ³ or "
                     "faster, so these sample sizes cannot measure the regime (neither a confirmation nor a "
                     "refutation)")
        return {"claim": claim, "paper": paper, "ours": ours + _few(seeds), "verdict": across_seeds([v for v, _ in parts])}

    def _judge(self, results, name, low, high, seed) -> tuple[str, str]:
        """``(verdict, text)`` of one seed: the fitted slope ± z·SE in [low, high]. ReLU nets (runs recording
        ``margin_sigma``) are judged on the σ below the smallest pre-activation margin σ* only, where Theorem 1 via
        App. A applies: with fewer than two such σ whose gap is resolved (> 3 SE), "not run at this scale", whatever
        the slope above σ* (stated, as measured)."""
        sl, se, k, _ = self.fit(results, name, seed=seed)
        text = (f"slope {sl:.2f} ± {se:.1g} over the {k} smallest σ with gap > 3 SE" if k >= 2 else
                f"no slope: {k} σ with gap > 3 SE before the gap changes sign")
        verdict = judge_range(sl, low, high, se)
        runs = [r for r in results["runs"] if r["variant"] == name and r["seed"] == seed]
        margins = [r["final"]["margin_sigma"] for r in runs if "margin_sigma" in r["final"]]
        if not margins:
            return verdict, text
        star = min(margins)   # Theorem 1 via Appendix A is asymptotic: σ below the smallest kink margin
        sl_b, se_b, k_b, _ = self.fit(results, name, below=star, seed=seed)
        below = sorted(r["sigma"] for r in runs if r["sigma"] < star)
        if k_b >= 2:
            return (judge_range(sl_b, low, high, se_b),
                    f"slope {sl_b:.2f} ± {se_b:.1g} over the {k_b} smallest σ below σ* = {star:.2g} with gap > 3 SE "
                    f"(over every σ: {text})")
        return "not run at this scale", (
            f"{text} (pre-asymptotic, as measured); σ* = {star:.2g}: "
            + (f"of the {len(below)} σ below it ({', '.join(f'{s:g}' for s in below)}) {k_b} resolve the gap"
               if below else "the σ grid does not reach it"))


def _few(seeds) -> str:
    """``"; 1 seed: a verdict needs 3"`` where there are fewer seeds than the rule needs ("" otherwise)."""
    n = len(seeds)
    return f"; {n} seed{'s' if n != 1 else ''}: a verdict needs {MIN_PAIRS}" if n < MIN_PAIRS else ""


def _seeds(results: dict, name: str) -> list[int]:
    """The seeds of ``name``'s runs, in order."""
    return sorted({r["seed"] for r in results["runs"] if r["variant"] == name})
