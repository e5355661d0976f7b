"""Command line: ``noisereg list | run NAME | show NAME | report DIR | demo | --version``.

``run`` trains every run of an experiment at a preset (``smoke``: seconds; ``cpu``: minutes on a
laptop CPU with embedded data; ``paper``: the paper's settings, GPU and real data), writes
``results.json``, checkpoints, figures and ``REPORT.md`` into ``--out``; ``--resume`` continues a
killed run; ``--log-to tensorboard|mlflow`` logs the runs as they go (:mod:`noisereg.tracking`);
``--jobs N`` runs N at once in worker processes, ``--executor ray`` as Ray tasks (a failed run is
then recorded, the others go on, and the exit status is 1); every run uses ``--threads`` intra-op CPU
threads (default 1) whatever ``--jobs``, so a seed gives the same numbers either way. ``report`` rebuilds figures and report
from results.json alone (``--log-to`` also logs the finished sweep). ``demo`` runs the ``demo``
preset of every experiment that has one, then writes one report.

A mistake in the request (:class:`noisereg.errors.UserError`: an unknown name, a bad value, a bad
data file, an ``--out`` that holds another run) or a missing optional extra
(:class:`noisereg.integrations.MissingExtraError`) is printed as one line and exits with status 2;
every other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from noisereg.errors import UserError
from noisereg.integrations import MissingExtraError


def _experiment(name: str):
    from noisereg.sweep import EXPERIMENTS

    if name not in EXPERIMENTS:
        raise UserError(f"unknown experiment {name!r}; valid names: {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]


def _runs(n: int) -> str:
    """``"1 run"``, ``"3 runs"``."""
    return f"{n} run{'' if n == 1 else 's'}"


def cmd_list(args) -> int:
    from noisereg.sweep import EXPERIMENTS

    width = max(map(len, EXPERIMENTS))
    for name, exp in EXPERIMENTS.items():
        print(f"{name:<{width}}  {exp.description}  [presets: {', '.join(exp.PRESETS)}]")
    return 0


def cmd_run(args) -> int:
    from noisereg.sweep import parse_overrides, run_experiment
    from noisereg.report import write_report

    exp = _experiment(args.name)
    if args.jobs < 1:
        raise UserError(f"--jobs must be an integer >= 1, got {args.jobs}")
    if args.threads < 1:
        raise UserError(f"--threads must be an integer >= 1, got {args.threads}")
    if args.ray_address is not None and args.executor != "ray":
        raise UserError("--ray-address needs --executor ray")
    overrides = parse_overrides(exp.Config, args.set)
    exp.config(args.preset, overrides)  # every key and value checked before any work
    out = Path(args.out or f"runs/{args.name}-{args.preset}")
    if args.resume and not (out / "results.json").exists():
        print(f"noisereg: --resume: {out} holds no results.json, so there is nothing to resume; starting afresh "
              "(check --out if you meant to continue a run)", file=sys.stderr)
    results = run_experiment(exp, args.preset, out, overrides=overrides, data=args.data, data_dir=args.data_dir,
                             resume=args.resume, device=args.device, show_progress=not args.quiet, jobs=args.jobs,
                             executor=args.executor, ray_address=args.ray_address, batch=not args.no_batch,
                             log_to=args.log_to, threads=args.threads)
    report = write_report(out, [results], title=f"noisereg report: {args.name}")
    failed = results.get("failed", [])
    print(f"{args.name}: {_runs(len(results['runs']))} in {results['seconds']} s. Report: {report}")
    if args.log_to:  # the report and results.json go to MLflow's parent run, which then ends
        from noisereg.tracking import publish, where

        if "mlflow" in args.log_to:
            publish(out, results)
        print(where(out, results, args.log_to))
    for f in failed:
        print(f"noisereg: run {f['id']} failed: {f['error']}", file=sys.stderr)
    if failed:
        print(f"noisereg: {len(failed)} of {_runs(len(failed) + len(results['runs']))} failed (tracebacks in "
              f"{out / 'results.json'}); rerun with --resume to retry them", file=sys.stderr)
        return 1
    return 0


def cmd_show(args) -> int:
    from noisereg.sweep import parse_overrides
    from noisereg.sweep.show import show

    exp = _experiment(args.name)
    print(show(exp, args.preset, parse_overrides(exp.Config, args.set), args.data, args.data_dir))
    return 0


def cmd_report(args) -> int:
    from noisereg.report import rebuild

    print(f"Report: {rebuild(args.dir)}")
    if args.log_to:
        from noisereg.report.upload import upload

        print("\n".join(upload(args.dir, args.log_to)))
    return 0


def cmd_demo(args) -> int:
    """The main job on embedded data: the ``demo`` preset of each experiment that has one, then one report."""
    from noisereg.sweep import EXPERIMENTS, Run, run_experiment
    from noisereg.report import rebuild

    if args.jobs is None:   # one thread per run: a seed's numbers are the same whatever the count
        args.jobs = max(1, min(os.cpu_count() or 1, 4))
    if args.jobs < 1:
        raise UserError(f"--jobs must be an integer >= 1, got {args.jobs}")
    if args.threads < 1:
        raise UserError(f"--threads must be an integer >= 1, got {args.threads}")
    out = Path(args.out)
    plan = [exp for exp in EXPERIMENTS.values() if "demo" in exp.PRESETS]
    for exp in plan:  # check every config before the first run starts
        exp.config(args.preset)
    t0 = time.perf_counter()
    for exp in plan:
        print(f"noisereg demo: {exp.name} ({exp.description}), preset {args.preset}")
        # --jobs N parallelises the sweeps of trained networks; the theory experiments stay in this process,
        # batched (their runs are too small for worker processes to pay off)
        trains = any(isinstance(r, Run) for r in exp.runs(exp.config(args.preset)))
        run_experiment(exp, args.preset, out / exp.name, resume=args.resume, show_progress=not args.quiet,
                       device="cpu", batch=not args.no_batch, jobs=args.jobs if trains else 1, threads=args.threads)
    path = rebuild(out)
    print(f"\nDone in {time.perf_counter() - t0:.0f} s. Report: {path}")
    for line in path.read_text().splitlines():  # every judged claim, favourable or not
        if line.startswith("| ") and line.rstrip().endswith("** |"):
            print(line)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    p = argparse.ArgumentParser(prog="noisereg", description="Explicit regularization by noise injection "
                                "(Orvieto et al., AISTATS 2023).")
    from noisereg import __version__
    from noisereg.tracking import BACKENDS

    p.add_argument("--version", action="version", version=f"noisereg {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    module = argparse.ArgumentParser(add_help=False)
    module.add_argument("--module", action="append", default=[], metavar="MOD",
                        help="import MOD first (repeatable): a module on the path whose Experiment subclasses "
                             "register themselves; installed packages use the entry-point group noisereg.experiments")
    sub.add_parser("list", help="list experiments", parents=[module]).set_defaults(func=cmd_list)
    r = sub.add_parser("run", help="run one experiment", parents=[module])
    r.add_argument("name", help="experiment name (see `noisereg list`)")
    r.add_argument("--preset", default="cpu", help="smoke (seconds) | cpu (minutes, embedded data; default) | demo "
                   "(what `noisereg demo` runs, where an experiment has it) | paper (the paper's settings) | "
                   "ones an experiment adds: `noisereg list` shows each experiment's")
    src = r.add_mutually_exclusive_group()
    src.add_argument("--data", help="a .npz file with x_train, y_train, x_test, y_test")
    src.add_argument("--data-dir", help="directory with Fashion-MNIST IDX files or CIFAR-10 python batches")
    r.add_argument("--out", help="output directory (default: runs/NAME-PRESET)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    r.add_argument("--resume", action="store_true", help="continue the run in --out")
    r.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="runs at once (default 1): worker processes, one GPU each where there are GPUs; or Ray "
                        "tasks with --executor ray. It changes no result: see --threads")
    r.add_argument("--threads", type=int, default=1, metavar="N",
                   help="intra-op CPU threads of every run (default 1, whatever --jobs; recorded in results.json): "
                        "a seed gives bit-identical numbers at equal threads")
    r.add_argument("--no-batch", action="store_true",
                   help="train every run alone (the reference path); by default the runs of a theory experiment "
                        "that share a model shape train as one batched model (with --jobs 1, local)")
    r.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local (default): this machine's processes; ray: Ray tasks (pip install \"noisereg[ray]\")")
    r.add_argument("--ray-address", metavar="ADDR",
                   help="a running Ray cluster (`ray start --head` prints it); default: a local Ray instance")
    r.add_argument("--log-to", action="append", default=[], choices=BACKENDS,
                   help="watch the runs (repeatable): tensorboard (OUT/tensorboard/RUN_ID/; pip install "
                        "\"noisereg[tensorboard]\") | mlflow (one run per run under one per sweep, in "
                        "$MLFLOW_TRACKING_URI, else sqlite:///OUT/mlflow.db; pip install \"noisereg[mlflow]\")")
    r.set_defaults(func=cmd_run)
    sh = sub.add_parser("show", help="what `run` would do: resolved settings, runs, data; runs nothing",
                        parents=[module])
    sh.add_argument("name", help="experiment name (see `noisereg list`)")
    sh.add_argument("--preset", default="cpu", help="as for run (default: cpu)")
    shsrc = sh.add_mutually_exclusive_group()
    shsrc.add_argument("--data", help="a .npz file (described from its headers)")
    shsrc.add_argument("--data-dir", help="directory with Fashion-MNIST IDX files or CIFAR-10 python batches")
    sh.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    sh.set_defaults(func=cmd_show)
    rep = sub.add_parser("report", help="rebuild figures and REPORT.md from DIR/results.json (or DIR/*/results.json)",
                         parents=[module])
    rep.add_argument("dir")
    rep.add_argument("--log-to", action="append", default=[], choices=BACKENDS,
                     help="also log the finished sweep(s) (repeatable): mlflow (a new parent run per sweep, in "
                          "$MLFLOW_TRACKING_URI, else sqlite:///DIR/mlflow.db) | tensorboard (DIR/tensorboard/)")
    rep.set_defaults(func=cmd_report)
    d = sub.add_parser("demo", help="the main job on embedded data: the demo preset of every experiment that "
                       "has one (see `noisereg list`), then one report")
    d.add_argument("--out", default="runs/demo", help="output directory (default: runs/demo)")
    d.add_argument("--resume", action="store_true", help="continue a killed demo")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.add_argument("--no-batch", action="store_true", help="train every run alone (see `run --no-batch`)")
    d.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="runs at once for the sweeps of trained networks (fig2-fig4), in worker processes (default: "
                        "the CPU count, at most 4; the numbers do not depend on it); the theory experiments stay "
                        "batched in this process")
    d.add_argument("--threads", type=int, default=1, metavar="N",
                   help="intra-op CPU threads of every run (default 1, whatever --jobs; see `run --threads`)")
    d.add_argument("--preset", default="demo", choices=["demo", "smoke"],
                   help="demo (default) or smoke (seconds): the preset each experiment runs at")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``noisereg`` console script."""
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "module", None):
            from noisereg.sweep.experiment import import_module

            for name in args.module:
                import_module(name)
        return args.func(args)
    except (UserError, MissingExtraError) as e:  # the user's to mend: one line; anything else is a bug
        print(f"noisereg: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
