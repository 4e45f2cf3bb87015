r"""NumPy front end: every initlab scheme as a pure function ``(shape, rng=None, dtype) -> ndarray``.

The same schemes as :mod:`initlab.init` (torch, in place), for code written in NumPy — the
language the field's tutorials teach in. No trailing underscore: each call returns a new array.
All the math (fans, stds, bounds) comes from :mod:`initlab.fans` and :mod:`initlab.schemes`; this
module only samples.

Conventions shared by every function:

* ``shape``: an int or a sequence of non-negative ints; layouts as in :mod:`initlab.fans`
  (torch ``(out, in/groups, *k)`` by default, ``layout="keras"`` for ``(*k, in, out)``,
  ``layout="keras_depthwise"`` for a Keras depthwise kernel ``(*k, in, depth_multiplier)``).
* ``rng``: a ``numpy.random.Generator`` (used as is: it advances), an int seed (a fresh
  ``np.random.default_rng(seed)``: same seed, same bits), or ``None`` — a fresh
  ``np.random.default_rng()`` seeded from OS entropy, so the result is *not* reproducible.
  Global NumPy state (``np.random.seed``) is never read.
* ``dtype``: a NumPy floating dtype (``float16``, ``float32`` — the default — or ``float64``).
  Gaussian and uniform draws are made in float64 for ``float64`` and in float32 otherwise, then
  cast; truncated normals and QR are computed in float64 and cast (so a float32 orthogonal
  matrix is orthogonal to float32 rounding). NumPy has no bfloat16: use :mod:`initlab.init`.
  Integer, bool and complex dtypes raise ``TypeError``.
* A zero-element ``shape`` warns (``UserWarning``) and returns an empty array.
* Errors (:class:`~initlab.errors.InitlabError`) name the bad value: too few dims, a bad fan
  option, an invalid parameter.

Example:
    >>> w = he_normal((256, 128), rng=0)
    >>> w.shape, w.dtype
    ((256, 128), dtype('float32'))
    >>> bool((he_normal((256, 128), rng=0) == w).all())   # same seed, same bits
    True
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import special

from initlab import schemes
from initlab.errors import InitlabError
from initlab.fans import compute_fans

__all__ = [
    "uniform",
    "normal",
    "truncated_normal",
    "trunc_normal",
    "constant",
    "zeros",
    "ones",
    "eye",
    "identity",
    "dirac",
    "glorot_normal",
    "glorot_uniform",
    "glorot_truncated_normal",
    "xavier_normal",
    "xavier_uniform",
    "xavier_truncated_normal",
    "he_normal",
    "he_uniform",
    "he_truncated_normal",
    "kaiming_normal",
    "kaiming_uniform",
    "kaiming_truncated_normal",
    "lecun_normal",
    "lecun_uniform",
    "lecun_truncated_normal",
    "variance_scaling",
    "orthogonal",
    "delta_orthogonal",
    "conv_orthogonal",
    "looks_linear",
    "delta_looks_linear",
    "sparse",
    "sample_spec",
    "as_generator",
]

RngLike = np.random.Generator | int | None


# ---- argument handling --------------------------------------------------------------------------


def as_generator(rng: RngLike) -> np.random.Generator:
    """The ``numpy.random.Generator`` that ``rng`` stands for.

    ``Generator`` -> itself; ``int`` (>= 0) or ``np.random.SeedSequence`` -> a fresh
    ``np.random.default_rng(rng)``; ``None`` -> a fresh, OS-seeded ``default_rng()``.

    Raises:
        TypeError: any other type (e.g. the legacy ``np.random.RandomState``).
        InitlabError: a negative seed.

    >>> int(as_generator(3).integers(100)) == int(as_generator(3).integers(100))
    True
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, np.random.SeedSequence):
        return np.random.default_rng(rng)
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        if rng < 0:
            raise InitlabError(f"rng={rng!r} is a negative seed: pass an int >= 0")
        return np.random.default_rng(int(rng))
    raise TypeError(
        f"rng must be a numpy.random.Generator, an int seed or None, got {type(rng).__name__}: "
        "pass np.random.default_rng(seed)"
    )


def _dtype(dtype: Any, name: str) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(
            f"{name}: dtype={dtype!r} is not a NumPy dtype (NumPy has no bfloat16): pass "
            "np.float16, np.float32 or np.float64, or use initlab.init for torch dtypes"
        ) from exc
    if dt.name == "bfloat16":  # registered by ml_dtypes (keras, jax), not a NumPy floating type
        raise TypeError(
            f"{name}: dtype={dtype!r} is ml_dtypes' bfloat16, not a NumPy float type (NumPy has no "
            "bfloat16): pass np.float32 and convert afterwards, or use initlab.init for torch dtypes")
    if not np.issubdtype(dt, np.floating):
        raise TypeError(
            f"{name} samples floating-point arrays, got dtype {dt}: pass np.float16, np.float32 or "
            "np.float64 and convert afterwards"
        )
    return dt


def _shape(shape: Any, name: str) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError:
        raise InitlabError(
            f"{name}: shape={shape!r} is not a sequence of ints: pass e.g. (out, in)"
        ) from None
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 0:
            raise InitlabError(f"{name}: shape={shape!r} must hold non-negative ints, got {d!r}")
    return tuple(int(d) for d in dims)


def _prepare(
    shape: Any,
    dtype: Any,
    name: str,
    min_dims: int = 0,
    dims: tuple[int, ...] | None = None,
    what: str = "",
    stacklevel: int = 4,
) -> tuple[tuple[int, ...], np.dtype, bool]:
    """Validate; the bool says "zero elements: return an empty array" (after a warning)."""
    dt = _dtype(dtype, name)
    sh = _shape(shape, name)
    ndim = len(sh)
    if dims is not None:
        if ndim not in dims:
            allowed = " or ".join(", ".join(str(d) for d in dims).rsplit(", ", 1))
            raise InitlabError(
                f"{name} needs a shape with {allowed} dimensions{what}, got {ndim} (shape {sh})"
            )
    elif ndim < min_dims:
        raise InitlabError(
            f"{name} needs a shape with at least {min_dims} dimensions{what}, got {ndim} (shape {sh})"
        )
    if math.prod(sh) == 0:
        warnings.warn(
            f"{name}: a zero-element shape {sh} gives an empty array", UserWarning, stacklevel=stacklevel
        )
        return sh, dt, True
    return sh, dt, False


