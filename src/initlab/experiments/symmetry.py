"""Experiment 2: symmetry — zero and constant initialization never break it.

If every hidden unit of a layer starts with the same incoming weights, every unit computes the
same activation and receives the same gradient, so gradient descent keeps them equal forever: a
layer of ``n`` units behaves like one unit (Goodfellow, Bengio & Courville, *Deep Learning*,
2016, sec. 8.4; Glorot & Bengio 2010). This experiment trains a 2-hidden-layer MLP for a few
epochs on the data set from zeros, from a constant (0.5) and from random (Xavier normal) weights,
with and without dropout (Srivastava et al. 2014) — dropout gives each unit its own random mask,
which is often said to break the symmetry — and counts the **distinct hidden units** per layer
after training.

Two units ``i, j`` of layer ``l`` are the same when their incoming weights and bias agree:

.. math::  \\max_k |W_{ik} - W_{jk}|,\\ |b_i - b_j| \\le \\mathrm{atol} + \\mathrm{rtol}\\,\\max |W|

and the count is the number of groups (single-link clustering under that relation): the exact
tie. Dropout breaks that tie by a hair, so the experiment also measures how far apart the units
are relative to their size: :func:`unit_spread` (0 for identical units, about 1 for random ones)
and :func:`distinct_units_relative` (units closer than ``relative_tol`` of a unit's norm count as
one).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from initlab.errors import InitlabError
from initlab.experiments.common import (
    GeneratorDropout,
    StepCallback,
    check_choice,
    check_ints,
    derive_seed,
    init_mlp_,
    make_record,
)
from initlab.models import ACTIVATION_MODULES, mlp

__all__ = ["SymmetryConfig", "SymmetryResult", "run_symmetry", "distinct_units", "distinct_units_relative",
           "unit_spread"]

EXPERIMENT = "symmetry"


@dataclass(frozen=True)
class SymmetryConfig:
    """Configuration of :func:`run_symmetry`.

    Attributes:
        schemes: initializations compared (``"zeros"``, ``"constant"``, any random scheme).
        constant: the value of ``"constant"`` weights.
        activation: hidden activation.
        width: hidden units per layer; depth is 2.
        dropouts: dropout probabilities to compare (0 = none).
        epochs, batch_size, lr, momentum: SGD training.
        rtol, atol: tolerance of :func:`distinct_units` (the exact tie).
        relative_tol: tolerance of :func:`distinct_units_relative`, a fraction of a unit's norm.
        seed: the run's seed.
    """

    schemes: tuple[str, ...] = ("zeros", "constant", "xavier_normal")
    constant: float = 0.5
    activation: str = "tanh"
    width: int = 32
    depth: int = 2
    dropouts: tuple[float, ...] = (0.0, 0.5)
    epochs: int = 3
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    rtol: float = 1e-4
    atol: float = 1e-7
    relative_tol: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        check_ints(self, ("width", "depth", "epochs", "batch_size"))
        if not 0.0 < self.relative_tol < 1.0:
            raise InitlabError(f"relative_tol={self.relative_tol!r} is invalid: pass a fraction in (0, 1)")
        for p in self.dropouts:
            if not 0.0 <= p < 1.0:
                raise InitlabError(f"dropout={p!r} is invalid: pass a probability in [0, 1)")

    @property
    def n_steps(self) -> int:
        """Units of work (one training run per scheme x dropout), for progress bars."""
        return len(self.schemes) * len(self.dropouts)


@dataclass
class SymmetryResult:
    """Output of :func:`run_symmetry`: ``config`` and tidy ``records`` (experiment
    ``"symmetry"``): per hidden layer ``"distinct_units"`` (the exact tie, :func:`distinct_units`)
    and ``"distinct_units_relative"`` (:func:`distinct_units_relative`, extra ``relative_tol``), at
    epoch 0 and after the last epoch, and ``"unit_spread"`` (:func:`unit_spread`) after the last;
    per run ``"test_accuracy"``; extras ``dropout`` and ``width``."""

    config: SymmetryConfig
    records: list[dict[str, Any]] = field(default_factory=list)


def distinct_units(weight: torch.Tensor, bias: torch.Tensor | None = None, *, rtol: float = 1e-4,
                   atol: float = 1e-7) -> int:
    """Number of distinct units of a layer: groups of rows of ``weight`` (shape ``(out, in)``),
    with ``bias`` (shape ``(out,)``) as an extra column, that agree within
    ``atol + rtol * max|W|`` in every entry (max-norm, single-link).

    Raises:
        InitlabError: ``weight`` is not 2-D.

    >>> distinct_units(torch.full((4, 3), 0.5))
    1
    >>> distinct_units(torch.eye(3))
    3
    """
    rows = _rows(weight)
    if bias is not None:
        rows = torch.cat([rows, bias.detach().double().reshape(-1, 1)], dim=1)
    tol = atol + rtol * float(rows.abs().max()) if rows.numel() else atol
    return _groups(torch.cdist(rows, rows, p=float("inf")) <= tol)


def distinct_units_relative(weight: torch.Tensor, relative_tol: float = 0.1, *, atol: float = 1e-12) -> int:
    """Number of units of a layer that differ by more than ``relative_tol`` of a unit's size: rows
    ``w_i`` of ``weight`` (shape ``(out, in)``) are one unit when

    .. math::  \\|w_i - w_j\\|_2 \\le \\mathrm{rtol}\\,\\sqrt{\\tfrac{1}{n}\\textstyle\\sum_k \\|w_k\\|_2^2}
               + \\mathrm{atol}

    (single-link groups). Random rows are about :math:`\\sqrt 2` norms apart, so every unit counts;
    units that started equal and were nudged apart by dropout masks count as one.

    Raises:
        InitlabError: ``weight`` is not 2-D.

    >>> distinct_units_relative(torch.eye(3))
    3
    >>> distinct_units_relative(torch.full((4, 3), 0.5) + 0.001 * torch.eye(4, 3))
    1
    """
    rows = _rows(weight)
    scale = float(rows.pow(2).sum(1).mean().sqrt()) if rows.numel() else 0.0
    return _groups(torch.cdist(rows, rows) <= relative_tol * scale + atol)


def unit_spread(weight: torch.Tensor) -> float:
    """How far a layer's units are apart, relative to their size: the RMS distance of the rows
    ``w_i`` of ``weight`` (shape ``(out, in)``) from their mean row, over their RMS norm,

    .. math::  s = \\sqrt{\\frac{\\sum_i \\|w_i - \\bar w\\|^2}{\\sum_i \\|w_i\\|^2}} \\in [0, 1]

    0 for identical units (and for all-zero weights), about 1 for independent zero-mean random rows.

    Raises:
        InitlabError: ``weight`` is not 2-D.

    >>> unit_spread(torch.full((4, 3), 0.5)), round(unit_spread(torch.eye(2)), 6)  # sqrt(1/2)
    (0.0, 0.707107)
    """
    rows = _rows(weight)
    total = float(rows.pow(2).sum())
    if total == 0.0:
        return 0.0
    return math.sqrt(float((rows - rows.mean(0)).pow(2).sum()) / total)


def _rows(weight: torch.Tensor) -> torch.Tensor:
    if weight.dim() != 2:
        raise InitlabError(f"weight of shape {tuple(weight.shape)} is invalid: pass a 2-D (out, in) weight")
    return weight.detach().double()


def _groups(close: torch.Tensor) -> int:
    """Number of connected groups of the symmetric relation ``close`` (n x n booleans)."""
    n = close.shape[0]
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    ii, jj = torch.nonzero(torch.triu(close, diagonal=1), as_tuple=True)
    for i, j in zip(ii.tolist(), jj.tolist(), strict=True):
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[ri] = rj
    return len({find(i) for i in range(n)})


def _build(config: SymmetryConfig, n_features: int, n_classes: int, scheme: str, dropout: float,
           generator: torch.Generator) -> nn.Sequential:
    model = mlp(n_features, config.width, config.depth, n_classes, config.activation)
    init_mlp_(model, scheme, config.activation, generator=generator, constant=config.constant)
    if dropout > 0:
        layers = []
        for name, module in model.named_children():
            layers.append((name, module))
            if name.startswith("act"):
                layers.append((f"drop{name[3:]}", GeneratorDropout(dropout, generator)))
        model = nn.Sequential(OrderedDict(layers))
    return model


def run_symmetry(dataset: Any, config: SymmetryConfig | None = None, *,
                 on_step: StepCallback | None = None) -> SymmetryResult:
    """Run experiment 2 on ``dataset`` (an :func:`initlab.data.load_dataset` result) and return
    its records.

    Each run: ``mlp(n_features, width, 2, n_classes, activation)`` initialized with the scheme
    (biases zero), dropout after each hidden activation when ``dropout > 0`` (masks from a
    seeded generator), SGD with momentum on cross-entropy, shuffled by a seeded generator.

    Raises:
        InitlabError: invalid config or unknown scheme.

    >>> from types import SimpleNamespace
    >>> g = torch.Generator().manual_seed(0)
    >>> ds = SimpleNamespace(x_train=torch.randn(64, 5, generator=g), y_train=torch.arange(64) % 2,
    ...                      x_test=torch.randn(16, 5, generator=g), y_test=torch.arange(16) % 2,
    ...                      n_classes=2, n_features=5, name="toy")
    >>> res = run_symmetry(ds, SymmetryConfig(schemes=("constant",), dropouts=(0.0,), width=4, epochs=1))
    >>> [r["value"] for r in res.records if r["stat"] == "distinct_units" and r["epoch"] == 1]
    [1, 1]
    """
    config = config or SymmetryConfig()
    check_choice("activation", config.activation, tuple(ACTIVATION_MODULES))
    torch.set_flush_denormal(True)
    x_train, y_train = dataset.x_train, dataset.y_train
    records: list[dict[str, Any]] = []
    for dropout in config.dropouts:
        for scheme in config.schemes:
            gen = torch.Generator().manual_seed(derive_seed(config.seed, EXPERIMENT, scheme, dropout))
            model = _build(config, int(dataset.n_features), int(dataset.n_classes), scheme, dropout, gen)
            common = {"experiment": EXPERIMENT, "scheme": scheme, "activation": config.activation,
                      "seed": config.seed}
            extra = {"dropout": dropout, "width": config.width}

            def count(epoch: int, model: nn.Module = model, common: dict = common,
                      extra: dict = extra) -> None:
                for i in range(1, config.depth + 1):
                    fc = getattr(model, f"fc{i}")
                    records.append(make_record(**common, layer=i, stat="distinct_units", epoch=epoch,
                                               value=distinct_units(fc.weight, fc.bias, rtol=config.rtol,
                                                                    atol=config.atol), **extra))
                    records.append(make_record(**common, layer=i, stat="distinct_units_relative", epoch=epoch,
                                               value=distinct_units_relative(fc.weight, config.relative_tol),
                                               relative_tol=config.relative_tol, **extra))
                    if epoch == config.epochs:
                        records.append(make_record(**common, layer=i, stat="unit_spread",
                                                   epoch=epoch, value=unit_spread(fc.weight), **extra))

            count(0)
            opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum)
            n = x_train.shape[0]
            for _epoch in range(config.epochs):
                model.train()
                perm = torch.randperm(n, generator=gen)
                for start in range(0, n, config.batch_size):
                    idx = perm[start:start + config.batch_size]
                    loss = nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
            count(config.epochs)
            model.eval()
            with torch.no_grad():
                acc = (model(dataset.x_test).argmax(1) == dataset.y_test).double().mean()
            records.append(make_record(**common, layer=None, stat="test_accuracy", epoch=config.epochs,
                                       value=acc, **extra))
            if on_step is not None:
                on_step(f"symmetry {scheme} dropout={dropout}")
    return SymmetryResult(config=config, records=records)
