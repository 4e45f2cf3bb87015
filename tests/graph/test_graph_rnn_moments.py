"""Tests of the LSTM / GRU rule of initlab.graph.moments (a mean field over pairs of steps), the
per-gate parts of initlab.graph.layer_stats, and init_model's predicted moments of recurrent rows.

Tolerance. A measured moment is the average over ``J`` output units of per-unit estimates; units are
independent at init (each has its own weight rows), so ``SE = std_j / sqrt(J)`` covers both the data
sample and the weight draw (finite width and batch). The rule's assumptions (gates independent of each
other; the kept share ``f_t`` / ``z_t`` independent of the state and across steps; ``c_t`` Gaussian
inside ``tanh``) add a systematic error, measured as the mean relative error of ``q`` over 6 seeds
against ``nn.LSTM`` / ``nn.GRU`` (input and hidden 256, 16 steps, batch 512; the same at width 1024,
so not a finite-width effect):

    ======================  ==============  ==============
    q, predicted/measured    one layer       two stacked
    ======================  ==============  ==============
    LSTM, torch default     -1.0% (+-0.04)  -0.8% (+-0.6)
    LSTM, init_model auto   +0.1% (+-0.08)  -2.2% (+-0.3)
    GRU, torch default      +0.2% (+-0.09)  +1.2% (+-0.2)
    GRU, init_model auto    +0.9% (+-0.05)  +2.2% (+-0.2)
    ======================  ==============  ==============

(the cross moment: within 1.7% for one layer, 3.6% for two). One step of the recursion, from measured
pieces: the state's factorisation costs at most 0.6% of ``E[c_t^2]`` (LSTM) and 0.7% of ``E[h_t^2]``
(GRU); a Gaussian ``c_t`` at most 2.3% of ``E[tanh^2 c_t]`` (-0.8% on average with torch's init: most
of the LSTM's -1%); the kept share's own correlation across steps, neglected, is what grows with depth.
Allowed: ``N_SE`` standard errors plus ``ASSUMPTION[layers]`` of the measured value — about twice the
worst ``q`` bias measured, above the worst cross bias. Seeds are fixed.
"""

from __future__ import annotations

import pytest
import torch
from moment_checks import N_SE, measure
from torch import nn

import initlab
from initlab.graph.layer_stats import RNN_GATES, model_layer_stats, part_params
from initlab.graph.moments import Moments, propagate
from initlab.graph.nodes import Graph, Kind, Node

ASSUMPTION = {1: 0.02, 2: 0.04}
BATCH, STEPS, WIDTH = 512, 16, 256




def assert_within(name: str, predicted: float, y: torch.Tensor, layers: int) -> None:
    """``predicted`` moment ``name`` of ``y`` within ``N_SE`` SE (+ the assumption budget but for the
    mean, + float32 resolution)."""
    meas, se = measure(y)
    i = ("mean", "second", "cross").index(name)
    v, budget = getattr(meas, name), 0.0 if name == "mean" else ASSUMPTION[layers]
    tol = N_SE * se[i] + budget * abs(v) + 1e-6 * max(abs(v), 1e-3)
    assert abs(predicted - v) <= tol, f"{name}: predicted {predicted:.6g}, measured {v:.6g} (SE {se[i]:.3g})"


def assert_close(pred: Moments, y: torch.Tensor, layers: int) -> None:
    for name in ("mean", "second", "cross"):
        assert_within(name, getattr(pred, name), y, layers)


def rnn_graph(rnn: nn.RNNBase, steps: int | None = STEPS) -> tuple[Graph, Node]:
    """INPUT ``(batch, steps, input)`` -> the module ``"0"`` (no shapes when ``steps`` is None)."""
    width = (rnn.proj_size or rnn.hidden_size) * (2 if rnn.bidirectional else 1)
    g = Graph()
    x = g.add(Kind.INPUT, "x", shape=(BATCH, steps, rnn.input_size) if steps else None)
    layer = g.add(Kind.LAYER, type(rnn).__name__, [x.id], module="0",
                  shape=(BATCH, steps, width) if steps else None)
    return g, layer


def drawn(rnn: nn.RNNBase, init: str, gen: torch.Generator) -> nn.RNNBase:
    """``rnn`` as torch drew it, or re-drawn by ``initlab.init_model(rnn, "auto")``."""
    if init == "initlab":
        initlab.init_model(rnn, "auto", generator=gen)
    return rnn


# ---- parts: one gate's block of rows --------------------------------------------------------------


def _part(module: nn.Module, part: str):
    return part_params(module, Node(0, Kind.LAYER, type(module).__name__, module=""), part)


