"""Deprecated: moved to :mod:`noisereg.plotting.style` (this path works, with a DeprecationWarning, for one release)."""

from noisereg._moved import moved

__getattr__ = moved(__name__, "noisereg.plotting.style")
