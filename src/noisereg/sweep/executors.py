"""Where the runs of a sweep execute: in this process, in worker processes, or as Ray tasks.

:func:`noisereg.sweep.run_experiment` hands the runs still to do to one executor and
records each outcome as it arrives. Every executor trains a run with :func:`run_one` and yields
``(run id, outcome)``, where the outcome is ``{"record": {...}}`` (the run's entry of
results.json) or ``{"error": "Type: message", "traceback": "..."}``.

- :class:`Sequential` (``jobs=1``): one run after another in this process, sharing the loaded
  data; an exception stops the sweep with its traceback, as it always did.
- :class:`Processes` (``jobs=N``): up to N runs at once in worker processes of the "spawn"
  start method, one GPU each where there are GPUs (worker k takes GPU k mod the GPU count).
- :class:`RayTasks` (``executor="ray"``): up to N runs at once as Ray tasks on a local Ray
  instance (started here, stopped at the end) or on the cluster at ``address``; each task asks
  for one GPU where the cluster has GPUs, else for its CPU threads.

Every run uses the same number of intra-op CPU threads, ``threads`` (default 1), whichever executor
runs it and however many run at once: a kernel that sums in parallel sums in another order with
another thread count, so a seed gives one result only at one thread count. ``jobs`` sets how many
runs go at once and nothing else.

A worker rebuilds the experiment from a :class:`Task` (experiment name and module, preset,
overrides, data arguments) and picks its run by id: nothing of the experiment is pickled, so
runs built from closures (theory ``Job``) work. Every run resumes from its own checkpoint when
there is one (the runner deletes stale ones before a fresh sweep), so a worker that is lost (a
crash, an out-of-memory kill, a Ray node gone) is retried from where its checkpoint left it, up
to :data:`MAX_RETRIES` times; a run that raises is recorded as failed and the others go on.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import importlib
import multiprocessing
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from noisereg.sweep.experiment import EXPERIMENTS, Job, Run
from noisereg.training import train
from noisereg.training.batched_gd import run_noisy_gd_batch

MAX_RETRIES = 2
"""Times a run whose worker was lost is started again (from its checkpoint) before it is recorded as failed."""

Outcome = dict[str, Any]


def run_one(exp, cfg, run: Run | Job, split, *, checkpoint: Path, device: str, progress=None,
            callback=None, on_eval=None) -> dict[str, Any]:
    """Train (or compute) one run, resuming from ``checkpoint`` if it exists; its results.json entry.
    ``on_eval(run id, history)``: after each evaluation of a training run (live logging)."""
    if isinstance(run, Job):
        t0 = time.perf_counter()
        record = {**run.fn(checkpoint=checkpoint, resume=True), "seconds": round(time.perf_counter() - t0, 3)}
        if progress is not None:
            progress.update(1)
    else:
        record = train(lambda: exp.model(cfg, run, split), split, run.spec, device=device, checkpoint=checkpoint,
                       resume=True, progress=progress, callback=callback,
                       on_eval=None if on_eval is None else lambda history: on_eval(run.id, history))
    return {"id": run.id, "variant": run.variant, "params": run.params, **record}


def failure(err: BaseException, text: str | None = None) -> Outcome:
    """The outcome of a run that raised ``err``: one line, and the traceback (``text`` if given)."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return {"error": f"{type(err).__name__}: {first}".rstrip(": "),
            "traceback": text if text is not None else "".join(traceback.format_exception(err))}


