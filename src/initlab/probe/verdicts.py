"""Verdicts: one small function per kind, each reading a :class:`~initlab.probe.ProbeResult` and
naming the first offending layer, kept in a registry keyed by kind (:data:`VERDICT_KINDS` order).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from initlab.probe.classify import _WEIGHT_TYPES
from initlab.probe.records import OUTPUT_LAYER
from initlab.probe.thresholds import Thresholds

if TYPE_CHECKING:
    from initlab.probe.result import ProbeResult

#: Verdict kinds, in the order :meth:`ProbeResult.verdicts` reports them.
VERDICT_KINDS: tuple[str, ...] = (
    "nonfinite", "vanishing", "exploding", "vanishing_gradient", "exploding_gradient",
    "saturated", "dead", "symmetric", "logits", "mismatch",
)


@dataclass(frozen=True)
class Verdict:
    """One diagnosis: ``kind`` (see :data:`VERDICT_KINDS`), the first offending ``layer``, a
    one-line ``message`` and the ``value`` that triggered it (a ratio, fraction or count)."""

    kind: str
    layer: str
    message: str
    value: float

    def __str__(self) -> str:
        return self.message


#: ``result, thresholds -> Verdict or None``: the check of one kind.
Check = Callable[["ProbeResult", Thresholds], "Verdict | None"]

_CHECKS: dict[str, Check] = {}


def _check(kind: str) -> Callable[[Check], Check]:
    """Register the decorated function as the check of ``kind`` (one of :data:`VERDICT_KINDS`)."""
    assert kind in VERDICT_KINDS, kind

    def register(fn: Check) -> Check:
        _CHECKS[kind] = fn
        return fn

    return register


def diagnose(result: ProbeResult, thresholds: Thresholds) -> list[Verdict]:
    """Every kind's check on ``result``, in the order of :data:`VERDICT_KINDS` (see
    :meth:`ProbeResult.verdicts`)."""
    found = (_CHECKS[kind](result, thresholds) for kind in VERDICT_KINDS)
    return [v for v in found if v is not None]


@_check("nonfinite")
def _nonfinite(result: ProbeResult, th: Thresholds) -> Verdict | None:
    """NaN/inf in a layer's output or weight (the first layer); else in a gradient (the last)."""
    order = {layer: i for i, layer in enumerate(result.layers)}
    bad = [(order[lay], lay, k, float(v)) for (lay, k, s), v in result._index.items()
           if s == "nonfinite_fraction" and k in ("forward", "weight") and v is not None and v > 0]
    if bad:
        _, lay, k, v = min(bad)
        where = "output" if k == "forward" else "weight"
        return Verdict("nonfinite", lay, f"non-finite: {v:.3g} of the {where} of {lay} is NaN/inf "
                       f"({len({b[1] for b in bad})} layer(s) affected)", v)
    badg = [(-order[lay], lay, float(v)) for (lay, k, s), v in result._index.items()
            if s == "nonfinite_fraction" and k == "backward" and v is not None and v > 0]
    if badg:
        _, lay, v = min(badg)
        return Verdict("nonfinite", lay, f"non-finite: {v:.3g} of dL/d(output) of {lay} is NaN/inf", v)
    return None


def _groups(result: ProbeResult, kind: str, stat: str) -> list[list[tuple[str, float]]]:
    """``stat`` of ``kind`` in layer order, one series per layer category (weight layers,
    activations, other modules) with more than one finite value: what a layer is compared with."""
    gs = []
    for types in (_WEIGHT_TYPES, ("activation",), ("module",)):
        s = [(lay, v) for lay, v in result.series(stat, kind)
             if result._info[lay].get("layer_type") in types and math.isfinite(v)]
        if len(s) > 1:
            gs.append(s)
    return gs


def structural_zeros(result: ProbeResult) -> set[str]:
    """Layers whose output is exactly 0 by construction, in a network whose other weight layers are
    not 0: the measured ``std`` and the ``local_predicted_std`` (from the measured input and the
    weights, gates included; else the end-to-end ``predicted_std``) both exactly 0, and the mean 0.

    These are Fixup's and SkipInit's zeroed branch ends, a zeroed classifier, a gate at 0
    (:mod:`initlab.transforms`): the branch (or output) starts at 0 on purpose and moves at the
    first update that reaches it, so neither its zero output nor the exactly-0 gradients it blocks
    are vanishing. Empty when every weight layer is 0 (the ``zeros`` scheme: nothing will move).
    """
    w = [v for lay, v in result.series("weight_std", "weight")
         if result._info[lay].get("layer_type") in _WEIGHT_TYPES]
    if not any(v > 0 for v in w):
        return set()
    out = set()
    for lay in result.layers:
        meas, local, pure, mean = (result._index.get((lay, "forward", s))
                                   for s in ("std", "local_predicted_std", "predicted_std", "mean"))
        if meas == 0.0 and (local if local is not None else pure) == 0.0 and not mean:
            out.add(lay)
    return out


