"""Closed forms of Sections 2-4 against brute force: GGN traces (torch.func), Monte Carlo, minimisers.

Every check is in float64. (a) penalties that equal σ²/2·tr(GGN) against the GGN trace from
``torch.func.jacrev`` of the predictor (tr(GGN) = Σ||∂Φ/∂w||²/n for L = ||·||²/(2n)), rtol 1e-10;
(b) exact smoothed risks against antithetic Monte Carlo within 4 standard errors, with a check
that the same budget resolves the term a wrong formula or convention would miss; (c)/(d) Lasso,
group-Lasso and nuclear-norm forms against their minimum over factorizations.
"""

import math
import re

import numpy as np
import pytest
import scipy.optimize
import torch

import noisereg.closed_form as cf

F64 = torch.float64


def randn(g, *shape, dtype=F64):
    return torch.randn(*shape, generator=g, dtype=dtype)


def gen(seed):
    return torch.Generator().manual_seed(seed)


def ggn_trace(phi, params, scale):
    """scale · Σ ||∂Φ/∂w||² over all parameters, from the dense Jacobian of ``phi``."""
    jac = torch.func.jacrev(phi, argnums=tuple(range(len(params))))(*params)
    return scale * sum(j.pow(2).sum() for j in jac)


def antithetic_mc(loss, shapes, num_pairs, seed, chunk=25_000):
    """Monte-Carlo E[loss(E)], E a list of standard normal tensors of ``shapes``.

    Each sample is the antithetic pair average (loss(E) + loss(-E)) / 2; ``loss`` maps a list of
    batched (b, *shape) tensors to b losses. Returns (mean, standard error) over ``num_pairs``.
    """
    g = gen(seed)
    vals = []
    for start in range(0, num_pairs, chunk):
        b = min(chunk, num_pairs - start)
        E = [randn(g, b, *s) for s in shapes]
        vals.append(0.5 * (loss(E) + loss([-e for e in E])))
    v = torch.cat(vals)
    return v.mean().item(), v.std().item() / math.sqrt(v.numel())


def sq_risk(Y, phi, n):
    """1/(2n)||Yᵀ − Φ||² for a batch of predictions Φ of shape (b, d2, n)."""
    return (Y.T - phi).pow(2).sum((-2, -1)) / (2 * n)


# ============================================================ (a) σ²/2·tr(GGN), exact
@pytest.mark.parametrize("seed,n,d", [(0, 7, 4), (1, 3, 6)], ids=["n>d", "n<d"])
def test_diagonal_net_penalty_is_half_sigma2_ggn_trace(seed, n, d):
    g, sigma = gen(seed), 0.7
    X, w1, w2 = randn(g, n, d), randn(g, d), randn(g, d)
    brute = ggn_trace(lambda a, b: X @ (a * a - b * b), (w1, w2), 1 / n)
    torch.testing.assert_close(cf.diagonal_net_penalty(X, w1, w2, sigma), sigma**2 / 2 * brute,
                               rtol=1e-10, atol=0)


@pytest.mark.parametrize("seed,n,d0,d1,d2", [(2, 6, 3, 5, 2), (3, 4, 5, 2, 3)], ids=["wide", "narrow"])
def test_linear_net_penalty_is_half_sigma2_ggn_trace(seed, n, d0, d1, d2):
    g, sigma = gen(seed), 0.3
    X, W1, W2 = randn(g, n, d0), randn(g, d1, d0), randn(g, d2, d1)
    brute = ggn_trace(lambda a, b: b @ a @ X.T, (W1, W2), 1 / n)
    pen = cf.linear_net_penalty(X, W1, W2, sigma)
    torch.testing.assert_close(pen, sigma**2 / 2 * brute, rtol=1e-10, atol=0)
    torch.testing.assert_close(pen, cf.deep_linear_penalty(X, [W1, W2], sigma), rtol=1e-12, atol=0)


@pytest.mark.parametrize("seed,widths", [(4, (3,)), (5, (3, 4)), (6, (4, 5, 2, 3)), (7, (2, 6, 6, 6, 1))],
                         ids=["M=1", "M=2", "M=3", "M=4"])
def test_deep_linear_penalty_is_half_sigma2_ggn_trace(seed, widths):
    g, n, d0, sigma = gen(seed), 5, 3, 0.4
    dims = (d0,) + widths
    X = randn(g, n, d0)
    Ws = [randn(g, b, a) for a, b in zip(dims[:-1], dims[1:])]

    def phi(*ws):
        out = X.T
        for W in ws:
            out = W @ out
        return out

    brute = ggn_trace(phi, tuple(Ws), 1 / n)
    torch.testing.assert_close(cf.deep_linear_penalty(X, Ws, sigma), sigma**2 / 2 * brute,
                               rtol=1e-10, atol=0)


