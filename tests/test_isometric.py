"""Tests of the isometric rule for plain chains: initlab.theory.odd_part_slope / isometric_point and
init_model(..., "auto") on plain MLPs (looks-linear and near-critical orthogonal links)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from scipy import integrate
from torch import nn

from initlab import schemes
from initlab.errors import InitlabError
from initlab.model import init_model
from initlab.model.chain import UnmirroredWarning
from initlab.models import mlp
from initlab.theory import CHI_1_TARGET, DEPTH_GROWTH, depth_point, isometric_point, odd_part_slope


def _gauss(f, q: float) -> float:
    """E[f(sqrt(q) z)], z ~ N(0, 1), by scipy quadrature (an independent check of the 1-D rule)."""
    s = math.sqrt(q)
    val, _ = integrate.quad(lambda z: f(s * z) * math.exp(-z * z / 2) / math.sqrt(2 * math.pi),
                            -40, 40, limit=400, points=[0.0])
    return val


# ---- theory -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "param", "slope"), [
    ("relu", None, 1.0), ("leaky_relu", 0.2, 1.2), ("leaky_relu", None, 1.01), ("gelu", None, 1.0),
    ("silu", None, 1.0), ("softplus", None, 1.0), ("hardswish", None, 1.0), ("gelu_tanh", None, 1.0),
])
def test_odd_part_slope_of_looks_linear_activations(name, param, slope):
    # relu(u) - relu(-u) = u; leaky: (1 + a) u; x Phi(x) + x Phi(-x) = x; log(1+e^u) - log(1+e^-u) = u
    assert odd_part_slope(name, param=param) == pytest.approx(slope, rel=1e-9)


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "selu", "elu", "mish", "softsign"])
def test_odd_part_slope_none_when_the_odd_part_bends(name):
    assert odd_part_slope(name) is None


def test_isometric_point_tanh_matches_quadrature():
    p = isometric_point("tanh")
    assert p.kind == "near_critical" and p.shift == 0.0 and p.odd_slope is None
    q = p.q_star
    phi2 = _gauss(lambda u: math.tanh(u) ** 2, q)
    dphi2 = _gauss(lambda u: (1 - math.tanh(u) ** 2) ** 2, q)
    assert p.sigma_w2 == pytest.approx(q / phi2, rel=1e-8)  # zero-bias fixed point at q*
    assert p.chi_1 == pytest.approx(CHI_1_TARGET, rel=1e-9)
    assert (q / phi2) * dphi2 == pytest.approx(CHI_1_TARGET, rel=1e-7)  # chi_1 recomputed
    # the smallest root: below q*, chi_1 is closer to 1
    half = q / 2
    assert (half / _gauss(lambda u: math.tanh(u) ** 2, half)) * _gauss(
        lambda u: (1 - math.tanh(u) ** 2) ** 2, half) < CHI_1_TARGET


def test_isometric_point_sigmoid_is_tanh_in_disguise():
    """sigmoid(x) - 1/2 = tanh(x/2) / 2, so with the bias taking out phi(0) = 1/2 the sigmoid link is
    the tanh link in units twice as large: q* x 4, sigma_w2 x 16, the same chi_1."""
    t, s = isometric_point("tanh"), isometric_point("sigmoid")
    assert s.shift == pytest.approx(0.5, abs=1e-15)
    assert s.q_star == pytest.approx(4 * t.q_star, rel=1e-7)
    assert s.sigma_w2 == pytest.approx(16 * t.sigma_w2, rel=1e-7)
    assert s.chi_1 == pytest.approx(t.chi_1, rel=1e-9)


def test_isometric_point_kinds():
    relu = isometric_point("relu")
    assert (relu.kind, relu.odd_slope, relu.sigma_w2, relu.chi_1) == ("looks_linear", 1.0, 1.0, 1.0)
    leaky = isometric_point("leaky_relu", param=0.2)
    assert leaky.sigma_w2 == pytest.approx(1 / 1.2 ** 2, rel=1e-9)
    # not mirrored: ReLU's chi_1 is 1 at every q (homogeneous), so no root: the variance point, He
    v = isometric_point("relu", looks_linear=False)
    assert (v.kind, v.q_star) == ("variance", 1.0) and v.sigma_w2 == pytest.approx(2.0, rel=1e-10)
    g = isometric_point("gelu", looks_linear=False, near_critical=False)
    assert g.kind == "variance" and g.sigma_w2 == pytest.approx(1 / _gauss(lambda u: (u * 0.5 * (
        1 + math.erf(u / math.sqrt(2)))) ** 2, 1.0), rel=1e-7)


@pytest.mark.parametrize("bad", [1.0, 0.5, float("nan"), float("inf"), True, "1.01"])
def test_isometric_point_rejects_bad_chi_target(bad):
    with pytest.raises(InitlabError, match="chi_target"):
        isometric_point("tanh", chi_target=bad)


def _chi_tanh(q: float) -> tuple[float, float]:
    """(sigma_w2, chi_1) of the zero-bias tanh fixed point q, by scipy quadrature."""
    sw2 = q / _gauss(lambda u: math.tanh(u) ** 2, q)
    return sw2, sw2 * _gauss(lambda u: (1 - math.tanh(u) ** 2) ** 2, q)


@pytest.mark.parametrize("depth", [9, 32, 128])
def test_depth_point_spends_the_growth_over_the_depth(depth):
    """chi_1(q*)^L = DEPTH_GROWTH at the point, recomputed by quadrature; q* < 1 and it falls with depth."""
    p = depth_point("tanh", depth)
    sw2, chi = _chi_tanh(p.q_star)
    assert p.kind == "near_critical" and p.q_star < 1.0
    assert p.sigma_w2 == pytest.approx(sw2, rel=1e-7)
    assert chi ** depth == pytest.approx(DEPTH_GROWTH, rel=1e-6)
    assert depth_point("tanh", 2 * depth).q_star < p.q_star


def test_depth_point_is_the_variance_point_while_chi_1_of_1_fits():
    """tanh's chi_1 at q = 1 is ~1.178 (recomputed): 1.178^8 = 3.7 <= 4, so depth 8 keeps q* = 1."""
    _, chi = _chi_tanh(1.0)
    assert chi ** 8 <= DEPTH_GROWTH < chi ** 9
    p = depth_point("tanh", 8)
    assert (p.kind, p.q_star) == ("variance", 1.0)
    variance = isometric_point("tanh", looks_linear=False, near_critical=False)
    assert p.sigma_w2 == pytest.approx(variance.sigma_w2, rel=1e-12)
    assert depth_point("tanh", 8, growth=2.0).q_star < 1.0  # a tighter budget moves it


