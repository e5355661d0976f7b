"""Running an experiment: :func:`run_experiment` with provenance, resume, results.json and tracking.

:func:`run_experiment` checks everything, lists the runs, then loads the data and trains every
run, writing ``results.json`` after each one (atomically), checkpointing inside runs and resuming;
the runs go one after another in this process, or N at once in worker processes or Ray tasks
(:mod:`noisereg.sweep.executors`). Each results.json records its provenance (commit, command,
torch and Python versions, device); :mod:`noisereg.tracking` backends watch the sweep when asked.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import platform
import subprocess
import sys
import time
import typing
from pathlib import Path
from typing import Any

import torch

from noisereg.errors import UserError
from noisereg.records import atomic_write_json
from noisereg.sweep import executors
from noisereg.sweep.experiment import Experiment, Run
from noisereg.sweep.memory import check_memory
from noisereg.sweep.stages import CONFIRMATION, SELECTION, view


def _differences(previous: dict, preset: str, config: dict) -> str:
    """``"preset: cpu -> smoke; lr: 0.05 -> 0.1"``: what differs between an earlier results.json and this run."""
    now, before = json.loads(json.dumps(config)), previous.get("config") or {}
    diffs = [] if previous.get("preset") == preset else [f"preset: {previous.get('preset')} -> {preset}"]
    for key in sorted(set(now) | set(before)):
        if now.get(key) != before.get(key):
            diffs.append(f"{key}: {before.get(key, '(absent)')} -> {now.get(key, '(absent)')}")
    return "; ".join(diffs) or "the same settings"


def _git_hash() -> str:
    """The source's short commit, ``+dirty`` when the work tree has changes; for an installed package outside a
    git checkout, its version (``noisereg X.Y.Z``)."""
    from noisereg._version import __version__

    here = Path(__file__).parent
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, cwd=here,
                             timeout=5).stdout.strip()
        if not top or not (Path(top) / "src" / "noisereg").is_dir() or not here.is_relative_to(Path(top)):
            return f"noisereg {__version__}"
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=here,
                                timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=here, timeout=5).stdout.strip()
        return f"{commit}{'+dirty' if dirty else ''}" if commit else f"noisereg {__version__}"
    except (OSError, subprocess.SubprocessError):
        return f"noisereg {__version__}"


def _command() -> str:
    """How this process was started, as a shell line (``noisereg run fig3 ...``)."""
    import shlex

    argv = list(sys.argv) or [""]
    if argv[0].endswith("noisereg"):  # the console script's full path: its name says it
        argv[0] = "noisereg"
    return shlex.join(argv)



def _classification(split) -> bool:
    """Whether ``split`` is a classification data set (integer labels): its class count goes into results.json."""
    y = getattr(split, "y_train", None)
    return isinstance(y, torch.Tensor) and not y.dtype.is_floating_point and hasattr(split, "num_classes")


def data_note(results: dict) -> str:
    """The data a run used, in words: the ``--data`` file's name, the ``--data-dir`` directory (or
    the one found by searching), the embedded Fashion-MNIST subset or digits (else the loaded split's
    own name)."""
    cfg, name = results.get("config", {}), str(results.get("data", "?"))
    if cfg.get("data"):
        return f"data file {Path(cfg['data']).name}"
    if cfg.get("data_dir"):
        return f"{name.split('[')[0]} files in {cfg['data_dir']}"
    if name.startswith("fashion_mnist_subset"):
        return "real Fashion-MNIST images embedded in the package"
    if name.startswith("fashion_mnist("):
        return f"fashion_mnist files in {name[len('fashion_mnist('):name.index(')')]}"
    if name.startswith("digits"):
        return "embedded 8x8 digits"
    return name


def run_experiment(exp: Experiment, preset: str, out: str | Path, *, overrides: dict[str, Any] | None = None,
                   data: str | None = None, data_dir: str | None = None, resume: bool = False,
                   device: str | None = None, show_progress: bool = True, callback=None, jobs: int = 1,
                   executor: str = "local", ray_address: str | None = None, batch: bool = True,
                   log_to: typing.Sequence[str] = (), threads: int = 1) -> dict:
    """Run every run of ``exp`` at ``preset``; write ``out/results.json`` and ``out/checkpoints/``.

    Everything is checked (config, runs, an earlier results.json) before the data is loaded.
    results.json is rewritten (atomically) as each run finishes, its ``runs`` always in the order
    of :meth:`Experiment.runs`, whatever order they finish in; so ``jobs=N`` and Ray give the
    results.json of a sequential sweep, apart from the ``seconds`` and ``environment`` fields: every run
    uses ``threads`` intra-op CPU threads however many run at once. With ``jobs > 1`` or Ray, a run that raises is listed
    under ``"failed"`` (``{"id", "variant", "params", "error", "traceback"}``) and the others go
    on; ``resume=True`` runs the failed and unfinished runs again, each from its checkpoint.
    Figures and REPORT.md are made from results.json by :func:`noisereg.report.write_report`.

    Args:
        jobs: runs at once (default 1: one after another in this process, where an exception
            stops the sweep). executor: ``"local"`` (worker processes when ``jobs > 1``) or
            ``"ray"``. ray_address: a running Ray cluster (default: start a local instance).
            See :mod:`noisereg.sweep.executors`. callback: only with ``jobs=1``, local.
        batch: train the jobs that share a model shape (a theory experiment's σ × seed grid) as one
            batched model (:mod:`noisereg.training.batched_gd`; same numbers up to summation order);
            only with ``jobs=1``, local (worker processes and Ray run each job alone). False: each
            job alone, the reference path.
        threads: intra-op CPU threads of every run (default 1, whatever ``jobs``; recorded in
            ``results["environment"]["threads"]``). A kernel that sums in parallel sums in another order
            with another thread count, so equal seeds give bit-identical numbers only at equal threads.
        log_to: backends that watch the sweep, ``"tensorboard"`` and/or ``"mlflow"``
            (:mod:`noisereg.tracking`; what they have logged is kept in ``results["tracking"]``).

    Raises:
        UserError: a bad preset or value, ``jobs``, ``threads``, ``executor`` or ``ray_address``; ``out`` holds
            results of another run and ``resume`` is False; or ``resume`` with results written for
            another configuration.
        MissingExtraError: ``executor="ray"`` without Ray installed, or a ``log_to`` backend without its extra.
    """
    from tqdm.auto import tqdm


    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise UserError(f"jobs must be an integer >= 1, got {jobs!r}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise UserError(f"threads must be an integer >= 1, got {threads!r}")
    if executor not in ("local", "ray"):
        raise UserError(f"executor must be one of 'local', 'ray', got {executor!r}")
    if ray_address is not None and executor != "ray":
        raise UserError("ray_address needs executor='ray'")
    if callback is not None and (jobs > 1 or executor != "local"):
        raise UserError("callback runs in this process: it needs jobs=1 and executor='local'")
    cfg = exp.config(preset, overrides)
    runs = exp.runs(cfg)
    out = Path(out)
    path = out / "results.json"
    config = {**dataclasses.asdict(cfg), "data": data, "data_dir": data_dir}
    previous: dict = {}
    if path.exists():
        if not resume:
            raise UserError(f"{path} exists: pass --resume to continue that run, or choose another --out")
        try:
            previous = json.loads(path.read_text())
            done = {r["id"]: r for r in previous["runs"]}
        except (ValueError, KeyError, TypeError) as e:
            raise UserError(f"{path} is not a readable results.json ({type(e).__name__}: {e}); move it away or "
                            "choose another --out") from None
        if isinstance(previous.get("config"), dict):   # fields added since it was written read as their defaults
            previous["config"] = {**{f.name: json.loads(json.dumps(f.default)) for f in dataclasses.fields(cfg)
                                     if f.name not in previous["config"] and f.default == getattr(cfg, f.name)},
                                  **previous["config"]}
        if previous.get("config") != json.loads(json.dumps(config)) or previous.get("preset") != preset:
            raise UserError(f"{path} was written with other settings ({_differences(previous, preset, config)}); "
                            "--resume needs the same preset, --set and data")
    else:
        done = {}
    todo = [r for r in runs if r.id not in done]
    pool = executors.make_executor(executor, jobs, device, ray_address, batch, threads)  # Ray missing: raises here
    tracker = None
    if log_to:  # a backend's extra missing: raises here, before the data
        from noisereg.tracking import Tracking

        tracker = Tracking(log_to, out, runs, previous.get("tracking"))
    split = exp.data(cfg, data, data_dir)
    x_train = getattr(split, "x_train", None)
    first: dict[str, Run] = {}  # the memory check: one model per variant
    for r in todo:
        if isinstance(r, Run):
            first.setdefault(r.variant, r)
    for run in first.values() if x_train is not None and pool.device is not None else ():
        batch = min(run.spec.batch_size or len(x_train), len(x_train))
        check_memory(lambda run=run: exp.model(cfg, run, split), (batch, *x_train.shape[1:]), pool.device,
                     f"{exp.name} {run.variant or run.id}")
    if not resume:  # every run resumes from its checkpoint (a lost worker's retry too): none may be stale
        for run in todo:
            (out / "checkpoints" / f"{run.id}.pt").unlink(missing_ok=True)
        for stale in (out / "checkpoints").glob("batch-*.pt"):
            stale.unlink()
    failed: dict[str, dict] = {}
    two = exp.confirms(cfg)
    order: list = list(runs)          # results.json's order: the selection runs, then the confirmation runs
    stage = {r.id: SELECTION for r in runs}
    t0 = time.perf_counter()
    with pool, tracker or contextlib.nullcontext():
        results = {"experiment": exp.name, "preset": preset, "config": config,
                   "data": getattr(split, "name", str(split)),
                   **({"sizes": {name: len(x) for name, x, _ in split.splits()}} if hasattr(split, "splits") else {}),
                   **({"classes": split.num_classes} if _classification(split) else {}),
                   "environment": {"torch": torch.__version__, "python": platform.python_version(),
                                   "device": pool.device, "threads": threads, "git": _git_hash(),
                                   "command": _command()},
                   "runs": [done[r.id] for r in runs if r.id in done]}
        if pool.name != "sequential":
            results["environment"] |= {"executor": pool.name, "jobs": jobs, "threads_per_run": pool.threads}
        elif getattr(pool, "batch", False) and any(len(g) > 1 for g in executors.batches(todo).values()):
            results["environment"]["batched"] = True
        if tracker is not None and tracker.start(results):   # new MLflow run ids: saved before training
            atomic_write_json(path, results)
        by_id = {r.id: r for r in runs}

        def record(run_id: str, outcome: dict) -> None:
            run = by_id[run_id]
            if "record" in outcome:
                done[run_id] = {**outcome["record"], **({"stage": stage[run_id]} if two else {})}
                failed.pop(run_id, None)
            else:
                failed[run_id] = {"id": run.id, "variant": run.variant, "params": run.params, **outcome}
            results["runs"] = [done[r.id] for r in order if r.id in done]
            if failed:
                results["failed"] = [failed[r.id] for r in order if r.id in failed]
            atomic_write_json(path, results)
            if tracker is not None:   # logged once the record is saved; then saved as logged
                tracker.finished(run_id, outcome)
                atomic_write_json(path, results)

        def sweep(todo: list, selected: dict | None) -> None:
            """Run ``todo`` (the selection runs, or with ``selected`` the confirmation runs built from it)."""
            if isinstance(pool, executors.Sequential):
                with tqdm(total=sum(r.spec.epochs if isinstance(r, Run) else 1 for r in todo),
                          disable=not show_progress, unit="epoch", mininterval=1.0,
                          desc=exp.name + (" (confirmation)" if selected is not None else "")) as bar:
                    for run_id, outcome in pool.map(exp, cfg, split, todo, out, progress=bar, callback=callback,
                                                    on_eval=tracker.evaluated if tracker else None):
                        record(run_id, outcome)
            else:
                tasks = [executors.Task(exp.name, type(exp).__module__, preset, dict(overrides or {}), data, data_dir,
                                        r.id, str(out / "checkpoints" / f"{r.id}.pt"), pool.device, pool.threads,
                                        tuple(sys.path), selected) for r in todo]
                total = len([r for r in order if stage[r.id] == stage[todo[0].id]]) if todo else 0
                with tqdm(total=total, initial=total - len(todo), disable=not show_progress, unit="run",
                          mininterval=1.0, desc=f"{exp.name}{' (confirmation)' if selected is not None else ''} "
                          f"({pool.name}, {jobs} at once)") as bar:
                    for run_id, outcome in pool.map(tasks):
                        record(run_id, outcome)
                        bar.set_postfix_str(f"{len(failed)} failed" if failed else run_id)
                        bar.update(1)

        sweep(todo, None)
        if two and not failed:   # stage 2: the claims' runs, at the settings the selection runs chose
            chosen = exp.selected(view(results, SELECTION))
            results["selected"] = chosen
            confirm = exp.confirm_runs(cfg, chosen)
            clash = sorted({r.id for r in confirm} & set(stage))
            if clash:
                raise ValueError(f"{exp.name}: confirmation run ids {clash[:3]} repeat selection run ids")
            order += confirm
            stage.update({r.id: CONFIRMATION for r in confirm})
            by_id.update({r.id: r for r in confirm})
            if tracker is not None:
                tracker.add(confirm)
            todo2 = [r for r in confirm if r.id not in done]
            if not resume:
                for run in todo2:
                    (out / "checkpoints" / f"{run.id}.pt").unlink(missing_ok=True)
            results["runs"] = [done[r.id] for r in order if r.id in done]   # a stale stage-2 record drops out
            sweep(todo2, chosen)
    # a resumed sweep adds this session's time to what the earlier sessions recorded (a finished one keeps its own)
    results["seconds"] = round(float(previous.get("seconds") or 0.0) + time.perf_counter() - t0, 1)
    if results["runs"] and (chosen := exp.selected(view(results, SELECTION))) is not None:
        results["selected"] = chosen
    atomic_write_json(path, results)
    return results

