"""PAC-Bayes certificates and sharpness (issue 22, parts 1, 2 and 4): every formula against a direct computation."""

import math

import pytest
import torch

import noisereg as nr
from noisereg.pac_bayes import PRIOR_GRID, binary_kl, certificate, gaussian_kl, kl_inverse, monte_carlo_generator


@pytest.mark.parametrize("q,c", [(0.0, 0.01), (0.1, 0.05), (0.3, 0.001), (0.5, 2.0), (0.9, 0.2), (1.0, 0.1),
                                 (0.2, 0.0)])
def test_kl_inverse_against_a_direct_search(q, c):
    grid = [i / 100000 for i in range(100001)]
    direct = max(p for p in grid if p >= q and binary_kl(q, p) <= c + 1e-15)
    p = kl_inverse(q, c)
    assert direct - 1e-5 <= p <= direct + 1e-5 + 1e-12
    assert p >= q and (p == 1.0 or binary_kl(q, p) >= c - 1e-9)


def test_kl_inverse_refuses_bad_input():
    with pytest.raises(ValueError, match=r"q must be in \[0, 1\]"):
        kl_inverse(1.5, 0.1)
    with pytest.raises(ValueError, match="c must be a finite number >= 0"):
        kl_inverse(0.1, -1.0)


def test_gaussian_kl_against_torch_distributions():
    torch.manual_seed(0)
    w, w0 = torch.randn(50, dtype=torch.float64), torch.randn(50, dtype=torch.float64)
    q = torch.distributions.Normal(w, 0.3)
    p = torch.distributions.Normal(w0, 0.7)
    direct = float(torch.distributions.kl_divergence(q, p).sum())
    assert gaussian_kl(w, w0, 0.3, 0.7) == pytest.approx(direct, rel=1e-12)


def _problem(n, seed):
    """Two Gaussian classes in R^5 (means ±0.5 along every axis), a fixed linear classifier."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 5, generator=g, dtype=torch.float64) + (y.double() - 0.5)[:, None]
    return x, y


def _classifier():
    torch.manual_seed(1)
    net = torch.nn.Linear(5, 2).double()
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[-1.0] * 5, [1.0] * 5], dtype=torch.float64))
        net.bias.zero_()
    return net


def test_every_field_follows_from_the_others():
    net, prior = _classifier(), torch.nn.Linear(5, 2).double()
    x, y = _problem(500, 0)
    b = nr.pac_bayes_bound(net, x, y, 0.3, prior=prior, delta=0.05, samples=200, seed=1)
    w = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    w0 = torch.cat([p.detach().reshape(-1) for p in prior.parameters()])
    assert b["kl"] == pytest.approx(gaussian_kl(w, w0, 0.3, b["prior_sigma"]), rel=1e-12)
    assert b["grid_size"] == len(PRIOR_GRID) and b["prior_sigma"] in PRIOR_GRID and b["n"] == 500
    assert b["candidates"] == 1
    emp_bound = kl_inverse(b["empirical_risk"], math.log(2 / b["delta"]) / b["samples"])      # Langford & Caruana
    risk = kl_inverse(emp_bound, (b["kl"] + math.log(4 * b["grid_size"] * math.sqrt(b["n"]) / b["delta"])) / b["n"])
    assert b["empirical_risk_bound"] == emp_bound and b["risk_bound"] == risk                 # Maurer, δ/2 each
    assert b["empirical_risk"] <= b["empirical_risk_bound"] <= b["risk_bound"] <= 1
    fixed = nr.pac_bayes_bound(net, x, y, 0.3, prior=prior, prior_sigma=b["prior_sigma"], samples=200, seed=1)
    assert fixed["grid_size"] == 1 and fixed["risk_bound"] < b["risk_bound"]   # the same prior without the union


def test_the_certificate_holds_on_fresh_data():
    """Validity: the stochastic classifier's error on 20,000 fresh points stays under its certificate."""
    net = _classifier()
    x, y = _problem(4000, 0)
    b = nr.pac_bayes_bound(net, x, y, 0.5, samples=300, seed=2)
    fresh_x, fresh_y = _problem(20000, 7)
    err, se = nr.pac_bayes.stochastic_error(net, fresh_x, fresh_y, 0.5, 300, seed=3)
    assert err + 3 * se < b["risk_bound"] < 0.5       # valid and not vacuous on this easy problem
    assert abs(err - b["empirical_risk"]) < 0.02


