"""NoiseInjector: noise law, layer choice, exact restore, gradients, state, memory, errors."""

import copy
import math

import pytest
import torch
from torch import nn

import noisereg as nr
from noisereg.injection import noisy_copies


def mlp(seed=0, widths=(5, 7, 3), dtype=torch.float64):
    torch.manual_seed(seed)
    mods = []
    for a, b in zip(widths[:-1], widths[1:]):
        mods += [nn.Linear(a, b), nn.Tanh()]
    return nn.Sequential(*mods[:-1]).to(dtype)


def snapshot(model):
    return [p.detach().clone() for p in model.parameters()]


def perturbed_values(inj, model):
    """Run one perturb() and return the parameter values seen inside it."""
    with inj.perturb():
        return [p.detach().clone() for p in model.parameters()]


# ----------------------------------------------------------------------------- noise law
@pytest.mark.parametrize("mode,convention", [("full", "paper"), ("full", "official"),
                                             ("layer", "paper"), ("layer", "official")])
def test_noise_std_per_mode_and_convention(mode, convention):
    # one big layer (10^6 entries) and two small ones: M = 3 layers
    model = nn.Sequential(nn.Linear(1000, 1000, bias=False), nn.Linear(1000, 2), nn.Linear(2, 1))
    sigma, m = 0.03, 3
    expected = {("full", "paper"): sigma, ("full", "official"): sigma / math.sqrt(m),
                ("layer", "paper"): sigma * math.sqrt(m), ("layer", "official"): sigma}[(mode, convention)]
    inj = nr.NoiseInjector(model, sigma, mode=mode, convention=convention, order="cyclic", seed=1)
    assert inj.std() == pytest.approx(expected)
    w = model[0].weight.detach().clone()
    with inj.perturb():  # cyclic order: the first perturbation hits layer 0, the big one
        e = (model[0].weight.detach() - w).double().flatten()
    n = e.numel()
    # sample std of n Gaussians has standard error std/sqrt(2n); the mean has std/sqrt(n)
    assert abs(e.std().item() - expected) < 5 * expected / math.sqrt(2 * n)
    assert abs(e.mean().item()) < 5 * expected / math.sqrt(n)


def test_noise_scales_linearly_in_sigma_from_the_same_stream():
    model = mlp()
    w = snapshot(model)
    a = nr.NoiseInjector(model, 0.1, mode="full", seed=3)
    b = nr.NoiseInjector(model, 0.3, mode="full", seed=3)
    ea = [p - q for p, q in zip(perturbed_values(a, model), w)]
    eb = [p - q for p, q in zip(perturbed_values(b, model), w)]
    for x, y in zip(ea, eb):
        torch.testing.assert_close(3 * x, y, rtol=1e-9, atol=1e-12)


def test_layer_mode_perturbs_exactly_one_layer_full_mode_all():
    model = mlp(widths=(4, 6, 6, 2))
    w = snapshot(model)
    layer_of = {id(p): i for i, (_, ps) in enumerate(nr.NoiseInjector(model, 1.0).layers) for p in ps}
    inj = nr.NoiseInjector(model, 0.1, mode="layer", seed=0)
    for _ in range(20):
        seen = perturbed_values(inj, model)
        changed = {layer_of[id(p)] for p, v, v0 in zip(model.parameters(), seen, w) if not torch.equal(v, v0)}
        assert changed == {inj.last_layer}
        # every parameter of the chosen layer moved
        assert all(not torch.equal(v, v0) for p, v, v0 in zip(model.parameters(), seen, w)
                   if layer_of[id(p)] == inj.last_layer)
    full = nr.NoiseInjector(model, 0.1, mode="full", seed=0)
    assert all(not torch.equal(v, v0) for v, v0 in zip(perturbed_values(full, model), w))


def test_random_order_is_uniform_and_cyclic_is_periodic():
    model = mlp(widths=(3, 3, 3, 3, 3))  # 4 layers
    inj = nr.NoiseInjector(model, 0.1, mode="layer", order="random", seed=11)
    n, m = 4000, 4
    counts = torch.zeros(m)
    picks = []
    for _ in range(n):
        with inj.perturb():
            pass
        counts[inj.last_layer] += 1
        picks.append(inj.last_layer)
    # Pearson chi-square with 3 dof: 99.9% quantile is 16.27
    chi2 = ((counts - n / m) ** 2 / (n / m)).sum().item()
    assert chi2 < 16.27, counts
    assert picks[:50] != [i % m for i in range(50)]  # not secretly cyclic
    cyc = nr.NoiseInjector(model, 0.1, mode="layer", order="cyclic", seed=11)
    got = []
    for _ in range(10):
        with cyc.perturb():
            pass
        got.append(cyc.last_layer)
    assert got == [i % m for i in range(10)]


