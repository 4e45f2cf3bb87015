"""The handler of ``nn.Bilinear``: ``y_k = x_1^T W_k x_2 + b_k``, weight ``(out, in1, in2)``."""

from __future__ import annotations

import math

from torch import nn

from initlab import schemes
from initlab.fans import Fans
from initlab.model.handlers.registry import register_handler
from initlab.model.plan import PlanRow
from initlab.model.policies import SchemeContext
from initlab.model.rows import own_rows, set_propagated, set_spec


def bilinear_fans(m: nn.Bilinear) -> Fans:
    """``fan_in = in1 * in2`` (the products :math:`x_{1,i} x_{2,j}` one output sums), ``fan_out =
    out * in2`` (the outputs one :math:`x_{1,i}` reaches, per entry of :math:`x_2`), torch's own
    count for a ``(out, in1, in2)`` tensor."""
    out, in1, in2 = m.weight.shape
    return Fans(in1 * in2, out * in2, in2)


def handle_bilinear(ctx: SchemeContext, q: str, m: nn.Bilinear) -> list[PlanRow]:
    """Rows of a Bilinear's ``weight`` and ``bias``.

    For independent zero-mean inputs :math:`\\mathrm{Var}(y) = in_1\\,in_2\\,\\mathrm{Var}(w)\\,
    \\mathbb{E}[x_1^2]\\,\\mathbb{E}[x_2^2]`, so the variance schemes take :func:`bilinear_fans`
    (gain 1: the product of two inputs); under ``"auto"`` / ``"variance"`` the propagated
    :math:`\\mathrm{Var}(w) = 1 / (in_1 in_2 \\mathbb{E}[x_1^2] \\mathbb{E}[x_2^2])` where the graph has
    it, that rule where it does not; ``"torch_default"`` is
    ``reset_parameters``' ``U(±1/sqrt(in1))`` for both. Bias 0 otherwise."""
    fans = bilinear_fans(m)
    f = ctx.found.get(q)
    act, param = (f.activation, f.param) if f is not None else ("linear", None)
    rows = []
    for pname, row in own_rows(q, m):
        row.fan_in, row.fan_out, row.activation = fans.fan_in, fans.fan_out, act
        if ctx.scheme == "torch_default":
            bound = 1 / math.sqrt(m.weight.shape[1])
            set_spec(row, "torch_default", schemes.Uniform(-bound, bound))
        elif pname == "weight" and (s := ctx.scale(q, "weight")) is not None:
            set_propagated(row, s, 1)
        elif pname == "weight":
            label, spec, g = ctx.weight_spec(fans, act, param, unit_input=True)
            set_spec(row, label, spec, gain=g)
            row.note = "Bilinear: fan_in = in1 * in2"
        else:
            set_spec(row, *ctx.bias_spec(act, param))
        rows.append(row)
    return rows


register_handler(nn.Bilinear, handle_bilinear)
