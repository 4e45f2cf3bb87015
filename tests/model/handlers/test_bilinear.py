"""nn.Bilinear gets rows: fan_in = in1 * in2, the propagated scale under "auto", torch's bound."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from initlab import init_model
from initlab.model.traverse import SkippedParameterWarning


class _Pair(nn.Module):
    """Two independent inputs through their own Linear, a Bilinear, a ReLU and a head."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(16, 64), nn.Linear(24, 32)
        self.bl, self.out = nn.Bilinear(64, 32, 256), nn.Linear(256, 4)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.bl(self.a(x1), self.b(x2))))


def _plan(model: nn.Module, scheme: str):
    inputs = (torch.randn(2, 16), torch.randn(2, 24))
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkippedParameterWarning)
        return init_model(model, scheme, example_inputs=inputs, generator=torch.Generator().manual_seed(0))


def test_bilinear_rows_and_fans():
    model = _Pair()
    plan = _plan(model, "he_normal")
    row = plan["bl.weight"]
    assert (row.fan_in, row.fan_out) == (64 * 32, 256 * 32)
    assert row.activation == "relu"
    assert row.std == pytest.approx(1 / math.sqrt(64 * 32), rel=1e-12)  # gain 1: a product of inputs
    assert plan["bl.bias"].scheme == "zeros"
    bound = 1 / math.sqrt(64)  # reset_parameters: U(+-1/sqrt(in1)) for weight and bias
    plan = _plan(model, "torch_default")
    assert plan["bl.weight"].bound == pytest.approx(bound) and plan["bl.bias"].bound == pytest.approx(bound)
    assert float(model.bl.weight.detach().abs().max()) <= bound


def test_bilinear_under_auto_starts_its_output_at_unit_second_moment():
    """The propagated scale: E[y^2] = in1 in2 Var(w) E[x1^2] E[x2^2] = 1 for the planned stds; and
    the measured E[y^2] is what the drawn weights give, sum_ij W_kij^2 ||A_i||^2 ||B_j||^2 averaged
    over k (independent standard inputs, zero biases), to 5%: the mean of y^2 over 4096 x 256
    entries has a relative standard error under 1%."""
    torch.manual_seed(0)
    model = _Pair()
    plan = _plan(model, "auto")
    row = plan["bl.weight"]
    assert row.scheme == "propagated"
    q_a, q_b = (plan[n].std ** 2 * plan[n].fan_in for n in ("a.weight", "b.weight"))
    assert row.std ** 2 * row.fan_in * q_a * q_b == pytest.approx(1.0, rel=1e-9)
    g = torch.Generator().manual_seed(1)
    x1, x2 = torch.randn(4096, 16, generator=g), torch.randn(4096, 24, generator=g)
    with torch.no_grad():
        y = model.bl(model.a(x1), model.b(x2))
        qa, qb = model.a.weight.square().sum(1), model.b.weight.square().sum(1)
        expected = float(torch.einsum("kij,i,j->k", model.bl.weight.square(), qa, qb).mean())
    assert float(y.square().mean()) == pytest.approx(expected, rel=0.05)