def _work_dtype(dt: np.dtype) -> type:
    return np.float64 if dt == np.float64 else np.float32


def _check_chunks(shape: tuple[int, ...], chunks: int, name: str) -> int:
    if isinstance(chunks, bool) or not isinstance(chunks, (int, np.integer)) or chunks < 1:
        raise InitlabError(f"{name}: chunks={chunks!r} is invalid: pass an integer >= 1")
    if chunks > 1 and (not shape or shape[0] % chunks):
        raise InitlabError(
            f"{name}: chunks={chunks} does not divide dim 0 of shape {shape}: "
            "packed weights stack equal blocks along dim 0"
        )
    return int(chunks)


# ---- samplers (validated arguments) -------------------------------------------------------------


def _orthogonal_matrix(rows: int, cols: int, gain: float, rng: np.random.Generator) -> np.ndarray:
    """Haar (semi-)orthogonal ``(rows, cols)`` matrix times ``gain``, float64 (QR with sign fix)."""
    flat = rng.standard_normal((rows, cols))
    if rows < cols:
        flat = flat.T
    q, r = np.linalg.qr(flat)
    # Mezzadri (2007): multiply the columns of Q by sign(diag R) (0 counted as +1) -> Haar.
    ph = np.sign(np.diagonal(r))
    ph[ph == 0] = 1.0
    q = q * ph
    if rows < cols:
        q = q.T
    return gain * q


def _projection(n: int, rank: int, rng: np.random.Generator) -> np.ndarray:
    """A random symmetric ``(n, n)`` projection of ``rank`` (``U U^T``, ``U`` the first columns of a
    Haar orthogonal matrix)."""
    u = _orthogonal_matrix(n, n, 1.0, rng)[:, :rank]
    return u @ u.T


