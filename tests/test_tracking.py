"""Tracking (``--log-to tensorboard|mlflow``): the logs, read back with each backend's own reader
(TensorBoard's ``EventAccumulator``, ``mlflow.search_runs`` and ``MlflowClient``), equal
results.json value by value; live logging, resume, ``--jobs``, ``report --log-to``, and the errors.

TensorBoard stores scalars as float32: its values are compared with results.json's rounded to
float32, exactly. MLflow stores doubles: compared exactly. Tests other than the first share one
MLflow SQLite store (``$MLFLOW_TRACKING_URI``), since creating a store takes seconds.
"""

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")

from mlflow.tracking import MlflowClient  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from noisereg.cli import main  # noqa: E402
from noisereg.errors import UserError  # noqa: E402
from noisereg.sweep import EXPERIMENTS, run_experiment  # noqa: E402
from noisereg.integrations import MissingExtraError  # noqa: E402
from noisereg.tracking import setting_text  # noqa: E402
from noisereg.training.loop import sigma_at  # noqa: E402

FIG3 = EXPERIMENTS["fig3"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def shared(store, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    return store


def numbers(entry):
    return {k: v for k, v in entry.items() if k not in ("step", "epoch") and isinstance(v, (int, float))
            and not isinstance(v, bool)}


def tensorboard(folder):
    """``{tag: [(step, value), ...]}`` of one run's folder, as TensorBoard reads it (purges applied)."""
    acc = EventAccumulator(str(folder)).Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}, acc


def f32(v):
    return float(np.float32(v))


def check_tensorboard(out, results, sigma=None):
    """Every run's TensorBoard folder against its results.json entry, value by value."""
    for run in results["runs"]:
        tags, acc = tensorboard(out / "tensorboard" / run["id"])
        history = run["history"]
        for name in {k for h in history for k in numbers(h)}:
            assert tags[name] == [(h["step"], f32(h[name])) for h in history if name in h], (run["id"], name)
        expected = sigma(run) if sigma else [run["sigma"]] * len(history)
        assert tags["sigma"] == [(h["step"], f32(s)) for h, s in zip(history, expected)]
        if "grad_evals_per_step" in run:
            assert tags["grad_evals"] == [(h["step"], f32(run["grad_evals_per_step"] * h["step"])) for h in history]
            assert tags["grad_evals"][-1][1] == run["grad_evals"]
        last = history[-1]["step"]
        assert {k: tags[f"final/{k}"] for k in run["final"]} == {k: [(last, f32(v))] for k, v in run["final"].items()}
        assert set(tags) == {*(k for h in history for k in numbers(h)), "sigma", *(f"final/{k}" for k in run["final"]),
                             *(["grad_evals"] if "grad_evals_per_step" in run else [])}
        text = acc.Tensors("settings/text_summary")[0].tensor_proto.string_val[0].decode()
        assert f"| method | {run['method']} |" in text and f"| seed | {run['seed']} |" in text
        assert "_hparams_/session_start_info" in acc.PluginTagToContent("hparams")


def check_mlflow(results, uri, parent=None):
    """The sweep's MLflow parent and child runs against results.json, value by value; the parent's id."""
    import mlflow

    state = results.get("tracking", {}).get("mlflow", {})
    parent = parent or state["parent_run_id"]
    client = MlflowClient(tracking_uri=uri)
    mlflow.set_tracking_uri(uri)
    top = client.get_run(parent)
    assert top.info.status == "FINISHED"
    assert top.data.params["experiment"] == results["experiment"] and top.data.params["preset"] == results["preset"]
    assert {k: top.data.params[k] for k in results["config"]} == {k: setting_text(v) for k, v in results["config"].items()}
    assert {a.path for a in client.list_artifacts(parent)} >= {"REPORT.md", "results.json",
                                                                *(f"{s['file']}" for s in EXPERIMENTS[
                                                                    results["experiment"]].figures(results["config"]))}
    df = mlflow.search_runs(experiment_ids=[top.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'")
    assert sorted(df["tags.mlflow.runName"]) == sorted(r["id"] for r in results["runs"])
    if state:
        assert dict(zip(df["tags.mlflow.runName"], df["run_id"])) == state["runs"]
    for run in results["runs"]:
        row = df[df["tags.mlflow.runName"] == run["id"]].iloc[0]
        assert row["status"] == "FINISHED"
        for key in ("experiment", "preset"):
            assert row[f"params.{key}"] == results[key]
        assert (row["params.method"], float(row["params.sigma"]), int(row["params.seed"])) == (
            run["method"], run["sigma"], run["seed"])
        for k, v in results["config"].items():
            assert row[f"params.{k}"] == setting_text(v)
        for k, v in run["params"].items():
            assert row[f"params.params.{k}"] == setting_text(v)
        for k, v in run["final"].items():   # the latest value of each metric is the final one
            assert row[f"metrics.{k}"] == v, (run["id"], k)
        for name in {k for h in run["history"] for k in numbers(h)}:
            logged = [(m.step, m.value) for m in sorted(client.get_metric_history(row["run_id"], name),
                                                        key=lambda m: (m.step, m.timestamp))]
            expected = [(h["step"], h[name]) for h in run["history"] if name in h]
            if name in run["final"] and run["final"][name] != expected[-1][1]:
                expected.append((run["history"][-1]["step"], run["final"][name]))
            assert logged == expected, (run["id"], name)
        steps = [m.step for m in client.get_metric_history(row["run_id"], "sigma")]
        assert steps == [h["step"] for h in run["history"]]   # each evaluation once
    return parent


# ----------------------------------------------------------------------------------- the check
def test_smoke_sweep_logged_to_both_reads_back_as_results_json(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)   # nothing may land in the working directory
    out = tmp_path / "fig3"
    assert main(["run", "fig3", "--preset", "smoke", "--out", str(out), "--quiet",
                 "--log-to", "tensorboard", "--log-to", "mlflow"]) == 0
    results = json.loads((out / "results.json").read_text())
    uri = f"sqlite:///{(out / 'mlflow.db').resolve()}"
    assert results["tracking"]["mlflow"]["tracking_uri"] == uri
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig3"]
    assert sorted(p.name for p in (out / "tensorboard").iterdir()) == sorted(r["id"] for r in results["runs"])
    check_tensorboard(out, results)
    parent = check_mlflow(results, uri)
    printed = capsys.readouterr().out
    assert f"tensorboard --logdir {out / 'tensorboard'}" in printed and f"MLflow: parent run {parent} in {uri}" in printed


def test_a_two_stage_sweep_logs_its_confirmation_runs_too(tmp_path, monkeypatch):
    """The confirmation runs are known only after the selection runs: they are logged like the others."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "fig3"
    assert main(["run", "fig3", "--preset", "smoke", "--out", str(out), "--quiet", "--set", "confirm_seeds=1",
                 "--log-to", "tensorboard", "--log-to", "mlflow"]) == 0
    results = json.loads((out / "results.json").read_text())
    ids = [r["id"] for r in results["runs"]]
    assert [i for i in ids if i.startswith("confirm-")] == ["confirm-gd-s1", "confirm-full-sigma0.1-s1",
                                                           "confirm-layer-sigma0.1-s1"]
    assert sorted(p.name for p in (out / "tensorboard").iterdir()) == sorted(ids)
    check_tensorboard(out, results)
    check_mlflow(results, f"sqlite:///{(out / 'mlflow.db').resolve()}")


def test_live_logging_shows_each_evaluation_while_the_run_trains(tmp_path, shared):
    """Sequential sweeps log as they go: after an epoch, the evaluation is in both stores while the run's
    record is not yet in results.json. A σ schedule with a noise stop: ``sigma`` is the scheduled σ."""
    overrides = {"methods": ("full",), "epochs": 4, "eval_every": 1, "noise_stop_epoch": 2}
    out, seen = tmp_path / "live", []

    def peek(epoch):
        tags, _ = tensorboard(out / "tensorboard" / "full-sigma0.1-s0")
        state = json.loads((out / "results.json").read_text())
        client = MlflowClient(tracking_uri=shared)
        mlflow_id = state["tracking"]["mlflow"]["runs"]["full-sigma0.1-s0"]
        seen.append((epoch, [s for s, _ in tags["test_acc"]], [m.step for m in client.get_metric_history(
            mlflow_id, "test_acc")], state["runs"]))

    results = run_experiment(FIG3, "smoke", out, overrides=overrides, show_progress=False, callback=peek,
                             log_to=["tensorboard", "mlflow"])
    assert [(e, tb, ml, runs) for e, tb, ml, runs in seen] == [(e, list(range(e + 1)), list(range(e + 1)), [])
                                                              for e in range(1, 5)]
    spec = next(r.spec for r in FIG3.runs(FIG3.config("smoke", overrides)))
    sigmas = [sigma_at(spec, max(h.get("epoch", 0) - 1, 0)) for h in results["runs"][0]["history"]]
    assert sigmas == [0.1, 0.1, 0.1, 0.0, 0.0]
    check_tensorboard(out, results, sigma=lambda run: sigmas)
    publish_and_check(out, results, shared)


class Killed(Exception):
    pass


def test_resume_continues_the_same_runs_and_logs_each_step_once(tmp_path, shared):
    overrides = {"methods": ("gd", "full"), "epochs": 4, "eval_every": 1, "checkpoint_every": 2}
    calls = []

    def kill(epoch):   # the second run dies after its epoch-3 evaluation; its checkpoint is at epoch 2
        calls.append(epoch)
        if len(calls) == 4 + 3:
            raise Killed

    out = tmp_path / "run"
    with pytest.raises(Killed):
        run_experiment(FIG3, "smoke", out, overrides=overrides, show_progress=False, callback=kill,
                       log_to=["tensorboard", "mlflow"])
    before = json.loads((out / "results.json").read_text())["tracking"]
    assert len(before["mlflow"]["runs"]) == 2 and before["mlflow"]["logged"] == ["gd-s0"]
    killed = MlflowClient(tracking_uri=shared).get_metric_history(before["mlflow"]["runs"]["full-sigma0.1-s0"],
                                                                  "test_acc")
    assert [m.step for m in killed] == [0, 1, 2, 3]   # step 3 is not logged again after the resume from epoch 2
    results = run_experiment(FIG3, "smoke", out, overrides=overrides, show_progress=False, resume=True,
                             log_to=["tensorboard", "mlflow"])
    assert results["tracking"]["mlflow"]["runs"] == before["mlflow"]["runs"]   # the same MLflow runs
    assert results["tracking"]["mlflow"]["parent_run_id"] == before["mlflow"]["parent_run_id"]
    publish_and_check(out, results, shared)
    assert len(list((out / "tensorboard" / "full-sigma0.1-s0").glob("events.out.tfevents.*"))) == 2
    check_tensorboard(out, results)   # the resumed run: steps 0-4 once each (the first file's purged)


def publish_and_check(out, results, uri):
    from noisereg.report import write_report
    from noisereg.tracking import publish

    write_report(out, [results])
    assert publish(out, results) == results["tracking"]["mlflow"]["parent_run_id"]
    return check_mlflow(results, uri)


def test_jobs_log_each_run_when_it_completes(tmp_path, shared, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "jobs"
    results = run_experiment(FIG3, "smoke", out, show_progress=False, jobs=2, log_to=["tensorboard", "mlflow"])
    assert results["environment"]["executor"] == "processes" and not results.get("failed")
    check_tensorboard(out, results)
    publish_and_check(out, results, shared)


def test_theory_jobs_and_a_resume_that_logs_an_unlogged_sweep(tmp_path, shared):
    """Batched theory jobs (no training settings: σ is the run's, grad_evals absent); a sweep run without
    logging, resumed with ``--log-to``, logs its finished runs without training them again."""
    out = tmp_path / "lasso"
    first = run_experiment(EXPERIMENTS["lasso"], "smoke", out, show_progress=False)
    assert "tracking" not in first
    results = run_experiment(EXPERIMENTS["lasso"], "smoke", out, show_progress=False, resume=True,
                             log_to=["tensorboard", "mlflow"])
    assert [r["history"] for r in results["runs"]] == [r["history"] for r in first["runs"]]
    assert results["tracking"]["tensorboard"]["logged"] == [r["id"] for r in first["runs"]]
    check_tensorboard(out, results)
    publish_and_check(out, results, shared)
    again = run_experiment(EXPERIMENTS["lasso"], "smoke", out, show_progress=False, resume=True, log_to=["tensorboard"])
    assert again["tracking"] == results["tracking"]   # a backend this session does not use keeps its runs


def test_a_failed_run_ends_failed_and_its_retry_continues_the_same_runs(tmp_path, shared):
    """The tracker alone: a run fails after two evaluations (MLflow status FAILED, the error as a tag); the next
    session's retry logs into the same MLflow run, each step once, and TensorBoard reads each step once."""
    from noisereg.tracking import RunInfo, Tracking

    sweep = {"experiment": "fig3", "preset": "smoke", "config": {"lr": 0.1}, "environment": {}, "runs": []}
    history = [{"step": s, "train_loss": 1.0 / (s + 1)} for s in range(4)]
    with Tracking(["mlflow", "tensorboard"], tmp_path, [RunInfo("r", "v", {"width": 8})]) as tr:
        tr.start(sweep)
        tr.evaluated("r", history[:2])
        tr.finished("r", {"error": "RuntimeError: boom"})
    state = json.loads(json.dumps(sweep["tracking"]))
    client = MlflowClient(tracking_uri=shared)
    run = client.get_run(state["mlflow"]["runs"]["r"])
    assert run.info.status == "FAILED" and run.data.tags["noisereg.error"] == "RuntimeError: boom"
    assert run.data.params["params.width"] == "8" and run.data.params["lr"] == "0.1"
    record = {"method": "gd", "sigma": 0.0, "seed": 0, "history": history, "final": {"train_loss": 0.25, "extra": 7}}
    with Tracking(["mlflow", "tensorboard"], tmp_path, [RunInfo("r", "v", {"width": 8})], state) as tr:
        tr.start({**sweep, "runs": []})
        tr.evaluated("r", history[:3])   # a retry from a checkpoint at step 1 recomputes step 2
        tr.finished("r", {"record": record})
    run = client.get_run(state["mlflow"]["runs"]["r"])
    assert run.info.status == "FINISHED" and run.data.metrics == {"train_loss": 0.25, "extra": 7.0, "sigma": 0.0}
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "train_loss")] == [
        (h["step"], h["train_loss"]) for h in history]   # the final value equals the last: not logged twice
    tags, _ = tensorboard(tmp_path / "tensorboard" / "r")
    assert tags["train_loss"] == [(h["step"], f32(h["train_loss"])) for h in history]
    assert tags["final/extra"] == [(3, 7.0)]


def test_report_uploads_an_existing_sweep_as_a_new_parent_run(tmp_path, shared, capsys):
    out = tmp_path / "fig3"
    assert main(["run", "fig3", "--preset", "smoke", "--out", str(out), "--quiet", "--log-to", "mlflow"]) == 0
    saved = (out / "results.json").read_bytes()
    results = json.loads(saved)
    capsys.readouterr()
    parents = []
    for _ in range(2):
        assert main(["report", str(out), "--log-to", "mlflow", "--log-to", "tensorboard"]) == 0
        line = next(x for x in capsys.readouterr().out.splitlines() if "MLflow parent run" in x)
        parents.append(line.split("MLflow parent run ")[1].split()[0])
        assert check_mlflow({**results, "tracking": {}}, shared, parent=parents[-1])
    assert len({results["tracking"]["mlflow"]["parent_run_id"], *parents}) == 3   # a new parent each time
    assert (out / "results.json").read_bytes() == saved   # the sweep's own file is left as it was
    check_tensorboard(out, results)


# ---------------------------------------------------------------------------------------- errors
def test_bad_backends_are_refused_before_any_work(tmp_path, capsys, monkeypatch):
    with pytest.raises(UserError, match=r"^--log-to must be one of 'tensorboard', 'mlflow', got 'wandb'$"):
        run_experiment(FIG3, "smoke", tmp_path / "a", show_progress=False, log_to=["wandb"])
    with pytest.raises(TypeError, match=r"^log_to must be a list of names, got the string 'mlflow'"):
        run_experiment(FIG3, "smoke", tmp_path / "b", show_progress=False, log_to="mlflow")
    with pytest.raises(SystemExit):
        main(["run", "fig3", "--preset", "smoke", "--out", str(tmp_path / "c"), "--log-to", "wandb"])
    assert "invalid choice: 'wandb'" in capsys.readouterr().err
    assert not any((tmp_path / d).exists() for d in "abc")


@pytest.mark.parametrize("backend", ["tensorboard", "mlflow"])
def test_a_missing_extra_names_its_pip_install(backend, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, backend, None)   # `import <backend>` fails as if it were not installed
    monkeypatch.setattr(FIG3, "data", lambda *a: pytest.fail("the data was loaded"))
    assert main(["run", "fig3", "--preset", "smoke", "--out", str(tmp_path / "x"), "--log-to", backend]) == 2
    assert capsys.readouterr().err == (f'noisereg: error: --log-to {backend} needs the "{backend}" package, which is '
                                       f'not installed: pip install "noisereg[{backend}]"\n')
    with pytest.raises(MissingExtraError, match=rf'pip install "noisereg\[{backend}\]"$'):
        from noisereg.report.upload import upload

        upload(tmp_path, [backend])


def test_the_command_line_imports_no_backend_until_asked():
    code = ("import sys, noisereg.cli, noisereg.tracking, noisereg.experiments; noisereg.cli.build_parser(); "
            "print([m for m in ('tensorboard', 'mlflow') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_tracking_guide_commands_run_as_written(tmp_path, shared, monkeypatch, capsys):
    """The tracking guide's commands (those that need no server or viewer), with runs/ under a temporary
    directory and the MLflow store of this module."""
    section = (Path(__file__).resolve().parents[1] / "docs/guide/tracking.md").read_text()
    lines = [line.split("#")[0].strip() for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S)
             for line in block.splitlines()]
    commands = [shlex.split(line) for line in lines if line.startswith("noisereg ")]
    assert [c[:2] for c in commands] == [["noisereg", "run"], ["noisereg", "run"], ["noisereg", "report"]]
    monkeypatch.chdir(tmp_path)
    for argv in commands:
        assert main(argv[1:] + (["--quiet"] if argv[1] == "run" else [])) == 0, argv
    assert (tmp_path / "runs/f3/tensorboard").is_dir() and (tmp_path / "runs/f3m/tensorboard").is_dir()
    assert json.loads((tmp_path / "runs/f3m/results.json").read_text())["tracking"]["mlflow"]["tracking_uri"] == shared
    assert "MLflow parent run" in capsys.readouterr().out
