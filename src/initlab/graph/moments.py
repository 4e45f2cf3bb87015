"""Propagate each tensor's mean, second moment and cross moment through a :class:`Graph` at init.

One small rule per node kind (:data:`RULES`; weighted layers by module family in :data:`LAYER_RULES`)
writes ``node.meta["moments"]``; weighted layers take their statistics from a callback
(:mod:`initlab.graph.layer_stats`, re-exported here), so the same pass predicts what a model does
(:func:`model_layer_stats`) or chooses each layer's scale from its own input (:class:`LayerSolver`) —
the idea of AutoInit (Bingham & Miikkulainen 2023).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from scipy.integrate import trapezoid
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
from initlab.graph.layer_stats import (
    RNN_GATES,
    LayerSolver,
    LayerStats,
    LayerStatsFn,
    PartParams,
    layer_fans,
    model_layer_stats,
    part_params,
    solve_layer_scale,
)
from initlab.graph.nodes import Graph, Kind, Node

__all__ = [
    "LAYER_RULES",
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
    "attention_average",
    "dense_moments",
    "layer_fans",
    "model_layer_stats",
    "moments_table",
    "propagate",
    "solve_layer_scale",
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
    return Moments(mean, second, cross)


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


@lru_cache(maxsize=1024)
def _softmax_sq(n: int, s2: float, causal: bool = False) -> float:
    r"""``E[sum_i a_i^2]`` for ``a = softmax`` of ``n`` iid ``N(., s2)`` logits (causal: averaged over
    ``1..n`` keys), exact up to quadrature: with ``1/S^2 = int_0^inf t e^{-tS} dt`` and independent logits,

    .. math::
        \mathbb{E}\Big[\sum_i a_i^2\Big] = n \int_0^\infty t\, \mathbb{E}[e^{2l} e^{-t e^l}]\,
        \mathbb{E}[e^{-t e^l}]^{n-1}\, dt

    (inner expectations by Gauss–Hermite, the outer integral by the trapezoid rule in ``log t``).
    """
    ns = np.arange(1, n + 1, dtype=np.float64) if causal else np.array([float(n)])
    if s2 <= 0.0:
        return float(np.mean(1.0 / ns))
    z, w = gaussian_rule(64, q=s2)
    e, sd = np.exp(z), math.sqrt(s2)
    lt = np.linspace(-math.log(n) - 10.0 - 5.0 * sd, 10.0 + 5.0 * sd, 400)
    t = np.exp(lt)
    laplace = np.exp(-t[:, None] * e[None, :])
    phi0, phi2 = laplace @ w, (laplace * e**2) @ w
    log_phi0 = np.log(np.maximum(phi0, 1e-300))
    f = (t**2 * phi2)[:, None] * np.exp((ns[None, :] - 1.0) * log_phi0[:, None])
    return float(np.mean(ns * trapezoid(f, lt, axis=0)))


def attention_average(v: Moments, n_keys: int, logit_var: float = 0.0, causal: bool = False) -> Moments:
    r"""Moments of ``sum_i a_i v_i``: softmax weights ``a`` over ``n_keys`` values at init.

    .. math::
        q_\text{out} = c_v + (q_v - c_v)\, \mathbb{E}\Big[\sum_i a_i^2\Big], \qquad
        c_\text{out} = c_v + (q_v - c_v)\, \mathbb{E}\Big[\sum_i a_{ti} a_{t'i}\Big]

    Values at different positions have pairwise moment ``c_v`` (``cross``: weights sum to 1, so that
    part passes through); the logits are iid ``N(., s^2)`` across keys (``s^2 = logit_var``) and
    independent of the values. ``E[sum a^2]`` is exact for such logits (``1/n`` for ``s^2 = 0``: the
    small-logit limit; it grows with ``s^2``); two different queries share ``1/n`` (causal:
    ``1/(max(t, t') + 1)``). Causal (query ``t`` attends to ``t + 1`` keys): averaged over ``t``
    (``H_L / L`` for equal logits). The mean is the values' mean. Neglected at init: a key whose input
    is longer gets a wider logit and a larger value, and draws weight from every query — a few % on
    ``q`` and ``c`` at ``s^2 ~ 4`` with unnormalised tokens, nothing after a LayerNorm.

    >>> round(attention_average(Moments(0.0, 1.0), 64).second, 6)
    0.015625
    >>> round(attention_average(Moments(0.0, 1.0), 4, causal=True).second, 6)  # H_4 / 4
    0.520833
    """
    n = int(n_keys)
    if n < 1:
        raise InitlabError(f"n_keys={n_keys!r}: attention needs at least one key")
    r = _softmax_sq(n, _key(max(logit_var, 0.0)), causal)
    if causal:
        r_cross = 1.0 if n == 1 else sum(2 * t / (t + 1) for t in range(n)) / (n * (n - 1))
    else:
        r_cross = 1.0 / n
    return Moments(v.mean, v.cross + v.within * r, v.cross + v.within * r_cross)  # type: ignore[operator]


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




def _coverage(node: Node, ctx: PropagationContext) -> float:
    """Mean fraction of a conv's kernel taps that read real (not zero-padded) inputs."""
    kernel = ctx.attr(node, "kernel_size")
    shape = ctx.in_shape(node)
    if (
        kernel is None
        or ctx.attr(node, "transposed", False)
        or ctx.attr(node, "padding_mode", "zeros") != "zeros"
    ):
        return 1.0
    if shape is None:
        ctx.note(node, "zero padding ignored (no input shape)")
        return 1.0
    dims = len(kernel)
    pad, stride, dil = (ctx.attr(node, a, d) for a, d in (("padding", 0), ("stride", 1), ("dilation", 1)))
    frac = 1.0
    for j, (n, k) in enumerate(zip(shape[-dims:], kernel, strict=True)):
        s, d = (v[j] if isinstance(v, (tuple, list)) else v for v in (stride, dil))
        if pad == "valid" or pad == "same":
            p, out = (0, (n - d * (k - 1) - 1) // s + 1) if pad == "valid" else (d * (k - 1) // 2, n)
        else:
            p = pad[j] if isinstance(pad, (tuple, list)) else pad
            out = (n + 2 * p - d * (k - 1) - 1) // s + 1
        idx = np.arange(out)[:, None] * s - p + np.arange(k)[None, :] * d
        frac *= float(((idx >= 0) & (idx < n)).mean()) if out > 0 else 1.0
    return frac


def _dense_layer(node: Node, ctx: PropagationContext) -> Moments:
    x = ctx.input(node)
    cov = _coverage(node, ctx)
    if cov != 1.0:  # a tap reads a real entry with probability cov, a padded zero otherwise
        node.meta["coverage"] = cov
        x = Moments(cov * x.mean, cov * x.second, cov * x.cross)  # type: ignore[operator]
    return dense_moments(x, ctx.stats(node, "weight", x))


def _embedding_layer(node: Node, ctx: PropagationContext) -> Moments:
    """Rows of the table at uniformly random tokens: ``m = E[w]``, ``q = E[w^2]``, ``c = m^2 + var/rows``."""
    st = ctx.stats(node, "weight", Moments(0.0, 0.0))
    m = st.weight_mean
    return Moments(m, st.weight_second, m**2 + (st.weight_second - m**2) / max(st.fan_in, 1))


def _seq_len(ctx: PropagationContext, node: Node, i: int) -> int | None:
    shape = ctx.in_shape(node, i)
    if shape is None:
        return None
    return shape[1] if len(shape) == 3 and ctx.attr(node, "batch_first", False) else shape[0]


def _mha_layer(node: Node, ctx: PropagationContext) -> Moments:
    """q/k/v projections, softmax averaging of the values (:func:`attention_average`), out_proj."""
    idx = [0, 1, 2] if len(node.inputs) >= 3 else [0, 0, 0]
    xq, xk, xv = (ctx.input(node, i) for i in idx)
    q = dense_moments(xq, ctx.stats(node, "query", xq))
    k = dense_moments(xk, ctx.stats(node, "key", xk))
    v = dense_moments(xv, ctx.stats(node, "value", xv))
    n_keys = _seq_len(ctx, node, idx[1])
    if n_keys is None:
        raise MomentsUnknown("MultiheadAttention: the number of keys is unknown (no input shape)")
    causal = bool(node.params.get("is_causal", False))
    a = attention_average(v, n_keys, q.second * k.within, causal)  # scale 1/sqrt(d_head) cancels d_head
    return dense_moments(a, ctx.stats(node, "out", a))


def _rnn_direction(
    node: Node, ctx: PropagationContext, x: Moments, sfx: str, act: str, steps: int | None
) -> Moments:
    pre_x = dense_moments(x, ctx.stats(node, "ih" + sfx, x))
    h = _activation((act, None), None, pre_x)  # the hidden state after the first step (h_0 = 0)
    hh = ctx.stats(node, "hh" + sfx, h)
    hs = [h]
    for _ in range(1, steps or 1000):
        rec = dense_moments(h, hh)
        pre = Moments(
            pre_x.mean + rec.mean,
            pre_x.second + rec.second + 2 * pre_x.mean * rec.mean,
            pre_x.cross + rec.cross + 2 * pre_x.mean * rec.mean,
        )  # type: ignore[operator]
        if pre.second > 1e30:
            raise MomentsUnknown(f"{node.op}: the recurrent state diverges")
        h_new = _activation((act, None), None, pre)
        converged = abs(h_new.second - h.second) < 1e-10 and abs(h_new.cross - h.cross) < 1e-10  # type: ignore[operator]
        h = h_new
        hs.append(h)
        if steps is None and converged:
            return h
    return _mix(hs, [1.0] * len(hs)) if steps else h


def _rnn_layer(node: Node, ctx: PropagationContext) -> Moments:
    """Elman RNN, mean field: ``q`` of ``h_t = phi(W_ih x_t + W_hh h_{t-1} + b)`` iterated from ``h_0 = 0``
    with ``W_hh`` treated as fresh at each step (a tanh-bounded state), averaged over the ``L`` steps of
    the input (the fixed point without a shape); directions averaged, layers stacked. The ``hh`` part's
    callback sees ``h_1`` (after one step). LSTM / GRU: :func:`_gated_rnn`."""
    x = ctx.input(node)
    act = ctx.attr(node, "nonlinearity", "tanh")
    layers, bidir = ctx.attr(node, "num_layers", 1), ctx.attr(node, "bidirectional", False)
    steps = _seq_len(ctx, node, 0)
    for layer in range(layers):
        sfxs = [f"_l{layer}"] + ([f"_l{layer}_reverse"] if bidir else [])
        x = _mix([_rnn_direction(node, ctx, x, s, act, steps) for s in sfxs], [1.0] * len(sfxs))
    return x


# ---- gated recurrent layers: a two-step mean field --------------------------------------------------

_N_PAIR = 40  # Gauss–Hermite order per axis of the two-step expectations
_STATIONARY = 64  # steps run when the sequence length is unknown; the second half is reported


class _Seq:
    """A per-unit process over steps ``0..L`` (step 0: the zero initial state): means ``m[t]`` and
    pairwise second moments ``S[t, s] = E[x_t x_s]`` (same unit, same example), filled a row per step."""

    def __init__(self, steps: int) -> None:
        self.m, self.S = np.zeros(steps + 1), np.zeros((steps + 1, steps + 1))

    def set_row(self, t: int, mean: float, row: np.ndarray) -> None:
        """Step ``t``: its mean and ``E[x_t x_s]`` for ``s = 1..t``."""
        self.m[t] = mean
        self.S[t, 1 : t + 1] = self.S[1 : t + 1, t] = row

    @classmethod
    def exchangeable(cls, x: Moments, steps: int) -> _Seq:
        """``steps`` positions of ``x``: ``E[x_t x_s] = cross`` for ``t != s``, ``second`` on the diagonal."""
        seq = cls(steps)
        seq.m[1:], seq.S[1:, 1:] = x.mean, x.cross
        seq.S[range(1, steps + 1), range(1, steps + 1)] = x.second
        return seq

    def dense(self, st: LayerStats) -> _Seq:
        """``W x + b`` at every step (``st`` as in :func:`dense_moments`)."""
        out = _Seq(len(self.m) - 1)
        out.m[1:] = st.fan_in * st.weight_mean * self.m[1:] + st.bias_mean
        out.S[1:, 1:] = _pair_dense(st, self.m[1:, None], self.m[None, 1:], self.S[1:, 1:])
        return out

    @classmethod
    def average(cls, seqs: list[_Seq]) -> _Seq:
        """Units pooled from ``seqs`` in equal numbers (the two directions' concatenated halves)."""
        out = cls(len(seqs[0].m) - 1)
        out.m, out.S = np.mean([s.m for s in seqs], 0), np.mean([s.S for s in seqs], 0)
        return out

    def reversed(self) -> _Seq:
        out = _Seq(len(self.m) - 1)
        out.m[1:], out.S[1:, 1:] = self.m[:0:-1], self.S[:0:-1, :0:-1]
        return out

    def summary(self, first: int = 1) -> Moments:
        """Moments pooled over steps ``first..L``: mean, ``q``, ``cross`` over pairs of different steps."""
        m, sq = self.m[first:], self.S[first:, first:]
        k, mean = len(m), float(m.mean())
        cross = float(sq.sum() - np.trace(sq)) / (k * (k - 1)) if k > 1 else mean**2
        q = float(np.trace(sq)) / k
        return Moments(mean, q, min(max(cross, mean**2), q))


def _pair_dense(st: LayerStats, m_t: Any, m_s: Any, q_ts: Any) -> Any:
    """:func:`dense_moments`'s second moment for two steps: ``E[y_t y_s]`` from ``E[x_t x_s] = q_ts``."""
    n, wm = st.fan_in, st.weight_mean
    wv = st.weight_second - wm**2
    return (
        n * wv * q_ts
        + wm**2 * (n * q_ts + n * (n - 1) * m_t * m_s)
        + n * wm * st.bias_mean * (m_t + m_s)
        + st.bias_second
    )


def _pair_activation(name: str, x: _Seq, t: int) -> tuple[float, np.ndarray]:
    r"""``E[phi(x_t)]`` and ``E[phi(x_t) phi(x_s)]`` (``s = 1..t``) for jointly Gaussian ``x_t, x_s``:
    ``x_t = m_t + sigma_t z_1``, ``x_s = m_s + beta z_1 + gamma z_2`` (``beta = cov / sigma_t``,
    ``gamma^2 = var_s - beta^2``), a tensor-product Gauss–Hermite rule (``phi`` smooth: sigmoid, tanh)."""
    z, w = gaussian_rule(_N_PAIR)
    q, m_s, m_t = np.diag(x.S)[1 : t + 1], x.m[1 : t + 1], x.m[t]
    sd = math.sqrt(max(q[-1] - m_t**2, 0.0))
    beta = (x.S[t, 1 : t + 1] - m_t * m_s) / sd if sd > 0 else np.zeros(t)
    gamma = np.sqrt(np.maximum(q - m_s**2 - beta**2, 0.0))
    fa = activation_values(name, m_t + sd * z)
    xs = m_s[:, None, None] + beta[:, None, None] * z[None, :, None] + gamma[:, None, None] * z[None, None, :]
    return float(w @ fa), (activation_values(name, xs) @ w) @ (w * fa)


_Side = tuple[float, np.ndarray, np.ndarray]  # a term's mean at t, its means at s = 1..t, E[._t ._s]


class _GatedScan:
    """The two-step mean field of one direction of one LSTM / GRU layer (:func:`_gated_rnn`), step by
    step: ``side[g]`` is the input side ``W_ih[g] x + b`` of gate ``g``'s pre-activation at every step."""

    def __init__(self, mode: str, side: Mapping[str, _Seq], steps: int, hr: LayerStats | None) -> None:
        self.mode, self.side, self.hr = mode, side, hr
        self.pre, self.val = ({g: _Seq(steps) for g in side} for _ in range(2))
        self.u, self.h, self.c, self.tanh_c = (_Seq(steps) for _ in range(4))
        self.keep = np.zeros(steps + 1)  # E[f_t] (LSTM) / E[z_t] (GRU): the share of the state kept

    def step(self, t: int, hh: Mapping[str, LayerStats] | None) -> None:
        """Fill step ``t`` (``hh`` ``None``: no recurrent side, for a first look at ``h_1``)."""
        rec = {g: self._recurrent(hh[g] if hh is not None else None, t) for g in self.side}
        if self.mode == "LSTM":
            i, f, g, o = (self._gate(k, t, rec[k], "tanh" if k == "g" else "sigmoid") for k in "ifgo")
            self._cell(t, i, f, g)
            self._output(t, o.m[t] * self.tanh_c.m[t], o.S[t, 1 : t + 1] * self.tanh_c.S[t, 1 : t + 1])
        else:
            r, z = (self._gate(k, t, rec[k], "sigmoid") for k in "rz")
            rho_t, rho_s, rho_ts = rec["n"]  # r * (W_hn h + b_hn): independent factors
            gated = (r.m[t] * rho_t, r.m[1 : t + 1] * rho_s, r.S[t, 1 : t + 1] * rho_ts)
            self._update(t, z, self._gate("n", t, gated, "tanh"))

    def _recurrent(self, st: LayerStats | None, t: int) -> _Side:
        """``W_hh[g] h_{t-1} + b``: its mean at ``t``, at ``s = 1..t`` and ``E[._t ._s]``."""
        if st is None:
            return 0.0, np.zeros(t), np.zeros(t)
        h = self.h
        mean = st.fan_in * st.weight_mean * h.m[:t] + st.bias_mean
        return float(mean[-1]), mean, _pair_dense(st, h.m[t - 1], h.m[:t], h.S[t - 1, :t])

    def _gate(self, g: str, t: int, rec: _Side, act: str) -> _Seq:
        """Gate ``g`` at step ``t``: pre-activation = input side + ``rec`` (independent), then ``act``."""
        x, (r_t, r_s, r_ts) = self.side[g], rec
        row = x.S[t, 1 : t + 1] + r_ts + x.m[t] * r_s + r_t * x.m[1 : t + 1]
        self.pre[g].set_row(t, x.m[t] + r_t, row)
        self.val[g].set_row(t, *_pair_activation(act, self.pre[g], t))
        return self.val[g]

    def _cell(self, t: int, i: _Seq, f: _Seq, g: _Seq) -> None:
        """``c_t = f_t c_{t-1} + u_t`` (``u = i g``), ``f_t`` independent of the rest and of other steps:
        ``E[c_t c_s] = E[f_t] E[c_{t-1} c_s] + E[u_t c_s]`` (``s < t``),
        ``E[u_t c_s] = E[f_s] E[u_t c_{s-1}] + E[u_t u_s]``."""
        u = i.S[t, 1 : t + 1] * g.S[t, 1 : t + 1]
        self.keep[t] = f.m[t]
        v = np.zeros(t)  # v[s] = E[u_t c_s], s = 0..t-1
        for s in range(1, t):
            v[s] = self.keep[s] * v[s - 1] + u[s - 1]
        c = self.c
        diag = f.S[t, t] * c.S[t - 1, t - 1] + 2 * f.m[t] * v[t - 1] + u[-1]
        c.set_row(t, f.m[t] * c.m[t - 1] + i.m[t] * g.m[t], np.append(f.m[t] * c.S[t - 1, 1:t] + v[1:], diag))
        self.tanh_c.set_row(t, *_pair_activation("tanh", c, t))

    def _update(self, t: int, z: _Seq, n: _Seq) -> None:
        """``h_t = (1 - z_t) n_t + z_t h_{t-1}``, ``z_t`` independent of the rest and of other steps."""
        zm, z2, h = z.m[t], z.S[t, t], self.h
        self.keep[t] = zm
        w = np.zeros(t)  # w[s] = E[n_t h_s], s = 0..t-1
        for s in range(1, t):
            w[s] = (1 - self.keep[s]) * n.S[t, s] + self.keep[s] * w[s - 1]
        diag = (1 - 2 * zm + z2) * n.S[t, t] + 2 * (zm - z2) * w[t - 1] + z2 * h.S[t - 1, t - 1]
        row = np.append((1 - zm) * w[1:] + zm * h.S[t - 1, 1:t], diag)
        self._output(t, (1 - zm) * n.m[t] + zm * h.m[t - 1], row)

    def _output(self, t: int, mean: float, row: np.ndarray) -> None:
        """``h_t`` (through an LSTM's projection ``"hr"`` when there is one)."""
        self.u.set_row(t, mean, row)
        if self.hr is None:
            self.h.set_row(t, mean, row)
        else:
            st, u = self.hr, self.u
            h_mean = st.fan_in * st.weight_mean * mean + st.bias_mean
            self.h.set_row(t, h_mean, _pair_dense(st, mean, u.m[1 : t + 1], row))


def _gated_direction(node: Node, ctx: PropagationContext, mode: str, sfx: str, x: _Seq) -> _Seq:
    """One direction of one gated layer: its parts from the callback (``x``'s summary for the ``ih``
    gates, ``h_1`` without recurrent biases for ``hr`` and the ``hh`` gates), then the scan."""
    steps, gates, xm = len(x.m) - 1, RNN_GATES[mode], x.summary()
    side = {g: x.dense(ctx.stats(node, f"ih{sfx}:{g}", xm)) for g in gates}
    first = _GatedScan(mode, side, steps, None)
    first.step(1, None)
    u1 = Moments(first.u.m[1], first.u.S[1, 1])
    hr = ctx.stats(node, f"hr{sfx}", u1) if (ctx.attr(node, "proj_size", 0) or 0) > 0 else None
    h1 = dense_moments(u1, hr) if hr is not None else u1
    hh = {g: ctx.stats(node, f"hh{sfx}:{g}", h1) for g in gates}
    scan = _GatedScan(mode, side, steps, hr)
    for t in range(1, steps + 1):
        scan.step(t, hh)
    return scan.h


def _gated_rnn(node: Node, ctx: PropagationContext) -> Moments:
    r"""LSTM / GRU: a mean field over pairs of steps.

    Gate ``g``'s pre-activation ``a_t = W_ih[g] x_t + W_hh[g] h_{t-1} + b_ih[g] + b_hh[g]`` (from its own
    parts ``"ih_l0:g"``, ``"hh_l0:g"``, torch's gate order :data:`RNN_GATES`: an LSTM's forget bias 1 is
    a mean, not a spread) is Gaussian per unit and jointly over steps, ``E[a_t a_s]`` following from the
    input's and ``h``'s ``E[x_t x_s]``; each gate's ``E[phi(a_t)]`` and ``E[phi(a_t) phi(a_s)]`` by
    bivariate quadrature; then, from ``h_0 = c_0 = 0``,

    .. math::
        c_t = f_t c_{t-1} + i_t g_t, \quad h_t = o_t \tanh c_t \quad \text{(LSTM)}

        n_t = \tanh(W_{in} x_t + b_{in} + r_t (W_{hn} h_{t-1} + b_{hn})), \quad
        h_t = (1 - z_t) n_t + z_t h_{t-1} \quad \text{(GRU)}

    Assumed: the gates independent of each other (different weight rows); the kept share ``f_t`` /
    ``z_t`` independent of the state and across steps (the other gates keep their correlation across
    steps, so a slow input adds up coherently in ``c``); ``c_t`` (LSTM) and ``n_t``'s pre-activation
    (GRU) Gaussian. The input is exchangeable over its ``L`` positions (its ``cross``); inside the
    module each layer hands the next its full ``E[h_t h_s]``; directions averaged (their halves are
    concatenated); inter-layer dropout scales ``q`` in train mode; an LSTM projection (``"hr_l0"``)
    maps ``h``. Reported: mean and ``q`` over the ``L`` steps, ``cross`` over pairs of different steps
    (``L`` unknown: steps 33-64 of 64, the stationary regime). The ``hh`` and ``hr`` parts' callback
    sees ``h_1`` without the recurrent biases. Measured against ``nn.LSTM`` / ``nn.GRU`` (width 256-1024,
    16 steps), the assumptions cost up to 1% of ``q`` for one layer, 2.3% for two stacked.
    """
    mode = str(ctx.attr(node, "mode", node.op))
    if mode not in RNN_GATES:
        raise MomentsUnknown(f"{node.op}: unknown gated mode {mode!r}")
    x, steps = ctx.input(node), _seq_len(ctx, node, 0)
    if steps is None:
        ctx.note(node, f"sequence length unknown: steps {_STATIONARY // 2 + 1}-{_STATIONARY} (stationary)")
    seq = _Seq.exchangeable(x, steps or _STATIONARY)
    layers, bidir = ctx.attr(node, "num_layers", 1), ctx.attr(node, "bidirectional", False)
    p = float(ctx.attr(node, "dropout", 0.0) or 0.0)
    for layer in range(layers):
        if layer and ctx.train and p > 0:
            seq.S[np.diag_indices_from(seq.S)] /= 1.0 - p
        outs = [_gated_direction(node, ctx, mode, f"_l{layer}", seq)]
        if bidir:
            outs.append(_gated_direction(node, ctx, mode, f"_l{layer}_reverse", seq.reversed()).reversed())
        seq = _Seq.average(outs)
    return seq.summary(1 if steps else _STATIONARY // 2 + 1)


def _not_modelled(node: Node, ctx: PropagationContext) -> Moments:
    raise MomentsUnknown(f"{node.op}: not modelled (bagged lookup); measure it")


#: Rules for ``Kind.LAYER`` by module class name (resolved through the module's MRO, else ``node.op``);
#: anything else is a dense map (Linear, ConvNd, ConvTransposeNd, HF Conv1D).
LAYER_RULES: dict[str, Rule] = {
    "Embedding": _embedding_layer,
    "MultiheadAttention": _mha_layer,
    "RNN": _rnn_layer,
    "LSTM": _gated_rnn,
    "GRU": _gated_rnn,
    "EmbeddingBag": _not_modelled,
}


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
    """Independent factors (gating): ``m = m1 m2``, ``q = q1 q2``, ``c = c1 c2``."""
    a = ctx.input(node, 0)
    if len(node.inputs) < 2:
        return a.scaled(float(node.params.get("value", node.params.get("factor", 1.0))))
    if node.inputs[0] == node.inputs[1]:
        return _square(a)
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
    not features. Sum: ``n`` times the average; max: :func:`_max_pool`."""
    x = ctx.input(node)
    op = node.op.lower()
    n = _window(node, ctx)
    if "max" in op:
        return _max_pool(node, ctx, x, n)
    if "lp" in op:
        raise MomentsUnknown(f"{node.op}: power-average pooling is not modelled")
    avg = Moments(x.mean, x.cross + x.within / n, x.cross)  # type: ignore[operator]
    return avg.scaled(float(n)) if "sum" in op else avg


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
    the affine map of its running statistics (near identity at init) when the model is given. Resets an
    unknown input (to ``q = 1, c = 0``)."""
    x, family, module = ctx.maybe_input(node), _norm_family(node), ctx.module(node)
    if family == "batch" and not ctx.train and module is not None:
        st = _batchnorm_eval(module)
        if st is not None:
            if x is None:
                raise MomentsUnknown("BatchNorm (eval) of an unknown input")
            return _diag_affine(x, st)
    if family == "batch" and not ctx.train:
        ctx.note(node, "BatchNorm taken as normalising (no running statistics)")
    if x is None:
        ctx.note(node, "input unknown: reset to mean 0, q 1")
    xn = _normalised(x, family, float(ctx.attr(node, "eps", 0.0) or 0.0))
    st = ctx.layer_stats(node, "affine", xn) if ctx.layer_stats is not None else None
    if st is not None:
        node.meta.setdefault("layer_stats", {})["affine"] = st
    return _diag_affine(xn, st) if st is not None else xn


def _logit_var(ctx: PropagationContext, node: Node) -> float:
    """Variance across keys of the logits ``scale q.k``: ``scale^2 d q_q (q_k - c_k)``; 0 if unknown."""
    if node.op == "scaled_dot_product_attention" and len(node.inputs) >= 2:
        q, k = ctx.maybe_input(node, 0), ctx.maybe_input(node, 1)
        if q is not None and k is not None:
            scale, shape = node.params.get("scale"), ctx.in_shape(node, 0)
            if scale is None:
                return q.second * k.within
            if shape is not None:
                return scale**2 * shape[-1] * q.second * k.within
    prod = ctx.graph[node.inputs[0]]
    if prod.kind is Kind.SOFTMAX:
        logits = ctx.maybe_input(prod)
        if logits is not None:
            return logits.within
    ctx.note(node, "logit variance unknown: uniform weights")
    return 0.0


def _attention(node: Node, ctx: PropagationContext) -> Moments:
    """``sdpa(q, k, v)`` or ``softmax(.) @ v``: the values' average (:func:`attention_average`) over the
    keys (``v.shape[-2]``), causal when ``params["is_causal"]``."""
    i = 2 if node.op == "scaled_dot_product_attention" else len(node.inputs) - 1  # sdpa: (q, k, v, mask)
    v, shape = ctx.input(node, i), ctx.in_shape(node, i)
    if shape is None or len(shape) < 2:
        raise MomentsUnknown("number of keys unknown (no value shape)")
    return attention_average(v, shape[-2], _logit_var(ctx, node), bool(node.params.get("is_causal", False)))


def _softmax(node: Node, ctx: PropagationContext) -> Moments:
    """Entries of a softmax over ``n`` logits: mean ``1/n``, ``q = E[sum a^2] / n``, ``c = 1/n^2``."""
    if node.shape is None:
        raise MomentsUnknown("softmax size unknown (no shape)")
    n = node.shape[node.params.get("dim", -1)]
    x = ctx.maybe_input(node)
    r = _softmax_sq(n, _key(x.within) if x is not None else 0.0)
    return Moments(1.0 / n, r / n, 1.0 / n**2)


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


def _unknown(node: Node, ctx: PropagationContext) -> Moments:
    raise MomentsUnknown(
        "constant made inside forward" if node.kind is Kind.CONSTANT else f"{node.op}: unknown op"
    )


#: One rule per node kind; register a new one by assignment.
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
    Kind.ATTENTION: _attention,
    Kind.SOFTMAX: _softmax,
    Kind.MATMUL: _matmul,
    Kind.RESHAPE: _reshape,
    Kind.PARAM: _param,
    Kind.CONSTANT: _unknown,
    Kind.OTHER: _unknown,
}


# ---- the pass and its table ----------------------------------------------------------------------------


def propagate(
    graph: Graph,
    input_moments: Moments | Mapping[int, Moments] = Moments(0.0, 1.0),
    *,
    model: nn.Module | None = None,
    layer_stats: LayerStatsFn | None = None,
    train: bool = False,
) -> dict[int, Moments | None]:
    """Propagate every tensor's :class:`Moments` through ``graph``, in execution order.

    Each node's rule (:data:`RULES`) writes ``node.meta["moments"]`` (``None`` where unknown, with
    ``meta["moments_unknown"]`` = the reason; downstream stays unknown until a norm resets it),
    ``meta["layer_stats"]`` (the statistics each weighted part used) and ``meta["moments_note"]`` (an
    assumption the rule had to make). Rules, in short:

    * input: ``input_moments`` (one for all, or by node id); token ids read by an embedding: none;
    * layer: ``y = W x + b`` with the callback's statistics (:func:`dense_moments`; zero padding
      dilutes the input by the mean fraction of real taps); embedding: its table's moments;
      MultiheadAttention: projections, :func:`attention_average`, out_proj; Elman RNN: mean-field
      recursion over the sequence; LSTM / GRU: per gate, two steps at a time (``E[h_t h_s]``);
    * activation: Gaussian pre-activation, quadrature; add/sub: independent operands; concat: weighted
      average; mul: independent factors; scale: ``c^2 q``; pool: average of entries independent around
      their unit's mean, max of Gaussians; dropout: identity in eval, ``q/(1-p)`` in train; norm:
      standardised then affine; attention: average of values; softmax: ``1/n``; matmul: ``d q1 q2``;
      reshape: unchanged; param: its entries; constant / other: unknown.

    Args:
        graph: the model's graph (:mod:`initlab.graph.nodes`).
        input_moments: moments of the data (default standardised: mean 0, ``q = 1``, ``c = 0``).
        model: the module the graph was traced from: layers read its weights (unless ``layer_stats``),
            norms their affine / running statistics, params their values.
        layer_stats: the :data:`LayerStatsFn` deciding each weighted part (e.g. :class:`LayerSolver`
            to choose each layer's scale from its own input); default :func:`model_layer_stats`.
        train: train-mode statistics (dropout scales ``q``, BatchNorm normalises); default eval.

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
    ctx = PropagationContext(graph, {}, model, layer_stats, train, input_moments)
    for node in graph:
        for k in ("moments", "moments_unknown", "moments_note", "layer_stats", "coverage"):
            node.meta.pop(k, None)
        try:
            out: Moments | None = RULES[node.kind](node, ctx)
        except MomentsUnknown as exc:
            out = None
            node.meta["moments_unknown"] = str(exc)
        ctx.results[node.id] = out
        node.meta["moments"] = out
    return ctx.results


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
