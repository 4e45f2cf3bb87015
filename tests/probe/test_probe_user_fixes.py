"""What a new user hit: a Hugging Face GPT-2 with no layer recorded (its ``Conv1D`` layers unknown, the
tanh inside ``NewGELUActivation`` recorded as a functional activation), a ``logits`` verdict on an
output that is a sigmoid's, and the whole prediction lost to one node's impossible ``Moments``."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import initlab.graph.moments as moments
from initlab.errors import InitlabError
from initlab.graph.nodes import Kind
from initlab.probe import OUTPUT_LAYER, ProbeResult, probe
from initlab.probe.predicted import _tensor_moments


def kinds(res: ProbeResult) -> list[str]:
    return [v.kind for v in res.verdicts()]


def output_from_layer(res: ProbeResult):
    return next(r["from_layer"] for r in res.records if r["layer"] == OUTPUT_LAYER and r["stat"] == "std")


# ---- 1. transformers' GPT-2: Conv1D layers, and the GELU module probed as one activation --------------


@pytest.fixture
def gpt2():
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=128, n_positions=32,
                                     bos_token_id=0, eos_token_id=0)
    with torch.random.fork_rng(devices=[]):  # HF initialises from the global RNG: seeded, then restored
        torch.manual_seed(0)
        return transformers.GPT2LMHeadModel(config).eval()


def test_gpt2_records_its_conv1d_layers_and_gelu_modules_and_no_inner_tanh(gpt2, gen):
    ids = torch.randint(0, 128, (4, 16), generator=gen)
    res = probe(gpt2, {"input_ids": ids}, scheme="lecun_normal")
    for b in range(2):
        for name in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
            info = res.info(f"transformer.h.{b}.{name}")
            assert (info["layer_type"], info["module"]) == ("linear", "Conv1D")
        act = res.info(f"transformer.h.{b}.mlp.act")
        assert (act["layer_type"], act["module"], act["activation"]) == ("activation", "NewGELUActivation",
                                                                          "gelu_tanh")
        assert res.info(f"transformer.h.{b}.mlp.c_fc")["activation"] == "gelu_tanh"  # the GELU consumes c_fc
        assert math.isfinite(res.stat(f"transformer.h.{b}.mlp.act", "predicted_std"))  # a node of the graph
    assert not [lay for lay in res.layers if ".forward." in lay]  # no functional tanh inside the GELU
    assert res.layers[-1] == "lm_head"


def test_conv1d_weight_statistics_read_its_in_out_layout(gpt2, gen):
    """Units are the OUTPUT features (``weight.shape[1]``), ``fan_in = weight.shape[0]``: every column of
    c_fc's ``(64, 256)`` weight made equal gives 1 distinct unit of 256 (rows read as units would give
    64 different ones), and lecun_normal expects ``gain / sqrt(64)`` for c_fc, ``gain / sqrt(256)`` for
    the MLP's c_proj ``(256, 64)``."""
    c_fc = gpt2.transformer.h[0].mlp.c_fc
    with torch.no_grad():
        c_fc.weight.copy_(c_fc.weight[:, :1].expand_as(c_fc.weight))
    res = probe(gpt2, torch.randint(0, 128, (4, 16), generator=gen), scheme="lecun_normal")
    rows = {(r["layer"], r["stat"]): r for r in res.records if r["kind"] == "weight"}
    distinct = rows[("transformer.h.0.mlp.c_fc", "distinct_units")]
    assert (distinct["value"], distinct["units"]) == (1.0, 256)
    assert any(v.kind == "symmetric" and v.layer == "transformer.h.0.mlp.c_fc" for v in res.verdicts())
    assert rows[("transformer.h.1.mlp.c_fc", "distinct_units")]["units"] == 256
    for name, weight in (("mlp.c_fc", c_fc.weight), ("mlp.c_proj", gpt2.transformer.h[0].mlp.c_proj.weight)):
        row = rows[(f"transformer.h.0.{name}", "expected_weight_std")]
        assert row["value"] == pytest.approx(row["gain"] / math.sqrt(weight.shape[0]), rel=1e-12, abs=0)


