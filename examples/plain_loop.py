"""Noise injection in a hand-written PyTorch loop: the three-line form and the closure form.
=========================================================================================

    python examples/plain_loop.py [--steps 300] [--sigma 0.05]

A wide two-layer ReLU net fits noisy regression data with SGD. The three-line loop and
`nr.NoisyOptimizer` are the same algorithm: both runs end with bit-identical weights.
"""

import argparse
import copy

import torch

import noisereg as nr

parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])  # the docs gallery runs it without a docstring
parser.add_argument("--steps", type=int, default=300)
parser.add_argument("--sigma", type=float, default=0.05)
args = parser.parse_args()

# ---- data and model
g = torch.Generator().manual_seed(0)
x = torch.randn(256, 20, generator=g)
y = x[:, :3].sum(1, keepdim=True) + 0.1 * torch.randn(256, 1, generator=g)
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(20, 512), torch.nn.ReLU(), torch.nn.Linear(512, 1))
twin = copy.deepcopy(model)


def loss_fn(net):
    return 0.5 * (net(x) - y).pow(2).sum(1).mean()


# ---- 1. the three-line loop
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
inj = nr.NoiseInjector(model, sigma=args.sigma, mode="layer", seed=0)
for _ in range(args.steps):
    optimizer.zero_grad()
    with inj.perturb():                  # the weights are w + noise inside
        loss_fn(model).backward()        # gradient at the perturbed point
    optimizer.step()                     # applied at the clean point

# ---- 2. the same, in the torch.optim closure convention
opt = nr.NoisyOptimizer(torch.optim.SGD(twin.parameters(), lr=0.05, momentum=0.9),
                        nr.NoiseInjector(twin, sigma=args.sigma, mode="layer", seed=0))
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0)  # schedulers attach to the wrapper


def closure():
    opt.zero_grad()
    loss = loss_fn(twin)
    loss.backward()
    return loss


for _ in range(args.steps):
    opt.step(closure)
    sched.step()

# ---- result
same = all(torch.equal(p, q) for p, q in zip(model.parameters(), twin.parameters()))
with torch.no_grad():
    print(f"train loss {loss_fn(model).item():.4f} after {args.steps} steps (sigma={args.sigma}); "
          f"three-line loop == NoisyOptimizer: {same}")
if not same:
    raise SystemExit("the two forms differ")
