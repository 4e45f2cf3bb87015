"""The residual-family schemes of ``init_model`` (issue 13): ``fixup``, ``skipinit`` / ``rezero``,
``gpt2``, ``t_fixup``, ``deepnorm``. Every expected std is recomputed here from the paper's formula
and the model's known architecture (number of blocks, fans); the planned stds must match to
``rel=1e-12``. Drawn weights: exact zeros where the scheme zeroes, the sample std within 5 standard
errors (``sigma / sqrt(2 n)``, seeded) for tensors of 2000+ entries, same seed same bits. The
transform parameters (``skip_gate``, ``fixup_*``) are registered by hand here, so these tests do not
depend on :mod:`initlab.transforms`."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from initlab import init_model, zoo
from initlab.errors import InitlabError
from initlab.zoo import BasicBlock

REL = 1e-12


# ---- models ----------------------------------------------------------------------------------------


class Attention(nn.Module):
    """Causal self-attention with separate q, k, v projections: ``sdpa`` or ``softmax(q k^T) v``."""

    def __init__(self, d: int, heads: int, sdpa: bool) -> None:
        super().__init__()
        self.heads, self.sdpa = heads, sdpa
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x):
        b, t, d = x.shape
        h = self.heads
        q, k, v = (f(x).view(b, t, h, d // h).transpose(1, 2) for f in (self.q, self.k, self.v))
        if self.sdpa:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            y = ((q @ k.transpose(-2, -1)) * (d // self.heads) ** -0.5).softmax(-1) @ v
        return self.o(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    """A pre-LN GPT block: ``x + attn(ln1(x))``, then ``x + proj(gelu(fc(ln2(x))))``."""

    def __init__(self, d: int, heads: int, sdpa: bool) -> None:
        super().__init__()
        self.ln1, self.attn, self.ln2 = nn.LayerNorm(d), Attention(d, heads, sdpa), nn.LayerNorm(d)
        self.fc, self.proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.proj(F.gelu(self.fc(self.ln2(x))))


class TinyGPT(nn.Module):
    """Token + position embeddings, ``n`` blocks, a final norm and an (untied) head."""

    def __init__(self, n: int = 3, d: int = 64, vocab: int = 128, ctx: int = 16, sdpa: bool = True) -> None:
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(ctx, d)
        self.blocks = nn.ModuleList(Block(d, 4, sdpa) for _ in range(n))
        self.ln_f, self.head = nn.LayerNorm(d), nn.Linear(d, vocab, bias=False)

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for b in self.blocks:
            x = b(x)
        return self.head(self.ln_f(x))


class PackedAttention(nn.Module):
    """One layer makes q, k and v (GPT-2's ``c_attn``), split after it."""

    def __init__(self, d: int = 16) -> None:
        super().__init__()
        self.qkv, self.o = nn.Linear(d, 3 * d), nn.Linear(d, d)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return x + self.o(F.scaled_dot_product_attention(q, k, v))


class Untraceable(nn.Module):
    """A residual model whose forward takes a dict and branches on the data: neither fx nor a
    forward on a built input runs it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, batch):
        x = batch["x"]
        return x + self.fc(x) if bool(x.sum() > 0) else x


def gpt_inputs(vocab: int = 128, t: int = 16) -> torch.Tensor:
    return torch.randint(0, vocab, (2, t), generator=torch.Generator().manual_seed(1))


def encoder(n: int = 2, d: int = 64) -> nn.TransformerEncoder:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(d, 4, 2 * d, batch_first=True)
    return nn.TransformerEncoder(layer, n, enable_nested_tensor=False)


def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def resnet() -> nn.Module:
    return zoo.build("resnet20_nonorm")


def conv_fans(c: nn.Conv2d) -> tuple[int, int]:
    rf = c.kernel_size[0] * c.kernel_size[1]
    return c.in_channels * rf, c.out_channels * rf


def xavier(fan_in: int, fan_out: int, gain: float = 1.0) -> float:
    return gain * math.sqrt(2.0 / (fan_in + fan_out))


def assert_sample_std(t: torch.Tensor, sigma: float) -> None:
    """The sample std of ``t`` within 5 standard errors ``sigma / sqrt(2 n)`` of ``sigma``."""
    n = t.numel()
    assert n >= 2000
    assert abs(float(t.detach().double().std()) - sigma) < 5 * sigma / math.sqrt(2 * n)


# ---- fixup ------------------------------------------------------------------------------------------


def test_fixup_plans_the_papers_stds_on_a_resnet():
    net = resnet()
    plan = init_model(net, "fixup", dry_run=True)
    blocks = [m for m in net.modules() if isinstance(m, BasicBlock)]
    n_branches, m = len(blocks), 2  # each branch: conv1 -> relu -> conv2
    for i, b in enumerate(blocks):
        fan_in, _ = conv_fans(b.conv1)
        want = math.sqrt(2.0 / fan_in) * n_branches ** (-1.0 / (2 * m - 2))
        assert plan[f"blocks.{i}.conv1.weight"].std == pytest.approx(want, rel=REL)
        assert plan[f"blocks.{i}.conv1.weight"].scheme == "fixup"
        row = plan[f"blocks.{i}.conv2.weight"]
        assert (row.scheme, row.std) == ("zeros", 0.0) and "last layer" in row.note
        if len(b.shortcut):  # a projection shortcut: not on a branch, He
            sc = b.shortcut[0]
            assert plan[f"blocks.{i}.shortcut.0.weight"].std == pytest.approx(
                math.sqrt(2.0 / conv_fans(sc)[0]), rel=REL)
    assert plan["stem.weight"].std == pytest.approx(math.sqrt(2.0 / conv_fans(net.stem)[0]), rel=REL)
    assert plan["head.weight"].scheme == plan["head.bias"].scheme == "zeros"
    assert "classifier" in plan["head.weight"].note
    assert all(plan[n].scheme == "zeros" for n, _ in net.named_parameters() if n.endswith(".bias"))


def test_fixup_draws_zeros_and_every_branch_outputs_exactly_zero():
    net = resnet()
    init_model(net, "fixup", generator=gen())
    blocks = [m for m in net.modules() if isinstance(m, BasicBlock)]
    assert all(not b.conv2.weight.any() for b in blocks) and not net.head.weight.any()
    fan_in, _ = conv_fans(blocks[0].conv1)  # 16 x 16 x 3 x 3 = 2304 entries
    assert_sample_std(blocks[0].conv1.weight, math.sqrt(2.0 / fan_in) / math.sqrt(len(blocks)))
    seen = []
    hooks = [b.conv2.register_forward_hook(lambda m, a, out: seen.append(float(out.detach().abs().max())))
             for b in blocks]
    logits = net(torch.randn(2, 3, 32, 32, generator=gen()))
    for h in hooks:
        h.remove()
    assert seen == [0.0] * len(blocks) and not logits.any()


def test_fixup_sets_the_fixup_scalars_and_says_when_they_are_missing():
    net = resnet()
    plan = init_model(net, "fixup", dry_run=True)
    assert "add_fixup_scalars" in plan.propagation
    b = net.blocks[0]
    for module, name in ((b.conv1, "fixup_bias_in"), (b.conv2, "fixup_bias_out"), (b.conv2, "fixup_scale")):
        module.register_parameter(name, nn.Parameter(torch.tensor(0.7)))
    plan = init_model(net, "fixup", generator=gen())
    assert "add_fixup_scalars" not in plan.propagation
    assert b.conv1.fixup_bias_in.item() == 0.0 and b.conv2.fixup_bias_out.item() == 0.0
    assert b.conv2.fixup_scale.item() == 1.0
    assert plan["blocks.0.conv2.fixup_scale"].scheme == "ones"
    assert "Fixup scalar multiplier" in plan["blocks.0.conv2.fixup_scale"].note
    assert "Fixup scalar bias" in plan["blocks.0.conv1.fixup_bias_in"].note


def test_fixup_on_an_mha_encoder_zeroes_the_out_projection_and_the_mlp_end():
    enc = encoder()
    plan = init_model(enc, "fixup", example_inputs=torch.randn(2, 8, 64), dry_run=True)
    n_branches, d = 4, 64  # 2 layers x (attention, MLP)
    assert plan["layers.0.self_attn.out_proj.weight"].scheme == "zeros"
    assert plan["layers.1.linear2.weight"].scheme == "zeros"
    assert plan["layers.0.linear1.weight"].std == pytest.approx(math.sqrt(2.0 / d) / math.sqrt(n_branches),
                                                                rel=REL)
    # the attention is one layer on its branch (m = 1): Q, K, V He, unscaled
    assert plan["layers.0.self_attn.in_proj_weight"].std == pytest.approx(math.sqrt(2.0 / d), rel=REL)


def test_fixup_leaves_a_head_tied_to_the_embedding_alone():
    net = TinyGPT(2, d=32)
    net.head.weight = net.wte.weight
    plan = init_model(net, "fixup", example_inputs=gpt_inputs(), generator=gen())
    assert plan["head.weight"].scheme == "tied" and plan["wte.weight"].scheme == "embedding"
    assert bool(net.wte.weight.any())


# ---- skipinit / rezero -----------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["skipinit", "rezero"])
def test_skip_gate_schemes_need_gates(scheme):
    with pytest.raises(InitlabError, match=rf"{scheme}.*ResNet.*skip_gate.*add_skip_gates\(model\)"):
        init_model(resnet(), scheme, dry_run=True)


@pytest.mark.parametrize("scheme", ["skipinit", "rezero"])
def test_skip_gates_are_zeroed_and_weights_follow_the_variance_propagation(scheme):
    net = resnet()
    blocks = [m for m in net.modules() if isinstance(m, BasicBlock)]
    for b in blocks:
        b.conv2.register_parameter("skip_gate", nn.Parameter(torch.tensor(0.7)))
    variance = init_model(net, "variance", dry_run=True)
    plan = init_model(net, scheme, generator=gen())
    assert all(b.conv2.skip_gate.item() == 0.0 for b in blocks)
    gate = plan["blocks.0.conv2.skip_gate"]
    assert gate.scheme == "zeros" and gate.note.startswith("SkipInit/ReZero gate: 0")
    for name, _ in net.named_parameters():
        if name.endswith(".weight"):
            assert plan[name].std == pytest.approx(variance[name].std, rel=REL), name
    row = plan["blocks.0.conv1.weight"]  # He's argument with the propagated E[x^2] of its own input
    assert row.scheme == "propagated" and "pre-activation: E[y^2] 1 from E[x^2]" in row.note
    assert_sample_std(blocks[0].conv1.weight, row.std)
    assert f"{scheme}: {len(blocks)} skip_gate(s) 0" in plan.propagation


def test_transform_parameters_are_set_under_any_scheme():
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    net[2].register_parameter("skip_gate", nn.Parameter(torch.tensor(0.7)))
    net[0].register_parameter("fixup_scale", nn.Parameter(torch.tensor(0.7)))
    plan = init_model(net, "he_normal", generator=gen())
    assert net[2].skip_gate.item() == 0.0 and net[0].fixup_scale.item() == 1.0
    assert not plan.skipped


# ---- gpt2 -------------------------------------------------------------------------------------------


def test_gpt2_plans_002_and_scaled_residual_projections():
    n = 3
    net = TinyGPT(n)
    plan = init_model(net, "gpt2", example_inputs=gpt_inputs(), dry_run=True)
    n_adds = 2 * n  # attention and MLP branch per block
    ends = {f"blocks.{i}.{p}.weight" for i in range(n) for p in ("attn.o", "proj")}
    for name, m in net.named_modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            want = 0.02 / math.sqrt(n_adds) if f"{name}.weight" in ends else 0.02
            assert plan[f"{name}.weight"].std == pytest.approx(want, rel=REL), name
            assert plan[f"{name}.weight"].scheme == "gpt2"
        if isinstance(m, nn.Linear) and m.bias is not None:
            assert plan[f"{name}.bias"].scheme == "zeros"
        if isinstance(m, nn.LayerNorm):
            assert (plan[f"{name}.weight"].scheme, plan[f"{name}.bias"].scheme) == ("ones", "zeros")


def test_gpt2_draws():
    net = TinyGPT(3)
    init_model(net, "gpt2", example_inputs=gpt_inputs(), generator=gen())
    assert_sample_std(net.blocks[0].fc.weight, 0.02)  # 256 x 64
    assert_sample_std(net.blocks[2].proj.weight, 0.02 / math.sqrt(6))
    assert_sample_std(net.wte.weight, 0.02)  # 128 x 64


def test_gpt2_finds_the_branch_ends_of_torch_encoder_layers():
    enc = encoder(n=2)
    plan = init_model(enc, "gpt2", example_inputs=torch.randn(2, 8, 64), dry_run=True)
    for i in range(2):
        assert plan[f"layers.{i}.self_attn.out_proj.weight"].std == pytest.approx(0.02 / 2, rel=REL)
        assert plan[f"layers.{i}.linear2.weight"].std == pytest.approx(0.02 / 2, rel=REL)
        assert plan[f"layers.{i}.self_attn.in_proj_weight"].std == pytest.approx(0.02, rel=REL)
        assert plan[f"layers.{i}.linear1.weight"].std == pytest.approx(0.02, rel=REL)


# ---- t_fixup ----------------------------------------------------------------------------------------


def t_fixup_expected(net: TinyGPT, n: int, decoder: bool = True) -> dict[str, tuple[float, bool]]:
    """``name -> (std, uniform)`` from Huang et al. 2020, sec. 3.2: branch weights (not q, k) x
    ``(9N)^(-1/4)`` in a decoder, ``0.67 N^(-1/4)`` in an encoder; embeddings x ``(9N)^(-1/4)``."""
    c_emb = (9 * n) ** -0.25
    c = c_emb if decoder else 0.67 * n**-0.25
    out = {}
    for name, m in net.named_modules():
        if isinstance(m, nn.Embedding):
            out[f"{name}.weight"] = (m.embedding_dim ** -0.5 * c_emb, False)
        elif isinstance(m, nn.Linear):
            on_branch = name.startswith("blocks.") and not name.endswith((".q", ".k"))
            out[f"{name}.weight"] = (xavier(m.in_features, m.out_features) * (c if on_branch else 1.0), True)
    return out


@pytest.mark.parametrize("sdpa", [True, False], ids=["sdpa", "matmul"])
def test_t_fixup_plans_the_papers_stds(sdpa):
    """sdpa: ``is_causal=True``, the decoder form; the unmasked ``softmax(q k^T) v``: the encoder form."""
    n = 3
    net = TinyGPT(n, sdpa=sdpa)
    plan = init_model(net, "t_fixup", example_inputs=gpt_inputs(), dry_run=True)
    assert ("decoder form" if sdpa else "encoder form") in plan.propagation
    for name, (std, uniform) in t_fixup_expected(net, n, decoder=sdpa).items():
        row = plan[name]
        assert row.std == pytest.approx(std, rel=REL), name
        assert (row.bound is not None) == uniform, name
        if uniform:
            assert row.bound == pytest.approx(std * math.sqrt(3.0), rel=REL)


def test_t_fixup_draws():
    n = 3
    net = TinyGPT(n)
    init_model(net, "t_fixup", example_inputs=gpt_inputs(), generator=gen())
    want = t_fixup_expected(net, n)
    for name in ("blocks.0.fc.weight", "blocks.1.attn.q.weight", "wte.weight", "head.weight"):
        w = net.get_parameter(name).detach()
        std, uniform = want[name]
        assert_sample_std(w, std)
        if uniform:
            assert float(w.abs().max()) <= std * math.sqrt(3.0)


def test_t_fixup_scales_the_value_block_of_a_packed_mha():
    enc = encoder(n=2)
    init_model(enc, "t_fixup", example_inputs=torch.randn(2, 8, 64), generator=gen())
    w = enc.layers[0].self_attn.in_proj_weight.detach()
    d, c = 64, 0.67 * 2**-0.25  # an encoder (no causal mask): 0.67 N^(-1/4)
    for block, scale in zip(w.split(d), (1.0, 1.0, c), strict=True):  # Q, K, V (4096 entries each)
        assert_sample_std(block, xavier(d, d) * scale)
        assert float(block.abs().max()) <= xavier(d, d) * scale * math.sqrt(3.0)


def test_t_fixup_decoder_form_from_a_tril_mask_or_a_decoder_layer():
    class Masked(Attention):
        def forward(self, x):
            b, t, d = x.shape
            q, k, v = (f(x) for f in (self.q, self.k, self.v))
            mask = torch.ones(t, t, dtype=torch.bool).tril()
            a = (q @ k.transpose(-2, -1) * d**-0.5).masked_fill(~mask, float("-inf")).softmax(-1)
            return self.o(a @ v)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn, self.fc = Masked(16, 1, sdpa=False), nn.Linear(16, 16)

        def forward(self, x):
            x = x + self.attn(x)
            return x + self.fc(x)

    plan = init_model(Net(), "t_fixup", example_inputs=torch.randn(2, 5, 16), dry_run=True)
    assert "decoder form" in plan.propagation and "tril" in plan.propagation
    assert plan["fc.weight"].std == pytest.approx(xavier(16, 16) * 9**-0.25, rel=REL)  # N = 1
    dec = nn.TransformerDecoder(nn.TransformerDecoderLayer(16, 2, 32, batch_first=True), 1)
    plan = init_model(dec, "t_fixup", example_inputs=(torch.randn(2, 5, 16), torch.randn(2, 4, 16)),
                      dry_run=True)
    assert "decoder form" in plan.propagation


def test_t_fixup_notes_a_layer_that_makes_queries_keys_and_values():
    net = nn.Sequential(PackedAttention(), PackedAttention())
    plan = init_model(net, "t_fixup", example_inputs=torch.randn(2, 5, 16), dry_run=True)
    assert "0.qkv: one layer makes queries, keys and values" in plan.propagation
    assert plan["0.qkv.weight"].std == pytest.approx(xavier(16, 48), rel=REL)  # unscaled, as q/k


# ---- deepnorm ---------------------------------------------------------------------------------------


def test_deepnorm_plans_beta_and_names_alpha():
    n = 3
    net = TinyGPT(n)
    plan = init_model(net, "deepnorm", example_inputs=gpt_inputs(), dry_run=True)
    beta, alpha = (8 * n) ** -0.25, (2 * n) ** 0.25
    for name, m in net.named_modules():
        if isinstance(m, nn.Linear):
            on_branch = name.startswith("blocks.") and not name.endswith((".q", ".k"))
            want = xavier(m.in_features, m.out_features, beta if on_branch else 1.0)
            assert plan[f"{name}.weight"].std == pytest.approx(want, rel=REL), name
            assert plan[f"{name}.weight"].bound is None  # normal
    d = net.wte.weight.shape[1]  # fairseq's embedding, N(0, 1/d), as DeepNet trained with
    assert plan["wte.weight"].scheme == "deepnorm"
    assert plan["wte.weight"].std == pytest.approx(d**-0.5, rel=REL)
    assert f"alpha = (2N)^(1/4) = {alpha:.4g}" in plan.propagation


def test_deepnorm_draws_on_an_encoder():
    enc = encoder(n=2)
    init_model(enc, "deepnorm", example_inputs=torch.randn(2, 8, 64), generator=gen())
    beta = (8 * 2) ** -0.25
    q, k, v = enc.layers[1].self_attn.in_proj_weight.detach().split(64)
    assert_sample_std(q, xavier(64, 64))
    assert_sample_std(v, xavier(64, 64, beta))
    assert_sample_std(enc.layers[1].linear1.weight, xavier(64, 128, beta))


# ---- encoder-decoder stacks --------------------------------------------------------------------------


def seq2seq(n: int = 2, m: int = 3, d: int = 8) -> tuple[nn.Transformer, tuple[torch.Tensor, torch.Tensor]]:
    net = nn.Transformer(d, 2, n, m, 2 * d, batch_first=True)
    return net, (torch.randn(2, 5, d), torch.randn(2, 4, d))


def test_stacks_of_an_encoder_decoder_a_decoder_alone_and_an_encoder():
    from initlab.graph import trace
    from initlab.model.residual_family import residual_branches, transformer_stacks

    def stacks(net, x):
        g = trace(net, x)
        st = transformer_stacks(net, g, residual_branches(net, g))
        return st.n, st.m, len(st.decoder)

    net, x = seq2seq(2, 3)
    assert stacks(net, x) == (2.0, 3, 9)  # 2 encoder blocks (2 adds each), 3 decoder blocks (3 each)
    dec = nn.TransformerDecoder(nn.TransformerDecoderLayer(16, 2, 32, batch_first=True), 2)
    assert stacks(dec, (torch.randn(2, 5, 16), torch.randn(2, 4, 16))) == (0.0, 2, 6)  # memory given
    assert stacks(encoder(n=3, d=16), torch.randn(2, 5, 16)) == (3.0, None, 0)


def test_t_fixup_gives_each_stack_of_an_encoder_decoder_its_form():
    """Huang et al. 2020: 0.67 N^(-1/4) on the encoder's branches, (9M)^(-1/4) on the decoder's."""
    n, m = 2, 3
    net, x = seq2seq(n, m)
    plan = init_model(net, "t_fixup", example_inputs=x, dry_run=True)
    enc_c, dec_c = 0.67 * n**-0.25, (9 * m) ** -0.25
    v_std = xavier(8, 8) * enc_c  # the std of the scaled Xavier uniform
    note = plan["encoder.layers.0.self_attn.in_proj_weight"].note  # the packed row names V's scale
    assert f"V: std {v_std:.4g} (t_fixup: Xavier uniform x 0.67 N^(-1/4), N=2)" in note
    assert plan["encoder.layers.1.linear2.weight"].std == pytest.approx(xavier(16, 8) * enc_c, rel=REL)
    assert plan["decoder.layers.2.linear1.weight"].std == pytest.approx(xavier(8, 16) * dec_c, rel=REL)
    assert plan["decoder.layers.0.multihead_attn.out_proj.weight"].std == pytest.approx(xavier(8, 8) * dec_c,
                                                                                         rel=REL)
    assert f"N={n}" in plan.propagation and f"M={m}" in plan.propagation


def test_deepnorm_gives_an_encoder_decoder_deepnets_two_stack_constants():
    """Wang et al. 2022: encoder beta 0.87 (N^4 M)^(-1/16), decoder beta (12M)^(-1/4)."""
    n, m = 2, 3
    net, x = seq2seq(n, m)
    plan = init_model(net, "deepnorm", example_inputs=x, dry_run=True)
    beta_e, beta_d = 0.87 * (n**4 * m) ** (-1 / 16), (12 * m) ** -0.25
    assert plan["encoder.layers.0.linear1.weight"].std == pytest.approx(xavier(8, 16, beta_e), rel=REL)
    assert plan["decoder.layers.1.linear2.weight"].std == pytest.approx(xavier(16, 8, beta_d), rel=REL)
    assert f"alpha = (3M)^(1/4) = {(3 * m) ** 0.25:.4g}" in plan.propagation
    assert f"alpha = 0.81 (N^4 M)^(1/16) = {0.81 * (n**4 * m) ** (1 / 16):.4g}" in plan.propagation


def test_hugging_face_stacks_are_counted_from_the_graph():
    """T5 and BART (built from configs, offline): 2 + 3 blocks; BART's embedding sum is no block;
    BERT's one stack and T5's reused position bias are not cross-attention."""
    transformers = pytest.importorskip("transformers")
    from initlab.graph import trace
    from initlab.model.residual_family import residual_branches, transformer_stacks

    torch.manual_seed(0)
    ids = torch.randint(0, 64, (1, 6))
    pair = {"input_ids": ids, "decoder_input_ids": ids[:, :4]}
    t5 = transformers.T5Config(vocab_size=64, d_model=16, d_kv=4, d_ff=32, num_layers=2, num_decoder_layers=3,
                               num_heads=4)
    bart = transformers.BartConfig(vocab_size=64, d_model=16, encoder_layers=2, decoder_layers=3,
                                   encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                                   decoder_ffn_dim=32, max_position_embeddings=32)
    bert = transformers.BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                                   intermediate_size=32, max_position_embeddings=32)
    cases = [(transformers.T5ForConditionalGeneration(t5), pair, (2.0, 3)),
             (transformers.BartForConditionalGeneration(bart), pair, (2.0, 3)),
             (transformers.T5EncoderModel(t5), ids, (2.0, None)),
             (transformers.BertModel(bert), ids, (3.0, None))]
    dec = transformers.BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=32, is_decoder=True,
                                  add_cross_attention=True)
    memory = {"input_ids": ids, "encoder_hidden_states": torch.randn(1, 5, 16)}
    cases.append((transformers.BertLMHeadModel(dec), memory, (0.0, 2)))  # a decoder on a given memory
    for net, x, want in cases:
        g = trace(net, x)
        st = transformer_stacks(net, g, residual_branches(net, g))
        assert (st.n, st.m) == want, type(net).__name__


def test_t_fixup_on_hugging_face_seq2seq_scales_cross_values_and_the_shared_table():
    """BART's cross-attention v_proj (computed off the branch, from the encoder's output) gets the
    decoder's (9M)^(-1/4); T5's ``shared`` table, called only as ``encoder.embed_tokens`` (tied),
    gets d^(-1/2) (9M)^(-1/4); skip gates never sit on BART's sum of token and position embeddings."""
    transformers = pytest.importorskip("transformers")
    from initlab.transforms import add_skip_gates

    torch.manual_seed(0)
    ids = torch.randint(0, 64, (1, 6))
    pair = {"input_ids": ids, "decoder_input_ids": ids[:, :4]}
    d, m = 16, 3
    c = (9 * m) ** -0.25
    bart = transformers.BartForConditionalGeneration(transformers.BartConfig(
        vocab_size=64, d_model=d, encoder_layers=2, decoder_layers=m, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=32))
    plan = init_model(bart, "t_fixup", example_inputs=pair, dry_run=True)
    attn = "model.decoder.layers.1.encoder_attn"
    assert plan[f"{attn}.v_proj.weight"].std == pytest.approx(xavier(d, d) * c, rel=REL)
    assert plan[f"{attn}.k_proj.weight"].std == pytest.approx(xavier(d, d), rel=REL)  # a key: unscaled
    report = add_skip_gates(bart, example_inputs=pair, verbose=False)
    gated = [k for k in bart.state_dict() if k.endswith("skip_gate")]
    assert len(gated) == 2 * 2 + 3 * m and not any("embed" in k for k in gated)
    report.undo()
    t5 = transformers.T5ForConditionalGeneration(transformers.T5Config(
        vocab_size=64, d_model=d, d_kv=4, d_ff=32, num_layers=2, num_decoder_layers=m, num_heads=4))
    plan = init_model(t5, "t_fixup", example_inputs=pair, dry_run=True)
    assert plan["shared.weight"].std == pytest.approx(d**-0.5 * c, rel=REL)
    assert plan["decoder.block.0.layer.1.EncDecAttention.v.weight"].std == pytest.approx(xavier(d, d) * c,
                                                                                          rel=REL)