@pytest.mark.parametrize("seed,n,d0,d1,d2", [(8, 9, 4, 6, 3), (9, 5, 2, 10, 1)], ids=["d2=3", "d2=1"])
def test_relu_net_penalty_is_half_sigma2_ggn_trace(seed, n, d0, d1, d2):
    g, sigma = gen(seed), 0.2
    X, W1, W2 = 2 * randn(g, n, d0), randn(g, d1, d0), randn(g, d2, d1)
    brute = ggn_trace(lambda a, b: b @ torch.relu(a @ X.T), (W1, W2), 1 / n)
    pen = cf.relu_net_penalty(X, W1, W2, sigma)
    torch.testing.assert_close(pen, sigma**2 / 2 * brute, rtol=1e-10, atol=0)
    # the uncorrected summary form (no d2, no ||x_i||²) is visibly different here
    Z = W1 @ X.T
    summary = sigma**2 / (2 * n) * (torch.relu(Z).pow(2).sum() + W2.pow(2).sum(0) @ (Z > 0).to(F64).sum(1))
    assert abs(summary.item() - pen.item()) > 1e-3 * pen.item()


def test_hadamard_group_penalty_is_half_sigma2_ggn_trace():
    g, n, sigma = gen(10), 6, 0.5
    groups = [[0, 3], [1], [2, 4, 5]]
    X, u, v = randn(g, n, 6), randn(g, 3), randn(g, 6)

    def phi(u, v):
        return sum(X[:, idx] @ (u[k] * v[idx]) for k, idx in enumerate(groups))

    brute = ggn_trace(phi, (u, v), 1 / n)
    torch.testing.assert_close(cf.hadamard_group_penalty(X, groups, u, v, sigma), sigma**2 / 2 * brute,
                               rtol=1e-10, atol=0)


@pytest.mark.parametrize("seed,d,r", [(11, 3, 5), (12, 4, 2), (13, 1, 1)], ids=["r>d", "r<d", "scalar"])
def test_psd_trace_penalty_is_half_sigma2_ggn_trace(seed, d, r):
    g, sigma = gen(seed), 0.6
    w = randn(g, d, r)
    brute = ggn_trace(lambda a: a @ a.T, (w,), 1.0)          # L = ½||Y − Φ||², ∇²L = I
    pen = cf.psd_trace_penalty(w, sigma)
    torch.testing.assert_close(pen, sigma**2 / 2 * brute, rtol=1e-10, atol=0)
    torch.testing.assert_close(pen, sigma**2 * (d + 1) * torch.trace(w @ w.T), rtol=1e-12, atol=0)


def test_psd_diagonal_second_derivative_is_2r_identity():
    d, r = 3, 4
    w = randn(gen(14), d, r)
    hess = torch.func.jacrev(torch.func.jacrev(lambda a: a @ a.T))(w)   # (d, d, d, r, d, r)
    diag = torch.einsum("klpapa->kl", hess)                   # D²Φ[I] = Σ_{p,a} ∂²Φ/∂w_pa²
    torch.testing.assert_close(diag, 2 * r * torch.eye(d, dtype=F64), rtol=0, atol=1e-12)


# ============================================================ (b) exact risks vs Monte Carlo
def test_linear_full_noise_risk_matches_monte_carlo():
    g, n, d0, d1, d2, sigma = gen(20), 6, 3, 8, 2, 0.3
    X, Y, W1, W2 = randn(g, n, d0), randn(g, n, d2), randn(g, d1, d0) / 2, randn(g, d2, d1) / 2

    def loss(E):
        return sq_risk(Y, (W2 + sigma * E[1]) @ (W1 + sigma * E[0]) @ X.T, n)

    mean, se = antithetic_mc(loss, [(d1, d0), (d2, d1)], 200_000, seed=21)
    exact = cf.linear_net_full_noise_risk(X, Y, W1, W2, sigma).item()
    assert abs(mean - exact) < 4 * se, (mean, exact, se)
    quartic = sigma**4 / (2 * n) * d1 * d2 * X.pow(2).sum().item()
    assert abs(mean - (exact - quartic)) > 4 * se             # the σ⁴·d1·d2 term is resolved


@pytest.mark.parametrize("convention,std_factor,pen_factor,wrong_factor",
                         [("paper", math.sqrt(2), 1.0, 0.5), ("official", 1.0, 0.5, 1.0)],
                         ids=["paper-std-sigma-sqrt2", "official-std-sigma"])