@pytest.mark.parametrize(("kw", "match"), [
    ({"depth": 0}, "depth"), ({"depth": 2.5}, "depth"), ({"depth": True}, "depth"),
    ({"depth": 8, "growth": 1.0}, "growth"), ({"depth": 8, "growth": float("nan")}, "growth"),
    ({"depth": 8, "growth": "4"}, "growth"),
])
def test_depth_point_rejects_bad_arguments(kw, match):
    with pytest.raises(InitlabError, match=match):
        depth_point("tanh", **kw)


def test_depth_point_raises_where_no_q_star_fits():
    """tanhshrink: chi_1(q) = sigma_w^2 E[tanh(h)^4] / ... stays above 1 (recomputed: at q = 1e-4 and
    q = 1 both above 1.09 = 4^(1/16)), so no q* <= 1 keeps chi_1^16 <= 4; a depth so large that
    4^(1/L) rounds to 1 has none either."""
    def chi_shrink(q: float) -> float:
        f = lambda u: u - math.tanh(u)  # noqa: E731
        sw2 = q / _gauss(lambda u: f(u) ** 2, q)
        return sw2 * _gauss(lambda u: math.tanh(u) ** 4, q)

    assert min(chi_shrink(1e-2), chi_shrink(1.0)) > DEPTH_GROWTH ** (1 / 16)
    with pytest.raises(InitlabError, match="no q\\* <= 1 of 'tanhshrink'"):
        depth_point("tanhshrink", 16)
    with pytest.raises(InitlabError, match="depth=.* larger growth"):
        depth_point("tanh", 10**300)


# ---- init_model on plain chains -------------------------------------------------------------------


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("act", ["relu", "gelu", "silu", "leaky_relu"])
def test_looks_linear_mlp_is_an_orthogonal_map_at_init(act):
    """Mirrored weights: phi(u) - phi(-u) = c u makes the whole MLP linear at init, and with the
    blocks' gains 1/c (the head's too) it is a product of (semi-)orthogonal blocks: the 32 x 64
    Jacobian has 32 singular values equal to 1 (the first layer's 32 x 64 block has orthonormal
    rows). float64, tol 1e-9."""
    net = mlp(64, 64, 8, 32, act).double()
    plan = init_model(net, generator=_gen())
    assert plan["fc1.weight"].scheme == "looks_linear" and plan["out.weight"].scheme == "looks_linear"
    assert "rows+cols" in plan["fc4.weight"].spec
    x, y = torch.randn(2, 5, 64, generator=_gen(1), dtype=torch.float64)
    assert torch.allclose(net(2 * x - 3 * y), 2 * net(x) - 3 * net(y), atol=1e-9)
    jac = torch.autograd.functional.jacobian(lambda v: net(v[None])[0], x[0])
    assert jac.shape == (32, 64)
    assert torch.allclose(torch.linalg.svdvals(jac), torch.ones(32, dtype=torch.float64), atol=1e-9)
    assert plan["out.weight"].gain == pytest.approx(1 / odd_part_slope(act), rel=1e-12)


