"""The lasso, grouplasso and logistic experiments: smoke runs, reports, resume, configs (solvers: test_solvers.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from noisereg.closed_form import diagonal_net_penalty, l1_max_margin, l2_max_margin
from noisereg.errors import UserError
from noisereg.sweep import EXPERIMENTS
from noisereg.sweep import run_experiment
from noisereg.experiments.grouplasso import GroupLasso
from noisereg.experiments.lasso import Lasso, support_counts
from noisereg.experiments.logistic import Logistic, separable_problem
from noisereg.training import noisy_gd as driver  # the module (the package exports run_noisy_gd)
from noisereg.verdicts import VERDICTS

EXPS = {"lasso": Lasso, "grouplasso": GroupLasso, "logistic": Logistic}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Run every experiment's smoke preset once; ``{name: (results, out_dir)}``."""
    out = {}
    for name, cls in EXPS.items():
        d = tmp_path_factory.mktemp(name)
        out[name] = (run_experiment(cls(), "smoke", d, show_progress=False), d)
    return out


@pytest.mark.parametrize("name", list(EXPS))
def test_smoke_results_structure(smoke, name):
    results, out = smoke[name]
    saved = json.loads((out / "results.json").read_text())
    assert saved["experiment"] == name and saved["preset"] == "smoke"
    exp = EXPS[name]()
    assert len(saved["runs"]) == len(exp.runs(exp.config("smoke")))
    for r in saved["runs"]:
        assert r["method"] in ("gd", "full", "layer")
        assert isinstance(r["sigma"], float) and isinstance(r["seed"], int)
        assert r["final"] and all(np.isfinite(v) for v in r["final"].values())
        assert r["history"] and all("step" in h for h in r["history"])


@pytest.mark.parametrize("name", list(EXPS))
def test_smoke_report_and_claims(smoke, name, monkeypatch):
    from noisereg.report import write_report

    results, out = smoke[name]
    monkeypatch.setitem(EXPERIMENTS, name, EXPS[name]())  # registered by the package owner
    report = write_report(out, [results]).read_text()
    spec = EXPS[name]().figures(results["config"])[0]
    assert (out / spec["file"]).stat().st_size > 5000
    claims = EXPS[name]().claims(results)
    assert claims and all(set(c) == {"claim", "paper", "ours", "verdict"} for c in claims)
    assert all(c["verdict"] in VERDICTS for c in claims)
    assert all(c["claim"].replace("|", "\\|") in report for c in claims)  # the report escapes | in cells


@pytest.mark.parametrize("name", list(EXPS))
def test_own_data_only(name):
    exp = EXPS[name]()
    with pytest.raises(ValueError, match=f"{name} uses its own synthetic data"):
        exp.data(exp.config("smoke"), "mnist", None)


# --------------------------------------------------------------------------------------- lasso
def test_support_counts():
    assert support_counts(np.array([0.5, 0.001, -0.2]), np.array([1.0, 0.0, 0.0]), 0.01) == {"tp": 1, "fp": 1, "fn": 0}


def test_lasso_smoke_compares_with_the_lasso(smoke):
    results, _ = smoke["lasso"]
    for r in results["runs"]:
        assert r["lasso_kkt_violation"] <= 1e-6
        assert r["final"]["lasso_obj_gap"] >= -1e-9  # nothing beats the Lasso minimum
        assert r["final"]["rel_err"] < 0.5



def test_lasso_run_lands_on_the_lasso_of_its_own_lambda():
    """One cpu-preset run (σ = 0.4, 20k steps, ~3 s): β is 5x closer to the weighted Lasso at
    λ_j = 2σ²(XᵀX/n)_jj (computed here, Eq. (8)) than at 0.8λ or 1.25λ, so noise switched off or a
    wrong factor in λ (λ/2, σ/√2) fails; the smoke preset's 500 steps cannot tell λ from 1.4λ."""
    from noisereg.closed_form import weighted_lasso
    from noisereg.experiments.lasso import _problem, train_diagonal

    cfg = Lasso().config("cpu", {"sigmas": (0.4,), "seeds": (0,)})
    X, y, _ = (torch.from_numpy(a) for a in _problem(cfg))
    lam = 2 * 0.4 ** 2 * X.pow(2).mean(0)
    beta = np.array(train_diagonal(cfg, 0.4, 0)["beta"])
    dist = {f: np.linalg.norm(beta - weighted_lasso(X, y, f * lam).numpy()) for f in (0.8, 1.0, 1.25)}
    assert dist[1.0] < 0.2 * min(dist[0.8], dist[1.25])
    assert dist[1.0] < 0.02 * np.linalg.norm(weighted_lasso(X, y, lam).numpy())