def test_linear_layer_risk_matches_monte_carlo(convention, std_factor, pen_factor, wrong_factor):
    g, n, d0, d1, d2, sigma = gen(22), 5, 4, 6, 3, 0.4
    X, Y, W1, W2 = randn(g, n, d0), randn(g, n, d2), randn(g, d1, d0) / 2, randn(g, d2, d1) / 2
    s = std_factor * sigma

    def loss(E):  # uniform layer choice, averaged exactly over the two layers (stratified)
        return 0.5 * (sq_risk(Y, W2 @ (W1 + s * E[0]) @ X.T, n) + sq_risk(Y, (W2 + s * E[1]) @ W1 @ X.T, n))

    mean, se = antithetic_mc(loss, [(d1, d0), (d2, d1)], 100_000, seed=23)
    risk = cf.linear_net_layer_risk(X, Y, W1, W2, sigma).item()
    pen = cf.linear_net_penalty(X, W1, W2, sigma).item()
    r0 = risk - pen
    assert abs(mean - (r0 + pen_factor * pen)) < 4 * se, (convention, mean, r0 + pen_factor * pen, se)
    assert abs(mean - (r0 + wrong_factor * pen)) > 4 * se


@pytest.mark.parametrize("std_factor,pen_factor", [(math.sqrt(3), 1.0), (1.0, 1 / 3)],
                         ids=["paper-std-sigma-sqrt3", "official-std-sigma"])
def test_deep_linear_layer_risk_matches_monte_carlo(std_factor, pen_factor):
    g, n, sigma = gen(24), 5, 0.3
    dims = (3, 4, 5, 2)
    X, Y = randn(g, n, dims[0]), randn(g, n, dims[-1])
    Ws = [randn(g, b, a) / 2 for a, b in zip(dims[:-1], dims[1:])]
    s = std_factor * sigma

    def loss(E):
        out = 0
        for j in range(3):
            phi = X.T
            for k, W in enumerate(Ws):
                phi = (W + s * E[j] if k == j else W) @ phi
            out = out + sq_risk(Y, phi, n) / 3
        return out

    mean, se = antithetic_mc(loss, [W.shape for W in Ws], 100_000, seed=25)
    risk = cf.deep_linear_layer_risk(X, Y, Ws, sigma).item()
    pen = cf.deep_linear_penalty(X, Ws, sigma).item()
    assert abs(mean - (risk - pen + pen_factor * pen)) < 4 * se
    other = 1 / 3 if pen_factor == 1.0 else 1.0
    assert abs(mean - (risk - pen + other * pen)) > 4 * se


def test_diagonal_full_noise_risk_matches_monte_carlo():
    g, n, d, sigma = gen(26), 8, 5, 0.5
    X, y, w1, w2 = randn(g, n, d), randn(g, n), randn(g, d), randn(g, d)

    def loss(E):
        beta = (w1 + sigma * E[0]).pow(2) - (w2 + sigma * E[1]).pow(2)   # (b, d)
        return (y - beta @ X.T).pow(2).sum(-1) / (2 * n)

    mean, se = antithetic_mc(loss, [(d,), (d,)], 200_000, seed=27)
    exact = cf.diagonal_net_full_noise_risk(X, y, w1, w2, sigma).item()
    assert abs(mean - exact) < 4 * se, (mean, exact, se)
    quartic = 2 * sigma**4 * X.pow(2).sum().item() / n
    assert abs(mean - (exact - quartic)) > 4 * se
    # the gap R_σ − (R + Eq. (7)) does not depend on w
    w1b, w2b = randn(g, d), randn(g, d)
    gap = [cf.diagonal_net_full_noise_risk(X, y, a, b, sigma)
           - (y - X @ (a * a - b * b)).pow(2).sum() / (2 * n) - cf.diagonal_net_penalty(X, a, b, sigma)
           for a, b in [(w1, w2), (w1b, w2b)]]
    torch.testing.assert_close(gap[0], gap[1], rtol=1e-12, atol=1e-12)


def test_psd_full_noise_risk_matches_monte_carlo():
    g, d, r, sigma = gen(28), 3, 4, 0.3
    w, Y = randn(g, d, r), randn(g, d, d)

    def loss(E):
        wp = w + sigma * E[0]
        return 0.5 * (Y - wp @ wp.transpose(-1, -2)).pow(2).sum((-2, -1))

    mean, se = antithetic_mc(loss, [(d, r)], 200_000, seed=29)
    exact = cf.psd_full_noise_risk(Y, w, sigma).item()
    assert abs(mean - exact) < 4 * se, (mean, exact, se)
    d2phi_term = sigma**2 * r * (torch.trace(w @ w.T) - torch.trace(Y)).item()   # from D²Φ[I] = 2rI
    assert abs(mean - (exact - d2phi_term)) > 4 * se


# ============================================================ (c) minima over factorizations
@pytest.mark.parametrize("seed,n,d0,d1,d2,rank",
                         [(30, 8, 4, 3, 5, 3), (31, 7, 5, 6, 4, 2), (32, 6, 3, 4, 2, 2)],
                         ids=["d1=rank", "d1>rank", "d2<d0"])
