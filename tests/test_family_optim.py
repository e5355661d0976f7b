"""NoisyOptimizer with several evaluations per step (samples, antithetic pairs, clean weight) and the
injector's negated draw: each checked against a direct computation at the captured perturbed points."""

import dataclasses

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import noisereg as nr


def _setup(mode="full", seed=0):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
    x, y = torch.randn(10, 3, dtype=torch.float64), torch.randn(10, 2, dtype=torch.float64)
    inj = nr.NoiseInjector(model, sigma=0.2, mode=mode, seed=seed)
    return model, x, y, inj


def _loss(model, x, y):
    return 0.5 * (model(x) - y).pow(2).sum(1).mean()


@pytest.mark.parametrize("mode", ["full", "layer"])
def test_negated_perturbation_is_minus_the_same_draw(mode):
    model, *_, inj = _setup(mode)
    clean = [p.detach().clone() for p in model.parameters()]
    state = inj.state_dict()
    with inj.perturb():
        plus = [p.detach().clone() for p in model.parameters()]
    layer = inj.last_layer
    inj.load_state_dict(state)
    with inj.perturb(negate=True):
        minus = [p.detach().clone() for p in model.parameters()]
    assert inj.last_layer == layer and inj.step == 1
    for c, a, b in zip(clean, plus, minus):
        torch.testing.assert_close(a - c, c - b, rtol=0, atol=1e-15)
    assert all(torch.equal(c, p) for c, p in zip(clean, model.parameters()))


@pytest.mark.parametrize("samples,antithetic,clean_weight", [(3, False, 0.0), (2, True, 0.0), (1, True, 0.5),
                                                              (2, False, 0.25)])
def test_step_uses_the_weighted_mean_of_the_gradients_at_the_captured_points(samples, antithetic, clean_weight):
    model, x, y, inj = _setup()
    opt = nr.NoisyOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), inj, samples=samples,
                            antithetic=antithetic, clean_weight=clean_weight)
    seen = []

    def closure():
        opt.zero_grad()
        seen.append([p.detach().clone() for p in model.parameters()])
        loss = _loss(model, x, y)
        loss.backward()
        return loss

    start = [p.detach().clone() for p in model.parameters()]
    loss = opt.step(closure)
    evals = samples * (2 if antithetic else 1)
    assert len(seen) == evals + (clean_weight > 0) == opt.grad_evals_per_step
    assert inj.step == samples                                  # draws, not evaluations
    ref = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()

    def grad_at(point):
        with torch.no_grad():
            for q, v in zip(ref.parameters(), point):
                q.copy_(v)
        ref.zero_grad()
        value = _loss(ref, x, y)
        value.backward()
        return [q.grad.clone() for q in ref.parameters()], value.item()

    grads = [grad_at(pt) for pt in seen]
    noisy = grads[:evals]
    mean = [sum(g[0][i] for g in noisy) / evals for i in range(len(start))]
    if clean_weight > 0:
        torch.testing.assert_close(seen[-1], start, rtol=0, atol=0)   # the last evaluation is at the clean weights
        mean = [clean_weight * c + (1 - clean_weight) * m for c, m in zip(grads[-1][0], mean)]
    for p, s, g in zip(model.parameters(), start, mean):
        torch.testing.assert_close(p.detach(), s - 0.1 * g, rtol=1e-12, atol=1e-14)
    assert float(loss) == pytest.approx(sum(v for _, v in noisy) / evals, rel=1e-12)
    if antithetic:
        for a, b, c in zip(seen[0], seen[1], start):
            torch.testing.assert_close(a - c, c - b, rtol=0, atol=1e-15)


def test_one_antithetic_step_on_a_quadratic_is_a_clean_step():
    """Quadratic loss: the gradient is affine in w, so ½(g(w+ξ) + g(w−ξ)) = g(w): within 1e-12 (float64)."""
    torch.manual_seed(1)
    A = torch.randn(6, 6, dtype=torch.float64)
    A = A @ A.T + torch.eye(6, dtype=torch.float64)
    b = torch.randn(6, dtype=torch.float64)
    w1 = torch.nn.Parameter(torch.randn(6, dtype=torch.float64))
    w2 = torch.nn.Parameter(w1.detach().clone())
    quad = lambda w: 0.5 * w @ A @ w - b @ w  # noqa: E731
    inj = nr.NoiseInjector([w1], sigma=0.7, mode="full", seed=3)
    noisy = nr.NoisyOptimizer(torch.optim.SGD([w1], lr=0.05), inj, antithetic=True)
    clean = torch.optim.SGD([w2], lr=0.05)

    def closure():
        noisy.zero_grad()
        loss = quad(w1)
        loss.backward()
        return loss

    noisy.step(closure)
    clean.zero_grad()
    quad(w2).backward()
    clean.step()
    torch.testing.assert_close(w1.detach(), w2.detach(), rtol=0, atol=1e-12)
    assert inj.step == 1


@pytest.mark.parametrize("kwargs,error,match", [
    ({"samples": 0}, ValueError, "samples must be an integer >= 1"),
    ({"samples": 1.5}, TypeError, "samples must be an integer"),
    ({"antithetic": 1}, TypeError, "antithetic must be True or False"),
    ({"clean_weight": 1.5}, ValueError, r"clean_weight must be a number in \[0, 1\)"),
    ({"clean_weight": -0.1}, ValueError, r"clean_weight must be a number in \[0, 1\)"),
])
def test_noisy_optimizer_settings_are_checked(kwargs, error, match):
    model, *_, inj = _setup()
    with pytest.raises(error, match=match):
        nr.NoisyOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), inj, **kwargs)


