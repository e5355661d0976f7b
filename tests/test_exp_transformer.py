"""The transformer experiment (open question (c)): data, model, config rules, runs, selection, claims, resume."""

import json
import math

import pytest
import torch

from noisereg import NoiseInjector
from noisereg.data.modular import modular_addition
from noisereg.errors import UserError
from noisereg.sweep import EXPERIMENTS, run_experiment
from noisereg.experiments.transformer import steps_to
from noisereg.models.transformer import TinyTransformer
from noisereg.training import TrainSpec, train

EXP = EXPERIMENTS["transformer"]


# ------------------------------------------------------------------------------------ data
def test_modular_addition_labels_splits_and_seed():
    s = modular_addition(13, 0.4, 0.5, seed=3)
    x = torch.cat([s.x_train, s.x_val, s.x_test])
    y = torch.cat([s.y_train, s.y_val, s.y_test])
    assert (len(s.x_train), len(s.x_val), len(s.x_test)) == (68, 50, 51)
    assert sorted(map(tuple, x[:, :2].long().tolist())) == [(a, b) for a in range(13) for b in range(13)]
    assert torch.equal(y, (x[:, 0] + x[:, 1]).long() % 13) and bool((x[:, 2] == 13).all())  # "=" is token p
    again, other = modular_addition(13, 0.4, 0.5, seed=3), modular_addition(13, 0.4, 0.5, seed=4)
    assert torch.equal(again.x_val, s.x_val) and not torch.equal(other.x_val, s.x_val)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(p=1, train_fraction=0.5), UserError, "p must be an integer >= 2, got 1"),
    (dict(p=7.0, train_fraction=0.5), TypeError, "p must be an integer >= 2, got float"),
    (dict(p=7, train_fraction=0.5, seed=-1), UserError, "seed must be an integer >= 0, got -1"),
    (dict(p=7, train_fraction=1.0), UserError, r"train_fraction must be in \(0, 1\), got 1.0"),
    (dict(p=7, train_fraction=0.5, val_fraction=0.0), UserError, r"val_fraction must be in \(0, 1\), got 0.0"),
    (dict(p=7, train_fraction="half"), TypeError, "train_fraction must be a number"),
    (dict(p=2, train_fraction=0.9), UserError, "the validation split of p=2 .* is empty"),
], ids=["p-small", "p-float", "seed", "train-1", "val-0", "train-str", "empty-split"])
def test_modular_addition_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        modular_addition(**kwargs)


# ----------------------------------------------------------------------------------- model
def test_tiny_transformer_layers_are_its_projections_and_attention_is_causal():
    torch.manual_seed(0)
    model = TinyTransformer(vocab=8, seq_len=3, classes=7, d_model=16, heads=2, blocks=2)
    names = [name for name, _ in NoiseInjector(model, 0.1, mode="layer").layers]
    for proj in ("q", "k", "v", "o"):
        assert f"blocks.0.attn.{proj}" in names and f"blocks.1.attn.{proj}" in names
    assert {"embed", "pos", "blocks.0.ln1", "blocks.0.mlp.0", "ln", "unembed"} <= set(names)
    x = torch.tensor([[1.0, 2.0, 7.0]])
    changed_first = model(torch.tensor([[5.0, 2.0, 7.0]]))
    assert not torch.allclose(model(x), changed_first)  # the last position reads the first token
    h = model.embed(x.long()) + model.pos.weight
    first = model.blocks[0].attn(model.blocks[0].ln1(h))[:, 0]
    h2 = h.clone()
    h2[:, 2] += 1.0
    assert torch.allclose(model.blocks[0].attn(model.blocks[0].ln1(h2))[:, 0], first)  # no look-ahead


@pytest.mark.parametrize("kwargs,match", [
    (dict(d_model=10, heads=4), "d_model must be a multiple of heads, got d_model=10, heads=4"),
    (dict(blocks=0), "blocks must be an integer >= 1, got 0"),
    (dict(vocab=2.5), "vocab must be an integer >= 1, got 2.5"),
])
def test_tiny_transformer_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TinyTransformer(**{"vocab": 8, "seq_len": 3, "classes": 7, "d_model": 16, "heads": 2, **kwargs})


