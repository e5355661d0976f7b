"""Command line: ``noisereg list | run NAME | report DIR | demo``.

``run`` trains every run of an experiment at a preset (``smoke``: seconds; ``cpu``: minutes on a
laptop CPU with embedded data; ``paper``: the paper's settings, GPU and real data), writes
``results.json``, checkpoints, figures and ``REPORT.md`` into ``--out``; ``--resume`` continues a
killed run. ``report`` rebuilds figures and report from results.json alone.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _err(msg: str) -> int:
    print(f"noisereg: error: {msg}", file=sys.stderr)
    return 2


def cmd_list(args) -> int:
    from noisereg.experiments import EXPERIMENTS

    for name, exp in EXPERIMENTS.items():
        print(f"{name:<6} {exp.description}  [presets: {', '.join(exp.PRESETS)}]")
    return 0


def cmd_run(args) -> int:
    from noisereg.experiments import EXPERIMENTS, parse_overrides, run_experiment
    from noisereg.report import write_report

    if args.name not in EXPERIMENTS:
        return _err(f"unknown experiment {args.name!r}; valid names: {', '.join(EXPERIMENTS)}")
    exp = EXPERIMENTS[args.name]
    if args.preset not in exp.PRESETS:
        return _err(f"unknown preset {args.preset!r} for {args.name}; valid: {', '.join(exp.PRESETS)}")
    out = Path(args.out or f"runs/{args.name}-{args.preset}")
    try:
        overrides = parse_overrides(exp.Config, args.set)
        exp.config(args.preset, overrides)  # validate before any work
        results = run_experiment(exp, args.preset, out, overrides=overrides, data=args.data, data_dir=args.data_dir,
                                 resume=args.resume, device=args.device, show_progress=not args.quiet)
    except (ValueError, FileExistsError, FileNotFoundError, TypeError) as e:
        return _err(str(e))
    report = write_report(out, [results], title=f"noisereg report: {args.name}")
    print(f"{args.name}: {len(results['runs'])} runs in {results['seconds']} s. Report: {report}")
    return 0


def cmd_report(args) -> int:
    from noisereg.report import rebuild

    try:
        path = rebuild(args.dir)
    except (FileNotFoundError, ValueError) as e:
        return _err(str(e))
    print(f"Report: {path}")
    return 0


# the demo: cpu presets, reduced where a full cpu preset would take more than ~1 minute here
DEMO_PLAN = [
    ("fig2", {}),
    ("fig3", {"sigmas": (0.1, 0.2), "seeds": (0,), "epochs": 800}),
    ("variance", {"widths": (16, 64, 256, 1024, 4096), "mc_samples": 1000, "grad_samples": 50}),
    ("taylor", {"samples": 50000}),
    ("lasso", {}),
    ("nuclear", {}),
    ("grouplasso", {}),
    ("psd", {}),
    ("logistic", {}),
]


def cmd_demo(args) -> int:
    """The main job on embedded data: fig2, a reduced fig3 and the theory experiments, then one report."""
    from noisereg.experiments import EXPERIMENTS, run_experiment
    from noisereg.report import rebuild

    out = Path(args.out)
    plan = [(name, args.preset, overrides if args.preset == "cpu" else {})
            for name, overrides in DEMO_PLAN if name in EXPERIMENTS]
    t0 = time.perf_counter()
    for name, preset, overrides in plan:
        print(f"noisereg demo: {name} ({EXPERIMENTS[name].description}), preset {preset}")
        try:
            run_experiment(EXPERIMENTS[name], preset, out / name, overrides=overrides, resume=args.resume,
                           show_progress=not args.quiet, device="cpu")
        except (FileExistsError, ValueError) as e:
            return _err(f"{e} (demo: pass --resume, or --out DIR)")
    path = rebuild(out)
    print(f"\nDone in {time.perf_counter() - t0:.0f} s. Report: {path}")
    for line in path.read_text().splitlines():
        if line.startswith("| ") and ("reproduced" in line or "not run" in line):
            print(line)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    p = argparse.ArgumentParser(prog="noisereg", description="Explicit regularization by noise injection "
                                "(Orvieto et al., AISTATS 2023).")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list experiments").set_defaults(func=cmd_list)
    r = sub.add_parser("run", help="run one experiment")
    r.add_argument("name", help="experiment name (see `noisereg list`)")
    r.add_argument("--preset", default="cpu", help="smoke | cpu | paper (default: cpu)")
    src = r.add_mutually_exclusive_group()
    src.add_argument("--data", help="a .npz file with x_train, y_train, x_test, y_test")
    src.add_argument("--data-dir", help="directory with Fashion-MNIST IDX files or CIFAR-10 python batches")
    r.add_argument("--out", help="output directory (default: runs/NAME-PRESET)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    r.add_argument("--resume", action="store_true", help="continue the run in --out")
    r.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_run)
    rep = sub.add_parser("report", help="rebuild figures and REPORT.md from DIR/results.json (or DIR/*/results.json)")
    rep.add_argument("dir")
    rep.set_defaults(func=cmd_report)
    d = sub.add_parser("demo", help="the main job on embedded data: fig2, a reduced fig3 and the theory "
                       "experiments, then one report")
    d.add_argument("--out", default="runs/demo", help="output directory (default: runs/demo)")
    d.add_argument("--resume", action="store_true", help="continue a killed demo")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.add_argument("--preset", default="cpu", choices=["smoke", "cpu"], help="cpu (default) or smoke (seconds)")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``noisereg`` console script."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
