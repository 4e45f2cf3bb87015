"""PyTorch initializers: a drop-in for ``torch.nn.init``, plus every scheme of :mod:`initlab.schemes`.

``from initlab import init`` replaces ``import torch.nn.init as init``: the functions torch has
(``uniform_``, ``normal_``, ``trunc_normal_``, ``constant_``, ``ones_``, ``zeros_``, ``eye_``,
``dirac_``, ``xavier_uniform_``, ``xavier_normal_``, ``kaiming_uniform_``, ``kaiming_normal_``,
``orthogonal_``, ``sparse_``, ``calculate_gain``) keep torch's names, signatures, defaults, fans
(``fan_in = shape[1] * rf``, ``fan_out = shape[0] * rf``) and distributions, and consume random
numbers the same way, so the same generator gives the same bits as torch. New initializers follow
the same form: :func:`lecun_normal_`, :func:`lecun_uniform_`, the ``*_truncated_normal_`` family
(the Keras / JAX defaults), :func:`variance_scaling_` (true fans for grouped, transposed and packed
weights, via :func:`initlab.fans.compute_fans`), :func:`delta_orthogonal_`, :func:`conv_orthogonal_`
(Xiao et al. 2018's orthogonal kernels with every tap set), :func:`looks_linear_`
(Balduzzi et al. 2017), :func:`delta_looks_linear_` and :func:`apply_spec_`, which realises any
:class:`initlab.schemes.Spec`.
``glorot_*`` / ``he_*`` are aliases (assignments) of ``xavier_*`` / ``kaiming_*``.

Every initializer fills the tensor in place under ``torch.no_grad()`` and returns it (shape and
dtype kept); takes ``generator=`` (a ``torch.Generator`` on the tensor's device; ``None`` is
torch's default generator); samples on the tensor's device and dtype with torch's own in-place
samplers, so it is as fast as torch; and raises :class:`~initlab.errors.InitlabError` (a
``ValueError``, as torch) saying how many dimensions are needed when the tensor has too few.

Deliberate differences from ``torch.nn.init`` (torch 2.13). Torch code that works keeps working
except in the rows marked *refused*; where both refuse, initlab's exception is also an instance of
torch's class.

==================================  =============================  ====================================
case                                torch 2.13                     initlab
==================================  =============================  ====================================
zero-element tensor                 warns in ``kaiming_*`` only    warns in every initializer; the
                                                                   message starts with torch's text
                                                                   "Initializing zero-element tensors
                                                                   is a no-op"
zero elements and too few dims      ``kaiming_*`` warn, return     *refused*: ``ValueError``, dims are
                                                                   checked first
                                                                   (``kaiming_uniform_(empty(0))``)
random initializer, int/bool        ``NotImplementedError`` (a     :class:`InitDtypeError`, a
                                    ``RuntimeError``)              ``TypeError`` and a
                                                                   ``NotImplementedError``
``a > b``; ``std < 0``              ``RuntimeError`` (in           :class:`InitArgumentError`, a
                                    ``uniform_``, ``normal_``,     ``ValueError`` and a
                                    ``sparse_``,                   ``RuntimeError``
                                    ``trunc_normal_``)
``trunc_normal_`` ``std <= 0``      0: ``ZeroDivisionError``;      *refused*: :class:`InitArgumentError`
                                    ``< 0``: samples of the        (a sign error; ``normal_`` refuses
                                    absolute std                   it in torch)
``sparse_`` sparsity < 0 or > 1     ``> 1``: all zero; ``< 0``:    *refused*: ``ValueError`` (15 meant
                                    slices from the end            as 15 % would zero the weight)
``sparse_`` row permutations        global RNG, even with          drawn from ``generator``
                                    ``generator``                  (``None``: torch's bits)
``orthogonal_`` float16/bfloat16    ``NotImplementedError`` on     QR in float32, then cast
                                    CPU (no 16-bit QR)
``orthogonal_`` zero in diag(R)     that column of ``Q`` is zero   sign ``+1``: ``Q`` stays orthogonal
not a tensor                        ``AttributeError``             ``TypeError`` naming the type
``orthogonal_(..., chunks=k)``      no such keyword                each of ``k`` packed blocks (QKV,
                                                                   LSTM/GRU gates) on its own
==================================  =============================  ====================================

The deterministic fillers (``zeros_``, ``ones_``, ``constant_``, ``eye_``, ``dirac_``) accept any
dtype, integer and bool included, as torch. To silence the zero-element warning of torch and
initlab alike: ``warnings.filterwarnings("ignore", message="Initializing zero-element tensors is
a no-op")``.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable

import torch
import torch.nn.init as _torch_init
from torch import Tensor
from torch.overrides import handle_torch_function, has_torch_function_variadic

from initlab import schemes
from initlab.errors import InitlabError
from initlab.fans import Fans, compute_fans
from initlab.gains import calculate_gain

__all__ = [
    # errors that are both initlab's and torch's exception class
    "InitArgumentError",
    "InitDtypeError",
    # torch.nn.init names (drop-in)
    "calculate_gain",
    "uniform_",
    "normal_",
    "trunc_normal_",
    "constant_",
    "ones_",
    "zeros_",
    "eye_",
    "dirac_",
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "orthogonal_",
    "sparse_",
    # aliases
    "glorot_uniform_",
    "glorot_normal_",
    "he_uniform_",
    "he_normal_",
    "xavier_truncated_normal_",
    "kaiming_truncated_normal_",
    # new schemes
    "lecun_normal_",
    "lecun_uniform_",
    "glorot_truncated_normal_",
    "he_truncated_normal_",
    "lecun_truncated_normal_",
    "variance_scaling_",
    "delta_orthogonal_",
    "conv_orthogonal_",
    "looks_linear_",
    "delta_looks_linear_",
    "apply_spec_",
    # torch's deprecated aliases (FutureWarning), kept so old code runs unchanged
    "uniform",
    "normal",
    "constant",
    "eye",
    "dirac",
    "xavier_uniform",
    "xavier_normal",
    "kaiming_uniform",
    "kaiming_normal",
    "orthogonal",
    "sparse",
]

_HALF_DTYPES = (torch.float16, torch.bfloat16)

#: torch's own zero-element warning, kept verbatim at the start of ours so that a
#: ``warnings.filterwarnings("ignore", message=...)`` written for torch also silences initlab.
ZERO_ELEMENT_WARNING = "Initializing zero-element tensors is a no-op"


class InitArgumentError(InitlabError, RuntimeError):
    """A sampler argument that torch refuses too (``uniform_`` with ``a > b``, ``normal_`` /
    ``sparse_`` with ``std < 0``, ``trunc_normal_`` with ``a > b``), or a ``trunc_normal_`` std
    ``<= 0``. A ``ValueError`` like every initlab error, and a ``RuntimeError`` like torch's own
    refusal, so code written for either ``except`` clause catches it."""


class InitDtypeError(TypeError, NotImplementedError):
    """A random initializer given an integer or bool tensor. A ``TypeError`` naming the dtype, and
    a ``NotImplementedError`` (a ``RuntimeError``) like torch's ``"normal_kernel_cpu" not
    implemented for 'Long'``, so code written for either ``except`` clause catches it."""


# ---- checks shared by every initializer ---------------------------------------------------------


def _check(
    tensor: Tensor,
    name: str,
    min_dims: int = 0,
    dims: tuple[int, ...] | None = None,
    what: str = "",
    any_dtype: bool = False,
) -> bool:
    """Validate ``tensor`` for initializer ``name``; True means "nothing to fill" (zero elements,
    after a warning). The warning points at the caller of the public function. ``any_dtype``:
    integer and bool tensors are allowed (the deterministic fillers, as in torch)."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{name} fills a torch.Tensor, got {type(tensor).__name__}: pass a tensor")
    if not (any_dtype or tensor.is_floating_point() or tensor.is_complex()):
        raise InitDtypeError(
            f"{name} samples floating-point tensors, got dtype {tensor.dtype}: "
            "initialize a float tensor (e.g. tensor.float()) and convert afterwards"
        )
    ndim = tensor.dim()
    if dims is not None:
        if ndim not in dims:
            allowed = " or ".join(", ".join(str(d) for d in dims).rsplit(", ", 1))
            raise InitlabError(
                f"{name} needs a tensor with {allowed} dimensions{what}, got {ndim} "
                f"(shape {tuple(tensor.shape)})"
            )
    elif ndim < min_dims:
        raise InitlabError(
            f"{name} needs a tensor with at least {min_dims} dimensions{what}, got {ndim} "
            f"(shape {tuple(tensor.shape)})"
        )
    if tensor.numel() == 0:
        warnings.warn(
            f"{ZERO_ELEMENT_WARNING} ({name} on shape {tuple(tensor.shape)})",
            UserWarning,
            stacklevel=3,
        )
        return True
    return False


