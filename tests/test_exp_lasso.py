"""The lasso, grouplasso and logistic experiments: smoke runs, report figures, and their solvers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from noisereg.closed_form import diagonal_net_lasso_objective, diagonal_net_penalty, group_lasso_penalty
from noisereg.experiments import EXPERIMENTS
from noisereg.experiments.base import run_experiment
from noisereg.experiments.grouplasso import GroupLasso, convex_group_lasso
from noisereg.experiments.lasso import Lasso, lasso_kkt_violation, support_counts, weighted_lasso
from noisereg.experiments.logistic import Logistic, l1_max_margin, l2_max_margin, separable_problem

EXPS = {"lasso": Lasso, "grouplasso": GroupLasso, "logistic": Logistic}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Run every experiment's smoke preset once; ``{name: (results, out_dir)}``."""
    out = {}
    for name, cls in EXPS.items():
        d = tmp_path_factory.mktemp(name)
        out[name] = (run_experiment(cls(), "smoke", d, show_progress=False), d)
    return out


@pytest.mark.parametrize("name", list(EXPS))
def test_smoke_results_structure(smoke, name):
    results, out = smoke[name]
    saved = json.loads((out / "results.json").read_text())
    assert saved["experiment"] == name and saved["preset"] == "smoke"
    exp = EXPS[name]()
    assert len(saved["runs"]) == len(exp.runs(exp.config("smoke")))
    for r in saved["runs"]:
        assert r["method"] in ("gd", "full", "layer")
        assert isinstance(r["sigma"], float) and isinstance(r["seed"], int)
        assert r["final"] and all(np.isfinite(v) for v in r["final"].values())
        assert r["history"] and all("step" in h for h in r["history"])


@pytest.mark.parametrize("name", list(EXPS))
def test_smoke_report_and_claims(smoke, name, monkeypatch):
    from noisereg.report import write_report

    results, out = smoke[name]
    monkeypatch.setitem(EXPERIMENTS, name, EXPS[name]())  # registered by the package owner
    report = write_report(out, [results]).read_text()
    spec = EXPS[name]().figures(results["config"])[0]
    assert (out / spec["file"]).stat().st_size > 5000
    claims = EXPS[name]().claims(results)
    assert claims and all(set(c) == {"claim", "paper", "ours", "verdict"} for c in claims)
    assert all(c["verdict"] in ("reproduced", "not reproduced") for c in claims)
    assert all(c["claim"].replace("|", "\\|") in report for c in claims)  # the report escapes | in cells


@pytest.mark.parametrize("name", list(EXPS))
def test_own_data_only(name):
    exp = EXPS[name]()
    with pytest.raises(ValueError, match=f"{name} uses its own synthetic data"):
        exp.data(exp.config("smoke"), "mnist", None)


# --------------------------------------------------------------------------------------- lasso
@pytest.mark.parametrize("seed", [0, 1, 2], ids=lambda s: f"seed{s}")
def test_weighted_lasso_kkt_and_closed_form(seed):
    rng = np.random.default_rng(seed)
    X, y = rng.standard_normal((30, 60)), rng.standard_normal(30)
    sigma = 0.3
    lam = 2 * sigma**2 * (X**2).mean(0)
    beta = weighted_lasso(X, y, lam)
    assert 0 < (beta != 0).sum() < 30
    assert lasso_kkt_violation(X, y, beta, lam) <= 1e-6
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    obj = lambda b: float(diagonal_net_lasso_objective(Xt, yt, torch.from_numpy(b), sigma))  # noqa: E731
    mine = ((y - X @ beta) ** 2).sum() / 60 + lam @ np.abs(beta)
    np.testing.assert_allclose(obj(beta), mine, rtol=1e-12)
    for _ in range(20):  # no nearby point is better
        assert obj(beta) <= obj(beta + 1e-3 * rng.standard_normal(60)) + 1e-12


def test_lasso_kkt_violation_detects_non_optimum():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 5))
    y = X @ np.array([1.0, 0, 0, 0, 0])
    lam = np.full(5, 0.01)
    assert lasso_kkt_violation(X, y, np.zeros(5), lam) > 0.2
    assert support_counts(np.array([0.5, 0.001, -0.2]), np.array([1.0, 0.0, 0.0]), 0.01) == {"tp": 1, "fp": 1, "fn": 0}


def test_weighted_lasso_rejects_nonpositive_weights():
    with pytest.raises(ValueError, match="lasso weights must be > 0"):
        weighted_lasso(np.eye(3), np.ones(3), np.array([1.0, 0.0, 1.0]))


def test_lasso_smoke_compares_with_the_lasso(smoke):
    results, _ = smoke["lasso"]
    for r in results["runs"]:
        assert r["lasso_kkt_violation"] <= 1e-6
        assert r["final"]["lasso_obj_gap"] >= -1e-9  # nothing beats the Lasso minimum
        assert r["final"]["rel_err"] < 0.5


