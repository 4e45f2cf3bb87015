"""Tests of initlab.graph.moments: each rule against exact algebra (scipy quadrature) or a seeded
Monte-Carlo forward pass.

Statistical tolerance: a measured moment is the average over ``J`` units (features, channels) of
per-unit estimates; units are independent at init (fresh weights per unit), so its standard error is
``SE = std_j / sqrt(J)`` — this covers both the data sample and the weight draw. Predictions must lie
within 5 SE (plus 1e-6 relative: float32 resolution). Seeds are fixed; expected values are recomputed
from formulas, never pasted.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from moment_checks import N_SE, measure
from scipy import integrate, special
from torch import nn

from initlab.errors import InitlabError
from initlab.gains import activation_moments
from initlab.graph.moments import (
    RULES,
    LayerSolver,
    LayerStats,
    Moments,
    attention_average,
    dense_moments,
    layer_fans,
    moments_table,
    propagate,
    solve_layer_scale,
)
from initlab.graph.nodes import Graph, Kind

# ---- measurement -----------------------------------------------------------------------------------




def assert_close(pred: Moments, y: torch.Tensor, fields: str = "msc") -> None:
    meas, se = measure(y)
    for f, name, s in zip("msc", ("mean", "second", "cross"), se, strict=True):
        if f in fields:
            p, v = getattr(pred, name), getattr(meas, name)
            tol = N_SE * s + 1e-6 * max(abs(v), 1e-3)  # + float32 resolution: robust to thread counts
            assert abs(p - v) <= tol, f"{name}: predicted {p:.6g}, measured {v:.6g} (SE {s:.3g})"


def rows(y: torch.Tensor) -> torch.Tensor:
    """``(batch, features)`` as ``(1, batch, features)``: no positions, pairs of examples."""
    return y[None]


def maps(y: torch.Tensor) -> torch.Tensor:
    """``(N, C, *spatial)`` as ``(N, positions, C)``."""
    return y.flatten(2).transpose(1, 2)


def seqs(y: torch.Tensor) -> torch.Tensor:
    """``(..., L, D)`` as ``(batch, L, D)``."""
    return y.reshape(-1, *y.shape[-2:])


def unit_offset_input(shape, mean, spread, within, gen):
    """Gaussian entries ``mean + N(0, spread)`` per unit (last dim) ``+ N(0, within)`` per entry.

    Tests feed propagation the *measured* moments of this sample (``measure``): the few hundred unit
    means drawn here would otherwise put a sampling error of their own into every comparison."""
    mu = mean + math.sqrt(spread) * torch.randn(shape[-1], generator=gen)
    return mu + math.sqrt(within) * torch.randn(*shape, generator=gen)


def chain_graph(batch, layers):
    """INPUT then ``layers``: a list of (kind, op, kw) appended one after the other."""
    g = Graph()
    prev = g.add(Kind.INPUT, "x", shape=(batch,))
    for kind, op, kw in layers:
        prev = g.add(kind, op, [prev.id], **kw)
    return g


# ---- Moments and the one-map algebra ------------------------------------------------------------------


def test_moments_defaults_and_validation():
    m = Moments(0.5, 1.25)
    assert (m.cross, m.var, m.spread, m.within) == (0.25, 1.0, 0.0, 1.0)
    assert Moments(0.0, 1.0, 1.0 + 1e-12).cross == 1.0  # rounding clipped
    for bad in ((1.0, 0.5), (0.0, 1.0, 2.0), (0.0, math.inf)):
        with pytest.raises(InitlabError, match="impossible|non-finite"):
            Moments(*bad)


def test_dense_moments_zero_mean_weights_is_he_eq7():
    x = Moments(0.3, 1.5, 0.5)
    y = dense_moments(x, LayerStats(200, 0.01, bias_mean=0.1, bias_second=0.05))
    assert y.mean == pytest.approx(0.1, abs=1e-15)
    assert y.second == pytest.approx(200 * 0.01 * 1.5 + 0.05, rel=1e-14)
    assert y.cross == pytest.approx(200 * 0.01 * 0.5 + 0.05, rel=1e-14)


def test_solve_layer_scale_and_errors():
    x = Moments(0.0, 0.25)
    assert solve_layer_scale(64, x, 2.0) == pytest.approx(2.0 / (64 * 0.25), rel=1e-15)
    y = dense_moments(x, LayerStats(64, solve_layer_scale(64, x, 2.0)))
    assert y.second == pytest.approx(2.0, rel=1e-14)
    with pytest.raises(InitlabError, match="zero signal"):
        solve_layer_scale(64, Moments(0.0, 0.0))


# ---- activations: exact -------------------------------------------------------------------------------


def _quad_moments(f, m, v, points=()):
    pdf = lambda x: math.exp(-((x - m) ** 2) / (2 * v)) / math.sqrt(2 * math.pi * v)  # noqa: E731
    cuts = [-math.inf, *points, math.inf]
    out = []
    for p in (1, 2):
        out.append(
            sum(
                integrate.quad(
                    lambda x, p=p: f(x) ** p * pdf(x), a, b, epsabs=1e-14, epsrel=1e-13, limit=200
                )[0]
                for a, b in zip(cuts[:-1], cuts[1:], strict=True)
            )
        )
    return out


_SCALAR = {
    "relu": (lambda x: max(x, 0.0), (0.0,)),
    "tanh": (math.tanh, ()),
    "sigmoid": (special.expit, ()),
    "gelu": (lambda x: 0.5 * x * (1 + math.erf(x / math.sqrt(2))), ()),
    "silu": (lambda x: x * special.expit(x), ()),
}


@pytest.mark.parametrize("name", sorted(_SCALAR))
def test_activation_rule_matches_quad_at_nonzero_mean(name):
    m, v = 0.5, 2.0
    g = chain_graph(1, [(Kind.ACTIVATION, name, {"activation": (name, None)})])
    out = propagate(g, Moments(m, m * m + v))[1]
    f, pts = _SCALAR[name]
    e1, e2 = _quad_moments(f, m, v, pts)
    assert out.mean == pytest.approx(e1, rel=1e-8)
    assert out.second == pytest.approx(e2, rel=1e-8)
    assert out.cross == pytest.approx(e1 * e1, rel=1e-8)  # independent positions


def test_relu_cross_is_the_arc_cosine_kernel():
    v, c = 1.3, 0.5
    out = propagate(
        chain_graph(1, [(Kind.ACTIVATION, "relu", {"activation": ("relu", None)})]), Moments(0, v, c)
    )
    rho = c / v
    exact = v / (2 * math.pi) * (math.sqrt(1 - rho**2) + rho * (math.pi - math.acos(rho)))  # Cho & Saul 2009
    assert out[1].cross == pytest.approx(exact, rel=1e-10)


def test_tanh_cross_at_nonzero_mean_matches_double_quad():
    m, q, c = 0.5, 2.25, 1.0
    s, w = c - m * m, q - c  # shared and independent parts: x_a = mu + e_a, mu ~ N(m, s), e ~ N(0, w)
    sw = math.sqrt(w)

    def inner(mu):
        density = lambda e: math.tanh(mu + e) * math.exp(-e * e / (2 * w))  # noqa: E731
        return integrate.quad(density, -12 * sw, 12 * sw, epsabs=1e-13)[0] / math.sqrt(2 * math.pi * w)

    exact = integrate.quad(
        lambda mu: inner(mu) ** 2 * math.exp(-((mu - m) ** 2) / (2 * s)) / math.sqrt(2 * math.pi * s),
        m - 12 * math.sqrt(s),
        m + 12 * math.sqrt(s),
        epsabs=1e-13,
    )[0]
    out = propagate(
        chain_graph(1, [(Kind.ACTIVATION, "tanh", {"activation": ("tanh", None)})]), Moments(m, q, c)
    )
    assert out[1].cross == pytest.approx(exact, rel=1e-8)


def test_measured_activation_equals_named():
    x = Moments(0.2, 1.5, 0.6)
    named = propagate(chain_graph(1, [(Kind.ACTIVATION, "mish", {"activation": ("mish", None)})]), x)[1]
    g = chain_graph(1, [(Kind.ACTIVATION, "Mish", {"activation": ("measured", None), "fn": nn.Mish()})])
    measured = propagate(g, x)[1]
    for f in ("mean", "second", "cross"):
        assert getattr(measured, f) == pytest.approx(getattr(named, f), rel=1e-9)


def test_activation_cross_against_monte_carlo(gen):
    y = unit_offset_input((4096, 512), 0.3, 0.4, 0.8, gen)
    g = chain_graph(4096, [(Kind.ACTIVATION, "tanh", {"activation": ("tanh", None)})])
    pred = propagate(g, measure(rows(y))[0])[1]
    assert_close(pred, rows(torch.tanh(y)))


# ---- weighted layers ---------------------------------------------------------------------------------


def test_linear_with_bias_reads_the_model(gen):
    model = nn.Sequential(nn.Linear(256, 512))
    with torch.no_grad():
        model[0].bias.uniform_(0.0, 0.4, generator=gen)  # non-zero bias mean and second moment
    x = unit_offset_input((4096, 256), 0.5, 0.3, 1.0, gen)
    g = chain_graph(4096, [(Kind.LAYER, "Linear", {"module": "0"})])
    pred = propagate(g, measure(rows(x))[0], model=model)[1]
    with torch.no_grad():
        assert_close(pred, rows(model(x)))
    st = g[1].meta["layer_stats"]["weight"]
    assert st.fan_in == 256 and st.weight_second == pytest.approx(
        float(model[0].weight.detach().square().mean())
    )


class Conv1D(nn.Module):
    """HF GPT-2's Conv1D: weight (in, out), y = x @ W + b."""

    def __init__(self, nf, nx, gen):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.randn(nx, nf, generator=gen) * 0.02)
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        return x @ self.weight + self.bias


