"""The variables of each Keras layer family and how to read them: one :class:`Slot` per variable, with
its kernel layout (true fans), its packed blocks and the graph call that computes with it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from initlab.keras.layouts import KernelLayout, kernel_layout

__all__ = ["Slot", "layer_slots", "walk_layers", "has_graph", "layer_keys", "variable_names", "call_key",
           "prelu_init", "stored", "RNN_GATES", "FAMILIES"]

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
            ``"beta"``, ``"alpha"`` (a PReLU's slope), ``"lora_a"``, ``"lora_b"``.
        layout: how to read a kernel (``None`` for a vector: bias, gamma, beta).
        call: the part of the layer's graph call it belongs to (:class:`~initlab.keras.graph.WeightedCall`
            ``part``: ``"kernel"``, ``"depthwise_kernel"``, ``"pointwise_kernel"``, ``"cell"``,
            ``"embeddings"``); ``None`` for a norm.
        gates: packed gate blocks along the last axis (LSTM 4, GRU 3), an einsum kernel's heads (its
            shared axes), else 1.
        owner: the sublayer that owns the variable (a ``Bidirectional``'s forward or backward RNN),
            ``None`` for the layer itself.
    """

    variable: Any
    role: str
    layout: KernelLayout | None
    call: str | None
    gates: int = 1
    owner: Any = None


def stored(layer: Any, name: str) -> Any:
    """``layer``'s variable ``name`` as stored: ``_kernel`` where ``kernel`` is a computed tensor (a LoRA
    adapter's ``kernel + A B``), else the attribute itself."""
    var = getattr(layer, "_" + name, None)
    return var if isinstance(var, keras.Variable) else getattr(layer, name)


def _vector(var: Any, role: str, call: str | None, gates: int = 1, owner: Any = None) -> list[Slot]:
    return [] if var is None else [Slot(var, role, None, call, gates, owner)]


def _dense(layer: Any) -> list[Slot]:
    return [Slot(stored(layer, "kernel"), "kernel", kernel_layout("keras"), "kernel"),
            *_vector(layer.bias, "bias", "kernel")]


def _einsum(layer: Any) -> list[Slot]:
    """The kernel, one block per head (shared axis) of its equation, and the bias."""
    lay = kernel_layout("einsum", equation=layer.equation)
    kernel = stored(layer, "kernel")
    heads = lay.blocks(tuple(int(d) for d in kernel.shape))
    return [Slot(kernel, "kernel", lay, "kernel", heads), *_vector(layer.bias, "bias", "kernel")]


def _conv(layer: Any) -> list[Slot]:
    lay = kernel_layout("keras", groups=int(getattr(layer, "groups", 1) or 1))
    return [Slot(stored(layer, "kernel"), "kernel", lay, "kernel"), *_vector(layer.bias, "bias", "kernel")]


def _depthwise(layer: Any) -> list[Slot]:
    return [Slot(stored(layer, "kernel"), "kernel", kernel_layout("keras_depthwise"), "kernel"),
            *_vector(layer.bias, "bias", "kernel")]


def _separable(layer: Any) -> list[Slot]:
    return [Slot(layer.depthwise_kernel, "depthwise_kernel", kernel_layout("keras_depthwise"),
                 "depthwise_kernel"),
            Slot(layer.pointwise_kernel, "pointwise_kernel", kernel_layout("keras"), "pointwise_kernel"),
            *_vector(layer.bias, "bias", "pointwise_kernel")]


def _transposed(layer: Any) -> list[Slot]:
    lay = kernel_layout("keras_transposed", strides=tuple(layer.strides))
    return [Slot(stored(layer, "kernel"), "kernel", lay, "kernel"), *_vector(layer.bias, "bias", "kernel")]


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
    return [Slot(stored(layer, "embeddings"), "embeddings", None, "embeddings")]


def _norm(layer: Any) -> list[Slot]:
    return [*_vector(getattr(layer, "gamma", None), "gamma", None),
            *_vector(getattr(layer, "beta", None), "beta", None)]


def prelu_init(layer: Any) -> float | None:
    """The slope a ``PReLU``'s ``alpha_initializer`` sets (``Zeros``: 0, ``Ones``: 1, ``Constant(v)``: v), or
    ``None`` for another initializer (the layer is then left as it is)."""
    init = getattr(layer, "alpha_initializer", None)
    kind = type(init).__name__
    if kind == "Zeros":
        return 0.0
    if kind == "Ones":
        return 1.0
    value = getattr(init, "value", None) if kind == "Constant" else None
    try:
        return None if value is None else float(np.asarray(value, dtype=np.float64).mean())
    except (TypeError, ValueError):
        return None


def _prelu(layer: Any) -> list[Slot] | None:
    return None if prelu_init(layer) is None else [Slot(layer.alpha, "alpha", None, None)]


