"""Propagate each tensor's mean, second moment and cross moment through a :class:`Graph` at init.

One small rule per node kind (:data:`RULES`; weighted layers by module family in :data:`LAYER_RULES`)
writes ``node.meta["moments"]``; weighted layers take their statistics from a callback, so the same
pass predicts what a model does (:func:`model_layer_stats`) or chooses each layer's scale from its own
input (:class:`LayerSolver`) — the idea of AutoInit (Bingham & Miikkulainen 2023).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
import torch
from scipy.integrate import trapezoid
from scipy.special import ndtr
from torch import nn

from initlab.errors import InitlabError
from initlab.fans import Fans, compute_fans
from initlab.gains import (
    activation_fn,
    activation_kinks,
    activation_moments,
    activation_values,
    gaussian_rule,
)
from initlab.graph.nodes import Graph, Kind, Node

__all__ = [
    "LAYER_RULES",
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


@dataclass(frozen=True)
class LayerStats:
    """What one weighted map contributes: ``y_j = sum_i w_ji x_i + b_j`` over ``fan_in`` inputs.

    Attributes:
        fan_in: inputs per output (the layer's true fan_in: groups, layouts; for a lookup table, the
            number of rows; 1 for a per-unit affine map such as a norm's).
        weight_second: ``E[w^2]`` over the weight's entries (``Var(w)`` for zero-mean weights).
        weight_mean: ``E[w]``.
        bias_mean, bias_second: ``E[b]`` and ``E[b^2]`` (0 without a bias).
    """

    fan_in: int
    weight_second: float
    weight_mean: float = 0.0
    bias_mean: float = 0.0
    bias_second: float = 0.0

    @classmethod
    def from_tensors(cls, weight: torch.Tensor | None, bias: torch.Tensor | None, fan_in: int) -> LayerStats:
        """Read the statistics of actual tensors (``weight=None``: a weight of ones)."""
        w = torch.ones(1) if weight is None else weight.detach().double()
        b = torch.zeros(1) if bias is None else bias.detach().double()
        return cls(
            int(fan_in), float(w.square().mean()), float(w.mean()), float(b.mean()), float(b.square().mean())
        )


#: ``layer_stats(node, part, x)``: the statistics of ``part`` of the layer at ``node`` (``"weight"``;
#: ``"query"``/``"key"``/``"value"``/``"out"`` for attention; ``"ih_l0"``/``"hh_l0"``... for an RNN;
#: ``"affine"`` for a norm) given the moments ``x`` of that part's input, or ``None`` if unknown.
LayerStatsFn = Callable[[Node, str, "Moments"], "LayerStats | None"]


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


def solve_layer_scale(fan_in: int, x: Moments, target_second: float = 1.0, bias_second: float = 0.0) -> float:
    r"""The weight second moment (``Var(w)`` of a zero-mean init) that gives the output ``E[y^2] = target``.

    .. math::
        \mathrm{Var}(w) = \frac{q_\text{target} - \mathbb{E}[b^2]}{\mathrm{fan\_in}\; \mathbb{E}[x^2]}

    Raises:
        InitlabError: ``E[x^2] = 0`` (no scale restores a zero signal) or ``bias_second >= target``.

    Source: Bingham & Miikkulainen (2023), "AutoInit".

    >>> solve_layer_scale(512, Moments(0.0, 0.5))
    0.00390625
    """
    if x.second <= 0:
        raise InitlabError(f"the input's E[x^2] = {x.second}: no weight scale restores a zero signal")
    if not target_second > bias_second:
        raise InitlabError(f"target_second={target_second} must exceed the bias's E[b^2] = {bias_second}")
    return (target_second - bias_second) / (fan_in * x.second)


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


def _is_hf_conv1d(module: nn.Module | None) -> bool:
    return type(module).__name__ == "Conv1D" and getattr(getattr(module, "weight", None), "ndim", 0) == 2


def layer_fans(module: nn.Module, node: Node | None = None) -> Fans:
    """The true fans of ``module.weight``: groups, transposed convolutions, HF ``Conv1D`` ``(in, out)``.

    ``node.params["groups"]`` / ``["transposed"]`` override the module's attributes.

    >>> layer_fans(nn.Conv2d(8, 8, 3, groups=8))
    Fans(fan_in=9, fan_out=9, receptive_field=9)
    """
    params = node.params if node is not None else {}
    groups = params.get("groups", getattr(module, "groups", 1))
    transposed = params.get("transposed", bool(getattr(module, "transposed", False)) or _is_hf_conv1d(module))
    return compute_fans(tuple(module.weight.shape), groups=groups, transposed=transposed)


class PartParams(NamedTuple):
    """The tensors of one weighted part of a layer: ``weight``, ``bias`` (``None`` if absent),
    its ``fan_in``, and ``lookup`` (a table read row by row: an embedding)."""

    weight: torch.Tensor | None
    bias: torch.Tensor | None
    fan_in: int
    lookup: bool = False


def _mha_part(module: nn.Module, part: str) -> PartParams:
    if part == "out":
        return PartParams(module.out_proj.weight, module.out_proj.bias, module.out_proj.weight.shape[1])
    i = ("query", "key", "value").index(part)
    e = module.embed_dim
    w = module.in_proj_weight[i * e : (i + 1) * e] if module.in_proj_weight is not None else None
    if w is None:
        w = getattr(module, f"{('q', 'k', 'v')[i]}_proj_weight")
    b = module.in_proj_bias[i * e : (i + 1) * e] if module.in_proj_bias is not None else None
    return PartParams(w, b, w.shape[1])


def part_params(model: nn.Module, node: Node, part: str) -> PartParams | None:
    """``part`` (``"weight"``, ``"query"``, ``"out"``, ``"ih_l0"``, ``"affine"``, ...) of the module
    ``node`` calls in ``model``, ``None`` if there is none (or it has no such weight)."""
    if node.module is None:
        return None
    try:
        return _module_params(model.get_submodule(node.module), part, node)
    except AttributeError:
        return None


def _module_params(module: nn.Module, part: str, node: Node | None = None) -> PartParams:
    """The weight, bias and fan_in of ``part`` of ``module``."""
    if part == "affine":
        return PartParams(getattr(module, "weight", None), getattr(module, "bias", None), 1)
    if isinstance(module, nn.MultiheadAttention):
        return _mha_part(module, part)
    if isinstance(module, nn.RNNBase):
        w = getattr(module, f"weight_{part}")
        sfx = part[2:]
        b = None
        if part.startswith("ih") and module.bias:
            b = getattr(module, f"bias_ih{sfx}") + getattr(module, f"bias_hh{sfx}")
        return PartParams(w, b, w.shape[1])
    if isinstance(module, nn.Embedding):
        return PartParams(module.weight, None, module.num_embeddings, lookup=True)
    return PartParams(module.weight, getattr(module, "bias", None), layer_fans(module, node).fan_in)


def model_layer_stats(model: nn.Module) -> LayerStatsFn:
    """A :data:`LayerStatsFn` that reads ``model``'s current weights (predicts what the model does now)."""

    def read(node: Node, part: str, x: Moments) -> LayerStats | None:
        p = part_params(model, node, part)
        return None if p is None else LayerStats.from_tensors(p.weight, p.bias, p.fan_in)

    return read


class LayerSolver:
    """A :data:`LayerStatsFn` that solves each layer's weight scale from its own input's moments.

    Every weighted map gets zero-mean weights with ``E[w^2] = target / (fan_in E[x^2])`` and zero bias
    (:func:`solve_layer_scale`), so each output — every pre-activation — has second moment ``target``
    whatever came before (ReLU then tanh, gates, residual sums); a lookup table gets ``E[w^2] = target``.
    Recurrent ``hh`` weights and norm affines are read from the model, not solved (their scale sets
    the dynamics / is 1). A module called twice keeps its first solution. ``solved`` maps
    ``(module qualname, part)`` to the weight second moment (``Var(w)``) the model level should write.

    Source: Bingham & Miikkulainen (2023), "AutoInit".
    """

    def __init__(self, model: nn.Module, target_second: float = 1.0) -> None:
        self.model, self.target_second = model, float(target_second)
        self.solved: dict[tuple[str, str], float] = {}
        self._read = model_layer_stats(model)

    def __call__(self, node: Node, part: str, x: Moments) -> LayerStats | None:
        if part == "affine" or part.startswith("hh"):
            return self._read(node, part, x)
        p = part_params(self.model, node, part)
        if p is None:
            return None
        key = (str(node.module), part)
        if key not in self.solved:
            solve = self.target_second if p.lookup else solve_layer_scale(p.fan_in, x, self.target_second)
            self.solved[key] = solve
        return LayerStats(p.fan_in, self.solved[key])


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
    callback sees ``h_1`` (after one step). LSTM / GRU: unknown."""
    x = ctx.input(node)
    act = ctx.attr(node, "nonlinearity", "tanh")
    layers, bidir = ctx.attr(node, "num_layers", 1), ctx.attr(node, "bidirectional", False)
    steps = _seq_len(ctx, node, 0)
    for layer in range(layers):
        sfxs = [f"_l{layer}"] + ([f"_l{layer}_reverse"] if bidir else [])
        x = _mix([_rnn_direction(node, ctx, x, s, act, steps) for s in sfxs], [1.0] * len(sfxs))
    return x


def _gated_rnn(node: Node, ctx: PropagationContext) -> Moments:
    raise MomentsUnknown(f"{node.op}: not modelled (gated recurrent / bagged lookup); measure it")


#: Rules for ``Kind.LAYER`` by module class name (resolved through the module's MRO, else ``node.op``);
#: anything else is a dense map (Linear, ConvNd, ConvTransposeNd, HF Conv1D).
LAYER_RULES: dict[str, Rule] = {
    "Embedding": _embedding_layer,
    "MultiheadAttention": _mha_layer,
    "RNN": _rnn_layer,
    "LSTM": _gated_rnn,
    "GRU": _gated_rnn,
    "EmbeddingBag": _gated_rnn,
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
      recursion over the sequence (LSTM/GRU: unknown);
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
