"""Experiments ``nuclear`` (Eq. (10)) and ``psd`` (Sec. 2.5): smoke runs, reports, configs (solvers: test_solvers)."""

import json
import math

import pytest
import torch

from noisereg.closed_form import psd_full_noise_risk, psd_trace_penalty
from noisereg.errors import UserError
from noisereg.sweep import EXPERIMENTS
from noisereg.sweep import run_experiment
from noisereg.experiments.nuclear import Nuclear
from noisereg.experiments.psd import PSD, psd_objective, thresholds
from noisereg.verdicts import VERDICTS

DT = torch.float64


# ------------------------------------------------------------------------------ smoke runs
@pytest.mark.parametrize("exp_cls", [Nuclear, PSD], ids=["nuclear", "psd"])
def test_smoke_run_and_report(exp_cls, tmp_path, monkeypatch):
    exp = exp_cls()
    monkeypatch.setitem(EXPERIMENTS, exp.name, exp)       # registered in __init__ separately
    res = run_experiment(exp, "smoke", tmp_path, show_progress=False)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["experiment"] == exp.name and saved["preset"] == "smoke"
    assert len(saved["runs"]) == len(exp.runs(exp.config("smoke")))
    for r in saved["runs"]:
        assert r["method"] in ("gd", "full", "layer") and isinstance(r["sigma"], float)
        assert isinstance(r["seed"], int) and r["history"] and all("step" in h for h in r["history"])
        assert all(math.isfinite(v) for v in r["final"].values())
    assert {r["method"] for r in saved["runs"]} == ({"gd", "full", "layer"} if exp_cls is Nuclear else {"gd", "full"})
    from noisereg.report import write_report

    report = write_report(tmp_path, [res])
    png = tmp_path / exp.figures(res["config"])[0]["file"]
    assert png.exists() and png.stat().st_size > 5000
    rows = exp.claims(saved)
    assert rows and all(row["verdict"] in VERDICTS for row in rows)
    assert all(set(row) == {"claim", "paper", "ours", "verdict"} for row in rows)
    assert "| claim (paper) |" in report.read_text()


@pytest.mark.parametrize("exp_cls", [Nuclear, PSD], ids=["nuclear", "psd"])
def test_data_rejects_external_data(exp_cls):
    exp = exp_cls()
    with pytest.raises(ValueError, match=f"{exp.name} uses its own synthetic data"):
        exp.data(exp.config("smoke"), "mnist", None)
    assert "synthetic" in exp.data(exp.config("smoke"), None, None)


# ---------------------------------------------------------------------------------- PSD
def _sym(seed, d=6):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(d, d, generator=g, dtype=DT)
    return A @ A.T / d - 0.3 * torch.eye(d, dtype=DT), g


def test_thresholds_match_closed_forms():
    """c_a, c_b are the trace weights of psd_trace_penalty and psd_full_noise_risk."""
    cfg = PSD().config("smoke")
    sigma = 0.3
    ca, cb = thresholds(cfg, sigma)
    Y, g = _sym(9, cfg.d)
    w = torch.randn(cfg.d, cfg.r, generator=g, dtype=DT)
    Phi = w @ w.T
    torch.testing.assert_close(psd_trace_penalty(w, sigma), ca * torch.trace(Phi), rtol=1e-12, atol=0)
    d, r = cfg.d, cfg.r
    expected = psd_objective(Y, Phi, cb) - sigma**2 * r * torch.trace(Y) + 0.5 * sigma**4 * d * r * (d + r + 1)
    torch.testing.assert_close(psd_full_noise_risk(Y, w, sigma), expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("exp_cls", [Nuclear, PSD], ids=["nuclear", "psd"])
def test_demo_preset_and_job_parameters(exp_cls):
    exp = exp_cls()
    assert exp.config("demo") == exp.config("cpu")
    jobs = [j for j in exp.runs(exp.config("smoke")) if j.params.get("part") != "theorem2"]
    assert {j.params["method"] for j in jobs} == ({"gd", "full", "layer"} if exp_cls is Nuclear else {"gd", "full"})
    assert all(j.params["sigma"] == (0.0 if j.params["method"] == "gd" else 0.3 if exp_cls is Nuclear else 0.2)
               for j in jobs)


@pytest.mark.parametrize(("exp_cls", "overrides", "match"), [
    (Nuclear, {"sigmas": (0.0,)}, r"NuclearConfig: sigmas must be a non-empty list, each item a finite number > 0"),
    (Nuclear, {"avg_frac": 0.0}, r"NuclearConfig: avg_frac must be a finite number in \(0, 1\], got 0.0"),
    (Nuclear, {"n": 3}, r"NuclearConfig: n must be >= d0 \(X of full column rank\), got n=3, d0=4"),
    (PSD, {"lr_ratio": 0.5}, "PSDConfig: lr_ratio must be a finite number >= 1, got 0.5"),
    (PSD, {"r": 2}, r"PSDConfig: r must be >= d \(every PSD matrix is some wwᵀ\), got r=2, d=4"),
    (PSD, {"eigs": (1.0, 2.0)}, r"PSDConfig: len\(eigs\) must equal d, got eigs=\(1.0, 2.0\), d=4"),
    (PSD, {"eigs": (1.0, 2.0, 0.5, -0.1)}, r"PSDConfig: theorem2_sigmas need eigs >= 0"),
], ids=["sigmas", "avg_frac", "n<d0", "lr_ratio", "r<d", "eigs", "eigs<0"])
def test_config_values_are_checked(exp_cls, overrides, match):
    with pytest.raises(UserError, match=match):
        exp_cls().config("smoke", overrides)
