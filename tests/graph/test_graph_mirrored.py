"""Tests of initlab.graph.mirrored and the mirrored flags of initlab.graph.layer_stats: a layer whose
weight has mirrored input columns, reading a looks-linear pair ``[phi(a), phi(-a)]``, is predicted as
the linear map ``s U a`` it is at init (Balduzzi et al. 2017), and anything else keeps the mean field.

Statistical tolerance: the nets below draw ``A`` and ``U`` with orthonormal rows (times a gain), so the
pre-activation's channels are uncorrelated with one variance, every output reads the same ``q``, and the
formula is exact for these very weights (the draw adds no error). The ``B x O`` outputs are then
independent Gaussians ``N(b_i, sigma^2)``, so the measured ``E[y^2]`` is a mean of ``B O`` independent
squares: relative standard error at most ``sqrt(2 / (B O))`` (``Var(y^2) = 2 sigma^4 + 4 b^2 sigma^2 <=
2 E[y^2]^2``); predictions must lie within 5 of them. Expected values are recomputed from the formula.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from initlab import init_model
from initlab.graph import trace
from initlab.graph.layer_stats import LayerSolver, LayerStats, mirrored_halves, model_layer_stats
from initlab.graph.mirrored import reshaped_axis
from initlab.graph.moments import Moments, model_tap_energy, propagate
from initlab.graph.nodes import Kind
from initlab.theory import odd_part_slope
from initlab.zoo import plain_cnn

BATCH, SIDE, C_IN, WIDTH, OUT = 4096, 6, 16, 32, 8
N_SE = 5.0


def _orthonormal_rows(rows: int, cols: int, gen: torch.Generator) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(cols, cols, generator=gen, dtype=torch.float64))
    return q[:rows].float()


class PairNet(nn.Module):
    """``x -> 1x1 conv [A; -A] -> phi -> link -> Linear [U, -U]``; ``link``: ``"pool"``
    (AdaptiveAvgPool2d(1), Flatten), ``"mean"`` (``h.mean((2, 3))``), ``"flat"`` (Flatten of the whole
    map), ``"roll"`` (a channel roll, then the mean: pairs broken), ``"max"`` (global max pool)."""

    def __init__(self, act: nn.Module, link: str, gen: torch.Generator, *, rows: bool = True,
                 bias_pairs: bool = True, p: float = 0.0) -> None:
        super().__init__()
        self.link = link
        self.conv = nn.Conv2d(C_IN, WIDTH, 1)
        self.act, self.drop = act, nn.Dropout(p)
        self.pool = nn.AdaptiveMaxPool2d(1) if link == "max" else nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(WIDTH * (SIDE * SIDE if link == "flat" else 1), OUT)
        with torch.no_grad():
            a = _orthonormal_rows(WIDTH // 2, C_IN, gen)
            other = _orthonormal_rows(WIDTH // 2, C_IN, gen)
            self.conv.weight.copy_(torch.cat([a, -a if rows else other])[:, :, None, None])
            # a zero bias is mirrored; a bias of per-channel means would make the head's q depend on how
            # U meets those means (exact only in expectation over U)
            c = torch.zeros(WIDTH // 2) if bias_pairs else 0.1 * torch.randn(WIDTH // 2, generator=gen)
            self.conv.bias.copy_(torch.cat([c, c]))
            u = _orthonormal_rows(OUT, self.head.in_features // 2, gen)
            self.head.weight.copy_(torch.cat([u, -u], 1))
            self.head.bias.copy_(0.1 * torch.randn(OUT, generator=gen))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(self.act(self.conv(x)))
        if self.link == "mean":
            h = h.mean((2, 3))
        elif self.link == "roll":
            h = torch.roll(h, 1, 1).mean((2, 3))
        elif self.link == "flat":
            h = h.flatten(1)
        else:
            h = self.pool(h).flatten(1)
        return self.head(h)


def _predict(net: nn.Module, x: torch.Tensor, *, mirrors: bool = True, train: bool = False,
             shapes: bool = True):
    """``(graph, {node id: Moments})`` from the model's weights, with or without the mirrored flags
    (without: the mean field, as before them); ``shapes=False`` forgets the graph's shapes."""
    graph = trace(net, x[:2], method="fx")
    for node in graph:
        node.shape = node.shape if shapes else None
    read = model_layer_stats(net)

    def stats(node, part, m):
        st = read(node, part, m)
        return st if mirrors or st is None else replace(st, mirrored_inputs=False, mirrored_outputs=False)

    return graph, propagate(graph, Moments(0.0, 1.0, 0.0), model=net, layer_stats=stats, train=train,
                            tap_energy=model_tap_energy(net))