def test_hf_conv1d_reads_fan_in_from_dim0(gen):
    model = nn.Sequential(Conv1D(96, 384, gen))
    assert layer_fans(model[0]).fan_in == 384
    x = torch.randn(2048, 384, generator=gen)
    pred = propagate(chain_graph(2048, [(Kind.LAYER, "Conv1D", {"module": "0"})]), model=model)[1]
    with torch.no_grad():
        assert_close(pred, rows(model(x)))


def test_grouped_padded_conv_uses_true_fans_and_coverage(gen):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(16, 64, 3, padding=1, groups=4))
    x = torch.randn(64, 16, 10, 10, generator=gen)
    g = Graph()
    i = g.add(Kind.INPUT, "x", shape=tuple(x.shape))
    c = g.add(Kind.LAYER, "Conv2d", [i.id], module="0", shape=(64, 64, 10, 10))
    pred = propagate(g, model=model)[c.id]
    assert g[c.id].meta["layer_stats"]["weight"].fan_in == 4 * 9
    # tap (i, j) reads real entries at a_i a_j of the outputs: 9 of 10 rows for an edge offset, all for 0
    a = np.array([0.9, 1.0, 0.9])
    energy = model[0].weight.detach().double().square().sum((0, 1)).numpy()
    real = np.outer(a, a)
    assert g[c.id].meta["coverage"] == pytest.approx(float((energy * real).sum() / energy.sum()), rel=1e-12)
    with torch.no_grad():
        assert_close(pred, maps(model(x)))
    # an iid draw's expectation (every tap alike): 8 full rows of 3 and 2 of 2 per dimension
    propagate(g, model=model, tap_energy=lambda node: None)
    assert g[c.id].meta["coverage"] == pytest.approx((28 / 30) ** 2, rel=1e-12)


