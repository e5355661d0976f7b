"""Cost of the exact GGN trace in units of one plain gradient, measured side by side in one run.

Each method is timed in pairs with the plain gradient only (benchmarks/timing.py: warm-up,
several calls per timing for calls under 20 ms, alternating order, median of per-pair ratios
with quartiles and range). Long methods get their own block after the short one.
  gradient     forward + backward of the mean loss on the batch (the unit)
  ggn_trace    noisereg's exact trace (fast path)
  jacobian     brute force: per-sample Jacobians with torch.func (ggn_trace(method="functorch"))
  hutchinson   noisereg.hessian_trace with 100 Rademacher probes (10 per batched backward)
  backpack     BackPACK's DiagGGNExact summed (only if `backpack-for-pytorch` is installed)

Workloads: MLP 784-512-512-10 with cross-entropy on 256 samples; the paper's toy CNN (Fig. 5:
2 conv layers with 5 channels, max-pool, MLP head) on 256 CIFAR-shaped inputs; a wider CNN
(3 conv layers with 32 channels) as a harder case.

    python benchmarks/curvature.py [--pairs 15] [--long-pairs 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import platform

import torch
import torch.nn.functional as F
from torch import nn

import noisereg as nr
from timing import paired


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


def bench(label, model, x, y, pairs, long_pairs, with_jacobian=True):
    model.eval()

    def gradient():
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()

    short = {"ggn_trace": lambda: nr.ggn_trace(model, x, y, "cross_entropy")}
    long = {"hutchinson": lambda: nr.hessian_trace(model, x, y, "cross_entropy", num_samples=100)}
    if with_jacobian:
        long["jacobian"] = lambda: nr.ggn_trace(model, x, y, "cross_entropy", method="functorch")
    try:
        import backpack  # noqa: F401

        import copy
        bp_model = copy.deepcopy(model)
        long["backpack"] = lambda: backpack_trace(bp_model, x, y)
    except ImportError:
        pass
    values = {"ggn_trace": short["ggn_trace"](), "hutchinson": long["hutchinson"]()[0]}
    if "backpack" in long:
        values["backpack"] = long["backpack"]()
    results = {k: paired(f, gradient, pairs=pairs) for k, f in short.items()}
    results |= {k: paired(f, gradient, pairs=long_pairs, warmup=1) for k, f in long.items()}
    print(f"\n== {label}: {sum(p.numel() for p in model.parameters()) / 1e6:.3f} M params, n={x.shape[0]}")
    print(f"gradient: {results['ggn_trace'].reference_ms:.2f} ms")
    print(f"{'method':<12} {'median ms':>10}   gradients (median of per-pair ratios)")
    for k, r in results.items():
        print(f"{k:<12} {r.method_ms:>10.1f}   {r.describe()}")
    print("values: " + ", ".join(f"{k}={v:.6g}" for k, v in values.items()))
    return {"workload": label, "gradient_ms": results["ggn_trace"].reference_ms,
            "gradients": {k: r.as_dict() for k, r in results.items()}, "values": values}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=15, help="pairs for ggn_trace vs gradient (>= 3)")
    ap.add_argument("--long-pairs", type=int, default=5, help="pairs for the long methods (>= 3)")
    ap.add_argument("--only", choices=["mlp", "toy", "wide"], action="append", help="workloads (default: all)")
    ap.add_argument("--json")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} threads")
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    data = {name: (torch.randn(256, *shape, generator=g), torch.randint(10, (256,), generator=g))
            for name, shape in (("mlp", (784,)), ("toy", (3, 32, 32)), ("wide", (3, 32, 32)))}
    workloads = {"mlp": ("MLP 784-512-512-10, cross-entropy", mlp),
                 "toy": ("toy CNN (Fig. 5), 3x32x32, cross-entropy", toy_cnn),
                 "wide": ("wide CNN 3x32ch, 3x32x32, cross-entropy", wide_cnn)}
    res = [bench(label, make(), *data[name], args.pairs, args.long_pairs)
           for name, (label, make) in workloads.items() if not args.only or name in args.only]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
