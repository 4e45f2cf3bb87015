"""A built Keras model as initlab's data-flow :class:`~initlab.graph.Graph`, so the graph level's
questions (consuming activation, residual adds) and moment propagation run on it unchanged.

Sequential and functional models are walked through their Keras graph (``_nodes_by_depth``, in
Keras's execution order); a nested model is walked inside its caller. Each weighted layer call is one
``LAYER`` node (a ``SeparableConv`` two: depthwise, then pointwise), followed by an ``ACTIVATION``
node for its ``activation`` argument; activation layers and ``keras.ops`` activations are
``ACTIVATION`` nodes; merges, norms, pools, dropout and reshapes get their kinds. Shapes are recorded
in torch's layout (batch 1; a channels-last tensor of rank >= 3 as ``(N, C, *positions)``), so the
propagation counts zero padding, strides and spatial profiles as for torch
(:func:`initlab.graph.spatial.conv_geometry`); a recurrent layer reads its input through a layout
``RESHAPE`` back to ``(N, steps, features)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import keras

from initlab.errors import InitlabError
from initlab.graph import Graph, Kind
from initlab.keras import activations as acts
from initlab.keras.kernels import call_key, has_graph, layer_keys, walk_layers

__all__ = ["WeightedCall", "KerasGraph", "keras_graph", "data_format", "layer_registry_names",
           "subclassed_message"]


@dataclass(frozen=True)
class WeightedCall:
    """One ``LAYER`` node: the Keras ``layer`` and which of its kernels (``part``: ``"kernel"``,
    ``"depthwise_kernel"``, ``"pointwise_kernel"``, ``"cell"`` for an RNN, ``"embeddings"``)."""

    layer: Any
    part: str
    node: int


@dataclass
class KerasGraph:
    """What :func:`keras_graph` built.

    Attributes:
        graph: the :class:`~initlab.graph.Graph` (``method="keras"``).
        calls: ``LAYER`` node's ``module`` key (``"dense"``, ``"sep:pointwise_kernel"``) -> its
            :class:`WeightedCall` (a layer called twice: the first call).
        notes: what the walk could not type (``OTHER`` nodes), for the plan.
        keys: ``id(layer)`` -> its key, unique in the model (:func:`initlab.keras.kernels.layer_keys`).
    """

    graph: Graph
    calls: dict[str, WeightedCall] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    keys: dict[int, str] = field(default_factory=dict)
    channels_first: bool = False


def data_format(model: Any) -> tuple[bool, str | None]:
    """Whether ``model``'s tensors of rank >= 3 keep channels first, and a note when that is a guess: the
    ``data_format`` its layers (convs, pools, paddings; not ``Flatten``, which only reads it) declare, when
    they agree (a layer's own ``data_format="channels_first"`` wins over the global
    ``image_data_format``), else the global one."""
    formats = {f for layer in walk_layers(model) if type(layer).__name__ != "Flatten"
               and isinstance(f := getattr(layer, "data_format", None), str)}
    if len(formats) == 1:
        return formats.pop() == "channels_first", None
    glob = keras.config.image_data_format() == "channels_first"
    if not formats:
        return glob, None
    return glob, (f"layers mix channels_first and channels_last: tensors read as the global "
                  f"{keras.config.image_data_format()}")


def _keras_shape(t: Any) -> tuple[int, ...] | None:
    shape = getattr(t, "shape", None)
    if shape is None:
        return None
    return tuple(1 if d is None else int(d) for d in shape)


def _shape(t: Any, channels_first: bool) -> tuple[int, ...] | None:
    """``t``'s shape in torch's layout: batch 1, channels second when Keras keeps them last."""
    shape = _keras_shape(t)
    if shape is None or len(shape) < 3 or channels_first:
        return shape
    return (shape[0], shape[-1], *shape[1:-1])


def _keras_form(shape: tuple[int, ...] | None, channels_first: bool) -> tuple[int, ...] | None:
    """The inverse of :func:`_shape`: a torch-layout shape in Keras's layout."""
    if shape is None or len(shape) < 3 or channels_first:
        return shape
    return (shape[0], *shape[2:], shape[1])