def test_the_default_step_is_unchanged():
    """samples=1, no antithetic, no clean weight: one evaluation, the closure's gradient stepped on as before."""
    model, x, y, inj = _setup()
    opt = nr.NoisyOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), inj)
    assert opt.grad_evals_per_step == 1
    m2, _, _, inj2 = _setup()
    start = [p.detach().clone() for p in m2.parameters()]

    def closure():
        opt.zero_grad()
        loss = _loss(model, x, y)
        loss.backward()
        return loss

    opt.step(closure)
    with inj2.perturb():
        _loss(m2, x, y).backward()
    for p, q, s in zip(model.parameters(), m2.parameters(), start):
        torch.testing.assert_close(p.detach(), s - 0.1 * q.grad, rtol=0, atol=1e-15)


# ------------------------------------------------------------------ NoiseInjector(scale=, exclude=, restore=)


def _net():
    torch.manual_seed(2)
    return torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2)).double()


def _deltas(inj, model):
    clean = [p.detach().clone() for p in model.parameters()]
    with inj.perturb():
        noisy = [p.detach().clone() for p in model.parameters()]
    return [n - c for n, c in zip(noisy, clean)], clean


@pytest.mark.parametrize("mode", ["full", "layer"])
def test_filter_and_element_scales_multiply_the_same_draw(mode):
    """The same seed draws the same z: filter noise = z·σ·‖w_row‖ (‖w‖ for a 1-d parameter), element = z·σ·|w|."""
    m0, m1, m2 = _net(), _net(), _net()
    base = nr.NoiseInjector(m0, sigma=0.1, mode=mode, seed=4)
    filt = nr.NoiseInjector(m1, sigma=0.1, mode=mode, seed=4, scale="filter")
    elem = nr.NoiseInjector(m2, sigma=0.1, mode=mode, seed=4, scale="element")
    for _ in range(4):
        d0, clean = _deltas(base, m0)
        d1, _ = _deltas(filt, m1)
        d2, _ = _deltas(elem, m2)
        assert base.last_layer == filt.last_layer == elem.last_layer
        for a, b, c, w in zip(d0, d1, d2, clean):
            row = w.flatten(1).norm(dim=1).view(-1, *[1] * (w.dim() - 1)) if w.dim() >= 2 else w.norm()
            torch.testing.assert_close(b, a * row, rtol=1e-12, atol=1e-15)
            torch.testing.assert_close(c, a * w.abs(), rtol=1e-12, atol=1e-15)


def test_filter_noise_has_the_stated_std_per_row():
    """Monte Carlo: each row's per-entry std is σ‖w_row‖ within 4 standard errors (2000 draws)."""
    model = _net()
    inj = nr.NoiseInjector(model, sigma=0.05, mode="full", seed=0, scale="filter")
    w = model[0].weight.detach().clone()
    draws = torch.stack([_deltas(inj, model)[0][0] for _ in range(2000)])   # (2000, 5, 3)
    std = draws.std(0).mean(1)                                             # per row
    expected = 0.05 * w.norm(dim=1)
    se = expected / (2 * 2000 * 3) ** 0.5                                   # std of a sample std, pooled over 3 entries
    assert ((std - expected).abs() < 4 * se).all()


def test_exclude_by_name_and_by_predicate():
    model = _net()
    inj = nr.NoiseInjector(model, sigma=0.1, mode="layer", exclude="bias", seed=0)
    assert inj.law.num_layers == 2 and all(p.dim() == 2 for p in inj.law.params)
    for _ in range(4):
        d, _ = _deltas(inj, model)
        assert torch.equal(d[1], torch.zeros_like(d[1])) and torch.equal(d[3], torch.zeros_like(d[3]))
    only_first = nr.NoiseInjector(model, sigma=0.1, mode="layer", exclude=lambda name, p: name.startswith("2."))
    assert only_first.law.num_layers == 1 and only_first.law.std == pytest.approx(0.1)      # M = 1: σ√1
    assert nr.NoiseInjector(model, sigma=0.1, mode="layer").law.std == pytest.approx(0.1 * 2**0.5)
    with pytest.raises(ValueError, match="exclude leaves no parameter"):
        nr.NoiseInjector(model, sigma=0.1, exclude=["weight", "bias"])
    with pytest.raises(TypeError, match="exclude must be"):
        nr.NoiseInjector(model, sigma=0.1, exclude=3)
    params = iter(list(model.parameters()))
    assert nr.NoiseInjector(params, sigma=0.1, layers="tensor", exclude=["1", "3"]).law.num_layers == 2


