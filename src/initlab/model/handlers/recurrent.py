"""The handler of recurrent layers (``nn.RNN``, ``nn.LSTM``, ``nn.GRU``): per-gate blocks."""

from __future__ import annotations

import math

from torch import nn

from initlab import schemes
from initlab.fans import compute_fans
from initlab.model.handlers.registry import register_handler
from initlab.model.plan import Fill, PlanRow
from initlab.model.policies import SchemeContext, torch_fans
from initlab.model.rows import own_rows, set_spec

#: The gates of each recurrent mode, in the order torch stacks their blocks.
GATES = {"LSTM": ("i", "f", "g", "o"), "GRU": ("r", "z", "n"), "RNN": ("h",)}


def handle_rnn(ctx: SchemeContext, q: str, m: nn.RNNBase) -> list[PlanRow]:
    """Rows of a recurrent layer's parameters: input weights per gate (LSTM 4, GRU 3, RNN 1 block):
    Glorot normal, gain 1; recurrent weights orthogonal per gate (``W_g W_g^T = I``, Saxe et al.
    2013); projection ``weight_hr`` Glorot normal; biases 0 except the LSTM forget gate:
    ``bias_ih[f] = 1`` and ``bias_hh[f] = 0`` (torch adds the two, so the forget bias is exactly 1;
    Jozefowicz et al. 2015). ``"torch_default"``: ``U(±1/sqrt(hidden))`` everywhere;
    ``"keras_default"``: the whole packed kernel (Glorot uniform, recurrent orthogonal)."""
    rows = []
    gates = GATES.get(m.mode.split("_")[0] if m.mode.startswith("RNN") else m.mode, ("h",))
    k = len(gates)
    hidden = m.hidden_size
    for pname, row in own_rows(q, m):
        row.found_by = "structure"
        row.activation = "gates " + ",".join(gates) if k > 1 else getattr(m, "nonlinearity", "tanh")
        if ctx.scheme == "torch_default":
            b = 1.0 / math.sqrt(hidden) if hidden > 0 else 0.0
            set_spec(row, "torch_default", schemes.Uniform(-b, b))
        elif pname.startswith("weight_hr"):  # LSTM projection (proj, hidden)
            fans = compute_fans(row.shape)
            row.fan_in, row.fan_out, row.activation = fans.fan_in, fans.fan_out, "linear"
            if ctx.scheme == "keras_default":
                set_spec(row, "keras_default", schemes.glorot_uniform(fans))
            else:
                label, spec, g = ctx.weight_spec(fans, "linear", None)
                set_spec(row, label, spec, gain=g)
        elif pname.startswith("weight_"):
            _plan_gate_weight(ctx, row, k, recurrent=pname.startswith("weight_hh"))
        else:
            _plan_gate_bias(ctx, row, k, hidden, forget_ih=pname.startswith("bias_ih"),
                            lstm=m.mode == "LSTM")
        rows.append(row)
    return rows


def _plan_gate_weight(ctx: SchemeContext, row: PlanRow, k: int, recurrent: bool) -> None:
    """An input (``weight_ih``) or recurrent (``weight_hh``) weight of ``k`` gate blocks."""
    if ctx.scheme == "keras_default":  # Keras: the whole packed kernel
        fans = torch_fans(row.shape)
        row.fan_in, row.fan_out = fans.fan_in, fans.fan_out
        spec = schemes.Orthogonal(1.0) if recurrent else schemes.glorot_uniform(fans)
        set_spec(row, "keras_default", spec)
        row.note = "whole packed kernel, as Keras"
        return
    fans = compute_fans(row.shape, chunks=k)
    row.fan_in, row.fan_out, row.chunks = fans.fan_in, fans.fan_out, k
    if recurrent and ctx.scheme in ("auto", "variance"):
        set_spec(row, "orthogonal", schemes.Orthogonal(1.0), chunks=k, gain=1.0)
    else:
        label, spec, g = ctx.weight_spec(fans, "linear", None)
        set_spec(row, label, spec, chunks=k, gain=g)
    row.note = "per gate" + (" (recurrent)" if recurrent else " (input)")


def _plan_gate_bias(ctx: SchemeContext, row: PlanRow, k: int, hidden: int, forget_ih: bool,
                    lstm: bool) -> None:
    """A bias of ``k`` gate blocks; an LSTM's ``bias_ih`` (``forget_ih``) carries the forget
    gate's 1 under ``"auto"``, ``"variance"`` and ``"keras_default"``."""
    row.chunks = k
    forget = lstm and ctx.scheme in ("auto", "variance", "keras_default")
    if ctx.scheme == "critical":
        label, spec = ctx.bias_spec("linear", None)
    else:
        label = "zeros" if ctx.scheme != "keras_default" else "keras_default"
        spec = schemes.Constant(0.0)
    set_spec(row, label, spec)
    if forget and forget_ih:
        row._fills.append(Fill(slice(hidden, 2 * hidden), schemes.Constant(1.0)))
        row.spec = "constant(0), forget gate constant(1)"
        row.note = "forget-gate bias 1 (bias_ih + bias_hh = 1)"
    elif forget:
        row.note = "forget-gate bias 0 here (bias_ih carries the 1)"


register_handler(nn.RNNBase, handle_rnn)
