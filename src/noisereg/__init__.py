"""noisereg: explicit regularization by weight-noise injection (Orvieto et al., AISTATS 2023).

``import noisereg as nr``; the core is :class:`NoiseInjector`.
"""

from noisereg import closed_form
from noisereg._version import __version__ as __version__
from noisereg.curvature import ggn_trace, hessian_trace, sampled_ggn_trace
from noisereg.injection import NoiseInjector
from noisereg.layers import resolve_layers
from noisereg.optim import SAM, NoisyOptimizer
from noisereg.pac_bayes import pac_bayes_bound, sharpness
from noisereg.pac_bayes_train import PacBayesObjective
from noisereg.schedules import sigma_schedule
from noisereg.smoothing import effective_risk, risk, smoothed_risk

__all__ = ["SAM", "NoiseInjector", "NoisyOptimizer", "PacBayesObjective", "closed_form", "effective_risk", "ggn_trace",
           "hessian_trace", "pac_bayes_bound", "resolve_layers", "risk", "sampled_ggn_trace", "sharpness",
           "sigma_schedule", "smoothed_risk"]
