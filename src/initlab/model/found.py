"""What activation detection says of each layer (:class:`Found`), read from the model's one
data-flow graph (:func:`from_graph`), or guessed from module order and structure when no graph
could be built (:func:`from_module_order`)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from initlab.graph import Graph, Kind, Node, consuming_activation, feeding_activation, layers
from initlab.graph.queries import Nonlinearity
from initlab.graph.vocab import classify_function, classify_module, is_leaf
from initlab.model.classify import layer_types

__all__ = ["Found", "from_graph", "from_module_order"]


@dataclass(frozen=True)
class Found:
    """What detection found for one layer: the nonlinearity that consumes its output, the one that
    produced its input, and where it sits in a plain chain."""

    activation: str  # "linear" when nothing consumes the output
    param: float | None
    found_by: str
    via: tuple[str, ...] = ()
    input_activation: str = "linear"  # the nonlinearity that produced the layer's input
    next_layer: str | None = None  # the layer a private link ``-> phi ->`` feeds (fx only)
    reads_input: bool = False  # reads the model's only input, which nothing else reads (fx only)
    writes_output: bool = False  # its output reaches the model's output and nothing else (fx only)
    next_via: tuple[str, ...] = ()  # the averages over positions and flattens the private link crosses


#: Ops that keep every feature where it is: a private link may cross them.
_ELEMENTWISE_OPS = frozenset({"Identity", "contiguous", "clone", "to", "float", "type_as", "detach"})
#: Reshapes allowed between the model's input and a plain chain's first layer (``x.view(-1, 784)``).
_INPUT_RESHAPES = frozenset({"Flatten", "flatten", "view", "reshape"})
#: Reshapes a conv's private link may cross into a Linear head (they keep the channel-major order).
_HEAD_RESHAPES = _INPUT_RESHAPES | {"squeeze"}


def _gain_name(activation: tuple[str, float | None] | None, op: str) -> tuple[str, float | None] | None:
    """``(name, param)`` of an activation the gain table knows; an asymmetric ``Hardtanh`` (``op``)
    is ``("hardtanh", None)`` (its parameters unread); any other measured one ``None``."""
    if activation is None:
        return None
    if activation[0] != "measured":
        return activation
    return ("hardtanh", None) if op.lower() == "hardtanh" else None


def _named(nl: Nonlinearity | None) -> tuple[str, float | None] | None:
    """:func:`_gain_name` of the nonlinearity a graph walk found."""
    return None if nl is None else _gain_name(nl.activation, nl.node.op)


def _label(node: Node) -> str:
    return node.module if node.module is not None else node.op


def _elementwise(node: Node) -> bool:
    return node.kind is Kind.DROPOUT or (node.kind is Kind.RESHAPE and node.op in _ELEMENTWISE_OPS)


def _head_op(g: Graph, node: Node) -> bool:
    """``node`` averages each channel over positions (an avg pool, ``mean`` over dims >= 2) or
    reshapes without reordering (``flatten``, ``view``, ``reshape``, ``squeeze``) and keeps the batch
    dim: a conv's link into a Linear head may cross it (fx shapes needed)."""
    x = g[node.inputs[0]].shape
    if node.shape is None or x is None or not node.shape or node.shape[0] != x[0]:
        return False
    if node.kind is Kind.RESHAPE:
        return node.op in _HEAD_RESHAPES
    if node.kind is not Kind.POOL or node.params.get("type") != "avg":
        return False
    if "dim" not in node.params:  # AvgPool / AdaptiveAvgPool, avg_pool{1,2,3}d: windows per channel
        return True
    dims = node.params["dim"]
    dims = (dims,) if isinstance(dims, int) else dims
    return bool(dims) and all(isinstance(d, int) and d % len(x) >= 2 for d in dims)


def _private_next(g: Graph, start: int) -> tuple[int, tuple[str, ...]] | None:
    """The layer node ``start``'s output reaches by a *private link*, else ``None``: ``layer ->
    [dropout | identity]* -> act -> [dropout | identity | head op]* -> layer``, every node on the
    way having one input and one user (no branch, no residual); with the head ops crossed
    (:func:`_head_op`: average pools and flattens, the next layer then reading a 2-D tensor)."""
    node, seen_act, via = start, False, []
    while True:
        users = g.users(node)
        if len(users) != 1 or len(users[0].inputs) != 1:
            return None
        node = users[0].id
        kind = g[node].kind
        if kind is Kind.LAYER:
            x = g[g[node].inputs[0]].shape
            return (node, tuple(via)) if seen_act and (not via or (x is not None and len(x) == 2)) else None
        if kind is Kind.ACTIVATION and not seen_act:
            seen_act = True
        elif seen_act and _head_op(g, g[node]):
            via.append(g[node].op)
        elif not _elementwise(g[node]):
            return None


def _reads_input(g: Graph, start: int) -> bool:
    """``start`` reads the model's only used input through elementwise nodes and reshapes
    (``flatten``, ``view``), and nothing else reads it."""
    used = [n.id for n in g.of_kind(Kind.INPUT) if g.users(n.id)]
    node = start
    while g[node].inputs:
        if len(g[node].inputs) != 1:
            return False
        node = g[node].inputs[0]
        if len(g.users(node)) != 1:
            return False
        if g[node].kind is Kind.INPUT:
            return used == [node]
        if not (_elementwise(g[node]) or g[node].op in _INPUT_RESHAPES):
            return False
    return False