def test_delta_kernel_reads_no_zero_padding(gen):
    """A delta kernel (Xiao et al. 2018: the centre tap only) never reads the padding, so a chain of
    them keeps the second moment the propagation predicts at every depth (it predicted the
    padding loss of an iid kernel, (28/30)^2 per conv, before the taps' energy was read)."""
    torch.manual_seed(3)
    depth, ch = 12, 32
    layers: list[nn.Module] = []
    for _ in range(depth):
        conv = nn.Conv2d(ch, ch, 3, padding=1, bias=False)
        with torch.no_grad():
            conv.weight.zero_()
            q, _ = torch.linalg.qr(torch.randn(ch, ch, generator=gen, dtype=torch.float64))
            conv.weight[:, :, 1, 1] = q.float()
        layers.append(conv)
    model = nn.Sequential(*layers)
    x = torch.randn(32, ch, 10, 10, generator=gen)
    g = Graph()
    prev = g.add(Kind.INPUT, "x", shape=tuple(x.shape))
    for k in range(depth):
        prev = g.add(Kind.LAYER, "Conv2d", [prev.id], module=str(k), shape=tuple(x.shape))
    pred = propagate(g, model=model)[prev.id]
    assert g[prev.id].meta["coverage"] == pytest.approx(1.0, rel=1e-12)
    assert pred.second == pytest.approx(1.0, rel=1e-5)  # orthogonal centre taps (float32) keep q = 1
    with torch.no_grad():
        assert_close(pred, maps(model(x)))


def test_a_kernel_whose_weighted_taps_read_only_padding_outputs_its_bias():
    """Every tap with weight reads zero padding (tap (0, 0), dilation 4, padding 4 on a 4x4 map): the
    conv outputs its bias alone, E[y^2] = E[b^2], not an impossible mean without a second moment."""
    from initlab.graph.spatial import conv_geometry

    conv = nn.Conv2d(8, 8, 3, padding=4, dilation=4)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, :, 0, 0] = torch.randn(8, 8, generator=torch.Generator().manual_seed(0)) / 8**0.5
        conv.bias.normal_(0.3, 0.1, generator=torch.Generator().manual_seed(1))
    model = nn.Sequential(conv)
    g = Graph()
    i = g.add(Kind.INPUT, "x", shape=(16, 8, 4, 4))
    c = g.add(Kind.LAYER, "Conv2d", [i.id], module="0", shape=(16, 8, 4, 4))
    pred = propagate(g, Moments(0.5, 1.0), model=model)[c.id]
    b = conv.bias.detach().double()
    assert pred.second == pytest.approx(float(b.square().mean()), rel=1e-9)
    assert pred.mean == pytest.approx(float(b.mean()), rel=1e-9)
    energy = np.zeros(9)
    energy[0] = 9.0
    assert conv_geometry(None, (4, 4), (3, 3), energy, padding=4, dilation=4).second == 0.0


@pytest.mark.parametrize("energy", [np.full(9, -1.0), np.zeros(9), np.full(9, np.nan), np.ones(4)])
def test_conv_geometry_refuses_bad_tap_energy(energy):
    from initlab.graph.spatial import conv_geometry

    with pytest.raises(ValueError, match="tap_energy"):
        conv_geometry(None, (8, 8), (3, 3), energy, padding=1)


