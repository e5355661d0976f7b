"""ggn_trace and hessian_trace against brute force (torch.func Jacobians and Hessians), float64."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, hessian, jacrev

import noisereg as nr
from noisereg.losses import loss_value

DT = torch.float64


def brute_ggn(model, x, y, loss):
    """tr(Jᵀ ∇²L J) per layer from the full Jacobian and the full loss Hessian (no shortcuts)."""
    params = {k: p.detach() for k, p in model.named_parameters() if p.requires_grad}
    buffers = dict(model.named_buffers())
    call = lambda ps: functional_call(model, (ps, buffers), (x,)).reshape(x.shape[0], -1)  # noqa: E731
    f = call(params)
    J = jacrev(call)(params)  # name -> (n, k, *shape)
    H = hessian(lambda out: loss_value(loss, out, y))(f)  # (n, k, n, k)
    n, k = f.shape
    H = H.reshape(n * k, n * k)
    layer_of = {id(p): name for name, ps in nr.NoiseInjector(model, 0.0).layers for p in ps}
    named = dict(model.named_parameters())
    out = {}
    for key, j in J.items():
        j = j.reshape(n * k, -1)
        name = layer_of[id(named[key])]
        out[name] = out.get(name, 0.0) + torch.einsum("ap,ab,bp->", j, H, j).item()
    return out


def brute_hessian_trace(model, x, y, loss):
    params = {k: p.detach() for k, p in model.named_parameters() if p.requires_grad}
    buffers = dict(model.named_buffers())
    H = hessian(lambda ps: loss_value(loss, functional_call(model, (ps, buffers), (x,)), y))(params)
    return sum(torch.diagonal(H[k][k].reshape(params[k].numel(), -1)).sum().item() for k in params)


class Residual(nn.Module):
    """x + conv(relu(bn(conv(x)))), then ReLU: a ResNet basic block without the downsampling."""

    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return F.relu(x + self.conv2(F.relu(self.bn(self.conv1(x)))))


class Scale(nn.Module):
    """A module the fast path does not know: goes through the general (torch.func) path."""

    def __init__(self, d):
        super().__init__()
        self.s = nn.Parameter(torch.linspace(0.5, 1.5, d))

    def forward(self, x):
        return x * self.s


def randomize_bn(model, gen):
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen))
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen))
    return model.eval()


def build(name, k, seed):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    if name == "mlp-relu":
        m, x = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, k)), torch.randn(9, 5)
    elif name == "mlp-tanh":
        m, x = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, k)), torch.randn(9, 5)
    elif name == "cnn-maxpool-bn":
        m = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(4, 4, 3, stride=2, groups=2), nn.ReLU(), nn.Flatten(), nn.Linear(4, k))
        x = torch.randn(7, 2, 8, 8)
    elif name == "residual":
        m = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), Residual(3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(3, k))
        x = torch.randn(6, 1, 6, 6)
    elif name == "conv1d-seq-general":  # Conv1d with dilation, Linear on (n, T, d), an unknown module
        m = nn.Sequential(nn.Conv1d(2, 3, 3, padding=2, dilation=2), nn.ReLU(), Transpose(), nn.Linear(3, 4),
                          Scale(4), nn.Flatten(), nn.Linear(4 * 10, k))
        x = torch.randn(6, 2, 10)
    else:
        raise KeyError(name)
    return randomize_bn(m.to(DT), gen), x.to(DT)


class Transpose(nn.Module):
    def forward(self, x):
        return x.transpose(1, 2)


def targets(loss, n, k, seed):
    g = torch.Generator().manual_seed(seed)
    if loss == "square":
        return torch.randn(n, k, generator=g, dtype=DT)
    if loss == "logistic":
        return torch.randint(0, 2, (n,), generator=g).to(DT) * 2 - 1
    return torch.randint(0, k, (n,), generator=g)


MODELS = ["mlp-relu", "mlp-tanh", "cnn-maxpool-bn", "residual", "conv1d-seq-general"]
LOSSES = ["square", "logistic", "cross_entropy"]


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("name", MODELS)
def test_ggn_trace_equals_brute_force(name, loss):
    k = 1 if loss == "logistic" else 3
    model, x = build(name, k, seed=MODELS.index(name))
    y = targets(loss, x.shape[0], k, seed=1)
    expected = brute_ggn(model, x, y, loss)
    got = nr.ggn_trace(model, x, y, loss, per_layer=True)
    assert set(got) == set(expected) == {n for n, _ in nr.NoiseInjector(model, 0.0).layers}
    for layer in expected:
        assert got[layer] == pytest.approx(expected[layer], rel=1e-10, abs=1e-13), layer
    assert nr.ggn_trace(model, x, y, loss) == pytest.approx(sum(expected.values()), rel=1e-10)
    ref = nr.ggn_trace(model, x, y, loss, per_layer=True, method="functorch")
    assert ref == pytest.approx(expected, rel=1e-10)


def _gram_spots(monkeypatch):
    """Record L for every L×L Gram matrix Σ_c g_cᵀg_c / UᵀU that ggn_trace's conv path builds."""
    spots, bmm = [], torch.bmm

    def spy(a, b, **kw):
        out = bmm(a, b, **kw)
        if out.shape[-2] == out.shape[-1]:  # (the other bmm's output is Cout × P, not square here)
            spots.append(out.shape[-1])
        return out

    monkeypatch.setattr(torch, "bmm", spy)
    return spots


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("case", ["conv16-4x4", "conv-stride-groups-5x5"])
def test_conv_ggn_trace_gram_path_equals_brute_force_beyond_1x1_outputs(case, loss, monkeypatch):
    torch.manual_seed(11)
    k = 1 if loss == "logistic" else 3
    if case == "conv16-4x4":  # 2×2 outputs: the cross-position terms of the Gram path count
        model, x = nn.Sequential(nn.Conv2d(16, 16, 3), nn.ReLU(), nn.Flatten(), nn.Linear(64, k)), torch.randn(5, 16, 4, 4)
    else:  # 3×3 outputs, stride 2, padding 1, groups 2, no bias on the conv
        model = nn.Sequential(nn.Conv2d(32, 32, 3, stride=2, padding=1, groups=2, bias=False), nn.ReLU(),
                              nn.Flatten(), nn.Linear(288, k))
        x = torch.randn(4, 32, 5, 5)
    model, x = model.to(DT), x.to(DT)
    y = targets(loss, x.shape[0], k, seed=3)
    expected = brute_ggn(model, x, y, loss)
    spots = _gram_spots(monkeypatch)
    got = nr.ggn_trace(model, x, y, loss, per_layer=True)
    assert spots and min(spots) > 1  # the Gram path ran, on more than one output position
    assert got == pytest.approx(expected, rel=1e-10)


