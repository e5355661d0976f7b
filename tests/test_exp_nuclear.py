"""Experiments ``nuclear`` (Eq. (10)) and ``psd`` (Sec. 2.5): smoke runs, reports, closed-form solvers."""

import json
import math

import pytest
import torch

from noisereg.closed_form import linear_net_penalty, nuclear_norm_penalty, psd_full_noise_risk, psd_trace_penalty
from noisereg.experiments import EXPERIMENTS
from noisereg.experiments.base import run_experiment
from noisereg.experiments.nuclear import Nuclear, kkt_residual, nuclear_solution, objective
from noisereg.experiments.psd import PSD, psd_objective, psd_soft_threshold, thresholds

DT = torch.float64


def _problem(seed=0, n=30, d0=5, d2=4):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d0, generator=g, dtype=DT)
    M = torch.randn(d2, 2, generator=g, dtype=DT) @ torch.randn(2, d0, generator=g, dtype=DT)
    return X, X @ M.T + 0.3 * torch.randn(n, d2, generator=g, dtype=DT)


# ------------------------------------------------------------------------------ smoke runs
@pytest.mark.parametrize("exp_cls", [Nuclear, PSD], ids=["nuclear", "psd"])
def test_smoke_run_and_report(exp_cls, tmp_path, monkeypatch):
    exp = exp_cls()
    monkeypatch.setitem(EXPERIMENTS, exp.name, exp)       # registered in __init__ separately
    res = run_experiment(exp, "smoke", tmp_path, show_progress=False)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["experiment"] == exp.name and saved["preset"] == "smoke"
    assert len(saved["runs"]) == len(exp.runs(exp.config("smoke")))
    for r in saved["runs"]:
        assert r["method"] in ("gd", "full", "layer") and isinstance(r["sigma"], float)
        assert isinstance(r["seed"], int) and r["history"] and all("step" in h for h in r["history"])
        assert all(math.isfinite(v) for v in r["final"].values())
    assert {r["method"] for r in saved["runs"]} == ({"gd", "full", "layer"} if exp_cls is Nuclear else {"gd", "full"})
    from noisereg.report import write_report

    report = write_report(tmp_path, [res])
    png = tmp_path / exp.figures(res["config"])[0]["file"]
    assert png.exists() and png.stat().st_size > 5000
    rows = exp.claims(saved)
    assert rows and all(row["verdict"] in ("reproduced", "not reproduced") for row in rows)
    assert all(set(row) == {"claim", "paper", "ours", "verdict"} for row in rows)
    assert "| claim (paper) |" in report.read_text()


@pytest.mark.parametrize("exp_cls", [Nuclear, PSD], ids=["nuclear", "psd"])
def test_data_rejects_external_data(exp_cls):
    exp = exp_cls()
    with pytest.raises(ValueError, match=f"{exp.name} uses its own synthetic data"):
        exp.data(exp.config("smoke"), "mnist", None)
    assert "synthetic" in exp.data(exp.config("smoke"), None, None)


# ---------------------------------------------------------------------- Eq. (10) solver
@pytest.mark.parametrize("sigma", [0.15, 0.3, 0.5], ids=lambda s: f"sigma{s}")
def test_svt_beats_random_perturbations(sigma):
    X, Y = _problem(seed=1)
    M = nuclear_solution(X, Y, sigma)
    f0 = objective(X, Y, M, sigma)
    g = torch.Generator().manual_seed(2)
    for scale in (1e-4, 1e-2, 1e-1):
        for _ in range(100):
            D = torch.randn(M.shape, generator=g, dtype=DT)
            assert objective(X, Y, M + scale * D, sigma) >= f0 - 1e-12
    assert kkt_residual(X, Y, M, sigma) < 1e-10
    assert kkt_residual(X, Y, 0.9 * M, sigma) > 1e-3          # the certificate can fail


def test_svt_rank_drops_with_sigma():
    X, Y = _problem(seed=3)
    ranks = [int(torch.linalg.matrix_rank(nuclear_solution(X, Y, s))) for s in (0.0, 0.3, 3.0)]
    assert ranks[0] == 4 and ranks[1] == 2 and ranks[2] == 0