def _torch_dim(axis: int, rank: int, channels_first: bool) -> int:
    """The torch-layout dim of Keras axis ``axis`` of a rank-``rank`` tensor (:func:`_shape`)."""
    axis %= rank
    if rank < 3 or channels_first or axis == 0:
        return axis
    return 1 if axis == rank - 1 else axis + 1


def _same_padding(n: int, k: int, s: int, d: int) -> int:
    """Torch's symmetric padding that gives Keras's ``"same"`` output ``ceil(n / s)`` (the larger half
    of Keras's asymmetric padding)."""
    total = max((math.ceil(n / s) - 1) * s + d * (k - 1) + 1 - n, 0)
    return (total + 1) // 2


def _transposed_padding(n: int, out: int, k: int, s: int, d: int) -> tuple[int, int]:
    """Torch's ``(padding, output_padding)`` that give a transposed conv's Keras output size."""
    excess = (n - 1) * s + d * (k - 1) + 1 - out
    if excess <= 0:
        return 0, -excess
    p = (excess + 1) // 2
    return p, 2 * p - excess


def _conv_params(layer: Any, in_shape: tuple[int, ...], out_shape: tuple[int, ...], transposed: bool) -> dict:
    """The torch convolution arguments :func:`initlab.graph.spatial.conv_geometry` reads (shapes in torch's
    layout)."""
    k, s, d = tuple(layer.kernel_size), tuple(layer.strides), tuple(getattr(layer, "dilation_rate", (1,) * 3))
    d = d[: len(k)] if len(d) >= len(k) else (d[0],) * len(k)
    n, out = in_shape[2:], out_shape[2:]
    params: dict[str, Any] = {"kernel_size": k, "stride": s, "dilation": d, "transposed": transposed}
    if transposed:
        pads = [_transposed_padding(*t) for t in zip(n, out, k, s, d, strict=True)]
        params.update(padding=tuple(p for p, _ in pads), output_padding=tuple(o for _, o in pads))
    elif layer.padding == "valid":
        params["padding"] = 0
    else:  # "same" and Conv1D's "causal" (the same amount of zeros, all on the left)
        params["padding"] = tuple(_same_padding(*t) for t in zip(n, k, s, d, strict=True))
    return params


