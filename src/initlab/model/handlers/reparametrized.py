"""Weights behind a reparametrization: weight normalisation (``weight = g v / ||v||``, Salimans &
Kingma 2016, both of torch's APIs) and spectral normalisation (``weight = W / sigma_max(W)``, Miyato
et al. 2018). The layer's handler plans the weight; this file maps the plan onto the tensors the
reparametrization stores."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from initlab.model.classify import layer_types
from initlab.model.handlers.registry import register_handler
from initlab.model.plan import Fill, PlanRow
from initlab.model.policies import SchemeContext
from initlab.model.rows import new_row

__all__ = ["NormOf", "PowerIteration", "norm_row", "weight_norm_dim", "spectral_norm_hook",
           "handle_parametrizations"]


class NormOf:
    """Fill ``g = ||v||``, the 2-norm of ``v`` over every dim but ``dim`` (``torch.norm_except_dim``),
    so that ``g * v / ||v|| = v``: a weight-normalised layer starts with the weight drawn for ``v``.
    Drawn after ``v``."""

    def __init__(self, v: torch.Tensor, dim: int) -> None:
        self.v, self.dim = v, dim

    def __call__(self, tensor: torch.Tensor, generator: object) -> None:
        tensor.copy_(torch.norm_except_dim(self.v.detach(), 2, self.dim).reshape(tensor.shape))


class PowerIteration:
    """After spectral normalisation's ``W`` is drawn, re-estimate its singular vectors (15 power
    iterations, as torch does when it adds the parametrization), so ``W / sigma_max(W)`` has
    spectral norm 1 from the first forward — in eval mode too, where no iteration runs. ``sn``: the
    new API's ``_SpectralNorm`` module, or the old API's hook and its module."""

    def __init__(self, sn: Any, module: nn.Module | None = None) -> None:
        self.sn, self.module = sn, module

    def __call__(self, tensor: torch.Tensor, generator: object) -> None:
        if self.module is None:  # torch.nn.utils.parametrizations.spectral_norm
            self.sn._power_method(self.sn._reshape_weight_to_matrix(tensor), 15)
            return
        w = self.sn.reshape_weight_to_matrix(tensor)  # torch.nn.utils.spectral_norm (the old API)
        u, v = getattr(self.module, self.sn.name + "_u"), getattr(self.module, self.sn.name + "_v")
        for _ in range(15):
            v.copy_(torch.nn.functional.normalize(w.t() @ u, dim=0, eps=self.sn.eps))
            u.copy_(torch.nn.functional.normalize(w @ v, dim=0, eps=self.sn.eps))


def spectral_norm_hook(m: nn.Module) -> Any | None:
    """The old :func:`torch.nn.utils.spectral_norm` hook on ``m.weight``, else ``None``."""
    for hook in m._forward_pre_hooks.values():
        if type(hook).__name__ == "SpectralNorm" and getattr(hook, "name", None) == "weight":
            return hook
    return None


def weight_norm_dim(m: nn.Module) -> int | None:
    """The ``dim`` of :func:`torch.nn.utils.weight_norm`'s hook on ``m.weight``, else ``None``."""
    for hook in m._forward_pre_hooks.values():
        if type(hook).__name__ == "WeightNorm" and getattr(hook, "name", None) == "weight":
            return int(hook.dim)
    return None


def norm_row(name: str, g: torch.Tensor, q: str, m: nn.Module, v: torch.Tensor, dim: int) -> PlanRow:
    """The row of weight normalisation's magnitude ``g``: :class:`NormOf` its direction ``v``."""
    row = new_row(name, g, q, m)
    row.scheme, row.spec = "weight_norm", f"||v|| over all dims but {dim}"
    row.note = "weight_norm's magnitude g = ||v||: the weight starts as the draw of v"
    row._fills = [Fill(None, NormOf(v, dim))]
    return row


def _parent(ctx: SchemeContext, q: str) -> tuple[str, nn.Module, str] | None:
    """``(parent's name, parent, tensor name)`` of the ParametrizationList ``q``
    (``"fc.parametrizations.weight"``), when the context knows the parent."""
    head, sep, tensor = q.rpartition("parametrizations.")
    parent_q = head[:-1] if head.endswith(".") else head
    parent = ctx.modules.get(parent_q) if sep else None
    return (parent_q, parent, tensor) if parent is not None else None


def handle_parametrizations(ctx: SchemeContext, q: str, m: nn.Module) -> list[PlanRow] | None:
    """Rows of the tensors :mod:`torch.nn.utils.parametrize` stores for a layer's ``weight``: under
    :func:`torch.nn.utils.parametrizations.weight_norm` ``original1`` (the direction) is drawn as
    the layer's weight would be and ``original0`` is its norm (:class:`NormOf`); under
    :func:`~torch.nn.utils.parametrizations.spectral_norm` ``original`` is drawn as the weight
    (the forward divides it by its largest singular value, so only its direction matters). Any
    other parametrization (orthogonal, a user's): ``None``, and the parameters are left as they
    are and named in the skipped-parameter warning."""
    from initlab.model.handlers.linear import handle_layer  # noqa: PLC0415  (linear imports this file)

    found = _parent(ctx, q)
    if found is None or found[2] != "weight" or len(m) != 1:
        return None
    parent_q, parent, _ = found
    kind = type(m[0]).__name__
    if kind == "_WeightNorm" and {"original0", "original1"} <= set(m._parameters):
        v, g, dim = m.original1, m.original0, int(m[0].dim)
    elif kind == "_SpectralNorm" and "original" in m._parameters:
        v, g, dim = m.original, None, None
    else:
        return None
    if not isinstance(parent, layer_types()):
        return None
    row = handle_layer(ctx, parent_q, parent, params=[("weight", v)])[0]
    row.name, row.module_type = f"{q}.{'original1' if g is not None else 'original'}", type(m).__name__
    row.note = "; ".join(filter(None, [row.note, f"{kind.strip('_')}: drawn as {parent_q}.weight"]))
    if g is None:
        row._fills.append(Fill(None, PowerIteration(m[0])))
        row.note += "; singular vectors re-estimated"
    return [row] if g is None else [row, norm_row(f"{q}.original0", g, q, m, v, dim)]


register_handler(parametrize.ParametrizationList, handle_parametrizations)