@pytest.mark.parametrize("field,values,direction", [
    ("n", (1000, 4000, 16000), -1), ("delta", (0.01, 0.05, 0.2), -1), ("samples", (10, 100, 1000), -1)])
def test_the_bound_is_monotone(field, values, direction):
    base = {"empirical_risk": 0.1, "kl": 50.0, "n": 4000, "samples": 500, "delta": 0.05, "grid_size": 1}
    bounds = [certificate(**{**base, field: v})["risk_bound"] for v in values]
    assert all((b - a) * direction > 0 for a, b in zip(bounds, bounds[1:]))


def _direct_inverse(q, c, step=1e-6):
    """The largest p on a grid of ``step`` with kl(q‖p) ≤ c, by a plain scan from q upwards."""
    p = q
    while p + step < 1 and binary_kl(q, p + step) <= c:
        p += step
    return p


def test_certificate_against_a_hand_computation():
    """δ = 0.05, 32 prior stds, n = 2048, ê = 0.19, KL = 100 nats, 10,000 draws: ≈ 0.35 (the issue's arithmetic),
    each part from its formula: the Monte-Carlo term ln(2C/δ)/m, the Maurer term (KL + ln(4G√n/δ))/n."""
    c = certificate(0.19, 100.0, 2048, 10000, 0.05, grid_size=32)
    mc = math.log(2 / 0.05) / 10000                               # 3.689e-4
    e_hat = _direct_inverse(0.19, mc)                             # 0.19 + about sqrt(2·0.19·0.81·mc)
    assert c["empirical_risk_bound"] == pytest.approx(e_hat, abs=2e-6) and 0.200 < e_hat < 0.202
    maurer = (100.0 + math.log(4 * 32 * math.sqrt(2048) / 0.05)) / 2048   # (100 + 11.66)/2048 = 0.05452
    assert maurer == pytest.approx(0.05452, abs=1e-5)
    assert c["risk_bound"] == pytest.approx(_direct_inverse(c["empirical_risk_bound"], maurer), abs=2e-6)
    assert 0.34 < c["risk_bound"] < 0.36
    # C posterior candidates enter the Monte-Carlo term (and only it): ln(2C/δ)/m
    c6 = certificate(0.19, 100.0, 2048, 10000, 0.05, grid_size=32, candidates=6)
    assert c6["empirical_risk_bound"] == pytest.approx(_direct_inverse(0.19, math.log(12 / 0.05) / 10000), abs=2e-6)
    assert c6["risk_bound"] == pytest.approx(_direct_inverse(c6["empirical_risk_bound"], maurer), abs=2e-6)
    assert c6["empirical_risk_bound"] > c["empirical_risk_bound"]


def test_certificate_refuses_bad_grid_sizes():
    with pytest.raises(ValueError, match="grid_size must be an integer >= 1, got 0"):
        certificate(0.1, 1.0, 100, 100, 0.05, grid_size=0)
    with pytest.raises(ValueError, match="candidates must be an integer >= 1, got 1.5"):
        certificate(0.1, 1.0, 100, 100, 0.05, candidates=1.5)


def test_monte_carlo_draws_have_a_stream_of_their_own():
    """The weight draws never replay torch.manual_seed(seed), the stream that draws a run's initialisation."""
    torch.manual_seed(3)
    init = torch.randn(1000)
    mc = torch.randn(1000, generator=monte_carlo_generator(3))
    assert not torch.allclose(init, mc) and torch.equal(mc, torch.randn(1000, generator=monte_carlo_generator(3)))
    net = _classifier()
    x, y = _problem(200, 0)
    err, _ = nr.pac_bayes.stochastic_error(net, x, y, 0.8, 5, seed=3)
    g, errors = monte_carlo_generator(3), []   # the same draws by hand, from that generator
    for _ in range(5):
        noisy = {k: p.detach() + 0.8 * torch.randn(p.shape, generator=g, dtype=p.dtype) for k, p in net.named_parameters()}
        out = torch.func.functional_call(net, noisy, (x,))
        errors.append(float((out.argmax(1) != y).double().mean()))
    assert err == pytest.approx(sum(errors) / 5, abs=1e-12)