class _Builder:
    """Walks a Keras model into one :class:`Graph`, node by node in Keras's execution order."""

    def __init__(self, keys: dict[int, str], channels_first: bool) -> None:
        self.kg = KerasGraph(Graph(method="keras"), keys=keys, channels_first=channels_first)
        self.g = self.kg.graph
        self.cf = channels_first

    # ---- models ------------------------------------------------------------------------------------

    def model(self, model: Any, inputs: list[int] | None) -> list[int]:
        if not has_graph(model):
            raise InitlabError(subclassed_message(model))
        fn = getattr(model, "_functional", None) if isinstance(model, keras.Sequential) else model
        by_depth = getattr(fn, "_nodes_by_depth", None)
        if fn is None or by_depth is None or not getattr(model, "built", False):
            raise InitlabError(
                f"init_model: model {model.name!r} is not built: call model.build(input_shape), or call it "
                "on a batch, before initializing it (its kernels do not exist yet)"
            )
        tensors: dict[int, int] = {}
        for i, t in enumerate(fn.inputs):
            if inputs is None:
                tensors[id(t)] = self.g.add(Kind.INPUT, f"input {i}", shape=_shape(t, self.cf)).id
            else:
                tensors[id(t)] = inputs[min(i, len(inputs) - 1)]
        for depth in sorted(by_depth, reverse=True):
            for node in by_depth[depth]:
                args = node.input_tensors
                if not node.operation or node.is_input or any(id(t) not in tensors for t in args):
                    continue
                ins = [tensors[id(t)] for t in args]
                out = self.call(node.operation, ins, _shape(args[0], self.cf) if args else None,
                                _shape(node.outputs[0], self.cf) if node.outputs else None)
                for t in node.outputs:
                    tensors[id(t)] = out
        return [tensors[id(t)] for t in fn.outputs if id(t) in tensors]

    # ---- one operation -----------------------------------------------------------------------------

    def call(self, op: Any, ins: list[int], in_shape: tuple | None, out_shape: tuple | None) -> int:
        if isinstance(op, keras.Model) and has_graph(op):
            outs = self.model(op, ins)
            return outs[0] if outs else self._other(op, ins, out_shape)
        act = acts.from_layer(op) if isinstance(op, keras.layers.Layer) else acts.from_op(op)
        if act is not None:
            return self.activation(act, ins[0], out_shape)
        handler = _HANDLERS.get(layer_registry_names(op))
        if handler is None:
            return self._other(op, ins, out_shape)
        return handler(self, op, ins, in_shape, out_shape)

    def activation(self, act: acts.KerasActivation, x: int, shape: tuple | None) -> int:
        if act.linear:
            return x
        if act.name == "softmax":
            return self.g.add(Kind.SOFTMAX, act.source, [x], params={"dim": -1}, shape=shape).id
        if act.name == "measured":
            if keras.backend.backend() != "torch":
                self.kg.notes.append(f"activation {act.source!r} is not known and can be measured only on "
                                     "the torch backend: its output is not propagated")
                return self.g.add(Kind.OTHER, act.source, [x], shape=shape).id
            return self.g.add(Kind.ACTIVATION, act.source, [x], activation=("measured", None), fn=act.fn,
                              shape=shape).id
        return self.g.add(Kind.ACTIVATION, act.name, [x], activation=(act.name, act.param), shape=shape).id

    def _other(self, op: Any, ins: list[int], shape: tuple | None) -> int:
        name = type(op).__name__
        self.kg.notes.append(f"{name} {getattr(op, 'name', '')!r}: not modelled, its output's moments "
                             "are unknown")
        return self.g.add(Kind.OTHER, name, ins, shape=shape).id

    def layer(self, layer: Any, part: str, op: str, x: int, shape: tuple | None, **params: Any) -> int:
        key = call_key(layer, part, self.kg.keys)
        node = self.g.add(Kind.LAYER, op, [x], module=key, params=params, shape=shape)
        self.kg.calls.setdefault(key, WeightedCall(layer, part, node.id))
        return node.id

    def sequence(self, x: int, keras_shape: tuple | None) -> int:
        """A layout ``RESHAPE`` back to Keras's ``(N, steps, features)`` (what a recurrent layer reads)."""
        return self.g.add(Kind.RESHAPE, "to (N, steps, features)", [x], shape=keras_shape,
                          params={"layout": True}).id


# ---- handlers, by Keras class name (looked up through the MRO) ---------------------------------------

Handler = Callable[[_Builder, Any, list[int], Any, Any], int]


def _dense(b: _Builder, layer: Any, ins: list[int], in_shape: Any, out_shape: Any) -> int:
    y = b.layer(layer, "kernel", type(layer).__name__, ins[0], out_shape)
    return b.activation(acts.from_function(getattr(layer, "activation", None)), y, out_shape)


def _conv(b: _Builder, layer: Any, ins: list[int], in_shape: Any, out_shape: Any, *, transposed: bool = False,
          part: str = "kernel") -> int:
    params = _conv_params(layer, in_shape, out_shape, transposed)
    x = ins[0]
    if part == "depthwise_kernel":  # SeparableConv: depthwise, then the 1x1 pointwise conv
        mid = (out_shape[0], in_shape[1] * layer.depth_multiplier, *out_shape[2:])
        x = b.layer(layer, "depthwise_kernel", "DepthwiseConv", x, mid, **params)
        ones = (1,) * len(params["kernel_size"])
        y = b.layer(layer, "pointwise_kernel", "PointwiseConv", x, out_shape, kernel_size=ones, stride=ones,
                    padding=0, dilation=ones, transposed=False)
    else:
        y = b.layer(layer, part, type(layer).__name__, x, out_shape, **params)
    return b.activation(acts.from_function(getattr(layer, "activation", None)), y, out_shape)