@pytest.mark.parametrize("mode", ["full", "layer"])
@pytest.mark.parametrize("scale", ["absolute", "filter"])
def test_regenerate_restore_matches_copy_inside_and_restores_within_an_ulp(scale, mode):
    a, b = _net(), _net()
    copy = nr.NoiseInjector(a, sigma=0.3, mode=mode, seed=1, scale=scale)
    regen = nr.NoiseInjector(b, sigma=0.3, mode=mode, seed=1, scale=scale, restore="regenerate")
    x = torch.randn(7, 3, dtype=torch.float64)
    for _ in range(5):
        clean = [p.detach().clone() for p in b.parameters()]
        with copy.perturb():
            inside_a = [p.detach().clone() for p in a.parameters()]
            a(x).sum().backward()
        with regen.perturb():
            inside_b = [p.detach().clone() for p in b.parameters()]
            b(x).sum().backward()
        for u, v in zip(inside_a, inside_b):
            assert torch.equal(u, v)                                   # the same perturbed weights
        for p, q in zip(a.parameters(), b.parameters()):
            assert torch.equal(p.grad, q.grad)
        for p, c, v in zip(b.parameters(), clean, inside_b):
            ulp = torch.finfo(torch.float64).eps * (c.abs() + (v - c).abs())
            assert ((p.detach() - c).abs() <= ulp).all()               # within an ulp of w + noise
        with torch.no_grad():                                           # keep both models identical
            for p, q in zip(a.parameters(), b.parameters()):
                q.copy_(p)


def test_regenerate_keeps_the_guard_rails_and_refuses_element_scale():
    model = _net()
    inj = nr.NoiseInjector(model, sigma=0.3, mode="full", seed=1, restore="regenerate")
    clean = [p.detach().clone() for p in model.parameters()]
    with inj.perturb():
        inj.sigma = 0.05                       # a schedule inside the block: the restore subtracts what was added
    for p, c in zip(model.parameters(), clean):
        torch.testing.assert_close(p.detach(), c, rtol=0, atol=1e-14)
    with pytest.raises(RuntimeError, match="modified in place inside perturb"):
        with inj.perturb():
            with torch.no_grad():
                model[0].weight.add_(1.0)
    with pytest.raises(ValueError, match="restore='regenerate' needs scale='absolute' or 'filter'"):
        nr.NoiseInjector(model, sigma=0.3, scale="element", restore="regenerate")
    with pytest.raises(ValueError, match="restore must be one of"):
        nr.NoiseInjector(model, sigma=0.3, restore="undo")
    with pytest.raises(ValueError, match="scale must be one of"):
        nr.NoiseInjector(model, sigma=0.3, scale="row")


def test_a_state_of_another_scale_is_refused():
    model = _net()
    state = nr.NoiseInjector(model, sigma=0.1, scale="filter", seed=0).state_dict()
    with pytest.raises(ValueError, match="scale='filter'"):
        nr.NoiseInjector(model, sigma=0.1, seed=0).load_state_dict(state)


def test_smoothed_risk_of_the_filter_law_matches_a_direct_monte_carlo():
    """smoothed_risk(scale="filter") against a loop over the law's own samples at the captured points."""
    model = _net()
    x, y = torch.randn(12, 3, dtype=torch.float64), torch.randn(12, 2, dtype=torch.float64)
    est, se = nr.smoothed_risk(model, x, y, sigma=0.3, mode="full", scale="filter", num_samples=20000, seed=0)
    inj = nr.NoiseInjector(model, sigma=0.3, mode="full", scale="filter", seed=9)
    vals = []
    for _ in range(4000):
        with inj.perturb(), torch.no_grad():
            vals.append(float(0.5 * (model(x) - y).pow(2).sum(1).mean()))
    direct = torch.tensor(vals)
    se_direct = float(direct.std() / len(vals) ** 0.5)
    assert abs(est - float(direct.mean())) < 4 * (se**2 + se_direct**2) ** 0.5
    plain, _ = nr.smoothed_risk(model, x, y, sigma=0.3, mode="full", num_samples=20000, seed=0)
    assert abs(plain - est) > 4 * (se**2 + se_direct**2) ** 0.5     # the scale matters at this σ


# ------------------------------------------------------------------ the family in the training loop


@pytest.mark.parametrize("method,per_step,forwards", [("rwp", 1, 1), ("mrwp", 2, 2), ("lpf", 1, 3), ("nso", 4, 4)])
def test_family_methods_train_and_record_their_cost(method, per_step, forwards):
    from noisereg.data.embedded import load_digits_split
    from noisereg.models import MLP
    from noisereg.training import train
    from noisereg.training.settings import TrainSettings

    data = load_digits_split(n_train=64)
    spec = TrainSettings(epochs=3, lr=0.1, log=("reg_loss",), lpf_samples=3, nso_pairs=2,
                         sigma_schedule="cosine_up" if method == "lpf" else "constant").spec(
        method=method, sigma=0.01, seed=0)
    calls = []

    def model_fn():
        net = MLP(64, (16,), 10)
        net.register_forward_pre_hook(lambda m, args: calls.append(1) if m.training else None)
        return net

    rec = train(model_fn, data, spec)
    assert len(calls) == forwards * 3                                  # measured: training forwards, 3 full-batch steps
    assert rec["grad_evals_per_step"] == per_step and rec["grad_evals"] == per_step * rec["history"][-1]["step"]
    assert not rec["diverged"]
    # a per-filter law's R_eff is a weighted trace that is not computed: no reg_loss; NSO's isotropic law has one
    assert ("reg_loss" in rec["final"]) == (method == "nso")


def _lpf_run(batch_size, parts, epochs=1):
    """Train LPF-SGD on 64 digits; return the record, the trained model and the forward batch sizes."""
    from noisereg.data.embedded import load_digits_split
    from noisereg.models import MLP
    from noisereg.training import train
    from noisereg.training.settings import TrainSettings

    data = load_digits_split(n_train=64)
    spec = TrainSettings(epochs=epochs, lr=0.1, momentum=0.9, batch_size=batch_size, lpf_samples=parts).spec(
        method="lpf", sigma=0.05, seed=3)
    sizes, nets = [], []

    def model_fn():
        net = MLP(64, (16,), 10)
        net.register_forward_pre_hook(lambda m, args: sizes.append(len(args[0])) if m.training else None)
        nets.append(net)
        return net

    return train(model_fn, data, spec), nets[0], sizes, data, spec