# ---------------------------------------------------------------------------------- config
@pytest.mark.parametrize("overrides,match", [
    ({"weight_decay": 0.1}, "weight_decay must be 0"),
    ({"dataset": "cifar10"}, "the data are generated"),
    ({"d_model": 30, "heads": 4}, "d_model must be a multiple of heads"),
    ({"methods": ("gd", "rwp")}, "methods must be"),
    ({"weight_decays": (0.0,)}, "weight_decays must be"),
    ({"train_fraction": 1.0}, "train_fraction must be"),
    ({"target_acc": 0.0}, "target_acc must be"),
], ids=["weight_decay", "dataset", "heads", "method", "wd-grid", "fraction", "target"])
def test_config_errors(overrides, match):
    with pytest.raises(UserError, match=match):
        EXP.config("smoke", overrides)


def test_own_data_only():
    with pytest.raises(UserError, match="uses its own synthetic data"):
        EXP.data(EXP.config("smoke"), "x.npz", None)


def test_runs_arms_optimizer_and_weight_decay():
    cfg = EXP.config("smoke")
    runs = {r.id: r for r in EXP.runs(cfg)}
    assert all(r.spec.optimizer == "adamw" for r in runs.values())
    gd, wd = runs["gd-s0"].spec, runs["wd1-s0"]
    assert (gd.method, gd.weight_decay) == ("gd", 0.0)
    assert (wd.spec.method, wd.spec.weight_decay, wd.spec.sigma, wd.params["arm"]) == ("gd", 1.0, 1.0, "wd")
    assert all(r.spec.weight_decay == 0 for r in runs.values() if r.params.get("arm") != "wd")
    assert runs["layer-sigma0.05-s1"].spec.layers == "module"
    half = runs["sam_half-rho0.05-s2"].spec
    assert half.epochs == cfg.epochs // 2 and half.log_every == cfg.epochs // 2
    assert len(runs) == len(cfg.seeds) * (1 + len(cfg.weight_decays) + 2 * len(cfg.sigmas) + 2 * len(cfg.rhos))


def test_adamw_decouples_weight_decay():
    from noisereg.training.loop import _make_optimizer

    model = torch.nn.Linear(2, 1)
    opt, _ = _make_optimizer(model, TrainSpec(optimizer="adamw", weight_decay=0.5, lr=0.1))
    assert type(opt) is torch.optim.AdamW and opt.defaults["weight_decay"] == 0.5


def test_curvature_is_logged_every_log_every_and_at_the_end():
    split = modular_addition(7, 0.5)
    spec = TrainSpec(optimizer="adamw", lr=1e-3, epochs=6, eval_every=2, log_every=4, trace_estimator="sampled",
                     log=("ggn_trace", "hessian_trace"), trace_points=8)
    rec = train(lambda: TinyTransformer(8, 3, 7, d_model=8, heads=2), split, spec)
    logged = [h["step"] for h in rec["history"] if "hessian_trace" in h]
    assert logged == [4, 6] and all("ggn_trace" in h for h in rec["history"] if h["step"] in logged)
    assert [h["step"] for h in rec["history"]] == [0, 2, 4, 6]


# ------------------------------------------------------------------- selection and claims
def _run(arm, sigma, seed, val, test, history=None, steps=100):
    method = {"wd": "gd", "sam_half": "sam"}.get(arm, arm)
    params = {"arm": arm} if arm in ("wd", "sam_half") else {}
    history = history or [{"step": 0, "train_acc": 0.0, "test_acc": 0.0}, {"step": steps, "train_acc": 1.0,
                                                                            "test_acc": test}]
    return {"id": f"{arm}-{sigma}-{seed}", "variant": "", "method": method, "sigma": sigma, "seed": seed,
            "params": params, "diverged": False, "history": history, "grad_evals": steps,
            "final": {"val_acc": val, "test_acc": test, "hessian_trace": 10.0 - test, "ggn_trace": 9.0}}


def _results(runs):
    cfg = json.loads(json.dumps(EXP.config("smoke").__dict__))
    return {"experiment": "transformer", "preset": "smoke", "config": cfg, "data": "x",
            "sizes": {"train": 60, "val": 30, "test": 31}, "runs": runs}


