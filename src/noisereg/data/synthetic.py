"""The random sparse linear regression of Fig. 2 (Sec. 5): inputs in R^10, one scalar output.

The paper gives neither n, the sparsity, nor the noise level ("random sparse synthetic regression,
inputs in R^10, scalar output"); the defaults below are our choice and are recorded in the name of
every split. They make a well-posed, low-noise problem whose solution is visibly sparse: n = 100
points for d = 10 unknowns (10 per coordinate, so least squares is unique and near the truth),
k = 3 nonzero weights of size 1 with random signs (clearly apart from zero), and noise 0.1
(signal variance k = 3 against noise variance 0.01).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from noisereg.data.embedded import Split
from noisereg.errors import UserError

# One independent random stream per quantity, so that beta* and the test set do not depend on n,
# and the first n training points are the same for every larger n.
_BETA, _X_TRAIN, _EPS_TRAIN, _X_TEST, _EPS_TEST = range(5)


@dataclass(frozen=True)
class RegressionSplit(Split):
    """A :class:`Split` with float32 targets (n, 1) and the ground truth ``beta`` (d, 1)."""

    beta: torch.Tensor

    @property
    def num_classes(self) -> int:
        """Undefined for regression.

        Raises:
            UserError: always; the targets are real numbers, not class labels.
        """
        raise UserError(f"num_classes is undefined for regression data ({self.name})")


def check_int(name: str, value: Any, low: int) -> int:
    """Return ``value`` as an int; it must be an integer >= ``low``.

    Raises:
        TypeError: ``value`` is not an integer (``bool`` included).
        UserError: ``value < low``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {low}, got {type(value).__name__}")
    if value < low:
        raise UserError(f"{name} must be an integer >= {low}, got {value}")
    return int(value)


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream])


def sparse_regression(n: int = 100, d: int = 10, k: int = 3, noise: float = 0.1,
                      n_test: int = 1000, seed: int = 0) -> RegressionSplit:
    r"""Random k-sparse linear regression data, the synthetic task of Fig. 2 (Sec. 5).

    .. math::

        X_{ij} \sim \mathcal N(0, 1), \qquad
        \beta^*_j = \begin{cases} \pm 1 & j \in S \\ 0 & j \notin S \end{cases}, \qquad
        y = X \beta^* + \text{noise}\cdot\varepsilon, \quad \varepsilon \sim \mathcal N(0, I_n),

    with the support :math:`S \subset \{1..d\}`, :math:`|S| = k`, drawn uniformly and the signs by
    fair coin flips. The test set is drawn the same way (same :math:`\beta^*`, same noise level).
    Draws happen in float64 (numpy); ``X``, ``beta`` and ``noise·ε`` are then cast to float32 and
    ``y = X @ beta + noise·ε`` is computed in float32, so it holds exactly in the stored tensors.
    :math:`\beta^*` and the test set do not depend on ``n``, and the training set for ``n`` is
    the first ``n`` rows of the one for any larger ``n``.

    Args:
        n: training points, integer >= 1 (default 100: ten per input dimension).
        d: input dimension, integer >= 1 (default 10, as in the paper).
        k: nonzero entries of :math:`\beta^*`, integer with 0 <= k <= d (default 3).
        noise: standard deviation of the label noise, real >= 0 (default 0.1).
        n_test: test points, integer >= 1 (default 1000).
        seed: integer >= 0 (default 0); recorded in the result.

    Returns:
        A :class:`RegressionSplit`: ``x_*`` float32 (n, d), ``y_*`` float32 (n, 1), ``beta``
        float32 (d, 1), and the name ``sparse_regression(n=..,d=..,k=..,noise=..,n_test=..,seed=..)``.

    Raises:
        TypeError: an integer argument is not an integer, or ``noise`` is not a real number.
        UserError: an argument is out of its range (see Args).

    Example:
        >>> s = sparse_regression(n=8)
        >>> tuple(s.x_train.shape), tuple(s.y_train.shape), tuple(s.x_test.shape), s.y_train.dtype
        ((8, 10), (8, 1), (1000, 10), torch.float32)
        >>> int((s.beta != 0).sum()), sorted(set(s.beta.abs().flatten().tolist()))
        (3, [0.0, 1.0])
        >>> s.name
        'sparse_regression(n=8,d=10,k=3,noise=0.1,n_test=1000,seed=0)'
    """
    n, d, n_test, seed = (check_int(a, v, lo) for a, v, lo in
                          (("n", n, 1), ("d", d, 1), ("n_test", n_test, 1), ("seed", seed, 0)))
    k = check_int("k", k, 0)
    if k > d:
        raise UserError(f"k must be <= d = {d}, got {k}")
    if isinstance(noise, bool) or not isinstance(noise, numbers.Real):
        raise TypeError(f"noise must be a real number >= 0, got {type(noise).__name__}")
    noise = float(noise)
    if not math.isfinite(noise) or noise < 0:
        raise UserError(f"noise must be a finite real number >= 0, got {noise}")

    rng = _rng(seed, _BETA)
    beta = np.zeros((d, 1))
    beta[rng.choice(d, size=k, replace=False), 0] = rng.choice([-1.0, 1.0], size=k)
    beta_t = torch.from_numpy(beta.astype(np.float32))

    def draw(rows: int, x_stream: int, eps_stream: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(_rng(seed, x_stream).standard_normal((rows, d)).astype(np.float32))
        eps = _rng(seed, eps_stream).standard_normal((rows, 1))
        return x, x @ beta_t + torch.from_numpy((noise * eps).astype(np.float32))

    x_train, y_train = draw(n, _X_TRAIN, _EPS_TRAIN)
    x_test, y_test = draw(n_test, _X_TEST, _EPS_TEST)
    name = f"sparse_regression(n={n},d={d},k={k},noise={noise},n_test={n_test},seed={seed})"
    return RegressionSplit(x_train, y_train, x_test, y_test, name=name, seed=seed, beta=beta_t)
