"""The demo report's tables and the record readers its narratives share: each table is a dict
``{caption, header, rows}`` of strings, computed from the run's records only."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from initlab.experiments.common import plural
from initlab.report.figure_common import scheme_label

__all__ = ["fmt", "pct", "forward_stats", "training_stats", "depth_stats", "ratio", "mean", "steps_text",
           "forward_table", "training_table", "symmetry_table", "depth_table", "summary_table"]


def fmt(value: Any, digits: int = 3) -> str:
    """A number for the page: ``digits`` significant digits, ``"–"`` for missing / non-finite.

    >>> fmt(0.012345), fmt(None), fmt(12345.0)
    ('0.0123', '–', '1.23e+04')
    """
    if value is None:
        return "–"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(v):
        return "–"
    return f"{v:.{digits}g}"


def pct(value: float | None) -> str:
    """A fraction as a whole percentage (``"–"`` when missing).

    >>> pct(0.256), pct(None)
    ('26%', '–')
    """
    return "–" if value is None or not math.isfinite(value) else f"{100 * value:.0f}%"


def forward_stats(records: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, dict[int, float]]]:
    """Experiment 1 by ``(activation, scheme)``: stat -> layer -> value (histograms left out)."""
    out: dict[tuple[str, str], dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in records:
        if r.get("experiment") == "forward" and r["stat"] != "histogram" and r["value"] is not None:
            out[(r["activation"], r["scheme"])][r["stat"]][int(r["layer"])] = float(r["value"])
    return out


def ratio(series: dict[int, float], top: bool = True) -> float | None:
    """Last / first layer (``top``) or first / last; ``None`` when empty or divided by 0.

    >>> ratio({1: 2.0, 5: 1.0}), ratio({1: 2.0, 5: 1.0}, top=False)
    (0.5, 2.0)
    """
    if not series:
        return None
    lo, hi = series[min(series)], series[max(series)]
    num, den = (hi, lo) if top else (lo, hi)
    return num / den if den else None


def mean(series: dict[int, float] | None) -> float | None:
    """Mean of a layer -> value series (``None`` when empty)."""
    if not series:
        return None
    return sum(series.values()) / len(series)


_RUN_STATS = ("final_test_accuracy", "mean_test_accuracy", "steps_to_target", "diverged", "seconds")


def _runs(records: list[dict[str, Any]], experiment: str,
          key: tuple[str, ...]) -> dict[tuple, dict[str, Any]]:
    out: dict[tuple, dict[str, Any]] = defaultdict(dict)
    for r in records:
        if r.get("experiment") == experiment and r["stat"] in _RUN_STATS:
            run = out[tuple(r.get(k) for k in key)]
            run[r["stat"]] = r["value"]
            if r["stat"] == "steps_to_target":
                run.update(target=r.get("target"), steps_per_epoch=r.get("steps_per_epoch"),
                           init_steps=r.get("init_steps") or 0)
            elif r["stat"] == "diverged" and r["value"]:
                run["diverged_step"] = r.get("step")
    return out


def training_stats(records: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Experiment 3 by ``(activation, scheme)``: the per-run stats (final and mean accuracy, steps
    to target with ``target``, ``steps_per_epoch`` and ``init_steps``, diverged with
    ``diverged_step``, seconds)."""
    return _runs(records, "training", ("activation", "scheme"))


def depth_stats(records: list[dict[str, Any]]) -> dict[tuple[str, int, str], dict[str, Any]]:
    """Experiment 5 by ``(activation, depth, scheme)``: as :func:`training_stats`."""
    return _runs(records, "depth", ("activation", "depth", "scheme"))