def test_conv_geometry_reads_tap_energy_as_shares():
    """Only the shares matter: energies 2 everywhere are the even kernel, a raw one-hot centre the delta."""
    from initlab.graph.spatial import conv_geometry

    def second(energy):
        return conv_geometry(None, (8, 8), (3, 3), energy, padding=1).second

    assert second(np.full(9, 2.0)) == pytest.approx(second(None), rel=1e-12)
    assert second(np.eye(9)[4]) == pytest.approx(1.0, rel=1e-12)


def test_embedding_table_moments(gen):
    torch.manual_seed(2)
    model = nn.Sequential(nn.Embedding(1000, 128))
    with torch.no_grad():
        model[0].weight.add_(0.3)
    ids = torch.randint(0, 1000, (64, 32), generator=gen)
    g = Graph()
    i = g.add(Kind.INPUT, "ids", shape=(64, 32))
    e = g.add(Kind.LAYER, "Embedding", [i.id], module="0", shape=(64, 32, 128))
    res = propagate(g, model=model)
    assert res[i.id] is None and "embedding" in g[i.id].meta["moments_unknown"]
    with torch.no_grad():
        assert_close(res[e.id], seqs(model(ids)))


# ---- elementwise algebra -------------------------------------------------------------------------------


def _two_inputs(op_kind, op, **kw):
    g = Graph()
    a, b = g.add(Kind.INPUT, "a"), g.add(Kind.INPUT, "b")
    return g, g.add(op_kind, op, [a.id, b.id], **kw)


@pytest.mark.parametrize(
    ("kind", "fn"),
    [(Kind.ADD, torch.add), (Kind.SUB, torch.sub), (Kind.MUL, torch.mul)],
)
def test_binary_ops_of_independent_tensors(gen, kind, fn):
    a = unit_offset_input((4096, 256), 0.5, 0.2, 1.0, gen)
    b = unit_offset_input((4096, 256), -0.4, 0.1, 0.5, gen)
    g, n = _two_inputs(kind, kind.value)
    pred = propagate(g, {0: measure(rows(a))[0], 1: measure(rows(b))[0]})[n.id]
    assert_close(pred, rows(fn(a, b)))


def test_scalar_operands_scale_and_concat(gen):
    a = unit_offset_input((4096, 256), 0.5, 0.2, 1.0, gen)
    x = measure(rows(a))[0]
    assert_close(
        propagate(chain_graph(1, [(Kind.ADD, "add", {"params": {"value": 1.5}})]), x)[1], rows(a + 1.5)
    )
    assert_close(
        propagate(chain_graph(1, [(Kind.SUB, "sub", {"params": {"value": 1.5}})]), x)[1], rows(a - 1.5)
    )
    assert_close(
        propagate(chain_graph(1, [(Kind.SUB, "rsub", {"params": {"value": 1.5}})]), x)[1], rows(1.5 - a)
    )
    assert_close(
        propagate(chain_graph(1, [(Kind.SCALE, "mul", {"params": {"factor": -3.0}})]), x)[1], rows(-3 * a)
    )
    g = Graph()
    i0, i1 = g.add(Kind.INPUT, "a", shape=(4096, 256)), g.add(Kind.INPUT, "b", shape=(4096, 64))
    cat = g.add(Kind.CONCAT, "cat", [i0.id, i1.id], params={"dim": 1})
    res = propagate(g, {i0.id: x, i1.id: Moments(0.0, 4.0)})
    assert res[cat.id].second == pytest.approx((256 * x.second + 64 * 4.0) / 320, rel=1e-14)
    assert res[cat.id].mean == pytest.approx(256 * x.mean / 320, rel=1e-14)


def test_same_operand_twice():
    g = Graph()
    x = g.add(Kind.INPUT, "x")
    add, sub, sq = (g.add(k, k.value, [x.id, x.id]) for k in (Kind.ADD, Kind.SUB, Kind.MUL))
    res = propagate(g, Moments(0.5, 1.25))
    assert res[add.id].second == pytest.approx(5.0) and res[sub.id].second == 0.0
    assert res[sq.id].mean == pytest.approx(1.25) and res[sq.id].second == pytest.approx(
        0.5**4 + 6 * 0.25 + 3
    )


def test_dropout_eval_identity_train_scales(gen):
    a = unit_offset_input((4096, 256), 0.5, 0.2, 1.0, gen)
    x = measure(rows(a))[0]
    g = chain_graph(1, [(Kind.DROPOUT, "dropout", {"params": {"p": 0.3}})])
    assert propagate(g, x)[1] == x
    mask = (torch.rand(a.shape, generator=gen) >= 0.3).float() / 0.7  # inverted dropout, seeded
    assert_close(propagate(g, x, train=True)[1], rows(a * mask))


# ---- pooling: measured on a seeded random CNN -------------------------------------------------------------


def _cnn(padding):
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(3, 128, 3, padding=padding), nn.ReLU(), nn.Conv2d(128, 128, 3, padding=padding)
    )


