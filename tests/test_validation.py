"""Bad data is refused before any run starts: one line naming the array, the rule and the value, exit 2, and
nothing written (no results.json, no checkpoint)."""

import re

import numpy as np
import pytest
import torch

from noisereg.cli import main
from noisereg.data import Split
from noisereg.data.validate import check_classification
from noisereg.errors import UserError


def _npz(path, n=40, n_test=20, d=6, **change):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.random((n, d)).astype(np.float32), "y_train": np.arange(n) % 10,
              "x_test": rng.random((n_test, d)).astype(np.float32), "y_test": np.arange(n_test) % 10}
    arrays.update({k: (v(arrays[k]) if callable(v) else v) for k, v in change.items()})
    np.savez(path, **arrays)
    return path


def _run_cli(tmp_path, data, name="fig3", *extra):
    out = tmp_path / "out"
    code = main(["run", name, "--preset", "smoke", "--data", str(data), "--out", str(out), "--quiet",
                 "--set", "n_train=none", "--set", "n_val=10", *extra])
    return code, out


def _with_gap(y):
    y = y.copy()
    y[y == 9] = 12
    return y


def _nan_at_3(x):
    x = x.copy()
    x[3, 1] = np.nan
    return x


@pytest.mark.parametrize("change, msg", [
    ({"y_train": _with_gap}, "y_train must use the classes 0..C-1 with every class in the training split, but classes "
                             "9, 10, 11 of 0..12 have no training example"),
    ({"y_train": lambda y: y + 1000, "y_test": lambda y: y + 1000}, "but its largest label is 1009 with only 30 training examples"),
    ({"y_train": lambda y: y - 1}, "y_train must hold class labels 0..C-1, got -1 at index"),
    ({"y_train": lambda y: y + 0.5}, "y_train must hold integer class labels, got "),
    ({"y_test": lambda y: np.where(y == 3, 10, y)}, "y_test holds label 10 at index 3, but the training labels are "
                                                   "the classes 0..9"),
    ({"y_train": lambda y: np.stack([y, y], 1)}, "y_train must hold one class label per example, shape (n,) or "
                                                 "(n, 1), got shape (30, 2)"),
    ({"x_train": _nan_at_3}, "x_train must hold finite numbers, got 1 NaN or infinite value(s)"),
    ({"x_test": lambda x: np.full_like(x, np.inf)}, "x_test must hold finite numbers, got 120 NaN or infinite"),
    ({"x_train": lambda x: x[:, :0], "x_test": lambda x: x[:, :0]}, "x_train must have at least one feature"),
], ids=["gap", "plus-1000", "negative", "non-integer", "test-out-of-range", "two-columns", "nan", "inf", "no-feature"])
def test_bad_data_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, change, msg):
    code, out = _run_cli(tmp_path, _npz(tmp_path / "d.npz", **change))
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert msg in err and "n_train=" not in err
    assert not (out / "results.json").exists() and not (out / "checkpoints").exists()


def test_n_by_1_labels_are_squeezed_and_train(tmp_path):
    code, out = _run_cli(tmp_path, _npz(tmp_path / "d.npz", y_train=lambda y: y[:, None], y_test=lambda y: y[:, None]))
    assert code == 0 and (out / "results.json").exists()


def test_cnn_experiments_refuse_flat_features(tmp_path, capsys):
    code, out = _run_cli(tmp_path, _npz(tmp_path / "d.npz", d=784), "fig5")
    err = capsys.readouterr().err
    assert code == 2 and "x_train must be images of shape (n, C, H, W)" in err and "(30, 784)" in err
    assert not (out / "results.json").exists()


def test_a_text_file_named_npz_says_what_it_is(tmp_path, capsys):
    (tmp_path / "d.npz").write_text("x_train,y_train\n1,2\n")
    code, _ = _run_cli(tmp_path, tmp_path / "d.npz")
    err = capsys.readouterr().err
    assert code == 2 and "not a readable .npz archive of numeric arrays (not a zip archive" in err
    assert "pickled" not in err and "n_train=" not in err
    np.save(tmp_path / "one.npy", np.zeros(3))
    (tmp_path / "one.npy").rename(tmp_path / "e.npz")
    code, _ = _run_cli(tmp_path, tmp_path / "e.npz")
    assert code == 2 and "(a single .npy array;" in capsys.readouterr().err


