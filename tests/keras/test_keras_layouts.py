"""True fans of Keras kernels (Depthwise, Transposed, EinsumDense, grouped, packed) and the torch twin."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from initlab.errors import InitlabError
from initlab.fans import Fans
from initlab.keras import kernel_layout
from initlab.keras.kernels import layer_slots


def _built(layer, input_shape):
    layer.build(input_shape)
    return {s.role: s for s in layer_slots(layer)}


def test_depthwise_kernel_reads_one_channel():
    # DepthwiseConv2D(3, depth_multiplier=2) on 64 channels: kernel (3, 3, 64, 2)
    slot = _built(keras.layers.DepthwiseConv2D(3, depth_multiplier=2), (None, 8, 8, 64))["kernel"]
    assert tuple(slot.variable.shape) == (3, 3, 64, 2)
    assert slot.layout.fans((3, 3, 64, 2)) == Fans(fan_in=9, fan_out=18, receptive_field=9)
    # Keras's own fans for the same kernel: shape[-2] * rf
    assert keras.src.initializers.random_initializers.compute_fans((3, 3, 64, 2)) == (576, 18)


@pytest.mark.parametrize("strides", [1, 2, (2, 3)])
def test_transposed_kernel_fan_in_is_inputs_times_taps_per_output(strides):
    layer = keras.layers.Conv2DTranspose(16, (4, 6), strides=strides)
    slot = _built(layer, (None, 5, 5, 8))["kernel"]
    shape = tuple(slot.variable.shape)
    assert shape == (4, 6, 16, 8)  # (*k, out, in)
    s = (strides, strides) if isinstance(strides, int) else strides
    expected_in = round(8 * 4 * 6 / (s[0] * s[1]))  # in * prod(k / s), initlab's torch ConvTranspose rule
    fans = slot.layout.fans(shape)
    assert (fans.fan_in, fans.fan_out) == (expected_in, 16 * 24)
    assert slot.layout.connections(shape).fan_in == 8 * 24


@pytest.mark.parametrize(
    ("equation", "shape", "fan_in", "fan_out"),
    [
        ("abc,cde->abde", (32, 4, 8), 32, 32),  # MultiHeadAttention's query projection
        ("abcd,cde->abe", (4, 8, 32), 32, 32),  # its output projection
        ("ab,bcd->acd", (15, 2, 3), 15, 6),
        ("bhi,hio->bho", (4, 16, 8), 16, 8),  # per-head weights: h is a block, in neither fan
        ("...b,bc->...c", (7, 5), 7, 5),
    ],
)
def test_einsum_fans_from_the_equation(equation, shape, fan_in, fan_out):
    lay = kernel_layout("einsum", equation=equation)
    assert lay.fans(shape) == Fans(fan_in, fan_out, 1)


def test_einsum_dense_layer_slot_uses_its_equation():
    layer = keras.layers.EinsumDense("abc,cde->abde", output_shape=(None, 4, 8), bias_axes="de")
    slot = _built(layer, (None, 10, 32))["kernel"]
    assert slot.layout.fans(tuple(slot.variable.shape)) == Fans(32, 32, 1)


def test_grouped_conv_and_packed_lstm():
    conv = _built(keras.layers.Conv2D(32, 3, groups=4), (None, 8, 8, 16))["kernel"]
    assert tuple(conv.variable.shape) == (3, 3, 4, 32)
    assert conv.layout.fans((3, 3, 4, 32)) == Fans(36, 72, 9)
    lstm = keras.layers.LSTM(8)
    lstm.build((None, 5, 3))
    slots = {s.role: s for s in layer_slots(lstm)}
    assert slots["kernel"].layout.fans((3, 32)) == Fans(3, 8, 1)  # per gate
    assert slots["recurrent_kernel"].layout.fans((8, 32)) == Fans(8, 8, 1)


@pytest.mark.parametrize(
    ("layout", "kw", "shape", "torch_shape"),
    [
        ("keras", {}, (5, 7), (7, 5)),
        ("keras", {}, (3, 3, 4, 6), (6, 4, 3, 3)),
        ("keras_depthwise", {}, (3, 3, 4, 2), (8, 1, 3, 3)),
        ("keras_transposed", {"strides": 2}, (3, 3, 6, 4), (4, 6, 3, 3)),
        ("einsum", {"equation": "bhi,hio->bho"}, (4, 16, 8), (32, 16)),
    ],
)
def test_torch_twin_round_trip(layout, kw, shape, torch_shape):
    lay = kernel_layout(layout, **kw)
    assert lay.to_torch_shape(shape) == torch_shape
    k = np.arange(math.prod(shape), dtype=np.float64).reshape(shape)
    w = lay.to_torch(k)
    assert w.shape == torch_shape
    assert np.array_equal(lay.from_torch(w, shape), k)


def test_dense_twin_is_the_transpose_and_depthwise_channels_follow_keras_order():
    k = np.arange(12.0).reshape(3, 4)
    assert np.array_equal(kernel_layout().to_torch(k), k.T)
    d = np.arange(2 * 2 * 3 * 2, dtype=np.float64).reshape(2, 2, 3, 2)  # (*k, in=3, m=2)
    w = kernel_layout("keras_depthwise").to_torch(d)
    # output channel c * m + j of the torch twin is Keras's [..., c, j]
    assert np.array_equal(w[2 * 2 + 1, 0], d[:, :, 2, 1])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"layout": "depthwise"}, r"layout='depthwise' is unknown"),
        ({"layout": "einsum"}, r"needs equation="),
        ({"layout": "keras", "equation": "ab,bc->ac"}, r"equation= is for layout='einsum'"),
        ({"layout": "keras", "strides": 2}, r"strides= is for layout='keras_transposed'"),
        ({"layout": "einsum", "equation": "ab,bq->ac"}, r"kernel axis 'q' is in neither"),
        ({"layout": "keras", "groups": 0}, r"groups=0 is invalid"),
    ],
)
def test_bad_layouts_say_what_to_pass(kwargs, message):
    with pytest.raises(InitlabError, match=message):
        kernel_layout(**kwargs)


def test_shape_the_layout_cannot_read():
    with pytest.raises(InitlabError, match=r"at least 3 dims, got shape \(4, 2\): a Dense kernel"):
        kernel_layout("keras_depthwise").fans((4, 2))
    with pytest.raises(InitlabError, match=r"names 2 kernel axes, the kernel has shape"):
        kernel_layout("einsum", equation="ab,bc->ac").fans((4, 2, 3))