def test_resnet18_stage_shapes_ggn_trace_equals_brute_force(monkeypatch):
    """ResNet-18 at width 4 on 16×16 inputs: stages of 16², 8², 4², 2² positions, the late ones via Gram matrices."""
    from noisereg.models import ResNet18

    torch.manual_seed(0)
    model = randomize_bn(ResNet18(num_classes=3, in_channels=1, width=4).to(DT), torch.Generator().manual_seed(0))
    x, y = torch.randn(3, 1, 16, 16, dtype=DT), targets("cross_entropy", 3, 3, seed=0)
    expected = brute_ggn(model, x, y, "cross_entropy")
    spots = _gram_spots(monkeypatch)
    got = nr.ggn_trace(model, x, y, "cross_entropy", per_layer=True)
    assert {4, 16} <= set(spots)  # the last two stages take the Gram path
    assert got == pytest.approx(expected, rel=1e-9)


def test_ggn_trace_module_called_twice_and_frozen_params():
    torch.manual_seed(0)
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, nn.Tanh(), shared, nn.Linear(4, 2)).to(DT)  # shared called twice
    model[3].bias.requires_grad_(False)
    x, y = torch.randn(5, 4, dtype=DT), torch.randn(5, 2, dtype=DT)
    got = nr.ggn_trace(model, x, y, per_layer=True)
    assert got == pytest.approx(brute_ggn(model, x, y, "square"), rel=1e-10)


