"""The variance and taylor experiments: smoke runs, and their estimators against exact values."""

import math

import pytest
import torch

import noisereg as nr
from noisereg.experiments import EXPERIMENTS, run_experiment
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