# ---------------------------------------------------------------------------------- grouplasso
def test_group_lasso_kkt_and_objective():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((30, 12))
    y = X[:, :3] @ np.array([1.0, -1.0, 0.5]) + 0.1 * rng.standard_normal(30)
    idx, sigma = [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]], 0.5
    beta, kkt = convex_group_lasso(X, y, idx, sigma)
    assert kkt <= 1e-10
    Xt = torch.from_numpy(X)
    obj = lambda b: ((y - X @ b) ** 2).sum() / 60 + float(group_lasso_penalty(Xt, idx, torch.from_numpy(b), sigma))  # noqa: E731
    for _ in range(20):
        assert obj(beta) <= obj(beta + 1e-3 * rng.standard_normal(12)) + 1e-12
    assert np.linalg.norm(beta[:3]) > 0.5 and not beta[9:].any()


def test_group_lasso_of_singletons_is_the_weighted_lasso():
    """Groups of size one: σ²/n ‖X_j‖² |β_j|, solved by sklearn through weighted_lasso."""
    rng = np.random.default_rng(4)
    X, y = rng.standard_normal((25, 10)), rng.standard_normal(25)
    sigma = 0.4
    beta, _ = convex_group_lasso(X, y, [[j] for j in range(10)], sigma, tol=1e-12)
    ref = weighted_lasso(X, y, sigma**2 * (X**2).sum(0) / 25)
    np.testing.assert_allclose(beta, ref, rtol=1e-6, atol=1e-8)


def test_group_lasso_errors():
    X = np.random.default_rng(0).standard_normal((10, 4))
    with pytest.raises(ValueError, match=r"groups\[1\]\] must have full column rank"):  # column 4 = column 1
        convex_group_lasso(np.hstack([X, X[:, 1:2]]), np.ones(10), [[0], [1, 4], [2, 3]], 0.3)
    with pytest.raises(RuntimeError, match="FISTA did not reach"):
        convex_group_lasso(X, X @ np.ones(4), [[0, 1], [2, 3]], 0.1, tol=1e-14, max_iter=2)


def test_grouplasso_smoke_compares_with_convex(smoke):
    results, _ = smoke["grouplasso"]
    for r in results["runs"]:
        assert r["convex_kkt_violation"] <= 1e-10
        assert r["final"]["objective_gap"] >= -1e-9


# ------------------------------------------------------------------------------------ logistic
def test_dphi_norm_constant_matches_closed_form():
    """‖DΦ(w)‖_F² = 4 Σ_j ‖X_j‖²(w1_j² + w2_j²) = (2n/σ²) · Eq. (7), Jacobian by torch.func."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(7, 5, generator=g, dtype=torch.float64)
    w1, w2 = torch.randn(5, generator=g, dtype=torch.float64), torch.randn(5, generator=g, dtype=torch.float64)
    J1, J2 = torch.func.jacrev(lambda a, b: X @ (a * a - b * b), argnums=(0, 1))(w1, w2)
    dphi = J1.pow(2).sum() + J2.pow(2).sum()
    torch.testing.assert_close(dphi, 4 * (X.pow(2).sum(0) * (w1**2 + w2**2)).sum(), rtol=1e-12, atol=1e-12)
    sigma = 0.3
    torch.testing.assert_close(diagonal_net_penalty(X, w1, w2, sigma), sigma**2 / (2 * 7) * dphi,
                               rtol=1e-12, atol=1e-12)


def test_lp_feasible_and_beats_gd_direction(smoke):
    results, _ = smoke["logistic"]
    cfg = results["config"]
    X, y, _ = separable_problem(cfg["n"], cfg["d"], cfg["sparsity"], cfg["col_scale"], cfg["data_seed"])
    c = (X**2).sum(0)
    beta = l1_max_margin(X, y, c)
    assert (y * (X @ beta)).min() >= 1 - 1e-8
    for r in results["runs"]:
        b = np.array(r["beta"])
        m = (y * (X @ b)).min()
        assert m > 0, "GD should separate the data in the smoke run"
        assert c @ np.abs(beta) <= c @ np.abs(b / m) + 1e-8
    b2 = l2_max_margin(X, y)
    assert (y * (X @ b2)).min() >= 1 - 1e-5
    assert b2 @ b2 <= (beta @ beta) * (1 + 1e-6)


def test_l1_max_margin_not_separable():
    X = np.array([[1.0, 0.0], [1.0, 0.0]])
    with pytest.raises(RuntimeError, match="linprog failed"):
        l1_max_margin(X, np.array([1.0, -1.0]), np.ones(2))
