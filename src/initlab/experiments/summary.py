"""Experiment 4: the summary — "activation -> best scheme", computed from this run's records,
beside the field's rules of thumb, each marked agree / disagree.

Rules of thumb checked (:data:`RULES`):

* tanh and sigmoid: Xavier/Glorot (Glorot & Bengio, "Understanding the difficulty of training
  deep feedforward neural networks", 2010);
* ReLU: He/Kaiming (He et al., "Delving deep into rectifiers", 2015);
* any activation: never zero or constant (the symmetry problem; Goodfellow et al., *Deep
  Learning*, 2016, sec. 8.4).

Evidence (one row per activation and kind of evidence). Every row names the best scheme of this
run with initlab's ``"auto"``, LSUV and layer-wise pretraining among the candidates
(``best_scheme``), and the best *classic* scheme (``best_classic_scheme``: the data-independent
textbook schemes the rules choose among — PyTorch's default, Xavier, He; the naive starts zeros,
constant, small and large, :data:`~initlab.experiments.common.NAIVE_SCHEMES`, are no candidates);
the verdict judges the rule against the best classic scheme only.

* ``"training"`` — experiment 3; the score is the *mean test accuracy over training* (stat
  ``mean_test_accuracy``: the area under the accuracy curve, which rewards training fast as well
  as ending high; ``final_test_accuracy`` when absent; ties broken by fewer steps to the target
  accuracy, the start's own steps — layer-wise pretraining's — included). The rule *agrees* when
  its scheme is the best classic one, or behind it by no more than ``tie_tolerance``. The default
  tolerance is two standard errors of the difference of two accuracies ``p_1, p_2`` (the best one
  and the rule's) measured on ``n`` test examples,

  .. math::  \\mathrm{tol} = 2\\sqrt{\\left(p_1(1-p_1) + p_2(1-p_2)\\right)/n}

  (``n`` the test set size; 2.7 points for p = 0.9 and 0.9, n = 1000): a smaller gap is within the
  noise of one seed and is reported as a tie. Both accuracies enter, so a best score of exactly 1
  on a tiny test set does not make the tolerance 0. When every classic scheme ends within that
  tolerance of chance (``1 / n_classes``), no rule can be judged: the verdict is
  :data:`TIE_AT_CHANCE` (and the row's ``agree`` record is ``None``).
* ``"training at depth D"`` — experiment 5 at its deepest depth ``D``, scored as ``"training"``.
* ``"signal propagation"`` — experiment 1. The question is the tutorial's: does the scheme keep
  the network *in range*? It does when, at every layer, the activation std stays within a factor
  :data:`IN_RANGE_FACTOR` of layer 1's and the back-propagated gradient std within that factor of
  the top layer's, and on average fewer than :data:`UNHEALTHY_FRACTION` of the units are saturated
  (tanh, sigmoid) or dead (ReLU). The score is the largest factor by which either std changes,

  .. math::  F = 10^{\\max\\left(\\max_l |\\log_{10}\\sigma_l/\\sigma_1|,\\;
             \\max_l |\\log_{10}\\sigma^{grad}_l/\\sigma^{grad}_L|\\right)}

  the best scheme is the in-range scheme with the smallest ``F`` (the smallest ``F`` of all when
  none is in range), and the rule agrees when its scheme is in range (``"agree (both in range)"``
  when the best classic scheme is another family's).
* ``"symmetry"`` (rule "never zero or constant") — agrees when zero-initialized training ends at
  least 0.1 below the best accuracy for every trained activation and constant init without
  dropout ends with 1 distinct unit in every hidden layer.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from initlab.experiments.common import MODEL_SCHEMES, NAIVE_SCHEMES, plural
from initlab.experiments.training import DATA_DEPENDENT_SCHEMES

__all__ = ["RULES", "IN_RANGE_FACTOR", "UNHEALTHY_FRACTION", "TIE_AT_CHANCE", "SummaryResult", "summarize",
           "is_classic"]

#: Signal propagation is "in range" when no layer's activation or gradient std is more than this
#: factor off the first (gradient: top) layer's ...
IN_RANGE_FACTOR = 5.0
#: ... and on average fewer than this fraction of units are saturated or dead.
UNHEALTHY_FRACTION = 0.2

#: The verdict of a training row where every classic scheme ended at chance: nothing to judge.
TIE_AT_CHANCE = "tie at chance – no classic scheme trains"

#: The rules of thumb: activation -> (rule text, schemes that count as the rule's, source).
RULES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "tanh": ("Xavier/Glorot", ("xavier_normal", "xavier_uniform"), "Glorot & Bengio 2010"),
    "sigmoid": ("Xavier/Glorot", ("xavier_normal", "xavier_uniform"), "Glorot & Bengio 2010"),
    "relu": ("He/Kaiming", ("he_normal", "he_uniform"), "He et al. 2015"),
    "any": ("never zero or constant", ("zeros", "constant"), "Goodfellow et al. 2016, sec. 8.4"),
}


def is_classic(scheme: str) -> bool:
    """Whether ``scheme`` is one of the textbook data-independent schemes the rules of thumb choose
    among (not initlab's ``"auto"``, LSUV or layer-wise pretraining, nor the naive starts of
    :data:`~initlab.experiments.common.NAIVE_SCHEMES`).

    >>> is_classic("he_normal"), is_classic("auto"), is_classic("lsuv"), is_classic("large")
    (True, False, False, False)
    """
    return not (scheme in DATA_DEPENDENT_SCHEMES or scheme in MODEL_SCHEMES or scheme in NAIVE_SCHEMES)


@dataclass
class SummaryResult:
    """Output of :func:`summarize`: ``rows`` (dicts: activation, evidence, best_scheme,
    best_value, best_classic_scheme, best_classic_value (see :func:`is_classic`), rule,
    rule_schemes, rule_scheme, rule_value, verdict, criterion, source, ranking; signal-propagation
    rows also ``in_range``, the schemes that keep the network in range) and ``records``
    (experiment ``"summary"``, stat ``"agree"``, value 1.0 / 0.0, the row's fields as extras)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)


def _tolerance(p1: float, p2: float, n: int | None) -> float:
    """Two standard errors of the difference of accuracies ``p1`` and ``p2``, each on ``n``
    examples: ``2 * sqrt((p1 (1 - p1) + p2 (1 - p2)) / n)``; 0 when ``n`` is unknown.

    >>> round(_tolerance(0.9, 0.9, 1000), 4)
    0.0268
    >>> round(_tolerance(1.0, 0.5, 100), 4)
    0.1
    """
    if not n:
        return 0.0
    return 2.0 * math.sqrt((p1 * (1.0 - p1) + p2 * (1.0 - p2)) / n)


def _row(activation: str, evidence: str, best: str, best_value: float | None, best_classic: str | None,
         best_classic_value: float | None, rule_scheme: str | None, rule_value: float | None, verdict: str,
         criterion: str, ranking: list[str]) -> dict[str, Any]:
    """One summary row (keys in the documented order); the rule, its schemes and its source come
    from :data:`RULES` for ``activation``."""
    rule, family, source = RULES[activation]
    return {"activation": activation, "evidence": evidence, "best_scheme": best, "best_value": best_value,
            "best_classic_scheme": best_classic, "best_classic_value": best_classic_value, "rule": rule,
            "rule_schemes": list(family), "rule_scheme": rule_scheme, "rule_value": rule_value,
            "verdict": verdict, "criterion": criterion, "source": source, "ranking": ranking}


def _accuracies(records: list[dict[str, Any]], experiment: str, depth: int | None = None) -> dict[str, dict]:
    """Per activation: ``final``, ``mean`` and ``steps`` (incl. the start's own) per scheme, ``n_test``;
    a diverged run (NaN accuracies: it has none) ranks as a guess, at chance (0 when the chance level
    is unknown), so the rule whose own start diverged is still judged, as losing."""
    out: dict[str, dict] = defaultdict(lambda: {"final": {}, "mean": {}, "steps": {}, "n_test": None,
                                                "chance": None})
    for r in records:
        if r.get("experiment") != experiment or (depth is not None and r.get("depth") != depth):
            continue
        acc = out[r["activation"]]
        if r.get("chance_loss"):
            acc["chance"] = 1.0 / round(math.exp(float(r["chance_loss"])))
        finite = r["value"] is not None and math.isfinite(r["value"])
        value = float(r["value"]) if finite else None  # None: diverged, filled in below
        if r["stat"] == "final_test_accuracy":
            acc["final"][r["scheme"]] = value
            acc["n_test"] = int(r["n_test"]) if r.get("n_test") else acc["n_test"]
        elif r["stat"] == "mean_test_accuracy":
            acc["mean"][r["scheme"]] = value
        elif r["stat"] == "steps_to_target":
            acc["steps"][r["scheme"]] = (math.inf if r["value"] is None
                                         else float(r["value"]) + float(r.get("init_steps") or 0))
    for acc in out.values():
        guess = acc["chance"] if acc["chance"] is not None else 0.0
        for which in ("final", "mean"):
            acc[which] = {k: guess if v is None else v for k, v in acc[which].items()}
    return out


def _accuracy_rows(records: list[dict[str, Any]], experiment: str, evidence: str,
                   tie_tolerance: float | None, depth: int | None = None) -> tuple[list[dict], dict]:
    rows, finals = [], {}
    for activation, acc in _accuracies(records, experiment, depth).items():
        finals[activation] = acc["final"]
        use_mean = bool(acc["final"]) and set(acc["mean"]) >= set(acc["final"])
        accs = acc["mean"] if use_mean else acc["final"]
        if not accs or activation not in RULES:
            continue
        ranked = sorted(accs, key=lambda s: (-accs[s], acc["steps"].get(s, math.inf)))
        best = ranked[0]
        best_classic = next((s for s in ranked if is_classic(s)), best)
        family = RULES[activation][1]
        members = [s for s in family if s in accs]
        if not members:
            continue
        rule_best = max(members, key=lambda s: accs[s])
        gap = accs[best_classic] - accs[rule_best]
        tol = (_tolerance(accs[best_classic], accs[rule_best], acc["n_test"]) if tie_tolerance is None
               else tie_tolerance)
        if _all_at_chance([acc["final"].get(s) for s in accs if is_classic(s)], acc["chance"], acc["n_test"],
                          tie_tolerance):
            verdict = TIE_AT_CHANCE
        elif best_classic in family:
            verdict = "agree"
        elif gap <= tol:
            verdict = (f"agree (tie: {scheme_name(rule_best)} {gap * 100:.1f} pt behind, "
                       f"tolerance {tol * 100:.1f} pt)")
        else:
            verdict = (f"disagree ({scheme_name(rule_best)} {gap * 100:.1f} pt behind "
                       f"{scheme_name(best_classic)}, tolerance {tol * 100:.1f} pt)")
        criterion = ("mean test accuracy over training (area under the curve; higher is better)" if use_mean
                     else "final test accuracy (higher is better)")
        rows.append(_row(activation, evidence, best, accs[best], best_classic, accs[best_classic], rule_best,
                         accs[rule_best], verdict, criterion, ranked))
    return rows, finals


def _all_at_chance(finals: list[float | None], chance: float | None, n_test: int | None,
                   tie_tolerance: float | None) -> bool:
    """Whether every one of ``finals`` (final accuracies) is within the tie tolerance of ``chance``.

    >>> _all_at_chance([0.1, 0.107], 0.1, 1000, None), _all_at_chance([0.1, 0.5], 0.1, 1000, None)
    (True, False)
    """
    if chance is None or not finals or any(f is None for f in finals):
        return False
    tol = _tolerance(chance, chance, n_test) if tie_tolerance is None else tie_tolerance
    return all(f - chance <= tol for f in finals)


def _depth_rows(records: list[dict[str, Any]], tie_tolerance: float | None) -> list[dict]:
    depths = [r["depth"] for r in records if r.get("experiment") == "depth" and r.get("depth") is not None]
    if not depths:
        return []
    deepest = max(depths)
    return _accuracy_rows(records, "depth", f"training at depth {deepest}", tie_tolerance, deepest)[0]


def _propagation(stats: dict[str, dict[int, float]]) -> tuple[float, bool]:
    """(the largest factor either std changes by, whether the scheme keeps the net in range)."""
    std, grad = stats["std"], stats["grad_std"]
    tiny = 1e-300
    first, top = std[min(std)], grad[max(grad)]
    decades = max([abs(math.log10(max(v, tiny) / max(first, tiny))) for v in std.values()]
                  + [abs(math.log10(max(v, tiny) / max(top, tiny))) for v in grad.values()])
    factor = 10.0 ** min(decades, 300.0)
    unhealthy = [sum(s.values()) / len(s) for s in (stats.get("saturation"), stats.get("dead_fraction")) if s]
    return factor, factor <= IN_RANGE_FACTOR and all(u < UNHEALTHY_FRACTION for u in unhealthy)


def _forward_rows(records: list[dict[str, Any]]) -> list[dict]:
    per: dict[tuple[str, str], dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in records:
        if r.get("experiment") != "forward" or r["stat"] not in ("std", "grad_std", "saturation",
                                                                 "dead_fraction"):
            continue
        per[(r["activation"], r["scheme"])][r["stat"]][int(r["layer"])] = float(r["value"])
    by_act: dict[str, dict[str, tuple[float, bool]]] = defaultdict(dict)
    for (activation, scheme), stats in per.items():
        if stats.get("std") and stats.get("grad_std"):
            by_act[activation][scheme] = _propagation(stats)
    rows = []
    criterion = (f"in range: activation and gradient std within a factor {IN_RANGE_FACTOR:g} across layers "
                 f"and under {UNHEALTHY_FRACTION:.0%} of units saturated or dead; score: the largest factor "
                 "(lower is better)")
    for activation, scores in by_act.items():
        family = RULES.get(activation, ("", (), ""))[1]
        members = [s for s in family if s in scores]
        if not members:
            continue
        ranked = sorted(scores, key=lambda s: (not scores[s][1], scores[s][0]))  # in range first
        best = ranked[0]
        best_classic = next((s for s in ranked if is_classic(s)), best)
        rule_best = min(members, key=lambda s: scores[s][0])
        factor, ok = scores[rule_best]
        if ok:
            verdict = "agree" if best_classic in family else "agree (both in range)"
        elif factor > IN_RANGE_FACTOR:
            verdict = (f"disagree ({scheme_name(rule_best)}: a std changes by a factor {factor:.3g} across "
                       f"layers, more than {IN_RANGE_FACTOR:g})")
        else:
            verdict = (f"disagree ({scheme_name(rule_best)}: {UNHEALTHY_FRACTION:.0%} or more of the units "
                       "saturated or dead)")
        row = _row(activation, "signal propagation", best, scores[best][0], best_classic,
                   scores[best_classic][0], rule_best, factor, verdict, criterion, ranked)
        row["in_range"] = [s for s in ranked if scores[s][1]]
        rows.append(row)
    return rows


def _symmetry_row(records: list[dict[str, Any]], final: dict[str, dict[str, float]]) -> dict | None:
    distinct = [r for r in records if r.get("experiment") == "symmetry" and r["stat"] == "distinct_units"
                and r["scheme"] == "constant" and not r.get("dropout") and r.get("epoch")]
    zero_gaps = {a: max(accs.values()) - accs["zeros"] for a, accs in final.items() if "zeros" in accs}
    if not distinct and not zero_gaps:
        return None
    last_epoch = max((r["epoch"] for r in distinct), default=None)
    constant_ok = all(r["value"] == 1 for r in distinct if r["epoch"] == last_epoch)
    zeros_ok = all(gap >= 0.1 for gap in zero_gaps.values())
    parts = []
    if distinct:
        units = [int(r["value"]) for r in distinct if r["epoch"] == last_epoch]
        each = (f"{plural(units[0], 'distinct unit')} in each hidden layer" if len(set(units)) == 1 else
                f"{' and '.join(map(str, units))} distinct units in hidden layers 1-{len(units)}")
        parts.append(f"constant init, no dropout: {each}")
    if zero_gaps:
        parts.append("zeros: " + ", ".join(f"{a} {g * 100:.1f} pt below the best"
                                           for a, g in zero_gaps.items()))
    return _row("any", "symmetry + training", "random (not zero/constant)", None, None, None, None, None,
                _symmetry_verdict(constant_ok, zeros_ok, zero_gaps), "; ".join(parts), [])


def _symmetry_verdict(constant_ok: bool, zeros_ok: bool, zero_gaps: dict[str, float]) -> str:
    if constant_ok and zeros_ok:
        return "agree"
    reasons = []
    if not constant_ok:
        reasons.append("constant init kept more than one distinct unit")
    close = [f"{a} {g * 100:.1f} pt" for a, g in zero_gaps.items() if g < 0.1]
    if close:
        reasons.append("zero init ended less than 10 pt below the best: " + ", ".join(close))
    return f"disagree ({'; '.join(reasons)})"


def scheme_name(scheme: str) -> str:
    """Display name of a scheme (``"he_normal"`` -> ``"He normal"``)."""
    from initlab.experiments.common import SCHEME_LABELS

    return SCHEME_LABELS.get(scheme, scheme)


def summarize(records: list[dict[str, Any]], *, tie_tolerance: float | None = None,
              seed: int | None = None) -> SummaryResult:
    """Compute the "activation -> best scheme" table from the records of experiments 1-3 and 5.

    Rows come in the order: training evidence (tanh, relu, ...), training at depth (tanh, relu,
    sigmoid), signal-propagation evidence (tanh, sigmoid, relu), the symmetry rule. Experiments
    absent from ``records`` give no rows.

    >>> recs = [{"experiment": "training", "scheme": s, "activation": "relu", "layer": None,
    ...          "stat": "final_test_accuracy", "value": v, "epoch": 1, "seed": 0}
    ...         for s, v in (("he_normal", 0.9), ("zeros", 0.1))]
    >>> row = summarize(recs).rows[0]
    >>> row["best_scheme"], row["verdict"]
    ('he_normal', 'agree')
    """
    train_rows, final = _accuracy_rows(records, "training", "training", tie_tolerance)
    rows = train_rows + _depth_rows(records, tie_tolerance) + _forward_rows(records)
    sym = _symmetry_row(records, final)
    if sym is not None:
        rows.append(sym)
    out = []
    for row in rows:
        extras = {k: v for k, v in row.items() if k not in ("activation",)}
        agree = (None if row["verdict"] == TIE_AT_CHANCE else 1.0 if row["verdict"].startswith("agree")
                 else 0.0)
        out.append({"experiment": "summary", "scheme": row["best_scheme"], "activation": row["activation"],
                    "layer": None, "stat": "agree", "value": agree, "epoch": None, "seed": seed, **extras})
    return SummaryResult(rows=rows, records=out)