# ---- errors, seeds ----------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["fixup", "gpt2", "t_fixup", "deepnorm"])
def test_schemes_refuse_a_model_without_residual_adds(scheme):
    net = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    with pytest.raises(InitlabError, match=rf"scheme '{scheme}'.*Sequential has none.*scheme='auto'"):
        init_model(net, scheme, dry_run=True)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("scheme", ["fixup", "gpt2"])
def test_an_untraceable_model_is_an_error_that_asks_for_example_inputs(scheme):
    with pytest.raises(InitlabError, match=rf"scheme '{scheme}'.*could not be traced.*pass example_inputs"):
        init_model(Untraceable(), scheme, dry_run=True)


def _built(scheme: str) -> tuple[nn.Module, dict]:
    if scheme in ("gpt2", "t_fixup", "deepnorm"):
        torch.manual_seed(0)
        return TinyGPT(2, d=32), {"example_inputs": gpt_inputs()}
    net = zoo.build("resnet20_nonorm", width=16)
    if scheme in ("skipinit", "rezero"):
        for m in net.modules():
            if isinstance(m, BasicBlock):
                m.conv2.register_parameter("skip_gate", nn.Parameter(torch.tensor(0.7)))
    return net, {}


@pytest.mark.parametrize("scheme", ["fixup", "skipinit", "rezero", "gpt2", "t_fixup", "deepnorm"])
def test_same_seed_same_bits(scheme):
    (a, kw), (b, _) = _built(scheme), _built(scheme)
    init_model(a, scheme, generator=gen(), **kw)
    init_model(b, scheme, generator=gen(), **kw)
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q), name


def test_auto_on_a_gated_resnet_lets_the_gates_start_the_branches():
    """After add_skip_gates, "auto" gives SkipInit's start: gates 0, branch weights by the variance
    rule, ends not zeroed (a zero end behind a zero gate would never train), and says so."""
    from initlab.transforms import add_skip_gates

    x = torch.randn(2, 3, 32, 32)
    net = zoo.build("resnet20_nonorm")
    add_skip_gates(net, example_inputs=x, verbose=False)
    auto = init_model(net, "auto", example_inputs=x, dry_run=True)
    skip = init_model(net, "skipinit", example_inputs=x, dry_run=True)
    for name in ("blocks.0.conv1.weight", "blocks.0.conv2.weight", "blocks.4.conv2.weight"):
        assert auto[name].std == pytest.approx(skip[name].std, rel=1e-12) and auto[name].std > 0
    assert auto["blocks.0.bn2.skip_gate"].std == 0.0
    assert "skip_gate parameters found" in auto.propagation
    bare = init_model(zoo.build("resnet20_nonorm"), "auto", example_inputs=x, dry_run=True)
    assert bare["blocks.0.conv2.weight"].std == 0.0  # without gates: the ends start at 0
