"""The per-sample Hessian roots of the losses: S Sᵀ = ∇²L exactly, with the fewest columns."""

import pytest
import torch
from torch.func import hessian

from noisereg.losses import hessian_sqrt, loss_value


@pytest.mark.parametrize("k,scale", [(2, 1.0), (3, 5.0), (10, 1.0), (10, 40.0)], ids=lambda v: str(v))
def test_cross_entropy_root_has_k_minus_1_columns_and_is_exact(k, scale):
    g = torch.Generator().manual_seed(k)
    f = scale * torch.randn(7, k, generator=g, dtype=torch.float64)
    f[0, -1] = 1000.0  # p = e_k in float64: the Householder vector must stay away from 0
    y = torch.randint(k, (7,), generator=g)
    S = hessian_sqrt("cross_entropy", f, y)
    assert S.shape == (7, k, k - 1)
    H = hessian(lambda out: loss_value("cross_entropy", out, y))(f)  # (n, k, n, k), block diagonal
    blocks = torch.stack([H[i, :, i, :] for i in range(7)])
    torch.testing.assert_close(S @ S.transpose(1, 2), blocks, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("loss,k,r", [("square", 3, 3), ("logistic", 1, 1)])
def test_other_roots(loss, k, r):
    g = torch.Generator().manual_seed(0)
    f = torch.randn(5, k, generator=g, dtype=torch.float64)
    y = torch.randn(5, k, generator=g, dtype=torch.float64) if loss == "square" else torch.tensor([1., -1, 1, 1, -1])
    S = hessian_sqrt(loss, f, y)
    assert S.shape == (5, k, r)
    H = hessian(lambda out: loss_value(loss, out, y))(f)
    blocks = torch.stack([H[i, :, i, :] for i in range(5)])
    torch.testing.assert_close(S @ S.transpose(1, 2), blocks, rtol=1e-12, atol=1e-15)
