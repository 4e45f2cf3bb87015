"""Tests of initlab.fans: every layout, the issue's examples (against real torch modules), errors."""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn

from initlab import schemes
from initlab.errors import InitlabError
from initlab.fans import LAYOUTS, MODES, Fans, compute_fans, fan_for_mode

torch_fans = nn.init._calculate_fan_in_and_fan_out


# ---- torch layout -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "module",
    [nn.Linear(20, 30), nn.Conv1d(3, 8, 5), nn.Conv2d(4, 6, (3, 5)), nn.Conv3d(2, 4, 3),
     nn.Bilinear(3, 4, 5)],
    ids=lambda m: type(m).__name__,
)
def test_ungrouped_torch_layout_equals_torch(module):
    w = module.weight
    fans = compute_fans(w.shape)
    assert (fans.fan_in, fans.fan_out) == torch_fans(w)
    assert fans.receptive_field == math.prod(w.shape[2:])


def test_linear_layout():
    fans = compute_fans(nn.Linear(128, 64).weight.shape)  # (out, in)
    assert fans == Fans(fan_in=128, fan_out=64, receptive_field=1)


def test_depthwise_conv_counts_real_connections():
    conv = nn.Conv2d(4, 4, 3, groups=4)
    assert tuple(conv.weight.shape) == (4, 1, 3, 3)
    fans = compute_fans(conv.weight.shape, groups=conv.groups)
    assert (fans.fan_in, fans.fan_out) == (1 * 9, 4 // 4 * 9) == (9, 9)
    assert torch_fans(conv.weight) == (9, 36)  # torch counts all 4 output channels per input


def test_grouped_conv():
    conv = nn.Conv2d(6, 8, 3, groups=2)  # weight (8, 3, 3, 3)
    fans = compute_fans(conv.weight.shape, groups=2)
    assert (fans.fan_in, fans.fan_out) == (6 // 2 * 9, 8 // 2 * 9)
    assert torch_fans(conv.weight) == (27, 72)


def test_transposed_conv_reads_the_right_dimensions():
    deconv = nn.ConvTranspose2d(16, 64, 3)
    assert tuple(deconv.weight.shape) == (16, 64, 3, 3)  # (in, out/groups, *k)
    fans = compute_fans(deconv.weight.shape, transposed=True)
    assert fans.fan_in == 16 * 9 == 144
    assert fans.fan_out == 64 * 9
    assert torch_fans(deconv.weight)[0] == 64 * 9  # torch reads dim 1 as fan_in


def test_grouped_transposed_conv():
    deconv = nn.ConvTranspose1d(8, 4, 5, groups=2)  # weight (8, 2, 5)
    fans = compute_fans(deconv.weight.shape, transposed=True, groups=2)
    assert (fans.fan_in, fans.fan_out) == (8 // 2 * 5, 4 // 2 * 5)


def test_multihead_attention_in_proj_chunks():
    mha = nn.MultiheadAttention(512, 8)
    w = mha.in_proj_weight
    assert tuple(w.shape) == (1536, 512)
    fans = compute_fans(w.shape, chunks=3)
    assert (fans.fan_in, fans.fan_out) == (512, 512)
    per_chunk_std = math.sqrt(2.0 / (512 + 512))
    assert schemes.glorot_normal(fans).std == pytest.approx(per_chunk_std)
    assert round(per_chunk_std, 4) == 0.0442
    t_in, t_out = torch_fans(w)
    torch_std = math.sqrt(2.0 / (t_in + t_out))  # what xavier_normal_(in_proj_weight) uses
    assert round(torch_std, 4) == 0.0312  # sqrt(2 / 2048) = 0.03125
    # and torch's packed call really samples with that std (786k samples; 5 SE = 0.8 %)
    sample = nn.init.xavier_normal_(torch.empty(1536, 512), generator=torch.Generator().manual_seed(0))
    n = sample.numel()
    assert abs(sample.std().item() - torch_std) < 5 * torch_std / math.sqrt(2 * n)


@pytest.mark.parametrize("cls, gates", [(nn.LSTM, 4), (nn.GRU, 3), (nn.RNN, 1)])
def test_recurrent_gates_are_chunks(cls, gates):
    rnn = cls(10, 20)
    w_ih, w_hh = rnn.weight_ih_l0, rnn.weight_hh_l0
    assert tuple(w_ih.shape) == (gates * 20, 10)
    assert compute_fans(w_ih.shape, chunks=gates) == Fans(10, 20, 1)
    assert compute_fans(w_hh.shape, chunks=gates) == Fans(20, 20, 1)


# ---- keras / jax layout -------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["keras", "jax"])
def test_keras_layout(layout):
    # Keras: receptive_field = prod(kernel dims); fan_in = rf * input_depth; fan_out = rf * output_depth
    assert compute_fans((16, 32), layout=layout) == Fans(16, 32, 1)  # Dense (in, out)
    assert compute_fans((3, 3, 16, 32), layout=layout) == Fans(144, 288, 9)
    assert compute_fans((5, 8, 4), layout=layout) == Fans(40, 20, 5)  # Conv1D (k, in, out)
    assert compute_fans((3, 3, 3, 2, 6), layout=layout) == Fans(54, 162, 27)  # Conv3D
    # grouped Conv2D(groups=4): kernel (3, 3, in/groups=2, out=8)
    assert compute_fans((3, 3, 2, 8), layout=layout, groups=4) == Fans(18, 18, 9)
    # Keras LSTM kernel (in, 4 * units), gates along the last axis
    assert compute_fans((10, 80), layout=layout, chunks=4) == Fans(10, 20, 1)


def _counted_fans(conv: nn.Module, in_shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) counted from the Jacobian of ``conv`` (positive weights, so no connection
    cancels): inputs one interior output unit depends on, outputs one interior input unit affects."""
    with torch.no_grad():
        conv.weight.copy_(torch.rand(conv.weight.shape, generator=torch.Generator().manual_seed(0)) + 0.5)
    x = torch.zeros(1, *in_shape)
    y_shape = conv(x).shape
    jac = torch.autograd.functional.jacobian(conv, x).reshape(math.prod(y_shape), x.numel())
    out_unit = (y_shape[2] // 2) * y_shape[3] + y_shape[3] // 2  # channel 0, centre
    in_unit = (in_shape[1] // 2) * in_shape[2] + in_shape[2] // 2
    return int((jac[out_unit] != 0).sum()), int((jac[:, in_unit] != 0).sum())


@pytest.mark.parametrize("multiplier", [1, 2])
def test_keras_depthwise_kernel_has_the_fans_of_its_connections(multiplier):
    """DepthwiseConv2D(3, depth_multiplier=m) on 4 channels is torch's Conv2d(4, 4m, 3, groups=4)."""
    conv = nn.Conv2d(4, 4 * multiplier, 3, groups=4, bias=False)
    keras_kernel = (3, 3, 4, multiplier)  # (*k, in_channels, depth_multiplier)
    fans = compute_fans(keras_kernel, layout="keras_depthwise")
    assert (fans.fan_in, fans.fan_out) == _counted_fans(conv, (4, 9, 9)) == (3 * 3, 3 * 3 * multiplier)
    assert fans == compute_fans(conv.weight.shape, groups=4)
    # Keras's own reading of the same kernel, fan_in = in_channels * rf, counts 4 inputs per output
    assert compute_fans(keras_kernel, layout="keras").fan_in == 4 * 3 * 3


def test_keras_depthwise_1d_3d_and_separable():
    assert compute_fans((5, 8, 3), layout="keras_depthwise") == Fans(5, 15, 5)  # DepthwiseConv1D
    assert compute_fans((3, 3, 3, 2, 1), layout="keras_depthwise") == Fans(27, 27, 27)
    # SeparableConv2D(32, 3) on 64 channels: depthwise kernel (3, 3, 64, 1), pointwise (1, 1, 64, 32)
    assert compute_fans((3, 3, 64, 1), layout="keras_depthwise") == Fans(9, 9, 9)
    assert compute_fans((1, 1, 64, 32), layout="keras") == Fans(64, 32, 1)
    # groups=in_channels states what the layout means, and changes nothing
    assert compute_fans((3, 3, 64, 1), layout="keras_depthwise", groups=64) == Fans(9, 9, 9)


def test_jax_depthwise_and_grouped_kernels_take_feature_group_count_as_groups():
    """flax Conv(features, kernel, feature_group_count=g): kernel (*k, in/g, features)."""
    assert compute_fans((3, 3, 1, 64), layout="jax", groups=64) == Fans(9, 9, 9)
    assert compute_fans((3, 3, 1, 128), layout="jax", groups=64) == Fans(9, 18, 9)  # multiplier 2
    conv = nn.Conv2d(6, 12, 3, groups=3, bias=False)
    jax_kernel = tuple(conv.weight.permute(2, 3, 1, 0).shape)  # (3, 3, 2, 12)
    fans = compute_fans(jax_kernel, layout="jax", groups=3)
    assert (fans.fan_in, fans.fan_out) == _counted_fans(conv, (6, 9, 9))
    with pytest.raises(InitlabError, match=re.escape("groups=5 does not divide the output dim (= 64)")):
        compute_fans((3, 3, 1, 64), layout="jax", groups=5)


def test_glorot_uniform_limit_of_a_keras_depthwise_kernel():
    """Keras GlorotUniform: limit = sqrt(6 / (fan_in + fan_out)) with the true fans of a
    DepthwiseConv2D(3) kernel (3, 3, 64, 1): one input channel in, one output channel out."""
    fan_in, fan_out = 3 * 3 * 1, 3 * 3 * 1
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    assert round(limit, 3) == 0.577
    spec = schemes.glorot_uniform(compute_fans((3, 3, 64, 1), layout="keras_depthwise"))
    assert spec.high == pytest.approx(limit, rel=1e-12) and spec.low == pytest.approx(-limit, rel=1e-12)


def test_keras_and_torch_layouts_agree_on_the_same_conv():
    conv = nn.Conv2d(16, 32, 3)
    keras_kernel = conv.weight.permute(2, 3, 1, 0)  # (kh, kw, in, out)
    assert compute_fans(keras_kernel.shape, layout="keras") == compute_fans(conv.weight.shape)


# ---- vectors and scalars ------------------------------------------------------------------------


def test_vector_raises_like_torch_or_follows_keras():
    with pytest.raises(InitlabError, match=re.escape("fans are not defined for a 1-D tensor of shape (7,)")):
        compute_fans((7,))
    with pytest.raises(ValueError):
        torch_fans(torch.empty(7))  # torch raises too
    assert compute_fans((7,), vector="keras") == Fans(7, 7, 1)
    assert compute_fans((12,), vector="keras", chunks=3) == Fans(4, 4, 1)


def test_scalar_raises():
    with pytest.raises(InitlabError, match="0-D"):
        compute_fans(())
    with pytest.raises(InitlabError, match="0-D"):
        compute_fans(torch.empty(()).shape, vector="keras")


# ---- modes --------------------------------------------------------------------------------------


def test_fan_modes():
    fans = Fans(100, 400)
    assert fan_for_mode(fans, "fan_in") == 100
    assert fan_for_mode(fans, "fan_out") == 400
    assert fan_for_mode(fans, "fan_avg") == (100 + 400) / 2
    assert fan_for_mode(fans, "fan_geo_avg") == pytest.approx(math.sqrt(100 * 400))
    assert set(MODES) == {"fan_in", "fan_out", "fan_avg", "fan_geo_avg"}
    with pytest.raises(InitlabError, match="mode='fan_sum' is unknown"):
        fan_for_mode(fans, "fan_sum")


def test_zero_sized_dims_give_zero_fans():
    assert compute_fans((0, 5)) == Fans(5, 0, 1)
    assert compute_fans(torch.Size([3, 0, 2])) == Fans(0, 6, 2)


# ---- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, kwargs, message",
    [
        ((4, 1, 3, 3), {"groups": 3}, "groups=3 does not divide the output channels (= 4)"),
        ((4, 1, 3, 3), {"groups": 0}, "groups=0 is invalid: pass an integer >= 1"),
        ((4, 1, 3, 3), {"groups": True}, "groups=True is invalid"),
        ((4, 1, 3, 3), {"groups": 2.0}, "groups=2.0 is invalid"),
        ((6, 2, 3, 3), {"groups": 4, "transposed": True}, "groups=4 does not divide dim 0 (in_channels = 6)"),
        ((1536, 512), {"chunks": 5}, "chunks=5 does not divide dim 0 (= 1536)"),
        ((1536, 512), {"chunks": 0}, "chunks=0 is invalid"),
        ((16, 4, 3), {"chunks": 2, "transposed": True}, "chunks is not supported for transposed weights"),
        ((10, 81), {"chunks": 4, "layout": "keras"}, "chunks=4 does not divide the last dim (= 81)"),
        ((3, 3, 2, 9), {"groups": 2, "layout": "keras"}, "groups=2 does not divide the output dim (= 9)"),
        ((7,), {"vector": "keras", "chunks": 2}, "chunks=2 does not divide the length 7"),
        ((4, 4), {"layout": "tf"}, "layout='tf' is unknown: use one of torch, keras, jax, keras_depthwise"),
        ((3, 3, 64, 1), {"layout": "keras-depthwise"},
         "layout='keras-depthwise' is unknown: use one of torch, keras, jax, keras_depthwise (a Keras "
         "DepthwiseConv kernel (*k, in, depth_multiplier) is 'keras_depthwise'; a torch or JAX depthwise "
         "kernel is 'torch' / 'jax' with groups=in_channels)"),
        ((4, 4), {"layout": None}, "layout=None is unknown: use one of"),
        ((4, 4), {"layout": ["keras"]}, "layout=['keras'] is unknown: use one of"),
        ((64, 1), {"layout": "keras_depthwise"}, "layout='keras_depthwise' (kernel (*k, in_channels, "
         "depth_multiplier), shape (64, 1)) needs >= 3 dims: a Dense kernel (in, out) is layout='keras'"),
        ((3, 3, 64, 1), {"layout": "keras_depthwise", "groups": 8},
         "groups=8 contradicts layout='keras_depthwise' (kernel (*k, in_channels, depth_multiplier), shape "
         "(3, 3, 64, 1)), which means groups = in_channels (= 64): leave groups=1"),
        ((3, 3, 64, 1), {"layout": "keras_depthwise", "transposed": True},
         "transposed=True with layout='keras_depthwise'"),
        ((3, 3, 64, 2), {"layout": "keras_depthwise", "chunks": 2},
         "chunks=2 with layout='keras_depthwise'"),
        ((4, 4), {"vector": "numpy"}, "vector='numpy' is unknown"),
        ((4, -1), {}, "has a negative dimension"),
        (None, {}, "shape=None is not a sequence of ints"),
        ("ab", {}, "shape='ab' is not a sequence of ints"),
    ],
)
def test_bad_arguments_name_the_value_and_the_fix(shape, kwargs, message):
    with pytest.raises(InitlabError, match=re.escape(message)):
        compute_fans(shape, **kwargs)


def test_numpy_integers_are_accepted():
    np = pytest.importorskip("numpy")
    assert compute_fans(np.array([4, 1, 3, 3]), groups=np.int64(4)) == Fans(9, 9, 9)
    assert compute_fans((1536, 512), chunks=np.int32(3)) == Fans(512, 512, 1)


def test_layouts_listed():
    assert LAYOUTS == ("torch", "keras", "jax", "keras_depthwise")


def test_fans_properties():
    fans = Fans(50, 200, 1)
    assert fans.fan_avg == 125.0
    assert fans.fan_geo_avg == pytest.approx(100.0)
