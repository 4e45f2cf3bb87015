"""Hugging Face models built from tiny configs (no downloads): recorded graphs with the HF layers."""

from __future__ import annotations

import pytest
import torch

from initlab.graph import Kind, consuming_activation, example_inputs, layers, residual_adds, trace

transformers = pytest.importorskip("transformers", reason="transformers not installed")


def untouched(model, run):
    """Run ``run()`` and check that ``model``'s weights, Python state and the global RNG are as before."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    attrs = {m: dict(vars(m)) for m in model.modules()}
    rng = torch.random.get_rng_state()
    out = run()
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all(dict(vars(m)) == before for m, before in attrs.items())
    return out


@pytest.fixture(scope="module")
def gpt2():
    config = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=100, n_positions=32,
                                     bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(config)


@pytest.fixture(scope="module")
def llama():
    config = transformers.LlamaConfig(hidden_size=64, num_hidden_layers=2, intermediate_size=128,
                                      num_attention_heads=4, vocab_size=100, bos_token_id=0, eos_token_id=0)
    return transformers.LlamaForCausalLM(config)


def test_gpt2(gpt2):
    g = untouched(gpt2, lambda: trace(gpt2))
    assert g.method == "recorded" and g.reason.startswith("fx: ") and g.inputs_from == "model.dummy_inputs"
    found = layers(g)
    for i in range(2):
        for name in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
            (node,) = found[f"transformer.h.{i}.{name}"]
            assert node.kind is Kind.LAYER and node.op == "Conv1D" and node.params["layout"] == "transposed"
    assert found["transformer.h.0.attn.c_attn"][0].params["out_features"] == 192
    acts = g.of_kind(Kind.ACTIVATION)
    assert [n.activation for n in acts] == [("gelu_tanh", None)] * 2 and acts[0].op == "NewGELUActivation"
    c_fc = found["transformer.h.0.mlp.c_fc"][0]
    assert consuming_activation(g, c_fc.id).activation == ("gelu_tanh", None)
    res = residual_adds(g)
    assert len(res) == 4
    names = [[g[i].module.rsplit(".", 2)[-2:] for i in r.layers] for r in res]
    assert names[0] == [["attn", "c_attn"], ["attn", "c_proj"]]
    assert names[1] == [["mlp", "c_fc"], ["mlp", "c_proj"]]
    assert all(r.fork == r.skip for r in res)
    assert g.of_kind(Kind.ATTENTION) or g.of_kind(Kind.SOFTMAX)


def test_llama(llama):
    g = untouched(llama, lambda: trace(llama))
    assert g.method == "recorded"
    norms = g.of_kind(Kind.NORM)
    assert len(norms) == 5 and all(n.op == "LlamaRMSNorm" and n.params["kind"] == "rms_norm" for n in norms)
    found = layers(g)
    for i in range(2):
        gate, up, down = (found[f"model.layers.{i}.mlp.{p}"][0]
                          for p in ("gate_proj", "up_proj", "down_proj"))
        (mul,) = [n for n in g.of_kind(Kind.MUL) if down.inputs == [n.id]]
        act = g[mul.inputs[0]]
        assert act.activation == ("silu", None) and act.inputs == [gate.id] and mul.inputs[1] == up.id
        assert consuming_activation(g, gate.id).activation == ("silu", None)
    res = residual_adds(g)
    assert len(res) == 4 and all(r.fork == r.skip for r in res)  # rotary q*cos + rot(q)*sin is not residual


def test_hf_example_inputs_from_config():
    config = transformers.ViTConfig(image_size=8, patch_size=4, hidden_size=16, num_hidden_layers=1,
                                    num_attention_heads=2, intermediate_size=32)
    vit = transformers.ViTModel(config)
    inputs, how = example_inputs(vit)  # its dummy_inputs hold input_ids, not its main input
    assert set(inputs) == {"pixel_values"} and inputs["pixel_values"].shape == (2, 3, 8, 8)
    assert how == "built from config: pixel_values randn(2, 3, 8, 8)"
    g = trace(vit)
    assert {n.params["name"] for n in g.of_kind(Kind.PARAM)} == {
        "embeddings.cls_token", "embeddings.position_embeddings"}
    assert [n.activation for n in g.of_kind(Kind.ACTIVATION)][0] == ("gelu", None)


def test_hf_text_inputs_from_config(gpt2, monkeypatch):
    monkeypatch.setattr(type(gpt2), "dummy_inputs", property(lambda self: None))
    inputs, how = example_inputs(gpt2)
    assert inputs["input_ids"].shape == (2, 16) and int(inputs["input_ids"].max()) < 100
    assert how == "built from config: input_ids randint(100, (2, 16))"