def _check_chunks(tensor: Tensor, chunks: int, name: str) -> int:
    if isinstance(chunks, bool) or not isinstance(chunks, int) or chunks < 1:
        raise InitlabError(f"{name}: chunks={chunks!r} is invalid: pass an integer >= 1")
    if chunks > 1 and (tensor.dim() == 0 or tensor.shape[0] % chunks):
        raise InitlabError(
            f"{name}: chunks={chunks} does not divide dim 0 of shape {tuple(tensor.shape)}: "
            "packed weights stack equal blocks along dim 0"
        )
    return chunks


@functools.lru_cache(maxsize=4096)
def _torch_fans_of(shape: torch.Size) -> Fans:
    return compute_fans(shape)


def _torch_fans(tensor: Tensor) -> Fans:
    """Torch's fan convention: ``fan_in = shape[1] * rf``, ``fan_out = shape[0] * rf``
    (:func:`initlab.fans.compute_fans` with the defaults; cached per shape, as ``Fans`` is frozen)."""
    return _torch_fans_of(tensor.shape)


# ---- workers (no checks; callers have validated) -------------------------------------------------


def _orthogonal_matrix(rows: int, cols: int, gain: float, like: Tensor, generator) -> Tensor:
    """A ``(rows, cols)`` (semi-)orthogonal matrix times ``gain`` on ``like``'s device, in
    float32 for 16-bit ``like`` (else ``like``'s dtype). Consumes random numbers as torch does."""
    dtype = torch.float32 if like.dtype in _HALF_DTYPES else like.dtype
    flat = torch.empty((rows, cols), dtype=dtype, device=like.device).normal_(0, 1, generator=generator)
    if rows < cols:
        flat.t_()
    q, r = torch.linalg.qr(flat)
    # Make Q Haar-distributed (Mezzadri 2007, arXiv:math-ph/0609050): multiply by sign(diag R),
    # counting an exact zero as +1.
    ph = torch.diagonal(r).sgn()  # sign for real, phase for complex (unitary Q)
    ph.add_(ph == 0)
    q.mul_(ph)
    if rows < cols:
        q.t_()
    if gain != 1:
        q.mul_(gain)
    return q


def _orthogonal(tensor: Tensor, gain: float, generator) -> None:
    rows = tensor.shape[0]
    cols = tensor.numel() // rows
    q = _orthogonal_matrix(rows, cols, gain, tensor, generator)
    if tensor.is_contiguous():
        tensor.view(rows, cols).copy_(q)
    else:
        tensor.copy_(q.reshape(tensor.shape))


