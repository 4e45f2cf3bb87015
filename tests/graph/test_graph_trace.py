"""trace: fx where it traces, the recorded forward where it does not; the model is left as it was."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from initlab.errors import InitlabError
from initlab.graph import Kind, consuming_activation, feeding_activation, layers, residual_adds, trace


def randn(*shape):
    return torch.randn(shape, generator=torch.Generator().manual_seed(0))


def node_of(g, module):
    (node,) = g.module_nodes(module)
    return node


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.out = nn.Linear(12, 16), nn.Linear(16, 16), nn.Linear(16, 3)
        self.drop = nn.Dropout(0.1)

    def forward(self, x):
        x = x.view(x.size(0), -1)
        x = self.drop(torch.tanh(self.fc1(x)))
        x = F.leaky_relu(self.fc2(x), 0.2)
        return self.out(x) * 0.5


class Block(nn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out)
        self.conv2, self.bn2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out)
        self.down = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else None

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return F.relu(h + (self.down(x) if self.down is not None else x))


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.block = Block(8, 8)
        self.wide = Block(8, 16)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        return self.head(torch.flatten(self.pool(self.wide(self.block(self.stem(x)))), 1))


class Branchy(nn.Module):
    """Data-dependent control flow: fx cannot trace it."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(6, 6), nn.Linear(6, 2)

    def forward(self, x):
        h = self.a(x)
        h = F.relu(h) if h.sum() > 0 else torch.tanh(h)
        return self.b(h)


class ViT(nn.Module):
    def __init__(self, d=16, patches=4):
        super().__init__()
        self.patch = nn.Conv2d(3, d, 4, stride=4)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, patches + 1, d))
        self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, 5)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return self.head(self.norm(x)[:, 0])


class SwiGLU(nn.Module):
    def __init__(self, d=8, h=16):
        super().__init__()
        self.w1, self.w2, self.w3 = nn.Linear(d, h, bias=False), nn.Linear(h, d, bias=False), nn.Linear(d, h)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class SE(nn.Module):
    def __init__(self, c=8):
        super().__init__()
        self.conv = nn.Conv2d(3, c, 3, padding=1)
        self.fc1, self.fc2 = nn.Linear(c, 4), nn.Linear(4, c)

    def forward(self, x):
        x = self.conv(x)
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3))))))
        x = x * s[:, :, None, None]
        return x * torch.sigmoid(x)  # a hand-written swish


class Stateful(nn.Module):
    """Changes itself when called: buffers (BatchNorm in train mode), attributes, the RNG (dropout)."""

    def __init__(self, branch: bool):
        super().__init__()
        self.fc, self.bn, self.drop = nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.5)
        self.calls, self.branch = 0, branch

    def forward(self, x):
        self.calls += 1
        self.last = x
        h = self.drop(self.bn(self.fc(x)))
        return F.relu(h) if not self.branch or h.mean() > -100 else h


# ---- fx -----------------------------------------------------------------------------------------------


def test_mlp_fx_graph():
    g = trace(MLP())
    assert (g.method, g.reason) == ("fx", None)
    assert g.inputs_from == "built from Linear 'fc1' in_features=12: randn(2, 12)"
    assert [n.op for n in g] == ["input", "view", "Linear", "tanh", "Dropout", "Linear", "leaky_relu",
                                 "Linear", "mul", "output"]
    assert g[8].kind is Kind.SCALE and g[8].params["factor"] == 0.5
    assert g[1].inputs == [0]  # x.size(0) is not a tensor: not a node, not an edge
    assert [n.shape for n in g.of_kind(Kind.LAYER)] == [(2, 16), (2, 16), (2, 3)]
    assert consuming_activation(g, node_of(g, "fc1").id).activation == ("tanh", None)
    assert consuming_activation(g, node_of(g, "fc2").id).activation == ("leaky_relu", 0.2)
    assert consuming_activation(g, node_of(g, "out").id) is None
    assert feeding_activation(g, node_of(g, "fc2").id).activation == ("tanh", None)
    assert feeding_activation(g, node_of(g, "fc1").id) is None
    assert list(layers(g)) == ["fc1", "fc2", "out"]


def test_fx_shapes_from_example_inputs():
    g = trace(MLP(), randn(3, 3, 4))
    assert (g.method, g.inputs_from) == ("fx", "given") and g[0].shape == (3, 3, 4)
    assert [n.shape for n in g.of_kind(Kind.LAYER)] == [(3, 16), (3, 16), (3, 3)]