def test_tanh_chain_is_orthogonal_at_its_near_critical_point():
    net = mlp(50, 40, 6, 10, "tanh").double()
    plan = init_model(net, generator=_gen())
    p = isometric_point("tanh")
    eye = torch.eye(40, dtype=torch.float64)
    w1 = net.fc1.weight.detach()
    assert torch.allclose(w1 @ w1.T, p.q_star * eye, atol=1e-10)  # unit-variance input -> q*
    for k in range(2, 7):
        w = getattr(net, f"fc{k}").weight.detach()
        assert torch.allclose(w @ w.T, p.sigma_w2 * eye, atol=1e-10)
        assert plan[f"fc{k}.weight"].gain == pytest.approx(p.sigma_w, rel=1e-12)
    wo = net.out.weight.detach()
    assert torch.allclose(wo @ wo.T, torch.eye(10, dtype=torch.float64), atol=1e-10)  # head: gain 1
    assert all(float(b.detach().abs().max()) == 0.0 for n, b in net.named_parameters() if n.endswith("bias"))
    assert "near-critical tanh" in plan["fc3.weight"].note


def test_sigmoid_chain_biases_centre_the_activation():
    """Each layer after a sigmoid has b = -0.5 W 1, so it computes W (sigmoid(h) - 1/2) exactly."""
    net = mlp(30, 24, 4, 5, "sigmoid").double()
    plan = init_model(net, generator=_gen())
    assert plan["fc1.bias"].scheme == "zeros" and plan["fc2.bias"].scheme == "centering"
    x = torch.randn(64, 30, generator=_gen(2), dtype=torch.float64)
    h = net.fc1(x)
    for name in ("fc2", "fc3", "fc4", "out"):
        layer = getattr(net, name)
        assert torch.allclose(layer.bias, -0.5 * layer.weight.sum(1), atol=1e-12)
        nxt = layer(torch.sigmoid(h))
        assert torch.allclose(nxt, (torch.sigmoid(h) - 0.5) @ layer.weight.T, atol=1e-12)
        h = nxt


def test_chain_with_dropout_and_flatten_is_still_a_chain():
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Dropout(0.1), nn.Linear(8, 4))
    plan = init_model(net, generator=_gen())
    assert plan["1.weight"].scheme == "looks_linear" and plan["4.weight"].scheme == "looks_linear"


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, 8), nn.Linear(8, 8)

    def forward(self, x):
        return x + self.fc2(F.relu(self.fc1(x)))


class _Shared(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc, self.out = nn.Linear(8, 8), nn.Linear(8, 2)

    def forward(self, x):
        return self.out(torch.tanh(self.fc(torch.tanh(self.fc(x)))))


def _tied():
    m = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8))
    m[2].weight = m[0].weight
    return m


def _weight_norm():
    m = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    with pytest.warns(FutureWarning):
        m[2] = nn.utils.weight_norm(m[2])
    return m


@pytest.mark.parametrize("model", [
    lambda: nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2)),
    _Residual,
    _Shared,
    lambda: nn.Sequential(nn.Linear(8, 8)),
    _tied,
    _weight_norm,
    # a flatten between two layers mixes features of a (B, T, H) input: no mirror survives it
    lambda: nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Flatten(), nn.Linear(24, 5)),
    # sigmoid needs the next layer's bias to centre it; without one the chain would collapse
    lambda: nn.Sequential(nn.Linear(8, 8, bias=False), nn.Sigmoid(), nn.Linear(8, 8, bias=False)),
    lambda: nn.Sequential(nn.Linear(8, 8), nn.Hardtanh(0.0, 1.0), nn.Linear(8, 2)),  # asymmetric
    lambda: nn.LSTM(8, 8),
], ids=["batchnorm", "residual", "shared-weights", "single-layer", "tied", "weight-norm",
        "flatten-between", "sigmoid-no-bias", "asymmetric-hardtanh", "lstm"])
def test_models_that_are_not_plain_chains_get_the_variance_rule(model):
    net = model()
    auto = init_model(net, generator=_gen(), dry_run=True)
    variance = init_model(net, "variance", generator=_gen(), dry_run=True)
    ends = {r.module for r in auto if "residual branch" in (r.note or "")}  # auto's own residual rule
    assert [(r.name, r.scheme, r.std) for r in auto if r.module not in ends] == [
        (r.name, r.scheme, r.std) for r in variance if r.module not in ends]
    assert not any(r.scheme in ("looks_linear", "centering") for r in auto)


