"""The minimisers noisy GD converges to (``noisereg.closed_form`` solvers) against independent references.

Float64 throughout. Each solver is checked by a route that does not share its method: the weighted
Lasso against brute-force enumeration of supports and signs (tiny d) and against its optimality
conditions; the group Lasso against scikit-learn (singleton groups) and its optimality conditions
in the original coordinates; Eq. (10) against L-BFGS over factorizations (W1, W2); the PSD
soft-threshold and the max-margin LPs against random feasible points. Tolerances are per call.
"""

import itertools
import math

import numpy as np
import pytest
import torch

import noisereg.closed_form as cf

DT = torch.float64
SOLVERS = {"weighted_lasso", "weighted_lasso_kkt", "group_lasso_solution", "nuclear_norm_regression",
           "nuclear_norm_kkt", "nuclear_norm_objective", "psd_soft_threshold", "l1_max_margin", "l2_max_margin"}


def gen(seed):
    return torch.Generator().manual_seed(seed)


def test_solvers_are_public():
    assert SOLVERS <= set(cf.__all__)


# ---------------------------------------------------------------------------- weighted Lasso
def _lasso_brute_force(X, y, lam):
    """Exact minimiser for tiny d: for every support S and sign pattern s, the stationary point
    β_S = (X_SᵀX_S/n)⁻¹(X_Sᵀy/n − λ_S s) is a candidate when its signs are s; keep the best."""
    n, d = X.shape
    obj = lambda b: ((y - X @ b) ** 2).sum() / (2 * n) + lam @ np.abs(b)  # noqa: E731
    best = np.zeros(d)
    for k in range(1, d + 1):
        for S in itertools.combinations(range(d), k):
            S = list(S)
            for s in itertools.product([-1.0, 1.0], repeat=k):
                bS = np.linalg.solve(X[:, S].T @ X[:, S] / n, X[:, S].T @ y / n - lam[S] * np.array(s))
                if np.all(np.sign(bS) == s):
                    b = np.zeros(d)
                    b[S] = bS
                    if obj(b) < obj(best):
                        best = b
    return best


@pytest.mark.parametrize("seed", [0, 1, 2], ids=lambda s: f"seed{s}")
def test_weighted_lasso_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    X, y = rng.standard_normal((8, 4)), rng.standard_normal(8)
    lam = rng.uniform(0.05, 0.4, 4)
    beta = cf.weighted_lasso(torch.from_numpy(X), torch.from_numpy(y), torch.from_numpy(lam))
    np.testing.assert_allclose(beta.numpy(), _lasso_brute_force(X, y, lam), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2], ids=lambda s: f"seed{s}")
def test_weighted_lasso_kkt_and_objective(seed):
    g = gen(seed)
    X, y = torch.randn(30, 60, generator=g, dtype=DT), torch.randn(30, generator=g, dtype=DT)
    sigma = 0.3
    lam = cf.lasso_weights(X, sigma)
    beta = cf.weighted_lasso(X, y, lam)
    assert 0 < int((beta != 0).sum()) < 30
    assert float(cf.weighted_lasso_kkt(X, y, beta, lam)) <= 1e-6
    f0 = cf.diagonal_net_lasso_objective(X, y, beta, sigma)
    for _ in range(20):  # no nearby point is better
        assert f0 <= cf.diagonal_net_lasso_objective(X, y, beta + 1e-3 * torch.randn(60, generator=g, dtype=DT),
                                                     sigma) + 1e-12


def test_weighted_lasso_kkt_detects_non_optimum():
    g = gen(0)
    X = torch.randn(20, 5, generator=g, dtype=DT)
    y = X[:, 0].clone()
    lam = torch.full((5,), 0.01, dtype=DT)
    assert float(cf.weighted_lasso_kkt(X, y, torch.zeros(5, dtype=DT), lam)) > 0.2
    assert float(cf.weighted_lasso_kkt(X, y, cf.weighted_lasso(X, y, lam), lam)) < 1e-9


