"""NoisyOptimizer with several evaluations per step (samples, antithetic pairs, clean weight) and the
injector's negated draw: each checked against a direct computation at the captured perturbed points."""

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


@pytest.mark.parametrize("method,per_step", [("rwp", 1), ("mrwp", 2), ("lpf", 3), ("nso", 4)])
def test_family_methods_train_and_record_their_cost(method, per_step):
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
    assert len(calls) == per_step * 3                                  # measured: training forwards, 3 full-batch steps
    assert rec["grad_evals_per_step"] == per_step and rec["grad_evals"] == per_step * rec["history"][-1]["step"]
    assert not rec["diverged"]
    # a per-filter law's R_eff is a weighted trace that is not computed: no reg_loss; NSO's isotropic law has one
    assert ("reg_loss" in rec["final"]) == (method == "nso")


def test_cosine_up_schedule_rises_from_sigma_to_sigma_times_factor():
    from noisereg.training.loop import sigma_at
    from noisereg.training.settings import TrainSettings

    spec = TrainSettings(epochs=10, sigma_schedule="cosine_up", sigma_factor=3.0).spec(method="lpf", sigma=0.1)
    vals = [sigma_at(spec, e) for e in range(11)]
    assert vals[0] == pytest.approx(0.1) and vals[10] == pytest.approx(0.3) and vals[5] == pytest.approx(0.2)
    assert all(b >= a for a, b in zip(vals, vals[1:]))


def test_family_runs_pair_every_several_gradient_method_with_an_equal_compute_arm():
    from noisereg.experiments import EXPERIMENTS
    from noisereg.training.settings import grad_evals_per_step

    exp = EXPERIMENTS["family"]
    cfg = exp.config("cpu")
    runs = exp.runs(cfg)
    cost = {r.id: grad_evals_per_step(r.spec) * r.spec.epochs for r in runs}   # full batch: one step per epoch
    gd = cost["gd-s0"]
    eq = [r for r in runs if r.params.get("arm", "").endswith("_eq")]
    assert {r.params["arm"] for r in eq} == {"mrwp_eq", "lpf_eq", "nso_eq"}
    assert all(cost[r.id] == gd for r in eq)                                   # equal gradient evaluations
    assert {r.spec.sigma_schedule for r in runs if r.spec.method == "lpf"} == {"cosine_up"}
    assert {r.spec.sigma_schedule for r in runs if r.spec.method != "lpf"} == {"constant"}
    grids = {m: sorted({r.spec.sigma for r in runs if r.spec.method == m}) for m in ("rwp", "mrwp", "lpf", "nso")}
    assert grids == {"rwp": [0.005, 0.02], "mrwp": [0.005, 0.02], "lpf": [0.005, 0.02], "nso": [0.01, 0.035]}
    assert len({r.spec.seed for r in runs}) == 3


def test_family_claims_are_measured_and_paired(tmp_path):
    from noisereg.experiments import EXPERIMENTS, run_experiment

    res = run_experiment(EXPERIMENTS["family"], "smoke", tmp_path, show_progress=False,
                         overrides={"methods": ("gd", "rwp", "nso"), "seeds": (0, 1, 2)})
    rows = EXPERIMENTS["family"].claims(res)
    assert {r["verdict"] for r in rows} == {"measured"}
    assert any(r["claim"].startswith("nso_eq vs GD (equal gradient evaluations") for r in rows)
    assert all("paired d̄" in r["ours"] for r in rows)


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