def steps_text(run: dict[str, Any]) -> str:
    """Steps to the target of one run, the start's own steps included and named.

    >>> steps_text({"steps_to_target": 45, "init_steps": 360, "steps_per_epoch": 63})
    '405 (360 pretraining + 45 training)'
    >>> steps_text({"steps_to_target": None}), steps_text({"steps_to_target": 30, "steps_per_epoch": 60})
    ('never', '30 (0.5 epochs)')
    """
    steps = run.get("steps_to_target")
    if steps is None:
        return "never"
    init = int(run.get("init_steps") or 0)
    if init:
        return f"{int(steps) + init} ({init} pretraining + {int(steps)} training)"
    spe = run.get("steps_per_epoch")
    return f"{int(steps)} ({plural(float(f'{steps / spe:.2g}'), 'epoch')})" if spe else str(int(steps))


def forward_table(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Table of experiment 1: per activation and scheme, activation std at the first and last layer
    and their ratio, the backward gradient ratio (first / last layer), mean saturation and dead
    fraction.

    >>> forward_table([])["rows"]
    []
    """
    fw = forward_stats(records)
    rows = []
    for (act, scheme), s in fw.items():
        std, grad = s.get("std", {}), s.get("grad_std", {})
        if not std:
            continue
        first, last = min(std), max(std)
        rows.append([act, scheme_label(scheme), fmt(std[first]), fmt(std[last]), fmt(ratio(std)),
                     fmt(ratio(grad, top=False)), pct(mean(s.get("saturation"))),
                     pct(mean(s.get("dead_fraction")))])
    layers = sorted({int(r["layer"]) for r in records if r.get("experiment") == "forward"})
    L = layers[-1] if layers else "L"
    return {"caption": f"Forward and backward pass: per-layer statistics of a {L}-layer MLP at "
                       "initialization (N(0, 1) input, an N(0, 1) gradient injected at the top)",
            "header": ["activation", "scheme", "std layer 1", f"std layer {L}", f"ratio {L}/1",
                       f"grad std ratio 1/{L}", "saturated (mean)", "dead (mean)"],
            "rows": rows}


def training_table(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Table of experiment 3: final and mean test accuracy, steps (and epochs) to the target (the
    start's own steps included), divergence and run time, one row per activation and scheme.

    >>> training_table([])["header"][:3]
    ['activation', 'start', 'final test accuracy']
    """
    rows, target = [], None
    for (act, scheme), s in training_stats(records).items():
        target = s.get("target", target)
        if s.get("diverged"):  # its accuracies are those of a net that stopped training: not a score
            final = mean_acc = "– (diverged)"
            step = s.get("diverged_step")
            diverged = f"yes, at step {step}" if step is not None else "yes"
        else:
            final, mean_acc = fmt(s.get("final_test_accuracy")), fmt(s.get("mean_test_accuracy"))
            diverged = "no"
        rows.append([act, scheme_label(scheme), final, mean_acc, steps_text(s), diverged,
                     fmt(s.get("seconds"), 2)])
    return {"caption": f"Training a deep MLP (target test accuracy {fmt(target)})",
            "header": ["activation", "start", "final test accuracy", "mean test accuracy during training",
                       "steps to target", "diverged (loss not finite)", "seconds"],
            "rows": rows}


def depth_table(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Table of experiment 5: per activation and depth, each start's final test accuracy and steps
    to the target (``never`` when not reached within the budget).

    >>> depth_table([])["rows"]
    []
    """
    runs = depth_stats(records)
    schemes = list(dict.fromkeys(k[2] for k in runs))
    target = next((r.get("target") for r in runs.values() if r.get("target") is not None), None)
    rows = []
    for act in dict.fromkeys(k[0] for k in runs):
        for depth in sorted({k[1] for k in runs if k[0] == act}):
            cells = []
            for scheme in schemes:
                run = runs.get((act, depth, scheme), {})
                steps = run.get("steps_to_target")
                reached = "never" if steps is None else str(int(steps))
                final = "diverged" if run.get("diverged") else fmt(run.get("final_test_accuracy"))
                cells.append(f"{final} / {reached}")
            rows.append([act, str(depth), *cells])
    return {"caption": f"Depth: final test accuracy / steps to {fmt(target)} test accuracy, per start",
            "header": ["activation", "depth", *[scheme_label(s) for s in schemes]],
            "rows": rows}


def symmetry_table(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Table of experiment 2: distinct units per hidden layer before and after training (exactly,
    and counting units closer than the relative tolerance as one), the units' spread and the test
    accuracy.

    >>> rec = {"experiment": "symmetry", "scheme": "zeros", "stat": "distinct_units", "value": 1,
    ...        "layer": 1, "epoch": 0, "dropout": 0.0, "width": 4}
    >>> symmetry_table([rec])["rows"]
    [['zeros', '0', '1', '1', '', '', '–']]
    """
    by: dict[tuple[str, float], dict[str, Any]] = defaultdict(lambda: defaultdict(dict))
    tol = 0.1
    for r in records:
        if r.get("experiment") != "symmetry":
            continue
        run = by[(r["scheme"], r.get("dropout", 0.0))]
        if r["stat"] in ("distinct_units", "distinct_units_relative"):
            run[r["stat"]].setdefault(r["epoch"], {})[r["layer"]] = int(r["value"])
            tol = r.get("relative_tol", tol)
        elif r["stat"] == "unit_spread":
            run["spread"][r["layer"]] = r["value"]
        elif r["stat"] == "test_accuracy":
            run["acc"] = r["value"]

    def layers(d: dict[Any, Any], digits: int | None = None) -> str:
        return " / ".join(str(v) if digits is None else fmt(v, digits) for _, v in sorted(d.items()))

    rows = []
    for (scheme, p), d in by.items():
        exact = d.get("distinct_units", {})
        rel = d.get("distinct_units_relative", {})
        epochs = sorted(exact)
        rows.append([scheme_label(scheme), f"{p:g}", layers(exact[epochs[0]]) if epochs else "",
                     layers(exact[epochs[-1]]) if epochs else "", layers(rel[max(rel)]) if rel else "",
                     layers(d.get("spread", {}), 2), fmt(d.get("acc"))])
    return {"caption": "Symmetry: distinct hidden units per layer (layer 1 / layer 2) of a 2-hidden-layer "
                       "net, before and after training",
            "header": ["init", "dropout", "distinct before", "distinct after (exactly)",
                       f"distinct after ({tol:.0%} of a unit's norm apart)", "spread of the units after",
                       "test accuracy"],
            "rows": rows}


def summary_table(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The "activation -> best scheme" table (rows of :func:`initlab.experiments.summarize`):
    the best start of this run with "auto", LSUV and pretraining among the candidates, the best
    classic scheme, the rule of thumb and the verdict.

    >>> summary_table([])["rows"]
    []
    """
    def score(scheme: str, value: Any, row: dict[str, Any]) -> str:
        out_of_range = "in_range" in row and scheme not in row["in_range"]
        return f"{scheme_label(scheme)} ({fmt(value)}{', out of range' if out_of_range else ''})"

    out = []
    for r in rows:
        best = r["best_scheme"]
        best_text = scheme_label(best) if r.get("best_value") is None else score(best, r["best_value"], r)
        classic = r.get("best_classic_scheme")
        classic_text = "–" if classic is None else score(classic, r.get("best_classic_value"), r)
        rule_scheme = r.get("rule_scheme")
        rule_text = r["rule"] if rule_scheme is None else (
            f"{r['rule']}: {scheme_label(rule_scheme)} ({fmt(r.get('rule_value'))})")
        out.append([r["activation"], r["evidence"], best_text, classic_text, rule_text, r["verdict"],
                    r.get("criterion", ""), r.get("source", "")])
    return {"caption": "Summary: best start per activation in this run, beside the rules of thumb "
                       "(in brackets: the criterion's score)",
            "header": ["activation", "evidence", "best start, auto included (score)",
                       "best classic scheme (score)", "rule of thumb (score)", "verdict", "criterion",
                       "rule's source"],
            "rows": out}
