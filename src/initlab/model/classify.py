"""The layer families the model level plans by type: weighted layers with fans (Linear, Conv,
ConvTranspose, transformers' ``Conv1D``) and norms. What every other module and function computes
is the graph's business (:mod:`initlab.graph.vocab`, the one table)."""

from __future__ import annotations

import sys

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
