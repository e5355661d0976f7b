"""Watching sweeps in TensorBoard and MLflow: ``noisereg run NAME --log-to tensorboard --log-to mlflow``.

One writer: the sweep's parent process, where :func:`noisereg.sweep.run_experiment` runs,
logs every run, so no store is ever written by two processes at once. A sequential sweep logs each
evaluation of a training run as it happens (the ``on_eval`` hook of :func:`noisereg.training.train`);
with ``--jobs N`` or Ray, and for the theory experiments' jobs, a run's history is logged when its
record arrives.

At each evaluation (step = optimizer steps, the history's ``"step"``) a run logs
:func:`scalars`: every metric of the history entry under its results.json name (``train_loss``,
``test_acc``, ...), ``sigma`` (the σ the last epoch before the evaluation trained with: the run's
σ after its schedule and noise stop; for a theory job its ``sigma``) and ``grad_evals`` (gradient
evaluations so far, ``grad_evals_per_step × step``, where the run states its cost). When the run
ends, its ``final`` values are logged at its last step. The backends
(:mod:`noisereg.tracking.tensorboard_log`, :mod:`noisereg.tracking.mlflow_log`) say where things go;
:mod:`noisereg.report.upload` logs finished sweeps (``noisereg report DIR --log-to ...``).

What each backend has logged is kept in results.json under ``"tracking"`` (``{backend: {...,
"logged": [run ids]}}``; for MLflow also the tracking URI and the parent and child run ids), so a
``--resume`` continues the same MLflow runs, rewrites a TensorBoard run from its first step with
``purge_step`` (a reader sees each step once), and logs the runs an earlier session finished
without logging them. Each backend needs its extra (``pip install "noisereg[tensorboard]"``,
``"noisereg[mlflow]"``); a missing one raises :class:`noisereg.integrations.MissingExtraError`
before any data is loaded.

"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from noisereg.errors import UserError

BACKENDS = ("tensorboard", "mlflow")
"""The ``--log-to`` names."""


def check_log_to(log_to: Iterable[str]) -> tuple[str, ...]:
    """The backends named in ``log_to``, each once, in order.

    Raises:
        TypeError: ``log_to`` is a single string (a list of names is meant).
        UserError: an unknown name.

    Example:
        >>> check_log_to(["mlflow", "tensorboard", "mlflow"])
        ('mlflow', 'tensorboard')
    """
    if isinstance(log_to, str):
        raise TypeError(f"log_to must be a list of names, got the string {log_to!r}; write [{log_to!r}]")
    names: list[str] = []
    for name in log_to:
        if name not in BACKENDS:
            raise UserError(f"--log-to must be one of {', '.join(map(repr, BACKENDS))}, got {name!r}")
        if name not in names:
            names.append(name)
    return tuple(names)


def require_backends(names: Iterable[str]) -> None:
    """Import each backend's package (``tensorboard``, ``mlflow``).

    Raises:
        MissingExtraError: one is not installed; the message names ``pip install "noisereg[NAME]"``.
    """
    from noisereg.integrations import require

    for name in names:
        require(name, name, f"--log-to {name}")


def setting_text(value: Any) -> str:
    """A setting as text, written as ``--set`` takes it (lists comma-separated).

    >>> setting_text([0.1, 0.2]), setting_text(None), setting_text(True)
    ('0.1,0.2', 'None', 'True')
    """
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def _number(value: Any) -> float | None:
    """``value`` as a float when it is a metric value (int or float, not bool; NaN kept; None: absent)."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass
class RunInfo:
    """What a backend knows of one run: its results.json ``id``, ``variant`` and ``params``, its training
    settings (``spec``, a :class:`~noisereg.training.TrainSpec`; None for a theory job) and, once it has
    finished, its ``record`` (its results.json entry)."""

    id: str
    variant: str = ""
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    spec: Any = None
    record: dict[str, Any] | None = None

    def value(self, key: str) -> Any:
        """``method``, ``sigma`` or ``seed``: from the record, else from the training settings."""
        if self.record is not None and key in self.record:
            return self.record[key]
        return getattr(self.spec, key, None)

    def sigma(self, entry: dict[str, Any]) -> float | None:
        """The σ of the epoch before the evaluation ``entry`` (the first epoch's for step 0)."""
        if self.spec is None:
            return _number(self.value("sigma"))
        from noisereg.training.loop import sigma_at

        return float(sigma_at(self.spec, max(int(entry.get("epoch", 0)) - 1, 0)))

    def grad_evals_per_step(self) -> int | None:
        if self.record is not None and "grad_evals_per_step" in self.record:
            return self.record["grad_evals_per_step"]
        if self.spec is None:
            return None
        from noisereg.training.settings import grad_evals_per_step

        return grad_evals_per_step(self.spec)


