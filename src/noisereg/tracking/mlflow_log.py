"""MLflow runs for a sweep: one parent run per sweep, one child run per noisereg run.

Written with :class:`mlflow.tracking.MlflowClient` (``pip install "noisereg[mlflow]"``) into
``$MLFLOW_TRACKING_URI`` when it is set, else ``sqlite:///OUT/mlflow.db`` (a SQLite store's
artifacts go to ``mlartifacts/`` beside its file); look at it with ``mlflow ui --backend-store-uri sqlite:///OUT/mlflow.db``.
The MLflow experiment is ``noisereg/NAME`` (``noisereg/fig3``), so sweeps of one experiment
sit side by side.

- The parent run (name ``NAME PRESET``) holds the params ``experiment``, ``preset`` and every
  setting by its flat ``--set`` name, tags with the source's commit and the command, and, once the
  report is written, REPORT.md, results.json and the figures as artifacts
  (:func:`end_parent`).
- A child run (tag ``mlflow.parentRunId``, name = the run's id) holds the params of
  :func:`noisereg.tracking.settings` (``experiment``, ``preset``, ``method``, ``sigma``,
  ``seed``, the settings, ``params.NAME``), the metrics of :func:`noisereg.tracking.scalars` at
  each evaluation with their step, then the ``final`` values that differ from the last
  evaluation's at the last step with a later timestamp (MLflow's latest value of a metric is
  then the run's final one), and ends ``FINISHED`` (``FAILED`` for a run that raised).

The child runs are created when the sweep starts and their ids saved in results.json; a
``--resume`` in the same store continues them, logging only the steps a run has not logged yet.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from noisereg.integrations import require
from noisereg.tracking import Backend, RunInfo, final_scalars, same, scalars, setting_text, settings


def default_uri(out: str | Path) -> str:
    """``$MLFLOW_TRACKING_URI`` when set, else ``sqlite:///OUT/mlflow.db`` (an absolute path)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(Path(out) / 'mlflow.db').resolve()}"


def _client(uri: str):
    require("mlflow", "mlflow", "--log-to mlflow")
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


