"""NoisyOptimizer with several evaluations per step (samples, antithetic pairs, clean weight) and the
injector's negated draw: each checked against a direct computation at the captured perturbed points."""

import pytest
import torch

import noisereg as nr


def _setup(mode="full", seed=0):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
    x, y = torch.randn(10, 3, dtype=torch.float64), torch.randn(10, 2, dtype=torch.float64)
    inj = nr.NoiseInjector(model, sigma=0.2, mode=mode, seed=seed)
    return model, x, y, inj


def _loss(model, x, y):
    return 0.5 * (model(x) - y).pow(2).sum(1).mean()


@pytest.mark.parametrize("mode", ["full", "layer"])
def test_negated_perturbation_is_minus_the_same_draw(mode):
    model, *_, inj = _setup(mode)
    clean = [p.detach().clone() for p in model.parameters()]
    state = inj.state_dict()
    with inj.perturb():
        plus = [p.detach().clone() for p in model.parameters()]
    layer = inj.last_layer
    inj.load_state_dict(state)
    with inj.perturb(negate=True):
        minus = [p.detach().clone() for p in model.parameters()]
    assert inj.last_layer == layer and inj.step == 1
    for c, a, b in zip(clean, plus, minus):
        torch.testing.assert_close(a - c, c - b, rtol=0, atol=1e-15)
    assert all(torch.equal(c, p) for c, p in zip(clean, model.parameters()))


@pytest.mark.parametrize("samples,antithetic,clean_weight", [(3, False, 0.0), (2, True, 0.0), (1, True, 0.5),
                                                              (2, False, 0.25)])
def test_step_uses_the_weighted_mean_of_the_gradients_at_the_captured_points(samples, antithetic, clean_weight):
    model, x, y, inj = _setup()
    opt = nr.NoisyOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), inj, samples=samples,
                            antithetic=antithetic, clean_weight=clean_weight)
    seen = []

    def closure():
        opt.zero_grad()
        seen.append([p.detach().clone() for p in model.parameters()])
        loss = _loss(model, x, y)
        loss.backward()
        return loss

    start = [p.detach().clone() for p in model.parameters()]
    loss = opt.step(closure)
    evals = samples * (2 if antithetic else 1)
    assert len(seen) == evals + (clean_weight > 0) == opt.grad_evals_per_step
    assert inj.step == samples                                  # draws, not evaluations
    ref = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()

    def grad_at(point):
        with torch.no_grad():
            for q, v in zip(ref.parameters(), point):
                q.copy_(v)
        ref.zero_grad()
        value = _loss(ref, x, y)
        value.backward()
        return [q.grad.clone() for q in ref.parameters()], value.item()

    grads = [grad_at(pt) for pt in seen]
    noisy = grads[:evals]
    mean = [sum(g[0][i] for g in noisy) / evals for i in range(len(start))]
    if clean_weight > 0:
        torch.testing.assert_close(seen[-1], start, rtol=0, atol=0)   # the last evaluation is at the clean weights
        mean = [clean_weight * c + (1 - clean_weight) * m for c, m in zip(grads[-1][0], mean)]
    for p, s, g in zip(model.parameters(), start, mean):
        torch.testing.assert_close(p.detach(), s - 0.1 * g, rtol=1e-12, atol=1e-14)
    assert float(loss) == pytest.approx(sum(v for _, v in noisy) / evals, rel=1e-12)
    if antithetic:
        for a, b, c in zip(seen[0], seen[1], start):
            torch.testing.assert_close(a - c, c - b, rtol=0, atol=1e-15)


def test_one_antithetic_step_on_a_quadratic_is_a_clean_step():
    """Quadratic loss: the gradient is affine in w, so ½(g(w+ξ) + g(w−ξ)) = g(w): within 1e-12 (float64)."""
    torch.manual_seed(1)
    A = torch.randn(6, 6, dtype=torch.float64)
    A = A @ A.T + torch.eye(6, dtype=torch.float64)
    b = torch.randn(6, dtype=torch.float64)
    w1 = torch.nn.Parameter(torch.randn(6, dtype=torch.float64))
    w2 = torch.nn.Parameter(w1.detach().clone())
    quad = lambda w: 0.5 * w @ A @ w - b @ w  # noqa: E731
    inj = nr.NoiseInjector([w1], sigma=0.7, mode="full", seed=3)
    noisy = nr.NoisyOptimizer(torch.optim.SGD([w1], lr=0.05), inj, antithetic=True)
    clean = torch.optim.SGD([w2], lr=0.05)

    def closure():
        noisy.zero_grad()
        loss = quad(w1)
        loss.backward()
        return loss

    noisy.step(closure)
    clean.zero_grad()
    quad(w2).backward()
    clean.step()
    torch.testing.assert_close(w1.detach(), w2.detach(), rtol=0, atol=1e-12)
    assert inj.step == 1


@pytest.mark.parametrize("kwargs,error,match", [
    ({"samples": 0}, ValueError, "samples must be an integer >= 1"),
    ({"samples": 1.5}, TypeError, "samples must be an integer"),
    ({"antithetic": 1}, TypeError, "antithetic must be True or False"),
    ({"clean_weight": 1.5}, ValueError, r"clean_weight must be a number in \[0, 1\]"),
    ({"clean_weight": -0.1}, ValueError, r"clean_weight must be a number in \[0, 1\]"),
])
def test_noisy_optimizer_settings_are_checked(kwargs, error, match):
    model, *_, inj = _setup()
    with pytest.raises(error, match=match):
        nr.NoisyOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), inj, **kwargs)


def test_the_default_step_is_unchanged():
    """samples=1, no antithetic, no clean weight: one evaluation, the closure's gradient stepped on as before."""
    model, x, y, inj = _setup()
    opt = nr.NoisyOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), inj)
    assert opt.grad_evals_per_step == 1
    m2, _, _, inj2 = _setup()
    start = [p.detach().clone() for p in m2.parameters()]

    def closure():
        opt.zero_grad()
        loss = _loss(model, x, y)
        loss.backward()
        return loss

    opt.step(closure)
    with inj2.perturb():
        _loss(m2, x, y).backward()
    for p, q, s in zip(model.parameters(), m2.parameters(), start):
        torch.testing.assert_close(p.detach(), s - 0.1 * q.grad, rtol=0, atol=1e-15)
