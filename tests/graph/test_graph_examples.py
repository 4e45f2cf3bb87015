"""example_inputs: built from the first weighted layer (or a Hugging Face model's dummy inputs or
config), seeded, never from the global RNG."""

from __future__ import annotations

import re
import types

import numpy as np
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


def test_a_numpy_integer_batch_is_accepted():
    x, desc = example_inputs(nn.Linear(5, 3), batch=np.int64(16))
    assert x.shape == (16, 5) and desc == "built from Linear '' in_features=5: randn(16, 5)"


@pytest.mark.parametrize("batch", [np.int64(0), np.float64(16.0), np.bool_(True)])
def test_a_bad_numpy_batch_is_refused_naming_it(batch):
    with pytest.raises(InitlabError, match=re.escape(f"batch={batch!r}")):
        example_inputs(nn.Linear(3, 4), batch=batch)


def _gpt2(n_positions: int = 8):
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(vocab_size=64, n_embd=16, n_layer=1, n_head=2, n_positions=n_positions,
                                     bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(config).eval()


def test_hf_default_batch_keeps_the_dummy_inputs():
    gpt2 = _gpt2()
    inputs, how = example_inputs(gpt2)
    assert how == "model.dummy_inputs" and set(inputs) == set(gpt2.dummy_inputs)
    assert all(torch.equal(v, gpt2.dummy_inputs[k]) for k, v in inputs.items())


@pytest.mark.parametrize("batch", [16, np.int64(16), 5])
def test_hf_another_batch_builds_token_ids_from_the_config(batch):
    """GPT-2's dummy inputs are 3 x 5 tokens whatever the batch; the config builds ``batch`` rows of
    min(16, n_positions) tokens below vocab_size, which the model runs on."""
    gpt2 = _gpt2(n_positions=8)
    inputs, how = example_inputs(gpt2, batch=batch)
    ids = inputs["input_ids"]
    assert set(inputs) == {"input_ids"} and ids.shape == (int(batch), 8) and ids.dtype == torch.int64
    assert 0 <= int(ids.min()) and int(ids.max()) < 64
    assert how == f"built from config: input_ids randint(64, ({int(batch)}, 8))"
    with torch.no_grad():
        assert gpt2(**inputs).logits.shape == (int(batch), 8, 64)
    again, _ = example_inputs(gpt2, batch=batch)
    assert torch.equal(again["input_ids"], ids)  # seeded


def test_hf_bert_at_batch_16_reads_max_position_embeddings():
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32, max_position_embeddings=32)
    bert = transformers.BertModel(config).eval()
    inputs, how = example_inputs(bert, batch=16)
    assert inputs["input_ids"].shape == (16, min(16, 32))
    assert how == "built from config: input_ids randint(64, (16, 16))"
    with torch.no_grad():
        assert bert(**inputs).last_hidden_state.shape == (16, 16, 16)


def test_hf_encoder_decoder_gets_decoder_ids_of_the_batch_too():
    """T5's decoder needs ``decoder_input_ids`` (its dummy inputs hold them): built alongside."""
    transformers = pytest.importorskip("transformers")
    config = transformers.T5Config(vocab_size=64, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2)
    t5 = transformers.T5ForConditionalGeneration(config).eval()
    inputs, how = example_inputs(t5, batch=16)
    assert set(inputs) == {"input_ids", "decoder_input_ids"}
    assert all(v.shape == (16, 16) and int(v.max()) < 64 for v in inputs.values())
    assert how == "built from config: input_ids, decoder_input_ids randint(64, (16, 16))"
    with torch.no_grad():
        assert t5(**inputs).logits.shape == (16, 16, 64)


def test_hf_dummy_inputs_are_the_fallback_when_the_config_builds_nothing(monkeypatch):
    gpt2 = _gpt2()
    rows = gpt2.dummy_inputs["input_ids"].shape[0]
    monkeypatch.setattr(gpt2, "config", types.SimpleNamespace(n_positions=8))  # no vocab_size
    inputs, how = example_inputs(gpt2, batch=16)
    assert torch.equal(inputs["input_ids"], gpt2.dummy_inputs["input_ids"])
    assert how == f"model.dummy_inputs (batch {rows}: the config gives no sizes to build batch 16 from)"


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