def _cnn_graph(model, shape):
    g = Graph()
    n, _, h, _ = shape
    x = g.add(Kind.INPUT, "x", shape=shape)
    h1 = h if model[0].padding == (1, 1) else h - 2
    h2 = h1 if model[0].padding == (1, 1) else h1 - 2
    c1 = g.add(Kind.LAYER, "Conv2d", [x.id], module="0", shape=(n, 128, h1, h1))
    r1 = g.add(Kind.ACTIVATION, "relu", [c1.id], activation=("relu", None), shape=(n, 128, h1, h1))
    c2 = g.add(Kind.LAYER, "Conv2d", [r1.id], module="2", shape=(n, 128, h2, h2))
    r2 = g.add(Kind.ACTIVATION, "relu", [c2.id], activation=("relu", None), shape=(n, 128, h2, h2))
    return g, r2


def test_average_pooling_keeps_the_cross_moment_on_a_random_cnn(gen):
    """Avg pooling of n entries: q -> c + (q - c)/n, with c the pairwise moment of two positions. A
    random CNN at init has c well above m^2 (per-channel means differ), so neither 'independent'
    (m^2 + var/n) nor 'fully correlated' (q) fits; this does."""
    model = _cnn(1)
    x = torch.randn(64, 3, 16, 16, generator=gen)
    g, r2 = _cnn_graph(model, tuple(x.shape))
    avg = g.add(Kind.POOL, "AvgPool2d", [r2.id], params={"kernel_size": 2}, shape=(64, 128, 8, 8))
    gap = g.add(Kind.POOL, "AdaptiveAvgPool2d", [r2.id], shape=(64, 128, 1, 1))
    res = propagate(g, model=model)
    with torch.no_grad():
        feats = torch.relu(model(x))
        assert_close(res[r2.id], maps(feats))
        assert_close(res[avg.id], maps(F.avg_pool2d(feats, 2)), "ms")
        pooled = feats.mean((2, 3))
        assert_close(res[gap.id], rows(pooled), "ms")
        meas = float(pooled.square().mean())
        f = res[r2.id]
        independent, correlated = f.mean**2 + f.var / 256, f.second
        assert abs(res[gap.id].second / meas - 1) < 0.05
        assert abs(independent / meas - 1) > 0.3 and abs(correlated / meas - 1) > 0.3


def test_max_pooling_after_relu_on_a_random_cnn(gen):
    """max of k entries = relu(max of k Gaussian pre-activations), by quadrature; valid convolutions
    (zero padding makes border entries smaller, which the pooled moments cannot see)."""
    model = _cnn(0)
    x = torch.randn(64, 3, 20, 20, generator=gen)
    g, r2 = _cnn_graph(model, tuple(x.shape))
    mp = g.add(Kind.POOL, "MaxPool2d", [r2.id], params={"kernel_size": 3}, shape=(64, 128, 7, 7))
    res = propagate(g, model=model)
    with torch.no_grad():
        out = F.max_pool2d(torch.relu(model(x)), 3, stride=2)
    assert_close(res[mp.id], maps(out), "ms")
    # the same window taken as 9 Gaussian entries with the relu output's moments: far too small
    g2 = Graph()
    i = g2.add(Kind.INPUT, "relu_out")
    gauss = g2.add(Kind.POOL, "MaxPool2d", [i.id], params={"kernel_size": 3})
    as_gaussian = propagate(g2, res[r2.id])[gauss.id].second
    meas = float(out.square().mean())
    assert abs(res[mp.id].second / meas - 1) < 0.03 and as_gaussian / meas < 0.85


def test_max_of_gaussians_known_value():
    """E[max of 2 iid N(0,1)] = 1/sqrt(pi), E[max^2] = 1."""
    g = Graph()
    x = g.add(Kind.INPUT, "x", shape=(8, 4, 2))
    p = g.add(Kind.POOL, "max_pool1d", [x.id], params={"kernel_size": 2}, shape=(8, 4, 1))
    out = propagate(g, Moments(0.0, 1.0))[p.id]
    assert out.mean == pytest.approx(1 / math.sqrt(math.pi), rel=1e-10)
    assert out.second == pytest.approx(1.0, rel=1e-10)
    assert "Gaussian" in g[p.id].meta["moments_note"]


# ---- attention -----------------------------------------------------------------------------------------


def test_softmax_sum_of_squares_is_exact_for_two_keys():
    """n = 2: sum a^2 = sigmoid(D)^2 + sigmoid(-D)^2 with D ~ N(0, 2 s^2)."""
    s2 = 1.7
    exact = 2 * activation_moments("sigmoid", 0.0, 2 * s2)[1]
    v = attention_average(Moments(0.0, 1.0), 2, s2)
    assert v.second == pytest.approx(exact, rel=1e-7)


