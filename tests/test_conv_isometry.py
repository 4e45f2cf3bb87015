"""Tests of the isometric rule for plain CNNs (issue 13): delta kernels under init_model(..., "auto")
(looks-linear centre taps for ReLU-like links, delta-orthogonal at the near-critical point for
sigmoid; iid kernels at the depth-aware q* for tanh-like ones), strided / channel-changing convs and
pooled heads, what is not a chain, and the Delta samplers (schemes.Delta, init.delta_looks_linear_,
numpy_init.delta_looks_linear).

Exact algebra uses ``atol=1e-6, rtol=0`` in float32 (the orthogonal tests' tolerance) and ``1e-9``
in float64; statistical checks state their tolerance and seed next to the assertion.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812 - the usual spelling
from torch import nn

from initlab import init as I  # noqa: N812 - drop-in spelling
from initlab import numpy_init as ni
from initlab import schemes
from initlab.errors import InitlabError
from initlab.model import init_model
from initlab.theory import isometric_point


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _plain_cnn(depth: int, act: type[nn.Module], c_in: int = 8, width: int = 16) -> nn.Sequential:
    """``depth`` 3x3 convs (padding 1, stride 1) linked by ``act``; the last conv writes the output.
    float64, so the orthogonal blocks are drawn (QR) in float64."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, width, 3, padding=1)]
    for _ in range(depth - 1):
        layers += [act(), nn.Conv2d(width, width, 3, padding=1)]
    return nn.Sequential(*layers).double()


