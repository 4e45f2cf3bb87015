"""The probe's propagated prediction (``predicted_std``, ``local_predicted_std``), the ``mismatch``
and ``logits`` verdicts.

Deterministic (seeded generators), CPU-only, small nets. Statistical checks state their tolerance:
the measured std of a layer with ``U`` units spreads around the prediction by at most about
``1 / sqrt(2 U)`` (one draw of each unit's weight row, see ``Thresholds.mismatch``), and end to end
that spread compounds along depth.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

import initlab.probe  # noqa: F401  (binds the submodule first: initlab.probe must stay the function)
from initlab.errors import InitlabError
from initlab.models import mlp
from initlab.probe import NOTE_LAYER, OUTPUT_LAYER, ProbeResult, Thresholds, predicted, probe


def kinds(result: ProbeResult) -> list[str]:
    return [v.kind for v in result.verdicts()]


def he_(net: nn.Module, gen: torch.Generator) -> nn.Module:
    """He-normal weights (fan_in, ReLU gain) and zero biases on every Linear / Conv."""
    for m in net.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=gen)
            nn.init.zeros_(m.bias)
    return net


def he_mlp(gen: torch.Generator, width: int = 512, depth: int = 6, head: int | None = 10) -> nn.Sequential:
    """A He-initialised ReLU MLP (``width`` in and hidden), with a Glorot head of ``head`` classes."""
    net = he_(mlp(width, width, depth, head, "relu"), gen)
    if head is not None:
        nn.init.xavier_normal_(net[-1].weight, generator=gen)
    return net


def cnn64(gen: torch.Generator) -> nn.Sequential:
    return he_(nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1),
                             nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1, stride=2), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)), gen)


def rel(res: ProbeResult, layer: str, stat: str) -> float:
    """``|std / stat - 1|`` of ``layer``."""
    return abs(res.stat(layer, "std") / res.stat(layer, stat) - 1)


# ---- the prediction matches healthy networks -------------------------------------------------------


def test_he_relu_mlp_width_512_is_predicted_within_15_percent(gen):
    """Width 512, 6 hidden layers, batch 256: every hidden layer (512 units: per-layer spread at most
    1 / sqrt(1024) = 3 %, compounding over 12 recorded outputs) within 15 % end to end and locally;
    the ReLU outputs' means too (a ReLU's mean is proportional to its std). The 10-class head: within
    its width's tolerance (``Thresholds().mismatch_tolerance(10)`` = 0.89)."""
    net = he_mlp(gen)
    res = probe(net, torch.randn(256, 512, generator=gen))
    hidden = [lay for lay in res.layers if lay != "out"]
    assert len(hidden) == 12 and res.notes == []
    for lay in hidden:
        assert rel(res, lay, "predicted_std") < 0.15, lay
        assert rel(res, lay, "local_predicted_std") < 0.15, lay
        if lay.startswith("act"):
            assert res.stat(lay, "mean") == pytest.approx(res.stat(lay, "predicted_mean"), rel=0.15), lay
    assert rel(res, "out", "local_predicted_std") < Thresholds().mismatch_tolerance(10)
    assert res.verdicts() == []
    # the first layer reads the data: its prediction is exact up to the spread of 512 weight rows
    assert rel(res, "fc1", "predicted_std") < 3 / math.sqrt(2 * 512)


def test_cnn_with_64_channels_is_predicted_within_25_percent(gen):
    """64 channels: per-layer spread at most 1 / sqrt(128) = 9 %; conv and ReLU outputs within 25 %
    (about 3 of those), end to end and locally. The head reads global average pooling, whose rule
    needs the cross moment the probe does not measure: no local prediction there."""
    net = cnn64(gen)
    res = probe(net, torch.randn(16, 3, 16, 16, generator=gen))
    assert res.layers == ["0", "1", "2", "3", "4", "5", "8"]
    for lay in res.layers[:-1]:
        assert rel(res, lay, "predicted_std") < 0.25, lay
        assert rel(res, lay, "local_predicted_std") < 0.25, lay
    with pytest.raises(InitlabError, match="no stat 'local_predicted_std'"):
        res.stat("8", "local_predicted_std")
    assert not math.isnan(res.stat("8", "predicted_std"))
    assert "mismatch" not in kinds(res)


