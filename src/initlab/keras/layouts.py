"""Keras kernel layouts: the true fans of a kernel, and the torch weight it is the same layer as.

======================  ==============================  ==========================  ====================
layout                  kernel shape (Keras layer)      fan_in                      fan_out
======================  ==============================  ==========================  ====================
``"keras"``             ``(in, out)`` ``Dense``;        ``in/g * rf``               ``out/g * rf``
                        ``(*k, in/g, out)`` ``ConvND``;
                        ``(n,)`` a vector               ``n``                       ``n``
``"keras_depthwise"``   ``(*k, in, m)``                 ``rf``                      ``m * rf``
                        ``DepthwiseConvND``
``"keras_transposed"``  ``(*k, out/g, in)``             ``in/g * prod(k / s)``      ``out/g * rf``
                        ``ConvNDTranspose``
``"einsum"``            ``EinsumDense``: from its       product of the contracted   product of the
                        ``equation``                    axes                        output-only axes
======================  ==============================  ==========================  ====================

(``rf = prod(k)``, ``g`` the layer's ``groups``, ``m`` its ``depth_multiplier``, ``s`` its ``strides``.)
Keras's own initializers read ``fan_in = shape[-2] * rf`` for every kernel (keras-team/keras#11773,
tensorflow/tensorflow#31192): a ``DepthwiseConv2D(3)`` kernel ``(3, 3, 64, 1)`` gets ``fan_in = 576``,
here 9; a ``Conv2DTranspose`` kernel ``(*k, out, in)`` gets ``fan_in = out * rf``, here ``in * rf``,
divided by ``prod(s)``: with stride ``s`` an output position reads ``k/s`` taps per dimension, as
initlab's torch ``ConvTranspose`` handler counts them. An ``EinsumDense`` axis that the input, the
kernel and the output share (per-head weights ``"bhi,hio->bho"``) is a separate block, like a group:
it is in neither fan (Keras counts it in ``fan_out``), and structural schemes fill each block on its own
(:meth:`KernelLayout.blocks`).

Every kernel is also seen as the torch weight of the same layer (:func:`to_torch_shape`,
:func:`from_torch`): ``Dense`` ``(in, out)`` is ``Linear`` ``(out, in)``; ``(*k, in, out)`` is
``(out, in, *k)``; a depthwise ``(*k, in, m)`` is ``(in * m, 1, *k)`` with ``groups = in``; an einsum
kernel is ``(prod(output axes), prod(input axes))``. The Keras front end draws that torch weight with
:mod:`initlab.numpy_init` and moves it into the Keras layout, so a Keras layer and its torch twin get
the same numbers from the same ``rng``.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from initlab.errors import InitlabError
from initlab.fans import Fans, compute_fans

__all__ = ["KERAS_LAYOUTS", "KernelLayout", "kernel_layout", "einsum_axes"]

#: Layout names the Keras front end accepts.
KERAS_LAYOUTS: tuple[str, ...] = ("keras", "keras_depthwise", "keras_transposed", "einsum")

_EQUATION = re.compile(
    r"^\s*(\.\.\.)?([a-zA-Z]*)(\.\.\.)?\s*,\s*([a-zA-Z]+)\s*->\s*(\.\.\.)?([a-zA-Z]*)(\.\.\.)?\s*$")


def einsum_axes(equation: str) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """The kernel axes of an ``EinsumDense`` ``equation``: ``(contracted, output_only, shared)``.

    ``contracted`` axes appear in the input and the kernel but not the output (summed over: they make
    ``fan_in``); ``output_only`` axes in the kernel and the output but not the input (``fan_out``);
    ``shared`` axes in all three (independent blocks, in neither fan).

    Raises:
        InitlabError: an equation that is not ``"input,kernel->output"`` (``...`` allowed in the input
            and output), or a kernel axis that is in neither the input nor the output.

    >>> einsum_axes("abc,cde->abde")        # MultiHeadAttention's query projection
    ((0,), (1, 2), ())
    >>> einsum_axes("bhi,hio->bho")         # per-head weights
    ((1,), (2,), (0,))
    """
    match = _EQUATION.match(equation) if isinstance(equation, str) else None
    if match is None:
        raise InitlabError(
            f"equation={equation!r} is not an EinsumDense equation: pass the layer's own, e.g. 'ab,bc->ac'"
        )
    inputs, kernel, outputs = set(match.group(2)), match.group(4), set(match.group(6))
    contracted, output_only, shared = [], [], []
    for i, axis in enumerate(kernel):
        if axis in inputs and axis in outputs:
            shared.append(i)
        elif axis in inputs:
            contracted.append(i)
        elif axis in outputs:
            output_only.append(i)
        else:
            raise InitlabError(
                f"equation={equation!r}: kernel axis {axis!r} is in neither the input nor the output "
                "(EinsumDense refuses it too): fix the equation"
            )
    return tuple(contracted), tuple(output_only), tuple(shared)


def _check_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise InitlabError(f"{name}={value!r} is invalid: pass an integer >= {minimum}")
    return int(value)


def _strides(strides: object, dims: int) -> tuple[int, ...]:
    """``strides`` (an int or one int per kernel dim) as a tuple of ``dims`` ints."""
    if strides is None:
        return (1,) * dims
    if isinstance(strides, numbers.Integral) and not isinstance(strides, bool):
        return (_check_int("strides", strides),) * dims
    try:
        out = tuple(_check_int("strides", s) for s in strides)  # type: ignore[union-attr]
    except TypeError:
        raise InitlabError(f"strides={strides!r} is invalid: pass an int or a tuple of ints") from None
    if len(out) != dims:
        raise InitlabError(
            f"strides={strides!r} has {len(out)} entries for a kernel with {dims} spatial dims")
    return out


@dataclass(frozen=True)
class KernelLayout:
    """How to read a Keras kernel: its :data:`KERAS_LAYOUTS` name and the layer's options.

    Attributes:
        name: the layout. groups: the layer's ``groups`` (``"keras"``, ``"keras_transposed"``).
        chunks: blocks packed along the output (last) axis: LSTM 4 gates, GRU 3.
        strides: a transposed conv's strides (``None``: 1). equation: an ``EinsumDense`` equation.
    """

    name: str = "keras"
    groups: int = 1
    chunks: int = 1
    strides: tuple[int, ...] | int | None = None
    equation: str | None = None

    def __post_init__(self) -> None:
        if self.name not in KERAS_LAYOUTS:
            raise InitlabError(f"layout={self.name!r} is unknown: use one of {', '.join(KERAS_LAYOUTS)}")
        _check_int("groups", self.groups)
        _check_int("chunks", self.chunks)
        if self.name == "einsum":
            if self.equation is None:
                raise InitlabError("layout='einsum' needs equation=: pass the EinsumDense layer's equation")
            einsum_axes(self.equation)
            if self.chunks != 1 or self.groups != 1:
                raise InitlabError("layout='einsum' takes no chunks or groups: pass chunks=1, groups=1")
        elif self.equation is not None:
            raise InitlabError(f"equation= is for layout='einsum', not layout={self.name!r}")
        if self.strides is not None and self.name != "keras_transposed":
            raise InitlabError(
                f"strides= is for layout='keras_transposed' (a ConvNDTranspose kernel), not {self.name!r}: "
                "a forward conv's fans do not depend on its strides"
            )

    def _dims(self, shape: Sequence[int]) -> tuple[int, ...]:
        dims = tuple(int(d) for d in shape)
        need = {"keras_depthwise": 3, "keras_transposed": 3, "keras": 1}.get(self.name, 2)
        if len(dims) < need:
            raise InitlabError(
                f"layout={self.name!r} needs a kernel with at least {need} dims, got shape {dims}"
                + (": a Dense kernel (in, out) is layout='keras'" if len(dims) == 2 else "")
            )
        if self.name == "einsum":
            contracted, out, shared = einsum_axes(self.equation)  # type: ignore[arg-type]
            if len(contracted) + len(out) + len(shared) != len(dims):
                raise InitlabError(
                    f"equation={self.equation!r} names {len(contracted) + len(out) + len(shared)} kernel "
                    "axes, "
                    f"the kernel has shape {dims}: pass the equation of this layer"
                )
        return dims

    def fans(self, shape: Sequence[int]) -> Fans:
        """The true :class:`~initlab.fans.Fans` of one block of a kernel of ``shape``.

        Raises:
            InitlabError: a shape this layout cannot read (too few dims, ``groups`` or ``chunks`` not
                dividing their axis, an equation with another number of kernel axes).

        >>> KernelLayout("keras_transposed", strides=2).fans((3, 3, 8, 16))   # Conv2DTranspose(8, 3, 2)
        Fans(fan_in=36, fan_out=72, receptive_field=9)
        """
        dims = self._dims(shape)
        if self.name == "keras":  # a vector (a bias): fan_in = fan_out = n, as Keras
            return compute_fans(dims, layout="keras", groups=self.groups, chunks=self.chunks, vector="keras")
        if self.name == "keras_depthwise":
            return compute_fans(dims, layout="keras_depthwise", chunks=self.chunks)
        if self.name == "keras_transposed":
            fans = compute_fans(dims, layout="keras", groups=self.groups, transposed=True, chunks=self.chunks)
            s = math.prod(_strides(self.strides, len(dims) - 2))
            return Fans(max(1, round(fans.fan_in / s)), fans.fan_out, fans.receptive_field) if s > 1 else fans
        contracted, out, _ = einsum_axes(self.equation)  # type: ignore[arg-type]
        return Fans(math.prod(dims[i] for i in contracted), math.prod(dims[i] for i in out), 1)

    def blocks(self, shape: Sequence[int]) -> int:
        """The independent blocks of a kernel of ``shape`` along the torch twin's output axis: ``chunks``
        (LSTM gates), or for an einsum kernel the product of its shared axes (one block per head of
        ``"bhi,hio->bho"``: a structural scheme, orthogonal or looks-linear, fills each on its own).

        >>> KernelLayout("einsum", equation="bhi,hio->bho").blocks((4, 6, 5))
        4
        """
        if self.name != "einsum":
            return self.chunks
        dims = self._dims(shape)
        return math.prod(dims[i] for i in einsum_axes(self.equation)[2])  # type: ignore[arg-type]

    def conv_groups(self, shape: Sequence[int]) -> int:
        """The groups of a conv kernel of ``shape``: ``groups``, or one per input channel for a
        depthwise kernel ``(*k, in, m)``; 1 for einsum and Dense kernels.

        >>> KernelLayout("keras_depthwise").conv_groups((3, 3, 8, 2))
        8
        >>> KernelLayout(groups=4).conv_groups((3, 3, 2, 8))
        4
        """
        if self.name == "keras_depthwise" and len(shape) >= 3:
            return int(shape[-2])
        return 1 if self.name == "einsum" else self.groups

    def keras_fans(self, shape: Sequence[int]) -> Fans:
        """The fans Keras's own initializers read (``keras.src.initializers.compute_fans``):
        ``(shape[-2] * rf, shape[-1] * rf)`` for every kernel, ``n`` for a vector; an einsum kernel's input
        and output axes (its shared axes among the outputs), as ``EinsumDense`` passes them.

        >>> KernelLayout("keras_depthwise").keras_fans((3, 3, 64, 1))
        Fans(fan_in=576, fan_out=9, receptive_field=9)
        """
        dims = self._dims(shape)
        if len(dims) == 1:
            return Fans(dims[0], dims[0], 1)
        if self.name == "einsum":
            contracted, out, shared = einsum_axes(self.equation)  # type: ignore[arg-type]
            outputs = math.prod(dims[i] for i in (*out, *shared))
            return Fans(math.prod(dims[i] for i in contracted), outputs, 1)
        rf = math.prod(dims[:-2])
        return Fans(dims[-2] * rf, dims[-1] * rf, rf)

    def torch_fans(self, shape: Sequence[int]) -> Fans:
        """The fans torch's own init reads from the torch twin ``(o, i, *k)``
        (``_calculate_fan_in_and_fan_out``: ``(i * rf, o * rf)``; a transposed conv's twin is
        ``(in, out / g, *k)``, so its ``fan_in`` is ``out / g * rf``), ``n`` for a vector.

        >>> KernelLayout("keras_transposed", strides=2).torch_fans((3, 3, 8, 16))  # ConvTranspose2d(16, 8, 3)
        Fans(fan_in=72, fan_out=144, receptive_field=9)
        """
        twin = self.to_torch_shape(shape)
        if len(twin) == 1:
            return Fans(twin[0], twin[0], 1)
        rf = math.prod(twin[2:])
        return Fans(twin[1] * rf, twin[0] * rf, rf)

    def connections(self, shape: Sequence[int]) -> Fans:
        """The fans as connection counts (a transposed kernel's ``fan_in = in/g * prod(k)``, not divided
        by the strides): what the moment propagation reads, which applies the strides itself."""
        if self.name != "keras_transposed":
            return self.fans(shape)
        return compute_fans(self._dims(shape), layout="keras", groups=self.groups, transposed=True)

    # ---- the torch twin ---------------------------------------------------------------------------

    def _einsum_order(self, dims: tuple[int, ...]) -> tuple[int, ...]:
        contracted, out, shared = einsum_axes(self.equation)  # type: ignore[arg-type]
        return (*shared, *out, *contracted)

    def to_torch_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """The shape of the same layer's torch weight (module docstring).

        >>> KernelLayout().to_torch_shape((3, 3, 16, 32))
        (32, 16, 3, 3)
        >>> KernelLayout("keras_depthwise").to_torch_shape((3, 3, 8, 2))
        (16, 1, 3, 3)
        """
        dims = self._dims(shape)
        if self.name == "einsum":
            contracted, _, _ = einsum_axes(self.equation)  # type: ignore[arg-type]
            n_in = math.prod(dims[i] for i in contracted)
            return (math.prod(dims) // max(n_in, 1) if n_in else 0, n_in)
        if len(dims) == 1:
            return dims
        if self.name == "keras_depthwise":
            dims = (*dims[:-2], 1, dims[-2] * dims[-1])
        return (dims[-1], dims[-2], *dims[:-2])

    def from_torch(self, weight: np.ndarray, shape: Sequence[int]) -> np.ndarray:
        """The Keras kernel of ``shape`` holding the torch weight ``weight`` (of :meth:`to_torch_shape`)."""
        dims = self._dims(shape)
        if self.name == "einsum":
            order = self._einsum_order(dims)
            stacked = weight.reshape(tuple(dims[i] for i in order))
            return np.ascontiguousarray(np.transpose(stacked, np.argsort(order)))
        nd = weight.ndim
        if nd == 1:
            return np.ascontiguousarray(weight.reshape(dims))
        keras = np.transpose(weight, (*range(2, nd), 1, 0))  # (out, in, *k) -> (*k, in, out)
        return np.ascontiguousarray(keras.reshape(dims))

    def to_torch(self, kernel: np.ndarray) -> np.ndarray:
        """The torch weight of the same layer as the Keras ``kernel`` (the inverse of :meth:`from_torch`).

        >>> k = np.arange(24.0).reshape(2, 3, 4)
        >>> lay = KernelLayout("einsum", equation="ab,bcd->acd")
        >>> bool((lay.from_torch(lay.to_torch(k), k.shape) == k).all())
        True
        """
        dims = self._dims(kernel.shape)
        if self.name == "einsum":
            return np.ascontiguousarray(
                np.transpose(kernel, self._einsum_order(dims)).reshape(self.to_torch_shape(dims)))
        if self.name == "keras_depthwise":
            kernel = kernel.reshape((*dims[:-2], 1, dims[-2] * dims[-1]))
        nd = kernel.ndim
        if nd == 1:
            return np.ascontiguousarray(kernel)
        return np.ascontiguousarray(np.transpose(kernel, (nd - 1, nd - 2, *range(nd - 2))))


def kernel_layout(layout: str = "keras", *, groups: int = 1, chunks: int = 1,
                  strides: int | Sequence[int] | None = None, equation: str | None = None) -> KernelLayout:
    """A checked :class:`KernelLayout` (``strides`` normalised to a tuple or ``None``).

    Raises:
        InitlabError: an unknown layout; ``groups`` / ``chunks`` not positive ints; ``strides`` outside
            ``"keras_transposed"`` or not positive ints; ``equation`` missing for (or given outside)
            ``"einsum"``, or malformed.

    >>> kernel_layout("einsum", equation="ab,bcd->acd").fans((1575, 2, 3))
    Fans(fan_in=1575, fan_out=6, receptive_field=1)
    """
    if strides is not None and not (isinstance(strides, numbers.Integral) and not isinstance(strides, bool)):
        try:
            strides = tuple(strides)  # type: ignore[arg-type]
        except TypeError:
            raise InitlabError(f"strides={strides!r} is invalid: pass an int or a tuple of ints") from None
        for s in strides:
            _check_int("strides", s)
    elif strides is not None:
        _check_int("strides", strides)
    return KernelLayout(layout, groups, chunks, strides, equation)  # type: ignore[arg-type]
