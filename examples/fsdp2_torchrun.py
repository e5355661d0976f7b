"""Noise injection on an FSDP2-sharded model (fully_shard), launched with torchrun (CPU: gloo).
============================================================================================

    torchrun --standalone --nproc_per_node 2 examples/fsdp2_torchrun.py [--steps 50] [--mode layer]

Every rank shards the same MLP with ``fully_shard`` (each Linear, then the root) and builds the
injector after it, from the sharded module, with the same seed. Inside ``inj.perturb()`` each rank
adds noise in place to its own shards (independent across shards; in layer mode all ranks perturb
the same layer); on exit every shard is copied back from a saved copy, bit for bit.

On torch 2.13 CPU (gloo), torchrun sometimes reports a SIGABRT ("terminate called without an
active exception") after the script has finished and printed its result: a teardown issue of
FSDP2 under gloo that a bare ``fully_shard`` script without noisereg shows as well.
"""

import argparse
import os

import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard

import noisereg as nr

parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])  # the docs gallery runs it without a docstring
parser.add_argument("--steps", type=int, default=50)
parser.add_argument("--mode", choices=["full", "layer"], default="layer")
parser.add_argument("--sigma", type=float, default=0.05)
args = parser.parse_args()

dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
rank, world = dist.get_rank(), dist.get_world_size()
device = torch.device(f"cuda:{int(os.environ['LOCAL_RANK'])}") if torch.cuda.is_available() else torch.device("cpu")
if device.type == "cuda":
    torch.cuda.set_device(device)  # fully_shard shards onto the current device

# ---- data: each rank takes its own shard of one data set
g = torch.Generator().manual_seed(0)
x = torch.randn(512, 16, generator=g)
y = torch.sin(x[:, :4]) + 0.1 * torch.randn(512, 4, generator=g)
x, y = x[rank::world].to(device), y[rank::world].to(device)

# ---- model: the same initial weights on every rank, then sharded (parameters become DTensors)
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(),
                            torch.nn.Linear(64, 4)).to(device)
for layer in model:
    if isinstance(layer, torch.nn.Linear):
        fully_shard(layer)
fully_shard(model)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
inj = nr.NoiseInjector(model, sigma=args.sigma, mode=args.mode, seed=0)  # after fully_shard, on every rank

# ---- train
exact = True
for _ in range(args.steps):
    optimizer.zero_grad()
    clean = [p.to_local().clone() for p in model.parameters()]  # only to show the exact restore
    with inj.perturb():
        loss = 0.5 * (model(x) - y).pow(2).sum(1).mean()
        loss.backward()                  # FSDP reduce-scatters the gradient of the noisy point
    exact &= all(torch.equal(p.to_local(), c) for p, c in zip(model.parameters(), clean))
    optimizer.step()                     # at the clean weights

# ---- check: every rank perturbed the same layer
layers = [None] * world
dist.all_gather_object(layers, inj.last_layer)
loss = loss.detach()
dist.all_reduce(loss)
if rank == 0:
    print(f"{world} ranks, {args.steps} steps, mode {args.mode}: loss {loss.item() / world:.4f}, "
          f"restored exactly: {exact}, same layer on all ranks: {len(set(layers)) == 1}")
dist.destroy_process_group()
# each rank's injector state (inj.state_dict()) holds its own shards' generators: save it per rank
if not exact or len(set(layers)) != 1:
    raise SystemExit("inexact restore or ranks disagree")