# ------------------------------------------------------------------------------ exactness
@pytest.mark.parametrize("mode", ["full", "layer"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_restore_is_bit_exact_and_keeps_storage(mode, dtype):
    model = mlp(dtype=dtype)
    before = snapshot(model)
    ptrs = [p.data_ptr() for p in model.parameters()]
    inj = nr.NoiseInjector(model, 0.37, mode=mode, seed=5)
    for _ in range(10):
        with inj.perturb():
            model(torch.randn(3, 5, dtype=dtype)).sum().backward()
    for p, q, ptr in zip(model.parameters(), before, ptrs):
        assert torch.equal(p.detach(), q)
        assert p.data_ptr() == ptr  # the original storage itself is back


def test_restore_when_the_block_raises():
    model = mlp()
    before = snapshot(model)
    inj = nr.NoiseInjector(model, 1.0, mode="full", seed=0)
    with pytest.raises(KeyError, match="boom"):
        with inj.perturb():
            raise KeyError("boom")
    assert all(torch.equal(p.detach(), q) for p, q in zip(model.parameters(), before))
    with inj.perturb():  # usable again afterwards
        pass


def test_gradient_is_the_gradient_at_the_perturbed_weights():
    model = mlp(widths=(5, 8, 8, 3))
    x, y = torch.randn(20, 5, dtype=torch.float64), torch.randn(20, 3, dtype=torch.float64)
    inj = nr.NoiseInjector(model, 0.2, mode="full", seed=2)
    with inj.perturb():
        w_noisy = snapshot(model)
        (0.5 * (model(x) - y).pow(2).sum(1).mean()).backward()
    ref = copy.deepcopy(model)
    with torch.no_grad():
        for p, v in zip(ref.parameters(), w_noisy):
            p.copy_(v)
            p.grad = None
    (0.5 * (ref(x) - y).pow(2).sum(1).mean()).backward()
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-12, atol=1e-14)
    # and the gradient is not the clean one
    clean = copy.deepcopy(model)
    clean.zero_grad()
    (0.5 * (clean(x) - y).pow(2).sum(1).mean()).backward()
    assert not torch.allclose(model[0].weight.grad, clean[0].weight.grad)


def test_sigma_zero_reproduces_plain_training_bit_for_bit():
    x, y = torch.randn(32, 5), torch.randn(32, 3)
    a, b = mlp(dtype=torch.float32), mlp(dtype=torch.float32)
    oa = torch.optim.SGD(a.parameters(), lr=0.1, momentum=0.9)
    ob = torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.9)
    inj = nr.NoiseInjector(b, 0.0, mode="full", seed=0)
    for _ in range(25):
        for model, opt, noisy in ((a, oa, False), (b, ob, True)):
            opt.zero_grad()
            if noisy:
                with inj.perturb():
                    (model(x) - y).pow(2).mean().backward()
            else:
                (model(x) - y).pow(2).mean().backward()
            opt.step()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert inj.step == 0  # sigma == 0 consumed nothing


def test_frozen_parameters_are_never_touched():
    model = mlp(widths=(4, 6, 6, 2))
    model[0].weight.requires_grad_(False)
    model[2].requires_grad_(False)
    frozen = [model[0].weight, *model[2].parameters()]
    before = [p.clone() for p in frozen]
    for mode in ("full", "layer"):
        inj = nr.NoiseInjector(model, 1.0, mode=mode, seed=0)
        assert all(p is not f for _, ps in inj.layers for p in ps for f in frozen)
        for _ in range(10):
            with inj.perturb():
                assert all(torch.equal(f, b) for f, b in zip(frozen, before))
    assert [n for n, _ in nr.NoiseInjector(model, 1.0).layers] == ["0", "4"]


def test_shared_parameter_is_one_parameter():
    enc = nn.Linear(6, 6, bias=False)
    model = nn.Sequential(enc, nn.Tanh(), nn.Linear(6, 6), nn.Tanh(), enc)
    inj = nr.NoiseInjector(model, 0.5, mode="full", seed=0)
    assert [n for n, _ in inj.layers] == ["0", "2"]
    assert sum(len(ps) for _, ps in inj.layers) == 3
    assert len(nr.NoiseInjector(model, 0.5, layers="tensor").layers) == 3
    w = enc.weight.detach().clone()
    with inj.perturb():
        assert model[0].weight is model[4].weight
        assert not torch.equal(model[4].weight, w)
    assert torch.equal(enc.weight, w)