def _node(graph, module: str) -> int:
    return next(n.id for n in graph if n.module == module)


def _output(graph) -> int:
    return [n for n in graph if n.kind is Kind.OUTPUT][-1].id


# ---- the flags ----------------------------------------------------------------------------------------


def _mirror(u: torch.Tensor, dim: int) -> torch.Tensor:
    return torch.cat([u, -u], dim)


@pytest.mark.parametrize("make, expected", [
    (lambda g: (nn.Linear(6, 3), _mirror(torch.randn(3, 3, generator=g), 1), None), (True, False)),
    (lambda g: (nn.Linear(3, 6), _mirror(torch.randn(3, 3, generator=g), 0), torch.zeros(6)), (False, True)),
    (lambda g: (nn.Linear(3, 6), _mirror(torch.randn(3, 3, generator=g), 0),
                _mirror(torch.randn(3, generator=g), 0)), (False, True)),
    (lambda g: (nn.Linear(3, 6), _mirror(torch.randn(3, 3, generator=g), 0), torch.ones(6)), (False, False)),
    (lambda g: (nn.Linear(6, 6), _mirror(_mirror(torch.randn(3, 3, generator=g), 1), 0), None), (True, True)),
    (lambda g: (nn.Linear(5, 4), torch.randn(4, 5, generator=g), None), (False, False)),
    (lambda g: (nn.Conv2d(4, 2, 3), _mirror(torch.randn(2, 2, 3, 3, generator=g), 1), None), (True, False)),
    (lambda g: (nn.Conv2d(4, 2, 3, groups=2), _mirror(torch.randn(2, 1, 3, 3, generator=g), 0), None),
     (False, False)),
    (lambda g: (nn.ConvTranspose2d(4, 2, 3), _mirror(torch.randn(2, 2, 3, 3, generator=g), 0), None),
     (False, False)),
    (lambda g: (nn.Embedding(4, 6), _mirror(torch.randn(4, 3, generator=g), 1), None), (False, False)),
])
def test_mirrored_halves_reads_the_exact_structure(make, expected):
    module, weight, bias = make(torch.Generator().manual_seed(0))
    assert mirrored_halves(module, weight, bias) == expected


def test_a_conv_mirrored_at_the_centre_tap_only_is_not_mirrored():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(4, 8, 3, 3, generator=gen)
    w[:, 4:, 1, 1] = -w[:, :4, 1, 1]
    assert mirrored_halves(nn.Conv2d(8, 4, 3), w, None) == (False, False)
    w[:, 4:] = -w[:, :4]
    assert mirrored_halves(nn.Conv2d(8, 4, 3), w, None) == (True, False)


def test_model_stats_read_the_flags_and_a_solver_sets_none():
    gen = torch.Generator().manual_seed(0)
    net = PairNet(nn.ReLU(), "pool", gen)
    graph = trace(net, torch.zeros(2, C_IN, SIDE, SIDE), method="fx")
    conv, head = graph[_node(graph, "conv")], graph[_node(graph, "head")]
    read, solve, x = model_layer_stats(net), LayerSolver(net), Moments(0.0, 1.0)
    conv_st, head_st = read(conv, "weight", x), read(head, "weight", x)
    assert (conv_st.mirrored_outputs, conv_st.mirrored_inputs) == (True, False)
    assert (head_st.mirrored_inputs, head_st.mirrored_outputs) == (True, False)
    solved = solve(head, "weight", x)
    assert solved == LayerStats(head.params["in_features"], solve.solved[("head", "weight")])


@pytest.mark.parametrize("shape_in, shape_out, axis, expected", [
    ((8, 32, 1, 1), (8, 32), 1, 1),  # Flatten of a pooled map
    ((8, 32, 7, 7), (8, 32 * 49), 1, 1),  # Flatten of the whole map: channel-major
    ((8, 32, 7, 7), (8, 2, 16 * 49), 1, 1),  # the halves as two rows
    ((8, 32), (8, 1, 32), 1, 2),  # unsqueeze
    ((8, 6, 5), (8, 3, 10), 1, None),  # 6 x 5 regrouped into 3 rows of 10: pairs cut
    ((8, 32, 7, 7), (256, 49), 1, None),  # channels merged into the batch
])
def test_reshaped_axis(shape_in, shape_out, axis, expected):
    assert reshaped_axis(shape_in, shape_out, axis) == expected


