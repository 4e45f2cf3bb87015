"""The vocabulary: module registry through the MRO, function table, measured unknown modules."""

from __future__ import annotations

import operator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from initlab.errors import InitlabError
from initlab.graph import vocab
from initlab.graph.nodes import Kind
from initlab.graph.vocab import Entry, classify_function, classify_module, measure_module, register_module

X = torch.zeros(2, 3)
Y = torch.ones(2, 3)


@pytest.mark.parametrize("module, kind, activation", [
    (nn.Linear(3, 4), Kind.LAYER, None),
    (nn.Conv2d(3, 4, 3), Kind.LAYER, None),
    (nn.ConvTranspose1d(3, 4, 3), Kind.LAYER, None),
    (nn.Embedding(10, 4), Kind.LAYER, None),
    (nn.EmbeddingBag(10, 4), Kind.LAYER, None),
    (nn.MultiheadAttention(8, 2), Kind.LAYER, None),
    (nn.GRU(3, 4), Kind.LAYER, None),
    (nn.ReLU(), Kind.ACTIVATION, ("relu", None)),
    (nn.LeakyReLU(0.2), Kind.ACTIVATION, ("leaky_relu", 0.2)),
    (nn.GELU(approximate="tanh"), Kind.ACTIVATION, ("gelu_tanh", None)),
    (nn.ReLU6(), Kind.ACTIVATION, ("relu6", None)),
    (nn.Hardtanh(0.0, 6.0), Kind.ACTIVATION, ("relu6", None)),
    (nn.Hardtanh(-2.0, 2.0), Kind.ACTIVATION, ("hardtanh", 2.0)),
    (nn.ELU(0.5), Kind.ACTIVATION, ("elu", 0.5)),
    (nn.BatchNorm2d(4), Kind.NORM, None),
    (nn.GroupNorm(2, 4), Kind.NORM, None),
    (nn.InstanceNorm1d(4), Kind.NORM, None),
    (nn.Dropout2d(0.3), Kind.DROPOUT, None),
    (nn.AdaptiveAvgPool2d(1), Kind.POOL, None),
    (nn.Flatten(), Kind.RESHAPE, None),
    (nn.Identity(), Kind.RESHAPE, None),
    (nn.Softmax(dim=-1), Kind.SOFTMAX, None),
])
def test_module_table(module, kind, activation):
    entry = classify_module(module)
    assert (entry.kind, entry.activation, entry.op) == (kind, activation, type(module).__name__)


def test_module_params_give_fans_and_sizes():
    conv = classify_module(nn.ConvTranspose2d(4, 8, 3, groups=2)).params
    assert conv["fans"] == {"groups": 2, "transposed": True} and conv["in_channels"] == 4
    assert classify_module(nn.LSTM(3, 5, batch_first=True)).params["fans"] == {"chunks": 4}
    assert classify_module(nn.MultiheadAttention(8, 2)).params["fans"] == {"chunks": 3}
    assert classify_module(nn.Dropout(0.25)).params == {"p": 0.25}
    assert classify_module(nn.LayerNorm(6)).params["kind"] == "layer_norm"


def test_asymmetric_hardtanh_is_measured_by_its_own_function():
    m = nn.Hardtanh(-1.0, 3.0)
    entry = classify_module(m)
    assert entry.activation == ("measured", None) and entry.fn is m
    fn_entry = classify_function(F.hardtanh, (X, -1.0, 3.0))
    x = torch.linspace(-4, 4, 9)
    assert torch.equal(fn_entry.fn(x), x.clamp(-1.0, 3.0))


