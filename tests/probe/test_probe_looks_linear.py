"""The probe's prediction for a looks-linear ReLU CNN (``init_model(net, "auto")`` on
``initlab.zoo.plain_cnn``): the head behind global average pooling reads ``relu(a) - relu(-a) = a``
through its mirrored columns, so it is predicted from the pooled pre-activation (zero mean, positions
decorrelated: ``q / 49``), not from the ReLU's shared mean (the mean field predicted 0.915 against a
measured 0.164); the hidden layers' predictions do not change.
"""

from __future__ import annotations

import math

import pytest
import torch

from initlab import init_model
from initlab.graph import layer_stats
from initlab.probe import OUTPUT_LAYER, probe
from initlab.zoo import plain_cnn

# Tolerance. The prediction is exact in expectation over the weight draw, not for one draw: with one
# input channel and delta kernels every pre-activation is v x(p), one pixel per position times a fixed
# 16-vector v, so the head's E[y^2] is |U v|^2 / 49 for its 10 orthonormal rows U, i.e. |v|^2 / 49 times
# the squared length of v projected on a random 10-dim subspace of 16 dims (Beta(5, 3): relative sd
# 0.26); and the 10 logits share one pooled input per example, so 128 examples estimate it to
# sqrt(2 / 128) = 0.125. Per seed E[y^2] is off by ~0.29 (measured over 64 seeds: 0.25 to 0.30, means
# 0.98 and 1.01 of the prediction); over SEEDS = 16 seeds the pooled E[y^2] is within 0.29 / 4 = 7 %,
# the std within ~3.6 %: REL_TOL = 0.15 is 4 of those (the mean field was 5.6x off).
SEEDS, REL_TOL, BATCH = 16, 0.15, 128


def _net(depth: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = plain_cnn(depth)
    init_model(net, "auto", generator=torch.Generator().manual_seed(seed))
    return net


def _x(seed: int) -> torch.Tensor:
    return torch.randn(BATCH, 1, 28, 28, generator=torch.Generator().manual_seed(1000 + seed))


@pytest.mark.parametrize("depth", [8, 16])
def test_head_behind_global_pooling_is_predicted(depth):
    measured = predicted = 0.0
    for seed in range(SEEDS):
        res = probe(_net(depth, seed), _x(seed), backward=False)
        measured += res.stat("head", "std") ** 2
        predicted += res.stat("head", "predicted_std") ** 2
    assert math.sqrt(measured / predicted) == pytest.approx(1.0, abs=REL_TOL)


def test_hidden_layers_predictions_do_not_change(monkeypatch):
    net, x = _net(8, 0), _x(0)
    new = probe(net, x, backward=False)
    monkeypatch.setattr(layer_stats, "with_mirrors", lambda st, *args: st)  # the mean field, as before
    old = probe(net, x, backward=False)
    hidden = [lay for lay in new.layers if lay.startswith("features.")]
    assert len(hidden) == 16
    # equal up to float32: a conv reading a looks-linear pair now reads the measured pre-activation
    # (E[a^2]) where it read the measured ReLU output (E[relu(a)^2] + E[relu(-a)^2], the same sum
    # rounded differently: float32 reductions over 10^5 - 10^6 entries), end to end a weight mean of
    # ~1e-10 (float32 rounding of the exact 0)
    for lay in hidden:
        for stat in ("predicted_std", "local_predicted_std"):
            assert new.stat(lay, stat) == pytest.approx(old.stat(lay, stat), rel=1e-5), (lay, stat)
    assert new.stat("head", "predicted_std") < old.stat("head", "predicted_std") / 3


def test_logits_verdict_says_a_predicted_small_output_is_expected():
    net, x = _net(8, 0), _x(0)
    res = probe(net, x, backward=False)
    verdict = next(v for v in res.verdicts() if v.kind == "logits")
    assert verdict.value == res.stat(OUTPUT_LAYER, "std") < 0.3
    assert f"as the propagation predicts ({res.stat(OUTPUT_LAYER, 'predicted_std'):.3g})" in verdict.message
    with torch.no_grad():
        net.head.weight.zero_()  # a zeroed head: predicted 0, the intended case
    zeroed = next(v for v in probe(net, x, backward=False).verdicts() if v.kind == "logits")
    assert "intended after a zeroed head" in zeroed.message
