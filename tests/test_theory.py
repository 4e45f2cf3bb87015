"""Tests of initlab.theory: mean-field signal propagation.

Expected values are recomputed inside each test from an independent implementation:
``scipy.integrate.quad`` for the Gaussian integrals and ``scipy.optimize.brentq`` for the roots,
or from closed forms (ReLU's arc-cosine kernel; Kumar 2017's ``1/phi'(0)^2``). Nothing here is
random.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, optimize

from initlab import theory
from initlab.errors import InitlabError

SQRT_2PI = math.sqrt(2.0 * math.pi)


# ---- independent reference (scipy only, no initlab code) --------------------------------------


def ref_expect(f, q: float) -> float:
    """E[f(sqrt(q) z)], z ~ N(0, 1), by adaptive quadrature split at 0 (where kinks sit)."""
    s = math.sqrt(q)

    def integrand(z: float) -> float:
        return f(s * z) * math.exp(-0.5 * z * z) / SQRT_2PI

    kw = {"epsabs": 1e-14, "epsrel": 1e-12, "limit": 200}
    left = integrate.quad(integrand, -math.inf, 0.0, **kw)[0]
    return left + integrate.quad(integrand, 0.0, math.inf, **kw)[0]


def ref_q_star(phi, sw2: float, sb2: float) -> float:
    """Stable fixed point of q -> sw2 E[phi^2] + sb2 by brentq (0 when the signal dies)."""

    def g(q: float) -> float:
        return sw2 * ref_expect(lambda u: phi(u) ** 2, q) + sb2 - q

    lo = 0.0 if sb2 > 0 else 1e-10
    if g(lo) <= 0:
        return 0.0
    hi = 1.0
    while g(hi) > 0:
        hi *= 2.0
    return optimize.brentq(g, lo, hi, xtol=1e-15, rtol=1e-13)


def ref_chi_1(phi, dphi, sw2: float, sb2: float) -> float:
    q = ref_q_star(phi, sw2, sb2)
    return sw2 * ref_expect(lambda u: dphi(u) ** 2, q)


def ref_critical_sw2(phi, dphi, sb2: float, lo: float, hi: float) -> float:
    return optimize.brentq(lambda w: ref_chi_1(phi, dphi, w, sb2) - 1.0, lo, hi, xtol=1e-10)


def tanh(u: float) -> float:
    return math.tanh(u)


def dtanh(u: float) -> float:
    return 1.0 - math.tanh(u) ** 2


def relu(u: float) -> float:
    return max(u, 0.0)


def drelu(u: float) -> float:
    return 1.0 if u > 0 else 0.0


# ---- the critical points of the issue ---------------------------------------------------------


def test_tanh_sigma_b0_is_critical_at_sigma_w2_1_with_q_star_0():
    cp = theory.critical_point("tanh", sigma_b2=0.0)
    ref = ref_critical_sw2(tanh, dtanh, 0.0, 0.5, 1.5)
    assert cp.sigma_w2 == pytest.approx(ref, abs=1e-6)
    assert cp.sigma_w2 == pytest.approx(1.0, abs=1e-9)
    assert cp.q_star == 0.0
    assert cp.chi_1 == pytest.approx(1.0, abs=1e-9)
    assert theory.kumar_critical_sigma_w2("tanh") == pytest.approx(cp.sigma_w2, abs=1e-9)
    # neither side is critical: ordered below, chaotic above
    assert theory.mean_field("tanh", 0.9).phase == "ordered"
    assert theory.mean_field("tanh", 1.1).phase == "chaotic"


def test_relu_sigma_b0_is_critical_at_sigma_w2_2():
    cp = theory.critical_point("relu")
    # chi_1 does not depend on q for ReLU: root of sw2 E[relu'(z)^2] = 1 at q = 1
    ref = optimize.brentq(lambda w: w * ref_expect(lambda u: drelu(u) ** 2, 1.0) - 1.0, 0.5, 5.0, xtol=1e-13)
    assert cp.sigma_w2 == pytest.approx(ref, abs=1e-9)
    assert cp.sigma_w2 == pytest.approx(2.0, abs=1e-9)
    assert cp.sigma_b2 == 0.0
    assert math.isnan(cp.q_star)  # every q is a fixed point of the identity length map
    assert theory.chi_1("relu", 2.0) == pytest.approx(1.0, abs=1e-12)
    assert theory.length_map("relu", 3.0, 2.0) == pytest.approx(3.0, abs=1e-12)


def test_tanh_sigma_b2_005_is_critical_near_1_76():
    cp = theory.critical_point("tanh", sigma_b2=0.05)
    ref = ref_critical_sw2(tanh, dtanh, 0.05, 1.2, 3.0)
    assert cp.sigma_w2 == pytest.approx(ref, abs=1e-6)
    assert cp.sigma_w2 == pytest.approx(1.76, abs=0.01)
    assert cp.q_star == pytest.approx(ref_q_star(tanh, ref, 0.05), rel=1e-5)
    assert cp.chi_1 == pytest.approx(1.0, abs=1e-9)
    assert theory.mean_field("tanh", cp.sigma_w2 * 0.99, 0.05).phase == "ordered"
    assert theory.mean_field("tanh", cp.sigma_w2 * 1.01, 0.05).phase == "chaotic"


def test_critical_point_from_q_star_lies_on_the_critical_line():
    q = 0.5
    cp = theory.critical_point("tanh", q_star=q)
    # chi_1 = 1 and V(q*) = q*, both by quad
    assert cp.sigma_w2 * ref_expect(lambda u: dtanh(u) ** 2, q) == pytest.approx(1.0, abs=1e-10)
    assert cp.sigma_w2 * ref_expect(lambda u: tanh(u) ** 2, q) + cp.sigma_b2 == pytest.approx(q, abs=1e-10)
    # and sigma_b2 -> q_star -> sigma_b2 round trips
    back = theory.critical_point("tanh", sigma_b2=cp.sigma_b2)
    assert back.q_star == pytest.approx(q, rel=1e-8)
    assert back.sigma_w2 == pytest.approx(cp.sigma_w2, rel=1e-9)


@pytest.mark.parametrize(
    "activation",
    ["tanh", "softsign", "sin", "hardtanh", lambda u: torch.tanh(2.0 * u), torch.nn.Tanh()],
)
def test_kumar_closed_form_agrees_at_sigma_b0(activation):
    kumar = theory.kumar_critical_sigma_w2(activation)
    cp = theory.critical_point(activation, sigma_b2=0.0)
    assert cp.q_star == 0.0
    assert cp.sigma_w2 == pytest.approx(kumar, rel=1e-9)
    # phi'(0) recomputed by a central difference, independently of autograd
    named = {"tanh": torch.tanh, "softsign": torch.nn.functional.softsign, "sin": torch.sin,
             "hardtanh": torch.nn.functional.hardtanh}
    fn = activation if callable(activation) else named[activation]
    h = torch.tensor([-1e-6, 1e-6], dtype=torch.float64)
    y = fn(h)
    d0 = float((y[1] - y[0]) / 2e-6)
    assert kumar == pytest.approx(1.0 / d0**2, rel=1e-5)


def test_kumar_refuses_kinks_at_zero_and_nonzero_phi0():
    with pytest.raises(InitlabError, match="not differentiable at 0"):
        theory.kumar_critical_sigma_w2("relu")
    with pytest.raises(InitlabError, match="phi\\(0\\)"):
        theory.kumar_critical_sigma_w2("sigmoid")


def test_critical_point_errors():
    with pytest.raises(InitlabError, match="not both"):
        theory.critical_point("tanh", sigma_b2=0.1, q_star=0.5)
    with pytest.raises(InitlabError, match="positively homogeneous"):
        theory.critical_point("relu", sigma_b2=0.1)
    with pytest.raises(InitlabError, match="sigma_b2=-0.1"):
        theory.critical_point("tanh", sigma_b2=-0.1)
    with pytest.raises(InitlabError, match="negative|< 0"):
        theory.critical_point("sigmoid", q_star=0.1)  # phi(0) = 1/2 needs sigma_b2 < 0 there
    with pytest.raises(InitlabError, match="unknown|activation"):
        theory.critical_point("no_such_activation")
    with pytest.raises(TypeError, match="activation"):
        theory.critical_point(3.0)
    with pytest.raises(InitlabError, match="param"):
        theory.critical_point(torch.tanh, param=0.1)


def test_critical_point_fields_and_helpers():
    cp = theory.critical_point("tanh", sigma_b2=0.05)
    assert cp.sigma_w == pytest.approx(math.sqrt(cp.sigma_w2))
    assert cp.sigma_b == pytest.approx(math.sqrt(0.05))
    assert cp.weight_std(100) == pytest.approx(cp.sigma_w / 10.0)
    assert cp.xi_c == math.inf and 0 < cp.xi_q < math.inf
    assert "tanh critical" in cp.describe()
    with pytest.raises(InitlabError, match="fan_in"):
        cp.weight_std(0)
    # a callable module gives the same point as the name
    via_module = theory.critical_point(torch.nn.Tanh(), sigma_b2=0.05)
    assert via_module.sigma_w2 == pytest.approx(cp.sigma_w2, rel=1e-12)
    line = theory.critical_line("tanh", [0.0, 0.05, 0.2])
    assert [p.sigma_b2 for p in line] == [0.0, 0.05, 0.2]
    assert line[0].sigma_w2 < line[1].sigma_w2 < line[2].sigma_w2  # the edge of chaos rises with sigma_b2


# ---- maps, fixed points, depth scales -----------------------------------------------------------


@pytest.mark.parametrize("sw2", [0.7, 1.3, 2.0, 4.0])
def test_fixed_point_q_matches_scipy(sw2):
    q = theory.fixed_point_q("tanh", sw2, 0.05)
    assert q == pytest.approx(ref_q_star(tanh, sw2, 0.05), rel=1e-9)
    assert theory.length_map("tanh", q, sw2, 0.05) == pytest.approx(q, rel=1e-11)


def test_fixed_point_q_edges():
    assert theory.fixed_point_q("tanh", 0.9, 0.0) == 0.0  # the signal dies
    assert theory.fixed_point_q("relu", 2.5, 0.0) == math.inf  # the length explodes
    assert theory.fixed_point_q("relu", 2.0, 0.0, q0=3.0) == 3.0  # every q is fixed
    q = theory.fixed_point_q("tanh", 1.5, 0.0)  # sigma_w2 > 1: a positive fixed point appears
    assert q > 0 and q == pytest.approx(ref_q_star(tanh, 1.5, 0.0), rel=1e-9)
    with pytest.raises(InitlabError, match="sigma_w2"):
        theory.fixed_point_q("tanh", 0.0)
    with pytest.raises(InitlabError, match="q0"):
        theory.fixed_point_q("tanh", 1.0, q0=-1.0)


def test_fixed_point_c():
    # ordered phase: c* = 1
    assert theory.fixed_point_c("tanh", 1.0, 0.05) == 1.0
    # chaotic, odd phi, no bias: C(0) = 0 so c* = 0
    assert theory.fixed_point_c("tanh", 2.0, 0.0) == pytest.approx(0.0, abs=1e-12)
    # chaotic with bias: a root of C(c) = c in (0, 1), stable (slope < 1)
    mf = theory.mean_field("tanh", 4.0, 0.05)
    assert 0 < mf.c_star < 1
    assert theory.correlation_map("tanh", mf.c_star, 4.0, 0.05) == pytest.approx(mf.c_star, abs=1e-10)
    assert 0 < mf.chi_c < 1


def test_length_slope_is_schoenholz_form_and_a_derivative():
    sw2, sb2 = 2.0, 0.05
    mf = theory.mean_field("tanh", sw2, sb2)
    q = mf.q_star
    # Schoenholz et al. 2017: chi_1 + sw2 E[phi'' phi] with phi'' = -2 tanh sech^2, by quad
    schoenholz = mf.chi_1 + sw2 * ref_expect(lambda u: -2.0 * math.tanh(u) ** 2 * dtanh(u), q)
    assert mf.length_slope == pytest.approx(schoenholz, abs=1e-10)
    h = 1e-4
    fd = (theory.length_map("tanh", q + h, sw2, sb2) - theory.length_map("tanh", q - h, sw2, sb2)) / (2 * h)
    assert mf.length_slope == pytest.approx(fd, abs=1e-7)
    assert mf.xi_q == pytest.approx(-1.0 / math.log(mf.length_slope))


def test_chi_c_is_the_slope_of_the_correlation_map():
    sw2, sb2 = 3.0, 0.05
    mf = theory.mean_field("tanh", sw2, sb2)
    h = 1e-5
    c = mf.c_star
    up, down = (theory.correlation_map("tanh", c + d, sw2, sb2) for d in (h, -h))
    fd = (up - down) / (2 * h)
    assert mf.chi_c == pytest.approx(fd, abs=1e-6)
    assert mf.xi_c == pytest.approx(-1.0 / math.log(mf.chi_c))
    assert mf.trainable_depth == pytest.approx(6.0 * mf.xi_c)
    # at c = 1 the slope of the correlation map is chi_1
    fd1 = (1.0 - theory.correlation_map("tanh", 1.0 - h, sw2, sb2)) / h
    assert fd1 == pytest.approx(mf.chi_1, rel=1e-3)


def test_xi_c_positive_and_unbounded_as_chi_1_tends_to_1():
    cp = theory.critical_point("tanh", sigma_b2=0.05)
    grid = theory.phase_diagram("tanh", np.geomspace(0.3, 10.0, 6), [0.0, 0.5])
    assert np.all(grid.array("xi_c") > 0)
    for side in (-1.0, 1.0):
        xis, gaps = [], []
        for delta in (1e-1, 1e-2, 1e-3, 1e-4):
            mf = theory.mean_field("tanh", cp.sigma_w2 * (1.0 + side * delta), 0.05)
            xis.append(mf.xi_c)
            gaps.append(abs(mf.chi_1 - 1.0))
        assert all(a < b for a, b in zip(xis, xis[1:], strict=False)), xis
        assert all(a > b for a, b in zip(gaps, gaps[1:], strict=False)), gaps
        assert xis[-1] > 1000.0  # xi_c ~ 1 / |1 - chi| -> inf
    assert theory.depth_scale(1.0) == math.inf


# ---- quadrature ------------------------------------------------------------------------------


@pytest.mark.parametrize("name,f,q,tol", [
    ("tanh", lambda u: math.tanh(u) ** 2, 0.3, 1e-13),
    ("tanh", lambda u: math.tanh(u) ** 2, 4.0, 1e-12),
    ("relu", lambda u: max(u, 0.0) ** 2, 2.0, 1e-13),  # even order: exact for the kink at 0
    ("gelu", lambda u: (0.5 * u * (1 + math.erf(u / math.sqrt(2)))) ** 2, 1.0, 1e-12),
    ("hardtanh", lambda u: min(max(u, -1.0), 1.0) ** 2, 2.0, 1e-10),  # kinks at +-1 split
    ("elu", lambda u: (u if u > 0 else math.expm1(u)) ** 2, 1.0, 1e-8),
])
def test_one_d_quadrature_matches_scipy_quad(name, f, q, tol):
    assert theory.length_map(name, q, 1.0, 0.0) == pytest.approx(ref_expect(f, q), abs=tol)


def test_one_d_quadrature_converges_with_order():
    # tanh at large q is a near-step on the z scale: the composite rule still converges fast
    for q in (0.01, 1.0, 16.0):
        ref = ref_expect(lambda u: math.tanh(u) ** 2, q)
        errs = [abs(theory.length_map("tanh", q, 1.0, order=n) - ref) for n in (1, 2, 4, theory.ORDER_1D)]
        assert errs[0] > errs[1] > 1e-13 or errs[1] < 1e-13, errs
        assert errs[-1] < 1e-13 * max(ref, 1e-2), (q, errs)
    u, w = theory.gaussian_rule_1d(3.0)
    assert float(w.sum()) == pytest.approx(1.0, abs=1e-14)
    assert float(w @ u**4) == pytest.approx(3.0 * 3.0**2, rel=1e-13)
    x, w = theory.gauss_hermite(6)
    assert float(w @ x**10) == pytest.approx(945.0, rel=1e-12)  # exact up to degree 2n - 1 = 11
    with pytest.raises(InitlabError, match="order"):
        theory.gauss_hermite(0)
    with pytest.raises(InitlabError, match="q="):
        theory.gaussian_rule_1d(0.0)


def test_two_d_quadrature_converges_smooth_and_relu():
    # tanh near the critical line (q* ~ 0.7): successive orders converge to ~1e-12
    orders = (10, 20, 40, 80, theory.ORDER_2D)
    vals = [theory.correlation_map("tanh", 0.5, 2.0, 0.05, order=n) for n in orders]
    diffs = [abs(a - vals[-1]) for a in vals[:-1]]
    assert diffs[0] > diffs[1] > diffs[2] > diffs[3]
    assert diffs[3] < 1e-10
    # ReLU: against the arc-cosine kernel (Cho & Saul 2009), C(c) = (sqrt(1-c^2) + (pi - acos c) c) / pi
    c = 0.3
    exact = (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c) / math.pi
    orders = (10, 40, theory.ORDER_2D)
    errs = [abs(theory.correlation_map("relu", c, 2.0, 0.0, q_star=1.0, order=n) - exact) for n in orders]
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 2e-3  # algebraic convergence: the documented accuracy


def test_correlation_map_range_and_errors():
    assert theory.correlation_map("tanh", 1.0, 1.5, 0.05) == pytest.approx(1.0, abs=1e-14)
    out = theory.correlation_map("tanh", np.array([-1.0, 0.0, 0.5]), 1.5, 0.05)
    assert out.shape == (3,) and np.all(np.abs(out) <= 1.0)
    with pytest.raises(InitlabError, match="c="):
        theory.correlation_map("tanh", 1.5, 1.0)


def test_phase_diagram_records():
    pd = theory.phase_diagram("tanh", [1.0, 1.8, 4.0], [0.05])
    assert pd.array("chi_1").shape == (1, 3)
    assert [p.phase for p in pd.points[0]] == ["ordered", "chaotic", "chaotic"]
    recs = pd.records()
    assert {r["stat"] for r in recs} >= {"q_star", "chi_1", "xi_c", "xi_q", "trainable_depth"}
    assert all(r["experiment"] == "theory" and r["activation"] == "tanh" for r in recs)
    with pytest.raises(InitlabError, match="unknown"):
        pd.array("nope")


# ---- review: bad values give clear errors, never silent nonsense ------------------------------


@pytest.mark.parametrize("call", [
    lambda: theory.chi_1("tanh", 1.0, q_star=-1.0),
    lambda: theory.correlation_map("tanh", 0.5, 2.0, q_star=-1.0),
    lambda: theory.fixed_point_c("tanh", 2.0, q_star=-1.0),
    lambda: theory.chi_1("tanh", 1.0, q_star=float("nan")),
])
def test_negative_or_nan_q_star_is_refused(call):
    with pytest.raises(InitlabError, match="q_star"):
        call()


def test_non_numbers_are_type_errors_naming_the_argument():
    with pytest.raises(TypeError, match="sigma_w2"):
        theory.mean_field("tanh", "2")
    with pytest.raises(TypeError, match="sigma_w2"):
        theory.mean_field("tanh", True)
    with pytest.raises(TypeError, match="sigma_b2"):
        theory.critical_point("tanh", sigma_b2="a")
    with pytest.raises(TypeError, match="q_star"):
        theory.critical_point("tanh", q_star="a")


def test_numpy_function_as_activation_is_a_type_error():
    with pytest.raises(TypeError, match="torch"):
        theory.critical_point(np.tanh)


def test_no_critical_point_messages_are_consistent():
    # softplus: phi(0) = log 2 > 0, so chi_1 = 1 needs sigma_b2 < 0 everywhere on the grid
    with pytest.raises(InitlabError, match="sigma_b2 >= 0") as err:
        theory.critical_point("softplus")
    assert "[0, -" not in str(err.value)
    # a bias variance far above the line: the range quoted must be the line's real range
    with pytest.raises(InitlabError, match="spans sigma_b2") as err:
        theory.critical_point("tanh", sigma_b2=1e300)
    hi = float(str(err.value).split("spans sigma_b2 in [")[1].split("]")[0].split(",")[1])
    assert hi > 1e5


def test_unresolvable_chaotic_point_is_an_error_not_an_infinite_depth():
    """Deep in the chaotic phase q* is so large that the 2-D Gauss-Hermite rule cannot resolve
    tanh(sqrt(q*) z); it used to report c* = 1 and xi_c = inf (\"trains at any depth\")."""
    with pytest.raises(InitlabError, match="order_2d"):
        theory.mean_field("tanh", 1000.0, 0.05)
    with pytest.raises(InitlabError, match="order_2d"):
        theory.fixed_point_c("tanh", 1000.0, 0.05)
    assert math.isfinite(theory.mean_field("tanh", 6.0, 0.05).xi_c)  # the phase grid's range is fine
    # hardtanh's kinks: the 2-D rule misses chi_1 by 21% here and found C(c) > c below 1 (c* = 1,
    # xi_c = inf at chi_1 = 2.2); an error instead
    with pytest.raises(InitlabError, match="order_2d"):
        theory.mean_field("hardtanh", 6.0, 0.05)


@pytest.mark.parametrize("activation, sigma_w2", [("elu", 2.27), ("gelu", 3.14), ("leaky_relu", 2.27),
                                                  ("selu", 2.82)])
def test_chaotic_point_with_diverging_length_does_not_crash(activation, sigma_w2):
    """q* = inf (the length map has no fixed point): C(c) - c is rounding noise near c = 1; the
    root search used to hand brentq a noise-level bracket ("f(a) and f(b) must have different
    signs")."""
    mf = theory.mean_field(activation, sigma_w2, 0.05)
    assert mf.q_star == math.inf and mf.phase == "chaotic"
    assert -1.0 <= mf.c_star <= 1.0 and mf.xi_c >= 0


def test_gauss_hermite_refuses_orders_numpy_cannot_build():
    x, w = theory.gauss_hermite(theory.MAX_ORDER_2D)
    assert np.isfinite(w).all() and w.sum() == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(InitlabError, match="order"):
        theory.gauss_hermite(theory.MAX_ORDER_2D + 1)


def test_activation_that_is_not_finite_on_the_line_is_refused():
    """log(u) is NaN for u < 0: mean_field used to report phase 'chaotic' from NaN moments."""
    with pytest.raises(InitlabError, match="not finite"):
        theory.mean_field(torch.log, 2.0, 0.05)
    with pytest.raises(InitlabError, match="not finite"):
        theory.mean_field(torch.exp, 2.0, 0.05)  # q* = inf: exp overflows at u ~ 1e6


def test_phase_diagram_array_of_a_text_field_is_a_clear_error():
    pd = theory.phase_diagram("tanh", [1.0], [0.05])
    with pytest.raises(InitlabError, match="'phase' is not numeric.*chi_1"):
        pd.array("phase")
    assert pd.array("sigma_w2").tolist() == [[1.0]]