def test_pac_bayes_bound_refuses_bad_input():
    net = _classifier()
    x, y = _problem(50, 0)
    with pytest.raises(ValueError, match="sigma must be"):
        nr.pac_bayes_bound(net, x, y, 0.0)
    with pytest.raises(ValueError, match="delta must be"):
        nr.pac_bayes_bound(net, x, y, 0.1, delta=1.0)
    with pytest.raises(ValueError, match="prior has 6 trainable parameters"):
        nr.pac_bayes_bound(net, x, y, 0.1, prior=torch.nn.Linear(2, 2))


def _with_dropout():
    return torch.nn.Sequential(_classifier(), torch.nn.Dropout(0.5))


def _with_batchnorm():
    return torch.nn.Sequential(_classifier(), torch.nn.BatchNorm1d(2).double())


BAD_INPUT = [   # (model, labels from the good ones, error, message): refused by pac_bayes_bound and sharpness alike
    pytest.param(_classifier, lambda y: y + 20, ValueError, r"y must be class labels in 0\.\.1 \(the model has 2 "
                 r"outputs\), got labels from 20 to 21", id="labels-out-of-range"),
    pytest.param(_classifier, lambda y: y - 1, ValueError, r"y must be class labels in 0\.\.1.*from -1 to 0",
                 id="negative-labels"),
    pytest.param(_classifier, lambda y: y.double(), TypeError, "y must be a tensor of integer class labels, got "
                 "torch.float64", id="float-labels"),
    pytest.param(_classifier, lambda y: y.bool(), TypeError, "integer class labels, got torch.bool", id="bool-labels"),
    pytest.param(_classifier, lambda y: y[:-1], ValueError, r"one label per row of x \(200\), got shape \(199,\)",
                 id="short-labels"),
    pytest.param(_with_dropout, lambda y: y, ValueError, "model has Dropout in training mode.*call model.eval",
                 id="train-mode-dropout"),
    pytest.param(_with_batchnorm, lambda y: y, ValueError, "model has BatchNorm1d in training mode",
                 id="train-mode-batchnorm"),
]


@pytest.mark.parametrize("make,labels,error,match", BAD_INPUT)
@pytest.mark.parametrize("measure", ["pac_bayes_bound", "sharpness"])
def test_misused_classifiers_are_refused(measure, make, labels, error, match):
    x, y = _problem(200, 0)
    call = {"pac_bayes_bound": lambda m, yy: nr.pac_bayes_bound(m, x, yy, 0.1, samples=5),
            "sharpness": lambda m, yy: nr.sharpness(m, x, yy, samples=5)}[measure]
    with pytest.raises(error, match=match):
        call(make(), labels(y))


@pytest.mark.parametrize("make", [_with_dropout, _with_batchnorm])
def test_eval_mode_models_with_dropout_or_batchnorm_are_scored(make):
    x, y = _problem(200, 0)
    model = make().eval()
    assert nr.pac_bayes_bound(model, x, y, 0.1, samples=5)["empirical_risk"] < 0.5
    assert nr.sharpness(model, x, y, samples=5, iters=3)["sigma"] > 0


def test_sharpness_is_not_measurable_on_labels_the_model_gets_wrong():
    """The accuracy on shuffled-away labels cannot fall by drop: refused, not a σ of 1e9 (2**30 doublings)."""
    x, _ = _problem(200, 0)
    wrong = 1 - _classifier()(x).argmax(1)   # every label the other class
    with pytest.raises(ValueError, match=r"sharpness is not measurable: the clean accuracy 0 is not above drop=0.1"):
        nr.sharpness(_classifier(), x, wrong, samples=5)


def test_sharpness_is_not_measurable_when_chance_is_within_drop():
    """Clean accuracy 0.6 on two classes: noise brings it to about 0.5, never 0.3 below: refused."""
    x, y = _problem(200, 0)
    y = y.clone()
    wrong = torch.nonzero(_classifier()(x).argmax(1) == y).flatten()[:80]   # 80 of ~195 right ones made wrong
    y[wrong] = 1 - y[wrong]
    with pytest.raises(ValueError, match="sharpness is not measurable: the accuracy stays within drop=0.3.*smaller drop"):
        nr.sharpness(_classifier(), x, y, drop=0.3, samples=5)


def test_sharpness_refuses_a_bad_high():
    x, y = _problem(20, 0)
    with pytest.raises(ValueError, match="high must be a finite number > 0, got 0"):
        nr.sharpness(_classifier(), x, y, high=0)


