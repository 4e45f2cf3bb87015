"""example_inputs: built from the first weighted layer, seeded, never from the global RNG."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from initlab.errors import InitlabError
from initlab.graph import example_inputs


@pytest.mark.parametrize("model, shape, how", [
    (nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), (2, 784),
     "built from Linear '1' in_features=784: randn(2, 784)"),
    (nn.Sequential(nn.Conv1d(4, 8, 3)), (2, 4, 32), "built from Conv1d '0' in_channels=4: randn(2, 4, 32)"),
    (nn.Sequential(nn.Conv2d(3, 8, 3)), (2, 3, 32, 32), None),
    (nn.Sequential(nn.Conv2d(3, 8, 5, dilation=10)), (2, 3, 41, 41), None),  # the dilated kernel fits
    (nn.Sequential(nn.Conv3d(2, 4, 3)), (2, 2, 16, 16, 16), None),
    (nn.Sequential(nn.ConvTranspose2d(6, 3, 2)), (2, 6, 32, 32), None),
    (nn.Sequential(nn.Embedding(50, 8), nn.Linear(8, 2)), (2, 16),
     "built from Embedding '0' num_embeddings=50: randint(50, (2, 16))"),
    (nn.LSTM(5, 7, batch_first=True), (2, 8, 5), None),
    (nn.GRU(5, 7), (8, 2, 5), None),
    (nn.Linear(3, 4), (2, 3), "built from Linear '' in_features=3: randn(2, 3)"),
])
def test_built_from_the_first_layer(model, shape, how):
    x, desc = example_inputs(model)
    assert x.shape == shape
    if how is not None:
        assert desc == how


@pytest.mark.parametrize("model, shape", [
    (nn.Sequential(nn.Linear(5, 3)), (16, 5)),
    (nn.Sequential(nn.Conv2d(3, 8, 3)), (16, 3, 32, 32)),
    (nn.Sequential(nn.Embedding(50, 8)), (16, 16)),
    (nn.GRU(5, 7), (8, 16, 5)),  # sequence first: the batch is dim 1
])
def test_batch_sets_the_batch_dim(model, shape):
    x, desc = example_inputs(model, batch=16)
    assert x.shape == shape and "16" in desc


@pytest.mark.parametrize("batch", [0, -1, 2.0, True, "16"])
def test_bad_batch_is_refused_naming_it(batch):
    with pytest.raises(InitlabError, match=f"batch={batch!r}"):
        example_inputs(nn.Linear(3, 4), batch=batch)


def test_tokens_are_below_the_vocabulary():
    x, _ = example_inputs(nn.Embedding(7, 3))
    assert x.dtype == torch.int64 and int(x.min()) >= 0 and int(x.max()) < 7


def test_multihead_attention():
    q, _ = example_inputs(nn.Sequential(nn.MultiheadAttention(8, 2, batch_first=True)))
    assert q.shape == (2, 8, 8)
    qkv, _ = example_inputs(nn.MultiheadAttention(8, 2))
    assert isinstance(qkv, tuple) and len(qkv) == 3 and qkv[0].shape == (8, 2, 8)


def test_dtype_follows_the_model():
    x, _ = example_inputs(nn.Linear(3, 4).double())
    assert x.dtype == torch.float64


def test_seeded_and_global_rng_untouched():
    model = nn.Sequential(nn.Linear(5, 3))
    rng = torch.random.get_rng_state()
    a, _ = example_inputs(model)
    b, _ = example_inputs(model)
    assert torch.equal(a, b)
    assert torch.equal(torch.random.get_rng_state(), rng)


def test_nothing_to_build_from():
    class Weird(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(3))

        def forward(self, x):
            return x * self.w

    with pytest.raises(InitlabError, match=r"cannot build example inputs for Weird.*pass example_inputs"):
        example_inputs(Weird())