@pytest.mark.parametrize("causal", [False, True])
def test_sdpa_against_monte_carlo(gen, causal):
    b, h, n, d = 16, 4, 64, 32
    q = torch.randn(b, h, n, d, generator=gen) * math.sqrt(2.0)
    k = torch.randn(b, h, n, d, generator=gen)
    v = unit_offset_input((b, h, n, d), 0.4, 0.25, 1.0, gen)
    g = Graph()
    iq, ik, iv = (g.add(Kind.INPUT, s, shape=(b, h, n, d)) for s in "qkv")
    a = g.add(
        Kind.ATTENTION, "scaled_dot_product_attention", [iq.id, ik.id, iv.id], params={"is_causal": causal}
    )
    res = propagate(g, {iq.id: Moments(0, 2.0), ik.id: Moments(0, 1.0), iv.id: measure(seqs(v))[0]})
    assert_close(res[a.id], seqs(F.scaled_dot_product_attention(q, k, v, is_causal=causal)))
    mask = g.add(Kind.CONSTANT, "ones", shape=(n, n))  # an explicit mask input does not move v
    a4 = g.add(Kind.ATTENTION, "scaled_dot_product_attention", [iq.id, ik.id, iv.id, mask.id])
    a4.params["is_causal"] = causal
    assert (
        propagate(g, {iq.id: Moments(0, 2.0), ik.id: Moments(0, 1.0), iv.id: res[iv.id]})[a4.id] == res[a.id]
    )
    uniform = attention_average(res[iv.id], n, 0.0, causal).second  # logit variance 2 matters
    assert abs(uniform - res[a.id].second) > 0.05 * res[a.id].second


def test_softmax_matmul_values_form(gen):
    b, n, d = 64, 48, 32
    q, k = torch.randn(b, n, d, generator=gen), torch.randn(b, n, d, generator=gen)
    v = unit_offset_input((b, n, d), 0.0, 0.3, 1.0, gen)
    g = Graph()
    iq, ik, iv = (g.add(Kind.INPUT, s, shape=(b, n, d)) for s in "qkv")
    kt = g.add(Kind.RESHAPE, "transpose", [ik.id], shape=(b, d, n))
    s = g.add(Kind.MATMUL, "matmul", [iq.id, kt.id], shape=(b, n, n))
    sc = g.add(Kind.SCALE, "mul", [s.id], params={"factor": d**-0.5}, shape=(b, n, n))
    sm = g.add(Kind.SOFTMAX, "softmax", [sc.id], params={"dim": -1}, shape=(b, n, n))
    a = g.add(Kind.ATTENTION, "matmul", [sm.id, iv.id], shape=(b, n, d))
    res = propagate(g, {iq.id: Moments(0, 1.0), ik.id: Moments(0, 1.0), iv.id: measure(seqs(v))[0]})
    logits = q @ k.transpose(1, 2) * d**-0.5
    weights = logits.softmax(-1)
    assert_close(res[sc.id], seqs(logits), "ms")
    assert_close(res[sm.id], seqs(weights), "ms")
    assert_close(res[a.id], seqs(weights @ v))


def test_multihead_attention_module(gen):
    """Tokens of fixed norm (as after a LayerNorm) and in_proj scaled by 2: logit variance ~4, where
    uniform weights would be far off. Unnormalised Gaussian tokens measure a few % above the prediction
    (a key whose input is longer gets both a larger logit spread and a larger value)."""
    torch.manual_seed(4)
    model = nn.Sequential(nn.MultiheadAttention(128, 4, batch_first=True))
    with torch.no_grad():
        model[0].in_proj_weight.mul_(2.0)
    x = F.layer_norm(torch.randn(64, 32, 128, generator=gen), (128,))
    g = Graph()
    i = g.add(Kind.INPUT, "x", shape=tuple(x.shape))
    m = g.add(Kind.LAYER, "MultiheadAttention", [i.id, i.id, i.id], module="0", shape=tuple(x.shape))
    pred = propagate(g, measure(seqs(x))[0], model=model)[m.id]
    assert set(g[m.id].meta["layer_stats"]) == {"query", "key", "value", "out"}
    with torch.no_grad():
        y, weights = model[0](x, x, x, average_attn_weights=False)
    assert_close(pred, seqs(y))
    value = dense_moments(measure(seqs(x))[0], g[m.id].meta["layer_stats"]["value"])
    uniform = dense_moments(attention_average(value, 32), g[m.id].meta["layer_stats"]["out"])
    assert uniform.second < 0.5 * pred.second
    assert float(weights.square().sum(-1).mean()) > 4 / 32


# ---- norms ---------------------------------------------------------------------------------------------


def test_layer_norm_rms_norm_and_batch_norm(gen):
    torch.manual_seed(5)
    model = nn.ModuleDict(
        {
            "ln": nn.LayerNorm(256),
            "rms": nn.RMSNorm(256),
            "bn": nn.BatchNorm1d(256),
            "bn_eval": nn.BatchNorm1d(256),
        }
    )
    with torch.no_grad():
        model["ln"].weight.uniform_(0.5, 2.0, generator=gen)
        model["ln"].bias.normal_(0.3, 0.2, generator=gen)
        model["rms"].weight.uniform_(0.5, 2.0, generator=gen)
        model["bn_eval"].running_mean.normal_(0.2, 0.1, generator=gen)
        model["bn_eval"].running_var.uniform_(0.5, 2.0, generator=gen)
    model["bn_eval"].eval()
    x = unit_offset_input((4096, 256), 0.5, 0.3, 1.0, gen)
    xm = measure(rows(x))[0]
    g = Graph()
    i = g.add(Kind.INPUT, "x", shape=(4096, 256))
    nodes = {k: g.add(Kind.NORM, type(model[k]).__name__, [i.id], module=k) for k in model}
    res = propagate(g, xm, model=model)
    train_res = propagate(g, xm, model=model, train=True)
    with torch.no_grad():
        assert_close(res[nodes["ln"].id], rows(model["ln"](x)))
        assert_close(res[nodes["rms"].id], rows(model["rms"](x)))
        assert_close(res[nodes["bn_eval"].id], rows(model["bn_eval"](x)))
        assert_close(train_res[nodes["bn"].id], rows(model["bn"].train()(x)))