def scalars(info: RunInfo, entry: dict[str, Any]) -> dict[str, float]:
    """The values logged at one evaluation: every numeric metric of the history ``entry`` (not
    ``step`` and ``epoch``) under its results.json name, then ``sigma`` and ``grad_evals`` (unless
    the entry has its own)."""
    out = {k: v for k, v in ((k, _number(v)) for k, v in entry.items() if k not in ("step", "epoch"))
           if v is not None}
    sigma, per_step = info.sigma(entry), info.grad_evals_per_step()
    if sigma is not None:
        out.setdefault("sigma", sigma)
    if per_step is not None:
        out.setdefault("grad_evals", float(per_step * entry["step"]))
    return out


def final_scalars(record: dict[str, Any]) -> dict[str, float]:
    """The numeric values of a record's ``final``."""
    return {k: v for k, v in ((k, _number(v)) for k, v in record.get("final", {}).items()) if v is not None}


def same(a: float, b: float | None) -> bool:
    """``a == b``, NaN equal to NaN."""
    return b is not None and (a == b or (math.isnan(a) and math.isnan(b)))


def settings(results: dict, info: RunInfo) -> dict[str, str]:
    """A run's settings as text: ``experiment``, ``preset``, ``id``, ``variant``, ``method``, ``sigma``,
    ``seed``, every setting of the sweep by its flat ``--set`` name, and the run's own parameters as
    ``params.NAME``."""
    out = {"experiment": results["experiment"], "preset": results["preset"], "id": info.id, "variant": info.variant,
           **{k: info.value(k) for k in ("method", "sigma", "seed")}, **results.get("config", {}),
           **{f"params.{k}": v for k, v in info.params.items()}}
    return {k: setting_text(v) for k, v in out.items()}


