"""Spatial profiles: how a feature map's second moment is spread over its positions at init.

Zero padding gives border outputs fewer real taps, and a strided transposed convolution gives its
outputs different numbers of taps, so ``E[x^2]`` varies with position; the next convolution reads it
through its own taps. A profile ``pi`` (mean 1, one entry per position) travels beside the pooled
:class:`~initlab.graph.moments.Moments` in ``node.meta["profile"]`` (``None``: uniform);
:func:`conv_geometry` is what a convolution does with it, :data:`PROFILE_RULES` how other nodes pass
it on.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from initlab.graph.nodes import Kind, Node

if TYPE_CHECKING:
    from initlab.graph.moments import PropagationContext

__all__ = [
    "MAX_POSITIONS",
    "PROFILE_RULES",
    "ConvGeometry",
    "conv_geometry",
    "normalised",
    "tap_energy",
    "tap_maps",
    "zero_padded",
]

#: Feature maps with more positions than this carry no profile (uniform is assumed past them).
MAX_POSITIONS = 1 << 18
_FLAT = 1e-9  # a profile this close to 1 everywhere is uniform
_CHUNK = 1 << 22  # tap-map entries computed per convolution call


def _ints(v: Any, d: int) -> tuple[int, ...]:
    return tuple(int(x) for x in v) if isinstance(v, (tuple, list)) else (int(v),) * d


def zero_padded(padding: Any) -> bool:
    """Whether a convolution's ``padding`` (int, tuple, ``"same"``, ``"valid"``) adds any entries."""
    if isinstance(padding, str):
        return padding != "valid"
    return any(int(p) > 0 for p in (padding if isinstance(padding, (tuple, list)) else (padding,)))


