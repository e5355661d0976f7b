"""σ chosen on a validation split, end to end: the split, the runs (SAM and SAM with half the steps),
results.json["selected"], and the report's selection table and verdict rule."""

import json

import pytest
import torch

from noisereg.errors import UserError
from noisereg.sweep import EXPERIMENTS, run_experiment
from noisereg.experiments.classify import select
from noisereg.report import rebuild
from noisereg.training.settings import grad_evals_per_step

SWEEP = {"methods": ("gd", "layer", "sam"), "sigmas": (0.05, 0.1), "rhos": (0.02, 0.05), "n_val": 64,
         "epochs": 4}


def test_validation_points_come_from_the_training_data_and_stay_out_of_training():
    exp = EXPERIMENTS["fig3"]
    cfg = exp.config("smoke", {"n_val": 64, "split_seed": 2})
    split = exp.data(cfg, None, None)
    assert len(split.x_train) == cfg.n_train and len(split.x_val) == 64  # n_train is kept: n_val comes extra
    assert "[validation 64 of 192, seed 2]" in split.name
    key = lambda x: {tuple(r.tolist()) for r in x}  # noqa: E731
    assert not key(split.x_val) & key(split.x_test)
    assert len(key(split.x_val) - key(split.x_train)) >= 60  # digits repeats a few images
    other = exp.data(exp.config("smoke", {"n_val": 64, "split_seed": 3}), None, None)
    assert not torch.equal(split.x_val, other.x_val)
    img = EXPERIMENTS["fig5"]  # image experiments reshape every split
    assert img.data(img.config("smoke"), None, None).x_val.shape[1:] == (1, 8, 8)


def test_too_many_validation_points_is_a_clear_error():
    exp = EXPERIMENTS["fig3"]
    with pytest.raises(UserError, match=r"n_train=1500 training points plus n_val=400 validation points"):
        exp.data(exp.config("smoke", {"n_train": 1500, "n_val": 400}), None, None)


def test_sam_runs_and_their_equal_compute_twins():
    exp = EXPERIMENTS["fig6"]
    cfg = exp.config("smoke", {"methods": ("gd", "sam"), "rhos": (0.02, 0.05), "epochs": 5, "noise_stop_epoch": 4})
    runs = {r.id: r for r in exp.runs(cfg)}
    assert set(runs) == {"gd-s0", "sam-rho0.02-s0", "sam-rho0.05-s0", "sam_half-rho0.02-s0", "sam_half-rho0.05-s0"}
    full, half = runs["sam-rho0.05-s0"], runs["sam_half-rho0.05-s0"]
    assert (full.spec.method, full.spec.sigma, full.spec.epochs, full.spec.noise_stop_epoch) == ("sam", 0.05, 5, 4)
    assert (half.spec.method, half.spec.sigma, half.spec.epochs, half.spec.noise_stop_epoch) == ("sam", 0.05, 2, 2)
    assert half.params == {"arm": "sam_half"} and full.params == {}
    assert not any(r.id.startswith("sam_half") for r in exp.runs(cfg.__class__(**{**cfg.__dict__, "sam_half": False})))
    assert grad_evals_per_step(full.spec) == 2


def test_a_sweep_selects_sigma_on_validation_data_and_reports_it(tmp_path):
    exp = EXPERIMENTS["fig3"]
    res = run_experiment(exp, "smoke", tmp_path, overrides=SWEEP, show_progress=False)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["selected"] == select(saved, "") and set(saved["selected"]) == {"layer", "sam", "sam_half"}
    assert saved["selected"]["layer"] in (0.05, 0.1) and saved["selected"]["sam"] in (0.02, 0.05)
    for r in res["runs"]:
        assert {"val_loss", "val_acc"} <= set(r["final"]) and all("val_acc" in h for h in r["history"])
    evals = {r["id"]: r["grad_evals"] for r in res["runs"]}
    assert evals["sam-rho0.02-s0"] == 2 * evals["gd-s0"] and evals["sam_half-rho0.02-s0"] == evals["gd-s0"]
    report = rebuild(tmp_path).read_text()
    assert "Verdict rule:" in report and "seed-paired differences" in report
    assert "| variant | method | selected σ / ρ | gradient evaluations per run | val acc | test acc |" in report
    layer_row = next(line for line in report.splitlines() if line.startswith("| – | layer |"))
    assert f"| {saved['selected']['layer']:g} |" in layer_row
    assert "| – | sam_half |" in report and "**measured**" in report


def test_variants_get_one_selection_each():
    exp = EXPERIMENTS["fig4"]
    runs = [{"variant": v, "method": m, "sigma": s, "seed": 0, "params": {}, "final": {"val_acc": a, "test_acc": a}}
            for v in ("width 8", "width 16") for m, s, a in (("gd", 0.0, 0.5), ("layer", 0.05, 0.6), ("layer", 0.1, 0.7))]
    runs[-1]["final"]["val_acc"] = 0.1
    assert exp.selected({"runs": runs}) == {"width 8": {"layer": 0.1}, "width 16": {"layer": 0.05}}


def test_data_dir_is_refused_for_embedded_data_and_images_reshape_every_split(tmp_path):
    exp = EXPERIMENTS["fig3"]
    with pytest.raises(UserError, match="--data-dir holds the files of fashion_mnist or cifar10"):
        exp.data(exp.config("smoke"), None, str(tmp_path))
    img = EXPERIMENTS["fig5"]
    split = img.data(img.config("smoke"), None, None)
    assert [t.shape[1:] for t in (split.x_train, split.x_val, split.x_test)] == [(1, 8, 8)] * 3


def test_sam_half_keeps_at_least_one_epoch_and_halves_odd_counts_down():
    exp = EXPERIMENTS["fig3"]
    for epochs, half in ((3, 1), (1, 1), (7, 3)):
        runs = exp.runs(exp.config("smoke", {"methods": ("sam",), "rhos": (0.05,), "epochs": epochs}))
        assert [r.spec.epochs for r in runs] == [epochs, half]


def test_the_selection_table_lists_each_arms_gradient_evaluations_and_needs_no_gd():
    exp = EXPERIMENTS["fig4"]

    def run(v, method, sigma, evals, acc, arm=None):
        return {"variant": v, "method": method, "sigma": sigma, "seed": 0, "grad_evals": evals,
                "params": {"arm": arm} if arm else {}, "final": {"val_acc": acc, "test_acc": acc}}

    runs = [run("w8", "gd", 0.0, 100, 0.5), run("w8", "layer", 0.05, 100, 0.6), run("w8", "sam", 0.05, 200, 0.7),
            run("w8", "sam", 0.05, 100, 0.65, arm="sam_half"), run("w16", "layer", 0.05, 300, 0.6)]
    rows = [line for line in exp.notes({"runs": runs, "config": {"n_val": 64, "split_seed": 0}})
            if line.startswith("| w")]
    cells = {tuple(c.strip() for c in line.split("|")[1:5]) for line in rows}
    assert cells == {("w8", "gd", "–", "100"), ("w8", "layer", "0.05", "100"), ("w8", "sam", "0.05", "200"),
                     ("w8", "sam_half", "0.05", "100"), ("w16", "layer", "0.05", "300")}
    no_gd = [r for r in runs if r["method"] != "gd"]
    assert not any("| gd |" in line for line in exp.notes({"runs": no_gd, "config": {}}))
