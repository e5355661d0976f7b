"""NoiseInjector with the PyTorch ecosystem: optimizers, schedulers, AMP, accumulation, compile."""

import copy

import pytest
import torch
from torch import nn

import noisereg as nr


def make_model(seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)).to(dtype)


def data(n=40, dtype=torch.float32, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g, dtype=dtype), torch.randn(n, 3, generator=g, dtype=dtype)


def sq_loss(out, y):
    return 0.5 * (out - y).pow(2).sum(1).mean()


OPTIMIZERS = {
    "SGD-momentum-wd": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True),
    "Adam": lambda p: torch.optim.Adam(p, lr=1e-2),
    "AdamW-amsgrad": lambda p: torch.optim.AdamW(p, lr=1e-2, amsgrad=True),
    "RMSprop": lambda p: torch.optim.RMSprop(p, lr=1e-3, momentum=0.5),
    "Adagrad": lambda p: torch.optim.Adagrad(p, lr=1e-2),
    "Adamax": lambda p: torch.optim.Adamax(p, lr=1e-2),
    "NAdam": lambda p: torch.optim.NAdam(p, lr=1e-2),
    "RAdam": lambda p: torch.optim.RAdam(p, lr=1e-2),
    "Adadelta": lambda p: torch.optim.Adadelta(p, lr=1.0),
    "ASGD": lambda p: torch.optim.ASGD(p, lr=1e-2),
    "Rprop": lambda p: torch.optim.Rprop(p, lr=1e-3),
}
SCHEDULERS = {
    "cosine": lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=6),
    "step": lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5),
    "onecycle": lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.05, total_steps=10),
}


# OneCycleLR cycles momentum, so it only pairs with optimizers that have momentum or betas
CASES = [(o, s) for o in sorted(OPTIMIZERS) for s in sorted(SCHEDULERS)
         if not (s == "onecycle" and o in {"Adagrad", "Rprop", "ASGD", "Adadelta"})]


@pytest.mark.parametrize("opt_name,sched", CASES, ids=[f"{o}-{s}" for o, s in CASES])
def test_any_optimizer_and_scheduler_steps_at_the_clean_point(opt_name, sched):
    """Noisy step == the optimizer's own update of the clean weights with the perturbed gradient."""
    x, y = data(dtype=torch.float64)
    noisy = make_model(dtype=torch.float64)
    ref = copy.deepcopy(noisy)
    opt_n, opt_r = OPTIMIZERS[opt_name](noisy.parameters()), OPTIMIZERS[opt_name](ref.parameters())
    sch_n, sch_r = SCHEDULERS[sched](opt_n), SCHEDULERS[sched](opt_r)
    inj = nr.NoiseInjector(noisy, 0.1, mode="layer", seed=0)
    for _ in range(6):
        opt_n.zero_grad()
        with inj.perturb():
            sq_loss(noisy(x), y).backward()
        grads = [p.grad.clone() for p in noisy.parameters()]
        opt_n.step()
        sch_n.step()
        for p, g in zip(ref.parameters(), grads):
            p.grad = g
        opt_r.step()
        sch_r.step()
    for p, q in zip(noisy.parameters(), ref.parameters()):
        assert torch.equal(p, q)


def test_autocast_bf16_with_grad_scaler():
    x, y = data()
    model = make_model()
    ref = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    inj = nr.NoiseInjector(model, 0.05, mode="full", seed=0)
    for _ in range(3):
        opt.zero_grad()
        with inj.perturb():
            w_noisy = [p.detach().clone() for p in model.parameters()]
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model(x)
                loss = sq_loss(out.float(), y)
            assert out.dtype == torch.bfloat16
            scaler.scale(loss).backward()
        w_clean = [p.detach().clone() for p in model.parameters()]
        # the gradient (unscaled) is the autocast gradient at the perturbed weights
        with torch.no_grad():
            for p, v in zip(ref.parameters(), w_noisy):
                p.copy_(v)
        ref.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ref_loss = sq_loss(ref(x).float(), y)
        ref_loss.backward()
        for p, q in zip(model.parameters(), ref.parameters()):
            torch.testing.assert_close(p.grad / scaler.get_scale(), q.grad, rtol=1e-6, atol=1e-8)
        scaler.step(opt)
        scaler.update()
        for p, w, g in zip(model.parameters(), w_clean, ref.parameters()):
            torch.testing.assert_close(p.detach(), w - 0.05 * g.grad, rtol=1e-6, atol=1e-7)


def test_gradient_accumulation_one_noise_per_step_equals_full_batch():
    """One perturb() around K micro-batches == one noisy full-batch step (the paper's algorithm)."""
    x, y = data(n=48, dtype=torch.float64)
    a = make_model(dtype=torch.float64)
    b = copy.deepcopy(a)
    oa, ob = torch.optim.SGD(a.parameters(), lr=0.1), torch.optim.SGD(b.parameters(), lr=0.1)
    ia = nr.NoiseInjector(a, 0.1, mode="full", seed=3)
    ib = nr.NoiseInjector(b, 0.1, mode="full", seed=3)
    for _ in range(5):
        oa.zero_grad()
        ob.zero_grad()
        with ia.perturb():
            sq_loss(a(x), y).backward()
        with ib.perturb():  # accumulate 4 micro-batches of 12 at ONE noise draw
            for xs, ys in zip(x.split(12), y.split(12)):
                (sq_loss(b(xs), ys) / 4).backward()
        oa.step()
        ob.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-13)


def test_gradient_accumulation_noise_per_micro_batch_differs():
    x, y = data(n=24)
    model = make_model()
    inj = nr.NoiseInjector(model, 0.1, mode="full", seed=0)
    seen = []
    for xs, ys in zip(x.split(8), y.split(8)):
        with inj.perturb():
            seen.append(model[0].weight.detach().clone())
            (sq_loss(model(xs), ys) / 3).backward()
    assert not torch.equal(seen[0], seen[1]) and not torch.equal(seen[1], seen[2])
    assert inj.step == 3


def test_torch_compile_model():
    x, y = data()
    eager = make_model()
    compiled = torch.compile(copy.deepcopy(eager), backend="aot_eager", dynamic=False)
    ie = nr.NoiseInjector(eager, 0.1, mode="layer", seed=0)
    ic = nr.NoiseInjector(compiled, 0.1, mode="layer", seed=0)
    assert [n for n, _ in ic.layers] == ["_orig_mod." + n for n, _ in ie.layers]
    oe, oc = torch.optim.SGD(eager.parameters(), lr=0.05), torch.optim.SGD(compiled.parameters(), lr=0.05)
    torch._dynamo.utils.counters.clear()
    for _ in range(6):
        for model, inj, opt in ((eager, ie, oe), (compiled, ic, oc)):
            opt.zero_grad()
            with inj.perturb():
                sq_loss(model(x), y).backward()
            opt.step()
    for p, q in zip(eager.parameters(), compiled.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    # the weight swap does not trigger recompilation: one frame compiled, no recompiles
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1  # 0 would mean it never compiled


def test_torch_compile_inductor():
    x, y = data()
    eager = make_model()
    compiled = torch.compile(copy.deepcopy(eager))
    ie, ic = (nr.NoiseInjector(m, 0.1, mode="full", seed=0) for m in (eager, compiled))
    for model, inj in ((eager, ie), (compiled, ic)):
        for _ in range(3):
            model.zero_grad()
            with inj.perturb():
                sq_loss(model(x), y).backward()
    for p, q in zip(eager.parameters(), compiled.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5)