def _ratio(result: ProbeResult, th: Thresholds, which: str, backward: bool) -> Verdict | None:
    """``which`` (``vanishing`` or ``exploding``) of the forward std against the first layer's of
    its category, or (``backward``) of the gradient norm against the last layer's: the first
    offender in forward (backward) order."""
    kind, stat = ("backward", "grad_norm") if backward else ("forward", "std")
    order = {layer: i for i, layer in enumerate(result.layers)}
    zeros = structural_zeros(result)
    hit: tuple[int, str, float, str, float] | None = None
    for g in _groups(result, kind, stat):
        # an output 0 by construction, or (with such zeros about) a gradient they block: not vanishing
        g = [(lay, v) for lay, v in g if not (v == 0 and (lay in zeros if not backward else zeros))]
        seq = list(reversed(g)) if backward else g
        if len(seq) < 2:
            continue
        ref_layer, ref = seq[0]
        if ref <= 0:
            continue
        for lay, v in seq[1:]:
            ratio = v / ref
            if not (ratio < th.vanishing if which == "vanishing" else ratio > th.exploding):
                continue
            pos = -order[lay] if backward else order[lay]
            if hit is None or pos < hit[0]:
                hit = (pos, lay, ratio, ref_layer, v)
    if hit is None:
        return None
    _, lay, ratio, ref_layer, v = hit
    name = which + ("_gradient" if backward else "")
    limit = th.vanishing if which == "vanishing" else th.exploding
    what = "gradient norm" if backward else "forward std"
    return Verdict(name, lay, f"{name.replace('_', ' ')}: {what} at {lay} is {v:.3g}, "
                   f"{ratio:.3g} x that of {ref_layer} (threshold {limit:g})", ratio)


@_check("vanishing")
def _vanishing(result: ProbeResult, th: Thresholds) -> Verdict | None:
    """Forward std below ``th.vanishing`` times the first layer's of the same category."""
    return _ratio(result, th, "vanishing", backward=False)


@_check("exploding")
def _exploding(result: ProbeResult, th: Thresholds) -> Verdict | None:
    """Forward std above ``th.exploding`` times the first layer's of the same category."""
    return _ratio(result, th, "exploding", backward=False)


@_check("vanishing_gradient")
def _vanishing_gradient(result: ProbeResult, th: Thresholds) -> Verdict | None:
    """Gradient norm below ``th.vanishing`` times the last layer's of the same category."""
    return _ratio(result, th, "vanishing", backward=True)


@_check("exploding_gradient")
def _exploding_gradient(result: ProbeResult, th: Thresholds) -> Verdict | None:
    """Gradient norm above ``th.exploding`` times the last layer's of the same category."""
    return _ratio(result, th, "exploding", backward=True)


def _fraction(result: ProbeResult, kind: str, stat: str, limit: float, label: str) -> Verdict | None:
    """The first layer whose forward ``stat`` (a fraction) is above ``limit``."""
    hits = [(lay, v) for lay, v in result.series(stat) if v > limit]
    if not hits:
        return None
    lay, v = hits[0]
    return Verdict(kind, lay, f"{kind}: {v:.1%} {label} at {lay} (threshold {limit:.0%}; "
                   f"{len(hits)} layer(s) affected)", v)


@_check("saturated")
def _saturated(result: ProbeResult, th: Thresholds) -> Verdict | None:
    """``saturation`` above ``th.saturated``."""
    return _fraction(result, "saturated", "saturation", th.saturated, "saturated")


@_check("dead")
def _dead(result: ProbeResult, th: Thresholds) -> Verdict | None:
    """``dead_fraction`` above ``th.dead``."""
    return _fraction(result, "dead", "dead_fraction", th.dead, "dead units")


@_check("symmetric")
def _symmetric(result: ProbeResult, th: Thresholds) -> Verdict | None:
    """A weight layer with more than one unit, all of them equal."""
    sym = []
    zeros = structural_zeros(result)  # a zeroed branch end's rows are equal, their gradients are not
    for lay, v in result.series("distinct_units", "weight"):
        if lay in zeros and _live_input(result, lay):
            continue
        units = result._info[lay].get("units")
        if v == 1 and units is not None and units > 1:
            sym.append((lay, units))
    if not sym:
        return None
    lay, units = sym[0]
    return Verdict("symmetric", lay, f"symmetric: {lay} has 1 distinct unit out of {units} "
                   f"(all weight rows equal; {len(sym)} layer(s) affected): identical "
                   "units get identical gradients and stay identical", 1.0)