# ---------------------------------------------------------------------------------- grouplasso
def test_grouplasso_smoke_compares_with_convex(smoke):
    results, _ = smoke["grouplasso"]
    for r in results["runs"]:
        assert r["convex_kkt_violation"] <= 1e-10
        assert r["final"]["objective_gap"] >= -1e-9


# ------------------------------------------------------------------------------------ logistic
def test_dphi_norm_constant_matches_closed_form():
    """‖DΦ(w)‖_F² = 4 Σ_j ‖X_j‖²(w1_j² + w2_j²) = (2n/σ²) · Eq. (7), Jacobian by torch.func."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(7, 5, generator=g, dtype=torch.float64)
    w1, w2 = torch.randn(5, generator=g, dtype=torch.float64), torch.randn(5, generator=g, dtype=torch.float64)
    J1, J2 = torch.func.jacrev(lambda a, b: X @ (a * a - b * b), argnums=(0, 1))(w1, w2)
    dphi = J1.pow(2).sum() + J2.pow(2).sum()
    torch.testing.assert_close(dphi, 4 * (X.pow(2).sum(0) * (w1**2 + w2**2)).sum(), rtol=1e-12, atol=1e-12)
    sigma = 0.3
    torch.testing.assert_close(diagonal_net_penalty(X, w1, w2, sigma), sigma**2 / (2 * 7) * dphi,
                               rtol=1e-12, atol=1e-12)


def test_lp_feasible_and_beats_gd_direction(smoke):
    results, _ = smoke["logistic"]
    cfg = results["config"]
    X, y, _ = separable_problem(cfg["n"], cfg["d"], cfg["sparsity"], cfg["col_scale"], cfg["data_seed"])
    c = (X**2).sum(0)
    beta = l1_max_margin(torch.from_numpy(X), torch.from_numpy(y), torch.from_numpy(c)).numpy()
    assert (y * (X @ beta)).min() >= 1 - 1e-8
    for r in results["runs"]:
        b = np.array(r["beta"])
        m = (y * (X @ b)).min()
        assert m > 0, "GD should separate the data in the smoke run"
        assert c @ np.abs(beta) <= c @ np.abs(b / m) + 1e-8
    b2 = l2_max_margin(torch.from_numpy(X), torch.from_numpy(y)).numpy()
    assert (y * (X @ b2)).min() >= 1 - 1e-5
    assert b2 @ b2 <= (beta @ beta) * (1 + 1e-6)


# ------------------------------------------------------------------------- checkpoints, resume
class Killed(Exception):
    """Stands for a kill right after a checkpoint was written."""


def test_lasso_job_killed_after_a_checkpoint_resumes_exactly(tmp_path, monkeypatch):
    """Kill a lasso smoke job right after its 3rd checkpoint, resume it: the record equals an
    uninterrupted run's, and the resumed run starts after the kill (a restart would not)."""
    exp = Lasso()
    cfg = exp.config("smoke")
    job = exp.runs(cfg)[0]
    full = job.fn(checkpoint=tmp_path / "full.pt", resume=False)
    saved, real = [], driver.save_checkpoint

    def save_then_maybe_kill(path, state):
        real(path, state)
        saved.append(state["step"])
        if kill and len(saved) == 3:
            raise Killed

    monkeypatch.setattr(driver, "save_checkpoint", save_then_maybe_kill)
    kill = True
    with pytest.raises(Killed):
        job.fn(checkpoint=tmp_path / "run.pt", resume=False)
    killed_at, kill = saved[-1], False
    assert 0 < killed_at < cfg.steps
    saved.clear()
    resumed = job.fn(checkpoint=tmp_path / "run.pt", resume=True)
    assert saved == [t for t in range(0, cfg.steps + 1, cfg.eval_every) if t > killed_at]   # no step repeated
    assert resumed == full


