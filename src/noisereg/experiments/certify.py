r"""Certify: PAC-Bayes training through the noise engine, with certificates that are not vacuous.

Each run trains a posterior :math:`Q = N(w, \operatorname{diag}\sigma^2)` (one σ per layer, learned) of an MLP by
minimising the :math:`f_{\rm quad}` bound of Pérez-Ortiz et al. (2021) (:class:`noisereg.PacBayesObjective`,
docs/THEORY.md §10), then certifies its 0-1 risk on data the prior never saw, beside the test error of the same
stochastic network. Two arms:

* ``data-dependent``: the training pool is split once (``split_seed``) into a prior part (``prior_share`` of
  it) and a certificate part. The prior's mean is a network trained on the prior part (SGD on the cross-entropy
  with full noise injection at ``prior_noise``, :class:`noisereg.NoiseInjector`), the posterior starts there and
  is trained on the certificate part, and the certificate is computed on the certificate part only (the split's
  indices are stored; :meth:`~noisereg.PacBayesObjective.certificate` refuses overlapping data).
* ``data-independent``: the prior's mean is the network at initialisation; posterior trained and certified on
  the whole pool.

Every prior std of ``prior_sigmas`` trains its own posterior; the run keeps the lowest certificate, paying for the
choice in both parts of the bound (G = C = ``len(prior_sigmas)``). The Monte-Carlo weight draws (``samples`` on
the certificate's data, ``test_samples`` on the test set) come from their own seeded streams
(:func:`noisereg.pac_bayes.monte_carlo_generator`). The report gives the median certificate over seeds of the
configuration declared in the preset.

The cpu preset (declared here before its committed run; chosen in exploratory runs at seed 0 with 1,000-2,000
weight draws, which gave certificates 0.25-0.26 for prior stds 0.01-0.04): the embedded ``fashion_mnist_subset``
(4,096 training images: 2,048 train the prior, 2,048 are certified on; 5,000 test images), MLP 784-100-100-10,
prior 30 epochs of SGD (momentum 0.9, lr 0.05, batch 128) with full noise injection σ = 0.02, posterior 30
epochs of SGD (lr 0.01, momentum 0.95, batch 128) on f_quad with δ = 0.025 and p_min = 10⁻⁴, prior stds
{0.01, 0.03} (G = C = 2), certificate δ = 0.05 with 10,000 weight draws, test error of Q from 1,000 draws, seeds
0, 1, 2; target: median certificate ≤ 0.40. The paper preset is the same on the full Fashion-MNIST (60,000
training images: 30,000 for the prior, 30,000 certified) with 2,000 weight draws for ê (a draw scores 30,000
images) and 200 for the test error; target ≤ 0.25.
"""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from noisereg.constraints import Checked, Each, Interval, OneOf, Satisfies
from noisereg.data import DATASETS, Split, load
from noisereg.errors import UserError
from noisereg.sweep.experiment import Experiment, Job
from noisereg.plotting.style import figure, save
from noisereg.injection import NoiseInjector
from noisereg.models import MLP
from noisereg.pac_bayes_train import OBJECTIVES, PacBayesObjective
from noisereg.training.loop import build_model
from noisereg.training.settings import POSITIVE_INT, SEED, SEEDS

ARMS = ("data-dependent", "data-independent")
TEST_STREAM = 2**31
"""Added to a run's seed for the test set's Monte-Carlo stream (the certificate's draws use the seed itself)."""


