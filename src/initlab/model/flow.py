"""The small data-flow graph activation detection builds (from fx or from a recorded forward),
its queries (the consuming and producing nonlinearity, private links, the model's input and
output), and what it says of each layer (:class:`Found`)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from initlab.model.classify import GATES_TO_SWISH, SHAPE_READS


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


class FlowGraph:
    """A small data-flow graph: nodes with a kind and their consumers."""

    def __init__(self) -> None:
        # ("layer", qualname) | ("act", name, param) | ("pass" | "norm", label) | ("other", name?)
        self.kind: list[tuple] = []
        self.users: list[list[int]] = []
        self.inputs: list[list[int]] = []
        self.elementwise: set[int] = set()  # pass nodes that keep each feature where it is (dropout)
        self.input_reshape: set[int] = set()  # flatten / view / reshape (allowed before the first layer)
        self.output_ok: set[int] = set()  # softmax / log_softmax (allowed after the last layer)

    def add(self, kind: tuple) -> int:
        self.kind.append(kind)
        self.users.append([])
        self.inputs.append([])
        return len(self.kind) - 1

    def edge(self, src: int, dst: int) -> None:
        if dst not in self.users[src]:
            self.users[src].append(dst)
            self.inputs[dst].append(src)

    def swish(self, node: int) -> str | None:
        """``"silu"`` / ``"hardswish"`` when ``node`` is ``x * sigmoid(x)`` / ``x * hardsigmoid(x)``
        (Swish written by hand, as EfficientNet and MobileNetV3 code does), else ``None``. A
        sigmoid that gates *another* tensor (squeeze-and-excitation) stays a sigmoid."""
        if self.kind[node][:2] != ("other", "mul") or len(self.inputs[node]) != 2:
            return None
        a, b = self.inputs[node]
        for gate, x in ((a, b), (b, a)):
            kind = self.kind[gate]
            if kind[0] == "act" and kind[1] in GATES_TO_SWISH and x in self.inputs[gate]:
                return GATES_TO_SWISH[kind[1]]
        return None

    def private_next(self, start: int) -> int | None:
        """The layer node that ``start``'s output reaches by a *private link*, else ``None``:
        ``layer -> [dropout | identity | flatten]* -> act -> [dropout | identity | flatten]* ->
        layer``, every node on the way having one input and one user (no branch, no residual)."""
        node, seen_act = start, False
        while True:
            if len(self.users[node]) != 1:
                return None
            node = self.users[node][0]
            kind = self.kind[node]
            if len(self.inputs[node]) != 1:
                return None
            if kind[0] == "layer":
                return node if seen_act else None
            if kind[0] == "act" and not seen_act:
                seen_act = True
            elif node not in self.elementwise:
                return None

    def reads_input(self, start: int) -> bool:
        """``start`` reads the model's only (used) input through elementwise nodes and reshapes
        (``flatten``, ``view``; a ``x.size(0)`` beside them is allowed), and nothing else reads it."""
        def users(n: int) -> list[int]:
            return [u for u in self.users[n] if not (self.kind[u][0] == "other" and self.kind[u][1:2]
                                                     and self.kind[u][1] in SHAPE_READS)]

        used_inputs = [i for i, k in enumerate(self.kind) if k[0] == "input" and any(  # fx's guard on
            self.kind[u][1:2] != ("_assert_is_none",) for u in self.users[i])]        # mask=None args
        node = start
        while self.inputs[node]:
            if len(self.inputs[node]) != 1 and node not in self.input_reshape:
                return False
            node = self.inputs[node][0]  # a reshape's tensor argument comes first
            if len(users(node)) != 1:
                return False
            if self.kind[node][0] == "input":
                return used_inputs == [node]
            if node not in self.elementwise and node not in self.input_reshape:
                return False
        return False

    def writes_output(self, start: int) -> bool:
        """``start``'s output reaches the model's output through activations, elementwise nodes
        and a softmax only, and nothing else reads it."""
        node = start
        while len(self.users[node]) == 1:
            node = self.users[node][0]
            if self.kind[node][0] == "output":
                return True
            ok = node in self.elementwise or node in self.output_ok or self.kind[node][0] == "act"
            if len(self.inputs[node]) != 1 or not ok:
                return False
        return False

    def producer(self, start: int) -> str:
        """BFS back from ``start`` through pass-through nodes to the nonlinearity that produced
        its input (the layer's ``input_activation``); a norm layer (its output has unit second
        moment: gain 1), a layer, the model input or any other op means "linear"."""
        seen = {start}
        queue: deque[int] = deque(self.inputs[start])
        while queue:
            node = queue.popleft()
            if node in seen:
                continue
            seen.add(node)
            kind = self.kind[node]
            if kind[0] == "act":
                return kind[1]
            if self.swish(node):
                return self.swish(node)
            if kind[0] == "pass":
                queue.extend(self.inputs[node])
        return "linear"

    def consumer(self, start: int) -> tuple[str, float | None, tuple[str, ...]]:
        """BFS from ``start`` through pass-through nodes to the first nonlinearity.

        Followed: the *shape- and scale-free* nodes — ``Dropout*``, ``Identity``, ``Flatten``,
        reshapes (``view``, ``reshape``, ``permute``, ``transpose``, ``flatten``, ``contiguous``,
        ``squeeze``, ``chunk``, ``[...]``), residual ``add``/``cat``, pooling (and ``mean``) — and
        **norm layers** (``BatchNorm*``, ``LayerNorm``, ``GroupNorm``, ``InstanceNorm*``,
        ``RMSNorm``): they re-standardise their input, so the weight's scale cancels in the forward
        pass at init, and following through them gives the usual choice for ``conv -> bn -> relu``
        (He, as torchvision does). Modules (``nn.ReLU``, ``nn.GELU``, ...), functionals
        (``F.relu``, ``torch.tanh``, ``F.gelu(approximate="tanh")``, ``F.leaky_relu`` with its
        slope) and methods (``x.sigmoid()``, ``x.relu_()``) count as nonlinearities. A product
        (gating), another layer, or any other op ends the search: ``"linear"`` (gain 1)."""
        seen = {start}
        queue: deque[tuple[int, tuple[str, ...]]] = deque((u, ()) for u in self.users[start])
        while queue:
            node, via = queue.popleft()
            if node in seen:
                continue
            seen.add(node)
            kind = self.kind[node]
            if kind[0] == "act":
                swish = next((w for u in self.users[node] if (w := self.swish(u))), None)
                if swish is not None:
                    return swish, None, via
                return kind[1], kind[2], via
            if kind[0] in ("pass", "norm"):
                queue.extend((u, (*via, kind[1])) for u in self.users[node])
        return "linear", None, ()


def resolve_layers(g: FlowGraph, layers: dict[str, list[int]], how: str) -> dict[str, Found]:
    """What ``g`` says of each layer (``layers``: qualified name -> its call nodes), found ``how``."""
    found: dict[str, Found] = {}
    name_of = {i: name for name, nodes in layers.items() for i in nodes}
    for name, nodes in layers.items():
        results = [g.consumer(i) for i in nodes]  # a module called several times: first with an act
        act, param, via = next((r for r in results if r[0] != "linear"), results[0])
        nxt = g.private_next(nodes[0]) if len(nodes) == 1 else None
        nxt_name = name_of.get(nxt) if nxt is not None and len(layers[name_of[nxt]]) == 1 else None
        one = len(nodes) == 1
        found[name] = Found(act, param, how, via, g.producer(nodes[0]), nxt_name,
                             one and g.reads_input(nodes[0]), one and g.writes_output(nodes[0]))
    return found