def _svdvals(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Singular values of the input-output Jacobian of ``net`` at the single input ``x``, float64."""
    jac = torch.func.jacrev(lambda v: net(v[None])[0])(x)
    return torch.linalg.svdvals(jac.detach().reshape(-1, x.numel()))


def _centre(w: torch.Tensor) -> torch.Tensor:
    return w[(slice(None), slice(None), *(k // 2 for k in w.shape[2:]))]


def _off_centre_max(w: torch.Tensor) -> float:
    mask = torch.ones(w.shape[2:], dtype=torch.bool)
    mask[tuple(k // 2 for k in w.shape[2:])] = False
    return float(w.detach()[..., mask].abs().max())


# ---- (a) the test: the Jacobian of a 32-layer plain CNN -----------------------------------

# The looks-linear first link carries width / 2 = 8 independent channels per position (rows
# [A; -A]), so the input has 8 channels: with more, the Jacobian has rank 8 * 64 < inputs and zero
# singular values by construction (as for the MLP rule's first layer).
X8 = torch.randn(8, 8, 8, generator=_gen(1), dtype=torch.float64)


def test_relu_cnn_under_auto_has_all_jacobian_singular_values_in_the_band():
    net = _plain_cnn(32, nn.ReLU)
    plan = init_model(net, generator=_gen())
    assert plan["0.weight"].spec == "delta_looks_linear(gain=1, rows)"
    assert plan["30.weight"].spec == "delta_looks_linear(gain=1, rows+cols)"
    assert plan["62.weight"].scheme == "looks_linear" and "cols)" in plan["62.weight"].spec
    assert "delta kernel" in plan["30.weight"].note
    s = _svdvals(net, X8)
    assert s.numel() == 8 * 64 and float(s.min()) >= 0.5 and float(s.max()) <= 2.0
    # exactly: each position maps through 8x8 orthogonal blocks, then the last conv's 16 x 8 block
    # with orthonormal columns times sqrt(rows / cols) (the per-unit variance correction)
    assert torch.allclose(s, torch.full_like(s, math.sqrt(16 / 8)), atol=1e-9, rtol=0)


def test_relu_cnn_under_he_spreads_its_jacobian_over_decades():
    net = _plain_cnn(32, nn.ReLU)
    plan = init_model(net, "he_normal", generator=_gen())
    assert plan["30.weight"].std == pytest.approx(math.sqrt(2 / (16 * 9)), rel=1e-12)  # fan_in, relu gain
    s = _svdvals(net, X8)
    assert float(s.max() / s.min()) > 100.0


def _circular_cnn(depth: int, act: type[nn.Module], c_in: int = 8, width: int = 16) -> nn.Sequential:
    """:func:`_plain_cnn` with circular padding: every tap reads data, so the mean field of an iid
    kernel holds at every position."""
    net = _plain_cnn(depth, act, c_in, width)
    for m in net:
        if isinstance(m, nn.Conv2d):
            m.padding_mode = "circular"
    return net


def test_tanh_cnn_under_auto_grows_the_gradient_by_depth_point_growth():
    """A 32-layer tanh CNN under auto: iid kernels at depth_point's q* (CONV_DEPTH_NOTE), so each of
    the 31 links multiplies the Jacobian's mean squared singular value by chi_1(q*) and the whole
    chain by chi_1^31 = DEPTH_GROWTH (4); the first conv maps unit data to q* and the last (the
    output, target 1) reads tanh at q* with sigma^2 = 1 / E[tanh^2], which cancels the q*: mean
    s^2 = (16 / 8 channels) chi_1^31 = 8 (mean field, circular padding). Bound: the geometric mean
    over seeds 0-3 within a factor 2 of it (a product of 32 random maps: one draw's log mean s^2
    has std ~0.06 sqrt(31) ~ 0.35, the mean of four 0.17; a factor 2 is 4 of those). He (tanh gain
    5/3: sigma_w^2 = 2.78, chaotic) grows it over 10x more (mean field: 2 prod chi_1 ~ 190)."""
    from initlab.model.chain import CONV_DEPTH_NOTE
    from initlab.theory import DEPTH_GROWTH, depth_point

    p = depth_point("tanh", 31)
    assert p.chi_1 ** 31 == pytest.approx(DEPTH_GROWTH, rel=1e-9)
    expected = 16 / 8 * p.chi_1 ** 31
    logs = []
    for seed in range(4):
        net = _circular_cnn(32, nn.Tanh)
        plan = init_model(net, generator=_gen(seed))
        assert plan["30.weight"].scheme == "propagated" and plan["30.weight"].spec.startswith("normal")
        assert CONV_DEPTH_NOTE.split("{")[0] in plan.propagation
        x = torch.randn(8, 6, 6, generator=_gen(2 + seed), dtype=torch.float64)
        logs.append(math.log(float(_svdvals(net, x).pow(2).mean())))
    auto = math.exp(sum(logs) / len(logs))
    assert expected / 2 <= auto <= expected * 2
    net = _circular_cnn(32, nn.Tanh)
    init_model(net, "he_normal", generator=_gen())
    he = float(_svdvals(net, torch.randn(8, 6, 6, generator=_gen(2), dtype=torch.float64)).pow(2).mean())
    assert he > 10 * auto


def test_tanh_cnn_rows_target_the_depth_point():
    """Each hidden conv of a tanh CNN under auto is iid normal on every tap, solved so that its
    pre-activation second moment is depth_point's q* for the chain's links (the plan's E[y^2] out;
    3 links here: q* = 1, the variance rule); the last conv, the output, targets 1. A 12-link chain
    reads q* < 1, and its pre-activations measure it (circular padding, batch 64 at 8x8: n = 64 x 64
    x 16 entries, whose mean square has a relative std ~ sqrt(2 / n) ~ 0.5 %; the sampled weights'
    E[w^2] over 2304 entries adds 3 %: within 10 %)."""
    from initlab.theory import depth_point

    net = _plain_cnn(4, nn.Tanh)
    plan = init_model(net, generator=_gen())
    assert [plan[f"{i}.weight"].scheme for i in (0, 2, 4, 6)] == ["propagated"] * 4
    assert all(plan[f"{i}.weight"].q_out == pytest.approx(1.0, rel=1e-6) for i in (0, 2, 4, 6))
    assert _off_centre_max(net[2].weight) > 0.0
    deep = _circular_cnn(13, nn.Tanh)
    plan = init_model(deep, generator=_gen(1))
    q_star = depth_point("tanh", 12).q_star
    assert q_star < 0.8
    assert plan["2.weight"].q_out == pytest.approx(q_star, rel=1e-6)
    assert plan["24.weight"].q_out == pytest.approx(1.0, rel=1e-6)
    h = torch.randn(64, 8, 8, 8, generator=_gen(2), dtype=torch.float64)
    with torch.no_grad():
        for i, m in enumerate(deep):
            h = m(h)
            if isinstance(m, nn.Conv2d) and i < 24:
                assert float(h.pow(2).mean()) == pytest.approx(q_star, rel=0.1), i


def test_a_mixed_relu_tanh_cnn_keeps_the_isometric_chain():
    """One tanh link among ReLU ones: the depth rule would draw the ReLU layers iid too, losing their
    exact looks-linear links, so the whole chain stays isometric (delta kernels)."""
    from initlab.model.chain import CONV_DEPTH_NOTE

    layers: list[nn.Module] = [nn.Conv2d(8, 16, 3, padding=1)]
    for i in range(7):
        layers += [nn.Tanh() if i == 3 else nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1)]
    net = nn.Sequential(*layers)
    plan = init_model(net, generator=_gen())
    assert CONV_DEPTH_NOTE.split("{")[0] not in (plan.propagation or "")
    assert plan["2.weight"].scheme != "propagated"
    assert all(plan[f"{2 * k}.weight"].spec.startswith("delta_looks_linear") for k in range(8))
    assert plan["6.weight"].spec.endswith(", cols)")  # reads mirrored ReLU channels, writes the tanh link
    assert plan["8.weight"].spec.endswith(", rows)")  # reads the tanh link, writes mirrored channels


def test_mixed_tanh_like_links_each_get_their_own_q_star():
    """tanh and softsign links: each layer targets the depth_point of the link after it, and the
    note names both."""
    from initlab.theory import depth_point

    layers: list[nn.Module] = [nn.Conv2d(8, 16, 3, padding=1)]
    for i in range(11):
        layers += [nn.Softsign() if i % 2 else nn.Tanh(), nn.Conv2d(16, 16, 3, padding=1)]
    net = nn.Sequential(*layers)
    plan = init_model(net, generator=_gen(), dry_run=True)
    q_tanh, q_soft = depth_point("tanh", 11).q_star, depth_point("softsign", 11).q_star
    assert plan["0.weight"].q_out == pytest.approx(q_tanh, rel=1e-6)
    assert plan["2.weight"].q_out == pytest.approx(q_soft, rel=1e-6)
    assert f"{q_tanh:.3g} (tanh)" in plan.propagation and f"{q_soft:.3g} (softsign)" in plan.propagation


def test_a_cnn_without_a_depth_point_is_not_given_the_depth_rule():
    """tanhshrink's chi_1 stays above 1.38 at every q* <= 1: depth_point raises, and auto keeps the
    isometric chain rather than claim the rule."""
    from initlab.model.chain import CONV_DEPTH_NOTE

    layers: list[nn.Module] = [nn.Conv2d(8, 16, 3, padding=1)]
    for _ in range(7):
        layers += [nn.Tanhshrink(), nn.Conv2d(16, 16, 3, padding=1)]
    plan = init_model(nn.Sequential(*layers), generator=_gen(), dry_run=True)
    assert CONV_DEPTH_NOTE.split("{")[0] not in (plan.propagation or "")
    assert plan["2.weight"].scheme != "propagated"


def test_sigmoid_cnn_rows_are_delta_orthogonal_at_the_near_critical_point():
    """A sigmoid CNN keeps the isometric chain (only its biases centre sigmoid(0) = 1/2): delta-
    orthogonal kernels at the near-critical point."""
    net = _plain_cnn(4, nn.Sigmoid)
    plan = init_model(net, generator=_gen())
    p = isometric_point("sigmoid")
    row = plan["2.weight"]
    assert row.scheme == "delta_orthogonal" and "near-critical sigmoid" in row.note
    assert "delta kernel" in row.note
    assert row.gain == pytest.approx(p.sigma_w, rel=1e-12)
    c = _centre(net[2].weight.detach()).double()
    assert torch.allclose(c @ c.T, p.sigma_w2 * torch.eye(16, dtype=torch.float64), atol=1e-5, rtol=0)
    assert _off_centre_max(net[2].weight) == 0.0


# ---- (b) strided and channel-changing chains, pooled heads ----------------------------------------


def _strided_relu_cnn() -> nn.Sequential:
    """16 -> 8 (fewer channels, reading the data), 8 -> 16 stride 2, 16 -> 32 stride 2 dilation 2,
    32 -> 32 5x5, then an average-pooled Linear head."""
    return nn.Sequential(
        nn.Conv2d(16, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=2, dilation=2), nn.ReLU(),
        nn.Conv2d(32, 32, 5, padding=2), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    )


def test_strided_and_channel_changing_relu_chain_keeps_the_second_moment():
    """Each conv's pre-activation second moment equals the input's within 5 standard errors. The
    first conv keeps rank 4 (its block: 4 orthonormal rows), the later blocks are isometries on that
    signal, so a layer's second moment is a mean of n = 4 * batch * positions independent squared
    unit Gaussians: relative std sqrt(2 / n) (seed 3, batch 16, 32x32 input)."""
    net = _strided_relu_cnn()
    plan = init_model(net, generator=_gen())
    convs = [i for i, m in enumerate(net) if isinstance(m, nn.Conv2d)]
    assert all(plan[f"{i}.weight"].spec.startswith("delta_looks_linear") for i in convs)
    assert "stride 2x2" in plan["2.weight"].note and "stride" not in plan["6.weight"].note
    head = plan["10.weight"]
    assert head.scheme == "looks_linear" and "reads AdaptiveAvgPool2d -> Flatten" in head.note
    x = torch.randn(16, 16, 32, 32, generator=_gen(3))
    q_in, h = float(x.pow(2).mean()), x
    with torch.no_grad():
        for i, m in enumerate(net):
            h = m(h)
            if i in convs:
                n = 4 * h.shape[0] * h.shape[2] * h.shape[3]
                assert abs(float(h.pow(2).mean()) / q_in - 1.0) <= 5 * math.sqrt(2 / n), i


def test_channel_changes_are_semi_orthogonal_centre_taps():
    """Fewer channels: W W^T = g^2 I (orthonormal rows); more: W^T W = g^2 (rows / cols) I, the
    Linear rule's per-unit correction; sigmoid, so nothing is mirrored (and the chain is isometric:
    a tanh CNN gets iid kernels, CONV_DEPTH_NOTE)."""
    net = nn.Sequential(nn.Conv1d(8, 32, 3, padding=1), nn.Sigmoid(),
                        nn.Conv1d(32, 16, 5, stride=2, padding=2), nn.Sigmoid(),
                        nn.Conv1d(16, 16, 3, padding=1))
    plan = init_model(net, generator=_gen())
    assert [plan[f"{i}.weight"].scheme for i in (0, 2, 4)] == ["delta_orthogonal"] * 3
    p = isometric_point("sigmoid")
    wide, narrow = _centre(net[0].weight.detach()), _centre(net[2].weight.detach())
    g0 = plan["0.weight"].gain
    assert g0 == pytest.approx(math.sqrt(p.q_star), rel=1e-12)
    assert torch.allclose(wide.T @ wide, g0**2 * 32 / 8 * torch.eye(8), atol=1e-6, rtol=0)
    # float32 entries of size sigma_w: the products carry sigma_w^2 (19) times the 1e-6 tolerance
    assert torch.allclose(narrow @ narrow.T, p.sigma_w2 * torch.eye(16), atol=1e-6 * p.sigma_w2, rtol=0)
    assert _off_centre_max(net[2].weight) == 0.0 and "stride 2" in plan["2.weight"].note


class _MeanHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(F.gelu(self.c2(F.relu(self.c1(x)))).mean((2, 3)))


def test_mean_pooled_head_is_a_chain_and_stays_linear_at_init():
    """Looks-linear through x.mean((2, 3)): the network is linear in its input at init (dropout
    off), float64 to 1e-9."""
    net = _MeanHead().double()
    plan = init_model(net, generator=_gen())
    assert plan["fc.weight"].spec.startswith("looks_linear") and "reads mean" in plan["fc.weight"].note
    x, y = torch.randn(2, 2, 3, 6, 6, generator=_gen(4), dtype=torch.float64)
    assert torch.allclose(net(2 * x - 3 * y), 2 * net(x) - 3 * net(y), atol=1e-9, rtol=0)


# ---- (c) what is not a plain CNN chain ------------------------------------------------------------


class _ResidualConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        return x + self.c2(F.relu(self.c1(x)))


class _HeadOnWidth(nn.Module):
    """A Linear applied to the last (width) axis of a conv output: no flatten, no chain."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(F.relu(self.c2(F.relu(self.c1(x)))))


