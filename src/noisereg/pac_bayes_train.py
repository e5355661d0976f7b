r"""PAC-Bayes training: a Gaussian posterior trained by minimising a published PAC-Bayes bound, then certified.

Noise injection already minimises :math:`\mathbb E_\varepsilon L(w + \sigma\varepsilon)`, the empirical Gibbs
risk of :math:`Q = N(w, \sigma^2)`. Adding the KL to a prior makes it a PAC-Bayes bound, and minimising the bound
over the posterior's mean *and* stds trains a network with a certificate that is not vacuous
(docs/THEORY.md §10). The posterior is :math:`Q = N(w, \operatorname{diag}\sigma^2)` with one std per layer
(:func:`noisereg.resolve_layers`), :math:`\sigma_l = e^{\rho_l}` (positive by construction, ρ trained); the prior
:math:`P = N(w_0, \sigma_p^2 I)`. Each step draws one ε ~ N(0, I) through the noise engine
(:meth:`noisereg.NoiseInjector.draw` with σ = 1 and full noise, the stream that training with noise injection
uses) and evaluates the network at :math:`w + \sigma_l\varepsilon` (reparametrisation: the gradient reaches w and
ρ). The loss is the cross-entropy bounded to [0, 1],

.. math::

    \tilde\ell(x, y) = \frac{-\ln\max(p_y(x), p_{\min})}{\ln(1/p_{\min})},

and the objective is Pérez-Ortiz et al.'s (2021) :math:`f_{\rm quad}` (or :math:`f_{\rm classic}`), with
:math:`B = [\mathrm{KL}(Q\|P) + \ln(2\sqrt n/\delta)]/(2n)`:

.. math::

    f_{\rm quad} = \Big(\sqrt{\hat L + B} + \sqrt B\Big)^2, \qquad f_{\rm classic} = \hat L + \sqrt B.

.. note::
    Why not :meth:`~noisereg.NoiseInjector.perturb`: it adds noise of a fixed σ in place under ``no_grad``, so no
    gradient reaches σ. The injector's engine still draws ε (one ``normal_`` per step, seeded, checkpointable);
    the objective scales it by the learned :math:`\sigma_l` outside the engine.

References:
    M. Pérez-Ortiz, O. Rivasplata, J. Shawe-Taylor, Cs. Szepesvári. Tighter Risk Certificates for Neural
    Networks. JMLR 22(227), 2021. https://jmlr.org/papers/v22/20-879.html

    G. K. Dziugaite, D. M. Roy. Computing Nonvacuous Generalization Bounds for Deep (Stochastic) Neural Networks
    with Many More Parameters than Training Data. UAI 2017. https://arxiv.org/abs/1703.11008
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from noisereg.injection import NoiseInjector
from noisereg.noise import check_choice
from noisereg.pac_bayes import certificate, gaussian_kl, monte_carlo_generator

OBJECTIVES = ("quad", "classic")


def bounded_cross_entropy(logits: torch.Tensor, y: torch.Tensor, p_min: float = 1e-4) -> torch.Tensor:
    r"""Mean of :math:`-\ln\max(p_y, p_{\min}) / \ln(1/p_{\min})` over the batch: the cross-entropy clamped to
    :math:`\ln(1/p_{\min})` and rescaled to [0, 1] (a bounded loss, as the bound needs).

    Example:
        >>> float(bounded_cross_entropy(torch.tensor([[0.0, -100.0]]), torch.tensor([1])))
        1.0
    """
    if not 0 < p_min < 1:
        raise ValueError(f"p_min must be in (0, 1), got {p_min!r}")
    logp = torch.log_softmax(logits, dim=1).gather(1, y[:, None]).squeeze(1)
    scale = math.log(1 / p_min)
    return (-logp.clamp(min=-scale)).mean() / scale


def bound_objective(empirical: torch.Tensor, kl: torch.Tensor, n: int, delta: float, kind: str = "quad") -> torch.Tensor:
    r""":math:`f_{\rm quad}` or :math:`f_{\rm classic}` of the module docstring from the empirical bounded loss,
    KL(Q‖P), n and δ (differentiable in the first two).

    Example:
        >>> round(float(bound_objective(torch.tensor(0.2), torch.tensor(100.0), 2048, 0.025)), 4)
        0.4075
    """
    check_choice("kind", kind, OBJECTIVES)
    b = (kl + math.log(2 * math.sqrt(n) / delta)) / (2 * n)
    if kind == "classic":
        return empirical + b.sqrt()
    return ((empirical + b).sqrt() + b.sqrt()) ** 2


def layer_kl(weights: Sequence[torch.Tensor], prior_weights: Sequence[torch.Tensor], sigmas: torch.Tensor,
             prior_sigma: float) -> torch.Tensor:
    r"""KL(N(w, diag σ²) ‖ N(w₀, σ_p² I)) with one σ per layer (differentiable in w and σ):

    .. math::

        \mathrm{KL} = \tfrac12\sum_l \Big[d_l\frac{\sigma_l^2}{\sigma_p^2} + \frac{\|w_l - w_{0,l}\|^2}{\sigma_p^2}
        - d_l + d_l\ln\frac{\sigma_p^2}{\sigma_l^2}\Big],

    each layer ``weights[l]`` a flat tensor (its parameters concatenated), :func:`noisereg.pac_bayes.gaussian_kl`
    summed over the layers (tested equal).
    """
    total = sigmas.new_zeros(())
    for w, w0, s in zip(weights, prior_weights, sigmas):
        d = w.numel()
        r = (s / prior_sigma) ** 2
        total = total + 0.5 * (d * r + (w - w0).pow(2).sum() / prior_sigma**2 - d - d * torch.log(r))
    return total


class PacBayesObjective:
    r"""A PAC-Bayes bound to minimise over the posterior N(w, diag σ²) of ``model`` (see the module docstring).

    ``obj(x, y)`` draws one ε, evaluates the network at :math:`w + \sigma_l\varepsilon` and returns the bound
    objective (a scalar tensor; its parts after the call in ``obj.last``: ``empirical``, ``kl``, ``objective``).
    Train ``obj.parameters()`` (the model's parameters and ρ) with any optimizer.

    Args:
        model: the classifier; its trainable parameters are the posterior mean w.
        prior: a module of the same structure holding w₀ (the initialisation, or a network trained on data the
            certificate will not use); None: w₀ = the model's weights now (its initialisation, before training).
        prior_sigma: σ_p > 0. n: the size of the data the bound will be computed on (the certificate's data).
        delta: δ of the training objective (0 < δ < 1; default 0.025, Pérez-Ortiz et al.'s).
        objective: ``"quad"`` (default) or ``"classic"``.
        p_min: the bounded loss's floor on the probability of the true class (default 1e-4).
        layers: how parameters group into layers with one σ each (see :func:`noisereg.resolve_layers`).
        sigma_init: each σ_l at the start (default σ_p).
        seed, generator: the noise stream of the injector that draws ε (see :class:`noisereg.NoiseInjector`).

    Raises:
        ValueError: σ_p, σ_init, n, δ or p_min out of range, an unknown objective, or a prior of another
            structure.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        >>> obj = PacBayesObjective(net, prior_sigma=0.05, n=100, seed=0)
        >>> loss = obj(torch.randn(10, 4), torch.randint(0, 3, (10,)))
        >>> loss.backward(); obj.rho.grad.shape
        torch.Size([2])
    """

    def __init__(self, model: nn.Module, prior: nn.Module | None = None, *, prior_sigma: float, n: int,
                 delta: float = 0.025, objective: str = "quad", p_min: float = 1e-4, layers: Any = "module",
                 sigma_init: float | None = None, seed: int | None = None,
                 generator: torch.Generator | None = None) -> None:
        if not (prior_sigma > 0 and math.isfinite(prior_sigma)):
            raise ValueError(f"prior_sigma must be a finite number > 0, got {prior_sigma!r}")
        sigma_init = prior_sigma if sigma_init is None else sigma_init
        if not (sigma_init > 0 and math.isfinite(sigma_init)):
            raise ValueError(f"sigma_init must be a finite number > 0, got {sigma_init!r}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be an integer >= 1, got {n!r}")
        if not 0 < delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {delta!r}")
        if not 0 < p_min < 1:
            raise ValueError(f"p_min must be in (0, 1), got {p_min!r}")
        self.model, self.prior_sigma, self.n, self.delta, self.p_min = model, float(prior_sigma), n, delta, p_min
        self.objective = check_choice("objective", objective, OBJECTIVES)
        self.layers = layers
        self.injector = NoiseInjector(model, 1.0, mode="full", layers=layers, seed=seed, generator=generator)
        law = self.injector.law
        self._names = {id(p): k for k, p in model.named_parameters()}
        self._layer_of = {id(p): j for j, (_, ps) in enumerate(law.layers) for p in ps}
        self._zeros = [torch.zeros_like(p) for p in law.params]
        own = [p.detach().clone() for p in law.params]
        if prior is None:
            self.prior_weights = own
        else:
            mine = dict(model.named_parameters())
            theirs = dict(prior.named_parameters())
            if set(theirs) != set(mine) or any(theirs[k].shape != mine[k].shape for k in mine):
                raise ValueError("prior must be a module of the model's structure (the same parameter names and "
                                 "shapes), e.g. a copy of the network trained on the prior's data")
            self.prior_weights = [theirs[self._names[id(p)]].detach().clone().to(p) for p in law.params]
        dev = law.params[0].device
        self.rho = nn.Parameter(torch.full((law.num_layers,), math.log(sigma_init), dtype=law.params[0].dtype, device=dev))
        self.last: dict[str, torch.Tensor] = {}

    def parameters(self) -> list[torch.Tensor]:
        """The model's trainable parameters (w) and ρ, for the optimizer."""
        return [p for p in self.model.parameters() if p.requires_grad] + [self.rho]

    def sigmas(self) -> torch.Tensor:
        """σ_l = exp(ρ_l), one per layer (differentiable)."""
        return self.rho.exp()

    def _by_layer(self, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """``tensors`` (one per parameter, in the law's order) flattened and concatenated layer by layer."""
        groups: list[list[torch.Tensor]] = [[] for _ in range(self.injector.law.num_layers)]
        for p, t in zip(self.injector.law.params, tensors):
            groups[self._layer_of[id(p)]].append(t.reshape(-1))
        return [torch.cat(g) for g in groups]

    def kl(self) -> torch.Tensor:
        """KL(Q‖P) (:func:`layer_kl`), differentiable in w and ρ."""
        return layer_kl(self._by_layer(self.injector.law.params), self._by_layer(self.prior_weights),
                        self.sigmas(), self.prior_sigma)

    def draw(self) -> list[torch.Tensor]:
        """One ε ~ N(0, I) per parameter (the law's order) from the injector's stream: its ``draw`` at σ = 1 on
        zero weights (0 + ε is ε exactly)."""
        eps = self.injector.draw(self._zeros)
        return [eps[id(p)] for p in self.injector.law.params]

    def noisy_forward(self, x: torch.Tensor, eps: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """The network's output at w + σ_l ε (``eps``: one tensor per parameter in the law's order; default: one
        new draw)."""
        eps = self.draw() if eps is None else eps
        s = self.sigmas()
        noisy = {self._names[id(p)]: p + s[self._layer_of[id(p)]] * e for p, e in zip(self.injector.law.params, eps)}
        return functional_call(self.model, noisy, (x,), strict=False)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, eps: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """The bound objective on the batch (x, y) for one draw ε (``eps`` given: that one, for tests)."""
        emp = bounded_cross_entropy(self.noisy_forward(x, eps), y, self.p_min)
        kl = self.kl()
        out = bound_objective(emp, kl, self.n, self.delta, self.objective)
        self.last = {"empirical": emp.detach(), "kl": kl.detach(), "objective": out.detach()}
        return out

    @torch.no_grad()
    def gibbs_error(self, x: torch.Tensor, y: torch.Tensor, samples: int, seed: int,
                    chunk: int = 4096) -> tuple[float, float]:
        """Monte-Carlo 0-1 error of the stochastic network Q on (x, y): ``samples`` weight draws, each scored on
        every point, drawn through a unit-σ injector of the same layers on the generator
        :func:`noisereg.pac_bayes.monte_carlo_generator` (``seed``). Returns (mean, standard error over draws)."""
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ValueError(f"samples must be an integer >= 1, got {samples!r}")
        gen = monte_carlo_generator(seed)
        if self._zeros[0].device.type != "cpu":
            gen = torch.Generator(device=self._zeros[0].device).manual_seed(gen.initial_seed())
        engine = NoiseInjector(self.model, 1.0, mode="full", layers=self.layers, generator=gen)
        params = self.injector.law.params
        s = self.sigmas()
        errors = torch.empty(samples, dtype=torch.float64)
        for k in range(samples):
            eps = engine.draw(self._zeros)
            noisy = {self._names[id(p)]: p + s[self._layer_of[id(p)]] * eps[id(p)] for p in params}
            wrong = 0
            for i in range(0, len(x), chunk):
                out = functional_call(self.model, noisy, (x[i:i + chunk],), strict=False)
                wrong += int((out.argmax(1) != y[i:i + chunk]).sum())
            errors[k] = wrong / len(x)
        return float(errors.mean()), float(errors.std() / math.sqrt(samples)) if samples > 1 else 0.0

    def certificate(self, x: torch.Tensor, y: torch.Tensor, *, indices: Sequence[int],
                    prior_indices: Sequence[int] = (), samples: int = 10000, seed: int = 0, delta: float = 0.05,
                    grid_size: int = 1, candidates: int = 1, prior_data: dict | None = None) -> dict[str, Any]:
        """The PAC-Bayes certificate of Q on (x, y) (:func:`noisereg.pac_bayes.certificate`; KL in float64).

        Args:
            x, y: the certificate's data, which must be ``indices`` of the pool the prior's data came from.
            indices: the positions of (x, y) in that pool. prior_indices: the positions that trained the prior
                (empty for a data-independent prior).
            samples, seed: the Monte-Carlo weight draws (:meth:`gibbs_error`). delta: δ of the certificate.
            grid_size: the prior stds searched (G); candidates: the posteriors whose Monte-Carlo estimates are
                compared to keep the best (C). prior_data: stored as is beside the bound (which data trained the
                prior).

        Returns:
            :func:`noisereg.pac_bayes_bound`'s keys (``risk_bound``, ``empirical_risk``, ``empirical_risk_bound``,
            ``kl``, ``n``, ``samples``, ``delta``, ``prior_sigma``, ``grid_size``, ``candidates``, ``sigma`` (one
            per layer), ``empirical_risk_se``) plus ``prior_data`` and ``data`` (the certificate's indices).

        Raises:
            ValueError: the certificate's data overlaps the prior's, or ``indices`` does not match x.
        """
        idx = [int(i) for i in indices]
        if len(idx) != len(x):
            raise ValueError(f"indices must give one position per certified point: {len(idx)} indices for {len(x)} "
                             "points")
        seen = set(idx) & {int(i) for i in prior_indices}
        if seen:
            raise ValueError(f"the certificate's data includes {len(seen)} points the prior was trained on (e.g. "
                             f"index {min(seen)}): certify only on data the prior never saw")
        emp, se = self.gibbs_error(x, y, samples, seed)
        law = self.injector.law
        kl = sum(gaussian_kl(w, w0, float(s), self.prior_sigma) for w, w0, s in
                 zip(self._by_layer([p.detach() for p in law.params]), self._by_layer(self.prior_weights),
                     self.sigmas().detach().double()))
        if not math.isfinite(kl):
            raise ValueError(f"KL(Q||P) must be finite, got {kl!r}: the posterior diverged (lower the learning rate)")
        n = len(x)
        cert = certificate(emp, kl, n, samples, delta, grid_size, candidates)
        return {"risk_bound": cert["risk_bound"], "empirical_risk": emp, "empirical_risk_bound":
                cert["empirical_risk_bound"], "kl": kl, "n": n, "samples": samples, "delta": delta,
                "prior_sigma": self.prior_sigma, "grid_size": grid_size, "candidates": candidates,
                "sigma": [float(s) for s in self.sigmas().detach()], "empirical_risk_se": se,
                "prior_data": prior_data if prior_data is not None else
                {"kind": "data-independent" if not len(prior_indices) else "data-dependent",
                 "indices": [int(i) for i in prior_indices]},
                "data": {"indices": idx}}