@dataclass(frozen=True)
class CertifyConfig(Checked):
    dataset: str = "fashion_mnist_subset"   # the training pool: fashion_mnist_subset (embedded) | fashion_mnist
    split_seed: int = 0                     # seed of the prior / certificate split of the pool
    prior_share: float = 0.5                # the pool's share that trains the prior (data-dependent arm)
    hidden: tuple[int, ...] = (100, 100)
    arms: tuple[str, ...] = ARMS
    batch_size: int = 128
    prior_epochs: int = 30                  # SGD on the cross-entropy, prior part only
    prior_lr: float = 0.05
    prior_noise: float = 0.02               # full noise injection std while training the prior (0: none)
    posterior_epochs: int = 30              # SGD on the bound, certificate part (whole pool: data-independent)
    posterior_lr: float = 0.01
    posterior_momentum: float = 0.95
    prior_sigmas: tuple[float, ...] = (0.01, 0.03)   # each trains a posterior; the union bound pays for the choice
    objective: str = "quad"
    train_delta: float = 0.025              # δ inside the training objective
    p_min: float = 1e-4
    delta: float = 0.05                     # δ of the certificate
    samples: int = 10000                    # weight draws for ê on the certificate's data
    test_samples: int = 1000                # weight draws for the stochastic network's test error
    seeds: tuple[int, ...] = (0, 1, 2)

    CONSTRAINTS = {
        "dataset": Satisfies(lambda v: v in DATASETS, f"one of {DATASETS}", str),
        "split_seed": SEED, "prior_share": Interval(0, 1, low_open=True, high_open=True),
        "hidden": Each(POSITIVE_INT), "arms": Each(OneOf(*ARMS), unique=True), "batch_size": POSITIVE_INT,
        "prior_epochs": Interval(0, integer=True), "prior_lr": Interval(0, low_open=True), "prior_noise": Interval(0),
        "posterior_epochs": Interval(0, integer=True), "posterior_lr": Interval(0, low_open=True),
        "posterior_momentum": Interval(0, 1, high_open=True), "prior_sigmas": Each(Interval(0, low_open=True)),
        "objective": OneOf(*OBJECTIVES), "train_delta": Interval(0, 1, low_open=True, high_open=True),
        "p_min": Interval(0, 1, low_open=True, high_open=True), "delta": Interval(0, 1, low_open=True, high_open=True),
        "samples": POSITIVE_INT, "test_samples": POSITIVE_INT, "seeds": SEEDS,
    }


def split_pool(n: int, share: float, seed: int) -> tuple[list[int], list[int]]:
    """(prior indices, certificate indices) of a pool of n points: a seeded permutation, the first
    ``round(share·n)`` to the prior; both sorted."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    k = round(share * n)
    if not 0 < k < n:
        raise UserError(f"prior_share={share} leaves no data to one side of the split of {n} points")
    return sorted(perm[:k].tolist()), sorted(perm[k:].tolist())


def _sgd_epochs(params, step, x, y, epochs: int, batch: int, lr: float, momentum: float, seed: int) -> list[float]:
    """Epochs of SGD with seeded shuffling: ``step(xb, yb)`` computes the loss and its gradient (``backward``) and
    returns the loss; the mean loss per epoch."""
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(epochs):
        order, total = torch.randperm(len(x), generator=gen), 0.0
        for i in range(0, len(x), batch):
            idx = order[i:i + batch]
            opt.zero_grad(set_to_none=True)
            loss = step(x[idx], y[idx])
            opt.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / len(x))
    return losses


def train_prior(net: nn.Module, x, y, cfg: CertifyConfig, seed: int) -> list[float]:
    """Train the prior's mean in place: SGD on the cross-entropy with full noise injection at ``prior_noise``."""
    inj = NoiseInjector(net, cfg.prior_noise, mode="full", seed=seed)

    def step(xb, yb):
        with inj.perturb():   # backward inside the block, the step outside (NoiseInjector's contract)
            loss = nn.functional.cross_entropy(net(xb), yb)
            loss.backward()
        return loss

    return _sgd_epochs(net.parameters(), step, x, y, cfg.prior_epochs, cfg.batch_size, cfg.prior_lr, 0.9, seed + 1)