def test_mixed_dtypes_and_explicit_groups():
    a = nn.Linear(4, 4).double()
    b = nn.Linear(4, 4).float()
    groups = [("first", [a.weight, b.weight]), ("second", [a.bias, b.bias])]
    inj = nr.NoiseInjector([a.weight, a.bias, b.weight, b.bias], 0.1, layers=groups, mode="full", seed=0)
    before = [t.clone() for t in (a.weight, a.bias, b.weight, b.bias)]
    with inj.perturb():
        assert a.weight.dtype == torch.float64 and b.weight.dtype == torch.float32
        assert not torch.equal(a.weight, before[0]) and not torch.equal(b.bias, before[3])
    assert all(torch.equal(t, q) for t, q in zip((a.weight, a.bias, b.weight, b.bias), before))


def test_layer_names_follow_model_order():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))
    assert [n for n, _ in nr.NoiseInjector(model, 0.1).layers] == ["0", "1", "4"]
    assert [n for n, _ in nr.NoiseInjector(model, 0.1, layers="tensor").layers] == [
        "0.weight", "0.bias", "1.weight", "1.bias", "4.weight", "4.bias"]


def test_foreach_equals_for_loop_in_float64():
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    params = [torch.randn(5, 3, dtype=torch.float64), torch.randn(7, dtype=torch.float64),
              torch.randn(2, 3, 4, 4, dtype=torch.float64).to(memory_format=torch.channels_last)]
    fast = noisy_copies(params, 0.3, g1, foreach=True)
    slow = noisy_copies(params, 0.3, g2, foreach=False)
    for p, f, s in zip(params, fast, slow):
        assert torch.equal(f, s) and f.stride() == p.stride()


def test_extra_memory_is_at_most_the_perturbed_layer():
    model = nn.Sequential(nn.Linear(100, 300), nn.Linear(300, 10))
    inj = nr.NoiseInjector(model, 0.1, mode="layer", order="cyclic", seed=0)
    ptr = {id(p): p.data_ptr() for p in model.parameters()}
    for _ in range(2):
        with inj.perturb():
            layer = inj.layers[inj.last_layer][1]
            new = {p.untyped_storage().data_ptr(): p.untyped_storage().nbytes() for p in layer}
            layer_bytes = sum(p.numel() * p.element_size() for p in layer)
            assert sum(new.values()) <= layer_bytes + 64 * len(layer)  # one buffer, 64-byte slots
            others = [p for p in model.parameters() if all(p is not q for q in layer)]
            assert all(p.data_ptr() == ptr[id(p)] for p in others)  # untouched, no copy
    full = nr.NoiseInjector(model, 0.1, mode="full", seed=0)
    with full.perturb():
        storages = {p.untyped_storage().data_ptr(): p.untyped_storage().nbytes() for p in model.parameters()}
        n_bytes = sum(p.numel() * 4 for p in model.parameters())
        assert len(storages) == 1 and sum(storages.values()) <= n_bytes + 64 * 4


# ------------------------------------------------------------------------------ state
def test_state_dict_round_trip_reproduces_the_noise_stream(tmp_path):
    model = mlp(widths=(4, 6, 6, 2))
    inj = nr.NoiseInjector(model, 0.1, mode="layer", seed=7)
    for _ in range(3):
        perturbed_values(inj, model)
    path = tmp_path / "inj.pt"
    torch.save(inj.state_dict(), path)
    expected = [(perturbed_values(inj, model), inj.last_layer) for _ in range(5)]
    other = nr.NoiseInjector(model, 0.5, mode="layer", seed=999)
    other.load_state_dict(torch.load(path, weights_only=True))
    assert other.sigma == 0.1 and other.step == 3
    got = [(perturbed_values(other, model), other.last_layer) for _ in range(5)]
    for (ve, le), (vg, lg) in zip(expected, got):
        assert le == lg and all(torch.equal(a, b) for a, b in zip(ve, vg))


def test_same_seed_same_noise_different_seed_different_noise():
    model = mlp()
    a, b, c = (nr.NoiseInjector(model, 0.1, mode="full", seed=s) for s in (1, 1, 2))
    va, vb, vc = (perturbed_values(i, model) for i in (a, b, c))
    assert all(torch.equal(x, y) for x, y in zip(va, vb))
    assert not torch.equal(va[0], vc[0])
    auto = nr.NoiseInjector(model, 0.1)
    assert isinstance(auto.seed, int)  # drawn from the OS and recorded


