"""The weight-perturbation family's steps, each paired with a plain SGD step (issue 21).

Workload: the overhead benchmark's MLP 64→1024→1024→10 (1.13 M parameters), 1024 samples, full
batch, cross-entropy, SGD. Each method's step is timed against a plain step by :func:`timing.paired`;
the ratio is printed with the method's gradient evaluations per step, so "ratio / evaluations" is its
overhead per gradient (1.0: none). Also ``restore="regenerate"`` against the default copy restore.

    python benchmarks/family.py [--pairs 15] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from timing import paired  # noqa: E402

import noisereg as nr  # noqa: E402
from noisereg.training.settings import sub_batches  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=15)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 1024),
                                torch.nn.ReLU(), torch.nn.Linear(1024, 10))
    x, y = torch.randn(1024, 64), torch.randint(0, 10, (1024,))
    sgd = torch.optim.SGD(model.parameters(), lr=1e-4)

    def closure():
        sgd.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    def plain():
        closure()
        sgd.step()

    def injector(**kw):
        return nr.NoiseInjector(model, sigma=0.01, mode="full", seed=0, **kw)

    methods = {
        "full (paper, absolute)": nr.NoisyOptimizer(sgd, injector()),
        "full, restore=regenerate": nr.NoisyOptimizer(sgd, injector(restore="regenerate")),
        "rwp (filter scale)": nr.NoisyOptimizer(sgd, injector(scale="filter")),
        "rwp, restore=regenerate": nr.NoisyOptimizer(sgd, injector(scale="filter", restore="regenerate")),
        "mrwp (λ = 1/2)": nr.NoisyOptimizer(sgd, injector(scale="filter"), clean_weight=0.5),
        "4 filter-wise draws on the whole batch (lpf before issue 34)": nr.NoisyOptimizer(
            sgd, injector(scale="filter"), samples=4),
        "nso (1 pair)": nr.NoisyOptimizer(sgd, injector(), antithetic=True),
        "sam (ρ = 0.05)": nr.SAM(sgd, rho=0.05),
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.pairs} pairs")
    print("| method | gradient evaluations | step / plain step | per gradient evaluation | plain ms |")
    print("|---|---|---|---|---|")
    lpf_inj = injector(scale="filter")

    def lpf_step(parts=4):
        """LPF-SGD as its authors run it (the training loop's ``lpf``): 4 sub-batches, a draw each, one step."""
        sgd.zero_grad(set_to_none=True)
        for part in sub_batches(len(x), parts):
            with lpf_inj.perturb():
                (torch.nn.functional.cross_entropy(model(x[part]), y[part]) * ((part.stop - part.start) / len(x))
                 ).backward()
        sgd.step()

    steps = {name: (lambda opt=opt: opt.step(closure), getattr(opt, "grad_evals_per_step", 2))
             for name, opt in methods.items()}
    steps["lpf (M = 4 sub-batches of 256)"] = (lpf_step, 1)
    for name, (step, evals) in steps.items():
        r = paired(step, plain, pairs=args.pairs)
        print(f"| {name} | {evals} | {r.describe()} | {r.median / evals:.3f} | {r.reference_ms:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
