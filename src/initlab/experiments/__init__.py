"""The demo experiments: each is a function, config dataclass in, result dataclass out, holding
tidy records (``experiment, scheme, activation, layer, stat, value, epoch, seed`` + extras). No
plotting here — :mod:`initlab.report` reads the records.

1. :func:`run_forward` — forward and backward pass statistics per layer (Glorot & Bengio 2010).
2. :func:`run_symmetry` — zero / constant vs random init: distinct hidden units after training.
3. :func:`run_training` — a deep MLP trained under each init: loss, accuracy, steps to target.
4. :func:`summarize` — "activation -> best scheme" from this run vs the rules of thumb.
5. :func:`run_depth` — one plain MLP of a given depth trained from one start (the demo runs the
   grid depths x activations x Xavier / He / LSUV / "auto").

:func:`run_demo` runs them all (what ``initlab demo`` calls).
"""

from __future__ import annotations

from initlab.experiments.demo import DemoConfig, DemoResult, run_demo
from initlab.experiments.depth import DepthConfig, DepthResult, depth_grid, run_depth
from initlab.experiments.forward import ForwardConfig, ForwardResult, run_forward
from initlab.experiments.summary import RULES, SummaryResult, summarize
from initlab.experiments.symmetry import (
    SymmetryConfig,
    SymmetryResult,
    distinct_units,
    distinct_units_relative,
    run_symmetry,
    unit_spread,
)
from initlab.experiments.training import TrainingConfig, TrainingResult, available_schemes, run_training

__all__ = [
    "DemoConfig", "DemoResult", "run_demo",
    "ForwardConfig", "ForwardResult", "run_forward",
    "SymmetryConfig", "SymmetryResult", "run_symmetry", "distinct_units", "distinct_units_relative",
    "unit_spread",
    "DepthConfig", "DepthResult", "run_depth", "depth_grid",
    "TrainingConfig", "TrainingResult", "run_training", "available_schemes",
    "RULES", "SummaryResult", "summarize",
]
