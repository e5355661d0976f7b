"""The experiments of the paper, one module each: Section 5 (fig2-fig6) and the theory ones.

Importing this package imports every experiment module in it; each :class:`~noisereg.sweep.Experiment`
subclass with a ``name`` registers itself in :data:`noisereg.sweep.EXPERIMENTS`, so adding an
experiment is adding one module (or, outside the package, an entry point: docs/custom_experiment.md).
``classify`` is the shared image-classification base. The machinery that runs experiments lives in
:mod:`noisereg.sweep`; the names it used to export from here still work for one release, with a
``DeprecationWarning``.
"""

import importlib
import pkgutil

from noisereg._moved import moved

_MOVED = {"base", "executors", "memory", "panels", "plotting", "show", "stats"}
"""Stubs of modules that moved (to noisereg.sweep, noisereg.plotting, noisereg.verdicts): no experiments."""

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _MOVED:
        importlib.import_module(f"{__name__}.{_module.name}")

__getattr__ = moved(__name__, "noisereg.sweep")