def test_deep_relu_net_drifts_end_to_end_but_gives_no_mismatch(gen):
    """30 ReLU layers at width 256: the end-to-end prediction drifts by more than 20 % somewhere
    (finite width compounds along depth), yet every layer agrees with what its own measured input
    predicts (within 20 %), so no mismatch: the verdict is local."""
    net = he_mlp(gen, width=256, depth=30, head=None)
    res = probe(net, torch.randn(256, 256, generator=gen), bins=0)
    assert max(rel(res, lay, "predicted_std") for lay in res.layers) > 0.2
    assert max(rel(res, lay, "local_predicted_std") for lay in res.layers) < 0.2
    assert "mismatch" not in kinds(res)


def test_functional_activations_and_repeated_modules_are_matched(gen):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.inp = nn.Linear(256, 256), nn.Linear(64, 256)

        def forward(self, x):
            h = torch.relu(self.inp(x))
            return torch.tanh(self.fc(torch.tanh(self.fc(h))))

    net = he_(Net(), gen)
    res = probe(net, torch.randn(128, 64, generator=gen))
    assert res.layers == ["inp", "forward.relu_1", "fc", "forward.tanh_1", "fc#2", "forward.tanh_2"]
    assert res.notes == []
    for lay in res.layers:  # 256 units each: 15 %
        assert rel(res, lay, "predicted_std") < 0.15, lay
    assert res.stat("fc#2", "predicted_std") < res.stat("fc", "predicted_std")  # tanh shrinks: 2 calls differ