def test_norm_resets_unknown_and_unknown_propagates():
    g = Graph()
    x = g.add(Kind.INPUT, "x")
    o = g.add(Kind.OTHER, "weird_op", [x.id])
    r = g.add(Kind.ACTIVATION, "relu", [o.id], activation=("relu", None))
    n = g.add(Kind.NORM, "LayerNorm", [r.id])
    c = g.add(Kind.CONSTANT, "arange")
    res = propagate(g)
    assert res[o.id] is None and res[r.id] is None and res[c.id] is None
    assert "unknown op" in g[o.id].meta["moments_unknown"] and "input 0" in g[r.id].meta["moments_unknown"]
    assert res[n.id] == Moments(0.0, 1.0, 0.0) and "reset" in g[n.id].meta["moments_note"]
    table = moments_table(g)
    assert "weird_op" in table and "unknown op" in table and len(table.splitlines()) == len(g) + 1


# ---- recurrent ------------------------------------------------------------------------------------------


def test_elman_rnn_mean_field(gen):
    torch.manual_seed(6)
    model = nn.Sequential(nn.RNN(64, 256, batch_first=True))
    x = torch.randn(256, 20, 64, generator=gen)
    g = Graph()
    i = g.add(Kind.INPUT, "x", shape=tuple(x.shape))
    r = g.add(Kind.LAYER, "RNN", [i.id], module="0", shape=(256, 20, 256))
    pred = propagate(g, model=model)[r.id]
    with torch.no_grad():
        assert_close(pred, seqs(model[0](x)[0]), "ms")
    bag = nn.Sequential(nn.EmbeddingBag(8, 8))  # LSTM / GRU: tests/graph/test_graph_rnn_moments.py
    g2 = chain_graph(1, [(Kind.LAYER, "EmbeddingBag", {"module": "0"})])
    assert propagate(g2, model=bag)[1] is None and "not modelled" in g2[1].meta["moments_unknown"]


# ---- end to end: solved chains --------------------------------------------------------------------------


def _mlp_graph(model, acts, batch):
    g = Graph()
    prev = g.add(Kind.INPUT, "x", shape=(batch, 1024))
    layers = []
    for i, name in enumerate(acts):
        prev = g.add(Kind.LAYER, "Linear", [prev.id], module=str(2 * i), shape=(batch, 1024))
        layers.append(prev)
        if name:
            prev = g.add(Kind.ACTIVATION, name, [prev.id], activation=(name, None), shape=(batch, 1024))
    return g, layers


@pytest.mark.parametrize("acts", [("relu", "tanh"), ("tanh", "relu")])
def test_solved_mixed_activation_chain_keeps_unit_second_moment(gen, acts):
    """Linear -> a1 -> Linear -> a2 -> Linear, each layer's Var(w) solved from its own input's E[x^2]:
    every pre-activation has second moment 1, predicted and measured (width 1024, batch 4096)."""
    batch = 4096
    model = nn.Sequential(
        nn.Linear(1024, 1024), nn.Identity(), nn.Linear(1024, 1024), nn.Identity(), nn.Linear(1024, 1024)
    )
    g, layers = _mlp_graph(model, [acts[0], acts[1], None], batch)
    solver = LayerSolver(model)
    res = propagate(g, model=model, layer_stats=solver)
    assert [res[n.id].second for n in layers] == pytest.approx([1.0, 1.0, 1.0], rel=1e-12)
    second = {"relu": 0.5, "tanh": activation_moments("tanh")[1]}
    expect = [1 / 1024, 1 / (1024 * second[acts[0]]), 1 / (1024 * second[acts[1]])]
    assert [solver.solved[(str(2 * i), "weight")] for i in range(3)] == pytest.approx(expect, rel=1e-12)
    with torch.no_grad():
        for i in range(3):
            model[2 * i].weight.normal_(0.0, math.sqrt(expect[i]), generator=gen)
            model[2 * i].bias.zero_()
        h = torch.randn(batch, 1024, generator=gen)
        for i in range(3):
            h = model[2 * i](h)
            meas, se = measure(rows(h))
            assert abs(meas.second - 1.0) < 0.05 and abs(meas.second - 1.0) < N_SE * se[1]
            if i < 2:
                h = torch.relu(h) if acts[i] == "relu" else torch.tanh(h)