def test_square_loss_ggn_is_ntk_trace_over_n():
    model, x = build("mlp-tanh", 2, seed=3)
    y = targets("square", 9, 2, 0)
    params = {k: p.detach() for k, p in model.named_parameters()}
    J = jacrev(lambda ps: functional_call(model, ps, (x,)))(params)
    ntk_trace = sum(j.pow(2).sum().item() for j in J.values())
    assert nr.ggn_trace(model, x, y) == pytest.approx(ntk_trace / 9, rel=1e-12)


@pytest.mark.parametrize("name", ["mlp-relu", "cnn-maxpool-bn", "residual"])
def test_piecewise_linear_nets_hessian_trace_equals_ggn_trace_exactly(name):
    model, x = build(name, 3, seed=5)
    y = targets("cross_entropy", x.shape[0], 3, 2)
    assert brute_hessian_trace(model, x, y, "cross_entropy") == pytest.approx(
        nr.ggn_trace(model, x, y, "cross_entropy"), rel=1e-9)


def test_smooth_net_hessian_trace_differs_from_ggn_trace():
    model, x = build("mlp-tanh", 3, seed=5)
    y = targets("square", 9, 3, 2) * 3  # far from a fit: large residuals weight D²Φ
    h, g = brute_hessian_trace(model, x, y, "square"), nr.ggn_trace(model, x, y, "square")
    assert abs(h - g) > 1e-2 * abs(g)
    est, se = nr.hessian_trace(model, x, y, "square", num_samples=3000, seed=0, probes_per_pass=500)
    assert abs(est - h) < 4 * se
    assert abs(est - g) > 4 * se  # the band excludes the GGN trace: a GGN estimator would fail here


@pytest.mark.parametrize("loss", LOSSES)
def test_hutchinson_matches_ggn_trace_on_relu_net(loss):
    k = 1 if loss == "logistic" else 3
    model, x = build("mlp-relu", k, seed=7)
    y = targets(loss, x.shape[0], k, 4)
    est, se = nr.hessian_trace(model, x, y, loss, num_samples=2000, seed=1, probes_per_pass=200)
    exact = nr.ggn_trace(model, x, y, loss)
    assert se > 0 and abs(est - exact) < 4 * se
    assert se < 0.07 * abs(exact)  # the test has power: the 4-SE band is within ±28 %


def test_hutchinson_data_batching_and_seed():
    model, x = build("mlp-tanh", 3, seed=2)
    y = targets("cross_entropy", 9, 3, 0)
    a = nr.hessian_trace(model, x, y, "cross_entropy", num_samples=20, seed=3)
    b = nr.hessian_trace(model, x, y, "cross_entropy", num_samples=20, seed=3, batch_size=4, probes_per_pass=3)
    assert b[0] == pytest.approx(a[0], rel=1e-10)
    assert nr.hessian_trace(model, x, y, "cross_entropy", num_samples=20, seed=4)[0] != a[0]


def test_curvature_errors():
    model, x = build("mlp-relu", 3, seed=0)
    y = targets("square", 9, 3, 0)
    with pytest.raises(ValueError, match=r"loss must be one of \('square', 'logistic', 'cross_entropy'\), got 'mse'"):
        nr.ggn_trace(model, x, y, "mse")
    with pytest.raises(ValueError, match="method must be one of"):
        nr.ggn_trace(model, x, y, method="exact")
    with pytest.raises(ValueError, match="num_samples must be >= 2"):
        nr.hessian_trace(model, x, y, num_samples=1)
    with pytest.raises(ValueError, match="probes_per_pass must be >= 1"):
        nr.hessian_trace(model, x, y, probes_per_pass=0)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        nr.hessian_trace(model, x, y, batch_size=0)
    with pytest.raises(ValueError, match="model has no trainable parameters"):
        nr.hessian_trace(nn.Sequential(nn.Linear(5, 3)).requires_grad_(False).to(DT), x, y)
    bn = nn.Sequential(nn.Linear(5, 3), nn.BatchNorm1d(3)).to(DT)
    with pytest.raises(ValueError, match=r"module '1' \(BatchNorm1d\) normalises with batch statistics.*model.eval"):
        nr.ggn_trace(bn, x, y)
    with pytest.raises(ValueError, match="batch statistics"):
        nr.hessian_trace(bn, x, y)
    drop = nn.Sequential(nn.Linear(5, 3), nn.Dropout(0.5)).to(DT)
    with pytest.raises(ValueError, match=r"module '1' \(Dropout\) is random in training mode"):
        nr.ggn_trace(drop, x, y)
    assert nr.ggn_trace(drop.eval(), x, y) > 0


