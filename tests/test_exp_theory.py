"""The variance and taylor experiments: smoke runs, and their estimators against exact values."""

import math

import pytest
import torch

import noisereg as nr
from noisereg.sweep import EXPERIMENTS, run_experiment
from noisereg.experiments.taylor import taylor_gap
from noisereg.experiments.variance import gradient_variance, mean_field, slope
from noisereg.models import DeepLinearNet
from noisereg.report import write_report


@pytest.mark.parametrize("name", ["variance", "taylor"])
def test_smoke(name, tmp_path):
    res = run_experiment(EXPERIMENTS[name], "smoke", tmp_path, show_progress=False)
    assert res["runs"] and all({"method", "sigma", "seed", "final", "history"} <= set(r) for r in res["runs"])
    write_report(tmp_path, [res])
    assert (tmp_path / f"{name}.png").stat().st_size > 5000
    assert EXPERIMENTS[name].claims(res)
    with pytest.raises(ValueError, match=f"{name} uses its own synthetic data"):
        EXPERIMENTS[name].data(EXPERIMENTS[name].config("smoke"), "x.npz", None)


def test_slope_fit():
    assert slope([1, 10, 100], [2, 20, 200]) == pytest.approx(1.0)
    assert math.isnan(slope([1], [1]))


def test_taylor_gap_is_exactly_zero_for_a_linear_model_and_sigma4_for_two_layers():
    torch.manual_seed(0)
    x, y = torch.randn(12, 4, dtype=torch.float64), torch.randn(12, 1, dtype=torch.float64)
    lin = torch.nn.Linear(4, 1).double()
    gap, se = taylor_gap(lin, x, y, 0.3, 200, 0)
    assert abs(gap) < 1e-12 and se < 1e-12  # Φ linear in w: R_σ = R_eff exactly
    net = DeepLinearNet((4, 6, 1)).double()
    sigma = 0.3  # two layers: R_σ − R_eff = σ⁴·d1·d2·||X||²/(2n) exactly (Sec. 3.1)
    gap, se = taylor_gap(net, x, y, sigma, 20000, 1)
    exact = sigma ** 4 * 6 * 1 * x.pow(2).sum().item() / (2 * 12)
    assert abs(gap - exact) < 4 * se


def test_gradient_variance_of_full_noise_matches_a_loop():
    model = mean_field((3, 5, 1), 0, relu=True)
    x, y = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 1, dtype=torch.float64)
    v = gradient_variance(model, x, y, 0.2, "full", 4000, 0)
    ref = _loop_variance(model, x, y, "full")
    assert v == pytest.approx(ref, rel=0.1)  # two independent 4000-sample estimates of the same variance


def _loop_variance(model, x, y, mode):
    """The variance of 4000 noisy gradients (summed over parameters), drawn one by one with the injector."""
    inj = nr.NoiseInjector(model, 0.2, mode=mode, seed=7)
    grads = []
    for _ in range(4000):
        model.zero_grad()
        with inj.perturb():
            nr.losses.loss_value("square", model(x), y).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    return torch.stack(grads).var(0).sum().item()


def test_gradient_variance_of_layer_noise_matches_a_loop():
    """Layer branch: one layer at random with std σ√M (the injector's law), against the injector's
    own noisy gradients; the full-noise value (12 % higher here) lies outside the 6 % band."""
    model = mean_field((3, 5, 1), 0, relu=True)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 3, generator=gen, dtype=torch.float64), torch.randn(8, 1, generator=gen, dtype=torch.float64)
    v = gradient_variance(model, x, y, 0.2, "layer", 4000, 0)
    ref = _loop_variance(model, x, y, "layer")
    assert v == pytest.approx(ref, rel=0.06)
    assert gradient_variance(model, x, y, 0.2, "full", 4000, 0) != pytest.approx(ref, rel=0.06)


# ------------------------------------------------------------------ issue 18: the new measurements


def test_theorem2_minimisers_match_the_closed_form_distances():
    """L-BFGS minimisers of the exact R_σ and R_σ^eff on Φ = wwᵀ give the squared distances of the
    soft-thresholdings: Σ min(λ, c_b)² to φ* = Y and Σ (max(λ − c_b, 0) − max(λ − c_a, 0))² between them."""
    from noisereg.experiments.psd import PSD, theorem2_point, thresholds

    cfg = PSD().config("smoke")
    lam = torch.tensor(cfg.eigs, dtype=torch.float64)
    for sigma in cfg.theorem2_sigmas:
        f = theorem2_point(cfg, sigma)["final"]
        ca, cb = thresholds(cfg, sigma)
        star = float(torch.minimum(lam, torch.tensor(cb)).pow(2).sum())
        pair = float(((lam - cb).clamp_min(0) - (lam - ca).clamp_min(0)).pow(2).sum())
        assert f["dist2_star"] == pytest.approx(star, rel=1e-5)
        assert f["dist2_pair"] == pytest.approx(pair, rel=1e-5)
        assert f["minimiser_err"] < 1e-6


def test_layer_gap_is_zero_for_a_deep_linear_net():
    """Φ is linear in each layer: the layer-wise linearisation is exact, the gap is rounding."""
    from noisereg.experiments.taylor import layer_gap
    from noisereg.models import DeepLinearNet

    torch.manual_seed(0)
    net = DeepLinearNet((4, 6, 5, 1)).double()
    x, y = torch.randn(12, 4, dtype=torch.float64), torch.randn(12, dtype=torch.float64)
    gap, se = layer_gap(net, x, y, 0.3, 600, 0)
    assert abs(gap) < 1e-12 and se < 1e-12


def test_layer_gap_agrees_with_smoothed_risk_minus_effective_risk():
    """Two independent Monte-Carlo routes to R̃_σ − R_σ^eff on a ReLU net, within 4 combined standard errors:
    layer_gap (jvp control variate, per-layer strata at std σ√M) and smoothed_risk(mode="layer") − Eq. (6)."""
    import noisereg as nr
    from noisereg.experiments.taylor import layer_gap
    from noisereg.models import MLP

    torch.manual_seed(1)
    net = MLP(3, (8,), 1).double()
    x, y = torch.randn(20, 3, dtype=torch.float64), torch.randn(20, dtype=torch.float64)
    sigma = 0.3
    gap, se = layer_gap(net, x, y, sigma, 40000, 0)
    est, se2 = nr.smoothed_risk(net, x, y, sigma=sigma, mode="layer", num_samples=40000, seed=5)
    other = est - nr.effective_risk(net, x, y, sigma=sigma)
    assert abs(gap) > 10 * se                        # a ReLU net at this σ has a real gap
    assert abs(gap - other) < 4 * (se**2 + se2**2) ** 0.5


def test_variance_depth_points_check_eq11_by_monte_carlo(tmp_path):
    """The deep linear nets' layer-wise excess: Monte Carlo within 4 SE of Eq. (11); full noise grows with depth."""
    from noisereg.sweep import EXPERIMENTS

    exp = EXPERIMENTS["variance"]
    cfg = exp.config("smoke", {"depths": (2, 3), "depth_widths": (8, 32), "mc_samples": 4000})
    runs = {j.id: j for j in exp.runs(cfg)}
    for m in (2, 3):
        f = runs[f"linear-depth{m}-layer-w32"].fn()["final"]
        assert abs(f["excess_mc"] - f["excess_exact"]) < 4 * f["excess_mc_se"]
    full = [runs[f"linear-depth{m}-full-w32"].fn()["final"]["excess"] for m in (2, 3)]
    assert full[1] > full[0]
