"""Propagate each tensor's mean, second moment and cross moment through a :class:`Graph` at init.

One small rule per node kind (:data:`RULES`; weighted layers by module family in :data:`LAYER_RULES`)
writes ``node.meta["moments"]``; weighted layers take their statistics from a callback
(:mod:`initlab.graph.layer_stats`, re-exported here), so the same pass predicts what a model does
(:func:`model_layer_stats`) or chooses each layer's scale from its own input (:class:`LayerSolver`) —
the idea of AutoInit (Bingham & Miikkulainen 2023). Families with their own modules register their
rules here on import: :mod:`~initlab.graph.attention`, :mod:`~initlab.graph.recurrent`,
:mod:`~initlab.graph.skip_sum`, :mod:`~initlab.graph.resample` (single ops: :data:`OP_RULES`);
:mod:`~initlab.graph.spatial` carries feature maps' spatial profiles; :mod:`~initlab.graph.mirrored`
reads looks-linear pairs.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

import numpy as np
from scipy.special import ndtr
from torch import nn

from initlab.errors import InitlabError
from initlab.gains import (
    activation_fn,
    activation_kinks,
    activation_moments,
    activation_values,
    gaussian_rule,
)
from initlab.graph import spatial as _spatial
from initlab.graph.layer_stats import (
    RNN_GATES,
    LayerSolver,
    LayerStats,
    LayerStatsFn,
    PartParams,
    layer_fans,
    mirrored_halves,
    model_layer_stats,
    part_params,
    solve_layer_scale,
    with_mirrors,
)
from initlab.graph.nodes import Graph, Kind, Node
from initlab.graph.spatial import ConvGeometry

__all__ = [
    "LAYER_RULES",
    "OP_RULES",
    "RNN_GATES",
    "RULES",
    "LayerSolver",
    "LayerStats",
    "LayerStatsFn",
    "Moments",
    "MomentsUnknown",
    "PartParams",
    "PropagationContext",
    "part_params",
    "attention_average",  # noqa: F822  (from initlab.graph.attention, through __getattr__)
    "dense_moments",
    "layer_fans",
    "mirrored_halves",
    "model_layer_stats",
    "model_tap_energy",
    "moments_table",
    "propagate",
    "solve_layer_scale",
    "with_mirrors",
]

_TOL = 1e-9
#: Outer (shared per-unit mean) and inner (fluctuation) quadrature orders of the cross moment.
_N_OUTER, _N_INNER = 48, 100


def _key(x: float) -> float:
    """A cache key: ``x`` rounded to 12 significant digits."""
    return float(f"{x:.12g}")


@dataclass(frozen=True)
class Moments:
    r"""Moments of a tensor's entries, pooled over data, positions and units (and weight draws).

    .. math::
        m = \mathbb{E}[x], \qquad q = \mathbb{E}[x^2], \qquad c = \mathbb{E}[x_{j,a}\, x_{j,b}]

    ``cross`` ``c`` is the pairwise moment of one unit ``j`` (a feature, a channel) at two different
    positions ``a != b`` (spatial or sequence) of one example — where there are no positions, of two
    different examples (the mean-field ``q_12`` of Poole et al. 2016). ``m^2 <= c <= q``: ``c = m^2``
    (the default) for entries independent across positions, ``c = q`` for entries constant over them;
    ``c - m^2`` is the spread of the per-unit means when positions are otherwise independent. It decides
    what averaging over ``n`` positions keeps (pooling, attention): ``c + (q - c) / n``.

    Attributes:
        mean: ``m``.
        second: ``q = m^2 + var``.
        cross: ``c``; ``None`` means ``mean ** 2``.

    Raises:
        InitlabError: a non-finite value, ``second < mean ** 2`` or ``cross`` outside
            ``[mean ** 2, second]`` (tiny rounding excesses are clipped).

    >>> Moments(0.5, 1.25).var
    1.0
    >>> Moments(0.0, 1.0, 0.25).within
    0.75
    """

    mean: float
    second: float
    cross: float | None = None

    def __post_init__(self) -> None:
        cross = self.mean**2 if self.cross is None else self.cross
        values = (self.mean, self.second, cross)
        if not all(isinstance(v, numbers.Real) and math.isfinite(v) for v in values):
            raise InitlabError(f"Moments{values} has a non-finite or non-numeric entry: pass finite floats")
        lo, slack = self.mean**2, _TOL * (1.0 + abs(self.second))
        if self.second < lo - slack or not lo - slack <= cross <= self.second + slack:
            raise InitlabError(
                f"Moments(mean={self.mean}, second={self.second}, cross={cross}) is impossible: "
                "need mean**2 <= cross <= second"
            )
        object.__setattr__(self, "mean", float(self.mean))
        object.__setattr__(self, "second", float(max(self.second, lo)))
        object.__setattr__(self, "cross", float(min(max(cross, lo), self.second)))

    @property
    def var(self) -> float:
        """``second - mean ** 2``."""
        return self.second - self.mean**2

    @property
    def spread(self) -> float:
        """Covariance of two positions, ``cross - mean ** 2`` (the spread of the per-unit means)."""
        return self.cross - self.mean**2  # type: ignore[operator]

    @property
    def within(self) -> float:
        """What averaging over positions divides, ``second - cross`` (variance around a unit's mean)."""
        return self.second - self.cross  # type: ignore[operator]

    def scaled(self, factor: float) -> Moments:
        """The moments of ``factor * x``."""
        return Moments(factor * self.mean, factor**2 * self.second, factor**2 * self.cross)  # type: ignore[operator]


class MomentsUnknown(Exception):
    """Raised by a rule that cannot see through its node; the message is the reason."""


# ---- the algebra of one weighted map --------------------------------------------------------------


def dense_moments(x: Moments, st: LayerStats) -> Moments:
    r"""Moments of ``y = W x + b`` for weights iid over entries and independent of ``x``.

    .. math::
        \mathbb{E}[y] = n \bar w m + \bar b, \quad
        \mathbb{E}[y^2] = n \sigma_w^2 q + \bar w^2 (n q + n(n-1) m^2) + 2 n \bar w m \bar b + \mathbb{E}[b^2]

    (``n = fan_in``, ``sigma_w^2 = E[w^2] - wbar^2``); the cross moment is the same with ``q -> c``. For
    zero-mean weights: ``q_y = fan_in E[w^2] q_x + E[b^2]`` (He et al. 2015, eq. 7, with the input's
    *second moment*). Input units are independent beyond their shared mean (mean-field).

    >>> dense_moments(Moments(0.0, 2.0), LayerStats(100, 0.005, bias_second=0.1)).second
    1.1
    """
    n, wm, m = st.fan_in, st.weight_mean, x.mean
    wv = st.weight_second - wm**2

    def second(x2: float) -> float:
        return (
            n * wv * x2
            + wm**2 * (n * x2 + n * (n - 1) * m**2)
            + 2 * n * wm * m * st.bias_mean
            + st.bias_second
        )

    return Moments(n * wm * m + st.bias_mean, second(x.second), second(x.cross))  # type: ignore[arg-type]


def _diag_affine(x: Moments, st: LayerStats) -> Moments:
    """Moments of ``y_j = a_j x_j + b_j`` (a per-unit affine map, ``a``, ``b`` independent of ``x``)."""
    lin = 2 * st.weight_mean * st.bias_mean * x.mean + st.bias_second
    mean = st.weight_mean * x.mean + st.bias_mean
    return Moments(mean, st.weight_second * x.second + lin, st.weight_second * x.cross + lin)  # type: ignore[operator]



# ---- Gaussian expectations --------------------------------------------------------------------------


def _nested(fn: Any, kinks: tuple[float, ...], x: Moments, k: int = 1) -> tuple[float, float, float]:
    r"""``E[f]``, ``E[f^2]`` and ``E_mu[(E f | mu)^2]`` for ``f = phi(mu + sqrt(w) M_k)``.

    ``mu ~ N(m, spread)`` is a unit's mean, ``w = within``, ``M_k`` the max of ``k`` standard normals
    (density ``k phi(z) Phi(z)^(k-1)``; ``k = 1``: a normal). Outer and inner rules from
    :func:`initlab.gains.gaussian_rule`, the inner cut at the shifted kinks.
    """
    mus, wo = gaussian_rule(_N_OUTER, q=max(x.spread, 0.0), kinks=tuple(kk - x.mean for kk in kinks))
    mus = mus + x.mean
    sd = math.sqrt(max(x.within, 0.0))
    points, weights, sizes = [], [], []
    for mu in mus:
        if sd == 0.0:
            z, wz = np.zeros(1), np.ones(1)
        else:
            z, wz = gaussian_rule(_N_INNER, q=1.0, kinks=tuple((kk - mu) / sd for kk in kinks))
        if k > 1:
            wz = wz * k * ndtr(z) ** (k - 1)
        points.append(mu + sd * z)
        weights.append(wz)
        sizes.append(len(z))
    y = activation_values(fn, np.concatenate(points))
    wz = np.concatenate(weights)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    g1, g2 = np.add.reduceat(wz * y, starts), np.add.reduceat(wz * y * y, starts)
    return float(wo @ g1), float(wo @ g2), float(wo @ (g1 * g1))


@lru_cache(maxsize=4096)
def _named_activation(name: str, param: float | None, m: float, q: float, c: float) -> Moments:
    x = Moments(m, q, c)
    mean, second = activation_moments(name, m, x.var, param)
    if x.spread <= _TOL * q:
        cross = mean**2
    elif x.within <= _TOL * q:
        cross = second
    else:
        cross = _nested(activation_fn(name, param), activation_kinks(name, param), x)[2]
    # the nested quadrature can overshoot by a few % when the within-position variance is small
    return Moments(mean, second, min(max(cross, mean**2), second))


def _activation(act: tuple[str, float | None], fn: Any, x: Moments) -> Moments:
    name, param = act
    if name in ("linear", "identity"):
        return x
    key = (_key(x.mean), _key(x.second), _key(x.cross))  # type: ignore[arg-type]
    if name != "measured":
        return _named_activation(name, param, *key)
    mean, second = activation_moments(fn, x.mean, x.var)
    cross = _nested(fn, (), x)[2] if x.spread > _TOL * x.second else mean**2
    return Moments(mean, second, min(max(cross, mean**2), second))


def _mix(parts: list[Moments], weights: list[float]) -> Moments:
    total = float(sum(weights))
    avg = [
        sum(w * getattr(p, f) for p, w in zip(parts, weights, strict=True)) / total
        for f in ("mean", "second")
    ]
    cross = sum(w * p.cross for p, w in zip(parts, weights, strict=True)) / total  # type: ignore[operator]
    return Moments(avg[0], avg[1], max(cross, avg[0] ** 2))


# ---- the context a rule sees ----------------------------------------------------------------------


@dataclass
class PropagationContext:
    """What a rule reads: the graph, the moments so far, the model, the layer-statistics callback."""

    graph: Graph
    results: dict[int, Moments | None]
    model: nn.Module | None = None
    layer_stats: LayerStatsFn | None = None
    train: bool = False
    inputs: Mapping[int, Moments] | Moments = field(default_factory=lambda: Moments(0.0, 1.0))
    tap_energy: Callable[[Node], np.ndarray | None] | None = None

    def maybe_input(self, node: Node, i: int = 0) -> Moments | None:
        """The moments of ``node``'s ``i``-th input, ``None`` if unknown."""
        return self.results.get(node.inputs[i]) if i < len(node.inputs) else None

    def input(self, node: Node, i: int = 0) -> Moments:
        """The moments of ``node``'s ``i``-th input; raises :class:`MomentsUnknown` if unknown."""
        if i >= len(node.inputs):
            raise MomentsUnknown(f"{node.op} has no input {i}")
        x = self.results.get(node.inputs[i])
        if x is None:
            raise MomentsUnknown(f"input {i} (node {node.inputs[i]}) is unknown")
        return x

    def in_shape(self, node: Node, i: int = 0) -> tuple[int, ...] | None:
        return self.graph[node.inputs[i]].shape if i < len(node.inputs) else None

    def module(self, node: Node) -> nn.Module | None:
        if self.model is None or node.module is None:
            return None
        try:
            return self.model.get_submodule(node.module)
        except AttributeError:
            return None

    def attr(self, node: Node, name: str, default: Any = None) -> Any:
        """``node.params[name]``, else the module's attribute, else ``default``."""
        if name in node.params:
            return node.params[name]
        return getattr(self.module(node), name, default)

    def stats(self, node: Node, part: str, x: Moments) -> LayerStats:
        st = self.layer_stats(node, part, x) if self.layer_stats is not None else None
        if st is None:
            raise MomentsUnknown(
                f"no statistics for {node.module or node.op} ({part}): pass model= or layer_stats="
            )
        node.meta.setdefault("layer_stats", {})[part] = st
        return st

    def note(self, node: Node, text: str) -> None:
        node.meta["moments_note"] = "; ".join(filter(None, [node.meta.get("moments_note"), text]))


Rule = Callable[[Node, PropagationContext], Moments]


# ---- weighted layers, by module family --------------------------------------------------------------




def _geometry(node: Node, ctx: PropagationContext) -> ConvGeometry | None:
    """A convolution's :func:`~initlab.graph.spatial.conv_geometry` from its input's profile, its own
    padding, stride, dilation and transposition, and how its weight spreads over its taps
    (``ctx.tap_energy``; ``None``: evenly, an iid draw); ``None`` for a dense map or when every tap
    reads a stationary input (uniform profile, no zero padding, not transposed)."""
    kernel = ctx.attr(node, "kernel_size")
    if kernel is None:
        return None
    shape, dims = ctx.in_shape(node), len(kernel)
    if shape is None or len(shape) <= dims:
        ctx.note(node, "zero padding ignored (no input shape)")
        return None
    profile = ctx.graph[node.inputs[0]].meta.get("profile")
    profile = profile if profile is not None and profile.shape == tuple(shape[-dims:]) else None
    transposed = bool(ctx.attr(node, "transposed", False))
    padding, mode = ctx.attr(node, "padding", 0), ctx.attr(node, "padding_mode", "zeros")
    padded = mode == "zeros" and _spatial.zero_padded(padding)
    if profile is None and not transposed and not padded:
        return None
    energy = None
    try:
        energy = ctx.tap_energy(node) if ctx.tap_energy is not None else None
    except (RuntimeError, ValueError, TypeError) as exc:  # a weight that cannot be read here (MPS float64)
        ctx.note(node, f"taps' weights not read ({type(exc).__name__}): taken as even")
    try:
        return _spatial.conv_geometry(
            profile, shape[-dims:], tuple(kernel), energy, stride=ctx.attr(node, "stride", 1),
            padding=padding, dilation=ctx.attr(node, "dilation", 1), transposed=transposed,
            output_padding=ctx.attr(node, "output_padding", 0), padding_mode=mode,
        )
    except (RuntimeError, ValueError, TypeError) as exc:  # arguments torch's convolution refuses
        ctx.note(node, f"taps not resolved ({type(exc).__name__}): every tap taken as real")
        return None


def _tapped(x: Moments, geo: ConvGeometry | None) -> Moments:
    """What one tap of a convolution reads of an input of moments ``x``: its factors from ``geo``."""
    if geo is None:
        return x
    m, q = geo.mean * x.mean, geo.second * x.second
    return Moments(m, q, min(max(geo.cross * x.cross, m * m), q))  # type: ignore[operator]


def _dense_layer(node: Node, ctx: PropagationContext) -> Moments:
    """``y = W x + b`` (:func:`dense_moments`); a convolution first takes what its taps read
    (:func:`~initlab.graph.spatial.conv_geometry`: zero padding, the input's spatial profile, a
    transposed convolution's ``k / s`` taps per output) and writes its output's profile
    (``node.meta["profile"]``; the bias is uniform). A weight with mirrored input columns reading a
    looks-linear pair reads ``s a`` over half its fan_in instead
    (:func:`initlab.graph.mirrored.mirrored_input`; noted)."""
    x, geo = ctx.input(node), _geometry(node, ctx)
    node.meta["profile"] = None
    if geo is not None:
        node.meta["coverage"] = geo.second
    st = ctx.stats(node, "weight", _tapped(x, geo))
    pair = _mirrored.mirrored_input(node, ctx) if st.mirrored_inputs else None
    if pair is not None:
        ctx.note(node, f"mirrored columns read the looks-linear pair of {pair[1]}: s a over fan_in / 2")
        y = dense_moments(_tapped(pair[0], geo), replace(st, fan_in=st.fan_in // 2))
    else:
        y = dense_moments(_tapped(x, geo), st)
    if geo is None:
        return y
    pr = geo.profile
    if pr is not None and node.shape is not None and tuple(node.shape[-pr.ndim :]) == pr.shape:
        weights = max(y.second - st.bias_second, 0.0)
        node.meta["profile"] = _spatial.normalised(weights * pr + st.bias_second)
    return y


_ID_SELECTS = frozenset({"gather", "index_select", "take_along_dim"})


def _fixed_ids(node: Node, ctx: PropagationContext) -> np.ndarray | None:
    """The ids an embedding reads when no model input reaches them: an integer buffer (BERT's
    ``token_type_ids``, ``position_ids``) seen through reshapes and gathers, one row per sequence, cut
    to the output's ``L`` positions (a gather reorders ids, it does not change which are equal);
    ``None`` for ids from the data or of unknown origin."""
    if ctx.model is None or not node.inputs or node.shape is None or len(node.shape) < 2:
        return None
    stack, seen = [node.inputs[0]], set()
    while stack:
        i = stack.pop()
        if i not in seen:
            seen.add(i)
            if ctx.graph[i].kind is Kind.INPUT:
                return None
            stack.extend(ctx.graph[i].inputs)
    src = ctx.graph[node.inputs[0]]
    while (src.kind is Kind.RESHAPE or (src.kind is Kind.OTHER and src.op in _ID_SELECTS)) and src.inputs:
        src = ctx.graph[src.inputs[0]]
    try:
        t = ctx.model.get_buffer(str(src.params.get("name"))) if src.kind is Kind.PARAM else None
    except AttributeError:
        return None
    if t is None or t.is_floating_point() or t.ndim == 0:
        return None
    return t.detach().reshape(-1, t.shape[-1])[:, : node.shape[-2]].cpu().numpy()


def _repeat_share(ids: np.ndarray) -> float:
    """Over pairs of different positions of one row, the share that read the same id."""
    length = ids.shape[1]
    if length < 2:
        return 1.0
    same = [float((np.unique(row, return_counts=True)[1] ** 2).sum() - length) for row in ids]
    return float(np.mean(same)) / (length * (length - 1))


def _embedding_layer(node: Node, ctx: PropagationContext) -> Moments:
    """Rows of a table of iid entries: ``m = E[w]``, ``q = E[w^2]``, ``c = m^2 + var * s``, ``s`` the
    share of pairs of positions that read the same row: ``1 / rows`` for uniformly random tokens,
    counted from the ids when they are fixed (:func:`_fixed_ids`: BERT's token types, all 0, give
    ``s = 1``, every position the same vector; position ids ``s = 0``)."""
    st = ctx.stats(node, "weight", Moments(0.0, 0.0))
    m, ids = st.weight_mean, _fixed_ids(node, ctx)
    share = 1.0 / max(st.fan_in, 1) if ids is None else _repeat_share(ids)
    if ids is not None:
        ctx.note(node, f"fixed ids: {share:.3g} of position pairs share a row")
    return Moments(m, st.weight_second, m**2 + (st.weight_second - m**2) * share)


def _seq_len(ctx: PropagationContext, node: Node, i: int) -> int | None:
    shape = ctx.in_shape(node, i)
    if shape is None:
        return None
    return shape[1] if len(shape) == 3 and ctx.attr(node, "batch_first", False) else shape[0]


def _not_modelled(node: Node, ctx: PropagationContext) -> Moments:
    raise MomentsUnknown(f"{node.op}: not modelled (bagged lookup); measure it")


#: Rules for ``Kind.LAYER`` by module class name (resolved through the module's MRO, else ``node.op``);
#: anything else is a dense map (Linear, ConvNd, ConvTransposeNd, HF Conv1D).
def _bilinear_layer(node: Node, ctx: PropagationContext) -> Moments:
    r"""``y_k = x_1^T W_k x_2 + b_k``: a dense map over the ``in1 * in2`` products
    :math:`x_{1,i} x_{2,j}`, whose moments are the products of the two inputs' (independent at
    init: :math:`\mathbb{E}[x_1 x_2] = m_1 m_2`, :math:`\mathbb{E}[(x_1 x_2)^2] = q_1 q_2`)."""
    x1, x2 = ctx.input(node, 0), ctx.input(node, 1) if len(node.inputs) > 1 else ctx.input(node, 0)
    x = Moments(x1.mean * x2.mean, x1.second * x2.second)
    return dense_moments(x, ctx.stats(node, "weight", x))


LAYER_RULES: dict[str, Rule] = {
    "Bilinear": _bilinear_layer,
    "Embedding": _embedding_layer,
    "EmbeddingBag": _not_modelled,
}  # "MultiheadAttention": initlab.graph.attention; "RNN", "LSTM", "GRU": initlab.graph.recurrent


def _layer_family(node: Node, ctx: PropagationContext) -> Rule:
    module = ctx.module(node)
    names = [c.__name__ for c in type(module).__mro__] if module is not None else [node.op]
    return next((LAYER_RULES[n] for n in names if n in LAYER_RULES), _dense_layer)


def _layer(node: Node, ctx: PropagationContext) -> Moments:
    return _layer_family(node, ctx)(node, ctx)


# ---- the other kinds ---------------------------------------------------------------------------------


def _input(node: Node, ctx: PropagationContext) -> Moments:
    users = ctx.graph.users(node.id)
    if users and all(u.kind is Kind.LAYER and _layer_family(u, ctx) is _embedding_layer for u in users):
        raise MomentsUnknown("token ids (read by an embedding)")
    if isinstance(ctx.inputs, Moments):
        return ctx.inputs
    if node.id not in ctx.inputs:
        raise MomentsUnknown(f"no input_moments given for input node {node.id}")
    return ctx.inputs[node.id]


def _output(node: Node, ctx: PropagationContext) -> Moments:
    if len(node.inputs) != 1:
        raise MomentsUnknown(f"the output collects {len(node.inputs)} tensors")
    return ctx.input(node)


def _activation_rule(node: Node, ctx: PropagationContext) -> Moments:
    """Pre-activation ``x ~ N(m, v)``, per-unit means ``N(m, spread)``: mean and second moment of
    ``phi(x)`` by :func:`initlab.gains.activation_moments`, the cross moment by nested quadrature."""
    x = ctx.input(node)
    if node.activation is None:
        raise MomentsUnknown("activation node without an activation")
    if node.activation[0] == "measured" and node.fn is None:
        raise MomentsUnknown("measured activation without fn")
    return _activation(node.activation, node.fn, x)


def _sum(a: Moments, b: Moments, sign: float) -> Moments:
    """``a + sign * b`` for independent ``a``, ``b``."""
    mm = 2 * sign * a.mean * b.mean
    return Moments(a.mean + sign * b.mean, a.second + b.second + mm, a.cross + b.cross + mm)  # type: ignore[operator]


def _add_sub(node: Node, ctx: PropagationContext, sign: float) -> Moments:
    """Operands independent at init (a residual branch and its skip are uncorrelated: the branch's
    zero-mean weights average the product out); the same node twice is ``2x`` (add) or ``0`` (sub)."""
    a = ctx.input(node, 0)
    if len(node.inputs) >= 2:
        if node.inputs[0] == node.inputs[1]:
            return a.scaled(2.0) if sign > 0 else Moments(0.0, 0.0)
        return _sum(a, ctx.input(node, 1), sign)
    value = float(node.params.get("value", 0.0))
    out = _sum(a, Moments(value, value**2), sign)
    reverse = sign < 0 and (node.op == "rsub" or node.params.get("reverse", False))  # value - x
    return out.scaled(-1.0) if reverse else out


def _concat(node: Node, ctx: PropagationContext) -> Moments:
    """Entry-weighted average of the inputs (weights: sizes along ``dim`` when shapes are known);
    an input with no entries (an empty key/value cache) contributes nothing."""
    keep = [i for i in range(len(node.inputs)) if (s := ctx.in_shape(node, i)) is None or math.prod(s) > 0]
    if not keep:
        raise MomentsUnknown("every concatenated tensor is empty")
    parts = [ctx.input(node, i) for i in keep]
    dim = node.params.get("dim", 0)
    shapes = [ctx.in_shape(node, i) for i in keep]
    sizes = (
        [s[dim] for s in shapes]
        if all(s is not None and -len(s) <= dim < len(s) for s in shapes)
        else [1] * len(parts)
    )
    return _mix(parts, [float(s) for s in sizes])


def _square(x: Moments) -> Moments:
    """``x * x`` for Gaussian ``x`` (per-unit means ``N(m, spread)``)."""
    m, v, s, w = x.mean, x.var, x.spread, x.within
    mu4 = m**4 + 6 * m**2 * s + 3 * s**2
    return Moments(x.second, m**4 + 6 * m**2 * v + 3 * v**2, mu4 + 2 * w * (m**2 + s) + w**2)


def _mul(node: Node, ctx: PropagationContext) -> Moments:
    """Independent factors (gating): ``m = m1 m2``, ``q = q1 q2``, ``c = c1 c2``; but ``x * x`` is a
    square and ``x * sigmoid(x)`` / ``x * hardsigmoid(x)`` (Swish written by hand) is the activation
    ``silu`` / ``hardswish`` of ``x``, not a product of independent factors."""
    from initlab.graph.queries import swish

    a = ctx.input(node, 0)
    if len(node.inputs) < 2:
        return a.scaled(float(node.params.get("value", node.params.get("factor", 1.0))))
    if node.inputs[0] == node.inputs[1]:
        return _square(a)
    name = swish(ctx.graph, node.id)
    if name is not None:  # the operand that is not the gate is the pre-activation
        gate = next(i for i in node.inputs if ctx.graph[i].kind is Kind.ACTIVATION
                    and ctx.graph[i].inputs[:1] == [j for j in node.inputs if j != i])
        x = ctx.results.get(next(j for j in node.inputs if j != gate))
        if x is None:
            raise MomentsUnknown("the input of a hand-written swish is unknown")
        return _activation((name, None), None, x)
    b = ctx.input(node, 1)
    return Moments(a.mean * b.mean, a.second * b.second, a.cross * b.cross)  # type: ignore[operator]


def _scale(node: Node, ctx: PropagationContext) -> Moments:
    return ctx.input(node).scaled(float(node.params.get("factor", 1.0)))


def _window(node: Node, ctx: PropagationContext) -> int:
    """Entries per window: ``prod(kernel_size)`` (an int kernel repeated over the op's ``Nd``), else
    input entries / output entries (adaptive and global pooling, ``mean``)."""
    kernel = ctx.attr(node, "kernel_size")
    dims = next((int(c) for c in "123" if f"{c}d" in node.op.lower()), None)
    if isinstance(kernel, (tuple, list)):
        return int(np.prod(kernel))
    if kernel is not None and dims is not None:
        return int(kernel) ** dims
    shape_in = ctx.in_shape(node)
    if shape_in is None or node.shape is None:
        raise MomentsUnknown("pooling window unknown (no kernel_size, no shapes)")
    return max(int(round(math.prod(shape_in) / max(math.prod(node.shape), 1))), 1)


_MONOTONE = frozenset(
    "linear identity relu elu celu selu softplus softsign tanh sigmoid logsigmoid tanhshrink hardtanh "
    "hardsigmoid relu6".split()
)


def _max_pool(node: Node, ctx: PropagationContext, x: Moments, k: int) -> Moments:
    """Max of ``k`` entries sharing a unit mean: ``mu + sqrt(within) M_k`` (``M_k`` the max of ``k``
    standard normals, by quadrature). After a non-decreasing activation, ``max phi(x_i) = phi(max x_i)``
    over the Gaussian pre-activations; otherwise the entries are taken as Gaussian (stated in the note).
    Windows on zero-padded borders hold entries of smaller variance, which pooled moments cannot see:
    the max is then underestimated (~7% on a 16x16 map after two padded 3x3 convolutions)."""
    prod = ctx.graph[node.inputs[0]]
    pre = ctx.maybe_input(prod) if prod.kind is Kind.ACTIVATION and prod.activation else None
    name, param = prod.activation if pre is not None else ("linear", None)  # type: ignore[misc]
    if pre is not None and (
        name not in _MONOTONE and not (name in ("leaky_relu", "prelu") and (param or 0) >= 0)
    ):
        pre = None
    if pre is None:
        ctx.note(node, "max over Gaussian entries")
        name, param, pre = "linear", None, x
    mean, second, cross = _nested(activation_fn(name, param), activation_kinks(name, param), pre, k)
    return Moments(mean, second, min(max(cross, mean**2), second))


def _pool(node: Node, ctx: PropagationContext) -> Moments:
    """Average over a window of ``n`` positions: mean kept, ``q -> c + (q - c) / n``, ``c`` kept.

    Exact for exchangeable entries with pairwise moment ``c``. Neither textbook extreme fits a random
    CNN at init: its channels have different means (``c > m^2``), so 'independent entries'
    (``m^2 + var / n``) is far too small and 'fully correlated' (``q``) far too large; around each
    channel's mean, neighbours are uncorrelated at init (weights of zero mean), which is what this rule
    assumes and what the seeded measurement in the tests confirms. ``n`` is the window (``kernel_size``),
    else input / output entries (adaptive, global, ``mean``) — the reduced axes are taken to be positions,
    not features. Sum: ``n`` times the average; max: :func:`_max_pool`. A reduction over the new dim of a
    ``torch.stack`` is over its operands, not positions (:func:`_stack_reduce`)."""
    x = ctx.input(node)
    op = node.op.lower()
    stacked = _stacked_operands(node, ctx)
    if stacked is not None:
        return _stack_reduce(node, ctx, stacked, x)
    n = _window(node, ctx)
    if "max" in op:
        return _max_pool(node, ctx, x, n)
    if "lp" in op:
        raise MomentsUnknown(f"{node.op}: power-average pooling is not modelled")
    avg = Moments(x.mean, x.cross + x.within / n, x.cross)  # type: ignore[operator]
    return avg.scaled(float(n)) if "sum" in op else avg


def _stacked_operands(node: Node, ctx: PropagationContext) -> list[int] | None:
    """The operands of the ``torch.stack`` that ``node`` (``mean`` / ``amax`` over one dim) reduces along
    its stacked dim; ``None`` otherwise (or when a dim is unknown)."""
    src = ctx.graph[node.inputs[0]] if node.inputs else None
    dim = node.params.get("dim")
    dim = dim[0] if isinstance(dim, (tuple, list)) and len(dim) == 1 else dim
    if src is None or src.op != "stack" or not isinstance(dim, int) or not src.inputs:
        return None
    sdim = src.params.get("dim", 0)
    if not isinstance(sdim, int):
        return None
    if dim < 0 or sdim < 0:
        if src.shape is None:
            return None
        dim, sdim = dim % len(src.shape), sdim % len(src.shape)
    return list(src.inputs) if dim == sdim else None


def _stack_reduce(node: Node, ctx: PropagationContext, operands: list[int], x: Moments) -> Moments:
    """``torch.stack([t_1, ..., t_k]).mean(d)`` over the stacked dim ``d``: ``sum_g (k_g / k) t_g`` over the
    distinct operands ``g`` (``k_g`` copies each), taken independent of each other — the same tensor
    stacked twice is not averaged down; ``amax`` of copies of one tensor is that tensor (of distinct
    ones: the max of ``k`` entries, :func:`_max_pool`)."""
    counts = {i: operands.count(i) for i in dict.fromkeys(operands)}
    parts = {i: ctx.results.get(i) for i in counts}
    if any(p is None for p in parts.values()):
        raise MomentsUnknown("a stacked operand is unknown")
    if "max" in node.op.lower():
        if len(counts) > 1:
            return _max_pool(node, ctx, x, len(operands))
        return parts[operands[0]]  # type: ignore[return-value]
    out: Moments | None = None
    for i, k in counts.items():
        part = parts[i].scaled(k / len(operands))  # type: ignore[union-attr]
        out = part if out is None else _sum(out, part, 1.0)
    if len(counts) < len(operands):
        ctx.note(node, "identical stacked tensors averaged as one")
    return out  # type: ignore[return-value]


def _dropout(node: Node, ctx: PropagationContext) -> Moments:
    """Eval: identity. Train (inverted dropout, keep ``1 - p``): ``q / (1 - p)``; mean and ``c`` kept."""
    x = ctx.input(node)
    p = float(node.params.get("p", 0.0))
    if not ctx.train or p == 0.0:
        return x
    return Moments(x.mean, x.second / (1.0 - p), x.cross)


_NORM_FAMILIES = ("rms", "batch", "group", "instance", "layer")


def _norm_family(node: Node) -> str:
    text = str(node.params.get("kind", node.op)).lower()
    return next((f for f in _NORM_FAMILIES if f in text), "layer")


def _batchnorm_eval(module: nn.Module) -> LayerStats | None:
    rm, rv = getattr(module, "running_mean", None), getattr(module, "running_var", None)
    if rm is None or rv is None:
        return None
    a = (rv.double() + module.eps).rsqrt()
    if module.weight is not None:
        a = a * module.weight.detach().double()
    b = -a * rm.double() + (module.bias.detach().double() if module.bias is not None else 0.0)
    return LayerStats.from_tensors(a, b, 1)


def _normalised(x: Moments | None, family: str, eps: float) -> Moments:
    """``x`` standardised by its family's statistics (``eps`` included): mean 0, ``q = v / (v + eps)``."""
    if x is None:
        return Moments(0.0, 1.0, 0.0)
    if family == "rms":
        return x.scaled(1.0 / math.sqrt(x.second + eps)) if x.second > 0 else Moments(0.0, 0.0)
    per_unit = family in ("batch", "instance")  # statistics over a unit's positions: its mean is removed
    v = x.within if per_unit else x.var
    q = v / (v + eps) if v > 0 else 0.0
    return Moments(0.0, q, 0.0 if per_unit or v <= 0 else q * x.spread / x.var)


def _norm(node: Node, ctx: PropagationContext) -> Moments:
    """Standardised then the per-unit affine (``E[gamma^2] q + E[beta^2]``): mean 0, ``q = 1`` (less
    ``eps``), ``c = spread / var`` for LayerNorm / GroupNorm (each unit keeps its standardised mean),
    ``0`` for BatchNorm in train mode / InstanceNorm; RMSNorm: ``x / sqrt(q)``. BatchNorm in eval mode is
    the affine map of its running statistics (near identity at init) when the model is given; a
    BatchNorm module in train mode (``module.training``: a freshly built model) uses its batch
    statistics, whatever ``train`` says for dropout. Resets an
    unknown input (to ``q = 1, c = 0``)."""
    x, family, module = ctx.maybe_input(node), _norm_family(node), ctx.module(node)
    # BatchNorm runs as its module is set: batch statistics in train mode (a fresh model), else running
    train = bool(module.training) if module is not None and family == "batch" else ctx.train
    if family == "batch" and not train and module is not None:
        st = _batchnorm_eval(module)
        if st is not None:
            if x is None:
                raise MomentsUnknown("BatchNorm (eval) of an unknown input")
            return _diag_affine(x, st)
    if family == "batch" and not train:
        ctx.note(node, "BatchNorm taken as normalising (no running statistics)")
    if x is None:
        ctx.note(node, "input unknown: reset to mean 0, q 1")
    xn = _normalised(x, family, float(ctx.attr(node, "eps", 0.0) or 0.0))
    st = ctx.layer_stats(node, "affine", xn) if ctx.layer_stats is not None else None
    if st is not None:
        node.meta.setdefault("layer_stats", {})["affine"] = st
    return _diag_affine(xn, st) if st is not None else xn


def _lp_normalize(node: Node, ctx: PropagationContext) -> Moments:
    r"""``F.normalize(x, p=2, dim)``: every vector along ``dim`` has unit L2 norm, so
    ``E[y^2] = 1 / d`` exactly (``d = shape[dim]``; ``eps`` neglected); mean and cross moment those of
    ``x / sqrt(d q)`` (the norm of ``d`` entries is about ``sqrt(d q)``). An unknown input: mean 0,
    ``c = 0`` (noted); ``p != 2`` or ``d`` unknown (no shape): unknown. The output's spatial profile is
    taken as uniform."""
    p, dim, shape = node.params.get("p", 2.0), node.params.get("dim", 1), node.shape or ctx.in_shape(node)
    if p != 2:
        raise MomentsUnknown(f"normalize with p={p}: only the L2 norm is modelled")
    if shape is None or not isinstance(dim, int) or not -len(shape) <= dim < len(shape):
        raise MomentsUnknown("normalize: the size along dim is unknown (no shape)")
    d, x = shape[dim], ctx.maybe_input(node)
    node.meta["profile"] = None
    if x is None:
        ctx.note(node, "input unknown: mean 0, q 1/d")
        return Moments(0.0, 1.0 / d, 0.0)
    return x.scaled(1.0 / math.sqrt(d * x.second)) if x.second > 0 else Moments(0.0, 0.0)


def _matmul(node: Node, ctx: PropagationContext) -> Moments:
    """``a @ b`` over ``d`` contracted entries, independent factors: ``m = d m1 m2``,
    ``q = d q1 q2 + d (d - 1) m1^2 m2^2``; ``c`` (along the last axis: ``a``'s row shared) ``d q1 c2 + ...``
    (so ``q @ k^T`` logits vary across keys by ``d q_q (q_k - c_k)``)."""
    a, b = ctx.input(node, 0), ctx.input(node, 1)
    shape = ctx.in_shape(node, 0)
    if shape is None:
        raise MomentsUnknown("contracted size unknown (no input shape)")
    d = shape[-1]
    rest = d * (d - 1) * (a.mean * b.mean) ** 2
    return Moments(d * a.mean * b.mean, d * a.second * b.second + rest, d * a.second * b.cross + rest)  # type: ignore[operator]


def _reshape(node: Node, ctx: PropagationContext) -> Moments:
    return ctx.input(node)


def _param(node: Node, ctx: PropagationContext) -> Moments:
    """A parameter or buffer's own entries; units along its last dim (for ``c``). A parameter the
    model level is about to draw says so in ``node.meta["planned_moments"]``, which is used instead."""
    planned = node.meta.get("planned_moments")
    if planned is not None:
        return planned
    name = node.params.get("name") or node.module or node.op
    t = None
    if ctx.model is not None:
        for get in (ctx.model.get_parameter, ctx.model.get_buffer):
            try:
                t = get(name)
                break
            except AttributeError:
                continue
    if t is None or not t.is_floating_point():
        raise MomentsUnknown(f"parameter {name!r} not found in the model")
    t = t.detach().double()
    units = t.reshape(-1, t.shape[-1]) if t.ndim else t.reshape(1, 1)
    return Moments(float(t.mean()), float(t.square().mean()), float(units.mean(0).square().mean()))


def _constant(node: Node, ctx: PropagationContext) -> Moments:
    """A tensor made inside forward from no input: unknown, unless the recorded forward kept the
    moments of its values (``params["value_moments"]``: a position table such as rotary ``cos`` /
    ``sin``, :func:`initlab.graph.record.record`)."""
    values = node.params.get("value_moments")
    if values is None:
        raise MomentsUnknown("constant made inside forward")
    return Moments(*values)


def _unknown(node: Node, ctx: PropagationContext) -> Moments:
    raise MomentsUnknown(f"{node.op}: unknown op")


#: One rule per node kind; register a new one by assignment (``ATTENTION`` and ``SOFTMAX``: registered by
#: :mod:`initlab.graph.attention`, ``ACTIVATION`` replaced by :mod:`initlab.graph.skip_sum`'s).
RULES: dict[Kind, Rule] = {
    Kind.INPUT: _input,
    Kind.OUTPUT: _output,
    Kind.LAYER: _layer,
    Kind.ACTIVATION: _activation_rule,
    Kind.ADD: lambda node, ctx: _add_sub(node, ctx, 1.0),
    Kind.SUB: lambda node, ctx: _add_sub(node, ctx, -1.0),
    Kind.CONCAT: _concat,
    Kind.MUL: _mul,
    Kind.SCALE: _scale,
    Kind.POOL: _pool,
    Kind.DROPOUT: _dropout,
    Kind.NORM: _norm,
    Kind.MATMUL: _matmul,
    Kind.RESHAPE: _reshape,
    Kind.PARAM: _param,
    Kind.CONSTANT: _constant,
    Kind.OTHER: _unknown,
}


#: Rules for single ops whose kind's rule would get them wrong, keyed by the node's ``params["rule"]``
#: (set by the vocabulary); they take precedence over :data:`RULES`. ``"log_softmax"``: registered by
#: :mod:`initlab.graph.attention`; ``"interpolate"``, ``"pad"``, ``"roll"``, ``"flip"``: by
#: :mod:`initlab.graph.resample`.
OP_RULES: dict[str, Rule] = {
    "normalize": _lp_normalize,
}


def _rule(node: Node) -> Rule:
    return OP_RULES.get(node.params.get("rule")) or RULES[node.kind]  # type: ignore[arg-type]


# ---- the pass and its table ----------------------------------------------------------------------------


def propagate(
    graph: Graph,
    input_moments: Moments | Mapping[int, Moments] = Moments(0.0, 1.0),
    *,
    model: nn.Module | None = None,
    layer_stats: LayerStatsFn | None = None,
    train: bool = False,
    tap_energy: Callable[[Node], np.ndarray | None] | None = None,
) -> dict[int, Moments | None]:
    """Propagate every tensor's :class:`Moments` through ``graph``, in execution order.

    Each node's rule (:data:`RULES`) writes ``node.meta["moments"]`` (``None`` where unknown, with
    ``meta["moments_unknown"]`` = the reason; downstream stays unknown until a norm resets it),
    ``meta["layer_stats"]`` (the statistics each weighted part used), ``meta["moments_note"]`` (an
    assumption the rule had to make) and ``meta["profile"]`` (how ``q`` spreads over a feature map's
    positions, ``None`` uniform: :mod:`initlab.graph.spatial`). Rules, in short:

    * input: ``input_moments`` (one for all, or by node id); token ids read by an embedding: none;
    * layer: ``y = W x + b`` with the callback's statistics (:func:`dense_moments`; a convolution reads
      what its taps see: zero padding, its input's spatial profile, a transposed convolution's ``k / s``
      taps per output, :mod:`initlab.graph.spatial`; mirrored input columns reading a looks-linear pair:
      the linear map ``s U a`` it is, :mod:`initlab.graph.mirrored`); embedding: its table's moments,
      rows shared by positions as often as the ids repeat (random ids, or a fixed buffer's);
      MultiheadAttention: projections, :func:`attention_average`, out_proj; Elman RNN: mean-field
      recursion over the sequence; LSTM / GRU: per gate, two steps at a time (``E[h_t h_s]``);
    * activation: Gaussian pre-activation, quadrature (of a sum that holds another activation's
      output: that operand as the activation of a Gaussian, :mod:`initlab.graph.skip_sum`);
      add/sub: independent operands; concat: weighted
      average; mul: independent factors; scale: ``c^2 q``; pool: average of entries independent around
      their unit's mean, max of Gaussians; dropout: identity in eval, ``q/(1-p)`` in train; norm:
      standardised then affine (``F.normalize``: ``q = 1/d``); attention: average of values; softmax:
      ``1/n`` (log-softmax: ``-E[logsumexp]``, the logits' spread); matmul: ``d q1 q2``; reshape:
      unchanged (``roll`` / ``flip`` move the spatial profile); interpolate / pad: the linear map along
      each resampled axis (:mod:`initlab.graph.resample`); param: its entries; constant: the moments a
      recorded forward kept (rotary tables), else unknown; other (``where``, ``clamp`` other than a named
      activation, ...): unknown. Ops in :data:`OP_RULES` (by ``params["rule"]``) take their own rule.

    Args:
        graph: the model's graph (:mod:`initlab.graph.nodes`).
        input_moments: moments of the data (default standardised: mean 0, ``q = 1``, ``c = 0``).
        model: the module the graph was traced from: layers read its weights (unless ``layer_stats``),
            norms their affine / running statistics, params their values.
        layer_stats: the :data:`LayerStatsFn` deciding each weighted part (e.g. :class:`LayerSolver`
            to choose each layer's scale from its own input); default :func:`model_layer_stats`.
        train: train-mode statistics (dropout scales ``q``, BatchNorm normalises); default eval.
        tap_energy: how each convolution's weight spreads over its kernel taps, ``node -> shares or
            None`` (:func:`model_tap_energy`; :func:`initlab.graph.spatial.tap_energy`; ``None`` from it:
            even, an iid draw), which decides how much zero padding it reads; not given: the model's
            weights when ``layer_stats`` is not given either (it reads them), else even for every conv
            (pass ``lambda node: None`` for even taps over the model's own weights).

    Returns:
        ``{node.id: Moments or None}``.

    Source: Bingham & Miikkulainen (2023), "AutoInit: analytic signal-preserving weight initialization
    for neural networks"; Poole et al. (2016), "Exponential expressivity in deep neural networks through
    transient chaos" (the cross moment).

    >>> g = Graph()
    >>> x = g.add(Kind.INPUT, "x")
    >>> r = g.add(Kind.ACTIVATION, "relu", [x.id], activation=("relu", None))
    >>> round(propagate(g)[r.id].second, 12)
    0.5
    """
    if layer_stats is None and model is not None:
        layer_stats = model_layer_stats(model)
        tap_energy = tap_energy or model_tap_energy(model)
    ctx = PropagationContext(graph, {}, model, layer_stats, train, input_moments, tap_energy)
    for node in graph:
        for k in ("moments", "moments_unknown", "moments_note", "layer_stats", "coverage", "profile"):
            node.meta.pop(k, None)
        try:
            out: Moments | None = _rule(node)(node, ctx)
        except MomentsUnknown as exc:
            out = None
            node.meta["moments_unknown"] = str(exc)
        ctx.results[node.id] = out
        node.meta["moments"] = out
        if out is None:
            node.meta["profile"] = None
        elif "profile" not in node.meta:
            carry = _spatial.PROFILE_RULES.get(node.kind)
            node.meta["profile"] = carry(node, ctx) if carry is not None else None
    return ctx.results


def model_tap_energy(model: nn.Module) -> Callable[[Node], np.ndarray | None]:
    """The ``tap_energy`` of :func:`propagate` that reads ``model``'s current convolution weights
    (:func:`initlab.graph.spatial.tap_energy`; ``None`` for a node without a kernel weight)."""

    def read(node: Node) -> np.ndarray | None:
        try:
            p = part_params(model, node, "weight")
        except InitlabError:
            return None
        return None if p is None or p.lookup else _spatial.tap_energy(p.weight)

    return read


def moments_table(graph: Graph, digits: int = 4) -> str:
    """One line per node: id, kind, op, module, mean, second, cross, and the note or unknown reason."""
    rows = [("id", "kind", "op", "module", "mean", "second", "cross", "note")]
    for n in graph:
        m = n.meta.get("moments")
        nums = ("-",) * 3 if m is None else tuple(f"{v:.{digits}g}" for v in (m.mean, m.second, m.cross))
        note = n.meta.get("moments_unknown") or n.meta.get("moments_note") or ""
        rows.append((str(n.id), n.kind.value, n.op, n.module or "", *nums, note))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


# ---- rules in their own modules, registered on import ------------------------------------------------

from initlab.graph import attention as _attention_rules  # noqa: E402  (after the names they import from here)
from initlab.graph import mirrored as _mirrored  # noqa: E402  (read by _dense_layer)
from initlab.graph import recurrent as _recurrent  # noqa: E402
from initlab.graph import resample as _resample  # noqa: E402,F401  (its OP_RULES)
from initlab.graph import skip_sum as _skip_sum  # noqa: E402,F401  (its ACTIVATION rule, into RULES)

_MOVED = {
    **dict.fromkeys(
        "_rnn_direction _rnn_layer _N_PAIR _STATIONARY _Seq _pair_dense _pair_activation _Side _GatedScan "
        "_gated_direction _gated_rnn".split(), _recurrent),
    **dict.fromkeys("attention_average _softmax_sq _mha_layer _logit_var _attention _softmax".split(),
                    _attention_rules),
}


def __getattr__(name: str) -> Any:
    """Names that moved to :mod:`initlab.graph.recurrent` and :mod:`initlab.graph.attention`, still
    importable from here (``from initlab.graph.moments import attention_average, _gated_rnn``)."""
    if name in _MOVED:
        return getattr(_MOVED[name], name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