@pytest.mark.parametrize("batch_size,parts,sizes", [
    (None, 4, [16, 16, 16, 16]),                               # full batch: the training set in M sub-batches
    (None, 3, [22, 21, 21]),                                   # 64 = 3·21 + 1: the first sub-batch one larger
    (20, 3, [7, 7, 6] * 3 + [2, 1, 1]),                        # mini-batches 20, 20, 20, 4
], ids=["full-batch-M4", "full-batch-M3", "minibatch-M3"])
def test_a_step_of_lpf_is_m_draws_on_m_sub_batches_and_one_batch_gradient(batch_size, parts, sizes):
    """LPF-SGD as its authors run it, counted: a step's forwards are its M disjoint sub-batches (sizes as
    stated), the record's cost is one gradient evaluation per step, and the update is the one built by hand:
    one fresh per-filter draw per sub-batch (filter-wise std γ‖row‖, biases by their norm), the sub-batch's loss
    weighted by its share of the batch (1/M when M divides it), backpropagated, then one SGD step."""
    from noisereg.losses import loss_value
    from noisereg.training.loop import build_model
    from noisereg.training.settings import sub_batches

    rec, net, seen, data, spec = _lpf_run(batch_size, parts)
    assert seen == sizes
    steps = rec["history"][-1]["step"]
    assert rec["grad_evals_per_step"] == 1 and rec["grad_evals"] == steps == (1 if batch_size is None else 4)
    # the same step by hand, from the same initialisation, data order and noise stream
    from noisereg.models import MLP
    model = build_model(lambda: MLP(64, (16,), 10), spec.seed, "cpu")
    opt = torch.optim.SGD(model.parameters(), lr=spec.lr, momentum=spec.momentum)
    inj = nr.NoiseInjector(model, spec.sigma, mode="full", scale="filter", seed=spec.seed)
    n, bs = len(data.x_train), batch_size or len(data.x_train)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(spec.seed + 7919)) if bs < n else torch.arange(n)
    for b in range(0, n, bs):
        xb, yb = data.x_train[order[b:b + bs]], data.y_train[order[b:b + bs]]
        opt.zero_grad(set_to_none=True)
        for part in sub_batches(len(xb), parts):
            with inj.perturb():
                loss = loss_value("cross_entropy", model(xb[part]), yb[part]) * ((part.stop - part.start) / len(xb))
                loss.backward()
        opt.step()
    assert inj.step == parts * steps                                 # M draws per step
    for p, q in zip(net.parameters(), model.parameters()):
        assert torch.equal(p, q)


def test_lpf_refuses_a_batch_smaller_than_its_sub_batches():
    from noisereg.training.settings import sub_batches

    with pytest.raises(ValueError, match=r"lpf_samples must be <= the smallest batch \(4 points\), got 5"):
        _lpf_run(20, 5)                                              # batches 20, 20, 20 and 4
    with pytest.raises(ValueError, match=r"lpf_samples must be <= the smallest batch \(3 points\), got 4"):
        sub_batches(3, 4)


def test_cosine_up_schedule_rises_from_sigma_to_sigma_times_factor():
    from noisereg.training.loop import sigma_at
    from noisereg.training.settings import TrainSettings

    spec = TrainSettings(epochs=10, sigma_schedule="cosine_up", sigma_factor=3.0).spec(method="lpf", sigma=0.1)
    vals = [sigma_at(spec, e) for e in range(11)]
    assert vals[0] == pytest.approx(0.1) and vals[10] == pytest.approx(0.3) and vals[5] == pytest.approx(0.2)
    assert all(b >= a for a, b in zip(vals, vals[1:]))


def test_family_runs_pair_every_several_gradient_method_with_an_equal_compute_arm():
    from noisereg.sweep import EXPERIMENTS
    from noisereg.training.settings import grad_evals_per_step

    exp = EXPERIMENTS["family"]
    cfg = exp.config("cpu")
    runs = exp.runs(cfg)
    cost = {r.id: grad_evals_per_step(r.spec) * r.spec.epochs for r in runs}   # full batch: one step per epoch
    gd = cost["gd-s0"]
    eq = [r for r in runs if r.params.get("arm", "").endswith(("_eq", "_half"))]
    assert {r.params["arm"] for r in eq} == {"mrwp_eq", "nso_eq", "sam_half"}   # lpf: one batch gradient per step
    assert all(cost[r.id] == gd for r in eq)                                   # equal gradient evaluations
    gd_every = {r.spec.eval_every for r in runs if r.spec.method == "gd"}
    assert all(r.spec.epochs % e == 0 for r in eq for e in gd_every)           # GD is evaluated at their steps
    assert {r.spec.sigma_schedule for r in runs if r.spec.method == "lpf"} == {"constant"}   # the reference's
    assert {r.spec.lpf_samples for r in runs if r.spec.method == "lpf"} == {4}
    assert len({r.spec.seed for r in runs}) == 3
    four = exp.runs(exp.config("cpu", {"nso_pairs": 2}))                        # nso_eq: 1000 / 4 = 250 steps
    assert {r.spec.epochs for r in four if r.params.get("arm") == "nso_eq"} == {250}
    assert {r.spec.eval_every for r in four if r.spec.method == "gd"} == {50}  # gcd(100, 250, 500)