def test_gate_parts_are_row_blocks_with_their_biases():
    torch.manual_seed(10)
    lstm, gru = nn.LSTM(3, 5, bidirectional=True), nn.GRU(3, 5)
    p = _part(lstm, "ih_l0_reverse:f")
    assert torch.equal(p.weight, lstm.weight_ih_l0_reverse[5:10]) and p.fan_in == 3
    assert torch.equal(p.bias, lstm.bias_ih_l0_reverse[5:10] + lstm.bias_hh_l0_reverse[5:10])
    p = _part(lstm, "hh_l0:o")
    assert torch.equal(p.weight, lstm.weight_hh_l0[15:20]) and p.bias is None and p.fan_in == 5
    whole = _part(lstm, "ih_l0")  # the whole packed weight, as before
    assert whole.weight is lstm.weight_ih_l0 and torch.equal(whole.bias, lstm.bias_ih_l0 + lstm.bias_hh_l0)
    assert torch.equal(_part(gru, "ih_l0:r").bias, gru.bias_ih_l0[:5] + gru.bias_hh_l0[:5])
    assert torch.equal(_part(gru, "ih_l0:n").bias, gru.bias_ih_l0[10:])  # b_hn sits inside r * (.)
    assert torch.equal(_part(gru, "hh_l0:n").bias, gru.bias_hh_l0[10:])
    assert _part(gru, "ih_l0:f") is None and _part(nn.RNN(3, 5), "ih_l0:i") is None
    assert RNN_GATES == {"LSTM": ("i", "f", "g", "o"), "GRU": ("r", "z", "n")}
    proj = nn.LSTM(3, 5, proj_size=2)
    assert _part(proj, "hr_l0").weight.shape == (2, 5) and _part(proj, "hr_l0").bias is None
    assert _part(proj, "hh_l0:g").weight.shape == (5, 2) and _part(proj, "hh_l0:g").fan_in == 2


def test_forget_bias_is_a_mean_per_gate(gen):
    lstm = drawn(nn.LSTM(8, 16), "initlab", gen)
    node, read = Node(0, Kind.LAYER, "LSTM", module=""), model_layer_stats(lstm)
    forget, inp, whole = (read(node, part, Moments(0.0, 1.0)) for part in ("ih_l0:f", "ih_l0:i", "ih_l0"))
    assert (forget.bias_mean, forget.bias_second) == (1.0, 1.0) and (inp.bias_mean, inp.bias_second) == (0, 0)
    assert (whole.bias_mean, whole.bias_second) == (0.25, 0.25)  # the whole weight: a spread across gates


# ---- against Monte-Carlo forwards of nn.LSTM / nn.GRU -------------------------------------------------


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("init", ["torch", "initlab"])
@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU])
def test_gated_rnn_against_monte_carlo(gen, cls, init, layers):
    torch.manual_seed(11)
    rnn = drawn(cls(WIDTH, WIDTH, layers, batch_first=True), init, gen)
    g, node = rnn_graph(rnn)
    pred = propagate(g, model=nn.Sequential(rnn))[node.id]
    x = torch.randn(BATCH, STEPS, WIDTH, generator=gen)
    with torch.no_grad():
        assert_close(pred, rnn(x)[0], layers)
    gates = RNN_GATES[cls.__name__]
    assert set(g[node.id].meta["layer_stats"]) == {
        f"{k}_l{i}:{gate}" for k in ("ih", "hh") for i in range(layers) for gate in gates
    }


@pytest.mark.parametrize(("cls", "init"), [(nn.LSTM, "torch"), (nn.GRU, "initlab")])
def test_bidirectional_stacked(gen, cls, init):
    torch.manual_seed(12)
    rnn = drawn(cls(WIDTH, WIDTH, 2, batch_first=True, bidirectional=True), init, gen)
    g, node = rnn_graph(rnn)
    pred = propagate(g, model=nn.Sequential(rnn))[node.id]
    with torch.no_grad():
        assert_close(pred, rnn(torch.randn(BATCH, STEPS, WIDTH, generator=gen))[0], 2)


@pytest.mark.parametrize("init", ["torch", "initlab"])
def test_lstm_projection(gen, init):
    torch.manual_seed(13)
    rnn = drawn(nn.LSTM(WIDTH, WIDTH, batch_first=True, proj_size=128), init, gen)
    g, node = rnn_graph(rnn)
    pred = propagate(g, model=nn.Sequential(rnn))[node.id]
    assert "hr_l0" in g[node.id].meta["layer_stats"]
    with torch.no_grad():
        assert_close(pred, rnn(torch.randn(BATCH, STEPS, WIDTH, generator=gen))[0], 1)