def test_sharpness_brackets_the_allowed_drop():
    net = _classifier()
    x, y = _problem(1000, 0)
    s = nr.sharpness(net, x, y, drop=0.1, samples=50, seed=0)
    assert s["low"] < s["high"] <= 2 * s["low"] + 1e-9 or s["high"] - s["low"] < 1e-3
    assert s["clean_accuracy"] - s["accuracy"] <= 0.1
    e_hi, _ = nr.pac_bayes.stochastic_error(net, x, y, s["high"], 50, seed=0)
    assert s["clean_accuracy"] - (1 - e_hi) > 0.1              # the upper end exceeds the drop
    assert nr.sharpness(net, x, y, drop=0.2, samples=50)["sigma"] > s["sigma"]


def test_sharpness_expands_a_bracket_that_starts_too_low():
    net = _classifier()
    x, y = _problem(1000, 0)
    s = nr.sharpness(net, x, y, drop=0.1, samples=50, seed=0)
    small = nr.sharpness(net, x, y, drop=0.1, samples=50, seed=0, high=0.01)   # the drop is not reached at 0.01
    assert abs(small["sigma"] - s["sigma"]) < 1e-3 * s["sigma"]


# ------------------------------------------------------------------ certificates of the experiments' runs (point 3)


def test_classification_runs_end_with_a_deterministic_certificate(tmp_path):
    from noisereg.sweep import EXPERIMENTS, run_experiment
    from noisereg.noise import paper_sigma

    over = {"seeds": (0, 1, 2), "convention": "official", "layers": "tensor", "epochs": 40}
    res = run_experiment(EXPERIMENTS["fig3"], "smoke", tmp_path / "a", overrides=over, show_progress=False)
    again = run_experiment(EXPERIMENTS["fig3"], "smoke", tmp_path / "b", overrides=over, show_progress=False)
    assert [r["certificate"] for r in res["runs"]] == [r["certificate"] for r in again["runs"]]   # same seed, same bound
    T = 6  # the smoke MLP (2 hidden layers): 3 Linear layers, weight and bias each
    for r in res["runs"]:
        c = r["certificate"]
        assert r["final"]["risk_bound"] == c["risk_bound"] and c["n"] == res["sizes"]["train"]
        assert c["prior_data"] == {"kind": "data-independent", "indices": [],
                                   "source": f"the run's initialisation (seed {r['seed']})"}
        if r["method"] == "gd":
            assert c["grid_size"] == 32 and c["candidates"] == 6 and c["sigma"] in (0.001, 0.002, 0.005, 0.01, 0.02, 0.05)
            assert c["samples"] == max(10, int(0.05 * 3 * 40 * c["n"] // (c["n"] * 6)))
        else:   # the run's σ converted to the paper convention: σ/√T
            assert c["grid_size"] == 32 and c["candidates"] == 1 and c["sigma"] == pytest.approx(paper_sigma(r["sigma"], "official", T))
            assert c["samples"] == max(10, int(0.05 * 3 * 40))
    rows = [row for row in EXPERIMENTS["fig3"].claims(res) if "PAC-Bayes" in row["claim"]]
    assert {row["verdict"] for row in rows} == {"measured"} and len(rows) == 3   # GD, full, layer
    for row in rows:   # the parts, the prior, a plain word on vacuity, and no paired test on a constant
        assert "paired" not in row["ours"] and all(k in row["ours"] for k in ("ê ", "KL ", "n ", "δ ", "initialisation"))
        median = float(row["ours"].split()[1])
        assert ("trivial" in row["ours"]) == (median >= 1.0) and ("vacuous" in row["ours"]) == (0.9 <= median < 1.0)
    notes = "\n".join(EXPERIMENTS["fig3"].notes(res))
    assert "PAC-Bayes risk certificate |" in notes


def test_the_docstring_cites_the_pac_bayes_section_of_theory_md():
    import re
    from pathlib import Path

    theory = (Path(__file__).parents[1] / "docs" / "THEORY.md").read_text()
    cited = re.findall(r"THEORY\.md §(\d+)", nr.pac_bayes.__doc__)
    assert cited
    for number in cited:
        heading = re.search(rf"^## {number}\. (.*)$", theory, re.M)
        assert heading is not None and "PAC-Bayes" in heading.group(1), (number, heading)