def test_sequence_first_transformer_traces_on_the_whole_batch(gen):
    """Attention reads the sequence length, dim 0 of a sequence-first input: the shapes come from the
    whole batch (two examples would cut the sequence to 2), and the predictions hold (64 units: 25 %)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = nn.TransformerEncoder(nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0), 1,
                                    enable_nested_tensor=False)
    x = torch.randn(12, 4, 64, generator=gen)  # (sequence, batch, features)
    graph = predicted._trace_for_prediction(net, x)
    assert graph[0].shape == (12, 4, 64) and not predicted._batch_free(graph, net)
    res = probe(net, x)
    for lay in res.layers:
        assert rel(res, lay, "predicted_std") < 0.25, lay


def test_batch_free_graphs_take_their_shapes_from_two_examples(gen):
    net = he_mlp(gen, width=32, depth=2)
    graph = predicted._trace_for_prediction(net, torch.randn(64, 32, generator=gen))
    assert graph.method == "fx" and graph[0].shape == (2, 32)


# ---- the mismatch verdict -------------------------------------------------------------------------


class Loud(nn.Linear):
    """A Linear whose forward scales its output by 10: the graph takes it for a plain Linear."""

    def forward(self, x):
        return 10 * super().forward(x)


def test_mismatch_names_the_layer_that_computes_something_else(gen):
    net = he_(nn.Sequential(nn.Linear(64, 256), nn.ReLU(), Loud(256, 256), nn.ReLU(), nn.Linear(256, 256),
                            nn.ReLU()), gen)
    res = probe(net, torch.randn(128, 64, generator=gen))
    verdict = next(v for v in res.verdicts() if v.kind == "mismatch")
    assert verdict.layer == "2"
    assert 10 / 1.15 < verdict.value < 10 * 1.15  # 256 units: 15 %
    assert "1 layer(s) affected" in verdict.message  # downstream layers are judged on their measured input
    assert f"{res.stat('2', 'std'):.3g}" in verdict.message
    assert f"{res.stat('2', 'local_predicted_std'):.3g}" in verdict.message
    # end to end, everything downstream is off by the same factor 10
    assert res.stat("4", "std") / res.stat("4", "predicted_std") > 8


def test_mismatch_of_identical_units_is_sqrt_of_fan_in(gen):
    """Constant weights make every unit of a layer identical; the next layer sums ``n`` copies of one
    unit, whose std is ``sqrt(n)`` times that of ``n`` independent ones, which the propagation assumes:
    exactly, since both sides are computed from the measured input."""
    net = nn.Sequential(nn.Linear(20, 50), nn.Tanh(), nn.Linear(50, 50), nn.Tanh())
    with torch.no_grad():
        for m in (net[0], net[2]):
            m.weight.fill_(0.05)
            m.bias.zero_()
    res = probe(net, torch.randn(64, 20, generator=gen))
    verdict = next(v for v in res.verdicts() if v.kind == "mismatch")
    assert verdict.layer == "2"
    assert verdict.value == pytest.approx(math.sqrt(50), rel=1e-4)


def test_mismatch_tolerance_is_configurable_and_widens_for_narrow_layers(gen):
    th = Thresholds()
    assert th.mismatch_tolerance(512) == th.mismatch_tolerance(128) == 0.25
    assert th.mismatch_tolerance(32) == pytest.approx(0.25 * math.sqrt(128 / 32))
    assert Thresholds(mismatch_units=1).mismatch_tolerance(2) == 0.25
    net = he_(nn.Sequential(nn.Linear(64, 256), nn.ReLU(), Loud(256, 256)), gen)
    res = probe(net, torch.randn(64, 64, generator=gen))
    assert "mismatch" in kinds(res)
    assert "mismatch" not in [v.kind for v in res.verdicts(Thresholds(mismatch=20.0))]
    assert "mismatch" not in [v.kind for v in res.verdicts(Thresholds(mismatch=math.inf))]


@pytest.mark.parametrize("kwargs", [{"mismatch": 0}, {"mismatch": -1.0}, {"mismatch": True},
                                    {"mismatch_units": 0}, {"mismatch_units": 2.5},
                                    {"logits_low": -1.0}, {"logits_low": 3.0, "logits_high": 3.0},
                                    {"logits_high": math.nan}])
def test_bad_new_thresholds_raise(kwargs):
    with pytest.raises(InitlabError, match="Thresholds"):
        Thresholds(**kwargs)


# ---- the logits verdict ---------------------------------------------------------------------------


class TiedLM(nn.Module):
    """A GPT-2-like toy: token embeddings N(0, 1), the head tied to them (logits = h E^T)."""

    def __init__(self, gen: torch.Generator, vocab: int = 100, dim: int = 64):
        super().__init__()
        self.wte = nn.Embedding(vocab, dim)
        nn.init.normal_(self.wte.weight, generator=gen)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.wte.weight

    def forward(self, ids):
        return self.head(self.wte(ids))


def test_logits_verdict_fires_for_a_tied_unit_variance_embedding(gen):
    """Logits ``e_t . e_v`` of 64-d N(0, 1) embeddings: std about sqrt(64) = 8 (10 with the 1 % of
    entries where ``v = t``, ``|e_t|^2 = 64``); the propagation predicts the 8 (it takes the head's
    weights as independent of its input)."""
    net = TiedLM(gen)
    res = probe(net, torch.randint(0, 100, (8, 16), generator=gen))
    verdict = next(v for v in res.verdicts() if v.kind == "logits")
    assert verdict.layer == OUTPUT_LAYER and 7 < verdict.value < 13
    assert "saturated" in verdict.message and f"{verdict.value:.3g}" in verdict.message
    assert res.stat(OUTPUT_LAYER, "predicted_std") == pytest.approx(8.0, rel=0.05)  # sqrt(64 E[w^2])


def test_logits_verdict_quiet_for_a_he_mlp_with_a_glorot_head(gen):
    res = probe(he_mlp(gen, width=256, depth=3), torch.randn(128, 256, generator=gen))
    assert 0.3 < res.stat(OUTPUT_LAYER, "std") < 3
    assert "logits" not in kinds(res)
    low = [v for v in res.verdicts(Thresholds(logits_low=3.0, logits_high=10.0)) if v.kind == "logits"]
    assert low and "barely varies" in low[0].message


# ---- the prediction never breaks the probe -----------------------------------------------------------


def test_a_failing_trace_leaves_a_note_and_the_probe_runs(gen, monkeypatch):
    import initlab.graph

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(initlab.graph, "trace", boom)
    net = he_mlp(gen, width=32, depth=2)
    res = probe(net, torch.randn(16, 32, generator=gen))
    assert res.notes == ["prediction: none (RuntimeError: boom)"]
    assert not [r for r in res.records if r["stat"] in ("predicted_std", "local_predicted_std")]
    assert res.stat("fc1", "std") > 0 and "mismatch" not in kinds(res)
    assert [r["note"] for r in res.records if r["kind"] == "note"] == res.notes


def test_layers_the_graph_cannot_see_are_named_in_a_note(gen):
    class Head(nn.Module):  # a bag of embeddings: a lookup the propagation does not model
        def __init__(self):
            super().__init__()
            self.bag, self.fc = nn.EmbeddingBag(50, 16), nn.Linear(16, 4)

        def forward(self, ids):
            return self.fc(self.bag(ids))

    net = Head()
    res = probe(net, torch.randint(0, 50, (4, 5), generator=gen))
    assert len(res.notes) == 1
    assert res.notes[0].startswith("prediction: 1 of 1 layer(s) have none: fc ("), res.notes


def test_predict_false_records_the_same_measurements(gen):
    net = he_mlp(gen, width=64, depth=3)
    x = torch.randn(32, 64, generator=gen)
    with_prediction, without = probe(net, x), probe(net, x, predict=False)
    predicted = ("predicted_mean", "predicted_std", "local_predicted_std")
    kept = [r for r in with_prediction.records if r["stat"] not in predicted]
    assert kept == without.records
    assert without.notes == [] and len(kept) < len(with_prediction.records)
    with pytest.raises(TypeError, match="predict"):
        probe(net, x, predict="yes")


def test_prediction_runs_in_the_probes_mode_and_restores_the_model(gen):
    net = he_(nn.Sequential(nn.Linear(32, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Dropout(0.5),
                            nn.Linear(256, 256)), gen)
    net.eval()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(64, 32, generator=gen)
    torch.manual_seed(1)
    probe(net, x, train=True, predict=False)  # dropout's masks come from the global RNG
    rng = torch.get_rng_state()
    torch.manual_seed(1)
    res = probe(net, x, train=True)
    # train mode: BatchNorm normalises the batch, dropout keeps half: q / (1 - p)
    assert res.stat("2", "predicted_std") == pytest.approx(res.stat("2", "std"), rel=0.15)
    assert res.stat("4", "predicted_std") == pytest.approx(res.stat("4", "std"), rel=0.15)
    assert not net.training
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in state.items())
    assert torch.equal(rng, torch.get_rng_state())  # the prediction draws nothing from it


def test_records_round_trip_with_predictions_output_and_notes(gen):
    net = TiedLM(gen)
    res = probe(net, torch.randint(0, 100, (4, 8), generator=gen))
    back = ProbeResult(json.loads(res.to_json()))
    assert back.layers == res.layers == ["head"]
    assert [v.message for v in back.verdicts()] == [v.message for v in res.verdicts()]
    assert back.stat(OUTPUT_LAYER, "std") == res.stat(OUTPUT_LAYER, "std")
    assert back.stat("head", "predicted_std") == res.stat("head", "predicted_std")
    noted = ProbeResult([{"layer": NOTE_LAYER, "kind": "note", "stat": "note", "value": None, "note": "x"},
                         *res.records])
    assert noted.notes == ["x"] and noted.layers == ["head"]


def test_table_shows_the_predicted_std_next_to_the_measured_one(gen):
    res = probe(he_mlp(gen, width=32, depth=1), torch.randn(16, 32, generator=gen))
    head, _, first = res.table().splitlines()[:3]
    cols = head.split()
    assert cols[cols.index("std") + 1] == "pred_std"
    assert first.split()[cols.index("pred_std")] == f"{res.stat('fc1', 'predicted_std'):.3g}"


# ---- the input's moments --------------------------------------------------------------------------


def test_input_cross_moment_from_pairs_of_positions(gen):
    """The cross moment is the mean over (example, channel) of the pairwise products at distinct
    positions: exact algebra against the brute-force mean, and its two extremes."""
    offsets = torch.randn(3, 2, 1, 1, generator=gen, dtype=torch.float64)  # units' means spread: c > m^2
    x = torch.randn(3, 2, 4, 5, generator=gen, dtype=torch.float64) + offsets
    got = predicted._tensor_moments(x, 1)
    assert got.cross > got.mean**2  # not clipped
    flat = x.reshape(3, 2, 20)
    pairs = [flat[b, c, i] * flat[b, c, j] for b in range(3) for c in range(2) for i in range(20)
             for j in range(20) if i != j]
    assert got.cross == pytest.approx(float(torch.stack(pairs).mean()), rel=1e-12)
    assert (got.mean, got.second) == pytest.approx((float(x.mean()), float(x.square().mean())), rel=1e-12)
    constant = torch.randn(4, 3, 1, 1, generator=gen).expand(4, 3, 8, 8)  # each image flat: c = q
    m = predicted._tensor_moments(constant, 1)
    assert m.cross == pytest.approx(m.second, rel=1e-9)
    iid = predicted._tensor_moments(torch.randn(64, 256, generator=gen), -1)  # pairs of examples: c ~ 0
    assert abs(iid.cross) < 5 / math.sqrt(256 * 64 * 63 / 2)  # 5 standard errors of the pair mean