def test_residual_block(gen):
    """x + W2 relu(W1 x): branch and skip uncorrelated at init (zero-mean W2)."""
    torch.manual_seed(7)
    model = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 512))
    g = Graph()
    x = g.add(Kind.INPUT, "x", shape=(4096, 512))
    l1 = g.add(Kind.LAYER, "Linear", [x.id], module="0")
    r = g.add(Kind.ACTIVATION, "relu", [l1.id], activation=("relu", None))
    l2 = g.add(Kind.LAYER, "Linear", [r.id], module="2")
    add = g.add(Kind.ADD, "add", [x.id, l2.id])
    res = propagate(g, model=model)
    xs = torch.randn(4096, 512, generator=gen)
    with torch.no_grad():
        assert_close(res[add.id], rows(xs + model(xs)))


def test_sigmoid_chain_non_zero_mean(gen):
    """Torch's default init, sigmoid outputs (mean ~1/2): the next layer's units get different means,
    which the cross moment tracks."""
    torch.manual_seed(8)
    model = nn.Sequential(
        nn.Linear(512, 512), nn.Sigmoid(), nn.Linear(512, 512), nn.Sigmoid(), nn.Linear(512, 512)
    )
    g = chain_graph(4096, [])
    for i in range(5):
        kw = {"module": str(i)} if i % 2 == 0 else {"activation": ("sigmoid", None)}
        g.add(Kind.LAYER if i % 2 == 0 else Kind.ACTIVATION, type(model[i]).__name__, [i], **kw)
    res = propagate(g, model=model)
    xs = torch.randn(4096, 512, generator=gen)
    h = xs
    with torch.no_grad():
        for i in range(5):
            h = model[i](h)
            assert_close(res[i + 1], rows(h))
    assert res[2].mean > 0.45 and res[3].cross > 10 * res[3].mean ** 2


def test_param_node_reads_the_model_and_adds_to_tokens(gen):
    """A learned position embedding (1, L, D) added to token features: its own entries, units along D."""
    model = nn.Module()
    model.pos = nn.Parameter(0.2 + 0.5 * torch.randn(1, 32, 64, generator=gen))
    x = torch.randn(256, 32, 64, generator=gen)
    g = Graph()
    i = g.add(Kind.INPUT, "x", shape=tuple(x.shape))
    p = g.add(Kind.PARAM, "pos", params={"name": "pos"}, shape=(1, 32, 64))
    add = g.add(Kind.ADD, "add", [i.id, p.id])
    res = propagate(g, measure(seqs(x))[0], model=model)
    pos = model.pos.detach().double()
    assert res[p.id].second == pytest.approx(float(pos.square().mean()), rel=1e-12)
    assert res[p.id].cross == pytest.approx(float(pos[0].mean(0).square().mean()), rel=1e-12)
    with torch.no_grad():
        assert_close(res[add.id], seqs(x + model.pos), "ms")
    assert propagate(g, model=nn.Module())[p.id] is None


# ---- the pass itself -------------------------------------------------------------------------------------


def test_propagate_writes_meta_and_rules_are_a_registry(monkeypatch):
    g = chain_graph(1, [(Kind.RESHAPE, "view", {}), (Kind.OTHER, "custom", {})])
    res = propagate(g, Moments(0.1, 2.0))
    assert g[1].meta["moments"] is res[1] == Moments(0.1, 2.0) and res[2] is None
    monkeypatch.setitem(RULES, Kind.OTHER, lambda node, ctx: ctx.input(node).scaled(2.0))
    assert propagate(g, Moments(0.1, 2.0))[2] == Moments(0.2, 8.0)
    assert "moments_unknown" not in g[2].meta  # a re-run clears the old result


def test_layer_statistics_names_are_re_exported():
    """The layer-statistics part lives in initlab.graph.layer_stats; moments re-exports it unchanged."""
    from initlab.graph import layer_stats, moments

    for name in layer_stats.__all__:
        assert getattr(moments, name) is getattr(layer_stats, name)
    assert set(layer_stats.__all__) <= set(moments.__all__)


def test_layer_without_stats_is_unknown_and_solver_shares_modules():
    g = chain_graph(1, [(Kind.LAYER, "Linear", {"module": "0"})])
    assert propagate(g)[1] is None and "model=" in g[1].meta["moments_unknown"]
    model = nn.Sequential(nn.Linear(16, 16), nn.Embedding(10, 16))
    g = Graph()
    x = g.add(Kind.INPUT, "x")
    a = g.add(Kind.LAYER, "Linear", [x.id], module="0")
    b = g.add(Kind.LAYER, "Linear", [a.id], module="0")  # the same module called twice
    ids = g.add(Kind.INPUT, "ids")
    e = g.add(Kind.LAYER, "Embedding", [ids.id], module="1")
    solver = LayerSolver(model, target_second=2.0)
    res = propagate(g, {x.id: Moments(0.0, 4.0), ids.id: Moments(0.0, 0.0)}, model=model, layer_stats=solver)
    assert solver.solved[("0", "weight")] == pytest.approx(2.0 / (16 * 4.0))
    assert res[a.id].second == pytest.approx(2.0) and res[b.id].second == pytest.approx(1.0)
    assert res[e.id].second == pytest.approx(2.0) and solver.solved[("1", "weight")] == 2.0
