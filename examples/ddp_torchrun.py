"""Noise injection under DistributedDataParallel, launched with torchrun (CPU: gloo).
==================================================================================

    torchrun --standalone --nproc_per_node 2 examples/ddp_torchrun.py [--steps 100]

Every rank builds the injector with the same seed, so every rank perturbs the same layer with the
same noise: the K-rank run is the 1-process algorithm on the union of the ranks' batches.
"""

import argparse
import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

import noisereg as nr

parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])  # the docs gallery runs it without a docstring
parser.add_argument("--steps", type=int, default=100)
parser.add_argument("--sigma", type=float, default=0.05)
args = parser.parse_args()

dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
rank, world = dist.get_rank(), dist.get_world_size()
device = torch.device(f"cuda:{int(os.environ['LOCAL_RANK'])}") if torch.cuda.is_available() else torch.device("cpu")

# ---- data: each rank takes its own shard of one data set
g = torch.Generator().manual_seed(0)
x = torch.randn(512, 20, generator=g)
y = x[:, :3].sum(1, keepdim=True) + 0.1 * torch.randn(512, 1, generator=g)
x, y = x[rank::world].to(device), y[rank::world].to(device)

# ---- model: the same initial weights on every rank (DDP also broadcasts rank 0's)
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(20, 256), torch.nn.ReLU(), torch.nn.Linear(256, 1)).to(device)
ddp = DDP(model)
optimizer = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
inj = nr.NoiseInjector(model, sigma=args.sigma, mode="layer", seed=0)  # same seed on every rank

# ---- train
for _ in range(args.steps):
    optimizer.zero_grad()
    with inj.perturb():
        loss = 0.5 * (ddp(x) - y).pow(2).sum(1).mean()
        loss.backward()                  # DDP averages the gradients of the noisy point over ranks
    optimizer.step()

# ---- check: every rank draws the same noise (one more draw, gathered from all ranks)
with inj.perturb():
    noisy = torch.cat([p.detach().flatten() for p in model.parameters()])
gathered = [torch.empty_like(noisy) for _ in range(world)]
dist.all_gather(gathered, noisy)
agree = all(torch.equal(t, gathered[0]) for t in gathered)
if rank == 0:
    print(f"{world} ranks, {args.steps} steps: loss {loss.item():.4f}, noisy weights agree on all ranks: {agree}")
dist.destroy_process_group()
if not agree:
    raise SystemExit("ranks disagree")
