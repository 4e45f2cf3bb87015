"""Experiment 4: the summary — "activation -> best scheme", computed from this run's records,
beside the field's rules of thumb, each marked agree / disagree.

Rules of thumb checked (:data:`RULES`):

* tanh and sigmoid: Xavier/Glorot (Glorot & Bengio, "Understanding the difficulty of training
  deep feedforward neural networks", 2010);
* ReLU: He/Kaiming (He et al., "Delving deep into rectifiers", 2015);
* any activation: never zero or constant (the symmetry problem; Goodfellow et al., *Deep
  Learning*, 2016, sec. 8.4).

Evidence (one row per activation and kind of evidence):

* ``"training"`` — the scheme with the highest *mean test accuracy over training* in
  experiment 3 (stat ``mean_test_accuracy``: the area under the accuracy curve, which rewards
  training fast as well as ending high; ``final_test_accuracy`` when absent; ties broken by fewer
  steps to the target accuracy). The rules of thumb choose among data-independent random schemes,
  so the verdict compares the rule's scheme with the best *data-independent* scheme (LSUV and
  layer-wise pretraining are reported as ``best_scheme`` when they win, but not held against the
  rule): it *agrees* when the rule's scheme is that best, or behind it by no more than
  ``tie_tolerance``. The default tolerance is two standard errors of the difference of two
  accuracies ``p_1, p_2`` (the best one and the rule's) measured on ``n`` test examples,

  .. math::  \\mathrm{tol} = 2\\sqrt{\\left(p_1(1-p_1) + p_2(1-p_2)\\right)/n}

  (``n`` the test set size; 2.7 points for p = 0.9 and 0.9, n = 1000): a smaller gap is within the
  noise of one seed and is reported as a tie. Both accuracies enter, so a best score of exactly 1
  on a tiny test set does not make the tolerance 0.
* ``"signal propagation"`` — in experiment 1, the scheme whose activation std and backward
  gradient std stay closest to constant across layers,

  .. math::  \\mathrm{score} = \\max_l \\left|\\log_{10}\\frac{\\sigma_l}{\\sigma_1}\\right|
             + \\max_l \\left|\\log_{10}\\frac{\\sigma^{grad}_l}{\\sigma^{grad}_L}\\right|

  (lower is better), among schemes whose mean saturation and dead fraction are below 0.2 (all
  schemes if none qualifies). The rule agrees when its score is within ``score_tolerance``
  (default 0.15 decades) of the best.
* ``"symmetry"`` (rule "never zero or constant") — agrees when zero-initialized training ends at
  least 0.1 below the best accuracy for every trained activation and constant init without
  dropout ends with 1 distinct unit in every hidden layer.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from initlab.experiments.training import DATA_DEPENDENT_SCHEMES

__all__ = ["RULES", "SummaryResult", "summarize"]

#: The rules of thumb: activation -> (rule text, schemes that count as the rule's, source).
RULES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "tanh": ("Xavier/Glorot", ("xavier_normal", "xavier_uniform"), "Glorot & Bengio 2010"),
    "sigmoid": ("Xavier/Glorot", ("xavier_normal", "xavier_uniform"), "Glorot & Bengio 2010"),
    "relu": ("He/Kaiming", ("he_normal", "he_uniform"), "He et al. 2015"),
    "any": ("never zero or constant", ("zeros", "constant"), "Goodfellow et al. 2016, sec. 8.4"),
}


@dataclass
class SummaryResult:
    """Output of :func:`summarize`: ``rows`` (dicts: activation, evidence, best_scheme,
    best_value, best_fixed_scheme, best_fixed_value (the best data-independent scheme), rule,
    rule_schemes, rule_scheme, rule_value, verdict, criterion, source, ranking) and ``records``
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


def _row(activation: str, evidence: str, best: str, best_value: float | None, best_fixed: str | None,
         best_fixed_value: float | None, rule_scheme: str | None, rule_value: float | None, verdict: str,
         criterion: str, ranking: list[str]) -> dict[str, Any]:
    """One summary row (keys in the documented order); the rule, its schemes and its source come
    from :data:`RULES` for ``activation``."""
    rule, family, source = RULES[activation]
    return {"activation": activation, "evidence": evidence, "best_scheme": best, "best_value": best_value,
            "best_fixed_scheme": best_fixed, "best_fixed_value": best_fixed_value, "rule": rule,
            "rule_schemes": list(family), "rule_scheme": rule_scheme, "rule_value": rule_value,
            "verdict": verdict, "criterion": criterion, "source": source, "ranking": ranking}