def test_registry_resolves_subclasses_and_user_classes():
    class MyLinear(nn.Linear):
        pass

    class Gate(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = nn.Linear(2, 2)  # children: only a registered class is a leaf

    assert classify_module(MyLinear(2, 3)).kind is Kind.LAYER  # through the MRO
    assert not vocab.is_leaf(Gate())
    register_module(Gate, Entry(Kind.OTHER, "Gate", params={"gating": True}))
    try:
        assert vocab.is_leaf(Gate()) and classify_module(Gate()).params == {"gating": True}
    finally:
        del vocab._MODULES[Gate]


def test_register_rejects_bad_values():
    with pytest.raises(InitlabError, match="cls=.* neither a class"):
        register_module(nn.Linear(2, 2), Entry(Kind.LAYER, "x"))
    with pytest.raises(InitlabError, match="classifier=3 is neither an Entry nor a callable"):
        vocab.register_function("mine", 3)


def test_hf_conv1d_is_a_transposed_layer():
    pytorch_utils = pytest.importorskip("transformers.pytorch_utils", reason="transformers not installed")
    entry = classify_module(pytorch_utils.Conv1D(12, 4))  # nf=12 outputs, nx=4 inputs
    assert entry.kind is Kind.LAYER and entry.op == "Conv1D"
    assert entry.params["layout"] == "transposed" and entry.params["fans"] == {"layout": "keras"}
    assert (entry.params["in_features"], entry.params["out_features"]) == (4, 12)


@pytest.mark.parametrize("target, args, kwargs, kind, extra", [
    (operator.mul, (X, Y), {}, Kind.MUL, {}),
    (operator.mul, (X, 0.5), {}, Kind.SCALE, {"factor": 0.5}),
    (torch.Tensor.__rmul__, (X, 2), {}, Kind.SCALE, {"factor": 2.0}),
    (operator.truediv, (X, 4), {}, Kind.SCALE, {"factor": 0.25}),
    (operator.truediv, (X, Y), {}, Kind.OTHER, {}),
    (operator.neg, (X,), {}, Kind.SCALE, {"factor": -1.0}),
    (operator.add, (X, Y), {}, Kind.ADD, {}),
    (torch.Tensor.__iadd__, (X, 1.0), {}, Kind.ADD, {"value": 1.0, "value_first": False}),
    (torch.sub, (X, Y), {}, Kind.SUB, {}),
    (torch.cat, ([X, Y],), {"dim": 1}, Kind.CONCAT, {"dim": 1}),
    (torch.stack, ([X, Y],), {}, Kind.CONCAT, {"dim": 0}),
    (torch.matmul, (X, Y.T), {}, Kind.MATMUL, {}),
    (torch.einsum, ("ij,kj->ik", X, Y), {}, Kind.MATMUL, {}),
    (F.softmax, (X,), {"dim": -1}, Kind.SOFTMAX, {"dim": -1}),
    (F.dropout, (X, 0.2), {}, Kind.DROPOUT, {"p": 0.2, "training": True}),
    (F.layer_norm, (X, (3,)), {}, Kind.NORM, {"kind": "layer_norm"}),
    (F.adaptive_avg_pool2d, (X, 1), {}, Kind.POOL, {"type": "avg"}),
    (torch.Tensor.mean, (X, 1), {}, Kind.POOL, {"type": "avg", "dim": 1}),
    (torch.Tensor.permute, (X, 1, 0), {}, Kind.RESHAPE, {}),
    (operator.getitem, (X, 0), {}, Kind.RESHAPE, {}),
    (torch.Tensor.T.__get__, (X,), {}, Kind.RESHAPE, {}),
    (F.scaled_dot_product_attention, (X, X, X), {}, Kind.ATTENTION, {"is_causal": False, "scale": None}),
    (F.linear, (X, Y), {}, Kind.LAYER, {"functional": True}),
    (torch.arange, (5,), {}, Kind.CONSTANT, {}),
    (torch.cumsum, (X, 0), {}, Kind.OTHER, {}),
])
def test_function_table(target, args, kwargs, kind, extra):
    entry = classify_function(target, args, kwargs)
    assert entry.kind is kind and dict(entry.params) == extra


@pytest.mark.parametrize("target, args, kwargs, activation", [
    (F.relu, (X,), {}, ("relu", None)),
    (torch.relu_, (X,), {}, ("relu", None)),
    (torch.Tensor.sigmoid, (X,), {}, ("sigmoid", None)),
    (F.leaky_relu, (X,), {"negative_slope": 0.3}, ("leaky_relu", 0.3)),
    (F.leaky_relu, (X,), {}, ("leaky_relu", 0.01)),
    (F.gelu, (X,), {"approximate": "tanh"}, ("gelu_tanh", None)),
    (F.hardtanh, (X, 0.0, 6.0), {}, ("relu6", None)),
    (F.elu, (X, 0.7), {}, ("elu", 0.7)),
    (F.softplus, (X,), {"beta": 2}, ("softplus", 2.0)),
])
def test_functional_activations(target, args, kwargs, activation):
    entry = classify_function(target, args, kwargs)
    assert entry.kind is Kind.ACTIVATION and entry.activation == activation


def test_scale_by_a_proxy_number_has_no_factor():
    entry = classify_function(operator.mul, ("node", "other"), {}, is_tensor=lambda a: a == "node")
    assert entry.kind is Kind.SCALE and entry.params["factor"] is None


# ---- measured modules ------------------------------------------------------------------------------


class Swish(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(x)


class SinPlus(nn.Module):
    def forward(self, x):
        return torch.sin(x) + 0.5 * x


class MeanExpand(nn.Module):
    def forward(self, x):
        return x.mean(-1, keepdim=True).expand_as(x)


class Noisy(nn.Module):
    def forward(self, x):
        return x + torch.randn_like(x)


class Needs4d(nn.Module):
    def forward(self, x):
        n, c, h, w = x.shape
        return torch.tanh(x)


class HandRMSNorm(nn.Module):  # Llama / T5 style: no mean subtraction, weight only
    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.full((d,), 0.5))
        self.eps = eps

    def forward(self, x):
        return self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)


