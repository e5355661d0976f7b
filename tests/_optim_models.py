"""The model, data, loss and closure shared by the tests of the optimizer wrappers (NoisyOptimizer, SAM)."""

import torch
from torch import nn


def make_model(seed=0, dtype=torch.float64):
    """ReLU and tanh layers (smooth and piecewise-linear parts), 5 -> 12 -> 12 -> 2, seeded."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 12), nn.ReLU(), nn.Linear(12, 12), nn.Tanh(), nn.Linear(12, 2)).to(dtype)


def data(n=32, dtype=torch.float64, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g, dtype=dtype), torch.randn(n, 2, generator=g, dtype=dtype)


def sq_loss(model, x, y):
    return 0.5 * (model(x) - y).pow(2).sum(1).mean()


def closure_for(opt, model, x, y, seen=None):
    """The torch.optim closure on (x, y); ``seen`` collects the weights each call sees."""
    def closure():
        opt.zero_grad()
        if seen is not None:
            seen.append([p.detach().clone() for p in model.parameters()])
        loss = sq_loss(model, x, y)
        loss.backward()
        return loss
    return closure