def _training_rows(records: list[dict[str, Any]],
                   tie_tolerance: float | None) -> tuple[list[dict], dict]:
    final: dict[str, dict[str, float]] = defaultdict(dict)
    mean: dict[str, dict[str, float]] = defaultdict(dict)
    steps: dict[str, dict[str, float]] = defaultdict(dict)
    n_test: dict[str, int] = {}
    for r in records:
        if r.get("experiment") != "training":
            continue
        if r["stat"] == "final_test_accuracy" and r["value"] is not None:
            final[r["activation"]][r["scheme"]] = float(r["value"])
            if r.get("n_test"):
                n_test[r["activation"]] = int(r["n_test"])
        elif r["stat"] == "mean_test_accuracy" and r["value"] is not None:
            mean[r["activation"]][r["scheme"]] = float(r["value"])
        elif r["stat"] == "steps_to_target":
            steps[r["activation"]][r["scheme"]] = math.inf if r["value"] is None else float(r["value"])
    rows = []
    for activation, finals in final.items():
        use_mean = set(mean.get(activation, {})) >= set(finals)
        accs = mean[activation] if use_mean else finals
        ranked = sorted(accs, key=lambda s: (-accs[s], steps[activation].get(s, math.inf)))
        best = ranked[0]
        fixed = [s for s in ranked if s not in DATA_DEPENDENT_SCHEMES] or ranked
        best_fixed = fixed[0]
        if activation not in RULES:
            continue
        family = RULES[activation][1]
        members = [s for s in family if s in accs]
        if not members:
            continue
        rule_best = max(members, key=lambda s: accs[s])
        gap = accs[best_fixed] - accs[rule_best]
        tol = (_tolerance(accs[best_fixed], accs[rule_best], n_test.get(activation)) if tie_tolerance is None
               else tie_tolerance)
        if best_fixed in family:
            verdict = "agree"
        elif gap <= tol:
            verdict = (f"agree (tie: {scheme_name(rule_best)} {gap * 100:.1f} pt behind, "
                       f"tolerance {tol * 100:.1f} pt)")
        else:
            verdict = (f"disagree ({scheme_name(rule_best)} {gap * 100:.1f} pt behind "
                       f"{scheme_name(best_fixed)}, tolerance {tol * 100:.1f} pt)")
        criterion = ("mean test accuracy over training (area under the curve; higher is better)" if use_mean
                     else "final test accuracy (higher is better)")
        rows.append(_row(activation, "training", best, accs[best], best_fixed, accs[best_fixed], rule_best,
                         accs[rule_best], verdict, criterion, ranked))
    return rows, final


def _forward_rows(records: list[dict[str, Any]], score_tolerance: float) -> list[dict]:
    per: dict[tuple[str, str], dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in records:
        if r.get("experiment") != "forward" or r["stat"] not in ("std", "grad_std", "saturation",
                                                                 "dead_fraction"):
            continue
        per[(r["activation"], r["scheme"])][r["stat"]][int(r["layer"])] = float(r["value"])
    by_act: dict[str, dict[str, tuple[float, bool]]] = defaultdict(dict)
    for (activation, scheme), stats in per.items():
        std, grad = stats["std"], stats["grad_std"]
        first, last = min(std), max(std)
        tiny = 1e-30
        fwd = max(abs(math.log10(max(std[l], tiny) / max(std[first], tiny))) for l in std)
        bwd = max(abs(math.log10(max(grad[l], tiny) / max(grad[last], tiny))) for l in grad)
        sat_s, dead_s = stats.get("saturation") or {0: 0.0}, stats.get("dead_fraction") or {0: 0.0}
        sat = sum(sat_s.values()) / len(sat_s)
        dead = sum(dead_s.values()) / len(dead_s)
        by_act[activation][scheme] = (fwd + bwd, sat < 0.2 and dead < 0.2)
    rows = []
    for activation, scores in by_act.items():
        if activation not in RULES:
            continue
        healthy = {s: v[0] for s, v in scores.items() if v[1]} or {s: v[0] for s, v in scores.items()}
        best = min(healthy, key=healthy.get)
        family = RULES[activation][1]
        members = [s for s in family if s in scores]
        if not members:
            continue
        rule_best = min(members, key=lambda s: scores[s][0])
        rule_score = scores[rule_best][0]
        if best in family:
            verdict = "agree"
        elif scores[rule_best][1] and rule_score - healthy[best] <= score_tolerance:
            verdict = f"agree (within {score_tolerance:.3g} decades of the best)"
        elif not scores[rule_best][1]:
            verdict = (f"disagree ({scheme_name(rule_best)} saturates or kills over 20% of the units; "
                       f"{scheme_name(best)} does not)")
        else:
            verdict = (f"disagree ({scheme_name(rule_best)} drifts {rule_score:.2f} decades, "
                       f"{scheme_name(best)} {healthy[best]:.2f}; tolerance {score_tolerance:.3g})")
        rows.append(_row(activation, "signal propagation", best, healthy[best], best, healthy[best],
                         rule_best, rule_score, verdict,
                         "std drift over layers, forward + backward, in decades (lower is better)",
                         sorted(healthy, key=healthy.get)))
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
        parts.append(f"constant init, no dropout: distinct units per layer {units}")
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
              score_tolerance: float = 0.15, seed: int | None = None) -> SummaryResult:
    """Compute the "activation -> best scheme" table from the records of experiments 1-3.

    Rows come in the order: training evidence (tanh, relu, ...), signal-propagation evidence
    (tanh, sigmoid, relu), the symmetry rule. Experiments absent from ``records`` give no rows.

    >>> recs = [{"experiment": "training", "scheme": s, "activation": "relu", "layer": None,
    ...          "stat": "final_test_accuracy", "value": v, "epoch": 1, "seed": 0}
    ...         for s, v in (("he_normal", 0.9), ("zeros", 0.1))]
    >>> row = summarize(recs).rows[0]
    >>> row["best_scheme"], row["verdict"]
    ('he_normal', 'agree')
    """
    train_rows, final = _training_rows(records, tie_tolerance)
    rows = train_rows + _forward_rows(records, score_tolerance)
    sym = _symmetry_row(records, final)
    if sym is not None:
        rows.append(sym)
    out = []
    for row in rows:
        extras = {k: v for k, v in row.items() if k not in ("activation",)}
        agree = 1.0 if row["verdict"].startswith("agree") else 0.0
        out.append({"experiment": "summary", "scheme": row["best_scheme"], "activation": row["activation"],
                    "layer": None, "stat": "agree", "value": agree, "epoch": None, "seed": seed, **extras})
    return SummaryResult(rows=rows, records=out)