@pytest.mark.parametrize("model", [
    lambda: nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3)),
    _ResidualConv,
    lambda: nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3)),
    lambda: nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=2)),
    lambda: nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=8)),
    lambda: nn.Sequential(nn.Conv2d(3, 8, 2), nn.ReLU(), nn.Conv2d(8, 8, 2)),
    lambda: nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.ConvTranspose2d(8, 8, 3)),
    lambda: nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(8, 8, 3)),
    _HeadOnWidth,
    lambda: nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 8), nn.ReLU(),
                          nn.Linear(8, 2)),
], ids=["batchnorm", "residual", "max-pool", "grouped", "depthwise", "even-kernel", "transposed",
        "avg-pool-between-convs", "head-on-width", "two-linear-after-convs"])
def test_cnns_that_are_not_plain_chains_are_propagated(model):
    net = model()
    plan = init_model(net, generator=_gen(), dry_run=True, example_inputs=torch.randn(2, net_in(net), 8, 8))
    weights = [r for r in plan if r.name.endswith("weight") and r.module_type.startswith(("Conv", "Linear"))]
    # a residual branch's last conv in a network without norms starts at 0 (auto's residual rule)
    zero_end = [r.scheme == "zeros" and "residual branch end" in r.note for r in weights]
    assert weights and all(r.scheme == "propagated" or z for r, z in zip(weights, zero_end, strict=True)), [
        (r.name, r.scheme) for r in weights]
    assert not any(r.scheme in ("looks_linear", "delta_orthogonal", "centering") for r in plan)


