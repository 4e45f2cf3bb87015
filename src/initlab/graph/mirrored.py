"""Looks-linear pairs: a weighted layer whose mirrored input columns read ``[phi(a), phi(-a)]``.

Such a layer computes ``s U a`` exactly at init (the mirrored pair cancels the activation's even part),
so its moments are those of a dense map of half the fan_in over ``s a`` — not the mean field's
independent activations, whose shared mean does not cancel. :func:`mirrored_input` finds the pair in
the graph; the dense-layer rule of :mod:`initlab.graph.moments` uses it.
"""

from __future__ import annotations

import math
from collections import ChainMap
from collections.abc import Sequence
from dataclasses import replace
from functools import lru_cache

from torch import nn

from initlab.errors import InitlabError
from initlab.graph.moments import Moments, MomentsUnknown, PropagationContext, _key, _rule
from initlab.graph.nodes import Kind, Node

__all__ = ["mirrored_input", "reshaped_axis"]

#: Per-channel linear maps without a bias that keep a mirrored pair a pair (when their shapes say so,
#: :func:`_carried_axis`): average pooling, row-major reshapes, dropout in eval, a constant factor.
_LINKS = frozenset({Kind.POOL, Kind.RESHAPE, Kind.DROPOUT, Kind.SCALE})
#: Reshapes that keep the row-major order of the entries (not permute, transpose, getitem, chunk, ...).
_ROW_MAJOR = frozenset(
    "view reshape flatten unflatten contiguous squeeze unsqueeze identity view_as reshape_as to float double "
    "half bfloat16 type type_as clone detach data cpu cuda Identity Flatten Unflatten".split()
)


@lru_cache(maxsize=256)
def _slope(name: str, param: float | None, q: float) -> float | None:
    """:func:`initlab.theory.odd_part_slope` at pre-activation variance ``q`` (``None``: not linear,
    or an activation it does not know)."""
    from initlab.theory import odd_part_slope  # noqa: PLC0415  (the math layer, read when a pair is found)

    try:
        return odd_part_slope(name, param=param, q=q)
    except InitlabError:
        return None


def _unit_axis(node: Node, ctx: PropagationContext, shape: Sequence[int] | None) -> int | None:
    """The axis of a Linear's features (the last) or a convolution's channels (before the spatial
    dims) in ``shape`` (its input's or its output's); ``None`` for another module or no shape."""
    module = ctx.module(node)
    if shape is None or not shape:
        return None
    if isinstance(module, nn.Linear):
        return len(shape) - 1
    if isinstance(module, nn.modules.conv._ConvNd) and not module.transposed:
        axis = len(shape) - len(module.kernel_size) - 1
        return axis if axis >= 0 else None
    return None


def reshaped_axis(shape_in: Sequence[int], shape_out: Sequence[int], axis: int) -> int | None:
    """Where a row-major reshape from ``shape_in`` to ``shape_out`` takes a pairing along ``axis``
    (entry ``i`` with entry ``i + size/2``, every other index equal): the first axis ``k`` of
    ``shape_out`` past the same leading entries (``prod(shape_out[:k]) = prod(shape_in[:axis])``,
    ``shape_out[k] > 1``), if its size is even; else ``None``. ``Flatten`` of ``(B, C, H, W)``
    keeps channel pairs: feature ``c H W + p`` pairs with ``(c + C/2) H W + p``.

    >>> reshaped_axis((8, 32, 1, 1), (8, 32), 1), reshaped_axis((8, 32, 7, 7), (8, 1568), 1)
    (1, 1)
    >>> reshaped_axis((8, 6, 5), (8, 3, 10), 1) is None  # 6 x 5 regrouped into 3 rows: no pairs
    True
    """
    lead = math.prod(shape_in[:axis])
    for k, size in enumerate(shape_out):
        here = math.prod(shape_out[:k])
        if here > lead:
            break
        if here == lead and size != 1:
            return k if size % 2 == 0 else None
    return None


def _pooled_axis(link: Node, shape_in: Sequence[int], shape_out: Sequence[int], axis: int) -> int | None:
    """Where an average pool keeps ``axis``: a ``mean`` over ``dim`` not holding it (its index after
    the reduced dims, ``keepdim`` read from the shapes), or an ``AvgPoolNd`` / ``AdaptiveAvgPoolNd``
    over the last ``N`` dims with ``axis`` before them; ``None`` otherwise."""
    if link.params.get("type") != "avg":
        return None
    if "dim" in link.params:
        dims = link.params["dim"]
        dims = list(dims) if isinstance(dims, (list, tuple)) else [dims]
        if not dims or not all(isinstance(d, int) for d in dims):  # dim=None: every dim, channels too
            return None
        dims = {d % len(shape_in) for d in dims}
        if axis in dims:
            return None
        return axis if len(shape_out) == len(shape_in) else axis - sum(d < axis for d in dims)
    spatial = next((int(c) for c in "123" if f"{c}d" in link.op.lower()), None)
    keep = len(shape_in) - spatial if spatial is not None else -1
    if keep <= axis or len(shape_out) != len(shape_in) or tuple(shape_in[:keep]) != tuple(shape_out[:keep]):
        return None
    return axis


