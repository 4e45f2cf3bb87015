"""plan_scales: each layer solved from its own input's propagated second moment; residual branches,
tied embeddings and joined parameters. Weights are drawn from the plan here (seeded) and the
forward pass is measured against the targets."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from initlab import init_model
from initlab.errors import InitlabError
from initlab.model import RESIDUAL_GROWTH, plan_scales


def _draw(model: nn.Module, plan, seed: int = 0) -> None:
    """Zero-mean normal weights with the planned E[w^2], zero biases (the plan's contract)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for (module, part), s in plan.scales.items():
            m = model.get_submodule(module)
            if part in ("weight",):
                m.weight.normal_(0.0, s.std, generator=g)
                if getattr(m, "bias", None) is not None:
                    m.bias.zero_()
        for name, std in plan.params.items():
            model.get_parameter(name).normal_(0.0, std, generator=g)


class Mixed(nn.Module):
    """ReLU -> tanh -> sigmoid -> GELU: the gain of the consuming activation is wrong for each."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc = nn.ModuleList(nn.Linear(width, width) for _ in range(5))
        self.acts = [torch.relu, torch.tanh, torch.sigmoid, nn.functional.gelu]

    def forward(self, x):
        pre = []
        for fc, act in zip(self.fc, self.acts, strict=False):
            x = fc(x)
            pre.append(x)
            x = act(x)
        self.pre = pre
        return self.fc[-1](x)


def test_mixed_activations_every_pre_activation_has_unit_second_moment():
    """Width 512, batch 1024, 6 weight draws: each pre-activation's measured E[x^2], averaged over
    the draws, is 1 within 2% + 5 standard errors. The error comes from the input's shared mean
    m (sigmoid: 0.5): per unit, ``(sum_i w_i m)^2`` is m^2 fan_in Var(w) times a chi-square(1), so
    the average over 512 units and 6 draws has relative SE ``sqrt(2 / 3072) m^2 / q``."""
    torch.manual_seed(0)
    net = Mixed(512)
    plan = plan_scales(net, torch.randn(4, 512))
    assert {k[0] for k in plan.scales} == {f"fc.{i}" for i in range(5)}
    x = torch.randn(1024, 512, generator=torch.Generator().manual_seed(1))
    draws = 6
    q = torch.zeros(5)
    for seed in range(draws):
        _draw(net, plan, 100 + seed)  # not the data's seed: equal streams would correlate W and x
        with torch.no_grad():
            out = net(x)
        q += torch.tensor([p.square().mean().item() for p in net.pre[:4]] + [out.square().mean().item()])
    q /= draws
    for i in range(5):
        node = next(n for n in plan.graph if n.module == f"fc.{i}")
        m = plan.graph[node.inputs[0]].meta["moments"]
        tol = 0.02 + 5 * math.sqrt(2 / (512 * draws)) * m.mean**2 / m.second
        assert q[i].item() == pytest.approx(1.0, rel=tol), (i, tol)
    # the solved E[w^2] reads the input's own second moment: after a sigmoid, E[phi^2] includes its mean
    s = plan.scales[("fc.3", "weight")]
    assert s.weight_second == pytest.approx(1.0 / (512 * s.q_in), rel=1e-12)
    assert s.q_in > 0.25  # E[sigmoid(z)^2] > 0.5^2


class Residual(nn.Module):
    def __init__(self, width: int, blocks: int) -> None:
        super().__init__()
        self.inp = nn.Linear(width, width)
        self.w1 = nn.ModuleList(nn.Linear(width, width) for _ in range(blocks))
        self.w2 = nn.ModuleList(nn.Linear(width, width) for _ in range(blocks))
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        h = self.inp(x)
        self.stream = [h]
        for a, b in zip(self.w1, self.w2, strict=True):
            h = h + b(torch.relu(a(h)))
            self.stream.append(h)
        return self.head(h)


def test_residual_stream_grows_by_the_stated_factor():
    """8 blocks without norms: the stream's second moment grows by RESIDUAL_GROWTH over all adds
    (each add: x G^(1/8)); measured within 5% at width 512 (the head reads the grown stream and
    still starts at unit second moment)."""
    torch.manual_seed(0)
    net = Residual(512, 8)
    plan = plan_scales(net, torch.randn(4, 512), zero_ends=False)  # the rule of networks with norms
    assert plan.residual == 8
    assert {s.role for k, s in plan.scales.items() if k[0].startswith("w2.")} == {"residual branch"}
    _draw(net, plan, 100)
    with torch.no_grad():
        out = net(torch.randn(2048, 512, generator=torch.Generator().manual_seed(1)))
    q = [h.square().mean().item() for h in net.stream]
    assert q[0] == pytest.approx(1.0, rel=0.05)
    assert q[-1] / q[0] == pytest.approx(RESIDUAL_GROWTH, rel=0.05)
    for a, b in zip(q, q[1:], strict=False):
        assert b / a == pytest.approx(RESIDUAL_GROWTH ** (1 / 8), rel=0.02)
    assert out.square().mean().item() == pytest.approx(1.0, rel=0.1)


class Bottleneck(nn.Module):
    """``L`` residual blocks of three layers each (``m = 3``): ``h + c(relu(b(relu(a(h)))))``."""

    def __init__(self, width: int, blocks: int) -> None:
        super().__init__()
        self.a, self.b, self.c = (nn.ModuleList(nn.Linear(width, width) for _ in range(blocks))
                                  for _ in "abc")

    def forward(self, h):
        for a, b, c in zip(self.a, self.b, self.c, strict=True):
            h = h + c(torch.relu(b(torch.relu(a(h)))))
        return h


@pytest.mark.parametrize(("blocks", "m"), [(4, 2), (9, 3)])
def test_without_normalization_the_layers_before_a_zeroed_end_follow_fixup(blocks, m):
    """Fixup's scaling as targets (Zhang et al. 2019): on a branch of ``m`` layers in a network of
    ``L`` branches, the ``k``-th layer's output second moment is ``L^(-k/(m-1))`` (He x
    ``L^(-1/(2m-2))`` per layer, compounded); the solved ``E[w^2]`` gives exactly that from the
    layer's propagated input, and a draw at width 512 measures it within 5 %."""
    torch.manual_seed(0)
    net = Residual(512, blocks) if m == 2 else Bottleneck(512, blocks)
    plan = plan_scales(net, torch.randn(4, 512))
    assert plan.residual == blocks
    inner = [["w1"]] if m == 2 else [["a"], ["b"]]
    for k, (name,) in enumerate(inner, start=1):
        want = blocks ** (-k / (m - 1))
        for i in range(blocks):
            s = plan.scales[(f"{name}.{i}", "weight")]
            assert s.q_out == pytest.approx(want, rel=1e-12)
            assert s.weight_second * 512 * s.q_in == pytest.approx(want, rel=1e-12)
            assert s.role == f"residual branch, no norm: L^(-{k}/(m-1)), L={blocks}, m={m}"
    _draw(net, plan, 100)
    layer = (net.w1 if m == 2 else net.b)[0]
    seen = []
    layer.register_forward_hook(lambda mod, args, out: seen.append(out.square().mean().item()))
    with torch.no_grad():
        net(torch.randn(2048, 512, generator=torch.Generator().manual_seed(1)))
    assert seen[0] == pytest.approx(1 / blocks, rel=0.05)  # the last inner layer: L^(-(m-1)/(m-1))