class GemmaNorm(HandRMSNorm):  # (1 + weight), weight starting at 0
    def forward(self, x):
        return (1 + self.weight) * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)


class HandLayerNorm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.ones(d)), nn.Parameter(torch.zeros(d))

    def forward(self, x):
        c = x - x.mean(-1, keepdim=True)
        return self.weight * c / (c.pow(2).mean(-1, keepdim=True) + 1e-5).sqrt() + self.bias


class ChannelScale(nn.Module):  # one weight of the last dim's size, but no normalisation
    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * self.weight


def test_measured_known_activations():
    assert measure_module(Swish()).activation == ("silu", None)
    assert measure_module(Swish()).params == {"identified_by": "probe"}


def test_measured_unknown_elementwise_keeps_the_module_as_fn():
    m = SinPlus()
    entry = measure_module(m)
    assert entry.kind is Kind.ACTIVATION and entry.activation == ("measured", None) and entry.fn is m


@pytest.mark.parametrize("module", [MeanExpand(), Noisy(), nn.Module()],
                         ids=["mean-expand", "random", "bare-module"])
def test_non_elementwise_or_random_is_other(module):
    assert measure_module(module).kind is Kind.OTHER


def test_random_module_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    measure_module(Noisy())
    assert torch.equal(torch.random.get_rng_state(), state)


def test_probe_shape_can_be_given():
    assert measure_module(Needs4d()).kind is Kind.OTHER
    assert measure_module(Needs4d(), (2, 3, 4, 4)).activation == ("tanh", None)


@pytest.mark.parametrize("module, kind, offset", [
    (HandRMSNorm(8), "rms_norm", 0.0),
    (GemmaNorm(8), "rms_norm", 1.0),
    (HandLayerNorm(8), "layer_norm", 0.0),
])
def test_measured_norms(module, kind, offset):
    before = {k: v.clone() for k, v in module.state_dict().items()}
    entry = measure_module(module)
    assert entry.kind is Kind.NORM and entry.params["kind"] == kind
    assert entry.params["weight_offset"] == offset
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())  # weights untouched


def test_weighted_non_norm_is_other():
    assert measure_module(ChannelScale(8)).kind is Kind.OTHER


def test_hf_activations_are_named():
    activations = pytest.importorskip("transformers.activations", reason="transformers not installed")
    assert measure_module(activations.GELUActivation()).activation == ("gelu", None)
    assert measure_module(activations.NewGELUActivation()).activation == ("gelu_tanh", None)
    assert measure_module(activations.FastGELUActivation()).activation == ("gelu_tanh", None)
    assert measure_module(activations.QuickGELUActivation()).activation == ("swish", 1.702)
    assert measure_module(activations.SiLUActivation()).activation == ("silu", None)


def test_hf_norms_are_norms():
    pytest.importorskip("transformers", reason="transformers not installed")
    from transformers.models.llama.modeling_llama import LlamaRMSNorm
    from transformers.models.t5.modeling_t5 import T5LayerNorm

    for m in (LlamaRMSNorm(16), T5LayerNorm(16)):
        entry = classify_module(m)
        assert entry.kind is Kind.NORM and entry.params["kind"] == "rms_norm"


def test_in_place_module_is_measured_on_fresh_probes():
    class TanhInPlace(nn.Module):
        def forward(self, x):
            return x.tanh_()

    assert measure_module(TanhInPlace()).activation == ("tanh", None)
