"""init_model on Hugging Face models built from tiny configs (no downloads): transformers' Conv1D
(weight ``(in, out)``, ``y = x W + b``) is a layer with true fans, GPT-2's packed ``c_attn`` is split
along its output axis (dim 1), and nothing is skipped."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from scipy import stats
from torch import nn

from initlab.errors import InitlabError
from initlab.gains import gain
from initlab.model import DetectionFallbackWarning, Packed, init_model
from initlab.model.propagation import RESIDUAL_GROWTH

transformers = pytest.importorskip("transformers", reason="transformers is not installed")
Conv1D = pytest.importorskip("transformers.pytorch_utils").Conv1D


def _gpt2(n_embd: int = 64, n_layer: int = 2, **kw) -> nn.Module:
    config = transformers.GPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=4, vocab_size=128,
                                     n_positions=32, bos_token_id=0, eos_token_id=0, **kw)
    return transformers.GPT2LMHeadModel(config)


def _ids() -> torch.Tensor:
    return torch.randint(0, 128, (2, 8), generator=torch.Generator().manual_seed(0))


def _conv1d_rows(plan):
    return [r for r in plan.rows if r.module_type == "Conv1D" and r.name.endswith(".weight")]


def test_gpt2_every_parameter_planned_with_true_conv1d_fans(gen):
    e = 128  # 3 blocks of 128 x 128 = 16384 entries each
    model = _gpt2(n_embd=e)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no skipped parameter, no detection fallback
        plan = init_model(model, example_inputs={"input_ids": _ids()}, generator=gen)
    names = [n for n, _ in model.named_parameters(remove_duplicate=False)]
    assert sorted(r.name for r in plan.rows) == sorted(names) and plan.skipped == []
    assert plan.detection == "hooks" and all(r.applied for r in plan.rows if r.scheme != "tied")
    lm = plan["lm_head.weight"]  # tied to the token embedding: one row, not re-drawn
    assert lm.scheme == "tied" and "transformer.wte.weight" in lm.note and not lm.applied
    assert model.lm_head.weight is model.transformer.wte.weight
    fans = {"attn.c_attn": (e, e), "attn.c_proj": (e, e), "mlp.c_fc": (e, 4 * e), "mlp.c_proj": (4 * e, e)}
    # a LayerNorm's output has E[x^2] = var / (var + eps): the stream's variance is at least that of the
    # token and position embeddings, 1 / e each under the tied-head rule, so 1 within e * eps / 2
    tol = 2 * e * model.transformer.ln_f.eps
    for row in _conv1d_rows(plan):  # (in, out) = (fan_in, fan_out): not torch's (shape[1], shape[0])
        key = row.name.split(".", 3)[3].removesuffix(".weight")
        assert (row.fan_in, row.fan_out) == fans[key], row.name
        assert row.found_by == "hooks" and row.scheme == "propagated"
        # E[w^2] = E[y^2] / (fan_in E[x^2]), E[x^2] the propagated second moment of its own input
        assert row.std == pytest.approx(math.sqrt(row.q_out / (row.fan_in * row.q_in)), rel=1e-9)
        role = "residual branch" if key.endswith("c_proj") else "pre-activation"
        assert role in row.note, row
        if role == "pre-activation":  # reads ln_1 / ln_2: unit second moment, up to the norm's eps
            assert row.q_out == pytest.approx(1.0, rel=1e-9) and row.q_in == pytest.approx(1.0, rel=tol)
    assert plan["transformer.h.0.mlp.c_fc.weight"].activation == "gelu_tanh"  # NewGELUActivation, measured
    # the residual stream (token + position embeddings, then each branch end adds its E[y^2]) grows by
    # RESIDUAL_GROWTH over the 2 * n_layer branches
    stream = plan["transformer.wte.weight"].q_out + plan["transformer.wpe.weight"].q_out
    first = stream
    for i in range(2):
        for key in ("attn.c_proj", "mlp.c_proj"):
            row = plan[f"transformer.h.{i}.{key}.weight"]
            assert row.q_out == pytest.approx(stream * (RESIDUAL_GROWTH ** (1 / 4) - 1), rel=1e-9)
            stream += row.q_out
    assert stream == pytest.approx(RESIDUAL_GROWTH * first, rel=1e-9)
    assert lm.q_out == pytest.approx(1.0, rel=tol)  # the tied head reads ln_f: logits at unit E[y^2]
    assert "tied head" in plan["transformer.wte.weight"].note
    row = plan["transformer.h.0.attn.c_attn.weight"]
    expected = row.std  # one scale for Q, K and V: only fan_in = e matters
    assert row.chunks == 3 and "per chunk along dim 1" in row.note and "split_size" in row.note
    n = e * e
    for w in model.transformer.h[0].attn.c_attn.weight.detach().chunk(3, dim=1):
        assert abs(w.std().item() - expected) < 5 * expected / math.sqrt(2 * n)
    for r in plan.rows:
        if r.module_type == "Conv1D" and r.name.endswith(".bias"):
            assert r.scheme == "zeros" and r.chunks == 1
    biases = [m.bias for m in model.modules() if isinstance(m, Conv1D)]
    assert len(biases) == 8 and all(torch.equal(b, torch.zeros_like(b)) for b in biases)


def test_gpt2_needs_no_example_inputs():
    """fx cannot trace GPT-2; the hooks and the graph run on its own ``model.dummy_inputs``."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no detection fallback
        plan = init_model(_gpt2(n_layer=1), dry_run=True)
    assert plan.detection == "hooks" and "hooks on inputs model.dummy_inputs" in plan.detection_note
    assert "inputs model.dummy_inputs" in plan.propagation
    assert plan["transformer.h.0.mlp.c_fc.weight"].activation == "gelu_tanh"
    assert {r.scheme for r in _conv1d_rows(plan)} == {"propagated"}