def test_balanced_factorization_attains_nuclear_norm_and_others_do_not_beat_it(seed, n, d0, d1, d2, rank):
    g, sigma = gen(seed), 0.3
    X = randn(g, n, d0)
    M = randn(g, d2, rank) @ randn(g, rank, d0)
    target = cf.nuclear_norm_penalty(X, M, d2, sigma)
    W1, W2 = cf.balanced_factorization(X, M, d1, d2)
    assert W1.shape == (d1, d0) and W2.shape == (d2, d1)
    torch.testing.assert_close(W2 @ W1, M, rtol=0, atol=1e-12 * M.abs().max().item())
    torch.testing.assert_close(cf.linear_net_penalty(X, W1, W2, sigma), target, rtol=1e-10, atol=0)
    nuc = torch.linalg.svdvals(M @ X.T).sum()
    torch.testing.assert_close(target, sigma**2 / n * math.sqrt(d2) * X.norm() * nuc, rtol=1e-12, atol=0)
    for _ in range(20):                                       # M = (W2 G)(G⁻¹ W1), G random
        G = randn(g, d1, d1)
        A, B = W2 @ G, torch.linalg.solve(G, W1)
        torch.testing.assert_close(A @ B, M, rtol=0, atol=1e-8 * M.abs().max().item())
        assert cf.linear_net_penalty(X, B, A, sigma) >= target * (1 - 1e-10)


def test_minimising_linear_penalty_over_factorizations_reaches_nuclear_norm():
    g, n, d0, d1, d2, sigma = gen(33), 8, 4, 3, 5, 1.0
    X, W1, W2 = randn(g, n, d0), randn(g, d1, d0), randn(g, d2, d1)
    M = W2 @ W1              # rank d1 = 3, so every factorization of M is (W2 G, G⁻¹ W1), G invertible
    target = cf.nuclear_norm_penalty(X, M, d2, sigma).item()

    def f(gflat):
        G = torch.from_numpy(gflat.reshape(d1, d1))
        return cf.linear_net_penalty(X, torch.linalg.solve(G, W1), W2 @ G, sigma).item()

    g0 = np.eye(d1) + 0.5 * np.random.default_rng(33).standard_normal((d1, d1))
    res = scipy.optimize.minimize(f, g0.ravel(), method="BFGS", options={"gtol": 1e-9})
    assert res.fun >= target * (1 - 1e-10)
    assert res.fun == pytest.approx(target, rel=1e-4)


@pytest.mark.parametrize("groups", [[[0, 1], [2, 3, 4], [5]], [[0], [1], [2], [3], [4], [5]],
                                    [[0, 1, 2, 3, 4, 5]],
                                    [[4, 0], [5, 3, 1], [2]]],
                         ids=["mixed", "singletons", "one-group", "unordered"])
def test_balanced_group_factorization_attains_group_lasso(groups):
    g, n, sigma = gen(34), 7, 0.4
    X, beta = randn(g, n, 6), randn(g, 6)
    target = cf.group_lasso_penalty(X, groups, beta, sigma)
    u, v = cf.balanced_group_factorization(X, groups, beta)
    for k, idx in enumerate(groups):
        torch.testing.assert_close(u[k] * v[idx], beta[idx], rtol=1e-14, atol=0)
    torch.testing.assert_close(cf.hadamard_group_penalty(X, groups, u, v, sigma), target, rtol=1e-10, atol=0)
    brute = sigma**2 / n * sum(X[:, i].norm() * (X[:, i] @ beta[i]).norm() for i in groups)
    torch.testing.assert_close(target, brute, rtol=1e-12, atol=0)
    for _ in range(20):
        u2 = randn(g, len(groups)) * 2
        v2 = torch.cat([beta[idx] / u2[k] for k, idx in enumerate(groups)])[
            torch.argsort(torch.tensor([j for idx in groups for j in idx]))]
        assert cf.hadamard_group_penalty(X, groups, u2, v2, sigma) >= target * (1 - 1e-12)


def test_minimising_hadamard_penalty_over_factorizations_reaches_group_lasso():
    g, n, sigma = gen(35), 7, 1.0
    groups = [[0, 1], [2, 3, 4], [5]]
    X, beta = randn(g, n, 6), randn(g, 6)
    target = cf.group_lasso_penalty(X, groups, beta, sigma).item()

    def f(s):
        u = torch.from_numpy(np.exp(s))
        v = beta.clone()
        for k, idx in enumerate(groups):
            v[idx] = beta[idx] / u[k]
        return cf.hadamard_group_penalty(X, groups, u, v, sigma).item()

    res = scipy.optimize.minimize(f, np.random.default_rng(35).normal(0, 1.5, 3), method="BFGS",
                                  options={"gtol": 1e-10})
    assert res.fun >= target * (1 - 1e-10)
    assert res.fun == pytest.approx(target, rel=1e-4)


