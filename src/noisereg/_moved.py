"""Old module paths that moved after 0.1.0: a module-level ``__getattr__`` that re-exports, with a warning.

A module that moved keeps a stub at its old path for one release: ``__getattr__ = moved(__name__,
"new.path")``. Reading a name there returns the object of the new module (the same object, so
``isinstance`` and identity hold) and warns with a ``DeprecationWarning`` that names the new path.
"""

from __future__ import annotations

import importlib
import warnings


def moved(old: str, *new: str):
    """A module ``__getattr__`` for ``old`` that finds each name in the first of ``new`` that has it."""

    def __getattr__(name: str):
        if name.startswith("__"):
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        for target in new:
            module = importlib.import_module(target)
            if hasattr(module, name):
                warnings.warn(f"{old}.{name} has moved to {target}.{name}; {old} goes away in the next release",
                              DeprecationWarning, stacklevel=2)
                return getattr(module, name)
        raise AttributeError(f"module {old!r} has no attribute {name!r} (it moved to {' / '.join(new)})")

    return __getattr__