def test_readme_packed_rule_splits_a_conv1d_along_its_output_axis(gen):
    e = 768  # GPT-2 small's c_attn: (768, 2304)
    layer = Conv1D(3 * e, e)
    plan = init_model(layer, rules=[(r"weight$", Packed(3))], generator=gen)
    row = plan["weight"]
    expected = math.sqrt(2.0 / (e + e))  # Glorot normal per block: 0.0361, not the input-axis 0.0280
    assert (row.fan_in, row.fan_out, row.chunks) == (e, e, 3) and "along dim 1" in row.note
    assert row.std == pytest.approx(expected, rel=1e-12) and row.rule.startswith("#0")
    n = e * e
    for w in layer.weight.detach().chunk(3, dim=1):
        assert abs(w.std().item() - expected) < 5 * expected / math.sqrt(2 * n)
    # n_embd=128: dim 0 (128) is not a multiple of 3, so a split along the input axis raised
    plan = init_model(_gpt2(n_embd=128), rules=[(r"c_attn\.weight$", Packed(3))], dry_run=True,
                      example_inputs={"input_ids": _ids()})
    assert plan["transformer.h.1.attn.c_attn.weight"].chunks == 3
    with pytest.raises(InitlabError, match=r"chunks=5 does not divide dim 1 .*output axis"):
        init_model(Conv1D(3 * 8, 8), rules=[(r"weight$", Packed(5))], dry_run=True)


@pytest.mark.parametrize("how", ["scheme", "packed_rule"])
def test_orthogonal_blocks_of_c_attn_are_orthogonal_along_dim_1(gen, how):
    e = 128
    model = _gpt2(n_embd=e, n_layer=1)
    if how == "scheme":  # c_attn packed by structure
        plan = init_model(model, "orthogonal", example_inputs={"input_ids": _ids()}, generator=gen)
    else:
        plan = init_model(model, rules=[(r"c_attn\.weight$", Packed(3, "orthogonal"))],
                          example_inputs={"input_ids": _ids()}, generator=gen)
    row = plan["transformer.h.0.attn.c_attn.weight"]
    assert row.scheme == "orthogonal" and row.chunks == 3
    assert row.std == pytest.approx(1 / math.sqrt(e), rel=1e-12)  # gain / sqrt(max(rows, cols)) per block
    eye = torch.eye(e, dtype=torch.float64)
    for w in model.transformer.h[0].attn.c_attn.weight.detach().double().chunk(3, dim=1):
        assert torch.allclose(w.T @ w, eye, atol=1e-5, rtol=0)


def test_named_schemes_use_true_conv1d_fans(gen):
    e = 64
    model = _gpt2(n_embd=e, n_layer=1)
    he = init_model(model, "he_normal", example_inputs={"input_ids": _ids()}, dry_run=True)
    # gain 1 (nothing consumes these outputs); fan_in = in = weight.shape[0]
    assert he["transformer.h.0.mlp.c_proj.weight"].std == pytest.approx(1 / math.sqrt(4 * e), rel=1e-12)
    assert he["transformer.h.0.mlp.c_fc.weight"].std == pytest.approx(1 / math.sqrt(e), rel=1e-12)
    assert he["transformer.h.0.attn.c_attn.weight"].std == pytest.approx(1 / math.sqrt(e), rel=1e-12)
    keras = init_model(model, "keras_default", example_inputs={"input_ids": _ids()}, dry_run=True)
    assert keras["transformer.h.0.mlp.c_fc.weight"].bound == pytest.approx(math.sqrt(6 / (e + 4 * e)))
    assert keras["transformer.h.0.attn.c_attn.weight"].bound == pytest.approx(math.sqrt(6 / (e + e)))
    assert keras["transformer.h.0.attn.c_attn.bias"].spec == "constant(0)"
    # c_fc feeds a GELU (HF's NewGELUActivation, recognised by measurement): critical needs a bias variance
    with pytest.raises(InitlabError, match=r"layer 'transformer\.h\.0\.mlp\.c_fc'.*gelu_tanh"):
        init_model(model, "critical", example_inputs={"input_ids": _ids()}, dry_run=True)
    critical = init_model(model, "critical", example_inputs={"input_ids": _ids()}, dry_run=True, sigma_b2=1.0)
    row = critical["transformer.h.0.mlp.c_proj.weight"]  # sigma_w / sqrt(fan_in), linear: sigma_w = 1
    assert row.std == pytest.approx(1 / math.sqrt(4 * e), rel=1e-12)


