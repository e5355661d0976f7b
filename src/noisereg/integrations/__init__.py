"""Noise injection inside training frameworks (optional extras, imported on demand).

- :mod:`noisereg.integrations.lightning`: ``NoiseInjection``, a ``lightning.Callback``
  (``pip install "noisereg[lightning]"``).
- :mod:`noisereg.integrations.transformers`: ``NoiseInjectionCallback`` for the Hugging Face
  ``transformers.Trainer`` (``pip install "noisereg[transformers]"``).

Importing this package imports no framework; importing one of its modules without its extra
raises :class:`MissingExtraError`, whose one-line message names the ``pip install`` to run.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["MissingExtraError", "require"]


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the command that installs it."""


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Import ``module``, or raise :class:`MissingExtraError` naming ``pip install "noisereg[extra]"``.

    Args:
        module: the module to import, e.g. ``"lightning"``.
        extra: the noisereg extra that installs it, e.g. ``"lightning"``.
        feature: what needs it, for the message, e.g. ``"noisereg.integrations.lightning"``.

    Returns:
        The imported module.

    Raises:
        MissingExtraError: ``module``'s package is not installed.
        ModuleNotFoundError: it is installed, but a module it needs is not (the original error).

    Example:
        >>> require("math", "none", "this example").pi > 3
        True
    """
    top = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name is not None and err.name.split(".")[0] != top:
            raise  # the package is there but broken (one of its own dependencies is missing): show that
        raise MissingExtraError(
            f'{feature} needs the "{top}" package, which is not installed: pip install "noisereg[{extra}]"',
            name=top,
        ) from None
