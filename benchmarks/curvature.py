"""Cost of the exact GGN trace in units of one plain gradient, measured side by side in one run.

Methods (each timed in the same interleaved repetitions as the plain gradient):
  gradient     forward + backward of the mean loss on the batch (the unit)
  ggn_trace    noisereg's exact trace (fast path)
  jacobian     brute force: per-sample Jacobians with torch.func (ggn_trace(method="functorch"))
  hutchinson   noisereg.hessian_trace with 100 Rademacher probes (10 per batched backward)
  backpack     BackPACK's DiagGGNExact summed (only if `backpack-for-pytorch` is installed)

Workloads: MLP 784-512-512-10 with cross-entropy on 256 samples; the paper's toy CNN (Fig. 5:
2 conv layers with 5 channels, max-pool, MLP head) on 256 CIFAR-shaped inputs; a wider CNN
(3 conv layers with 32 channels) as a harder case.

    python benchmarks/curvature.py [--reps 7] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

import noisereg as nr


def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))


def toy_cnn():
    return nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(5, 5, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(5 * 8 * 8, 256), nn.ReLU(), nn.Linear(256, 10))


def wide_cnn():
    return nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 16, 10))


def backpack_trace(model, x, y):
    from backpack import backpack, extend
    from backpack.extensions import DiagGGNExact

    model = extend(model)
    lossf = extend(nn.CrossEntropyLoss())
    with backpack(DiagGGNExact()):
        model.zero_grad()
        lossf(model(x), y).backward()
    return sum(p.diag_ggn_exact.sum().item() for p in model.parameters())


def bench(label, model, x, y, reps, with_jacobian=True):
    model.eval()

    def gradient():
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()

    methods = {"gradient": gradient,
               "ggn_trace": lambda: nr.ggn_trace(model, x, y, "cross_entropy"),
               "hutchinson": lambda: nr.hessian_trace(model, x, y, "cross_entropy", num_samples=100)}
    if with_jacobian:
        methods["jacobian"] = lambda: nr.ggn_trace(model, x, y, "cross_entropy", method="functorch")
    try:
        import backpack  # noqa: F401

        import copy
        bp_model = copy.deepcopy(model)
        methods["backpack"] = lambda: backpack_trace(bp_model, x, y)
    except ImportError:
        pass
    values = {"ggn_trace": methods["ggn_trace"](), "hutchinson": methods["hutchinson"]()}
    if "backpack" in methods:
        values["backpack"] = methods["backpack"]()
    for f in methods.values():  # warm-up
        f()
    times = {k: [] for k in methods}
    names = list(methods)
    for r in range(reps):
        for k in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            methods[k]()
            times[k].append(time.perf_counter() - t0)
    units = {k: statistics.median(a / b for a, b in zip(times[k], times["gradient"])) for k in names}
    print(f"\n== {label}: {sum(p.numel() for p in model.parameters()) / 1e6:.3f} M params, n={x.shape[0]}, "
          f"{reps} interleaved reps")
    print(f"{'method':<12} {'median ms':>10} {'gradients':>10}")
    for k in names:
        print(f"{k:<12} {1e3 * statistics.median(times[k]):>10.1f} {units[k]:>10.2f}")
    print("values: " + ", ".join(f"{k}={v if isinstance(v, float) else v[0]:.6g}" for k, v in values.items()))
    return {"workload": label, "ms": {k: 1e3 * statistics.median(v) for k, v in times.items()}, "gradients": units}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--json")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} threads")
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    res = [bench("MLP 784-512-512-10, cross-entropy", mlp(), torch.randn(256, 784, generator=g),
                 torch.randint(10, (256,), generator=g), args.reps),
           bench("toy CNN (Fig. 5), 3x32x32, cross-entropy", toy_cnn(), torch.randn(256, 3, 32, 32, generator=g),
                 torch.randint(10, (256,), generator=g), args.reps),
           bench("wide CNN 3x32ch, 3x32x32, cross-entropy", wide_cnn(), torch.randn(256, 3, 32, 32, generator=g),
                 torch.randint(10, (256,), generator=g), args.reps)]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