def test_torch_default_is_what_conv1d_init_does(gen):
    """transformers' Conv1D.__init__: ``normal_(weight, std=0.02)``, bias zeros."""
    nf, nx = 192, 64
    layer = Conv1D(nf, nx)
    plan = init_model(layer, "torch_default", generator=gen)
    assert plan["weight"].spec == "normal(std=0.02)" and plan["weight"].std == 0.02
    assert plan["bias"].scheme == "torch_default" and torch.equal(layer.bias, torch.zeros(nf))
    torch.manual_seed(7)  # the reference: transformers' own draw, from the global RNG
    reference = Conv1D(nf, nx).weight.detach().flatten()
    ours = layer.weight.detach().flatten()  # 12288 entries
    assert stats.ks_2samp(reference.numpy(), ours.numpy()).pvalue > 1e-4
    assert abs(ours.std().item() - 0.02) < 5 * 0.02 / math.sqrt(2 * ours.numel())


class _Chain(nn.Module):
    """Conv1D -> tanh -> Conv1D -> tanh -> Conv1D; ``branch`` makes fx fail (data-dependent)."""

    def __init__(self, branch: bool) -> None:
        super().__init__()
        self.branch = branch
        self.c1, self.a1 = Conv1D(16, 8), nn.Tanh()
        self.c2, self.a2 = Conv1D(16, 16), nn.Tanh()
        self.c3 = Conv1D(4, 16)

    def forward(self, x):
        h = self.a2(self.c2(self.a1(self.c1(x))))
        if self.branch and h.sum() < -1e9:
            return h
        return self.c3(h)


class _Misordered(_Chain):
    """c3 registered first: an input built from the first layer in module order does not fit c1."""

    def __init__(self) -> None:
        nn.Module.__init__(self)
        self.branch = True
        self.c3 = Conv1D(4, 16)
        self.c1, self.a1 = Conv1D(16, 8), nn.Tanh()
        self.c2, self.a2 = Conv1D(16, 16), nn.Tanh()


@pytest.mark.parametrize(("model", "inputs", "found_by"), [
    (lambda: _Chain(False), False, "fx"), (lambda: _Chain(True), True, "hooks"),
    (lambda: _Chain(True), False, "hooks"),  # inputs built from c1: randn(2, 8)
    (_Misordered, False, "module_order"),
])
def test_conv1d_activation_is_found_like_a_linear(gen, model, inputs, found_by):
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan = init_model(model(), example_inputs=x if inputs else None, dry_run=True)
    fell_back = [w for w in caught if issubclass(w.category, DetectionFallbackWarning)]
    assert len(fell_back) == (found_by == "module_order") and len(caught) == len(fell_back)
    first, mid, head = plan["c1.weight"], plan["c2.weight"], plan["c3.weight"]
    assert (first.fan_in, first.fan_out) == (8, 16) and (head.fan_in, head.fan_out) == (16, 4)
    assert first.activation == "tanh" and first.found_by == found_by
    assert first.gain == pytest.approx(1.0, rel=1e-12)  # reads the data
    g = gain("tanh", "forward")
    assert (mid.activation, mid.input_activation, mid.found_by) == ("tanh", "tanh", found_by)
    # propagated: 1 / sqrt(16 E[tanh(z)^2]) = g / 4; without a graph (module order) the per-layer rule,
    # Glorot with the gain of the tanh that consumes it, g sqrt(2 / (16 + 16)): the same
    assert mid.scheme == ("glorot_normal" if found_by == "module_order" else "propagated")
    assert mid.std == pytest.approx(g / 4, rel=1e-6)
    assert head.activation == "linear"


def test_cross_attention_c_attn_is_two_blocks_and_needs_a_split_size_parent():
    config = transformers.GPT2Config(n_embd=32, n_head=4, add_cross_attention=True)
    attn = transformers.models.gpt2.modeling_gpt2.GPT2Attention(config, is_cross_attention=True, layer_idx=0)
    plan = init_model(nn.ModuleDict({"attn": attn}), dry_run=True)  # no forward: module order, no warning
    assert plan["attn.c_attn.weight"].chunks == 2 and plan["attn.c_attn.weight"].fan_out == 32  # K, V
    assert plan["attn.q_attn.weight"].chunks == 1
    loose = nn.ModuleDict({"c_attn": Conv1D(96, 32)})  # no split_size beside it: not packed
    assert init_model(loose, dry_run=True)["c_attn.weight"].chunks == 1