class Certify(Experiment):
    name = "certify"
    description = "PAC-Bayes training through the noise engine: non-vacuous certificates (f_quad, learned σ)"
    order = 20
    Config = CertifyConfig
    metrics = ("empirical_risk", "kl", "test_error", "prior_test_error")
    PRESETS = {
        "smoke": dict(hidden=(32,), prior_epochs=4, posterior_epochs=2, samples=200, test_samples=10, seeds=(0,)),
        "cpu": dict(),
        "paper": dict(dataset="fashion_mnist", samples=2000, test_samples=200),
    }

    def __init__(self) -> None:
        self._split: dict[tuple, Split] = {}

    def data(self, cfg, data, data_dir):
        if data:
            raise UserError("certify reads its pool from the dataset setting (and --data-dir), not --data")
        if data_dir and cfg.dataset != "fashion_mnist":
            raise UserError(f"--data-dir holds the Fashion-MNIST files, but dataset is {cfg.dataset!r}: add "
                            "--set dataset=fashion_mnist (or use --preset paper)")
        key = (cfg.dataset, data_dir)
        if key not in self._split:
            self._split.clear()
            self._split[key] = load(cfg.dataset, data_dir=data_dir)
        self._data_dir = data_dir
        return self._split[key]

    def runs(self, cfg):
        return [Job(f"{arm}-s{seed}", arm, functools.partial(self.point, cfg, arm, seed), {"arm": arm})
                for arm in cfg.arms for seed in cfg.seeds]

    def point(self, cfg: CertifyConfig, arm: str, seed: int, *, checkpoint=None, resume=False) -> dict[str, Any]:
        """One run: prior, one posterior per prior std, the best certificate (in one go; no checkpoint)."""
        split = self.data(cfg, None, getattr(self, "_data_dir", None))
        x, y = split.x_train, split.y_train
        if arm == "data-dependent":
            prior_idx, cert_idx = split_pool(len(x), cfg.prior_share, cfg.split_seed)
        else:
            prior_idx, cert_idx = [], list(range(len(x)))
        xc, yc = x[cert_idx], y[cert_idx]
        prior = build_model(lambda: MLP(x[0].numel(), cfg.hidden, split.num_classes), seed, "cpu")
        prior_losses: list[float] = []
        if prior_idx:
            prior_losses = train_prior(prior, x[prior_idx], y[prior_idx], cfg, seed)
            prior_data = {"kind": "data-dependent", "source": f"a network trained on {len(prior_idx)} pool points "
                          f"(split seed {cfg.split_seed})", "split_seed": cfg.split_seed, "indices": prior_idx}
        else:
            prior_data = {"kind": "data-independent", "source": f"the initialisation (seed {seed})", "indices": []}
        with torch.no_grad():
            prior_test_error = float((prior(split.x_test).argmax(1) != split.y_test).double().mean())
        candidates = []
        for s_p in cfg.prior_sigmas:
            post = copy.deepcopy(prior)
            obj = PacBayesObjective(post, prior, prior_sigma=s_p, n=len(cert_idx), delta=cfg.train_delta,
                                    objective=cfg.objective, p_min=cfg.p_min, seed=seed)
            def step(xb, yb, obj=obj):
                loss = obj(xb, yb)
                loss.backward()
                return loss

            history = _sgd_epochs(obj.parameters(), step, xc, yc, cfg.posterior_epochs, cfg.batch_size,
                                  cfg.posterior_lr, cfg.posterior_momentum, seed + 2)
            g = len(cfg.prior_sigmas)
            cert = obj.certificate(xc, yc, indices=cert_idx, prior_indices=prior_idx, samples=cfg.samples, seed=seed,
                                   delta=cfg.delta, grid_size=g, candidates=g, prior_data=prior_data)
            test_error, test_se = obj.gibbs_error(split.x_test, split.y_test, cfg.test_samples, TEST_STREAM + seed)
            with torch.no_grad():
                mean_error = float((post(split.x_test).argmax(1) != split.y_test).double().mean())
            candidates.append((cert, test_error, test_se, mean_error, history))
        cert, test_error, test_se, mean_error, history = min(candidates, key=lambda c: (c[0]["risk_bound"], c[0]["kl"]))
        final = {"risk_bound": cert["risk_bound"], "empirical_risk": cert["empirical_risk"], "kl": cert["kl"],
                 "test_error": test_error, "test_error_se": test_se, "mean_test_error": mean_error,
                 "prior_test_error": prior_test_error, "test_acc": 1 - test_error}
        return {"method": arm, "sigma": cert["prior_sigma"], "seed": seed, "final": final,
                "history": [{"step": k + 1, "objective": v} for k, v in enumerate(history)],
                "prior_history": prior_losses, "certificate": cert,
                "searched": [{"prior_sigma": c["prior_sigma"], "risk_bound": c["risk_bound"], "kl": c["kl"],
                              "empirical_risk": c["empirical_risk"], "test_error": t}
                             for c, t, *_ in candidates]}

    # ---------------------------------------------------------------------------------------- report
    @staticmethod
    def _median(values: list[float]) -> float:
        v = sorted(values)
        k = len(v)
        return math.nan if not k else v[k // 2] if k % 2 else (v[k // 2 - 1] + v[k // 2]) / 2

    def figures(self, cfg):
        return [{"file": "certify.png", "kind": "custom",
                 "title": "PAC-Bayes certificates beside the stochastic network's test error"}]

    def draw(self, results, spec, out):
        fig, axes = figure(1, 1, size=(6.0, 4.0))
        ax = axes[0][0]
        arms = list(dict.fromkeys(r["variant"] for r in results["runs"]))
        for k, arm in enumerate(arms):
            rs = [r for r in results["runs"] if r["variant"] == arm]
            for j, (key, label, color) in enumerate((("risk_bound", "certificate", "tab:red"),
                                                     ("test_error", "test error of Q", "tab:blue"),
                                                     ("empirical_risk", "ê (certificate data)", "tab:gray"))):
                vals = [r["final"][key] for r in rs]
                ax.scatter([k + 0.2 * (j - 1)] * len(vals), vals, color=color, label=label if k == 0 else None, s=18)
                ax.hlines(self._median(vals), k + 0.2 * (j - 1) - 0.08, k + 0.2 * (j - 1) + 0.08, color=color)
        ax.axhline(0.9, color="gray", ls=":", lw=0.8, label="chance (0.9)")
        ax.set(xticks=range(len(arms)), xticklabels=arms, ylabel="0-1 error", ylim=(0, 1))
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
        return save(fig, out / spec["file"], spec.get("title"))

    def claims(self, results):
        from noisereg.experiments.classify import certificate_text

        rows = []
        classes = 10
        targets = {"fashion_mnist_subset": 0.40, "fashion_mnist": 0.25}
        target = targets.get(results["config"]["dataset"])
        for arm in dict.fromkeys(r["variant"] for r in results["runs"]):
            rs = [r for r in results["runs"] if r["variant"] == arm]
            med = self._median([r["final"]["risk_bound"] for r in rs])
            test = self._median([r["final"]["test_error"] for r in rs])
            ours = (f"{certificate_text([r['certificate'] for r in rs], classes)}; the same stochastic networks' "
                    f"test error: median {test:.3f} (" + ", ".join(f"{r['final']['test_error']:.3f} ± "
                                                                   f"{r['final']['test_error_se']:.3f}" for r in rs) + ")")
            if arm == "data-dependent" and target is not None and results["preset"] in ("cpu", "paper"):
                verdict = "reproduced" if med <= target else "not reproduced"
                rows.append({"claim": f"{arm} prior: median certificate ≤ {target:.2f} on {results['config']['dataset']}",
                             "paper": f"≤ {target:.2f} (target)", "ours": ours, "verdict": verdict})
            else:
                rows.append({"claim": f"{arm} prior: certificate", "paper": "–", "ours": ours, "verdict": "measured"})
        return rows

    def notes(self, results):
        lines = ["| run | prior | prior σ | learned σ per layer | n | δ | G | C | ê (MC) | ê bound | KL (nats) | "
                 "certificate | test error of Q | error of w | prior's test error |",
                 "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in results["runs"]:
            c, f = r["certificate"], r["final"]
            lines.append(f"| {r['id']} | {c['prior_data']['source']} | {c['prior_sigma']:g} | "
                         f"{', '.join(f'{s:.4f}' for s in c['sigma'])} | {c['n']} | {c['delta']:g} | {c['grid_size']} | "
                         f"{c['candidates']} | {c['empirical_risk']:.4f} | {c['empirical_risk_bound']:.4f} | "
                         f"{c['kl']:.1f} | **{c['risk_bound']:.4f}** | {f['test_error']:.4f} ± {f['test_error_se']:.4f} | "
                         f"{f['mean_test_error']:.4f} | {f['prior_test_error']:.4f} |")
        return ["Certificates (0-1 loss, 10 classes: trivial 1.0, chance 0.9), each from its stored parts: "
                "ê (Monte-Carlo, `samples` draws) → ê bound = kl⁻¹(ê, ln(2C/δ)/samples) → certificate = "
                "kl⁻¹(ê bound, (KL + ln(4G√n/δ))/n); `results.json` holds each certificate with the prior's indices "
                "(`certificate.prior_data.indices`) and the certified indices (`certificate.data.indices`).", "",
                *lines, "", self._movement(results)]

    @staticmethod
    def _movement(results) -> str:
        """How far the trained posteriors moved from their priors, in words (KL and the learned σ's change)."""
        kls = [r["certificate"]["kl"] for r in results["runs"]]
        moved = [abs(s / r["certificate"]["prior_sigma"] - 1) for r in results["runs"] for s in r["certificate"]["sigma"]]
        return (f"How far the posteriors moved: KL(Q‖P) {min(kls):.3g}-{max(kls):.3g} nats, learned σ within "
                f"{100 * max(moved):.2g} % of the prior std. Where both are small the trained posterior stayed at "
                "the prior: the certificate is then, in effect, that of the prior's own mean with noise of the "
                "prior std on data it never saw, and the bound-training adds little to it. σ staying put is the "
                "bound's optimum, not a stuck optimiser: at σ_l = σ_p the KL's curvature in ρ_l is 2·d_l (d_l = "
                "78,500 entries in the first layer), so moving σ_l costs far more nats than it saves in ê "
                "(docs/THEORY.md §10).")
