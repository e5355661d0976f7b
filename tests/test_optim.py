"""NoisyOptimizer: the closure convention, bit-identical to the three-line loop."""

import copy
import io
import warnings

import pytest
import torch
from torch import nn

import noisereg as nr
from _optim_models import closure_for, data, make_model, sq_loss


def three_line_loop(model, opt, inj, x, y, steps):
    for _ in range(steps):
        opt.zero_grad()
        with inj.perturb():
            sq_loss(model, x, y).backward()
        opt.step()


OPTS = {
    "SGD-momentum": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3),
    "Adam": lambda p: torch.optim.Adam(p, lr=1e-2),
    "AdamW-foreach": lambda p: torch.optim.AdamW(p, lr=1e-2, foreach=True),
}
CASES = [(o, m) for o in OPTS for m in ("full", "layer")]


@pytest.mark.parametrize("opt_name,mode", CASES, ids=[f"{o}-{m}" for o, m in CASES])
def test_step_with_closure_is_bit_identical_to_the_three_line_loop(opt_name, mode):
    x, y = data()
    ref, model = make_model(), make_model()
    opt_r = OPTS[opt_name](ref.parameters())
    three_line_loop(ref, opt_r, nr.NoiseInjector(ref, 0.1, mode=mode, seed=3), x, y, steps=8)
    opt = nr.NoisyOptimizer(OPTS[opt_name](model.parameters()), nr.NoiseInjector(model, 0.1, mode=mode, seed=3))
    for _ in range(8):
        loss = opt.step(closure_for(opt, model, x, y))
        assert loss.requires_grad and loss.dtype == torch.float64  # the closure's return value
    for p, q in zip(model.parameters(), ref.parameters()):
        assert torch.equal(p, q)


def test_gradient_is_taken_at_the_noisy_point_and_applied_at_the_clean_one():
    x, y = data()
    model = make_model()
    start = [p.detach().clone() for p in model.parameters()]
    inj = nr.NoiseInjector(model, 0.3, mode="full", seed=0)
    opt = nr.NoisyOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), inj)
    seen = []

    def closure():
        opt.zero_grad()
        seen.append([p.detach().clone() for p in model.parameters()])
        loss = sq_loss(model, x, y)
        loss.backward()
        return loss

    opt.step(closure)
    assert not any(torch.equal(s, w) for s, w in zip(seen[0], start))  # the closure saw w + noise
    # the update was applied to the clean start: w1 = w0 - lr * grad(w0 + noise)
    noisy = copy.deepcopy(model)
    with torch.no_grad():
        for p, s in zip(noisy.parameters(), seen[0]):
            p.copy_(s)
    sq_loss(noisy, x, y).backward()
    for p, w0, q in zip(model.parameters(), start, noisy.parameters()):
        torch.testing.assert_close(p, w0 - 0.1 * q.grad, rtol=0, atol=1e-15)


def test_step_without_closure_raises_and_says_why():
    model = make_model()
    opt = nr.NoisyOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), nr.NoiseInjector(model, 0.1, seed=0))
    with pytest.raises(TypeError, match="needs a closure.*perturbed weights"):
        opt.step()


def test_wrong_types_raise():
    model = make_model()
    opt, inj = torch.optim.SGD(model.parameters(), lr=0.1), nr.NoiseInjector(model, 0.1, seed=0)
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer, got NoiseInjector"):
        nr.NoisyOptimizer(inj, inj)
    with pytest.raises(TypeError, match="injector must be a noisereg.NoiseInjector, got int"):
        nr.NoisyOptimizer(opt, 3)


def test_param_groups_state_and_defaults_are_the_wrapped_optimizers():
    model = make_model()
    inner = torch.optim.Adam(model.parameters(), lr=1e-2)
    opt = nr.NoisyOptimizer(inner, nr.NoiseInjector(model, 0.1, seed=0))
    assert isinstance(opt, torch.optim.Optimizer)
    assert opt.param_groups is inner.param_groups and opt.state is inner.state and opt.defaults is inner.defaults
    x, y = data()
    opt.step(closure_for(opt, model, x, y))
    inner.load_state_dict(inner.state_dict())  # replaces inner's containers: the wrapper follows
    assert opt.param_groups is inner.param_groups and opt.state is inner.state
    opt.add_param_group({"params": [nn.Parameter(torch.zeros(3, dtype=torch.float64))], "lr": 0.5})
    assert len(inner.param_groups) == 2


