r"""Smoothed risks by Monte Carlo, and the effective risk of Eq. (6).

The objectives noise injection minimises in expectation (docs/THEORY.md §2):

.. math::

    R_\sigma(w) = \mathbb E_\varepsilon\, L(\Phi(w + \sigma\varepsilon)),\qquad
    \tilde R_\sigma(w) = \frac1M\sum_{j=1}^M \mathbb E\, L(\Phi(w_1,\dots,w_j+\sigma\sqrt M E_j,\dots,w_M)),

and their second-order model, Eq. (6):
:math:`R^{\rm eff}_\sigma(w) = R(w) + \tfrac{\sigma^2}{2}\operatorname{tr}(\nabla^2L\,D\Phi D\Phi^\top)`.
Both draw their noise from :class:`noisereg.noise.NoiseLaw`, the same law as the injector.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, vmap

from noisereg.curvature import check_eval_mode, ggn_trace
from noisereg.noise import NoiseLaw
from noisereg.losses import as_predictions, check_loss, check_targets, loss_value, per_sample_loss

_BATCH_ELEMENTS = 1 << 24  # bound on (noise samples in one vmapped pass) × (perturbed entries)


def risk(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str = "square") -> float:
    """The risk R(w) = L(Φ(w)) at the current weights (no gradient)."""
    with torch.no_grad():
        return float(loss_value(loss, model(x), y))


def effective_risk(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str = "square",
                   sigma: float = 0.1, layers="module", convention: str = "paper", *,
                   trace: float | None = None) -> float:
    r"""Eq. (6) of Orvieto et al. (2023): :math:`R(w) + c\,\operatorname{tr}(\nabla^2 L\, D\Phi D\Phi^\top)`.

    .. math::

        c = \frac{\sigma^2}{2}\ \text{(``paper'')},\qquad c = \frac{\sigma^2}{2M}\ \text{(``official'')},

    the coefficient :func:`noisereg.noise.regularizer_coefficient` of the noise that
    ``NoiseInjector(model, sigma, layers=layers, convention=convention)`` injects, in either mode
    (docs/THEORY.md §3-§4). It is the second-order expansion of :math:`R_\sigma` and
    :math:`\tilde R_\sigma` when :math:`D^2\Phi[I] = 0`; the experiments log it as ``reg_loss``.
    It is the paper's law (``scale="absolute"``): under ``scale="filter"`` or ``"element"`` (per-entry
    std σ·m_a) the second-order term is the weighted trace :math:`\tfrac{\sigma^2}{2}\sum_a m_a^2\,
    \mathrm{GGN}_{aa}`, which this function does not compute (:func:`smoothed_risk` estimates that
    law's smoothed risk).

    Args:
        model, x, y, loss: as in :func:`noisereg.ggn_trace`.
        sigma: noise scale σ ≥ 0. layers: how the M layers are formed (``"module"``, ``"tensor"``
            or groups), which matters only under ``"official"``. convention: ``"paper"`` or ``"official"``.
        trace: the GGN trace at the current weights if already computed (skips recomputing it).

    Example:
        >>> lin = torch.nn.Linear(3, 1, bias=False)
        >>> torch.nn.init.zeros_(lin.weight)  # doctest: +ELLIPSIS
        Parameter containing:...
        >>> round(effective_risk(lin, torch.eye(3), torch.zeros(3), sigma=0.5), 6)  # 0 + 0.25/2 · 1
        0.125
    """
    coefficient = NoiseLaw(model, sigma, layers=layers, convention=convention).regularizer_coefficient
    if trace is None:
        trace = ggn_trace(model, x, y, loss)
    return risk(model, x, y, loss) + coefficient * trace


def smoothed_risk(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str = "square",
                  sigma: float = 0.1, mode: str = "full", num_samples: int = 1000,
                  antithetic: bool = True, seed: int = 0, layers="module",
                  convention: str = "paper", scale: str = "absolute", exclude=None) -> tuple[float, float]:
    r"""Monte-Carlo estimate of :math:`R_\sigma` (``mode="full"``) or :math:`\tilde R_\sigma` (``"layer"``).

    The noise is that of ``NoiseInjector(model, sigma, mode=mode, layers=layers,
    convention=convention)``: same layers, same std (σ, or σ√M for one layer, in the paper
    convention). With ``antithetic=True`` (default) samples come in pairs :math:`\pm\varepsilon`
    and the estimate averages pair means, which cancels every odd-order term of the expansion.
    ``mode="layer"`` is stratified: each of the M layers gets ``num_samples / M`` samples and the
    estimate is the mean over layers, exactly as in the definition of :math:`\tilde R_\sigma`.
    Evaluations are batched with ``torch.func.vmap`` over noise samples.

    Args:
        model, x, y, loss: as in :func:`noisereg.ggn_trace`; the model must be vmappable (standard
            layers are) and in eval mode if it has BatchNorm.
        sigma: noise scale σ ≥ 0. mode: ``"full"`` or ``"layer"``.
        num_samples: function evaluations in total (≥ 2 per stratum; even when antithetic).
        antithetic: use ±ε pairs. seed: seed of the noise (CPU generator, moved to the device).
        layers, convention, scale, exclude: as in :class:`noisereg.NoiseInjector`; with
            ``scale="filter"`` or ``"element"`` the estimate is of the smoothed risk under that law
            (per-entry std σ·m, m from the clean weights), whose second-order term is a weighted GGN
            trace, not :func:`effective_risk`.

    Returns:
        ``(estimate, standard error)``.

    Raises:
        ValueError: an unknown loss, a model in training mode with Dropout or batch-statistics BatchNorm
            ("call model.eval() first"), targets that do not fit the loss, or a ``num_samples`` that gives
            no even number >= 2 of samples per stratum.

    Example:
        >>> lin = torch.nn.Linear(3, 1, bias=False)
        >>> torch.nn.init.zeros_(lin.weight)  # doctest: +ELLIPSIS
        Parameter containing:...
        >>> est, se = smoothed_risk(lin, torch.eye(3), torch.zeros(3), sigma=0.5, num_samples=20000)
        >>> abs(est - 0.125) < 4 * se  # linear model: R_σ = R + σ²/2·tr(GGN) exactly
        True
    """
    check_loss(loss)
    check_eval_mode(model)
    law = NoiseLaw(model, sigma, mode=mode, layers=layers, convention=convention, scale=scale, exclude=exclude)
    strata = [law.perturbed_params(j) for j in range(law.num_layers)] if mode == "layer" else [law.params]
    per_stratum = num_samples // len(strata)
    if per_stratum < 2 or (antithetic and per_stratum % 2):
        raise ValueError(
            f"num_samples must give an even number >= 2 of samples per stratum ({len(strata)} strata"
            f"{', antithetic pairs' if antithetic else ''}), got {num_samples}"
        )
    with torch.no_grad():
        y_checked = check_targets(loss, as_predictions(model(x)), y)
    names = {id(p): k for k, p in model.named_parameters()}
    params = {k: p.detach() for k, p in model.named_parameters()}
    buffers = dict(model.named_buffers())
    gen = torch.Generator().manual_seed(seed)

    def risks(noise: dict[str, torch.Tensor]) -> torch.Tensor:  # noise: name -> (B, *shape)
        def one(delta):
            out = functional_call(model, ({**params, **{k: params[k] + d for k, d in delta.items()}}, buffers), (x,))
            return per_sample_loss(loss, as_predictions(out), y_checked).mean()
        return vmap(one)(noise)

    means, variances = [], []
    for stratum in strata:
        keys = [names[id(p)] for p in stratum]
        size = sum(params[k].numel() for k in keys)
        batch = max(2, min(per_stratum, _BATCH_ELEMENTS // max(1, size)) // 2 * 2)
        values = []
        for start in range(0, per_stratum, batch):
            b = min(batch, per_stratum - start)
            half = b // 2 if antithetic else b
            eps = dict(zip(keys, law.sample(stratum, gen, (half,))))
            if antithetic:
                r_plus, r_minus = risks(eps), risks({k: -e for k, e in eps.items()})
                values.append(((r_plus + r_minus) / 2).double().cpu())
            else:
                values.append(risks(eps).double().cpu())
        v = torch.cat(values)
        means.append(v.mean())
        variances.append(v.var() / len(v))
    est = torch.stack(means).mean()
    se = torch.stack(variances).sum().sqrt() / len(strata)
    return est.item(), se.item()