def test_inner_exponent_scales_fixups_targets(monkeypatch):
    """``INNER_EXPONENT`` (the measured choice is Fixup's, 1) multiplies the exponent of the inner
    layers' targets, ``L^(-e k/(m-1))``; the plan's note names SkipInit's gates, measured faster."""
    import initlab.model.propagation as propagation

    monkeypatch.setattr(propagation, "INNER_EXPONENT", 1.5)
    torch.manual_seed(0)
    blocks = 4
    plan = plan_scales(Residual(64, blocks), torch.randn(4, 64))
    for i in range(blocks):
        assert plan.scales[(f"w1.{i}", "weight")].q_out == pytest.approx(blocks ** -1.5, rel=1e-12)
    assert any("add_skip_gates" in n for n in plan.notes)


def test_a_kept_delta_chain_is_propagated_with_its_own_taps():
    """Layers a ``"keep"`` rule leaves alone enter the solve with their own taps' weights: behind a
    kept chain of delta kernels (the centre tap only, no padding read), the solved head starts the
    logits at E[y^2] = 1 (measured on 256 inputs: 2000 logits per input, so within 15 %; the
    even-tap assumption put the head's input at 0.06 against a measured 0.38, and the logits at 6)."""
    from initlab.init import delta_orthogonal_
    from initlab.zoo import plain_cnn

    torch.manual_seed(0)
    net = plain_cnn(16, 32, classes=2000)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for m in net.features:
            if isinstance(m, nn.Conv2d):
                if m.in_channels == 1:
                    nn.init.kaiming_normal_(m.weight, generator=gen)
                else:
                    delta_orthogonal_(m.weight, gain=2**0.5, generator=gen)
                m.bias.zero_()
    x = torch.randn(256, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    init_model(net, "variance", rules=[(r"^features\.", "keep")], example_inputs=x[:4],
               generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = net(x)
    assert y.square().mean().item() == pytest.approx(1.0, rel=0.15)


def test_without_normalization_branch_ends_start_at_zero():
    """No norm anywhere: each branch's last layer starts at 0, so the stream is its shortcut at init
    (every add keeps the stream's second moment) and the head reads the input's."""
    torch.manual_seed(0)
    net = Residual(64, 4)
    plan = plan_scales(net, torch.randn(4, 64))
    ends = {k: s for k, s in plan.scales.items() if k[0].startswith("w2.")}
    assert plan.residual == 4 and {s.weight_second for s in ends.values()} == {0.0}
    assert {s.role for s in ends.values()} == {"residual branch end, no norm: 0"}
    assert any("no normalization" in n for n in plan.notes)
    _draw(net, plan, 100)
    x = torch.randn(256, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        net(x)
    for h in net.stream[1:]:
        assert torch.equal(h, net.stream[0])


def test_residual_growth_none_leaves_branches_as_pre_activations():
    net = Residual(16, 2)
    plan = plan_scales(net, torch.randn(2, 16), residual_growth=None)
    assert plan.residual == 0 and {s.role for s in plan.scales.values()} == {"pre-activation"}


class BasicBlock(nn.Module):
    """ResNet's basic block: the branch's last BatchNorm is the add's operand itself."""

    def __init__(self, c: int = 4) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


def test_a_branch_that_ends_in_a_norm_keeps_its_last_layer_a_pre_activation():
    """The norm sets the branch's scale: it is not a scaled branch and does not count in L."""
    plan = plan_scales(BasicBlock(), torch.randn(2, 4, 8, 8))
    assert plan.residual == 0 and plan.scales[("conv2", "weight")].role == "pre-activation"
    assert any("ends in a norm" in note for note in plan.notes)


@pytest.mark.parametrize("bad", [1.0, 0.5, math.inf, math.nan])
def test_bad_residual_growth_is_refused(bad):
    with pytest.raises(InitlabError, match="residual_growth"):
        plan_scales(Residual(4, 1), torch.randn(2, 4), residual_growth=bad)


def test_layer_targets_set_a_layers_output_second_moment():
    """A named layer solves for its target q (numpy floats included); the layer after it still for 1:
    fan_in E[w^2] E[x^2] = q for a Linear reading unit data (exact for the planned E[w^2])."""
    import numpy as np

    net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4))
    plan = plan_scales(net, torch.randn(2, 8), layer_targets={"0": np.float32(0.3)})
    s0, s2 = plan.scales[("0", "weight")], plan.scales[("2", "weight")]
    assert s0.role == "depth q*" and s0.q_out == pytest.approx(0.3, rel=1e-6)
    assert 8 * s0.weight_second * s0.q_in == pytest.approx(0.3, rel=1e-6)
    assert s2.role == "pre-activation" and s2.q_out == 1.0


@pytest.mark.parametrize(("bad", "match"), [
    ({"0.weight": 0.3}, "no module"), ({"0": 0.0}, "finite second moment"), ({"0": True}, "finite"),
    ({"0": math.nan}, "finite"), ([("0", 0.3)], "pass \\{module name"),
])
def test_bad_layer_targets_are_refused(bad, match):
    net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4))
    with pytest.raises(InitlabError, match=match):
        plan_scales(net, torch.randn(2, 8), layer_targets=bad)


