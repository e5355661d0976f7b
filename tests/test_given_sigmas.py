"""σ given by an earlier sweep (``given_sigmas``): the fig3 ``cpu-long`` preset runs GD and both noisy schemes at
the σ the cpu preset's selection seeds chose, on seeds that chose nothing (issue 32, point 2)."""

import json
from pathlib import Path

import pytest

from noisereg.errors import UserError
from noisereg.experiments.classify import given, stage_lines
from noisereg.report import section
from noisereg.sweep import EXPERIMENTS, run_experiment
from noisereg.sweep.stages import SELECTION, view

ROOT = Path(__file__).resolve().parents[1]
FIG3 = EXPERIMENTS["fig3"]

pytestmark = pytest.mark.usefixtures("one_thread")


def test_cpu_long_is_the_papers_optimisation_at_the_cpu_width():
    cpu, long = FIG3.config("cpu"), FIG3.config("cpu-long")
    assert (long.lr, long.momentum, long.epochs, long.batch_size) == (0.005, 0.9, 10000, None)
    assert (long.hidden, long.dataset, long.n_train, long.n_val) == (cpu.hidden, cpu.dataset, cpu.n_train, cpu.n_val)
    assert long.methods == ("gd", "full", "layer") and len(long.seeds) == 10
    assert not set(long.seeds) & set(cpu.seeds) and long.confirm_seeds == ()   # seeds that chose nothing
    runs = FIG3.runs(long)
    assert len(runs) == 30
    assert {(r.spec.method, r.spec.sigma) for r in runs} == {("gd", 0.0), ("full", 0.035), ("layer", 0.01)}


def test_cpu_long_sigma_is_what_the_committed_cpu_sweep_selected():
    path = ROOT / "docs" / "results" / "fig3" / "results.json"
    if not path.exists():
        pytest.skip("no committed docs/results/fig3 (an installed package, not a source checkout)")
    chosen = json.loads(path.read_text())["selected"]
    assert given(FIG3.config("cpu-long")) == {"full": chosen["full"], "layer": chosen["layer"]}


def test_given_sigmas_are_validated():
    with pytest.raises(UserError, match="leave confirm_seeds empty"):
        FIG3.config("smoke", {"given_sigmas": ("layer=0.1",), "confirm_seeds": (5,)})
    with pytest.raises(UserError, match="only arms in methods"):
        FIG3.config("smoke", {"given_sigmas": ("layer=0.1",), "methods": ("gd", "full")})
    with pytest.raises(UserError, match="each arm once"):
        FIG3.config("smoke", {"given_sigmas": ("layer=0.1", "layer=0.2")})
    for bad in ("layer:0.1", "layer=-1", "layer=x", "gd=0.1", "sam=0.1", "layer=nan"):
        with pytest.raises(UserError, match="'ARM=σ'"):
            FIG3.config("smoke", {"given_sigmas": (bad,)})


def test_a_given_sigma_replaces_the_grid_of_its_arm_only():
    cfg = FIG3.config("smoke", {"given_sigmas": ("layer=0.02",), "sigmas": (0.05, 0.1), "seeds": (0,)})
    assert [(r.spec.method, r.spec.sigma) for r in FIG3.runs(cfg)] == [
        ("gd", 0.0), ("full", 0.05), ("full", 0.1), ("layer", 0.02)]


def test_a_given_sigma_run_is_judged_and_its_report_says_sigma_was_not_chosen_here(tmp_path):
    over = {"given_sigmas": ("full=0.05", "layer=0.1"), "seeds": (3, 4), "sigmas": (0.2,)}
    results = run_experiment(FIG3, "smoke", tmp_path / "long", overrides=over, show_progress=False)
    assert {(r["method"], r["sigma"]) for r in results["runs"]} == {("gd", 0.0), ("full", 0.05), ("layer", 0.1)}
    assert all("stage" not in r for r in results["runs"])
    assert results["selected"] == {"full": 0.05, "layer": 0.1}
    line = stage_lines(results)[0]
    assert line.startswith("σ given, not chosen here (full σ = 0.05, layer σ = 0.1") and "(3, 4)" in line
    text = section(results)
    assert "σ given, not chosen here" in text and "One stage" not in text and "| given σ / ρ |" in text
    assert "Validation: 256 training points held out as validation data (seed 0); σ is not chosen on them here" in text
    verdicts = [c["verdict"] for c in FIG3.claims(results)]
    assert verdicts and "layer-wise noise raises test accuracy over GD" in text
    assert view(results, SELECTION)["runs"] == results["runs"]