def test_a_missing_file_does_not_talk_about_n_train(tmp_path, capsys):
    code, _ = _run_cli(tmp_path, tmp_path / "nope.npz")
    err = capsys.readouterr().err
    assert code == 2 and "no such file" in err and "n_train=" not in err


def test_check_classification_returns_int64_vectors_and_accepts_valid_data():
    s = Split(torch.rand(4, 2), torch.tensor([[0.0], [1.0], [2.0], [1.0]]), torch.rand(2, 2),
              torch.tensor([True, False]), "x", 0)
    got = check_classification(s)
    assert got.y_train.tolist() == [0, 1, 2, 1] and got.y_train.dtype == torch.int64 and got.y_test.tolist() == [1, 0]
    with pytest.raises(UserError, match=r"x_val is empty"):
        check_classification(Split(torch.rand(2, 2), torch.tensor([0, 1]), torch.rand(1, 2), torch.tensor([0]), "x", 0,
                                   x_val=torch.rand(0, 2), y_val=torch.zeros(0, dtype=torch.long)))
    with pytest.raises(UserError, match=r"x_train must hold floating-point numbers, got torch.int64"):
        check_classification(Split(torch.ones(2, 2, dtype=torch.long), torch.tensor([0, 1]), torch.rand(1, 2),
                                   torch.tensor([0]), "x", 0))


# --------------------------------------------------------------------------------------------- resume
def _smoke(tmp_path, *extra, resume=False):
    return main(["run", "fig3", "--preset", "smoke", "--out", str(tmp_path / "o"), "--quiet", "--set", "n_val=32",
                 *extra, *(["--resume"] if resume else [])])


def test_resume_on_a_corrupt_results_json_is_one_line(tmp_path, capsys):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "results.json").write_text('{"runs": [')
    assert _smoke(tmp_path, resume=True) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is not a readable results.json (JSONDecodeError" in err


def test_resume_mismatch_names_the_settings_that_differ(tmp_path, capsys):
    import json

    assert _smoke(tmp_path) == 0
    path = tmp_path / "o" / "results.json"
    assert _smoke(tmp_path, "--set", "lr=0.1", "--set", "epochs=4", resume=True) == 2
    err = capsys.readouterr().err
    assert "(epochs: 6 -> 4; lr: 0.05 -> 0.1)" in err
    recorded = json.loads(path.read_text())
    path.write_text(json.dumps({**recorded, "seconds": 123.4}))  # a sweep that took a while
    assert _smoke(tmp_path, resume=True) == 0  # finished: nothing to run, its seconds are kept (not reset to 0)
    assert 123.4 <= json.loads(path.read_text())["seconds"] < 123.4 + 60


def test_every_noisy_run_diverged_still_gives_the_rules_verdict():
    from noisereg.sweep import EXPERIMENTS

    def run(method, sigma, seed, acc, diverged=False):
        return {"variant": "", "method": method, "sigma": sigma, "seed": seed, "diverged": diverged, "params": {},
                "final": {"test_acc": acc, "val_acc": acc}}

    runs = [run("gd", 0.0, k, 0.8) for k in range(3)]
    runs += [run(m, s, k, float("nan"), True) for m in ("full", "layer") for s in (0.1, 0.2) for k in range(3)]
    rows = EXPERIMENTS["fig3"].claims({"preset": "cpu", "config": {}, "data": "x", "runs": runs})
    assert len(rows) == 2 and all(r["verdict"] == "inconclusive" for r in rows)
    assert all("a run diverged" in r["ours"] for r in rows)


# ------------------------------------------------------------------------------------ library misuse
def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))