def test_loss_target_errors():
    model, x = build("mlp-relu", 3, seed=0)
    with pytest.raises(ValueError, match="y must have 9 rows"):
        nr.ggn_trace(model, x, torch.zeros(8, 3, dtype=DT))
    with pytest.raises(ValueError, match="y must have 3 columns"):
        nr.ggn_trace(model, x, torch.zeros(9, 2, dtype=DT))
    with pytest.raises(ValueError, match="logistic loss needs one output"):
        nr.ggn_trace(model, x, torch.ones(9, 3, dtype=DT), "logistic")
    one, _ = build("mlp-relu", 1, seed=0)
    with pytest.raises(ValueError, match=r"logistic loss needs labels in \{-1, \+1\}"):
        nr.ggn_trace(one, x, torch.zeros(9, dtype=DT), "logistic")
    with pytest.raises(ValueError, match="cross_entropy needs integer class labels"):
        nr.ggn_trace(model, x, torch.zeros(9, dtype=DT), "cross_entropy")
    with pytest.raises(ValueError, match=r"class labels must lie in \[0, 2\]"):
        nr.ggn_trace(model, x, torch.full((9,), 3), "cross_entropy")
    with pytest.raises(ValueError, match=r"model\(x\) must have shape \(n, k\)"):
        nr.ggn_trace(nn.Sequential(nn.Conv1d(1, 1, 1)).to(DT), torch.zeros(2, 1, 3, dtype=DT), torch.zeros(2))


def test_non_per_sample_model_is_refused():
    class Global(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(3, 2, dtype=DT))

        def forward(self, x):  # ignores the batch: output rows are not samples
            return self.w @ self.w.T

    with pytest.raises(ValueError, match="ggn_trace needs a per-sample model"):
        nr.ggn_trace(Global(), torch.zeros(3, 1, dtype=DT), torch.zeros(3, 3, dtype=DT))


@pytest.mark.gpu
def test_ggn_trace_on_cuda_matches_cpu():
    model, x = build("cnn-maxpool-bn", 3, seed=1)
    y = targets("cross_entropy", x.shape[0], 3, 0)
    cpu = nr.ggn_trace(model, x, y, "cross_entropy", per_layer=True)
    gpu = nr.ggn_trace(model.cuda(), x.cuda(), y.cuda(), "cross_entropy", per_layer=True)
    assert gpu == pytest.approx(cpu, rel=1e-9)


# ---------------------------------------------------------------- chunks over the samples (issue 11)
@pytest.mark.parametrize("chunk", [1, 4, 7], ids=["chunk1", "chunk4", "chunk7"])
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("name", ["mlp-relu", "cnn-maxpool-bn", "residual", "conv1d-seq-general"])
def test_chunked_ggn_trace_equals_one_piece(name, loss, chunk):
    """The trace is a sum over samples: chunks of n_C samples, each weighted n_C/n, give the same number."""
    k = 1 if loss == "logistic" else 3
    model, x = build(name, k, seed=MODELS.index(name))
    y = targets(loss, x.shape[0], k, seed=1)
    whole = nr.ggn_trace(model, x, y, loss, per_layer=True, chunk_size=x.shape[0])
    got = nr.ggn_trace(model, x, y, loss, per_layer=True, chunk_size=chunk)
    assert set(got) == set(whole)
    for layer in whole:
        assert got[layer] == pytest.approx(whole[layer], rel=1e-12, abs=1e-15), layer


def test_default_chunk_bounds_the_samples_per_pass_whatever_n(monkeypatch):
    """Peak memory: every pass sees at most a fixed number of samples, set by the model, not by len(x)."""
    from noisereg import _per_sample as per_sample

    model, _ = build("cnn-maxpool-bn", 3, seed=2)
    sizes, inner = [], per_sample.chunk_sums

    def spy(model, x, *args, **kw):
        sizes.append(x.shape[0])
        return inner(model, x, *args, **kw)

    monkeypatch.setattr(per_sample, "chunk_sums", spy)
    monkeypatch.setattr(per_sample, "CHUNK_ACTIVATIONS", 20_000)  # a small budget: a few samples per chunk
    per_n = {}
    for n in (16, 160):
        x = torch.randn(n, 2, 8, 8, dtype=DT, generator=torch.Generator().manual_seed(n))
        y = targets("cross_entropy", n, 3, seed=n)
        sizes.clear()
        got = nr.ggn_trace(model, x, y, "cross_entropy")
        per_n[n] = max(sizes)
        assert sum(sizes) == n
        assert got == pytest.approx(nr.ggn_trace(model, x, y, "cross_entropy", chunk_size=n), rel=1e-12)
    assert per_n[16] == per_n[160] < 16