# ---- the prediction -------------------------------------------------------------------------------------


ACTIVATIONS = {"relu": (nn.ReLU(), None), "leaky_relu": (nn.LeakyReLU(0.2), 0.2), "gelu": (nn.GELU(), None)}


@pytest.mark.parametrize("name", list(ACTIVATIONS))
@pytest.mark.parametrize("link", ["pool", "mean", "flat"])
def test_head_reading_a_looks_linear_pair_is_the_linear_map(name, link):
    gen = torch.Generator().manual_seed(1)
    act, param = ACTIVATIONS[name]
    net = PairNet(act, link, gen)
    x = torch.randn(BATCH, C_IN, SIDE, SIDE, generator=gen)
    graph, pred = _predict(net, x)
    y = pred[_output(graph)]
    # the formula: (n/2) E[w^2] s^2 E[P(a)^2] + E[b^2], E[P(a)^2] = c_a + (q_a - c_a) / k
    a, k = pred[_node(graph, "conv")], 1 if link == "flat" else SIDE * SIDE
    s = odd_part_slope(name, param=param, q=a.var)
    w, b = net.head.weight.detach().double(), net.head.bias.detach().double()
    n = net.head.in_features
    expected = n / 2 * float(w.square().mean()) * s**2 * (a.cross + (a.second - a.cross) / k)
    assert y.second == pytest.approx(expected + float(b.square().mean()), rel=1e-9)
    assert "looks-linear pair of conv" in graph[_node(graph, "head")].meta["moments_note"]
    with torch.no_grad():
        measured = float(net(x).square().mean())
    se = math.sqrt(2.0 / (BATCH * OUT)) * measured
    assert abs(y.second - measured) <= N_SE * se, (y.second, measured, se)
    # the mean field (no flags) reads the activations' shared mean: 5 to 9 x too large behind the
    # pool; over the whole map (no pooling) it is exact for ReLU only
    _, field = _predict(net, x, mirrors=False)
    if link != "flat":
        assert field[_output(graph)].second > 3 * measured
    elif name == "relu":
        assert field[_output(graph)].second == pytest.approx(y.second, rel=1e-9)


@pytest.mark.parametrize("case", ["tanh", "rows not mirrored", "bias not mirrored", "channel roll",
                                  "max pool", "dropout in train mode", "shapes unknown"])
def test_anything_not_understood_keeps_the_mean_field(case):
    gen = torch.Generator().manual_seed(2)
    act = nn.Tanh() if case == "tanh" else nn.ReLU()
    # shapes unknown: over a Flatten (a global pool's window needs the shapes), where the mean field's
    # E[y^2] is right for ReLU but its cross moment (the ReLU's shared mean) is not
    link = {"channel roll": "roll", "max pool": "max", "shapes unknown": "flat"}.get(case, "pool")
    net = PairNet(act, link, gen, rows=case != "rows not mirrored", bias_pairs=case != "bias not mirrored",
                  p=0.5 if case == "dropout in train mode" else 0.0)
    x = torch.randn(4, C_IN, SIDE, SIDE, generator=gen)
    train, shapes = case == "dropout in train mode", case != "shapes unknown"
    graph, pred = _predict(net, x, train=train, shapes=shapes)
    _, field = _predict(net, x, mirrors=False, train=train, shapes=shapes)
    assert pred[_output(graph)] is not None
    assert pred[_output(graph)] == field[_output(graph)]
    assert "looks-linear" not in (graph[_node(graph, "head")].meta.get("moments_note") or "")


def test_hidden_looks_linear_relu_layers_keep_their_prediction():
    """Under "auto" a plain ReLU CNN is looks-linear: every hidden layer's (mean, E[y^2]) is the mean
    field's (``E[relu(a)^2] + E[relu(-a)^2] = E[a^2]``); only what positions share changes (the cross
    moment: no shared ReLU mean), and with it the head behind the global average pool."""
    net = plain_cnn(8)
    init_model(net, "auto", generator=torch.Generator().manual_seed(0))
    x = torch.zeros(2, 1, 28, 28)
    graph, pred = _predict(net, x)
    _, field = _predict(net, x, mirrors=False)
    hidden = [n.id for n in graph if n.module is not None and n.module.startswith("features.")]
    assert len(hidden) == 16
    for i in hidden:
        assert pred[i].mean == pytest.approx(field[i].mean, abs=1e-9)
        assert pred[i].second == pytest.approx(field[i].second, rel=1e-9)
    head = _node(graph, "head")
    assert pred[head].second < field[head].second / 5
