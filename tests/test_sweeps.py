"""Parallel sweeps (``--jobs N``, ``--executor ray``): the sequential results, kill and resume,
failed runs recorded, lost workers retried from their checkpoints, and every error the flags raise.

Every run uses ``threads`` intra-op CPU threads (default 1) whatever ``jobs``: kernels sum in another
order with another thread count, so only equal threads give equal numbers. One local Ray instance serves
the module. ``counting`` is a test-only experiment written to a temporary module, imported (and
so registered) only by the tests that ask for it, and removed from the registry afterwards.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from noisereg.cli import main
from noisereg.errors import UserError
from noisereg.sweep import EXPERIMENTS, run_experiment
from noisereg.report import write_report

COUNTING = textwrap.dedent('''
    """Test-only experiment: three jobs that add seeded numbers step by step, checkpointing each step."""
    import functools
    import os
    import time
    from dataclasses import dataclass
    from pathlib import Path

    import torch

    from noisereg.sweep.experiment import Experiment, Job
    from noisereg.training import load_checkpoint, save_checkpoint


    @dataclass(frozen=True)
    class Config:
        steps: int = 4
        fail: str = ""      # this job raises in its first attempt
        lose: str = ""      # this job's first attempt kills its worker process after step `lose_at`
        lose_at: int = 2
        log: str = ""       # a file that gets one line "job step" per step computed
        slow: str = ""      # this job waits a second before it starts
        pause: float = 0.0  # seconds each step takes


    def first_time(marker):
        """True the first time it is asked about ``marker`` (a file it then creates)."""
        if marker.exists():
            return False
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        return True


    def count(cfg, job, seed, *, checkpoint, resume):
        checkpoint = Path(checkpoint)
        if job == cfg.fail and first_time(checkpoint.with_suffix(".failed")):
            raise RuntimeError(f"{job} fails on purpose")
        if job == cfg.slow:
            time.sleep(1.0)
        step, total = 0, 0.0
        if resume and checkpoint.exists():
            state = load_checkpoint(checkpoint)
            step, total = state["step"], state["total"]
        for t in range(step, cfg.steps):
            time.sleep(cfg.pause)
            total += float(torch.randn(3, generator=torch.Generator().manual_seed(1000 * seed + t)).sum())
            save_checkpoint(checkpoint, {"step": t + 1, "total": total})
            if cfg.log:
                with open(cfg.log, "a") as f:
                    f.write(f"{job} {t + 1}\\n")
            if job == cfg.lose and t + 1 == cfg.lose_at and first_time(checkpoint.with_suffix(".lost")):
                os._exit(1)
        return {"method": "gd", "sigma": 0.0, "seed": seed,
                "final": {"train_loss": total, "threads": torch.get_num_threads()},
                "history": [{"step": cfg.steps, "train_loss": total}]}


    class Counting(Experiment):
        name = "counting"
        description = "test-only"
        Config = Config
        PRESETS = {"smoke": {}}

        def data(self, cfg, data, data_dir):
            self.own_data_only(data, data_dir)
            return "none"

        def runs(self, cfg):
            return [Job(f"job{k}", "counting", functools.partial(count, cfg, f"job{k}", k), {"k": k}) for k in range(3)]
''')


@pytest.fixture(scope="module")
def helper_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("helpers")
    (d / "sweep_counting.py").write_text(COUNTING)
    return d


@pytest.fixture
def counting(helper_dir, monkeypatch):
    """Registers ``counting`` for one test (workers import its module themselves) and removes it after."""
    import importlib

    monkeypatch.syspath_prepend(str(helper_dir))
    importlib.import_module("sweep_counting")
    yield EXPERIMENTS["counting"]
    EXPERIMENTS.pop("counting", None)
    sys.modules.pop("sweep_counting", None)


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray")
    import logging

    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield ray
    ray.shutdown()


pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py: one intra-op thread, restored after


def comparable(out: Path) -> dict:
    """results.json without the fields that may differ between executors (timings, environment)."""
    res = json.loads((out / "results.json").read_text())
    res.pop("seconds"), res.pop("environment")
    for r in res["runs"]:
        r.pop("seconds")
    return res


def report_text(out: Path) -> str:
    return "\n".join(line for line in (out / "REPORT.md").read_text().splitlines() if "environment:" not in line)


SWEEPS = {"fig3": {"epochs": 6}, "lasso": {}}


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    """The sequential (jobs=1) sweeps the parallel ones must equal, with their report and figures: one run at a
    time (``batch=False``), the path worker processes and Ray take."""
    torch.set_num_threads(1)
    outs = {}
    for name, overrides in SWEEPS.items():
        out = tmp_path_factory.mktemp(f"seq-{name}")
        write_report(out, [run_experiment(EXPERIMENTS[name], "smoke", out, overrides=overrides, show_progress=False,
                                          batch=False)])
        outs[name] = out
    return outs


@pytest.mark.parametrize("executor", ["local", "ray"])
@pytest.mark.parametrize("name", list(SWEEPS))
def test_parallel_sweep_equals_the_sequential_one(name, executor, sequential, tmp_path, request):
    if executor == "ray":
        request.getfixturevalue("ray_instance")
    res = run_experiment(EXPERIMENTS[name], "smoke", tmp_path, overrides=SWEEPS[name], show_progress=False, jobs=2,
                         executor=executor)
    write_report(tmp_path, [res])
    assert res["environment"]["executor"] == ("ray" if executor == "ray" else "processes")
    assert res["environment"]["threads_per_run"] == 1
    ref = sequential[name]
    assert comparable(tmp_path) == comparable(ref)  # runs in the runner's order, every number equal
    assert report_text(tmp_path) == report_text(ref)
    pngs = sorted(p.name for p in ref.glob("*.png"))
    assert pngs and pngs == sorted(p.name for p in tmp_path.glob("*.png"))
    for png in pngs:
        assert (tmp_path / png).read_bytes() == (ref / png).read_bytes()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == sorted(
        p.name for p in (ref / "checkpoints").iterdir())


def finished(out: Path) -> list[str]:
    """Ids of the runs in ``out/results.json`` (none before it exists)."""
    path = out / "results.json"
    return [r["id"] for r in json.loads(path.read_text())["runs"]] if path.exists() else []


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "noisereg.cli", "run", *args, "--quiet"]


def test_driver_killed_then_resumed_gives_the_uninterrupted_results(tmp_path):
    """kill -9 of the driver's process group (driver and workers) mid-sweep, then --resume."""
    overrides = {"epochs": 40, "eval_every": 20, "checkpoint_every": 2}
    sets = [a for k, v in overrides.items() for a in ("--set", f"{k}={v}")]
    ref, out = tmp_path / "ref", tmp_path / "run"
    write_report(ref, [run_experiment(EXPERIMENTS["fig3"], "smoke", ref, overrides=overrides, show_progress=False)],
                 title="noisereg report: fig3")  # as the command writes it
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(_cli("fig3", "--preset", "smoke", "--out", str(out), "--jobs", "2", *sets), env=env,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while not finished(out) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL  # killed mid-sweep, not finished
    done = finished(out)
    assert 1 <= len(done) < 3
    stamps = {run: (out / "checkpoints" / f"{run}.pt").stat().st_mtime_ns for run in done}
    subprocess.run(_cli("fig3", "--preset", "smoke", "--out", str(out), "--jobs", "2", "--resume", *sets), env=env,
                   check=True)
    assert comparable(out) == comparable(ref)
    assert stamps == {run: (out / "checkpoints" / f"{run}.pt").stat().st_mtime_ns for run in done}  # not run again
    assert report_text(out) == report_text(ref)


def test_killed_sweep_resumes_each_run_from_its_checkpoint(counting, helper_dir, tmp_path):
    """The same kill -9 on the counting jobs, which log every step they compute: after --resume
    no step is computed twice. (A step is logged after its checkpoint is written, so a kill in
    between may leave one step unlogged, never one logged twice.)"""
    log, out = tmp_path / "steps.log", tmp_path / "run"
    code = "import sys, sweep_counting; from noisereg.cli import main; sys.exit(main(sys.argv[1:]))"
    argv = [sys.executable, "-c", code, "run", "counting", "--preset", "smoke", "--out", str(out), "--quiet",
            "--jobs", "2", "--set", "steps=12", "--set", "pause=0.15", "--set", f"log={log}"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(helper_dir), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(argv, env=env, start_new_session=True)
    deadline = time.monotonic() + 120
    while not finished(out) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and 1 <= len(finished(out)) < 3
    subprocess.run([*argv, "--resume"], env=env, check=True)
    lines = log.read_text().splitlines()
    assert len(lines) == len(set(lines)) and len(lines) >= 3 * 12 - 2  # each step once, at most 2 kills unlogged
    ref = run_experiment(counting, "smoke", tmp_path / "ref", overrides={"steps": 12}, show_progress=False)
    strip = lambda runs: [{k: v for k, v in r.items() if k != "seconds"} for r in runs]  # noqa: E731
    assert strip(json.loads((out / "results.json").read_text())["runs"]) == strip(ref["runs"])


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_a_failed_run_is_recorded_the_others_finish_and_resume_retries_it(executor, counting, tmp_path, capsys,
                                                                        request):
    if executor == "ray":
        request.getfixturevalue("ray_instance")
    ref = run_experiment(counting, "smoke", tmp_path / "ref", show_progress=False)
    argv = ["run", "counting", "--preset", "smoke", "--out", str(tmp_path / "run"), "--quiet", "--set", "fail=job1",
            "--jobs", "2", "--executor", executor]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "run job1 failed: RuntimeError: job1 fails on purpose" in err and "1 of 3 runs failed" in err
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert [r["id"] for r in res["runs"]] == ["job0", "job2"]
    [failed] = res["failed"]
    assert failed["id"] == "job1" and failed["params"] == {"k": 1}
    assert failed["error"] == "RuntimeError: job1 fails on purpose" and "Traceback" in failed["traceback"]
    report = (tmp_path / "run" / "REPORT.md").read_text()
    assert "**Incomplete: 1 of 3 runs failed**" in report and "| job1 | RuntimeError: job1 fails on purpose |" in report
    assert "not judged: 1 of 3 runs failed | **inconclusive**" in report
    assert main([*argv, "--resume"]) == 0
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert "failed" not in res
    strip = lambda runs: [{k: v for k, v in r.items() if k != "seconds"} for r in runs]  # noqa: E731
    assert strip(res["runs"]) == strip(ref["runs"])


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_a_lost_worker_is_retried_from_its_checkpoint(executor, counting, tmp_path, request):
    """job1's first attempt kills its worker after step 2: it runs again from that checkpoint."""
    if executor == "ray":
        request.getfixturevalue("ray_instance")
    ref = run_experiment(counting, "smoke", tmp_path / "ref", show_progress=False)
    log = tmp_path / "steps.log"
    res = run_experiment(counting, "smoke", tmp_path / "run", overrides={"lose": "job1", "log": str(log)},
                         show_progress=False, jobs=2, executor=executor)
    assert (tmp_path / "run" / "checkpoints" / "job1.lost").exists()  # the worker was lost once
    assert "failed" not in res
    strip = lambda runs: [{k: v for k, v in r.items() if k != "seconds"} for r in runs]  # noqa: E731
    assert strip(res["runs"]) == strip(ref["runs"])
    steps = [int(line.split()[1]) for line in log.read_text().splitlines() if line.startswith("job1 ")]
    assert steps == [1, 2, 3, 4]  # steps 1-2 were not computed again


def test_runs_that_finish_out_of_order_keep_the_runners_order(counting, tmp_path):
    ref = run_experiment(counting, "smoke", tmp_path / "ref", show_progress=False)
    log = tmp_path / "steps.log"
    res = run_experiment(counting, "smoke", tmp_path / "run", overrides={"slow": "job0", "log": str(log)},
                         show_progress=False, jobs=2)
    last = [line.split()[0] for line in log.read_text().splitlines() if line.endswith(" 4")]
    assert last[-1] == "job0"  # job0 finished last
    assert [r["id"] for r in res["runs"]] == ["job0", "job1", "job2"]
    assert json.loads((tmp_path / "run" / "results.json").read_text())["runs"] == res["runs"]
    strip = lambda runs: [{k: v for k, v in r.items() if k != "seconds"} for r in runs]  # noqa: E731
    assert strip(res["runs"]) == strip(ref["runs"])


def test_a_worker_lost_too_often_is_recorded_as_failed(counting, tmp_path, monkeypatch):
    from noisereg.sweep import executors

    monkeypatch.setattr(executors, "MAX_RETRIES", 0)
    res = run_experiment(counting, "smoke", tmp_path, overrides={"lose": "job1"}, show_progress=False, jobs=2)
    assert "job1" in {f["id"] for f in res["failed"]}  # and any run lost with it
    assert all(f["error"].startswith("BrokenProcessPool") for f in res["failed"])


def test_a_fresh_sweep_ignores_stale_checkpoints(counting, tmp_path):
    stale = tmp_path / "checkpoints" / "job0.pt"
    stale.parent.mkdir()
    stale.write_bytes(b"not a checkpoint")
    res = run_experiment(counting, "smoke", tmp_path, show_progress=False, jobs=2)
    assert "failed" not in res and len(res["runs"]) == 3


@pytest.mark.parametrize("jobs", [1, 2])
def test_every_run_uses_the_threads_asked_for_whatever_jobs(jobs, counting, tmp_path):
    """--jobs only sets how many runs go at once: a run sees ``threads`` intra-op threads (default 1), never the
    driver's count divided between the jobs, so a seed's numbers do not depend on the process layout."""
    torch.set_num_threads(3)   # the driver's own count must not leak into the runs
    res = run_experiment(counting, "smoke", tmp_path / "default", show_progress=False, jobs=jobs)
    assert [r["final"]["threads"] for r in res["runs"]] == [1, 1, 1]
    assert res["environment"]["threads"] == 1
    res = run_experiment(counting, "smoke", tmp_path / "two", show_progress=False, jobs=jobs, threads=2)
    assert [r["final"]["threads"] for r in res["runs"]] == [2, 2, 2]
    assert res["environment"]["threads"] == 2
    assert torch.get_num_threads() == 3   # the driver's count is restored


def test_fig3_gives_the_same_numbers_with_one_and_two_jobs(tmp_path):
    """The issue's check at a smaller scale, the driver on 2 threads: --jobs 1 and --jobs 2 give bit-identical
    final metrics and final weights for GD and both noisy arms. (Before every run had one thread, --jobs 1 ran
    on the driver's 2 and --jobs 2 on 1 each; the weight gradients' matrix products with 1024 rows and small
    outputs split their sums between threads, so the weights differed in the last bits.)"""
    from noisereg.training import load_checkpoint

    torch.set_num_threads(2)
    sets = ["--set", "hidden=64,64", "--set", "n_train=1024", "--set", "epochs=8", "--set", "checkpoint_every=8"]
    finals, weights = [], []
    for jobs in ("1", "2"):
        out = tmp_path / f"jobs{jobs}"
        assert main(["run", "fig3", "--preset", "smoke", "--out", str(out), "--quiet", "--jobs", jobs, *sets]) == 0
        res = json.loads((out / "results.json").read_text())
        assert res["environment"]["threads"] == 1
        finals.append({r["id"]: r["final"] for r in res["runs"]})
        weights.append({r["id"]: load_checkpoint(out / "checkpoints" / f"{r['id']}.pt")["model"] for r in res["runs"]})
    assert finals[0] == finals[1] and len(finals[0]) == 3
    for run, state in weights[0].items():
        assert all(torch.equal(state[k], weights[1][run][k]) for k in state), run


# -------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs,match", [
    ({"jobs": 0}, "jobs must be an integer >= 1, got 0"),
    ({"jobs": 1.5}, "jobs must be an integer >= 1, got 1.5"),
    ({"executor": "dask"}, "executor must be one of 'local', 'ray', got 'dask'"),
    ({"ray_address": "auto"}, "ray_address needs executor='ray'"),
    ({"jobs": 2, "callback": print}, "callback runs in this process: it needs jobs=1 and executor='local'"),
    ({"threads": 0}, "threads must be an integer >= 1, got 0"),
    ({"threads": True}, "threads must be an integer >= 1, got True"),
], ids=["jobs0", "jobs-float", "executor", "address", "callback", "threads0", "threads-bool"])
def test_run_experiment_rejects_bad_sweep_arguments(kwargs, match, tmp_path):
    with pytest.raises(UserError, match=match):
        run_experiment(EXPERIMENTS["lasso"], "smoke", tmp_path, show_progress=False, **kwargs)
    assert not list(tmp_path.iterdir())  # checked before anything is written


