"""Extra peak memory of one ``perturb()``: ``restore="copy"`` against ``restore="regenerate"`` (issue 34).

Workload: ``--layers`` Linear(``--width``, ``--width``) layers (default 24 × 2048², 403 MB of float32),
full noise, σ = 0.01, on the CPU. Each restore is measured in its own fresh subprocess: build the model,
warm the code path up on a tiny model, reset the peak resident set size (``/proc/self/clear_refs``),
then enter and leave one ``perturb()`` block; the extra peak is ``VmHWM`` after the block minus ``VmRSS``
before it. The time of one block (enter + exit, median of ``--repeats``) and the largest change of a
weight after the block, in units of the float32 spacing of ``|w| + |noise|``, are measured afterwards in
the same subprocess. Prints both restores side by side and their ratio (``--json``: one JSON object).

    python benchmarks/restore_memory.py [--layers 24] [--width 2048] [--repeats 5] [--json]

Linux only (reads /proc/self/status).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

RESTORES = ("copy", "regenerate")


def _status(key: str) -> int:
    """A ``/proc/self/status`` field in bytes (``VmRSS``, ``VmHWM``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {key}")


def child(restore: str, layers: int, width: int, repeats: int) -> dict:
    """One restore's numbers, measured in this (fresh) process."""
    import torch

    import noisereg as nr

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(layers)])
    tiny = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 64))
    with nr.NoiseInjector(tiny, 0.01, mode="full", seed=1, restore=restore).perturb():
        pass                                  # the code path, imported and run once
    inj = nr.NoiseInjector(model, 0.01, mode="full", seed=0, restore=restore)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")                          # VmHWM := VmRSS
    before = _status("VmRSS")
    with inj.perturb():
        pass
    extra = _status("VmHWM") - before
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    largest = max(p.numel() * p.element_size() for p in model.parameters())
    clean = [p.detach().clone() for p in model.parameters()]
    state = inj.state_dict()
    with inj.perturb():
        noisy = [p.detach().clone() for p in model.parameters()]
    eps = torch.finfo(torch.float32).eps
    spacing = max(float(((p.detach() - c).abs() / (eps * (c.abs() + (v - c).abs()))).max())
                  for p, c, v in zip(model.parameters(), clean, noisy))
    del noisy, clean
    inj.load_state_dict(state)
    seconds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        with inj.perturb():
            pass
        seconds.append(time.perf_counter() - t0)
    return {"restore": restore, "params_bytes": params, "largest_bytes": largest, "extra_peak_bytes": extra,
            "block_ms": 1000 * statistics.median(seconds), "max_error_in_eps": spacing,
            "torch": torch.__version__}


def measure(layers: int, width: int, repeats: int) -> dict[str, dict]:
    """Each restore's :func:`child` numbers, each in its own subprocess."""
    out = {}
    for restore in RESTORES:
        cmd = [sys.executable, __file__, "--child", restore, "--layers", str(layers), "--width", str(width),
               "--repeats", str(repeats)]
        out[restore] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=24)
    p.add_argument("--width", type=int, default=2048)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", action="store_true")
    p.add_argument("--child", choices=RESTORES, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.layers, args.width, args.repeats)))
        return 0
    res = measure(args.layers, args.width, args.repeats)
    ratio = res["regenerate"]["extra_peak_bytes"] / res["copy"]["extra_peak_bytes"]
    if args.json:
        print(json.dumps({**res, "ratio": ratio}))
        return 0
    mb = 1e6
    c = res["copy"]
    print(f"{args.layers} × Linear({args.width}, {args.width}): {c['params_bytes'] / mb:.1f} MB of parameters, "
          f"largest tensor {c['largest_bytes'] / mb:.1f} MB; torch {c['torch']}")
    print(f"{'restore':<12}{'extra peak RSS (MB)':>22}{'one block (ms)':>16}{'max error (eps)':>17}")
    for r in RESTORES:
        x = res[r]
        print(f"{r:<12}{x['extra_peak_bytes'] / mb:>22.1f}{x['block_ms']:>16.1f}{x['max_error_in_eps']:>17.3f}")
    print(f"regenerate / copy extra peak: {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
