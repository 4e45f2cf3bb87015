"""Fan-in, fan-out and receptive field of a weight, under an explicit layout.

The fans of a weight are the number of connections one unit has: ``fan_in`` counts the inputs that
feed one output unit, ``fan_out`` the outputs that one input unit feeds. Variance-preserving
schemes (Glorot & Bengio 2010; He et al. 2015; LeCun et al. 1998) scale the weight variance by
``1 / fan``, so a wrong fan is a wrong init.

Layouts (``k`` is the kernel size, ``receptive_field = prod(k)``; ``g`` is ``groups``, Keras's
``groups`` and Flax's ``feature_group_count``; ``m`` is a depthwise conv's ``depth_multiplier``):

============================  ==========================  ====================  ======================
layout                        weight shape                fan_in                fan_out
============================  ==========================  ====================  ======================
``"torch"`` Linear            ``(out, in)``               ``in``                ``out``
``"torch"`` ConvNd            ``(out, in/g, *k)``         ``in/g * rf``         ``out/g * rf``
``"torch"`` ConvTransposeNd   ``(in, out/g, *k)``         ``in/g * rf``         ``out/g * rf``
``"keras"`` / ``"jax"``       ``(*k, in/g, out)``         ``in/g * rf``         ``out/g * rf``
``"keras"`` transposed        ``(*k, out/g, in)``         ``in/g * rf``         ``out/g * rf``
``"keras_depthwise"``         ``(*k, in, m)``             ``rf``                ``m * rf``
============================  ==========================  ====================  ======================

Differences from ``torch.nn.init._calculate_fan_in_and_fan_out``, which always reads
``fan_in = shape[1] * rf`` and ``fan_out = shape[0] * rf``:

* grouped and depthwise convolutions count only the connections a unit really has:
  ``Conv2d(4, 4, 3, groups=4)`` (weight ``(4, 1, 3, 3)``) has fans ``(9, 9)``; torch says ``(9, 36)``;
* transposed convolutions read the right dimensions: ``ConvTranspose2d(16, 64, 3)`` (weight
  ``(16, 64, 3, 3)``) has ``fan_in = 16 * 9 = 144``; torch says ``64 * 9 = 576``;
* packed weights (``chunks``) are split into the blocks that are really separate layers:
  ``nn.MultiheadAttention(512, 8).in_proj_weight`` ``(1536, 512)`` is Q, K and V, three
  ``(512, 512)`` maps (``chunks=3``); LSTM weights hold 4 gates, GRU weights 3.

Keras and JAX read ``fan_in = shape[-2] * rf`` and ``fan_out = shape[-1] * rf`` whatever the layer,
so a Keras ``DepthwiseConv2D(3, depth_multiplier=1)`` kernel ``(3, 3, 64, 1)`` gets
``fan_in = 576`` there; each of its output units reads one input channel, so here ``fan_in = 9``.

A 1-D weight has no fan in torch (it raises); Keras uses ``fan_in = fan_out = n``. Choose with
``vector="raise"`` (default, torch) or ``vector="keras"``. A 0-D weight always raises.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Sequence
from dataclasses import dataclass

from initlab.errors import InitlabError

__all__ = ["Fans", "compute_fans", "fan_for_mode", "LAYOUTS", "MODES"]

MODES: tuple[str, ...] = ("fan_in", "fan_out", "fan_avg", "fan_geo_avg")


@dataclass(frozen=True)
class Fans:
    """The fans of one (chunk of a) weight.

    Attributes:
        fan_in: inputs feeding one output unit (count of connections).
        fan_out: outputs fed by one input unit.
        receptive_field: product of the kernel sizes (1 for a dense weight).
    """

    fan_in: int
    fan_out: int
    receptive_field: int = 1

    @property
    def fan_avg(self) -> float:
        """Arithmetic mean ``(fan_in + fan_out) / 2`` (Glorot & Bengio 2010)."""
        return (self.fan_in + self.fan_out) / 2.0

    @property
    def fan_geo_avg(self) -> float:
        """Geometric mean ``sqrt(fan_in * fan_out)``."""
        return math.sqrt(self.fan_in * self.fan_out)


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise InitlabError(f"{name}={value!r} is invalid: pass an integer >= {minimum}")
    return int(value)


def _as_dims(shape: object) -> tuple[int, ...]:
    """``shape`` as a tuple of Python ints; refuses floats, strings, bools and weight tensors."""
    if isinstance(shape, (str, bytes)):
        raise InitlabError(f"shape={shape!r} is not a sequence of ints (it is a string): pass e.g. (out, in)")
    if getattr(shape, "ndim", 1) != 1:
        raise InitlabError(
            f"shape looks like a weight tensor (ndim={shape.ndim}), not a shape: pass weight.shape"
        )
    try:
        entries = list(shape)  # type: ignore[call-overload]
    except TypeError as exc:
        raise InitlabError(f"shape={shape!r} is not a sequence of ints: pass e.g. (out, in)") from exc
    dims = []
    for d in entries:
        if isinstance(d, bool):
            raise InitlabError(f"shape={tuple(entries)!r} has a bool entry: dimensions are ints")
        try:
            dims.append(operator.index(d))
        except TypeError as exc:
            raise InitlabError(
                f"shape={tuple(entries)!r} has a non-integer entry {d!r}: dimensions are ints"
            ) from exc
    return tuple(dims)


def _torch_layout(dims: tuple[int, ...], groups: int, transposed: bool, chunks: int) -> Fans:
    """``(out, in/groups, *k)``, or ``(in, out/groups, *k)`` if transposed."""
    rf = math.prod(dims[2:])
    if transposed:
        if chunks != 1:
            raise InitlabError("chunks is not supported for transposed weights: pass chunks=1")
        if dims[0] % groups:
            raise InitlabError(
                f"groups={groups} does not divide dim 0 (in_channels = {dims[0]}) of the "
                f"transposed weight {dims}: pass the module's own `groups`"
            )
        return Fans(dims[0] // groups * rf, dims[1] * rf, rf)
    # possibly `chunks` blocks stacked along dim 0
    if dims[0] % chunks:
        raise InitlabError(
            f"chunks={chunks} does not divide dim 0 (= {dims[0]}) of shape {dims}: "
            "packed weights stack equal blocks along dim 0"
        )
    block = dims[0] // chunks
    if block % groups:
        raise InitlabError(
            f"groups={groups} does not divide the output channels (= {block}) of shape "
            f"{dims}: pass the module's own `groups`"
        )
    return Fans(dims[1] * rf, block // groups * rf, rf)


def _keras_layout(dims: tuple[int, ...], groups: int, transposed: bool, chunks: int) -> Fans:
    """``(*k, in/groups, out)`` (Keras ``Conv*``, Flax ``Conv`` with ``feature_group_count``), or
    ``(*k, out/groups, in)`` if transposed (``Conv*Transpose``)."""
    rf = math.prod(dims[:-2])
    if transposed:
        if chunks != 1:
            raise InitlabError("chunks is not supported for transposed weights: pass chunks=1")
        c_out_g, c_in = dims[-2], dims[-1]
        if c_in % groups:
            raise InitlabError(
                f"groups={groups} does not divide the input channels (= {c_in}) of the transposed "
                f"Keras kernel {dims}: pass the layer's own `groups`"
            )
        return Fans(c_in // groups * rf, c_out_g * rf, rf)
    c_in, c_out = dims[-2], dims[-1]
    if c_out % chunks:
        raise InitlabError(
            f"chunks={chunks} does not divide the last dim (= {c_out}) of shape {dims}: "
            "in Keras layout packed blocks stack along the output axis"
        )
    c_out //= chunks
    if c_out % groups:
        raise InitlabError(f"groups={groups} does not divide the output dim (= {c_out}) of {dims}")
    return Fans(c_in * rf, c_out // groups * rf, rf)


def _keras_depthwise_layout(dims: tuple[int, ...], groups: int, transposed: bool, chunks: int) -> Fans:
    """``(*k, in, multiplier)`` (Keras ``DepthwiseConv*``, ``SeparableConv*`` depthwise kernel):
    an output unit reads one input channel over the kernel, an input unit feeds ``multiplier``
    output channels at each kernel position."""
    where = f"layout='keras_depthwise' (kernel (*k, in_channels, depth_multiplier), shape {dims})"
    if len(dims) < 3:
        raise InitlabError(
            f"{where} needs >= 3 dims: a Dense kernel (in, out) is layout='keras'"
        )
    if groups not in (1, dims[-2]):
        raise InitlabError(
            f"groups={groups} contradicts {where}, which means groups = in_channels "
            f"(= {dims[-2]}): leave groups=1"
        )
    if transposed:
        raise InitlabError(f"transposed=True with {where}: Keras has no transposed depthwise conv")
    if chunks != 1:
        raise InitlabError(f"chunks={chunks} with {where}: a depthwise kernel packs no blocks; pass chunks=1")
    rf = math.prod(dims[:-2])
    return Fans(rf, dims[-1] * rf, rf)


#: layout name -> fans of an N-D (N >= 2) shape in that layout; one entry and its test per layout.
_LAYOUT_FANS = {
    "torch": _torch_layout,
    "keras": _keras_layout,
    "jax": _keras_layout,
    "keras_depthwise": _keras_depthwise_layout,
}
LAYOUTS: tuple[str, ...] = tuple(_LAYOUT_FANS)


def _check_layout(layout: object) -> str:
    if isinstance(layout, str) and layout in _LAYOUT_FANS:
        return layout
    hint = ""
    if isinstance(layout, str) and "depthwise" in layout.lower():
        hint = (
            " (a Keras DepthwiseConv kernel (*k, in, depth_multiplier) is 'keras_depthwise'; a torch "
            "or JAX depthwise kernel is 'torch' / 'jax' with groups=in_channels)"
        )
    raise InitlabError(f"layout={layout!r} is unknown: use one of {', '.join(LAYOUTS)}{hint}")


def compute_fans(
    shape: Sequence[int],
    *,
    layout: str = "torch",
    groups: int = 1,
    transposed: bool = False,
    chunks: int = 1,
    vector: str = "raise",
) -> Fans:
    """Fans of a weight of ``shape`` under ``layout`` (see the module table).

    .. math::
        \\mathrm{fan\\_in} = \\frac{c_{in}}{g}\\,\\prod k, \\qquad
        \\mathrm{fan\\_out} = \\frac{c_{out}}{g}\\,\\prod k

    A Keras depthwise kernel ``(*k, c_in, m)`` has ``g = c_in`` and ``c_out = m\\,c_in``, so
    ``fan_in = prod(k)`` and ``fan_out = m * prod(k)``.

    Args:
        shape: the weight's shape, a sequence of non-negative ints (``torch.Size`` works).
        layout: ``"torch"`` — Linear ``(out, in)``, ConvNd ``(out, in/groups, *k)``, and with
            ``transposed=True`` ConvTransposeNd ``(in, out/groups, *k)``; ``"keras"`` / ``"jax"`` —
            ``(*k, in/groups, out)``, and with ``transposed=True`` (``Conv2DTranspose``)
            ``(*k, out/groups, in)``; ``"keras_depthwise"`` — a Keras ``DepthwiseConv1D/2D``
            (or ``SeparableConv*`` depthwise) kernel ``(*k, in, depth_multiplier)``, >= 3 dims.
        groups: convolution groups ``g`` (``groups == in_channels`` for depthwise): torch's and
            Keras's ``groups``, Flax's ``feature_group_count``. For ``"torch"`` it must divide
            ``shape[0]`` (out channels, or in channels if transposed); for ``"keras"`` / ``"jax"``
            it must divide ``shape[-1]``; ``"keras_depthwise"`` implies it (leave it 1).
        transposed: the weight is a transposed-convolution weight (``"torch"``, ``"keras"``,
            ``"jax"``).
        chunks: the weight packs this many equal blocks (QKV: 3, LSTM: 4, GRU: 3) along the output
            axis (dim 0 in torch layout, the last axis in Keras layout); fans are per block.
        vector: what a 1-D shape means: ``"raise"`` (torch) or ``"keras"`` (``fan_in = fan_out = n``).

    Returns:
        :class:`Fans` of one block.

    Raises:
        InitlabError: a shape that is not a sequence of ints (a string, floats, bools, or a weight
            tensor instead of its shape); 0-D shape; 1-D shape with ``vector="raise"``; unknown ``layout`` or
            ``vector``; ``groups`` or ``chunks`` not a positive int or not dividing the axis;
            ``"keras_depthwise"`` with fewer than 3 dims, ``transposed``, ``chunks`` or a
            ``groups`` other than 1 or ``in``.

    Source: Glorot & Bengio (2010) define the fans as the units' connection counts; the layouts
    are torch's, Keras's and Flax's kernel shapes.

    Example:
        >>> compute_fans((4, 1, 3, 3), groups=4)          # depthwise Conv2d(4, 4, 3, groups=4)
        Fans(fan_in=9, fan_out=9, receptive_field=9)
        >>> compute_fans((16, 64, 3, 3), transposed=True).fan_in   # ConvTranspose2d(16, 64, 3)
        144
        >>> compute_fans((1536, 512), chunks=3)           # MultiheadAttention(512, 8) in_proj
        Fans(fan_in=512, fan_out=512, receptive_field=1)
        >>> compute_fans((3, 3, 16, 32), layout="keras")
        Fans(fan_in=144, fan_out=288, receptive_field=9)
        >>> compute_fans((3, 3, 64, 2), layout="keras_depthwise")  # DepthwiseConv2D(3, depth_multiplier=2)
        Fans(fan_in=9, fan_out=18, receptive_field=9)
        >>> compute_fans((3, 3, 1, 64), layout="jax", groups=64)  # Conv(64, (3, 3), feature_group_count=64)
        Fans(fan_in=9, fan_out=9, receptive_field=9)
    """
    dims = _as_dims(shape)
    for d in dims:
        if d < 0:
            raise InitlabError(f"shape={dims} has a negative dimension: dimensions must be >= 0")
    layout_fans = _LAYOUT_FANS[_check_layout(layout)]
    if vector not in ("raise", "keras"):
        raise InitlabError(f"vector={vector!r} is unknown: use 'raise' (torch) or 'keras'")
    groups = _check_int("groups", groups, 1)
    chunks = _check_int("chunks", chunks, 1)

    if len(dims) == 0:
        raise InitlabError(
            "fans are not defined for a 0-D (scalar) tensor: pass a weight with >= 1 dimension"
        )
    if len(dims) == 1:
        if vector == "raise":
            raise InitlabError(
                f"fans are not defined for a 1-D tensor of shape {dims} (torch raises here): "
                "pass vector='keras' to use fan_in = fan_out = n, or a weight with >= 2 dims"
            )
        n = dims[0]
        if n % chunks:
            raise InitlabError(f"chunks={chunks} does not divide the length {n} of shape {dims}")
        return Fans(n // chunks, n // chunks, 1)
    return layout_fans(dims, groups, bool(transposed), chunks)


def fan_for_mode(fans: Fans, mode: str) -> float:
    """The fan that variance-scaling mode ``mode`` divides by.

    ``"fan_in"`` preserves the forward variance (He et al. 2015, LeCun); ``"fan_out"`` the
    backward variance; ``"fan_avg"`` is Glorot & Bengio's (2010) compromise
    ``(fan_in + fan_out) / 2``; ``"fan_geo_avg"`` is ``sqrt(fan_in * fan_out)``.

    Raises:
        InitlabError: unknown ``mode``.

    >>> fan_for_mode(Fans(100, 300), "fan_avg")
    200.0
    """
    if mode not in MODES:
        raise InitlabError(f"mode={mode!r} is unknown: use one of {', '.join(MODES)}")
    return float(getattr(fans, mode))
