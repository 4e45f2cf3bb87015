"""Moments through ops that resample a feature map's positions: ``interpolate`` / ``nn.Upsample``,
``pad`` and the padding modules, ``roll``, ``flip``. Each is a linear map along the axes it touches,
registered into :data:`initlab.graph.moments.OP_RULES` when this module is imported.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from initlab.graph import spatial as _spatial
from initlab.graph.moments import OP_RULES, Moments, MomentsUnknown, PropagationContext
from initlab.graph.nodes import Node

__all__ = ["interpolation_matrix", "pad_matrix", "resample_moments"]

_LINEAR_MODES = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}


def interpolation_matrix(n_in: int, n_out: int, mode: str = "nearest", align_corners: bool | None = None,
                         scale: float | None = None, antialias: bool = False) -> np.ndarray:
    """The ``(n_out, n_in)`` weights of :func:`torch.nn.functional.interpolate` along one axis: the
    call itself, run on the identity (``scale``: the axis's ``scale_factor``, else the size decides).

    >>> interpolation_matrix(2, 4)  # nearest: each input copied twice
    array([[1., 0.],
           [1., 0.],
           [0., 1.],
           [0., 1.]])
    >>> interpolation_matrix(2, 4, "linear").sum(1)  # linear weights sum to 1
    array([1., 1., 1., 1.])
    """
    dims = _LINEAR_MODES.get(mode, 1)
    eye = torch.eye(n_in, dtype=torch.float64).reshape(n_in, 1, n_in, *(1,) * (dims - 1))
    kw: dict[str, Any] = {"align_corners": align_corners} if mode in _LINEAR_MODES else {}
    if antialias:
        kw["antialias"] = True
    if scale is not None and math.floor(n_in * scale) == n_out:
        kw["scale_factor"] = (float(scale),) + (1.0,) * (dims - 1)
    else:
        kw["size"] = (n_out,) + (1,) * (dims - 1)
    return F.interpolate(eye, mode=mode, **kw).reshape(n_in, n_out).T.numpy()


def pad_matrix(n_in: int, before: int, after: int, mode: str = "constant") -> np.ndarray:
    """The ``(n_in + before + after, n_in)`` map of :func:`torch.nn.functional.pad` along one axis:
    zero rows for constant (zero) padding, copies for ``"reflect"``, ``"replicate"``, ``"circular"``.

    >>> pad_matrix(2, 1, 0)
    array([[0., 0.],
           [1., 0.],
           [0., 1.]])
    """
    eye = torch.eye(n_in, dtype=torch.float64).reshape(n_in, 1, n_in)
    return F.pad(eye, (before, after), mode=mode).reshape(n_in, -1).T.numpy()


def _apply(mats: Sequence[np.ndarray], grid: np.ndarray) -> np.ndarray:
    """``(W_1 x ... x W_D) grid``: each matrix along its axis."""
    for k, w in enumerate(mats):
        grid = np.moveaxis(np.tensordot(w, grid, axes=([1], [k])), 0, k)
    return grid


def _separable(x: Moments, mats: Sequence[np.ndarray]) -> Moments:
    """:func:`resample_moments` of a uniform input, from per-axis sums (any size)."""
    rows, cols = [w.sum(1) for w in mats], [w.sum(0) for w in mats]
    p = math.prod(w.shape[0] for w in mats)
    a1, a2 = math.prod(r.sum() for r in rows), math.prod((r * r).sum() for r in rows)
    b1, b2 = math.prod((c * c).sum() for c in cols), math.prod((w * w).sum() for w in mats)
    c, w = x.cross, x.within  # type: ignore[assignment]
    second = (c * a2 + w * b2) / p
    cross = (c * (a1 * a1 - a2) + w * (b1 - b2)) / (p * (p - 1)) if p > 1 else c * a2 / p
    mean = x.mean * a1 / p
    return Moments(mean, second, min(max(cross, mean * mean), second))


def resample_moments(x: Moments, mats: Sequence[np.ndarray],
                     profile: np.ndarray | None = None) -> tuple[Moments, np.ndarray | None]:
    r"""Moments and spatial profile of ``y = (W_1 \otimes \dots \otimes W_D) x`` over a feature map's
    ``D`` position axes (``W_k``: ``(out_k, in_k)``), for an input ``x(u) = a(u) x~(u)`` with ``x~``
    stationary (a per-unit mean shared by all positions, fluctuations independent across them) and
    ``a = sqrt(pi)`` its profile's amplitude (uniform when ``profile`` is ``None``):

    .. math::
        \mathbb{E}[y_p^2] = \tilde c\, (W a)_p^2 + (\tilde q - \tilde c)\, (W^{\circ 2} \pi)_p, \qquad
        \mathbb{E}[y_p] = \tilde m\, (W a)_p

    pooled over the ``P`` output positions; the cross moment pools ``E[y_p y_p']`` over pairs
    ``p != p'`` (``sum_j W_pj W_p'j pi_j`` of the fluctuation). Nearest upsampling copies entries
    (``m``, ``q`` kept, ``c`` raised by the pairs that read one input), a linear mode averages
    neighbours (``q`` lowered toward ``c``), zero padding dilutes ``m``, ``q`` by the kept fraction and
    ``c`` by the kept pairs. Grids above :data:`~initlab.graph.spatial.MAX_POSITIONS` positions: pooled
    moments of a uniform input, no profile.

    >>> y, pr = resample_moments(Moments(0.0, 1.0), [interpolation_matrix(4, 8)])
    >>> y.second, round(y.cross, 6), pr  # one pair in 7 reads the same input
    (1.0, 0.142857, None)
    """
    shape_in = tuple(w.shape[1] for w in mats)
    shape_out = tuple(w.shape[0] for w in mats)
    if profile is not None and profile.shape != shape_in:
        profile = None
    if max(math.prod(shape_in), math.prod(shape_out)) > _spatial.MAX_POSITIONS:
        return _separable(x, mats), None
    pi = np.ones(shape_in) if profile is None else np.asarray(profile, dtype=np.float64)
    amp = np.sqrt(pi)
    m, c = x.mean / float(amp.mean()), x.cross / _spatial._pair_mean(amp)  # type: ignore[operator]
    w = x.second - c
    u, s2 = _apply(mats, amp), _apply([v * v for v in mats], pi)
    col = _apply([v.T for v in mats], np.ones(shape_out))
    e2 = c * u * u + w * s2
    p = u.size
    mean, second = m * float(u.mean()), float(e2.mean())
    if p > 1:
        cross = (c * (u.sum() ** 2 - (u * u).sum()) + w * ((pi * col * col).sum() - s2.sum())) / (p * (p - 1))
    else:
        cross = c * float((u * u).sum())
    y = Moments(mean, second, min(max(float(cross), mean * mean), second))
    return y, _spatial.normalised(e2)


def _input_profile(node: Node, ctx: PropagationContext, dims: int) -> np.ndarray | None:
    """The input's profile when it covers the input's ``dims`` trailing axes, else ``None``."""
    pr = ctx.graph[node.inputs[0]].meta.get("profile") if node.inputs and dims > 0 else None
    shape = ctx.in_shape(node)
    return pr if pr is not None and shape is not None and tuple(shape[-dims:]) == pr.shape else None


def _scales(node: Node, ctx: PropagationContext, d: int) -> list[float | None]:
    """Per-axis ``scale_factor`` when the call gave one and torch does not recompute it from sizes."""
    sf = ctx.attr(node, "scale_factor")
    if sf is None or ctx.attr(node, "recompute_scale_factor"):
        return [None] * d
    sf = list(sf) if isinstance(sf, (tuple, list)) else [sf] * d
    return [float(s) if isinstance(s, (int, float)) else None for s in sf] if len(sf) == d else [None] * d


def _interpolate(node: Node, ctx: PropagationContext) -> Moments:
    """``F.interpolate`` / ``nn.Upsample`` (:func:`resample_moments` with
    :func:`interpolation_matrix` along each spatial axis). Without shapes: nearest keeps the input's
    moments (noted: the pairs of copies are not counted); another mode is unknown."""
    x, mode = ctx.input(node), str(ctx.attr(node, "mode", "nearest"))
    shape_in, shape_out = ctx.in_shape(node), node.shape
    if shape_in is None or shape_out is None or len(shape_in) < 3 or len(shape_in) != len(shape_out):
        if mode.startswith("nearest"):
            ctx.note(node, "no shapes: moments of the input (copies' pairs not counted)")
            node.meta["profile"] = None
            return x
        raise MomentsUnknown(f"interpolate ({mode}): the input and output sizes are unknown (no shapes)")
    d = len(shape_in) - 2
    mats = [interpolation_matrix(i, o, mode, ctx.attr(node, "align_corners"), s,
                                 bool(ctx.attr(node, "antialias", False)))
            for i, o, s in zip(shape_in[2:], shape_out[2:], _scales(node, ctx, d), strict=True)]
    y, node.meta["profile"] = resample_moments(x, mats, _input_profile(node, ctx, d))
    return y


def _pad(node: Node, ctx: PropagationContext) -> Moments:
    """``F.pad`` and the padding modules: :func:`pad_matrix` along each padded axis. Axes from the third
    on (``(N, C, *spatial)``) are positions (:func:`resample_moments`: zero padding dilutes ``m`` and
    ``q`` by the kept fraction, ``c`` by the kept pairs, and writes zeros into the profile); a padded
    batch or unit axis dilutes ``m``, ``q`` and ``c`` alike. Constant padding by a value other than 0
    and unknown sizes: unknown."""
    x, pads, mode = ctx.input(node), ctx.attr(node, "pad"), str(ctx.attr(node, "mode", "constant"))
    value, shape = ctx.attr(node, "value"), ctx.in_shape(node)
    if mode == "constant" and value not in (None, 0, 0.0):
        raise MomentsUnknown(f"constant padding by {value!r} (not 0) is not modelled")
    if shape is None or not isinstance(pads, (tuple, list)) or not all(isinstance(v, int) for v in pads):
        raise MomentsUnknown("pad: the input shape or the padding is unknown")
    ndim = len(shape)
    amounts = {ndim - 1 - i: (pads[2 * i], pads[2 * i + 1]) for i in range(len(pads) // 2)}
    first = 2 if ndim >= 3 else ndim  # position axes: the third on
    unit = math.prod(float(pad_matrix(shape[k], *amounts[k], mode).sum(1).mean())
                     for k in amounts if k < first)
    mats = [pad_matrix(shape[k], *amounts.get(k, (0, 0)), mode) for k in range(first, ndim)]
    y, profile = (resample_moments(x, mats, _input_profile(node, ctx, ndim - first))
                  if any(k >= first for k in amounts) else (x, _input_profile(node, ctx, ndim - first)))
    node.meta["profile"] = profile
    return Moments(unit * y.mean, unit * y.second, unit * y.cross)  # type: ignore[operator]


def _moved_profile(node: Node, ctx: PropagationContext, move: Any) -> Moments:
    """``roll`` / ``flip``: entries move, the moments stay; the spatial profile moves with them (``move``
    run on the profile, broadcast over the leading axes; ``None``: the profile is dropped)."""
    x, shape = ctx.input(node), node.shape
    pr = ctx.graph[node.inputs[0]].meta.get("profile")
    node.meta["profile"] = None
    if pr is None:
        return x
    if move is None or shape is None or ctx.in_shape(node) != shape or tuple(shape[-pr.ndim :]) != pr.shape:
        ctx.note(node, "spatial profile dropped")
        return x
    t = torch.as_tensor(pr).reshape((1,) * (len(shape) - pr.ndim) + pr.shape)
    try:
        node.meta["profile"] = _spatial.normalised(move(t).reshape(pr.shape).numpy())
    except (RuntimeError, TypeError, ValueError, IndexError):  # arguments the profile cannot take
        ctx.note(node, "spatial profile dropped")
    return x


def _roll(node: Node, ctx: PropagationContext) -> Moments:
    shifts, dims = node.params.get("shifts"), node.params.get("dims")
    # a roll of the flattened tensor (no dims) moves entries across units: no profile follows it
    return _moved_profile(node, ctx, None if dims is None else lambda t: torch.roll(t, shifts, dims))


def _flip(node: Node, ctx: PropagationContext) -> Moments:
    return _moved_profile(node, ctx, lambda t: torch.flip(t, node.params.get("dims")))


OP_RULES.update({"interpolate": _interpolate, "pad": _pad, "roll": _roll, "flip": _flip})