def test_group_lasso_edge_groups_and_singletons():
    g, n, sigma = gen(36), 5, 0.7
    X, beta = randn(g, n, 4), randn(g, 4)
    X[:, 3] = 0                                               # a zero column: group penalty 0 for any β_g
    beta[1] = beta[2] = 0                                     # a zero group: u_g = v_g = 0
    groups = [[0], [1, 2], [3]]
    u, v = cf.balanced_group_factorization(X, groups, beta)
    assert u[1] == 0 and u[2] == 1 and torch.equal(v[[1, 2]], torch.zeros(2, dtype=F64))
    torch.testing.assert_close(cf.hadamard_group_penalty(X, groups, u, v, sigma),
                               cf.group_lasso_penalty(X, groups, beta, sigma), rtol=1e-12, atol=0)
    # groups of size one: σ² Σ_j (XᵀX/n)_jj |β_j|, half the diagonal net's Lasso weights
    single = [[j] for j in range(4)]
    torch.testing.assert_close(cf.group_lasso_penalty(X, single, beta, sigma),
                               0.5 * cf.lasso_weights(X, sigma) @ beta.abs(), rtol=1e-12, atol=0)


# ============================================================ (d) the diagonal net's Lasso
def test_lasso_weights_are_the_penalty_per_unit_coefficient():
    g, n, d, sigma = gen(40), 6, 5, 0.3
    X = randn(g, n, d)
    lam = cf.lasso_weights(X, sigma)
    torch.testing.assert_close(lam, 2 * sigma**2 * torch.diag(X.T @ X) / n, rtol=1e-12, atol=0)
    zero = torch.zeros(d, dtype=F64)
    for j in range(d):                                        # β = e_j and β = −e_j
        e = torch.zeros(d, dtype=F64)
        e[j] = 1
        torch.testing.assert_close(cf.diagonal_net_penalty(X, e, zero, sigma), lam[j], rtol=1e-12, atol=0)
        torch.testing.assert_close(cf.diagonal_net_penalty(X, zero, e, sigma), lam[j], rtol=1e-12, atol=0)


def test_minimising_diagonal_penalty_over_factorizations_gives_weighted_lasso():
    g, n, d, sigma = gen(41), 6, 5, 0.5
    X, y, beta = randn(g, n, d), randn(g, n), randn(g, d)
    lam = cf.lasso_weights(X, sigma)
    target = (lam @ beta.abs()).item()
    w1, w2 = beta.clamp(min=0).sqrt(), (-beta).clamp(min=0).sqrt()   # w1² = β⁺, w2² = β⁻
    torch.testing.assert_close(cf.diagonal_net_penalty(X, w1, w2, sigma).item(), target, rtol=1e-12, atol=0)
    risk = (y - X @ beta).pow(2).sum() / (2 * n)
    torch.testing.assert_close(cf.diagonal_net_lasso_objective(X, y, beta, sigma),
                               risk + cf.diagonal_net_penalty(X, w1, w2, sigma), rtol=1e-12, atol=0)
    for _ in range(20):                      # w1² = β⁺ + t, w2² = β⁻ + t, random signs
        t = randn(g, d).abs()
        s1, s2 = randn(g, d).sign(), randn(g, d).sign()
        a, b = s1 * (beta.clamp(min=0) + t).sqrt(), s2 * ((-beta).clamp(min=0) + t).sqrt()
        torch.testing.assert_close(a * a - b * b, beta, rtol=1e-12, atol=1e-12)
        assert cf.diagonal_net_penalty(X, a, b, sigma).item() >= target * (1 - 1e-12)

    bn = beta.numpy()
    def f(z):
        return cf.diagonal_net_penalty(X, torch.from_numpy(z[:d]), torch.from_numpy(z[d:]), sigma).item()

    rng = np.random.default_rng(41)
    t = rng.standard_normal(d) ** 2 + 0.5                     # feasible start, far from the optimum t = 0
    z0 = np.concatenate([np.sqrt(np.maximum(bn, 0) + t), np.sqrt(np.maximum(-bn, 0) + t)])
    res = scipy.optimize.minimize(f, z0, method="SLSQP", options={"ftol": 1e-14, "maxiter": 500},
                                  constraints={"type": "eq", "fun": lambda z: z[:d]**2 - z[d:]**2 - bn})
    assert np.allclose(res.x[:d]**2 - res.x[d:]**2, bn, atol=1e-8)
    assert res.fun == pytest.approx(target, rel=1e-4)