# ------------------------------------------------------------------------------- in this process
class Sequential:
    """One run after another in this process (the data is loaded once and shared), on ``threads``
    intra-op threads (this process's count is restored on exit)."""

    name = "sequential"

    def __init__(self, device: str, batch: bool = False, threads: int = 1):
        self.device, self.batch, self.threads = device, batch, threads
        self._before: int | None = None

    def __enter__(self) -> Sequential:
        self._before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        return self

    def __exit__(self, *exc) -> None:
        if self._before is not None:
            torch.set_num_threads(self._before)

    def map(self, exp, cfg, split, todo: list[Run | Job], out: Path, progress=None,
            callback=None, on_eval=None) -> Iterator[tuple[str, Outcome]]:
        groups = {k: g for k, g in batches(todo).items() if len(g) > 1} if self.batch else {}
        for key, group in groups.items():
            if progress is not None:
                progress.set_postfix_str(f"{len(group)} runs batched ({key})")
            t0 = time.perf_counter()
            ids = hashlib.sha1(" ".join(j.id for j in group).encode()).hexdigest()[:10]
            records = run_noisy_gd_batch([j.batch[1]() for j in group], resume=True,
                                         checkpoint=out / "checkpoints" / f"batch-{key}-{ids}.pt")
            seconds = round((time.perf_counter() - t0) / len(group), 3)   # the batch's time, shared out
            for j, record in zip(group, records):
                if progress is not None:
                    progress.update(1)
                yield j.id, {"record": {"id": j.id, "variant": j.variant, "params": j.params, **record,
                                        "seconds": seconds, "batched": len(group)}}
        done = {j.id for g in groups.values() for j in g}
        for run in todo:
            if run.id in done:
                continue
            if progress is not None:
                progress.set_postfix_str(run.id)
            record = run_one(exp, cfg, run, split, checkpoint=out / "checkpoints" / f"{run.id}.pt",
                             device=self.device, progress=progress, callback=callback, on_eval=on_eval)
            yield run.id, {"record": record}


def batches(todo: list[Run | Job]) -> dict[str, list[Job]]:
    """The jobs of ``todo`` that can train together, by batch key (in ``todo`` order)."""
    out: dict[str, list[Job]] = {}
    for j in todo:
        if isinstance(j, Job) and j.batch is not None:
            out.setdefault(j.batch[0], []).append(j)
    return out


# ------------------------------------------------------------------------------------- workers
@dataclass(frozen=True)
class Task:
    """What a worker needs to rebuild one run: the experiment (name, and the module that defines
    it, imported first), preset, ``--set`` overrides, data arguments, the run's id, where its
    checkpoint goes, the device (``"cuda"``: the worker's own GPU) and CPU threads; ``path``: the
    driver's ``sys.path``, appended to the worker's so that experiments of the user's modules import;
    ``selected``: for a confirmation run, what the selection runs chose (its run is then one of
    ``Experiment.confirm_runs(cfg, selected)``), else None (one of ``Experiment.runs(cfg)``)."""

    experiment: str
    module: str
    preset: str
    overrides: dict[str, Any]
    data: str | None
    data_dir: str | None
    run_id: str
    checkpoint: str
    device: str
    threads: int
    path: tuple[str, ...] = ()
    selected: dict | None = None


_DATA: dict[tuple, Any] = {}  # per worker process: the data of the last sweep, loaded once


def execute(task: Task, slot: int | None = None) -> Outcome:
    """Run one task in a worker (a pool process or a Ray task); never raises for the run's own errors.

    ``slot`` (pool workers): the worker's number, which picks its GPU.
    """
    try:
        sys.path.extend(p for p in task.path if p not in sys.path)
        importlib.import_module(task.module)
        torch.set_num_threads(task.threads)
        exp = EXPERIMENTS[task.experiment]
        cfg = exp.config(task.preset, task.overrides)
        runs = exp.runs(cfg) if task.selected is None else exp.confirm_runs(cfg, task.selected)
        run = {r.id: r for r in runs}[task.run_id]
        device = task.device
        if device == "cuda" and slot is not None:
            device = f"cuda:{slot % torch.cuda.device_count()}"
        split = None
        if isinstance(run, Run):
            key = (task.experiment, task.preset, repr(sorted(task.overrides.items())), task.data, task.data_dir)
            if key not in _DATA:
                _DATA.clear()
                _DATA[key] = exp.data(cfg, task.data, task.data_dir)
            split = _DATA[key]
        record = run_one(exp, cfg, run, split, checkpoint=Path(task.checkpoint), device=device)
        return {"record": record}
    except Exception as err:  # recorded in results.json; the sweep goes on
        return failure(err)


_SLOT: int | None = None


def _init_worker(slots) -> None:
    global _SLOT
    _SLOT = slots.get()


def _execute_in_pool(task: Task) -> Outcome:
    return execute(task, _SLOT)


