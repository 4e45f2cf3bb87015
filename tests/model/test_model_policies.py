"""The scheme policies: one per scheme name, each giving the weight and bias specs of a layer."""

from __future__ import annotations

import math

import pytest

from initlab import schemes
from initlab.fans import Fans
from initlab.gains import gain
from initlab.model.policies import FAMILY_SCHEMES, POLICIES, SCHEMES, SchemeContext, policy_for


def _ctx(scheme: str, sigma_b2: float | None = None) -> SchemeContext:
    return SchemeContext(scheme, {}, 1.0, sigma_b2)


def test_every_scheme_has_a_policy():
    assert set(POLICIES) == {"auto", "variance", "critical", *FAMILY_SCHEMES}
    assert all(policy_for(s) is not None for s in SCHEMES)
    assert policy_for("he_normal") is policy_for("glorot_uniform")  # the named schemes share one


@pytest.mark.parametrize("scheme", ["auto", "variance"])
@pytest.mark.parametrize("act, label", [("relu", "he_normal"), ("selu", "lecun_normal"),
                                        ("tanh", "glorot_normal"), ("linear", "glorot_normal")])
def test_the_per_layer_rule_picks_the_scheme_by_activation(scheme, act, label):
    fans = Fans(256, 128)
    got, spec, g = _ctx(scheme).weight_spec(fans, act, None)
    assert got == label
    want_g = 1.0 if act in ("selu", "linear") else gain(act, "forward")
    assert g == pytest.approx(want_g, rel=1e-12)
    want = {"he_normal": want_g / math.sqrt(256), "lecun_normal": 1 / math.sqrt(256),
            "glorot_normal": want_g * math.sqrt(2 / (256 + 128))}[label]
    assert spec.expected_std == pytest.approx(want, rel=1e-12)


def test_a_unit_input_takes_gain_one():
    _, spec, g = _ctx("he_normal").weight_spec(Fans(100, 100), "relu", None, unit_input=True)
    assert g == 1.0 and spec.expected_std == pytest.approx(1 / math.sqrt(100), rel=1e-12)


def test_named_schemes_zero_the_bias_and_critical_draws_it():
    assert _ctx("glorot_uniform").bias_spec("tanh", None) == ("zeros", schemes.Constant(0.0))
    label, spec = _ctx("critical", sigma_b2=0.5).bias_spec("tanh", None)
    assert label == "critical" and isinstance(spec, schemes.Normal)
    assert spec.std == pytest.approx(math.sqrt(0.5), rel=1e-12)
    label, spec, g = _ctx("critical", sigma_b2=0.5).weight_spec(Fans(64, 64), "tanh", None)
    assert label == "critical" and spec.std == pytest.approx(g / math.sqrt(64), rel=1e-12)