@pytest.mark.parametrize("preset", ["smoke", "cpu"])
def test_every_family_grid_has_at_least_four_points(preset):
    from noisereg.sweep import EXPERIMENTS

    exp = EXPERIMENTS["family"]
    cfg = exp.config(preset)
    grids = {}
    for r in exp.runs(cfg):
        grids.setdefault(r.params.get("arm", r.spec.method), set()).add(r.spec.sigma)
    grids.pop("gd")
    assert set(grids) == {"full", "layer", "sam", "sam_half", "rwp", "mrwp", "mrwp_eq", "lpf", "nso", "nso_eq"}
    assert min(len(g) for g in grids.values()) >= 4, grids
    assert "lpf_schedule" in dataclasses.asdict(cfg) and exp.config(preset, {"lpf_schedule": "cosine_up"})


def test_equal_gradient_arms_are_their_own_runs_with_the_schedule_ending_in_their_budget():
    """Under an lr schedule (and a noise stop), an equal-gradient arm is a shorter run whose schedule ends
    within it, not the first part of the longer run."""
    from noisereg.sweep import EXPERIMENTS
    from noisereg.training.loop import _make_optimizer

    exp = EXPERIMENTS["family"]
    cfg = exp.config("smoke", {"schedule": "cosine", "epochs": 8, "noise_stop_epoch": 6, "eval_every": 4})
    runs = {r.id: r for r in exp.runs(cfg)}
    for arm in ("nso_eq", "mrwp_eq", "sam_half"):
        r = next(r for i, r in runs.items() if i.startswith(f"{arm}-"))
        assert (r.spec.epochs, r.spec.noise_stop_epoch, r.spec.schedule) == (4, 3, "cosine")
        _, sched = _make_optimizer(torch.nn.Linear(2, 2), r.spec)
        assert sched.T_max == 4                                        # the lr reaches 0 at its last step


def _family_results(acc):
    """results.json-like records: ``acc[(arm, σ)] = [val acc of seed 0, 1, 2]`` (test acc = val acc)."""
    runs = []
    for (a, s), vals in acc.items():
        for seed, v in enumerate(vals):
            method = a.removesuffix("_eq")
            runs.append({"variant": "", "method": method, "sigma": s, "seed": seed, "params":
                         {"arm": a} if a != method else {}, "final": {"val_acc": v, "test_acc": v},
                         "history": [{"step": 0, "test_acc": 0.1}, {"step": 5, "test_acc": v - 0.01},
                                     {"step": 10, "test_acc": v}],
                         "grad_evals_per_step": 2 if a in ("nso", "nso_eq") else 1,
                         "grad_evals": 10 if a in ("gd", "full", "layer", "rwp", "nso_eq") else 20})
    return {"runs": runs, "config": {}, "preset": "smoke", "n_val": 1000}


def test_selection_flags_an_edge_and_a_tie_and_the_report_states_the_rule():
    from noisereg.sweep import EXPERIMENTS
    from noisereg.experiments.classify import TIE_RULE, select, selection_flags

    res = _family_results({("gd", 0.0): [0.80, 0.81, 0.82],
                           ("rwp", 0.01): [0.80, 0.80, 0.80], ("rwp", 0.02): [0.82, 0.82, 0.83],
                           ("rwp", 0.04): [0.81, 0.81, 0.81], ("rwp", 0.08): [0.70, 0.70, 0.70],
                           ("nso_eq", 0.01): [0.83, 0.83, 0.83], ("nso_eq", 0.02): [0.83, 0.83, 0.83],
                           ("nso_eq", 0.04): [0.80, 0.80, 0.80], ("nso_eq", 0.08): [0.80, 0.80, 0.80]})
    assert select(res, "") == {"nso_eq": 0.01, "rwp": 0.02}
    flags = selection_flags(res, "")
    assert flags["rwp"] == ""                                                   # an inner point
    assert flags["nso_eq"] == ("at the grid's edge (the lowest of 4: 0.01, 0.02, 0.04, 0.08); "
                               "tied on validation with 0.02: the smaller kept")
    rows = EXPERIMENTS["family"].judge(res)
    assert any("nso_eq" in r["claim"] and "at the grid's edge" in r["ours"] for r in rows)
    assert not any(r["claim"].startswith("rwp") and "edge" in r["ours"] for r in rows)
    assert TIE_RULE in "\n".join(EXPERIMENTS["family"].notes({**res, "config": {"n_val": 1000}}))