#: Keras class name (looked up through the MRO) -> the slots of a built layer of that family.
FAMILIES: dict[str, Callable[[Any], list[Slot] | None]] = {
    "Dense": _dense, "EinsumDense": _einsum, "BaseConv": _conv, "BaseDepthwiseConv": _depthwise,
    "BaseSeparableConv": _separable, "BaseConvTranspose": _transposed, "LSTM": _rnn, "GRU": _rnn,
    "SimpleRNN": _rnn, "Bidirectional": _bidirectional, "Embedding": _embedding,
    "BatchNormalization": _norm, "LayerNormalization": _norm, "GroupNormalization": _norm,
    "RMSNormalization": _norm, "PReLU": _prelu,
}


def layer_slots(layer: Any) -> list[Slot] | None:
    """The :class:`Slot` of each variable ``layer`` has, or ``None`` for a family initlab does not plan (or a
    quantized layer); a LoRA adapter's ``lora_kernel_a`` and ``lora_kernel_b`` after the layer's own.

    >>> import keras
    >>> d = keras.layers.Dense(3); d.build((None, 4))
    >>> [(s.role, s.layout.name if s.layout else None) for s in layer_slots(d)]
    [('kernel', 'keras'), ('bias', None)]
    """
    family = next((FAMILIES[c.__name__] for c in type(layer).__mro__ if c.__name__ in FAMILIES), None)
    if family is None or getattr(layer, "quantization_mode", None):  # int8 / int4 kernels: not drawn
        return None
    slots = family(layer)
    if slots is not None and getattr(layer, "lora_enabled", False):  # Keras's enable_lora: A He uniform, B 0
        slots = [*slots, Slot(layer.lora_kernel_a, "lora_a", None, None),
                 Slot(layer.lora_kernel_b, "lora_b", None, None)]
    return slots


def has_graph(model: Any) -> bool:
    """Whether ``model`` is a Sequential or functional model, whose graph :func:`walk_layers` and
    :func:`initlab.keras.graph.keras_graph` read (a subclassed model's ``call`` is Python code)."""
    if isinstance(model, keras.Sequential):
        return True
    return isinstance(model, keras.Model) and hasattr(model, "_nodes_by_depth")


def layer_keys(model: Any) -> dict[int, str]:
    """``id(layer) -> key`` for every layer of ``model`` (nested models' layers included), unique in the
    model: the layer's Keras ``path``, prefixed by its nested model's key where the path does not start
    with it (a functional model built on its own leaves its name out of its layers' paths, so its
    ``dense`` and the caller's ``dense`` both have the path ``dense``), ``#2``, ``#3`` appended to a key
    another layer already has.

    >>> import keras
    >>> x = keras.Input((4,)); block = keras.Model(x, keras.layers.Dense(4, name="dense")(x), name="block")
    >>> y = keras.Input((4,)); net = keras.Model(y, block(keras.layers.Dense(4, name="dense")(y)))
    >>> sorted(key for key in layer_keys(net).values() if "dense" in key)
    ['block/dense', 'dense']
    """
    keys: dict[int, str] = {}
    taken: set[str] = set()

    def visit(m: Any, prefix: str) -> None:
        for layer in m.layers:
            if id(layer) in keys:
                continue
            base = getattr(layer, "path", None) or layer.name
            if prefix and not base.startswith(prefix + "/"):
                base = f"{prefix}/{base}"
            key, n = base, 1
            while key in taken:
                n += 1
                key = f"{base}#{n}"
            keys[id(layer)] = key
            taken.add(key)
            if has_graph(layer):
                visit(layer, key)

    visit(model, "")
    return keys


def variable_names(layered: list[tuple[Any, list[Slot]]], keys: dict[int, str]) -> dict[int, str]:
    """``id(variable) -> name`` unique in the model, for the plan rows: the variable's Keras ``path`` with
    its layer's path replaced by the layer's key (:func:`layer_keys`)."""
    names: dict[int, str] = {}
    taken: set[str] = set()
    for layer, slots in layered:
        path = getattr(layer, "path", None) or layer.name
        key = keys.get(id(layer), path)
        for slot in slots:
            var = slot.variable
            vpath = getattr(var, "path", None) or var.name
            base = key + vpath[len(path):] if vpath.startswith(path + "/") else (
                vpath if key == path else f"{key}/{var.name}")
            name, n = base, 1
            while name in taken:
                n += 1
                name = f"{base}#{n}"
            names[id(var)] = name
            taken.add(name)
    return names


def call_key(layer: Any, part: str | None = "kernel", keys: dict[int, str] | None = None) -> str:
    """The key of ``layer``'s graph call that computes with ``part``: its key in ``keys``
    (:func:`layer_keys`, unique in the model even when nested models reuse a name), else its path;
    ``"key:pointwise_kernel"`` for the second call of a separable conv."""
    base = (keys or {}).get(id(layer)) or getattr(layer, "path", None) or layer.name
    return base if part in ("kernel", "cell", "embeddings", None) else f"{base}:{part}"


def walk_layers(model: Any) -> Iterator[Any]:
    """Every layer of ``model`` that is not itself a Sequential or functional model, depth first (nested
    models' layers in place; a subclassed model is one layer); a layer in two nested models once."""
    seen: set[int] = set()

    def visit(m: Any) -> Iterator[Any]:
        for layer in m.layers:
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            if has_graph(layer):
                yield from visit(layer)
            else:
                yield layer

    yield from visit(model)