class TanhGELU(nn.Module):
    """A GELU (tanh form) written out, unknown to the probe's table: it calls ``torch.tanh``."""

    def forward(self, x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


class TwiceTanh(nn.Module):
    """Elementwise but no activation the vocabulary names: not an activation module."""

    def forward(self, x):
        return 2.0 * torch.tanh(x)


def test_an_unknown_module_named_an_activation_is_probed_as_one_leaf(gen):
    """TanhGELU is probed as a gelu_tanh module (its tanh not apart); TwiceTanh, unnamed, is not (its
    tanh is, as a functional call); torch's own Threshold (a ReLU here) is left to the probe's table."""
    net = nn.Sequential(nn.Linear(8, 16), TanhGELU(), nn.Linear(16, 16), TwiceTanh(), nn.Linear(16, 4),
                        nn.Threshold(0.0, 0.0))
    res = probe(net, torch.randn(32, 8, generator=gen))
    assert res.layers == ["0", "1", "2", "3.forward.tanh_1", "4"]
    assert (res.info("1")["layer_type"], res.info("1")["activation"]) == ("activation", "gelu_tanh")
    assert res.info("0")["activation"] == "gelu_tanh"


# ---- 2. the logits verdict only for an output a weight layer made --------------------------------------


def test_no_logits_verdict_for_an_mlp_ending_in_a_sigmoid(gen):
    """The built-in ``initlab probe --activation sigmoid`` MLP (no head) ends in a sigmoid: its std, 0.2
    or so, is below ``logits_low`` (0.3), but there are no logits."""
    net = nn.Sequential(nn.Linear(100, 50), nn.Sigmoid(), nn.Linear(50, 50), nn.Sigmoid())
    for m in net[::2]:
        nn.init.xavier_normal_(m.weight, generator=gen)
        nn.init.zeros_(m.bias)
    res = probe(net, torch.randn(256, 100, generator=gen))
    assert res.stat(OUTPUT_LAYER, "std") < res.thresholds.logits_low
    assert output_from_layer(res) is None and "logits" not in kinds(res)
    again = ProbeResult(res.records)  # read back from records: still none
    assert "logits" not in kinds(again)


class Head(nn.Module):
    """A Linear head whose output is reshaped (``view``, ``transpose``), or changed in place."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.fc = nn.Linear(8, 12)
        self.inplace = inplace
        with torch.no_grad():
            self.fc.weight.mul_(0.01)

    def forward(self, x):
        y = self.fc(x)
        if self.inplace:
            return y.sigmoid_()
        return y.view(x.shape[0], 3, 4).transpose(1, 2)


@pytest.mark.parametrize("backward", [True, False])
def test_logits_verdict_for_a_weight_layer_output_through_reshapes_only(gen, backward):
    x = torch.randn(16, 8, generator=gen)
    res = probe(Head(), x, backward=backward)
    assert output_from_layer(res) == "fc"
    verdict = next(v for v in res.verdicts() if v.kind == "logits")
    assert verdict.value == res.stat(OUTPUT_LAYER, "std") < res.thresholds.logits_low
    changed = probe(Head(inplace=True), x, backward=backward)  # a sigmoid_ on fc's output: no logits
    assert output_from_layer(changed) is None and "logits" not in kinds(changed)


class BiasedHead(nn.Module):
    """A Linear head plus a constant buffer (BART's ``final_logits_bias``), or plus a learned input."""

    def __init__(self, learned: bool = False):
        super().__init__()
        self.fc, self.learned = nn.Linear(8, 12), learned
        self.register_buffer("shift", torch.zeros(12))
        with torch.no_grad():
            self.fc.weight.mul_(0.01)

    def forward(self, x):
        y = self.fc(x)
        return y + (self.fc(x) if self.learned else self.shift)


def test_logits_verdict_through_a_constant_bias_added_to_the_head(gen):
    x = torch.randn(16, 8, generator=gen)
    res = probe(BiasedHead(), x)
    assert output_from_layer(res) == "fc" and "logits" in kinds(res)
    both = probe(BiasedHead(learned=True), x)  # a sum of two computed tensors: not one layer's output
    assert output_from_layer(both) is None
    net = BiasedHead()
    net.shift.normal_(generator=gen)  # a non-zero bias, the same for every example: still the head's
    assert output_from_layer(probe(net, x)) == "fc"


class InputPlusHead(nn.Module):
    """``5 x + fc(x)``: a term without grad that varies with the input is no constant shift."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x):
        return 5 * x + self.fc(x)


def test_an_input_term_added_to_the_head_hides_its_output(gen):
    res = probe(InputPlusHead(), torch.randn(16, 8, generator=gen))
    assert output_from_layer(res) is None and "logits" not in kinds(res)


def test_records_without_from_layer_keep_the_logits_verdict(gen):
    """Records written before ``from_layer`` existed are checked as before."""
    res = probe(Head(), torch.randn(16, 8, generator=gen))
    old = [{k: v for k, v in r.items() if k != "from_layer"} for r in res.records]
    assert "logits" in kinds(ProbeResult(old))


# ---- 3. one node's impossible Moments loses only that node's prediction ---------------------------------


def test_a_rule_that_raises_on_one_node_leaves_the_other_predictions(gen, monkeypatch):
    """The activation rule raises InitlabError (an impossible Moments) on act '3' only: the layers
    before it keep both predictions; after it, the end-to-end one is unknown (its input is) but the
    local one, from act '3''s measured output, is there; notes say which node failed."""
    rule = moments.RULES[Kind.ACTIVATION]

    def failing(node, ctx):
        if node.module == "3":
            moments.Moments(0.5, 0.4, 0.41)  # cross > second: raises InitlabError
        return rule(node, ctx)

    monkeypatch.setitem(moments.RULES, Kind.ACTIVATION, failing)
    net = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 8))
    res = probe(net, torch.randn(64, 16, generator=gen))
    assert not [n for n in res.notes if n.startswith("prediction: none")]
    for layer in ("0", "1", "2"):
        assert math.isfinite(res.stat(layer, "predicted_std"))
        assert math.isfinite(res.stat(layer, "local_predicted_std"))
    for layer in ("3", "4"):
        with pytest.raises(InitlabError, match="has no stat 'predicted_std'"):
            res.stat(layer, "predicted_std")
    assert math.isfinite(res.stat("4", "local_predicted_std"))
    with pytest.raises(InitlabError, match="has no stat 'local_predicted_std'"):
        res.stat("3", "local_predicted_std")
    assert res.notes == ["prediction: 1 of 5 layer(s) have none: 3 (Tanh '3': InitlabError: Moments("
                         "mean=0.5, second=0.4, cross=0.41) is impossible: need mean**2 <= cross <= second)"]