class Processes:
    """Up to ``jobs`` runs at once in worker processes ("spawn"); see the module docstring."""

    name = "processes"

    def __init__(self, jobs: int, device: str, threads: int = 1):
        self.jobs, self.device, self.threads = jobs, device, threads

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def _pool(self) -> cf.ProcessPoolExecutor:
        ctx = multiprocessing.get_context("spawn")
        slots = ctx.Queue()
        for k in range(self.jobs):
            slots.put(k)
        return cf.ProcessPoolExecutor(self.jobs, mp_context=ctx, initializer=_init_worker, initargs=(slots,))

    def map(self, tasks: list[Task]) -> Iterator[tuple[str, Outcome]]:
        queue, attempts = list(tasks), {t.run_id: 0 for t in tasks}
        pool, running = self._pool(), {}
        try:
            while queue or running:
                while queue and len(running) < self.jobs:  # at most `jobs` submitted: the running ones
                    try:
                        future = pool.submit(_execute_in_pool, queue[0])
                    except cf.process.BrokenProcessPool:  # broke since the last wait: a running future says so
                        if not running:
                            raise  # broken with nothing running: the workers' start-up itself failed
                        break
                    running[future] = queue.pop(0)
                finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                lost = []
                for fut in finished:
                    task = running.pop(fut)
                    try:
                        yield task.run_id, fut.result()
                    except cf.process.BrokenProcessPool as err:  # a worker died: every running run is lost
                        lost.append((task, err))
                if lost:
                    lost += [(running.pop(f), None) for f in list(running)]
                    pool.shutdown(wait=True, cancel_futures=True)
                    pool = self._pool()
                    for task, err in reversed(lost):
                        attempts[task.run_id] += 1
                        if attempts[task.run_id] > MAX_RETRIES:
                            yield task.run_id, failure(err or cf.process.BrokenProcessPool("worker process lost"))
                        else:
                            queue.insert(0, task)  # again, from its checkpoint
        finally:
            pool.shutdown(wait=False, cancel_futures=True)


# ------------------------------------------------------------------------------------------ Ray
class RayTasks:
    """Up to ``jobs`` runs at once as Ray tasks; see the module docstring.

    Raises:
        MissingExtraError: Ray is not installed (``pip install "noisereg[ray]"``).
    """

    name = "ray"

    def __init__(self, jobs: int, device: str | None, address: str | None, threads: int = 1):
        from noisereg.integrations import require

        self.ray = require("ray", "ray", "--executor ray")
        self.jobs, self.device, self.address, self.threads = jobs, device, address, threads
        self.started = False

    def __enter__(self) -> RayTasks:
        import logging

        if not self.ray.is_initialized():
            self.ray.init(address=self.address, logging_level=logging.WARNING)
            self.started = True
        if self.device is None:
            self.device = "cuda" if self.ray.cluster_resources().get("GPU", 0) > 0 else "cpu"
        elif self.device.startswith("cuda"):  # a task sees only the GPU Ray gave it, as "cuda"
            self.device = "cuda"
        return self

    def __exit__(self, *exc) -> None:
        if self.started:
            self.ray.shutdown()

    def map(self, tasks: list[Task]) -> Iterator[tuple[str, Outcome]]:
        ray = self.ray
        gpus = 1 if self.device.startswith("cuda") else 0
        remote = ray.remote(execute).options(num_cpus=self.threads, num_gpus=gpus, max_retries=MAX_RETRIES)
        queue, running = list(tasks), {}
        try:
            while queue or running:
                while queue and len(running) < self.jobs:
                    task = queue.pop(0)
                    running[remote.remote(task)] = task
                finished, _ = ray.wait(list(running), num_returns=1)
                for ref in finished:
                    task = running.pop(ref)
                    try:
                        yield task.run_id, ray.get(ref)
                    except Exception as err:  # the worker was lost MAX_RETRIES + 1 times
                        yield task.run_id, failure(err)
        finally:
            for ref in running:
                ray.cancel(ref, force=True)


def make_executor(executor: str, jobs: int, device: str | None, address: str | None, batch: bool = False,
                  threads: int = 1):
    """The executor for ``executor`` ("local" or "ray") and ``jobs``; ``device`` None: the default; ``batch``:
    jobs that can train together do (in this process only: ``jobs=1``, local); ``threads``: intra-op CPU
    threads of every run."""
    from noisereg.sweep.experiment import default_device

    if executor == "ray":
        return RayTasks(jobs, device, address, threads)
    device = device or default_device()
    return Sequential(device, batch, threads) if jobs == 1 else Processes(jobs, device, threads)
