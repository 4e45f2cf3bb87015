"""The probe's view of modules and functions, read from the one table
(:mod:`initlab.graph.vocab`): which outputs it records by default, which are activations (and their
saturation), which modules pass a weight layer's signal on to its activation.

Where the probe's records name things their own way, it says so here: ``nn.Identity`` is a probed
activation (``"linear"``); ``nn.RReLU`` is ``"rrelu"`` (the vocabulary's gain name is
``"leaky_relu"`` at the mean slope); every ``nn.Hardtanh`` but ``nn.ReLU6`` is ``"hardtanh"`` with
its limits (the vocabulary says ``"relu6"`` for ``Hardtanh(0, 6)``); a functional activation is
named by its function (``F.relu6`` is ``"relu6"``).
"""

from __future__ import annotations

import sys
from typing import Any

from torch import nn

from initlab.graph.nodes import Kind
from initlab.graph.vocab import ACTIVATION_FUNCTIONS, classify_module, fn_name, lookup_module

_SATURATING = ("tanh", "softsign", "sigmoid", "hardsigmoid", "hardtanh", "relu6")
_RELU_FAMILY = ("relu", "relu6", "leaky_relu", "prelu", "rrelu")

# ---- activation identification ------------------------------------------------------------------


def _torch_activation(module: nn.Module) -> str | None:
    """The probe's name of a module the vocabulary registers as an activation (or ``nn.Identity``:
    ``"linear"``), else ``None``."""
    if type(module) is nn.Identity:
        return "linear"
    entry = lookup_module(module)
    if entry is None or entry.kind is not Kind.ACTIVATION or entry.activation is None:
        return None
    if isinstance(module, nn.RReLU):
        return "rrelu"
    if isinstance(module, nn.Hardtanh) and not isinstance(module, nn.ReLU6):
        return "hardtanh"
    name = entry.activation[0]
    return None if name == "measured" else name


def _module_activation(module: nn.Module) -> tuple[str, tuple[float, float] | None] | None:
    """``(activation name, hardtanh limits or None)`` of an activation module, else ``None``: one the
    vocabulary registers (through the MRO), or one it does not know that
    :func:`_identified_activation` identifies."""
    name = _torch_activation(module)
    if name is None:
        return _identified_activation(module)
    limits = (float(module.min_val), float(module.max_val)) if isinstance(module, nn.Hardtanh) else None
    return name, limits


def _identified_activation(module: nn.Module) -> tuple[str, None] | None:
    """``(name, None)`` of a childless, parameter-free module that
    :func:`initlab.graph.vocab.classify_module` identifies as a known activation by running it on
    a seeded probe (transformers' ``GELUActivation`` is ``"gelu"``, ``NewGELUActivation``
    ``"gelu_tanh"``, ``QuickGELUActivation`` ``"swish"``); ``None`` for anything else, an elementwise
    function it cannot name (``"measured"``) included, and torch's own modules. Such a module is
    then probed as an activation module, a leaf: the functions its ``forward`` calls are not
    recorded apart."""
    if (type(module).__module__.startswith("torch.") or next(module.children(), None) is not None
            or next(module.parameters(), None) is not None):
        return None
    entry = classify_module(module)
    if entry.kind is not Kind.ACTIVATION or entry.activation is None or entry.activation[0] == "measured":
        return None
    return entry.activation[0], None


_FUNCTIONAL_CACHE: dict[Any, str | None] = {}


def _functional_activation(func: Any) -> str | None:
    """The name of a torch function or method the vocabulary knows as an activation (``F.relu``,
    ``torch.tanh``, ``Tensor.sigmoid_``: its canonical name), else ``None``; cached by function."""
    try:
        return _FUNCTIONAL_CACHE[func]
    except KeyError:
        pass
    except TypeError:  # an unhashable callable: not an activation we know
        return None
    name = fn_name(func)
    act = name if name in ACTIVATION_FUNCTIONS else None
    _FUNCTIONAL_CACHE[func] = act
    return act


def _functional_limits(name: str, args: tuple, kwargs: dict) -> tuple[float, float] | None:
    if name == "relu6":
        return (0.0, 6.0)
    if name != "hardtanh":
        return None
    lo = kwargs.get("min_val", args[1] if len(args) > 1 else -1.0)
    hi = kwargs.get("max_val", args[2] if len(args) > 2 else 1.0)
    return (float(lo), float(hi))


def _conv1d_types() -> tuple[type, ...]:
    """transformers' ``Conv1D`` classes (:func:`initlab.model.classify.conv1d_types`, looked up in
    ``sys.modules`` only); ``()`` without importing :mod:`initlab.model` while transformers is not
    loaded (a model that holds one has loaded it)."""
    if "transformers" not in sys.modules:
        return ()
    from initlab.model.classify import conv1d_types  # noqa: PLC0415

    return conv1d_types()