def net_in(net: nn.Module) -> int:
    return next(m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))).in_channels


# ---- (d) seeds and dry runs -----------------------------------------------------------------------


def test_same_seed_same_bits_and_dry_run_writes_nothing():
    a, b = _strided_relu_cnn(), _strided_relu_cnn()
    before = {k: v.clone() for k, v in a.state_dict().items()}
    dry = init_model(a, generator=_gen(5), dry_run=True)
    assert not dry.applied and all(torch.equal(before[k], v) for k, v in a.state_dict().items())
    pa, pb = init_model(a, generator=_gen(5)), init_model(b, generator=_gen(5))
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    def rows(plan):
        return [(r.name, r.scheme, r.spec, r.gain, r.note) for r in plan]

    assert rows(dry) == rows(pa) == rows(pb)


def test_sigmoid_cnn_biases_centre_every_position():
    """b = -0.5 W 1 summed over input channels and taps: the conv reads sigmoid - 1/2 exactly."""
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Sigmoid(), nn.Conv2d(8, 8, 3, padding=1)).double()
    plan = init_model(net, generator=_gen())
    assert plan["2.bias"].scheme == "centering"
    h = torch.sigmoid(net[0](torch.randn(2, 3, 5, 5, generator=_gen(6), dtype=torch.float64)))
    assert torch.allclose(net[2](h), F.conv2d(h - 0.5, net[2].weight, padding=1), atol=1e-12, rtol=0)


