"""The two stages of a sweep whose claims are confirmed on fresh seeds: selection, then confirmation.

An experiment that confirms (:meth:`~noisereg.sweep.experiment.Experiment.confirms`) lists its
*selection* runs up front (:meth:`~noisereg.sweep.experiment.Experiment.runs`: every σ of a grid over
the selection seeds); :func:`noisereg.sweep.run.run_experiment` runs them, asks the experiment what
they chose (:meth:`~noisereg.sweep.experiment.Experiment.selected`, on validation data, saved as
``results.json["selected"]``), then runs the *confirmation* runs the experiment builds from that choice
(:meth:`~noisereg.sweep.experiment.Experiment.confirm_runs`: the chosen settings over the
confirmation seeds). Every record of such a sweep says its ``"stage"``; the claims are judged on the
confirmation runs alone. A record without ``"stage"`` (results written before the two stages, or by a
preset without confirmation seeds) belongs to one stage that both chose and judged: :func:`view`
counts it as a selection run, and :func:`single_stage` says so.
"""

from __future__ import annotations

SELECTION = "selection"
CONFIRMATION = "confirmation"


def stage_of(record: dict) -> str:
    """A run record's stage: its ``"stage"``, :data:`SELECTION` when it has none (a single-stage sweep)."""
    return record.get("stage", SELECTION)


def view(results: dict, stage: str) -> dict:
    """``results`` with only the runs of ``stage`` (:data:`SELECTION` or :data:`CONFIRMATION`); the other
    fields are shared, not copied."""
    if stage not in (SELECTION, CONFIRMATION):
        raise ValueError(f"stage must be {SELECTION!r} or {CONFIRMATION!r}, got {stage!r}")
    return {**results, "runs": [r for r in results["runs"] if stage_of(r) == stage]}


def has_confirmation(results: dict) -> bool:
    """Whether ``results`` holds confirmation runs."""
    return any(stage_of(r) == CONFIRMATION for r in results["runs"])


def single_stage(results: dict) -> bool:
    """Whether no run of ``results`` carries a stage: σ was chosen and the claims judged on the same seeds."""
    return not any("stage" in r for r in results["runs"])
