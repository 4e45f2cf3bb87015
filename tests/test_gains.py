"""Tests of initlab.gains: exact values, independent quadrature (scipy.integrate.quad), torch parity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import integrate, special
from torch import nn

from initlab import gains
from initlab.cli import main
from initlab.errors import InitlabError
from initlab.gains import ACTIVATIONS, activation_fn, calculate_gain, gain, gaussian_expectation
from initlab.models import ACTIVATION_MODULES, activation_module


def _normal_pdf(z: float) -> float:
    return math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)


def _quad_gain(f, points=()) -> float:
    """1/sqrt(E[f(z)^2]) by adaptive quadrature (scipy QUADPACK), split at `points`."""
    cuts = [-np.inf, *points, np.inf]
    total = 0.0
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        value, _ = integrate.quad(lambda z: f(z) ** 2 * _normal_pdf(z), a, b, epsabs=1e-14, epsrel=1e-13,
                                  limit=200)
        total += value
    return 1.0 / math.sqrt(total)


# ---- exact values -------------------------------------------------------------------------------


def test_relu_gain_is_sqrt2_forward_and_backward():
    assert abs(gain("relu") - math.sqrt(2.0)) < 1e-10
    assert abs(gain("relu", "backward") - math.sqrt(2.0)) < 1e-10


@pytest.mark.parametrize("name", ["linear", "identity"])
def test_linear_gain_is_one(name):
    assert gain(name) == pytest.approx(1.0, abs=1e-12)
    assert gain(name, "backward") == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("slope", [0.01, 0.2, 0.5, 1.0, 3.0])
def test_leaky_relu_gain_matches_closed_form(slope):
    # E[leaky(z)^2] = (1 + a^2) / 2 and E[leaky'(z)^2] = (1 + a^2) / 2.
    expected = math.sqrt(2.0 / (1.0 + slope**2))
    assert gain("leaky_relu", param=slope) == pytest.approx(expected, abs=1e-12)
    assert gain("leaky_relu", "backward", param=slope) == pytest.approx(expected, abs=1e-12)


def test_selu_forward_gain_is_one_self_normalising():
    # Klambauer et al. (2017) chose lambda, alpha so that E[selu(z)^2] = 1 for z ~ N(0, 1).
    assert gain("selu") == pytest.approx(1.0, abs=1e-6)


def test_tanh_gains_are_above_one_and_below_torch_heuristic():
    assert gain("tanh", "backward") > 1.0
    assert 1.0 < gain("tanh") < calculate_gain("tanh")


# ---- against an independent quadrature ----------------------------------------------------------


def _gelu(z):
    return z * special.ndtr(z)


def _gelu_prime(z):
    return special.ndtr(z) + z * _normal_pdf(z)


def _silu(z):
    return z * special.expit(z)


def _silu_prime(z):
    s = special.expit(z)
    return s * (1.0 + z * (1.0 - s))


@pytest.mark.parametrize(
    "name, f, fprime",
    [("gelu", _gelu, _gelu_prime), ("silu", _silu, _silu_prime), ("swish", _silu, _silu_prime)],
)
def test_smooth_gains_match_scipy_quad(name, f, fprime):
    assert gain(name) == pytest.approx(_quad_gain(f), rel=1e-10)
    assert gain(name, "backward") == pytest.approx(_quad_gain(fprime), rel=1e-10)


@pytest.mark.parametrize(
    "name, param, f, points",
    [
        ("elu", 2.0, lambda z: z if z > 0 else 2.0 * math.expm1(z), (0.0,)),
        ("hardtanh", 0.5, lambda z: min(max(z, -0.5), 0.5), (-0.5, 0.5)),
        ("relu6", None, lambda z: min(max(z, 0.0), 6.0), (0.0, 6.0)),
        ("hardswish", None, lambda z: z * min(max(z + 3.0, 0.0), 6.0) / 6.0, (-3.0, 3.0)),
        ("softsign", None, lambda z: z / (1.0 + abs(z)), (0.0,)),
        ("tanh", None, math.tanh, ()),
        ("sigmoid", None, special.expit, ()),
        ("mish", None, lambda z: z * math.tanh(np.logaddexp(0.0, z)), ()),
        ("softplus", 2.0, lambda z: np.logaddexp(0.0, 2.0 * z) / 2.0, ()),
    ],
)
def test_forward_gains_match_scipy_quad(name, param, f, points):
    assert gain(name, param=param) == pytest.approx(_quad_gain(f, points), rel=1e-10)


def test_kinked_backward_gain_matches_quad():
    # hardtanh'(z) = 1 on (-1, 1): E = P(|z| < 1) = erf(1/sqrt 2).
    expected = 1.0 / math.sqrt(math.erf(1.0 / math.sqrt(2.0)))
    assert gain("hardtanh", "backward") == pytest.approx(expected, rel=1e-12)


# ---- callables ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, fn, kinks",
    [
        ("tanh", torch.tanh, None),
        ("gelu", nn.GELU(), None),
        ("silu", F.silu, None),
        ("mish", lambda x: x * torch.tanh(F.softplus(x)), None),
        ("relu", torch.relu, None),  # a single kink at 0: exact by the symmetry of the nodes
        ("hardtanh", lambda x: x.clamp(-1.0, 1.0), (-1.0, 1.0)),
        ("elu", nn.ELU(), (0.0,)),
    ],
)
@pytest.mark.parametrize("criterion", ["forward", "backward"])
def test_callable_gain_equals_named_gain(name, fn, kinks, criterion):
    assert gain(fn, criterion, kinks=kinks) == pytest.approx(gain(name, criterion), rel=1e-10)


def test_float32_module_falls_back_to_float32():
    # nn.PReLU holds a float32 weight (init 0.25), so float64 input fails; float32 is used instead.
    assert gain(nn.PReLU(), kinks=(0.0,)) == pytest.approx(gain("prelu"), rel=1e-6)
    assert gain("prelu") == pytest.approx(math.sqrt(2.0 / (1.0 + 0.25**2)), abs=1e-12)


def test_callable_errors():
    with pytest.raises(InitlabError, match="elementwise"):
        gain(lambda x: x.sum())
    with pytest.raises(InitlabError, match="not a tensor"):
        gain(lambda x: 1.0)
    with pytest.raises(InitlabError, match="zero almost everywhere"):
        gain(lambda x: 0.0 * x)
    with pytest.raises(InitlabError, match="names only"):
        gain(torch.tanh, param=0.1)
    with pytest.raises(InitlabError, match="neither a name nor a callable"):
        gain(3.0)


# ---- errors -------------------------------------------------------------------------------------


def test_unknown_name_lists_all_names():
    with pytest.raises(InitlabError, match="activation 'swiglu' is unknown") as info:
        gain("swiglu")
    for name in ACTIVATIONS:
        assert name in str(info.value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"activation": "relu", "criterion": "sideways"}, "criterion='sideways' is unknown"),
        ({"activation": "relu", "param": 0.1}, "'relu' takes no param"),
        ({"activation": "leaky_relu", "param": "0.1"}, "param='0.1' is invalid for 'leaky_relu'"),
        ({"activation": "leaky_relu", "param": True}, "param=True is invalid"),
        ({"activation": "softplus", "param": -1.0}, "beta must be > 0"),
        ({"activation": "hardtanh", "param": 0.0}, "max_val must be > 0"),
        ({"activation": "celu", "param": 0.0}, "alpha must be non-zero"),
        ({"activation": "tanh", "n": 1}, "quadrature order n=1 is invalid"),
        ({"activation": "tanh", "n": 1000}, "quadrature order n=1000 is invalid"),
        ({"activation": "relu", "kinks": (0.0,)}, "kinks= is for callables"),
    ],
)
def test_bad_arguments_raise_with_message(kwargs, message):
    with pytest.raises(InitlabError, match=message.replace("(", r"\(").replace(")", r"\)")):
        gain(**kwargs)


# ---- torch parity of calculate_gain -------------------------------------------------------------

TORCH_NAMES = [
    "linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
    "conv_transpose3d", "sigmoid", "tanh", "relu", "leaky_relu", "selu",
]


@pytest.mark.parametrize("name", TORCH_NAMES)
@pytest.mark.parametrize("param", [None, 0, 1, 3, 0.2, -0.5, 1.0, np.float64(0.3)])
def test_calculate_gain_equals_torch(name, param):
    ours = calculate_gain(name, param)
    theirs = torch.nn.init.calculate_gain(name, param)
    assert ours == theirs
    assert type(ours) is type(theirs)


def _torch_error(*args):
    try:
        torch.nn.init.calculate_gain(*args)
    except Exception as exc:  # noqa: BLE001 - we compare whatever torch raises
        return exc
    raise AssertionError(f"torch accepted {args}")


@pytest.mark.parametrize(
    "args",
    [("gelu",), ("Relu",), ("",), ("identity",), (None,), ("leaky_relu", True), ("leaky_relu", "0.1"),
     ("leaky_relu", [0.1]), ("leaky_relu", np.float32(0.1)), ("leaky_relu", torch.tensor(0.1))],
)
def test_calculate_gain_errors_equal_torch(args):
    expected = _torch_error(*args)
    with pytest.raises(type(expected)) as info:
        calculate_gain(*args)
    assert type(info.value) is type(expected)
    assert str(info.value) == str(expected)


# ---- quadrature ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tanh", "gelu", "sigmoid", "relu6", "elu"])
@pytest.mark.parametrize("criterion", ["forward", "backward"])
def test_quadrature_order_converges(name, criterion):
    reference = gain(name, criterion, n=300)
    orders = (4, 8, 16, 32, 64, 128, 200)
    errors = [abs(gain(name, criterion, n=n) - reference) for n in orders]
    assert errors[0] > 1e-6  # a low order is visibly wrong, so the test can see convergence
    for before, after in zip(errors[:-1], errors[1:], strict=True):
        assert after < before or after < 1e-12  # decreasing until rounding level
    assert errors[-1] < 1e-13  # the default order (200) is converged


def test_gaussian_expectation_moments_and_variance():
    assert gaussian_expectation(lambda z: z**4) == pytest.approx(3.0, abs=1e-12)
    assert gaussian_expectation(lambda z: z**6, q=2.0) == pytest.approx(15.0 * 8.0, rel=1e-12)
    assert gaussian_expectation(np.cos, q=0.5) == pytest.approx(math.exp(-0.25), abs=1e-14)
    assert gaussian_expectation(np.abs, kinks=(0.0,)) == pytest.approx(math.sqrt(2 / math.pi), abs=1e-13)
    assert gaussian_expectation(np.abs, q=4.0, kinks=(0.0,)) == pytest.approx(
        2.0 * math.sqrt(2 / math.pi), abs=1e-13
    )
    assert gaussian_expectation(lambda z: np.cos(z) + 1.0, q=0.0) == 2.0
    with pytest.raises(InitlabError, match="q=-1.0 is invalid"):
        gaussian_expectation(np.cos, q=-1.0)
    with pytest.raises(InitlabError, match="vectorised"):
        gaussian_expectation(lambda z: 1.0)
    with pytest.raises(InitlabError, match="kinks="):
        gaussian_expectation(np.cos, kinks=("a",))


# ---- activation functions ------------------------------------------------------------------------


def test_activation_names_cover_models():
    assert set(ACTIVATION_MODULES) <= set(ACTIVATIONS)


@pytest.mark.parametrize("name", sorted(ACTIVATION_MODULES))
def test_activation_fn_matches_models_module(name):
    x = torch.linspace(-8.0, 8.0, 401, dtype=torch.float64)
    torch.testing.assert_close(activation_fn(name)(x), activation_module(name)(x), rtol=1e-12, atol=1e-12)


def test_activation_fn_param_and_unknown():
    x = torch.tensor([-2.0, 3.0])
    torch.testing.assert_close(activation_fn("elu", 2.0)(x), F.elu(x, alpha=2.0))
    torch.testing.assert_close(activation_fn("hardtanh", 2.5)(x), F.hardtanh(x, -2.5, 2.5))
    with pytest.raises(InitlabError, match="is unknown"):
        activation_fn("nope")
    assert gains.activation_kinks("hardtanh", 2.0) == (-2.0, 2.0)


def test_named_gain_is_cached_and_stable():
    first = gain("mish", "backward")
    assert gain("mish", "backward") == first


# ---- moments at a non-zero mean ------------------------------------------------------------------


def _quad_moments(f, mean, var, points=()):
    """E[f(x)], E[f(x)^2] for x ~ N(mean, var) by scipy quad, split at `points`."""
    pdf = lambda x: math.exp(-((x - mean) ** 2) / (2 * var)) / math.sqrt(2 * math.pi * var)  # noqa: E731
    cuts = [-np.inf, *points, np.inf]
    return tuple(
        sum(
            integrate.quad(lambda x, p=p: f(x) ** p * pdf(x), a, b, epsabs=1e-14, epsrel=1e-13, limit=200)[0]
            for a, b in zip(cuts[:-1], cuts[1:], strict=True)
        )
        for p in (1, 2)
    )


@pytest.mark.parametrize(
    ("name", "f", "points"),
    [
        ("relu", lambda x: max(x, 0.0), (0.0,)),
        ("tanh", math.tanh, ()),
        ("sigmoid", special.expit, ()),
        ("gelu", lambda x: 0.5 * x * (1 + math.erf(x / math.sqrt(2))), ()),
        ("silu", lambda x: x * special.expit(x), ()),
        ("relu6", lambda x: min(max(x, 0.0), 6.0), (0.0, 6.0)),
    ],
)
def test_activation_moments_match_quad_at_nonzero_mean(name, f, points):
    m1, m2 = gains.activation_moments(name, 0.5, 2.0)
    e1, e2 = _quad_moments(f, 0.5, 2.0, points)
    assert m1 == pytest.approx(e1, rel=1e-8) and m2 == pytest.approx(e2, rel=1e-8)


def test_activation_moments_callable_kinks_zero_var_and_errors():
    named = gains.activation_moments("leaky_relu", -0.7, 1.5, 0.2)
    fn = lambda x: F.leaky_relu(x, 0.2)  # noqa: E731
    assert gains.activation_moments(fn, -0.7, 1.5, kinks=(0.0,)) == pytest.approx(named, rel=1e-12)
    assert gains.activation_moments("tanh", 0.3, 0.0) == pytest.approx((math.tanh(0.3), math.tanh(0.3) ** 2))
    m, q = gains.activation_moments("relu")
    assert q == pytest.approx(0.5, rel=1e-13) and m == pytest.approx(1 / math.sqrt(2 * math.pi), rel=1e-13)
    with pytest.raises(InitlabError, match="var=-1"):
        gains.activation_moments("relu", 0.0, -1.0)
    with pytest.raises(InitlabError, match="mean=nan"):
        gains.activation_moments("relu", math.nan)
    with pytest.raises(InitlabError, match="param"):
        gains.activation_moments(fn, 0.0, 1.0, 0.2)
    np.testing.assert_array_equal(gains.activation_values("relu", np.array([[-1.0, 2.0]])), [[0.0, 2.0]])


# ---- CLI ----------------------------------------------------------------------------------------


def test_cli_gain_prints_forward_backward_and_torch(capsys):
    assert main(["gain", "tanh"]) == 0
    out = capsys.readouterr().out
    assert f"{gain('tanh'):.6f}" in out
    assert f"{gain('tanh', 'backward'):.6f}" in out
    assert f"{5.0 / 3.0:.6f}" in out


def test_cli_gain_with_param_and_no_torch_entry(capsys):
    assert main(["gain", "leaky_relu", "--param", "0.2"]) == 0
    out = capsys.readouterr().out
    assert f"{math.sqrt(2.0 / 1.04):.6f}" in out
    assert main(["gain", "gelu"]) == 0
    assert "torch has none" in capsys.readouterr().out


def test_cli_gain_unknown_name_is_one_line_exit_2(capsys):
    assert main(["gain", "swiglu"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "activation 'swiglu' is unknown" in lines[0]