# ---- (e) the samplers -----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(8, 16, 3, 3), (16, 8, 3), (6, 6, 3, 3, 3)], ids=str)
def test_delta_orthogonal_centre_tap_any_channel_ratio(shape):
    g = 1.7
    w = I.apply_spec_(torch.empty(shape), schemes.Delta(schemes.Orthogonal(g)), generator=_gen())
    c = _centre(w)
    gram = c @ c.T if shape[0] <= shape[1] else c.T @ c
    assert torch.allclose(gram, g**2 * torch.eye(gram.shape[0]), atol=1e-6 * g**2, rtol=0)
    assert _off_centre_max(w) == 0.0


def test_delta_orthogonal_spec_draws_the_bits_of_delta_orthogonal_():
    a = I.delta_orthogonal_(torch.empty(16, 8, 3, 3), 1.3, generator=_gen(7))
    b = I.apply_spec_(torch.empty(16, 8, 3, 3), schemes.Delta(schemes.Orthogonal(1.3)), generator=_gen(7))
    assert torch.equal(a, b)


@pytest.mark.parametrize(("rows", "cols"), [(True, True), (True, False), (False, True)])
def test_delta_looks_linear_mirrors_exactly(rows, cols):
    g = 0.8
    w = I.delta_looks_linear_(torch.empty(12, 8, 3, 5), g, mirror_rows=rows, mirror_cols=cols,
                              generator=_gen())
    c = _centre(w)
    rb, cb = (6 if rows else 12), (4 if cols else 8)
    a = c[:rb, :cb]
    top = torch.cat([a, -a], 1) if cols else a
    assert torch.equal(c, torch.cat([top, -top], 0) if rows else top)
    gram = a @ a.T if rb <= cb else a.T @ a
    assert torch.allclose(gram, g**2 * torch.eye(min(rb, cb)), atol=1e-6, rtol=0)
    assert _off_centre_max(w) == 0.0
    flat = I.looks_linear_(torch.empty(12, 8), g, mirror_rows=rows, mirror_cols=cols, generator=_gen())
    assert torch.equal(c, flat)  # the centre tap is looks_linear_ of (out, in), same draws


