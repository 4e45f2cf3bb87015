"""Forward hooks that change what a module computes, made visible in the graph.

A hook on a leaf module runs inside the module's call, so neither torch.fx (which does not call a
leaf) nor the recorded forward (which records a leaf as one op) sees what it does. Hooks that
declare their effect get nodes of their own after :func:`~initlab.graph.trace` builds the graph:
a hook function with an attribute :data:`GRAPH_OPS` (a tuple of :class:`HookOp`) multiplies
(``"scale"``) or shifts (``"shift"``) the tensor by a scalar parameter of the module it is
registered on. initlab's transforms declare theirs (SkipInit gates: ``output * skip_gate``; Fixup:
``(x + fixup_bias_in)`` before the module, ``output * fixup_scale + fixup_bias_out`` after it), so
the propagated moments, the plans and the probe's predictions see a gate at 0 as the 0 it is.

Inserted nodes: ``SCALE`` (``params["factor"]``) or ``ADD`` of a scalar (``params["value"]``), each
with ``params["parameter"]`` (the parameter's qualified name) and ``params["hook_of"]`` (the
module's qualified name); their values are read when the graph is traced.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from torch import nn

from initlab.graph.nodes import Graph, Kind, Node

__all__ = ["GRAPH_OPS", "HookOp", "declare_graph_ops", "expose_hook_ops", "module_output_node"]

#: The attribute of a hook function that declares its effect on the tensor it maps.
GRAPH_OPS = "initlab_graph_ops"


@dataclass(frozen=True)
class HookOp:
    """One elementwise op a hook applies: ``op`` ``"scale"`` (``t * p``) or ``"shift"`` (``t + p``),
    ``p`` the module's 0-dim parameter named ``parameter`` (skipped when the module has none)."""

    op: str
    parameter: str

    def __post_init__(self) -> None:
        if self.op not in ("scale", "shift"):
            raise ValueError(f"HookOp op={self.op!r} is unknown: use 'scale' or 'shift'")


def declare_graph_ops(hook, *ops: HookOp):
    """Mark ``hook`` (a forward or forward-pre hook function) as applying ``ops`` in order; returns it."""
    setattr(hook, GRAPH_OPS, tuple(ops))
    return hook


def _scalar(module: nn.Module, name: str) -> float | None:
    p = module._parameters.get(name)
    if p is None or p.numel() != 1:
        return None
    return float(p.detach().reshape(()).item())


def _ops(module: nn.Module, hooks: Iterable) -> list[tuple[HookOp, float]]:
    out = []
    for hook in hooks:
        for op in getattr(hook, GRAPH_OPS, ()):
            value = _scalar(module, op.parameter)
            if value is not None:
                out.append((op, value))
    return out


def _name(qualname: str, op: HookOp) -> str:
    return f"{qualname}.{op.parameter}" if qualname else op.parameter


def _has_pre(g: Graph, node: Node, op: HookOp) -> bool:
    """Whether ``g`` already holds this pre-hook op of ``node``: inserted before (a second pass), or
    recorded (a pre-hook registered before the recorder's runs outside the leaf's call, so the
    recorded forward saw ``x + parameter``)."""
    if not node.inputs:
        return False
    up, name = g[node.inputs[0]], _name(node.module or "", op)
    return up.params.get("parameter") == name or up.kind in (Kind.ADD, Kind.MUL, Kind.SCALE) and any(
        g[j].kind is Kind.PARAM and g[j].params.get("name") == name for j in up.inputs)


def _has_post(g: Graph, node: Node) -> set[str]:
    """The parameters of the hook ops already inserted after ``node`` (by an earlier pass)."""
    names, i = set(), node.id
    while i + 1 < len(g) and g[i + 1].params.get("hook_of") == node.module and g[i + 1].inputs == [i]:
        i += 1
        names.add(g[i].params["parameter"])
    return names


def expose_hook_ops(model: nn.Module, g: Graph) -> Graph:
    """``g`` with a node for every declared hook op (see the module docstring), ids renumbered in
    execution order; ``g`` itself when there is nothing to insert (no such hook, or every op is in
    ``g`` already: a second pass changes nothing).

    Shapes: an inserted node has the shape of the tensor it maps. Values: read now (a gate at 0 is a
    ``SCALE`` by 0.0).
    """
    modules = dict(model.named_modules())
    plan: dict[int, tuple[list, list]] = {}
    for n in g:
        m = modules.get(n.module) if n.module is not None and n.kind is not Kind.OUTPUT else None
        if m is None or not (m._forward_pre_hooks or m._forward_hooks):
            continue
        pre = [(op, v) for op, v in _ops(m, m._forward_pre_hooks.values()) if not _has_pre(g, n, op)]
        done = _has_post(g, n)
        post = [(op, v) for op, v in _ops(m, m._forward_hooks.values()) if _name(n.module, op) not in done]
        if pre or post:
            plan[n.id] = (pre, post)
    if not plan:
        return g
    out = Graph(method=g.method, reason=g.reason, inputs_from=g.inputs_from)
    new: dict[int, int] = {}

    def insert(op: HookOp, value: float, src: int, qualname: str, shape) -> int:
        common = {"parameter": _name(qualname, op), "hook_of": qualname}
        if op.op == "scale":
            return out.add(Kind.SCALE, "mul", [src], params={"factor": value, **common}, shape=shape).id
        return out.add(Kind.ADD, "add", [src], params={"value": value, **common}, shape=shape).id

    for n in g:
        inputs = [new[i] for i in n.inputs]
        pre, post = plan.get(n.id, ((), ()))
        if pre and inputs:
            shape = g[n.inputs[0]].shape
            for op, value in pre:
                inputs[0] = insert(op, value, inputs[0], n.module, shape)
        node = out.add(n.kind, n.op, inputs, module=n.module, activation=n.activation, fn=n.fn,
                       params=dict(n.params), shape=n.shape)
        node.meta.update(n.meta)
        last = node.id
        for op, value in post:
            last = insert(op, value, last, n.module, n.shape)
        new[n.id] = last
    return out


def module_output_node(g: Graph, i: int) -> int:
    """The node whose output is what module node ``i``'s caller receives: ``i``, or the last of the
    hook ops :func:`expose_hook_ops` inserted after it."""
    module = g[i].module
    while i + 1 < len(g) and g[i + 1].params.get("hook_of") == module and g[i + 1].inputs == [i]:
        i += 1
    return i