def test_svt_objective_decomposition_and_penalty():
    """n·F(M) = ½||YᵀQ − B||² + τ||B||_* + ½||Yᵀ(I − QQᵀ)||² with τ = σ²√d2||X||_F, B = MRᵀ."""
    X, Y = _problem(seed=4)
    sigma, n, d2 = 0.3, X.shape[0], Y.shape[1]
    M = nuclear_solution(X, Y, sigma)
    Q, R = torch.linalg.qr(X)
    B = M @ R.T
    tau = sigma**2 * math.sqrt(d2) * torch.linalg.matrix_norm(X)
    pen = nuclear_norm_penalty(X, M, d2, sigma)
    torch.testing.assert_close(pen, tau / n * torch.linalg.matrix_norm(B, ord="nuc"), rtol=1e-12, atol=0)
    const = 0.5 * (Y.T - Y.T @ Q @ Q.T).pow(2).sum()
    rhs = 0.5 * (Y.T @ Q - B).pow(2).sum() + tau * torch.linalg.matrix_norm(B, ord="nuc") + const
    torch.testing.assert_close(n * objective(X, Y, M, sigma), rhs, rtol=1e-12, atol=0)


def test_svt_equals_minimiser_over_factorizations():
    """Independent route: L-BFGS on R + Eq. (9) over (W1, W2) reaches the same M (Eq. (9) → (10))."""
    X, Y = _problem(seed=5, n=25, d0=4, d2=3)
    sigma = 0.3
    g = torch.Generator().manual_seed(6)
    W1 = (0.5 * torch.randn(6, 4, generator=g, dtype=DT)).requires_grad_()
    W2 = (0.5 * torch.randn(3, 6, generator=g, dtype=DT)).requires_grad_()
    opt = torch.optim.LBFGS([W1, W2], lr=1, max_iter=3000, tolerance_grad=1e-13, tolerance_change=1e-16,
                            history_size=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = (Y.T - W2 @ W1 @ X.T).pow(2).sum() / (2 * X.shape[0]) + linear_net_penalty(X, W1, W2, sigma)
        loss.backward()
        return loss

    opt.step(closure)
    M = nuclear_solution(X, Y, sigma)
    torch.testing.assert_close((W2 @ W1).detach(), M, rtol=0, atol=1e-5)
    torch.testing.assert_close(closure().detach(), objective(X, Y, M, sigma), rtol=1e-9, atol=0)


def test_nuclear_solution_rejects_rank_deficient_X():
    X, Y = _problem(seed=7)
    X = torch.cat([X[:, :2], X[:, :1]], dim=1)
    with pytest.raises(ValueError, match="X must have full column rank 3"):
        nuclear_solution(X, Y, 0.1)


# ------------------------------------------------------------------------------ PSD solver
def _sym(seed, d=6):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(d, d, generator=g, dtype=DT)
    return A @ A.T / d - 0.3 * torch.eye(d, dtype=DT), g


@pytest.mark.parametrize("c", [0.0, 0.2, 1.0], ids=lambda c: f"c{c}")
def test_psd_soft_threshold_beats_random_psd_points(c):
    Y, g = _sym(8)
    P = psd_soft_threshold(Y, c)
    assert torch.linalg.eigvalsh(P).min() > -1e-12
    f0 = psd_objective(Y, P, c)
    for scale in (1e-3, 1e-1, 1.0):
        for _ in range(100):
            G = torch.randn(6, 6, generator=g, dtype=DT)
            S = P + scale * (G + G.T)
            lam, V = torch.linalg.eigh(S)
            Pp = (V * lam.clamp_min(0)) @ V.T            # a random PSD point near P
            assert psd_objective(Y, Pp, c) >= f0 - 1e-12


def test_thresholds_match_closed_forms():
    """c_a, c_b are the trace weights of psd_trace_penalty and psd_full_noise_risk."""
    cfg = PSD().config("smoke")
    sigma = 0.3
    ca, cb = thresholds(cfg, sigma)
    Y, g = _sym(9, cfg.d)
    w = torch.randn(cfg.d, cfg.r, generator=g, dtype=DT)
    Phi = w @ w.T
    torch.testing.assert_close(psd_trace_penalty(w, sigma), ca * torch.trace(Phi), rtol=1e-12, atol=0)
    d, r = cfg.d, cfg.r
    expected = psd_objective(Y, Phi, cb) - sigma**2 * r * torch.trace(Y) + 0.5 * sigma**4 * d * r * (d + r + 1)
    torch.testing.assert_close(psd_full_noise_risk(Y, w, sigma), expected, rtol=1e-12, atol=0)


def test_psd_soft_threshold_rejects_asymmetric():
    Y = torch.tensor([[1.0, 2.0], [0.0, 1.0]], dtype=DT)
    with pytest.raises(ValueError, match="Y must be symmetric"):
        psd_soft_threshold(Y, 0.1)
