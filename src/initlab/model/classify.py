"""What activation detection calls each module and function: the layer families, the
activations (with their parameters), and the pass-through ops it follows."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

#: Activation names that mean "no nonlinearity".
LINEAR = (None, "linear", "identity")

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
CONVT = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
LAYER_TYPES = (nn.Linear, *_CONV, *CONVT)
NORM_TYPES: tuple[type, ...] = (
    nn.modules.batchnorm._BatchNorm,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.LocalResponseNorm,
) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())
_ATOMIC = (nn.MultiheadAttention, nn.RNNBase, *LAYER_TYPES)
_PASS_MODULES: tuple[type, ...] = (
    nn.modules.dropout._DropoutNd,
    nn.Identity,
    nn.Flatten,
    nn.Unflatten,
    *NORM_TYPES,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
)
_PASS_FUNCTIONS = frozenset({
    "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout",
    "flatten", "view", "reshape", "permute", "transpose", "contiguous", "squeeze", "unsqueeze",
    "add", "radd", "iadd", "cat", "concat", "getitem", "chunk", "split", "unbind", "clone", "to",
    "float", "type_as", "mean", "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d",
    "avg_pool3d",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d",
    "adaptive_max_pool2d", "adaptive_max_pool3d", "max_pool1d_with_indices", "max_pool2d_with_indices",
    "max_pool3d_with_indices",
})
#: Pass-through nodes that keep every feature in its place (a private link may cross them).
ELEMENTWISE_MODULES: tuple[type, ...] = (nn.modules.dropout._DropoutNd, nn.Identity)
ELEMENTWISE_FUNCTIONS = frozenset({
    "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout",
    "contiguous", "clone",
})
#: Reshapes allowed between the model's input and a plain chain's first layer (``x.view(-1, 784)``).
INPUT_RESHAPE_MODULES: tuple[type, ...] = (nn.Flatten,)
INPUT_RESHAPE_FUNCTIONS = frozenset({"flatten", "view", "reshape"})
#: Allowed between a plain chain's last layer and the model's output (a classifier's log-probabilities).
OUTPUT_MODULES: tuple[type, ...] = (nn.Softmax, nn.LogSoftmax)
OUTPUT_FUNCTIONS = frozenset({"softmax", "log_softmax"})
#: Calls on the model's input that only read its shape (``x.size(0)`` in ``x.view(x.size(0), -1)``).
SHAPE_READS = frozenset({"size", "dim", "getattr"})
_NORM_FUNCTIONS = frozenset({"batch_norm", "layer_norm", "group_norm", "instance_norm", "rms_norm"})
ACT_FUNCTIONS = frozenset({
    "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu", "silu", "mish", "softplus",
    "softsign", "tanh", "sigmoid", "hardtanh", "hardsigmoid", "hardswish", "logsigmoid", "tanhshrink",
    "rrelu", "prelu",
})


#: Layers that store their weight as ``(in, out)`` and compute ``y = x W + b``, by (module, class):
#: transformers' ``Conv1D`` (GPT, GPT-2). Looked up in ``sys.modules`` only, never imported: a model
#: that holds one has imported its module, and initlab works without transformers.
CONV1D_CLASSES = (("transformers.pytorch_utils", "Conv1D"),)


def conv1d_types() -> tuple[type, ...]:
    """The classes of :data:`CONV1D_CLASSES` whose module is loaded (subclasses match too)."""
    found = (getattr(sys.modules.get(mod), cls, None) for mod, cls in CONV1D_CLASSES)
    return tuple(c for c in found if isinstance(c, type) and issubclass(c, nn.Module))


def layer_types() -> tuple[type, ...]:
    """Linear, Conv, ConvTranspose and the loaded Conv1D classes: the layers with a weight and fans."""
    return (*LAYER_TYPES, *conv1d_types())


def atomic_types() -> tuple[type, ...]:
    """Modules detection treats as one node (fx leaves, hook targets)."""
    return (*_ATOMIC, *conv1d_types())


def module_activation(m: nn.Module) -> tuple[str, float | None] | None:
    """(name, param) of an activation module, else ``None``."""
    table: list[tuple[type, Callable[[Any], tuple[str, float | None]]]] = [
        (nn.ReLU, lambda m: ("relu", None)),
        (nn.LeakyReLU, lambda m: ("leaky_relu", float(m.negative_slope))),
        (nn.PReLU, lambda m: ("prelu", float(m.weight.detach().float().mean()))),
        (nn.RReLU, lambda m: ("leaky_relu", (m.lower + m.upper) / 2.0)),
        (nn.ReLU6, lambda m: ("relu6", None)),
        (nn.ELU, lambda m: ("elu", float(m.alpha))),
        (nn.CELU, lambda m: ("celu", float(m.alpha))),
        (nn.SELU, lambda m: ("selu", None)),
        (nn.GELU, lambda m: ("gelu_tanh" if m.approximate == "tanh" else "gelu", None)),
        (nn.SiLU, lambda m: ("silu", None)),
        (nn.Mish, lambda m: ("mish", None)),
        (nn.Softplus, lambda m: ("softplus", float(m.beta))),
        (nn.Softsign, lambda m: ("softsign", None)),
        (nn.Tanh, lambda m: ("tanh", None)),
        (nn.Sigmoid, lambda m: ("sigmoid", None)),
        (nn.Hardtanh, lambda m: ("hardtanh", float(m.max_val)) if m.min_val == -m.max_val
         else ("relu6", None) if (m.min_val, m.max_val) == (0.0, 6.0) else ("hardtanh", None)),
        (nn.Hardsigmoid, lambda m: ("hardsigmoid", None)),
        (nn.Hardswish, lambda m: ("hardswish", None)),
        (nn.LogSigmoid, lambda m: ("logsigmoid", None)),
        (nn.Tanhshrink, lambda m: ("tanhshrink", None)),
    ]
    for cls, fn in table:  # ReLU6 subclasses Hardtanh: it comes first
        if isinstance(m, cls):
            return fn(m)
    return None


def fn_name(target: Any) -> str:
    """Canonical name of a function / method target: ``F.relu_`` and ``Tensor.__iadd__`` ->
    ``relu`` and ``iadd``."""
    name = target if isinstance(target, str) else getattr(target, "__name__", repr(target))
    if name.startswith("__") and name.endswith("__"):
        name = name[2:-2]
    if name.endswith("_") and not name.startswith("_"):
        name = name[:-1]
    return name


def _fn_param(name: str, args: Sequence[Any], kwargs: dict[str, Any]) -> tuple[str, float | None]:
    """Activation name and parameter for a functional call."""
    def arg(i: int, key: str, default: Any) -> Any:
        if key in kwargs:
            return kwargs[key]
        return args[i] if len(args) > i else default

    try:
        if name == "leaky_relu":
            return name, float(arg(1, "negative_slope", 0.01))
        if name in ("elu", "celu"):
            return name, float(arg(1, "alpha", 1.0))
        if name == "gelu":
            return ("gelu_tanh" if arg(1, "approximate", "none") == "tanh" else "gelu"), None
        if name == "softplus":
            return name, float(arg(1, "beta", 1.0))
        if name == "hardtanh":
            lo, hi = float(arg(1, "min_val", -1.0)), float(arg(2, "max_val", 1.0))
            if (lo, hi) == (0.0, 6.0):
                return "relu6", None
            return name, (hi if lo == -hi else None)
        if name == "rrelu":
            return "leaky_relu", (float(arg(1, "lower", 1 / 8)) + float(arg(2, "upper", 1 / 3))) / 2
        if name == "prelu":
            w = arg(1, "weight", None)
            return "prelu", (float(w.detach().float().mean()) if isinstance(w, torch.Tensor) else None)
    except (TypeError, ValueError):  # a Proxy or tensor where a number was expected
        return name, None
    return name, None


#: Gates that make Swish written by hand: ``x * sigmoid(x)`` is SiLU.
GATES_TO_SWISH = {"sigmoid": "silu", "hardsigmoid": "hardswish"}


def module_kind(m: nn.Module, qualname: str) -> tuple:
    """The node kind of module ``m``: ``("layer", qualname)``, ``("act", name, param)``,
    ``("norm" | "pass", qualname)`` or ``("other",)``."""
    if isinstance(m, layer_types()):
        return ("layer", qualname)
    act = module_activation(m)
    if act is not None:
        return ("act", act[0], act[1])
    if isinstance(m, NORM_TYPES):
        return ("norm", qualname)
    if isinstance(m, _PASS_MODULES):
        return ("pass", qualname)
    return _unknown_module_kind(m, qualname)


def _unknown_module_kind(m: nn.Module, qualname: str) -> tuple:
    """A module none of the tables above knows, as the graph's vocabulary sees it: a parameter-free
    elementwise module measured equal to a known activation (HF's ``GELUActivation`` is ``gelu``,
    ``NewGELUActivation`` ``gelu_tanh``), a norm recognised by what it computes (``LlamaRMSNorm``)."""
    from initlab.graph import Kind
    from initlab.graph.vocab import classify_module

    if next(iter(m.children()), None) is not None:
        return ("other",)
    entry = classify_module(m)
    if entry.kind is Kind.ACTIVATION and entry.activation and entry.activation[0] != "measured":
        return ("act", entry.activation[0], entry.activation[1])
    if entry.kind is Kind.NORM:
        return ("norm", qualname)
    if entry.kind in (Kind.DROPOUT, Kind.RESHAPE):
        return ("pass", qualname)
    return ("other",)


def function_kind(target: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> tuple:
    """The node kind of a function or method call: ``("act", name, param)``, ``("norm" | "pass",
    name)`` or ``("other", name)``."""
    name = fn_name(target)
    if name in ACT_FUNCTIONS:
        act, param = _fn_param(name, args, kwargs)
        return ("act", act, param)
    if name in _NORM_FUNCTIONS:
        return ("norm", name)
    if name in _PASS_FUNCTIONS:
        return ("pass", name)
    return ("other", name)