# ============================================================ dtype and errors
def _inputs(dtype=F64, seed=50):
    g = gen(seed)
    return dict(X=randn(g, 5, 4, dtype=dtype), Y=randn(g, 5, 2, dtype=dtype), y=randn(g, 5, dtype=dtype),
                w=randn(g, 4, dtype=dtype), W1=randn(g, 3, 4, dtype=dtype), W2=randn(g, 2, 3, dtype=dtype),
                M=randn(g, 2, 4, dtype=dtype), u=randn(g, 2, dtype=dtype), wp=randn(g, 3, 4, dtype=dtype),
                Yp=randn(g, 3, 3, dtype=dtype), groups=[[0, 1], [2, 3]])


CALLS = {  # name -> f(inputs, sigma)
    "diagonal_net_penalty": lambda a, s: cf.diagonal_net_penalty(a["X"], a["w"], a["w"], s),
    "lasso_weights": lambda a, s: cf.lasso_weights(a["X"], s),
    "diagonal_net_lasso_objective": lambda a, s: cf.diagonal_net_lasso_objective(a["X"], a["y"], a["w"], s),
    "diagonal_net_full_noise_risk":
        lambda a, s: cf.diagonal_net_full_noise_risk(a["X"], a["y"], a["w"], a["w"], s),
    "linear_net_penalty": lambda a, s: cf.linear_net_penalty(a["X"], a["W1"], a["W2"], s),
    "linear_net_layer_risk": lambda a, s: cf.linear_net_layer_risk(a["X"], a["Y"], a["W1"], a["W2"], s),
    "linear_net_full_noise_risk":
        lambda a, s: cf.linear_net_full_noise_risk(a["X"], a["Y"], a["W1"], a["W2"], s),
    "nuclear_norm_penalty": lambda a, s: cf.nuclear_norm_penalty(a["X"], a["M"], 2, s),
    "deep_linear_penalty": lambda a, s: cf.deep_linear_penalty(a["X"], [a["W1"], a["W2"]], s),
    "deep_linear_layer_risk": lambda a, s: cf.deep_linear_layer_risk(a["X"], a["Y"], [a["W1"], a["W2"]], s),
    "relu_net_penalty": lambda a, s: cf.relu_net_penalty(a["X"], a["W1"], a["W2"], s),
    "group_lasso_penalty": lambda a, s: cf.group_lasso_penalty(a["X"], a["groups"], a["w"], s),
    "hadamard_group_penalty": lambda a, s: cf.hadamard_group_penalty(a["X"], a["groups"], a["u"], a["w"], s),
    "psd_trace_penalty": lambda a, s: cf.psd_trace_penalty(a["wp"], s),
    "psd_full_noise_risk": lambda a, s: cf.psd_full_noise_risk(a["Yp"], a["wp"], s),
}


SOLVERS = {"weighted_lasso", "weighted_lasso_kkt", "group_lasso_solution", "nuclear_norm_regression",  # test_solvers.py
           "nuclear_norm_kkt", "nuclear_norm_objective", "psd_soft_threshold", "l1_max_margin", "l2_max_margin"}


def test_every_public_function_is_covered():
    assert set(cf.__all__) == set(CALLS) | {"balanced_factorization", "balanced_group_factorization"} | SOLVERS


@pytest.mark.parametrize("name", sorted(CALLS))
def test_result_keeps_input_dtype_and_is_scalar(name):
    out = CALLS[name](_inputs(torch.float32), 0.1)
    assert out.dtype == torch.float32
    assert out.shape == ((4,) if name == "lasso_weights" else ())
    assert torch.isfinite(out).all()
    if name.endswith("penalty") or name == "lasso_weights":     # penalties vanish at σ = 0
        zero = CALLS[name](_inputs(), 0.0)
        torch.testing.assert_close(zero, torch.zeros_like(zero), rtol=0, atol=0)


BAD = "sigma must be a finite number >= 0, got "


@pytest.mark.parametrize("name", sorted(CALLS))
@pytest.mark.parametrize("sigma,exc,msg", [(-0.1, ValueError, BAD + "-0.1"),
                                           (float("nan"), ValueError, BAD + "nan"),
                                           (float("inf"), ValueError, BAD + "inf"),
                                           ("0.1", TypeError, "sigma must be a real number, got str"),
                                           (True, TypeError, "sigma must be a real number, got bool")],
                         ids=["negative", "nan", "inf", "str", "bool"])
def test_sigma_is_validated(name, sigma, exc, msg):
    with pytest.raises(exc, match=re.escape(msg)):
        CALLS[name](_inputs(), sigma)


def _with(**changes):
    a = _inputs()
    a.update(changes)
    return a


def _zeros(*shape, dtype=F64):
    return torch.zeros(*shape, dtype=dtype)