def _fill_structural(spec: schemes.Spec, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """One block of a structural spec, in float64."""
    if isinstance(spec, schemes.Orthogonal):
        rows = shape[0]
        return _orthogonal_matrix(rows, math.prod(shape) // rows, spec.gain, rng).reshape(shape)
    if isinstance(spec, schemes.DeltaOrthogonal):
        out_ch, in_ch = shape[0], shape[1]
        if out_ch < in_ch:
            raise InitlabError(
                f"delta_orthogonal needs out_channels >= in_channels, got shape {shape} "
                f"({out_ch} < {in_ch}): the centre tap must be an isometry (W^T W = I); use "
                "orthogonal for a channel-reducing layer"
            )
        w = np.zeros(shape)
        w[(slice(None), slice(None), *(k // 2 for k in shape[2:]))] = _orthogonal_matrix(
            out_ch, in_ch, spec.gain, rng
        )
        return w
    if isinstance(spec, schemes.LooksLinear):
        rb, cb = schemes.looks_linear_block(spec, shape)
        a = _orthogonal_matrix(rb, cb, spec.gain, rng)  # the draws of orthogonal((rb, cb), gain=)
        top = np.concatenate([a, -a], axis=1) if spec.mirror_cols else a
        return np.concatenate([top, -top], axis=0) if spec.mirror_rows else top
    if isinstance(spec, schemes.ConvOrthogonal):  # the centre block, then the projections (as torch)
        m = _fill_structural(spec.block, shape[:2], rng)
        mirrored = isinstance(spec.block, schemes.LooksLinear) and spec.block.mirror_rows
        n = shape[0] // 2 if mirrored else shape[0]
        projections = [[_projection(n, n - n // 2, rng) for _ in range(k - 1)] for k in shape[2:]]
        w = np.zeros(shape)
        for t, v in schemes.paraunitary_taps(projections, np.eye(n)).items():
            w[(slice(None), slice(None), *t)] = (np.kron(np.eye(2), v) if mirrored else v) @ m
        return w
    if isinstance(spec, schemes.Delta):  # the centre tap: the 2-D block on (out, in), same draws
        w = np.zeros(shape)
        w[(slice(None), slice(None), *(k // 2 for k in shape[2:]))] = _fill_structural(
            spec.block, shape[:2], rng)
        return w
    if isinstance(spec, schemes.Identity):
        w = np.zeros(shape)
        np.fill_diagonal(w, spec.gain)
        return w
    if isinstance(spec, schemes.Dirac):
        groups = spec.groups
        bad = isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1
        if bad or shape[0] % groups:
            raise InitlabError(
                f"dirac: groups={groups!r} must be a positive integer dividing dim 0 (= {shape[0]}) "
                f"of shape {shape}: pass the conv layer's own groups"
            )
        per_group = shape[0] // groups
        d = np.arange(min(per_group, shape[1]))
        out_index = (np.arange(groups)[:, None] * per_group + d).reshape(-1)
        w = np.zeros(shape)
        w[(out_index, np.tile(d, groups), *(k // 2 for k in shape[2:]))] = 1.0
        return w
    if isinstance(spec, schemes.Sparse):
        rows, cols = shape
        num_zeros = math.ceil(spec.sparsity * rows)
        w = spec.std * rng.standard_normal(shape)
        if num_zeros:
            # one random permutation per column (argsort of uniforms), first num_zeros rows -> 0
            zero_rows = np.argsort(rng.random((cols, rows)), axis=1)[:, :num_zeros]
            w[zero_rows.T, np.arange(cols)[None, :]] = 0.0
        return w
    raise TypeError(f"sample_spec cannot realise a {type(spec).__name__}")  # pragma: no cover


def _sample(
    spec: schemes.Spec, shape: tuple[int, ...], rng: RngLike, dt: np.dtype, chunks: int = 1
) -> np.ndarray:
    """Realise a validated ``spec`` on a non-empty ``shape`` (an ndarray even for shape ``()``)."""
    return np.asarray(_sample_values(spec, shape, rng, dt, chunks), dtype=dt)


def _sample_values(
    spec: schemes.Spec, shape: tuple[int, ...], rng: RngLike, dt: np.dtype, chunks: int
) -> np.ndarray | np.generic:
    work = _work_dtype(dt)
    # the specs validate their own parameters (std >= 0, low <= high, a < b) when constructed
    if isinstance(spec, schemes.Normal):
        z = as_generator(rng).standard_normal(shape, dtype=work)
        return (z * work(spec.std) + work(spec.mean)).astype(dt, copy=False)
    if isinstance(spec, schemes.Uniform):
        u = as_generator(rng).random(shape, dtype=work)
        return (u * work(spec.high - spec.low) + work(spec.low)).astype(dt, copy=False)
    if isinstance(spec, schemes.TruncatedNormal):
        if not spec.std > 0:
            raise InitlabError(f"truncated_normal: std={spec.std!r} is invalid: pass std > 0")
        alpha, beta = (spec.a - spec.mean) / spec.std, (spec.b - spec.mean) / spec.std
        # inverse CDF in float64; a right-tail interval is mirrored into the left tail, where
        # ndtr keeps full relative precision.
        flip = alpha > 0
        if flip:
            alpha, beta = -beta, -alpha
        lo, hi = special.ndtr(alpha), special.ndtr(beta)
        z = special.ndtri(lo + as_generator(rng).random(shape) * (hi - lo))
        if flip:
            z = -z
        x = spec.mean + spec.std * z
        return np.clip(x, spec.a, spec.b).astype(dt).clip(dt.type(spec.a), dt.type(spec.b))
    if isinstance(spec, schemes.Constant):
        return np.full(shape, spec.value, dtype=dt)
    gen = as_generator(rng)
    if chunks == 1:
        return _fill_structural(spec, shape, gen).astype(dt)
    block = (shape[0] // chunks, *shape[1:])
    return np.concatenate([_fill_structural(spec, block, gen) for _ in range(chunks)]).astype(dt)


# ---- the spec realiser --------------------------------------------------------------------------


def sample_spec(
    spec: schemes.Spec,
    shape: int | Sequence[int],
    rng: RngLike = None,
    dtype: Any = np.float32,
    *,
    chunks: int = 1,
) -> np.ndarray:
    r"""A new array of ``shape`` realising an :mod:`initlab.schemes` spec.

    ==========================  ==================================================================
    spec                        entries
    ==========================  ==================================================================
    ``Normal(std, mean)``       :math:`\mathcal{N}(\text{mean}, \text{std}^2)`
    ``Uniform(low, high)``      :math:`\mathcal{U}(\text{low}, \text{high})`
    ``TruncatedNormal``         parent :math:`\mathcal{N}(\text{mean}, \text{std}^2)` cut to absolute
                                ``[a, b]`` (torch ``trunc_normal_`` semantics)
    ``Constant(value)``         ``value``
    ``Orthogonal(gain)``        see :func:`orthogonal` (>= 2 dims)
    ``Identity(gain)``          ``gain * I`` (2 dims)
    ``Dirac(groups)``           see :func:`dirac` (3-5 dims)
    ``DeltaOrthogonal(gain)``   see :func:`delta_orthogonal` (3-5 dims)
    ``Sparse(sparsity, std)``   see :func:`sparse` (2 dims)
    ``LooksLinear(gain, ...)``  see :func:`looks_linear` (2 dims; mirrored dims even, per chunk)
    ``Delta(block)``            zero but the centre tap, ``block`` (``Orthogonal`` or
                                ``LooksLinear``) on ``(out, in)`` (3-5 dims;
                                :func:`delta_looks_linear`)
    ==========================  ==================================================================

    The entries of a distribution spec have std ``spec.expected_std``.

    Args:
        spec: an :class:`initlab.schemes.Spec`.
        shape: output shape. rng: Generator, int seed or None (module docstring).
        dtype: NumPy floating dtype.
        chunks: structural specs fill each of ``chunks`` equal blocks along dim 0 independently
            (e.g. an orthogonal matrix per LSTM gate); i.i.d. specs ignore the split.

    Returns:
        ``ndarray`` of ``shape`` and ``dtype``.

    Raises:
        TypeError: ``spec`` not a Spec; non-float dtype; bad ``rng``. InitlabError: too few dims for
        the spec; ``chunks`` not dividing dim 0; a ``LooksLinear`` mirrored dim (of a chunk) that
        is odd; invalid spec parameters.

    Source: the schemes' papers (see :mod:`initlab.schemes`).

    >>> from initlab.schemes import Orthogonal
    >>> w = sample_spec(Orthogonal(), (8, 2), rng=0, dtype=np.float64, chunks=4)
    >>> np.allclose(w[2:4] @ w[2:4].T, np.eye(2), atol=1e-12)
    True
    """
    min_dims, dims, what = schemes.shape_requirement(spec, "sample_spec")
    sh, dt, empty = _prepare(shape, dtype, f"sample_spec({spec.describe()})", min_dims, dims, what, 3)
    if empty:
        return np.empty(sh, dtype=dt)
    chunks = _check_chunks(sh, chunks, "sample_spec")
    if isinstance(spec, schemes.LooksLinear):  # refuse an odd mirrored dim before any draw
        schemes.looks_linear_block(spec, (sh[0] // chunks, *sh[1:]))
    kernel_specs = (schemes.Delta, schemes.ConvOrthogonal)
    if isinstance(spec, kernel_specs) and isinstance(spec.block, schemes.LooksLinear):
        schemes.looks_linear_block(spec.block, (sh[0] // chunks, sh[1]))
    return _sample(spec, sh, rng, dt, chunks)


def _spec_call(
    name: str, spec: schemes.Spec, shape: Any, rng: RngLike, dtype: Any, chunks: int = 1
) -> np.ndarray:
    min_dims, dims, what = schemes.STRUCTURAL_SHAPES.get(type(spec), (0, None, ""))
    sh, dt, empty = _prepare(shape, dtype, name, min_dims, dims, what)
    if empty:
        return np.empty(sh, dtype=dt)
    return _sample(spec, sh, rng, dt, _check_chunks(sh, chunks, name))


# ---- plain distributions ------------------------------------------------------------------------


def uniform(
    shape: int | Sequence[int], rng: RngLike = None, dtype: Any = np.float32, *, low: float = 0.0,
    high: float = 1.0,
) -> np.ndarray:
    r"""I.i.d. ``U(low, high)`` entries (torch ``uniform_(a=low, b=high)``).

    .. math::
        w \sim \mathcal{U}(\text{low}, \text{high}),\quad \mathrm{std} = (\text{high}-\text{low})/\sqrt{12}

    Raises:
        InitlabError: ``low > high``. TypeError: non-float dtype, bad ``rng``.

    Source: ``torch.nn.init.uniform_``.

    >>> w = uniform((3, 4), rng=0, low=-1.0, high=1.0)
    >>> w.shape, bool((abs(w) <= 1).all())
    ((3, 4), True)
    """
    return _spec_call("uniform", schemes.Uniform(low, high), shape, rng, dtype)


def normal(
    shape: int | Sequence[int], rng: RngLike = None, dtype: Any = np.float32, *, mean: float = 0.0,
    std: float = 1.0,
) -> np.ndarray:
    r"""I.i.d. ``N(mean, std^2)`` entries (torch ``normal_``).

    .. math::
        w \sim \mathcal{N}(\text{mean}, \text{std}^2)

    Raises:
        InitlabError: ``std < 0``. TypeError: non-float dtype, bad ``rng``.

    Source: ``torch.nn.init.normal_``.

    >>> normal((2, 3), rng=0, std=0.01).dtype
    dtype('float32')
    """
    return _spec_call("normal", schemes.Normal(std=std, mean=mean), shape, rng, dtype)


def truncated_normal(
    shape: int | Sequence[int], rng: RngLike = None, dtype: Any = np.float32, *, mean: float = 0.0,
    std: float = 1.0, a: float = -2.0, b: float = 2.0,
) -> np.ndarray:
    r"""``N(mean, std^2)`` truncated to the *absolute* interval ``[a, b]`` (torch ``trunc_normal_``
    semantics: ``a``, ``b`` are values, not multiples of ``std``).

    .. math::
        w \sim \mathcal{N}(\text{mean}, \text{std}^2) \mid a \le w \le b

    Sampled by the inverse CDF in float64 (``scipy.special.ndtri``; right-tail intervals are
    mirrored into the left tail for precision), then cast and clipped to ``[a, b]``.
    The sample std is ``std * truncnorm((a-mean)/std, (b-mean)/std).std()``
    (:attr:`initlab.schemes.TruncatedNormal.expected_std`).

    Raises:
        InitlabError: ``std <= 0`` or ``a >= b``. TypeError: non-float dtype, bad ``rng``.

    Source: ``torch.nn.init.trunc_normal_``.

    >>> w = truncated_normal((100, 100), rng=0, std=1.0, a=-0.5, b=0.5)
    >>> bool((abs(w) <= 0.5).all())
    True
    """
    return _spec_call(
        "truncated_normal", schemes.TruncatedNormal(std=std, mean=mean, a=a, b=b), shape, rng, dtype
    )


trunc_normal = truncated_normal


def constant(
    shape: int | Sequence[int], rng: RngLike = None, dtype: Any = np.float32, *, value: float
) -> np.ndarray:
    r"""Every entry equals ``value`` (torch ``constant_``); ``rng`` is accepted and unused.

    .. math::
        w_{ij} = \text{value}

    A constant init makes all units of a layer identical (the symmetry problem): use it for biases.

    Raises:
        TypeError: non-float dtype.

    >>> constant((2, 2), value=0.5)
    array([[0.5, 0.5],
           [0.5, 0.5]], dtype=float32)
    """
    return _spec_call("constant", schemes.Constant(value), shape, rng, dtype)


def zeros(shape: int | Sequence[int], rng: RngLike = None, dtype: Any = np.float32) -> np.ndarray:
    """All zeros (torch ``zeros_``); ``rng`` unused. See :func:`constant`.

    >>> zeros(3)
    array([0., 0., 0.], dtype=float32)
    """
    return _spec_call("zeros", schemes.Constant(0.0), shape, rng, dtype)


def ones(shape: int | Sequence[int], rng: RngLike = None, dtype: Any = np.float32) -> np.ndarray:
    """All ones (torch ``ones_``); ``rng`` unused. See :func:`constant`.

    >>> ones(2, dtype=np.float64)
    array([1., 1.])
    """
    return _spec_call("ones", schemes.Constant(1.0), shape, rng, dtype)


def eye(
    shape: Sequence[int], rng: RngLike = None, dtype: Any = np.float32, *, gain: float = 1.0
) -> np.ndarray:
    r"""``gain`` times the (rectangular) identity matrix (torch ``eye_``): preserves the inputs
    in a Linear layer. ``rng`` unused.

    .. math::
        W = \text{gain}\cdot I_{out\times in}

    Raises:
        InitlabError: ``shape`` not 2-D.

    >>> eye((2, 3))
    array([[1., 0., 0.],
           [0., 1., 0.]], dtype=float32)
    """
    return _spec_call("eye", schemes.Identity(gain), shape, rng, dtype)


identity = eye


def dirac(
    shape: Sequence[int], rng: RngLike = None, dtype: Any = np.float32, *, groups: int = 1
) -> np.ndarray:
    r"""Dirac delta conv weight (torch ``dirac_``): each of the ``min(out/groups, in)`` first
    channels of every group passes through unchanged (a 1 at the kernel centre ``k // 2``).
    ``rng`` unused.

    .. math::
        W[g\,\tfrac{out}{groups} + d,\ d,\ \lfloor k/2 \rfloor] = 1,\quad 0 \text{ elsewhere}

    Raises:
        InitlabError: ``shape`` not 3-, 4- or 5-D; ``groups`` not dividing dim 0.

    >>> dirac((2, 2, 3))[:, :, 1]
    array([[1., 0.],
           [0., 1.]], dtype=float32)
    """
    return _spec_call("dirac", schemes.Dirac(groups), shape, rng, dtype)


# ---- variance scaling ---------------------------------------------------------------------------


def variance_scaling(
    shape: Sequence[int],
    scale: float = 1.0,
    mode: str = "fan_in",
    distribution: str = "truncated_normal",
    *,
    layout: str = "torch",
    groups: int = 1,
    transposed: bool = False,
    chunks: int = 1,
    rng: RngLike = None,
    dtype: Any = np.float32,
) -> np.ndarray:
    r"""The one core of Glorot, He and LeCun: entries of variance ``scale / n`` with true fans.

    .. math::
        \sigma = \sqrt{\text{scale} / n},\quad
        n \in \{\text{fan\_in},\ \text{fan\_out},\ \tfrac{\text{fan\_in}+\text{fan\_out}}{2},\
        \sqrt{\text{fan\_in}\,\text{fan\_out}}\}

    ``"normal"``: ``N(0, sigma^2)``; ``"uniform"``: ``U(±sqrt(3) sigma)``; ``"truncated_normal"``:
    parent std ``sigma / 0.87962566103423978`` cut at two parent stds, so the samples have std
    ``sigma`` (Keras / JAX ``VarianceScaling``). Fans by :func:`initlab.fans.compute_fans`.

    Args:
        shape: the weight's shape (>= 2 dims) in ``layout``.
        scale: variance multiplier ``> 0`` (``gain**2``). mode: ``"fan_in"``, ``"fan_out"``,
            ``"fan_avg"``, ``"fan_geo_avg"``. distribution: ``"truncated_normal"``, ``"normal"``,
            ``"uniform"``.
        layout: ``"torch"`` ``(out, in/groups, *k)``, ``"keras"``/``"jax"`` ``(*k, in, out)`` or
            ``"keras_depthwise"`` ``(*k, in, depth_multiplier)``.
        groups, transposed, chunks: as :func:`initlab.fans.compute_fans`.
        rng, dtype: module conventions.

    Returns:
        ``ndarray`` of ``shape`` and ``dtype``.

    Raises:
        InitlabError: fewer than 2 dims; bad scale, mode, distribution, layout, groups or chunks.
        TypeError: non-float dtype, bad ``rng``.

    Source: Keras / JAX ``VarianceScaling``; Glorot & Bengio (2010); He et al. (2015).

    >>> w = variance_scaling((1536, 512), 1.0, "fan_avg", "normal", chunks=3, rng=0)
    >>> round(float(w.std()), 3)   # per-chunk Glorot: sqrt(2 / (512 + 512)) = 0.0442
    0.044
    """
    return _fan_scheme(
        "variance_scaling",
        lambda fans: schemes.variance_scaling(scale, mode, distribution, fans=fans),
        shape, rng, dtype, layout, groups, transposed, chunks,
    )


def _fan_scheme(name, make_spec, shape, rng, dtype, layout, groups, transposed, chunks) -> np.ndarray:
    sh, dt, empty = _prepare(shape, dtype, name, min_dims=2)
    fans = compute_fans(sh, layout=layout, groups=groups, transposed=transposed, chunks=chunks)
    if empty:  # fan options were validated; a zero fan has no scheme to check
        return np.empty(sh, dtype=dt)
    return _sample(make_spec(fans), sh, rng, dt)


_FAN_DOC = """

    Args:
        shape: the weight's shape (>= 2 dims) in ``layout``. rng, dtype: module conventions.
        gain: the activation's gain (:func:`initlab.gains.gain` / ``calculate_gain``).
        layout, groups, transposed, chunks: as :func:`initlab.fans.compute_fans`.

    Returns:
        ``ndarray`` of ``shape`` and ``dtype``.

    Raises:
        InitlabError: fewer than 2 dims, a bad fan option, a zero fan. TypeError: non-float
        dtype, bad ``rng``.
"""


def glorot_normal(
    shape: Sequence[int], rng: RngLike = None, dtype: Any = np.float32, *, gain: float = 1.0,
    layout: str = "torch", groups: int = 1, transposed: bool = False, chunks: int = 1,
) -> np.ndarray:
    return _fan_scheme("glorot_normal", lambda f: schemes.glorot_normal(f, gain), shape, rng, dtype,
                       layout, groups, transposed, chunks)


def glorot_uniform(
    shape: Sequence[int], rng: RngLike = None, dtype: Any = np.float32, *, gain: float = 1.0,
    layout: str = "torch", groups: int = 1, transposed: bool = False, chunks: int = 1,
) -> np.ndarray:
    return _fan_scheme("glorot_uniform", lambda f: schemes.glorot_uniform(f, gain), shape, rng, dtype,
                       layout, groups, transposed, chunks)


def glorot_truncated_normal(
    shape: Sequence[int], rng: RngLike = None, dtype: Any = np.float32, *, gain: float = 1.0,
    layout: str = "torch", groups: int = 1, transposed: bool = False, chunks: int = 1,
) -> np.ndarray:
    return _fan_scheme("glorot_truncated_normal", lambda f: schemes.glorot_truncated_normal(f, gain),
                       shape, rng, dtype, layout, groups, transposed, chunks)


def he_normal(
    shape: Sequence[int], rng: RngLike = None, dtype: Any = np.float32, *, gain: float = math.sqrt(2.0),
    mode: str = "fan_in", layout: str = "torch", groups: int = 1, transposed: bool = False, chunks: int = 1,
) -> np.ndarray:
    return _fan_scheme("he_normal", lambda f: schemes.he_normal(f, gain, mode), shape, rng, dtype,
                       layout, groups, transposed, chunks)


def he_uniform(
    shape: Sequence[int], rng: RngLike = None, dtype: Any = np.float32, *, gain: float = math.sqrt(2.0),
    mode: str = "fan_in", layout: str = "torch", groups: int = 1, transposed: bool = False, chunks: int = 1,
) -> np.ndarray:
    return _fan_scheme("he_uniform", lambda f: schemes.he_uniform(f, gain, mode), shape, rng, dtype,
                       layout, groups, transposed, chunks)


def he_truncated_normal(
    shape: Sequence[int], rng: RngLike = None, dtype: Any = np.float32, *, gain: float = math.sqrt(2.0),
    mode: str = "fan_in", layout: str = "torch", groups: int = 1, transposed: bool = False, chunks: int = 1,
) -> np.ndarray:
    return _fan_scheme("he_truncated_normal", lambda f: schemes.he_truncated_normal(f, gain, mode),
                       shape, rng, dtype, layout, groups, transposed, chunks)


def lecun_normal(
    shape: Sequence[int], rng: RngLike = None, dtype: Any = np.float32, *, gain: float = 1.0,
    layout: str = "torch", groups: int = 1, transposed: bool = False, chunks: int = 1,
) -> np.ndarray:
    return _fan_scheme("lecun_normal", lambda f: schemes.lecun_normal(f, gain), shape, rng, dtype,
                       layout, groups, transposed, chunks)


def lecun_uniform(
    shape: Sequence[int], rng: RngLike = None, dtype: Any = np.float32, *, gain: float = 1.0,
    layout: str = "torch", groups: int = 1, transposed: bool = False, chunks: int = 1,
) -> np.ndarray:
    return _fan_scheme("lecun_uniform", lambda f: schemes.lecun_uniform(f, gain), shape, rng, dtype,
                       layout, groups, transposed, chunks)


def lecun_truncated_normal(
    shape: Sequence[int], rng: RngLike = None, dtype: Any = np.float32, *, gain: float = 1.0,
    layout: str = "torch", groups: int = 1, transposed: bool = False, chunks: int = 1,
) -> np.ndarray:
    return _fan_scheme("lecun_truncated_normal", lambda f: schemes.lecun_truncated_normal(f, gain),
                       shape, rng, dtype, layout, groups, transposed, chunks)


glorot_normal.__doc__ = r"""Glorot/Xavier normal: ``N(0, sigma^2)``, the fan-average scheme.

    .. math::
        \sigma = \text{gain}\sqrt{\frac{2}{\text{fan\_in} + \text{fan\_out}}}

    Source: Glorot & Bengio (2010), "Understanding the difficulty of training deep feedforward
    neural networks" (torch ``xavier_normal_``).
""" + _FAN_DOC + """
    >>> glorot_normal((64, 32), rng=0).shape
    (64, 32)
    >>> glorot_normal((64, 32), rng=0).std()  # doctest: +SKIP
    0.1441...
"""
glorot_uniform.__doc__ = r"""Glorot/Xavier uniform: ``U(-bound, bound)`` (Keras's default).

    .. math::
        \text{bound} = \text{gain}\sqrt{\frac{6}{\text{fan\_in} + \text{fan\_out}}}

    Source: Glorot & Bengio (2010) (torch ``xavier_uniform_``, Keras ``GlorotUniform``).
""" + _FAN_DOC + """
    >>> bool(abs(glorot_uniform((64, 32), rng=0)).max() <= (6 / 96) ** 0.5)
    True
"""
glorot_truncated_normal.__doc__ = r"""Glorot with a truncated normal (Keras ``GlorotNormal``): parent
    std ``s = sigma / 0.87962566103423978``, cut at ``±2 s``, so the samples have std ``sigma``.

    .. math::
        \sigma = \text{gain}\sqrt{\frac{2}{\text{fan\_in} + \text{fan\_out}}}

    Source: Glorot & Bengio (2010); Keras ``GlorotNormal``.
""" + _FAN_DOC + """
    >>> glorot_truncated_normal((64, 32), rng=0).shape
    (64, 32)
"""
he_normal.__doc__ = r"""He/Kaiming normal: ``N(0, sigma^2)`` (``gain = sqrt(2)`` for ReLU).

    .. math::
        \sigma = \frac{\text{gain}}{\sqrt{\text{fan}}},\quad \text{fan} = \text{fan\_in (mode)}

    ``mode="fan_out"`` preserves the backward pass instead. NumPy's ``kaiming_normal`` takes the
    gain directly (torch's ``kaiming_normal_`` derives it from ``a`` and ``nonlinearity``).

    Source: He, Zhang, Ren & Sun (2015), "Delving deep into rectifiers".
""" + _FAN_DOC + """
    >>> he_normal((256, 128), rng=0).shape
    (256, 128)
    >>> he_normal((256, 128), rng=0).std()  # doctest: +SKIP
    0.125...
"""
he_uniform.__doc__ = r"""He/Kaiming uniform: ``U(-bound, bound)``.

    .. math::
        \text{bound} = \text{gain}\sqrt{\frac{3}{\text{fan}}}

    Source: He et al. (2015) (torch ``kaiming_uniform_``, Keras ``HeUniform``).
""" + _FAN_DOC + """
    >>> bool(abs(he_uniform((64, 32), rng=0)).max() <= (6 / 32) ** 0.5)
    True
"""
he_truncated_normal.__doc__ = r"""He with a truncated normal (Keras ``HeNormal``): samples of std
    ``gain / sqrt(fan)`` from a ±2-parent-std truncated normal.

    .. math::
        \sigma = \frac{\text{gain}}{\sqrt{\text{fan}}}

    Source: He et al. (2015); Keras ``HeNormal``.
""" + _FAN_DOC + """
    >>> he_truncated_normal((64, 32), rng=0).dtype
    dtype('float32')
"""
lecun_normal.__doc__ = r"""LeCun normal: ``N(0, sigma^2)``; with SELU, the self-normalising init.

    .. math::
        \sigma = \frac{\text{gain}}{\sqrt{\text{fan\_in}}}

    Source: LeCun, Bottou, Orr & Müller (1998), "Efficient BackProp"; Klambauer et al. (2017).
""" + _FAN_DOC + """
    >>> lecun_normal((64, 32), rng=0).shape
    (64, 32)
    >>> lecun_normal((64, 32), rng=0).std()  # doctest: +SKIP
    0.176...
"""
lecun_uniform.__doc__ = r"""LeCun uniform: ``U(-bound, bound)``.

    .. math::
        \text{bound} = \text{gain}\sqrt{\frac{3}{\text{fan\_in}}}

    Source: LeCun et al. (1998), "Efficient BackProp"; Keras ``LecunUniform``.
""" + _FAN_DOC + """
    >>> bool(abs(lecun_uniform((64, 32), rng=0)).max() <= (3 / 32) ** 0.5)
    True
"""
lecun_truncated_normal.__doc__ = r"""LeCun with a truncated normal (Keras ``LecunNormal``).

    .. math::
        \sigma = \frac{\text{gain}}{\sqrt{\text{fan\_in}}}

    Source: LeCun et al. (1998); Keras ``LecunNormal``.
""" + _FAN_DOC + """
    >>> lecun_truncated_normal((8, 4, 3, 3), rng=0).shape
    (8, 4, 3, 3)
"""

xavier_normal = glorot_normal
xavier_uniform = glorot_uniform
xavier_truncated_normal = glorot_truncated_normal
kaiming_normal = he_normal
kaiming_uniform = he_uniform
kaiming_truncated_normal = he_truncated_normal


# ---- structural ---------------------------------------------------------------------------------


def orthogonal(
    shape: Sequence[int], rng: RngLike = None, dtype: Any = np.float32, *, gain: float = 1.0,
    chunks: int = 1,
) -> np.ndarray:
    r"""A Haar-distributed (semi-)orthogonal matrix times ``gain``, viewed as
    ``(rows, cols) = (shape[0], prod(shape[1:]))``.

    .. math::
        W W^\top = \text{gain}^2 I_{rows}\ (rows \le cols),\qquad
        W^\top W = \text{gain}^2 I_{cols}\ (rows > cols)

    QR of a standard Gaussian matrix in float64, with the signs of ``diag(R)`` folded into ``Q``
    (Mezzadri 2007) so that ``Q`` is Haar, not biased by the QR convention; then cast to
    ``dtype``. ``chunks`` makes each of that many blocks along dim 0 orthogonal independently
    (LSTM 4 gates, GRU 3, QKV 3).

    Raises:
        InitlabError: fewer than 2 dims; ``chunks`` not dividing dim 0.

    Source: Saxe, McClelland & Ganguli (2014), "Exact solutions to the nonlinear dynamics of
    learning in deep linear neural networks"; Mezzadri (2007), "How to generate random matrices
    from the classical compact groups".

    >>> w = orthogonal((3, 5), rng=0, dtype=np.float64)
    >>> np.allclose(w @ w.T, np.eye(3), atol=1e-12, rtol=0)
    True
    """
    return _spec_call("orthogonal", schemes.Orthogonal(gain), shape, rng, dtype, chunks)


def delta_orthogonal(
    shape: Sequence[int], rng: RngLike = None, dtype: Any = np.float32, *, gain: float = 1.0,
) -> np.ndarray:
    r"""Delta-orthogonal conv weight: zero except the spatial centre, an orthogonal matrix.

    For ``shape = (out, in, *k)`` with ``out >= in``:

    .. math::
        W[:, :, \lfloor k/2 \rfloor] = \text{gain}\cdot H,\quad H^\top H = I_{in},\qquad
        W = 0 \text{ elsewhere}

    Raises:
        InitlabError: not 3-, 4- or 5-D; ``out < in``.

    Source: Xiao, Bahri, Sohl-Dickstein, Schoenholz & Pennington (2018), "Dynamical isometry and a
    mean field theory of CNNs".

    >>> w = delta_orthogonal((8, 4, 3, 3), rng=0, dtype=np.float64)
    >>> c = w[:, :, 1, 1]
    >>> np.allclose(c.T @ c, np.eye(4), atol=1e-12), float(abs(w[:, :, 0, 0]).max())
    (True, 0.0)
    """
    return _spec_call("delta_orthogonal", schemes.DeltaOrthogonal(gain), shape, rng, dtype)


def conv_orthogonal(
    shape: Sequence[int], rng: RngLike = None, dtype: Any = np.float32, *, gain: float = 1.0,
) -> np.ndarray:
    r"""Orthogonal conv weight with full spatial support (Xiao et al. 2018): the numpy twin of
    :func:`initlab.init.conv_orthogonal_` (the formula is there and in
    :class:`initlab.schemes.ConvOrthogonal`), drawn in float64.

    .. math::
        W(z) = V(z)\,\text{gain}\cdot H,\qquad
        V(z) = \prod_{a}\prod_{f=1}^{k_a-1}\bigl(P_{a,f} + (I - P_{a,f})\,z_a^{\pm 1}\bigr)

    Raises:
        InitlabError: not 3-, 4- or 5-D.

    Source: Xiao, Bahri, Sohl-Dickstein, Schoenholz & Pennington (2018), "Dynamical isometry and a
    mean field theory of CNNs".

    >>> w = conv_orthogonal((8, 8, 3, 3), rng=0, dtype=np.float64)
    >>> m = w.sum(axis=(2, 3))
    >>> np.allclose(m @ m.T, np.eye(8), atol=1e-12), bool(abs(w[:, :, 0, 0]).max() > 0)
    (True, True)
    """
    return _spec_call("conv_orthogonal", schemes.ConvOrthogonal(schemes.Orthogonal(gain)), shape, rng, dtype)


def looks_linear(
    shape: Sequence[int], rng: RngLike = None, dtype: Any = np.float32, *, gain: float = 1.0,
    mirror_rows: bool = True, mirror_cols: bool = True,
) -> np.ndarray:
    r"""Looks-linear init: one Haar (semi-)orthogonal block ``A`` (times ``gain``) mirrored with
    signs, for a 2-D ``(rows, cols)`` Linear weight (torch layout ``(out, in)``).

    With ``A`` of shape ``(rb, cb)``, ``rb = rows/2`` if ``mirror_rows`` else ``rows`` (``cb``
    likewise):

    .. math::
        W = \begin{bmatrix} A & -A \\ -A & A \end{bmatrix}\ (\text{both}),\quad
        W = \begin{bmatrix} A \\ -A \end{bmatrix}\ (\text{mirror\_rows}),\quad
        W = \begin{bmatrix} A & -A \end{bmatrix}\ (\text{mirror\_cols}),\qquad
        A A^\top = \text{gain}^2 I\ (rb \le cb),\ A^\top A = \text{gain}^2 I\ (rb > cb)

    Since :math:`\phi(u) - \phi(-u) = c\,u` for ReLU, GELU, SiLU, softplus (``c = 1``) and leaky
    ReLU (``c = 1 + slope``), a chain of a rows-mirrored first layer, both-mirrored hidden layers
    and a cols-mirrored head (zero biases) computes :math:`c^{L-1} A_L \cdots A_1 x` at
    initialization: a product of (semi-)orthogonal maps, while the first gradient step breaks
    the symmetry.

    ``A`` is the array :func:`orthogonal` returns for ``(rb, cb)`` with the same ``rng`` and
    ``gain`` (same draws, float64 QR), then signed copies are cast to ``dtype`` (``-A`` exactly).

    Args:
        shape: ``(rows, cols)``; each mirrored dim even. rng, dtype: module conventions.
        gain: scaling factor of ``A`` (finite real).
        mirror_rows: mirror dim 0 (outputs), ``[A; -A]`` (a layer feeding a ReLU-like activation).
        mirror_cols: mirror dim 1 (inputs), ``[A, -A]`` (a layer reading mirrored features).

    Returns:
        ``ndarray`` of ``shape`` and ``dtype``.

    Raises:
        InitlabError: ``shape`` not 2-D; a mirrored dim of odd size; ``gain`` not finite;
        ``mirror_*`` not bools, or both False (use :func:`orthogonal`). TypeError: non-float
        dtype, bad ``rng``. A zero-element shape warns and gives an empty array.

    Source: Balduzzi, Frean, Leary, Lewis, Ma & McWilliams (2017), "The Shattered Gradients
    Problem: If resnets are the answer, then what is the question?", ICML.

    >>> w = looks_linear((6, 4), rng=0, dtype=np.float64)
    >>> a = w[:3, :2]
    >>> bool((w == np.block([[a, -a], [-a, a]])).all()), np.allclose(a.T @ a, np.eye(2), atol=1e-12)
    (True, True)
    """
    spec = schemes.LooksLinear(gain, mirror_rows, mirror_cols)
    sh, dt, empty = _prepare(shape, dtype, "looks_linear", dims=(2,), what=" (a Linear weight)", stacklevel=3)
    if empty:
        return np.empty(sh, dtype=dt)
    schemes.looks_linear_block(spec, sh)
    return _sample(spec, sh, rng, dt)


def delta_looks_linear(
    shape: Sequence[int], rng: RngLike = None, dtype: Any = np.float32, *, gain: float = 1.0,
    mirror_rows: bool = True, mirror_cols: bool = True,
) -> np.ndarray:
    r"""Looks-linear delta kernel: zero except the spatial centre tap, a looks-linear matrix.

    For ``shape = (out, in, *k)`` the centre tap is :func:`looks_linear` of ``(out, in)`` (same
    ``rng`` draws), ``A`` of shape ``(rb, cb)`` (``rb = out/2`` if ``mirror_rows``; ``cb`` likewise):

    .. math::
        W[:, :, \lfloor k/2 \rfloor] = \begin{bmatrix} A & -A \\ -A & A \end{bmatrix}\
        (\text{both}),\ \begin{bmatrix} A \\ -A \end{bmatrix},\ \begin{bmatrix} A & -A \end{bmatrix};
        \qquad W = 0 \text{ elsewhere}

    Args:
        shape: ``(out, in, *k)``, 3-5 dims; each mirrored channel dim even. rng, dtype: module
            conventions.
        gain: scaling factor of ``A`` (finite real).
        mirror_rows: mirror the output channels. mirror_cols: mirror the input channels.

    Returns:
        ``ndarray`` of ``shape`` and ``dtype``.

    Raises:
        InitlabError: ``shape`` not 3-5-D; a mirrored channel dim of odd size; ``gain`` not finite;
        ``mirror_*`` not bools, or both False. TypeError: non-float dtype, bad ``rng``. A
        zero-element shape warns and gives an empty array.

    Source: Xiao et al. (2018), "Dynamical isometry and a mean field theory of CNNs", ICML;
    Balduzzi et al. (2017), "The Shattered Gradients Problem", ICML.

    >>> w = delta_looks_linear((8, 4, 3), rng=0, dtype=np.float64)
    >>> centre = looks_linear((8, 4), rng=0, dtype=np.float64)
    >>> bool((w[:, :, 1] == centre).all()), float(abs(w[:, :, 0]).max())
    (True, 0.0)
    """
    spec = schemes.Delta(schemes.LooksLinear(gain, mirror_rows, mirror_cols))
    sh, dt, empty = _prepare(shape, dtype, "delta_looks_linear", dims=(3, 4, 5),
                             what=" (a Conv1d/2d/3d weight)", stacklevel=3)
    if empty:
        return np.empty(sh, dtype=dt)
    schemes.looks_linear_block(spec.block, sh[:2])
    return _sample(spec, sh, rng, dt)


def sparse(
    shape: Sequence[int], rng: RngLike = None, dtype: Any = np.float32, *, sparsity: float,
    std: float = 0.01,
) -> np.ndarray:
    r"""Sparse init (torch ``sparse_``): each column has ``ceil(sparsity * rows)`` zeros at random
    rows, the other entries ``N(0, std^2)``.

    .. math::
        W_{ij} = 0 \text{ for } i \in Z_j,\ |Z_j| = \lceil \text{sparsity}\cdot rows \rceil;\quad
        W_{ij} \sim \mathcal{N}(0, \text{std}^2) \text{ otherwise}

    Raises:
        InitlabError: ``shape`` not 2-D; ``sparsity`` outside ``[0, 1]``; ``std < 0``.

    Source: Martens (2010), "Deep learning via Hessian-free optimization".

    >>> w = sparse((10, 4), rng=0, sparsity=0.3)
    >>> [int((w[:, j] == 0).sum()) for j in range(4)]
    [3, 3, 3, 3]
    """
    if not (0.0 <= sparsity <= 1.0):
        raise InitlabError(f"sparse: sparsity={sparsity!r} is outside [0, 1]: pass a fraction")
    if not std >= 0:
        raise InitlabError(f"sparse: std={std!r} is negative: pass std >= 0")
    return _spec_call("sparse", schemes.Sparse(sparsity, std), shape, rng, dtype)
