"""Questions about a :class:`Graph`: who produces and consumes a node's tensor, which
nonlinearity consumes or feeds a layer, where the residual branches are. Small named functions;
none changes the graph.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from initlab.graph.nodes import Graph, Kind, Node

__all__ = [
    "Nonlinearity",
    "Residual",
    "PASS",
    "CONSUMER_PASS",
    "producers",
    "producer_layers",
    "consumers",
    "consuming_activation",
    "feeding_activation",
    "swish",
    "residual_adds",
    "layers",
    "ancestors",
]

#: Kinds that only move or drop entries: walked through by :func:`producers` / :func:`consumers`.
PASS: frozenset[Kind] = frozenset({Kind.RESHAPE, Kind.DROPOUT, Kind.POOL})
#: Kinds walked through from a layer to the nonlinearity that consumes its output: shape- and
#: scale-free nodes, residual sums and concatenations, and norms (they re-standardise, so the
#: weight's scale cancels: ``conv -> bn -> relu`` takes the ReLU's gain, as torchvision does).
CONSUMER_PASS: frozenset[Kind] = PASS | {Kind.ADD, Kind.CONCAT, Kind.NORM}
#: Backwards from a layer to the nonlinearity that fed it: the same, but a norm stops the walk
#: (its output has unit second moment: gain 1).
_FEEDER_PASS: frozenset[Kind] = PASS | {Kind.ADD, Kind.CONCAT}
_GATES_TO_SWISH = {"sigmoid": "silu", "hardsigmoid": "hardswish"}


@dataclass(frozen=True)
class Nonlinearity:
    """The nonlinearity found by a walk.

    Attributes:
        node: the ``ACTIVATION`` node, or the ``MUL`` of a hand-written swish (``x * sigmoid(x)``).
        activation: ``(name, param)`` for :func:`initlab.gains.gain` (``("silu", None)`` for a
            hand-written swish), or ``("measured", None)`` with the function in ``node.fn``.
        via: ids of the pass-through nodes between the start and ``node``, in walk order.
    """

    node: Node
    activation: tuple[str, float | None]
    via: tuple[int, ...] = ()


@dataclass(frozen=True)
class Residual:
    """One residual sum ``skip + branch``.

    Attributes:
        add: the ``ADD`` node's id.
        skip, branch: ids of its two inputs: ``skip`` is the shortcut, ``branch`` the residual branch.
        fork: the node both paths start from (``== skip`` for an identity shortcut).
        layers: ids of the ``LAYER`` nodes on the branch (between ``fork`` and ``branch``).
        skip_layers: ids of the ``LAYER`` nodes on the shortcut (a projection shortcut), else ``()``.
    """

    add: int
    skip: int
    branch: int
    fork: int
    layers: tuple[int, ...]
    skip_layers: tuple[int, ...] = ()


def _walk(g: Graph, start: int, through: frozenset[Kind], forward: bool) -> list[int]:
    """The first nodes outside ``through`` reached from ``start`` (breadth first, each once)."""
    step = (lambda n: [u.id for u in g.users(n)]) if forward else (lambda n: list(g[n].inputs))
    seen, found = {start}, []
    queue = deque(step(start))
    while queue:
        i = queue.popleft()
        if i in seen:
            continue
        seen.add(i)
        if g[i].kind in through:
            queue.extend(step(i) if forward else g[i].inputs[:1])
        else:
            found.append(i)
    return found


def producers(g: Graph, i: int) -> list[Node]:
    """The nodes that produce node ``i``'s input, looking back through reshapes, dropout and
    pooling (:data:`PASS`; through each one's data input, its first)."""
    return [g[j] for j in _walk(g, i, PASS, forward=False)]


def producer_layers(g: Graph, i: int) -> list[Node]:
    """The ``LAYER`` nodes among :func:`producers`."""
    return [n for n in producers(g, i) if n.kind is Kind.LAYER]


def consumers(g: Graph, i: int) -> list[Node]:
    """The nodes that consume node ``i``'s output, looking through reshapes, dropout and pooling."""
    return [g[j] for j in _walk(g, i, PASS, forward=True)]


def swish(g: Graph, i: int) -> str | None:
    """``"silu"`` / ``"hardswish"`` when node ``i`` is ``x * sigmoid(x)`` / ``x * hardsigmoid(x)``
    (Swish written by hand, as EfficientNet and MobileNetV3 code does), else ``None``."""
    node = g[i]
    if node.kind is not Kind.MUL or len(node.inputs) != 2:
        return None
    a, b = node.inputs
    for gate, x in ((a, b), (b, a)):
        act = g[gate].activation
        if g[gate].kind is Kind.ACTIVATION and act and act[0] in _GATES_TO_SWISH and x in g[gate].inputs[:1]:
            return _GATES_TO_SWISH[act[0]]
    return None


def _search(g: Graph, start: int, through: frozenset[Kind], forward: bool) -> Nonlinearity | None:
    seen = {start}
    first = [u.id for u in g.users(start)] if forward else list(g[start].inputs)
    queue: deque[tuple[int, tuple[int, ...]]] = deque((j, ()) for j in first)
    while queue:
        i, via = queue.popleft()
        if i in seen:
            continue
        seen.add(i)
        node = g[i]
        if node.kind is Kind.ACTIVATION:
            users = [u.id for u in g.users(i)] if forward else []
            made = next(((u, w) for u in users if (w := swish(g, u))), None)
            if made is not None:
                return Nonlinearity(g[made[0]], (made[1], None), via)
            return Nonlinearity(node, node.activation or ("measured", None), via)
        if not forward and (made := swish(g, i)):
            return Nonlinearity(node, (made, None), via)
        if node.kind in through:
            nxt: Iterable[int] = [u.id for u in g.users(i)] if forward else node.inputs
            queue.extend((j, (*via, i)) for j in nxt)
    return None


def consuming_activation(g: Graph, i: int) -> Nonlinearity | None:
    """The nonlinearity that consumes node ``i``'s output (a layer's: its pre-activation), or
    ``None`` (nothing does: a head, an attention projection).

    Breadth first through :data:`CONSUMER_PASS` (dropout, identity, reshapes, pooling, residual
    adds, concatenations, norms) to the first ``ACTIVATION``; ``sigmoid(x)`` whose output multiplies
    ``x`` is reported as the ``silu`` it is. A product (gating), another layer, attention or any
    other op ends the walk. The gain convention of :func:`torch.nn.init.calculate_gain`.
    """
    return _search(g, i, CONSUMER_PASS, forward=True)


def feeding_activation(g: Graph, i: int) -> Nonlinearity | None:
    """The nonlinearity that produced node ``i``'s input, or ``None`` (the model's input, a norm's
    output, another layer's, any other op): the same walk as :func:`consuming_activation`,
    backwards, except that a norm stops it (it re-standardises: gain 1)."""
    return _search(g, i, _FEEDER_PASS, forward=False)


def ancestors(g: Graph) -> list[int]:
    """For each node, a bitset (``int``) of the ids of every node its output depends on."""
    anc = [0] * len(g)
    for n in g:
        for j in n.inputs:
            anc[n.id] |= anc[j] | (1 << j)
    return anc


def _ids(bits: int) -> list[int]:
    out, j = [], 0
    while bits:
        if bits & 1:
            out.append(j)
        bits >>= 1
        j += 1
    return out


def residual_adds(g: Graph) -> list[Residual]:
    """The residual sums of ``g``: ``ADD`` nodes with two distinct tensor inputs whose paths split
    at a common ancestor (the *fork*).

    * One input is an ancestor of the other: it is the identity shortcut (``skip``, ``fork ==
      skip``), the other is the branch.
    * Otherwise (a projection shortcut, ResNet's ``downsample``) the fork is their latest common
      ancestor and the input with fewer layers since the fork is the skip. Common ancestors that no
      model input reaches (parameters, ``torch.arange``) do not count, so sums of unrelated tensors
      (token + position embeddings) are not residual; nor is a sum with no layer on the branch
      (rotary embeddings' ``q * cos + rot(q) * sin``).

    ``layers`` lists the weighted layers on the branch: every ``LAYER`` node that depends on the
    fork and that the branch input depends on.
    """
    anc = ancestors(g)
    inputs = sum(1 << n.id for n in g.of_kind(Kind.INPUT))
    data = {n.id for n in g if n.kind is Kind.INPUT or anc[n.id] & inputs}  # an input reaches it
    out: list[Residual] = []
    for n in g.of_kind(Kind.ADD):
        if len(n.inputs) != 2 or n.inputs[0] == n.inputs[1]:
            continue
        a, b = n.inputs
        if anc[b] >> a & 1 or anc[a] >> b & 1:
            skip, branch = (a, b) if anc[b] >> a & 1 else (b, a)
            fork = skip
        else:
            common = [j for j in _ids(anc[a] & anc[b]) if j in data]
            if not common:
                continue
            fork = max(common)
            skip, branch = sorted((a, b), key=lambda x: len(_between(g, anc, fork, x)))
            if not _between(g, anc, fork, branch):  # two layer-free paths: rotary embedding, not residual
                continue
        out.append(Residual(n.id, skip, branch, fork, _between(g, anc, fork, branch),
                            _between(g, anc, fork, skip) if fork != skip else ()))
    return out


def _between(g: Graph, anc: list[int], fork: int, end: int) -> tuple[int, ...]:
    """``LAYER`` nodes that depend on ``fork`` and that ``end`` depends on (``end`` included)."""
    on = [j for j in (*_ids(anc[end]), end) if j != fork and anc[j] >> fork & 1]
    return tuple(j for j in on if g[j].kind is Kind.LAYER)


def layers(g: Graph) -> dict[str, list[Node]]:
    """``{qualified name: [its LAYER nodes]}`` for every weighted module call (a module called
    twice has two nodes), in execution order; functional layers (``F.linear``) have no module and
    are left out."""
    out: dict[str, list[Node]] = {}
    for n in g.of_kind(Kind.LAYER):
        if n.module is not None:
            out.setdefault(n.module, []).append(n)
    return out
