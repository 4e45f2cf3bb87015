"""Tests of initlab.schemes: the variance-scaling core, its specialisations, and the specs.

Expected values are recomputed here from the formulas; sampled checks are seeded (NumPy
``default_rng``) and allow 5 standard errors of a std (sigma / sqrt(2 n)).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from initlab import schemes
from initlab.errors import InitlabError
from initlab.fans import Fans

FANS = Fans(fan_in=300, fan_out=100, receptive_field=1)


def _n(fans: Fans, mode: str) -> float:
    return {
        "fan_in": fans.fan_in,
        "fan_out": fans.fan_out,
        "fan_avg": (fans.fan_in + fans.fan_out) / 2,
        "fan_geo_avg": math.sqrt(fans.fan_in * fans.fan_out),
    }[mode]


# ---- the truncated-normal constant ------------------------------------------------------------


def test_truncated_normal_std_2_is_keras_constant_computed_by_scipy():
    by_scipy = float(stats.truncnorm(-2.0, 2.0).std())
    # closed form: Var = 1 - 2 * 2 phi(2) / (Phi(2) - Phi(-2))
    phi2 = math.exp(-2.0) / math.sqrt(2 * math.pi)
    z = math.erf(2 / math.sqrt(2))
    closed_form = math.sqrt(1 - 4 * phi2 / z)
    assert schemes.TRUNCATED_NORMAL_STD_2 == pytest.approx(0.87962566103423978, rel=1e-15, abs=0)
    assert schemes.TRUNCATED_NORMAL_STD_2 == pytest.approx(by_scipy, rel=1e-15, abs=0)
    assert closed_form == pytest.approx(0.87962566103423978, rel=1e-14, abs=0)


# ---- variance_scaling ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "fan_avg", "fan_geo_avg"])
@pytest.mark.parametrize("scale", [1.0, 2.0, 1 / 3])
def test_variance_scaling_modes_and_distributions(mode, scale):
    sigma = math.sqrt(scale / _n(FANS, mode))

    normal = schemes.variance_scaling(scale, mode, "normal", fans=FANS)
    assert isinstance(normal, schemes.Normal) and normal.mean == 0
    assert normal.std == pytest.approx(sigma, rel=1e-14)

    uniform = schemes.variance_scaling(scale, mode, "uniform", fans=FANS)
    assert isinstance(uniform, schemes.Uniform)
    assert uniform.high == pytest.approx(math.sqrt(3) * sigma, rel=1e-14)
    assert uniform.low == -uniform.high and uniform.bound == uniform.high
    assert uniform.expected_std == pytest.approx(sigma, rel=1e-14)

    trunc = schemes.variance_scaling(scale, mode, "truncated_normal", fans=FANS)
    assert isinstance(trunc, schemes.TruncatedNormal) and trunc.mean == 0
    parent = sigma / 0.87962566103423978
    assert trunc.std == pytest.approx(parent, rel=1e-14)
    assert (trunc.a, trunc.b) == pytest.approx((-2 * parent, 2 * parent), rel=1e-14)
    assert trunc.expected_std == pytest.approx(sigma, rel=1e-12)


def test_variance_scaling_default_is_truncated_normal_fan_in():
    spec = schemes.variance_scaling(fans=FANS)
    assert isinstance(spec, schemes.TruncatedNormal)
    assert spec.expected_std == pytest.approx(math.sqrt(1 / FANS.fan_in), rel=1e-12)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"scale": 0.0}, r"scale=0.0 is invalid"),
        ({"scale": -2.0}, r"scale=-2.0 is invalid"),
        ({"scale": float("nan")}, r"scale=nan is invalid"),
        ({"scale": float("inf")}, r"scale=inf is invalid"),
        ({"scale": "2"}, r"scale='2' is invalid"),
        ({"mode": "fan_max"}, r"mode='fan_max' is unknown.*fan_in, fan_out, fan_avg, fan_geo_avg"),
        ({"distribution": "laplace"},
         r"distribution='laplace' is unknown.*normal, uniform, truncated_normal"),
        ({"fans": Fans(0, 5), "mode": "fan_in"}, r"fan_in is 0"),
    ],
)
def test_variance_scaling_errors(kwargs, match):
    args = {"scale": 1.0, "mode": "fan_in", "distribution": "normal", "fans": FANS} | kwargs
    with pytest.raises(InitlabError, match=match):
        schemes.variance_scaling(args.pop("scale"), args.pop("mode"), args.pop("distribution"), **args)


# ---- specialisations: the formulas of the papers ------------------------------------------------


def test_glorot_he_lecun_formulas():
    fi, fo = FANS.fan_in, FANS.fan_out
    g = 1.7
    assert schemes.glorot_normal(FANS, g).std == pytest.approx(g * math.sqrt(2 / (fi + fo)), rel=1e-14)
    assert schemes.glorot_uniform(FANS, g).high == pytest.approx(g * math.sqrt(6 / (fi + fo)), rel=1e-14)
    assert schemes.glorot_truncated_normal(FANS).expected_std == pytest.approx(
        math.sqrt(2 / (fi + fo)), rel=1e-12
    )
    assert schemes.he_normal(FANS).std == pytest.approx(math.sqrt(2 / fi), rel=1e-14)
    assert schemes.he_normal(FANS, mode="fan_out").std == pytest.approx(math.sqrt(2 / fo), rel=1e-14)
    assert schemes.he_uniform(FANS).high == pytest.approx(math.sqrt(6 / fi), rel=1e-14)
    assert schemes.he_truncated_normal(FANS).std == pytest.approx(math.sqrt(2 / fi) / 0.87962566103423978)
    assert schemes.lecun_normal(FANS).std == pytest.approx(math.sqrt(1 / fi), rel=1e-14)
    assert schemes.lecun_uniform(FANS).high == pytest.approx(math.sqrt(3 / fi), rel=1e-14)
    assert schemes.lecun_truncated_normal(FANS, g).expected_std == pytest.approx(g / math.sqrt(fi), rel=1e-12)


def test_torch_default_is_kaiming_uniform_with_a_sqrt5():
    """nn.Linear: kaiming_uniform_(a=sqrt(5)): gain sqrt(2 / (1 + 5)), bound gain * sqrt(3 / fan_in)."""
    gain = math.sqrt(2 / (1 + 5))
    spec = schemes.torch_default(FANS, gain=123.0)  # gain is ignored by torch's default
    assert spec.high == pytest.approx(gain * math.sqrt(3 / FANS.fan_in), rel=1e-14)
    assert spec.high == pytest.approx(1 / math.sqrt(FANS.fan_in), rel=1e-14)


def test_aliases_are_the_same_functions():
    assert schemes.xavier_normal is schemes.glorot_normal
    assert schemes.xavier_uniform is schemes.glorot_uniform
    assert schemes.kaiming_normal is schemes.he_normal
    assert schemes.kaiming_uniform is schemes.he_uniform


# ---- named_spec -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(schemes.NAMED_SCHEMES))
def test_every_named_scheme_gives_a_spec(name):
    spec = schemes.named_spec(name, FANS, gain=math.sqrt(2))
    assert isinstance(spec, schemes.Spec)
    assert isinstance(spec.describe(), str) and spec.describe()


def test_named_spec_values():
    assert schemes.named_spec("small", FANS) == schemes.Normal(0.01)
    assert schemes.named_spec("large", FANS) == schemes.Normal(1.0)
    assert schemes.named_spec("zeros", FANS) == schemes.Constant(0.0)
    assert schemes.named_spec("orthogonal", FANS, gain=2.0) == schemes.Orthogonal(2.0)
    assert schemes.named_spec("keras_default", FANS) == schemes.glorot_uniform(FANS)
    # the He family takes the activation's gain in place of sqrt(2)
    assert schemes.named_spec("he_normal", FANS, gain=1.0).std == pytest.approx(math.sqrt(1 / FANS.fan_in))


@pytest.mark.parametrize("bad", ["he", "Glorot_Normal", "", "xavier"])
def test_named_spec_unknown_name_lists_valid_names(bad):
    match = rf"scheme {bad!r} is unknown: use one of .*glorot_normal.*he_normal"
    with pytest.raises(InitlabError, match=match):
        schemes.named_spec(bad, FANS)


# ---- expected_std against a large sample ------------------------------------------------------------

N = 200_000


def _sample(spec: schemes.Spec, rng: np.random.Generator) -> np.ndarray:
    """Draw with NumPy / SciPy, independently of initlab's samplers."""
    if isinstance(spec, schemes.Normal):
        return rng.normal(spec.mean, spec.std, N)
    if isinstance(spec, schemes.Uniform):
        return rng.uniform(spec.low, spec.high, N)
    if isinstance(spec, schemes.TruncatedNormal):
        alpha, beta = (spec.a - spec.mean) / spec.std, (spec.b - spec.mean) / spec.std
        return stats.truncnorm(alpha, beta, loc=spec.mean, scale=spec.std).rvs(N, random_state=rng)
    if isinstance(spec, schemes.Constant):
        return np.full(N, spec.value)
    raise AssertionError(spec)


