"""Tests of what positions add to the moments: embeddings read at fixed ids (BERT's token types, all 0,
are one vector shared by every position) and rotary position tables (``cos`` / ``sin``, which a
recorded forward keeps the moments of, so the attention logits stay known through RoPE).

Statistical tolerance: a measured moment is the average over ``J`` features of per-feature estimates
(independent at init: each has its own weights), ``SE = std_j / sqrt(J)``, covering the data and the
weight draw; predictions must lie within 5 SE (plus 1e-6 relative: float32 resolution). Widths are
chosen so that the rule each fix replaces is outside 5 SE. Seeds are fixed; expected values recomputed.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from moment_checks import N_SE, measure
from torch import nn

from initlab.graph import trace
from initlab.graph.moments import Moments, attention_average, propagate
from initlab.graph.nodes import Kind
from initlab.graph.record import value_moments
from initlab.graph.vocab import classify_module


def within(pred: float, y: torch.Tensor, field: str) -> bool:
    meas, se = measure(y)
    i = ("mean", "second", "cross").index(field)
    v = getattr(meas, field)
    return abs(pred - v) <= N_SE * se[i] + 1e-6 * max(abs(v), 1e-3)


def assert_close(pred: Moments, y: torch.Tensor) -> None:
    for field in ("mean", "second", "cross"):
        assert within(getattr(pred, field), y, field), (field, pred, measure(y))


# ---- embeddings at fixed ids ------------------------------------------------------------------------


class Embeddings(nn.Module):
    """BERT's embeddings: word + token type + position, token types from a zero buffer gathered at
    the position ids, then a LayerNorm."""

    def __init__(self, width: int, vocab: int = 512, positions: int = 64) -> None:
        super().__init__()
        self.word, self.token_type = nn.Embedding(vocab, width), nn.Embedding(2, width)
        self.pos = nn.Embedding(positions, width)
        self.norm = nn.LayerNorm(width)
        self.register_buffer("position_ids", torch.arange(positions)[None], persistent=False)
        self.register_buffer("token_type_ids", torch.zeros(1, positions, dtype=torch.long), persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        b, n = ids.shape
        pos = self.position_ids[:, :n]
        types = torch.gather(self.token_type_ids.expand(b, -1), 1, pos.expand(b, -1))
        return self.norm(self.word(ids) + self.token_type(types) + self.pos(pos))


def test_fixed_token_type_ids_are_one_vector_at_every_position(gen):
    """All token types are 0: every position reads row 0, so the type embedding's cross moment is its
    second moment (``1/rows`` = 1/2 of it for random ids, the old rule); position ids are all different
    (cross = mean^2); the LayerNorm's output cross moment, about a third of ``q``, is measured."""
    torch.manual_seed(9)
    model = Embeddings(1024)
    ids = torch.randint(0, 512, (32, 32), generator=gen)
    g = trace(model, ids, method="recorded")
    propagate(g, model=model)
    by_module = {n.module: n for n in g if n.module}
    kind, pos, word = (by_module[k].meta["moments"] for k in ("token_type", "pos", "word"))
    assert kind.cross == kind.second and "fixed ids" in by_module["token_type"].meta["moments_note"]
    assert pos.cross == pos.mean**2
    assert word.cross == word.mean**2 + word.var / 512  # ids from the data: uniformly random
    with torch.no_grad():
        y = model(ids)
    pred = by_module["norm"].meta["moments"]
    assert_close(pred, y)
    # the old rule: the type embedding's shared part halved, through the same LayerNorm (divide by the
    # sum's variance; the means are ~0)
    tables = (model.word, model.token_type, model.pos)
    var = sum(float(m.weight.detach().double().var(unbiased=False)) for m in tables)
    old_cross = pred.cross - (kind.var - kind.var / 2) / var
    assert not within(old_cross, y, "cross")


# ---- rotary position tables -----------------------------------------------------------------------------


class TinyRotaryEmbedding(nn.Module):
    """``cos`` / ``sin`` of ``position * inv_freq`` (the frequencies concatenated twice), as HF's."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        inv_freq = 1.0 / 10000 ** (torch.arange(0, dim, 2).float() / dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = position_ids[:, :, None].float() * self.inv_freq[None, None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


class RopeAttention(nn.Module):
    """Causal self-attention with rotary position embeddings (Llama's, one layer)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads, self.dim = heads, width // heads
        self.q, self.k, self.v, self.o = (nn.Linear(width, width, bias=False) for _ in range(4))
        self.rotary = TinyRotaryEmbedding(self.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        cos, sin = self.rotary(x, torch.arange(n)[None].expand(b, -1))
        cos, sin = cos[:, None], sin[:, None]
        q, k, v = (p(x).view(b, n, self.heads, self.dim).transpose(1, 2) for p in (self.q, self.k, self.v))
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o(a.transpose(1, 2).reshape(b, n, -1))


def test_rotary_tables_keep_the_logit_variance_known(gen):
    """RoPE rotates pairs of coordinates, so ``q`` and ``k`` keep their second moments and the logits
    their variance (here ~2: query weights scaled by sqrt(2)); before, the rotary module was an unknown
    op and the weights were taken as uniform (causal: ``E[sum a^2] = H_L / L``), 30% low on ``q``."""
    torch.manual_seed(10)
    width, length = 512, 32
    model = RopeAttention(width, 4)
    with torch.no_grad():
        model.q.weight.mul_(math.sqrt(2.0))
    assert classify_module(model.rotary).kind is Kind.CONSTANT
    x = F.layer_norm(torch.randn(64, length, width, generator=gen), (width,))
    g = trace(model, x, method="recorded")
    propagate(g, measure(x)[0], model=model)
    table = next(n for n in g if n.module == "rotary")
    assert abs(table.params["value_moments"][1] - 0.5) < 1e-6  # (cos^2 + sin^2) / 2, float32
    att = next(n for n in g if n.kind is Kind.ATTENTION)
    assert "logit variance unknown" not in (att.meta.get("moments_note") or "")
    with torch.no_grad():
        y = model(x)
    pred = next(n for n in g if n.module == "o").meta["moments"]
    assert_close(pred, y)
    v = g[att.inputs[2]].meta["moments"]
    uniform = attention_average(v, length, 0.0, causal=True).second * pred.second / att.meta["moments"].second
    assert not within(uniform, y, "second") and uniform < pred.second


def test_value_moments_pool_tensors_and_refuse_what_they_cannot_read():
    a, b = torch.ones(2, 3, 4), torch.zeros(2, 3, 4)
    assert value_moments([a, b]) == (0.5, 0.5, 0.5)
    assert value_moments([torch.ones(4)]) is None and value_moments([torch.full((2, 2), math.inf)]) is None
