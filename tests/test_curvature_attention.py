"""The curvature functions on attention models (nn.TransformerEncoderLayer, TinyTransformer), CPU, float64.

The fused scaled-dot-product kernels have no double backward; the curvature functions run attention on the
math kernel, so Hutchinson's Hessian trace and the GGN traces work and match brute force."""

import pytest
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

import noisereg as nr
from noisereg.models.transformer import TinyTransformer
from test_curvature import brute_ggn, brute_hessian_trace

DT = torch.float64


class EncoderClassifier(nn.Module):
    """PyTorch's own transformer block, read out at the last position."""

    def __init__(self, d=8, heads=2, k=3):
        super().__init__()
        self.block = nn.TransformerEncoderLayer(d, heads, 2 * d, dropout=0.0, batch_first=True)
        self.head = nn.Linear(d, k)

    def forward(self, x):
        return self.head(self.block(x)[:, -1])


def encoder_case(seed=0):
    torch.manual_seed(seed)
    model = EncoderClassifier().to(DT).eval()
    x = torch.randn(5, 4, 8, dtype=DT)
    return model, x, torch.randint(0, 3, (5,))


def tiny_case(seed=0):
    torch.manual_seed(seed)
    model = TinyTransformer(vocab=6, seq_len=3, classes=5, d_model=8, heads=2).to(DT).eval()
    x = torch.randint(0, 6, (6, 3)).to(DT)
    return model, x, torch.randint(0, 5, (6,))


CASES = {"encoder_layer": encoder_case, "tiny_transformer": tiny_case}


def brute(fn, *args):
    with sdpa_kernel(SDPBackend.MATH):  # brute force needs double backward too
        return fn(*args)


@pytest.mark.parametrize("name", CASES)
def test_hessian_trace_on_attention_matches_brute_force(name):
    model, x, y = CASES[name]()
    exact = brute(brute_hessian_trace, model, x, y, "cross_entropy")
    est, se = nr.hessian_trace(model, x, y, "cross_entropy", num_samples=2000, seed=0, probes_per_pass=200)
    assert se > 0 and abs(est - exact) < 4 * se
    assert se < 0.1 * abs(exact)  # the band has power


@pytest.mark.parametrize("name", CASES)
def test_ggn_traces_on_attention_match_brute_force(name):
    model, x, y = CASES[name]()
    exact = brute(brute_ggn, model, x, y, "cross_entropy")
    assert nr.ggn_trace(model, x, y, "cross_entropy", per_layer=True) == pytest.approx(exact, rel=1e-8)
    est, se = nr.sampled_ggn_trace(model, x, y, "cross_entropy", num_samples=400, seed=0)
    total = sum(exact.values())
    assert abs(est - total) < 4 * se and se < 0.15 * total


def test_encoder_layer_has_no_double_backward_outside_the_curvature_functions():
    """The failure this guards against: PyTorch's default kernel has no double backward on the CPU."""
    model, x, y = encoder_case()
    grads = torch.autograd.grad(nn.functional.cross_entropy(model(x), y), list(model.parameters()), create_graph=True)
    with pytest.raises(RuntimeError, match="not implemented"):
        torch.autograd.grad(sum(g.sum() for g in grads), list(model.parameters()))