def test_whole_weight_statistics_miss_the_forget_bias(gen):
    """Read through the whole packed weight, the forget bias 1 becomes a spread (E[b] = 1/4,
    E[b^2] = 1/4 for every gate): q comes out ~45% too high. Per gate it is within tolerance."""
    torch.manual_seed(14)
    rnn = drawn(nn.LSTM(WIDTH, WIDTH, batch_first=True), "initlab", gen)
    model = nn.Sequential(rnn)
    read = model_layer_stats(model)
    g, node = rnn_graph(rnn)
    per_gate = propagate(g, model=model)[node.id]
    whole = propagate(g, model=model, layer_stats=lambda n, part, x: read(n, part.split(":")[0], x))[node.id]
    with torch.no_grad():
        y = rnn(torch.randn(BATCH, STEPS, WIDTH, generator=gen))[0]
    assert_close(per_gate, y, 1)
    assert whole.second > 1.3 * measure(y)[0].second


def test_unknown_length_is_the_stationary_regime(gen):
    """No shapes: steps 33-64 of a 64-step run, compared with those steps of a 64-step forward."""
    torch.manual_seed(15)
    rnn = drawn(nn.LSTM(WIDTH, WIDTH, batch_first=True), "initlab", gen)
    g, node = rnn_graph(rnn, steps=None)
    pred = propagate(g, model=nn.Sequential(rnn))[node.id]
    assert "sequence length unknown" in g[node.id].meta["moments_note"]
    with torch.no_grad():
        y = rnn(torch.randn(256, 64, WIDTH, generator=gen))[0]
    assert_close(pred, y[:, 32:], 1)


# ---- init_model: predicted moments of recurrent rows --------------------------------------------------


class LSTMLM(nn.Module):
    """Embedding(500, 256) -> LSTM(256, 256, 2, batch_first) -> Linear(256, 500)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb, self.head = nn.Embedding(500, 256), nn.Linear(256, 500)
        self.rnn = nn.LSTM(256, 256, 2, batch_first=True)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(self.emb(ids))[0])


def test_init_model_predicts_the_lstm_lm_head(gen):
    """The head's q_in / q_out come from the planned rows (Glorot input weights, orthogonal recurrent
    weights, forget bias 1) and match a forward of the initialised model."""
    torch.manual_seed(16)
    model = LSTMLM()
    ids = torch.randint(0, 500, (BATCH, STEPS), generator=gen)
    plan = initlab.init_model(model, "auto", example_inputs=ids, generator=gen)
    head = next(r for r in plan.rows if r.name == "head.weight")
    assert head.q_in is not None and head.q_out is not None
    with torch.no_grad():
        h = model.rnn(model.emb(ids))[0]
        y = model.head(h)
    assert_within("second", head.q_in, h, 2)
    assert_within("second", head.q_out, y, 2)


def test_planned_rnn_moments_read_the_plan_not_the_current_weights(gen):
    """init_model predicts before it draws: the recurrent rows' q_out must not depend on the
    weights the module holds now."""
    rows = []
    for scale in (1.0, 10.0):
        torch.manual_seed(17)
        model = nn.Sequential(nn.GRU(32, 32, batch_first=True))
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(scale)
        plan = initlab.init_model(model, "auto", example_inputs=torch.randn(4, 8, 32, generator=gen),
                                  dry_run=True)
        rows.append({r.name: r.q_out for r in plan.rows})
    assert rows[0] == rows[1] and all(v is not None for v in rows[0].values())


# ---- the module split ---------------------------------------------------------------------------


def test_recurrent_rules_live_in_their_own_module_and_stay_importable_from_moments():
    """``initlab.graph.recurrent`` registers the RNN / LSTM / GRU rules into ``LAYER_RULES`` (and
    ``initlab.graph.attention`` the attention ones); their names still import from
    ``initlab.graph.moments``, whichever module is imported first."""
    import subprocess
    import sys

    from initlab.graph import attention, moments, recurrent

    assert moments.LAYER_RULES["RNN"] is recurrent._rnn_layer
    assert moments.LAYER_RULES["LSTM"] is moments.LAYER_RULES["GRU"] is recurrent._gated_rnn
    assert moments._gated_rnn is recurrent._gated_rnn and moments._Seq is recurrent._Seq
    assert moments.LAYER_RULES["MultiheadAttention"] is attention._mha_layer
    assert moments.RULES[Kind.ATTENTION] is attention._attention
    assert moments.attention_average is attention.attention_average
    for first in ("recurrent", "attention"):
        code = (f"import initlab.graph.{first}\n"
                "from initlab.graph.moments import LAYER_RULES, RULES, _GatedScan, attention_average\n"
                "from initlab.graph import recurrent as r, attention as a\n"
                "assert LAYER_RULES['GRU'] is r._gated_rnn and _GatedScan is r._GatedScan\n"
                "assert LAYER_RULES['MultiheadAttention'] is a._mha_layer")
        subprocess.run([sys.executable, "-c", code], check=True)