def test_runner_resumes_a_killed_theory_experiment(tmp_path, monkeypatch):
    """Through run_experiment: kill the second lasso smoke job after its 3rd checkpoint, rerun with
    resume=True: the runs equal an uninterrupted run's; only the second job's remaining steps run."""
    first, second = [job.id for job in Lasso().runs(Lasso().config("smoke"))][:2]
    full = run_experiment(Lasso(), "smoke", tmp_path / "full", show_progress=False, batch=False)
    saved, real = [], driver.save_checkpoint

    def save_and_record(path, state):
        real(path, state)
        saved.append((path.stem, state["step"]))
        if kill and saved[-1] == (second, 200):
            raise Killed

    monkeypatch.setattr(driver, "save_checkpoint", save_and_record)
    kill = True
    with pytest.raises(Killed):
        run_experiment(Lasso(), "smoke", tmp_path / "run", show_progress=False, batch=False)
    saved.clear()
    kill = False
    resumed = run_experiment(Lasso(), "smoke", tmp_path / "run", resume=True, show_progress=False, batch=False)
    assert saved[0] == (second, 300) and first not in {name for name, _ in saved}
    strip = lambda runs: [{k: v for k, v in r.items() if k != "seconds"} for r in runs]  # noqa: E731
    assert strip(resumed["runs"]) == strip(full["runs"])


def test_runner_resumes_a_killed_batched_sweep(tmp_path, monkeypatch):
    """The batched path (the default): killed after the batch's step-200 checkpoint, resumed: the runs equal an
    uninterrupted batched sweep's bit for bit, and only the steps after 200 run again."""
    from noisereg.training import batched_gd

    full = run_experiment(Lasso(), "smoke", tmp_path / "full", show_progress=False)
    assert all(r["batched"] == 2 for r in full["runs"])
    saved, real = [], batched_gd.save_checkpoint

    def save_and_record(path, state):
        real(path, state)
        saved.append(state["step"])
        if kill and state["step"] == 200:
            raise Killed

    monkeypatch.setattr(batched_gd, "save_checkpoint", save_and_record)
    kill = True
    with pytest.raises(Killed):
        run_experiment(Lasso(), "smoke", tmp_path / "run", show_progress=False)
    assert not (tmp_path / "run" / "results.json").exists() or not json.loads(
        (tmp_path / "run" / "results.json").read_text())["runs"]
    saved.clear()
    kill = False
    resumed = run_experiment(Lasso(), "smoke", tmp_path / "run", resume=True, show_progress=False)
    assert saved[0] == 300
    strip = lambda runs: [{k: v for k, v in r.items() if k != "seconds"} for r in runs]  # noqa: E731
    assert strip(resumed["runs"]) == strip(full["runs"])


# ------------------------------------------------------------------------------------ configs
@pytest.mark.parametrize("name", list(EXPS))
def test_demo_preset_is_the_cpu_preset(name):
    exp = EXPS[name]()
    assert exp.config("demo") == exp.config("cpu")


@pytest.mark.parametrize("name", list(EXPS))
def test_jobs_carry_their_parameters(name):
    exp = EXPS[name]()
    for job in exp.runs(exp.config("smoke")):
        assert set(job.params) == {"method", "sigma", "seed"}
        assert job.params["method"] in ("gd", "full") and job.params["seed"] in exp.config("smoke").seeds


@pytest.mark.parametrize(("name", "overrides", "match"), [
    ("lasso", {"lr": -0.1}, "LassoConfig: lr must be a finite number > 0, got -0.1"),
    ("lasso", {"sigmas": (0.1, 0.0)}, r"LassoConfig: sigmas must be a non-empty list, each item a finite number > 0"),
    ("lasso", {"average_from": 1.0}, r"LassoConfig: average_from must be a finite number in \[0, 1\), got 1.0"),
    ("lasso", {"sparsity": 100}, "LassoConfig: sparsity must be <= d, got sparsity=100, d=80"),
    ("grouplasso", {"steps": 0}, "GroupLassoConfig: steps must be an integer >= 1, got 0"),
    ("grouplasso", {"scales": (1.0,) * 11}, "GroupLassoConfig: len.scales. must be <= groups"),
    ("logistic", {"seeds": (-1,)}, r"LogisticConfig: seeds must be a non-empty list of distinct items, each item an integer >= 0"),
    ("logistic", {"threshold": 1.5}, r"LogisticConfig: threshold must be a finite number in \[-1, 1\], got 1.5"),
], ids=lambda v: v if isinstance(v, str) and len(v) < 12 else None)
def test_config_values_are_checked(name, overrides, match):
    with pytest.raises(UserError, match=match):
        EXPS[name]().config("smoke", overrides)