def _writes_output(g: Graph, start: int) -> bool:
    """``start``'s output reaches the model's output through activations, elementwise nodes and a
    softmax only, and nothing else reads it."""
    node = start
    while len(users := g.users(node)) == 1:
        node = users[0].id
        if g[node].kind is Kind.OUTPUT:
            return True
        ok = _elementwise(g[node]) or g[node].kind in (Kind.SOFTMAX, Kind.ACTIVATION)
        if len(g[node].inputs) != 1 or not ok:
            return False
    return False


def from_graph(model: nn.Module, g: Graph, how: str) -> dict[str, Found]:
    """What ``g`` says of each Linear / Conv / ConvTranspose / HF ``Conv1D`` / Bilinear of ``model``, found
    ``how`` (``"fx"`` or ``"hooks"``): the consuming nonlinearity
    (:func:`~initlab.graph.consuming_activation`; a module called several times: its first call with
    one), the feeding one (:func:`~initlab.graph.feeding_activation`), and for a module called once
    its private link to the next layer and whether it reads the input / writes the output."""
    modules = dict(model.named_modules())
    kinds = (*layer_types(), nn.Bilinear)
    calls = {q: ns for q, ns in layers(g).items() if isinstance(modules.get(q), kinds)}
    name_of = {n.id: q for q, ns in calls.items() for n in ns}
    found: dict[str, Found] = {}
    for q, nodes in calls.items():
        hits = [consuming_activation(g, n.id) for n in nodes]
        hit = next((h for h in hits if _named(h) is not None), None)
        act, param = _named(hit) or ("linear", None)
        via = tuple(_label(g[i]) for i in hit.via) if hit is not None else ()
        fed = _named(feeding_activation(g, nodes[0].id))
        one = len(nodes) == 1
        nxt, nxt_via = (_private_next(g, nodes[0].id) if one else None) or (None, ())
        nxt_name = name_of.get(nxt) if nxt is not None else None
        if nxt_name is not None and len(calls[nxt_name]) != 1:
            nxt_name = None
        found[q] = Found(act, param, how, via, fed[0] if fed else "linear", nxt_name,
                         one and _reads_input(g, nodes[0].id), one and _writes_output(g, nodes[0].id),
                         nxt_via if nxt_name is not None else ())
    return found


def _module_role(m: nn.Module) -> tuple[str, tuple[str, float | None] | None]:
    """``("layer" | "act" | "pass" | "norm" | "other", activation)`` of a leaf module."""
    if isinstance(m, layer_types()):
        return "layer", None
    entry = classify_module(m)
    if entry.kind is Kind.ACTIVATION:
        named = _gain_name(entry.activation, entry.op)
        return ("act", named) if named else ("other", None)
    if entry.kind is Kind.NORM:
        return "norm", None
    if entry.kind in (Kind.DROPOUT, Kind.RESHAPE, Kind.POOL):
        return "pass", None
    return "other", None


def from_module_order(model: nn.Module) -> dict[str, Found]:
    """The guess from module order (``found_by="module_order"``): the first activation module
    registered after each layer, skipping pass-through modules and norms; then
    :func:`_from_structure` for torch's transformer layers."""
    leaves = [(q, m) for q, m in model.named_modules() if q and is_leaf(m)]
    roles = [_module_role(m) for _, m in leaves]
    found: dict[str, Found] = {}
    for i, (q, _) in enumerate(leaves):
        if roles[i][0] != "layer":
            continue
        act: tuple[str, float | None] = ("linear", None)
        via: list[str] = []
        for (q2, _), (role, named) in zip(leaves[i + 1:], roles[i + 1:], strict=True):
            if role == "act":
                act = named
                break
            if role not in ("pass", "norm"):
                break
            via.append(q2)
        before = "linear"
        for role, named in reversed(roles[:i]):
            if role == "act":
                before = named[0]
            if role != "pass":
                break
        found[q] = Found(act[0], act[1], "module_order", tuple(via) if act[0] != "linear" else (), before)
    _from_structure(model, found)
    return found


def _from_structure(model: nn.Module, found: dict[str, Found]) -> None:
    """torch's transformer layers, by their ``activation`` attribute (``found_by="structure"``):
    ``linear1 -> activation -> linear2``."""
    for q, m in model.named_modules():
        if not isinstance(m, (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)):
            continue
        fn = getattr(m, "activation", None)
        if isinstance(fn, nn.Module):
            role, act = _module_role(fn)
            act = act if role == "act" else None
        elif fn is not None:
            entry = classify_function(fn)
            act = _gain_name(entry.activation, entry.op) if entry.kind is Kind.ACTIVATION else None
        else:
            act = None
        if act is None:
            continue
        l1, l2 = (f"{q}.linear1", f"{q}.linear2") if q else ("linear1", "linear2")
        found[l1] = Found(act[0], act[1], "structure", (),
                          found[l1].input_activation if l1 in found else "linear")
        found[l2] = Found("linear", None, "structure", (), act[0])