def test_two_stage_reports_flag_the_edge_of_the_selection_grid_not_the_confirmation_runs_one_point():
    """The confirmation reruns one σ per arm; the edge and tie flags of the judged rows must still describe the
    selection stage's grid."""
    from noisereg.sweep import EXPERIMENTS

    sel = _family_results({("gd", 0.0): [0.80, 0.81, 0.82],
                           ("rwp", 0.01): [0.80, 0.80, 0.80], ("rwp", 0.02): [0.82, 0.82, 0.83],
                           ("rwp", 0.04): [0.81, 0.81, 0.81], ("rwp", 0.08): [0.70, 0.70, 0.70],
                           ("nso_eq", 0.01): [0.83, 0.83, 0.83], ("nso_eq", 0.02): [0.80, 0.80, 0.80],
                           ("nso_eq", 0.04): [0.80, 0.80, 0.80], ("nso_eq", 0.08): [0.80, 0.80, 0.80],
                           ("full", 0.01): [0.80, 0.80, 0.80], ("layer", 0.01): [0.81, 0.81, 0.81]})
    conf = _family_results({("gd", 0.0): [0.80, 0.81, 0.82], ("rwp", 0.02): [0.82, 0.83, 0.84],
                            ("nso_eq", 0.01): [0.81, 0.82, 0.83],
                            ("full", 0.01): [0.83, 0.83, 0.83], ("layer", 0.01): [0.80, 0.81, 0.82]})
    for r in sel["runs"]:
        r["stage"] = "selection"
    for r in conf["runs"]:
        r["stage"], r["seed"] = "confirmation", r["seed"] + 3
    exp = EXPERIMENTS["family"]
    judged = exp.judged({**sel, "runs": sel["runs"] + conf["runs"]})
    assert [r["seed"] for r in judged["runs"]] == [r["seed"] for r in conf["runs"]]
    rows = {r["claim"].split(" (")[0]: r["ours"] for r in exp.judge(judged)}
    assert "at σ=0.01 (at the grid's edge (the lowest of 4: 0.01, 0.02, 0.04, 0.08))" in rows["nso_eq vs GD"]
    assert "grid of one point" not in rows["nso_eq vs GD"] + rows["rwp vs GD"]
    assert "edge" not in rows["rwp vs GD"]


def test_an_equal_gradient_arm_is_read_against_gd_at_equal_gradients_and_at_equal_steps():
    """nso_eq (5 steps × 2 gradients) against GD's final numbers (10 steps) and GD's history at step 5: beating
    the first and not the second is what stopping GD early gives."""
    from noisereg.sweep import EXPERIMENTS
    from noisereg.experiments.family import gd_at_step

    res = _family_results({("gd", 0.0): [0.80, 0.81, 0.82], ("nso_eq", 0.01): [0.83, 0.84, 0.85]})
    for r in res["runs"]:                                  # GD peaked early: 0.86 at step 5, then fell
        if r["method"] == "gd":
            r["history"][1]["test_acc"] = 0.86 + 0.01 * r["seed"]
    assert gd_at_step(res, 5).values == {0: 0.86, 1: 0.87, 2: 0.88}
    rows = {r["claim"].split(" (")[0]: r["ours"] for r in EXPERIMENTS["family"].judge(res)}
    assert "d̄ = +3.00 pts" in rows["nso_eq vs GD"]                        # vs GD at 10 steps (equal gradients)
    assert "nso_eq vs GD read at step 5" in rows and "GD at step 5 87.00" in rows["nso_eq vs GD read at step 5"]
    assert "d̄ = -3.00 pts" in rows["nso_eq vs GD read at step 5"]        # vs GD stopped at 5 steps


def test_the_report_names_per_budget_the_methods_that_beat_gd_and_noise_injection():
    """rwp beats GD, full and layer-wise noise at equal gradients; nso_eq beats GD and full noise but not layer-wise
    noise; nso (2 gradients a step, equal steps) beats none: the rows name rwp, then none."""
    from noisereg.experiments.family import budget_rows

    res = _family_results({("gd", 0.0): [0.80, 0.81, 0.82], ("full", 0.01): [0.79, 0.80, 0.81],
                           ("layer", 0.01): [0.81, 0.82, 0.83], ("rwp", 0.02): [0.83, 0.84, 0.85],
                           ("nso_eq", 0.01): [0.805, 0.815, 0.825], ("nso", 0.01): [0.79, 0.80, 0.81]})
    rows = {r["claim"]: r["ours"] for r in budget_rows(res)}
    head = "which method beats GD and full noise (σ=0.01) and layer noise (σ=0.01) at "
    assert set(rows) == {head + "equal gradient evaluations", head + "equal steps, 2 gradient evaluations per step"}
    eq = rows[head + "equal gradient evaluations"]
    assert eq.startswith("rwp; each method: ") and "rwp (σ=0.02): vs GD beats (d̄ = +3.00" in eq
    assert ("nso_eq (σ=0.01): vs GD beats (d̄ = +0.50 [+0.50, +0.50] pts), vs full noise beats (d̄ = +1.50 "
            "[+1.50, +1.50] pts), vs layer noise behind") in eq
    assert rows[head + "equal steps, 2 gradient evaluations per step"].startswith("none; each method: nso (σ=0.01): "
                                                                                   "vs GD behind")
    assert all(r["verdict"] == "measured" for r in budget_rows(res))


def test_family_claims_are_measured_and_paired(tmp_path):
    from noisereg.sweep import EXPERIMENTS, run_experiment
    from noisereg.verdicts import fmt, mean_se

    res = run_experiment(EXPERIMENTS["family"], "smoke", tmp_path, show_progress=False,
                         overrides={"methods": ("gd", "rwp", "nso"), "seeds": (0, 1, 2), "rwp_sigmas": (0.01,),
                                    "nso_sigmas": (0.01, 0.02)})
    rows = EXPERIMENTS["family"].claims(res)
    assert {r["verdict"] for r in rows} == {"measured"}
    assert any(r["claim"].startswith("nso_eq vs GD (equal gradient evaluations") for r in rows)
    steps = next(r["history"][-1]["step"] for r in res["runs"] if r["params"].get("arm") == "nso_eq")
    early = next(r for r in rows if r["claim"].startswith(f"nso_eq vs GD read at step {steps} "))
    gd = [h["test_acc"] for r in res["runs"] if r["method"] == "gd" for h in r["history"] if h["step"] == steps]
    assert len(gd) == 3 and f"GD at step {steps} {fmt(mean_se(gd))}" in early["ours"]
    assert all("paired d̄" in r["ours"] for r in rows if not r["claim"].startswith(("PAC-Bayes", "which method")))
    assert [r for r in rows if r["claim"].startswith("which method") and "d̄ = " in r["ours"]]   # the budget rows


