"""Typed nodes of a model's data-flow graph: :class:`Kind`, :class:`Node`, :class:`Graph`.

A graph is a list of nodes in execution order; an edge is a node's ``inputs`` (producer ids, in
argument order). Graph passes write what they compute into ``Node.meta``; nothing here changes a
model.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any


class Kind(enum.Enum):
    """What a node does to the tensors that flow through it.

    ``LAYER``: a weighted layer (Linear, ConvNd, ConvTransposeNd, HF ``Conv1D``, Embedding,
    MultiheadAttention, an RNN); ``ACTIVATION``: an elementwise nonlinearity (known by name, or a
    parameter-free module measured numerically); ``ADD`` / ``SUB``: sums (residual adds); ``CONCAT``;
    ``MUL``: elementwise product of two tensors (gating: SwiGLU, squeeze-and-excitation);
    ``SCALE``: a tensor times (or divided by) a constant; ``POOL`` (and interpolation that averages
    neighbours: bilinear, ...); ``DROPOUT``; ``NORM``
    (BatchNorm, LayerNorm, GroupNorm, InstanceNorm, RMSNorm, or their functionals);
    ``ATTENTION``: softmax-weighted averaging of values (``scaled_dot_product_attention``, or a
    ``softmax`` whose output multiplies values); ``SOFTMAX`` (``log_softmax`` too); ``MATMUL``: a
    product of two activations (``q @ k^T``); ``RESHAPE``: moves entries without changing them (view,
    permute, flatten, getitem, chunk, roll, flip, nearest upsampling; padding, which adds entries);
    ``PARAM``: a parameter or buffer read directly (``cls_token``,
    position embeddings); ``INPUT`` / ``OUTPUT``: the model's; ``CONSTANT``: a tensor made inside
    forward from no input (``torch.arange``, masks); ``OTHER``: anything else (an unknown op
    propagation cannot see through).
    """

    INPUT = "input"
    OUTPUT = "output"
    LAYER = "layer"
    ACTIVATION = "activation"
    ADD = "add"
    SUB = "sub"
    CONCAT = "concat"
    MUL = "mul"
    SCALE = "scale"
    POOL = "pool"
    DROPOUT = "dropout"
    NORM = "norm"
    ATTENTION = "attention"
    SOFTMAX = "softmax"
    MATMUL = "matmul"
    RESHAPE = "reshape"
    PARAM = "param"
    CONSTANT = "constant"
    OTHER = "other"


@dataclass
class Node:
    """One operation of the forward pass.

    Attributes:
        id: position in :attr:`Graph.nodes` (execution order).
        kind: what it does (:class:`Kind`).
        op: the operation's canonical name: ``"relu"``, ``"add"``, ``"linear"``, a module's class
            name (``"Conv2d"``, ``"GELUActivation"``), ``"scaled_dot_product_attention"``.
        inputs: ids of the nodes whose outputs this node reads, in argument order (a node may
            appear twice: ``x * x``).
        module: the qualified name of the module this node calls (``"encoder.0.fc1"``), or
            ``None`` for a function / method / placeholder.
        activation: for ``ACTIVATION`` nodes, ``(name, param)`` as :func:`initlab.gains.gain`
            understands it (``("leaky_relu", 0.2)``), or ``("measured", None)`` for a
            parameter-free module initlab does not know, whose function is :attr:`fn`.
        fn: for measured activations, a callable ``Tensor -> Tensor`` that applies it
            elementwise (the module itself); for ``SCALE`` nodes the constant factor is in
            ``params["factor"]``.
        params: op-specific numbers read at trace time: ``{"factor": 0.125}`` (SCALE),
            ``{"dim": -1}`` (CONCAT, SOFTMAX), ``{"p": 0.1}`` (DROPOUT), ``{"kind": "layer_norm"}``
            (NORM), ``{"value": 1.0}`` (a scalar operand of ADD/SUB).
        shape: the output's shape when the graph was recorded on real inputs (``None`` from fx
            without shape propagation), the first output's for multi-output ops.
        meta: what graph passes computed (e.g. ``meta["moments"]``); passes only write here.
    """

    id: int
    kind: Kind
    op: str
    inputs: list[int] = field(default_factory=list)
    module: str | None = None
    activation: tuple[str, float | None] | None = None
    fn: Callable[[Any], Any] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    shape: tuple[int, ...] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Graph:
    """A model's data-flow graph.

    Attributes:
        nodes: every node, in execution order (``nodes[i].id == i``).
        method: how it was built: ``"fx"`` (``torch.fx`` symbolic trace) or ``"recorded"`` (one
            real forward on example inputs, hooks + ``TorchFunctionMode``).
        reason: why fx was not used (the tracing error), ``None`` for fx.
        inputs_from: where the example inputs came from (the recorded forward's, or those fx's
            shape propagation ran on): ``"given"``, or how they were built (``"Linear
            in_features=784"``, ``"model.dummy_inputs"``); ``None`` when none were used; given
            inputs that do not fit the forward: :data:`initlab.graph.trace.UNFIT_INPUTS` and why.
    """

    nodes: list[Node] = field(default_factory=list)
    method: str = "fx"
    reason: str | None = None
    inputs_from: str | None = None

    def add(self, kind: Kind, op: str, inputs: list[int] | None = None, **kw: Any) -> Node:
        """Append a node (its id is its position) and return it."""
        node = Node(len(self.nodes), kind, op, list(inputs or []), **kw)
        self.nodes.append(node)
        return node

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def __getitem__(self, i: int) -> Node:
        return self.nodes[i]

    def fresh(self) -> Graph:
        """A copy whose nodes have empty ``meta`` (each pass writes its own), sharing nothing
        mutable with this graph but the measured functions."""
        nodes = [Node(n.id, n.kind, n.op, list(n.inputs), n.module, n.activation, n.fn, dict(n.params),
                      n.shape) for n in self.nodes]
        return Graph(nodes, self.method, self.reason, self.inputs_from)

    def users(self, i: int) -> list[Node]:
        """The nodes that read node ``i``'s output, in execution order."""
        return [n for n in self.nodes if i in n.inputs]

    def module_nodes(self, qualname: str) -> list[Node]:
        """Every call of the module ``qualname`` (several for a module called more than once)."""
        return [n for n in self.nodes if n.module == qualname]

    def of_kind(self, *kinds: Kind) -> list[Node]:
        """The nodes of the given kinds, in execution order."""
        return [n for n in self.nodes if n.kind in kinds]
