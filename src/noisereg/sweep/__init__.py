"""Running experiments: what an experiment is, how a sweep of runs executes, resumes and is recorded.

:mod:`~noisereg.sweep.experiment`: :class:`Experiment`, :class:`Run`, :class:`Job`, the registry
:data:`EXPERIMENTS` (built-in experiments and entry points, loaded on first read) and ``--set``
parsing. :mod:`~noisereg.sweep.run`: :func:`run_experiment` (provenance, resume, results.json,
tracking). :mod:`~noisereg.sweep.executors`: sequential, worker processes, Ray.
:mod:`~noisereg.sweep.memory`: the memory check before a sweep. :mod:`~noisereg.sweep.show`: what
``noisereg show`` prints. Nothing here imports an experiment module by name.
"""

from noisereg.sweep.experiment import EXPERIMENTS, Experiment, Job, Run, parse_overrides
from noisereg.sweep.run import run_experiment

__all__ = ["EXPERIMENTS", "Experiment", "Job", "Run", "parse_overrides", "run_experiment"]