def _carried_axis(link: Node, ctx: PropagationContext, axis: int) -> int | None:
    """The pairing axis after ``link`` (one of :data:`_LINKS`, or the activation), ``None`` where the
    link may break the pairs or its shapes are unknown."""
    shape_in, shape_out = ctx.in_shape(link), link.shape
    if shape_in is None or shape_out is None or not 0 <= axis < len(shape_in) or len(link.inputs) != 1:
        return None
    if link.params.get("rule") is not None:  # roll, flip, pad, interpolate: their own rules, not followed
        return None
    if link.kind is Kind.POOL:
        new = _pooled_axis(link, shape_in, shape_out, axis)
    elif link.kind is Kind.RESHAPE:
        row_major = link.op in _ROW_MAJOR or link.params.get("as") == "identity"
        new = reshaped_axis(shape_in, shape_out, axis) if row_major else None
    elif link.kind is Kind.DROPOUT and ctx.train and float(link.params.get("p", 0.0)) > 0.0:
        new = None  # independent masks on the two halves
    else:  # activation, dropout in eval, scale: elementwise
        new = axis if tuple(shape_in) == tuple(shape_out) else None
    if new is None or not 0 <= new < len(shape_out) or shape_out[new] % 2:
        return None
    return new


def _walk_links(ctx: PropagationContext, start: int) -> tuple[list[Node], Node]:
    """From node ``start`` upwards through :data:`_LINKS`: ``(links, first other node)``, the links in
    execution order."""
    links, node = [], ctx.graph[start]
    while node.kind in _LINKS and len(node.inputs) == 1:
        links.append(node)
        node = ctx.graph[node.inputs[0]]
    return links[::-1], node


def _follows(links: Sequence[Node], ctx: PropagationContext, axis: int | None) -> int | None:
    for link in links:
        axis = _carried_axis(link, ctx, axis) if axis is not None else None
    return axis


def mirrored_input(node: Node, ctx: PropagationContext) -> tuple[Moments, str] | None:
    r"""What a layer with mirrored input columns (``W = [U, -U]``,
    :attr:`~initlab.graph.layer_stats.LayerStats.mirrored_inputs`) reads when its input is a
    looks-linear pair: ``(moments of s P(a), producer)``, else ``None`` (the caller keeps the mean
    field).

    The pair: a Linear / convolution with mirrored rows and bias
    (:attr:`~initlab.graph.layer_stats.LayerStats.mirrored_outputs`) makes ``[a; -a]``; per-channel
    linear links ``Q`` (:data:`_LINKS`), an activation ``phi`` whose odd part is linear,
    ``phi(u) - phi(-u) = s u`` (:func:`initlab.theory.odd_part_slope`: ReLU, GELU, SiLU ``s = 1``,
    leaky ReLU ``1 + slope``), and links ``P`` (average pools, ``Flatten``, ``x.mean((2, 3))``) give
    ``[P phi(Q a); P phi(-Q a)]``, and the layer reads ``U (P phi(Q a) - P phi(-Q a)) = s U P(Q a)``
    exactly. Hence, for ``U`` of zero-mean iid entries (as :func:`~initlab.graph.moments.dense_moments`
    takes them),

    .. math::
        \mathbb{E}[y^2] = \frac{n}{2}\, \mathbb{E}[w^2]\, s^2\, \mathbb{E}[P(a)^2] + \mathbb{E}[b^2]

    (``n = fan_in``; ``E[P(a)^2]`` the pre-activation's moments through ``P``'s own rules: after global
    average pooling over ``k`` positions ``c_a + (q_a - c_a) / k``, small where positions decorrelate).
    The mean field instead takes the ``n`` activations as independent with a shared mean, whose square
    (``q / 2 pi`` for ReLU) dominates a pooled second moment; for a hidden layer without pooling both
    give the same ``E[y^2]`` for ReLU (``E[relu(a)^2] + E[relu(-a)^2] = E[a^2]``), but not the same
    cross moment.

    Every link is checked: the pairing axis is carried from the producer's output (features / channels)
    through each link's shapes to this layer's input axis (:func:`reshaped_axis`, pools over other dims);
    a link that is not understood, an unknown shape or moment, or an activation without a linear odd
    part gives ``None``.

    Source: Balduzzi et al. (2017), "The Shattered Gradients Problem: If resnets are the answer, then
    what is the question?" (the looks-linear initialization).
    """
    axis = _unit_axis(node, ctx, ctx.in_shape(node))
    if axis is None or not node.inputs:
        return None
    after, act = _walk_links(ctx, node.inputs[0])
    if act.kind is not Kind.ACTIVATION or act.activation is None or len(act.inputs) != 1:
        return None
    pre = ctx.results.get(act.inputs[0])
    if pre is None or act.activation[0] == "measured":
        return None
    slope = _slope(act.activation[0], act.activation[1], _key(pre.var) if pre.var > 0 else 1.0)
    before, producer = _walk_links(ctx, act.inputs[0])
    st = producer.meta.get("layer_stats", {}).get("weight") if producer.kind is Kind.LAYER else None
    if slope is None or st is None or not st.mirrored_outputs or ctx.results.get(producer.id) is None:
        return None
    if _follows([*before, act, *after], ctx, _unit_axis(producer, ctx, producer.shape)) != axis:
        return None
    results = ChainMap({act.id: pre}, ctx.results)  # the links' own rules, on the pre-activation
    sub = replace(ctx, results=results)  # type: ignore[arg-type]
    try:
        for link in after:
            results[link.id] = _rule(link)(link, sub)
    except (MomentsUnknown, InitlabError):  # a window it cannot size, an impossible rounding: the mean field
        return None
    read = results[after[-1].id] if after else pre
    return read.scaled(slope), producer.module or producer.op
