"""Cost of the exact GGN trace in units of one plain gradient, measured side by side in one run.

Each method is timed in pairs with the plain gradient only (benchmarks/timing.py: warm-up,
several calls per timing for calls under 20 ms, alternating order, median of per-pair ratios
with quartiles and range). Long methods get their own block after the short one.
  gradient     forward + backward of the mean loss on the batch (the unit)
  ggn_trace    noisereg's exact trace (fast path)
  jacobian     brute force: per-sample Jacobians with torch.func (ggn_trace(method="functorch"))
  hutchinson   noisereg.hessian_trace with 100 Rademacher probes (10 per batched backward)
  sampled      noisereg.sampled_ggn_trace with --draws label draws (default 8): also given per draw
  backpack     BackPACK's DiagGGNExact summed (only if `backpack-for-pytorch` is installed)

Workloads: MLP 784-512-512-10 with cross-entropy on 256 samples; the paper's toy CNN (Fig. 5:
2 conv layers with 5 channels, max-pool, MLP head) on 256 CIFAR-shaped inputs; a wider CNN
(3 conv layers with 32 channels) as a harder case.

    python benchmarks/curvature.py [--pairs 15] [--long-pairs 5] [--draws 8] [--json FILE]

Peak memory of the exact trace at fig6 scale (CIFAR ResNet-18, width 64, 32x32 inputs, 10
classes): each N:CHUNK runs ggn_trace on N samples in a fresh process and reports its peak
resident memory (ru_maxrss) and time; CHUNK 0 is the default chunk, CHUNK = N one piece.

    python benchmarks/curvature.py --memory 8:8 16:16 32:32 32:0 128:0 512:0
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time

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


def bench(label, model, x, y, pairs, long_pairs, with_jacobian=True, draws=8, with_long=True):
    model.eval()

    def gradient():
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()

    short = {"ggn_trace": lambda: nr.ggn_trace(model, x, y, "cross_entropy"),
             "sampled": lambda: nr.sampled_ggn_trace(model, x, y, "cross_entropy", num_samples=draws)}
    long = {"hutchinson": lambda: nr.hessian_trace(model, x, y, "cross_entropy", num_samples=100)}
    if not with_long:
        long = {}
    if with_jacobian and with_long:
        long["jacobian"] = lambda: nr.ggn_trace(model, x, y, "cross_entropy", method="functorch")
    try:
        import backpack  # noqa: F401

        import copy
        bp_model = copy.deepcopy(model)
        if with_long:
            long["backpack"] = lambda: backpack_trace(bp_model, x, y)
    except ImportError:
        pass
    est, se = short["sampled"]()
    values = {"ggn_trace": short["ggn_trace"](), "sampled": est, "sampled_se": se}
    if "hutchinson" in long:
        values["hutchinson"] = long["hutchinson"]()[0]
    if "backpack" in long:
        values["backpack"] = long["backpack"]()
    results = {k: paired(f, gradient, pairs=pairs) for k, f in short.items()}
    results |= {k: paired(f, gradient, pairs=long_pairs, warmup=1) for k, f in long.items()}
    print(f"\n== {label}: {sum(p.numel() for p in model.parameters()) / 1e6:.3f} M params, n={x.shape[0]}")
    print(f"gradient: {results['ggn_trace'].reference_ms:.2f} ms")
    print(f"{'method':<12} {'median ms':>10}   gradients (median of per-pair ratios)")
    for k, r in results.items():
        print(f"{k:<12} {r.method_ms:>10.1f}   {r.describe()}")
    r = results["sampled"]
    q1, q3 = r.quartiles
    print(f"sampled per draw ({draws} draws): {r.median / draws:.3f} gradients "
          f"(IQR {q1 / draws:.3f}-{q3 / draws:.3f}, range {min(r.ratios) / draws:.3f}-{max(r.ratios) / draws:.3f})")
    print("values: " + ", ".join(f"{k}={v:.6g}" for k, v in values.items()))
    return {"workload": label, "gradient_ms": results["ggn_trace"].reference_ms, "draws": draws,
            "gradients": {k: r.as_dict() for k, r in results.items()}, "values": values}


def memory_child(n, chunk):
    """One ggn_trace of a CIFAR ResNet-18 on n samples in this process; print its peak memory (JSON)."""
    from noisereg.models import ResNet18

    torch.manual_seed(0)
    model = ResNet18(num_classes=10, in_channels=3, width=64).eval()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 3, 32, 32, generator=g), torch.randint(10, (n,), generator=g)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    trace = nr.ggn_trace(model, x, y, "cross_entropy", chunk_size=chunk or None)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"n": n, "chunk": chunk or "default", "peak_mb": round(peak), "before_mb": round(before),
                      "seconds": round(seconds, 1), "trace": trace}))


def memory(specs):
    print(f"torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} threads; "
          "CIFAR ResNet-18 width 64, 32x32, cross-entropy; ru_maxrss of a fresh process per line")
    print(f"{'n':>5} {'chunk':>8} {'peak MB':>8} {'before MB':>9} {'s':>7}  trace")
    out = []
    for spec in specs:
        n, chunk = (int(v) for v in spec.split(":"))
        res = subprocess.run([sys.executable, __file__, "--memory-child", str(n), str(chunk)],
                             capture_output=True, text=True)
        if res.returncode != 0:
            print(f"{n:>5} {chunk or 'default':>8}  failed (exit {res.returncode}): {res.stderr.strip()[-200:]}")
            continue
        r = json.loads(res.stdout.strip().splitlines()[-1])
        print(f"{r['n']:>5} {r['chunk']:>8} {r['peak_mb']:>8} {r['before_mb']:>9} {r['seconds']:>7}  {r['trace']:.6g}")
        out.append(r)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=15, help="pairs for ggn_trace vs gradient (>= 3)")
    ap.add_argument("--long-pairs", type=int, default=5, help="pairs for the long methods (>= 3)")
    ap.add_argument("--only", choices=["mlp", "toy", "wide"], action="append", help="workloads (default: all)")
    ap.add_argument("--short-only", action="store_true", help="skip the long methods (hutchinson, jacobian, backpack)")
    ap.add_argument("--draws", type=int, default=8, help="label draws of the sampled trace (>= 2)")
    ap.add_argument("--memory", nargs="+", metavar="N:CHUNK", help="peak memory of ResNet-18 ggn_trace instead")
    ap.add_argument("--memory-child", nargs=2, type=int, help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        return memory_child(*args.memory_child)
    if args.memory:
        res = memory(args.memory)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(res, f, indent=1)
        return None
    print(f"torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} threads")
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    data = {name: (torch.randn(256, *shape, generator=g), torch.randint(10, (256,), generator=g))
            for name, shape in (("mlp", (784,)), ("toy", (3, 32, 32)), ("wide", (3, 32, 32)))}
    workloads = {"mlp": ("MLP 784-512-512-10, cross-entropy", mlp),
                 "toy": ("toy CNN (Fig. 5), 3x32x32, cross-entropy", toy_cnn),
                 "wide": ("wide CNN 3x32ch, 3x32x32, cross-entropy", wide_cnn)}
    res = [bench(label, make(), *data[name], args.pairs, args.long_pairs, draws=args.draws,
                 with_long=not args.short_only)
           for name, (label, make) in workloads.items() if not args.only or name in args.only]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
