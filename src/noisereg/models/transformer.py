r"""A small decoder-style transformer for token sequences (the ``transformer`` experiment).

One module per projection, so that layer-wise noise (``layers="module"``) sees each of them as
its own layer: the token and position embeddings, and per block a pre-norm ``LayerNorm``, the
query, key, value and output projections of causal multi-head self-attention, a second
``LayerNorm`` and a two-layer MLP; a final ``LayerNorm`` and an unembedding read the last
position. Attention is written out (softmax of scaled dot products), so it has no fused kernel
and every curvature function of :mod:`noisereg.curvature` differentiates it twice.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class Attention(nn.Module):
    r"""Causal multi-head self-attention with separate ``q``, ``k``, ``v`` and ``o`` projections.

    .. math::

        \operatorname{head}_h = \operatorname{softmax}\!\Big(\frac{Q_hK_h^\top}{\sqrt{d_h}} + M\Big)V_h,
        \qquad \operatorname{out} = [\operatorname{head}_1,\dots,\operatorname{head}_H]\,W_o^\top + b_o,

    with :math:`M` the causal mask (:math:`-\infty` above the diagonal) and :math:`d_h = d/H`.

    Args:
        d_model: width d, a positive multiple of ``heads``. heads: H >= 1.
    """

    def __init__(self, d_model: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(d_model, d_model) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        split = lambda z: z.reshape(n, t, self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // self.heads)
        mask = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
        att = scores.masked_fill(mask, float("-inf")).softmax(-1)
        return self.o((att @ v).transpose(1, 2).reshape(n, t, d))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln1(x))``, then ``x + mlp(ln2(x))`` (MLP: d → 4d → d, ReLU)."""

    def __init__(self, d_model: int, heads: int, d_mlp: int) -> None:
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(d_model), Attention(d_model, heads)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, d_mlp), nn.ReLU(), nn.Linear(d_mlp, d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class TinyTransformer(nn.Module):
    """Decoder-style transformer that classifies a token sequence by its last position.

    Inputs are token ids (n, T), integers in ``[0, vocab)`` stored in any dtype (the experiments'
    data are float32; they are rounded to int64 here); outputs are logits (n, classes).

    Args:
        vocab: number of input tokens, >= 1. seq_len: T, >= 1. classes: outputs, >= 1.
        d_model: width (default 64), a multiple of ``heads``. heads: attention heads (default 4).
        blocks: transformer blocks (default 1). d_mlp: MLP width (default 4·d_model).

    Raises:
        ValueError: a size < 1, or ``d_model`` not a multiple of ``heads``.

    Example:
        >>> model = TinyTransformer(vocab=8, seq_len=3, classes=7, d_model=16, heads=2)
        >>> model(torch.tensor([[1., 2., 7.], [0., 3., 7.]])).shape
        torch.Size([2, 7])
    """

    def __init__(self, vocab: int, seq_len: int, classes: int, d_model: int = 64, heads: int = 4, blocks: int = 1,
                 d_mlp: int | None = None) -> None:
        super().__init__()
        sizes = dict(vocab=vocab, seq_len=seq_len, classes=classes, d_model=d_model, heads=heads, blocks=blocks,
                     d_mlp=4 * d_model if d_mlp is None else d_mlp)
        for name, value in sizes.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if d_model % heads:
            raise ValueError(f"d_model must be a multiple of heads, got d_model={d_model}, heads={heads}")
        self.embed = nn.Embedding(vocab, d_model)
        self.pos = nn.Embedding(seq_len, d_model)
        self.blocks = nn.ModuleList(Block(d_model, heads, sizes["d_mlp"]) for _ in range(blocks))
        self.ln = nn.LayerNorm(d_model)
        self.unembed = nn.Linear(d_model, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.round().long() if x.dtype.is_floating_point else x.long()
        h = self.embed(tokens) + self.pos.weight[: tokens.shape[1]]
        for block in self.blocks:
            h = block(h)
        return self.unembed(self.ln(h[:, -1]))