# a bad argument, the call that receives it, the error and its exact message
ERRORS = [
    ("X-not-tensor", "linear_net_penalty", dict(X=np.zeros((5, 4))), TypeError,
     "X must be a torch.Tensor, got ndarray"),
    ("X-int", "lasso_weights", dict(X=torch.zeros(5, 4, dtype=torch.int64)), TypeError,
     "X must have a floating-point dtype, got torch.int64"),
    ("X-1d", "relu_net_penalty", dict(X=_zeros(5)), ValueError, "X must have shape (n, d0), got (5,)"),
    ("X-1d-diag", "diagonal_net_penalty", dict(X=_zeros(5)), ValueError,
     "X must have shape (n, d), got (5,)"),
    ("X-no-rows", "linear_net_penalty", dict(X=_zeros(0, 4)), ValueError,
     "X must have n >= 1 rows, got shape (0, 4)"),
    ("W1-dtype", "linear_net_penalty", dict(W1=_zeros(3, 4, dtype=torch.float32)), TypeError,
     "W1 must have the dtype of X (torch.float64), got torch.float32"),
    ("W1-shape", "linear_net_penalty", dict(W1=_zeros(3, 5)), ValueError,
     "W1 must have shape (d1, d0) with d0 = X.shape[1] = 4, got (3, 5)"),
    ("W2-shape", "relu_net_penalty", dict(W2=_zeros(2, 4)), ValueError,
     "W2 must have shape (d2, d1) with d1 = W1.shape[0] = 3, got (2, 4)"),
    ("W2-dtype", "linear_net_full_noise_risk", dict(W2=_zeros(2, 3, dtype=torch.float32)), TypeError,
     "W2 must have the dtype of X (torch.float64), got torch.float32"),
    ("Y-shape-full", "linear_net_full_noise_risk", dict(Y=_zeros(5, 3)), ValueError,
     "Y must have shape (n, d2) with n = X.shape[0] = 5 and d2 = W2.shape[0] = 2, got (5, 3)"),
    ("Y-shape-layer", "linear_net_layer_risk", dict(Y=_zeros(4, 2)), ValueError,
     "Y must have shape (n, d2) with n = X.shape[0] = 5 and d2 = W2.shape[0] = 2, got (4, 2)"),
    ("Y-dtype", "linear_net_layer_risk", dict(Y=_zeros(5, 2, dtype=torch.float32)), TypeError,
     "Y must have the dtype of X (torch.float64), got torch.float32"),
    ("w1-shape", "diagonal_net_penalty", dict(w=_zeros(3)), ValueError,
     "w1 must have shape (d,) with d = X.shape[1] = 4, got (3,)"),
    ("y-shape", "diagonal_net_lasso_objective", dict(y=_zeros(4)), ValueError,
     "y must have shape (n,) with n = X.shape[0] = 5, got (4,)"),
    ("y-shape-full", "diagonal_net_full_noise_risk", dict(y=_zeros(5, 1)), ValueError,
     "y must have shape (n,) with n = X.shape[0] = 5, got (5, 1)"),
    ("beta-shape", "diagonal_net_lasso_objective", dict(w=_zeros(4, 1)), ValueError,
     "beta must have shape (d,) with d = X.shape[1] = 4, got (4, 1)"),
    ("M-shape", "nuclear_norm_penalty", dict(M=_zeros(3, 4)), ValueError,
     "M must have shape (d2, d0) with d2 = 2 and d0 = X.shape[1] = 4, got (3, 4)"),
    ("M-dtype", "nuclear_norm_penalty", dict(M=_zeros(2, 4, dtype=torch.float32)), TypeError,
     "M must have the dtype of X (torch.float64), got torch.float32"),
    ("Ws0-shape", "deep_linear_penalty", dict(W1=_zeros(3, 5)), ValueError,
     "Ws[0] must have shape (d1, d0) with d0 = X.shape[1] = 4, got (3, 5)"),
    ("Ws1-shape", "deep_linear_penalty", dict(W2=_zeros(2, 4)), ValueError,
     "Ws[1] must have shape (d2, d1) with d1 = Ws[0].shape[0] = 3, got (2, 4)"),
    ("Ws1-not-tensor", "deep_linear_penalty", dict(W2=[[0.0] * 3] * 2), TypeError,
     "Ws[1] must be a torch.Tensor, got list"),
    ("Y-shape-deep", "deep_linear_layer_risk", dict(Y=_zeros(5, 3)), ValueError,
     "Y must have shape (n, d2) with n = X.shape[0] = 5 and d2 = Ws[1].shape[0] = 2, got (5, 3)"),
    ("groups-type", "group_lasso_penalty", dict(groups=3), TypeError,
     "groups must be a list of lists of column indices, got int"),
    ("groups-empty", "group_lasso_penalty", dict(groups=[[0, 1, 2, 3], []]), ValueError,
     "groups[1] must be a non-empty list of column indices, got []"),
    ("groups-float", "hadamard_group_penalty", dict(groups=[[0.5, 1], [2, 3]]), TypeError,
     "groups[0] must hold integer column indices, got 0.5"),
    ("groups-range", "group_lasso_penalty", dict(groups=[[0, 1], [2, 4]]), ValueError,
     "groups[1] must hold column indices in [0, d) with d = X.shape[1] = 4, got 4"),
    ("groups-overlap", "group_lasso_penalty", dict(groups=[[0, 1], [1, 2, 3]]), ValueError,
     "groups must be disjoint: column 1 is in groups[0] and groups[1]"),
    ("groups-cover", "hadamard_group_penalty", dict(groups=[[0, 1], [2]]), ValueError,
     "groups must cover every column of X (d = X.shape[1] = 4), got columns [3] in no group"),
    ("u-shape", "hadamard_group_penalty", dict(u=_zeros(3)), ValueError,
     "u must have shape (G,) with G = len(groups) = 2, got (3,)"),
    ("v-shape", "hadamard_group_penalty", dict(w=_zeros(5)), ValueError,
     "v must have shape (d,) with d = X.shape[1] = 4, got (5,)"),
    ("w-psd-1d", "psd_trace_penalty", dict(wp=_zeros(3)), ValueError, "w must have shape (d, r), got (3,)"),
    ("w-psd-not-tensor", "psd_trace_penalty", dict(wp=2.0), TypeError, "w must be a torch.Tensor, got float"),
    ("Y-psd-shape", "psd_full_noise_risk", dict(Yp=_zeros(3, 4)), ValueError,
     "Y must have shape (d, d) with d = w.shape[0] = 3, got (3, 4)"),
    ("Y-psd-dtype", "psd_full_noise_risk", dict(Yp=_zeros(3, 3, dtype=torch.float32)), TypeError,
     "Y must have the dtype of w (torch.float64), got torch.float32"),
]