def test_weighted_lasso_kkt_values():
    """X = I (n = 2): g = (y − β)/2; violation |g_j − λ_j sign β_j| on the support, (|g_j| − λ_j)⁺ off it."""
    X, y, lam = torch.eye(2, dtype=DT), torch.tensor([1.0, 0.1], dtype=DT), torch.full((2,), 0.25, dtype=DT)
    kkt = lambda b: float(cf.weighted_lasso_kkt(X, y, torch.tensor(b, dtype=DT), lam))  # noqa: E731
    assert kkt([0.0, 0.0]) == pytest.approx(0.25, rel=1e-14)       # |g_1| = 0.5 > λ_1
    assert kkt([0.8, 0.0]) == pytest.approx(0.15, rel=1e-14)       # g_1 = 0.1 ≠ λ_1 = 0.25
    assert kkt([0.5, 0.0]) == 0.0                                  # the minimiser (doctest of weighted_lasso)
    assert kkt([0.5, 0.2]) == pytest.approx(0.3, rel=1e-14)        # g_2 = −0.05, sign β_2 = +1


def test_weighted_lasso_errors():
    X, y = torch.eye(3, dtype=DT), torch.ones(3, dtype=DT)
    with pytest.raises(ValueError, match="weights must be > 0, got min 0.0"):
        cf.weighted_lasso(X, y, torch.tensor([1.0, 0.0, 1.0], dtype=DT))
    with pytest.raises(ValueError, match=r"weights must have shape \(d,\) with d = X.shape\[1\] = 3, got \(2,\)"):
        cf.weighted_lasso(X, y, torch.ones(2, dtype=DT))
    with pytest.raises(TypeError, match="y must have the dtype of X"):
        cf.weighted_lasso(X, y.float(), torch.ones(3, dtype=DT))


# ------------------------------------------------------------------------------- group Lasso
def test_group_lasso_optimality_in_original_coordinates():
    """Nonzero groups: X_gᵀr/n = μ_g X_gᵀX_gβ_g/‖X_gβ_g‖; zero groups: the minimal-norm u with
    X_gᵀr/n = μ_g X_gᵀu has ‖u‖ ≤ 1; plus no nearby point is better."""
    g = gen(3)
    X = torch.randn(30, 12, generator=g, dtype=DT)
    y = X[:, :3] @ torch.tensor([1.0, -1.0, 0.5], dtype=DT) + 0.1 * torch.randn(30, generator=g, dtype=DT)
    groups, sigma, n = [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]], 0.5, 30
    beta, viol = cf.group_lasso_solution(X, y, groups, sigma)
    assert viol <= 1e-10
    r = y - X @ beta
    for cols in groups:
        Xg, bg = X[:, cols], beta[cols]
        mu = sigma**2 * torch.linalg.matrix_norm(Xg) / n
        grad = Xg.T @ r / n
        if bg.abs().sum() > 0:
            torch.testing.assert_close(grad, mu * Xg.T @ Xg @ bg / (Xg @ bg).norm(), rtol=0, atol=1e-8)
        else:
            u = Xg @ torch.linalg.solve(Xg.T @ Xg, grad) / mu
            assert u.norm() <= 1 + 1e-8
    assert beta[:3].norm() > 0.5 and not beta[9:].any()
    obj = lambda b: (y - X @ b).pow(2).sum() / (2 * n) + cf.group_lasso_penalty(X, groups, b, sigma)  # noqa: E731
    for _ in range(20):
        assert obj(beta) <= obj(beta + 1e-3 * torch.randn(12, generator=g, dtype=DT)) + 1e-12


def test_group_lasso_of_singletons_is_the_weighted_lasso():
    """Groups of size one: σ²/n ‖X_j‖² |β_j|, solved by scikit-learn through weighted_lasso."""
    g = gen(4)
    X, y = torch.randn(25, 10, generator=g, dtype=DT), torch.randn(25, generator=g, dtype=DT)
    sigma = 0.4
    beta, _ = cf.group_lasso_solution(X, y, [[j] for j in range(10)], sigma, tol=1e-12)
    ref = cf.weighted_lasso(X, y, sigma**2 * X.pow(2).sum(0) / 25)
    torch.testing.assert_close(beta, ref, rtol=1e-6, atol=1e-8)


