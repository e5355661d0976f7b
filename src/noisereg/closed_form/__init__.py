"""Closed-form regularizers and exact smoothed risks of Sections 2-4 of Orvieto et al. (2023).

One module per model family; shapes follow the paper: X (n, d0), W1 (d1, d0), W2 (d2, d1),
Y (n, d2), square loss :math:`\\frac{1}{2n}\\|Y^\\top - \\Phi\\|_F^2`. Every function validates its
arguments and returns a scalar tensor in the inputs' dtype (:func:`lasso_weights` a vector, the
factorization helpers a pair of tensors). Noise conventions: full noise has std σ per entry;
layer-wise noise perturbs one of M layers with std σ√M (``NoiseInjector(convention="paper")``).
The solvers (:func:`weighted_lasso`, :func:`group_lasso_solution`, :func:`nuclear_norm_regression`,
:func:`psd_soft_threshold`, :func:`l1_max_margin`, :func:`l2_max_margin`) return the minimiser
that noisy GD converges to, so it can be computed without training; those built on scikit-learn
or SciPy import them when called (the package itself needs only torch and numpy).

==========================  =============================================  ===============
module                      functions                                      paper
==========================  =============================================  ===============
:mod:`.diagonal`            diagonal_net_penalty, lasso_weights,           Eq. (7), (8)
                            diagonal_net_lasso_objective,
                            diagonal_net_full_noise_risk,
                            weighted_lasso, weighted_lasso_kkt
:mod:`.linear`              linear_net_penalty, linear_net_layer_risk,     Eq. (9), §3.1-2
                            linear_net_full_noise_risk
:mod:`.nuclear`             nuclear_norm_penalty, balanced_factorization,  Eq. (10)
                            nuclear_norm_objective,
                            nuclear_norm_regression, nuclear_norm_kkt
:mod:`.deep_linear`         deep_linear_penalty, deep_linear_layer_risk    Eq. (11)
:mod:`.relu`                relu_net_penalty                               §3.3
:mod:`.group_lasso`         group_lasso_penalty, hadamard_group_penalty,   §2.5
                            balanced_group_factorization,
                            group_lasso_solution
:mod:`.psd`                 psd_trace_penalty, psd_full_noise_risk,        §2.5
                            psd_soft_threshold
:mod:`.max_margin`          l1_max_margin, l2_max_margin                   App. B
==========================  =============================================  ===============
"""

from noisereg.closed_form.deep_linear import deep_linear_layer_risk, deep_linear_penalty
from noisereg.closed_form.diagonal import (
    diagonal_net_full_noise_risk,
    diagonal_net_lasso_objective,
    diagonal_net_penalty,
    lasso_weights,
    weighted_lasso,
    weighted_lasso_kkt,
)
from noisereg.closed_form.group_lasso import (
    balanced_group_factorization,
    group_lasso_penalty,
    group_lasso_solution,
    hadamard_group_penalty,
)
from noisereg.closed_form.linear import (
    linear_net_full_noise_risk,
    linear_net_layer_risk,
    linear_net_penalty,
)
from noisereg.closed_form.max_margin import l1_max_margin, l2_max_margin
from noisereg.closed_form.nuclear import (
    balanced_factorization,
    nuclear_norm_kkt,
    nuclear_norm_objective,
    nuclear_norm_penalty,
    nuclear_norm_regression,
)
from noisereg.closed_form.psd import psd_full_noise_risk, psd_soft_threshold, psd_trace_penalty
from noisereg.closed_form.relu import relu_net_penalty

__all__ = [
    "balanced_factorization",
    "balanced_group_factorization",
    "deep_linear_layer_risk",
    "deep_linear_penalty",
    "diagonal_net_full_noise_risk",
    "diagonal_net_lasso_objective",
    "diagonal_net_penalty",
    "group_lasso_penalty",
    "group_lasso_solution",
    "hadamard_group_penalty",
    "l1_max_margin",
    "l2_max_margin",
    "lasso_weights",
    "linear_net_full_noise_risk",
    "linear_net_layer_risk",
    "linear_net_penalty",
    "nuclear_norm_kkt",
    "nuclear_norm_objective",
    "nuclear_norm_penalty",
    "nuclear_norm_regression",
    "psd_full_noise_risk",
    "psd_soft_threshold",
    "psd_trace_penalty",
    "relu_net_penalty",
    "weighted_lasso",
    "weighted_lasso_kkt",
]
