"""Experiments of the paper, by name: Section 5 (fig2-fig6) and the theory ones.

``EXPERIMENTS[name]`` is an instance. Every module of this package is imported here, and each
:class:`Experiment` subclass with a ``name`` registers itself, so adding an experiment is adding
one module. The registry is ordered by ``Experiment.order``, then by name.
"""

import importlib
import pkgutil

from noisereg.experiments.base import EXPERIMENTS, Experiment, Job, Run, parse_overrides, run_experiment

for _module in pkgutil.iter_modules(__path__):  # helper modules (base, stats, ...) register nothing
    importlib.import_module(f"{__name__}.{_module.name}")

for _name in sorted(EXPERIMENTS, key=lambda n: (EXPERIMENTS[n].order, n)):
    EXPERIMENTS[_name] = EXPERIMENTS.pop(_name)

__all__ = ["EXPERIMENTS", "Experiment", "Job", "Run", "parse_overrides", "run_experiment"]
