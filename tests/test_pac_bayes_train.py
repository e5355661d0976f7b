"""PAC-Bayes training (issue 35): the objective's math and gradient, the certificate's refusals, a smoke run."""

import json
import math

import pytest
import torch

import noisereg as nr
from noisereg.pac_bayes import certificate, gaussian_kl
from noisereg.pac_bayes_train import PacBayesObjective, bound_objective, bounded_cross_entropy, layer_kl


def _net(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3)).to(dtype)


def _data(n=12, seed=1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=g, dtype=dtype), torch.randint(0, 3, (n,), generator=g)


def test_bound_objectives_against_a_hand_computation():
    """f_quad and f_classic of Pérez-Ortiz et al. (2021), B = (KL + ln(2√n/δ))/(2n), at ê = 0.2, KL = 100, n = 2048."""
    b = (100 + math.log(2 * math.sqrt(2048) / 0.025)) / (2 * 2048)      # (100 + 8.194)/4096 = 0.026415
    assert b == pytest.approx(0.026415, abs=1e-6)
    quad = bound_objective(torch.tensor(0.2, dtype=torch.float64), torch.tensor(100.0, dtype=torch.float64), 2048, 0.025)
    assert float(quad) == pytest.approx((math.sqrt(0.2 + b) + math.sqrt(b)) ** 2, rel=1e-12)   # 0.40750
    classic = bound_objective(torch.tensor(0.2, dtype=torch.float64), torch.tensor(100.0, dtype=torch.float64), 2048,
                              0.025, "classic")
    assert float(classic) == pytest.approx(0.2 + math.sqrt(b), rel=1e-12)
    with pytest.raises(ValueError, match="kind must be one of"):
        bound_objective(torch.tensor(0.2), torch.tensor(1.0), 10, 0.1, "seeger")


def test_bounded_cross_entropy_is_the_clamped_rescaled_log_loss():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, -30.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([0, 1])
    p0 = math.exp(2) / (math.exp(2) + 1 + math.exp(-1))
    want = (-math.log(p0) + math.log(1e4)) / 2 / math.log(1e4)   # the second point's p_y < 1e-4: clamped to 1
    assert float(bounded_cross_entropy(logits, y, 1e-4)) == pytest.approx(want, rel=1e-12)
    with pytest.raises(ValueError, match="p_min must be in"):
        bounded_cross_entropy(logits, y, 0.0)


def test_layer_kl_is_gaussian_kl_summed_over_layers():
    g = torch.Generator().manual_seed(0)
    w = [torch.randn(k, generator=g, dtype=torch.float64) for k in (7, 5)]
    w0 = [torch.randn(k, generator=g, dtype=torch.float64) for k in (7, 5)]
    s = torch.tensor([0.1, 0.4], dtype=torch.float64)
    assert float(layer_kl(w, w0, s, 0.3)) == pytest.approx(
        gaussian_kl(w[0], w0[0], 0.1, 0.3) + gaussian_kl(w[1], w0[1], 0.4, 0.3), rel=1e-12)