def test_numpy_twin_realises_the_same_kernels():
    w = ni.delta_looks_linear((8, 6, 3, 3), 0, np.float64, gain=2.0)
    assert (w[:, :, 1, 1] == ni.looks_linear((8, 6), 0, np.float64, gain=2.0)).all()
    assert _off_centre_max(torch.from_numpy(w)) == 0.0
    v = ni.sample_spec(schemes.Delta(schemes.Orthogonal(1.5)), (4, 10, 3), 1, np.float64)
    c = v[:, :, 1]
    assert np.allclose(c @ c.T, 2.25 * np.eye(4), atol=1e-12, rtol=0) and not v[:, :, [0, 2]].any()


def test_delta_refuses_what_it_cannot_draw():
    with pytest.raises(InitlabError, match=r"Delta block=.*Orthogonal\(gain\) or LooksLinear"):
        schemes.Delta(schemes.Normal(1.0))
    with pytest.raises(InitlabError, match="mirror_cols=True needs an even dim 1"):
        I.delta_looks_linear_(torch.empty(8, 5, 3))
    with pytest.raises(InitlabError, match="mirror_rows=True needs an even dim 0"):
        I.apply_spec_(torch.empty(7, 4, 3), schemes.Delta(schemes.LooksLinear(mirror_cols=False)))
    with pytest.raises(InitlabError, match=r"with 3, 4 or 5 dimensions \(a Conv1d/2d/3d weight\)"):
        I.delta_looks_linear_(torch.empty(8, 4))
    with pytest.raises(InitlabError, match="mirror_cols=True needs an even dim 1"):
        ni.delta_looks_linear((8, 5, 3))
    assert schemes.Delta(schemes.LooksLinear()).expected_std is None
    assert schemes.STRUCTURAL_SHAPES[schemes.Delta] == (0, (3, 4, 5), " (a Conv1d/2d/3d weight)")