def test_group_lasso_with_unordered_groups_is_a_permutation():
    g = gen(5)
    X, y = torch.randn(20, 6, generator=g, dtype=DT), torch.randn(20, generator=g, dtype=DT)
    perm = [3, 0, 5, 1, 4, 2]
    a, _ = cf.group_lasso_solution(X, y, [[0, 1, 2], [3, 4, 5]], 0.3)
    b, _ = cf.group_lasso_solution(X[:, perm], y, [[1, 3, 5], [0, 4, 2]], 0.3)  # same groups, permuted columns
    torch.testing.assert_close(b, a[perm], rtol=0, atol=1e-9)


def test_group_lasso_errors():
    X = torch.randn(10, 4, generator=gen(0), dtype=DT)
    with pytest.raises(ValueError, match=r"groups\[1\]\] must have full column rank"):  # column 4 = column 1
        cf.group_lasso_solution(torch.cat([X, X[:, 1:2]], 1), torch.ones(10, dtype=DT), [[0], [1, 4], [2, 3]], 0.3)
    with pytest.raises(RuntimeError, match="FISTA did not reach"):
        cf.group_lasso_solution(X, X @ torch.ones(4, dtype=DT), [[0, 1], [2, 3]], 0.1, tol=1e-14, max_iter=2)
    with pytest.raises(ValueError, match="groups must cover every column"):
        cf.group_lasso_solution(X, torch.ones(10, dtype=DT), [[0, 1], [2]], 0.1)


# ------------------------------------------------------------------ nuclear norm, Eq. (10)
def _problem(seed=0, n=30, d0=5, d2=4):
    g = gen(seed)
    X = torch.randn(n, d0, generator=g, dtype=DT)
    M = torch.randn(d2, 2, generator=g, dtype=DT) @ torch.randn(2, d0, generator=g, dtype=DT)
    return X, X @ M.T + 0.3 * torch.randn(n, d2, generator=g, dtype=DT)


@pytest.mark.parametrize("sigma", [0.15, 0.3, 0.5], ids=lambda s: f"sigma{s}")
def test_svt_beats_random_perturbations(sigma):
    X, Y = _problem(seed=1)
    M = cf.nuclear_norm_regression(X, Y, sigma)
    f0 = cf.nuclear_norm_objective(X, Y, M, sigma)
    g = gen(2)
    for scale in (1e-4, 1e-2, 1e-1):
        for _ in range(100):
            D = torch.randn(M.shape, generator=g, dtype=DT)
            assert cf.nuclear_norm_objective(X, Y, M + scale * D, sigma) >= f0 - 1e-12
    assert cf.nuclear_norm_kkt(X, Y, M, sigma) < 1e-10
    assert cf.nuclear_norm_kkt(X, Y, 0.9 * M, sigma) > 1e-3          # the certificate can fail


def test_svt_rank_drops_with_sigma():
    X, Y = _problem(seed=3)
    ranks = [int(torch.linalg.matrix_rank(cf.nuclear_norm_regression(X, Y, s))) for s in (0.0, 0.3, 3.0)]
    assert ranks == [4, 2, 0]


def test_svt_objective_decomposition():
    """n·F(M) = ½||YᵀQ − B||² + τ||B||_* + ½||Yᵀ(I − QQᵀ)||² with τ = σ²√d2||X||_F, B = MRᵀ."""
    X, Y = _problem(seed=4)
    sigma, n, d2 = 0.3, X.shape[0], Y.shape[1]
    M = cf.nuclear_norm_regression(X, Y, sigma)
    Q, R = torch.linalg.qr(X)
    B = M @ R.T
    tau = sigma**2 * math.sqrt(d2) * torch.linalg.matrix_norm(X)
    const = 0.5 * (Y.T - Y.T @ Q @ Q.T).pow(2).sum()
    rhs = 0.5 * (Y.T @ Q - B).pow(2).sum() + tau * torch.linalg.matrix_norm(B, ord="nuc") + const
    torch.testing.assert_close(n * cf.nuclear_norm_objective(X, Y, M, sigma), rhs, rtol=1e-12, atol=0)


