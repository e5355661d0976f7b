"""Kill-and-resume: a run killed mid-way and resumed ends with the same numbers, bit for bit (CPU)."""

import json

import pytest

from noisereg.sweep import EXPERIMENTS, run_experiment


class Killed(Exception):
    pass


@pytest.mark.parametrize("name", ["fig3", "fig6"])
def test_kill_and_resume_gives_identical_results(name, tmp_path):
    exp = EXPERIMENTS[name]
    overrides = {"epochs": 4, "checkpoint_every": 1} if name == "fig3" else {"epochs": 3}
    run_experiment(exp, "smoke", tmp_path / "ref", overrides=overrides, show_progress=False)
    calls = []

    def kill(epoch):  # dies in the middle of the second run, after its epoch-2 checkpoint
        calls.append(epoch)
        if len(calls) == overrides["epochs"] + 2:
            raise Killed

    with pytest.raises(Killed):
        run_experiment(exp, "smoke", tmp_path / "run", overrides=overrides, show_progress=False, callback=kill)
    partial = json.loads((tmp_path / "run" / "results.json").read_text())
    assert len(partial["runs"]) == 1  # the first run was saved before the crash
    run_experiment(exp, "smoke", tmp_path / "run", overrides=overrides, show_progress=False, resume=True)
    ref = json.loads((tmp_path / "ref" / "results.json").read_text())["runs"]
    got = json.loads((tmp_path / "run" / "results.json").read_text())["runs"]
    assert [r["id"] for r in got] == [r["id"] for r in ref]
    for a, b in zip(got, ref):
        assert a["final"] == b["final"] and a["history"] == b["history"]


def test_amp_and_standin_data(tmp_path):
    from noisereg.data import load

    split = load("standin:fashion_mnist", n_train=64)
    assert tuple(split.x_train.shape) == (64, 1, 28, 28) and tuple(split.x_test.shape) == (10000, 1, 28, 28)
    assert split.num_classes == 10
    from noisereg.data.files import standin

    assert tuple(standin("cifar10", n_train=4, n_test=2).x_test.shape) == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="standin name must be one of"):
        standin("mnist")
    res = run_experiment(EXPERIMENTS["fig3"], "smoke", tmp_path, overrides={"amp": True}, show_progress=False)
    assert all(r["final"]["train_loss"] == r["final"]["train_loss"] for r in res["runs"])  # finite, not nan


def test_resume_refuses_a_checkpoint_of_other_settings(tmp_path):
    from noisereg.data import load_digits_split
    from noisereg.models import MLP
    from noisereg.training import TrainSpec, train

    d = load_digits_split(64)
    train(lambda: MLP(64, (8,), 10), d, TrainSpec(epochs=2), checkpoint=tmp_path / "c.pt")
    with pytest.raises(ValueError, match="was written for other settings"):
        train(lambda: MLP(64, (8,), 10), d, TrainSpec(epochs=3), checkpoint=tmp_path / "c.pt", resume=True)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        train(lambda: MLP(64, (8,), 10), d, TrainSpec(epochs=2), checkpoint=tmp_path / "bad.pt", resume=True)


@pytest.mark.parametrize("kwargs,match", [
    ({"method": "asam"}, r"method must be one of \('gd', 'full', 'layer', 'sam', 'rwp', 'mrwp', 'lpf', 'nso'\), got 'asam'"),
    ({"optimizer": "lbfgs"}, "optimizer must be"), ({"schedule": "step"}, "schedule must be"),
    ({"loss": "hinge"}, "loss must be"), ({"epochs": 0}, "epochs must be an integer >= 1, got 0"),
    ({"batch_size": 0}, "batch_size must be None or an integer >= 1"), ({"lr": 0.0}, "lr must be a finite number > 0"),
    ({"sigma": -1.0}, "sigma must be a finite number >= 0"), ({"eval_every": 0}, "eval_every must be an integer >= 1"),
    ({"log": ("foo",)}, "log must be a list, each item one of"), ({"momentum": 1.0}, r"momentum must be .* in \[0, 1\)"),
    ({"convention": "foo"}, "convention must be"), ({"trace_points": 0}, "trace_points must be None or"),
])
def test_train_spec_validation(kwargs, match):
    from noisereg.errors import UserError
    from noisereg.training import TrainSpec

    with pytest.raises(UserError, match=match):
        TrainSpec(**kwargs)


@pytest.mark.parametrize("kwargs,match", [({"epochs": 1.5}, "epochs must be an integer"), ({"lr": "fast"}, "lr must be"),
                                          ({"augment": 1}, "augment must be a boolean")], ids=["epochs", "lr", "augment"])
def test_train_spec_types(kwargs, match):
    from noisereg.training import TrainSpec

    with pytest.raises(TypeError, match=match):
        TrainSpec(**kwargs)


def test_sigma_schedule_and_noise_stop():
    from noisereg.training import TrainSpec
    from noisereg.training.loop import sigma_at

    spec = TrainSpec(method="layer", sigma=0.2, epochs=10, noise_stop_epoch=8, sigma_schedule="linear")
    assert [round(sigma_at(spec, e), 6) for e in (0, 5, 7, 8, 9)] == [0.2, 0.1, 0.06, 0.0, 0.0]
    cos = TrainSpec(method="full", sigma=0.2, epochs=4, sigma_schedule="cosine")
    assert sigma_at(cos, 0) == 0.2 and abs(sigma_at(cos, 2) - 0.1) < 1e-12
    with pytest.raises(ValueError, match="sigma_schedule must be"):
        TrainSpec(sigma_schedule="step")