@pytest.mark.parametrize("args,message", [
    (["--jobs", "0"], "noisereg: error: --jobs must be an integer >= 1, got 0"),
    (["--ray-address", "auto"], "noisereg: error: --ray-address needs --executor ray"),
    (["--threads", "0"], "noisereg: error: --threads must be an integer >= 1, got 0"),
], ids=["jobs", "address", "threads"])
def test_cli_rejects_bad_sweep_flags_in_one_line(args, message, tmp_path, capsys):
    assert main(["run", "lasso", "--preset", "smoke", "--out", str(tmp_path), *args]) == 2
    assert capsys.readouterr().err.strip() == message


def test_executor_ray_without_ray_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if it were not installed
    assert main(["run", "lasso", "--preset", "smoke", "--out", str(tmp_path), "--executor", "ray"]) == 2
    assert capsys.readouterr().err.strip() == ('noisereg: error: --executor ray needs the "ray" package, which is not '
                                               'installed: pip install "noisereg[ray]"')
    assert not list(tmp_path.iterdir())


class _Bar:
    """Records what run_experiment asks of its tqdm bar."""
    made = []

    def __init__(self, total=None, initial=0, disable=False, **kw):
        self.total, self.initial, self.n, self.disable = total, initial, initial, disable
        _Bar.made.append(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, k=1):
        self.n += k

    def set_postfix_str(self, *a, **kw):
        pass