# ---- (f) orthogonal kernels with full spatial support (schemes.ConvOrthogonal) --------------------


def _circular(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``w * x`` with circular padding (any 1-3 spatial dims, odd kernels): the padding under which
    the kernel's transfer function is exactly the conv's spectrum."""
    pad = [p for k in reversed(w.shape[2:]) for p in (k // 2, k // 2)]
    conv = {3: F.conv1d, 4: F.conv2d, 5: F.conv3d}[w.dim()]
    return conv(F.pad(x, pad, mode="circular"), w)


@pytest.mark.parametrize("shape", [(8, 8, 3, 3), (16, 8, 3, 3), (6, 6, 5), (4, 4, 3, 3, 3), (8, 8, 5, 3)])
def test_conv_orthogonal_is_an_isometry_at_every_frequency(shape):
    """For out >= in, ||W * x|| = gain ||x|| under circular padding for every x (Parseval: W(w) has
    orthonormal columns times gain at each frequency w); float64, so 1e-9. The taps sum to gain H
    (the zero-frequency map) and their energy is the delta kernel's, ||H||_F^2 gain^2 = in gain^2."""
    gain = 1.7
    w = I.conv_orthogonal_(torch.empty(shape, dtype=torch.float64), gain, generator=_gen(5))
    sizes = (7 + i for i in range(len(shape) - 2))
    x = torch.randn(3, shape[1], *sizes, generator=_gen(6), dtype=torch.float64)
    y = _circular(w, x)
    assert torch.allclose(y.flatten(1).norm(dim=1), gain * x.flatten(1).norm(dim=1), atol=1e-9, rtol=0)
    m = w.sum(dim=tuple(range(2, w.dim())))
    assert torch.allclose(m.T @ m, gain**2 * torch.eye(shape[1], dtype=torch.float64), atol=1e-9, rtol=0)
    assert float(w.pow(2).sum()) == pytest.approx(shape[1] * gain**2, rel=1e-9)
    assert _off_centre_max(w) > 0.1 * gain / math.sqrt(shape[0])  # the taps are spread, not a delta


def test_conv_orthogonal_transfer_function_is_unitary_on_a_frequency_grid():
    """The definition itself: W(e^{iw}) = sum_t W_t e^{i w t} satisfies W^* W = I at 9 x 9
    frequencies (float64, 1e-9)."""
    w = I.conv_orthogonal_(torch.empty(6, 6, 3, 3, dtype=torch.float64), generator=_gen(7))
    taps = torch.arange(3, dtype=torch.float64)
    for a in torch.linspace(0, 2 * math.pi, 9, dtype=torch.float64):
        for b in torch.linspace(0, 2 * math.pi, 9, dtype=torch.float64):
            phase = torch.exp(1j * (a * taps[:, None] + b * taps[None, :]))
            wz = (w.to(torch.complex128) * phase).sum(dim=(2, 3))
            assert torch.allclose(wz.mH @ wz, torch.eye(6, dtype=torch.complex128), atol=1e-9, rtol=0)


def test_conv_looks_linear_keeps_the_mirror_and_the_chain_linear():
    """A looks-linear block spread by diag(V0, V0): the outputs of a rows-mirrored first conv are
    exact negatives of each other at every position, and a ReLU chain of such convs is linear in its
    input at init (float64, 1e-9)."""
    g = _gen(8)
    first = I.apply_spec_(torch.empty(8, 3, 3, 3, dtype=torch.float64),
                          schemes.ConvOrthogonal(schemes.LooksLinear(1.0, mirror_cols=False)), generator=g)
    mid = I.apply_spec_(torch.empty(8, 8, 3, 3, dtype=torch.float64),
                        schemes.ConvOrthogonal(schemes.LooksLinear(1.0)), generator=g)
    x, z = torch.randn(2, 2, 3, 9, 9, generator=g, dtype=torch.float64)
    h = _circular(first, x)
    assert torch.allclose(h[:, :4], -h[:, 4:], atol=1e-12, rtol=0)

    def net(v: torch.Tensor) -> torch.Tensor:
        return _circular(mid, F.relu(_circular(first, v)))

    assert torch.allclose(net(2 * x - 3 * z), 2 * net(x) - 3 * net(z), atol=1e-9, rtol=0)
    assert _off_centre_max(mid) > 0.0


def test_conv_orthogonal_one_channel_is_the_delta_kernel_and_specs_describe_themselves():
    """n = 1 output channel has no orthogonal mixing (its projections are I): the kernel is a
    delta. describe() names the block."""
    w = I.conv_orthogonal_(torch.empty(1, 1, 3, 3), 2.0, generator=_gen(9))
    assert _off_centre_max(w) == 0.0
    assert abs(float(_centre(w).squeeze())) == pytest.approx(2.0, rel=1e-6)
    spec = schemes.ConvOrthogonal(schemes.LooksLinear(1.0))
    assert spec.describe() == "conv_looks_linear(gain=1, rows+cols)"
    with pytest.raises(InitlabError, match="ConvOrthogonal block="):
        schemes.ConvOrthogonal(schemes.Normal(0.0, 1.0))
    with pytest.raises(InitlabError, match="Conv1d/2d/3d"):
        I.conv_orthogonal_(torch.empty(4, 4))


def test_conv_orthogonal_same_seed_same_bits_and_numpy_twin_is_isometric_too():
    a = I.conv_orthogonal_(torch.empty(8, 4, 3, 3), generator=_gen(10))
    b = I.conv_orthogonal_(torch.empty(8, 4, 3, 3), generator=_gen(10))
    assert torch.equal(a, b)
    w = torch.from_numpy(ni.conv_orthogonal((8, 4, 3, 3), rng=0, dtype=np.float64))
    x = torch.randn(2, 4, 6, 6, generator=_gen(11), dtype=torch.float64)
    assert torch.allclose(_circular(w, x).flatten(1).norm(dim=1), x.flatten(1).norm(dim=1), atol=1e-9, rtol=0)
    assert np.array_equal(ni.conv_orthogonal((8, 4, 3, 3), rng=0), ni.conv_orthogonal((8, 4, 3, 3), rng=0))


def test_circular_relu_chain_of_conv_looks_linear_kernels_is_exactly_orthogonal():
    """32 circular 3x3 convs, ReLU between, each a ConvOrthogonal looks-linear kernel (rows-mirrored
    first, cols-mirrored last, 8 -> 16 -> ... -> 16 -> 8 channels): at init the network is the
    orthogonal map A_32(z) ... A_1(z) at every frequency, so every singular value of its Jacobian
    is 1 (float64, 1e-9), although every kernel uses its off-centre taps. "auto" keeps delta
    kernels (plan_chain's docstring gives the measurements)."""
    g = _gen(12)
    specs = ([schemes.LooksLinear(1.0, mirror_cols=False)] + [schemes.LooksLinear(1.0)] * 30
             + [schemes.LooksLinear(1.0, mirror_rows=False)])
    shapes = [(16, 8)] + [(16, 16)] * 30 + [(8, 16)]
    layers: list[nn.Module] = []
    for k, (spec, (rows, cols)) in enumerate(zip(specs, shapes, strict=True)):
        conv = nn.Conv2d(cols, rows, 3, padding=1, bias=False, padding_mode="circular").double()
        I.apply_spec_(conv.weight.data, schemes.ConvOrthogonal(spec), generator=g)
        assert _off_centre_max(conv.weight) > 0.0
        layers += [conv] if k == 0 else [nn.ReLU(), conv]
    net = nn.Sequential(*layers)
    s = _svdvals(net, X8)
    assert s.numel() == 8 * 64
    assert torch.allclose(s, torch.ones_like(s), atol=1e-9, rtol=0)
    plan = init_model(_plain_cnn(4, nn.ReLU), generator=_gen(), dry_run=True)
    assert plan["2.weight"].spec.startswith("delta_looks_linear")
