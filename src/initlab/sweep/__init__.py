"""Sweeps: grids of experiment cells run serially or on Ray (this machine, or a cluster by
address), each finished cell stored at once in a Parquet store keyed by its config's hash, so a
re-run skips what is done and a killed run resumes where it stopped.

:func:`run` (``initlab sweep SPEC.toml``) runs a spec (:mod:`~initlab.sweep.spec`); its cells
(:mod:`~initlab.sweep.grid`) are experiment configs (:mod:`~initlab.sweep.experiments`) executed by
a runner (:mod:`~initlab.sweep.runners`) through the engine (:mod:`~initlab.sweep.engine`) into
the store (:mod:`~initlab.sweep.store`); a spec's ``[random]`` table draws points
(:mod:`~initlab.sweep.random_search`). Ray and pyarrow come with ``pip install 'initlab[sweep]'``
and are imported only when used.
"""

from __future__ import annotations

from initlab.sweep.engine import SweepResult, drive, make_runner, map_cells, run
from initlab.sweep.experiments import EXPERIMENTS, SweepExperiment, get_experiment
from initlab.sweep.grid import Cell, cell_key, expand, spec_hash
from initlab.sweep.spec import SweepSpec, load_spec, parse_spec
from initlab.sweep.store import SweepStore

__all__ = ["run", "map_cells", "drive", "make_runner", "SweepResult", "SweepSpec", "load_spec", "parse_spec",
           "Cell", "expand", "cell_key", "spec_hash", "SweepStore", "EXPERIMENTS", "SweepExperiment",
           "get_experiment"]