def test_antithetic_steps_with_the_regenerate_restore_match_the_copy_restore():
    """NSO's pair (perturb, rewind, perturb(negate=True)) with restore="regenerate": the same step as with copies,
    within a few ulps (the restores are exact only to an ulp)."""
    a, b = _net(), _net()
    x, y = torch.randn(9, 3, dtype=torch.float64), torch.randn(9, 2, dtype=torch.float64)
    opts = [nr.NoisyOptimizer(torch.optim.SGD(m.parameters(), lr=0.1),
                              nr.NoiseInjector(m, sigma=0.2, mode="layer", seed=3, restore=r), antithetic=True)
            for m, r in ((a, "copy"), (b, "regenerate"))]
    for _ in range(3):
        for m, opt in zip((a, b), opts):
            def closure(m=m, opt=opt):
                opt.zero_grad()
                loss = _loss(m, x, y)
                loss.backward()
                return loss
            opt.step(closure)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-13, atol=1e-14)


def _odd_params(dtype):
    """Tensors whose flat slots start off the 16-entry blocks (float64: 8-entry alignment), tiny ones, a
    transposed (non-dense) one and a channels-last one."""
    g = torch.Generator().manual_seed(3)
    shapes = [(5, 3), (7,), (33, 17), (2,), (16,), (1,), (40, 9)]
    ps = [torch.randn(s, generator=g).to(dtype) for s in shapes]
    ps.append(torch.randn(9, 40, generator=g).to(dtype).t())                       # not dense
    ps.append(torch.randn(4, 3, 5, 5, generator=g).to(dtype).to(memory_format=torch.channels_last))
    return ps


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
@pytest.mark.parametrize("negate,scaled", [(False, False), (True, True)], ids=["plain", "negated-filter"])
def test_add_noise_tensor_by_tensor_is_the_one_buffer_draw_bit_for_bit(dtype, negate, scaled):
    """The regenerate restore's draw (a tensor at a time, pieces ending on 16-entry blocks) gives the values
    and the generator state of draw_noise's single normal_ call."""
    from noisereg.noise import add_noise_, draw_noise
    params = _odd_params(dtype)
    mult = [p.flatten(1).norm(dim=1).view(-1, *[1] * (p.dim() - 1)) if p.dim() > 1 else p.norm()
            for p in params] if scaled else None
    g1, g2 = torch.Generator().manual_seed(11), torch.Generator().manual_seed(11)
    one = [p.clone() for p in params]
    torch._foreach_add_(one, draw_noise(params, 0.3, g1, negate, mult))
    streamed = [p.clone() for p in params]
    add_noise_(streamed, 0.3, g2, negate, mult)
    assert all(torch.equal(a, b) for a, b in zip(one, streamed))
    assert torch.equal(g1.get_state(), g2.get_state())                 # the stream goes on unchanged
    add_noise_(streamed, 0.3, torch.Generator().manual_seed(11), negate, mult, subtract=True)
    for p, b in zip(params, streamed):                                   # (w + ε) − ε: within an ulp of w + ε
        torch.testing.assert_close(b, p, rtol=0, atol=4 * torch.finfo(dtype).eps * float(p.abs().max() + 3))


