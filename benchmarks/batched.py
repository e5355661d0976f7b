"""Batched sweeps against one run at a time, side by side in one process (issue 20).

For each theory experiment that batches, at its demo preset: the sweep batched (the default) and with
``--no-batch``, alternating which goes first, the same threads for both; the ratio of wall times, and
the largest relative difference of any recorded number (they must agree up to summation order).

    OMP_NUM_THREADS=1 python benchmarks/batched.py [--preset demo] [--repeats 1] [NAME ...]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

from noisereg.sweep import EXPERIMENTS, run_experiment

NAMES = ("lasso", "logistic", "nuclear", "grouplasso", "psd", "fig2")


def worst_difference(a, b) -> float:
    """Largest |x − y| / max(|y|, 1e-300) over the numbers of two run records (bookkeeping keys skipped)."""
    if isinstance(a, dict):
        return max((worst_difference(a[k], b[k]) for k in a if k not in ("seconds", "batched")), default=0.0)
    if isinstance(a, list):
        return max((worst_difference(x, y) for x, y in zip(a, b)), default=0.0)
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) and math.isnan(b):
            return 0.0
        return abs(a - b) / max(abs(b), 1e-300) if a != b else 0.0
    return 0.0


def timed(name: str, preset: str, batch: bool) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        results = run_experiment(EXPERIMENTS[name], preset, Path(out), show_progress=False, batch=batch)
        return time.perf_counter() - t0, results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", default=list(NAMES))
    p.add_argument("--preset", default="demo")
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, preset {args.preset}")
    print("| experiment | runs | batched s | --no-batch s | ratio | worst rel. difference |")
    print("|---|---|---|---|---|---|")
    for name in args.names:
        on, off = [], []
        for k in range(args.repeats):
            order = (True, False) if k % 2 == 0 else (False, True)
            for batch in order:
                seconds, results = timed(name, args.preset, batch)
                (on if batch else off).append((seconds, results))
        tb, rb = min(on, key=lambda x: x[0])
        tn, rn = min(off, key=lambda x: x[0])
        worst = max(worst_difference(a, b) for a, b in zip(rb["runs"], rn["runs"]))
        print(f"| {name} | {len(rb['runs'])} | {tb:.1f} | {tn:.1f} | {tn / tb:.2f} | {worst:.2g} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
