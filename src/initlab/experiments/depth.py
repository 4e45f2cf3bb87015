"""Experiment 5: depth — where the right start matters most.

One plain MLP of a given depth, activation and start, trained for a short fixed budget; the demo
runs it over depths x activations x starts (Xavier, He, LSUV and ``init_model(model, "auto")``).
A shallow net trains from any reasonable start; at depth 30-50 the signal has to cross many
layers, and a start that loses a little per layer (Xavier with ReLU or sigmoid, He with tanh)
leaves the deep layers with vanishing or exploding signals, while a start that keeps each layer's
second moment and the Jacobian well-conditioned (isometric, Pennington et al. 2017; what "auto"
chooses for a plain MLP) trains in a few dozen steps. Recorded per run (experiment ``"depth"``,
extra ``depth``): the stats of :func:`initlab.experiments.training.fit` (steps to the target test
accuracy, final and mean test accuracy, divergence) and ``"seconds"``.

One config is one run, a cell; :func:`depth_grid` makes the demo's grid of them and
:func:`run_depth_grid` hands it to a ``map_cells`` (``initlab demo``: the sweep engine's).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from initlab.errors import InitlabError
from initlab.experiments.common import (
    CellMap,
    StepCallback,
    bind_cell,
    check_choice,
    check_ints,
    derive_seed,
    make_record,
    map_here,
)
from initlab.experiments.training import fit, init_start
from initlab.models import ACTIVATION_MODULES, mlp

__all__ = ["DEPTH_SCHEMES", "DepthConfig", "DepthResult", "run_depth", "depth_grid", "run_depth_grid"]

EXPERIMENT = "depth"

#: The starts compared at depth: the rules of thumb, LSUV and initlab's "auto".
DEPTH_SCHEMES: tuple[str, ...] = ("xavier_normal", "he_normal", "lsuv", "auto")


@dataclass(frozen=True)
class DepthConfig:
    """One run of :func:`run_depth`.

    Attributes:
        depth: hidden layers.
        activation: hidden activation (``initlab.models.ACTIVATION_MODULES``).
        scheme: the start (:data:`DEPTH_SCHEMES`, or any scheme of
            :func:`~initlab.experiments.training.init_start`).
        width: units per hidden layer.
        epochs, batch_size, lr, momentum: SGD training (the budget is short on purpose: it asks how
            fast a start trains, not where it ends after long training).
        target_accuracy: the test accuracy ``steps_to_target`` counts the steps to.
        evals_per_epoch: test evaluations per epoch (the resolution of ``steps_to_target``).
        seed: the run's seed (weights and shuffling get seeds derived from it and the run's keys).
    """

    depth: int = 30
    activation: str = "tanh"
    scheme: str = "auto"
    width: int = 64
    epochs: int = 2
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    target_accuracy: float = 0.8
    evals_per_epoch: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        check_ints(self, ("depth", "width", "epochs", "batch_size", "evals_per_epoch"))
        check_ints(self, ("seed",), 0)
        check_choice("activation", self.activation, tuple(ACTIVATION_MODULES))
        if not 0.0 < self.target_accuracy <= 1.0:
            raise InitlabError(f"target_accuracy={self.target_accuracy!r} is invalid: pass a value in (0, 1]")
        if not self.lr > 0:
            raise InitlabError(f"lr={self.lr!r} is invalid: pass a positive learning rate")


@dataclass
class DepthResult:
    """Output of :func:`run_depth`: ``config`` and tidy ``records`` (experiment ``"depth"``,
    layer ``None``, extras ``depth`` and ``width``)."""

    config: DepthConfig
    records: list[dict[str, Any]] = field(default_factory=list)


def run_depth(dataset: Any, config: DepthConfig | None = None) -> DepthResult:
    """Train ``mlp(n_features, width, depth, n_classes, activation)`` from ``config.scheme`` on
    ``dataset`` (an :func:`initlab.data.load_dataset` result) and return its records.

    The start is :func:`~initlab.experiments.training.init_start`'s (``"auto"`` is
    ``initlab.init_model(model, "auto")``; LSUV rescales Xavier-normal weights on up to 512 training
    examples); training is :func:`~initlab.experiments.training.fit`'s.

    Raises:
        InitlabError: invalid config or unknown scheme.

    >>> from types import SimpleNamespace
    >>> g = torch.Generator().manual_seed(0)
    >>> ds = SimpleNamespace(x_train=torch.randn(64, 5, generator=g), y_train=torch.arange(64) % 2,
    ...                      x_test=torch.randn(16, 5, generator=g), y_test=torch.arange(16) % 2,
    ...                      n_classes=2, n_features=5, name="toy")
    >>> res = run_depth(ds, DepthConfig(depth=3, width=8, epochs=1, scheme="auto"))
    >>> sorted({r["stat"] for r in res.records} & {"steps_to_target", "final_test_accuracy"})
    ['final_test_accuracy', 'steps_to_target']
    """
    config = config or DepthConfig()
    torch.set_flush_denormal(True)
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(derive_seed(config.seed, EXPERIMENT, config.scheme, config.activation,
                                                    config.depth))
    model = mlp(int(dataset.n_features), config.width, config.depth, int(dataset.n_classes),
                config.activation)
    _, init_steps = init_start(model, config.scheme, config.activation, dataset, generator=gen,
                               seed=config.seed)  # LSUV's per-layer records are not this experiment's
    common = {"experiment": EXPERIMENT, "scheme": config.scheme, "activation": config.activation,
              "layer": None, "seed": config.seed, "depth": config.depth, "width": config.width}
    records = fit(model, dataset, common, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                  momentum=config.momentum, evals_per_epoch=config.evals_per_epoch,
                  target_accuracy=config.target_accuracy, generator=gen, init_steps=init_steps)
    records.append(make_record(**common, stat="seconds", value=time.perf_counter() - t0, epoch=None))
    return DepthResult(config=config, records=records)


def depth_grid(depths: tuple[int, ...], activations: tuple[str, ...],
               schemes: tuple[str, ...] = DEPTH_SCHEMES, **settings: Any) -> list[DepthConfig]:
    """The configs of the depth experiment: every ``activation x depth x scheme``, in that order,
    with the other :class:`DepthConfig` fields from ``settings``.

    Raises:
        InitlabError: an invalid field value (from :class:`DepthConfig`).

    >>> [(c.activation, c.depth, c.scheme) for c in depth_grid((10, 30), ("tanh",), ("auto",))]
    [('tanh', 10, 'auto'), ('tanh', 30, 'auto')]
    """
    return [DepthConfig(depth=d, activation=a, scheme=s, **settings)
            for a in activations for d in depths for s in schemes]


def _depth_records(config: DepthConfig, dataset: Any) -> list[dict[str, Any]]:
    return run_depth(dataset, config).records


def run_depth_grid(dataset: Any, configs: list[DepthConfig], *, on_step: StepCallback | None = None,
                   map_cells: CellMap | None = None) -> list[DepthResult]:
    """Run every config of ``configs`` (e.g. :func:`depth_grid`'s) on ``dataset``, each one cell
    of ``map_cells``, and return their results in the order of ``configs``.

    Args:
        dataset: an :func:`initlab.data.load_dataset` result, shared by every run.
        configs: the runs.
        on_step: called with ``"depth ACTIVATION/DEPTH/SCHEME"`` after each run.
        map_cells: runs the cells (:data:`~initlab.experiments.common.CellMap`; ``initlab demo``
            passes :func:`initlab.sweep.map_cells`); default: here, one after the other. The
            records do not depend on it.

    Raises:
        InitlabError: an unknown scheme (with the sweep engine: the cell that failed, named).

    >>> from types import SimpleNamespace
    >>> g = torch.Generator().manual_seed(0)
    >>> ds = SimpleNamespace(x_train=torch.randn(64, 5, generator=g), y_train=torch.arange(64) % 2,
    ...                      x_test=torch.randn(16, 5, generator=g), y_test=torch.arange(16) % 2,
    ...                      n_classes=2, n_features=5, name="toy")
    >>> res = run_depth_grid(ds, depth_grid((2, 3), ("relu",), ("he_normal",), width=8, epochs=1))
    >>> [r.config.depth for r in res]
    [2, 3]
    """
    run_cell = bind_cell(_depth_records, dataset, on_step,
                         lambda c: f"depth {c.activation}/{c.depth}/{c.scheme}")
    per_cell = (map_cells or map_here)(run_cell, configs)
    return [DepthResult(config=c, records=records) for c, records in zip(configs, per_cell, strict=True)]
