"""The handler of norm layers: torch's, and those recognised by what they compute."""

from __future__ import annotations

from torch import nn

from initlab import schemes
from initlab.model.classify import NORM_TYPES
from initlab.model.handlers.registry import register_fallback, register_handler
from initlab.model.plan import PlanRow
from initlab.model.policies import SchemeContext
from initlab.model.rows import own_rows, set_spec


def norm_weight_offset(m: nn.Module) -> float | None:
    """``0.0`` for a norm layer whose ``weight`` multiplies (torch's, ``LlamaRMSNorm``), ``1.0`` for
    one that multiplies by ``1 + weight`` (Gemma's), ``None`` for a module that is not a norm. Norms
    torch does not ship are recognised by what they compute (:func:`initlab.graph.vocab.measure_module`)."""
    if isinstance(m, NORM_TYPES):
        return 0.0
    if next(iter(m.children()), None) is not None or "weight" not in dict(m.named_parameters()):
        return None
    from initlab.graph import Kind
    from initlab.graph.vocab import classify_module

    entry = classify_module(m)
    return float(entry.params.get("weight_offset", 0.0)) if entry.kind is Kind.NORM else None


def handle_norm(ctx: SchemeContext, q: str, m: nn.Module) -> list[PlanRow] | None:
    """Rows of a norm layer (``BatchNorm*``, ``LayerNorm``, ``GroupNorm``, ``InstanceNorm*``,
    ``RMSNorm``, and norms recognised by what they compute): weight 1 (0 where the layer multiplies
    by ``1 + weight``), bias 0; ``None`` for a module that is not a norm."""
    offset = norm_weight_offset(m)
    if offset is None:
        return None
    rows = []
    for pname, row in own_rows(q, m):
        value = 1.0 - offset if pname == "weight" else 0.0
        set_spec(row, "ones" if value else "zeros", schemes.Constant(value))
        if not isinstance(m, NORM_TYPES):
            row.note = "a norm, by what it computes" + (": weight 0 is 1 + weight = 1" if offset else "")
        rows.append(row)
    return rows


for _cls in NORM_TYPES:
    register_handler(_cls, handle_norm)
register_fallback(handle_norm)