def test_example_inputs_that_do_not_fit_are_named_with_the_forwards_error():
    """Channels-last images for a Conv2d: the graph has no shapes, and where the inputs came from says
    why and what to pass (the plan's graph note shows it)."""
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 2))
    g = trace(net, torch.randn(2, 8, 8, 1))
    assert g.inputs_from.startswith("given, which do not fit the forward (")
    assert "channels" in g.inputs_from and "shaped like your data" in g.inputs_from
    assert all(n.shape is None for n in g)
    assert trace(net, torch.randn(2, 1, 8, 8)).inputs_from == "given"


def test_fx_without_shapes_and_factors_from_shapes():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 16)

        def forward(self, x):
            h = self.fc(x)
            return h * h.size(-1) ** -0.5

    g = trace(Scaled())
    assert g.of_kind(Kind.SCALE)[0].params["factor"] == 0.25
    g = trace(Scaled(), randn(2, 5))  # inputs that do not fit: the graph, without shapes
    assert g.method == "fx" and g.inputs_from.startswith("given, which do not fit")
    assert all(n.shape is None for n in g)
    assert g.of_kind(Kind.SCALE)[0].params["factor"] is None


def test_cnn_with_batchnorm_and_residual_blocks():
    g = trace(CNN())
    assert g.method == "fx"
    # conv -> bn -> relu: the walk goes through the norm
    act = consuming_activation(g, node_of(g, "stem.0").id)
    assert act.activation == ("relu", None) and g[act.via[0]].kind is Kind.NORM
    # conv2 -> bn2 -> + x -> relu: through the norm and the residual add
    assert consuming_activation(g, node_of(g, "block.conv2").id).activation == ("relu", None)
    assert feeding_activation(g, node_of(g, "block.conv1").id).activation == ("relu", None)
    identity, projection = residual_adds(g)
    conv = {n.id: n.module for n in g.of_kind(Kind.LAYER)}
    assert identity.fork == identity.skip and identity.skip_layers == ()
    assert [conv[i] for i in identity.layers] == ["block.conv1", "block.conv2"]
    assert [conv[i] for i in projection.layers] == ["wide.conv1", "wide.conv2"]
    assert [conv[i] for i in projection.skip_layers] == ["wide.down"]
    assert consuming_activation(g, node_of(g, "head").id) is None


def test_vit_params_fx_and_recorded():
    x = randn(2, 3, 8, 8)
    for method in ("fx", "recorded"):
        g = trace(ViT(), x, method=method)
        assert g.method == method
        params = {n.params["name"]: n for n in g.of_kind(Kind.PARAM)}
        assert set(params) == {"cls_token", "pos_embed"}
        (cat,) = g.of_kind(Kind.CONCAT)
        (add,) = g.of_kind(Kind.ADD)
        assert g[cat.inputs[0]].kind is Kind.RESHAPE and g[cat.inputs[0]].inputs == [params["cls_token"].id]
        assert add.inputs == [cat.id, params["pos_embed"].id]
        assert residual_adds(g) == []  # a parameter added is not a residual branch
        assert params["pos_embed"].shape == (1, 5, 16) and cat.shape == (2, 5, 16)
        assert params["pos_embed"].op == "parameter"


def test_swiglu_and_gating():
    g = trace(SwiGLU())
    (mul,) = g.of_kind(Kind.MUL)
    assert [g[i].kind for i in mul.inputs] == [Kind.ACTIVATION, Kind.LAYER]
    assert g[mul.inputs[0]].activation == ("silu", None)
    assert consuming_activation(g, node_of(g, "w1").id).activation == ("silu", None)
    assert consuming_activation(g, node_of(g, "w3").id) is None  # a product ends the walk

    g = trace(SE())
    gate, swish = g.of_kind(Kind.MUL)
    # a gate, not a swish
    assert consuming_activation(g, node_of(g, "fc2").id).activation == ("sigmoid", None)
    found = consuming_activation(g, node_of(g, "conv").id)
    assert found is None  # the gating product ends the walk from conv
    assert feeding_activation(g, node_of(g, "fc2").id).activation == ("relu", None)
    assert g[swish.inputs[1]].activation == ("sigmoid", None) and swish.inputs[0] == gate.id


def test_hand_written_swish_is_silu():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x):
            h = self.a(x)
            return self.b(h * torch.sigmoid(h))

    g = trace(M())
    found = consuming_activation(g, node_of(g, "a").id)
    assert found.activation == ("silu", None) and found.node.kind is Kind.MUL
    assert feeding_activation(g, node_of(g, "b").id).activation == ("silu", None)