@pytest.mark.parametrize("jobs", [1, 2], ids=["sequential", "processes"])
def test_the_progress_bar_counts_every_run_and_seconds_the_sweep(counting, tmp_path, monkeypatch, jobs):
    """Sequential: one step per epoch of a Run, one per Job; processes: one per run, starting at
    the runs already done. ``seconds``: the sweep's wall time, 0.1 s resolution. The environment
    keeps torch/python/device beside the executor's fields."""
    import time

    import tqdm.auto

    monkeypatch.setattr(tqdm.auto, "tqdm", _Bar)
    _Bar.made.clear()
    t0 = time.perf_counter()
    res = run_experiment(counting, "smoke", tmp_path / "a", jobs=jobs, overrides={"pause": 0.05})  # default: shown
    wall = time.perf_counter() - t0
    bar = _Bar.made[-1]
    assert not bar.disable and bar.initial == 0 and bar.total == 3 and bar.n == 3
    assert 0.6 / jobs - 0.05 <= res["seconds"] <= wall + 0.05  # 3 runs of 4 × 0.05 s; rounded to 0.1 s:
    assert res["seconds"] == round(res["seconds"], 1)
    assert {"torch", "python", "device"} <= set(res["environment"])
    if jobs > 1:
        assert res["environment"]["executor"] == "processes" and res["environment"]["jobs"] == 2
    # a resumed sweep with one run left: the bar starts at the runs done
    results = json.loads((tmp_path / "a" / "results.json").read_text())
    results["runs"] = results["runs"][:2]
    (tmp_path / "a" / "results.json").write_text(json.dumps(results))
    run_experiment(counting, "smoke", tmp_path / "a", jobs=jobs, overrides={"pause": 0.05}, resume=True,
                   show_progress=False)
    bar = _Bar.made[-1]
    assert bar.disable and (bar.initial, bar.n, bar.total) == ((2, 3, 3) if jobs > 1 else (0, 1, 1))


def test_the_sequential_bar_counts_epochs(tmp_path, monkeypatch):
    import tqdm.auto

    monkeypatch.setattr(tqdm.auto, "tqdm", _Bar)
    _Bar.made.clear()
    run_experiment(EXPERIMENTS["fig3"], "smoke", tmp_path, overrides={"methods": ("gd", "layer"), "epochs": 3})
    bar = _Bar.made[-1]
    assert bar.total == 2 * 3 and bar.n == 6 and not bar.disable