def _rnn(b: _Builder, layer: Any, ins: list[int], in_shape: Any, out_shape: Any) -> int:
    kind = type(layer).__name__
    op = {"SimpleRNN": "RNN"}.get(kind, kind)
    cell_act = acts.from_function(getattr(layer, "activation", None))
    params = {"mode": op, "num_layers": 1, "bidirectional": False, "batch_first": True, "proj_size": 0,
              "dropout": 0.0, "nonlinearity": cell_act.name}
    if op != "RNN" and cell_act.name != "tanh":
        b.kg.notes.append(f"{kind} {layer.name!r}: propagated with tanh and sigmoid gates (it uses "
                          f"{cell_act.source})")
    seq = b.sequence(ins[0], _keras_form(in_shape, b.cf))
    return b.layer(layer, "cell", op, seq, out_shape, **params)


def _embedding(b: _Builder, layer: Any, ins: list[int], in_shape: Any, out_shape: Any) -> int:
    return b.layer(layer, "embeddings", "Embedding", ins[0], out_shape)


def _norm(family: str) -> Handler:
    def handle(b: _Builder, layer: Any, ins: list[int], in_shape: Any, out_shape: Any) -> int:
        eps = float(getattr(layer, "epsilon", 0.0) or 0.0)
        return b.g.add(Kind.NORM, type(layer).__name__, ins[:1], params={"kind": family, "eps": eps},
                       shape=out_shape).id
    return handle


def _pool(b: _Builder, layer: Any, ins: list[int], in_shape: Any, out_shape: Any) -> int:
    params: dict[str, Any] = {}
    if hasattr(layer, "pool_size"):
        k, s = tuple(layer.pool_size), tuple(layer.strides or layer.pool_size)
        pad = 0 if layer.padding == "valid" else tuple(
            _same_padding(*t) for t in zip(in_shape[2:], k, s, (1,) * len(k), strict=True))
        params = {"kernel_size": k, "stride": s, "padding": pad}
    return b.g.add(Kind.POOL, type(layer).__name__, ins[:1], params=params, shape=out_shape).id


def _merge(kind: Kind, scale: bool = False) -> Handler:
    def handle(b: _Builder, layer: Any, ins: list[int], in_shape: Any, out_shape: Any) -> int:
        y = ins[0]
        for other in ins[1:]:  # Keras merges n tensors; initlab's adds and products take two
            y = b.g.add(kind, type(layer).__name__.lower(), [y, other], shape=out_shape).id
        if scale and len(ins) > 1:
            y = b.g.add(Kind.SCALE, "average", [y], params={"factor": 1.0 / len(ins)}, shape=out_shape).id
        return y
    return handle


def _concat(b: _Builder, layer: Any, ins: list[int], in_shape: Any, out_shape: Any) -> int:
    rank = len(out_shape) if out_shape is not None else 2
    dim = _torch_dim(int(getattr(layer, "axis", -1)), rank, b.cf)
    return b.g.add(Kind.CONCAT, "concatenate", ins, params={"dim": dim}, shape=out_shape).id


def _simple(kind: Kind, **params: Any) -> Handler:
    def handle(b: _Builder, layer: Any, ins: list[int], in_shape: Any, out_shape: Any) -> int:
        p = {"p": float(getattr(layer, "rate", 0.0) or 0.0)} if kind is Kind.DROPOUT else dict(params)
        if isinstance(fmt := getattr(layer, "data_format", None), str):  # a Flatten's: which order it reads
            p["data_format"] = fmt
        return b.g.add(kind, type(layer).__name__, ins[:1], params=p, shape=out_shape).id
    return handle


def _preprocessing(b: _Builder, layer: Any, ins: list[int], in_shape: Any, out_shape: Any) -> int:
    """A preprocessing layer (``Rescaling``, ``Normalization``, ``Resizing``, augmentations) that reads the
    model's input: it makes the data, which the propagation takes as standardised (a ``RESHAPE`` with
    ``params["data"]``, crossed like a layout reshape); elsewhere it is not modelled."""
    src = b.g[ins[0]] if ins else None
    if src is None or not (src.kind is Kind.INPUT or src.params.get("data")):
        return b._other(layer, ins, out_shape)
    return b.g.add(Kind.RESHAPE, type(layer).__name__, ins[:1], params={"data": True}, shape=out_shape).id