class TinyLM(nn.Module):
    """Token + position embeddings, pre-LN blocks, a head tied to the token embedding."""

    def __init__(self, vocab: int = 300, d: int = 256, n: int = 16) -> None:
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(n, d)
        self.ln = nn.LayerNorm(d)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.tok.weight

    def forward(self, ids):
        h = self.tok(ids) + self.pos(torch.arange(ids.shape[1]))
        h = h + self.fc2(nn.functional.gelu(self.fc1(self.ln(h))))
        return self.head(self.ln_f(h))


def test_tied_embedding_head_starts_logits_at_unit_second_moment():
    """The tied table gets E[w^2] = 1/d (logits E[y^2] = d E[w^2] E[h^2] = 1 after the final
    LayerNorm), and the position table joins it at the same scale; measured logits std within
    10% of 1 (256 x 300 logits per example, 64 examples)."""
    torch.manual_seed(0)
    net = TinyLM()
    ids = torch.randint(0, 300, (64, 16), generator=torch.Generator().manual_seed(2))
    plan = plan_scales(net, ids)
    tok, pos = plan.scales[("tok", "weight")], plan.scales[("pos", "weight")]
    assert tok.role == "tied head" and tok.weight_second == pytest.approx(1 / 256, rel=1e-4)  # LayerNorm eps
    assert pos.weight_second == tok.weight_second
    _draw(net, plan, 100)
    with torch.no_grad():
        logits = net(ids)
    assert logits.std().item() == pytest.approx(1.0, rel=0.1)


