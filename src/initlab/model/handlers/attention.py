"""The handler of ``nn.MultiheadAttention``: its packed and separate projections and biases."""

from __future__ import annotations

import math

from torch import nn

from initlab import schemes
from initlab.fans import compute_fans
from initlab.model.handlers.registry import register_handler
from initlab.model.plan import PlanRow
from initlab.model.policies import SchemeContext, torch_fans
from initlab.model.rows import own_rows, set_propagated, set_spec


def handle_mha(ctx: SchemeContext, q: str, m: nn.MultiheadAttention) -> list[PlanRow]:
    """Rows of a ``MultiheadAttention``'s own parameters: the packed ``in_proj_weight`` per chunk
    (Q, K, V: ``chunks=3``), each from its input's propagated second moment (the per-layer rule:
    Glorot normal, gain 1 — ``E = 512`` gives ``std = sqrt(2 / 1024) = 0.0442``); separate
    ``q/k/v_proj_weight`` each by its own fans; ``bias_k`` / ``bias_v`` as torch
    (``xavier_normal_``); other biases 0. ``out_proj`` is a Linear, planned by its own handler."""
    rows = []
    for pname, row in own_rows(q, m):
        row.activation, row.found_by = "linear", "structure"
        if pname == "in_proj_weight":
            _plan_in_proj_weight(ctx, row, q)
        elif pname in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
            _plan_proj_weight(ctx, row)
        elif pname in ("bias_k", "bias_v"):
            fans = torch_fans(row.shape)
            set_spec(row, "glorot_normal", schemes.glorot_normal(fans))
            row.note = "as torch (xavier_normal_)"
        else:  # in_proj_bias
            row.chunks = 3 if pname == "in_proj_bias" else 1
            if ctx.scheme == "critical":
                label, spec = ctx.bias_spec("linear", None)
            else:
                label, spec = "zeros", schemes.Constant(0.0)
            set_spec(row, label if ctx.scheme not in ("torch_default", "keras_default") else ctx.scheme, spec)
        rows.append(row)
    return rows


def _plan_in_proj_weight(ctx: SchemeContext, row: PlanRow, q: str) -> None:
    """The packed Q, K, V weight, per chunk (torch's own init: on the whole packed weight)."""
    fans = compute_fans(row.shape, chunks=3)
    row.fan_in, row.fan_out, row.chunks = fans.fan_in, fans.fan_out, 3
    if ctx.scheme == "torch_default":
        set_spec(row, "torch_default", schemes.glorot_uniform(torch_fans(row.shape)))
        row.note = "xavier_uniform_ on the packed weight, as torch"
    elif ctx.scheme == "keras_default":
        set_spec(row, "keras_default", schemes.glorot_uniform(fans), chunks=3)
    elif (parts := [ctx.scale(q, p) for p in ("query", "key", "value")]) and all(parts):
        set_propagated(row, parts[0], 3, chunk_scales=parts)
        same = all(math.isclose(p.std, parts[0].std, rel_tol=1e-6) for p in parts)
        if same:
            row.note = "per chunk (Q, K, V); " + row.note
        else:  # the spec column shows Q's: say each chunk's (T-Fixup, DeepNorm scale V alone)
            row.note = "per chunk: " + "; ".join(f"{c}: std {p.std:.4g} ({p.role})"
                                                 for c, p in zip("QKV", parts, strict=True))
    else:
        label, spec, g = ctx.weight_spec(fans, "linear", None)
        set_spec(row, label, spec, chunks=3, gain=g)
        row.note = "per chunk (Q, K, V)"


def _plan_proj_weight(ctx: SchemeContext, row: PlanRow) -> None:
    """A separate ``q/k/v_proj_weight`` (keys and values of another size), by its own fans."""
    fans = compute_fans(row.shape)
    row.fan_in, row.fan_out = fans.fan_in, fans.fan_out
    if ctx.scheme in ("torch_default", "keras_default"):
        set_spec(row, ctx.scheme, schemes.glorot_uniform(fans))
    else:
        label, spec, g = ctx.weight_spec(fans, "linear", None)
        set_spec(row, label, spec, gain=g)


register_handler(nn.MultiheadAttention, handle_mha)
