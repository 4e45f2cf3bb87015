"""The handler of activations with parameters (``nn.PReLU``)."""

from __future__ import annotations

from torch import nn

from initlab import schemes
from initlab.model.handlers.registry import register_handler
from initlab.model.plan import PlanRow
from initlab.model.policies import SchemeContext
from initlab.model.rows import own_rows, set_spec


def handle_prelu(ctx: SchemeContext, q: str, m: nn.PReLU) -> list[PlanRow]:
    """The row of a ``PReLU``'s slope: its ``init`` value (0.25 by default), under every scheme."""
    rows = []
    for _, row in own_rows(q, m):
        set_spec(row, "prelu_init", schemes.Constant(float(getattr(m, "init", 0.25))))
        rows.append(row)
    return rows


register_handler(nn.PReLU, handle_prelu)