class TokenViT(nn.Module):
    def __init__(self, d: int = 64) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, d, 4, stride=4)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos = nn.Parameter(torch.zeros(1, 17, d))
        self.head = nn.Linear(d, 5)

    def forward(self, x):
        h = self.patch(x).flatten(2).transpose(1, 2)
        h = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), h], dim=1) + self.pos
        return self.head(h[:, 0])


def test_class_token_and_position_embeddings_get_the_scale_they_join():
    torch.manual_seed(0)
    net = TokenViT()
    plan = plan_scales(net, torch.randn(2, 3, 16, 16))
    assert set(plan.params) == {"cls_token", "pos"}
    assert plan.params["cls_token"] == pytest.approx(1.0, rel=1e-6)  # the patch embedding's q: 1
    assert plan.params["pos"] == pytest.approx(1.0, rel=1e-6)


def test_gpt2_from_a_config_logits_near_unit_and_every_conv1d_planned():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=128, n_head=4, vocab_size=256, n_positions=32,
                                  bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    plan = plan_scales(model)
    conv1d = {q for q, m in model.named_modules() if type(m).__name__ == "Conv1D"}
    assert conv1d <= {k[0] for k in plan.scales}
    assert plan.residual == 4
    _draw(model, plan)
    ids = torch.randint(0, 256, (8, 32), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        logits = model(ids).logits
    assert 0.8 < logits.std().item() < 1.25