def _live_input(result: ProbeResult, layer: str) -> bool:
    """Whether the recorded layer before ``layer`` (in execution order, passing over the other
    structural zeros: a zeroed branch end before a head adds 0 to a live stream; the model's input
    when none) has a nonzero ``std``: ``layer``'s input varies, so its zero weights get distinct
    gradients."""
    zeros = structural_zeros(result) - {layer}
    before = [lay for lay in result.layers[: result.layers.index(layer)] if lay not in zeros]
    for lay in reversed(before):
        v = result._index.get((lay, "forward", "std"))
        if v is not None and math.isfinite(v):
            return v > 0
    return True


@_check("logits")
def _logits(result: ProbeResult, th: Thresholds) -> Verdict | None:
    """The model output's std outside ``[th.logits_low, th.logits_high]``, when the output is a
    weight layer's (its records' ``from_layer``; records without the field, written before it
    existed, are checked): an activation's or a norm's output is no logits. A small std that the
    propagation predicts too (a ``predicted_std`` in ``(0, th.logits_low)``) is said to be expected:
    it follows from the weights, e.g. global average pooling of a looks-linear net's zero-mean
    features (:func:`initlab.graph.mirrored.mirrored_input`)."""
    v = result._index.get((OUTPUT_LAYER, "output", "std"))
    if v is None or not math.isfinite(v) or th.logits_low <= v <= th.logits_high:
        return None
    if not result._info.get(OUTPUT_LAYER, {}).get("from_layer", True):
        return None
    if v > th.logits_high:
        why = ("if these are logits, the softmax starts saturated (near one-hot guesses, a first "
               "cross-entropy far above log(classes)): scale the head's weights down, or zero them")
    elif 0.0 < (p := result._index.get((OUTPUT_LAYER, "output", "predicted_std")) or 0.0) < th.logits_low:
        why = (f"the output barely varies with the input, as the propagation predicts ({p:.3g}): it follows "
               "from these weights (global average pooling of zero-mean features averages the positions "
               "out, as after a looks-linear start; or the signal shrank on its way: pred_std shows "
               "where); scale the head up if logits of std ~1 are wanted")
    else:
        why = ("the output barely varies with the input (intended after a zeroed head; else the "
               "signal shrank on its way: see the std column)")
    return Verdict("logits", OUTPUT_LAYER, f"logits: the model's output std is {v:.3g} at init, outside "
                   f"[{th.logits_low:g}, {th.logits_high:g}]: {why}", float(v))


@_check("mismatch")
def _mismatch(result: ProbeResult, th: Thresholds) -> Verdict | None:
    """A layer's measured ``std`` off its ``local_predicted_std`` by more than the tolerance of its
    width (:meth:`Thresholds.mismatch_tolerance`), first offender in layer order."""
    hits = []
    for lay in result.layers:
        meas, pred = (result._index.get((lay, "forward", s)) for s in ("std", "local_predicted_std"))
        if meas is None or pred is None or not (math.isfinite(meas) and math.isfinite(pred)):
            continue
        mean = result._index.get((lay, "forward", "mean")) or 0.0
        floor = 1e-6 * math.sqrt(meas**2 + mean**2) + 1e-30  # both ~0: agree (a constant output)
        ratio = (meas + floor) / (pred + floor)
        units = result._info[lay].get("out_units")
        tol = th.mismatch_tolerance(units)
        if abs(math.log(ratio)) > math.log1p(tol):
            hits.append((lay, meas, pred, ratio, tol, units))
    if not hits:
        return None
    lay, meas, pred, ratio, tol, units = hits[0]
    width = f" at {units} units" if units else ""
    return Verdict("mismatch", lay, f"mismatch: the output std of {lay} is {meas:.3g}, {ratio:.3g} x "
                   f"the {pred:.3g} its measured input predicts (tolerance {tol:.0%}{width}; "
                   f"{len(hits)} layer(s) affected): an assumption of the propagation fails here "
                   "(correlated or identical units, weights tied to the input, a module that computes "
                   "something other than its type says)", float(ratio))


assert set(_CHECKS) == set(VERDICT_KINDS), set(VERDICT_KINDS) ^ set(_CHECKS)