def test_regenerate_holds_one_tensor_of_noise_at_a_time():
    """Peak memory, measured in fresh subprocesses (benchmarks/restore_memory.py): one perturb() of 16
    Linear(512, 512) layers with restore="regenerate" needs at most the largest tensor plus 1 MB beyond the
    weights, under a quarter of what the copy restore needs; the weights come back within ε(|w| + |noise|)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux /proc to reset and read the peak RSS")
    script = Path(__file__).parent.parent / "benchmarks" / "restore_memory.py"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(nr.__file__).parent.parent),
                                                         os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, str(script), "--layers", "16", "--width", "512", "--repeats", "1",
                          "--json"], check=True, capture_output=True, text=True, env=env).stdout
    res = json.loads(out)
    copy, regen = res["copy"], res["regenerate"]
    assert copy["extra_peak_bytes"] >= 0.9 * copy["params_bytes"]       # the copy restore: a copy of everything
    assert regen["extra_peak_bytes"] <= regen["largest_bytes"] + 2**20
    assert res["ratio"] < 0.25
    assert regen["max_error_in_eps"] <= 1.0 and copy["max_error_in_eps"] == 0.0


def test_an_lpf_run_killed_and_resumed_ends_bit_for_bit_as_the_uninterrupted_one(tmp_path):
    from noisereg.data.embedded import load_digits_split
    from noisereg.models import MLP
    from noisereg.training import train
    from noisereg.training.settings import TrainSettings

    data = load_digits_split(n_train=64)
    spec = TrainSettings(epochs=4, lr=0.1, momentum=0.9, batch_size=20, lpf_samples=3, eval_every=1,
                         checkpoint_every=1).spec(method="lpf", sigma=0.05, seed=1)
    ref = train(lambda: MLP(64, (16,), 10), data, spec)

    def kill(epoch):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(lambda: MLP(64, (16,), 10), data, spec, checkpoint=tmp_path / "ck.pt", callback=kill)
    got = train(lambda: MLP(64, (16,), 10), data, spec, checkpoint=tmp_path / "ck.pt", resume=True)
    assert got["history"] == ref["history"] and got["final"] == ref["final"]


# ------------------------------------------------------------------ misuse refused on construction (issue 33)
def test_injector_on_another_model_is_refused():
    """An injector built on parameters the optimizer does not hold would perturb weights that are never stepped."""
    model, *_, _ = _setup()
    other, *_, other_inj = _setup()
    with pytest.raises(ValueError, match=r"injector perturbs 4 parameter\(s\) the optimizer does not hold.*build the"):
        nr.NoisyOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), other_inj)
    part = nr.NoiseInjector(list(model.parameters())[:2], sigma=0.1, seed=0)   # a subset is fine
    nr.NoisyOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), part)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-3, 3), st.booleans()))
def test_clean_weight_must_be_in_zero_one_half_open(value):
    model, *_, inj = _setup()
    ok = not isinstance(value, bool) and value == value and 0 <= value < 1
    if ok:
        opt = nr.NoisyOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), inj, clean_weight=value)
        assert opt.clean_weight == float(value)
    else:
        with pytest.raises(ValueError, match=r"clean_weight must be a number in \[0, 1\) \(1 gives the noisy"):
            nr.NoisyOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), inj, clean_weight=value)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(st.lists(st.text(alphabet="0123456789.abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8), min_size=1,
                max_size=3))
def test_exclude_entries_must_each_match_a_parameter(entries):
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    names = [n for n, _ in model.named_parameters()]
    unmatched = [e for e in entries if not any(e in n for n in names)]
    covered = all(any(e in n for e in entries) for n in names)
    if unmatched:
        with pytest.raises(ValueError, match=r"exclude entries .* match no parameter name .*fix or drop them"):
            nr.NoiseInjector(model, sigma=0.1, exclude=entries, seed=0)
    elif covered:
        with pytest.raises(ValueError, match="exclude leaves no parameter to perturb"):
            nr.NoiseInjector(model, sigma=0.1, exclude=entries, seed=0)
    else:
        inj = nr.NoiseInjector(model, sigma=0.1, exclude=entries, seed=0)
        assert all(not any(e in n for e in entries) for n, p in model.named_parameters()
                   if any(p is q for q in inj.law.params))


def test_exclude_typo_is_refused():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    with pytest.raises(ValueError, match=r"exclude entries \['typo'\] match no parameter name"):
        nr.NoiseInjector(model, sigma=0.1, exclude=["bias", "typo"], seed=0)


@pytest.mark.parametrize("outer", ["SAM", "NoisyOptimizer"])
@pytest.mark.parametrize("inner", ["SAM", "NoisyOptimizer"])
def test_nested_wrappers_are_refused_when_built(outer, inner):
    model, *_, inj = _setup()
    wrap = {"SAM": lambda o: nr.SAM(o, rho=0.05), "NoisyOptimizer": lambda o: nr.NoisyOptimizer(o, inj)}
    built = wrap[inner](torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(TypeError, match=f"optimizer must be a plain torch.optim.Optimizer, got a {inner}: {outer} "
                                        "cannot wrap another noisereg wrapper"):
        wrap[outer](built)


def test_grad_evals_per_step_of_both_wrappers():
    model, *_, inj = _setup()
    assert nr.SAM(torch.optim.SGD(model.parameters(), lr=0.1)).grad_evals_per_step == nr.SAM.grad_evals_per_step == 2
    opt = nr.NoisyOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), inj, samples=3, antithetic=True,
                            clean_weight=0.5)
    assert opt.grad_evals_per_step == nr.NoisyOptimizer.evals_per_step(3, True, 0.5) == 7


def test_injector_repr_shows_every_setting():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    inj = nr.NoiseInjector(model, sigma=0.1, scale="filter", exclude="bias", restore="regenerate", seed=3)
    assert repr(inj) == ("NoiseInjector(sigma=0.1, mode='layer', order='random', convention='paper', scale='filter', "
                         "exclude=['bias'], restore='regenerate', num_layers=2, seed=3)")


def test_a_family_report_of_results_with_the_earlier_lpf_says_so():
    """Results written when lpf drew k times on the whole batch (they hold an lpf_eq arm) are labelled as such."""
    import json
    from pathlib import Path

    from noisereg.sweep import EXPERIMENTS

    res = json.loads((Path(__file__).resolve().parents[1] / "docs/results/family/results.json").read_text())
    new = {**res, "runs": [r for r in res["runs"] if r["params"].get("arm") != "lpf_eq"]}
    lpf = next(r for r in new["runs"] if r["method"] == "lpf")
    old = {**res, "runs": [*new["runs"], {**lpf, "id": "lpf_eq-x", "params": {**lpf["params"], "arm": "lpf_eq"}}]}
    assert "These results predate LPF-SGD as its authors run it" in "\n".join(EXPERIMENTS["family"].notes(old))
    assert "predate" not in "\n".join(EXPERIMENTS["family"].notes(new))
