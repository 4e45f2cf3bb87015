"""The variables of each Keras layer family and how to read them: one :class:`Slot` per variable, with
its kernel layout (true fans), its packed blocks and the graph call that computes with it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import keras

from initlab.keras.layouts import KernelLayout, kernel_layout

__all__ = ["Slot", "layer_slots", "walk_layers", "call_key", "RNN_GATES", "FAMILIES"]

#: Keras's gate order in a packed recurrent kernel (the last axis): LSTM ``i, f, c, o`` (torch's), GRU
#: ``z, r, h`` (torch: ``r, z, n``), SimpleRNN one block.
RNN_GATES: dict[str, tuple[str, ...]] = {
    "LSTM": ("i", "f", "c", "o"), "GRU": ("z", "r", "h"), "SimpleRNN": ("h",),
}


@dataclass(frozen=True)
class Slot:
    """One variable of a layer.

    Attributes:
        variable: the Keras ``Variable``. role: ``"kernel"``, ``"depthwise_kernel"``,
            ``"pointwise_kernel"``, ``"recurrent_kernel"``, ``"bias"``, ``"embeddings"``, ``"gamma"``,
            ``"beta"``.
        layout: how to read a kernel (``None`` for a vector: bias, gamma, beta).
        call: the part of the layer's graph call it belongs to (:class:`~initlab.keras.graph.WeightedCall`
            ``part``: ``"kernel"``, ``"depthwise_kernel"``, ``"pointwise_kernel"``, ``"cell"``,
            ``"embeddings"``); ``None`` for a norm.
        gates: packed gate blocks along the last axis (LSTM 4, GRU 3), else 1.
        owner: the sublayer that owns the variable (a ``Bidirectional``'s forward or backward RNN),
            ``None`` for the layer itself.
    """

    variable: Any
    role: str
    layout: KernelLayout | None
    call: str | None
    gates: int = 1
    owner: Any = None


def _vector(var: Any, role: str, call: str | None, gates: int = 1, owner: Any = None) -> list[Slot]:
    return [] if var is None else [Slot(var, role, None, call, gates, owner)]


def _dense(layer: Any) -> list[Slot]:
    return [Slot(layer.kernel, "kernel", kernel_layout("keras"), "kernel"),
            *_vector(layer.bias, "bias", "kernel")]


def _einsum(layer: Any) -> list[Slot]:
    lay = kernel_layout("einsum", equation=layer.equation)
    return [Slot(layer.kernel, "kernel", lay, "kernel"), *_vector(layer.bias, "bias", "kernel")]


def _conv(layer: Any) -> list[Slot]:
    lay = kernel_layout("keras", groups=int(getattr(layer, "groups", 1) or 1))
    return [Slot(layer.kernel, "kernel", lay, "kernel"), *_vector(layer.bias, "bias", "kernel")]


def _depthwise(layer: Any) -> list[Slot]:
    return [Slot(layer.kernel, "kernel", kernel_layout("keras_depthwise"), "kernel"),
            *_vector(layer.bias, "bias", "kernel")]


def _separable(layer: Any) -> list[Slot]:
    return [Slot(layer.depthwise_kernel, "depthwise_kernel", kernel_layout("keras_depthwise"),
                 "depthwise_kernel"),
            Slot(layer.pointwise_kernel, "pointwise_kernel", kernel_layout("keras"), "pointwise_kernel"),
            *_vector(layer.bias, "bias", "pointwise_kernel")]


def _transposed(layer: Any) -> list[Slot]:
    lay = kernel_layout("keras_transposed", strides=tuple(layer.strides))
    return [Slot(layer.kernel, "kernel", lay, "kernel"), *_vector(layer.bias, "bias", "kernel")]


def _rnn(layer: Any, owner: Any = None) -> list[Slot]:
    cell, k = layer.cell, len(RNN_GATES[type(layer).__name__])
    per_gate = kernel_layout("keras", chunks=k)
    return [Slot(cell.kernel, "kernel", per_gate, "cell", k, owner),
            Slot(cell.recurrent_kernel, "recurrent_kernel", per_gate, "cell", k, owner),
            *_vector(getattr(cell, "bias", None), "bias", "cell", k, owner)]


def _bidirectional(layer: Any) -> list[Slot]:
    """Both directions' RNNs, each as its own (the wrapper's graph call is not propagated)."""
    forward, backward = layer.forward_layer, layer.backward_layer
    return [*_rnn(forward, forward), *_rnn(backward, backward)]


def _embedding(layer: Any) -> list[Slot]:
    return [Slot(layer.embeddings, "embeddings", None, "embeddings")]


def _norm(layer: Any) -> list[Slot]:
    return [*_vector(getattr(layer, "gamma", None), "gamma", None),
            *_vector(getattr(layer, "beta", None), "beta", None)]


#: Keras class name (looked up through the MRO) -> the slots of a built layer of that family.
FAMILIES: dict[str, Callable[[Any], list[Slot]]] = {
    "Dense": _dense, "EinsumDense": _einsum, "BaseConv": _conv, "BaseDepthwiseConv": _depthwise,
    "BaseSeparableConv": _separable, "BaseConvTranspose": _transposed, "LSTM": _rnn, "GRU": _rnn,
    "SimpleRNN": _rnn, "Bidirectional": _bidirectional, "Embedding": _embedding,
    "BatchNormalization": _norm, "LayerNormalization": _norm, "GroupNormalization": _norm,
    "RMSNormalization": _norm,
}


def layer_slots(layer: Any) -> list[Slot] | None:
    """The :class:`Slot` of each variable ``layer`` has, or ``None`` for a family initlab does not plan.

    >>> import keras
    >>> d = keras.layers.Dense(3); d.build((None, 4))
    >>> [(s.role, s.layout.name if s.layout else None) for s in layer_slots(d)]
    [('kernel', 'keras'), ('bias', None)]
    """
    family = next((FAMILIES[c.__name__] for c in type(layer).__mro__ if c.__name__ in FAMILIES), None)
    return None if family is None else family(layer)


def call_key(layer: Any, part: str | None = "kernel") -> str:
    """The key of ``layer``'s graph call that computes with ``part`` (its path, unique in the model even
    when nested models reuse a name; ``"path:pointwise_kernel"`` for the second call of a separable conv)."""
    base = getattr(layer, "path", None) or layer.name
    return base if part in ("kernel", "cell", "embeddings", None) else f"{base}:{part}"


def walk_layers(model: Any) -> Iterator[Any]:
    """Every layer of ``model`` that is not itself a model, depth first (nested models' layers in place)."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from walk_layers(layer)
        else:
            yield layer