def test_svt_equals_minimiser_over_factorizations():
    """Independent route: L-BFGS on R + Eq. (9) over (W1, W2) reaches the same M (Eq. (9) → (10))."""
    X, Y = _problem(seed=5, n=25, d0=4, d2=3)
    sigma = 0.3
    g = gen(6)
    W1 = (0.5 * torch.randn(6, 4, generator=g, dtype=DT)).requires_grad_()
    W2 = (0.5 * torch.randn(3, 6, generator=g, dtype=DT)).requires_grad_()
    opt = torch.optim.LBFGS([W1, W2], lr=1, max_iter=3000, tolerance_grad=1e-13, tolerance_change=1e-16,
                            history_size=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = (Y.T - W2 @ W1 @ X.T).pow(2).sum() / (2 * X.shape[0]) + cf.linear_net_penalty(X, W1, W2, sigma)
        loss.backward()
        return loss

    opt.step(closure)
    M = cf.nuclear_norm_regression(X, Y, sigma)
    torch.testing.assert_close((W2 @ W1).detach(), M, rtol=0, atol=1e-5)
    torch.testing.assert_close(closure().detach(), cf.nuclear_norm_objective(X, Y, M, sigma), rtol=1e-9, atol=0)


def test_nuclear_errors():
    X, Y = _problem(seed=7)
    with pytest.raises(ValueError, match="X must have full column rank 3"):
        cf.nuclear_norm_regression(torch.cat([X[:, :2], X[:, :1]], dim=1), Y, 0.1)
    with pytest.raises(ValueError, match=r"Y must have shape \(n, d2\) with n = X.shape\[0\] = 30, got \(29, 4\)"):
        cf.nuclear_norm_regression(X, Y[:29], 0.1)
    with pytest.raises(ValueError, match="sigma must be > 0 for the optimality condition"):
        cf.nuclear_norm_kkt(X, Y, cf.nuclear_norm_regression(X, Y, 0.0), 0.0)


# ------------------------------------------------------------------------ PSD soft-threshold
def _sym(seed, d=6):
    g = gen(seed)
    A = torch.randn(d, d, generator=g, dtype=DT)
    return A @ A.T / d - 0.3 * torch.eye(d, dtype=DT), g


def _psd_objective(Y, P, c):
    return 0.5 * (Y - P).pow(2).sum() + c * torch.trace(P)


@pytest.mark.parametrize("c", [0.0, 0.2, 1.0], ids=lambda c: f"c{c}")
def test_psd_soft_threshold_beats_random_psd_points(c):
    Y, g = _sym(8)
    P = cf.psd_soft_threshold(Y, c)
    assert torch.linalg.eigvalsh(P).min() > -1e-12
    f0 = _psd_objective(Y, P, c)
    for scale in (1e-3, 1e-1, 1.0):
        for _ in range(100):
            G = torch.randn(6, 6, generator=g, dtype=DT)
            lam, V = torch.linalg.eigh(P + scale * (G + G.T))
            assert _psd_objective(Y, (V * lam.clamp_min(0)) @ V.T, c) >= f0 - 1e-12   # a random PSD point


@pytest.mark.parametrize("c", [0.0, 0.2, 1.0, -0.1], ids=lambda c: f"c{c}")
def test_psd_soft_threshold_optimality_conditions(c):
    """KKT of min ½‖Y − Φ‖² + c tr Φ over Φ ⪰ 0: Φ ⪰ 0, S = Φ − Y + cI ⪰ 0 and tr(ΦS) = 0."""
    Y, _ = _sym(8)
    P = cf.psd_soft_threshold(Y, c)
    S = P - Y + c * torch.eye(6, dtype=DT)
    assert torch.linalg.eigvalsh(P).min() >= -1e-12 and torch.linalg.eigvalsh(S).min() >= -1e-12
    assert abs(float(torch.trace(P @ S))) <= 1e-12


def test_psd_soft_threshold_errors():
    with pytest.raises(ValueError, match="Y must be symmetric"):
        cf.psd_soft_threshold(torch.tensor([[1.0, 2.0], [0.0, 1.0]], dtype=DT), 0.1)
    with pytest.raises(ValueError, match=r"Y must have shape \(d, d\)"):
        cf.psd_soft_threshold(torch.ones(2, 3, dtype=DT), 0.1)


# ------------------------------------------------------------------------------- max margin
def _separable(seed=0, n=12, d=6):
    g = gen(seed)
    X = torch.randn(n, d, generator=g, dtype=DT)
    return X, torch.where(X @ torch.randn(d, generator=g, dtype=DT) >= 0, 1.0, -1.0).to(DT)


def _l1_brute_force(X, y, c):
    """min c·|β| s.t. yᵢxᵢᵀβ ≥ 1 by vertex enumeration: in each sign orthant s the problem is an LP
    in β with the n margin constraints and sⱼβⱼ ≥ 0; its optimum is a feasible point where d of
    these constraints are active."""
    n, d = X.shape
    A = np.vstack([y[:, None] * X, np.eye(d)])
    best, best_val = None, np.inf
    for s in itertools.product([-1.0, 1.0], repeat=d):
        rows = np.vstack([A[:n], np.diag(s)])
        rhs = np.concatenate([np.ones(n), np.zeros(d)])
        for act in itertools.combinations(range(n + d), d):
            M = rows[list(act)]
            if abs(np.linalg.det(M)) < 1e-12:
                continue
            b = np.linalg.solve(M, rhs[list(act)])
            if np.all(rows @ b >= rhs - 1e-10) and c @ np.abs(b) < best_val:
                best, best_val = b, c @ np.abs(b)
    return best


def _l2_brute_force(X, y):
    """min ‖β‖² s.t. yᵢxᵢᵀβ ≥ 1: for each set S of active constraints, β = A_Sᵀ(A_SA_Sᵀ)⁻¹1 with
    multipliers (A_SA_Sᵀ)⁻¹1 ≥ 0; the smallest feasible one."""
    A = y[:, None] * X
    best = None
    for k in range(1, len(y) + 1):
        for S in itertools.combinations(range(len(y)), k):
            G = A[list(S)] @ A[list(S)].T
            if abs(np.linalg.det(G)) < 1e-12:
                continue
            alpha = np.linalg.solve(G, np.ones(k))
            b = A[list(S)].T @ alpha
            if alpha.min() >= -1e-12 and (A @ b).min() >= 1 - 1e-10 and (best is None or b @ b < best @ best):
                best = b
    return best


@pytest.mark.parametrize("seed", [0, 1, 2], ids=lambda s: f"seed{s}")
def test_max_margin_equals_brute_force(seed):
    X, y = _separable(seed, n=6, d=3)
    X = X * torch.tensor([0.3, 1.0, 3.0], dtype=DT)           # unequal column norms: weights matter
    c = X.pow(2).sum(0)
    np.testing.assert_allclose(cf.l1_max_margin(X, y, c).numpy(), _l1_brute_force(X.numpy(), y.numpy(), c.numpy()),
                               rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(cf.l2_max_margin(X, y).numpy(), _l2_brute_force(X.numpy(), y.numpy()),
                               rtol=1e-5, atol=1e-7)


def test_l1_max_margin_is_feasible_and_beats_random_feasible_points():
    X, y = _separable()
    c = X.pow(2).sum(0)
    beta = cf.l1_max_margin(X, y, c)
    assert (y * (X @ beta)).min() >= 1 - 1e-8
    g = gen(1)
    for _ in range(200):  # random directions, scaled to margin 1 when they separate
        b = beta + torch.randn(6, generator=g, dtype=DT) * 0.3
        m = (y * (X @ b)).min()
        if m > 0:
            assert c @ beta.abs() <= c @ (b / m).abs() + 1e-8


def test_l2_max_margin_is_feasible_and_minimal():
    X, y = _separable()
    beta = cf.l2_max_margin(X, y)
    assert (y * (X @ beta)).min() >= 1 - 1e-5
    b1 = cf.l1_max_margin(X, y, torch.ones(6, dtype=DT))
    assert beta @ beta <= (b1 @ b1) * (1 + 1e-6)


def test_max_margin_errors():
    X = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=DT)
    with pytest.raises(RuntimeError, match="linprog failed"):
        cf.l1_max_margin(X, torch.tensor([1.0, -1.0], dtype=DT), torch.ones(2, dtype=DT))
    with pytest.raises(ValueError, match=r"y must hold labels ±1, got values \[0.0, 1.0\]"):
        cf.l2_max_margin(X, torch.tensor([1.0, 0.0], dtype=DT))