def test_generator_argument_is_used():
    model = mlp()
    g = torch.Generator().manual_seed(4)
    inj = nr.NoiseInjector(model, 0.1, mode="full", generator=g)
    state = g.get_state()
    perturbed_values(inj, model)
    assert not torch.equal(state, g.get_state())  # the given generator was consumed
    torch.manual_seed(0)
    glob = torch.get_rng_state()
    perturbed_values(inj, model)
    assert torch.equal(glob, torch.get_rng_state())  # never the global RNG


# ------------------------------------------------------------------------------ misuse
@pytest.mark.parametrize("sigma,err,match", [
    (-0.1, ValueError, r"sigma must be a finite number >= 0, got -0.1"),
    (float("nan"), ValueError, "sigma must be a finite number"),
    (float("inf"), ValueError, "sigma must be a finite number"),
    ("0.1", TypeError, "sigma must be a real number, got str"),
    (True, TypeError, "sigma must be a real number"),
])
def test_bad_sigma(sigma, err, match):
    with pytest.raises(err, match=match):
        nr.NoiseInjector(mlp(), sigma)
    inj = nr.NoiseInjector(mlp(), 0.1)
    with pytest.raises(err, match=match):
        inj.sigma = sigma


@pytest.mark.parametrize("kwargs,match", [
    ({"mode": "all"}, r"mode must be one of \('full', 'layer'\), got 'all'"),
    ({"order": "shuffle"}, r"order must be one of \('random', 'cyclic'\)"),
    ({"convention": "pytorch"}, r"convention must be one of \('paper', 'official'\)"),
    ({"layers": "block"}, r"layers must be one of \('module', 'tensor'\)"),
    ({"seed": -1}, "seed must be an integer >= 0"),
    ({"seed": 1, "generator": torch.Generator()}, "give seed or generator, not both"),
])
def test_bad_choices(kwargs, match):
    with pytest.raises(ValueError, match=match):
        nr.NoiseInjector(mlp(), 0.1, **kwargs)


def test_bad_types():
    with pytest.raises(TypeError, match="got a single Tensor"):
        nr.NoiseInjector(torch.zeros(3, requires_grad=True), 0.1)
    with pytest.raises(TypeError, match="got int"):
        nr.NoiseInjector(3, 0.1)
    with pytest.raises(TypeError, match="item 1 is a str"):
        nr.NoiseInjector([torch.zeros(2, requires_grad=True), "w"], 0.1)
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        nr.NoiseInjector(mlp(), 0.1, generator=3)
    with pytest.raises(TypeError, match=r"each group must be a \(name, \[Parameter"):
        nr.NoiseInjector(mlp(), 0.1, layers=[[torch.zeros(1)]])
    with pytest.raises(TypeError, match="layers must be 'module', 'tensor' or a list"):
        nr.NoiseInjector(mlp(), 0.1, layers=5)


def test_no_trainable_parameters():
    model = mlp().requires_grad_(False)
    with pytest.raises(ValueError, match="model has no trainable parameters"):
        nr.NoiseInjector(model, 0.1)
    with pytest.raises(ValueError, match="model has no trainable parameters"):
        nr.NoiseInjector(nn.ReLU(), 0.1)


def test_bad_groups():
    model = mlp()
    w, b = model[0].weight, model[0].bias
    with pytest.raises(ValueError, match="layers is an empty list of groups"):
        nr.NoiseInjector(model, 0.1, layers=[])
    with pytest.raises(ValueError, match="group 'a' is empty"):
        nr.NoiseInjector(model, 0.1, layers=[("a", [])])
    with pytest.raises(ValueError, match=r"listed in two groups \('a' and 'b'\)"):
        nr.NoiseInjector(model, 0.1, layers=[("a", [w]), ("b", [w, b])])
    with pytest.raises(ValueError, match="listed twice in group 'a'"):
        nr.NoiseInjector(model, 0.1, layers=[("a", [w, w])])
    with pytest.raises(ValueError, match="group name 'a' is used twice"):
        nr.NoiseInjector(model, 0.1, layers=[("a", [w]), ("a", [b])])
    with pytest.raises(ValueError, match="not a parameter of model"):
        nr.NoiseInjector(model, 0.1, layers=[("a", [nn.Parameter(torch.zeros(2))])])
    with pytest.raises(ValueError, match="frozen parameter"):
        nr.NoiseInjector(model, 0.1, layers=[("a", [torch.zeros(2)])])
    with pytest.raises(TypeError, match="group 'a' holds a str"):
        nr.NoiseInjector(model, 0.1, layers=[("a", ["w"])])