SAMPLED_SPECS = [
    schemes.Normal(0.3, mean=1.0),
    schemes.Uniform(-0.5, 1.5),
    schemes.TruncatedNormal(1.0),  # torch trunc_normal_ default: [-2, 2]
    schemes.TruncatedNormal(0.5, mean=0.2, a=-0.1, b=1.5),  # asymmetric
    schemes.TruncatedNormal(1.0, a=0.5, b=3.0),  # one tail
    schemes.Constant(0.7),
    *(schemes.named_spec(n, FANS) for n in ("glorot_truncated_normal", "he_uniform", "lecun_normal")),
]


@pytest.mark.parametrize("spec", SAMPLED_SPECS, ids=lambda s: s.describe())
def test_expected_std_matches_a_large_sample(spec):
    x = _sample(spec, np.random.default_rng(7))
    sigma = spec.expected_std
    if sigma == 0:
        assert x.std() == 0
        return
    assert abs(x.std() - sigma) < 5 * sigma / math.sqrt(2 * N)


def test_truncated_normal_expected_std_formula():
    """Var = s^2 [1 + (alpha phi(alpha) - beta phi(beta)) / Z - ((phi(alpha) - phi(beta)) / Z)^2]."""
    s, mu, a, b = 0.5, 0.2, -0.1, 1.5
    alpha, beta = (a - mu) / s, (b - mu) / s
    phi = stats.norm.pdf
    z = stats.norm.cdf(beta) - stats.norm.cdf(alpha)
    var = s**2 * (1 + (alpha * phi(alpha) - beta * phi(beta)) / z - ((phi(alpha) - phi(beta)) / z) ** 2)
    assert schemes.TruncatedNormal(s, mu, a, b).expected_std == pytest.approx(math.sqrt(var), rel=1e-10)
    assert schemes.TruncatedNormal(0.0).expected_std == 0.0


@pytest.mark.parametrize(
    "spec",
    [
        schemes.Orthogonal(), schemes.Identity(), schemes.Dirac(2), schemes.DeltaOrthogonal(),
        schemes.Sparse(0.1), schemes.LooksLinear(),
    ],
    ids=lambda s: s.describe(),
)
def test_structural_specs_have_no_single_std(spec):
    assert spec.expected_std is None
    name = type(spec).__name__.lower()
    name = name.replace("deltaorthogonal", "delta_orthogonal").replace("lookslinear", "looks_linear")
    assert name in spec.describe()


def test_describe_shows_the_numbers():
    assert schemes.Normal(0.02).describe() == "normal(std=0.02)"
    assert schemes.Uniform(-0.1, 0.1).describe() == "uniform(bound=0.1)"
    assert "0.5" in schemes.Constant(0.5).describe()
