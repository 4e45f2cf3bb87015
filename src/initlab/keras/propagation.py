"""Moment propagation through a Keras model's graph: the scales ``"auto"`` and ``"variance"`` solve
(:func:`solve_scales`, the torch front end's rule and residual-branch targets), and the second
moments a plan gives each layer's input and output (:func:`predict`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from initlab.errors import InitlabError
from initlab.graph import Node
from initlab.graph.moments import LayerStats, Moments, MomentsUnknown, propagate, solve_layer_scale
from initlab.keras.graph import KerasGraph
from initlab.model.propagation import DEPTH_ROLE, RESIDUAL_GROWTH, LayerScale, branch_end_targets

__all__ = ["StatsFn", "solve_scales", "predict"]

#: ``(module key, part) -> LayerStats`` of a part the plan fixes (an RNN's gates, an embedding
#: table), or ``None`` for a part to solve / not known.
StatsFn = Callable[[str, str], "LayerStats | None"]

_STANDARDISED = Moments(0.0, 1.0)


class _Solver:
    """The ``layer_stats`` callback that solves each kernel's ``E[w^2]`` for its target output second
    moment from its own input's moments (:class:`initlab.model.propagation._Solver`, for Keras calls)."""

    def __init__(self, fan_ins: dict[str, int], fixed: StatsFn, targets: dict[int, Any],
                 layer_targets: dict[str, float] | None = None) -> None:
        self.fan_ins, self.fixed, self.targets = fan_ins, fixed, targets
        self.layer_targets = dict(layer_targets or {})
        self.scales: dict[str, LayerScale] = {}

    def __call__(self, node: Node, part: str, x: Moments) -> LayerStats | None:
        if node.module is None or part == "affine":
            return None
        fixed = self.fixed(node.module, part)
        if fixed is not None or part != "weight" or node.module not in self.fan_ins:
            return fixed
        fan_in = self.fan_ins[node.module]
        if node.module not in self.scales:
            target, role = 1.0, "pre-activation"
            if node.module in self.layer_targets:
                target, role = self.layer_targets[node.module], DEPTH_ROLE
            end = self.targets.get(node.id)
            if end is not None:
                target, role = end(), end.role
            try:
                second = 0.0 if target == 0 else solve_layer_scale(fan_in, x, target)
            except InitlabError as exc:  # a zero input: no scale restores it (the per-layer rule decides)
                raise MomentsUnknown(str(exc)) from None
            self.scales[node.module] = LayerScale(node.module, part, second, x.second, target, role)
        return LayerStats(fan_in, self.scales[node.module].weight_second)


def solve_scales(kg: KerasGraph, fan_ins: dict[str, int], fixed: StatsFn, *, residual: bool,
                 layer_targets: dict[str, float] | None = None) -> tuple[dict[str, LayerScale], list[str]]:
    """Every kernel's scale from the second moment of its own input, propagated from standardised data:

    .. math::
        \\mathrm{Var}(w) = \\frac{q_{target}}{fan_{in}\\,\\mathbb{E}[x^2]}

    (:func:`initlab.model.plan_scales`), ``q_target = 1``; with ``residual`` (``"auto"``) the last layer
    of each of the ``L`` residual branches that do not end in a norm targets ``q_skip (2^{1/L} - 1)``,
    or 0 in a network without any normalization layer
    (:data:`initlab.model.propagation.ZERO_ENDS_WITHOUT_NORM`).

    Args:
        kg: the model's graph. fan_ins: module key -> fan_in (connection count) of each kernel to solve.
        fixed: the statistics of the parts the plan fixes. residual: apply the residual-branch rule.
        layer_targets: module key -> output second moment targeted instead of 1 (a tanh CNN's
            depth-aware ``q*``: :func:`initlab.keras.chain.chain_targets`).

    Returns:
        ``(module key -> LayerScale, notes)``.
    """
    notes: list[str] = []
    ends = branch_end_targets(kg.graph, RESIDUAL_GROWTH, notes) if residual else {}
    solver = _Solver(fan_ins, fixed, ends, layer_targets)
    propagate(kg.graph, _STANDARDISED, layer_stats=solver)
    n_ends = sum(not getattr(t, "inner", False) for t in ends.values())
    if n_ends:
        notes.insert(0, f"{n_ends} residual branch end(s)")
    return solver.scales, notes


def predict(kg: KerasGraph, stats: StatsFn) -> dict[str, tuple[float | None, float | None]]:
    """``module key -> (E[x^2] in, E[y^2] out)`` of each ``LAYER`` node under the plan's ``stats``
    (``None`` where the graph cannot say), from standardised data."""
    def layer_stats(node: Node, part: str, x: Moments) -> LayerStats | None:
        return None if node.module is None or part == "affine" else stats(node.module, part)

    results = propagate(kg.graph, _STANDARDISED, layer_stats=layer_stats)
    out: dict[str, tuple[float | None, float | None]] = {}
    for n in kg.graph:
        if n.module is not None and n.module not in out:
            x = results.get(n.inputs[0]) if n.inputs else None
            y = results.get(n.id)
            out[n.module] = (None if x is None else x.second, None if y is None else y.second)
    return out
