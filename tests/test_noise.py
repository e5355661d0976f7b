"""The noise law (noisereg.noise), defined once: std per mode x convention, the regularizer's factor,
its draws, and the callers that must use it (effective_risk, the logged reg_loss, hessian_trace)."""

import math
import re
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.func import functional_call, hessian

import noisereg as nr
from noisereg.curvature import is_piecewise_linear
from noisereg.data import Split
from noisereg.losses import loss_value
from noisereg.models import MLP, DeepLinearNet, DiagonalNet, ResNet18, ToyCNN, WideConvNet
from noisereg.noise import NoiseLaw, noise_std, paper_sigma, regularizer_coefficient
from noisereg.training import TrainSpec, train

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("mode,convention,expected", [
    ("full", "paper", 0.3), ("layer", "paper", 0.3 * 2.0),
    ("full", "official", 0.3 / 2.0), ("layer", "official", 0.3),
], ids=lambda v: str(v))
def test_std_table(mode, convention, expected):
    assert noise_std(0.3, mode, convention, 4) == pytest.approx(expected, rel=1e-15)


@pytest.mark.parametrize("convention,expected", [("paper", 0.09 / 2), ("official", 0.09 / 6)])
def test_regularizer_coefficient(convention, expected):
    assert regularizer_coefficient(0.3, convention, 3) == pytest.approx(expected, rel=1e-14)
    # the same σ in the paper convention gives the same coefficient: one place applies the convention
    assert regularizer_coefficient(paper_sigma(0.3, convention, 3), "paper", 3) == pytest.approx(expected, rel=1e-14)


@pytest.mark.parametrize("call,match", [
    (lambda: noise_std(0.1, "half", "paper", 2), "mode must be one of"),
    (lambda: noise_std(0.1, "full", "mine", 2), "convention must be one of"),
    (lambda: noise_std(-0.1, "full", "paper", 2), "sigma must be a finite number >= 0"),
    (lambda: noise_std(0.1, "full", "paper", 0), "num_layers must be an integer >= 1"),
    (lambda: NoiseLaw(nn.Linear(2, 2), 0.1, order="sometimes"), "order must be one of"),
    (lambda: NoiseLaw(nn.Linear(2, 2), 0.1, mode="layer", order="cyclic").sample_batch(4, torch.Generator()),
     "order='cyclic' is deterministic"),
])
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("attr", ["ds_id", "ds_status", "ds_numel"])
def test_deepspeed_zero3_parameters_are_rejected_by_the_law(attr):
    """ZeRO-3 gathers its partitioned parameters itself: noise on them would never reach the forward."""
    p = nn.Parameter(torch.zeros(3))
    setattr(p, attr, 0)  # the attributes DeepSpeed ZeRO-3 attaches to the parameters it partitions
    with pytest.raises(TypeError, match="DeepSpeed ZeRO-3 partitioned parameters are not supported"):
        NoiseLaw([p], 0.1)


def test_injector_is_a_view_of_its_law():
    net = MLP(3, (5, 5), 2)
    inj = nr.NoiseInjector(net, 0.2, mode="layer", convention="official", seed=0)
    assert isinstance(inj.law, NoiseLaw) and inj.layers is inj.law.layers
    assert inj.std() == noise_std(0.2, "layer", "official", 3)
    inj.sigma = 0.4
    assert inj.law.sigma == 0.4 and inj.std() == noise_std(0.4, "layer", "official", 3)


