"""The phase report's narratives (:mod:`initlab.report.phase_report`): what the phase diagram, the
depth scales and the Jacobian spectra showed in this run, each sentence computed from the records
of :func:`initlab.experiments.phase.run_phase` (HTML fragments, values escaped)."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

__all__ = ["XI_C", "XI_Q", "CHI_1", "SIGMA_W2", "SIGMA_B2", "intro", "shape", "trainable_definition",
           "depth_scales", "jacobian", "ISOMETRIC_SPREAD"]

XI_C = "ξ<sub>c</sub>"
XI_Q = "ξ<sub>q</sub>"
CHI_1 = "χ<sub>1</sub>"
SIGMA_W2 = "σ<sub>w</sub><sup>2</sup>"
SIGMA_B2 = "σ<sub>b</sub><sup>2</sup>"

#: A Jacobian whose singular values have p90 / p10 at most this is called close to isometric.
ISOMETRIC_SPREAD = 10.0

Records = list[Mapping[str, Any]]


def _sel(records: Iterable[Mapping[str, Any]], stat: str, scheme: str | None = None) -> list[Mapping]:
    return [r for r in records if r.get("stat") == stat and (scheme is None or r.get("scheme") == scheme)]


def _g(value: float) -> str:
    """A number for the prose: 3 significant digits, ``∞`` for infinity."""
    return "∞" if math.isinf(value) else f"{value:.3g}"


def _critical(records: Records) -> Mapping[str, Any] | None:
    found = _sel(records, "critical_sigma_w2")
    return found[0] if found else None


def intro(records: Records) -> str:
    """The opening paragraph: what mean-field theory predicts and which quantities the page shows;
    whether the measured depths sit below the predicted ``6 ξ_c`` is read from the records."""
    emp = {float(r["sigma_w2"]): float(r["value"]) for r in _sel(records, "trainable_depth", "gaussian")
           if r.get("value") is not None}
    theory = {float(r["sigma_w2"]): float(r["value"]) for r in _sel(records, "trainable_depth_theory")
              if r.get("value") is not None}
    compared = [w for w in emp if w in theory and not math.isnan(theory[w])]
    below = compared and all(emp[w] <= theory[w] for w in compared)
    shape = "deepest at the critical point, falling off on both sides."
    budget = (f" With the short SGD budget used here the measured depths sit below 6 {XI_C} (Schoenholz et "
              f"al. trained for far longer), so the shape is what this run can test: {shape}" if below else
              f" The shape to test: {shape}")
    return ("A plain deep network trains only if signals and gradients survive its depth. Mean-field theory "
            "(Poole et al. 2016; Schoenholz et al. 2017) follows two depth scales through a network of "
            f"weight variance {SIGMA_W2} / fan_in and bias variance {SIGMA_B2}: {XI_Q}, the number of layers "
            "over which a single input's squared length q settles to its fixed point q*, and "
            f"{XI_C}, the number of layers over which the correlation of two inputs converges, forgetting "
            f"how they differed. Networks deeper than about 6 {XI_C} do not train. {CHI_1} is the factor by "
            "which a small difference between two inputs grows per layer: below 1 (the ordered phase) it "
            f"shrinks, above 1 (the chaotic phase) it grows, and at {CHI_1} = 1, the edge of chaos, {XI_C} "
            "diverges. There orthogonal weights can also give a well-conditioned input-output Jacobian "
            "(dynamical isometry; Pennington et al. 2017)." + budget)


def shape(records: Records) -> str | None:
    """What the measured trainable depths show: deepest at the critical point and falling off on
    both sides, or where they tie. ``None`` without a critical point or measured depths."""
    emp = _sel(records, "trainable_depth", "gaussian")
    crit = _critical(records)
    if crit is None or not emp:
        return None
    wc = float(crit["value"])
    depth = {float(r["sigma_w2"]): float(r["value"] or 0) for r in emp}
    at_crit = next((float(r["value"] or 0) for r in emp if r.get("critical")),
                   depth[min(depth, key=lambda w: abs(math.log(w / wc)))])
    sides = {"ordered": [d for w, d in depth.items() if w < wc and not math.isclose(w, wc)],
             "chaotic": [d for w, d in depth.items() if w > wc and not math.isclose(w, wc)]}
    deepest = {name: max(ds) for name, ds in sides.items() if ds}
    parts = [f"{d:.0f} on the {name} side" for name, d in deepest.items()]
    text = (f"Measured deepest trainable depth: {at_crit:.0f} at the critical {SIGMA_W2} = {_g(wc)}"
            + (", " + " and ".join(parts) if parts else "") + ". ")
    lower = [name for name, d in deepest.items() if d < at_crit]
    tied = [name for name, d in deepest.items() if d >= at_crit]
    if lower and not tied:
        where = "both sides" if len(lower) == 2 else f"the {lower[0]} side"
        return text + f"Trainability falls off on {where} of the critical point, as the theory predicts."
    if lower:
        return (text + f"Trainability falls off on the {lower[0]} side; on the {tied[0]} side this grid's "
                "networks train as deep as at the critical point, so it cannot show the predicted drop there "
                "(deeper networks would).")
    if tied:
        return text + ("Neither side falls off within this grid: its deepest networks are too shallow to "
                       "show the predicted peak at the critical point.")
    return text


def trainable_definition(records: Records, fraction: float | None) -> str | None:
    """The threshold a test accuracy must reach to count as trainable, in words."""
    emp = _sel(records, "trainable_depth", "gaussian")
    if not emp:
        return None
    thr = emp[0].get("threshold")
    way = ("half" if fraction == 0.5 else f"{fraction:.0%}") if fraction is not None else "a fixed share"
    return (f"“Trainable”: test accuracy ≥ {thr:.3g}, that is chance plus {way} of the way from chance to "
            "the best accuracy of the grid." if thr is not None else None)


def depth_scales(records: Records) -> str | None:
    """What the depth-scale figure plots and its values at the critical point."""
    crit = _critical(records)
    if not _sel(records, "xi_c", "mean_field"):
        return None
    xi_q = [float(r["value"]) for r in _sel(records, "xi_q", "mean_field")
            if r.get("value") is not None and math.isfinite(float(r["value"]))]
    settles = (f"settles within {_g(max(xi_q))} layers at most" if xi_q else "settles")
    text = (f"Blue: {XI_C}; green: {XI_Q}, both in layers, against {SIGMA_W2} ({SIGMA_B2} fixed); grey, on "
            f"the right axis: {CHI_1}, with the dotted line at {CHI_1} = 1. Where {CHI_1} crosses 1, {XI_C} "
            f"diverges (capped at 10<sup>4</sup> in the plot) while {XI_Q} stays finite: over this range a "
            f"single input's length {settles}, but two inputs stay distinguishable to any depth only at the "
            "critical point.")
    if crit is not None:
        xi_q = crit.get("xi_q")
        text += (f" Here the critical point is {SIGMA_W2} = {_g(float(crit['value']))}"
                 + (f", where {XI_Q} = {_g(float(xi_q))} layers" if xi_q is not None else "") + ".")
    return text


def jacobian(records: Records) -> str | None:
    """What the Jacobian spectra showed: the spread p90 / p10 and the median singular value of each
    weight kind, whether orthogonal weights came close to isometry, and why not when they did not
    (isometry needs ``q* -> 0``, which a bias variance > 0 prevents)."""
    spread = {k: [float(r["value"]) for r in _sel(records, "jac_sv_spread", k) if r.get("value") is not None]
              for k in ("gaussian", "orthogonal")}
    p50 = {k: [float(r["value"]) for r in _sel(records, "jac_sv_p50", k) if r.get("value") is not None]
           for k in ("gaussian", "orthogonal")}
    if not spread["orthogonal"] or not spread["gaussian"]:
        return None

    def rng(v: list[float]) -> str:
        return _g(v[0]) if len(v) == 1 else f"{_g(min(v))}–{_g(max(v))}"

    ortho, gauss = spread["orthogonal"], spread["gaussian"]
    factor = float(np.median(gauss)) / float(np.median(ortho))
    text = (f"Measured: p90 / p10 is {rng(gauss)} for Gaussian and {rng(ortho)} for orthogonal weights "
            f"(over {len(ortho)} seeds), orthogonal {_g(factor)} times tighter (medians); the median "
            f"singular value is {rng(p50['gaussian'])} (Gaussian) and {rng(p50['orthogonal'])} "
            "(orthogonal). ")
    if max(ortho) <= ISOMETRIC_SPREAD:
        return text + (f"Orthogonal weights come close to dynamical isometry here (p90 / p10 ≤ "
                       f"{ISOMETRIC_SPREAD:g}).")
    text += (f"Neither is close to isometry (p90 / p10 ≤ {ISOMETRIC_SPREAD:g}): orthogonal weights only keep "
             "the linear part of each layer from spreading the singular values; tanh's slope still varies "
             "from unit to unit, and the more, the larger the pre-activations' variance q*. Pennington et "
             f"al. reach isometry only as q* → 0 (bias variance → 0, {SIGMA_W2} → 1).")
    crit = _critical(records)
    jac_b2 = next((r.get("sigma_b2") for r in _sel(records, "jac_sv_spread")), None)
    q_star = crit.get("q_star") if crit is not None else None
    if q_star is not None and not math.isnan(float(q_star)) and jac_b2 == crit.get("sigma_b2"):
        text += (f" Here {SIGMA_B2} = {html.escape(f'{float(jac_b2):g}')} puts the critical point at "
                 f"q* = {_g(float(q_star))}, far from 0.")
    return text
