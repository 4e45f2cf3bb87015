"""Initialization schemes as distribution specs: what to sample, not how.

A *spec* is a small frozen dataclass (:class:`Normal`, :class:`Uniform`, :class:`TruncatedNormal`,
:class:`Constant`, :class:`Orthogonal`, :class:`Identity`, :class:`Dirac`,
:class:`DeltaOrthogonal`, :class:`Sparse`, :class:`LooksLinear`, :class:`Delta`). The samplers in
:mod:`initlab.init` (torch) and :mod:`initlab.numpy_init` (NumPy) realise specs;
:mod:`initlab.apply` and :mod:`initlab.probe` read them to print and check the std a layer
should have.

All variance-preserving schemes are one core, :func:`variance_scaling` (the JAX / Keras
``VarianceScaling`` initializer):

.. math::
    \\sigma^2 = \\text{scale} / n,\\quad
    n \\in \\{fan_{in},\\ fan_{out},\\ (fan_{in}+fan_{out})/2,\\ \\sqrt{fan_{in} fan_{out}}\\}

realised as ``N(0, sigma^2)``, ``U(-sqrt(3) sigma, sqrt(3) sigma)``, or a normal truncated to
``[-2 s, 2 s]`` whose parent std ``s = sigma / 0.87962566103423978`` so that the truncated samples
have std ``sigma``. Glorot/Xavier (Glorot & Bengio 2010), He/Kaiming (He et al. 2015) and LeCun
(LeCun et al. 1998) are one-line specialisations with ``scale = gain**2``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from scipy import stats

from initlab.errors import InitlabError
from initlab.fans import Fans, fan_for_mode

__all__ = [
    "TRUNCATED_NORMAL_STD_2",
    "DISTRIBUTIONS",
    "Spec",
    "Normal",
    "Uniform",
    "TruncatedNormal",
    "Constant",
    "Orthogonal",
    "Identity",
    "Dirac",
    "DeltaOrthogonal",
    "Sparse",
    "LooksLinear",
    "looks_linear_block",
    "Delta",
    "ConvOrthogonal",
    "paraunitary_taps",
    "STRUCTURAL_SHAPES",
    "shape_requirement",
    "variance_scaling",
    "glorot_normal",
    "glorot_uniform",
    "glorot_truncated_normal",
    "he_normal",
    "he_uniform",
    "he_truncated_normal",
    "lecun_normal",
    "lecun_uniform",
    "lecun_truncated_normal",
    "xavier_normal",
    "xavier_uniform",
    "kaiming_normal",
    "kaiming_uniform",
    "torch_default",
    "NAMED_SCHEMES",
    "named_spec",
]

#: Std of N(0, 1) truncated to [-2, 2]; dividing by it makes truncated samples have the target std.
#: Computed, not pasted: ``scipy.stats.truncnorm(-2, 2).std() == 0.87962566103423978``.
TRUNCATED_NORMAL_STD_2: float = float(stats.truncnorm.std(-2.0, 2.0))

DISTRIBUTIONS: tuple[str, ...] = ("normal", "uniform", "truncated_normal")


def _check_std(name: str, value: float) -> None:
    if not (isinstance(value, numbers.Real) and math.isfinite(value) and value >= 0):
        raise InitlabError(f"{name}={value!r} is invalid: a std must be a finite number >= 0")


class Spec:
    """Base of all specs. ``expected_std`` is the std of the sampled entries (``None`` when the
    scheme is structural and has no single std); ``describe()`` is one short line for tables."""

    @property
    def expected_std(self) -> float | None:
        return None

    def describe(self) -> str:
        return type(self).__name__.lower()


@dataclass(frozen=True)
class Normal(Spec):
    """Entries i.i.d. ``N(mean, std^2)``."""

    std: float
    mean: float = 0.0

    def __post_init__(self) -> None:
        _check_std("std", self.std)

    @property
    def expected_std(self) -> float:
        return self.std

    def describe(self) -> str:
        return f"normal(std={self.std:.4g})" if self.mean == 0 else (
            f"normal(mean={self.mean:.4g}, std={self.std:.4g})"
        )


@dataclass(frozen=True)
class Uniform(Spec):
    """Entries i.i.d. ``U(low, high)``; std ``(high - low) / sqrt(12)``."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low <= self.high):
            raise InitlabError(
                f"Uniform({self.low!r}, {self.high!r}) is invalid: pass finite low <= high"
            )

    @property
    def bound(self) -> float:
        """Half-width for a symmetric ``U(-bound, bound)``."""
        return (self.high - self.low) / 2.0

    @property
    def expected_std(self) -> float:
        return (self.high - self.low) / math.sqrt(12.0)

    def describe(self) -> str:
        if self.low == -self.high:
            return f"uniform(bound={self.high:.4g})"
        return f"uniform({self.low:.4g}, {self.high:.4g})"


