r"""PSD factorization Φ = wwᵀ + full noise injection = trace-penalised PSD regression (Sec. 2.5).

:math:`w\in\mathbb{R}^{d\times r}` with r ≥ d (so every PSD matrix is some wwᵀ), loss
:math:`\frac12\|Y-\Phi\|_F^2`. Noisy GD (every entry of w perturbed with std σ) is compared with
two PSD minimisers, both eigenvalue soft-thresholdings of Y
(:func:`noisereg.closed_form.psd_soft_threshold`), since
:math:`\frac12\|Y-\Phi\|_F^2 + c\operatorname{tr}\Phi = \frac12\|(Y - cI) - \Phi\|_F^2 + \text{const}`
(docs/THEORY.md §5.4):

(a) the effective risk of Eq. (6), :math:`c = \sigma^2(d+1)` (:func:`noisereg.closed_form.psd_trace_penalty`);

(b) the exact smoothed risk :math:`R_\sigma` (:func:`noisereg.closed_form.psd_full_noise_risk`),
    :math:`c = \sigma^2(d+1+r)`: here :math:`D^2\Phi[I] = 2rI \ne 0` adds the first-order term
    :math:`\sigma^2 r\operatorname{tr}(\Phi - Y)` that Theorem 1 excludes; only Theorem 2 (predictions
    O(σ²)-close) applies.

The noisy gradient is unbiased for :math:`\nabla R_\sigma`, so noisy GD should find (b).

**Theorem 2, measured** (``theorem2_sigmas``). With a PSD target (the clean Y, all eigenvalues > 0)
the model interpolates: :math:`\varphi^* = Y` is reachable and L is strongly convex in Φ, the
theorem's setting. For each σ, L-BFGS (float64, from one fixed w₀) minimises the exact
:math:`R_\sigma(w)` and :math:`R_\sigma^{\rm eff}(w)` over w, giving :math:`w^{*\sigma}` and
:math:`\tilde w^\sigma`; we record the squared distances
:math:`\|\Phi(w^{*\sigma}) - \varphi^*\|_F^2` (the theorem: O(σ²)) and
:math:`\|\Phi(w^{*\sigma}) - \Phi(\tilde w^\sigma)\|_F^2` (O(σ³)) and fit their log-log slopes. The
minimisers are checked against the soft-thresholdings (b) and (a): the fitted rates are trusted
only when that error is far below the distances (``minimiser_err``). The theorem's rates are upper
bounds; on this model both squared distances are :math:`\Theta(\sigma^4)` while no eigenvalue is
thresholded to zero (σ²(d+1+r) below Y's smallest eigenvalue), so slope 4 is within both bounds.
As in :mod:`noisereg.experiments.nuclear` the gradient noise is averaged out by a harmonic step-size
decay over the second half and a Polyak average of Φ over the last ``avg_frac`` of the steps.

Settings (cpu preset): d = 8, r = 12, Y with eigenvalues (4, 2.5, 1.5, 0.6, 0.08, 0.04, 0.02,
0.01) in a random basis plus symmetric noise 0.02; σ ∈ {0.1, 0.2}; lr 0.02, 20 000 steps.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from noisereg.closed_form import psd_full_noise_risk, psd_soft_threshold, psd_trace_penalty
from noisereg.constraints import Checked, Each, Interval, Rule
from noisereg.verdicts import every_seed
from noisereg.sweep.experiment import Experiment, Job
from noisereg.experiments.nuclear import one_thread
from noisereg.plotting.style import figure, save, style
from noisereg.experiments.variance import slope
from noisereg.injection import NoiseInjector, check_sigma
from noisereg.models import PSDFactorization
from noisereg.training.batched_gd import Setup
from noisereg.training.noisy_gd import POSITIVE, every
from noisereg.training.settings import POSITIVE_INT, SEED, SEEDS, SIGMA


THEOREM2 = "Theorem 2"   # the variant of the Theorem 2 points (minimisers of R_σ and R_σ^eff, no training)


def psd_objective(Y: torch.Tensor, Phi: torch.Tensor, c: float) -> torch.Tensor:
    """½||Y − Φ||_F² + c·tr Φ."""
    return 0.5 * (Y - Phi).pow(2).sum() + c * torch.trace(Phi)


@dataclass(frozen=True)
class PSDConfig(Checked):
    """Settings of the PSD experiment (see the module docstring)."""

    d: int = 8
    r: int = 12                       # factor width, r >= d
    eigs: tuple[float, ...] = (4.0, 2.5, 1.5, 0.6, 0.08, 0.04, 0.02, 0.01)   # eigenvalues of clean Y
    noise: float = 0.02               # std of the symmetric noise added to Y
    sigmas: tuple[float, ...] = (0.1, 0.2)
    lr: float = 0.02
    steps: int = 20000
    lr_ratio: float = 10.0            # lr decays harmonically to lr / lr_ratio over the second half
    avg_frac: float = 0.5             # Polyak-average Φ over this last fraction of the steps
    seeds: tuple[int, ...] = (0, 1, 2)   # initialisation and noise draws: a verdict needs 3 (verdicts.every_seed)
    data_seed: int = 0
    eval_every: int = 200
    theorem2_sigmas: tuple[float, ...] = (0.0025, 0.005, 0.01, 0.02)   # () skips the Theorem 2 measurement

    CONSTRAINTS = {"d": POSITIVE_INT, "r": POSITIVE_INT, "eigs": Each(Interval()), "noise": Interval(0),
                   "sigmas": Each(SIGMA), "lr": POSITIVE, "steps": POSITIVE_INT, "lr_ratio": Interval(1),
                   "avg_frac": Interval(0, 1, low_open=True), "seeds": SEEDS, "data_seed": SEED,
                   "eval_every": POSITIVE_INT, "theorem2_sigmas": Each(Interval(0, low_open=True), empty=True, unique=True)}
    RULES = (Rule(("r", "d"), "r must be >= d (every PSD matrix is some wwᵀ)", lambda c: c.r >= c.d),
             Rule(("eigs", "d"), "len(eigs) must equal d", lambda c: len(c.eigs) == c.d),
             Rule(("theorem2_sigmas", "eigs"), "theorem2_sigmas need eigs >= 0 (φ* = Y must be PSD, i.e. reachable; "
                  "pass --set theorem2_sigmas= to skip Theorem 2)",
                  lambda c: not c.theorem2_sigmas or min(c.eigs) >= 0))


def make_target(cfg, clean: bool = False) -> torch.Tensor:
    """Y = V diag(eigs) Vᵀ + noise·(N + Nᵀ)/√2 (float64, symmetric); without the noise when ``clean``."""
    g = torch.Generator().manual_seed(cfg.data_seed)
    V, _ = torch.linalg.qr(torch.randn(cfg.d, cfg.d, generator=g, dtype=torch.float64))
    N = torch.randn(cfg.d, cfg.d, generator=g, dtype=torch.float64)
    Y = (V * torch.tensor(cfg.eigs, dtype=torch.float64)) @ V.T
    return Y if clean else Y + cfg.noise * (N + N.T) / 2**0.5


def minimise(objective, w0: torch.Tensor, rounds: int = 20) -> tuple[torch.Tensor, float]:
    """L-BFGS (strong Wolfe line search) on ``objective(w)`` from ``w0``: (w, final gradient norm)."""
    w = w0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([w], lr=1, max_iter=5000, tolerance_grad=1e-15, tolerance_change=0, history_size=50,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = objective(w)
        loss.backward()
        return loss

    for _ in range(rounds):   # restarts: one call stops at its line search's precision
        opt.step(closure)
    return w.detach(), float(torch.autograd.grad(objective(w), w)[0].norm())


@one_thread()
def theorem2_point(cfg, sigma: float, *, checkpoint=None, resume: bool = False) -> dict:
    """Theorem 2 at ``sigma``: squared distances between the images of the minimisers of R_σ and R_σ^eff
    and φ* = Y (clean Y: the model interpolates). Computed in one go (``checkpoint``, ``resume`` unused)."""
    Y = make_target(cfg, clean=True)
    w0 = 0.5 * torch.randn(cfg.d, cfg.r, generator=torch.Generator().manual_seed(cfg.data_seed + 1),
                           dtype=torch.float64)
    ca, cb = thresholds(cfg, sigma)
    wb, grad_b = minimise(lambda w: psd_full_noise_risk(Y, w, sigma), w0)
    wa, grad_a = minimise(lambda w: 0.5 * (Y - w @ w.T).pow(2).sum() + psd_trace_penalty(w, sigma), w0)
    Pb, Pa = wb @ wb.T, wa @ wa.T
    sq = lambda A: float(A.pow(2).sum())  # noqa: E731
    err = max(float(torch.linalg.matrix_norm(Pb - psd_soft_threshold(Y, cb))),
              float(torch.linalg.matrix_norm(Pa - psd_soft_threshold(Y, ca))))
    final = {"dist2_star": sq(Pb - Y), "dist2_pair": sq(Pb - Pa), "minimiser_err": err,
             "grad_norm": max(grad_a, grad_b), "thresholded": int((torch.tensor(cfg.eigs) <= cb).sum())}
    return {"method": "full", "sigma": float(sigma), "seed": cfg.data_seed, "final": final,
            "history": [{"step": 0, **final}]}


def thresholds(cfg, sigma: float) -> tuple[float, float]:
    """(c_a, c_b) = (σ²(d+1), σ²(d+1+r)): trace weights of the effective and the exact smoothed risk."""
    sigma = check_sigma(sigma)
    return sigma**2 * (cfg.d + 1), sigma**2 * (cfg.d + 1 + cfg.r)


def setup_run(cfg, method: str, sigma: float, seed: int) -> Setup:
    """Noisy (full) or plain GD on Φ = wwᵀ, ready to train (per run or batched)."""
    Y = make_target(cfg)
    sref = max(cfg.sigmas) if method == "gd" else sigma       # plain GD is compared with the largest σ
    ca, cb = thresholds(cfg, sref)
    Phi_a, Phi_b = psd_soft_threshold(Y, ca), psd_soft_threshold(Y, cb)
    net = PSDFactorization(cfg.d, cfg.r, generator=torch.Generator().manual_seed(1000 + seed)).double()
    inj = NoiseInjector(net, sigma=0.0 if method == "gd" else sigma, mode="full", seed=seed)
    eye = torch.eye(cfg.d, dtype=torch.float64)
    rel = lambda P, ref: float(torch.linalg.matrix_norm(P - ref) / torch.linalg.matrix_norm(ref))  # noqa: E731
    product = lambda: net.w @ net.w.T  # noqa: E731

    def evaluate(t, avg):
        P = product()
        h = {"rel_err_b": rel(P, Phi_b), "rel_err_a": rel(P, Phi_a), "train_loss": float(0.5 * (Y - P).pow(2).sum())}
        return h if avg is None else {**h, "rel_err_b_avg": rel(avg, Phi_b), "rel_err_a_avg": rel(avg, Phi_a)}

    def finish(out):
        with torch.no_grad():
            P_last = product()
        P = out["average"] if method != "gd" else P_last
        eig = lambda A: torch.linalg.eigvalsh(A).flip(0).tolist()  # noqa: E731
        return {
            "method": method, "sigma": float(0.0 if method == "gd" else sigma), "seed": seed,
            "final": {"rel_err_b": rel(P, Phi_b), "rel_err_a": rel(P, Phi_a), "rel_err_b_last": rel(P_last, Phi_b),
                      "rel_ab": rel(Phi_a, Phi_b), "train_loss": float(0.5 * (Y - P).pow(2).sum()),
                      "reg_loss": float(psd_objective(Y, P, cb)), "reg_loss_b": float(psd_objective(Y, Phi_b, cb))},
            "history": out["history"], "compared_sigma": float(sref), "c_a": ca, "c_b": cb,
            "eig": eig(P), "eig_a": eig(Phi_a), "eig_b": eig(Phi_b), "eig_y": eig(Y),
            "averaging": (f"harmonic lr decay {cfg.lr:g} -> {cfg.lr / cfg.lr_ratio:g} over the second half; "
                          f"Polyak average of Φ over the last {cfg.avg_frac:.0%} of {cfg.steps} steps"
                          if method != "gd" else "none (last iterate)"),
        }

    return Setup(net, inj, lambda: 0.5 * (Y - net(eye)).pow(2).sum(),
                 dict(steps=cfg.steps, lr=cfg.lr, schedule="harmonic", lr_final=cfg.lr / cfg.lr_ratio, average=product,
                      average_from=1 - cfg.avg_frac, evaluate=evaluate, eval_steps=every(cfg.eval_every, cfg.steps)),
                 finish, batched_loss=lambda p: 0.5 * (Y - p["w"] @ p["w"].mT).pow(2).sum((1, 2)))


@one_thread()
def train_run(cfg, method: str, sigma: float, seed: int, *, checkpoint=None, resume: bool = False) -> dict:
    """Noisy (full) or plain GD on Φ = wwᵀ (the per-run path); returns the run record."""
    return setup_run(cfg, method, sigma, seed).run(checkpoint, resume)


class PSD(Experiment):
    name = "psd"
    order = 12
    description = "PSD factorization wwᵀ: noisy GD soft-thresholds eigenvalues at the exact-risk level σ²(d+1+r)"
    Config = PSDConfig
    metrics = ("rel_err_b", "dist2_star", "dist2_pair")
    PRESETS = {
        "smoke": dict(d=4, r=6, eigs=(3.0, 1.0, 0.05, 0.02), sigmas=(0.2,), steps=300, eval_every=50,
                      theorem2_sigmas=(0.005, 0.01), seeds=(0,)),
        "cpu": dict(),
        "demo": dict(),
    }

    def data(self, cfg, data, data_dir):
        self.own_data_only(data, data_dir)
        return (f"synthetic symmetric Y ({cfg.d}×{cfg.d}), eigenvalues {tuple(cfg.eigs)} in a random basis "
                f"+ symmetric noise {cfg.noise:g}; w ∈ R^{cfg.d}×{cfg.r}")

    def runs(self, cfg):
        jobs = [Job(f"gd-s{seed}", "gd", lambda seed=seed, **kw: train_run(cfg, "gd", 0.0, seed, **kw),
                    params={"method": "gd", "sigma": 0.0, "seed": seed},
                    batch=("psd", functools.partial(setup_run, cfg, "gd", 0.0, seed))) for seed in cfg.seeds]
        jobs += [Job(f"full-sigma{sigma:g}-s{seed}", f"sigma {sigma:g}",
                     lambda sigma=sigma, seed=seed, **kw: train_run(cfg, "full", sigma, seed, **kw),
                     params={"method": "full", "sigma": sigma, "seed": seed},
                     batch=("psd", functools.partial(setup_run, cfg, "full", sigma, seed)))
                 for sigma in cfg.sigmas for seed in cfg.seeds]
        jobs += [Job(f"theorem2-sigma{sigma:g}", THEOREM2, functools.partial(theorem2_point, cfg, sigma),
                     params={"method": "full", "sigma": sigma, "seed": cfg.data_seed, "part": "theorem2"})
                 for sigma in cfg.theorem2_sigmas]
        return jobs

    def figures(self, cfg):
        return [{"file": "psd.png", "kind": "custom",
                 "title": "Φ = wwᵀ: noisy GD vs eigenvalue soft-thresholding at σ²(d+1) (a) and σ²(d+1+r) (b)"}]

    def draw(self, results, spec, out):
        runs = results["runs"]
        noisy = [r for r in runs if r["method"] == "full" and r["variant"] != THEOREM2]
        fig, ax = figure(1, len(noisy) + 1, size=(4.6, 3.8))
        gd = [r for r in runs if r["method"] == "gd"]
        for j, r in enumerate(noisy):
            a = ax[0, j]
            idx = range(1, len(r["eig"]) + 1)
            a.plot(idx, r["eig_y"], "x", color="gray", label="eigenvalues of Y")
            a.plot(idx, r["eig_a"], "_", color="C3", ms=16, mew=2, label=f"(a) effective risk, c = {r['c_a']:.3g}")
            a.plot(idx, r["eig_b"], "_", color="k", ms=22, mew=2, label=f"(b) exact R_σ, c = {r['c_b']:.3g}")
            a.plot(idx, r["eig"], "o", color=style("full")["color"], mfc="none", label="GD+noise (Polyak average)")
            for g in gd:
                a.plot(idx, g["eig"], style("gd")["marker"], color=style("gd")["color"], ms=4, label="plain GD")
            a.set_yscale("symlog", linthresh=1e-2)
            a.set(xlabel="index i", ylabel="eigenvalue of Φ", title=f"σ = {r['sigma']:g}")
            a.legend(fontsize=7)
        a = ax[0, -1]
        for k, r in enumerate(noisy):
            h = [x for x in r["history"] if "rel_err_b_avg" in x]
            a.plot([x["step"] for x in r["history"]], [x["rel_err_b"] for x in r["history"]], color=f"C{k}",
                   lw=0.7, alpha=0.4)
            a.plot([x["step"] for x in h], [x["rel_err_b_avg"] for x in h], color=f"C{k}", lw=2,
                   label=f"σ={r['sigma']:g}: vs (b) (thin: iterate, thick: average)")
            a.plot([x["step"] for x in h], [x["rel_err_a_avg"] for x in h], color=f"C{k}", lw=2, ls="--",
                   label=f"σ={r['sigma']:g}: average vs (a)")
        a.axhline(0.05, color="gray", lw=0.8, label="5% target")
        a.set(yscale="log", xlabel="GD step", ylabel="||Φ − Φ_ref||_F / ||Φ_ref||_F", title="relative error")
        a.legend(fontsize=7)
        return save(fig, out / spec["file"], spec.get("title"))

    def claims(self, results):
        rows = []
        cfg = results["config"]
        noisy = [r for r in results["runs"] if r["method"] == "full" and r["variant"] != THEOREM2]
        by_sigma = {}
        for r in sorted(noisy, key=lambda r: r["seed"]):
            by_sigma.setdefault(r["sigma"], []).append(r)
        for sigma, rs in by_sigma.items():  # one row per σ, judged on every seed (verdicts.every_seed)
            r, f = rs[0], rs[0]["final"]
            errs = {x["seed"]: x["final"]["rel_err_b"] for x in rs}
            rows.append({
                "claim": (f"noisy GD (full, σ = {sigma:g}, {cfg['steps']} steps, lr {cfg['lr']:g}; "
                          f"{r['averaging']}) finds the minimiser of the exact smoothed risk, eigenvalues of Y "
                          f"soft-thresholded at σ²(d+1+r) = {r['c_b']:.3g} (relative error ≤ 5%)"),
                "paper": "trace penalty (Sec. 2.5); O(σ²) only (Thm. 2, D²Φ[I] = 2rI ≠ 0)",
                "ours": (f"rel. error vs (b) by seed {', '.join(f'{e:.3g} (seed {k})' for k, e in errs.items())}; "
                         f"seed {r['seed']}: vs (a) σ²(d+1) = {r['c_a']:.3g}: {f['rel_err_a']:.3g} ((a) vs (b): "
                         f"{f['rel_ab']:.3g}); eigenvalues {', '.join(f'{v:.3g}' for v in r['eig'][:5])} vs (b) "
                         f"{', '.join(f'{v:.3g}' for v in r['eig_b'][:5])}, (a) "
                         f"{', '.join(f'{v:.3g}' for v in r['eig_a'][:5])}"),
                "verdict": every_seed(errs, lambda e: e <= 0.05)})
        if noisy:
            closer = all(r["final"]["rel_err_b"] < r["final"]["rel_err_a"] for r in noisy)
            rows.append({
                "claim": "noisy GD matches the exact smoothed risk (b), not the second-order effective risk (a)",
                "paper": "not stated (only O(σ²) closeness)",
                "ours": "; ".join(f"σ = {s:g}: " + ", ".join(f"{x['final']['rel_err_b']:.3g} vs {x['final']['rel_err_a']:.3g}"
                                                          for x in rs) for s, rs in by_sigma.items())
                        + f" ((b) closer at every σ and seed: {'yes' if closer else 'no'})",
                "verdict": "measured"})  # the paper claims nothing here: a measurement, not a verdict
        return rows + theorem2_claims(results)


def theorem2_claims(results) -> list[dict]:
    """Theorem 2's two rates, judged on the fitted log-log slopes of the squared distances: reproduced
    when a slope is at least the theorem's exponent (2, 3) less 0.1 and the minimisers were found to a
    precision far below the distances (error < 1 % of the smallest distance); fewer than 2 σ: not run. The minimisers
    are found by L-BFGS on the closed-form smoothed risk, with no seed or noise draw: agreement reads "computed"."""
    pts = sorted((r["sigma"], r["final"]) for r in results["runs"] if r["variant"] == THEOREM2)
    if not pts:
        return []
    sig = [s for s, _ in pts]
    ok_min = all(f["minimiser_err"] < 0.01 * min(f["dist2_star"], f["dist2_pair"]) ** 0.5 for _, f in pts)
    rows = []
    for key, bound, what in (("dist2_star", 2, "‖Φ(w*σ) − φ*‖²"), ("dist2_pair", 3, "‖Φ(w*σ) − Φ(w̃σ)‖²")):
        sl = slope(sig, [f[key] for _, f in pts])
        ours = (f"slope {sl:.2f} over σ = {', '.join(f'{s:g}' for s in sig)} (values "
                f"{', '.join(f'{f[key]:.3g}' for _, f in pts)}); minimisers by L-BFGS, max error vs the closed-form "
                f"minimiser {max(f['minimiser_err'] for _, f in pts):.2g} (Frobenius)")
        if len(pts) < 2:
            verdict = "not run at this scale"
        elif not ok_min:
            verdict, ours = "inconclusive", ours + "; minimisers not found precisely enough to fit the rate"
        else:
            # minimisers of the closed-form smoothed risk by a deterministic solver: no seed or noise draw enters
            verdict = "computed" if sl >= bound - 0.1 else "inconclusive" if math.isnan(sl) else "not reproduced"
        rows.append({"claim": f"Theorem 2 on Φ = wwᵀ with φ* = Y reachable: {what} = O(σ^{bound})",
                     "paper": f"slope ≥ {bound} (an upper bound)", "ours": ours, "verdict": verdict})
    return rows
