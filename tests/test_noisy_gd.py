"""The theory experiments' driver: lr schedules, iterate averaging, checkpoints and exact resume."""

from __future__ import annotations

import math

import pytest
import torch

import noisereg as nr
from noisereg.training import load_checkpoint, run_noisy_gd
from noisereg.training.noisy_gd import SCHEDULES, every

DT = torch.float64


class Killed(Exception):
    """Raised by a callback to interrupt a run right after a checkpoint."""


# ----------------------------------------------------------------------------------- schedules
def test_constant_schedule():
    assert [SCHEDULES["constant"](t, 10, 0.3, None) for t in (0, 5, 10)] == [0.3, 0.3, 0.3]


@pytest.mark.parametrize("name", ["geometric", "harmonic"])
def test_decaying_schedules_hold_then_decay_to_lr_final(name):
    rate = SCHEDULES[name]
    lrs = [rate(t, 100, 0.5, 0.005) for t in range(101)]
    assert lrs[:50] == [0.5] * 50                               # constant over the first half
    assert all(a > b for a, b in zip(lrs[50:], lrs[51:]))       # strictly decreasing over the second
    assert math.isclose(lrs[100], 0.005, rel_tol=1e-12)         # ends at lr_final


def test_schedule_values_in_the_second_half():
    """Geometric: η (η_T/η)^(2t/T − 1); harmonic: η / (1 + (t − T/2)(η/η_T − 1)/(T/2))."""
    assert math.isclose(SCHEDULES["geometric"](75, 100, 1.0, 0.01), 0.1, rel_tol=1e-12)
    assert math.isclose(SCHEDULES["harmonic"](75, 100, 1.0, 0.1), 1 / 5.5, rel_tol=1e-12)


def test_every():
    assert every(4, 10) == [0, 4, 8, 10] and every(5, 10) == [0, 5, 10]


# ---------------------------------------------------- plain GD on a quadratic: exact iterates
def _quadratic(w0=(1.0, -2.0)):
    w = torch.nn.Parameter(torch.tensor(w0, dtype=DT))
    model = torch.nn.ParameterList([w])
    return model, w, lambda: 0.5 * w.pow(2).sum()            # w_{t+1} = (1 − η_t) w_t


@pytest.mark.parametrize("schedule", ["constant", "geometric", "harmonic"])
def test_updates_use_the_schedule_and_average_the_last_iterates(schedule):
    model, w, loss = _quadratic()
    steps, lr, lr_final, a = 40, 0.1, 0.01, 0.75
    inj = nr.NoiseInjector(model, sigma=0.0, mode="full", seed=0)        # σ = 0: plain GD
    out = run_noisy_gd(model, inj, loss, steps=steps, lr=lr, schedule=schedule, lr_final=lr_final,
                       average=lambda: w.clone(), average_from=a, eval_steps=[0, 20, 40],
                       evaluate=lambda t, avg: {"w0": float(w[0])})
    rate = SCHEDULES[schedule]
    iterates = [torch.tensor([1.0, -2.0], dtype=DT)]
    for t in range(steps):
        iterates.append(iterates[-1] * (1 - rate(t, steps, lr, lr_final)))
    torch.testing.assert_close(w.detach(), iterates[-1], rtol=1e-14, atol=0)
    first = int(a * steps)                                   # the iterates after updates t >= 30
    torch.testing.assert_close(out["average"], torch.stack(iterates[first + 1:]).mean(0), rtol=1e-14, atol=0)
    assert [h["step"] for h in out["history"]] == [0, 20, 40]
    assert [h["lr"] for h in out["history"]] == [rate(t, steps, lr, lr_final) for t in (0, 20, 40)]
    assert [h["w0"] for h in out["history"]] == pytest.approx([float(iterates[t][0]) for t in (0, 20, 40)],
                                                                 rel=1e-14)


def test_running_average_is_passed_to_evaluate():
    model, w, loss = _quadratic()
    inj = nr.NoiseInjector(model, sigma=0.0, mode="full", seed=0)
    seen = {}

    def evaluate(t, avg):
        seen[t] = avg
        return {}

    run_noisy_gd(model, inj, loss, steps=10, lr=0.1, average=lambda: w.clone(), average_from=0.5,
                 eval_steps=every(1, 10), evaluate=evaluate)
    assert all(seen[t] is None for t in range(6)) and all(seen[t] is not None for t in range(6, 11))


