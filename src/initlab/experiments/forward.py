"""Experiment 1: the forward and backward pass of a deep MLP under each initialization.

The classic demonstration (Glorot & Bengio, "Understanding the difficulty of training deep
feedforward neural networks", 2010; He et al., "Delving deep into rectifiers", 2015): feed
``x ~ N(0, 1)`` of shape ``(batch, 100)`` through 5 hidden layers of 50 units, inject a backward
signal ``g ~ N(0, 1)`` at the top (loss :math:`L = \\sum_{b,j} y_{bj} g_{bj}`), and measure per
hidden layer ``l`` with :func:`initlab.probe`:

* the activation histogram, ``std`` and ``mean`` of the activation :math:`a_l = \\phi(W_l a_{l-1})`;
* ``saturation`` (fraction of tanh/sigmoid units in the flat tails), ``dead_fraction`` (ReLU
  units that output zero for the whole batch) and ``zero_fraction`` (ReLU activations that are
  exactly zero: about half of them, for any healthy init);
* ``grad_std``: the std of :math:`\\partial L / \\partial a_l`, the backward signal.

A variance-preserving scheme keeps :math:`\\mathrm{Var}(a_l)` and the gradient variance roughly
constant in ``l``; ``small`` makes both vanish geometrically, ``large`` saturates tanh/sigmoid.
Biases are zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from initlab.errors import InitlabError
from initlab.experiments.common import (
    GAIN_POLICIES,
    StepCallback,
    check_choice,
    check_ints,
    derive_seed,
    init_mlp_,
    make_record,
    scheme_gain,
)
from initlab.models import mlp

__all__ = ["ForwardConfig", "ForwardResult", "run_forward", "FORWARD_STATS"]

EXPERIMENT = "forward"

#: Per-layer scalar stats this experiment records.
FORWARD_STATS: tuple[str, ...] = ("std", "mean", "saturation", "dead_fraction", "zero_fraction", "grad_std")


@dataclass(frozen=True)
class ForwardConfig:
    """Configuration of :func:`run_forward`.

    Attributes:
        schemes: scheme names (see :data:`initlab.experiments.common.SCHEME_LABELS`; ``"auto"`` is
            ``initlab.init_model(model, "auto")``).
        activations: activation names (``initlab.models.ACTIVATION_MODULES``).
        batch: rows of the input ``x ~ N(0, 1)``.
        in_features, width, depth: the network, ``in_features -> width x depth``.
        bins: histogram bins per layer.
        gain_policy: ``"paper"`` or ``"activation"`` (:func:`~initlab.experiments.common.scheme_gain`).
        seed: the run's seed; input, backward signal and each network's weights get derived seeds.
    """

    schemes: tuple[str, ...] = ("small", "large", "xavier_normal", "xavier_uniform", "he_normal",
                                "he_uniform", "auto")
    activations: tuple[str, ...] = ("tanh", "sigmoid", "relu")
    batch: int = 1000
    in_features: int = 100
    width: int = 50
    depth: int = 5
    bins: int = 40
    gain_policy: str = "paper"
    seed: int = 0

    def __post_init__(self) -> None:
        check_ints(self, ("batch", "in_features", "width", "depth", "bins"))
        check_choice("gain_policy", self.gain_policy, GAIN_POLICIES)
        if not self.schemes or not self.activations:
            raise InitlabError("schemes and activations must be non-empty: name at least one of each")

    @property
    def n_steps(self) -> int:
        """Units of work (one per scheme x activation), for progress bars."""
        return len(self.schemes) * len(self.activations)


@dataclass
class ForwardResult:
    """Output of :func:`run_forward`: ``config`` and tidy ``records`` (experiment ``"forward"``;
    stats of :data:`FORWARD_STATS` per layer ``1..depth`` — ``saturation`` only for saturating
    activations (tanh, sigmoid), ``dead_fraction`` and ``zero_fraction`` only for the ReLU family — plus
    ``"histogram"``
    records, one per bin, with extras ``bin_lo``, ``bin_hi`` and ``value`` = probability mass of the bin)."""

    config: ForwardConfig
    records: list[dict[str, Any]] = field(default_factory=list)


def _measure(model: torch.nn.Module, x: torch.Tensor, g: torch.Tensor, layers: list[str],
             bins: int) -> dict[str, dict[str, Any]]:
    """Per-layer stats and histograms of ``layers`` through :func:`initlab.probe`, with the
    backward pass started from ``dL/dy = g`` (loss ``sum(y * g)``). Stats the probe does not emit
    for an activation (``saturation`` for ReLU, ``dead_fraction`` for tanh) are left out."""
    from initlab.probe import probe

    result = probe(model, x, g, lambda out, t: (out * t).sum(), layers=layers, bins=bins,
                   functional=False)
    out: dict[str, dict[str, Any]] = {}
    for name in layers:
        stats: dict[str, Any] = {}
        for stat in FORWARD_STATS:
            kind = "backward" if stat == "grad_std" else "forward"
            try:
                stats[stat] = result.stat(name, stat, kind)
            except InitlabError:
                continue
        if "dead_fraction" not in stats:  # exact zeros are a ReLU-family property
            stats.pop("zero_fraction", None)
        edges, counts = result.histogram(name)
        stats["histogram"] = (counts, edges)
        out[name] = stats
    return out


def run_forward(config: ForwardConfig | None = None, *, on_step: StepCallback | None = None) -> ForwardResult:
    """Run experiment 1 and return its records.

    For each activation and scheme, build ``mlp(in_features, width, depth, activation=...)``
    (no head), initialize it with :func:`~initlab.experiments.common.init_mlp_` and a
    ``torch.Generator`` seeded from ``config.seed``, and probe the hidden activations
    ``act1..actN`` on the same input ``x`` and backward signal ``g``.

    .. math::  \\mathrm{Var}(a_l) \\approx \\mathrm{Var}(a_1) \\prod_{k=2}^{l} n_{k-1}
               \\mathrm{Var}(W_k)\\,E[\\phi'(z)^2]

    Shapes: ``x`` is ``(batch, in_features)``, ``g`` is ``(batch, width)``.

    Raises:
        InitlabError: invalid config (unknown scheme or activation, non-positive sizes).

    >>> res = run_forward(ForwardConfig(schemes=("he_normal",), activations=("relu",), batch=64))
    >>> sorted({r["stat"] for r in res.records})
    ['dead_fraction', 'grad_std', 'histogram', 'mean', 'std', 'zero_fraction']
    """
    config = config or ForwardConfig()
    gen = torch.Generator().manual_seed(derive_seed(config.seed, EXPERIMENT, "input"))
    x = torch.randn(config.batch, config.in_features, generator=gen)
    g = torch.randn(config.batch, config.width, generator=gen)
    layers = [f"act{i}" for i in range(1, config.depth + 1)]
    records: list[dict[str, Any]] = []
    for activation in config.activations:
        for scheme in config.schemes:
            model = mlp(config.in_features, config.width, config.depth, None, activation)
            wgen = torch.Generator().manual_seed(derive_seed(config.seed, EXPERIMENT, scheme, activation))
            init_mlp_(model, scheme, activation, generator=wgen, gain_policy=config.gain_policy)
            gain = scheme_gain(scheme, activation, config.gain_policy)
            stats = _measure(model, x, g, layers, config.bins)
            for i, name in enumerate(layers, start=1):
                common = {"experiment": EXPERIMENT, "scheme": scheme, "activation": activation,
                          "layer": i, "epoch": None, "seed": config.seed}
                for stat in FORWARD_STATS:
                    if stat not in stats[name]:
                        continue
                    records.append(make_record(**common, stat=stat, value=stats[name][stat],
                                               module=name, gain=gain))
                counts, edges = stats[name]["histogram"]
                counts = torch.as_tensor(counts, dtype=torch.float64)
                total = float(counts.sum()) or 1.0
                edges = torch.as_tensor(edges, dtype=torch.float64).tolist()
                for b, c in enumerate(counts.tolist()):
                    records.append(make_record(**common, stat="histogram", value=c / total,
                                               module=name, bin=b, bin_lo=edges[b], bin_hi=edges[b + 1]))
            if on_step is not None:
                on_step(f"forward {activation}/{scheme}")
    return ForwardResult(config=config, records=records)