class Tracking:
    """The sweep's backends, driven by :func:`noisereg.sweep.run_experiment`.

    Args:
        log_to: backend names (:data:`BACKENDS`). out: the sweep's ``--out``.
        runs: the sweep's runs (:class:`~noisereg.sweep.experiment.Run` or ``Job``), in order.
        state: results.json's ``"tracking"`` from an earlier session (``{}``: none).
        tracking_uri: MLflow's store (default: ``$MLFLOW_TRACKING_URI``, else ``sqlite:///OUT/mlflow.db``).

    Raises:
        UserError: an unknown backend name. MissingExtraError: a backend's extra is not installed.
    """

    def __init__(self, log_to: Iterable[str], out: str | Path, runs: Sequence[Any] = (), state: dict | None = None,
                 tracking_uri: str | None = None):
        names = check_log_to(log_to)
        require_backends(names)
        state = state or {}
        self.earlier = dict(state)   # kept in results.json for the backends this session does not use
        self.infos = {r.id: RunInfo(r.id, r.variant, dict(r.params), getattr(r, "spec", None)) for r in runs}
        self.backends = []
        for name in names:
            if name == "tensorboard":
                from noisereg.tracking.tensorboard_log import TensorBoardLog

                self.backends.append(TensorBoardLog(Path(out), state.get(name)))
            else:
                from noisereg.tracking.mlflow_log import MlflowLog

                self.backends.append(MlflowLog(Path(out), state.get(name), tracking_uri))
        self.results: dict = {}

    def start(self, results: dict) -> bool:
        """Open every backend for the sweep ``results`` (its settings and the runs done so far), put
        their state into ``results["tracking"]``, and log the finished runs not logged yet. True when
        the state has changed in a way that must be saved before training (new MLflow runs)."""
        self.results = results
        changed = False
        for b in self.backends:
            changed |= b.open(results, list(self.infos))
        results["tracking"] = {**self.earlier, **{b.name: b.state for b in self.backends}}
        for record in results["runs"]:
            info = self.infos.setdefault(record["id"], RunInfo(record["id"], record.get("variant", ""),
                                                               dict(record.get("params", {}))))
            info.record = record
            for b in self.backends:
                if record["id"] not in b.state["logged"]:
                    b.end(info, record)
        return changed

    def add(self, runs: Sequence[Any]) -> None:
        """Runs known only once the sweep has begun (a two-stage sweep's confirmation runs)."""
        for r in runs:
            self.infos.setdefault(r.id, RunInfo(r.id, r.variant, dict(r.params), getattr(r, "spec", None)))

    def evaluated(self, run_id: str, history: list[dict[str, Any]]) -> None:
        """Log the entries of ``history`` not logged yet in this session (live, after each evaluation)."""
        for b in self.backends:
            b.log(self.infos[run_id], history)

    def finished(self, run_id: str, outcome: dict[str, Any]) -> None:
        """A run's outcome arrived: ``{"record": {...}}`` (its history's rest and final values are
        logged, the run closed) or a failure (the run closed as failed)."""
        info = self.infos[run_id]
        for b in self.backends:
            if "record" in outcome:
                info.record = outcome["record"]
                b.end(info, outcome["record"])
            else:
                b.fail(info, outcome.get("error", "failed"))

    def close(self) -> None:
        for b in self.backends:
            b.close()

    def __enter__(self) -> Tracking:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Backend:
    """What the backends share: which entries of a run's history this session has written."""

    name = ""

    def __init__(self, state: dict | None):
        self.state: dict[str, Any] = dict(state or {})
        self.state["logged"] = list(self.state.get("logged", []))
        self.written: dict[str, int] = {}   # run id -> entries of its history written in this session
        self.results: dict = {}
        self._clock = 0

    def now(self) -> int:
        """Milliseconds since the epoch, strictly increasing from call to call."""
        self._clock = max(self._clock + 1, int(time.time() * 1000))
        return self._clock

    def open(self, results: dict, run_ids: list[str]) -> bool:
        self.results = results
        return False

    def log(self, info: RunInfo, history: list[dict[str, Any]]) -> None:
        if not history:
            return
        if info.id not in self.written:
            self.written[info.id] = 0
            self.begin(info, history)
        for entry in history[self.written[info.id]:]:
            self.write(info, entry)
        self.written[info.id] = len(history)

    def end(self, info: RunInfo, record: dict[str, Any]) -> None:
        self.log(info, record["history"])
        if record["history"]:
            self.finish(info, record)
        self.written.pop(info.id, None)
        if info.id not in self.state["logged"]:
            self.state["logged"].append(info.id)

    def begin(self, info: RunInfo, history: list[dict[str, Any]]) -> None: ...

    def write(self, info: RunInfo, entry: dict[str, Any]) -> None: ...

    def finish(self, info: RunInfo, record: dict[str, Any]) -> None: ...

    def fail(self, info: RunInfo, error: str) -> None:
        self.written.pop(info.id, None)

    def close(self) -> None: ...


# ----------------------------------------------------------------------------- after the report
def publish(out: str | Path, results: dict) -> str | None:
    """Attach ``out``'s REPORT.md, results.json and figures to the sweep's MLflow parent run and end it
    (``FAILED`` when runs failed); the parent run's id, or None when the sweep was not logged to MLflow."""
    state = results.get("tracking", {}).get("mlflow")
    if not state:
        return None
    from noisereg.tracking.mlflow_log import end_parent

    return end_parent(state, Path(out), failed=bool(results.get("failed")))


def where(out: str | Path, results: dict, log_to: Iterable[str] = BACKENDS) -> str:
    """Where a sweep's logs went, one line per backend of ``log_to`` (printed by ``noisereg run``)."""
    lines, tracking = [], {k: v for k, v in results.get("tracking", {}).items() if k in log_to}
    if "tensorboard" in tracking:
        lines.append(f"TensorBoard: tensorboard --logdir {Path(out) / 'tensorboard'}")
    if "mlflow" in tracking:
        uri = tracking["mlflow"]["tracking_uri"]
        lines.append(f"MLflow: parent run {tracking['mlflow']['parent_run_id']} in {uri}"
                     + (f" (mlflow ui --backend-store-uri {uri})" if uri.startswith("sqlite:") else ""))
    return "\n".join(lines)
