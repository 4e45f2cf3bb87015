"""Adversarial tests for initlab.fans (review): fans against connections counted from first
principles, and the inputs a careless user passes. Each test pins a defect that was found and fixed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from initlab.errors import InitlabError
from initlab.fans import Fans, compute_fans


def connection_counts(module: nn.Module, in_shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) counted from the Jacobian: the inputs one interior output unit depends on,
    and the outputs one interior input unit affects (stride 1, so every unit sees a full kernel)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        module.weight.copy_(torch.rand(module.weight.shape, generator=g) + 0.5)  # no zero weights
    x = torch.randn(1, *in_shape, generator=g)
    y = module(x)
    jac = torch.autograd.functional.jacobian(module, x, vectorize=True).reshape(y.numel(), x.numel())
    out_unit = np.ravel_multi_index((0, 0, *(s // 2 for s in y.shape[2:])), y.shape)
    in_unit = np.ravel_multi_index((0, 0, *(s // 2 for s in x.shape[2:])), x.shape)
    return int((jac[out_unit] != 0).sum()), int((jac[:, in_unit] != 0).sum())


@pytest.mark.parametrize(
    ("module", "in_shape", "groups", "transposed"),
    [
        (nn.Conv2d(4, 4, 3, groups=4, bias=False), (4, 9, 9), 4, False),
        (nn.Conv2d(6, 12, 3, groups=3, bias=False), (6, 9, 9), 3, False),
        (nn.Conv1d(8, 4, 5, groups=2, bias=False), (8, 15), 2, False),
        (nn.Conv2d(3, 5, 3, dilation=2, bias=False), (3, 13, 13), 1, False),
        (nn.Conv3d(2, 4, (1, 3, 3), bias=False), (2, 5, 7, 7), 1, False),
        (nn.ConvTranspose2d(16, 64, 3, bias=False), (16, 5, 5), 1, True),
        (nn.ConvTranspose2d(16, 128, 3, groups=4, bias=False), (16, 5, 5), 4, True),
        (nn.ConvTranspose1d(6, 9, 3, groups=3, bias=False), (6, 11), 3, True),
    ],
    ids=["depthwise", "grouped-x2", "conv1d-g2", "dilated", "conv3d", "convT", "convT-g4", "convT1d-g3"],
)
def test_fans_equal_connections_counted_from_the_jacobian(module, in_shape, groups, transposed):
    fan_in, fan_out = connection_counts(module, in_shape)
    fans = compute_fans(module.weight.shape, groups=groups, transposed=transposed)
    assert (fans.fan_in, fans.fan_out) == (fan_in, fan_out)


def test_keras_layout_of_the_same_conv_agrees_with_the_jacobian():
    conv = nn.Conv2d(6, 12, 3, groups=3, bias=False)
    keras_shape = tuple(conv.weight.permute(2, 3, 1, 0).shape)  # (kh, kw, in/groups, out)
    fans = compute_fans(keras_shape, layout="keras", groups=3)
    assert (fans.fan_in, fans.fan_out) == connection_counts(conv, (6, 9, 9))


def test_keras_transposed_is_not_silently_ignored():
    try:
        fans = compute_fans((3, 3, 64, 16), layout="keras", transposed=True)
    except InitlabError:
        return
    assert fans.fan_in == 16 * 9


@pytest.mark.parametrize("shape", [(3.7, 4.2), "34", (True, 3)], ids=["floats", "string", "bool"])
def test_non_integer_shapes_are_refused(shape):
    with pytest.raises(InitlabError, match="shape"):
        compute_fans(shape)


def test_a_weight_passed_instead_of_its_shape_is_refused():
    with pytest.raises(InitlabError, match="shape"):
        compute_fans(torch.tensor([[3], [5]]))


def test_torch_size_numpy_and_zero_dims_still_work():
    assert compute_fans(torch.Size([4, 1, 3, 3]), groups=np.int64(4)) == Fans(9, 9, 9)
    assert compute_fans((np.int64(64), np.int32(32))) == Fans(32, 64, 1)
    assert compute_fans(np.array([1536, 512]), chunks=np.int16(3)) == Fans(512, 512, 1)
    assert compute_fans((8, 4, 0, 3)) == Fans(0, 0, 0)