def test_unknown_modules_in_a_model():
    class Swish(nn.Module):
        def forward(self, x):
            return x * torch.sigmoid(x)

    class MeanExpand(nn.Module):
        def forward(self, x):
            return x.mean(-1, keepdim=True).expand_as(x)

    model = nn.Sequential(nn.Linear(4, 8), Swish(), nn.Linear(8, 8), MeanExpand(), nn.Linear(8, 2))
    g = trace(model)
    assert g[2].kind is Kind.ACTIVATION and g[2].activation == ("silu", None) and g[2].module == "1"
    assert g[4].kind is Kind.OTHER and g[4].op == "MeanExpand"
    assert consuming_activation(g, node_of(g, "2").id) is None


def test_a_layer_alone():
    g = trace(nn.Linear(3, 4))
    assert [n.kind for n in g] == [Kind.INPUT, Kind.LAYER, Kind.OUTPUT] and g[1].module == ""
    g = trace(nn.MultiheadAttention(8, 2))
    assert [n.params.get("name") for n in g.of_kind(Kind.INPUT)] == ["query", "key", "value"]


# ---- recorded -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("training", [True, False])
def test_transformer_encoder_is_recorded(training):
    layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)
    enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).train(training)  # eval: no fast path
    g = trace(enc, randn(2, 5, 16))
    assert g.method == "recorded" and g.reason.startswith("fx: TraceError") and g.inputs_from == "given"
    names = ("self_attn", "linear1", "linear2")
    assert list(layers(g)) == [f"layers.{i}.{m}" for i in range(2) for m in names]
    attn = node_of(g, "layers.0.self_attn")
    assert attn.kind is Kind.LAYER and attn.inputs == [0, 0, 0] and attn.shape == (2, 5, 16)
    assert consuming_activation(g, node_of(g, "layers.0.linear1").id).activation == ("relu", None)
    res = residual_adds(g)
    assert len(res) == 4 and [len(r.layers) for r in res] == [1, 2, 1, 2]


def test_control_flow_with_and_without_example_inputs():
    x = randn(3, 6)
    given = trace(Branchy(), x)
    assert given.method == "recorded" and given.inputs_from == "given"
    assert "control flow" in given.reason and given[0].shape == (3, 6)
    built = trace(Branchy())
    assert built.method == "recorded" and built.reason == given.reason
    assert built.inputs_from == "built from Linear 'a' in_features=6: randn(2, 6)"
    assert built[0].shape == (2, 6)
    assert [n.kind for n in built.of_kind(Kind.LAYER, Kind.ACTIVATION)] == [
        Kind.LAYER, Kind.ACTIVATION, Kind.LAYER]


def test_recorded_scale_by_a_constant_tensor():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            h = self.fc(x) / torch.tensor(4.0).sqrt()
            return h if h.abs().max() < 1e9 else h

    g = trace(M())
    (scale,) = g.of_kind(Kind.SCALE)
    assert scale.params["factor"] == 0.5 and scale.inputs == [node_of(g, "fc").id]


def test_fx_and_recorded_agree_on_plain_models():
    for model, x in ((MLP(), randn(2, 12)), (SwiGLU(), randn(2, 8))):
        fx, rec = trace(model, x), trace(model, x, method="recorded")
        assert [(n.kind, n.op, n.inputs) for n in fx] == [(n.kind, n.op, n.inputs) for n in rec]
        assert [n.shape for n in fx] == [n.shape for n in rec]


def test_errors():
    with pytest.raises(InitlabError, match="method='magic' is unknown"):
        trace(MLP(), method="magic")
    with pytest.raises(InitlabError, match="cannot trace Branchy with torch.fx"):
        trace(Branchy(), method="fx")
    with pytest.raises(InitlabError, match=r"recorded forward .* failed .*pass example_inputs"):
        trace(Branchy(), randn(2, 5))

    class NoLayers(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(InitlabError, match=r"fx: TraceError.*NoLayers.*pass example_inputs"):
        trace(NoLayers())


@pytest.mark.parametrize("method", ["fx", "recorded"])
def test_model_is_left_as_it_was(method):
    model = Stateful(branch=method == "recorded").train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    attrs = {m: dict(vars(m)) for m in model.modules()}
    x = randn(5, 4)
    rng = torch.random.get_rng_state()
    g = trace(model, x)
    assert g.method == method
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    for m, before in attrs.items():
        assert dict(vars(m)) == before and all(vars(m)[k] is v for k, v in before.items())
    assert model.calls == 0 and not hasattr(model, "last") and model.training
