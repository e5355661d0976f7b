"""Closed forms (nr.closed_form) against the library's own ggn_trace and smoothed_risk, float64.

Exact identities at rtol 1e-10; Monte-Carlo ones within 4 standard errors (fixed seeds).
"""

import pytest
import torch

import noisereg as nr
from noisereg import closed_form as cf
from noisereg.models import MLP, DeepLinearNet, DiagonalNet, PSDFactorization

DT = torch.float64
SIGMA = 0.2


def data(n, d0, d2, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d0, generator=g, dtype=DT), torch.randn(n, d2, generator=g, dtype=DT)


def diagonal(seed=0, d=6, n=5):
    g = torch.Generator().manual_seed(seed)
    net = DiagonalNet(d).to(DT)
    with torch.no_grad():
        net.w1.copy_(torch.randn(d, generator=g))
        net.w2.copy_(torch.randn(d, generator=g))
    X, Y = data(n, d, 1, seed)
    return net, X, Y


def test_diagonal_net_penalty_is_half_sigma2_ggn_trace_and_full_noise_risk():
    net, X, Y = diagonal()
    pen = cf.diagonal_net_penalty(X, net.w1.detach(), net.w2.detach(), SIGMA).item()
    assert pen == pytest.approx(SIGMA ** 2 / 2 * nr.ggn_trace(net, X, Y), rel=1e-10)
    exact = cf.diagonal_net_full_noise_risk(X, Y[:, 0], net.w1.detach(), net.w2.detach(), SIGMA).item()
    est, se = nr.smoothed_risk(net, X, Y, sigma=SIGMA, mode="full", num_samples=40000, seed=0)
    assert abs(est - exact) < 4 * se


@pytest.mark.parametrize("widths", [(4, 7, 3), (3, 5, 4, 2)], ids=["M=2", "M=3"])
def test_linear_nets_penalty_ggn_and_layerwise_risk(widths):
    torch.manual_seed(1)
    net = DeepLinearNet(widths).to(DT)
    X, Y = data(9, widths[0], widths[-1], seed=2)
    Ws = [W.detach() for W in net.weights]
    pen = cf.deep_linear_penalty(X, Ws, SIGMA).item()
    assert pen == pytest.approx(SIGMA ** 2 / 2 * nr.ggn_trace(net, X, Y), rel=1e-10)
    assert nr.effective_risk(net, X, Y, sigma=SIGMA) == pytest.approx(nr.risk(net, X, Y) + pen, rel=1e-10)
    est, se = nr.smoothed_risk(net, X, Y, sigma=SIGMA, mode="layer", num_samples=30000, seed=3)
    assert abs(est - cf.deep_linear_layer_risk(X, Y, Ws, SIGMA).item()) < 4 * se
    if len(Ws) == 2:
        assert pen == pytest.approx(cf.linear_net_penalty(X, *Ws, SIGMA).item(), rel=1e-12)
        assert cf.linear_net_layer_risk(X, Y, *Ws, SIGMA).item() == pytest.approx(nr.risk(net, X, Y) + pen, rel=1e-12)
        est, se = nr.smoothed_risk(net, X, Y, sigma=SIGMA, mode="full", num_samples=40000, seed=4)
        assert abs(est - cf.linear_net_full_noise_risk(X, Y, *Ws, SIGMA).item()) < 4 * se


def test_relu_net_penalty_is_half_sigma2_ggn_trace():
    torch.manual_seed(2)
    net = MLP(5, (12,), 3, bias=False).to(DT)
    X, Y = data(8, 5, 3, seed=5)
    pen = cf.relu_net_penalty(X, net[1].weight.detach(), net[3].weight.detach(), SIGMA).item()
    assert pen == pytest.approx(SIGMA ** 2 / 2 * nr.ggn_trace(net, X, Y), rel=1e-10)


def test_psd_trace_penalty_against_ggn_trace():
    """Φ = wwᵀ as a (d, d) prediction: n = d rows, so our loss is 1/(2d)||Y − Φ||² = (1/d)·(½||Y − Φ||²)."""
    d, r = 4, 6
    net = PSDFactorization(d, r, generator=torch.Generator().manual_seed(0)).to(DT)
    Y = torch.zeros(d, d, dtype=DT)
    ggn = nr.ggn_trace(net, torch.eye(d, dtype=DT), Y)
    assert cf.psd_trace_penalty(net.w.detach(), SIGMA).item() == pytest.approx(d * SIGMA ** 2 / 2 * ggn, rel=1e-10)
