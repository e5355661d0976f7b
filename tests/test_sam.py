"""SAM / ASAM: one step against its definition in float64, exact restore, the wrapper's containers."""

import io
import math
import warnings

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad

import noisereg as nr
from _optim_models import closure_for, data, make_model, sq_loss


def sam_step_by_hand(model, x, y, rho, lr, adaptive):
    """w - lr * ∇L(w + ε), ε = ρ g/‖g‖ (ASAM: ρ T²g/‖Tg‖, T = |w|), from torch.func alone."""
    w = {k: v.detach().clone() for k, v in model.named_parameters()}
    loss = lambda p: 0.5 * (functional_call(model, p, (x,)) - y).pow(2).sum(1).mean()  # noqa: E731
    g = grad(loss)(w)
    t = {k: w[k].abs() if adaptive else torch.ones_like(w[k]) for k in w}
    norm = math.sqrt(sum(float((t[k] * g[k]).pow(2).sum()) for k in w))
    eps = {k: rho * t[k] ** 2 * g[k] / norm for k in w}
    g_adv = grad(loss)({k: w[k] + eps[k] for k in w})
    return {k: w[k] - lr * g_adv[k] for k in w}, {k: w[k] + eps[k] for k in w}


@pytest.mark.parametrize("adaptive", [False, True], ids=["SAM", "ASAM"])
def test_one_step_matches_its_definition_in_float64(adaptive):
    x, y = data()
    model = make_model()
    want, perturbed = sam_step_by_hand(model, x, y, rho=0.3, lr=0.1, adaptive=adaptive)
    sam = nr.SAM(torch.optim.SGD(model.parameters(), lr=0.1), rho=0.3, adaptive=adaptive)
    seen = []
    loss = sam.step(closure_for(sam, model, x, y, seen))
    assert len(seen) == 2  # two gradient evaluations per step
    for (k, p), s in zip(model.named_parameters(), seen[1]):
        torch.testing.assert_close(s, perturbed[k], rtol=0, atol=1e-14)  # the closure saw w + ε
        torch.testing.assert_close(p.detach(), want[k], rtol=0, atol=1e-14)
    torch.testing.assert_close(loss, sq_loss(make_model(), x, y), rtol=0, atol=0)  # the loss at w


def test_sam_and_asam_differ_and_rho_zero_is_the_wrapped_optimizer():
    x, y = data()
    models = {a: make_model() for a in ("sgd", "sam", "asam", "rho0")}
    opts = {"sgd": torch.optim.SGD(models["sgd"].parameters(), lr=0.1),
            "sam": nr.SAM(torch.optim.SGD(models["sam"].parameters(), lr=0.1), rho=0.2),
            "asam": nr.SAM(torch.optim.SGD(models["asam"].parameters(), lr=0.1), rho=0.2, adaptive=True),
            "rho0": nr.SAM(torch.optim.SGD(models["rho0"].parameters(), lr=0.1), rho=0.0)}
    for k, opt in opts.items():
        opt.step(closure_for(opt, models[k], x, y))
    w = {k: torch.cat([p.detach().flatten() for p in m.parameters()]) for k, m in models.items()}
    assert torch.equal(w["rho0"], w["sgd"])
    assert not torch.allclose(w["sam"], w["sgd"]) and not torch.allclose(w["sam"], w["asam"])


def test_weights_are_restored_exactly_before_the_update():
    """With lr = 0 the step leaves w bit-identical (ε removed from a saved copy, not subtracted)."""
    x, y = data()
    model = make_model()
    start = [p.detach().clone() for p in model.parameters()]
    sam = nr.SAM(torch.optim.SGD(model.parameters(), lr=0.0), rho=0.37)
    for _ in range(3):
        sam.step(closure_for(sam, model, x, y))
    assert all(torch.equal(p, s) for p, s in zip(model.parameters(), start))


def test_exception_in_the_second_closure_restores_the_weights():
    x, y = data()
    model = make_model()
    start = [p.detach().clone() for p in model.parameters()]
    sam = nr.SAM(torch.optim.SGD(model.parameters(), lr=0.1), rho=0.5)
    calls = []

    def closure():
        calls.append(1)
        if len(calls) == 2:
            raise KeyError("boom")
        return closure_for(sam, model, x, y)()

    with pytest.raises(KeyError, match="boom"):
        sam.step(closure)
    assert all(torch.equal(p, s) for p, s in zip(model.parameters(), start))


def test_zero_gradient_gives_no_perturbation():
    model = nn.Linear(3, 1, bias=False).double()
    nn.init.zeros_(model.weight)
    sam = nr.SAM(torch.optim.SGD(model.parameters(), lr=0.1), rho=0.5)
    seen = []
    x, y = torch.randn(4, 3, dtype=torch.float64), torch.zeros(4, 1, dtype=torch.float64)
    sam.step(closure_for(sam, model, x, y, seen))
    assert torch.equal(seen[1][0], torch.zeros(1, 3, dtype=torch.float64)) and torch.isfinite(model.weight).all()


@pytest.mark.parametrize("sched", ["step", "cosine"])
def test_scheduler_on_the_wrapper_drives_the_real_learning_rate(sched):
    model = make_model()
    inner = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    sam = nr.SAM(inner, rho=0.05)
    s = (torch.optim.lr_scheduler.StepLR(sam, step_size=2, gamma=0.1) if sched == "step"
         else torch.optim.lr_scheduler.CosineAnnealingLR(sam, T_max=5))
    x, y = data()
    lrs = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "scheduler.step() before optimizer.step()" warning
        for _ in range(4):
            sam.step(closure_for(sam, model, x, y))
            s.step()
            lrs.append(inner.param_groups[0]["lr"])
    assert sam.param_groups is inner.param_groups and sam.state is inner.state and sam.defaults is inner.defaults
    ref = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    s_ref = (torch.optim.lr_scheduler.StepLR(ref, step_size=2, gamma=0.1) if sched == "step"
             else torch.optim.lr_scheduler.CosineAnnealingLR(ref, T_max=5))
    want = []
    for _ in range(4):
        ref.step()
        s_ref.step()
        want.append(ref.param_groups[0]["lr"])
    assert lrs == want and lrs[-1] < 0.1