def test_nested_perturb_is_refused():
    inj = nr.NoiseInjector(mlp(), 0.1, seed=0)
    with inj.perturb():
        with pytest.raises(RuntimeError, match="perturb\\(\\) is already active"):
            with inj.perturb():
                pass
    zero = nr.NoiseInjector(mlp(), 0.0, seed=0)
    with zero.perturb():
        with pytest.raises(RuntimeError, match="already active"):
            with zero.perturb():
                pass


def test_step_inside_the_block_is_refused_and_backward_outside_fails():
    model = mlp()
    before = snapshot(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    inj = nr.NoiseInjector(model, 0.1, mode="full", seed=0)
    with pytest.raises(RuntimeError, match=r"SGD.step\(\) was called inside perturb"):
        with inj.perturb():
            model(torch.randn(2, 5, dtype=torch.float64)).sum().backward()
            opt.step()
    assert all(torch.equal(p.detach(), q) for p, q in zip(model.parameters(), before))
    with pytest.raises(RuntimeError, match="modified in place inside perturb"):  # any other in-place change
        with inj.perturb(), torch.no_grad():
            next(model.parameters()).add_(1.0)
    assert all(torch.equal(p.detach(), q) for p, q in zip(model.parameters(), before))
    with inj.perturb():
        loss = model(torch.randn(2, 5, dtype=torch.float64)).pow(2).sum()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_load_state_dict_mismatch():
    inj = nr.NoiseInjector(mlp(), 0.1, seed=0)
    sd = nr.NoiseInjector(mlp(widths=(5, 5, 5, 5)), 0.1, seed=0).state_dict()
    with pytest.raises(ValueError, match="state_dict is for 3 layers, this injector has 2"):
        inj.load_state_dict(sd)
    with pytest.raises(ValueError, match="state_dict lacks keys"):
        inj.load_state_dict({"sigma": 0.1})
    sd = inj.state_dict()
    sd["noise_rng"] = sd["noise_rng"] * 2
    with pytest.raises(ValueError, match="2 noise generators"):
        inj.load_state_dict(sd)


def test_independent_ranks_needs_seed():
    with pytest.raises(ValueError, match="independent_ranks needs seed="):
        nr.NoiseInjector(mlp(), 0.1, generator=torch.Generator(), independent_ranks=True)


@pytest.mark.gpu
def test_parameters_on_two_devices():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4).cuda())
    before = snapshot(model)
    inj = nr.NoiseInjector(model, 0.5, mode="full", seed=0)
    with inj.perturb():
        assert model[1].weight.is_cuda and not torch.equal(model[1].weight, before[2])
    assert all(torch.equal(p.detach(), q) for p, q in zip(model.parameters(), before))
    assert len(inj.state_dict()["noise_rng"]) == 2
    with pytest.raises(ValueError, match="generator is on cpu but parameters live on"):
        nr.NoiseInjector(model, 0.1, generator=torch.Generator())


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["full", "layer"])
def test_cuda_restore_is_exact_and_noise_has_the_right_std(mode):
    model = nn.Sequential(nn.Linear(1000, 1000), nn.ReLU(), nn.Linear(1000, 10)).cuda()
    before = snapshot(model)
    inj = nr.NoiseInjector(model, 0.03, mode=mode, order="cyclic", seed=0)
    with inj.perturb():  # cyclic: the first layer (10^6 weights) is among the perturbed ones
        e = (model[0].weight.detach() - before[0]).double().flatten()
        model(torch.randn(8, 1000, device="cuda")).sum().backward()
    assert all(torch.equal(p.detach(), q) for p, q in zip(model.parameters(), before))
    n = e.numel()
    assert abs(e.std().item() - inj.std()) < 5 * inj.std() / math.sqrt(2 * n)


# ------------------------------------------------------------------------- parameter ownership
def test_parameter_replaced_after_construction_raises():
    """An injector whose parameters left the model would perturb nothing the model reads: it raises."""
    model = mlp()
    inj = nr.NoiseInjector(model, 0.1, mode="full", seed=0)
    model.load_state_dict({k: v.clone() for k, v in model.state_dict().items()}, assign=True)
    with pytest.raises(RuntimeError, match="was replaced after the NoiseInjector was built"):
        with inj.perturb():
            pass


def test_parameter_moved_by_a_parametrization_still_perturbed():
    """register_parametrization moves the parameter (same object): no error, the noise reaches the model."""
    model = mlp()
    inj = nr.NoiseInjector(model, 0.1, mode="full", seed=0)
    nn.utils.parametrize.register_parametrization(model[0], "weight", nn.Identity())
    clean = model[0].weight.detach().clone()
    with inj.perturb():
        assert not torch.equal(model[0].weight, clean)
    assert torch.equal(model[0].weight, clean)
