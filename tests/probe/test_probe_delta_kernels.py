"""The probe's prediction through delta kernels (Xiao et al. 2018: the centre tap only), the start
``"auto"`` gives a plain CNN: the centre tap never reads zero padding, so the predicted std stays
flat down the chain as the measured one does (it used to lose the padding of an iid 3x3 kernel,
about 10 % of q per conv at 7x7, and read 0.19 against a measured 0.97 after 32 convs); and through the
iid kernels "auto" gives a tanh CNN, where the padding is part of the solve."""

from __future__ import annotations

import pytest
import torch

from initlab import init_model
from initlab.probe import probe
from initlab.theory import depth_point
from initlab.zoo import plain_cnn

DEPTH = 16
# Tolerances. Measured stds average 128 x 7 x 7 x 32 entries; with delta kernels each position keeps
# its own norm down the chain (nothing mixes positions), and the first conv expands one pixel p into
# 32 channels, so a position's q is p^2 q (chi-square, 1 dof) times the link's scale. ReLU is
# positively homogeneous: the pooled q is the mean field's, up to the sample and the orthogonal draw
# (1 % over seeds 0-2). A tanh CNN gets iid kernels on every tap under "auto"
# (initlab.model.chain.CONV_DEPTH_NOTE), solved for the padding of the example input auto builds
# (32x32, an 8x8 stage: 22^2 of 64 x 9 taps read data, against 19^2 of 49 x 9 at 7x7, so the planned
# q is ~2.5 % high there) and tanh is concave in q (Jensen's gap: the mean field above the measured
# std, 6-10 % at q = 0.54 for seed 0); 0.15 covers both with room for the draw.
REL_TOL = {"relu": 0.05, "tanh": 0.15}


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_prediction_through_auto_cnn_follows_the_measured_std(activation):
    torch.manual_seed(0)
    net = plain_cnn(DEPTH, 32, activation)
    init_model(net, "auto", generator=torch.Generator().manual_seed(0))
    x = torch.randn(128, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    res = probe(net, x)
    convs = [f"features.{2 * k}" for k in range(DEPTH)]
    for name in convs:
        measured = res.stat(name, "std")
        assert res.stat(name, "predicted_std") == pytest.approx(measured, rel=REL_TOL[activation]), name
    stage = [res.stat(name, "predicted_std") for name in convs[2:]]
    if activation == "relu":
        # the prediction stays at the link's fixed point down the 7x7 stage (within 1 %: the plan's q
        # is the looks-linear q = 1, read to the float precision of the drawn weights), where an iid
        # kernel's padding took 7 % of q at every conv
        assert max(stage) == pytest.approx(min(stage), rel=0.01)
    else:
        # the plan's q* for 16 tanh links, to the 2.5 % padding difference above and the draw (a
        # kernel's E[w^2] over 9216 entries: 1.5 % of q per conv, carried along tanh's contracting
        # length map): 6 % of the std (seed 0: 3.8 % at most)
        q_star = depth_point("tanh", DEPTH).q_star
        assert stage == pytest.approx([q_star**0.5] * len(stage), rel=0.06)
