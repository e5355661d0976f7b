"""``noisereg report DIR --log-to mlflow|tensorboard``: finished sweeps logged from their results.json alone.

Each sweep (``DIR/results.json`` or ``DIR/*/results.json``) becomes a new MLflow parent run with one
child per run, and/or TensorBoard folders beside its results.json; the runs' training settings are
rebuilt from the preset and config, so ``sigma`` follows the run's schedule as in a live sweep.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path

from noisereg.errors import UserError
from noisereg.tracking import RunInfo, Tracking, check_log_to, publish, require_backends


def upload(directory: str | Path, log_to: Iterable[str], tracking_uri: str | None = None) -> list[str]:
    """Log finished sweeps (``DIR/results.json`` or ``DIR/*/results.json``, as ``noisereg report``
    reads them) to the backends: each sweep as a new MLflow parent run (in ``$MLFLOW_TRACKING_URI``,
    else ``sqlite:///DIR/mlflow.db``) and/or into ``tensorboard/`` beside its results.json. The
    results.json files are not changed. Returns one line per sweep and backend, saying where it went.

    Raises:
        UserError: an unknown backend, or no results.json there. MissingExtraError: a missing extra.
    """
    names = check_log_to(log_to)
    require_backends(names)
    directory = Path(directory)
    files = ([directory / "results.json"] if (directory / "results.json").is_file()
             else sorted(directory.glob("*/results.json")))
    if not files:
        raise UserError(f"no results.json in {directory} or its subdirectories; pass the --out directory of a run")
    from noisereg.tracking.mlflow_log import default_uri

    uri = tracking_uri or default_uri(directory)
    lines = []
    for f in files:
        results = json.loads(f.read_text())
        results = {**results, "tracking": {}}   # a new parent run; the file keeps its own ids
        with Tracking(names, f.parent, _runs_of(results), tracking_uri=uri) as tr:
            tr.start(results)
        for name in names:
            if name == "mlflow":
                parent = publish(f.parent, results)
                lines.append(f"{results['experiment']}: MLflow parent run {parent} in {uri}")
            else:
                lines.append(f"{results['experiment']}: TensorBoard logs in {f.parent / 'tensorboard'}")
    return lines


def _runs_of(results: dict) -> list[RunInfo]:
    """The runs of a results.json with their training settings, rebuilt from its preset and config
    (for the scheduled σ); a run whose rebuilt settings disagree with its record gets none."""
    from noisereg.sweep import EXPERIMENTS, Run

    records = {r["id"]: r for r in results.get("runs", [])}
    infos = [RunInfo(r["id"], r.get("variant", ""), dict(r.get("params", {}))) for r in records.values()]
    exp = EXPERIMENTS.get(results.get("experiment"))
    if exp is None:
        return infos
    fields = {f.name for f in dataclasses.fields(exp.Config)}
    try:
        cfg = exp.config(results["preset"], {k: tuple(v) if isinstance(v, list) else v
                                             for k, v in results.get("config", {}).items() if k in fields})
        specs = {r.id: r.spec for r in exp.runs(cfg) if isinstance(r, Run)}
    except (UserError, TypeError, ValueError, KeyError):
        return infos
    for info in infos:
        spec, rec = specs.get(info.id), records[info.id]
        if spec is not None and (spec.method, spec.sigma, spec.seed) == (rec.get("method"), rec.get("sigma"),
                                                                         rec.get("seed")):
            info.spec = spec
    return infos
