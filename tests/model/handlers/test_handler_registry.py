"""The handler registry: handlers found through the module's MRO, users' own handlers, classes
registered by dotted name (looked up in sys.modules only), and the norms recognised by what they
compute."""

from __future__ import annotations

import sys
import types

import pytest
import torch
from torch import nn

from initlab import schemes
from initlab.errors import InitlabError
from initlab.model import init_model, register_handler
from initlab.model.handlers import handler_for, registry
from initlab.model.handlers.activation import handle_prelu
from initlab.model.handlers.attention import handle_mha
from initlab.model.handlers.embedding import handle_embedding
from initlab.model.handlers.linear import handle_layer
from initlab.model.handlers.norm import handle_norm
from initlab.model.handlers.recurrent import handle_rnn
from initlab.model.rows import own_rows, set_spec


@pytest.fixture
def clean_registry(monkeypatch):
    """The registry as it is, restored after the test."""
    monkeypatch.setattr(registry, "_BY_TYPE", dict(registry._BY_TYPE))
    monkeypatch.setattr(registry, "_BY_NAME", dict(registry._BY_NAME))
    monkeypatch.setattr(registry, "_FALLBACKS", list(registry._FALLBACKS))


@pytest.mark.parametrize("cls, handler", [
    (nn.Linear, handle_layer), (nn.Conv2d, handle_layer), (nn.ConvTranspose3d, handle_layer),
    (nn.modules.linear.NonDynamicallyQuantizableLinear, handle_layer),
    (nn.MultiheadAttention, handle_mha), (nn.LSTM, handle_rnn), (nn.GRU, handle_rnn), (nn.RNN, handle_rnn),
    (nn.Embedding, handle_embedding), (nn.EmbeddingBag, handle_embedding),
    (nn.BatchNorm2d, handle_norm), (nn.LayerNorm, handle_norm), (nn.GroupNorm, handle_norm),
    (nn.InstanceNorm1d, handle_norm), (nn.PReLU, handle_prelu),
])
def test_each_family_resolves_through_the_mro(cls, handler):
    assert handler_for(cls) is handler


def test_a_subclass_gets_its_base_handler_and_modules_nobody_knows_get_none():
    class MyLinear(nn.Linear):
        pass

    assert handler_for(MyLinear) is handle_layer
    assert handler_for(nn.PixelShuffle) is None and handler_for(nn.Module) is None


def _ones(ctx, q, m):
    rows = []
    for _, row in own_rows(q, m):
        set_spec(row, "ones", schemes.Constant(1.0))
        rows.append(row)
    return rows


def test_a_users_handler_decides_its_class_and_subclasses_only(clean_registry):
    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.alpha = nn.Parameter(torch.zeros(3))

        def forward(self, x):
            return x * self.alpha

    class MyLinear(nn.Linear):
        pass

    register_handler(Scale, _ones)
    register_handler(MyLinear, _ones)
    net = nn.Sequential(nn.Linear(3, 3), Scale(), MyLinear(3, 3))
    plan = init_model(net, "he_normal", generator=torch.Generator().manual_seed(0))
    assert plan.skipped == []
    assert plan["1.alpha"].scheme == "ones" and torch.equal(net[1].alpha, torch.ones(3))
    assert plan["2.weight"].scheme == "ones" and torch.equal(net[2].weight, torch.ones(3, 3))
    assert plan["0.weight"].scheme == "he_normal"  # the base class keeps its handler


def test_a_class_registered_by_name_resolves_only_once_its_module_is_loaded(clean_registry, monkeypatch):
    register_handler("initlab_fake_module.Gate", _ones)

    class Gate(nn.Linear):
        pass

    assert handler_for(Gate) is handle_layer  # its module is not loaded: the MRO decides
    fake = types.ModuleType("initlab_fake_module")
    fake.Gate = Gate
    monkeypatch.setitem(sys.modules, "initlab_fake_module", fake)
    assert handler_for(Gate) is _ones


def test_a_norm_recognised_by_what_it_computes_takes_the_fallback():
    class RMSNorm(nn.Module):  # as LlamaRMSNorm: x / rms(x) * weight
        def __init__(self, d):
            super().__init__()
            self.weight = nn.Parameter(torch.full((d,), 3.0))

        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight

    assert handler_for(RMSNorm) is None
    plan = init_model(nn.Sequential(nn.Linear(4, 4), RMSNorm(4)), dry_run=True)
    assert plan["1.weight"].scheme == "ones" and plan["1.weight"].note == "a norm, by what it computes"


@pytest.mark.parametrize("cls, fn, match", [
    (3, _ones, "must be an nn.Module subclass"),
    (int, _ones, "must be an nn.Module subclass"),
    ("Conv1D", _ones, "not a dotted class name"),
    (nn.Linear, None, "not callable"),
])
def test_register_handler_rejects_what_it_cannot_use(clean_registry, cls, fn, match):
    with pytest.raises(InitlabError, match=match):
        register_handler(cls, fn)
