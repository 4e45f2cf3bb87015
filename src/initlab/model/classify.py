"""The layer families the model level plans by type: weighted layers with fans (Linear, Conv,
ConvTranspose, transformers' ``Conv1D``) and norms. What every other module and function computes
is the graph's business (:mod:`initlab.graph.vocab`, the one table)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from torch import nn

if TYPE_CHECKING:
    from initlab.graph.queries import Residual

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


#: Lookup tables: a sum of two of them (token plus position embeddings) is no residual block.
LOOKUP_TYPES = (nn.Embedding, nn.EmbeddingBag)


def block_adds(model: nn.Module, g: Any) -> list[Residual]:
    """The residual adds of ``g`` (:func:`initlab.graph.residual_adds`) that are residual blocks:
    their branch holds a weighted layer that is not a lookup table. A sum of embeddings computed
    from the same ids (BART's token plus learned positions) has the form ``x + f(x)`` but is no
    block: the residual-family schemes, the transforms' gates and Fixup scalars and ``"auto"``'s
    branch rule leave it alone.

    >>> import torch
    >>> from initlab.graph import trace, residual_adds
    >>> class Pos(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.tok, self.pos, self.fc = nn.Embedding(9, 4), nn.Embedding(9, 4), nn.Linear(4, 4)
    ...     def forward(self, ids):
    ...         h = self.tok(ids) + self.pos(ids)
    ...         return h + self.fc(h)
    >>> net = Pos()
    >>> g = trace(net, torch.tensor([[1, 2, 3]]))
    >>> len(residual_adds(g)), [g[i].module for r in block_adds(net, g) for i in r.layers]
    (2, ['fc'])
    """
    from initlab.graph import residual_adds

    modules = dict(model.named_modules(remove_duplicate=False))
    return [r for r in residual_adds(g)
            if any(g[i].module is not None and not isinstance(modules.get(g[i].module), LOOKUP_TYPES)
                   for i in r.layers)]
