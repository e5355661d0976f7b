"""smoothed_risk and effective_risk against exact expectations (float64, fixed seeds, 4 SE)."""

import math

import pytest
import torch
from torch import nn

import noisereg as nr

DT = torch.float64


def linear_net(d0=4, d1=6, d2=2, n=10, seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(d0, d1, bias=False), nn.Linear(d1, d2, bias=False)).to(DT)
    g = torch.Generator().manual_seed(seed + 1)
    return net, torch.randn(n, d0, generator=g, dtype=DT), torch.randn(n, d2, generator=g, dtype=DT)


def test_linear_model_smoothed_risk_is_exactly_quadratic():
    """For Φ linear in w, R_σ = R + σ²/2·tr(GGN) exactly (the loss is quadratic in w)."""
    torch.manual_seed(1)
    lin = nn.Linear(5, 3).to(DT)
    x, y = torch.randn(12, 5, dtype=DT), torch.randn(12, 3, dtype=DT)
    exact = nr.effective_risk(lin, x, y, sigma=0.4)
    est, se = nr.smoothed_risk(lin, x, y, sigma=0.4, num_samples=20000, seed=0)
    assert abs(est - exact) < 4 * se


def test_two_layer_linear_full_noise_has_the_sigma4_term():
    net, x, y = linear_net()
    n, d1, d2, sigma = 10, 6, 2, 0.3
    r, g = nr.risk(net, x, y), nr.ggn_trace(net, x, y)
    exact = r + sigma ** 2 / 2 * g + sigma ** 4 / (2 * n) * d1 * d2 * x.pow(2).sum().item()  # Sec. 3.1
    est, se = nr.smoothed_risk(net, x, y, sigma=sigma, mode="full", num_samples=40000, seed=0)
    assert abs(est - exact) < 4 * se
    # the σ⁴ term is resolved: without it the estimate is many standard errors off
    assert abs(est - (r + sigma ** 2 / 2 * g)) > 8 * se


def test_two_layer_linear_layerwise_is_exactly_effective_risk():
    net, x, y = linear_net(seed=3)
    sigma = 0.3
    est, se = nr.smoothed_risk(net, x, y, sigma=sigma, mode="layer", num_samples=40000, seed=1)
    assert abs(est - nr.effective_risk(net, x, y, sigma=sigma)) < 4 * se


def test_layer_convention_official_equals_paper_with_sigma_over_sqrt_m():
    net, x, y = linear_net()
    a = nr.smoothed_risk(net, x, y, sigma=0.3, mode="layer", num_samples=2000, convention="official", seed=5)
    b = nr.smoothed_risk(net, x, y, sigma=0.3 / math.sqrt(2), mode="layer", num_samples=2000, seed=5)
    assert a == pytest.approx(b, rel=1e-12)


def test_antithetic_pairs_reduce_the_standard_error():
    net, x, y = linear_net()
    # at small σ the first-order term dominates the variance, and ±ε pairs cancel it exactly
    _, se_anti = nr.smoothed_risk(net, x, y, sigma=0.05, num_samples=4000, seed=0)
    _, se_plain = nr.smoothed_risk(net, x, y, sigma=0.05, num_samples=4000, antithetic=False, seed=0)
    assert se_anti < 0.5 * se_plain


def test_relu_net_smoothed_risk_approaches_effective_risk_as_sigma_shrinks():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 1)).to(DT)
    x, y = torch.randn(20, 3, dtype=DT), torch.randn(20, 1, dtype=DT)
    r = nr.risk(net, x, y)
    errs = []
    for sigma in (0.2, 0.1):
        est, se = nr.smoothed_risk(net, x, y, sigma=sigma, num_samples=20000, seed=0)
        excess = est - r
        errs.append(abs(excess - (nr.effective_risk(net, x, y, sigma=sigma) - r)) / excess)
    assert errs[1] < 0.1  # second-order term dominates at small σ


def test_same_seed_same_estimate():
    net, x, y = linear_net()
    assert nr.smoothed_risk(net, x, y, num_samples=100, seed=2) == nr.smoothed_risk(net, x, y, num_samples=100, seed=2)
    assert nr.smoothed_risk(net, x, y, num_samples=100, seed=2) != nr.smoothed_risk(net, x, y, num_samples=100, seed=3)


def test_smoothing_errors():
    net, x, y = linear_net()
    with pytest.raises(ValueError, match="num_samples must give an even number >= 2"):
        nr.smoothed_risk(net, x, y, num_samples=3)
    with pytest.raises(ValueError, match="num_samples must give an even number >= 2"):
        nr.smoothed_risk(net, x, y, mode="layer", num_samples=2)
    with pytest.raises(ValueError, match="mode must be one of"):
        nr.smoothed_risk(net, x, y, mode="all")
    with pytest.raises(ValueError, match="sigma must be a finite number >= 0"):
        nr.smoothed_risk(net, x, y, sigma=-1.0)
    with pytest.raises(ValueError, match="sigma must be a finite number >= 0"):
        nr.effective_risk(net, x, y, sigma=float("nan"))
    with pytest.raises(ValueError, match="loss must be one of"):
        nr.smoothed_risk(net, x, y, loss="hinge")