@dataclass(frozen=True)
class TruncatedNormal(Spec):
    """Entries from ``N(mean, std^2)`` (the *parent* std) truncated to absolute ``[a, b]``
    (torch ``trunc_normal_`` semantics)."""

    std: float
    mean: float = 0.0
    a: float = -2.0
    b: float = 2.0

    def __post_init__(self) -> None:
        _check_std("std", self.std)
        if not self.a < self.b:
            raise InitlabError(
                f"TruncatedNormal cut-offs a={self.a!r}, b={self.b!r} are invalid: pass a < b"
            )

    @property
    def expected_std(self) -> float:
        if self.std == 0:
            return 0.0
        if (self.b - self.a) / self.std < 1e-3:
            # the density is flat on a window this narrow: the uniform limit, exact to ~1e-7
            # relative (scipy's moments cancel catastrophically here)
            return (self.b - self.a) / math.sqrt(12.0)
        alpha, beta = (self.a - self.mean) / self.std, (self.b - self.mean) / self.std
        return self.std * float(stats.truncnorm.std(alpha, beta))

    def describe(self) -> str:
        return f"trunc_normal(std={self.std:.4g}, [{self.a:.4g}, {self.b:.4g}])"


@dataclass(frozen=True)
class Constant(Spec):
    """Every entry equals ``value`` (zeros and ones included) — the symmetry problem."""

    value: float

    @property
    def expected_std(self) -> float:
        return 0.0

    def describe(self) -> str:
        return f"constant({self.value:.4g})"


@dataclass(frozen=True)
class Orthogonal(Spec):
    """A (semi-)orthogonal matrix times ``gain`` (Saxe et al. 2013): ``W W^T = gain^2 I`` when
    ``rows <= cols``, else ``W^T W = gain^2 I``; trailing dims are flattened."""

    gain: float = 1.0

    def describe(self) -> str:
        return f"orthogonal(gain={self.gain:.4g})"


@dataclass(frozen=True)
class Identity(Spec):
    """The identity matrix (times ``gain``) on a 2-D weight (``eye_``)."""

    gain: float = 1.0

    def describe(self) -> str:
        return f"identity(gain={self.gain:.4g})"


@dataclass(frozen=True)
class Dirac(Spec):
    """A conv weight that passes each input channel through (``dirac_``), per group."""

    groups: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.groups, bool) or not isinstance(self.groups, numbers.Integral) or self.groups < 1:
            raise InitlabError(f"Dirac groups={self.groups!r} is invalid: pass an integer >= 1")

    def describe(self) -> str:
        return f"dirac(groups={self.groups})"


@dataclass(frozen=True)
class DeltaOrthogonal(Spec):
    """Delta-orthogonal conv weight (Xiao et al. 2018): zero except the spatial centre, which is
    an orthogonal ``(out, in)`` matrix times ``gain``."""

    gain: float = 1.0

    def describe(self) -> str:
        return f"delta_orthogonal(gain={self.gain:.4g})"


@dataclass(frozen=True)
class Sparse(Spec):
    """Each column has ``ceil(sparsity * rows)`` zeros, the rest ``N(0, std^2)``
    (Martens 2010; torch ``sparse_``)."""

    sparsity: float
    std: float = 0.01

    def __post_init__(self) -> None:
        if not (isinstance(self.sparsity, numbers.Real) and 0.0 <= self.sparsity < 1.0):
            raise InitlabError(
                f"sparsity={self.sparsity!r} is invalid: pass the fraction of zeros, in [0, 1)"
            )
        _check_std("std", self.std)

    def describe(self) -> str:
        return f"sparse(sparsity={self.sparsity:.3g}, std={self.std:.4g})"