@pytest.mark.parametrize("sched", ["step", "cosine", "lambda"])
def test_scheduler_on_the_wrapper_drives_the_real_learning_rate(sched):
    x, y = data()
    ref, model = make_model(), make_model()
    make_sched = {
        "step": lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.1),
        "cosine": lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=5),
        "lambda": lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda t: 1.0 / (1 + t)),
    }[sched]
    opt_r = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.5)
    sch_r, inj_r = make_sched(opt_r), nr.NoiseInjector(ref, 0.1, seed=4)
    inner = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    opt = nr.NoisyOptimizer(inner, nr.NoiseInjector(model, 0.1, seed=4))
    sch = make_sched(opt)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "scheduler.step() before optimizer.step()" warning
        for _ in range(6):
            three_line_loop(ref, opt_r, inj_r, x, y, steps=1)
            sch_r.step()
            opt.step(closure_for(opt, model, x, y))
            sch.step()
            assert inner.param_groups[0]["lr"] == opt_r.param_groups[0]["lr"]
    assert inner.param_groups[0]["lr"] < 0.1
    for p, q in zip(model.parameters(), ref.parameters()):
        assert torch.equal(p, q)


def test_state_dict_round_trip_resumes_optimizer_and_noise(tmp_path):
    x, y = data()
    full = make_model()
    opt_f = nr.NoisyOptimizer(torch.optim.Adam(full.parameters(), lr=1e-2), nr.NoiseInjector(full, 0.1, seed=5))
    for _ in range(6):
        opt_f.step(closure_for(opt_f, full, x, y))

    first = make_model()
    opt_1 = nr.NoisyOptimizer(torch.optim.Adam(first.parameters(), lr=1e-2), nr.NoiseInjector(first, 0.1, seed=5))
    for _ in range(3):
        opt_1.step(closure_for(opt_1, first, x, y))
    buf = io.BytesIO()
    torch.save({"model": first.state_dict(), "opt": opt_1.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    assert set(ckpt["opt"]) == {"optimizer", "injector"}

    second = make_model(seed=9)  # other weights, other seed: everything comes from the checkpoint
    opt_2 = nr.NoisyOptimizer(torch.optim.Adam(second.parameters(), lr=1e-2), nr.NoiseInjector(second, 0.1, seed=6))
    second.load_state_dict(ckpt["model"])
    opt_2.load_state_dict(ckpt["opt"])
    for _ in range(3):
        opt_2.step(closure_for(opt_2, second, x, y))
    for p, q in zip(second.parameters(), full.parameters()):
        assert torch.equal(p, q)


def test_load_state_dict_of_a_plain_optimizer_raises():
    model = make_model()
    inner = torch.optim.SGD(model.parameters(), lr=0.1)
    opt = nr.NoisyOptimizer(inner, nr.NoiseInjector(model, 0.1, seed=0))
    with pytest.raises(ValueError, match=r"lacks \['injector', 'optimizer'\]"):
        opt.load_state_dict(inner.state_dict())


def test_zero_grad_and_step_hooks_delegate():
    x, y = data()
    model = make_model()
    opt = nr.NoisyOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), nr.NoiseInjector(model, 0.1, seed=0))
    calls = []
    opt.register_step_pre_hook(lambda o, a, k: calls.append("pre"))
    opt.register_step_post_hook(lambda o, a, k: calls.append("post"))
    opt.step(closure_for(opt, model, x, y))
    assert calls == ["pre", "post"]
    assert all(p.grad is not None for p in model.parameters())
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_exception_in_closure_restores_the_weights():
    model = make_model()
    start = [p.detach().clone() for p in model.parameters()]
    opt = nr.NoisyOptimizer(torch.optim.SGD(model.parameters(), lr=0.1),
                            nr.NoiseInjector(model, 0.5, mode="full", seed=0))

    def closure():
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        opt.step(closure)
    assert all(torch.equal(p, s) for p, s in zip(model.parameters(), start))