@pytest.mark.parametrize("name,changes,exc,msg", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_bad_arguments_raise_with_a_message_naming_them(name, changes, exc, msg):
    with pytest.raises(exc, match=re.escape(msg)):
        CALLS[name](_with(**changes), 0.1)


def test_bad_layer_lists_and_integers_raise():
    a = _inputs()
    msg = "Ws must be a list of weight matrices [W1, ..., WM], got Tensor"
    with pytest.raises(TypeError, match=re.escape(msg)):
        cf.deep_linear_penalty(a["X"], a["W1"], 0.1)
    msg = "Ws must hold at least one weight matrix (M >= 1), got an empty list"
    with pytest.raises(ValueError, match=re.escape(msg)):
        cf.deep_linear_layer_risk(a["X"], a["Y"], [], 0.1)
    with pytest.raises(TypeError, match=re.escape("d2 must be an integer >= 1, got float")):
        cf.nuclear_norm_penalty(a["X"], a["M"], 2.0, 0.1)
    with pytest.raises(ValueError, match=re.escape("d2 must be an integer >= 1, got 0")):
        cf.balanced_factorization(a["X"], a["M"], 3, 0)
    with pytest.raises(TypeError, match=re.escape("d1 must be an integer >= 1, got NoneType")):
        cf.balanced_factorization(a["X"], a["M"], None, 2)
    with pytest.raises(ValueError, match=re.escape("d1 must be an integer >= 1, got -1")):
        cf.balanced_factorization(a["X"], a["M"], -1, 2)


def test_factorization_helpers_raise_when_no_minimiser_exists():
    g = gen(51)
    X = randn(g, 6, 4)
    M = randn(g, 3, 4)                                        # rank(M Xᵀ) = 3
    msg = "d1 must be >= rank(M Xᵀ) = 3 for a factorization to exist, got 2"
    with pytest.raises(ValueError, match=re.escape(msg)):
        cf.balanced_factorization(X, M, 2, 3)
    Xwide = randn(g, 2, 4)                                    # d0 > n: range(M) ⊄ range(M Xᵀ)
    with pytest.raises(ValueError, match=re.escape("M must map into range(M Xᵀ)")):
        cf.balanced_factorization(Xwide, M, 3, 3)
    Xdup = randn(g, 5, 3)
    Xdup[:, 1] = Xdup[:, 0]                                   # X_g β_g = 0 with β_g = (1, −1)
    with pytest.raises(ValueError, match=re.escape("beta[groups[0]] must not lie in the null space of "
                                                   "X[:, groups[0]] for the minimum to be attained, got X_g "
                                                   "beta_g = 0 with beta_g = [1.0, -1.0]")):
        cf.balanced_group_factorization(Xdup, [[0, 1], [2]], torch.tensor([1.0, -1.0, 2.0], dtype=F64))