def _tap_chunks(
    amp: np.ndarray,
    kernel: Sequence[int],
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    *,
    transposed: bool = False,
    output_padding: Any = 0,
    padding_mode: str = "zeros",
) -> Iterator[np.ndarray]:
    """:func:`tap_maps` a few taps at a time, ``(taps, *out)`` each."""
    d, k = len(kernel), math.prod(kernel)
    x = torch.as_tensor(np.asarray(amp, dtype=np.float64))[None, None]
    eye = torch.eye(k, dtype=torch.float64)
    stride, dilation = _ints(stride, d), _ints(dilation, d)
    if transposed:
        conv_t = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[d - 1]
        kw = dict(stride=stride, padding=_ints(padding, d), output_padding=_ints(output_padding, d),
                  dilation=dilation)
        run = lambda w: conv_t(x, w.reshape(1, -1, *kernel), **kw)  # noqa: E731
    else:
        if padding_mode != "zeros" and not isinstance(padding, str):
            pads = [p for q in reversed(_ints(padding, d)) for p in (q, q)]
            x, padding = F.pad(x, pads, mode=padding_mode), 0
        conv = (F.conv1d, F.conv2d, F.conv3d)[d - 1]
        pad = padding if isinstance(padding, str) else _ints(padding, d)
        run = lambda w: conv(x, w.reshape(-1, 1, *kernel), stride=stride, padding=pad, dilation=dilation)  # noqa: E731
    first = run(eye[:1])
    yield first[0].numpy()
    step = max(1, _CHUNK // max(first.numel(), 1))
    for i in range(1, k, step):
        yield run(eye[i : i + step])[0].numpy()


def tap_maps(amp: np.ndarray, kernel: Sequence[int], *args: Any, **kwargs: Any) -> np.ndarray:
    """``A[t, p]``: the input amplitude ``amp`` that tap ``t`` of output position ``p`` reads (0 where it
    reads zero padding, or, transposed, where no input lands on it), shape ``(prod(kernel), *out)``.

    The convolution itself, run on ``amp`` with one one-hot kernel per tap: torch's ``stride``,
    ``padding`` (ints or ``"same"`` / ``"valid"``), ``dilation``, ``transposed`` and
    ``output_padding`` rules; a ``padding_mode`` other than ``"zeros"`` pads ``amp`` the same way
    (border taps read the copies).

    >>> tap_maps(np.ones(4), (3,), padding=1)[:, 0]  # the first output's left tap reads padding
    array([0., 1., 1.])
    >>> tap_maps(np.ones(2), (3,), 2, transposed=True).sum(0)  # 5 outputs: 1, 1, 2, 1, 1 taps
    array([1., 1., 2., 1., 1.])
    """
    return np.concatenate(list(_tap_chunks(amp, kernel, *args, **kwargs)), 0)


@dataclass(frozen=True)
class ConvGeometry:
    """What a convolution's taps read of an input ``x(u) = a(u) x~(u)``, ``x~`` stationary (every
    position alike: a per-channel mean shared by all positions, fluctuations independent across them),
    ``a = sqrt(pi)`` the input's amplitude profile; :func:`conv_geometry` defines the factors.

    Attributes:
        mean, second, cross: multiply the input's pooled ``m``, ``q``, ``c`` into the moments of what
            one tap reads on average (``second``: the coverage).
        profile: the output's profile from the weights' part (``None``: uniform).
    """

    mean: float
    second: float
    cross: float
    profile: np.ndarray | None


_UNIFORM = ConvGeometry(1.0, 1.0, 1.0, None)


def _pair_mean(v: np.ndarray) -> float:
    """Mean over ordered pairs of different positions of ``v(u) v(u')``."""
    n = v.size
    return float((v.sum() ** 2 - np.square(v).sum()) / (n * (n - 1))) if n > 1 else float(np.square(v).mean())


def conv_geometry(
    profile: np.ndarray | None, spatial: Sequence[int], kernel: Sequence[int],
    tap_energy: np.ndarray | None = None, **conv: Any,
) -> ConvGeometry:
    r"""The factors by which a convolution's taps see its input, from the tap maps ``A_t(p)``
    (:func:`tap_maps`) of the amplitude ``a = sqrt(pi)`` (``pi``: the input's profile, ``None`` uniform)
    over the ``spatial`` input positions; ``K = prod(kernel)`` taps, ``P`` output positions, ``e_t``
    the share of the weight's energy on tap ``t`` (``tap_energy``, :func:`tap_energy`: mean 1 over the
    taps; ``None``: 1 for every tap, an iid draw).

    .. math::
        f_q = \frac{\sum_{t,p} e_t A_t(p)^2}{K P}, \qquad
        f_m = \frac{\sum_{t,p} e_t A_t(p)}{K P\, \bar a}, \qquad
        f_c = \frac{\sum_t e_t \big[(\sum_p A_t(p))^2 - \sum_p A_t(p)^2\big]}{K P (P - 1)\, G(a)}

    with ``bar a`` the mean amplitude and ``G(a)`` its mean over pairs of different positions; the
    output's profile is ``sum_t e_t A_t(p)^2 / (K f_q)``. For zero-mean weights independent across
    entries ``E[y(p)^2] = C sum_t Var(w_t) E[x(p + t)^2]`` exactly (``Var(w_t) = e_t Var(w)``), so
    ``f_q`` and the profile are exact: a delta kernel (Xiao et al. 2018: the centre tap only) reads no
    zero padding, ``f_q = 1``; the
    cross moment (pairs of positions, both taps real) and the mean assume the input has the form
    ``a(u) x~(u)``. Uniform input without padding: all 1. Zero padding alone: ``f_q`` is the mean
    fraction of real taps and ``f_c`` about its square (a pair needs both taps real). Transposed with
    stride ``s``: ``f_q = prod(k_i / s_i) / prod(k_i)`` inside the map (each output has ``k/s`` taps
    per dimension on average), so ``fan_in f_q = in_channels / groups * prod(k_i / s_i)``.

    Keyword arguments: ``stride``, ``padding``, ``dilation``, ``transposed``, ``output_padding``,
    ``padding_mode`` as in :func:`tap_maps`.

    >>> g = conv_geometry(None, (8, 8), (3, 3), padding=1)
    >>> round(g.second, 6) == round((22 / 24) ** 2, 6)
    True
    >>> conv_geometry(None, (4, 4), (2, 2), stride=2, transposed=True).second  # one tap of four
    0.25
    >>> conv_geometry(None, (8, 8), (3, 3), np.eye(9)[4] * 9, padding=1).second  # the centre tap only
    1.0

    Raises:
        ValueError: ``tap_energy`` without one entry per tap, or with a negative or non-finite entry,
            or all zero (it is rescaled to mean 1 otherwise).
    """
    amp = np.ones(tuple(spatial)) if profile is None else np.sqrt(np.asarray(profile, dtype=np.float64))
    n_taps = math.prod(kernel)
    e = np.ones(n_taps) if tap_energy is None else np.asarray(tap_energy, dtype=np.float64).reshape(-1)
    if e.size != n_taps:
        raise ValueError(f"tap_energy has {e.size} entries for a kernel of {n_taps} taps: give one per tap")
    if not (np.isfinite(e).all() and (e >= 0).all() and e.sum() > 0):
        raise ValueError(f"tap_energy={e.tolist()!r} is invalid: give finite shares >= 0, not all 0")
    e = e * (n_taps / e.sum())
    k, s1, s2, pairs, out = 0, 0.0, 0.0, 0.0, None
    for chunk in _tap_chunks(amp, kernel, **conv):
        taps = chunk.reshape(chunk.shape[0], -1)
        et = e[k : k + taps.shape[0], None]
        sq = np.square(taps)
        k, s1, s2 = k + taps.shape[0], s1 + float((et * taps).sum()), s2 + float((et * sq).sum())
        pairs += float((et[:, 0] * (taps.sum(1) ** 2 - sq.sum(1))).sum())
        out = (et * sq).sum(0) if out is None else out + (et * sq).sum(0)
        spatial_out = chunk.shape[1:]
    p = int(np.prod(spatial_out))
    if p == 0 or s2 <= 0.0:  # no output, or every tap with weight reads padding: the bias alone
        return ConvGeometry(0.0, 0.0, 0.0, None) if p else _UNIFORM
    f_q = s2 / (k * p)
    f_m = s1 / (k * p) / float(amp.mean())
    # no pairs of positions: the cross moment is across examples, scaled as the second moment
    f_c = pairs / (k * p * (p - 1)) / _pair_mean(amp) if p > 1 and amp.size > 1 else f_q
    return ConvGeometry(f_m, f_q, f_c, normalised(out.reshape(spatial_out) / (k * f_q)))  # type: ignore[union-attr]


def tap_energy(weight: torch.Tensor | None) -> np.ndarray | None:
    """The share of a convolution weight's energy on each kernel tap, mean 1 over the taps (the
    ``tap_energy`` of :func:`conv_geometry`): ``e_t = K sum_{o,i} w[o, i, t]^2 / sum w^2`` over a
    weight of shape ``(out, in / groups, *kernel)`` (transposed: ``(in, out / groups, *kernel)``),
    ``K = prod(kernel)``, taps in the kernel's row-major order. ``None`` for a weight with no kernel
    (fewer than 3 dims) or no finite energy.

    >>> w = torch.zeros(4, 4, 3, 3); w[:, :, 1, 1] = 1.0  # a delta kernel (Xiao et al. 2018)
    >>> float(tap_energy(w).reshape(3, 3)[1, 1])
    9.0
    """
    if weight is None or weight.ndim < 3:
        return None
    per_tap = weight.detach().double().square().sum((0, 1)).reshape(-1)
    total = float(per_tap.sum())
    if not (math.isfinite(total) and total > 0.0):
        return None
    return (per_tap * (per_tap.numel() / total)).cpu().numpy()


def normalised(profile: np.ndarray | None) -> np.ndarray | None:
    """``profile`` divided by its mean; ``None`` (uniform) when flat, empty, not positive or larger than
    :data:`MAX_POSITIONS`.

    >>> normalised(np.array([1.0, 3.0]))
    array([0.5, 1.5])
    """
    if profile is None or profile.size == 0 or profile.size > MAX_POSITIONS:
        return None
    mean = float(profile.mean())
    if mean <= 0.0 or not math.isfinite(mean):
        return None
    out = profile / mean
    return None if float(np.abs(out - 1.0).max()) < _FLAT else out


# ---- how the other nodes pass a profile on ------------------------------------------------------------

ProfileRule = Callable[[Node, "PropagationContext"], "np.ndarray | None"]


def _fits(profile: np.ndarray | None, shape: tuple[int, ...] | None) -> bool:
    """``profile`` describes the trailing axes of ``shape``, with channels (and a batch) before them."""
    d = 0 if profile is None else profile.ndim
    return profile is not None and shape is not None and len(shape) > d and tuple(shape[-d:]) == profile.shape


def _input_profile(node: Node, ctx: PropagationContext, i: int = 0) -> np.ndarray | None:
    """Input ``i``'s profile when it fits this node's shape (same positions), else ``None``."""
    if i >= len(node.inputs):
        return None
    pr = ctx.graph[node.inputs[i]].meta.get("profile")
    return pr if _fits(pr, node.shape) and ctx.in_shape(node, i) == node.shape else None


def _same(node: Node, ctx: PropagationContext) -> np.ndarray | None:
    """Elementwise (activations, dropout, scale, identity reshapes): the input's profile, unchanged.
    Exact for a positively homogeneous activation (ReLU, leaky ReLU) of a zero-mean pre-activation;
    otherwise a saturating one flattens it slightly (neglected)."""
    return _input_profile(node, ctx)


def _weighted(node: Node, ctx: PropagationContext, weights: Sequence[float]) -> np.ndarray | None:
    """``sum_k w_k pi_k / sum_k w_k`` over the inputs (an input without a profile: uniform); ``None``
    if no input of this node's shape has one."""
    profiles = [_input_profile(node, ctx, i) for i in range(len(node.inputs))]
    if all(p is None for p in profiles) or not sum(weights) > 0:
        return None
    total = sum(w * (p if p is not None else 1.0) for p, w in zip(profiles, weights, strict=True))
    return normalised(np.asarray(total, dtype=np.float64))


def _add(node: Node, ctx: PropagationContext) -> np.ndarray | None:
    """Sum of independent operands: ``q(p) = sum_k q_k pi_k(p)`` (means taken uniform)."""
    qs = [m.second if (m := ctx.results.get(i)) is not None else 0.0 for i in node.inputs]
    return _weighted(node, ctx, qs) if len(node.inputs) > 1 else _same(node, ctx)


def _mul(node: Node, ctx: PropagationContext) -> np.ndarray | None:
    """Product of independent factors: ``pi_a pi_b``."""
    profiles = [p for i in range(len(node.inputs)) if (p := _input_profile(node, ctx, i)) is not None]
    return normalised(np.prod(profiles, axis=0)) if profiles else None


def _concat(node: Node, ctx: PropagationContext) -> np.ndarray | None:
    """Along channels: the average weighted by each input's entries and ``q``; along positions: none."""
    dim, shape = node.params.get("dim", 0), node.shape
    if shape is None or not node.inputs:
        return None
    shapes = [ctx.in_shape(node, i) for i in range(len(node.inputs))]
    profiles = [ctx.graph[i].meta.get("profile") for i in node.inputs]
    d = max((p.ndim for p in profiles if p is not None), default=0)
    if d == 0 or dim % len(shape) >= len(shape) - d:
        return None
    if any(s is None or len(s) != len(shape) or tuple(s[-d:]) != tuple(shape[-d:]) for s in shapes):
        return None
    total, weight = np.zeros(tuple(shape[-d:])), 0.0
    for i, s, p in zip(node.inputs, shapes, profiles, strict=True):
        m = ctx.results.get(i)
        w = (m.second if m is not None else 0.0) * s[dim]  # type: ignore[index]
        total, weight = total + w * (p if p is not None and p.shape == total.shape else 1.0), weight + w
    return normalised(total) if weight > 0 else None


def _norm(node: Node, ctx: PropagationContext) -> np.ndarray | None:
    """Batch / group / instance statistics pool over positions, so the profile passes; layer and RMS
    norms standardise each position (channels-last): uniform."""
    text = str(node.params.get("kind", node.op)).lower()
    return None if any(f in text for f in ("layer", "rms")) else _same(node, ctx)


def _pool(node: Node, ctx: PropagationContext) -> np.ndarray | None:
    """A window average of the profile (the window's own stride and padding, padding not counted);
    global pooling: none."""
    shape = node.shape
    prof = ctx.graph[node.inputs[0]].meta.get("profile") if node.inputs else None
    kernel = ctx.attr(node, "kernel_size")
    if prof is None or shape is None or kernel is None or len(shape) <= prof.ndim:
        return None
    d = prof.ndim
    pool = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[d - 1] if d <= 3 else None
    if pool is None:
        return None
    stride = ctx.attr(node, "stride") or kernel
    try:
        out = pool(torch.as_tensor(prof)[None, None], _ints(kernel, d), _ints(stride, d),
                   _ints(ctx.attr(node, "padding", 0) or 0, d), bool(ctx.attr(node, "ceil_mode", False)),
                   count_include_pad=False)[0, 0].numpy()
    except (RuntimeError, ValueError, TypeError):  # a window torch refuses on the bare profile: uniform
        return None
    return normalised(out) if out.shape == tuple(shape[-d:]) else None


#: How each kind passes a profile on (a ``LAYER`` sets its own, through :func:`conv_geometry`);
#: a kind not listed drops it (uniform after it).
PROFILE_RULES: dict[Kind, ProfileRule] = {
    Kind.OUTPUT: _same,
    Kind.ACTIVATION: _same,
    Kind.DROPOUT: _same,
    Kind.SCALE: _same,
    Kind.RESHAPE: _same,
    Kind.ADD: _add,
    Kind.SUB: _add,
    Kind.MUL: _mul,
    Kind.CONCAT: _concat,
    Kind.NORM: _norm,
    Kind.POOL: _pool,
}