def _separable(b: _Builder, layer: Any, ins: list[int], in_shape: Any, out_shape: Any) -> int:
    return _conv(b, layer, ins, in_shape, out_shape, part="depthwise_kernel")


def _transposed(b: _Builder, layer: Any, ins: list[int], in_shape: Any, out_shape: Any) -> int:
    return _conv(b, layer, ins, in_shape, out_shape, transposed=True)


_RESHAPES = ("Flatten Reshape Permute RepeatVector Identity InputLayer ZeroPadding1D ZeroPadding2D "
             "ZeroPadding3D Cropping1D Cropping2D Cropping3D UpSampling1D UpSampling2D UpSampling3D GetItem "
             "Transpose ExpandDims Squeeze").split()
_HANDLERS: dict[str, Handler] = {
    "Dense": _dense, "EinsumDense": _dense, "BaseConv": _conv, "BaseDepthwiseConv": _conv,
    "BaseSeparableConv": _separable, "BaseConvTranspose": _transposed,
    "LSTM": _rnn, "GRU": _rnn, "SimpleRNN": _rnn, "Embedding": _embedding,
    "BatchNormalization": _norm("batch"), "LayerNormalization": _norm("layer"),
    "GroupNormalization": _norm("group"), "RMSNormalization": _norm("rms"),
    "BasePooling": _pool, "BaseGlobalPooling": _pool,
    "Add": _merge(Kind.ADD), "Subtract": _merge(Kind.SUB), "Multiply": _merge(Kind.MUL),
    "Average": _merge(Kind.ADD, scale=True), "Concatenate": _concat,
    "Dropout": _simple(Kind.DROPOUT), "GaussianDropout": _simple(Kind.DROPOUT),
    "AlphaDropout": _simple(Kind.DROPOUT), "GaussianNoise": _simple(Kind.DROPOUT),
    **{name: _simple(Kind.RESHAPE) for name in _RESHAPES},
    "DataLayer": _preprocessing, "TFDataLayer": _preprocessing,
}


def subclassed_message(model: Any) -> str:
    """The one-line error for a subclassed ``model``: what it is, and the two ways on."""
    return (f"init_model: {model.name!r} is a subclassed keras.Model ({type(model).__name__}): its call() is "
            "Python code, not a graph initlab can walk; build the same network as a functional model "
            "(keras.Model(inputs, outputs)) or a keras.Sequential, or give its layers initlab.keras "
            "initializers (kernel_initializer=initlab.keras.HeNormal(...))")


def layer_registry_names(op: Any) -> str | None:
    """The first class name in ``op``'s MRO that has a graph handler (``Conv2D`` -> ``"BaseConv"``)."""
    return next((c.__name__ for c in type(op).__mro__ if c.__name__ in _HANDLERS), None)


def keras_graph(model: Any) -> KerasGraph:
    """The :class:`KerasGraph` of a built Keras ``model`` (Sequential or functional, nested models
    included), with an ``OUTPUT`` node per model output.

    Raises:
        InitlabError: the model (or a nested one) is not built; ``model`` is a subclassed model (a nested
            one is an ``OTHER`` node, its layers left to the plan's "not in graph" rule).

    >>> import keras
    >>> net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
    ...                         keras.layers.Dense(2)])
    >>> [(n.kind.value, n.op) for n in keras_graph(net).graph]   # doctest: +NORMALIZE_WHITESPACE
    [('input', 'input 0'), ('layer', 'Dense'), ('activation', 'relu'), ('layer', 'Dense'),
     ('output', 'output 0')]
    """
    channels_first, note = data_format(model)
    b = _Builder(layer_keys(model), channels_first)
    if note:
        b.kg.notes.append(note)
    for i, out in enumerate(b.model(model, None)):
        b.g.add(Kind.OUTPUT, f"output {i}", [out], shape=b.g[out].shape)
    return b.kg
