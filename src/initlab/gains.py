r"""Gains of elementwise activations: torch's table, and gains derived for ANY activation.

A *gain* ``g`` multiplies the std of a variance-scaling init (``std = g / sqrt(fan)``) so that a
layer followed by the nonlinearity ``phi`` keeps the scale of its signal. With pre-activations
``z ~ N(0, 1)`` (the state a well-initialised layer should produce):

.. math::
    g_\text{forward} = \frac{1}{\sqrt{\mathbb{E}_{z\sim N(0,1)}[\phi(z)^2]}}, \qquad
    g_\text{backward} = \frac{1}{\sqrt{\mathbb{E}_{z\sim N(0,1)}[\phi'(z)^2]}}

* **forward**: the next layer's pre-activation variance is ``fan_in * Var[w] * E[phi(z)^2]``
  (He et al. 2015, eq. 7 — the *second moment* of the activation, not its variance), so
  ``Var[w] = g_forward^2 / fan_in`` keeps ``Var[z] = 1`` from layer to layer;
* **backward**: the gradient w.r.t. a pre-activation has variance
  ``fan_out * Var[w] * E[phi'(z)^2] * Var[grad]`` (He et al. 2015, eq. 13), so
  ``Var[w] = g_backward^2 / fan_out`` keeps gradient variance constant.

For ReLU both are exactly ``sqrt(2)`` (He's gain). For other activations they differ from each
other and from torch's table (:func:`calculate_gain`):

* ``tanh``: torch's ``5/3`` is a heuristic (chosen so that iterated ``tanh`` layers settle at a
  healthy std, not from a moment); the forward gain is ``1.5925`` and the backward gain ``1.4674``;
* ``selu``: torch's ``3/4`` was picked empirically for gradient flow in rectangular layers
  (pytorch/pytorch#50664); SELU's constants make ``E[selu(z)^2] = 1``, so the forward gain is
  ``1.0`` — the self-normalising choice (Klambauer et al. 2017), which torch reaches with
  ``"linear"``;
* ``sigmoid``: torch says ``1``; the forward gain is ``1.8462`` (``E[sigmoid(z)^2] = 0.293``,
  mostly its mean 1/2) and the backward gain ``4.7226`` (``sigmoid' <= 1/4``);
* ``gelu``, ``silu``, ``mish``, ``softplus``, ... have no entry in torch's table.

Kumar (2017), "On weight initialization in deep neural networks", derives the init variance from
the activation's statistics in the same way; for an activation differentiable at 0 with
``phi(0) = 0`` his result reduces to ``1/(fan_in phi'(0)^2)`` in the linear regime, which the
moments above refine for inputs of unit variance. He, Zhang, Ren & Sun (2015), "Delving deep into
rectifiers: surpassing human-level performance on ImageNet classification", give the forward and
backward conditions.

**Quadrature.** Expectations over ``z ~ N(0, q)`` are computed by :func:`gaussian_expectation`:

* a smooth activation uses probabilists' Gauss–Hermite quadrature
  (``numpy.polynomial.hermite_e.hermegauss``) of order ``n`` (default :data:`DEFAULT_ORDER` =
  200; the error for ``tanh``, whose poles at ``±i pi/2`` make it the slowest of the smooth ones,
  is below 1e-15 from order 150; numpy's weights overflow beyond order ~350);
* an activation with kinks (``relu``, ``elu``, ``hardtanh``, ``relu6``, ``hardswish``,
  ``softsign``, ...) is split at its kinks: each piece is smooth, and the Gaussian-weighted
  integrand is integrated on it by Gauss–Legendre of order ``n``; the two outer pieces stop at
  ``|z| = 12 sqrt(q)``, beyond which the Gaussian mass is ``< 4e-33``. So ReLU's half-line
  ``E[z^2 1{z>0}] = 1/2`` is exact to rounding and its gain is ``sqrt(2)`` to ``1e-15``.
  A callable with kinks should say where they are (``kinks=``); without them it is treated as
  smooth (Gauss–Hermite converges only algebraically across a kink; a kink at 0 alone is exact
  by the symmetry of the nodes).

``phi'`` comes from torch autograd (for names and callables alike), evaluated in float64.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from numpy.polynomial.hermite_e import hermegauss
from numpy.polynomial.legendre import leggauss

from initlab.errors import InitlabError

__all__ = [
    "ACTIVATIONS",
    "CRITERIA",
    "DEFAULT_ORDER",
    "TAIL",
    "activation_fn",
    "activation_kinks",
    "activation_moments",
    "activation_values",
    "calculate_gain",
    "gain",
    "gaussian_expectation",
    "gaussian_rule",
]

#: Default quadrature order: Gauss–Hermite nodes for a smooth integrand, Gauss–Legendre nodes per
#: piece for a kinked one.
DEFAULT_ORDER: int = 200
#: The outer pieces of a kinked integrand stop at ``|z| = TAIL * sqrt(q)`` (mass beyond: < 4e-33).
TAIL: float = 12.0
#: Maximum order numpy's ``hermegauss`` computes without overflowing its weights.
_MAX_HERMITE_ORDER = 340

CRITERIA: tuple[str, ...] = ("forward", "backward")


# ---- torch's table ------------------------------------------------------------------------------

_TORCH_LINEAR_FNS = (
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
)


def calculate_gain(nonlinearity: str, param: int | float | None = None) -> float:
    r"""torch's recommended gain for ``nonlinearity``: identical values, types and errors to
    ``torch.nn.init.calculate_gain``.

    ================================== ====================================================
    nonlinearity                       gain
    ================================== ====================================================
    linear, conv{1,2,3}d,              ``1`` (the int, as torch returns it)
    conv_transpose{1,2,3}d, sigmoid
    tanh                               ``5/3`` (a heuristic)
    relu                               ``sqrt(2)``
    leaky_relu                         ``sqrt(2 / (1 + negative_slope^2))``, slope = ``param``
                                       (default 0.01)
    selu                               ``3/4`` (empirical; torch recommends ``"linear"`` for
                                       self-normalising nets)
    ================================== ====================================================

    .. math::
        g_\text{leaky\_relu} = \sqrt{2 / (1 + a^2)}

    For a gain derived from the activation itself (any activation, forward or backward), use
    :func:`gain`.

    Args:
        nonlinearity: a ``torch.nn.functional`` name from the table.
        param: the negative slope for ``"leaky_relu"`` (an int or float, not a bool); ignored
            otherwise.

    Returns:
        The gain (``int`` 1 for the linear names and sigmoid, else ``float``).

    Raises:
        ValueError: ``"Unsupported nonlinearity {nonlinearity}"`` for a name not in the table;
            ``"negative_slope {param} not a valid number"`` for a leaky_relu ``param`` that is
            not an int or float (exactly torch's type and message).

    Source: PyTorch ``torch/nn/init.py``; He et al. (2015), "Delving deep into rectifiers".

    >>> calculate_gain("relu")
    1.4142135623730951
    >>> calculate_gain("leaky_relu", 0.2)
    1.3867504905630728
    >>> calculate_gain("linear")
    1
    """
    if nonlinearity in _TORCH_LINEAR_FNS or nonlinearity == "sigmoid":
        return 1
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope: int | float = 0.01
        elif (not isinstance(param, bool) and isinstance(param, int)) or isinstance(param, float):
            slope = param
        else:
            raise ValueError(f"negative_slope {param} not a valid number")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"Unsupported nonlinearity {nonlinearity}")


# ---- quadrature ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _hermite(n: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = hermegauss(n)
    w = w / w.sum()  # probability weights of N(0, 1)
    x.setflags(write=False)
    w.setflags(write=False)
    return x, w


@functools.lru_cache(maxsize=64)
def _legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = leggauss(n)
    x.setflags(write=False)
    w.setflags(write=False)
    return x, w


def _check_order(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 2 <= n <= _MAX_HERMITE_ORDER:
        raise InitlabError(
            f"quadrature order n={n!r} is invalid: pass an integer in [2, {_MAX_HERMITE_ORDER}] "
            f"(default {DEFAULT_ORDER})"
        )
    return int(n)


def _check_kinks(kinks: Sequence[float] | None) -> tuple[float, ...]:
    if kinks is None:
        return ()
    try:
        values = tuple(sorted({float(k) for k in kinks}))
    except (TypeError, ValueError) as exc:
        raise InitlabError(f"kinks={kinks!r} is invalid: pass a sequence of finite numbers") from exc
    if not all(math.isfinite(k) for k in values):
        raise InitlabError(f"kinks={kinks!r} is invalid: pass a sequence of finite numbers")
    return values


def gaussian_rule(
    n: int = DEFAULT_ORDER, *, q: float = 1.0, kinks: Sequence[float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    r"""Quadrature nodes ``z`` and probability weights ``w`` for ``z ~ N(0, q)``:
    ``E[f(z)] ~= sum(w * f(z))``.

    .. math::
        \mathbb{E}_{z\sim N(0,q)}[f(z)] \approx \sum_i w_i f(z_i), \qquad \sum_i w_i = 1

    Without ``kinks``: ``z = sqrt(q) x`` at the ``n`` probabilists' Gauss–Hermite nodes ``x``
    (exact for polynomials of degree ``< 2n``). With ``kinks`` (in ``z`` units): ``[-12 sqrt(q),
    12 sqrt(q)]`` is cut at the kinks inside it and each piece gets ``n`` Gauss–Legendre nodes,
    weighted by the N(0, q) density (kinks outside that range are ignored: the mass there is
    ``< 4e-33``). ``q = 0`` gives the single node 0.

    Args:
        n: order, an int in ``[2, 340]``.
        q: variance of the Gaussian, ``>= 0``.
        kinks: points where the integrand is not smooth (e.g. ``(0,)`` for ReLU).

    Returns:
        ``(z, w)``, 1-D float64 arrays of the same length (``n`` per piece).

    Raises:
        InitlabError: bad ``n``, negative or non-finite ``q``, non-numeric ``kinks``.

    >>> z, w = gaussian_rule(20)
    >>> round(float(w @ z**2), 12), round(float(w.sum()), 12)
    (1.0, 1.0)
    >>> z, w = gaussian_rule(50, kinks=(0.0,))
    >>> round(float(w @ (z**2 * (z > 0))), 14)
    0.5
    """
    n = _check_order(n)
    if isinstance(q, bool) or not isinstance(q, numbers.Real) or not math.isfinite(q) or q < 0:
        raise InitlabError(f"q={q!r} is invalid: pass the variance, a finite number >= 0")
    ks = _check_kinks(kinks)
    if q == 0:
        return np.zeros(1), np.ones(1)
    s = math.sqrt(q)
    if not ks:
        x, w = _hermite(n)
        return s * x, w.copy()
    lim = TAIL * s
    cuts = [-lim, *[k for k in ks if -lim < k < lim], lim]
    x0, w0 = _legendre(n)
    zs, ws = [], []
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        half, mid = (b - a) / 2.0, (a + b) / 2.0
        z = half * x0 + mid
        zs.append(z)
        ws.append(half * w0 * np.exp(-0.5 * (z / s) ** 2) / (s * math.sqrt(2.0 * math.pi)))
    return np.concatenate(zs), np.concatenate(ws)


def gaussian_expectation(
    f: Callable[[np.ndarray], np.ndarray],
    n: int = DEFAULT_ORDER,
    *,
    q: float = 1.0,
    kinks: Sequence[float] | None = None,
) -> float:
    r"""``E[f(z)]`` for ``z ~ N(0, q)`` by quadrature (see :func:`gaussian_rule`).

    .. math::
        \mathbb{E}[f(z)] = \int f(z)\, \frac{e^{-z^2/(2q)}}{\sqrt{2\pi q}}\, dz

    Args:
        f: a vectorised function of a 1-D float64 NumPy array of nodes, returning an array of the
            same length (e.g. ``lambda z: np.tanh(z) ** 2``).
        n: quadrature order (Gauss–Hermite, or Gauss–Legendre per piece with ``kinks``).
        q: variance of the Gaussian (``q = 0`` gives ``f(0)``); the mean-field q of
            :mod:`initlab.theory`.
        kinks: points (in ``z`` units) where ``f`` is not smooth; split there for exactness.

    Returns:
        The expectation, a float.

    Raises:
        InitlabError: bad ``n``, ``q`` or ``kinks``; ``f`` returning a wrong shape or a
            non-finite value.

    Source: Gauss–Hermite quadrature (Golub & Welsch 1969, "Calculation of Gauss quadrature
    rules").

    >>> round(gaussian_expectation(lambda z: z**4), 10)
    3.0
    >>> round(gaussian_expectation(lambda z: np.maximum(z, 0) ** 2, kinks=(0,)), 12)
    0.5
    >>> round(gaussian_expectation(np.cos, q=2.0), 12) == round(math.exp(-1.0), 12)
    True
    """
    z, w = gaussian_rule(n, q=q, kinks=kinks)
    values = np.asarray(f(z), dtype=np.float64)
    if values.shape != z.shape:
        raise InitlabError(
            f"f returned shape {values.shape} for {z.shape} nodes: pass a vectorised elementwise f"
        )
    out = float(w @ values)
    if not math.isfinite(out):
        raise InitlabError("f is not finite on the quadrature nodes: E[f(z)] does not exist here")
    return out


# ---- activations --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Activation:
    fn: Callable[[float | None], Callable[[torch.Tensor], torch.Tensor]]
    kinks: Callable[[float | None], tuple[float, ...]] = lambda p: ()
    param_name: str | None = None
    default: float | None = None


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _positive(name: str, what: str) -> Callable[[float], None]:
    def check(p: float) -> None:
        if not p > 0:
            raise InitlabError(f"param={p!r} is invalid for {name!r}: {what} must be > 0")

    return check


_ACTS: dict[str, _Activation] = {
    "linear": _Activation(lambda p: _identity),
    "identity": _Activation(lambda p: _identity),
    "relu": _Activation(lambda p: F.relu, lambda p: (0.0,)),
    "leaky_relu": _Activation(
        lambda p: functools.partial(F.leaky_relu, negative_slope=p), lambda p: (0.0,), "negative_slope", 0.01
    ),
    "prelu": _Activation(
        lambda p: functools.partial(F.leaky_relu, negative_slope=p), lambda p: (0.0,), "slope", 0.25
    ),
    "elu": _Activation(lambda p: functools.partial(F.elu, alpha=p), lambda p: (0.0,), "alpha", 1.0),
    "celu": _Activation(lambda p: functools.partial(F.celu, alpha=p), lambda p: (0.0,), "alpha", 1.0),
    "selu": _Activation(lambda p: F.selu, lambda p: (0.0,)),
    "gelu": _Activation(lambda p: F.gelu),
    "gelu_tanh": _Activation(lambda p: functools.partial(F.gelu, approximate="tanh")),
    "silu": _Activation(lambda p: F.silu),
    "swish": _Activation(lambda p: (lambda x: x * torch.sigmoid(p * x)), param_name="beta", default=1.0),
    "mish": _Activation(lambda p: F.mish),
    # log(1 + e^(beta x)) / beta without torch's linear switch at beta x > 20 (a ~e^-20 jump).
    "softplus": _Activation(
        lambda p: (lambda x: torch.logaddexp(p * x, torch.zeros_like(x)) / p), param_name="beta", default=1.0
    ),
    "softsign": _Activation(lambda p: F.softsign, lambda p: (0.0,)),
    "tanh": _Activation(lambda p: torch.tanh),
    "sigmoid": _Activation(lambda p: torch.sigmoid),
    "logsigmoid": _Activation(lambda p: F.logsigmoid),
    "tanhshrink": _Activation(lambda p: F.tanhshrink),
    "sin": _Activation(lambda p: torch.sin),
    "hardtanh": _Activation(
        lambda p: functools.partial(F.hardtanh, min_val=-p, max_val=p), lambda p: (-p, p), "max_val", 1.0
    ),
    "hardsigmoid": _Activation(lambda p: F.hardsigmoid, lambda p: (-3.0, 3.0)),
    "hardswish": _Activation(lambda p: F.hardswish, lambda p: (-3.0, 3.0)),
    "relu6": _Activation(lambda p: F.relu6, lambda p: (0.0, 6.0)),
}

def _nonzero_alpha(p: float) -> None:
    if p == 0:
        raise InitlabError("param=0 is invalid for 'celu': alpha must be non-zero (CELU divides by it)")


_PARAM_CHECKS: dict[str, Callable[[float], None]] = {
    "swish": _positive("swish", "beta"),
    "softplus": _positive("softplus", "beta"),
    "hardtanh": _positive("hardtanh", "max_val"),
    "celu": _nonzero_alpha,
}

#: Activation names :func:`gain`, :func:`activation_fn` and :func:`activation_kinks` know.
ACTIVATIONS: tuple[str, ...] = tuple(_ACTS)


def _lookup(name: object) -> _Activation:
    if not isinstance(name, str) or name not in _ACTS:
        raise InitlabError(f"activation {name!r} is unknown: use one of {', '.join(sorted(ACTIVATIONS))}")
    return _ACTS[name]


def _resolve_param(name: str, param: object) -> float | None:
    act = _lookup(name)
    if act.param_name is None:
        if param is not None:
            raise InitlabError(
                f"activation {name!r} takes no param (got param={param!r}): drop it, or use one of "
                + ", ".join(f"{k} ({v.param_name})" for k, v in _ACTS.items() if v.param_name)
            )
        return None
    if param is None:
        return act.default
    if isinstance(param, bool) or not isinstance(param, numbers.Real) or not math.isfinite(param):
        raise InitlabError(
            f"param={param!r} is invalid for {name!r}: pass its {act.param_name}, a finite number"
        )
    value = float(param)
    check = _PARAM_CHECKS.get(name)
    if check is not None:
        check(value)
    return value


def activation_fn(name: str, param: float | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    r"""The elementwise activation ``name`` as a function on torch tensors.

    ``param`` is the one parameter of the parametric activations (defaults in brackets):
    ``leaky_relu`` negative_slope (0.01), ``prelu`` slope (0.25, PReLU's init), ``elu`` /
    ``celu`` alpha (1.0), ``swish`` beta (1.0: ``x sigmoid(beta x)``), ``softplus`` beta (1.0),
    ``hardtanh`` max_val (1.0; ``min_val = -max_val``). ``gelu_tanh`` is GELU's tanh approximation.

    .. math::
        \text{e.g. } \mathrm{leaky\_relu}(x) = \max(x, 0) + a \min(x, 0)

    Args:
        name: one of :data:`ACTIVATIONS`.
        param: the parameter above, or ``None`` for its default.

    Returns:
        A callable ``Tensor -> Tensor`` (same shape, dtype and device).

    Raises:
        InitlabError: unknown ``name`` (the message lists the names); a ``param`` for an
            activation that has none, or an invalid one.

    >>> activation_fn("leaky_relu", 0.1)(torch.tensor([-1.0, 2.0]))
    tensor([-0.1000,  2.0000])
    """
    act = _lookup(name)
    return act.fn(_resolve_param(name, param))


def activation_kinks(name: str, param: float | None = None) -> tuple[float, ...]:
    """The points where activation ``name`` (or its derivative) is not smooth.

    Raises:
        InitlabError: as :func:`activation_fn`.

    >>> activation_kinks("relu6")
    (0.0, 6.0)
    """
    act = _lookup(name)
    return act.kinks(_resolve_param(name, param))


def _moments(
    fn: Callable[[torch.Tensor], torch.Tensor], kinks: tuple[float, ...], n: int
) -> tuple[float, float]:
    """``E[phi(z)^2]`` and ``E[phi'(z)^2]`` (autograd) for ``z ~ N(0, 1)``."""
    z, w = gaussian_rule(n, kinks=kinks)
    y = dy = None
    for dtype in (torch.float64, torch.float32):  # float32: for modules with float32 parameters
        x = torch.tensor(z, dtype=dtype, requires_grad=True)
        try:
            with torch.enable_grad():
                y = fn(x)
                if not isinstance(y, torch.Tensor):
                    raise InitlabError(
                        f"the activation returned {type(y).__name__}, not a tensor: pass a callable "
                        "on torch tensors (e.g. torch.tanh)"
                    )
                if y.shape != x.shape:
                    raise InitlabError(
                        f"the activation maps shape {tuple(x.shape)} to {tuple(y.shape)}: "
                        "gains are defined for elementwise activations only"
                    )
                if y.requires_grad:
                    (dy,) = torch.autograd.grad(y.sum(), x)
                else:  # a constant function
                    dy = torch.zeros_like(x)
            break
        except RuntimeError:
            if dtype == torch.float32:
                raise
    assert y is not None and dy is not None
    y64 = y.detach().double().numpy()
    dy64 = dy.double().numpy()
    return float(w @ (y64 * y64)), float(w @ (dy64 * dy64))


def _gain_from(second_moment: float, criterion: str, what: str) -> float:
    if not math.isfinite(second_moment):
        raise InitlabError(f"E[{what}^2] is not finite for {criterion} gain: the activation grows too fast")
    if second_moment <= 0:
        raise InitlabError(
            f"E[{what}^2] = 0: the activation is zero almost everywhere, so no {criterion} gain "
            "restores the signal"
        )
    return 1.0 / math.sqrt(second_moment)


@functools.lru_cache(maxsize=512)
def _named_moments(name: str, param: float | None, n: int) -> tuple[float, float]:
    act = _ACTS[name]
    return _moments(act.fn(param), act.kinks(param), n)


def gain(
    activation: str | Callable[[torch.Tensor], torch.Tensor],
    criterion: str = "forward",
    param: float | None = None,
    *,
    n: int = DEFAULT_ORDER,
    kinks: Sequence[float] | None = None,
) -> float:
    r"""The gain of an elementwise activation, derived from its moments under ``z ~ N(0, 1)``.

    .. math::
        g_\text{forward} = \mathbb{E}[\phi(z)^2]^{-1/2}, \qquad
        g_\text{backward} = \mathbb{E}[\phi'(z)^2]^{-1/2}

    Use ``std = g_forward / sqrt(fan_in)`` to preserve the forward second moment, or
    ``std = g_backward / sqrt(fan_out)`` to preserve the gradient's (He et al. 2015). ReLU gives
    ``sqrt(2)`` for both; see the module docstring for how this differs from torch's table.

    Args:
        activation: a name from :data:`ACTIVATIONS`, or a callable on float64 torch tensors
            (``torch.tanh``, ``nn.GELU()``, a lambda); ``phi'`` is taken by autograd. A callable
            that rejects float64 input (a module with float32 parameters, e.g. ``nn.PReLU()``)
            is evaluated in float32 instead (gains then accurate to ~1e-7).
        criterion: ``"forward"`` or ``"backward"``.
        param: the named activation's parameter (see :func:`activation_fn`); not for callables.
        n: quadrature order (see :func:`gaussian_rule`).
        kinks: for a callable, the points where it is not smooth (e.g. ``(0,)`` for a
            ReLU-like); names know their own.

    Returns:
        The gain, a positive float. Name-based results are cached.

    Raises:
        InitlabError: unknown name (the message lists :data:`ACTIVATIONS`), unknown
            ``criterion``, bad ``param``/``n``/``kinks``, a callable that is not elementwise
            or returns no tensor, or an activation that is zero almost everywhere.

    Sources: He, Zhang, Ren & Sun (2015), "Delving deep into rectifiers"; Kumar (2017), "On weight
    initialization in deep neural networks".

    >>> abs(gain("relu") - math.sqrt(2)) < 1e-12
    True
    >>> round(gain("tanh"), 4), round(gain("tanh", "backward"), 4)
    (1.5925, 1.4674)
    >>> round(gain(torch.nn.GELU()), 6) == round(gain("gelu"), 6)
    True
    """
    if criterion not in CRITERIA:
        raise InitlabError(f"criterion={criterion!r} is unknown: use 'forward' or 'backward'")
    n = _check_order(n)
    if isinstance(activation, str):
        p = _resolve_param(activation, param)
        if kinks is not None:
            raise InitlabError(f"kinks= is for callables; activation {activation!r} knows its own")
        m2, d2 = _named_moments(activation, p, n)
    elif callable(activation):
        if param is not None:
            raise InitlabError(
                f"param={param!r} applies to activation names only: bind it in your callable"
            )
        m2, d2 = _moments(activation, _check_kinks(kinks), n)
    else:
        raise InitlabError(
            f"activation={activation!r} is neither a name nor a callable: use one of "
            f"{', '.join(sorted(ACTIVATIONS))}, or pass a function on torch tensors"
        )
    if criterion == "forward":
        return _gain_from(m2, criterion, "phi(z)")
    return _gain_from(d2, criterion, "phi'(z)")


# ---- moments at a non-zero mean -----------------------------------------------------------------


def _resolve_activation(
    activation: str | Callable[[torch.Tensor], torch.Tensor],
    param: float | None,
    kinks: Sequence[float] | None,
) -> tuple[Callable[[torch.Tensor], torch.Tensor], tuple[float, ...]]:
    if isinstance(activation, str):
        if kinks is not None:
            raise InitlabError(f"kinks= is for callables; activation {activation!r} knows its own")
        p = _resolve_param(activation, param)
        act = _ACTS[activation]
        return act.fn(p), act.kinks(p)
    if callable(activation):
        if param is not None:
            raise InitlabError(f"param={param!r} applies to activation names only: bind it in your callable")
        return activation, _check_kinks(kinks)
    raise InitlabError(
        f"activation={activation!r} is neither a name nor a callable: use one of "
        f"{', '.join(sorted(ACTIVATIONS))}, or pass a function on torch tensors"
    )


def activation_values(
    activation: str | Callable[[torch.Tensor], torch.Tensor],
    x: np.ndarray,
    param: float | None = None,
) -> np.ndarray:
    """``phi(x)`` on a NumPy array, computed by torch in float64 (float32 for a module that
    rejects float64, e.g. one with float32 parameters).

    Args:
        activation: a name from :data:`ACTIVATIONS` or an elementwise callable on torch tensors.
        x: points, any shape.
        param: the named activation's parameter (see :func:`activation_fn`).

    Returns:
        A float64 array of ``x``'s shape.

    Raises:
        InitlabError: unknown name or bad ``param``; a callable that returns no tensor or
            changes the shape.

    >>> activation_values("relu", np.array([-1.0, 2.0]))
    array([0., 2.])
    """
    fn, _ = _resolve_activation(activation, param, None)
    x = np.asarray(x, dtype=np.float64)
    for dtype in (torch.float64, torch.float32):
        try:
            with torch.no_grad():
                y = fn(torch.tensor(x, dtype=dtype))
            break
        except RuntimeError:
            if dtype == torch.float32:
                raise
    if not isinstance(y, torch.Tensor):
        raise InitlabError(
            f"the activation returned {type(y).__name__}, not a tensor: pass a callable on torch "
            "tensors (e.g. torch.tanh)"
        )
    if tuple(y.shape) != x.shape:
        raise InitlabError(
            f"the activation maps shape {x.shape} to {tuple(y.shape)}: pass an elementwise activation"
        )
    return y.double().numpy()


@functools.lru_cache(maxsize=4096)
def _named_gaussian_moments(
    name: str, param: float | None, mean: float, var: float, n: int
) -> tuple[float, float]:
    return _gaussian_moments(name, param, _ACTS[name].kinks(param), mean, var, n)


def _gaussian_moments(
    activation: str | Callable[[torch.Tensor], torch.Tensor],
    param: float | None,
    kinks: tuple[float, ...],
    mean: float,
    var: float,
    n: int,
) -> tuple[float, float]:
    z, w = gaussian_rule(n, q=var, kinks=tuple(k - mean for k in kinks))
    y = activation_values(activation, mean + z, param)
    m1, m2 = float(w @ y), float(w @ (y * y))
    if not (math.isfinite(m1) and math.isfinite(m2)):
        raise InitlabError(
            f"the activation is not finite on the quadrature nodes of N({mean}, {var}): "
            "its moments do not exist"
        )
    return m1, m2


def activation_moments(
    activation: str | Callable[[torch.Tensor], torch.Tensor],
    mean: float = 0.0,
    var: float = 1.0,
    param: float | None = None,
    *,
    n: int = DEFAULT_ORDER,
    kinks: Sequence[float] | None = None,
) -> tuple[float, float]:
    r"""Mean and second moment of ``phi(x)`` for a Gaussian pre-activation ``x ~ N(mean, var)``.

    .. math::
        \mathbb{E}[\phi(\mu + \sigma z)], \qquad \mathbb{E}[\phi(\mu + \sigma z)^2], \qquad z \sim N(0, 1)

    Same quadrature as :func:`gaussian_expectation` (Gauss–Hermite for a smooth ``phi``;
    Gauss–Legendre pieces cut at the kinks, shifted by ``mean``, for a kinked one), so the result is
    exact to ~1e-12 for the named activations at any mean.

    Args:
        activation: a name from :data:`ACTIVATIONS` or an elementwise callable on torch tensors
            (evaluated in float64; float32 for modules that reject float64).
        mean: the pre-activation's mean ``mu`` (finite).
        var: its variance ``sigma^2 >= 0`` (``0`` gives ``phi(mean)``).
        param: the named activation's parameter (see :func:`activation_fn`); not for callables.
        n: quadrature order (see :func:`gaussian_rule`).
        kinks: for a callable, the points (in ``x`` units) where it is not smooth.

    Returns:
        ``(E[phi(x)], E[phi(x)^2])``; name-based results are cached.

    Raises:
        InitlabError: unknown name, bad ``param``/``n``/``kinks``, non-finite ``mean``, negative or
            non-finite ``var``, a non-elementwise callable, or moments that do not exist.

    Source: He et al. (2015), eq. 7 (the second moment feeds the next layer); Bingham &
    Miikkulainen (2023), "AutoInit: analytic signal-preserving weight initialization for neural
    networks" (moments at a non-zero mean).

    >>> m, q = activation_moments("relu", 0.0, 1.0)
    >>> round(m, 12) == round(1 / math.sqrt(2 * math.pi), 12), round(q, 12)
    (True, 0.5)
    >>> round(activation_moments("sigmoid", 0.5, 2.0)[0], 6)
    0.589953
    """
    n = _check_order(n)
    for label, value in (("mean", mean), ("var", var)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise InitlabError(f"{label}={value!r} is invalid: pass a finite number")
    if var < 0:
        raise InitlabError(f"var={var!r} is invalid: a variance is >= 0")
    if isinstance(activation, str):
        p = _resolve_param(activation, param)
        if kinks is not None:
            raise InitlabError(f"kinks= is for callables; activation {activation!r} knows its own")
        return _named_gaussian_moments(activation, p, float(mean), float(var), n)
    fn, ks = _resolve_activation(activation, param, kinks)
    return _gaussian_moments(fn, None, ks, float(mean), float(var), n)
