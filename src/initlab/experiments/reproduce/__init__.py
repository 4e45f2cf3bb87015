"""The papers' results beside ours: one reproduction per paper, each an experiment (config
dataclass in, tidy records out, the paper's numbers and a verdict among them).

* ``he2015`` — He et al. 2015, sec. 2.2 / Fig. 3: a 30-layer ReLU net, Xavier vs He.
* ``glorot2010`` — Glorot & Bengio 2010, Table 1: standard vs normalized init.
* ``bengio2007`` — Bengio et al. 2007 / Hinton & Salakhutdinov 2006: layer-wise pretraining.
* ``saxe2013`` — Saxe et al. 2013: deep linear nets, learning time vs depth.

:func:`run_reproductions` runs any of them (``initlab reproduce``); :mod:`initlab.report.reproduce`
writes the report.
"""

from __future__ import annotations

from initlab.experiments.reproduce.common import Reproduction
from initlab.experiments.reproduce.registry import (
    REPRODUCTIONS,
    ReproduceResult,
    get_reproduction,
    make_config,
    reproduction_names,
    run_reproductions,
)

__all__ = ["Reproduction", "REPRODUCTIONS", "ReproduceResult", "get_reproduction", "make_config",
           "reproduction_names", "run_reproductions"]