class _ViewMLP(nn.Module):
    """The MNIST idiom: view, a mask argument that is not used, log-probabilities."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(16, 8), nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, x, mask=None):
        x = x.view(x.size(0), -1)
        return F.log_softmax(self.fc3(F.gelu(self.fc2(F.relu(self.fc1(x))))), dim=1)


def test_common_plain_mlp_idioms_are_chains():
    plan = init_model(_ViewMLP(), generator=_gen())
    assert [plan[f"fc{i}.weight"].scheme for i in (1, 2, 3)] == ["looks_linear"] * 3
    plan = init_model(nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3),
                                    nn.LogSoftmax(dim=1)), generator=_gen())
    assert plan["1.weight"].scheme == "orthogonal" and "near-critical tanh" in plan["1.weight"].note


def test_rule_auto_under_another_scheme_gives_the_isometric_rows():
    plan = init_model(mlp(8, 8, 3, 2, "relu"), "he_normal", rules=[(r"^fc2\.", "auto")], dry_run=True)
    assert plan["fc1.weight"].scheme == "he_normal" and plan["fc2.weight"].scheme == "looks_linear"


def test_isometric_point_refuses_a_constant_activation():
    with pytest.raises(InitlabError, match="constant"):
        isometric_point(lambda t: torch.zeros_like(t))
    with pytest.raises(InitlabError, match="q=True"):
        odd_part_slope("relu", q=True)


def test_odd_width_link_is_orthogonal_at_the_variance_point():
    """A 7-unit ReLU layer cannot be mirrored: orthogonal at ReLU's variance point (q = 1,
    sigma_w2 = 2), so the hidden block's gain is sqrt(q / (q / 2)) = sqrt(2)."""
    net = nn.Sequential(nn.Linear(8, 7), nn.ReLU(), nn.Linear(7, 7), nn.ReLU(), nn.Linear(7, 3))
    both = r"'0' \(7 outputs, then relu\), '2' \(7 outputs, then relu\): an odd number.*even width"
    with pytest.warns(UnmirroredWarning, match=both):
        plan = init_model(net, generator=_gen())
    assert [plan[f"{i}.weight"].scheme for i in (0, 2, 4)] == ["orthogonal"] * 3
    assert plan["0.weight"].gain == pytest.approx(1.0)
    assert plan["2.weight"].gain == pytest.approx(math.sqrt(2), rel=1e-9)
    assert plan["4.weight"].gain == 1.0
    w = net[2].weight.detach().double()
    assert torch.allclose(w @ w.T, 2 * torch.eye(7, dtype=torch.float64), atol=1e-5)
    for name in ("0.weight", "2.weight"):  # the plan says why: the odd width, and the fix
        assert "7 outputs, an odd number" in plan[name].note and "an even number" in plan[name].note
    assert "odd" not in plan["4.weight"].note


def test_no_odd_width_warning_for_a_layer_a_rule_plans_otherwise():
    """The warning names the layers the chain's rule planned; one a rule gives He is not warned of."""
    net = nn.Sequential(nn.Linear(8, 15), nn.ReLU(), nn.Linear(15, 16), nn.ReLU(), nn.Linear(16, 4))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan = init_model(net, "auto", rules=[(r"^0\.weight$", "he_normal")], dry_run=True)
    assert plan["0.weight"].scheme == "he_normal"
    assert not [w for w in caught if issubclass(w.category, UnmirroredWarning)]


def test_rules_override_chain_rows_and_seed_gives_same_bits():
    a, b = mlp(12, 16, 3, 4, "tanh"), mlp(12, 16, 3, 4, "tanh")
    pa = init_model(a, rules=[(r"^out\.", "zeros")], generator=_gen(7))
    init_model(b, rules=[(r"^out\.", "zeros")], generator=_gen(7))
    assert pa["out.weight"].scheme == "zeros" and pa["fc2.weight"].scheme == "orthogonal"
    assert float(a.out.weight.detach().abs().max()) == 0.0
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_dry_run_of_a_chain_writes_nothing():
    net = mlp(12, 16, 3, 4, "sigmoid")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    plan = init_model(net, generator=_gen(), dry_run=True)
    assert plan["fc2.bias"].scheme == "centering" and not plan.applied
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_looks_linear_spec_std_in_plan():
    net = mlp(784, 128, 2, 10, "relu")
    plan = init_model(net, generator=_gen(), dry_run=True)
    row = plan["fc2.weight"]  # 64 x 64 orthogonal block, gain 1: entries std 1/8
    assert isinstance(row._fills[0][1], schemes.LooksLinear)
    assert row.std == pytest.approx(1 / 8)
    assert plan["fc1.weight"].std == pytest.approx(1 / math.sqrt(784))
