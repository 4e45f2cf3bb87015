"""The handler of weighted layers: Linear, Conv, ConvTranspose and transformers' Conv1D."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from initlab import schemes
from initlab.fans import Fans, compute_fans
from initlab.model.chain import CenteringBias
from initlab.model.classify import CONV1D_CLASSES, CONVT, LAYER_TYPES, LINEAR, conv1d_types
from initlab.model.found import Found
from initlab.model.handlers.registry import register_handler
from initlab.model.handlers.reparametrized import (
    PowerIteration,
    norm_row,
    spectral_norm_hook,
    weight_norm_dim,
)
from initlab.model.plan import Fill, PlanRow
from initlab.model.policies import SchemeContext, torch_fans
from initlab.model.rows import new_row, set_propagated, set_spec


def layer_fans(m: nn.Module, chunks: int) -> Fans:
    """True fans of one block of a layer's weight; a Conv1D's ``(in, out)`` is Keras's Dense layout.

    A ConvTranspose with stride ``s`` scatters each input position over ``prod(k_i)`` outputs
    ``s_i`` apart, so an output position reads about ``prod(k_i / s_i)`` taps of each input
    channel, not ``prod(k_i)``: :math:`fan_{in} = \\frac{in}{groups} \\prod_i k_i / s_i` (rounded),
    the count He et al.'s variance argument needs (the weight alone gives ``s^d`` times more, and a
    named scheme's std ``s^{d/2}`` times too small). ``fan_out`` is the weight's own."""
    shape = tuple(m.weight.shape)
    if isinstance(m, conv1d_types()):
        return compute_fans(shape, layout="keras", chunks=chunks)
    groups, transposed = getattr(m, "groups", 1), isinstance(m, CONVT)
    fans = compute_fans(shape, groups=groups, transposed=transposed, chunks=chunks)
    stride = math.prod(getattr(m, "stride", (1,))) if transposed else 1
    if stride > 1:
        fans = Fans(max(1, round(fans.fan_in / stride)), fans.fan_out, fans.receptive_field)
    return fans


def packed_by_structure(model: nn.Module) -> dict[str, int]:
    """GPT-2's packed projection -> its number of blocks: a Conv1D named ``c_attn`` whose parent
    splits its output into blocks of ``split_size`` (``q, k, v = c_attn(x).split(split_size, 2)``
    in GPT, GPT-2, ImageGPT, Decision Transformer: 3 blocks; their cross-attention: 2, K and V)."""
    conv1d = conv1d_types()
    packed: dict[str, int] = {}
    if not conv1d:
        return packed
    for q, parent in model.named_modules():
        child, size = parent._modules.get("c_attn"), getattr(parent, "split_size", None)
        weight = getattr(child, "weight", None)
        if (not isinstance(child, conv1d) or not isinstance(weight, torch.Tensor) or weight.dim() != 2
                or isinstance(size, bool) or not isinstance(size, int) or size < 1):
            continue
        if weight.shape[1] % size == 0 and weight.shape[1] // size > 1:
            packed[f"{q}.c_attn" if q else "c_attn"] = weight.shape[1] // size
    return packed


def handle_layer(ctx: SchemeContext, q: str, m: nn.Module, chunks: int | None = None,
                 params: Iterable[tuple[str, torch.Tensor]] | None = None) -> list[PlanRow]:
    """Rows of a Linear / Conv / ConvTranspose / Conv1D's ``weight`` and ``bias``; under
    :func:`torch.nn.utils.weight_norm` (``weight = g v / ||v||``) the direction ``weight_v`` is drawn
    as the weight would be and ``weight_g = ||v||`` (over every dim but the hook's), so the layer's
    weight at init is exactly that draw (:func:`~initlab.model.handlers.reparametrized.norm_row`).
    ``chunks > 1``: a packed weight (:class:`~initlab.model.rules.Packed`; ``None``: GPT-2's ``c_attn`` by
    :func:`packed_by_structure`, else 1), in blocks along its output axis (dim 1 of a Conv1D weight
    ``(in, out)``, else dim 0).

    Under ``scheme="auto"`` the weight comes from the propagated second moment of the layer's own
    input (a plain MLP or CNN gets the isometric rule, :func:`initlab.model.chain.plan_chain`), with the
    true fans of :func:`initlab.fans.compute_fans` (grouped, depthwise, transposed); bias 0.
    transformers' ``Conv1D`` (GPT, GPT-2: ``c_attn``, ``c_proj``, ``c_fc``) is planned as a Linear,
    its weight stored ``(in, out)`` (``y = x W + b``): ``fan_in = in``, ``fan_out = out`` (Keras's
    Dense layout); a ``c_attn`` whose parent splits its output into blocks of ``split_size``
    (GPT-2's attention) is packed: Q, K, V (``chunks = out / split_size``) along dim 1, each by its
    own fans. It is found through ``sys.modules``: initlab never imports transformers. A
    zero-element weight (``nn.Linear(0, n)``) gets scheme ``"empty"`` and is not drawn. A
    MultiheadAttention's ``out_proj`` is a Linear whose activation is known by structure.
    ``params``: the ``(name, tensor)`` pairs to plan (default: ``m``'s own parameters; a
    parametrized layer's ``weight`` lives in its ``parametrizations`` child)."""
    mha_out = q in ctx.mha_out
    by_structure = chunks is None and q in ctx.packed
    chunks = ctx.packed.get(q, 1) if chunks is None else chunks
    conv1d = isinstance(m, conv1d_types())
    f = ctx.found.get(q, Found("linear", None, "structure" if mha_out else "module_order"))
    if mha_out:
        f = Found("linear", None, "structure")
    fans = layer_fans(m, chunks)
    rows, norms = [], []
    wn_dim = weight_norm_dim(m) if {"weight_g", "weight_v"} <= set(m._parameters) else None
    sn_hook = spectral_norm_hook(m) if "weight_orig" in m._parameters else None
    for pname, p in (m.named_parameters(recurse=False) if params is None else params):
        if pname == "weight_g" and wn_dim is not None:
            norms.append(norm_row(f"{q}.{pname}" if q else pname, p, q, m, m.weight_v, wn_dim))
            continue
        if pname not in ("weight", "bias") and not (pname == "weight_v" and wn_dim is not None) \
                and not (pname == "weight_orig" and sn_hook is not None):
            continue
        role = "bias" if pname == "bias" else "weight"
        row = new_row(f"{q}.{pname}" if q else pname, p, q, m)
        row._axis = 1 if conv1d and role == "weight" else 0
        row.activation, row.found_by = f.activation, f.found_by
        row.input_activation = f.input_activation
        row.fan_in, row.fan_out = fans.fan_in, fans.fan_out
        if f.via:
            row.note = "via " + ", ".join(f.via)
        if role == "weight" and p.numel() == 0:  # torch's own init_ functions: a warned no-op
            row.scheme, row.spec, row.note = "empty", "nothing to draw", "zero-element weight"
        elif role == "weight":
            _plan_layer_weight(ctx, row, f, fans, chunks, conv1d, mha_out)
            if by_structure:
                row.note = "; ".join(filter(None, [row.note, f"{chunks} blocks of the parent's split_size"]))
            if pname == "weight_v":
                row.note = "; ".join(filter(None, [row.note, "weight_norm's direction v: as the weight"]))
            if pname == "weight_orig":
                row._fills.append(Fill(None, PowerIteration(sn_hook, m)))
                row.note = "; ".join(filter(None, [row.note, "spectral_norm: drawn as the weight"]))
        else:
            _plan_layer_bias(ctx, row, m, f, chunks, zero_default=mha_out or conv1d)
        rows.append(row)
    return rows + norms  # g = ||v|| after v is drawn


def _plan_layer_weight(
    ctx: SchemeContext, row: PlanRow, f: Found, fans: Fans, chunks: int, conv1d: bool, mha_out: bool = False,
) -> None:
    """A layer's weight under ``ctx.scheme``; ``fans`` are those of one of its ``chunks`` blocks."""
    per_chunk = True
    if ctx.scheme == "torch_default" and conv1d:
        set_spec(row, "torch_default", schemes.Normal(0.02))
        row.note = "as transformers' Conv1D.__init__"
        per_chunk = False
    elif ctx.scheme == "torch_default":
        set_spec(row, "torch_default", schemes.torch_default(torch_fans(row.shape)))
        row.note = "torch fans"
        per_chunk = False
    elif ctx.scheme == "auto" and row.module in ctx.chain and chunks == 1:
        role = ctx.chain[row.module]
        set_spec(row, role.scheme, role.spec, gain=role.gain)
        row.note = "; ".join(filter(None, [row.note, role.note]))
    elif (s := ctx.scale(row.module.rpartition(".")[0] if mha_out else row.module,
                         "out" if mha_out else "weight")) is not None:
        set_propagated(row, s, chunks)
    elif ctx.scheme == "keras_default" and not conv1d:  # Keras: the whole kernel, torch's fans of it
        set_spec(row, "keras_default", schemes.glorot_uniform(torch_fans(row.shape)))
        per_chunk = False
    elif ctx.scheme == "keras_default":  # (in, out) is a Keras Dense kernel; packed: per block
        set_spec(row, "keras_default", schemes.glorot_uniform(fans), chunks=chunks)
    else:
        unit = f.input_activation in LINEAR
        label, spec, g = ctx.weight_spec(fans, f.activation, f.param, unit_input=unit)
        set_spec(row, label, spec, chunks=chunks, gain=g)
        if unit and f.activation not in LINEAR and ctx.scheme != "critical":
            row.note = "; ".join(filter(None, [row.note, "input not from a nonlinearity: gain 1"]))
    row.chunks = chunks
    if chunks > 1 and per_chunk:
        row.note = "; ".join(filter(None, [row.note, f"per chunk along dim {row._axis}"]))


def _plan_layer_bias(ctx: SchemeContext, row: PlanRow, m: nn.Module, f: Found, chunks: int,
                     zero_default: bool) -> None:
    """A layer's bias under ``ctx.scheme``; ``zero_default``: the module's own init zeroes it
    (MultiheadAttention's ``out_proj``, Conv1D)."""
    if ctx.scheme == "torch_default":
        tfans = torch_fans(tuple(m.weight.shape))
        spec = schemes.Constant(0.0) if zero_default or tfans.fan_in == 0 else (
            schemes.Uniform(-1 / math.sqrt(tfans.fan_in), 1 / math.sqrt(tfans.fan_in)))
        set_spec(row, "torch_default", spec)
    elif ctx.scheme == "auto" and row.module in ctx.chain and chunks == 1 and ctx.chain[row.module].shift:
        shift = ctx.chain[row.module].shift
        row.scheme, row.spec = "centering", f"-{shift:.4g} * weight.sum(1)"
        row.std = row.bound = row.gain = None
        row._fills = [Fill(None, CenteringBias(m.weight, shift))]
    else:
        label, spec = ctx.bias_spec(f.activation, f.param)
        set_spec(row, label, spec)


for _cls in LAYER_TYPES:
    register_handler(_cls, handle_layer)
for _mod, _name in CONV1D_CLASSES:
    register_handler(f"{_mod}.{_name}", handle_layer)