def test_state_dict_round_trip_with_weights_only():
    x, y = data()
    full = make_model()
    sam_f = nr.SAM(torch.optim.Adam(full.parameters(), lr=1e-2), rho=0.1, adaptive=True)
    for _ in range(6):
        sam_f.step(closure_for(sam_f, full, x, y))

    first = make_model()
    sam_1 = nr.SAM(torch.optim.Adam(first.parameters(), lr=1e-2), rho=0.1, adaptive=True)
    for _ in range(3):
        sam_1.step(closure_for(sam_1, first, x, y))
    buf = io.BytesIO()
    torch.save({"model": first.state_dict(), "opt": sam_1.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    assert set(ckpt["opt"]) == {"optimizer", "rho", "adaptive"}

    second = make_model(seed=9)
    sam_2 = nr.SAM(torch.optim.Adam(second.parameters(), lr=1e-2), rho=0.7)  # ρ and ASAM come from the checkpoint
    second.load_state_dict(ckpt["model"])
    sam_2.load_state_dict(ckpt["opt"])
    assert (sam_2.rho, sam_2.adaptive) == (0.1, True)
    for _ in range(3):
        sam_2.step(closure_for(sam_2, second, x, y))
    for p, q in zip(second.parameters(), full.parameters()):
        assert torch.equal(p, q)


def test_errors():
    model = make_model()
    inner = torch.optim.SGD(model.parameters(), lr=0.1)
    sam = nr.SAM(inner)
    with pytest.raises(TypeError, match="needs a closure.*perturbed weights"):
        sam.step()
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer, got Linear"):
        nr.SAM(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="rho must be a finite number >= 0, got -0.1"):
        nr.SAM(inner, rho=-0.1)
    with pytest.raises(ValueError, match="rho must be a finite number >= 0, got inf"):
        nr.SAM(inner, rho=math.inf)
    with pytest.raises(TypeError, match="rho must be a real number, got str"):
        nr.SAM(inner, rho="0.1")
    with pytest.raises(TypeError, match="adaptive must be a bool, got int"):
        nr.SAM(inner, adaptive=1)
    with pytest.raises(ValueError, match=r"lacks \['adaptive', 'rho'\]"):
        sam.load_state_dict(inner.state_dict() | {"optimizer": {}})


# ------------------------------------------------------------ method "sam" in the training loop
def _split(seed=0):
    from noisereg.data import Split

    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(48, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (48,), generator=g)
    return Split(x[:32], y[:32], x[32:], y[32:], name="toy", seed=seed)


def _train(method, sigma, **kw):
    from noisereg.training import TrainSpec, train

    spec = TrainSpec(method=method, sigma=sigma, seed=0, epochs=4, lr=0.1, momentum=0.5, batch_size=16,
                     eval_every=2, **kw)
    return train(lambda: nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3)).double(), _split(), spec)


def test_training_method_sam_steps_with_nr_sam_and_counts_two_gradients_per_step():
    gd, sam, sam0 = _train("gd", 0.0), _train("sam", 0.2), _train("sam", 0.0)
    assert sam["final"]["train_loss"] != gd["final"]["train_loss"]
    assert sam0["final"] == gd["final"]  # ρ = 0: the wrapped optimizer's step, bit for bit
    assert (gd["grad_evals_per_step"], gd["grad_evals"]) == (1, 8)  # 4 epochs × 2 minibatches
    assert (sam["grad_evals_per_step"], sam["grad_evals"]) == (2, 16)
    assert sam["sigma"] == 0.2 and "reg_loss" not in sam["final"]


def test_fig3_smoke_runs_gd_layer_and_sam(tmp_path):
    import json

    from noisereg.cli import main

    out = tmp_path / "o"
    assert main(["run", "fig3", "--preset", "smoke", "--set", "methods=gd,layer,sam", "--out", str(out), "--quiet"]) == 0
    from noisereg.verdicts import arm

    runs = {arm(r): r for r in json.loads((out / "results.json").read_text())["runs"]}
    assert set(runs) == {"gd", "layer", "sam", "sam_half"}
    assert runs["sam"]["grad_evals"] == 2 * runs["gd"]["grad_evals"] > 0
    assert runs["sam_half"]["grad_evals"] == runs["gd"]["grad_evals"]  # half the steps: equal compute
    assert runs["sam"]["final"]["train_loss"] != runs["gd"]["final"]["train_loss"]


def test_training_method_sam_resumes_bit_identically(tmp_path):
    from noisereg.training import TrainSpec, train

    spec = TrainSpec(method="sam", sigma=0.2, seed=1, epochs=4, lr=0.1, momentum=0.5, batch_size=16,
                     sigma_schedule="linear", checkpoint_every=1)
    make = lambda: nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3)).double()  # noqa: E731
    ref = train(make, _split(), spec)

    def kill(epoch):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(make, _split(), spec, checkpoint=tmp_path / "c.pt", callback=kill)
    got = train(make, _split(), spec, checkpoint=tmp_path / "c.pt", resume=True)
    assert got["history"] == ref["history"] and got["grad_evals"] == ref["grad_evals"] == 16
