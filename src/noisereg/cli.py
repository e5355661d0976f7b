"""Command line: ``noisereg demo | list | run NAME | report DIR``.

Only ``demo`` (and ``run demo`` / ``report`` of a demo directory) exist in this version; the
Section 5 and theory experiments are listed as planned and refused with a clear message.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

AVAILABLE = {"demo": "GD vs GD+noise vs GD+noise(layer), MLP on embedded digits (about a minute)"}
PLANNED = {
    "fig2": "linear one-hidden-layer net on sparse regression (Sec. 5, Fig. 2)",
    "fig3": "MLP 2x5000 on Fashion-MNIST, test accuracy vs sigma (Fig. 3)",
    "fig4": "deep MLPs, test accuracy and Hessian trace over training (Fig. 4)",
    "fig5": "toy CNN vs wide fully-convolutional net on CIFAR-10 (Fig. 5)",
    "fig6": "ResNet-18 on CIFAR-10, sigma sweep (Fig. 6)",
    "lasso": "diagonal net vs the Lasso path (Sec. 2.3)",
    "nuclear": "linear net vs nuclear-norm regression (Sec. 2.4)",
    "variance": "gradient variance vs width, full vs layer-wise (Sec. 3)",
    "taylor": "R_sigma - R_sigma^eff = O(sigma^3) (Theorem 1)",
    "logistic": "separable logistic regression (Appendix B)",
}


def _demo_config(args):
    from noisereg.experiments.demo import DemoConfig

    overrides = {"steps": args.steps} if getattr(args, "steps", None) is not None else {}
    if overrides.get("steps", 1) < 1:
        raise SystemExit(f"noisereg: error: --steps must be >= 1, got {args.steps}")
    return dataclasses.replace(DemoConfig(), **overrides)


def cmd_demo(args) -> int:
    from noisereg.experiments.demo import run_demo, table

    cfg = _demo_config(args)
    print(f"noisereg demo: 3 runs x {cfg.steps} full-batch steps on embedded digits -> {args.out}")
    results = run_demo(Path(args.out), cfg, show_progress=not args.quiet)
    print(table(results))
    print(f"\n{results['seconds']} s. Curves: {Path(args.out) / 'curves.png'}; "
          f"results: {Path(args.out) / 'results.json'}")
    return 0


def cmd_list(args) -> int:
    for name, text in AVAILABLE.items():
        print(f"{name:<10} {text}")
    for name, text in PLANNED.items():
        print(f"{name:<10} (planned) {text}")
    return 0


def cmd_run(args) -> int:
    if args.name == "demo":
        return cmd_demo(args)
    if args.name in PLANNED:
        print(f"noisereg: error: experiment {args.name!r} is planned but not implemented in this "
              f"version; available now: {', '.join(AVAILABLE)}", file=sys.stderr)
        return 2
    print(f"noisereg: error: unknown experiment {args.name!r}; valid names: "
          f"{', '.join([*AVAILABLE, *PLANNED])}", file=sys.stderr)
    return 2


def cmd_report(args) -> int:
    from noisereg.experiments.demo import plot, table

    path = Path(args.dir) / "results.json"
    if not path.is_file():
        print(f"noisereg: error: {path} does not exist; pass the --out directory of a run", file=sys.stderr)
        return 2
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        print(f"noisereg: error: {path} is not valid JSON ({e})", file=sys.stderr)
        return 2
    if results.get("experiment") != "demo":
        print(f"noisereg: error: {path} is from experiment {results.get('experiment')!r}; "
              "this version can only report demo runs", file=sys.stderr)
        return 2
    plot(results, Path(args.dir) / "curves.png")
    print(table(results))
    print(f"Curves: {Path(args.dir) / 'curves.png'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    p = argparse.ArgumentParser(prog="noisereg", description="Explicit regularization by noise injection "
                                "(Orvieto et al., AISTATS 2023).")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="the main job on embedded data (about a minute on a laptop CPU)")
    r = sub.add_parser("run", help="run one experiment")
    r.add_argument("name", help="experiment name (see `noisereg list`)")
    for q in (d, r):
        q.add_argument("--out", default="runs/demo", help="output directory (default: runs/demo)")
        q.add_argument("--steps", type=int, default=None, help="override the number of steps per method")
        q.add_argument("--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=cmd_demo)
    r.set_defaults(func=cmd_run)
    sub.add_parser("list", help="list experiments").set_defaults(func=cmd_list)
    rep = sub.add_parser("report", help="rebuild figures and table from DIR/results.json")
    rep.add_argument("dir")
    rep.set_defaults(func=cmd_report)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``noisereg`` console script."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
