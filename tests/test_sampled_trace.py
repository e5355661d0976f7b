"""sampled_ggn_trace: unbiased tr(GGN) from labels drawn from the model, against the exact trace (float64)."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import noisereg as nr
from noisereg import _per_sample as per_sample
from noisereg import curvature

DT = torch.float64


def model_and_data(name, k, n, seed):
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    if name == "mlp":
        m, x = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, k)), torch.randn(n, 6, generator=g)
    elif name == "cnn-bn":
        m = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(4 * 4 * 4, k))
        x = torch.randn(n, 2, 8, 8, generator=g)
        bn = m[1]
        with torch.no_grad():
            bn.running_mean.copy_(torch.randn(4, generator=g))
            bn.running_var.copy_(torch.rand(4, generator=g) + 0.5)
    elif name == "tanh":  # a smooth net: the GGN trace still, not the Hessian's
        m, x = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, k)), torch.randn(n, 6, generator=g)
    else:
        raise KeyError(name)
    m = m.to(DT).eval()
    with torch.no_grad():  # confident predictions: p far from uniform, so label draws matter
        m[-1].weight.mul_(3.0)
    return m, x.to(DT)


def targets(loss, n, k, seed):
    g = torch.Generator().manual_seed(seed)
    if loss == "square":
        return torch.randn(n, k, generator=g, dtype=DT)
    if loss == "logistic":
        return torch.randint(0, 2, (n,), generator=g).to(DT) * 2 - 1
    return torch.randint(0, k, (n,), generator=g)


CASES = [(m, loss, seed) for seed, (m, loss) in enumerate(
    [(m, loss) for m in ("mlp", "cnn-bn", "tanh") for loss in ("square", "logistic", "cross_entropy")])]


def case(name, loss, seed, n=48):
    k = 1 if loss == "logistic" else 5
    model, x = model_and_data(name, k, n, seed)
    return model, x, targets(loss, n, k, seed)


@pytest.mark.parametrize("name,loss,seed", CASES, ids=[f"{m}-{loss}-s{s}" for m, loss, s in CASES])
def test_sampled_trace_is_within_4_standard_errors_of_the_exact_one(name, loss, seed):
    model, x, y = case(name, loss, seed)
    exact = nr.ggn_trace(model, x, y, loss)
    est, se = nr.sampled_ggn_trace(model, x, y, loss, num_samples=64, seed=seed)
    assert se > 0
    assert abs(est - exact) <= 4 * se, (est, se, exact)
    assert se < 0.1 * exact  # informative: the budget of 64 draws gives < 10 % standard error


@pytest.mark.parametrize("loss", ["square", "cross_entropy"])
def test_relative_error_shrinks_like_one_over_sqrt_draws(loss):
    """Fixed budget: 1024 draws reach 3 % relative error, and the standard error falls ~ 1/√draws."""
    model, x, y = case("mlp", loss, seed=3)
    exact = nr.ggn_trace(model, x, y, loss)
    est16, se16 = nr.sampled_ggn_trace(model, x, y, loss, num_samples=16, seed=1)
    est, se = nr.sampled_ggn_trace(model, x, y, loss, num_samples=1024, seed=1)
    assert abs(est - exact) / exact < 0.03
    assert se16 / se == pytest.approx(8.0, rel=0.35)


REAL = curvature._pseudo_gradients
BIASED = {  # a plausible bug each, and the 4-standard-error check must reject it
    "empirical-fisher": lambda loss, f, draw, y: (torch.softmax(f.detach(), 1) - F.one_hot(y, f.shape[1]).to(f.dtype))
    .unsqueeze(2).expand(-1, -1, draw.shape[1]),  # gradients at the true labels (no spread: se = 0)
    "missing-p": lambda loss, f, draw, y: -(REAL(loss, f, draw)
                                            - torch.softmax(f.detach(), 1).unsqueeze(2)),  # u = -e_ŷ
    "half-variance": lambda loss, f, draw, y: REAL(loss, f, draw) / math.sqrt(2),
}


@pytest.mark.parametrize("bug", list(BIASED))
def test_the_check_rejects_a_biased_estimator(monkeypatch, bug):
    model, x, y = case("mlp", "cross_entropy", seed=5)
    exact = nr.ggn_trace(model, x, y, "cross_entropy")
    est, se = nr.sampled_ggn_trace(model, x, y, "cross_entropy", num_samples=64, seed=5)
    assert abs(est - exact) <= 4 * se  # the real one passes
    monkeypatch.setattr(curvature, "_pseudo_gradients", lambda loss, f, draw: BIASED[bug](loss, f, draw, y))
    est_b, se_b = nr.sampled_ggn_trace(model, x, y, "cross_entropy", num_samples=64, seed=5)
    assert abs(est_b - exact) > 4 * se_b, (est_b, se_b, exact)


def test_draws_do_not_depend_on_the_chunks():
    model, x, y = case("cnn-bn", "cross_entropy", seed=2)
    whole = nr.sampled_ggn_trace(model, x, y, "cross_entropy", num_samples=8, seed=4, chunk_size=len(x))
    for chunk in (1, 5, None):
        got = nr.sampled_ggn_trace(model, x, y, "cross_entropy", num_samples=8, seed=4, chunk_size=chunk)
        assert got == pytest.approx(whole, rel=1e-12)
    assert nr.sampled_ggn_trace(model, x, y, "cross_entropy", num_samples=8, seed=5) != pytest.approx(whole)


def test_one_pass_per_chunk_with_one_column_per_draw(monkeypatch):
    """The cost: one forward and one backward column per draw, never the k - 1 columns of the exact trace."""
    model, x, y = case("cnn-bn", "cross_entropy", seed=2)
    columns, inner = [], per_sample.backprop_columns
    monkeypatch.setattr(per_sample, "backprop_columns",
                        lambda f, zs, grad_out, batched: columns.append(grad_out.shape[0]) or inner(f, zs, grad_out, batched))
    nr.sampled_ggn_trace(model, x, y, "cross_entropy", num_samples=3, seed=0)
    assert columns == [3]


def test_errors():
    model, x, y = case("mlp", "square", seed=0)
    with pytest.raises(ValueError, match="num_samples must be an integer >= 2, got 1"):
        nr.sampled_ggn_trace(model, x, y, num_samples=1)
    with pytest.raises(TypeError, match="num_samples must be an integer >= 2, got float"):
        nr.sampled_ggn_trace(model, x, y, num_samples=8.0)
    with pytest.raises(ValueError, match="seed must be an integer >= 0, got -1"):
        nr.sampled_ggn_trace(model, x, y, seed=-1)
    with pytest.raises(ValueError, match="chunk_size must be None or an integer >= 1, got 0"):
        nr.sampled_ggn_trace(model, x, y, chunk_size=0)
    with pytest.raises(ValueError, match="loss must be one of"):
        nr.sampled_ggn_trace(model, x, y, loss="hinge")
    with pytest.raises(ValueError, match="cross_entropy needs integer class labels"):
        nr.sampled_ggn_trace(model, x, y, loss="cross_entropy")
    model.train()
    bn_model, xb, yb = case("cnn-bn", "square", seed=0)
    bn_model.train()
    with pytest.raises(ValueError, match="Call model.eval"):
        nr.sampled_ggn_trace(bn_model, xb, yb)


# ------------------------------------------------------------ trace_estimator in the training metrics
def test_training_metrics_with_the_sampled_estimator_log_standard_errors():
    from noisereg.data import Split
    from noisereg.training import TrainSpec, train

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 6, generator=g, dtype=DT), torch.randint(0, 3, (64,), generator=g)
    split = Split(x[:48], y[:48], x[48:], y[48:], name="toy", seed=0)
    make = lambda: nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3)).double()  # noqa: E731
    runs = {est: train(make, split, TrainSpec(method="layer", sigma=0.3, seed=0, epochs=2, lr=0.1, log=(
        "reg_loss", "ggn_trace", "hessian_trace"), trace_estimator=est)) for est in ("exact", "sampled")}
    for exact, sampled in zip(runs["exact"]["history"], runs["sampled"]["history"]):
        se = sampled["ggn_trace_se"]
        assert 0 < se and abs(sampled["ggn_trace"] - exact["ggn_trace"]) <= 4 * se
        assert sampled["hessian_trace"] == sampled["ggn_trace"] and sampled["hessian_trace_se"] == se  # ReLU net
        assert sampled["reg_loss_se"] == pytest.approx(0.3 ** 2 / 2 * se, rel=1e-12)
        assert sampled["reg_loss"] == pytest.approx(sampled["train_loss"] + 0.3 ** 2 / 2 * sampled["ggn_trace"],
                                                    rel=1e-6)
        assert not {"ggn_trace_se", "reg_loss_se", "hessian_trace_se"} & set(exact)


def test_trace_estimator_is_checked():
    from noisereg.errors import UserError
    from noisereg.training import TrainSpec

    with pytest.raises(UserError, match=r"trace_estimator must be one of \('exact', 'sampled'\), got 'hutchinson'"):
        TrainSpec(trace_estimator="hutchinson")