@pytest.mark.parametrize("mode", ["full", "layer"])
def test_sample_batch_follows_the_law(mode):
    """One layer per sample (uniform, chi-square) with std σ√M; or every entry with std σ."""
    net = nn.Sequential(nn.Linear(40, 50), nn.ReLU(), nn.Linear(50, 30), nn.ReLU(), nn.Linear(30, 20))
    law = NoiseLaw(net, 0.1, mode=mode)
    num = 3000
    noise = law.sample_batch(num, torch.Generator().manual_seed(0))
    layer_of = [j for j, (_, ps) in enumerate(law.layers) for _ in ps]
    nonzero = torch.stack([torch.stack([e[k].ne(0).any() for k in range(num)]) for e in noise])  # (tensors, num)
    per_layer = torch.stack([nonzero[[i for i, j in enumerate(layer_of) if j == layer]].all(0)
                             for layer in range(law.num_layers)])
    if mode == "full":
        assert per_layer.all()
    else:
        assert per_layer.sum(0).eq(1).all()  # exactly one layer per sample
        counts = per_layer.sum(1).double()
        chi2 = ((counts - num / 3) ** 2 / (num / 3)).sum().item()
        assert chi2 < 13.8  # chi-square, 2 degrees of freedom, p = 0.001
    kept = torch.cat([e[nonzero[i]].flatten() for i, e in enumerate(noise)])
    se = law.std * math.sqrt(2 / kept.numel())  # standard error of the sample std (Gaussian)
    assert abs(kept.std().item() - law.std) < 5 * se


def test_effective_risk_official_convention_matches_monte_carlo():
    """Two-layer linear net, layer-wise noise: R̃_σ = R + c·tr(GGN) exactly (Sec. 3.2), c = σ²/(2M) officially."""
    g = torch.Generator().manual_seed(0)
    net = DeepLinearNet((4, 6, 3)).double()
    x = torch.randn(20, 4, generator=g, dtype=torch.float64)
    y = torch.randn(20, 3, generator=g, dtype=torch.float64)
    sigma = 0.5
    est, se = nr.smoothed_risk(net, x, y, "square", sigma, mode="layer", convention="official",
                               num_samples=40000, seed=1)
    official = nr.effective_risk(net, x, y, "square", sigma, convention="official")
    paper = nr.effective_risk(net, x, y, "square", sigma)
    trace = nr.ggn_trace(net, x, y, "square")
    assert official == pytest.approx(nr.risk(net, x, y) + sigma ** 2 / (2 * 2) * trace, rel=1e-12)
    assert abs(est - official) < 4 * se
    assert abs(est - paper) > 20 * se  # the test tells the conventions apart
    # the same under layers="tensor" (M counts tensors): a bias-free net has one tensor per module
    assert nr.effective_risk(net, x, y, "square", sigma, layers="tensor", convention="official") == official


def _tiny_split(n=48, d=6, classes=3, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=dtype)
    y = torch.randint(classes, (n,), generator=g)
    return Split(x[:32], y[:32], x[32:], y[32:], name="tiny", seed=seed)


def test_logged_reg_loss_uses_the_runs_convention():
    """reg_loss = R + σ²/(2M)·tr(GGN) under "official" (M = 3 layers), not R + σ²/2·tr(GGN)."""
    data = _tiny_split()
    sigma = 0.3
    spec = TrainSpec(method="layer", sigma=sigma, seed=0, epochs=2, lr=0.1, eval_every=1, convention="official",
                     log=("reg_loss", "ggn_trace"))
    record = train(lambda: MLP(6, (8, 8), 3).double(), data, spec)
    for h in record["history"]:
        expected = h["train_loss"] + sigma ** 2 / (2 * 3) * h["ggn_trace"]
        assert h["reg_loss"] == pytest.approx(expected, rel=1e-10)
        assert h["reg_loss"] != pytest.approx(h["train_loss"] + sigma ** 2 / 2 * h["ggn_trace"], rel=1e-6)


def _brute_hessian_trace(model, x, y, loss):
    params = {k: p.detach() for k, p in model.named_parameters()}
    h = hessian(lambda p: loss_value(loss, functional_call(model, p, (x,)), y))(params)
    return sum(h[k][k].reshape(params[k].numel(), -1).diagonal().sum().item() for k in params)