class MlflowLog(Backend):
    """The MLflow backend of :class:`noisereg.tracking.Tracking`.

    Raises:
        MissingExtraError: MLflow is not installed.
    """

    name = "mlflow"

    def __init__(self, out: Path, state: dict | None, tracking_uri: str | None = None):
        super().__init__(state)
        require("mlflow", "mlflow", "--log-to mlflow")
        self.out, self.uri = Path(out), tracking_uri or default_uri(out)
        self.client = None
        self.earlier: set[str] = set()   # run ids whose MLflow run an earlier session created
        self.skip: dict[str, set[int]] = {}   # run id -> steps an earlier session logged

    def _continues(self) -> bool:
        """Whether the saved state names a parent run in this store (then its runs are continued)."""
        from mlflow.exceptions import MlflowException

        if self.state.get("tracking_uri") != self.uri or not self.state.get("parent_run_id"):
            return False
        try:
            self.client.get_run(self.state["parent_run_id"])
        except MlflowException:
            return False
        return True

    def open(self, results: dict, run_ids: list[str]) -> bool:
        from mlflow.entities import Param, RunTag

        super().open(results, run_ids)
        self.client = _client(self.uri)
        changed = False
        if self._continues():
            self.earlier = set(self.state.get("runs", {}))
        else:
            name = f"noisereg/{results['experiment']}"
            found = self.client.get_experiment_by_name(name)
            if found is not None:
                experiment_id = found.experiment_id
            else:   # a SQLite store keeps the artifacts beside its file, not in the working directory
                db = self.uri.removeprefix("sqlite:///") if self.uri.startswith("sqlite:///") else None
                experiment_id = self.client.create_experiment(
                    name, artifact_location=(Path(db).parent / "mlartifacts").resolve().as_uri() if db else None)
            env = results.get("environment", {})
            parent = self.client.create_run(experiment_id, run_name=f"{results['experiment']} {results['preset']}",
                                            tags={"noisereg.git": str(env.get("git", "")),
                                                  "noisereg.command": str(env.get("command", "")),
                                                  "noisereg.out": str(self.out.resolve())})
            params = {"experiment": results["experiment"], "preset": results["preset"], **results.get("config", {})}
            self.client.log_batch(parent.info.run_id, params=[Param(k, setting_text(v)) for k, v in params.items()],
                                  tags=[RunTag("noisereg.data", str(results.get("data", "")))])
            self.state.clear()
            self.state.update(tracking_uri=self.uri, experiment_id=experiment_id, parent_run_id=parent.info.run_id,
                              runs={}, logged=[])
            changed = True
        for run_id in run_ids:
            if run_id not in self.state["runs"]:
                run = self.client.create_run(self.state["experiment_id"], run_name=run_id,
                                             tags={"mlflow.parentRunId": self.state["parent_run_id"],
                                                   "noisereg.run_id": run_id})
                self.state["runs"][run_id] = run.info.run_id
                changed = True
        return changed

    def _id(self, info: RunInfo) -> str:
        if info.id not in self.state["runs"]:   # a run not in the sweep's list (an earlier record): one more child
            self.state["runs"][info.id] = self.client.create_run(
                self.state["experiment_id"], run_name=info.id,
                tags={"mlflow.parentRunId": self.state["parent_run_id"], "noisereg.run_id": info.id}).info.run_id
        return self.state["runs"][info.id]

    def begin(self, info: RunInfo, history: list[dict[str, Any]]) -> None:
        from mlflow.entities import Param, RunTag

        run_id = self._id(info)
        self.skip[info.id] = set()
        if info.id in self.earlier:   # continued: the steps an earlier session logged are not logged again
            for key in self.client.get_run(run_id).data.metrics:
                self.skip[info.id] |= {m.step for m in self.client.get_metric_history(run_id, key)}
            self.client.update_run(run_id, status="RUNNING")
        self.client.log_batch(run_id, params=[Param(k, v) for k, v in settings(self.results, info).items()],
                              tags=[RunTag("noisereg.variant", info.variant)])

    def write(self, info: RunInfo, entry: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        step = int(entry["step"])
        if step in self.skip[info.id]:
            return
        ts = self.now()
        self.client.log_batch(self._id(info), metrics=[Metric(k, v, ts, step) for k, v in scalars(info, entry).items()])

    def finish(self, info: RunInfo, record: dict[str, Any]) -> None:
        from mlflow.entities import Metric, RunTag

        run_id, last = self._id(info), record["history"][-1]
        shown = scalars(info, last)
        ts, step = self.now(), int(last["step"])
        metrics = [Metric(k, v, ts, step) for k, v in final_scalars(record).items() if not same(v, shown.get(k))]
        tags = [RunTag(k, str(record[k])) for k in ("diverged", "seconds", "grad_evals") if k in record]
        self.client.log_batch(run_id, metrics=metrics, tags=tags)
        self.client.set_terminated(run_id, "FINISHED")

    def fail(self, info: RunInfo, error: str) -> None:
        super().fail(info, error)
        run_id = self._id(info)
        self.client.set_tag(run_id, "noisereg.error", error[:5000])
        self.client.set_terminated(run_id, "FAILED")


def end_parent(state: dict, out: Path, failed: bool = False) -> str:
    """Log ``out``'s REPORT.md, results.json and PNG figures as artifacts of the parent run in ``state``
    and end it (``FAILED`` when ``failed``); the parent run's id."""
    client, parent = _client(state["tracking_uri"]), state["parent_run_id"]
    for f in [out / "REPORT.md", out / "results.json", *sorted(out.glob("*.png"))]:
        if f.is_file():
            client.log_artifact(parent, str(f))
    client.set_terminated(parent, "FAILED" if failed else "FINISHED")
    return parent