def _layer_type(module: nn.Module) -> str | None:
    """Category of a default-probed module: linear (``nn.Linear``; transformers' ``Conv1D``, the
    same map with its weight stored ``(in, out)``), conv, conv_transpose, activation; else None."""
    if isinstance(module, (nn.Linear, *_conv1d_types())):
        return "linear"
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        return "conv_transpose"
    if isinstance(module, nn.modules.conv._ConvNd):
        return "conv"
    if _module_activation(module) is not None:
        return "activation"
    return None


def _units_in_dim1(module: nn.Module | None) -> bool:
    """Whether ``module``'s weight keeps its units (output features or channels) in dim 1 and its
    inputs in dim 0: a ConvTranspose ``(in, out / groups, *k)`` and transformers' ``Conv1D``
    ``(in, out)`` (``y = x W + b``: ``fan_in = shape[0]``); Linear and Conv keep ``(out, in, *k)``."""
    return isinstance(module, (nn.modules.conv._ConvTransposeNd, *_conv1d_types()))


_WEIGHT_TYPES = ("linear", "conv", "conv_transpose")

#: Vocabulary kinds a weight layer's output passes through on its way to the activation that
#: consumes it (for ``layer.activation`` and the gain of ``expected_weight_std``): norm layers
#: re-standardise their input, so ``conv -> BatchNorm -> ReLU`` takes the ReLU's gain, as
#: :func:`initlab.init_model` does; also dropout, identity, flatten and pooling (the kinds
#: :func:`initlab.graph.consuming_activation` walks). Functional pass-throughs (``F.dropout``,
#: ``x.view``) are not followed.
_PASS_KINDS = frozenset({Kind.NORM, Kind.DROPOUT, Kind.RESHAPE, Kind.POOL})


def _passes_through(module: nn.Module) -> bool:
    """Whether a weight layer's output reaches its activation through ``module`` (see
    :data:`_PASS_KINDS`)."""
    entry = lookup_module(module)
    return entry is not None and entry.kind in _PASS_KINDS


def _is_norm(module: nn.Module) -> bool:
    """A norm layer the vocabulary registers: its output has unit second moment."""
    entry = lookup_module(module)
    return entry is not None and entry.kind is Kind.NORM


#: torch.nn classes whose ``forward`` calls no functional activation (besides the activation
#: modules, whose own calls are not counted): a model built only from these and activation modules
#: has no functional activations to capture, so the probe skips the TorchFunctionMode and its hooks.
_NO_FUNCTIONAL: frozenset[type] = frozenset(
    getattr(nn, name) for name in """
    Sequential ModuleList ModuleDict Linear Bilinear Conv1d Conv2d Conv3d ConvTranspose1d ConvTranspose2d
    ConvTranspose3d BatchNorm1d BatchNorm2d BatchNorm3d LayerNorm GroupNorm InstanceNorm1d InstanceNorm2d
    InstanceNorm3d Dropout Dropout1d Dropout2d Dropout3d AlphaDropout Flatten Unflatten Embedding MaxPool1d
    MaxPool2d MaxPool3d AvgPool1d AvgPool2d AvgPool3d AdaptiveAvgPool1d AdaptiveAvgPool2d AdaptiveAvgPool3d
    AdaptiveMaxPool1d AdaptiveMaxPool2d AdaptiveMaxPool3d Upsample ZeroPad2d ConstantPad1d ConstantPad2d
    ConstantPad3d""".split() if hasattr(nn, name)
)


def _calls_no_functional(module: nn.Module) -> bool:
    """``module`` is one of :data:`_NO_FUNCTIONAL` or a torch activation module."""
    return type(module) in _NO_FUNCTIONAL or _torch_activation(module) is not None

def _saturation_thresholds(act: str, limits: tuple[float, float] | None, level: float
                           ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(below, above)``: an output saturates when it lies below one of ``below`` or above one of
    ``above`` (see :class:`~initlab.probe.Thresholds`)."""
    if act in ("tanh", "softsign"):
        return (-level,), (level,)
    if act in ("sigmoid", "hardsigmoid"):
        return (1.0 - level,), (level,)
    lo, hi = limits if limits is not None else (-1.0, 1.0)  # hardtanh, relu6
    return ((level * lo,) if lo < 0 else ()), ((level * hi,) if hi > 0 else ())


#: Autograd nodes (class names less their version digits) of ops that only move, copy, cast or
#: select entries: a model output reached from a weight layer's output through these alone is that
#: layer's output, rearranged (its logits, for the ``logits`` verdict).
_REARRANGING_NODES = frozenset("""
    ViewBackward UnsafeViewBackward ReshapeAliasBackward AliasBackward PermuteBackward TransposeBackward
    TBackward SqueezeBackward UnsqueezeBackward CloneBackward ToCopyBackward SliceBackward SelectBackward
    NarrowBackward SplitBackward SplitWithSizesBackward UnbindBackward""".split())

#: Names of the functional activations the probe records (to match the graph's by order).
_FUNCTIONAL_NAMES = ACTIVATION_FUNCTIONS