def test_logged_hessian_trace_is_the_hessians_trace():
    """tanh net: Hutchinson with its se, near the brute-force tr(H) and away from the GGN trace;
    ReLU net: the exact GGN trace, which is tr(H) there."""
    data = _tiny_split()
    spec = TrainSpec(method="gd", seed=0, epochs=1, lr=0.1, log=("hessian_trace", "ggn_trace"))
    for act in (nn.Tanh, nn.ReLU):
        torch.manual_seed(0)
        model = MLP(6, (10,), 3, activation=act).double()
        with torch.no_grad():  # large weights: a visibly non-linear regime for tanh
            for p in model.parameters():
                p.mul_(8.0)
        record = train(lambda m=model: m, data, spec)
        h = record["history"][-1]
        model.eval()
        exact = _brute_hessian_trace(model, data.x_train, data.y_train, "cross_entropy")
        if act is nn.Tanh:
            assert h["hessian_trace_se"] > 0
            assert abs(h["hessian_trace"] - exact) < 4 * h["hessian_trace_se"]
            assert abs(h["ggn_trace"] - exact) > 6 * h["hessian_trace_se"]  # a relabelled GGN trace would fail
        else:
            assert "hessian_trace_se" not in h
            assert h["hessian_trace"] == h["ggn_trace"]
            assert h["hessian_trace"] == pytest.approx(exact, rel=1e-8)


class _Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4, bias=False)
        self.b = nn.Linear(4, 4, bias=False)
        self.b.weight = self.a.weight

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


@pytest.mark.parametrize("make,expected", [
    (lambda: MLP(5, (6, 4), 3), True),
    (lambda: DeepLinearNet((5, 4, 3)), True),
    (lambda: ToyCNN(in_channels=1, image_size=8, channels=2, hidden=6, num_classes=3), True),
    (lambda: WideConvNet(in_channels=1, channels=2, num_classes=3), True),
    (lambda: ResNet18(num_classes=3, in_channels=1, width=2).eval(), True),
    (lambda: MLP(5, (6, 4), 3, activation=nn.Tanh), False),
    (lambda: MLP(5, (6,), 3, activation=nn.GELU), False),
    (lambda: DiagonalNet(5), False),
    (_Tied, False),
], ids=["mlp-relu", "deep-linear", "toy-cnn", "wide-conv", "resnet18", "mlp-tanh", "mlp-gelu", "diagonal", "tied"])
def test_is_piecewise_linear_agrees_with_brute_force(make, expected):
    """Where the flag holds, brute-force tr(H) equals the GGN trace; where it does not, they differ."""
    assert is_piecewise_linear(make()) is expected
    if isinstance(make(), ResNet18):
        return  # too many parameters for a dense Hessian here; the flag is the declared class attribute
    if isinstance(make(), DiagonalNet):
        return  # conservative False: its w1², −w2² terms cancel in D²Φ[I], which the module tree cannot show
    torch.manual_seed(0)
    model = make().double()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    shape = (12, 1, 8, 8) if isinstance(model, (ToyCNN, WideConvNet)) else (12, model.b.in_features
                                                                            if isinstance(model, _Tied) else 5)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    out_dim = model(x).shape[1]
    if out_dim > 1:
        y, loss = torch.randint(out_dim, (12,), generator=g), "cross_entropy"
    else:
        y, loss = torch.randn(12, 1, generator=g, dtype=torch.float64), "square"
    exact = _brute_hessian_trace(model, x, y, loss)
    ggn = nr.ggn_trace(model, x, y, loss)
    if expected:
        assert ggn == pytest.approx(exact, rel=1e-8)
    else:
        assert abs(ggn - exact) > 1e-3 * abs(exact)


_PRIVATE = re.compile(r"\._(next_layer|selection_gen|noise_gens|sigma)\b|\binj\w*\.step\s*=|\.ref\.step")
_LAYER_DRAW = re.compile(r"randint\(\s*len\([^)]*layers")


def test_nothing_outside_the_core_copies_the_law_or_touches_injector_internals():
    offenders = []
    for path in [*(ROOT / "src" / "noisereg").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")]:
        if path.name in ("injection.py", "noise.py"):
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if _PRIVATE.search(line) or _LAYER_DRAW.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