def test_selection_is_on_validation_and_every_row_is_measured():
    runs = []
    for seed, d in enumerate((-0.01, 0.0, 0.01)):
        runs += [_run("gd", 0.0, seed, 0.2 + d, 0.2 + d),
                 _run("wd", 0.1, seed, 0.9 + d, 0.5 + d), _run("wd", 1.0, seed, 0.5 + d, 0.99 + d),  # test favours 1.0
                 _run("layer", 0.05, seed, 0.6 + d, 0.6 - d), _run("full", 0.05, seed, 0.3, 0.3 + d)]
    res = _results(runs)
    assert EXP.selected(res) == {"full": 0.05, "layer": 0.05, "wd": 0.1}  # λ = 0.1: best on validation
    rows = EXP.claims(res)
    assert rows and {r["verdict"] for r in rows} == {"measured"}
    wd_row = next(r for r in rows if r["claim"].startswith("wd (λ=0.1) raises test accuracy"))
    assert "wd 50.00" in wd_row["ours"] and "paired d̄ = +30.00 pts" in wd_row["ours"]
    notes = "\n".join(EXP.notes(res))
    assert "| wd | 0.1 |" in notes and "30 validate and 31 test" in notes


def test_steps_to_target_first_evaluation_and_budget():
    hist = lambda accs: [{"step": 50 * i, "test_acc": a, "train_acc": 1.0} for i, a in enumerate(accs)]  # noqa: E731
    runs = [_run("wd", 1.0, 0, 0.9, 0.97, history=hist([0.0, 0.5, 0.96, 0.94, 0.97])),
            _run("wd", 1.0, 1, 0.9, 0.94, history=hist([0.0, 0.2, 0.4, 0.6, 0.94])),
            _run("wd", 1.0, 2, 0.9, 0.95, history=hist([0.0, 0.95, 0.9, 0.9, 0.95])),
            _run("gd", 0.0, 0, 0.1, 0.1, history=hist([0.0, 0.1, 0.1, 0.1, 0.1]))]
    runs.append(dict(_run("gd", 0.0, 1, 0.1, 0.1, history=hist([0.0] * 5)), diverged=True))
    steps, reached = steps_to(_results(runs))
    assert steps[("wd", 1.0)].values == {0: 100.0, 1: 200.0, 2: 50.0}
    assert reached[("wd", 1.0)] == {0: True, 1: False, 2: True}
    assert steps[("gd", 0.0)].values[0] == 200.0 and math.isnan(steps[("gd", 0.0)].values[1])
    assert reached[("gd", 0.0)] == {0: False, 1: False}
    rows = EXP.claims(_results(runs))
    assert "2/3 seeds within 200 steps (by seed: 100, ≥ 200, 50)" in next(r["ours"] for r in rows if "wd reaches" in r["claim"])
    memo, _ = steps_to(_results(runs), "train_acc", 0.99)
    assert memo[("wd", 1.0)].values[0] == 0.0


# ------------------------------------------------------------------------ end to end, resume
def test_smoke_same_seed_same_numbers_and_resume(tmp_path):
    over = {"methods": ("gd", "layer"), "seeds": (0,), "epochs": 6, "eval_every": 2, "log_every": 6,
            "checkpoint_every": 2}
    ref = run_experiment(EXP, "smoke", tmp_path / "ref", overrides=over, show_progress=False)
    calls = []

    class Killed(Exception):
        pass

    def kill(epoch):  # dies in the second run (layer), after its epoch-4 checkpoint
        calls.append(epoch)
        if len(calls) == over["epochs"] + 4:
            raise Killed

    with pytest.raises(Killed):
        run_experiment(EXP, "smoke", tmp_path / "run", overrides=over, show_progress=False, callback=kill)
    got = run_experiment(EXP, "smoke", tmp_path / "run", overrides=over, show_progress=False, resume=True)
    assert [r["id"] for r in got["runs"]] == [r["id"] for r in ref["runs"]] == ["gd-s0", "layer-sigma0.05-s0"]
    for a, b in zip(got["runs"], ref["runs"]):
        assert a["final"] == b["final"] and a["history"] == b["history"]
    assert "hessian_trace" in ref["runs"][0]["final"] and "ggn_trace" in ref["runs"][0]["final"]