@pytest.mark.parametrize("mode", ["layer", "full"])
def test_optimizer_step_inside_perturb_is_refused_before_anything_changes(mode):
    from noisereg import NoiseInjector

    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    inj = NoiseInjector(model, 0.1, mode=mode, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(RuntimeError, match=r"SGD.step\(\) was called inside perturb\(\).*nothing was changed"):
        with inj.perturb():
            model(torch.randn(5, 4)).sum().backward()
            opt.step()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # not half-stepped
    assert opt.state == {} or all(not s for s in opt.state.values())
    other = torch.optim.SGD([torch.nn.Parameter(torch.ones(2))], lr=0.1)  # an optimizer of other parameters
    with inj.perturb():
        other.param_groups[0]["params"][0].grad = torch.ones(2)
        other.step()
    opt.step()  # after the block: allowed


def test_a_parameter_frozen_after_construction_is_refused():
    from noisereg import NoiseInjector

    model = _net()
    inj = NoiseInjector(model, 0.1, mode="full", seed=0)
    model[0].weight.requires_grad_(False)
    before = model[2].weight.clone()
    with pytest.raises(RuntimeError, match=r"shape \(8, 4\) was frozen .* build a new injector"):
        with inj.perturb():
            pass
    assert torch.equal(model[2].weight, before) and not inj._active


@pytest.mark.parametrize("change, msg", [
    ({"mode": "full"}, "state_dict is for mode='layer', this injector has mode='full'"),
    ({"order": "cyclic"}, "state_dict is for order='random', this injector has order='cyclic'"),
    ({"convention": "official"}, "state_dict is for convention='paper', this injector has convention='official'"),
    ({"layers": "tensor"}, "state_dict is for 2 layers, this injector has 4"),
])
def test_load_state_dict_refuses_another_law_and_restores_sigma_and_seed(change, msg):
    from noisereg import NoiseInjector

    saved = NoiseInjector(_net(), 0.1, seed=7)
    with saved.perturb():
        pass
    sd = saved.state_dict()
    with pytest.raises(ValueError, match=re.escape(msg)):
        NoiseInjector(_net(), 0.1, seed=7, **change).load_state_dict(sd)
    fresh = NoiseInjector(_net(), 0.3, seed=1)
    fresh.load_state_dict(sd)
    assert (fresh.sigma, fresh.seed, fresh.step) == (0.1, 7, 1)


def test_load_state_dict_refuses_other_layer_names():
    from noisereg import NoiseInjector

    a = _net()
    b = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    b.add_module("extra", torch.nn.Identity())
    sd = NoiseInjector(a, 0.1, seed=0, layers=[("first", [a[0].weight, a[0].bias]), ("last", [a[2].weight])]).state_dict()
    other = NoiseInjector(b, 0.1, seed=0, layers=[("first", [b[0].weight, b[0].bias]), ("head", [b[2].weight])])
    with pytest.raises(ValueError, match="state_dict's layer 1 is 'last', this injector's is 'head'"):
        other.load_state_dict(sd)


@pytest.mark.parametrize("module", [torch.nn.Dropout(0.5), torch.nn.BatchNorm1d(8)], ids=["dropout", "batchnorm"])
def test_smoothed_risk_says_call_eval_first(module):
    from noisereg import smoothed_risk

    model = torch.nn.Sequential(torch.nn.Linear(4, 8), module, torch.nn.Linear(8, 1)).train()
    x, y = torch.randn(6, 4), torch.randn(6, 1)
    with pytest.raises(ValueError, match=r"call model.eval\(\) first|Call model.eval\(\) first"):
        smoothed_risk(model, x, y, sigma=0.1, num_samples=8)
    smoothed_risk(model.eval(), x, y, sigma=0.1, num_samples=8)


def test_class_labels_under_square_loss_say_which_loss_to_pass():
    from noisereg import ggn_trace, smoothed_risk

    model, x, y = _net(), torch.randn(5, 4), torch.tensor([0, 1, 1, 0, 1])
    for fn in (lambda: ggn_trace(model, x, y), lambda: smoothed_risk(model, x, y, sigma=0.1, num_samples=8)):
        with pytest.raises(ValueError, match=r"y holds integer class labels of shape \(5,\), but loss='square' needs "
                                             r"targets shaped like model\(x\), \(5, 2\): pass loss='cross_entropy'"):
            fn()
    assert ggn_trace(model, x, y, loss="cross_entropy") > 0


def test_a_model_too_large_for_memory_is_refused_before_allocating(tmp_path, capsys):
    from noisereg.sweep.memory import footprint

    code = main(["run", "fig3", "--preset", "smoke", "--out", str(tmp_path / "o"), "--quiet",
                 "--set", "hidden=100000000,100000000"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "fig3 gd-s0: the model has 10,000,007,600,000,010 parameters and needs about" in err and "GiB are free" in err
    assert not (tmp_path / "o").exists()
    mlp = lambda: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))  # noqa: E731
    params, need = footprint(mlp, (10, 2, 3))
    acts = 10 * (6 + 5 + 5 + 3)  # the leaves' outputs: flatten, linear, relu, linear
    assert params == 6 * 5 + 5 + 5 * 3 + 3 and need == (4 * params + 3 * acts) * 4


# ------------------------------------------------------------------------------------------------ show
def test_show_lists_settings_runs_and_data_without_running(tmp_path, capsys):
    assert main(["show", "fig3", "--preset", "smoke", "--set", "methods=gd,layer,sam", "--set", "seeds=0,1",
                 "--data", str(_npz(tmp_path / "d.npz"))]) == 0
    out = capsys.readouterr().out
    assert "  hidden = (32, 32)" in out and "  seeds = (0, 1)" in out
    assert "  layer-sigma0.1-s1: method layer, σ 0.1, seed 1, 6 gradient evaluations" in out
    assert "  sam-rho0.05-s0: method sam, ρ 0.05, seed 0, 12 gradient evaluations" in out   # SAM: its radius ρ
    assert "  sam_half-rho0.05-s0: method sam, ρ 0.05, seed 0, 6 gradient evaluations" in out
    assert "  x_train: shape (40, 6), float32" in out and "  y_test: shape (20,), int64" in out
    assert not list(tmp_path.glob("**/results.json")) and not (tmp_path / "runs").exists()
    assert main(["show", "fig3", "--set", "sigmas=-1"]) == 2 and "sigmas must be" in capsys.readouterr().err
    assert main(["show", "fig3", "--preset", "smoke"]) == 0 and "test: x (" in capsys.readouterr().out


def test_run_help_lists_every_preset(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    assert all(p in out for p in ("smoke", "cpu", "demo", "paper"))


# --------------------------------------------------------------------------------------------- stray labels
def _stray(y):
    y = y.copy()
    y[5] = 10   # one label 10 in 0..9 data; the test labels are 0..9
    return y


def test_a_stray_training_label_is_refused_in_one_line_naming_the_override(tmp_path, capsys):
    code, out = _run_cli(tmp_path, _npz(tmp_path / "d.npz", n=200, y_train=_stray))
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert ("y_train has 1 stray class(es), e.g. label 10 with 1 training example(s) (median 19 per class) and no "
            "test example: it makes a 11-class problem" in err and "--set train_only_classes=true" in err)
    assert not (out / "results.json").exists()


def test_the_override_keeps_the_stray_class_and_the_report_counts_it(tmp_path, capsys):
    code, out = _run_cli(tmp_path, _npz(tmp_path / "d.npz", n=200, y_train=_stray), "fig3", "--set", "methods=gd",
                         "--set", "train_only_classes=true")
    assert code == 0
    assert "; 11 classes (labels 0..10); preset `smoke`" in (out / "REPORT.md").read_text()
    clean, out2 = _run_cli(tmp_path / "b", _npz(tmp_path / "e.npz", n=200), "fig3", "--set", "methods=gd")
    assert clean == 0 and "; 10 classes (labels 0..9); preset `smoke`" in (out2 / "REPORT.md").read_text()


def test_show_gives_the_class_count_and_flags_a_stray_label(tmp_path, capsys):
    assert main(["show", "fig3", "--preset", "smoke", "--data", str(_npz(tmp_path / "d.npz", n=200, y_train=_stray))]) == 0
    text = capsys.readouterr().out
    assert "  classes: 11 (labels 0..10; training examples per class 1 to 20)" in text
    assert ("  STRAY LABEL: class 10 has 1 training example(s) (median 20) and no test example; `run` refuses it "
            "(fix the labels or --set train_only_classes=true)") in text
    assert main(["show", "fig3", "--preset", "smoke"]) == 0   # embedded digits
    assert "  classes: 10 (labels 0..9; " in capsys.readouterr().out


@pytest.mark.parametrize("train,test,stray", [
    ([0, 1, 2] * 10 + [3], [0, 1, 2], [(3, 1)]),       # one rare label absent from the test set: stray
    ([0, 1, 2] * 10 + [3], [0, 1, 2, 3], []),          # rare but in the test set: a real class
    ([0, 1, 2, 3] * 5, [0, 1], []),                    # absent from a small test set but common: not stray
], ids=["stray", "rare-in-test", "common-not-in-test"])
def test_stray_classes_rule(train, test, stray):
    from noisereg.data.validate import stray_classes

    assert stray_classes(torch.tensor(train), torch.tensor(test))[0] == stray
    s = Split(torch.rand(len(train), 2), torch.tensor(train), torch.rand(len(test), 2), torch.tensor(test), "x", 0)
    if stray:
        with pytest.raises(UserError, match=r"y_train has 1 stray class\(es\), e.g. label 3 with 1 training"):
            check_classification(s)
        assert check_classification(s, train_only_classes=True).y_train.tolist() == train
    else:
        check_classification(s)
