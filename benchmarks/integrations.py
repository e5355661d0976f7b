"""Per-step overhead of NoisyOptimizer and of the Lightning callback against the three-line loop.

Variants, each with its own copy of the same model and SGD optimizer, timed side by side:
  plain          forward + backward + SGD step, no noise
  three-line     the same inside NoiseInjector.perturb() (mode "layer"): the reference
  NoisyOptimizer opt.step(closure): the three-line loop behind the closure convention
  Lightning      Trainer.fit, automatic optimization, no noise
  Lightning+cb   the same with the NoiseInjection callback (mode "layer")

The hand-written loops are timed with benchmarks/timing.py (each method right next to its
reference, alternating which goes first; one call = one step). Lightning runs cannot be called
step by step: each repetition runs Lightning, Lightning+cb and ``--steps`` steps of the three-line
loop back to back (order reversed every other repetition), and a Lightning run times the interval
between consecutive ``on_train_batch_start`` hooks after ``--warmup`` steps, so it counts
everything Lightning does per step (its hooks, the callback, fetching the batch), not its
start-up. The batch is handed over as is (no collation). A ratio is the median over pairs of the
per-pair ratio, printed with its quartiles and range.
Workload: MLP 64-1024-1024-10, 1024 samples, full batch, cross-entropy, SGD, σ = 0.01.
Also the wrappers' own Python work per step, apart from any model compute: σ = 0 on a one-weight
model, NoisyOptimizer.step and the callback's four hooks per step, each next to the three-line
loop's perturb() + step().

    python benchmarks/integrations.py [--reps 11] [--steps 10] [--warmup 3] [--threads N] [--json FILE]
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
import types
import warnings

import lightning as L
import torch
import torch.nn.functional as F

import noisereg as nr
from noisereg.integrations.lightning import NoiseInjection
from timing import paired

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
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    load_before = os.getloadavg()[0]
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

    # ---- hand-written loops: timing.paired (each method right next to its reference, alternating)
    noisy_step = lambda: o_noisy.step(closure)  # noqa: E731
    loops = {"three-line / plain": paired(three_line, plain, pairs=args.reps),
             "NoisyOptimizer / three-line": paired(noisy_step, three_line, pairs=args.reps)}

    # ---- Lightning: per repetition, the three runs back to back, alternating their order
    lit_plain, lit_cb = Module(copy.deepcopy(base)), Module(copy.deepcopy(base))
    callback = NoiseInjection(sigma=SIGMA, mode="layer", seed=0)
    runs = {"Lightning": lambda: lightning_step_s(lit_plain, [], x, y, args.steps, args.warmup),
            "Lightning+cb": lambda: lightning_step_s(lit_cb, [callback], x, y, args.steps, args.warmup),
            "three-line": lambda: loop_step_s(three_line)}
    times: dict[str, list[float]] = {n: [] for n in runs}
    for rep in range(args.reps):
        for n in (list(runs) if rep % 2 == 0 else list(reversed(runs))):
            times[n].append(runs[n]())

    # ---- the wrappers' own Python work per step, without model compute: a 1-weight model, sigma = 0
    tiny = torch.nn.Linear(1, 1, bias=False)
    t_opt = torch.optim.SGD(tiny.parameters(), lr=0.0)
    t_inj = nr.NoiseInjector(tiny, 0.0, seed=0)
    t_noisy = nr.NoisyOptimizer(torch.optim.SGD(tiny.parameters(), lr=0.0), nr.NoiseInjector(tiny, 0.0, seed=0))
    t_cb = NoiseInjection(sigma=0.0, seed=0)
    t_cb.injector = nr.NoiseInjector(tiny, 0.0, seed=0)
    stub = types.SimpleNamespace(accumulate_grad_batches=1)

    def t_three():
        with t_inj.perturb():
            pass
        t_opt.step()

    def t_wrapped():
        t_noisy.step(lambda: None)

    def t_hooks():
        t_cb.on_train_batch_start(stub, None, None, 0)
        t_cb.on_after_backward(stub, None)
        t_cb.on_before_optimizer_step(stub, None, None)
        t_cb.on_train_batch_end(stub, None, None, None, 0)
        t_opt.step()

    t_ref = paired(t_three, t_three, pairs=args.reps)
    t_w, t_h = paired(t_wrapped, t_three, pairs=args.reps), paired(t_hooks, t_three, pairs=args.reps)
    own_us = {"three-line (perturb + step)": 1e3 * t_ref.reference_ms,
              "NoisyOptimizer.step": 1e3 * t_w.method_ms, "callback hooks + step": 1e3 * t_h.method_ms}

    # ---- report: median over pairs of the per-pair ratio, with quartiles and range
    def spread(r: list[float]) -> dict:
        q1, _, q3 = statistics.quantiles(r, n=4, method="inclusive")
        return {"median": statistics.median(r), "q1": q1, "q3": q3, "min": min(r), "max": max(r), "pairs": len(r)}

    ratios = {k: spread(list(v.ratios)) for k, v in loops.items()}
    for a, b in [("Lightning+cb", "Lightning"), ("Lightning+cb", "three-line"), ("Lightning", "three-line")]:
        ratios[f"{a} / {b}"] = spread([ta / tb for ta, tb in zip(times[a], times[b])])
    ms = {"plain": loops["three-line / plain"].reference_ms, "three-line": loops["three-line / plain"].method_ms,
          "NoisyOptimizer": loops["NoisyOptimizer / three-line"].method_ms,
          **{n: 1e3 * statistics.median(t) for n, t in times.items() if n != "three-line"}}
    report = {"machine": {"cpus": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
                          "lightning": L.__version__, "python": platform.python_version(),
                          "processor": platform.processor() or platform.machine(),
                          "load_average_1min": [load_before, os.getloadavg()[0]]},
              "reps": args.reps, "steps": args.steps, "ms_per_step": ms, "ratios": ratios,
              "own_work_us_per_step": own_us}
    print(f"load average (1 min) before/after: {load_before:.1f}/{os.getloadavg()[0]:.1f}; "
          f"{args.reps} pairs, Lightning runs of {args.steps} timed steps")
    print("median ms/step: " + ", ".join(f"{n} {v:.2f}" for n, v in ms.items()))
    for k, r in ratios.items():
        print(f"{k:<28} {r['median']:.3f} (IQR {r['q1']:.3f}-{r['q3']:.3f}, range {r['min']:.3f}-{r['max']:.3f})")
    print("own work per step, sigma = 0, 1-weight model (us): " + ", ".join(f"{k} {v:.1f}" for k, v in own_us.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