@dataclass(frozen=True)
class LooksLinear(Spec):
    r"""Looks-linear init (Balduzzi et al. 2017): one Haar (semi-)orthogonal block ``A`` (times
    ``gain``, as :class:`Orthogonal` makes it) mirrored with signs, for a 2-D ``(rows, cols)``
    Linear weight:

    .. math::
        W = \begin{bmatrix} A & -A \\ -A & A \end{bmatrix}\ (\text{rows and cols}),\quad
        W = \begin{bmatrix} A \\ -A \end{bmatrix}\ (\text{rows}),\quad
        W = \begin{bmatrix} A & -A \end{bmatrix}\ (\text{cols})

    with ``A`` of shape :func:`looks_linear_block` (``rows/2`` and/or ``cols/2``). For any
    activation whose odd part is linear, :math:`\phi(u) - \phi(-u) = c\,u` (ReLU and GELU,
    SiLU, softplus: ``c = 1``; leaky ReLU: ``c = 1 + slope``), so a chain
    ``Linear(rows-mirrored) -> phi -> Linear(rows+cols) -> phi -> ... -> Linear(cols-mirrored)``
    computes :math:`W_2\,\phi(W_1 x) = c\,A_2 A_1 x` at initialization: the deep ReLU network is a
    (semi-)orthogonal linear map (dynamical isometry, no shattered gradients), yet the first gradient
    step breaks the mirror symmetry because :math:`\phi'(u) \ne \phi'(-u)`. Use
    ``mirror_rows`` only on a layer reading raw input, ``mirror_cols`` only on a head reading
    mirrored features, both in between. Structural: no single std (``expected_std`` is None).

    Args:
        gain: finite real; scales ``A`` (``A A^T = gain^2 I`` or ``A^T A = gain^2 I``).
        mirror_rows: split dim 0 (output units) into ``[A; -A]``.
        mirror_cols: split dim 1 (input features) into ``[A, -A]``.

    Raises:
        InitlabError: ``gain`` not a finite real number; ``mirror_rows`` / ``mirror_cols`` not a
            bool; both False (that is :class:`Orthogonal`).

    Source: Balduzzi, Frean, Leary, Lewis, Ma & McWilliams (2017), "The Shattered Gradients
    Problem: If resnets are the answer, then what is the question?", ICML.

    >>> LooksLinear().describe(), LooksLinear(2.0, mirror_cols=False).describe()
    ('looks_linear(gain=1, rows+cols)', 'looks_linear(gain=2, rows)')
    >>> looks_linear_block(LooksLinear(), (8, 6))
    (4, 3)
    """

    gain: float = 1.0
    mirror_rows: bool = True
    mirror_cols: bool = True

    def __post_init__(self) -> None:
        g = self.gain
        if isinstance(g, bool) or not isinstance(g, numbers.Real) or not math.isfinite(g):
            raise InitlabError(
                f"LooksLinear gain={g!r} is invalid: pass a finite real number (the scale of the "
                "orthogonal block; 1 keeps a ReLU/GELU chain an isometry)"
            )
        for name in ("mirror_rows", "mirror_cols"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise InitlabError(f"LooksLinear {name}={value!r} is invalid: pass True or False")
        if not (self.mirror_rows or self.mirror_cols):
            raise InitlabError(
                "LooksLinear(mirror_rows=False, mirror_cols=False) mirrors nothing: set at least one "
                "to True, or use Orthogonal(gain) for a plain orthogonal matrix"
            )

    def describe(self) -> str:
        sides = "+".join(s for s, on in (("rows", self.mirror_rows), ("cols", self.mirror_cols)) if on)
        return f"looks_linear(gain={self.gain:.4g}, {sides})"


def looks_linear_block(spec: LooksLinear, shape: Sequence[int]) -> tuple[int, int]:
    r"""The shape ``(rb, cb)`` of the orthogonal block ``A`` of a looks-linear ``(rows, cols)`` weight.

    .. math::
        rb = rows / 2 \text{ if mirror\_rows else } rows,\qquad
        cb = cols / 2 \text{ if mirror\_cols else } cols

    Both front ends (:func:`initlab.init.looks_linear_`, :func:`initlab.numpy_init.looks_linear`)
    call this on each block (each chunk of a packed weight), so they refuse the same shapes.

    Args:
        spec: a :class:`LooksLinear`.
        shape: the 2-D weight shape ``(rows, cols)`` (torch layout ``(out, in)``).

    Returns:
        ``(rb, cb)``, ints.

    Raises:
        TypeError: ``spec`` is not a :class:`LooksLinear`.
        InitlabError: ``shape`` not 2-D; a mirrored dim of odd size (the fix: an even width).

    Source: Balduzzi et al. (2017), "The Shattered Gradients Problem" (ICML).

    >>> looks_linear_block(LooksLinear(mirror_cols=False), (8, 5))
    (4, 5)
    """
    if not isinstance(spec, LooksLinear):
        raise TypeError(f"looks_linear_block needs a LooksLinear spec, got {type(spec).__name__}")
    dims = tuple(int(d) for d in shape)
    if len(dims) != 2:
        raise InitlabError(
            f"looks_linear needs a 2-D (rows, cols) shape (a Linear weight), got {len(dims)} dims "
            f"(shape {dims})"
        )
    rows, cols = dims
    for dim, label, size, on in ((0, "rows", rows, spec.mirror_rows), (1, "cols", cols, spec.mirror_cols)):
        if on and size % 2:
            flag = "mirror_rows" if dim == 0 else "mirror_cols"
            raise InitlabError(
                f"looks_linear: {flag}=True needs an even dim {dim} ({label}), got {size} in shape "
                f"{dims}: use an even width ({size - 1} or {size + 1}), or {flag}=False"
            )
    return (rows // 2 if spec.mirror_rows else rows, cols // 2 if spec.mirror_cols else cols)


@dataclass(frozen=True)
class Delta(Spec):
    r"""A delta conv kernel (Xiao et al. 2018): zero at every tap but the spatial centre, which
    holds the 2-D ``block`` (an :class:`Orthogonal` or a :class:`LooksLinear`) drawn on the
    ``(out, in)`` channel matrix of a ``(out, in, *k)`` weight:

    .. math::
        W[:, :, \lfloor k/2 \rfloor] = M,\qquad W = 0 \text{ elsewhere}

    with :math:`M` what ``block`` gives a Linear weight of shape ``(out, in)``: ``gain`` times a Haar
    (semi-)orthogonal matrix (:math:`M M^\top = g^2 I` for ``out <= in``, :math:`M^\top M = g^2 I`
    for ``out >= in``; unlike :class:`DeltaOrthogonal`, a channel-reducing ``out < in`` is allowed),
    or its looks-linear mirror ``[[A, -A], [-A, A]]`` (:func:`looks_linear_block` on ``(out, in)``).
    The conv then applies :math:`M` at each output position to the input's centre-tap position
    (dilation does not move the centre; a stride keeps every ``s``-th position), so a chain of
    delta convs is at each kept position the Linear chain of its centre taps. Structural: no single
    std (``expected_std`` is None).

    Args:
        block: an :class:`Orthogonal` or :class:`LooksLinear` spec.

    Raises:
        InitlabError: ``block`` is not an :class:`Orthogonal` or :class:`LooksLinear`.

    Source: Xiao, Bahri, Sohl-Dickstein, Schoenholz & Pennington (2018), "Dynamical isometry and a
    mean field theory of CNNs: how to train 10,000-layer vanilla convolutional neural networks",
    ICML; Balduzzi et al. (2017), "The Shattered Gradients Problem" (looks-linear), ICML.

    >>> Delta(LooksLinear(2.0, mirror_cols=False)).describe()
    'delta_looks_linear(gain=2, rows)'
    >>> Delta(Orthogonal(1.5)).describe()
    'delta_orthogonal(gain=1.5)'
    """

    block: Spec = Orthogonal()

    def __post_init__(self) -> None:
        if type(self.block) not in (Orthogonal, LooksLinear):
            raise InitlabError(
                f"Delta block={self.block!r} is invalid: pass Orthogonal(gain) or LooksLinear(gain, ...), "
                "the 2-D spec the kernel's centre tap holds"
            )

    def describe(self) -> str:
        return "delta_" + self.block.describe()



@dataclass(frozen=True)
class ConvOrthogonal(Spec):
    r"""An orthogonal convolution kernel with full spatial support (Xiao et al. 2018, the
    block-orthogonal construction of their "orthogonal kernels"): the centre block :math:`M` a
    :class:`Delta` kernel would hold, spread over the taps by a *paraunitary* filter on the output
    channels, so the conv is an isometry at every spatial frequency, not only at the centre tap:

    .. math::
        W(z) = V(z)\,M,\qquad V(z) = \prod_{a=1}^{d} \prod_{f=1}^{k_a - 1}
               \bigl(P_{a,f} + (I - P_{a,f})\, z_a^{\pm 1}\bigr)

    where :math:`W(z) = \sum_t W_t z^t` is the kernel's transfer function over its ``d`` spatial
    axes of sizes :math:`k_a`, and each :math:`P_{a,f}` is a random symmetric projection
    (:math:`P = U U^\top`, ``U`` the first :math:`\lceil n/2 \rceil` columns of a Haar orthogonal
    ``n x n`` matrix). Each factor is unitary on the unit circle, so :math:`V(e^{i\omega})^* V(e^{i
    \omega}) = I` at every frequency :math:`\omega`, and with circular padding the conv maps
    :math:`\|W * x\| = g\,\|x\|` for every input when :math:`M^\top M = g^2 I` (Parseval). At
    :math:`z = 1` every factor is :math:`I`: the taps sum to :math:`M`, so a spatially constant input
    sees exactly the delta kernel's map; the energy of the taps is :math:`\|M\|_F^2` (the entries'
    std is the delta kernel's). The ``z^{-1}`` factors come first and alternate, so the
    exponent-0 tap is the centre ``k // 2`` and the support is ``k`` taps per axis.

    For a looks-linear ``block`` with ``mirror_rows``, :math:`V = \mathrm{diag}(V_0, V_0)` on the two
    output halves, so the outputs stay mirrored (``[V_0 A x, -V_0 A x]``) and the chain still
    computes a linear map at initialization. One output channel (per half) has no orthogonal
    mixing: its kernel is the delta kernel.

    Why: a delta kernel sees one input position per output at initialization (and with strides,
    every ``s``-th position only); the spatial taps must grow from 0 before the network can use its
    receptive field. This kernel starts as isometric and with its whole receptive field. With zero
    padding the isometry holds in the interior; energy that the taps move across the border is lost.

    Args:
        block: an :class:`Orthogonal` or :class:`LooksLinear` spec (the centre block ``M``).

    Raises:
        InitlabError: ``block`` is not an :class:`Orthogonal` or :class:`LooksLinear`.

    Source: Xiao, Bahri, Sohl-Dickstein, Schoenholz & Pennington (2018), "Dynamical isometry and a
    mean field theory of CNNs: how to train 10,000-layer vanilla convolutional neural networks",
    ICML (Section 3.3 and Appendix: orthogonal kernels from symmetric projections); Balduzzi et al.
    (2017), "The Shattered Gradients Problem" (looks-linear), ICML.

    >>> ConvOrthogonal(Orthogonal(1.5)).describe()
    'conv_orthogonal(gain=1.5)'
    >>> ConvOrthogonal(LooksLinear(1.0)).describe()
    'conv_looks_linear(gain=1, rows+cols)'
    """

    block: Spec = Orthogonal()

    def __post_init__(self) -> None:
        if type(self.block) not in (Orthogonal, LooksLinear):
            raise InitlabError(
                f"ConvOrthogonal block={self.block!r} is invalid: pass Orthogonal(gain) or "
                "LooksLinear(gain, ...), the 2-D spec of the kernel's zero-frequency map"
            )

    def describe(self) -> str:
        return "conv_" + self.block.describe()


def paraunitary_taps(projections: Sequence[Sequence[Any]], eye: Any) -> dict[tuple[int, ...], Any]:
    r"""The taps of :math:`V(z) = \prod_a \prod_f (P_{a,f} + (I - P_{a,f}) z_a^{\pm 1})` (see
    :class:`ConvOrthogonal`), for any array type with ``@``, ``+`` and ``-`` (numpy or torch).

    Args:
        projections: per spatial axis, its ``k_a - 1`` symmetric projections ``(n, n)``.
        eye: the ``(n, n)`` identity, of the projections' type.

    Returns:
        ``{(t_1, ..., t_d): V_t}``: the non-zero taps, indexed ``0 .. k_a - 1`` per axis (the
        exponent-0 tap at ``k_a // 2``).

    >>> import numpy as np
    >>> p = np.diag([1.0, 0.0])
    >>> taps = paraunitary_taps([[p, p]], np.eye(2))  # one axis, k = 3
    >>> sorted(taps), np.allclose(sum(taps.values()), np.eye(2))
    ([(0,), (1,), (2,)], True)
    """
    per_axis = []
    for axis in projections:
        coef: dict[int, Any] = {0: eye}
        for f, proj in enumerate(axis):
            step = -1 if f % 2 == 0 else 1
            nxt: dict[int, Any] = {}
            for e, c in coef.items():
                stay, move = c @ proj, c @ (eye - proj)
                nxt[e] = nxt[e] + stay if e in nxt else stay
                nxt[e + step] = nxt[e + step] + move if e + step in nxt else move
            coef = nxt
        low = min(coef)
        per_axis.append({e - low: c for e, c in coef.items()})
    taps: dict[tuple[int, ...], Any] = {(): eye}
    for axis in per_axis:  # V = V_1(z_1) V_2(z_2) ...: each axis's factor multiplies on the right
        taps = {(*t, e): m @ c for t, m in taps.items() for e, c in axis.items()}
    return taps

#: The dimensions each structural spec needs: ``type -> (min_dims, allowed ndims or None, what)``;
#: i.i.d. specs (Normal, Uniform, TruncatedNormal, Constant) take any shape.
STRUCTURAL_SHAPES: dict[type, tuple[int, tuple[int, ...] | None, str]] = {
    Orthogonal: (2, None, ""),
    Identity: (0, (2,), ""),
    Sparse: (0, (2,), ""),
    Dirac: (0, (3, 4, 5), " (a Conv1d/2d/3d weight)"),
    DeltaOrthogonal: (0, (3, 4, 5), " (a Conv1d/2d/3d weight)"),
    LooksLinear: (0, (2,), " (a Linear weight)"),
    Delta: (0, (3, 4, 5), " (a Conv1d/2d/3d weight)"),
    ConvOrthogonal: (0, (3, 4, 5), " (a Conv1d/2d/3d weight)"),
}
_IID = (Normal, Uniform, TruncatedNormal, Constant)


def shape_requirement(spec: Spec, caller: str) -> tuple[int, tuple[int, ...] | None, str]:
    """What shape a sampler needs to realise ``spec``: ``(min_dims, allowed ndims or None, what)``.

    Both front ends (:func:`initlab.init.apply_spec_`, :func:`initlab.numpy_init.sample_spec`)
    call this, so they accept and refuse the same specs.

    Raises:
        TypeError: ``spec`` is not an initlab Spec, or a Spec subclass no sampler knows
            (``caller`` names the function in the message).

    >>> shape_requirement(Orthogonal(), "apply_spec_")
    (2, None, '')
    >>> shape_requirement(Normal(1.0), "apply_spec_")
    (0, None, '')
    """
    if not isinstance(spec, Spec):
        raise TypeError(
            f"{caller}: spec must be an initlab.schemes.Spec, got {type(spec).__name__}: "
            "build one with initlab.schemes (e.g. schemes.he_normal(fans))"
        )
    if not isinstance(spec, (*_IID, *STRUCTURAL_SHAPES)):
        raise TypeError(f"{caller} cannot realise a {type(spec).__name__}: use one of the initlab specs")
    return STRUCTURAL_SHAPES.get(type(spec), (0, None, ""))


def variance_scaling(
    scale: float = 1.0,
    mode: str = "fan_in",
    distribution: str = "truncated_normal",
    *,
    fans: Fans,
) -> Spec:
    """The one core of Glorot, He and LeCun: entries with variance ``scale / n``.

    .. math::
        \\sigma = \\sqrt{\\text{scale} / n},\\quad n = \\text{fan chosen by mode}

    * ``"normal"`` → :class:`Normal` with std ``sigma``;
    * ``"uniform"`` → :class:`Uniform` on ``[-sqrt(3) sigma, sqrt(3) sigma]``;
    * ``"truncated_normal"`` → :class:`TruncatedNormal` with parent std
      ``s = sigma / 0.87962566103423978`` cut at ``±2 s``, so the samples have std ``sigma``
      (JAX / Keras ``VarianceScaling``).

    Args:
        scale: variance multiplier, ``> 0`` (``gain**2``; 2 for He/ReLU).
        mode: ``"fan_in"``, ``"fan_out"``, ``"fan_avg"`` or ``"fan_geo_avg"``.
        distribution: ``"normal"``, ``"uniform"`` or ``"truncated_normal"``.
        fans: the weight's :class:`~initlab.fans.Fans` (see :func:`initlab.fans.compute_fans`).

    Returns:
        A :class:`Spec`.

    Raises:
        InitlabError: ``scale <= 0`` or not finite, unknown ``mode`` or ``distribution``,
            or a zero fan.

    Source: Keras/JAX ``VarianceScaling``; Glorot & Bengio (2010); He et al. (2015).

    >>> variance_scaling(2.0, "fan_in", "normal", fans=Fans(50, 50)).std
    0.2
    >>> round(variance_scaling(1.0, "fan_avg", "uniform", fans=Fans(100, 200)).high, 6)
    0.141421
    """
    real = isinstance(scale, numbers.Real) and not isinstance(scale, bool)
    if not (real and math.isfinite(scale) and scale > 0):
        raise InitlabError(f"scale={scale!r} is invalid: pass a finite number > 0 (gain**2)")
    scale = float(scale)
    if not isinstance(fans, Fans):
        raise TypeError(
            f"fans must be an initlab.fans.Fans, not {type(fans).__name__}: use compute_fans(shape)"
        )
    if distribution not in DISTRIBUTIONS:
        raise InitlabError(
            f"distribution={distribution!r} is unknown: use one of {', '.join(DISTRIBUTIONS)}"
        )
    n = fan_for_mode(fans, mode)
    if n <= 0:
        raise InitlabError(
            f"{mode} is {n:g} for fans {fans}: variance scaling needs a weight with connections"
        )
    sigma = math.sqrt(scale / n)
    if distribution == "normal":
        return Normal(std=sigma)
    if distribution == "uniform":
        bound = math.sqrt(3.0) * sigma
        return Uniform(-bound, bound)
    parent = sigma / TRUNCATED_NORMAL_STD_2
    return TruncatedNormal(std=parent, a=-2.0 * parent, b=2.0 * parent)


# ---- one-line specialisations -------------------------------------------------------------------


def _scale(gain: float) -> float:
    """``gain**2`` for the specialisations, refusing a gain that is not a finite non-zero real."""
    if isinstance(gain, bool) or not isinstance(gain, numbers.Real) or not math.isfinite(gain) or gain == 0:
        raise InitlabError(f"gain={gain!r} is invalid: pass a finite, non-zero number")
    try:
        return float(gain) ** 2
    except OverflowError:
        raise InitlabError(f"gain={gain!r} is too large: its square overflows a float") from None


def glorot_normal(fans: Fans, gain: float = 1.0) -> Spec:
    """Glorot & Bengio (2010), "Understanding the difficulty of training deep feedforward neural
    networks": ``std = gain * sqrt(2 / (fan_in + fan_out))`` (torch ``xavier_normal_``)."""
    return variance_scaling(_scale(gain), "fan_avg", "normal", fans=fans)


def glorot_uniform(fans: Fans, gain: float = 1.0) -> Spec:
    """Glorot & Bengio (2010): ``bound = gain * sqrt(6 / (fan_in + fan_out))``
    (torch ``xavier_uniform_``, Keras ``GlorotUniform``)."""
    return variance_scaling(_scale(gain), "fan_avg", "uniform", fans=fans)


def glorot_truncated_normal(fans: Fans, gain: float = 1.0) -> Spec:
    """Glorot with a ±2-sigma truncated normal, as Keras ``GlorotNormal`` samples it."""
    return variance_scaling(_scale(gain), "fan_avg", "truncated_normal", fans=fans)


def he_normal(fans: Fans, gain: float = math.sqrt(2.0), mode: str = "fan_in") -> Spec:
    """He et al. (2015), "Delving deep into rectifiers": ``std = gain / sqrt(fan)``, gain
    ``sqrt(2)`` for ReLU (torch ``kaiming_normal_``)."""
    return variance_scaling(_scale(gain), mode, "normal", fans=fans)


def he_uniform(fans: Fans, gain: float = math.sqrt(2.0), mode: str = "fan_in") -> Spec:
    """He et al. (2015): ``bound = gain * sqrt(3 / fan)`` (torch ``kaiming_uniform_``)."""
    return variance_scaling(_scale(gain), mode, "uniform", fans=fans)


def he_truncated_normal(fans: Fans, gain: float = math.sqrt(2.0), mode: str = "fan_in") -> Spec:
    """He with a ±2-sigma truncated normal, as Keras ``HeNormal`` samples it."""
    return variance_scaling(_scale(gain), mode, "truncated_normal", fans=fans)


def lecun_normal(fans: Fans, gain: float = 1.0) -> Spec:
    """LeCun et al. (1998), "Efficient BackProp": ``std = gain / sqrt(fan_in)``; with SELU it is
    the self-normalising init (Klambauer et al. 2017)."""
    return variance_scaling(_scale(gain), "fan_in", "normal", fans=fans)


def lecun_uniform(fans: Fans, gain: float = 1.0) -> Spec:
    """LeCun (1998): ``bound = gain * sqrt(3 / fan_in)``."""
    return variance_scaling(_scale(gain), "fan_in", "uniform", fans=fans)


def lecun_truncated_normal(fans: Fans, gain: float = 1.0) -> Spec:
    """LeCun with a ±2-sigma truncated normal, as Keras ``LecunNormal`` samples it."""
    return variance_scaling(_scale(gain), "fan_in", "truncated_normal", fans=fans)


xavier_normal = glorot_normal
xavier_uniform = glorot_uniform
kaiming_normal = he_normal
kaiming_uniform = he_uniform


def torch_default(fans: Fans, gain: float = 1.0) -> Spec:
    """What ``nn.Linear`` / ``nn.ConvNd`` ``reset_parameters`` do: ``kaiming_uniform_(a=sqrt(5))``,
    i.e. ``bound = 1 / sqrt(fan_in)`` (``gain`` is ignored: torch's default does not use it)."""
    del gain
    return variance_scaling(1.0 / 3.0, "fan_in", "uniform", fans=fans)


def _small(fans: Fans, gain: float = 1.0) -> Spec:
    del fans, gain
    return Normal(std=0.01)


def _large(fans: Fans, gain: float = 1.0) -> Spec:
    del fans, gain
    return Normal(std=1.0)


def _zeros(fans: Fans, gain: float = 1.0) -> Spec:
    del fans, gain
    return Constant(0.0)


def _orthogonal(fans: Fans, gain: float = 1.0) -> Spec:
    del fans
    return Orthogonal(gain=gain)


#: Scheme names accepted wherever a scheme is named (``init_model``, the CLI): name ->
#: ``f(fans, gain) -> Spec``. ``gain`` is the activation's gain where the scheme uses one.
NAMED_SCHEMES: dict[str, Callable[..., Spec]] = {
    "glorot_normal": glorot_normal,
    "glorot_uniform": glorot_uniform,
    "glorot_truncated_normal": glorot_truncated_normal,
    "xavier_normal": xavier_normal,
    "xavier_uniform": xavier_uniform,
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "he_truncated_normal": he_truncated_normal,
    "kaiming_normal": kaiming_normal,
    "kaiming_uniform": kaiming_uniform,
    "lecun_normal": lecun_normal,
    "lecun_uniform": lecun_uniform,
    "lecun_truncated_normal": lecun_truncated_normal,
    "orthogonal": _orthogonal,
    "torch_default": torch_default,
    "keras_default": glorot_uniform,
    "small": _small,
    "large": _large,
    "zeros": _zeros,
}


def named_spec(name: str, fans: Fans, gain: float | None = None) -> Spec:
    """The spec of scheme ``name`` for a weight with ``fans`` and activation gain ``gain``.

    ``"small"`` is ``0.01 * N(0, 1)`` and ``"large"`` is ``N(0, 1)`` (the classic failure cases);
    ``"keras_default"`` is Glorot uniform; ``"torch_default"`` is ``U(±1/sqrt(fan_in))``.
    ``gain=None`` keeps the scheme's own default (``sqrt(2)`` for the He family, 1 for the rest);
    a number replaces it (the activation's gain).

    Raises:
        InitlabError: unknown ``name`` (the message lists the valid names).

    >>> named_spec("he_normal", Fans(50, 50), gain=2 ** 0.5).std
    0.2
    """
    try:
        fn = NAMED_SCHEMES[name]
    except KeyError:
        raise InitlabError(
            f"scheme {name!r} is unknown: use one of {', '.join(sorted(NAMED_SCHEMES))}"
        ) from None
    return fn(fans) if gain is None else fn(fans, gain)