def test_a_rule_that_raises_in_the_local_pass_only_leaves_a_note(gen, monkeypatch):
    """``initlab probe --activation tanh --scheme large``: the local pass fed act '3' a saturating input
    whose Moments its rule could not build; that layer keeps its end-to-end prediction, the others
    both, and a note names the node."""
    calls = {"n": 0}
    rule = moments.RULES[Kind.ACTIVATION]

    def failing(node, ctx):
        if node.module == "3":
            calls["n"] += 1
            if calls["n"] == 2:  # the second pass over the graph: the local one
                moments.Moments(0.5, 0.4, 0.41)
        return rule(node, ctx)

    monkeypatch.setitem(moments.RULES, Kind.ACTIVATION, failing)
    net = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 8))
    res = probe(net, torch.randn(64, 16, generator=gen))
    assert all(math.isfinite(res.stat(layer, "predicted_std")) for layer in res.layers)
    assert [lay for lay, _ in res.series("local_predicted_std")] == ["0", "1", "2", "4"]
    assert res.notes == ["prediction: no local_predicted_std from 1 node(s) whose rule failed: Tanh '3' "
                         "(InitlabError: Moments(mean=0.5, second=0.4, cross=0.41) is impossible: need "
                         "mean**2 <= cross <= second)"]


def test_measured_input_cross_moment_is_clamped_into_its_bounds(gen):
    """The unbiased cross-moment estimate of an iid batch with mean 0.5 falls below ``mean**2`` about
    half the time (measurement noise); the input's Moments take it clamped into ``[mean**2, E[x^2]]``."""
    below = 0
    for _ in range(8):
        x = 0.5 + torch.randn(4, 3, 16, generator=gen, dtype=torch.float64)
        flat = x.reshape(4, 3, -1)
        m, q = float(x.mean()), float(x.square().mean())
        raw = float(((flat.sum(-1).square() - flat.square().sum(-1)) / (16 * 15)).mean())
        got = _tensor_moments(x, 1)
        assert m * m <= got.cross <= q
        assert got.cross == pytest.approx(min(max(raw, m * m), q), rel=1e-12, abs=0)
        below += raw < m * m
    assert below > 0  # the clamp was exercised
