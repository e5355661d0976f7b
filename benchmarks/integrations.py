"""Per-step overhead of NoisyOptimizer and of the Lightning callback against the three-line loop.

Variants, each with its own copy of the same model and SGD optimizer, timed side by side:
  plain          forward + backward + SGD step, no noise
  three-line     the same inside NoiseInjector.perturb() (mode "layer"): the reference
  NoisyOptimizer opt.step(closure): the three-line loop behind the closure convention
  Lightning      Trainer.fit, automatic optimization, no noise
  Lightning+cb   the same with the NoiseInjection callback (mode "layer")

Each repetition runs every variant for ``--steps`` timed steps, in an order that rotates from one
repetition to the next. The hand-written loops time their steps directly; a Lightning run times
the interval between consecutive ``on_train_batch_start`` hooks after ``--warmup`` steps, so it
counts everything Lightning does per step (its hooks, the callback, fetching the batch), not its
start-up. The batch is handed over as is (no collation). A ratio is the median over repetitions of
the per-repetition ratio, printed with its quartiles and range.
Workload: MLP 64-1024-1024-10, 1024 samples, full batch, cross-entropy, SGD, σ = 0.01.

    python benchmarks/integrations.py [--reps 11] [--steps 10] [--warmup 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import platform
import statistics
import time
import warnings

import lightning as L
import torch
import torch.nn.functional as F

import noisereg as nr
from noisereg.integrations.lightning import NoiseInjection

SIGMA = 0.01


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 1024),
                               torch.nn.ReLU(), torch.nn.Linear(1024, 10))


class Module(L.LightningModule):
    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class StepClock(L.Callback):
    """Times the steps of one fit: intervals between consecutive on_train_batch_start hooks."""

    def __init__(self) -> None:
        self.starts: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.starts.append(time.perf_counter())

    def on_train_end(self, trainer, pl_module) -> None:
        self.starts.append(time.perf_counter())


def lightning_step_s(module: Module, callbacks: list, x, y, steps: int, warmup: int) -> float:
    clock = StepClock()
    trainer = L.Trainer(max_steps=steps + warmup, accelerator="cpu", devices=1, callbacks=[*callbacks, clock],
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0)
    batches = torch.utils.data.DataLoader([(x, y)] * (steps + warmup), batch_size=None)
    trainer.fit(module, batches)
    return (clock.starts[-1] - clock.starts[warmup]) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=11)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(1024, 64, generator=g), torch.randint(0, 10, (1024,), generator=g)
    base = make_model()

    # ---- the hand-written loops: one call = one step
    m_plain, m_three, m_noisy = (copy.deepcopy(base) for _ in range(3))
    o_plain = torch.optim.SGD(m_plain.parameters(), lr=0.01)
    o_three = torch.optim.SGD(m_three.parameters(), lr=0.01)
    inj = nr.NoiseInjector(m_three, SIGMA, mode="layer", seed=0)
    o_noisy = nr.NoisyOptimizer(torch.optim.SGD(m_noisy.parameters(), lr=0.01),
                                nr.NoiseInjector(m_noisy, SIGMA, mode="layer", seed=0))

    def plain():
        o_plain.zero_grad()
        F.cross_entropy(m_plain(x), y).backward()
        o_plain.step()

    def three_line():
        o_three.zero_grad()
        with inj.perturb():
            F.cross_entropy(m_three(x), y).backward()
        o_three.step()

    def closure():
        o_noisy.zero_grad()
        loss = F.cross_entropy(m_noisy(x), y)
        loss.backward()
        return loss

    def loop_step_s(fn) -> float:
        for _ in range(args.warmup):
            fn()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            fn()
        return (time.perf_counter() - t0) / args.steps

    lit_plain, lit_cb = Module(copy.deepcopy(base)), Module(copy.deepcopy(base))
    callback = NoiseInjection(sigma=SIGMA, mode="layer", seed=0)
    variants = {
        "plain": lambda: loop_step_s(plain),
        "three-line": lambda: loop_step_s(three_line),
        "NoisyOptimizer": lambda: loop_step_s(lambda: o_noisy.step(closure)),
        "Lightning": lambda: lightning_step_s(lit_plain, [], x, y, args.steps, args.warmup),
        "Lightning+cb": lambda: lightning_step_s(lit_cb, [callback], x, y, args.steps, args.warmup),
    }
    names = list(variants)
    times: dict[str, list[float]] = {n: [] for n in names}
    for rep in range(args.reps):
        order = names[rep % len(names):] + names[:rep % len(names)]
        for n in order:
            times[n].append(variants[n]())

    # ---- ratios: median over repetitions of the per-repetition ratio
    pairs = [("three-line", "plain"), ("NoisyOptimizer", "three-line"), ("Lightning+cb", "Lightning"),
             ("Lightning+cb", "three-line"), ("Lightning", "plain")]
    report = {"machine": {"cpus": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
                          "lightning": L.__version__, "python": platform.python_version(),
                          "processor": platform.processor() or platform.machine()},
              "reps": args.reps, "steps": args.steps,
              "ms_per_step": {n: 1e3 * statistics.median(t) for n, t in times.items()}, "ratios": {}}
    print(f"{args.reps} repetitions x {args.steps} steps; median ms/step: "
          + ", ".join(f"{n} {v:.2f}" for n, v in report["ms_per_step"].items()))
    for a, b in pairs:
        r = [ta / tb for ta, tb in zip(times[a], times[b])]
        q1, _, q3 = statistics.quantiles(r, n=4, method="inclusive")
        report["ratios"][f"{a} / {b}"] = {"median": statistics.median(r), "q1": q1, "q3": q3,
                                          "min": min(r), "max": max(r)}
        print(f"{a:>14} / {b:<10} {statistics.median(r):.3f} (IQR {q1:.3f}-{q3:.3f}, "
              f"range {min(r):.3f}-{max(r):.3f})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
