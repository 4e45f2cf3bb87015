"""Mean-field signal propagation: q*, chi_1, depth scales and the critical line (edge of chaos).

A wide fully-connected network with pre-activations ``h^l = W^l phi(h^{l-1}) + b^l``, weights
``W_ij ~ N(0, sigma_w^2 / fan_in)`` and biases ``b_i ~ N(0, sigma_b^2)``, propagates the squared
length ``q^l`` of a pre-activation (its second moment per unit) and the correlation ``c^l`` of two
inputs' pre-activations deterministically, in the limit of infinite width:

.. math::
    q^{l+1} = \\mathcal{V}(q^l) = \\sigma_w^2\\, \\mathbb{E}_z[\\phi(\\sqrt{q^l} z)^2] + \\sigma_b^2,
    \\qquad z \\sim N(0, 1)

.. math::
    c^{l+1} = \\mathcal{C}(c^l) = \\frac{\\sigma_w^2\\, \\mathbb{E}[\\phi(u_1)\\phi(u_2)] + \\sigma_b^2}{q^*},
    \\quad u_1 = \\sqrt{q^*} z_1,\\ u_2 = \\sqrt{q^*}(c z_1 + \\sqrt{1-c^2} z_2)

The length map has a fixed point ``q*``; the slope of the correlation map at ``c = 1`` is

.. math::
    \\chi_1 = \\sigma_w^2\\, \\mathbb{E}_z[\\phi'(\\sqrt{q^*} z)^2]

``chi_1 < 1``: ordered phase (inputs collapse, gradients vanish); ``chi_1 > 1``: chaotic phase
(nearby inputs decorrelate, gradients explode); ``chi_1 = 1``: the critical line (edge of chaos),
where the correlation depth scale ``xi_c`` diverges and arbitrarily deep networks train. Schoenholz
et al. 2017 found that a network of depth ``L`` trains (with SGD) iff ``L < 6 xi_c`` roughly.

Depth scales (Schoenholz et al. 2017, eqs. 6-9). Near a fixed point the deviations decay
geometrically, ``|q^l - q*| ~ exp(-l / xi_q)`` and ``|c^l - c*| ~ exp(-l / xi_c)``, with

.. math::
    \\xi_q^{-1} = -\\log \\mathcal{V}'(q^*),\\qquad
    \\mathcal{V}'(q^*) = \\chi_1 + \\sigma_w^2\\, \\mathbb{E}[\\phi''(\\sqrt{q^*} z)\\phi(\\sqrt{q^*} z)]
    = \\frac{\\sigma_w^2}{\\sqrt{q^*}}\\, \\mathbb{E}[z\\, \\phi(\\sqrt{q^*} z)\\phi'(\\sqrt{q^*} z)]

.. math::
    \\xi_c^{-1} = -\\log \\chi_c,\\qquad
    \\chi_c = \\mathcal{C}'(c^*) = \\sigma_w^2\\, \\mathbb{E}[\\phi'(u_1)\\phi'(u_2)]\\big|_{c = c^*}

Derivation of ``V'(q*)``: ``d/dq E[phi(sqrt(q) z)^2] = E[z phi phi'] / sqrt(q)`` (chain rule), and
Stein's lemma ``E[z f(sqrt(q) z)] = sqrt(q) E[f'(sqrt(q) z)]`` with ``f = phi phi'`` gives
``E[phi'^2 + phi phi'']`` — Schoenholz's form. This module evaluates the first (Stein) form, which
needs only ``phi'`` and so stays exact for activations with kinks (ReLU, hardtanh), where ``phi''``
holds Dirac masses that automatic differentiation cannot see. ``chi_c`` is ``C'(c*)`` by Price's
theorem ``d/dc E[phi(u1) phi(u2)] = q* E[phi'(u1) phi'(u2)]``; at ``c* = 1`` it equals ``chi_1``.

Conventions for the edge cases:

* ``q* = 0`` happens when ``sigma_b2 = 0``, ``phi(0) = 0`` and ``chi_1 <= 1`` (e.g. tanh with
  ``sigma_w2 <= 1``): the signal dies. Every quantity at ``q* = 0`` is the limit ``q -> 0+``:
  ``chi_1 = V'(0) = sigma_w2 (phi'(0-)^2 + phi'(0+)^2) / 2`` from the one-sided derivatives
  (``sigma_w2 phi'(0)^2`` when ``phi`` is differentiable at 0: Kumar 2017); the correlation
  map is evaluated at ``q = Q_TINY`` (``1e-12``). A fixed point below ``Q_TINY`` reads as 0.
* ``q* = inf`` (the length map has no fixed point, e.g. ReLU with ``sigma_w2 > 2``): quantities
  are evaluated at ``q = Q_MAX`` (``1e12``) — exact for positively homogeneous activations.
* Ordered phase (``chi_1 <= 1``): ``c* = 1`` and ``chi_c = chi_1``. Chaotic phase: ``c* < 1`` is
  the stable root of ``C(c) = c`` below 1 (``0`` for an odd ``phi`` with ``sigma_b2 = 0``).
* ``xi = -1 / log|slope|``; ``inf`` when ``|slope| >= 1`` (critical), ``0`` when the slope is 0.

Gaussian expectations (the quadrature, documented and tested for convergence):

* 1-D (length map, ``chi_1``, ``V'(q*)``): the composite Gauss–Legendre rule
  :func:`gaussian_rule_1d` over ``u ~ N(0, q)`` — ``ORDER_1D = 16`` nodes per piece, pieces cut at
  0, at the activation's kinks (:func:`initlab.gains.activation_kinks`), geometrically on the
  activation's scale and uniformly on the Gaussian's. Error < 1e-14 (relative) for tanh from
  ``q = 0.01`` to ``1e4`` and exact to rounding for ReLU-type kinks; plain Gauss–Hermite, by
  contrast, needs thousands of nodes once ``sqrt(q) >> 1`` (tanh becomes a step).
* 2-D (correlation map, ``chi_c``): a tensor product of ``ORDER_2D = 120`` probabilists'
  Gauss–Hermite nodes per axis (:func:`gauss_hermite`, 14400 points). The order is even, so no
  node sits on ``z = 0``. Error of ``C(c)`` for tanh: < 1e-12 at ``sigma_w2 = 2`` (``q* ~ 0.7``),
  ~1e-5 at ``sigma_w2 = 8`` (``q* ~ 5``: tanh is steep on the z scale); for ReLU (a kink along a
  line: algebraic convergence) ~1e-3 against the arc-cosine kernel. Near the critical line
  (``q*`` of order 1) the depth scales are thus accurate to ~1e-10 relative. ``C(1) = 1`` holds
  exactly because the denominator uses the same rule. The error grows with ``q*`` (tanh: ``xi_c``
  off by 2% at ``sigma_w2 = 16``, 20% at 32) and at jumps of ``phi'`` (hardtanh); a chaotic point
  where the rule misses the 1-D ``chi_1`` by more than ``RESOLUTION_TOL_2D`` (25%), or sees no
  instability of ``c = 1``, raises an error instead of returning ``c* = 1, xi_c = inf`` (tanh
  beyond ``sigma_w2 ~ 35``; hardtanh in most of its chaotic phase).

Activations: a name (``"tanh"``, ``"relu"``, ... — :func:`initlab.gains.activation_fn` when
available, else :func:`initlab.models.activation_module`) or any elementwise torch callable.
``phi'`` comes from autograd (whose backward formulas are the closed forms for named ones).

Sources: B. Poole, S. Lahiri, M. Raghu, J. Sohl-Dickstein, S. Ganguli, "Exponential expressivity
in deep neural networks through transient chaos", NeurIPS 2016. S. S. Schoenholz, J. Gilmer,
S. Ganguli, J. Sohl-Dickstein, "Deep Information Propagation", ICLR 2017. J. Pennington,
S. S. Schoenholz, S. Ganguli, "Resurrecting the sigmoid in deep learning through dynamical
isometry: theory and practice", NeurIPS 2017. S. K. Kumar, "On weight initialization in deep
neural networks", arXiv:1704.08863, 2017.

>>> round(critical_point("tanh", sigma_b2=0.05).sigma_w2, 2)
1.76
>>> mf = mean_field("tanh", 1.0, 0.05)
>>> mf.phase, round(mf.chi_1, 3)
('ordered', 0.759)
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from numpy.polynomial.hermite_e import hermegauss
from scipy import optimize

from initlab.errors import InitlabError

__all__ = [
    "ORDER_1D",
    "ORDER_2D",
    "MAX_ORDER_2D",
    "RESOLUTION_TOL_2D",
    "Q_TINY",
    "Q_MAX",
    "TRAINABLE_DEPTH_FACTOR",
    "gauss_hermite",
    "gaussian_rule_1d",
    "gaussian_expectation_1d",
    "length_map",
    "fixed_point_q",
    "chi_1",
    "correlation_map",
    "fixed_point_c",
    "depth_scale",
    "MeanField",
    "mean_field",
    "CriticalPoint",
    "critical_point",
    "critical_line",
    "kumar_critical_sigma_w2",
    "PhaseDiagram",
    "phase_diagram",
    "CHI_1_TARGET",
    "ODD_LINEAR_TOL",
    "odd_part_slope",
    "IsometricPoint",
    "isometric_point",
    "DEPTH_GROWTH",
    "depth_point",
]

#: Gauss–Legendre nodes per piece of the composite rule for 1-D expectations (:func:`gaussian_rule_1d`).
ORDER_1D: int = 16
#: Gauss–Hermite nodes per axis for 2-D expectations (tensor product: ORDER_2D**2 points).
ORDER_2D: int = 120
#: Largest Gauss–Hermite order numpy's ``hermegauss`` builds with finite weights (it overflows at 371).
MAX_ORDER_2D: int = 360
#: The 2-D rule is refused when, at ``c = 1``, it misses the 1-D rule's ``chi_1`` by more than this
#: (relative): ``phi(sqrt(q*) z)`` is then too steep for its nodes and ``c*`` can come out as 1,
#: ``xi_c`` as ``inf``. With ``ORDER_2D`` at sigma_b2 = 0.05: tanh beyond sigma_w2 ~ 35 (the miss
#: is 3% at 16, 20% at 32, with ``xi_c`` off by about as much), softsign beyond ~ 25; hardtanh
#: (whose phi' jumps at +-1) fails the root search's own check in most of its chaotic phase.
RESOLUTION_TOL_2D: float = 0.25
#: ``q`` at which the limit ``q -> 0+`` is evaluated; a fixed point below it is reported as 0.
Q_TINY: float = 1e-12
#: ``q`` beyond which the length map is said to diverge (``q* = inf``).
Q_MAX: float = 1e12
#: Schoenholz et al. 2017: networks deeper than about ``6 xi_c`` do not train.
TRAINABLE_DEPTH_FACTOR: float = 6.0



# ---- quadrature ------------------------------------------------------------------------------


@lru_cache(maxsize=32)
def _nodes(n: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = hermegauss(n)
    w = w / w.sum()
    x.setflags(write=False)
    w.setflags(write=False)
    return x, w


def gauss_hermite(n: int = ORDER_2D) -> tuple[np.ndarray, np.ndarray]:
    """Probabilists' Gauss–Hermite nodes and weights for ``E[f(z)]``, ``z ~ N(0, 1)``.

    .. math::
        \\mathbb{E}[f(z)] \\approx \\sum_{i=1}^{n} w_i f(x_i),\\qquad \\sum_i w_i = 1

    exact when ``f`` is a polynomial of degree ``<= 2n - 1``.

    Args:
        n: number of nodes (an integer in ``[1, MAX_ORDER_2D]``; even orders put no node at 0).

    Returns:
        ``(nodes, weights)``, two read-only float64 arrays of shape ``(n,)``.

    Raises:
        InitlabError: ``n`` is not an integer in ``[1, MAX_ORDER_2D]`` (numpy's construction
            overflows beyond).

    Source: G. H. Golub, J. H. Welsch, "Calculation of Gauss quadrature rules", 1969.

    >>> x, w = gauss_hermite(4)
    >>> float(round((w * x**2).sum(), 12)), float(round((w * x**4).sum(), 12))
    (1.0, 3.0)
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= MAX_ORDER_2D:
        raise InitlabError(f"quadrature order n={n!r} is invalid: pass an integer in [1, {MAX_ORDER_2D}] "
                           f"(e.g. {ORDER_2D})")
    return _nodes(int(n))


