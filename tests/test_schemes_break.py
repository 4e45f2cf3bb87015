"""Adversarial tests for initlab.schemes (review): bad scales and gains, invalid spec parameters,
and expected_std against large torch samples in corners. Each test pins a defect that was found
and fixed."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from initlab import schemes
from initlab.errors import InitlabError
from initlab.fans import Fans

FANS = Fans(50, 70)


@pytest.mark.parametrize(
    "scale", [float("nan"), float("inf"), -1.0, 0, True, np.float64("nan"), np.float32("inf"), "2", None],
    ids=["nan", "inf", "negative", "zero", "bool", "np-nan", "np-inf", "str", "none"],
)
def test_bad_scales_are_refused_by_name(scale):
    with pytest.raises(InitlabError, match=r"scale=.* is invalid"):
        schemes.variance_scaling(scale, "fan_in", "normal", fans=FANS)


def test_numpy_float32_scale_is_exact():
    assert schemes.variance_scaling(np.float32(2.0), "fan_in", "normal", fans=Fans(50, 50)).std == 0.2


@pytest.mark.parametrize("gain", [1e200, 0.0], ids=["overflow", "zero"])
def test_bad_gain_error_names_the_gain(gain):
    with pytest.raises(InitlabError, match=r"gain="):
        schemes.glorot_normal(FANS, gain=gain)


@pytest.mark.parametrize("name", ["he_normal", "he_uniform", "he_truncated_normal", "kaiming_normal"])
def test_named_spec_without_gain_is_the_scheme_itself(name):
    assert schemes.named_spec(name, FANS) == schemes.NAMED_SCHEMES[name](FANS)


@pytest.mark.parametrize(
    "make",
    [
        lambda: schemes.Normal(-1.0),
        lambda: schemes.Normal(float("nan")),
        lambda: schemes.Uniform(1.0, -1.0),
        lambda: schemes.TruncatedNormal(1.0, 0.0, 2.0, -2.0),
        lambda: schemes.TruncatedNormal(-1.0),
        lambda: schemes.Sparse(1.5),
        lambda: schemes.Dirac(0),
        lambda: schemes.LooksLinear(float("nan")),
        lambda: schemes.LooksLinear(1.0, mirror_rows=1),
        lambda: schemes.LooksLinear(1.0, False, False),
    ],
    ids=["normal-neg-std", "normal-nan-std", "uniform-inverted", "trunc-a>b", "trunc-neg-std", "sparse>1",
         "dirac-0-groups", "looks-linear-nan-gain", "looks-linear-int-flag", "looks-linear-no-mirror"],
)
def test_invalid_spec_parameters_are_refused(make):
    with pytest.raises(InitlabError):
        make()


def test_bad_fans_are_named():
    with pytest.raises(InitlabError, match=r"-5"):
        schemes.variance_scaling(1.0, "fan_in", "normal", fans=Fans(-5, 5))
    with pytest.raises(TypeError, match=r"fans"):
        schemes.variance_scaling(1.0, "fan_in", "normal", fans=(5, 5))


def sample_std(spec, n: int = 200_000) -> float:
    t = torch.empty(n, dtype=torch.float64)
    gen = torch.Generator().manual_seed(7)
    if isinstance(spec, schemes.TruncatedNormal):
        torch.nn.init.trunc_normal_(t, spec.mean, spec.std, spec.a, spec.b, generator=gen)
    elif isinstance(spec, schemes.Uniform):
        torch.nn.init.uniform_(t, spec.low, spec.high, generator=gen)
    else:
        torch.nn.init.normal_(t, spec.mean, spec.std, generator=gen)
    return t.std().item()


@pytest.mark.parametrize(
    "spec",
    [
        schemes.TruncatedNormal(0.5, 0.3, -0.2, 1.5),  # asymmetric, off-centre
        schemes.TruncatedNormal(1.0, 0.0, 1.0, 3.0),  # one-sided
        schemes.TruncatedNormal(100.0, 0.0, -2.0, 2.0),  # nearly uniform
        schemes.variance_scaling(2.0, "fan_geo_avg", "truncated_normal", fans=FANS),
        schemes.variance_scaling(1.0, "fan_out", "uniform", fans=FANS),
    ],
    ids=["trunc-asym", "trunc-one-sided", "trunc-wide-parent", "vs-trunc", "vs-uniform"],
)
def test_expected_std_in_corners_matches_a_large_torch_sample(spec):
    # standard error of a sample std ~ sigma * sqrt((kurtosis - 1) / (4 n)) <= sigma * sqrt(2 / n)
    # for these light-tailed laws; 5 of them
    n = 200_000
    assert sample_std(spec, n) == pytest.approx(spec.expected_std, rel=5 * math.sqrt(2 / n))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # scipy's own nan warning
@pytest.mark.parametrize("half_width", [1e-5, 1e-6])
def test_narrow_truncation_expected_std(half_width):
    spec = schemes.TruncatedNormal(1.0, 0.0, -half_width, half_width)
    assert spec.expected_std == pytest.approx(2 * half_width / math.sqrt(12), rel=1e-3)
