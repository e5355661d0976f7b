"""noisereg: explicit regularization by weight-noise injection (Orvieto et al., AISTATS 2023).

``import noisereg as nr``; the core is :class:`NoiseInjector`.
"""

from noisereg.injection import NoiseInjector
from noisereg.layers import resolve_layers

__all__ = ["NoiseInjector", "resolve_layers"]
__version__ = "0.1.0"