# ---- activations -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Act:
    name: str
    param: float | None
    fn: Callable[[torch.Tensor], torch.Tensor]
    kinks: tuple[float, ...] = ()

    def phi(self, u: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self._call(torch.as_tensor(u, dtype=torch.float64)).numpy()

    def phi_dphi(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = torch.as_tensor(u, dtype=torch.float64).clone().requires_grad_(True)
        with torch.enable_grad():
            y = self._call(t)
            if not y.requires_grad:  # constant activation
                return y.detach().numpy(), np.zeros_like(np.asarray(u, dtype=np.float64))
            (g,) = torch.autograd.grad(y.sum(), t, allow_unused=True)
        if g is None:
            g = torch.zeros_like(t)
        return y.detach().numpy(), g.detach().numpy()

    def _call(self, t: torch.Tensor) -> torch.Tensor:
        try:
            y = self.fn(t)
        except (RuntimeError, TypeError) as exc:  # e.g. np.tanh on a tensor that requires grad
            raise TypeError(
                f"activation {self.name!r} failed on a float64 torch tensor ({exc}): pass an "
                "elementwise torch callable (torch.tanh, not np.tanh)"
            ) from None
        if not isinstance(y, torch.Tensor) or y.shape != t.shape:
            raise TypeError(
                f"activation {self.name!r} must map a torch tensor to a torch tensor of the same shape "
                f"(elementwise); it returned {type(y).__name__} {getattr(y, 'shape', '')}"
            )
        bad = ~torch.isfinite(y.detach())
        if bool(bad.any()):
            u, v = float(t.detach()[bad].flatten()[0]), float(y.detach()[bad].flatten()[0])
            raise InitlabError(
                f"activation {self.name!r} is not finite at u={u:.4g} ({v}): "
                "Gaussian expectations need phi finite on the whole real line (at q* = inf they are taken "
                f"at q = {Q_MAX:g}); pass such an activation or a smaller sigma_w2 / sigma_b2"
            )
        return y.to(torch.float64)


def _named_fn(
    name: str, param: float | None
) -> tuple[Callable[[torch.Tensor], torch.Tensor], tuple[float, ...]]:
    try:  # the canonical activation table (initlab.gains)
        from initlab.gains import activation_fn, activation_kinks
    except ImportError:  # pragma: no cover - fallback: the model zoo's modules, kinks unknown
        from initlab.models import activation_module

        return activation_module(name, param), ()
    return activation_fn(name, param), tuple(float(k) for k in activation_kinks(name, param))


def _resolve(activation: Any, param: float | None = None) -> _Act:
    if isinstance(activation, _Act):
        return activation
    if isinstance(activation, str):
        fn, kinks = _named_fn(activation, param)
        return _Act(activation, param, fn, kinks)
    if callable(activation):
        if param is not None:
            raise InitlabError(
                f"param={param!r} applies only to a named activation: bake it into the callable instead"
            )
        name = getattr(activation, "__name__", None) or type(activation).__name__
        return _Act(str(name), None, activation)
    raise TypeError(
        f"activation={activation!r} is invalid: pass a name such as 'tanh' or an elementwise torch callable"
    )


def _real(value: Any, name: str) -> float:
    """``value`` as a float; TypeError naming ``name`` unless it is a real number (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}={value!r} must be a real number, got {type(value).__name__}")
    return float(value)


def _check_q_star(q_star: float | None) -> float | None:
    """``None``, or a length ``q* >= 0`` (``inf`` allowed: the diverging length map)."""
    if q_star is None:
        return None
    q = _real(q_star, "q_star")
    if not q >= 0:
        raise InitlabError(f"q_star={q_star!r} is invalid: pass a length >= 0 (or None for the fixed point)")
    return q


def _check_variances(sigma_w2: float, sigma_b2: float) -> tuple[float, float]:
    w, b = _real(sigma_w2, "sigma_w2"), _real(sigma_b2, "sigma_b2")
    if not (math.isfinite(w) and w > 0):
        raise InitlabError(f"sigma_w2={sigma_w2!r} is invalid: pass a finite weight variance > 0")
    if not (math.isfinite(b) and b >= 0):
        raise InitlabError(f"sigma_b2={sigma_b2!r} is invalid: pass a finite bias variance >= 0")
    return w, b


# ---- 1-D expectations ------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(n)


def gaussian_rule_1d(
    q: float, *, kinks: Sequence[float] = (), order: int = ORDER_1D
) -> tuple[np.ndarray, np.ndarray]:
    """Composite Gauss–Legendre rule for ``E[f(u)]``, ``u ~ N(0, q)``, resolving every scale.

    .. math::
        \\mathbb{E}[f(u)] \\approx \\sum_i w_i f(u_i),\\qquad
        w_i = \\tfrac{b-a}{2}\\, \\omega_i\\, \\frac{e^{-u_i^2 / 2q}}{\\sqrt{2\\pi q}}

    The line is cut to ``[-12 sqrt(q), 12 sqrt(q)]`` (the mass outside is < 4e-33) and split at
    ``0``, at every kink, at ``+-0.25 * sqrt(2)^k`` (the activation's own scale, so that tanh's
    step at large ``q`` is resolved) and at every multiple of ``sqrt(q)`` (the Gaussian's scale);
    each piece ``[a, b]`` gets ``order`` Gauss–Legendre nodes with weights ``omega``. Plain
    Gauss–Hermite in ``z`` does not resolve the step: for ``tanh`` at ``q = 16`` its error is
    1e-4 at 200 nodes, this rule's < 1e-13 (``tests/test_theory.py``).

    Args:
        q: variance (``> 0``).
        kinks: points (in ``u`` units) where ``f`` is not smooth.
        order: Gauss–Legendre nodes per piece.

    Returns:
        ``(u, w)``: 1-D float64 arrays of nodes and weights (about ``40 * order`` of them at
        ``q = 1``), ``w`` summing to 1 within 1e-15.

    Raises:
        InitlabError: ``q <= 0`` or a bad ``order``.

    Source: Gauss–Legendre quadrature (Golub & Welsch 1969).

    >>> u, w = gaussian_rule_1d(2.0)
    >>> round(float(w @ u**2), 13), round(float(w @ (u > 0)), 13)
    (2.0, 0.5)
    """
    if isinstance(q, bool) or not isinstance(q, (int, float, np.floating)) or not math.isfinite(q) or q <= 0:
        raise InitlabError(f"q={q!r} is invalid: pass a variance > 0")
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 1:
        raise InitlabError(f"order={order!r} is invalid: pass an integer >= 1 (e.g. {ORDER_1D})")
    sd = math.sqrt(q)
    lim = 12.0 * sd
    n_geo = 2 * math.ceil(math.log2(max(lim / 0.25, 1.0))) + 1
    geo = 0.25 * np.sqrt(2.0) ** np.arange(n_geo)
    lin = sd * np.arange(1, 12)
    cuts = np.concatenate([[0.0, lim, -lim], geo, -geo, lin, -lin, np.asarray(kinks, dtype=np.float64)])
    cuts = np.unique(cuts[(cuts >= -lim) & (cuts <= lim)])
    x0, w0 = _legendre(int(order))
    half = np.diff(cuts)[:, None] / 2.0
    mid = (cuts[1:] + cuts[:-1])[:, None] / 2.0
    u = (half * x0 + mid).ravel()
    w = (half * w0).ravel() * np.exp(-0.5 * u * u / q) / (sd * math.sqrt(2.0 * math.pi))
    return u, w


def _limit_at_zero(act: _Act) -> tuple[float, float]:
    """phi(0)^2 and the q -> 0+ limit of E[phi'(sqrt(q) z)^2], (phi'(0-)^2 + phi'(0+)^2) / 2."""
    y, g = act.phi_dphi(np.array([-1e-30, 0.0, 1e-30]))
    return float(y[1] ** 2), float(0.5 * (g[0] ** 2 + g[2] ** 2))


def _moments(act: _Act, q: np.ndarray, order: int) -> dict[str, np.ndarray]:
    """E[phi^2], E[phi'^2] and E[u phi phi'] / q (= E[z phi phi'] / sqrt(q)) at each q >= 0.

    At ``q = 0`` exactly: the limits ``phi(0)^2``, ``(phi'(0-)^2 + phi'(0+)^2) / 2`` and (for
    ``phi(0) = 0``) the same for the slope; ``0 < q < Q_TINY`` is evaluated at ``Q_TINY``.
    """
    q = np.asarray(q, dtype=np.float64)
    zero = q == 0
    if zero.any():
        out = _moments(act, np.where(zero, 1.0, q), order) if not zero.all() else {
            k: np.zeros(q.shape) for k in ("phi2", "dphi2", "slope")}
        p2, d2 = _limit_at_zero(act)
        out["phi2"] = np.where(zero, p2, out["phi2"])
        out["dphi2"] = np.where(zero, d2, out["dphi2"])
        out["slope"] = np.where(zero, d2, out["slope"])
        return out
    q = np.maximum(q, Q_TINY)
    flat = q.reshape(-1)
    rules = [gaussian_rule_1d(float(qi), kinks=act.kinks, order=order) for qi in flat]
    starts = np.concatenate([[0], np.cumsum([len(r[0]) for r in rules])[:-1]])
    u = np.concatenate([r[0] for r in rules])
    w = np.concatenate([r[1] for r in rules])
    y, g = act.phi_dphi(u)
    out = {
        "phi2": np.add.reduceat(w * y * y, starts),
        "dphi2": np.add.reduceat(w * g * g, starts),
        "slope": np.add.reduceat(w * u * y * g, starts) / flat,
    }
    return {k: v.reshape(q.shape) for k, v in out.items()}


def gaussian_expectation_1d(
    f: Callable[[torch.Tensor], torch.Tensor],
    q: float = 1.0,
    *,
    kinks: Sequence[float] = (),
    order: int = ORDER_1D,
) -> float:
    """``E[f(sqrt(q) z)]`` for ``z ~ N(0, 1)`` by the composite rule :func:`gaussian_rule_1d`.

    .. math::
        \\mathbb{E}[f(\\sqrt{q} z)] \\approx \\sum_i w_i f(u_i)

    Args:
        f: elementwise torch callable (evaluated on a 1-D float64 tensor of nodes).
        q: variance of the argument (``>= 0``; 0 is evaluated as ``Q_TINY``).
        kinks: where ``f`` is not smooth (in units of its argument).
        order: Gauss–Legendre nodes per piece.

    Raises:
        InitlabError: ``q < 0`` or a bad ``order``.

    >>> round(gaussian_expectation_1d(lambda u: u**2, 2.0), 12)
    2.0
    """
    if not (q >= 0):
        raise InitlabError(f"q={q!r} is invalid: pass a variance >= 0")
    u, w = gaussian_rule_1d(max(float(q), Q_TINY), kinks=tuple(kinks), order=order)
    with torch.no_grad():
        y = f(torch.as_tensor(u, dtype=torch.float64))
    return float(np.asarray(y, dtype=np.float64) @ w)


def length_map(
    activation: Any,
    q: float | np.ndarray,
    sigma_w2: float,
    sigma_b2: float = 0.0,
    *,
    param: float | None = None,
    order: int = ORDER_1D,
) -> float | np.ndarray:
    """The length map: squared length of the next layer's pre-activation (Poole et al. 2016).

    .. math::
        \\mathcal{V}(q) = \\sigma_w^2\\, \\mathbb{E}_z[\\phi(\\sqrt{q} z)^2] + \\sigma_b^2

    Args:
        activation: a name (``"tanh"``) or an elementwise torch callable.
        q: pre-activation second moment per unit (scalar or array, ``>= 0``).
        sigma_w2, sigma_b2: weight variance times fan_in, and bias variance.
        param: parameter of a named activation (e.g. the leaky_relu slope).
        order: Gauss–Hermite order.

    Returns:
        ``V(q)``, same shape as ``q`` (a float for a scalar).

    Raises:
        InitlabError: negative ``q`` or variance, unknown activation.

    Source: Poole et al., "Exponential expressivity in deep neural networks through transient
    chaos", 2016, eq. 3.

    >>> float(length_map("relu", 3.0, 2.0))
    3.0
    """
    sw2, sb2 = _check_variances(sigma_w2, sigma_b2)
    qa = np.asarray(q, dtype=np.float64)
    if np.any(~(qa >= 0)):
        raise InitlabError(f"q={q!r} is invalid: pass variances >= 0")
    act = _resolve(activation, param)
    out = sw2 * _moments(act, qa, order)["phi2"] + sb2
    return float(out) if out.ndim == 0 else out


def fixed_point_q(
    activation: Any,
    sigma_w2: float,
    sigma_b2: float = 0.0,
    *,
    param: float | None = None,
    q0: float = 1.0,
    order: int = ORDER_1D,
) -> float:
    """The fixed point ``q*`` of the length map reached by iterating from ``q0``.

    .. math::
        q^* = \\lim_{l\\to\\infty} \\mathcal{V}^{\\circ l}(q_0),\\qquad q^* = \\mathcal{V}(q^*)

    Method: the iteration ``q <- V(q)`` converges only geometrically (and algebraically at
    criticality), so instead the sign of ``g(q) = V(q) - q`` is scanned on a log grid from
    ``q0`` in the direction the iteration moves (up if ``g(q0) > 0``, down otherwise), and the
    first sign change is refined by ``scipy.optimize.brentq`` (relative tolerance 1e-13). For an
    increasing length map (every activation with ``phi^2`` growing in ``|u|``) this is exactly
    the limit of the iteration. No sign change downwards: ``q* = 0`` (the signal dies; needs
    ``sigma_b2 = 0`` and ``phi(0) = 0``; fixed points below ``Q_TINY`` read as 0). None upwards:
    ``q* = inf`` (the length grows without bound, e.g. ReLU with ``sigma_w2 > 2``). If
    ``V(q0) = q0`` (ReLU at ``sigma_w2 = 2, sigma_b2 = 0``: every ``q`` is fixed) ``q0`` is returned.

    Args:
        activation, sigma_w2, sigma_b2, param, order: as in :func:`length_map`.
        q0: starting length (``> 0``); matters only when several fixed points exist.

    Returns:
        ``q*`` as a float in ``[0, inf]``.

    Raises:
        InitlabError: bad variances, ``q0 <= 0``, unknown activation.

    Source: Poole et al. 2016, Fig. 1; Schoenholz et al. 2017, section 3.

    >>> round(fixed_point_q("tanh", 1.5, 0.05), 4)
    0.418
    >>> fixed_point_q("tanh", 0.9), fixed_point_q("relu", 2.5)
    (0.0, inf)
    """
    sw2, sb2 = _check_variances(sigma_w2, sigma_b2)
    if not (math.isfinite(q0) and q0 > 0):
        raise InitlabError(f"q0={q0!r} is invalid: pass a starting length > 0")
    act = _resolve(activation, param)

    def g(q: float | np.ndarray) -> Any:
        return sw2 * _moments(act, q, order)["phi2"] + sb2 - np.maximum(q, Q_TINY)

    g0 = float(g(q0))
    if abs(g0) <= 1e-14 * q0:
        return float(q0)
    if g0 > 0:
        grid = np.geomspace(q0, Q_MAX, 200)[1:]
    else:
        grid = np.geomspace(q0, Q_TINY, 200)[1:]
    vals = g(grid)
    prev_q = q0
    for qi, gi in zip(grid, vals, strict=True):
        if gi == 0:
            return float(qi)
        if (gi > 0) != (g0 > 0):
            lo, hi = sorted((prev_q, float(qi)))
            return float(optimize.brentq(lambda t: float(g(t)), lo, hi, xtol=1e-300, rtol=1e-13))
        prev_q = float(qi)
    return math.inf if g0 > 0 else 0.0


def _eval_q(q_star: float) -> float:
    """Where quantities at ``q*`` are evaluated (the inf limit; see the module docstring)."""
    if q_star == math.inf:
        return Q_MAX
    return q_star


def chi_1(
    activation: Any,
    sigma_w2: float,
    sigma_b2: float = 0.0,
    *,
    q_star: float | None = None,
    param: float | None = None,
    order: int = ORDER_1D,
) -> float:
    """The slope of the correlation map at ``c = 1``: mean squared singular value of one layer's
    Jacobian (ordered < 1 < chaotic).

    .. math::
        \\chi_1 = \\sigma_w^2\\, \\mathbb{E}_z[\\phi'(\\sqrt{q^*} z)^2]

    Args:
        activation, sigma_w2, sigma_b2, param, order: as in :func:`length_map`.
        q_star: the length at which to evaluate; default :func:`fixed_point_q`.

    Returns:
        ``chi_1`` (dimensionless, ``>= 0``).

    Raises:
        InitlabError: bad variances or activation.

    Source: Poole et al. 2016, eq. 7; Schoenholz et al. 2017, eq. 5.

    >>> chi_1("relu", 2.0), chi_1("tanh", 1.0)
    (1.0, 1.0)
    """
    sw2, sb2 = _check_variances(sigma_w2, sigma_b2)
    q_star = _check_q_star(q_star)
    act = _resolve(activation, param)
    if q_star is None:
        q_star = fixed_point_q(act, sw2, sb2, order=order)
    return float(sw2 * _moments(act, _eval_q(q_star), order)["dphi2"])


# ---- 2-D expectations ------------------------------------------------------------------------


def _pair(act: _Act, q: float, c: np.ndarray, order: int, grad: bool) -> tuple[np.ndarray, np.ndarray]:
    """E[phi(u1) phi(u2)] and (if grad) E[phi'(u1) phi'(u2)] for each correlation in ``c``."""
    x, w = gauss_hermite(order)
    c = np.clip(np.asarray(c, dtype=np.float64), -1.0, 1.0)[..., None, None]
    s = np.sqrt(1.0 - c * c)
    sq = math.sqrt(q)
    z1, z2 = x[:, None], x[None, :]
    u1 = np.broadcast_to(sq * z1, np.broadcast_shapes(c.shape, (order, order)))
    u2 = sq * (c * z1 + s * z2)
    ww = np.outer(w, w)
    if grad:
        y1, g1 = act.phi_dphi(x * sq)
        y2, g2 = act.phi_dphi(u2)
        e = np.einsum("ij,...ij->...", ww, y1[:, None] * y2)
        d = np.einsum("ij,...ij->...", ww, g1[:, None] * g2)
        return e, d
    y1 = act.phi(x * sq)
    y2 = act.phi(u2)
    del u1
    return np.einsum("ij,...ij->...", ww, y1[:, None] * y2), np.empty(0)


def correlation_map(
    activation: Any,
    c: float | np.ndarray,
    sigma_w2: float,
    sigma_b2: float = 0.0,
    *,
    q_star: float | None = None,
    param: float | None = None,
    order: int = ORDER_2D,
) -> float | np.ndarray:
    """The correlation map: correlation of two inputs' pre-activations one layer deeper.

    .. math::
        \\mathcal{C}(c) = \\frac{\\sigma_w^2\\, \\mathbb{E}[\\phi(u_1)\\phi(u_2)] + \\sigma_b^2}
        {\\sigma_w^2\\, \\mathbb{E}[\\phi(u_1)^2] + \\sigma_b^2},\\quad
        u_1 = \\sqrt{q} z_1,\\ u_2 = \\sqrt{q}(c z_1 + \\sqrt{1 - c^2} z_2)

    with ``q = q*``. The denominator is ``V(q*) = q*`` at the fixed point; writing it as ``V(q)``
    keeps the map well defined in the limit ``q* -> 0`` (where it tends to the identity).

    Args:
        activation, sigma_w2, sigma_b2, param: as in :func:`length_map`.
        c: correlation(s) in ``[-1, 1]`` (scalar or array).
        q_star: the length; default :func:`fixed_point_q`.
        order: Gauss–Hermite nodes per axis (``order**2`` points).

    Returns:
        ``C(c)``, same shape as ``c``.

    Raises:
        InitlabError: ``c`` outside ``[-1, 1]``, bad variances or activation.

    Source: Poole et al. 2016, eq. 5; Schoenholz et al. 2017, eq. 4.

    >>> round(float(correlation_map("tanh", 1.0, 1.5, 0.05)), 10)
    1.0
    """
    sw2, sb2 = _check_variances(sigma_w2, sigma_b2)
    ca = np.asarray(c, dtype=np.float64)
    if np.any(~(np.abs(ca) <= 1.0)):
        raise InitlabError(f"c={c!r} is invalid: pass correlations in [-1, 1]")
    q_star = _check_q_star(q_star)
    act = _resolve(activation, param)
    if q_star is None:
        q_star = fixed_point_q(act, sw2, sb2, order=ORDER_1D)
    q = max(_eval_q(q_star), Q_TINY)  # q* = 0: the limit q -> 0+, where C tends to the identity
    e, _ = _pair(act, q, ca, order, grad=False)
    # V(q) with the same 2-D rule (at c = 1), so that C(1) = 1 exactly whatever the order
    denom = sw2 * float(_pair(act, q, np.asarray(1.0), order, grad=False)[0]) + sb2
    out = (sw2 * e + sb2) / denom
    return float(out) if out.ndim == 0 else out


def fixed_point_c(
    activation: Any,
    sigma_w2: float,
    sigma_b2: float = 0.0,
    *,
    q_star: float | None = None,
    param: float | None = None,
    order: int = ORDER_2D,
) -> float:
    """The stable fixed point ``c*`` of the correlation map.

    .. math::
        c^* = \\mathcal{C}(c^*),\\qquad c^* = 1 \\text{ if } \\chi_1 \\le 1

    In the chaotic phase (``chi_1 > 1``) ``c = 1`` is unstable; ``C(c) - c`` is then negative just
    below 1 and the first sign change going down (grid ``1 - 10^-k`` then ``[0.9, -1]``) is refined
    by ``brentq`` (tolerance 1e-13). Values ``|C(c) - c| <= 1e-12`` count as rounding, not as a sign
    (with ``q* = inf`` the map of ReLU-like activations is marginal at ``c = 1``).

    Args:
        as :func:`correlation_map`.

    Returns:
        ``c*`` in ``[-1, 1]``.

    Raises:
        InitlabError: bad variances, ``q_star`` or activation; a ``q*`` too large for the 2-D rule
        of this ``order`` (it must reproduce ``chi_1`` at ``c = 1`` within
        :data:`RESOLUTION_TOL_2D`: tanh at ``sigma_b2 = 0.05`` beyond ``sigma_w2 ~ 35``).

    Source: Poole et al. 2016, Fig. 2; Schoenholz et al. 2017, section 3.

    >>> round(fixed_point_c("tanh", 1.2, 0.0), 12), fixed_point_c("tanh", 1.0, 0.05)
    (0.0, 1.0)
    """
    sw2, sb2 = _check_variances(sigma_w2, sigma_b2)
    q_star = _check_q_star(q_star)
    act = _resolve(activation, param)
    if q_star is None:
        q_star = fixed_point_q(act, sw2, sb2, order=ORDER_1D)
    chi = chi_1(act, sw2, sb2, q_star=q_star)
    if chi <= 1.0:
        return 1.0
    if q_star == 0:  # pragma: no cover - q* = 0 implies chi_1 <= 1
        return 1.0
    _check_resolution_2d(act, sw2, sb2, q_star, chi, order)

    def h(c: Any) -> Any:
        return correlation_map(act, c, sw2, sb2, q_star=q_star, order=order) - c

    grid = np.concatenate([1.0 - np.logspace(-12, -1, 12), np.linspace(0.9, -1.0, 20), [0.0]])
    grid = np.unique(grid)[::-1]  # descending from just below 1
    vals = h(grid)
    noise = 1e-12  # |C(c) - c| below this is rounding: no sign (e.g. a marginal c = 1 when q* = inf)
    prev = None
    for ci, hi in zip(grid, vals, strict=True):
        if abs(hi) <= noise:
            if prev is None:  # still numerically on c = 1
                continue
            return float(ci)
        if hi > 0:
            if prev is None:  # C(c) > c just below 1: numerically critical ...
                if math.isfinite(q_star) and chi > 1.0 + 1e-3:  # ... or the 2-D rule cannot see C'(1) > 1
                    _check_resolution_2d(act, sw2, sb2, q_star, chi, order, force=True)
                return 1.0
            return float(optimize.brentq(lambda t: float(h(t)), float(ci), prev, xtol=1e-15, rtol=1e-13))
        prev = float(ci)
    return -1.0


def _check_resolution_2d(act: _Act, sw2: float, sb2: float, q_star: float, chi: float, order: int,
                         force: bool = False) -> None:
    """Refuse a 2-D rule too coarse for ``phi(sqrt(q*) z)``: at ``c = 1`` it must reproduce the
    1-D rule's ``chi_1`` within :data:`RESOLUTION_TOL_2D` (else ``c*`` can come out as 1 and
    ``xi_c`` as ``inf`` deep in the chaotic phase). ``force``: refuse anyway (the caller found the
    2-D map flat or rising below ``c = 1`` although ``chi_1 > 1``)."""
    _, d = _pair(act, max(_eval_q(q_star), Q_TINY), np.asarray(1.0), order, grad=True)
    miss = abs(sw2 * float(d) - chi) / chi
    if force or not miss <= RESOLUTION_TOL_2D:
        flat = ", and its correlation map shows no instability at c = 1" if force else ""
        raise InitlabError(
            f"sigma_w2={sw2:g}, sigma_b2={sb2:g}: the 2-D Gauss-Hermite rule (order_2d={order}) cannot "
            f"resolve {act.name} at q*={q_star:.4g} (it misses chi_1 by {miss:.0%}{flat}), so c*, chi_c "
            f"and xi_c cannot be computed; steep or kinked activations (large q*, hardtanh) need a finer "
            f"rule: pass a larger order_2d (at most {MAX_ORDER_2D}) or a smaller sigma_w2"
        )


def depth_scale(slope: float) -> float:
    """Depth scale of a geometric approach to a fixed point with per-layer factor ``slope``.

    .. math::
        \\xi = -1 / \\log|\\text{slope}|

    ``inf`` when ``|slope| >= 1 - 1e-12`` (critical: the approach is slower than geometric; the
    tolerance absorbs the ``q -> 0+`` limit's rounding) and ``0``
    when ``slope == 0``.

    Source: Schoenholz et al. 2017, eqs. 6 and 9.

    >>> round(depth_scale(0.5), 4), depth_scale(1.0)
    (1.4427, inf)
    """
    s = abs(float(slope))
    if s >= 1.0 - 1e-12:
        return math.inf
    if s == 0.0:
        return 0.0
    return -1.0 / math.log(s)


# ---- results ---------------------------------------------------------------------------------


def _phase(chi: float, tol: float = 1e-9) -> str:
    if abs(chi - 1.0) <= tol:
        return "critical"
    return "ordered" if chi < 1.0 else "chaotic"


@dataclass(frozen=True)
class MeanField:
    """Mean-field quantities of one (activation, sigma_w2, sigma_b2).

    Attributes:
        activation: activation name; param its parameter.
        sigma_w2, sigma_b2: weight variance (times fan_in) and bias variance.
        q_star: fixed point of the length map (0 or inf at the edges; see module docstring).
        chi_1: slope of the correlation map at ``c = 1``.
        c_star: stable fixed point of the correlation map.
        chi_c: slope of the correlation map at ``c*``.
        length_slope: ``V'(q*)``.
        xi_q, xi_c: depth scales (layers) of length and correlation.
        phase: ``"ordered"``, ``"critical"`` or ``"chaotic"`` (by ``chi_1``, tolerance 1e-9).
    """

    activation: str
    param: float | None
    sigma_w2: float
    sigma_b2: float
    q_star: float
    chi_1: float
    c_star: float
    chi_c: float
    length_slope: float
    xi_q: float
    xi_c: float
    phase: str

    @property
    def trainable_depth(self) -> float:
        """Predicted maximum trainable depth ``6 xi_c`` (Schoenholz et al. 2017)."""
        return TRAINABLE_DEPTH_FACTOR * self.xi_c

    def as_dict(self) -> dict[str, Any]:
        """All fields plus ``trainable_depth``, as a plain dict."""
        d = asdict(self)
        d["trainable_depth"] = self.trainable_depth
        return d


def mean_field(
    activation: Any,
    sigma_w2: float,
    sigma_b2: float = 0.0,
    *,
    param: float | None = None,
    q0: float = 1.0,
    order: int = ORDER_1D,
    order_2d: int = ORDER_2D,
) -> MeanField:
    """All mean-field quantities at one point: ``q*, chi_1, c*, chi_c, xi_q, xi_c``, the phase.

    .. math::
        \\xi_q = -1/\\log \\mathcal{V}'(q^*),\\quad \\xi_c = -1/\\log \\chi_c,\\quad
        L_{\\max} \\approx 6\\, \\xi_c

    Args:
        activation, sigma_w2, sigma_b2, param: as in :func:`length_map`.
        q0: start of the length iteration (:func:`fixed_point_q`).
        order, order_2d: Gauss–Hermite orders for 1-D and 2-D expectations.

    Returns:
        a :class:`MeanField`.

    Raises:
        InitlabError: bad variances or activation; a chaotic point whose ``q*`` the 2-D rule
        cannot resolve (:func:`fixed_point_c`).

    Source: Schoenholz et al., "Deep Information Propagation", 2017.

    >>> mf = mean_field("tanh", 4.0, 0.05)
    >>> mf.phase, round(mf.c_star, 3), round(mf.xi_c, 2)
    ('chaotic', 0.165, 6.98)
    """
    sw2, sb2 = _check_variances(sigma_w2, sigma_b2)
    act = _resolve(activation, param)
    qs = fixed_point_q(act, sw2, sb2, q0=q0, order=order)
    m = _moments(act, _eval_q(qs), order)
    chi = float(sw2 * m["dphi2"])
    slope = float(sw2 * m["slope"])
    if chi <= 1.0:
        cs, chic = 1.0, chi
    else:
        cs = fixed_point_c(act, sw2, sb2, q_star=qs, order=order_2d)
        if cs >= 1.0:
            chic = chi
        else:
            _, d = _pair(act, _eval_q(qs), np.asarray(cs), order_2d, grad=True)
            chic = float(sw2 * d)
    return MeanField(
        activation=act.name,
        param=act.param,
        sigma_w2=sw2,
        sigma_b2=sb2,
        q_star=qs,
        chi_1=chi,
        c_star=cs,
        chi_c=chic,
        length_slope=slope,
        xi_q=depth_scale(slope),
        xi_c=depth_scale(chic),
        phase=_phase(chi),
    )


@dataclass(frozen=True)
class CriticalPoint:
    """A point on the critical line (``chi_1 = 1``) of an activation.

    Attributes:
        activation: activation name; param its parameter.
        sigma_w2: weight variance times fan_in (weights ``N(0, sigma_w2 / fan_in)``).
        sigma_b2: bias variance.
        q_star: fixed point of the length map there; ``0.0`` on the ``sigma_b2 = 0`` axis of an
            activation with ``phi(0) = 0`` (tanh), ``nan`` when every ``q`` is a fixed point
            (positively homogeneous activations such as ReLU at ``sigma_b2 = 0``).
        chi_1: recomputed at the point (1 up to quadrature and root-finding error).
        length_slope: ``V'(q*)``; ``xi_q`` its depth scale. ``xi_c`` is ``inf`` by definition.
    """

    activation: str
    param: float | None
    sigma_w2: float
    sigma_b2: float
    q_star: float
    chi_1: float
    length_slope: float
    xi_q: float
    xi_c: float = math.inf
    extras: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def sigma_w(self) -> float:
        """``sqrt(sigma_w2)``: the gain to use with a ``1/sqrt(fan_in)`` scheme."""
        return math.sqrt(self.sigma_w2)

    @property
    def sigma_b(self) -> float:
        """``sqrt(sigma_b2)``: the bias std."""
        return math.sqrt(self.sigma_b2)

    def weight_std(self, fan_in: int) -> float:
        """Weight std ``sigma_w / sqrt(fan_in)`` for a layer with ``fan_in`` inputs.

        Raises:
            InitlabError: ``fan_in < 1``.
        """
        if isinstance(fan_in, bool) or not isinstance(fan_in, (int, np.integer)) or fan_in < 1:
            raise InitlabError(f"fan_in={fan_in!r} is invalid: pass an integer >= 1")
        return self.sigma_w / math.sqrt(fan_in)

    def describe(self) -> str:
        """One line: ``tanh critical: sigma_w2=1.7596 sigma_b2=0.05 q*=... chi_1=1``."""
        return (
            f"{self.activation} critical: sigma_w2={self.sigma_w2:.6g} sigma_b2={self.sigma_b2:.6g} "
            f"q*={self.q_star:.6g} chi_1={self.chi_1:.6g} xi_q={self.xi_q:.4g}"
        )


def _critical_b(act: _Act, q: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Along the critical line: sigma_w2(q) = 1 / E[phi'^2], sigma_b2(q) = q - sigma_w2 E[phi^2]."""
    m = _moments(act, q, order)
    with np.errstate(divide="ignore", invalid="ignore"):
        sw2 = 1.0 / m["dphi2"]
    return sw2, np.asarray(q, dtype=np.float64) - sw2 * m["phi2"]


def _cp_at(act: _Act, q: float, sw2: float, sb2: float, order: int, extras: dict[str, Any]) -> CriticalPoint:
    m = _moments(act, _eval_q(q) if math.isfinite(q) else 1.0, order)
    slope = float(sw2 * m["slope"])
    return CriticalPoint(
        activation=act.name,
        param=act.param,
        sigma_w2=float(sw2),
        sigma_b2=float(sb2),
        q_star=float(q),
        chi_1=float(sw2 * m["dphi2"]),
        length_slope=slope,
        xi_q=depth_scale(slope),
        extras=extras,
    )


def critical_point(
    activation: Any,
    *,
    sigma_b2: float | None = None,
    q_star: float | None = None,
    param: float | None = None,
    order: int = ORDER_1D,
) -> CriticalPoint:
    """The (sigma_w2, sigma_b2) on the critical line ``chi_1 = 1``: initialise here (edge of chaos).

    Parametrise the critical line by ``q*``: ``chi_1 = 1`` and ``V(q*) = q*`` give

    .. math::
        \\sigma_w^2(q^*) = \\frac{1}{\\mathbb{E}[\\phi'(\\sqrt{q^*} z)^2]},\\qquad
        \\sigma_b^2(q^*) = q^* - \\sigma_w^2(q^*)\\, \\mathbb{E}[\\phi(\\sqrt{q^*} z)^2]

    Give exactly one of:

    * ``q_star``: the formulas above directly (``q_star = 0`` is the limit ``q -> 0+``:
      ``sigma_w2 = 1/phi'(0)^2``, Kumar 2017);
    * ``sigma_b2`` (default ``0`` when neither is given): the smallest ``q* >= 0`` with
      ``sigma_b2(q*) = sigma_b2``, found by scanning a log grid ``q in [1e-12, 1e6]`` and refining
      the first sign change with ``scipy.optimize.brentq`` (relative tolerance 1e-13). With
      ``sigma_b2 = 0`` and ``phi(0) = 0`` the answer is ``q* = 0`` whenever ``sigma_b2(q) -> 0``
      as ``q -> 0`` (tanh: ``sigma_w2 = 1``). For a positively homogeneous activation (ReLU,
      leaky ReLU, linear) ``sigma_b2(q) = 0`` for every ``q``: the critical point is
      ``sigma_w2 = 1 / E[phi'^2]`` (ReLU: 2) with ``q* = nan`` (every ``q`` is a fixed point), and
      there is none with ``sigma_b2 > 0``.

    Pennington et al. 2017 recommend orthogonal weights with std ``sigma_w / sqrt(fan_in)`` at a
    critical point with small ``q*`` for dynamical isometry (see ``init_model(scheme="critical")``).

    Args:
        activation: a name or an elementwise torch callable.
        sigma_b2: bias variance (``>= 0``).
        q_star: fixed-point length (``>= 0``).
        param: parameter of a named activation.
        order: Gauss–Hermite order.

    Returns:
        a :class:`CriticalPoint`.

    A root ``q*`` is accepted only if it is a stable fixed point of the length map (``V'(q*) <= 1``;
    at ``q* = 0``: ``V(q) < q`` just above 0), else the next root is tried. Activations that are
    convex around 0 (GELU, SiLU, Mish, hardswish) have none at ``sigma_b2 = 0``: their ``chi_1 = 1``
    point ``q* = 0`` repels (the length grows away from it), and an error says so.

    Raises:
        InitlabError: both ``sigma_b2`` and ``q_star`` given; a negative value; a ``q_star`` that
        would need a negative ``sigma_b2``; a ``sigma_b2`` the critical line never reaches or
        reaches only at unstable fixed points.
        TypeError: ``sigma_b2`` or ``q_star`` is not a real number.

    Sources: Poole et al. 2016; Schoenholz et al. 2017; Pennington et al. 2017; Kumar 2017.

    >>> cp = critical_point("tanh")
    >>> round(cp.sigma_w2, 8), cp.q_star
    (1.0, 0.0)
    >>> round(critical_point("relu").sigma_w2, 8)
    2.0
    >>> round(critical_point("tanh", q_star=0.5).sigma_w2, 4)
    1.688
    """
    act = _resolve(activation, param)
    if sigma_b2 is not None and q_star is not None:
        raise InitlabError(
            f"give sigma_b2={sigma_b2!r} or q_star={q_star!r}, not both: the other follows from chi_1 = 1"
        )
    if q_star is not None:
        q = _real(q_star, "q_star")
        if not (math.isfinite(q) and q >= 0):
            raise InitlabError(f"q_star={q_star!r} is invalid: pass a finite length >= 0")
        sw2, sb2 = _critical_b(act, np.asarray(q), order)
        sw2, sb2 = float(sw2), float(sb2)
        if not math.isfinite(sw2):
            raise InitlabError(
                f"q_star={q_star!r} gives E[phi'^2] = 0 for {act.name}: no critical sigma_w2 exists there"
            )
        if sb2 < -1e-9 * max(q, 1.0):
            raise InitlabError(
                f"q_star={q_star!r} needs sigma_b2={sb2:.4g} < 0 for {act.name}: choose a larger q_star"
            )
        return _cp_at(act, q, sw2, max(sb2, 0.0), order, {"mode": "q_star"})

    target = 0.0 if sigma_b2 is None else _real(sigma_b2, "sigma_b2")
    if not (math.isfinite(target) and target >= 0):
        raise InitlabError(f"sigma_b2={sigma_b2!r} is invalid: pass a finite bias variance >= 0")
    grid = np.geomspace(Q_TINY, 1e6, 181)
    sw2_g, sb2_g = _critical_b(act, grid, order)
    ok = np.isfinite(sw2_g) & np.isfinite(sb2_g)
    if not ok.any():
        raise InitlabError(f"activation {act.name!r} has E[phi'^2] = 0 everywhere: it has no critical point")
    # positively homogeneous activation: the critical line collapses onto sigma_b2 = 0
    if np.all(np.abs(sb2_g[ok]) <= 1e-9 * grid[ok]):
        if target > 1e-12:
            raise InitlabError(
                f"sigma_b2={target:g}: {act.name} is positively homogeneous, so its only critical "
                f"point is sigma_w2={float(np.median(sw2_g[ok])):.6g} with sigma_b2=0; pass sigma_b2=0"
            )
        sw2 = float(np.median(sw2_g[ok]))
        return _cp_at(act, math.nan, sw2, 0.0, order, {"mode": "homogeneous"})
    phi0 = float(act.phi(np.zeros(1))[0])
    rejected: list[float] = []

    def attracting(q: float, sw2: float) -> bool:
        """Is q a stable fixed point of the length map at (sw2, target)?"""
        if q == 0.0:  # V'(0) = chi_1 = 1: decide at second order, V(q) < q just above 0
            q1 = 1e-6
            return bool(sw2 * _moments(act, np.asarray(q1), order)["phi2"] + target - q1 <= 1e-12 * q1)
        return bool(sw2 * _moments(act, np.asarray(q), order)["slope"] <= 1.0 + 1e-9)

    if target == 0.0 and abs(phi0) < 1e-12 and ok[0] and abs(sb2_g[0]) <= 1e-4 * Q_TINY:
        sw2_0 = float(_critical_b(act, np.asarray(0.0), order)[0])  # 2 / (phi'(0-)^2 + phi'(0+)^2)
        if attracting(0.0, sw2_0):
            return _cp_at(act, 0.0, sw2_0, 0.0, order, {"mode": "sigma_b2", "q_star_zero": True})
        rejected.append(0.0)
    h = np.where(ok, sb2_g - target, np.nan)
    for i in range(len(grid) - 1):
        a, b = h[i], h[i + 1]
        if not (np.isfinite(a) and np.isfinite(b)):
            continue
        if a == 0 or (a < 0) != (b < 0):
            if a == 0:
                q = float(grid[i])
            else:
                q = float(optimize.brentq(
                    lambda t: float(_critical_b(act, np.asarray(t), order)[1]) - target,
                    float(grid[i]), float(grid[i + 1]), xtol=1e-300, rtol=1e-13,
                ))
            sw2 = float(_critical_b(act, np.asarray(q), order)[0])
            if attracting(q, sw2):
                return _cp_at(act, q, sw2, target, order, {"mode": "sigma_b2"})
            rejected.append(q)
    if rejected:
        raise InitlabError(
            f"sigma_b2={target:g}: {act.name} has chi_1 = 1 only at q* in "
            f"{[float(f'{r:.4g}') for r in rejected]}, where the length map's fixed point is unstable "
            "(the iteration leaves it): choose another sigma_b2 or pass q_star"
        )
    lo, hi = float(np.min(sb2_g[ok])), float(np.max(sb2_g[ok]))
    if hi < 0:
        raise InitlabError(
            f"{act.name} has no critical point with sigma_b2 >= 0: on its critical line chi_1 = 1 "
            f"sigma_b2 lies in [{lo:.4g}, {hi:.4g}] (< 0) for q* in [1e-12, 1e6] (phi(0) = {phi0:.4g} "
            "makes the length map's fixed point too large); use another activation"
        )
    raise InitlabError(
        f"sigma_b2={target:g}: the critical line of {act.name} spans sigma_b2 in [{max(lo, 0):.4g}, "
        f"{hi:.4g}] for q* in [1e-12, 1e6]; pass a sigma_b2 in that range"
    )


def critical_line(
    activation: Any,
    sigma_b2s: Sequence[float],
    *,
    param: float | None = None,
    order: int = ORDER_1D,
) -> list[CriticalPoint]:
    """:func:`critical_point` at each bias variance: the edge of chaos in the (sigma_w2, sigma_b2) plane.

    .. math::
        \\{(\\sigma_w^2, \\sigma_b^2) : \\chi_1 = 1\\}

    Raises:
        InitlabError: as :func:`critical_point`.

    Source: Poole et al. 2016, Fig. 2; Schoenholz et al. 2017, Fig. 1.

    >>> [round(p.sigma_w2, 2) for p in critical_line("tanh", [0.0, 0.05])]
    [1.0, 1.76]
    """
    act = _resolve(activation, param)
    return [critical_point(act, sigma_b2=float(b), order=order) for b in sigma_b2s]


def kumar_critical_sigma_w2(activation: Any, *, param: float | None = None) -> float:
    """Kumar's closed form: critical weight variance ``1 / phi'(0)^2`` at ``sigma_b2 = 0``.

    .. math::
        \\sigma_w^2 = \\frac{1}{\\phi'(0)^2}

    Valid for activations with ``phi(0) = 0`` that are differentiable at 0 (tanh: 1, softsign: 1,
    ``tanh(2u)``: 1/4); a cross-check of :func:`critical_point` there.

    Raises:
        InitlabError: ``phi(0) != 0``, ``phi`` not differentiable at 0 (one-sided derivatives at
        ``+-1e-30`` differ by more than 1e-4, e.g. ReLU), or ``phi'(0) = 0``.

    Source: S. K. Kumar, "On weight initialization in deep neural networks", 2017.

    >>> kumar_critical_sigma_w2("tanh")
    1.0
    """
    act = _resolve(activation, param)
    y, g = act.phi_dphi(np.array([-1e-30, 0.0, 1e-30]))
    if abs(y[1]) > 1e-12:
        raise InitlabError(f"{act.name}: phi(0)={y[1]:.4g} != 0, so Kumar's closed form does not apply")
    if abs(g[0] - g[2]) > 1e-4:
        raise InitlabError(
            f"{act.name} is not differentiable at 0 (phi'(0-)={g[0]:.4g}, phi'(0+)={g[2]:.4g}): "
            "use critical_point instead of Kumar's closed form"
        )
    d0 = 0.5 * (g[0] + g[2])
    if d0 == 0:
        raise InitlabError(f"{act.name} has phi'(0) = 0: no critical sigma_w2 at sigma_b2 = 0")
    return float(1.0 / (d0 * d0))


@dataclass(frozen=True)
class PhaseDiagram:
    """Mean-field quantities on a (sigma_b2, sigma_w2) grid.

    Attributes:
        activation: activation name.
        sigma_w2s: shape ``(W,)``; sigma_b2s: shape ``(B,)``.
        points: ``B x W`` nested tuple of :class:`MeanField`.
    """

    activation: str
    sigma_w2s: tuple[float, ...]
    sigma_b2s: tuple[float, ...]
    points: tuple[tuple[MeanField, ...], ...]

    def array(self, name: str) -> np.ndarray:
        """A ``(B, W)`` float array of one quantity (``"chi_1"``, ``"xi_c"``, ``"trainable_depth"``...).

        Raises:
            InitlabError: unknown ``name``.
        """
        first = self.points[0][0].as_dict() if self.points and self.points[0] else {}
        numeric = [k for k, v in first.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if name not in first:
            raise InitlabError(f"quantity {name!r} is unknown: use one of {', '.join(numeric)}")
        if name not in numeric:
            raise InitlabError(f"quantity {name!r} is not numeric: use one of {', '.join(numeric)} "
                               "(or read .points for the text fields)")
        return np.array([[float(p.as_dict()[name]) for p in row] for row in self.points])

    def records(self, experiment: str = "theory") -> list[dict[str, Any]]:
        """Tidy records, one per grid point and quantity (stat = quantity name)."""
        out = []
        for row in self.points:
            for p in row:
                for stat in ("q_star", "chi_1", "c_star", "chi_c", "xi_q", "xi_c", "trainable_depth"):
                    out.append({
                        "experiment": experiment, "scheme": "mean_field", "activation": p.activation,
                        "layer": None, "stat": stat, "value": p.as_dict()[stat], "epoch": None,
                        "seed": None, "sigma_w2": p.sigma_w2, "sigma_b2": p.sigma_b2, "phase": p.phase,
                    })
        return out


def phase_diagram(
    activation: Any,
    sigma_w2s: Sequence[float],
    sigma_b2s: Sequence[float] = (0.0,),
    *,
    param: float | None = None,
    order: int = ORDER_1D,
    order_2d: int = ORDER_2D,
) -> PhaseDiagram:
    """:func:`mean_field` on every grid point: the ordered/chaotic phase diagram and depth scales.

    .. math::
        (\\sigma_b^2, \\sigma_w^2) \\mapsto (q^*, \\chi_1, c^*, \\chi_c, \\xi_q, \\xi_c)

    Cost: about 10 ms per point.

    Raises:
        InitlabError: an empty grid or a bad variance.

    Source: Schoenholz et al. 2017, Fig. 1.

    >>> pd = phase_diagram("tanh", [1.0, 1.8, 4.0], [0.05])
    >>> [p.phase for p in pd.points[0]]
    ['ordered', 'chaotic', 'chaotic']
    """
    ws = tuple(float(w) for w in sigma_w2s)
    bs = tuple(float(b) for b in sigma_b2s)
    if not ws or not bs:
        raise InitlabError("phase_diagram needs at least one sigma_w2 and one sigma_b2")
    act = _resolve(activation, param)
    pts = tuple(
        tuple(mean_field(act, w, b, order=order, order_2d=order_2d) for w in ws) for b in bs
    )
    return PhaseDiagram(act.name, ws, bs, pts)


# ---- isometric initialization of plain chains ----------------------------------------------------

#: ``chi_1`` that :func:`isometric_point` aims at for activations that are not looks-linear: just
#: above 1, so that over a chain of ``L`` layers the gradient norm grows by ``CHI_1_TARGET ** L``
#: at most (1.64 at depth 50) while ``q*`` stays small and the Jacobian well conditioned.
CHI_1_TARGET: float = 1.01
#: Relative residual below which an activation's odd part counts as linear (:func:`odd_part_slope`).
ODD_LINEAR_TOL: float = 1e-6
#: The gradient growth :func:`depth_point` allows over a whole chain: ``chi_1 ** L <= DEPTH_GROWTH``
#: (tanh: ``q* = 1`` up to 8 links, ``chi_1(1)**8 = 3.7``; ``q* = 0.12`` at 128).
DEPTH_GROWTH: float = 4.0
_Q_SEARCH = (1e-4, 16.0)


def odd_part_slope(activation: Any, *, param: float | None = None, q: float = 1.0,
                   tol: float = ODD_LINEAR_TOL) -> float | None:
    """The slope ``c`` of an activation's odd part when that part is linear, else ``None``.

    .. math::
        \\phi(u) - \\phi(-u) = c\\,u \\quad (u \\sim N(0, q)),\\qquad
        c = \\frac{\\mathbb{E}[u\\,(\\phi(u) - \\phi(-u))]}{q},\\qquad
        \\text{linear iff}\\ \\frac{\\mathbb{E}[(\\phi(u) - \\phi(-u) - c u)^2]}{\\mathbb{E}[(\\phi(u) -
        \\phi(-u))^2]} \\le \\text{tol}

    ReLU and softplus (``c = 1``), leaky ReLU (``1 + slope``), GELU and SiLU (``1``, since
    ``x Phi(x) + x Phi(-x) = x``) and hardswish (``1``) qualify; tanh, sigmoid, SELU and ELU do not. For these
    activations a mirrored ("looks-linear") chain computes a linear map at init (Balduzzi et al.
    2017). ``relu6`` qualifies at ``q = 1`` (it is linear up to |u| = 6).

    Args:
        activation: name or elementwise torch callable; param: its parameter.
        q: variance of the pre-activation the test is made at (> 0).
        tol: relative residual allowed.

    Raises:
        InitlabError: unknown activation, ``q <= 0``.

    Source: Balduzzi et al., "The Shattered Gradients Problem: If resnets are the answer, then what
    is the question?", ICML 2017 (the looks-linear initialization).

    >>> odd_part_slope("relu"), round(odd_part_slope("leaky_relu", param=0.2), 12), odd_part_slope("tanh")
    (1.0, 1.2, None)
    """
    if isinstance(q, bool) or not (isinstance(q, numbers.Real) and q > 0 and math.isfinite(q)):
        raise InitlabError(f"q={q!r} is invalid: pass a pre-activation variance > 0")
    act = _resolve(activation, param)
    kinks = tuple(sorted({k for k in act.kinks} | {-k for k in act.kinks}))
    u, w = gaussian_rule_1d(float(q), kinks=kinks, order=ORDER_1D)
    d = act.phi(u) - act.phi(-u)
    c = float(w @ (u * d)) / float(q)
    norm = float(w @ (d * d))
    if norm == 0.0 or c == 0.0:
        return None
    resid = float(w @ (d - c * u) ** 2) / norm
    if resid > tol:
        return None
    return round(c, 12) if abs(c - round(c, 12)) < 1e-13 else c


@dataclass(frozen=True)
class IsometricPoint:
    """Where :func:`isometric_point` puts a link ``Linear -> phi -> Linear`` of a plain chain.

    Attributes:
        activation, param: the activation.
        kind: ``"looks_linear"`` (mirrored weights; the link is exactly linear at init),
            ``"near_critical"`` (orthogonal weights at ``chi_1 = chi_target``) or ``"variance"``
            (no such point: orthogonal weights keeping ``q = 1``, the forward gain).
        odd_slope: ``c`` of :func:`odd_part_slope` (looks-linear only, else ``None``).
        shift: ``phi(0)``; the consuming layer's bias subtracts ``shift * W 1`` so that it reads
            ``psi = phi - phi(0)``, which passes through the origin (sigmoid: 0.5).
        q_star: pre-activation variance of the link (1 for looks-linear and variance).
        sigma_w2: weight variance times fan_in of the layer that reads ``psi`` and writes the same
            ``q_star`` again, ``q* / E[psi(sqrt(q*) z)^2]`` (looks-linear: ``1 / c^2``).
        chi_1: :math:`\\sigma_w^2\\,\\mathbb{E}[\\psi'(\\sqrt{q^*} z)^2]` (looks-linear: 1 exactly).
    """

    activation: str
    param: float | None
    kind: str
    odd_slope: float | None
    shift: float
    q_star: float
    sigma_w2: float
    chi_1: float

    @property
    def sigma_w(self) -> float:
        """``sqrt(sigma_w2)``, the gain of the orthogonal block."""
        return math.sqrt(self.sigma_w2)


def isometric_point(activation: Any, *, param: float | None = None, chi_target: float = CHI_1_TARGET,
                    looks_linear: bool = True, near_critical: bool = True) -> IsometricPoint:
    """Where a plain chain of ``Linear -> phi`` layers should start for dynamical isometry.

    1. **Looks-linear** when ``phi``'s odd part is linear (:func:`odd_part_slope`, ReLU/GELU/SiLU
       family): mirrored orthogonal weights make every link exactly linear at init, the whole chain
       an orthogonal map (Balduzzi et al. 2017); ``sigma_w2 = 1 / c^2``.
    2. **Near-critical** otherwise: with ``psi = phi - phi(0)`` (the consuming layer's bias takes out
       ``phi(0)``), zero-bias mean-field theory gives, at the fixed point ``q*``,

       .. math::
           \\sigma_w^2 = \\frac{q^*}{\\mathbb{E}[\\psi(\\sqrt{q^*} z)^2]},\\qquad
           \\chi_1(q^*) = \\sigma_w^2\\,\\mathbb{E}[\\psi'(\\sqrt{q^*} z)^2]

       and ``q*`` is the smallest root of ``chi_1(q*) = chi_target`` in ``[1e-4, 16]`` (brentq).
       ``chi_1 -> 1`` as ``q* -> 0`` for a smooth ``psi`` with ``psi'(0) != 0``: small ``q*`` is the
       dynamical-isometry regime of Pennington et al. 2017 (tanh: ``q* = 0.11``, ``sigma_w2 = 1.2``;
       sigmoid: the same point in units four times larger).
    3. **Variance** when there is no root (e.g. ``chi_1`` stays above ``chi_target``): ``q* = 1`` and
       ``sigma_w2 = 1 / E[psi(z)^2]`` (the forward gain squared).

    Args:
        activation: name or elementwise torch callable; param: its parameter.
        chi_target: the ``chi_1`` aimed at, ``> 1`` (default :data:`CHI_1_TARGET`).
        looks_linear: ``False`` skips step 1 (a link that cannot be mirrored: no next layer, or an
            odd width); ``near_critical=False`` skips step 2 too (the variance point).

    Returns:
        :class:`IsometricPoint`.

    Raises:
        InitlabError: unknown activation; ``chi_target`` not a real number > 1; a constant
        activation.

    Source: Balduzzi et al., ICML 2017 (looks-linear); Pennington, Schoenholz & Ganguli,
    "Resurrecting the sigmoid in deep learning through dynamical isometry", NeurIPS 2017;
    Schoenholz et al., "Deep information propagation", ICLR 2017 (chi_1).

    >>> p = isometric_point("tanh")
    >>> p.kind, round(p.q_star, 3), round(p.sigma_w2, 3), round(p.chi_1, 6)
    ('near_critical', 0.111, 1.208, 1.01)
    >>> isometric_point("relu").kind
    'looks_linear'
    """
    if isinstance(chi_target, bool) or not isinstance(chi_target, numbers.Real) or not chi_target > 1 \
            or not math.isfinite(chi_target):
        raise InitlabError(f"chi_target={chi_target!r} is invalid: pass a real number > 1 (e.g. 1.01)")
    act = _resolve(activation, param)
    c = odd_part_slope(act) if looks_linear else None
    if c is not None:
        return IsometricPoint(act.name, act.param, "looks_linear", c, 0.0, 1.0, 1.0 / (c * c), 1.0)
    shift = float(act.phi(np.zeros(1))[0])
    psi = _Act(f"{act.name}-phi(0)", act.param, lambda t: act.fn(t) - shift, act.kinks)
    unit = _moments(psi, np.array([1.0]), ORDER_1D)
    if not unit["phi2"][0] > 0 or not unit["dphi2"][0] > 0:
        raise InitlabError(
            f"activation {act.name!r} is constant (E[(phi - phi(0))^2] = 0 or E[phi'^2] = 0 at q = 1): "
            "no weight scale propagates a signal through it; pass a nonconstant activation"
        )

    def chi(q: float) -> float:
        m = _moments(psi, np.array([q]), ORDER_1D)
        return float(q * m["dphi2"][0] / m["phi2"][0])

    grid = np.geomspace(*_Q_SEARCH, 49) if near_critical else np.zeros(0)
    values = [chi(float(q)) for q in grid]
    for lo, hi, vlo, vhi in zip(grid[:-1], grid[1:], values[:-1], values[1:], strict=True):
        if vlo <= chi_target < vhi:
            q = float(optimize.brentq(lambda x: chi(x) - chi_target, lo, hi, xtol=1e-12, rtol=1e-12))
            m = _moments(psi, np.array([q]), ORDER_1D)
            sw2 = float(q / m["phi2"][0])
            return IsometricPoint(act.name, act.param, "near_critical", None, shift, q, sw2,
                                  float(sw2 * m["dphi2"][0]))
    sw2 = float(1.0 / unit["phi2"][0])
    return IsometricPoint(act.name, act.param, "variance", None, shift, 1.0, sw2,
                          float(sw2 * unit["dphi2"][0]))


def depth_point(activation: Any, depth: int, *, param: float | None = None,
                growth: float = DEPTH_GROWTH) -> IsometricPoint:
    r"""The most nonlinear fixed point a chain of ``depth`` links of ``phi`` can start at and still
    back-propagate: the largest :math:`q^* \le 1` with

    .. math::
        \chi_1(q^*)^{L} \le G, \qquad \text{i.e. } \chi_1(q^*) = G^{1/L}

    (``L = depth``, ``G = growth``; :math:`\chi_1` and :math:`\sigma_w^2` as in
    :func:`isometric_point`, whose near-critical root this is at ``chi_target = G^(1/L)``), or the
    variance point ``q* = 1`` when :math:`\chi_1(1)^L \le G` already. The gradient norm then grows by
    at most ``G`` over the chain (Schoenholz et al. 2017: a signal survives about ``xi`` layers off
    criticality), while ``q*`` — how far into ``phi``'s nonlinear range the pre-activations reach —
    is as large as the depth allows: a shallow chain starts as nonlinear as the variance rule, a deep
    one near the dynamical-isometry point of Pennington et al. 2017 (tanh: ``q* = 1`` for
    ``L <= 8``, 0.31 at 32, 0.19 at 64, 0.12 at 128). Meant for iid weights, where ``chi_1`` is the
    mean squared singular value per layer; what ``"auto"`` gives plain CNNs whose links are not
    looks-linear (:func:`initlab.model.chain.conv_chain_targets`).

    Args:
        activation: name or elementwise torch callable; param: its parameter.
        depth: ``L``, the number of ``phi`` links, ``>= 1``.
        growth: ``G``, the gradient growth allowed over the chain, ``> 1``.

    Returns:
        :class:`IsometricPoint` of kind ``"near_critical"`` (``q* < 1``) or ``"variance"``.

    Raises:
        InitlabError: ``depth`` not an integer ``>= 1``; ``growth`` not a real number ``> 1``; no
        ``q* <= 1`` with ``chi_1^L <= G`` (tanhshrink, whose ``chi_1`` stays above 1.38; a depth so
        large that ``G^(1/L)`` rounds to 1); what :func:`isometric_point` raises.

    Source: Schoenholz, Gilmer, Ganguli & Sohl-Dickstein, "Deep information propagation", ICLR 2017;
    Pennington, Schoenholz & Ganguli, NeurIPS 2017; Xiao et al., ICML 2018.

    >>> [depth_point("tanh", n).kind for n in (8, 128)]
    ['variance', 'near_critical']
    >>> p = depth_point("tanh", 128)
    >>> round(p.chi_1 ** 128, 6) == DEPTH_GROWTH
    True
    """
    if isinstance(depth, bool) or not isinstance(depth, numbers.Integral) or depth < 1:
        raise InitlabError(f"depth={depth!r} is invalid: pass the number of links (an integer >= 1)")
    if isinstance(growth, bool) or not isinstance(growth, numbers.Real) or not math.isfinite(growth) \
            or not growth > 1:
        raise InitlabError(f"growth={growth!r} is invalid: pass the gradient growth (a real number > 1)")
    variance = isometric_point(activation, param=param, looks_linear=False, near_critical=False)
    target = float(growth) ** (1.0 / int(depth))
    if variance.chi_1 <= target:
        return variance
    if not target > 1.0:  # G^(1/L) rounds to 1: no chi_1 above 1 fits
        raise InitlabError(f"depth={depth!r} with growth={growth!r} asks chi_1 <= {target!r}, which no "
                           "q* > 0 gives: pass a smaller depth or a larger growth")
    point = isometric_point(activation, param=param, chi_target=target, looks_linear=False)
    if point.kind == "near_critical" and point.q_star <= 1.0:
        return point
    raise InitlabError(
        f"depth_point: no q* <= 1 of {variance.activation!r} keeps chi_1^{depth} <= {growth!r} (chi_1 stays "
        f"above {target:.6g} on q* in [{_Q_SEARCH[0]:g}, 1]; chi_1(1) = {variance.chi_1:.4g}): pass a "
        "larger growth or a shallower depth, or use the isometric_point of another activation")
