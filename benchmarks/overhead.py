"""Overhead of a noisy step over a plain step, measured side by side in one run.

Methods, each with its own copy of the same model and optimizer:
  plain         forward + backward + SGD step
  full / layer  the same inside NoiseInjector.perturb() (mode "full" / "layer")
  naive-full / naive-layer
                the common hand-written pattern: clone every perturbed tensor, add fresh noise in
                place, forward + backward, copy the clones back (the baseline to beat)

Each method is timed in pairs with the plain step only (benchmarks/timing.py: warm-up, enough
steps per timing to last 20 ms, alternating which goes first); its ratio is the median of the
per-pair ratios, printed with quartiles and range. The floor of each mode, drawing its Gaussians
alone, is paired with the plain step the same way; and each noisy step is also paired directly with
"plain step + drawing its Gaussians" (the floor step): that ratio minus 1 is the overhead above the
floor, measured side by side rather than as a difference of two separately measured ratios.
Extra peak memory: CUDA from torch.cuda.max_memory_allocated; CPU from the profiler's memory
timeline. Workloads: CPU, MLP 64-1024-1024-10 on 1024 samples, full batch; CUDA (when present),
CIFAR ResNet-18 at batch 128.

    python benchmarks/overhead.py [--pairs 15] [--device cpu|cuda|all] [--json FILE]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import tempfile
import warnings

import torch
import torch.nn.functional as F

import noisereg as nr
from noisereg.models import MLP, ResNet18
from noisereg.noise import NoiseLaw
from timing import paired

SIGMA = 0.01


class Naive:
    """Clone, add noise in place, restore by copying the clones back (one layer or all).

    Which parameters and which std come from the same :class:`noisereg.noise.NoiseLaw` as the
    injector's; only the draw-and-restore pattern is the naive one being measured.
    """

    def __init__(self, model, mode, seed=0):
        self.law = NoiseLaw(model, SIGMA, mode=mode)
        self.g = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
        self.choice_gen = torch.Generator().manual_seed(seed)
        self.t = 0

    def run(self, closure):
        params = self.law.perturbed_params(self.law.choose(self.t, self.choice_gen))
        self.t += 1
        std = self.law.std
        with torch.no_grad():
            backup = [p.clone() for p in params]
            for p in params:
                p.add_(torch.randn(p.shape, generator=self.g, device=p.device, dtype=p.dtype) * std)
        try:
            closure()
        finally:
            with torch.no_grad():
                for p, b in zip(params, backup):
                    p.copy_(b)


class Draw:
    """The floor of a mode: drawing the Gaussians of one noisy step alone (the law's layer choice)."""

    def __init__(self, model, mode, device):
        self.law = NoiseLaw(model, SIGMA, mode=mode)
        self.g = torch.Generator(device=device).manual_seed(0)
        self.choice_gen = torch.Generator().manual_seed(0)
        self.device, self.t = device, 0

    def __call__(self):
        params = self.law.perturbed_params(self.law.choose(self.t, self.choice_gen))
        self.t += 1
        n = sum(p.numel() for p in params)
        return torch.empty(n, device=self.device).normal_(0.0, self.law.std, generator=self.g)


def make_methods(model, lr):
    methods = {}
    for name in ("plain", "full", "layer", "naive-full", "naive-layer"):
        m = copy.deepcopy(model)
        opt = torch.optim.SGD(m.parameters(), lr=lr)
        if name in ("full", "layer"):
            wrap = nr.NoiseInjector(m, SIGMA, mode=name, seed=0)
        elif name.startswith("naive"):
            wrap = Naive(m, name.split("-")[1])
        else:
            wrap = None
        methods[name] = (m, opt, wrap)
    return methods


def make_step(model, opt, wrap, x, y):
    def closure():
        F.cross_entropy(model(x), y).backward()

    def step():
        opt.zero_grad(set_to_none=False)
        if wrap is None:
            closure()
        elif isinstance(wrap, Naive):
            wrap.run(closure)
        else:
            with wrap.perturb():
                closure()
        opt.step()
    return step


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def extra_peak_memory(steps, device, repeat):
    """Peak memory over ``repeat[name]`` steps of each method, minus the plain step's, in MiB.

    Layer methods run several steps so that the largest layer is among those perturbed.
    """
    peaks = {}
    for name, step in steps.items():
        step()
        sync(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
            for _ in range(repeat[name]):
                step()
            sync(device)
            peaks[name] = (torch.cuda.max_memory_allocated(device) - base) / 2**20
        else:
            from torch.profiler import ProfilerActivity, profile
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with profile(activities=[ProfilerActivity.CPU], profile_memory=True,
                             record_shapes=True, with_stack=True) as prof:
                    for _ in range(repeat[name]):
                        step()
                fd, path = tempfile.mkstemp(suffix=".raw.json")
                os.close(fd)
                try:
                    prof.export_memory_timeline(path, device="cpu")
                    _, sizes = json.load(open(path))
                finally:
                    os.remove(path)
            peaks[name] = max(sum(s) for s in sizes) / 2**20
    return {k: v - peaks["plain"] for k, v in peaks.items()}


def bench(label, model, x, y, device, pairs, lr=0.01):
    methods = make_methods(model.to(device), lr)
    steps = {k: make_step(m, o, w, x, y) for k, (m, o, w) in methods.items()}
    names = [k for k in steps if k != "plain"]
    n_params = sum(p.numel() for p in model.parameters())
    draws = {"full": Draw(model, "full", device), "layer": Draw(model, "layer", device)}
    plain = steps["plain"]
    res = {k: paired(steps[k], plain, pairs=pairs, sync=lambda: sync(device)) for k in names}
    floor = {m: paired(d, plain, pairs=pairs, sync=lambda: sync(device)) for m, d in draws.items()}
    n_layers = len(methods["layer"][2].layers)
    mem = extra_peak_memory(steps, device, {k: 3 * n_layers if "layer" in k else 1 for k in steps})
    print(f"\n== {label}  ({n_params / 1e6:.2f} M params, {pairs} pairs per method)")
    print(f"plain step: {res['full'].reference_ms:.2f} ms")
    print(f"{'method':<12} {'ms/step':>8} {'extra MiB':>10}   ratio vs plain (median of per-pair ratios)")
    for k in names:
        print(f"{k:<12} {res[k].method_ms:>8.2f} {mem[k]:>10.2f}   {res[k].describe()}")
    # the target, measured directly: each noisy step paired with "plain step + drawing its Gaussians"
    at_floor = {m: paired(steps[m], lambda d=d: (d(), plain()), pairs=pairs, sync=lambda: sync(device))
                for m, d in draws.items()}
    above = {}
    for mode in ("full", "layer"):
        f = 1 + floor[mode].median
        above[mode] = at_floor[mode].median - 1
        print(f"floor for '{mode}' = 1 + (drawing its Gaussians alone: {floor[mode].method_ms:.3f} ms) / plain "
              f"= {f:.3f}; noisy step / (plain step + that draw), paired directly: {at_floor[mode].describe()}")
    return {"workload": label, "params": n_params, "pairs": pairs, "plain_ms": res["full"].reference_ms,
            "ratio": {k: r.as_dict() for k, r in res.items()},
            "floor": {m: 1 + r.median for m, r in floor.items()}, "draw_ms": {m: r.method_ms for m, r in floor.items()},
            "above_floor": above, "vs_floor_step": {m: r.as_dict() for m, r in at_floor.items()},
            "extra_peak_mib": mem}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=15, help="timed pairs per method (>= 3)")
    ap.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    if args.pairs < 3:
        ap.error(f"--pairs must be >= 3, got {args.pairs}")
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads" + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))
    results = []
    g = torch.Generator().manual_seed(0)
    if args.device in ("cpu", "all"):
        torch.manual_seed(0)
        x = torch.randn(1024, 64, generator=g)
        y = torch.randint(10, (1024,), generator=g)
        results.append(bench("cpu MLP 64-1024-1024-10, n=1024 full batch, SGD", MLP(64, (1024, 1024), 10),
                             x, y, torch.device("cpu"), args.pairs))
    if args.device in ("cuda", "all") and torch.cuda.is_available():
        dev = torch.device("cuda")
        torch.backends.cudnn.benchmark = True
        torch.manual_seed(0)
        x = torch.randn(128, 3, 32, 32, device=dev)
        y = torch.randint(10, (128,), device=dev)
        results.append(bench("cuda ResNet-18 CIFAR, batch 128, SGD", ResNet18(), x, y, dev, args.pairs))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main()
