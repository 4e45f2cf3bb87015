"""Tests of initlab.graph.spatial: what a convolution's taps read (zero padding, strided transposed
convolutions) and the spatial profile a feature map carries — exact index algebra, then seeded
Monte-Carlo forwards.

Statistical tolerance: a measured moment is the average over ``J`` output channels of per-channel
estimates; channels are independent at init (fresh weights per channel), so its standard error is
``SE = std_j / sqrt(J)`` (data and weight draw together). Predictions must lie within 5 SE (plus 1e-6
relative: float32 resolution). The chains below have no channel offsets (zero-mean inputs, weights and
no bias between linear maps), so ``SE`` is a fraction of a percent while the profile moves ``q`` by
5-60%: a test can fail. Expected values are recomputed from formulas or index arithmetic.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from moment_checks import N_SE
from moment_checks import measure as measure_rows
from torch import nn

from initlab.graph import trace
from initlab.graph.moments import Moments, propagate
from initlab.graph.nodes import Graph, Kind
from initlab.graph.spatial import PROFILE_RULES, conv_geometry, normalised, tap_maps, zero_padded


def measure(y: torch.Tensor) -> tuple[Moments, tuple[float, float, float]]:
    """Moments of a ``(N, C, *spatial)`` map, channels as units, and their standard errors; ``cross``
    over pairs of different positions of one example."""
    return measure_rows(y.flatten(2).transpose(1, 2))  # (N, P, C)


def assert_close(pred: Moments, y: torch.Tensor, fields: str = "msc") -> None:
    meas, se = measure(y)
    for f, name, s in zip("msc", ("mean", "second", "cross"), se, strict=True):
        if f in fields:
            p, v = getattr(pred, name), getattr(meas, name)
            tol = N_SE * s + 1e-6 * max(abs(v), 1e-3)
            assert abs(p - v) <= tol, f"{name}: predicted {p:.6g}, measured {v:.6g} (SE {s:.3g})"


def _conv_taps_1d(n: int, k: int, s: int, p: int) -> list[list[int]]:
    """For each output of a 1-D convolution, the input index each tap reads (``-1``: padding)."""
    out = (n + 2 * p - k) // s + 1
    return [[i * s - p + t if 0 <= i * s - p + t < n else -1 for t in range(k)] for i in range(out)]


def _transposed_taps_1d(n: int, k: int, s: int) -> list[list[int]]:
    """For each output of a 1-D transposed convolution (no padding), the input index of each tap."""
    out = (n - 1) * s + k
    return [[(o - t) // s if (o - t) % s == 0 and 0 <= (o - t) // s < n else -1 for t in range(k)]
            for o in range(out)]


def _factors(taps_1d: list[list[int]], dims: int = 2) -> tuple[float, float]:
    """``f_q`` and ``f_c`` of :func:`conv_geometry` for a uniform input, by enumerating every output
    position and tap of a ``dims``-D product of ``taps_1d``."""
    k1 = len(taps_1d[0])
    taps = list(itertools.product(range(k1), repeat=dims))
    outs = list(itertools.product(range(len(taps_1d)), repeat=dims))
    real = {t: [all(taps_1d[o[d]][t[d]] >= 0 for d in range(dims)) for o in outs] for t in taps}
    k, p = len(taps), len(outs)
    f_q = sum(sum(r) for r in real.values()) / (k * p)
    f_c = sum(sum(r) * (sum(r) - 1) for r in real.values()) / (k * p * (p - 1))
    return f_q, f_c


# ---- exact algebra: tap maps and factors -------------------------------------------------------------


@pytest.mark.parametrize(("n", "k", "s", "p"), [(8, 3, 1, 1), (8, 3, 2, 1), (5, 5, 1, 2), (4, 3, 1, 1)])
def test_zero_padding_factors_match_index_arithmetic(n, k, s, p):
    g = conv_geometry(None, (n, n), (k, k), stride=s, padding=p)
    f_q, f_c = _factors(_conv_taps_1d(n, k, s, p))
    assert g.second == pytest.approx(f_q, abs=1e-12, rel=0)
    assert g.mean == pytest.approx(f_q, abs=1e-12, rel=0)  # uniform input: taps read 1 or 0
    assert g.cross == pytest.approx(f_c, abs=1e-12, rel=0)
    assert g.cross < g.second  # a pair of positions needs both taps real


@pytest.mark.parametrize(("n", "k", "s"), [(6, 2, 2), (6, 3, 2), (5, 4, 2), (4, 3, 3), (6, 1, 2)])
def test_transposed_conv_taps_per_output(n, k, s):
    """A transposed convolution with stride ``s`` gives each output ``k / s`` taps per dimension on
    average (k=3, s=2: 2 and 1 alternately): ``fan_in * f_q = in_channels * (taps per output)``."""
    g = conv_geometry(None, (n, n), (k, k), stride=s, transposed=True)
    f_q, f_c = _factors(_transposed_taps_1d(n, k, s))
    assert g.second == pytest.approx(f_q, abs=1e-12, rel=0)
    assert g.cross == pytest.approx(f_c, abs=1e-12, rel=0)
    taps_per_output = sum(t >= 0 for row in _transposed_taps_1d(n, k, s) for t in row) / ((n - 1) * s + k)
    assert taps_per_output == pytest.approx(n * k / ((n - 1) * s + k), abs=1e-12)  # -> k / s inside
    assert g.second * k * k == pytest.approx(taps_per_output**2, abs=1e-12, rel=0)
    counts = np.array([sum(t >= 0 for t in row) for row in _transposed_taps_1d(n, k, s)], dtype=float)
    expected = normalised(np.outer(counts, counts))
    if expected is None:
        assert g.profile is None
    else:
        np.testing.assert_allclose(g.profile, expected, atol=1e-12, rtol=0)


def test_tap_maps_read_the_profile_and_padding_modes():
    amp = np.arange(1.0, 6.0)
    a = tap_maps(amp, (3,), padding=1)
    np.testing.assert_array_equal(a[0], [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(a[2], [2, 3, 4, 5, 0])
    assert (tap_maps(amp, (3,), padding=1, padding_mode="circular")[0] == [5, 1, 2, 3, 4]).all()
    assert zero_padded("same") and not zero_padded("valid") and not zero_padded((0, 0))
    uniform = conv_geometry(None, (6, 6), (3, 3), padding=1, padding_mode="reflect")
    assert (uniform.mean, uniform.second, uniform.cross, uniform.profile) == (1.0, 1.0, 1.0, None)


def test_profiled_input_weights_each_tap_by_its_position():
    """Exact for zero-mean weights: ``E[y(p)^2] = Var(w) C sum_t q(p + t)``, so ``f_q`` is the mean over
    outputs and taps of the input profile read (``pi`` here, not ``1``), and the output profile follows."""
    rng = np.random.default_rng(0)
    pi = rng.uniform(0.2, 2.0, (5, 5))
    pi /= pi.mean()
    g = conv_geometry(pi, (5, 5), (3, 3), padding=1)
    taps = _conv_taps_1d(5, 3, 1, 1)
    read = np.zeros((5, 5))
    cells, kernel = itertools.product(range(5), repeat=2), list(itertools.product(range(3), repeat=2))
    for (i, j), (ti, tj) in itertools.product(cells, kernel):
        u, v = taps[i][ti], taps[j][tj]
        read[i, j] += pi[u, v] if u >= 0 and v >= 0 else 0.0
    assert g.second == pytest.approx(read.mean() / 9, abs=1e-12, rel=0)
    np.testing.assert_allclose(g.profile, read / read.mean(), atol=1e-12, rtol=0)


# ---- Monte-Carlo: chains of padded convolutions on small maps --------------------------------------------


def _graph(model, x):
    g = trace(model, x)
    propagate(g, Moments(0.0, 1.0), model=model)
    return g


def _uniform_coverage_q(model: nn.Sequential, size: int) -> float:
    """What a rule without profiles predicts: each conv scales ``q`` by its mean real-tap fraction."""
    q = 1.0
    for m in model:
        if isinstance(m, nn.Conv2d):
            f_q = conv_geometry(None, (size, size), m.kernel_size, padding=m.padding).second
            q *= float(m.weight.detach().double().square().mean()) * m.weight[0].numel() * f_q
    return q


def test_profile_compounds_through_a_chain_of_padded_convolutions(gen):
    """Five 3x3 zero-padded convolutions on 8x8 maps (256 channels, identity between): border outputs
    have fewer real taps and read smaller borders, so ``q`` falls less than the mean coverage says —
    18% per five layers here (the top eigenvalue of the tap-count operator). The profile is exact."""
    torch.manual_seed(5)
    model = nn.Sequential(*[nn.Conv2d(3 if i == 0 else 256, 256, 3, padding=1, bias=False) for i in range(5)])
    x = torch.randn(64, 3, 8, 8, generator=gen)
    g = _graph(model, x)
    last = next(n for n in g if n.module == "4")
    with torch.no_grad():
        y = model(x)
    assert_close(last.meta["moments"], y)
    meas = measure(y)[0].second
    assert _uniform_coverage_q(model, 8) < 0.85 * meas  # the old rule, far outside 5 SE
    assert last.meta["profile"].shape == (8, 8)
    per_channel = y.detach().double().square().mean(0)  # (C, 8, 8): q per channel and position
    q = per_channel.mean(0)
    se = per_channel.std(0) / math.sqrt(per_channel.shape[0]) / q.mean()
    error = np.abs(last.meta["profile"] - (q / q.mean()).numpy())
    assert (error <= N_SE * se.numpy() + 0.01 * se.mean().item()).all()  # per position, 5 SE


def test_relu_chain_with_bias_on_small_maps(gen):
    """ReLU keeps the profile (positively homogeneous, zero-mean pre-activations: exact); a bias adds
    a uniform part. Two padded convs then a strided one on 6x6 maps, 384 channels."""
    torch.manual_seed(6)
    model = nn.Sequential(
        nn.Conv2d(3, 384, 3, padding=1), nn.ReLU(), nn.Conv2d(384, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 384, 3, stride=2, padding=1),
    )
    x = torch.randn(64, 3, 6, 6, generator=gen)
    g = _graph(model, x)
    with torch.no_grad():
        y = model(x)
    assert_close(next(n for n in g if n.module == "4").meta["moments"], y)


@pytest.mark.parametrize(("k", "s", "p", "op"), [(2, 2, 0, 0), (3, 2, 0, 0), (3, 2, 1, 1), (4, 2, 1, 0)])
def test_transposed_conv_and_the_conv_after_it(gen, k, s, p, op):
    """ConvTranspose2d's output second moment uses ``in_channels * prod(k_i / s_i)`` taps (k=2, s=2:
    ``in_channels``, not ``4 in_channels``: 0.54 of the std before); the next padded conv reads its
    uneven profile (k=3, s=2: outputs with 2 and 1 taps alternate)."""
    torch.manual_seed(7)
    model = nn.Sequential(
        nn.ConvTranspose2d(256, 256, k, s, p, output_padding=op), nn.Conv2d(256, 256, 3, padding=1)
    )
    x = torch.randn(32, 256, 6, 6, generator=gen)
    g = _graph(model, x)
    with torch.no_grad():
        t = model[0](x)
        y = model[1](t)
    tconv = next(n for n in g if n.module == "0")
    assert_close(tconv.meta["moments"], t)
    assert_close(next(n for n in g if n.module == "1").meta["moments"], y)
    w = model[0].weight.detach().double()
    naive = 256 * k * k * float(w.square().mean())  # every output taken to read prod(k) taps per channel
    assert naive > 1.5 * measure(t)[0].second


# ---- how other nodes pass a profile on -------------------------------------------------------------------


def test_profile_rules_pass_keep_mix_and_drop():
    model = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, bias=False))
    g = Graph()
    x = g.add(Kind.INPUT, "x", shape=(2, 4, 3, 3))
    c = g.add(Kind.LAYER, "Conv2d", [x.id], module="0", shape=(2, 4, 3, 3))
    r = g.add(Kind.ACTIVATION, "relu", [c.id], activation=("relu", None), shape=(2, 4, 3, 3))
    add = g.add(Kind.ADD, "add", [r.id, x.id], shape=(2, 4, 3, 3))
    cat = g.add(Kind.CONCAT, "cat", [r.id, x.id], params={"dim": 1}, shape=(2, 8, 3, 3))
    ln = g.add(Kind.NORM, "layer_norm", [r.id], params={"kind": "layer_norm"}, shape=(2, 4, 3, 3))
    bn = g.add(Kind.NORM, "BatchNorm2d", [r.id], params={"kind": "batch_norm"}, shape=(2, 4, 3, 3))
    flat = g.add(Kind.RESHAPE, "flatten", [r.id], shape=(2, 36))
    res = propagate(g, Moments(0.0, 1.0), model=model, train=True)
    pi = c.meta["profile"]
    assert pi is not None and pi.shape == (3, 3) and pi[1, 1] == pi.max()
    np.testing.assert_array_equal(r.meta["profile"], pi)  # elementwise
    np.testing.assert_array_equal(bn.meta["profile"], pi)  # statistics over positions
    assert ln.meta["profile"] is None and flat.meta["profile"] is None  # per position; new layout
    qr, qx = res[r.id].second, res[x.id].second
    np.testing.assert_allclose(add.meta["profile"], (qr * pi + qx) / (qr + qx), atol=1e-12, rtol=0)
    np.testing.assert_allclose(cat.meta["profile"], (qr * pi + qx) / (qr + qx), atol=1e-12, rtol=0)
    assert set(PROFILE_RULES) >= {Kind.ACTIVATION, Kind.ADD, Kind.NORM, Kind.POOL}