# ------------------------------------------------------------------------------------- resume
def _net_run(checkpoint=None, resume=False, callback=None, steps=60):
    """Noisy GD, layer-wise noise in random order, on a small two-layer tanh net (float64)."""
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(16, 3, generator=g, dtype=DT), torch.randn(16, 1, generator=g, dtype=DT)
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()
    inj = nr.NoiseInjector(net, sigma=0.1, mode="layer", seed=3)
    out = run_noisy_gd(net, inj, lambda: 0.5 * (net(X) - y).pow(2).mean(), steps=steps, lr=0.05,
                       schedule="geometric", lr_final=0.005,
                       average=lambda: torch.nn.utils.parameters_to_vector(net.parameters()), average_from=0.3,
                       evaluate=lambda t, avg: {"loss": float(0.5 * (net(X) - y).pow(2).mean())},
                       eval_steps=every(10, steps), checkpoint=checkpoint, resume=resume, callback=callback)
    return out, net, inj


@pytest.mark.parametrize("kill_at", [10, 20, 50], ids=lambda k: f"kill{k}")
def test_resume_equals_uninterrupted_bit_for_bit(tmp_path, kill_at):
    ref, ref_net, ref_inj = _net_run(tmp_path / "ref.pt")

    def kill(t):
        if t == kill_at:
            raise Killed

    with pytest.raises(Killed):
        _net_run(tmp_path / "run.pt", callback=kill)
    assert load_checkpoint(tmp_path / "run.pt")["step"] == kill_at
    out, net, inj = _net_run(tmp_path / "run.pt", resume=True)
    assert out["start"] == kill_at                        # resumed, not restarted
    assert out["history"] == ref["history"]
    assert torch.equal(out["average"], ref["average"])
    for p, q in zip(net.parameters(), ref_net.parameters()):
        assert torch.equal(p, q)
    a, b = inj.state_dict(), ref_inj.state_dict()
    assert a["step"] == b["step"] and torch.equal(a["selection_rng"], b["selection_rng"])
    assert all(torch.equal(s, r) for s, r in zip(a["noise_rng"], b["noise_rng"]))
    done, ref_done = load_checkpoint(tmp_path / "run.pt"), load_checkpoint(tmp_path / "ref.pt")
    assert done["count"] == ref_done["count"] and torch.equal(done["total"], ref_done["total"])
    assert done["optimizer"]["param_groups"] == ref_done["optimizer"]["param_groups"]


def test_resume_without_checkpoint_starts_fresh_and_resume_false_restarts(tmp_path):
    ref, _, _ = _net_run()
    out, _, _ = _net_run(tmp_path / "none.pt", resume=True)      # no file yet: a fresh run
    assert out["start"] == 0 and out["history"] == ref["history"]
    again, _, _ = _net_run(tmp_path / "none.pt", resume=False)   # a finished checkpoint is ignored
    assert again["start"] == 0 and again["history"] == ref["history"]
    finished, _, _ = _net_run(tmp_path / "none.pt", resume=True)  # resuming a finished run does no step
    assert finished["start"] == 60 and finished["history"] == ref["history"]


def test_resume_rejects_other_settings(tmp_path):
    _net_run(tmp_path / "run.pt")
    with pytest.raises(ValueError, match="was written with other settings"):
        _net_run(tmp_path / "run.pt", resume=True, steps=70)


# ---------------------------------------------------------------------------------- arguments
@pytest.mark.parametrize(("kwargs", "error", "match"), [
    (dict(steps=0), ValueError, "steps must be an integer >= 1, got 0"),
    (dict(steps=2.5), TypeError, "steps must be an integer >= 1, got 2.5"),
    (dict(lr=-0.1), ValueError, r"lr must be a finite number > 0, got -0.1"),
    (dict(schedule="cosine"), ValueError, r"schedule must be one of \['constant', 'geometric', 'harmonic'\]"),
    (dict(schedule="geometric"), TypeError, "lr_final must be a finite number > 0, got None"),
    (dict(average_from=1.0), ValueError, r"average_from must be a finite number in \[0, 1\), got 1.0"),
    (dict(eval_steps=[0, 11]), ValueError, r"eval_steps must be an integer in \[0, 10\], got 11"),
], ids=["steps", "steps-type", "lr", "schedule", "lr_final", "average_from", "eval_steps"])
def test_argument_errors(kwargs, error, match):
    model, _, loss = _quadratic()
    inj = nr.NoiseInjector(model, sigma=0.0, mode="full", seed=0)
    with pytest.raises(error, match=match):
        run_noisy_gd(model, inj, loss, **{"steps": 10, "lr": 0.1, **kwargs})
