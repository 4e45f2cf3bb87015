"""Keras activations in initlab's names: ``(name, param)`` as :func:`initlab.gains.gain` reads them.

A Keras activation reaches a model three ways: a layer's ``activation`` argument (a function of
:mod:`keras.activations`), an activation layer (``Activation``, ``ReLU``, ``LeakyReLU``, ``ELU``,
``PReLU``, ``Softmax``), or a ``keras.ops`` call in a functional model (``keras.ops.gelu(x)``).
Each is translated here; Keras's defaults differ from torch's in places (``leaky_relu``'s slope is
0.2 as a function, 0.3 as a layer; ``hard_sigmoid`` is torch's ``hardsigmoid``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from initlab.errors import InitlabError
from initlab.gains import ACTIVATIONS

__all__ = ["KerasActivation", "KERAS_NAMES", "activation_name", "from_function", "from_layer", "from_op"]

#: Keras activation name -> ``(initlab name, param)``.
KERAS_NAMES: dict[str, tuple[str, float | None]] = {
    "linear": ("linear", None), "relu": ("relu", None), "relu6": ("relu6", None),
    "leaky_relu": ("leaky_relu", 0.2), "elu": ("elu", 1.0), "selu": ("selu", None),
    "gelu": ("gelu", None), "silu": ("silu", None), "swish": ("silu", None), "tanh": ("tanh", None),
    "sigmoid": ("sigmoid", None), "softplus": ("softplus", None), "softsign": ("softsign", None),
    "mish": ("mish", None), "hard_sigmoid": ("hardsigmoid", None), "hard_silu": ("hardswish", None),
    "hard_swish": ("hardswish", None), "log_sigmoid": ("logsigmoid", None),
    "tanh_shrink": ("tanhshrink", None), "hard_tanh": ("hardtanh", 1.0), "celu": ("celu", 1.0),
}
_SOFTMAX = frozenset({"softmax", "log_softmax", "sparsemax"})
#: ``keras.ops`` operation class -> Keras activation name (parametric ones read their attributes).
_OPS = {
    "Relu": "relu", "Relu6": "relu6", "Sigmoid": "sigmoid", "Softplus": "softplus", "Softsign": "softsign",
    "Silu": "silu", "LogSigmoid": "log_sigmoid", "HardSigmoid": "hard_sigmoid", "HardSilu": "hard_silu",
    "Selu": "selu", "Tanh": "tanh", "TanhShrink": "tanh_shrink", "HardTanh": "hard_tanh",
    "Softmax": "softmax", "LogSoftmax": "log_softmax", "Sparsemax": "sparsemax",
}


@dataclass(frozen=True)
class KerasActivation:
    """An activation found in a Keras model.

    Attributes:
        name: an initlab activation name (:data:`initlab.gains.ACTIVATIONS`), ``"softmax"`` (softmax,
            log-softmax, sparsemax: not elementwise), or ``"measured"`` (an elementwise function
            initlab does not know, measured numerically through ``fn``).
        param: the activation's parameter (leaky ReLU's slope, ELU's alpha), ``None`` if it has none.
        fn: for ``"measured"``, the Keras function (it is evaluated on torch tensors: torch backend).
        source: what Keras called it (for the plan).
    """

    name: str
    param: float | None = None
    fn: Callable[[Any], Any] | None = None
    source: str = ""

    @property
    def linear(self) -> bool:
        """No nonlinearity (``linear``/``identity``)."""
        return self.name in ("linear", "identity")


def activation_name(name: str) -> tuple[str, float | None]:
    """``(initlab name, param)`` of a Keras or initlab activation name.

    Raises:
        InitlabError: a name neither Keras nor initlab knows (the message lists both).

    >>> activation_name("swish"), activation_name("hard_sigmoid"), activation_name("leaky_relu")
    (('silu', None), ('hardsigmoid', None), ('leaky_relu', 0.2))
    """
    if name in KERAS_NAMES:
        return KERAS_NAMES[name]
    if name in ACTIVATIONS:
        return name, None
    raise InitlabError(
        f"activation {name!r} is unknown: use a Keras name ({', '.join(sorted(KERAS_NAMES))}) or an initlab "
        f"name ({', '.join(sorted(set(ACTIVATIONS) - set(KERAS_NAMES)))})"
    )


def _measured(fn: Callable[[Any], Any], source: str) -> KerasActivation:
    return KerasActivation("measured", None, fn, source)


def from_function(fn: Any) -> KerasActivation:
    """The activation of a layer's ``activation`` argument (a :mod:`keras.activations` function, or any
    callable: measured). ``None`` is linear.

    >>> import keras
    >>> from_function(keras.activations.gelu)
    KerasActivation(name='gelu', param=None, fn=None, source='gelu')
    """
    if fn is None:
        return KerasActivation("linear", source="linear")
    name = getattr(fn, "__name__", type(fn).__name__)
    if name in KERAS_NAMES:
        base, param = KERAS_NAMES[name]
        return KerasActivation(base, param, None, name)
    if name in _SOFTMAX:
        return KerasActivation("softmax", None, None, name)
    if callable(fn):
        return _measured(fn, name)
    raise InitlabError(f"activation {fn!r} is not callable")


def from_layer(layer: Any) -> KerasActivation | None:
    """The activation an activation layer applies, or ``None`` when ``layer`` is not one.

    ``ReLU(max_value, negative_slope, threshold)`` is ``relu``, ``relu6`` (max 6) or ``leaky_relu``;
    ``PReLU`` is a leaky ReLU with the slope its constant ``alpha_initializer`` sets (0 by default: the
    value :func:`initlab.keras.init_model` gives ``alpha``), else the mean of its ``alpha``; a
    ``threshold`` or another ``max_value`` is measured.
    """
    kind = type(layer).__name__
    if kind == "Activation":
        return from_function(layer.activation)
    if kind == "Softmax":
        return KerasActivation("softmax", source="Softmax")
    if kind == "LeakyReLU":
        return KerasActivation("leaky_relu", float(layer.negative_slope), source="LeakyReLU")
    if kind == "ELU":
        return KerasActivation("elu", float(getattr(layer, "alpha", 1.0)), source="ELU")
    if kind == "PReLU":
        from initlab.keras.kernels import prelu_init

        slope = prelu_init(layer)  # the slope init_model sets, not a trained one
        if slope is None:
            alpha = getattr(layer, "alpha", None)
            slope = float(_to_numpy(alpha).mean()) if alpha is not None else 0.0
        return KerasActivation("leaky_relu", slope, source="PReLU") if slope else KerasActivation(
            "relu", source="PReLU")
    if kind == "ReLU":
        slope, top, threshold = (float(layer.negative_slope or 0.0), layer.max_value,
                                 float(layer.threshold or 0.0))
        if threshold == 0.0 and top is None:
            return KerasActivation("leaky_relu", slope, source="ReLU") if slope else KerasActivation(
                "relu", source="ReLU")
        if threshold == 0.0 and slope == 0.0 and float(top) == 6.0:
            return KerasActivation("relu6", source="ReLU")
        return _measured(layer, "ReLU")
    return None


def from_op(op: Any) -> KerasActivation | None:
    """The activation a ``keras.ops`` operation node applies (``keras.ops.relu(x)`` in a functional
    model), or ``None`` when it is not an activation."""
    kind = type(op).__name__
    if kind == "Gelu":
        return KerasActivation("gelu_tanh" if getattr(op, "approximate", False) else "gelu", source="gelu")
    if kind == "LeakyRelu":
        return KerasActivation("leaky_relu", float(getattr(op, "negative_slope", 0.2)), source="leaky_relu")
    if kind in ("Elu", "Celu"):
        return KerasActivation(kind.lower(), float(getattr(op, "alpha", 1.0)), source=kind.lower())
    name = _OPS.get(kind)
    if name is None:
        return None
    if name in _SOFTMAX:
        return KerasActivation("softmax", source=name)
    base, param = KERAS_NAMES[name]
    return KerasActivation(base, param, source=name)


def _to_numpy(value: Any) -> Any:
    import keras

    return keras.ops.convert_to_numpy(value)