def test_the_gradient_matches_finite_differences_in_float64():
    """∂f_quad/∂w and ∂f_quad/∂ρ by autograd against central differences, with the same ε at every evaluation."""
    net, prior = _net(0), _net(5)
    x, y = _data()
    obj = PacBayesObjective(net, prior, prior_sigma=0.3, n=50, delta=0.05, sigma_init=0.2, p_min=1e-3, seed=0)
    obj.rho.data += torch.tensor([0.1, -0.2], dtype=torch.float64)
    eps = obj.draw()
    loss = obj(x, y, eps)
    loss.backward()
    params = obj.parameters()
    grads = [p.grad.clone() for p in params]
    h = 1e-6
    for p, g in zip(params, grads):
        for i in range(0, p.numel(), max(1, p.numel() // 5)):   # a few entries of every tensor, ρ's two entries
            flat = p.data.view(-1)
            old = float(flat[i])
            flat[i] = old + h
            up = float(obj(x, y, eps).detach())
            flat[i] = old - h
            down = float(obj(x, y, eps).detach())
            flat[i] = old
            assert float(g.view(-1)[i]) == pytest.approx((up - down) / (2 * h), rel=1e-5, abs=1e-9)
    # ∂KL/∂ρ_l in closed form: d_l (σ_l²/σ_p² − 1)
    obj.rho.grad = None
    obj.kl().backward()
    d = torch.tensor([16.0, 15.0], dtype=torch.float64)   # Linear(3, 4): 12 + 4; Linear(4, 3): 12 + 3
    assert torch.allclose(obj.rho.grad, d * (obj.sigmas().detach() ** 2 / 0.09 - 1), rtol=1e-12)


def test_the_noise_is_the_injectors_stream():
    """ε is what a unit-σ, full-noise NoiseInjector with the same seed would add to the weights."""
    net = _net(0)
    obj = PacBayesObjective(net, prior_sigma=0.1, n=10, seed=3)
    eps = obj.draw()
    inj = nr.NoiseInjector(net, 1.0, mode="full", seed=3)
    clean = [p.detach().clone() for p in net.parameters()]
    with inj.perturb():
        added = [p.detach() - c for p, c in zip(net.parameters(), clean)]
    assert all(torch.allclose(a, e, atol=1e-12) for a, e in zip(added, eps))


def test_the_certificate_follows_from_its_parts():
    net, prior = _net(0), _net(5)
    x, y = _data(40)
    obj = PacBayesObjective(net, prior, prior_sigma=0.3, n=40, sigma_init=0.2, seed=0)
    c = obj.certificate(x, y, indices=range(40), prior_indices=range(40, 60), samples=50, seed=2, grid_size=3,
                        candidates=3)
    assert c["kl"] == pytest.approx(float(obj.kl().detach()), rel=1e-10)
    again = certificate(c["empirical_risk"], c["kl"], c["n"], c["samples"], c["delta"], c["grid_size"], c["candidates"])
    assert (c["risk_bound"], c["empirical_risk_bound"]) == (again["risk_bound"], again["empirical_risk_bound"])
    assert c["prior_data"] == {"kind": "data-dependent", "indices": list(range(40, 60))}
    assert c["data"]["indices"] == list(range(40)) and c["sigma"] == pytest.approx([0.2, 0.2])
    assert obj.certificate(x, y, indices=range(40), samples=50, seed=2) == obj.certificate(x, y, indices=range(40),
                                                                                           samples=50, seed=2)


def test_the_certificate_refuses_data_the_prior_saw():
    net = _net(0)
    x, y = _data(10)
    obj = PacBayesObjective(net, prior_sigma=0.1, n=10, seed=0)
    with pytest.raises(ValueError, match=r"^the certificate's data includes 2 points the prior was trained on "
                                         r"\(e.g. index 8\): certify only on data the prior never saw$"):
        obj.certificate(x, y, indices=range(10), prior_indices=[8, 9, 10, 11], samples=5)
    with pytest.raises(ValueError, match="indices must give one position per certified point: 9 indices for 10"):
        obj.certificate(x, y, indices=range(9), samples=5)
    with pytest.raises(ValueError, match="samples must be an integer >= 1"):
        obj.certificate(x, y, indices=range(10), samples=0)
    net[0].weight.data[0, 0] = math.inf
    with pytest.raises(ValueError, match="KL\\(Q||P\\) must be finite"):
        obj.certificate(x, y, indices=range(10), samples=5)


@pytest.mark.parametrize("kwargs,match", [
    (dict(prior_sigma=0.0, n=10), "prior_sigma must be a finite number > 0"),
    (dict(prior_sigma=0.1, n=0), "n must be an integer >= 1"),
    (dict(prior_sigma=0.1, n=10, delta=1.0), r"delta must be in \(0, 1\)"),
    (dict(prior_sigma=0.1, n=10, p_min=1.0), r"p_min must be in \(0, 1\)"),
    (dict(prior_sigma=0.1, n=10, sigma_init=-1.0), "sigma_init must be a finite number > 0"),
    (dict(prior_sigma=0.1, n=10, objective="seeger"), "objective must be one of"),
    (dict(prior_sigma=0.1, n=10, prior=torch.nn.Linear(3, 4)), "prior must be a module of the model's structure"),
], ids=["prior_sigma", "n", "delta", "p_min", "sigma_init", "objective", "prior"])
def test_the_objective_refuses_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PacBayesObjective(_net(0), **kwargs)


def test_a_smoke_run_certifies_below_chance(tmp_path):
    from noisereg.sweep import EXPERIMENTS, run_experiment

    res = run_experiment(EXPERIMENTS["certify"], "smoke", tmp_path, show_progress=False)
    stored = json.loads((tmp_path / "results.json").read_text())
    dd = next(r for r in stored["runs"] if r["variant"] == "data-dependent")
    c = dd["certificate"]
    assert c["risk_bound"] < 0.9 and c["grid_size"] == c["candidates"] == 2
    prior, certified = set(c["prior_data"]["indices"]), set(c["data"]["indices"])
    assert not prior & certified and len(prior) + len(certified) == 4096 and c["n"] == len(certified)
    again = certificate(c["empirical_risk"], c["kl"], c["n"], c["samples"], c["delta"], c["grid_size"], c["candidates"])
    assert again["risk_bound"] == c["risk_bound"]
    di = next(r for r in res["runs"] if r["variant"] == "data-independent")["certificate"]
    assert di["prior_data"]["indices"] == [] and di["n"] == 4096


def test_the_certify_experiment_refuses_data_it_cannot_use():
    from noisereg.errors import UserError
    from noisereg.sweep import EXPERIMENTS
    from noisereg.experiments.certify import split_pool

    exp = EXPERIMENTS["certify"]
    cfg = exp.config("smoke")
    with pytest.raises(UserError, match="certify reads its pool from the dataset setting"):
        exp.data(cfg, "some.npz", None)
    with pytest.raises(UserError, match="add --set dataset=fashion_mnist"):
        exp.data(cfg, None, "/some/dir")
    with pytest.raises(UserError, match="prior_share=0.01 leaves no data to one side of the split of 10 points"):
        split_pool(10, 0.01, 0)
    prior, cert = split_pool(100, 0.3, 4)
    assert len(prior) == 30 and sorted(prior + cert) == list(range(100)) and split_pool(100, 0.3, 4) == (prior, cert)