def test_default_chunk_keeps_small_batches_in_one_piece(monkeypatch):
    """256 samples of a small net: one pass, so the numbers and the speed of the unchunked trace."""
    from noisereg import _per_sample as per_sample

    model, _ = build("cnn-maxpool-bn", 3, seed=2)
    calls = []
    inner = per_sample.chunk_sums
    monkeypatch.setattr(per_sample, "chunk_sums", lambda m, x, *a, **kw: calls.append(len(x)) or inner(m, x, *a, **kw))
    nr.ggn_trace(model, torch.randn(256, 2, 8, 8, dtype=DT), torch.zeros(256, dtype=torch.long), "cross_entropy")
    assert calls == [256]


def test_chunk_size_errors():
    model, x = build("mlp-relu", 2, seed=0)
    y = targets("square", x.shape[0], 2, seed=0)
    with pytest.raises(ValueError, match="chunk_size must be None or an integer >= 1, got 0"):
        nr.ggn_trace(model, x, y, chunk_size=0)
    with pytest.raises(TypeError, match="chunk_size must be None or an integer >= 1, got float"):
        nr.ggn_trace(model, x, y, chunk_size=2.0)


class _ListThenTanh(nn.Module):
    """Declares piecewise_linear but holds a Tanh after a ModuleList: the module tree must catch it."""

    piecewise_linear = True

    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([nn.Linear(3, 3)])
        self.act = nn.Tanh()


def test_is_piecewise_linear_checks_every_module_and_tied_weights():
    assert not nr.curvature.is_piecewise_linear(_ListThenTanh())  # modules after a container are checked
    lin = nn.Linear(3, 3)
    assert nr.curvature.is_piecewise_linear(nn.Sequential(lin, nn.ReLU(), nn.Linear(3, 3)))
    assert not nr.curvature.is_piecewise_linear(nn.Sequential(lin, nn.ReLU(), lin))  # one weight used twice

    class Squared(nn.Sequential):  # a Sequential subclass with its own (smooth) forward
        def forward(self, x):
            return super().forward(x) ** 2

    class Plain(nn.Sequential):  # keeps Sequential's forward
        pass

    assert not nr.curvature.is_piecewise_linear(Squared(nn.Linear(3, 3)))
    assert nr.curvature.is_piecewise_linear(Plain(nn.Linear(3, 3), nn.ReLU()))


@pytest.mark.parametrize("net", ["linear_3d", "conv"])
def test_per_sample_chunks_of_one_sample_give_the_same_trace(monkeypatch, net):
    """CHUNK_ELEMENTS bounds the temporaries of the Linear (inputs with positions) and conv formulas;
    at its smallest every sample is its own chunk: the trace must not change (and must match the
    general vmap(jacrev) path). Linear on (n, T, d) with T < n: a loop over T instead of n would
    drop samples."""
    from noisereg import _per_sample as per_sample

    torch.manual_seed(0)
    if net == "linear_3d":
        model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2)).double()
        x = torch.randn(6, 2, 3, dtype=torch.float64)
    else:
        model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 16, 2)).double()
        x = torch.randn(6, 2, 4, 4, dtype=torch.float64)
    y = torch.randint(0, 2, (6,))
    reference = nr.ggn_trace(model, x, y, "cross_entropy", method="functorch")
    whole = nr.ggn_trace(model, x, y, "cross_entropy")
    monkeypatch.setattr(per_sample, "CHUNK_ELEMENTS", 1)
    assert nr.ggn_trace(model, x, y, "cross_entropy") == pytest.approx(whole, rel=1e-12)
    assert whole == pytest.approx(reference, rel=1e-10)
