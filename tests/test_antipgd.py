"""GD with full-parameter noise, read at the perturbed point, is anticorrelated perturbed GD (docs/THEORY.md §8).

With w̃_t = w_t + ε_t (ε_t the injector's noise, std σ), plain GD on the noisy gradient,
w_{t+1} = w_t − η∇L(w̃_t), gives w̃_{t+1} = w̃_t − η∇L(w̃_t) + (ε_{t+1} − ε_t): Anti-PGD of
Orvieto et al. (ICML 2022). With momentum or Adam the recursion breaks.
"""

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad

import noisereg as nr

DT = torch.float64
LR, SIGMA, STEPS = 0.05, 0.1, 40


def setup(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 10), nn.Tanh(), nn.Linear(10, 2)).to(DT)
    g = torch.Generator().manual_seed(seed + 1)
    return model, torch.randn(24, 4, generator=g, dtype=DT), torch.randn(24, 2, generator=g, dtype=DT)


def flat(ps):
    return torch.cat([p.detach().reshape(-1) for p in ps])


def run(make_opt, seed=0):
    """Noisy GD through the three-line loop; returns clean iterates w_t, perturbed points w̃_t, and ∇L(w̃_t)."""
    model, x, y = setup(seed)
    inj = nr.NoiseInjector(model, SIGMA, mode="full", seed=seed)
    opt = make_opt(model.parameters())
    names = [k for k, _ in model.named_parameters()]
    loss = lambda ps: 0.5 * (functional_call(model, dict(zip(names, ps)), (x,)) - y).pow(2).sum(1).mean()  # noqa: E731
    clean, noisy, grads = [], [], []
    for _ in range(STEPS + 1):
        clean.append(flat(model.parameters()))
        opt.zero_grad()
        with inj.perturb():
            point = [p.detach().clone() for p in model.parameters()]
            noisy.append(flat(point))
            grads.append(flat(grad(loss)(point)))  # ∇L at the perturbed point, from torch.func
            l_val = 0.5 * (model(x) - y).pow(2).sum(1).mean()
            l_val.backward()
        opt.step()
    return torch.stack(clean), torch.stack(noisy), torch.stack(grads)


def residual(clean, noisy, grads):
    """w̃_{t+1} − [w̃_t − η∇L(w̃_t) + (ε_{t+1} − ε_t)], ε_t = w̃_t − w_t (max over t and entries)."""
    eps = noisy - clean
    pred = noisy[:-1] - LR * grads[:-1] + (eps[1:] - eps[:-1])
    return (noisy[1:] - pred).abs().max().item()


def test_noisy_gd_at_the_perturbed_point_is_anti_pgd():
    clean, noisy, grads = run(lambda p: torch.optim.SGD(p, lr=LR))
    scale = noisy.abs().max().item()
    assert residual(clean, noisy, grads) <= 1e-12 * scale


def test_the_perturbations_of_anti_pgd_are_anticorrelated():
    """ξ_{t+1} = ε_{t+1} − ε_t: Var ξ = 2σ², Cov(ξ_{t+1}, ξ_t) = −σ², correlation −1/2."""
    clean, noisy, _ = run(lambda p: torch.optim.SGD(p, lr=LR))
    xi = (noisy - clean).diff(dim=0)  # (STEPS, params): 40 × 52 = 2080 increments
    assert xi.var().item() == pytest.approx(2 * SIGMA ** 2, rel=0.1)
    corr = (xi[1:] * xi[:-1]).mean() / xi.pow(2).mean()
    assert corr.item() == pytest.approx(-0.5, abs=0.06)


@pytest.mark.parametrize("name,make_opt", [
    ("momentum-0.9", lambda p: torch.optim.SGD(p, lr=LR, momentum=0.9)),
    ("adam", lambda p: torch.optim.Adam(p, lr=LR)),
], ids=["momentum", "adam"])
def test_with_momentum_or_adam_the_recursion_breaks(name, make_opt):
    """The update is no longer −η∇L(w̃_t): the residual is of the order of the steps themselves."""
    clean, noisy, grads = run(make_opt)
    step = (clean[1:] - clean[:-1]).abs().max().item()
    assert residual(clean, noisy, grads) > 0.1 * step > 0
