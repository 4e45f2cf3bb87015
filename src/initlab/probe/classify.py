"""The probe's table of modules and functions: which outputs it records by default, which are
activations (and their saturation), which modules pass a weight layer's signal on to its activation.

Its own table, not :mod:`initlab.graph.vocab`'s, because the two differ where the probe's records
(and tests) depend on it: ``nn.Identity`` is a probed activation (``"linear"``) here and a reshape
there; ``nn.RReLU`` is ``"rrelu"`` here, ``"leaky_relu"`` there; ``nn.Hardtanh(0, 6)`` is
``"hardtanh"`` with its limits here, ``"relu6"`` there; the vocabulary also knows ``logsigmoid`` and
``tanhshrink`` as functions (not captured here), and ``PixelShuffle`` / ``LPPool`` as a reshape and
a pool (not passed through here). The one table to merge into is the vocabulary's.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

_SATURATING = ("tanh", "softsign", "sigmoid", "hardsigmoid", "hardtanh", "relu6")
_RELU_FAMILY = ("relu", "relu6", "leaky_relu", "prelu", "rrelu")

# ---- activation identification ------------------------------------------------------------------

_ACT_MODULES: dict[type, str] = {
    nn.Identity: "linear", nn.ReLU: "relu", nn.ReLU6: "relu6", nn.LeakyReLU: "leaky_relu",
    nn.PReLU: "prelu", nn.RReLU: "rrelu", nn.ELU: "elu", nn.SELU: "selu", nn.CELU: "celu",
    nn.GELU: "gelu", nn.SiLU: "silu", nn.Mish: "mish", nn.Softplus: "softplus",
    nn.Softsign: "softsign", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.Hardtanh: "hardtanh",
    nn.Hardsigmoid: "hardsigmoid", nn.Hardswish: "hardswish", nn.Tanhshrink: "tanhshrink",
    nn.LogSigmoid: "logsigmoid",
}

_FUNCTIONAL: dict[Any, str] = {}


def _register_functional(name: str, *names: str) -> None:
    for dotted in names:
        owner_name, _, attr = dotted.rpartition(".")
        owner = {"torch": torch, "F": F, "Tensor": torch.Tensor}[owner_name]
        fn = getattr(owner, attr, None)
        if fn is not None:
            _FUNCTIONAL[fn] = name


_register_functional("tanh", "torch.tanh", "torch.tanh_", "Tensor.tanh", "Tensor.tanh_", "F.tanh")
_register_functional("sigmoid", "torch.sigmoid", "torch.sigmoid_", "Tensor.sigmoid", "Tensor.sigmoid_",
                     "F.sigmoid")
_register_functional("relu", "torch.relu", "torch.relu_", "Tensor.relu", "Tensor.relu_", "F.relu",
                     "F.relu_")
_register_functional("relu6", "F.relu6")
_register_functional("leaky_relu", "F.leaky_relu", "F.leaky_relu_")
_register_functional("prelu", "F.prelu", "torch.prelu")
_register_functional("rrelu", "F.rrelu", "F.rrelu_")
_register_functional("elu", "F.elu", "F.elu_")
_register_functional("selu", "F.selu", "torch.selu", "torch.selu_")
_register_functional("celu", "F.celu", "torch.celu", "torch.celu_")
_register_functional("gelu", "F.gelu")
_register_functional("silu", "F.silu")
_register_functional("mish", "F.mish")
_register_functional("softplus", "F.softplus")
_register_functional("softsign", "F.softsign")
_register_functional("hardtanh", "F.hardtanh", "F.hardtanh_")
_register_functional("hardsigmoid", "F.hardsigmoid")
_register_functional("hardswish", "F.hardswish")


def _module_activation(module: nn.Module) -> tuple[str, tuple[float, float] | None] | None:
    """``(activation name, hardtanh limits or None)`` of an activation module, else ``None``: one of
    the table's (through the MRO), or one the table does not know that
    :func:`_identified_activation` identifies."""
    name = _ACT_MODULES.get(type(module))
    if name is None:
        for cls, cand in _ACT_MODULES.items():
            if cls is not nn.Identity and isinstance(module, cls):
                name = cand
                break
    if name is None:
        return _identified_activation(module)
    if name == "gelu" and getattr(module, "approximate", "none") == "tanh":
        name = "gelu_tanh"
    limits = None
    if isinstance(module, nn.Hardtanh):
        limits = (float(module.min_val), float(module.max_val))
    return name, limits


def _identified_activation(module: nn.Module) -> tuple[str, None] | None:
    """``(name, None)`` of a childless, parameter-free module that
    :func:`initlab.graph.vocab.classify_module` identifies as a known activation by running it on
    a seeded probe (transformers' ``GELUActivation`` is ``"gelu"``, ``NewGELUActivation``
    ``"gelu_tanh"``, ``QuickGELUActivation`` ``"swish"``); ``None`` for anything else, an elementwise
    function it cannot name (``"measured"``) included, and torch's own modules (the table above
    lists those the probe records; the vocabulary is not imported for a torch-only model). Such a
    module is then probed as an activation module, a leaf: the functions its ``forward`` calls are
    not recorded apart."""
    if (type(module).__module__.startswith("torch.") or next(module.children(), None) is not None
            or next(module.parameters(), None) is not None):
        return None
    from initlab.graph.nodes import Kind  # noqa: PLC0415  (the vocabulary: imported when needed)
    from initlab.graph.vocab import classify_module  # noqa: PLC0415

    entry = classify_module(module)
    if entry.kind is not Kind.ACTIVATION or entry.activation is None or entry.activation[0] == "measured":
        return None
    return entry.activation[0], None


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

#: Modules a weight layer's output passes through on its way to the activation that consumes it
#: (for ``layer.activation`` and the gain of ``expected_weight_std``): norm layers re-standardise
#: their input, so ``conv -> BatchNorm -> ReLU`` takes the ReLU's gain, as
#: :func:`initlab.init_model` does; also dropout, identity, flatten and pooling (the same modules
#: ``initlab.apply`` follows). Functional pass-throughs (``F.dropout``, ``x.view``) are not followed.
_NORMS: tuple[type, ...] = (
    nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm,
    nn.LocalResponseNorm, *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)
_PASS_THROUGH: tuple[type, ...] = (
    *_NORMS,
    nn.modules.dropout._DropoutNd, nn.Identity, nn.Flatten, nn.Unflatten,
    nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd, nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
)

#: torch.nn classes whose ``forward`` calls no functional activation (besides the activation
#: modules, whose own calls are not counted): a model built only from these (exact types) has no
#: functional activations to capture, so the probe skips the TorchFunctionMode and its hooks.
_NO_FUNCTIONAL: frozenset[type] = frozenset(_ACT_MODULES) | frozenset(
    getattr(nn, name) for name in """
    Sequential ModuleList ModuleDict Linear Bilinear Conv1d Conv2d Conv3d ConvTranspose1d ConvTranspose2d
    ConvTranspose3d BatchNorm1d BatchNorm2d BatchNorm3d LayerNorm GroupNorm InstanceNorm1d InstanceNorm2d
    InstanceNorm3d Dropout Dropout1d Dropout2d Dropout3d AlphaDropout Flatten Unflatten Embedding MaxPool1d
    MaxPool2d MaxPool3d AvgPool1d AvgPool2d AvgPool3d AdaptiveAvgPool1d AdaptiveAvgPool2d AdaptiveAvgPool3d
    AdaptiveMaxPool1d AdaptiveMaxPool2d AdaptiveMaxPool3d Upsample ZeroPad2d ConstantPad1d ConstantPad2d
    ConstantPad3d""".split() if hasattr(nn, name)
)

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
_FUNCTIONAL_NAMES = frozenset(_FUNCTIONAL.values())