def _delta_orthogonal(tensor: Tensor, gain: float, generator) -> None:
    out_ch, in_ch = tensor.shape[0], tensor.shape[1]
    if out_ch < in_ch:
        raise InitlabError(
            f"delta_orthogonal_ needs out_channels >= in_channels, got shape {tuple(tensor.shape)} "
            f"({out_ch} < {in_ch}): the centre tap must be an isometry (W^T W = I); use "
            "orthogonal_ for a channel-reducing layer"
        )
    q = _orthogonal_matrix(out_ch, in_ch, gain, tensor, generator)
    tensor.zero_()
    centre = tuple(k // 2 for k in tensor.shape[2:])
    tensor[(slice(None), slice(None), *centre)] = q


def _looks_linear(tensor: Tensor, spec: schemes.LooksLinear, generator) -> None:
    """Fill a 2-D block with the signed copies of one orthogonal ``(rb, cb)`` block ``A``, drawn
    exactly as :func:`orthogonal_` draws an ``(rb, cb)`` tensor with ``spec.gain``."""
    rb, cb = schemes.looks_linear_block(spec, tensor.shape)
    # the same draws, QR and cast as orthogonal_ on torch.empty(rb, cb, dtype=tensor.dtype)
    a = _orthogonal_matrix(rb, cb, spec.gain, tensor, generator).to(tensor.dtype)
    neg = a.neg()  # exact, also after the cast of a 16-bit tensor
    tensor[:rb, :cb] = a
    if spec.mirror_rows:
        tensor[rb:, :cb] = neg
    if spec.mirror_cols:
        tensor[:rb, cb:] = neg
    if spec.mirror_rows and spec.mirror_cols:
        tensor[rb:, cb:] = a


def _delta(tensor: Tensor, spec: schemes.Delta, generator) -> None:
    """Zero a conv weight ``(out, in, *k)`` but its centre tap, filled as the 2-D ``spec.block``
    fills an ``(out, in)`` tensor (same draws)."""
    centre = torch.empty(tensor.shape[:2], dtype=tensor.dtype, device=tensor.device)
    if isinstance(spec.block, schemes.LooksLinear):
        _looks_linear(centre, spec.block, generator)
    else:
        _orthogonal(centre, spec.block.gain, generator)
    tensor.zero_()
    tensor[(slice(None), slice(None), *(k // 2 for k in tensor.shape[2:]))] = centre


def _projection(n: int, rank: int, like: Tensor, generator) -> Tensor:
    """A random symmetric ``(n, n)`` projection of ``rank``: ``U U^*``, ``U`` the first ``rank``
    columns of a Haar orthogonal matrix (drawn as :func:`_orthogonal_matrix` draws an ``(n, n)``)."""
    u = _orthogonal_matrix(n, n, 1.0, like, generator)[:, :rank]
    return u @ u.mH


def _conv_orthogonal(tensor: Tensor, spec: schemes.ConvOrthogonal, generator) -> None:
    """Fill a conv weight ``(out, in, *k)`` with :class:`~initlab.schemes.ConvOrthogonal`: the
    centre block ``M`` drawn as :func:`_delta` draws it (same draws first), then per spatial axis
    its ``k - 1`` projections of rank ``ceil(n / 2)`` on the ``n`` output channels (per mirrored
    half); tap ``t`` is ``V_t M``."""
    centre = torch.empty(tensor.shape[:2], dtype=tensor.dtype, device=tensor.device)
    if isinstance(spec.block, schemes.LooksLinear):
        _looks_linear(centre, spec.block, generator)
    else:
        _orthogonal(centre, spec.block.gain, generator)
    mirrored = isinstance(spec.block, schemes.LooksLinear) and spec.block.mirror_rows
    n = tensor.shape[0] // 2 if mirrored else tensor.shape[0]
    dtype = torch.float32 if tensor.dtype in _HALF_DTYPES else tensor.dtype
    work = centre.to(dtype)
    rank = n - n // 2
    projections = [[_projection(n, rank, work, generator) for _ in range(k - 1)] for k in tensor.shape[2:]]
    taps = schemes.paraunitary_taps(projections, torch.eye(n, dtype=dtype, device=tensor.device))
    tensor.zero_()
    for t, v in taps.items():
        if mirrored:
            v = torch.block_diag(v, v)
        tensor[(slice(None), slice(None), *t)] = (v @ work).to(tensor.dtype)


def _sparse(tensor: Tensor, sparsity: float, std: float, generator) -> None:
    rows, cols = tensor.shape
    num_zeros = math.ceil(sparsity * rows)
    tensor.normal_(0, std, generator=generator)
    # One permutation per column, drawn in torch's order (same bits as torch for the same RNG
    # state); the zeros are then written in one scatter instead of one indexing op per column.
    device = generator.device if generator is not None else torch.device("cpu")
    perms = [torch.randperm(rows, generator=generator, device=device)[:num_zeros] for _ in range(cols)]
    if num_zeros:
        index = torch.stack(perms, dim=1).to(tensor.device)
        tensor.scatter_(0, index, 0.0)


def _dirac(tensor: Tensor, groups: int) -> None:
    sizes = tensor.shape
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1 or sizes[0] % groups:
        raise InitlabError(
            f"dirac_: groups={groups!r} must be a positive integer dividing dim 0 (= {sizes[0]}) "
            f"of shape {tuple(sizes)}: pass the conv layer's own groups"
        )
    per_group = sizes[0] // groups
    min_dim = min(per_group, sizes[1])
    tensor.zero_()
    d = torch.arange(min_dim, device=tensor.device)
    out_index = (torch.arange(groups, device=tensor.device)[:, None] * per_group + d).reshape(-1)
    in_index = d.repeat(groups)
    centre = tuple(k // 2 for k in sizes[2:])
    tensor[(out_index, in_index, *centre)] = 1


def _eye(tensor: Tensor, gain: float = 1.0) -> None:
    tensor.zero_()
    tensor.diagonal().fill_(gain)


def _trunc_normal(tensor: Tensor, mean: float, std: float, a: float, b: float, generator) -> None:
    if not std > 0:
        raise InitArgumentError(f"trunc_normal_: std={std!r} is invalid: pass std > 0")
    if not a <= b:
        raise InitArgumentError(f"trunc_normal_: a={a!r} must be <= b={b!r}: pass the cut-offs in order")
    # torch's own method (same bits, same speed); looked up at call time.
    _torch_init.trunc_normal_(tensor, mean, std, a, b, generator=generator)


def _realise(tensor: Tensor, spec: schemes.Spec, generator, chunks: int = 1) -> None:
    """Fill a validated, non-empty ``tensor`` with ``spec``. i.i.d. specs fill the whole tensor
    at once (each block is then an independent sample anyway); structural specs fill each of
    the ``chunks`` blocks along dim 0 independently."""
    if isinstance(spec, schemes.Normal):
        tensor.normal_(spec.mean, spec.std, generator=generator)
    elif isinstance(spec, schemes.Uniform):
        tensor.uniform_(spec.low, spec.high, generator=generator)
    elif isinstance(spec, schemes.TruncatedNormal):
        _trunc_normal(tensor, spec.mean, spec.std, spec.a, spec.b, generator)
    elif isinstance(spec, schemes.Constant):
        tensor.fill_(spec.value)
    else:
        blocks = tensor.split(tensor.shape[0] // chunks, dim=0) if chunks > 1 else (tensor,)
        for block in blocks:
            if isinstance(spec, schemes.Orthogonal):
                _orthogonal(block, spec.gain, generator)
            elif isinstance(spec, schemes.DeltaOrthogonal):
                _delta_orthogonal(block, spec.gain, generator)
            elif isinstance(spec, schemes.LooksLinear):
                _looks_linear(block, spec, generator)
            elif isinstance(spec, schemes.Delta):
                _delta(block, spec, generator)
            elif isinstance(spec, schemes.ConvOrthogonal):
                _conv_orthogonal(block, spec, generator)
            elif isinstance(spec, schemes.Identity):
                _eye(block, spec.gain)
            elif isinstance(spec, schemes.Dirac):
                _dirac(block, spec.groups)
            elif isinstance(spec, schemes.Sparse):
                _sparse(block, spec.sparsity, spec.std, generator)
            else:  # pragma: no cover - guarded in apply_spec_
                raise TypeError(f"apply_spec_ cannot realise {type(spec).__name__}")


# ---- torch.nn.init names ---------------------------------------------------------------------------


def uniform_(
    tensor: Tensor,
    a: float = 0.0,
    b: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Fill ``tensor`` with i.i.d. samples of the uniform distribution :math:`\mathcal{U}(a, b)`.

    .. math::
        w \sim \mathcal{U}(a, b), \qquad \operatorname{std}(w) = \frac{b - a}{\sqrt{12}}

    Args:
        tensor: any-shaped floating-point tensor, filled in place (unitless weights).
        a: lower bound. b: upper bound (``a <= b``).
        generator: ``torch.Generator`` on the tensor's device (default: torch's global one).

    Returns:
        ``tensor``.

    Raises:
        InitDtypeError: integer or bool ``tensor``. InitArgumentError (a ``ValueError`` and a
        ``RuntimeError``, as torch raises): ``a > b``.

    Source: ``torch.nn.init.uniform_`` (identical bits for the same generator).

    >>> w = uniform_(torch.empty(3, 5), -0.1, 0.1, generator=torch.Generator().manual_seed(0))
    >>> bool(w.abs().max() <= 0.1)
    True
    """
    if has_torch_function_variadic(tensor):
        return handle_torch_function(uniform_, (tensor,), tensor=tensor, a=a, b=b, generator=generator)
    if _check(tensor, "uniform_"):
        return tensor
    if a > b:
        raise InitArgumentError(f"uniform_: a={a!r} > b={b!r}: pass a <= b")
    with torch.no_grad():
        return tensor.uniform_(a, b, generator=generator)


def normal_(
    tensor: Tensor,
    mean: float = 0.0,
    std: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Fill ``tensor`` with i.i.d. samples of :math:`\mathcal{N}(\text{mean}, \text{std}^2)`.

    .. math::
        w \sim \mathcal{N}(\mu, \sigma^2)

    Args:
        tensor: any-shaped floating-point tensor, filled in place.
        mean: the mean :math:`\mu`. std: the standard deviation :math:`\sigma \ge 0`.
        generator: ``torch.Generator`` on the tensor's device (default: torch's global one).

    Returns:
        ``tensor``.

    Raises:
        InitDtypeError: integer or bool ``tensor``. InitArgumentError (a ``ValueError`` and a
        ``RuntimeError``, as torch raises): ``std < 0``.

    Source: ``torch.nn.init.normal_`` (identical bits for the same generator).

    >>> w = normal_(torch.empty(100, 100), std=0.02, generator=torch.Generator().manual_seed(0))
    >>> round(w.std().item(), 2)
    0.02
    """
    if has_torch_function_variadic(tensor):
        return handle_torch_function(
            normal_, (tensor,), tensor=tensor, mean=mean, std=std, generator=generator
        )
    if _check(tensor, "normal_"):
        return tensor
    if std < 0:
        raise InitArgumentError(f"normal_: std={std!r} is negative: pass std >= 0")
    with torch.no_grad():
        return tensor.normal_(mean, std, generator=generator)


def trunc_normal_(
    tensor: Tensor,
    mean: float = 0.0,
    std: float = 1.0,
    a: float = -2.0,
    b: float = 2.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Fill ``tensor`` with :math:`\mathcal{N}(\text{mean}, \text{std}^2)` truncated to ``[a, b]``.

    ``a`` and ``b`` are absolute cut-offs (torch semantics), not multiples of ``std``; ``std`` is
    the std of the parent normal, so the samples' std is smaller:

    .. math::
        w \sim \mathcal{N}(\mu, \sigma^2 \mid a \le w \le b),\qquad
        \operatorname{Var}(w) = \sigma^2\Big[1 + \frac{\alpha\phi(\alpha) - \beta\phi(\beta)}{Z}
        - \Big(\frac{\phi(\alpha) - \phi(\beta)}{Z}\Big)^2\Big]

    with :math:`\alpha = (a-\mu)/\sigma`, :math:`\beta = (b-\mu)/\sigma`,
    :math:`Z = \Phi(\beta) - \Phi(\alpha)`. Sampling is torch's own method (exact rejection in torch 2.13).

    Args:
        tensor: any-shaped floating-point tensor, filled in place.
        mean, std: the parent normal (``std > 0``). a, b: cut-offs, ``a <= b``.
        generator: ``torch.Generator`` on the tensor's device (default: torch's global one).

    Returns:
        ``tensor``.

    Raises:
        InitDtypeError: integer or bool ``tensor``. InitArgumentError (a ``ValueError`` and a
        ``RuntimeError``): ``std <= 0`` (torch: ``ZeroDivisionError`` for 0, and for ``std < 0``
        the samples of ``|std|``); ``a > b`` (torch: ``RuntimeError``). ``a == b`` fills ``a``,
        as torch.

    Source: ``torch.nn.init.trunc_normal_`` (identical bits for the same generator).

    >>> w = trunc_normal_(torch.empty(3, 5), std=0.02, a=-0.04, b=0.04,
    ...                   generator=torch.Generator().manual_seed(0))
    >>> bool(w.abs().max() <= 0.04)
    True
    """
    if _check(tensor, "trunc_normal_"):
        return tensor
    with torch.no_grad():
        _trunc_normal(tensor, mean, std, a, b, generator)
    return tensor


def constant_(tensor: Tensor, val: float) -> Tensor:
    r"""Fill ``tensor`` with the value ``val`` (:math:`w_{ij} = \text{val}`).

    A constant weight leaves every unit of a layer identical (the symmetry problem): use it for
    biases and norm scales, not for weights.

    Args:
        tensor: any-shaped tensor of any dtype (as torch: an integer tensor gets ``val`` cast
            by ``Tensor.fill_``), filled in place. val: the value.

    Returns:
        ``tensor``.

    Raises:
        TypeError: ``tensor`` is not a tensor.

    Source: ``torch.nn.init.constant_``.

    >>> constant_(torch.empty(2, 2), 0.5)
    tensor([[0.5000, 0.5000],
            [0.5000, 0.5000]])
    """
    if has_torch_function_variadic(tensor):
        return handle_torch_function(constant_, (tensor,), tensor=tensor, val=val)
    if _check(tensor, "constant_", any_dtype=True):
        return tensor
    with torch.no_grad():
        return tensor.fill_(val)


def ones_(tensor: Tensor) -> Tensor:
    r"""Fill ``tensor`` with ones (:math:`w = 1`), e.g. a LayerNorm / BatchNorm scale.

    Args:
        tensor: any-shaped tensor of any dtype (integer and bool too, as torch), filled in place.

    Returns:
        ``tensor``.

    Raises:
        TypeError: ``tensor`` is not a tensor.

    Source: ``torch.nn.init.ones_``.

    >>> ones_(torch.empty(3))
    tensor([1., 1., 1.])
    """
    if _check(tensor, "ones_", any_dtype=True):
        return tensor
    with torch.no_grad():
        return tensor.fill_(1.0)


def zeros_(tensor: Tensor) -> Tensor:
    r"""Fill ``tensor`` with zeros (:math:`w = 0`), e.g. a bias or a residual branch's last layer.

    Args:
        tensor: any-shaped tensor of any dtype (integer and bool too, as torch), filled in place.

    Returns:
        ``tensor``.

    Raises:
        TypeError: ``tensor`` is not a tensor.

    Source: ``torch.nn.init.zeros_``.

    >>> zeros_(torch.empty(3))
    tensor([0., 0., 0.])
    """
    if _check(tensor, "zeros_", any_dtype=True):
        return tensor
    with torch.no_grad():
        return tensor.zero_()


def eye_(tensor: Tensor) -> Tensor:
    r"""Fill the 2-D ``tensor`` with the identity matrix (:math:`W_{ij} = \delta_{ij}`).

    A ``Linear(n, m)`` weight ``(m, n)`` then passes through ``min(m, n)`` of its inputs.

    Args:
        tensor: a 2-D tensor ``(out, in)`` of any dtype (integer and bool too, as torch), filled in
            place.

    Returns:
        ``tensor``.

    Raises:
        InitlabError (a ``ValueError``): not 2-D.

    Source: ``torch.nn.init.eye_``; identity init of recurrent nets: Le, Jaitly & Hinton (2015),
    "A simple way to initialize recurrent networks of rectified linear units".

    >>> eye_(torch.empty(2, 3))
    tensor([[1., 0., 0.],
            [0., 1., 0.]])
    """
    if _check(tensor, "eye_", dims=(2,), any_dtype=True):
        return tensor
    with torch.no_grad():
        _eye(tensor)
    return tensor


def dirac_(tensor: Tensor, groups: int = 1) -> Tensor:
    r"""Fill a conv weight with the Dirac delta: each output channel copies one input channel.

    .. math::
        W[g\,c_g + d,\ d,\ \lfloor k/2 \rfloor] = 1 \quad (d < \min(c_g, c_{in}/g)),
        \qquad 0 \text{ elsewhere}

    where :math:`c_g = c_{out} / \text{groups}` output channels per group.

    Args:
        tensor: a 3-, 4- or 5-D tensor ``(out, in/groups, *k)`` (Conv1d/2d/3d) of any dtype.
        groups: the conv's groups (must divide ``out``); each group preserves its channels.

    Returns:
        ``tensor``.

    Raises:
        InitlabError (a ``ValueError``): not 3-5-D; ``groups`` not dividing dim 0.

    Source: ``torch.nn.init.dirac_``; Zagoruyko & Komodakis (2017), "DiracNets".

    >>> w = dirac_(torch.empty(2, 2, 3))
    >>> w[:, :, 1]
    tensor([[1., 0.],
            [0., 1.]])
    """
    if _check(tensor, "dirac_", dims=(3, 4, 5), what=" (a Conv1d/2d/3d weight)", any_dtype=True):
        return tensor
    if tensor.is_meta:
        return tensor
    with torch.no_grad():
        _dirac(tensor, groups)
    return tensor


def xavier_uniform_(
    tensor: Tensor,
    gain: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Glorot/Xavier uniform: :math:`\mathcal{U}(-a, a)`, variance averaged over both fans.

    .. math::
        a = \text{gain} \times \sqrt{\frac{6}{\text{fan\_in} + \text{fan\_out}}}

    Fans are torch's: ``fan_in = shape[1] * rf``, ``fan_out = shape[0] * rf`` (``rf`` = product of
    the kernel dims); for grouped, transposed or packed weights use :func:`variance_scaling_`.
    Equals Keras ``GlorotUniform`` when ``gain = 1``.

    Args:
        tensor: a floating-point tensor with >= 2 dims, ``(out, in, *k)``, filled in place.
        gain: scaling factor (see :func:`calculate_gain`).
        generator: ``torch.Generator`` on the tensor's device.

    Returns:
        ``tensor``.

    Raises:
        InitDtypeError: integer or bool ``tensor``. InitlabError: fewer than 2 dims.

    Source: Glorot & Bengio (2010), "Understanding the difficulty of training deep feedforward
    neural networks"; ``torch.nn.init.xavier_uniform_`` (identical bits).

    >>> w = xavier_uniform_(torch.empty(3, 5), generator=torch.Generator().manual_seed(0))
    >>> bool(w.abs().max() <= math.sqrt(6 / 8))
    True
    """
    if _check(tensor, "xavier_uniform_", min_dims=2):
        return tensor
    fans = _torch_fans(tensor)
    std = gain * math.sqrt(2.0 / float(fans.fan_in + fans.fan_out))
    a = math.sqrt(3.0) * std
    with torch.no_grad():
        return tensor.uniform_(-a, a, generator=generator)


def xavier_normal_(
    tensor: Tensor,
    gain: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Glorot/Xavier normal: :math:`\mathcal{N}(0, \text{std}^2)`, variance averaged over fans.

    .. math::
        \text{std} = \text{gain} \times \sqrt{\frac{2}{\text{fan\_in} + \text{fan\_out}}}

    Torch's fans (see :func:`xavier_uniform_`). Keras ``GlorotNormal`` samples a *truncated*
    normal instead: that is :func:`glorot_truncated_normal_`.

    Args:
        tensor: a floating-point tensor with >= 2 dims, ``(out, in, *k)``, filled in place.
        gain: scaling factor. generator: ``torch.Generator`` on the tensor's device.

    Returns:
        ``tensor``.

    Raises:
        InitDtypeError: integer or bool ``tensor``. InitlabError: fewer than 2 dims.

    Source: Glorot & Bengio (2010); ``torch.nn.init.xavier_normal_`` (identical bits).

    >>> w = xavier_normal_(torch.empty(300, 100), generator=torch.Generator().manual_seed(0))
    >>> round(w.std().item(), 3)   # sqrt(2 / 400)
    0.071
    """
    if _check(tensor, "xavier_normal_", min_dims=2):
        return tensor
    fans = _torch_fans(tensor)
    std = gain * math.sqrt(2.0 / float(fans.fan_in + fans.fan_out))
    with torch.no_grad():
        return tensor.normal_(0.0, std, generator=generator)


def _kaiming_fan(tensor: Tensor, mode: str, name: str) -> int:
    mode_l = mode.lower() if isinstance(mode, str) else mode
    if mode_l not in ("fan_in", "fan_out"):
        raise InitlabError(
            f"{name}: mode={mode!r} is not supported: use 'fan_in' or 'fan_out' "
            "(variance_scaling_ also offers 'fan_avg' and 'fan_geo_avg')"
        )
    fans = _torch_fans(tensor)
    return fans.fan_in if mode_l == "fan_in" else fans.fan_out


def kaiming_uniform_(
    tensor: Tensor,
    a: float = 0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""He/Kaiming uniform: :math:`\mathcal{U}(-\text{bound}, \text{bound})`.

    .. math::
        \text{bound} = \text{gain} \times \sqrt{\frac{3}{\text{fan\_mode}}},\qquad
        \text{gain} = \texttt{calculate\_gain}(\text{nonlinearity}, a)

    The defaults (``a=0``, ``"leaky_relu"``) give the ReLU gain :math:`\sqrt 2`, i.e. Keras
    ``HeUniform`` ``limit = sqrt(6 / fan_in)``. ``nn.Linear``'s default init is this with
    ``a = sqrt(5)`` (bound ``1 / sqrt(fan_in)``). Torch's fans (see :func:`xavier_uniform_`).

    Args:
        tensor: a floating-point tensor with >= 2 dims, ``(out, in, *k)``, filled in place.
        a: negative slope of the leaky ReLU that follows (only with ``"leaky_relu"``).
        mode: ``"fan_in"`` (preserve the forward variance) or ``"fan_out"`` (the backward).
        nonlinearity: a :func:`calculate_gain` name (``"relu"``, ``"leaky_relu"``, ...).
        generator: ``torch.Generator`` on the tensor's device.

    Returns:
        ``tensor``.

    Raises:
        InitDtypeError: integer or bool ``tensor``. InitlabError: fewer than 2 dims, unknown ``mode``.
        ValueError: unknown ``nonlinearity`` (from :func:`calculate_gain`).

    Source: He, Zhang, Ren & Sun (2015), "Delving deep into rectifiers: surpassing human-level
    performance on ImageNet classification"; ``torch.nn.init.kaiming_uniform_`` (identical bits).

    >>> w = kaiming_uniform_(torch.empty(4, 50), nonlinearity="relu",
    ...                      generator=torch.Generator().manual_seed(0))
    >>> bool(w.abs().max() <= math.sqrt(6 / 50))
    True
    """
    if has_torch_function_variadic(tensor):
        return handle_torch_function(
            kaiming_uniform_, (tensor,), tensor=tensor, a=a, mode=mode,
            nonlinearity=nonlinearity, generator=generator,
        )
    if _check(tensor, "kaiming_uniform_", min_dims=2):
        return tensor
    fan = _kaiming_fan(tensor, mode, "kaiming_uniform_")
    gain = calculate_gain(nonlinearity, a)
    std = gain / math.sqrt(fan)
    bound = math.sqrt(3.0) * std
    with torch.no_grad():
        return tensor.uniform_(-bound, bound, generator=generator)


def kaiming_normal_(
    tensor: Tensor,
    a: float = 0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""He/Kaiming normal: :math:`\mathcal{N}(0, \text{std}^2)`.

    .. math::
        \text{std} = \frac{\text{gain}}{\sqrt{\text{fan\_mode}}},\qquad
        \text{gain} = \texttt{calculate\_gain}(\text{nonlinearity}, a)

    Keras ``HeNormal`` samples a *truncated* normal: that is :func:`he_truncated_normal_`.
    Torch's fans (see :func:`xavier_uniform_`).

    Args:
        tensor: a floating-point tensor with >= 2 dims, ``(out, in, *k)``, filled in place.
        a, mode, nonlinearity, generator: as in :func:`kaiming_uniform_`.

    Returns:
        ``tensor``.

    Raises:
        InitDtypeError: integer or bool ``tensor``. InitlabError: fewer than 2 dims, unknown ``mode``.
        ValueError: unknown ``nonlinearity``.

    Source: He et al. (2015); ``torch.nn.init.kaiming_normal_`` (identical bits).

    >>> w = kaiming_normal_(torch.empty(100, 200), nonlinearity="relu",
    ...                     generator=torch.Generator().manual_seed(0))
    >>> round(w.std().item(), 2)   # sqrt(2 / 200)
    0.1
    """
    if _check(tensor, "kaiming_normal_", min_dims=2):
        return tensor
    fan = _kaiming_fan(tensor, mode, "kaiming_normal_")
    gain = calculate_gain(nonlinearity, a)
    std = gain / math.sqrt(fan)
    with torch.no_grad():
        return tensor.normal_(0, std, generator=generator)


def orthogonal_(
    tensor: Tensor,
    gain: float = 1,
    generator: torch.Generator | None = None,
    *,
    chunks: int = 1,
) -> Tensor:
    r"""Fill ``tensor`` with a (semi-)orthogonal matrix times ``gain``, Haar-distributed.

    The tensor is viewed as ``(rows, cols) = (shape[0], prod(shape[1:]))``:

    .. math::
        W W^\top = \text{gain}^2 I_{rows} \ (rows \le cols), \qquad
        W^\top W = \text{gain}^2 I_{cols} \ (rows > cols)

    Sampled as the QR of a standard Gaussian matrix with the signs of ``diag(R)`` folded into
    ``Q`` (Mezzadri 2007), exactly as torch does (identical bits for float32/float64). For
    ``float16`` / ``bfloat16`` tensors the Gaussian and the QR are float32 and the result is cast.

    Args:
        tensor: a floating-point tensor with >= 2 dims, filled in place.
        gain: scaling factor (see :func:`calculate_gain`).
        generator: ``torch.Generator`` on the tensor's device.
        chunks: keyword-only; split dim 0 into this many equal blocks and make each orthogonal
            independently (a packed weight: LSTM 4 gates, GRU 3, attention QKV 3).

    Returns:
        ``tensor``.

    Raises:
        InitDtypeError: integer or bool ``tensor``. InitlabError: fewer than 2 dims; ``chunks`` not
        dividing dim 0.

    Source: Saxe, McClelland & Ganguli (2014), "Exact solutions to the nonlinear dynamics of
    learning in deep linear neural networks"; ``torch.nn.init.orthogonal_``.

    >>> w = orthogonal_(torch.empty(3, 5), generator=torch.Generator().manual_seed(0))
    >>> torch.allclose(w @ w.T, torch.eye(3), atol=1e-6)
    True
    """
    if _check(tensor, "orthogonal_", min_dims=2):
        return tensor
    _check_chunks(tensor, chunks, "orthogonal_")
    if tensor.is_meta:
        return tensor
    with torch.no_grad():
        _realise(tensor, schemes.Orthogonal(gain), generator, chunks)
    return tensor


def sparse_(
    tensor: Tensor,
    sparsity: float,
    std: float = 0.01,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Fill the 2-D ``tensor`` as a sparse matrix: each column has ``ceil(sparsity * rows)`` zeros
    at random rows, the other entries :math:`\mathcal{N}(0, \text{std}^2)`.

    .. math::
        W_{ij} = m_{ij} z_{ij},\quad z_{ij} \sim \mathcal{N}(0, \text{std}^2),\quad
        \textstyle\sum_i (1 - m_{ij}) = \lceil \text{sparsity} \cdot \text{rows} \rceil

    Args:
        tensor: a 2-D floating-point tensor ``(rows, cols)``, filled in place.
        sparsity: fraction of each column set to zero, in ``[0, 1]``.
        std: std of the non-zero entries.
        generator: ``torch.Generator``; it also draws the row permutations (torch uses the
            global RNG there). With ``generator=None`` the bits are torch's.

    Returns:
        ``tensor``.

    Raises:
        InitDtypeError: integer or bool ``tensor``. InitlabError: not 2-D; ``sparsity`` outside
        ``[0, 1]`` (torch zeroes every row for ``sparsity > 1``). InitArgumentError (a
        ``ValueError`` and a ``RuntimeError``, as torch raises): ``std < 0``.

    Source: Martens (2010), "Deep learning via Hessian-free optimization";
    ``torch.nn.init.sparse_``.

    >>> w = sparse_(torch.empty(10, 4), sparsity=0.3, generator=torch.Generator().manual_seed(0))
    >>> (w == 0).sum(dim=0).tolist()
    [3, 3, 3, 3]
    """
    if _check(tensor, "sparse_", dims=(2,)):
        return tensor
    if not 0.0 <= sparsity <= 1.0:
        raise InitlabError(
            f"sparse_: sparsity={sparsity!r} is outside [0, 1]: pass the fraction of each column to "
            "zero (torch would zero every row for sparsity > 1)"
        )
    if std < 0:
        raise InitArgumentError(f"sparse_: std={std!r} is negative: pass std >= 0")
    if tensor.is_meta:
        return tensor
    with torch.no_grad():
        _sparse(tensor, sparsity, std, generator)
    return tensor


# ---- aliases (assignments, not copies) -------------------------------------------------------------

glorot_uniform_ = xavier_uniform_
glorot_normal_ = xavier_normal_
he_uniform_ = kaiming_uniform_
he_normal_ = kaiming_normal_


# ---- new schemes ---------------------------------------------------------------------------------


def _fill_spec(tensor: Tensor, spec: schemes.Spec, generator) -> Tensor:
    with torch.no_grad():
        _realise(tensor, spec, generator)
    return tensor


def lecun_normal_(
    tensor: Tensor,
    gain: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""LeCun normal: :math:`\mathcal{N}(0, \text{std}^2)` scaled by ``fan_in`` only.

    .. math::
        \text{std} = \frac{\text{gain}}{\sqrt{\text{fan\_in}}}

    With SELU and ``gain = 1`` this is the self-normalising init (Klambauer et al. 2017). Keras
    ``LecunNormal`` samples a truncated normal: that is :func:`lecun_truncated_normal_`.
    Torch's fans (``fan_in = shape[1] * rf``).

    Args:
        tensor: a floating-point tensor with >= 2 dims, ``(out, in, *k)``, filled in place.
        gain: scaling factor. generator: ``torch.Generator`` on the tensor's device.

    Returns:
        ``tensor``.

    Raises:
        InitDtypeError: integer or bool ``tensor``. InitlabError: fewer than 2 dims.

    Source: LeCun, Bottou, Orr & Müller (1998), "Efficient BackProp".

    >>> w = lecun_normal_(torch.empty(200, 100), generator=torch.Generator().manual_seed(0))
    >>> round(w.std().item(), 2)   # 1 / sqrt(100)
    0.1
    """
    if _check(tensor, "lecun_normal_", min_dims=2):
        return tensor
    return _fill_spec(tensor, schemes.lecun_normal(_torch_fans(tensor), gain), generator)


def lecun_uniform_(
    tensor: Tensor,
    gain: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""LeCun uniform: :math:`\mathcal{U}(-\text{bound}, \text{bound})` scaled by ``fan_in``.

    .. math::
        \text{bound} = \text{gain} \times \sqrt{\frac{3}{\text{fan\_in}}}

    Equals Keras ``LecunUniform`` (``limit = sqrt(3 / fan_in)``) when ``gain = 1``.

    Args:
        tensor: a floating-point tensor with >= 2 dims, ``(out, in, *k)``, filled in place.
        gain: scaling factor. generator: ``torch.Generator`` on the tensor's device.

    Returns:
        ``tensor``.

    Raises:
        InitDtypeError: integer or bool ``tensor``. InitlabError: fewer than 2 dims.

    Source: LeCun et al. (1998), "Efficient BackProp".

    >>> w = lecun_uniform_(torch.empty(4, 75), generator=torch.Generator().manual_seed(0))
    >>> bool(w.abs().max() <= 0.2)   # sqrt(3 / 75)
    True
    """
    if _check(tensor, "lecun_uniform_", min_dims=2):
        return tensor
    return _fill_spec(tensor, schemes.lecun_uniform(_torch_fans(tensor), gain), generator)


def glorot_truncated_normal_(
    tensor: Tensor,
    gain: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Glorot with a truncated normal (Keras ``GlorotNormal``): samples have std ``sigma``.

    .. math::
        \sigma = \text{gain}\sqrt{\frac{2}{\text{fan\_in} + \text{fan\_out}}},\quad
        s = \frac{\sigma}{0.87962566103423978},\quad
        w \sim \mathcal{N}(0, s^2 \mid |w| \le 2s)

    (0.8796... is the std of N(0, 1) truncated to [-2, 2].) Torch's fans.

    Args:
        tensor: a floating-point tensor with >= 2 dims, ``(out, in, *k)``, filled in place.
        gain: scaling factor. generator: ``torch.Generator`` on the tensor's device.

    Returns:
        ``tensor``.

    Raises:
        InitDtypeError: integer or bool ``tensor``. InitlabError: fewer than 2 dims.

    Source: Glorot & Bengio (2010); Keras ``GlorotNormal`` / JAX ``glorot_normal``.

    >>> w = glorot_truncated_normal_(torch.empty(300, 100), generator=torch.Generator().manual_seed(0))
    >>> round(w.std().item(), 3)   # sqrt(2 / 400)
    0.071
    """
    if _check(tensor, "glorot_truncated_normal_", min_dims=2):
        return tensor
    return _fill_spec(tensor, schemes.glorot_truncated_normal(_torch_fans(tensor), gain), generator)


def he_truncated_normal_(
    tensor: Tensor,
    a: float = 0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""He with a truncated normal (Keras ``HeNormal``): samples have std ``gain / sqrt(fan)``.

    .. math::
        \sigma = \frac{\text{gain}}{\sqrt{\text{fan\_mode}}},\quad
        s = \frac{\sigma}{0.87962566103423978},\quad
        w \sim \mathcal{N}(0, s^2 \mid |w| \le 2s)

    Same arguments as :func:`kaiming_normal_`; ``mode`` may also be ``"fan_avg"`` or
    ``"fan_geo_avg"``. With the defaults (ReLU gain) it is Keras ``HeNormal``.

    Args:
        tensor: a floating-point tensor with >= 2 dims, ``(out, in, *k)``, filled in place.
        a, nonlinearity: the gain, ``calculate_gain(nonlinearity, a)``.
        mode: which fan. generator: ``torch.Generator`` on the tensor's device.

    Returns:
        ``tensor``.

    Raises:
        InitDtypeError: integer or bool ``tensor``. InitlabError: fewer than 2 dims, unknown ``mode``.
        ValueError: unknown ``nonlinearity``.

    Source: He et al. (2015); Keras ``HeNormal`` / JAX ``he_normal``.

    >>> w = he_truncated_normal_(torch.empty(100, 200), generator=torch.Generator().manual_seed(0))
    >>> round(w.std().item(), 2)   # sqrt(2 / 200)
    0.1
    """
    if _check(tensor, "he_truncated_normal_", min_dims=2):
        return tensor
    gain = calculate_gain(nonlinearity, a)
    mode_l = mode.lower() if isinstance(mode, str) else mode
    spec = schemes.he_truncated_normal(_torch_fans(tensor), gain, mode=mode_l)
    return _fill_spec(tensor, spec, generator)


def lecun_truncated_normal_(
    tensor: Tensor,
    gain: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""LeCun with a truncated normal (Keras ``LecunNormal``): samples have std ``gain/sqrt(fan_in)``.

    .. math::
        \sigma = \frac{\text{gain}}{\sqrt{\text{fan\_in}}},\quad
        s = \frac{\sigma}{0.87962566103423978},\quad
        w \sim \mathcal{N}(0, s^2 \mid |w| \le 2s)

    Args:
        tensor: a floating-point tensor with >= 2 dims, ``(out, in, *k)``, filled in place.
        gain: scaling factor. generator: ``torch.Generator`` on the tensor's device.

    Returns:
        ``tensor``.

    Raises:
        InitDtypeError: integer or bool ``tensor``. InitlabError: fewer than 2 dims.

    Source: LeCun et al. (1998); Klambauer et al. (2017), "Self-normalizing neural networks";
    Keras ``LecunNormal``.

    >>> w = lecun_truncated_normal_(torch.empty(200, 100), generator=torch.Generator().manual_seed(0))
    >>> round(w.std().item(), 2)   # 1 / sqrt(100)
    0.1
    """
    if _check(tensor, "lecun_truncated_normal_", min_dims=2):
        return tensor
    return _fill_spec(tensor, schemes.lecun_truncated_normal(_torch_fans(tensor), gain), generator)


xavier_truncated_normal_ = glorot_truncated_normal_
kaiming_truncated_normal_ = he_truncated_normal_


def variance_scaling_(
    tensor: Tensor,
    scale: float = 1.0,
    mode: str = "fan_in",
    distribution: str = "truncated_normal",
    *,
    layout: str = "torch",
    groups: int = 1,
    transposed: bool = False,
    chunks: int = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""The one core of Glorot, He and LeCun, with true fans: entries of variance ``scale / n``.

    .. math::
        \sigma = \sqrt{\text{scale} / n},\qquad
        n \in \{\text{fan\_in},\ \text{fan\_out},\ \tfrac{\text{fan\_in}+\text{fan\_out}}{2},\
        \sqrt{\text{fan\_in}\,\text{fan\_out}}\}

    realised as ``N(0, sigma^2)`` (``"normal"``), ``U(-sqrt(3) sigma, sqrt(3) sigma)``
    (``"uniform"``), or a normal with parent std ``sigma / 0.87962566103423978`` truncated at two
    parent stds (``"truncated_normal"``, the Keras / JAX default), so the samples have std
    ``sigma``. Unlike the torch-named functions the fans are the ones a unit really has
    (:func:`initlab.fans.compute_fans`): grouped/depthwise convs count ``in/groups`` and
    ``out/groups``, transposed convs read ``(in, out/groups, *k)``, and a packed weight of
    ``chunks`` blocks uses the fans of one block (the blocks are i.i.d., so one draw fills all).

    Args:
        tensor: a floating-point tensor with >= 2 dims, filled in place.
        scale: variance multiplier ``> 0`` (``gain**2``: 1 Glorot/LeCun, 2 He).
        mode: ``"fan_in"``, ``"fan_out"``, ``"fan_avg"`` or ``"fan_geo_avg"``.
        distribution: ``"truncated_normal"``, ``"normal"`` or ``"uniform"``.
        layout: ``"torch"`` (``(out, in/groups, *k)``), ``"keras"`` / ``"jax"``
            (``(*k, in/groups, out)``) or ``"keras_depthwise"`` (``(*k, in, depth_multiplier)``).
        groups: the conv's groups (Flax's ``feature_group_count``). transposed: a transposed-conv
            weight.
        chunks: number of packed blocks along the output axis (QKV 3, LSTM 4, GRU 3).
        generator: ``torch.Generator`` on the tensor's device.

    Returns:
        ``tensor``.

    Raises:
        InitDtypeError: integer or bool ``tensor``. InitlabError: fewer than 2 dims; bad ``scale``,
        ``mode``, ``distribution``, ``layout``, or ``groups`` / ``chunks`` not dividing the axis.

    Source: Keras / JAX ``VarianceScaling``; Glorot & Bengio (2010); He et al. (2015).

    >>> g = torch.Generator().manual_seed(0)
    >>> w = variance_scaling_(torch.empty(1536, 512), 1.0, "fan_avg", "normal", chunks=3, generator=g)
    >>> round(w.std().item(), 3)   # per-chunk Glorot: sqrt(2 / (512 + 512))
    0.044
    """
    if _check(tensor, "variance_scaling_", min_dims=2):
        return tensor
    fans = compute_fans(tensor.shape, layout=layout, groups=groups, transposed=transposed, chunks=chunks)
    spec = schemes.variance_scaling(scale, mode, distribution, fans=fans)
    return _fill_spec(tensor, spec, generator)


def delta_orthogonal_(
    tensor: Tensor,
    gain: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Delta-orthogonal conv init: zero except the spatial centre, an orthogonal matrix.

    For a weight ``(out, in, *k)`` with ``out >= in``:

    .. math::
        W[:, :, \lfloor k/2 \rfloor] = \text{gain}\cdot H,\quad H^\top H = I_{in},\qquad
        W = 0 \text{ elsewhere}

    so the convolution is a norm-preserving map at initialization (dynamical isometry), which
    lets vanilla CNNs of thousands of layers train. ``H`` is Haar-distributed (as
    :func:`orthogonal_`; float32 QR for 16-bit tensors).

    Args:
        tensor: a 3-, 4- or 5-D floating-point tensor ``(out, in, *k)``, ``out >= in``.
        gain: scaling factor. generator: ``torch.Generator`` on the tensor's device.

    Returns:
        ``tensor``.

    Raises:
        InitDtypeError: integer or bool ``tensor``. InitlabError: not 3-5-D; ``out < in``.

    Source: Xiao, Bahri, Sohl-Dickstein, Schoenholz & Pennington (2018), "Dynamical isometry and a
    mean field theory of CNNs: how to train 10,000-layer vanilla convolutional neural networks".

    >>> w = delta_orthogonal_(torch.empty(8, 4, 3, 3), generator=torch.Generator().manual_seed(0))
    >>> c = w[:, :, 1, 1]
    >>> torch.allclose(c.T @ c, torch.eye(4), atol=1e-6), float(w[:, :, 0, 0].abs().max())
    (True, 0.0)
    """
    if _check(tensor, "delta_orthogonal_", dims=(3, 4, 5), what=" (a Conv1d/2d/3d weight)"):
        return tensor
    if tensor.is_meta:
        return tensor
    return _fill_spec(tensor, schemes.DeltaOrthogonal(gain), generator)


def conv_orthogonal_(
    tensor: Tensor,
    gain: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Orthogonal convolution init with full spatial support (Xiao et al. 2018): every tap may be
    non-zero, yet the conv is an isometry at every spatial frequency.

    For a weight ``(out, in, *k)``, the transfer function :math:`W(z) = \sum_t W_t z^t` is

    .. math::
        W(z) = V(z)\,\text{gain}\cdot H,\qquad
        V(z) = \prod_{a}\prod_{f=1}^{k_a-1}\bigl(P_{a,f} + (I - P_{a,f})\,z_a^{\pm 1}\bigr)

    with ``H`` Haar (semi-)orthogonal ``(out, in)`` (as :func:`orthogonal_` draws it) and each
    :math:`P_{a,f}` a random symmetric projection of rank :math:`\lceil out/2 \rceil`. Each factor is
    unitary on the unit circle, so with circular padding :math:`\|W * x\| = \text{gain}\,\|x\|`
    for every ``x`` when ``out >= in``; the taps sum to ``gain * H`` (a constant image sees the
    delta-orthogonal kernel's map), and the entries' total energy equals the delta kernel's. With
    zero padding the isometry holds away from the border. Unlike :func:`delta_orthogonal_`, whose
    conv reads one input position per output, this kernel starts with its whole receptive field
    (the spec is :class:`initlab.schemes.ConvOrthogonal`, which also has a looks-linear form;
    ``init_model(..., "auto")`` keeps delta kernels: :func:`initlab.model.chain.plan_chain` gives the
    measurements). A grouped conv's weight ``(out, in / groups, *k)`` is drawn as one block here;
    for one isometry per group use ``apply_spec_(w, ConvOrthogonal(Orthogonal(gain)), chunks=groups)``.

    Args:
        tensor: a 3-, 4- or 5-D floating-point tensor ``(out, in, *k)``; ``out < in`` gives a
            co-isometry (``W W^* = gain^2 I`` at each frequency).
        gain: scaling factor. generator: ``torch.Generator`` on the tensor's device.

    Returns:
        ``tensor``.

    Raises:
        InitDtypeError: integer or bool ``tensor``. InitlabError: not 3-5-D.

    Source: Xiao, Bahri, Sohl-Dickstein, Schoenholz & Pennington (2018), "Dynamical isometry and a
    mean field theory of CNNs: how to train 10,000-layer vanilla convolutional neural networks",
    ICML (orthogonal kernels built from symmetric projections).

    >>> g = torch.Generator().manual_seed(0)
    >>> w = conv_orthogonal_(torch.empty(8, 8, 3, 3), generator=g)
    >>> torch.allclose(w.sum(dim=(2, 3)) @ w.sum(dim=(2, 3)).T, torch.eye(8), atol=1e-5)
    True
    >>> x = torch.randn(1, 8, 12, 12, generator=g)
    >>> y = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (1, 1, 1, 1), mode="circular"), w)
    >>> bool(torch.isclose(y.norm(), x.norm(), rtol=1e-5))
    True
    """
    if _check(tensor, "conv_orthogonal_", dims=(3, 4, 5), what=" (a Conv1d/2d/3d weight)"):
        return tensor
    if tensor.is_meta:
        return tensor
    return _fill_spec(tensor, schemes.ConvOrthogonal(schemes.Orthogonal(gain)), generator)


def looks_linear_(
    tensor: Tensor,
    gain: float = 1.0,
    *,
    mirror_rows: bool = True,
    mirror_cols: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Looks-linear init: an orthogonal block ``A`` (times ``gain``) mirrored with signs.

    For a 2-D ``(rows, cols)`` Linear weight, with ``A`` Haar (semi-)orthogonal of shape
    ``(rb, cb)`` (``rb = rows/2`` if ``mirror_rows`` else ``rows``; ``cb`` likewise):

    .. math::
        W = \begin{bmatrix} A & -A \\ -A & A \end{bmatrix}\ (\text{both}),\quad
        W = \begin{bmatrix} A \\ -A \end{bmatrix}\ (\text{mirror\_rows}),\quad
        W = \begin{bmatrix} A & -A \end{bmatrix}\ (\text{mirror\_cols}),\qquad
        A A^\top = \text{gain}^2 I\ (rb \le cb),\ A^\top A = \text{gain}^2 I\ (rb > cb)

    Because :math:`\phi(u) - \phi(-u) = c\,u` for ReLU, GELU, SiLU, softplus (``c = 1``) and leaky
    ReLU (``c = 1 + slope``), a chain ``Linear(mirror_cols=False) -> phi -> Linear(both) -> phi
    -> ... -> Linear(mirror_rows=False)`` (zero biases) computes
    :math:`c^{L-1} A_L \cdots A_1 x` at initialization: a product of (semi-)orthogonal maps
    (dynamical isometry), whose gradients do not shatter with depth; the first gradient step
    breaks the mirror symmetry, since :math:`\phi'(u) \ne \phi'(-u)`.

    ``A`` is drawn by the same code as :func:`orthogonal_` (bit-identical to
    ``orthogonal_(torch.empty(rb, cb), gain, generator)``; float32 QR for 16-bit tensors), then
    copied with its signs; ``-A`` is exact in every dtype.

    Args:
        tensor: a 2-D floating-point tensor ``(out_features, in_features)``, filled in place; each
            mirrored dim must be even.
        gain: scaling factor of ``A`` (finite real).
        mirror_rows: keyword-only; mirror dim 0 (outputs), ``[A; -A]`` — a layer whose output
            feeds the ReLU-like activation.
        mirror_cols: keyword-only; mirror dim 1 (inputs), ``[A, -A]`` — a layer reading
            mirrored features (e.g. the classifier head).
        generator: keyword-only; ``torch.Generator`` on the tensor's device.

    Returns:
        ``tensor``.

    Raises:
        InitDtypeError: integer or bool ``tensor``. InitlabError: not 2-D; a mirrored dim of odd size;
        ``gain`` not finite; ``mirror_*`` not bools, or both False (use :func:`orthogonal_`).
        A zero-element tensor warns and is returned unchanged (as :func:`orthogonal_`).

    Source: Balduzzi, Frean, Leary, Lewis, Ma & McWilliams (2017), "The Shattered Gradients
    Problem: If resnets are the answer, then what is the question?", ICML.

    >>> w = looks_linear_(torch.empty(6, 4), generator=torch.Generator().manual_seed(0))
    >>> a = w[:3, :2]
    >>> torch.equal(w, torch.cat([torch.cat([a, -a], 1), torch.cat([-a, a], 1)]))
    True
    >>> torch.allclose(a.T @ a, torch.eye(2), atol=1e-6)
    True
    """
    spec = schemes.LooksLinear(gain, mirror_rows, mirror_cols)
    if _check(tensor, "looks_linear_", dims=(2,), what=" (a Linear weight)"):
        return tensor
    schemes.looks_linear_block(spec, tensor.shape)
    if tensor.is_meta:
        return tensor
    return _fill_spec(tensor, spec, generator)


def delta_looks_linear_(
    tensor: Tensor,
    gain: float = 1.0,
    *,
    mirror_rows: bool = True,
    mirror_cols: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Looks-linear delta kernel: zero except the spatial centre tap, a looks-linear matrix.

    For a conv weight ``(out, in, *k)``, the centre tap is :func:`looks_linear_` of ``(out, in)``
    (``A`` Haar (semi-)orthogonal of shape ``(rb, cb)``, ``rb = out/2`` if ``mirror_rows`` else
    ``out``; ``cb`` likewise):

    .. math::
        W[:, :, \lfloor k/2 \rfloor] = \begin{bmatrix} A & -A \\ -A & A \end{bmatrix}\
        (\text{both}),\ \begin{bmatrix} A \\ -A \end{bmatrix},\ \begin{bmatrix} A & -A \end{bmatrix};
        \qquad W = 0 \text{ elsewhere}

    so a conv chain of them with a ReLU-like :math:`\phi` (:math:`\phi(u) - \phi(-u) = c\,u`) is,
    at every position, the looks-linear MLP of its centre taps: a product of (semi-)orthogonal
    maps at initialization: dynamical isometry for ReLU, which a plain delta-orthogonal kernel cannot
    give (at He's point :math:`\chi_1 = 1`, but ReLU's derivative is 0 or 1, so the Jacobian's
    spectrum still spreads with depth: Pennington et al. 2017). Bit-identical centre tap to
    ``looks_linear_(torch.empty(out, in), ...)`` on the same generator.

    Args:
        tensor: a 3-, 4- or 5-D floating-point tensor ``(out, in, *k)``, filled in place; each
            mirrored channel dim even (odd kernel sizes have a true centre; an even size takes
            ``k // 2``, as :func:`dirac_`).
        gain: scaling factor of ``A`` (finite real).
        mirror_rows: keyword-only; mirror the output channels, ``[A; -A]``.
        mirror_cols: keyword-only; mirror the input channels, ``[A, -A]``.
        generator: keyword-only; ``torch.Generator`` on the tensor's device.

    Returns:
        ``tensor``.

    Raises:
        InitDtypeError: integer or bool ``tensor``. InitlabError: not 3-5-D; a mirrored channel
        dim of odd size; ``gain`` not finite; ``mirror_*`` not bools, or both False (use
        ``apply_spec_(tensor, Delta(Orthogonal(gain)))``). A zero-element tensor warns and is
        returned unchanged.

    Source: Xiao, Bahri, Sohl-Dickstein, Schoenholz & Pennington (2018), "Dynamical isometry and a
    mean field theory of CNNs", ICML; Balduzzi et al. (2017), "The Shattered Gradients Problem", ICML.

    >>> w = delta_looks_linear_(torch.empty(8, 4, 3, 3), generator=torch.Generator().manual_seed(0))
    >>> a = w[:4, :2, 1, 1]
    >>> torch.equal(w[:, :, 1, 1], torch.cat([torch.cat([a, -a], 1), torch.cat([-a, a], 1)]))
    True
    >>> torch.allclose(a.T @ a, torch.eye(2), atol=1e-6), float(w[:, :, 0, 2].abs().max())
    (True, 0.0)
    """
    spec = schemes.Delta(schemes.LooksLinear(gain, mirror_rows, mirror_cols))
    if _check(tensor, "delta_looks_linear_", dims=(3, 4, 5), what=" (a Conv1d/2d/3d weight)"):
        return tensor
    schemes.looks_linear_block(spec.block, tensor.shape[:2])
    if tensor.is_meta:
        return tensor
    return _fill_spec(tensor, spec, generator)


def apply_spec_(
    tensor: Tensor,
    spec: schemes.Spec,
    *,
    generator: torch.Generator | None = None,
    chunks: int = 1,
) -> Tensor:
    r"""Realise an :mod:`initlab.schemes` spec in ``tensor``, in place.

    ==========================  ===================================================================
    spec                        fills ``tensor`` with
    ==========================  ===================================================================
    ``Normal(std, mean)``       :math:`\mathcal{N}(\text{mean}, \text{std}^2)` (``Tensor.normal_``)
    ``Uniform(low, high)``      :math:`\mathcal{U}(\text{low}, \text{high})` (``Tensor.uniform_``)
    ``TruncatedNormal``         parent :math:`\mathcal{N}(\text{mean}, \text{std}^2)` cut to
                                absolute ``[a, b]`` (torch's ``trunc_normal_``)
    ``Constant(value)``         ``value``
    ``Orthogonal(gain)``        :func:`orthogonal_` (>= 2 dims)
    ``Identity(gain)``          ``gain * I`` (2 dims)
    ``Dirac(groups)``           :func:`dirac_` (3-5 dims)
    ``DeltaOrthogonal(gain)``   :func:`delta_orthogonal_` (3-5 dims)
    ``Sparse(sparsity, std)``   :func:`sparse_` (2 dims)
    ``LooksLinear(gain, ...)``  :func:`looks_linear_`: ``[[A, -A], [-A, A]]``, ``[[A], [-A]]`` or
                                ``[A, -A]``, ``A`` orthogonal times ``gain`` (2 dims; mirrored
                                dims even, per chunk)
    ``Delta(block)``            zero but the centre tap, which ``block`` (``Orthogonal`` or
                                ``LooksLinear``) fills as an ``(out, in)`` matrix (3-5 dims;
                                :func:`delta_looks_linear_`)
    ``ConvOrthogonal(block)``   that block spread over every tap by a paraunitary filter: an
                                isometry at every spatial frequency (3-5 dims;
                                :func:`conv_orthogonal_`)
    ==========================  ===================================================================

    The entries then have std ``spec.expected_std`` (for the distribution specs).

    Args:
        tensor: floating-point tensor, filled in place; the dims each spec needs are listed above.
        spec: an :class:`initlab.schemes.Spec`.
        generator: ``torch.Generator`` on the tensor's device.
        chunks: split dim 0 into this many equal blocks (a packed weight) and fill each block
            independently — e.g. ``Orthogonal`` per LSTM gate. Blocks of an i.i.d. spec are
            independent already, so those fill the whole tensor in one draw.

    Returns:
        ``tensor``.

    Raises:
        TypeError: ``spec`` is not a Spec. InitDtypeError: integer or bool ``tensor``.
        InitlabError: too few dims
        for the spec; ``chunks`` not dividing dim 0; a ``LooksLinear`` mirrored dim (of a chunk)
        that is odd; invalid spec parameters.

    Source: the schemes' own papers (see :mod:`initlab.schemes`).

    >>> from initlab.schemes import Orthogonal
    >>> w = apply_spec_(torch.empty(8, 2), Orthogonal(), chunks=4,
    ...                 generator=torch.Generator().manual_seed(0))
    >>> torch.allclose(w[2:4] @ w[2:4].T, torch.eye(2), atol=1e-6)
    True
    """
    min_dims, dims, what = schemes.shape_requirement(spec, "apply_spec_")
    name = f"apply_spec_({spec.describe()})"
    if _check(tensor, name, min_dims=min_dims, dims=dims, what=what):
        return tensor
    _check_chunks(tensor, chunks, "apply_spec_")
    if isinstance(spec, schemes.LooksLinear):  # refuse an odd mirrored dim before any draw
        schemes.looks_linear_block(spec, (tensor.shape[0] // chunks, tensor.shape[1]))
    kernel_specs = (schemes.Delta, schemes.ConvOrthogonal)
    if isinstance(spec, kernel_specs) and isinstance(spec.block, schemes.LooksLinear):
        schemes.looks_linear_block(spec.block, (tensor.shape[0] // chunks, tensor.shape[1]))
    # the specs validated their own parameters (std >= 0, low <= high, ...) when constructed
    if tensor.is_meta and type(spec) in schemes.STRUCTURAL_SHAPES:  # no storage: structural fills are no-ops
        return tensor
    with torch.no_grad():
        _realise(tensor, spec, generator, chunks)
    return tensor


# ---- torch private helpers that third-party code imports from nn.init ---------------------------


def _calculate_fan_in_and_fan_out(tensor: Tensor) -> tuple[int, int]:
    """Torch's ``(fan_in, fan_out)`` of ``tensor`` (``shape[1] * rf``, ``shape[0] * rf``)."""
    if tensor.dim() < 2:
        raise InitlabError(
            "Fan in and fan out can not be computed for tensor with fewer than 2 dimensions "
            f"(got {tensor.dim()})"
        )
    fans = _torch_fans(tensor)
    return fans.fan_in, fans.fan_out


def _calculate_correct_fan(tensor: Tensor, mode: str) -> int:
    """Torch's fan for ``mode`` in ``("fan_in", "fan_out")``."""
    if tensor.dim() < 2:
        _calculate_fan_in_and_fan_out(tensor)
    return _kaiming_fan(tensor, mode, "_calculate_correct_fan")


# ---- torch's deprecated names (FutureWarning, as torch) ---------------------------------------------


def _make_deprecate(meth: Callable[..., Tensor]) -> Callable[..., Tensor]:
    new_name = meth.__name__
    old_name = new_name[:-1]

    def deprecated_init(*args, **kwargs):
        warnings.warn(
            f"`initlab.init.{old_name}` is deprecated in favor of `initlab.init.{new_name}` "
            "(as in torch.nn.init).",
            FutureWarning,
            stacklevel=2,
        )
        return meth(*args, **kwargs)

    deprecated_init.__doc__ = f"Deprecated alias of :func:`{new_name}` (as in ``torch.nn.init``)."
    deprecated_init.__name__ = old_name
    return deprecated_init


uniform = _make_deprecate(uniform_)
normal = _make_deprecate(normal_)
constant = _make_deprecate(constant_)
eye = _make_deprecate(eye_)
dirac = _make_deprecate(dirac_)
xavier_uniform = _make_deprecate(xavier_uniform_)
xavier_normal = _make_deprecate(xavier_normal_)
kaiming_uniform = _make_deprecate(kaiming_uniform_)
kaiming_normal = _make_deprecate(kaiming_normal_)
orthogonal = _make_deprecate(orthogonal_)
sparse = _make_deprecate(sparse_)
