"""The demo report's HTML page: one section per claim of the field, each with a narrative whose
numbers come from this run's records, its figures and tables, then the summary table, the run's
config and seed, and a link to the trainability phase diagram (``initlab phase``).

Rendered with Jinja2 (template ``templates/report.html``, autoescaped); figures are PNG files in
``figures/`` beside ``index.html``, referenced by relative paths, so the page opens from disk.
"""

from __future__ import annotations

import html as _html
import math
from collections import defaultdict
from typing import Any

from initlab.report.figures import FigureInfo, scheme_label

__all__ = ["render_html", "PHASE_LINK", "forward_table", "training_table", "symmetry_table", "summary_table",
           "summary_explanations", "fmt"]

#: Relative link to the report of ``initlab phase`` (written by that command next to this one).
PHASE_LINK = "../initlab-phase/index.html"

#: Which report section shows which figure (by file name); others use ``FigureInfo.section``.
_FIGURE_SECTION = {
    "forward_std.png": "vanishing",
    "forward_saturation.png": "saturation",
    "forward_histograms_tanh.png": "saturation",
    "forward_histograms_sigmoid.png": "xavier",
    "forward_histograms_relu.png": "he",
    "symmetry.png": "symmetry",
}


def fmt(value: Any, digits: int = 3) -> str:
    """A number for the page: ``digits`` significant digits, ``"–"`` for missing / non-finite.

    >>> fmt(0.012345), fmt(None), fmt(12345.0)
    ('0.0123', '–', '1.23e+04')
    """
    if value is None:
        return "–"
    if isinstance(value, (int,)) and not isinstance(value, bool):
        return str(value)
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(v):
        return "–"
    return f"{v:.{digits}g}"


def _pct(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{100 * value:.0f}%"


def _forward(records: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, dict[int, float]]]:
    out: dict[tuple[str, str], dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in records:
        if r.get("experiment") == "forward" and r["stat"] != "histogram" and r["value"] is not None:
            out[(r["activation"], r["scheme"])][r["stat"]][int(r["layer"])] = float(r["value"])
    return out


def _ratio(series: dict[int, float], top: bool = True) -> float | None:
    """last / first layer (``top``) or first / last."""
    if not series:
        return None
    lo, hi = series[min(series)], series[max(series)]
    num, den = (hi, lo) if top else (lo, hi)
    return num / den if den else None


def forward_table(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Table of experiment 1: per activation and scheme, activation std at the first and last layer
    and their ratio, the backward gradient ratio (first / last layer), mean saturation and dead
    fraction.

    >>> forward_table([])["rows"]
    []
    """
    fw = _forward(records)
    rows = []
    for (act, scheme), s in fw.items():
        std, grad = s.get("std", {}), s.get("grad_std", {})
        if not std:
            continue
        first, last = min(std), max(std)
        rows.append([act, scheme_label(scheme), fmt(std[first]), fmt(std[last]), fmt(_ratio(std)),
                     fmt(_ratio(grad, top=False)), _pct(_mean(s.get("saturation"))),
                     _pct(_mean(s.get("dead_fraction")))])
    layers = sorted({int(r["layer"]) for r in records if r.get("experiment") == "forward"})
    L = layers[-1] if layers else "L"
    return {"caption": "Forward and backward pass (sections 2-5): per-layer statistics of a 5-layer MLP "
                       "(x ~ N(0,1) input, injected N(0,1) gradient at the top)",
            "header": ["activation", "scheme", "std layer 1", f"std layer {L}", f"ratio {L}/1",
                       f"grad std ratio 1/{L}", "saturated (mean)", "dead (mean)"],
            "rows": rows}


def _mean(series: dict[int, float] | None) -> float | None:
    if not series:
        return None
    return sum(series.values()) / len(series)


def _training(records: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = defaultdict(dict)
    for r in records:
        if r.get("experiment") == "training" and r["stat"] in ("final_test_accuracy", "mean_test_accuracy",
                                                               "steps_to_target", "diverged", "seconds"):
            out[(r["activation"], r["scheme"])][r["stat"]] = r["value"]
            if r["stat"] == "steps_to_target":
                out[(r["activation"], r["scheme"])]["target"] = r.get("target")
                out[(r["activation"], r["scheme"])]["steps_per_epoch"] = r.get("steps_per_epoch")
    return out


def training_table(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Table of experiment 3: final and mean test accuracy, steps (and epochs) to the target,
    divergence and run time, one row per activation and scheme.

    >>> training_table([])["header"][:3]
    ['activation', 'init', 'final test accuracy']
    """
    tr = _training(records)
    rows = []
    target = None
    for (act, scheme), s in tr.items():
        target = s.get("target", target)
        steps = s.get("steps_to_target")
        spe = s.get("steps_per_epoch") or None
        if steps is None:
            reached = "never"
        else:
            reached = f"{int(steps)} ({steps / spe:.2g} epochs)" if spe else str(steps)
        rows.append([act, scheme_label(scheme), fmt(s.get("final_test_accuracy")),
                     fmt(s.get("mean_test_accuracy")), reached, "yes" if s.get("diverged") else "no",
                     fmt(s.get("seconds"), 2)])
    return {"caption": f"Training a deep MLP (section 6; target test accuracy {fmt(target)})",
            "header": ["activation", "init", "final test accuracy", "mean test accuracy during training",
                       "steps to target", "diverged", "seconds"],
            "rows": rows}


def symmetry_table(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Table of experiment 2: distinct units per hidden layer before and after training.

    >>> rec = {"experiment": "symmetry", "scheme": "zeros", "stat": "distinct_units", "value": 1,
    ...        "layer": 1, "epoch": 0, "dropout": 0.0, "width": 4}
    >>> symmetry_table([rec])["rows"]
    [['zeros', '0', '1', '1', '', '–']]
    """
    rows_by: dict[tuple[str, float], dict[str, Any]] = defaultdict(dict)
    for r in records:
        if r.get("experiment") != "symmetry":
            continue
        key = (r["scheme"], r.get("dropout", 0.0))
        if r["stat"] == "distinct_units":
            rows_by[key].setdefault("distinct", {}).setdefault(r["epoch"], {})[r["layer"]] = int(r["value"])
            rows_by[key]["width"] = r.get("width")
        elif r["stat"] == "test_accuracy":
            rows_by[key]["acc"] = r["value"]
        elif r["stat"] == "symmetry_spread":
            rows_by[key].setdefault("spread", {})[r["layer"]] = r["value"]
    rows = []
    for (scheme, p), d in rows_by.items():
        epochs = sorted(d.get("distinct", {}))
        before = d["distinct"][epochs[0]] if epochs else {}
        after = d["distinct"][epochs[-1]] if epochs else {}
        rows.append([scheme_label(scheme), f"{p:g}", " / ".join(str(before[k]) for k in sorted(before)),
                     " / ".join(str(after[k]) for k in sorted(after)),
                     " / ".join(fmt(v, 2) for _, v in sorted(d.get("spread", {}).items())),
                     fmt(d.get("acc"))])
    return {"caption": "Symmetry (section 1): distinct hidden units per layer (layer 1 / layer 2) of a "
                       "2-hidden-layer net, before and after training",
            "header": ["init", "dropout", "distinct before", "distinct after",
                       "spread after (max |Δw| / max |w|)", "test accuracy"],
            "rows": rows}


def summary_table(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The "activation -> best scheme" table (rows of :func:`initlab.experiments.summarize`)
    with the rules of thumb and verdicts.

    >>> summary_table([])["rows"]
    []
    """
    out = []
    for r in rows:
        best = r["best_scheme"]
        best_text = scheme_label(best) if best in _known() else str(best)
        fixed = r.get("best_fixed_scheme")
        fixed_text = "–" if fixed is None else f"{scheme_label(fixed)} ({fmt(r.get('best_fixed_value'))})"
        rule_scheme = r.get("rule_scheme")
        rule_text = r["rule"] if rule_scheme is None else (
            f"{r['rule']}: {scheme_label(rule_scheme)} ({fmt(r.get('rule_value'))})")
        out.append([r["activation"], r["evidence"], f"{best_text} ({fmt(r.get('best_value'))})"
                    if r.get("best_value") is not None else best_text, fixed_text, rule_text,
                    r["verdict"], r.get("criterion", ""), r.get("source", "")])
    return {"caption": "Summary: best scheme per activation in this run, beside the rules of thumb "
                       "(values in brackets: the criterion's score — a test accuracy, or a drift in decades)",
            "header": ["activation", "evidence", "best in this run (score)", "best data-independent (score)",
                       "rule of thumb (score)", "verdict", "criterion", "rule's source"],
            "rows": out}


def summary_explanations(rows: list[dict[str, Any]], records: list[dict[str, Any]]) -> list[dict[str, str]]:
    """One explanation per summary row that does not plainly agree (``"disagree ..."`` or an
    ``"agree (tie ...)"``): what was measured, and why the rule of thumb and this run can differ.
    Each item has ``id`` (``why-<activation>-<evidence>``), ``title`` and ``text``.

    >>> summary_explanations([{"activation": "relu", "evidence": "training", "verdict": "agree"}], [])
    []
    """
    fw = _forward(records)
    out = []
    for r in rows:
        verdict = r.get("verdict", "")
        if verdict == "agree" or verdict.startswith("agree (within"):
            continue
        act, evidence = r["activation"], r["evidence"]
        rule_s, best_s = r.get("rule_scheme"), r.get("best_fixed_scheme") or r.get("best_scheme")
        if evidence == "signal propagation":
            rule, best = fw.get((act, rule_s), {}), fw.get((act, best_s), {})
            text = _WHY_DRIFT.format(
                rule=scheme_label(rule_s), rule_v=fmt(r.get("rule_value"), 2),
                rule_f=fmt(_ratio(rule.get("std", {}))),
                rule_b=fmt(_ratio(rule.get("grad_std", {}), top=False)),
                best=scheme_label(best_s), best_v=fmt(r.get("best_value"), 2),
                best_f=fmt(_ratio(best.get("std", {}))),
                best_b=fmt(_ratio(best.get("grad_std", {}), top=False)))
            if act == "tanh":
                from initlab.gains import gain

                text += " " + _WHY_TANH.format(g=gain("tanh"))
            elif act == "sigmoid":
                text += " " + _WHY_SIGMOID
            else:
                text += " The rule's scheme drifts more than the best one by more than the tolerance."
        elif evidence == "training":
            text = _WHY_TRAINING.format(rule=scheme_label(rule_s), rule_v=fmt(r.get("rule_value")),
                                        best=scheme_label(best_s), best_v=fmt(r.get("best_fixed_value")))
        else:
            text = (f"{r.get('criterion', '')}. The rule holds when constant init keeps one distinct unit "
                    f"per layer and zero init ends at least 10 points below the best scheme.")
        out.append({"id": f"why-{act}-{evidence.replace(' ', '-')}", "title": f"{act}, {evidence}: {verdict}",
                    "text": text})
    return out


def _known() -> set[str]:
    from initlab.experiments.common import SCHEME_LABELS

    return set(SCHEME_LABELS)


# ---- narratives ------------------------------------------------------------------------------


def _words(text: str) -> str:
    """Collapse a triple-quoted paragraph to one line."""
    return " ".join(text.split())


_WHY_DRIFT = _words("""
    The score is how far the per-layer std drifts from layer to layer, forward plus backward, in
    decades. {rule}: {rule_v} decades (activation std ratio last / first layer {rule_f}, gradient
    ratio first / last {rule_b}); {best}: {best_v} decades (ratios {best_f} and {best_b}).""")

_WHY_TANH = _words("""
    Xavier as published has gain 1, which preserves the variance only where tanh has slope 1, at 0;
    everywhere else the slope is smaller, so every layer loses a little. The gain that preserves
    tanh's second moment is initlab.gains.gain('tanh') = {g:.2f}; He's √2 = 1.41 is closer to it,
    so He drifts less here. The rule is about a trainable start: see the training row for how much
    that matters.""")

_WHY_SIGMOID = _words("""
    Xavier's derivation assumes an activation that is zero-mean with slope 1 at 0. Sigmoid has mean
    0.5 and slope at most 1/4, so under any of these schemes the gradient shrinks by about 4× per
    layer; larger weights (He) shrink it less. Glorot & Bengio found sigmoid networks hard to train
    for exactly this reason; the rule 'Xavier for sigmoid' is a convention, not a
    variance-preserving choice.""")

_WHY_TRAINING = _words("""
    The score is the mean test accuracy over training (area under the accuracy curve). {rule}
    scored {rule_v}, {best} {best_v}. A gap within two standard errors of an accuracy difference on
    this test set is a tie. This is one seed and a short run with one learning rate; run again with
    another --seed to see whether the gap persists.""")


_VANISHING_INTRO = _words("""
    Each layer multiplies the activation variance by about fan_in · Var(W) · E[φ'(z)²]. With weights
    of std 0.01 and 50 inputs per unit that is 50 · 10⁻⁴ = 0.005 for tanh near 0 (a factor ~0.07 in std
    per layer), so the signal vanishes geometrically with depth — forward and backward.""")

_SATURATION_INTRO = _words("""
    With weights of std 1 and 100 inputs, a pre-activation has std about √100 = 10: far in the flat
    tails of tanh and sigmoid. Saturation here is the probe's definition: the fraction of activations
    with |a| > 0.99 (tanh) or outside [0.01, 0.99] (sigmoid).""")

_XAVIER_INTRO = _words("""
    Glorot & Bengio (2010) choose Var(W) = 2 / (fan_in + fan_out) so that, for an activation that is
    linear with slope 1 around 0 (tanh), the variance of activations and of back-propagated gradients
    is roughly preserved layer to layer.""")

_XAVIER_GAIN = _words("""
    initlab.gains.gain('tanh') = {g:.3g}: the weight-std multiplier that preserves the second moment
    through tanh for z ~ N(0,1). Xavier as published uses gain 1, so it shrinks tanh's signal slowly
    with depth; He's √2 = 1.41 is closer to it, which is why He can keep tanh's std closer to constant
    in this experiment (see the summary).""")

_SIGMOID_NOTE = _words("""
    Sigmoid is not zero-mean (mean activation {mean}) and its slope at 0 is 1/4, so Xavier's
    assumption fails: the backward signal shrinks by about a factor 4 per layer, which is why the
    Glorot paper found sigmoid networks hard to train. Its histograms from layer 2 on are combs of
    narrow peaks: every unit receives inputs of mean about 0.5, so its pre-activation is dominated by
    its own offset 0.5 · Σ_k W_jk, one peak per unit.""")

_HE_INTRO = _words("""
    He et al. (2015) note that ReLU zeroes half of its inputs, halving the second moment per layer;
    Var(W) = 2 / fan_in compensates. Xavier (Var(W) = 2 / (fan_in + fan_out) = 1 / fan_in for equal
    fans) therefore loses a factor √2 in std per ReLU layer.""")

_SYMMETRY_INTRO = _words("""
    If all units of a layer start with the same incoming weights they compute the same activation and
    receive the same gradient, so they stay equal: the layer behaves like a single unit.""")

_DROPOUT_BREAKS = _words("""
    Dropout does break the exact tie for {schemes}: each unit sees its own random mask, so the units
    get different gradients — but they start identical and stay close (see the spread column), so the
    layer is still far from a random init.""")

_DROPOUT_KEEPS = _words("""
    It does not for {schemes}: with zero weights the {act} activations and the gradients reaching the
    hidden weights are zero, so there is nothing for the masks to act on.""")

_PRETRAIN_NOTE = _words("""
    Layer-wise pretraining (an autoencoder per layer, then supervised fine-tuning) starts from Xavier
    normal; its reconstruction loss per layer is shown below. LSUV starts from orthogonal weights and
    rescales each layer to unit output variance on a batch of training data.""")


def _narr_symmetry(records: list[dict[str, Any]]) -> list[str]:
    sym = [r for r in records if r.get("experiment") == "symmetry" and r["stat"] == "distinct_units"]
    if not sym:
        return ["The symmetry experiment did not run."]
    last = max(r["epoch"] for r in sym)
    width = max(r.get("width") or 0 for r in sym)
    act = sym[0]["activation"]

    def units(scheme: str, p: float) -> list[int]:
        return [int(r["value"]) for r in sorted(sym, key=lambda r: r["layer"])
                if r["scheme"] == scheme and r.get("dropout") == p and r["epoch"] == last]

    def joined(u: list[int]) -> str:
        return " and ".join(map(str, u))

    out = [f"A 2-hidden-layer {act} network with {width} units per layer was trained for {last} "
           f"epochs. {_SYMMETRY_INTRO}"]
    for scheme in ("zeros", "constant"):
        u = units(scheme, 0.0)
        if u:
            verdict = ("Symmetry was never broken." if all(v == 1 for v in u) else
                       "Some units drifted apart (rounding), but far fewer than the layer width.")
            out.append(f"{scheme_label(scheme)}, no dropout: {joined(u)} distinct unit(s) in the hidden "
                       f"layers after training (of {width}). {verdict}")
    for scheme in sorted({r["scheme"] for r in sym} - {"zeros", "constant"}):
        u = units(scheme, 0.0)
        if u:
            out.append(f"{scheme_label(scheme)} (random): {joined(u)} distinct units.")
    for p in sorted({r.get("dropout") for r in sym if r.get("dropout")}):
        counts = {s: units(s, p) for s in ("zeros", "constant") if units(s, p)}
        if not counts:
            continue
        parts = "; ".join(f"{scheme_label(s)} → {joined(u)}" for s, u in counts.items())
        text = f"With dropout p={p:g}: {parts} distinct units. "
        broke = [scheme_label(s) for s, u in counts.items() if max(u) > 1]
        kept = [scheme_label(s) for s, u in counts.items() if max(u) == 1]
        if broke:
            text += _DROPOUT_BREAKS.format(schemes=", ".join(broke)) + " "
        if kept:
            text += _DROPOUT_KEEPS.format(schemes=", ".join(kept), act=act)
        out.append(text.strip())
    return out


def _narr_vanishing(fw: dict, records: list[dict[str, Any]]) -> list[str]:
    out = []
    for act in ("tanh", "relu", "sigmoid"):
        s = fw.get((act, "small"))
        if not s or "std" not in s:
            continue
        std, grad = s["std"], s.get("grad_std", {})
        first, last = min(std), max(std)
        text = (f"{act}, small weights 0.01·N(0,1): the activation std falls from {fmt(std[first])} at "
                f"layer {first} to {fmt(std[last])} at layer {last} (ratio {fmt(_ratio(std))})")
        if grad:
            text += (f"; the backward gradient std falls from {fmt(grad[last])} at layer {last} to "
                     f"{fmt(grad[first])} at layer {first} (ratio {fmt(_ratio(grad, top=False))})")
        out.append(text + ".")
    if out:
        out.insert(0, _VANISHING_INTRO)
    tr = _training(records)
    for act in ("tanh", "relu"):
        if (act, "small") in tr:
            best = max((v.get("final_test_accuracy") or 0, k[1]) for k, v in tr.items() if k[0] == act)
            small = fmt(tr[(act, "small")].get("final_test_accuracy"))
            out.append(f"In training ({act}), small init ended at {small} test accuracy; the best scheme "
                       f"({scheme_label(best[1])}) at {fmt(best[0])}.")
    return out or ["The forward experiment did not include the small scheme."]


def _narr_saturation(fw: dict) -> list[str]:
    out = []
    for act in ("tanh", "sigmoid"):
        s = fw.get((act, "large"))
        if not s or "saturation" not in s:
            continue
        sat, std = s["saturation"], s.get("std", {})
        first, last = min(sat), max(sat)
        text = (f"{act}, large weights N(0,1): {_pct(sat[first])} of the activations are saturated at "
                f"layer {first} and {_pct(sat[last])} at layer {last} (mean over layers "
                f"{_pct(_mean(sat))}); the histograms pile up at the ends of the range.")
        if std:
            text += (f" Activation std stays at {fmt(std.get(last))}, so the forward signal looks "
                     "'alive', but a saturated unit passes almost no gradient (φ'(z) ≈ 0).")
        out.append(text)
        ref = fw.get((act, "xavier_normal"))
        if ref and "saturation" in ref:
            out.append(f"For comparison, Xavier normal saturates {_pct(_mean(ref['saturation']))} of the "
                       f"{act} activations on average.")
    if out:
        out.insert(0, _SATURATION_INTRO)
    return out or ["The forward experiment did not include the large scheme with tanh or sigmoid."]


def _narr_xavier(fw: dict, records: list[dict[str, Any]]) -> list[str]:
    out = [_XAVIER_INTRO]
    for act in ("tanh", "sigmoid"):
        s = fw.get((act, "xavier_normal"))
        if not s or "std" not in s:
            continue
        std, grad, mean = s["std"], s.get("grad_std", {}), s.get("mean", {})
        text = (f"{act}, Xavier normal: activation std from {fmt(std[min(std)])} (layer {min(std)}) to "
                f"{fmt(std[max(std)])} (layer {max(std)}), ratio {fmt(_ratio(std))}")
        if grad:
            text += f"; gradient std ratio (first / last layer) {fmt(_ratio(grad, top=False))}"
        text += "."
        if act == "sigmoid":
            text += " " + _SIGMOID_NOTE.format(mean=fmt(_mean(mean)))
        out.append(text)
        if act == "tanh":
            from initlab.gains import gain

            out.append(_XAVIER_GAIN.format(g=gain("tanh")))
            small = fw.get((act, "small"))
            if small and "std" in small:
                out.append(f"Compare small weights with {act}: ratio {fmt(_ratio(small['std']))}. The test "
                           "suite counts a layer-5 / layer-1 ratio within [0.2, 5] as 'in range'.")
    return out


def _narr_he(fw: dict) -> list[str]:
    out = [_HE_INTRO]
    he, xa = fw.get(("relu", "he_normal")), fw.get(("relu", "xavier_normal"))
    if he and "std" in he:
        std, grad = he["std"], he.get("grad_std", {})
        out.append(f"ReLU, He normal: activation std from {fmt(std[min(std)])} to {fmt(std[max(std)])} "
                   f"(ratio {fmt(_ratio(std))}); gradient ratio {fmt(_ratio(grad, top=False))}; dead "
                   f"units {_pct(_mean(he.get('dead_fraction')))} on average.")
    if xa and "std" in xa:
        std = xa["std"]
        n = max(std) - min(std)
        out.append(f"ReLU, Xavier normal: ratio {fmt(_ratio(std))} over the same layers (theory for equal "
                   f"fans after the first layer: (1/√2)^{n} = {fmt(2 ** (-n / 2))}).")
    large = fw.get(("relu", "large"))
    if large and "std" in large:
        out.append(f"ReLU, large weights: ratio {fmt(_ratio(large['std']))} — the activations explode.")
    return out


def _narr_training(records: list[dict[str, Any]], result: Any) -> list[str]:
    tr = _training(records)
    if not tr:
        return ["The training experiment did not run."]
    cfg, ds = result.training.config, result.dataset
    out = [f"A {cfg.depth}-hidden-layer MLP of width {cfg.width} was trained for {cfg.epochs} epochs "
           f"with SGD (lr {cfg.lr:g}, momentum {cfg.momentum:g}, batch {cfg.batch_size}) on {ds['name']} "
           f"({ds['n_train']} training / {ds['n_test']} test examples); the test set was evaluated "
           f"{cfg.evals_per_epoch} times per epoch."]
    for act in cfg.activations:
        rows = {k[1]: v for k, v in tr.items() if k[0] == act}
        if not rows:
            continue
        reached = sorted((v["steps_to_target"], s) for s, v in rows.items()
                         if v.get("steps_to_target") is not None)
        never = [scheme_label(s) for s, v in rows.items() if v.get("steps_to_target") is None]
        diverged = [scheme_label(s) for s, v in rows.items() if v.get("diverged")]
        text = f"{act}: "
        if reached:
            text += (f"steps to {fmt(cfg.target_accuracy)} test accuracy: "
                     + ", ".join(f"{scheme_label(s)} {int(n)}" for n, s in reached) + ". ")
        if never:
            text += f"Never reached it: {', '.join(never)}. "
        if diverged:
            text += f"Diverged (non-finite loss): {', '.join(diverged)}. "
        text += "Final accuracy: " + ", ".join(f"{scheme_label(s)} {fmt(v.get('final_test_accuracy'))}"
                                                for s, v in rows.items()) + "."
        out.append(text)
    if any(r.get("experiment") == "pretrain" for r in records):
        out.append(_PRETRAIN_NOTE)
    return out


def _sections(result: Any, figures: list[FigureInfo]) -> list[dict[str, Any]]:
    records = result.records
    fw = _forward(records)
    by_section: dict[str, list[FigureInfo]] = defaultdict(list)
    for f in figures:
        by_section[_FIGURE_SECTION.get(f.file.rsplit("/", 1)[-1], f.section)].append(f)
    sections = [
        {"id": "symmetry", "title": "1. Zero or constant weights never break symmetry",
         "paragraphs": _narr_symmetry(records), "tables": [symmetry_table(records)]},
        {"id": "vanishing", "title": "2. Small random weights: activations and gradients vanish with depth",
         "paragraphs": _narr_vanishing(fw, records), "tables": [forward_table(records)]},
        {"id": "saturation", "title": "3. Large weights saturate tanh and sigmoid",
         "paragraphs": _narr_saturation(fw), "tables": []},
        {"id": "xavier", "title": "4. Xavier/Glorot keeps zero-mean activations (tanh) in range",
         "paragraphs": _narr_xavier(fw, records), "tables": []},
        {"id": "he", "title": "5. He keeps ReLU networks in range",
         "paragraphs": _narr_he(fw), "tables": []},
        {"id": "training", "title": "6. The right init trains much faster",
         "paragraphs": _narr_training(records, result), "tables": [training_table(records)]},
    ]
    placed = set()
    for sec in sections:
        sec["figures"] = by_section.get(sec["id"], [])
        placed.add(sec["id"])
    extra = [f for s, fs in by_section.items() if s not in placed for f in fs]
    if extra:
        sections[-1]["figures"] = sections[-1]["figures"] + extra
    n_fig = n_tab = 0
    for sec in sections:
        numbered = []
        for f in sec["figures"]:
            n_fig += 1
            numbered.append({"file": f.file, "alt": f.alt, "id": f"figure-{n_fig}",
                             "title": f"Figure {n_fig}: {f.title}"})
        sec["figures"] = numbered
        for table in sec["tables"]:
            n_tab += 1
            table["caption"] = f"Table {n_tab}: {table['caption']}"
            table["id"] = f"table-{n_tab}"
    return sections


def _config_rows(result: Any) -> list[list[str]]:
    rows = []
    for group, cfg in result.configs().items():
        for k, v in cfg.items():
            rows.append([group, k, ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)])
    return rows


def render_html(result: Any, figures: list[FigureInfo], *, phase_available: bool = False) -> str:
    """The report page for a :class:`initlab.experiments.DemoResult` and its written figures.

    Every figure in ``figures`` appears as an ``<img src="figures/...">`` in the section of its
    claim; tables and narratives quote this run's numbers. Sections are numbered 1-8; figures and
    tables are numbered in page order. The page links to :data:`PHASE_LINK` only when
    ``phase_available`` (the ``initlab phase`` report exists beside this one); otherwise it names
    the command, so the page has no dead link.

    >>> from initlab.experiments import DemoConfig, run_demo
    >>> page = render_html(run_demo(DemoConfig(quick=True), progress=False), [])  # doctest: +SKIP
    >>> "Summary" in page  # doctest: +SKIP
    True
    """
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("initlab.report", "templates"),
                             autoescape=jinja2.select_autoescape(["html"]), trim_blocks=True,
                             lstrip_blocks=True)
    template = env.get_template("report.html")
    cfg = result.config
    sections = _sections(result, figures)
    summary = summary_table(result.summary.rows)
    n_tables = sum(len(sec["tables"]) for sec in sections)
    summary["caption"] = f"Table {n_tables + 1}: {summary['caption']}"
    return template.render(
        title="initlab demo: weight initialization, measured",
        dataset=result.dataset,
        seed=cfg.seed,
        command=_command_line(cfg),
        environment=result.environment,
        timings={k: f"{v:.1f} s" for k, v in result.timings.items()},
        sections=sections,
        summary=summary,
        why=summary_explanations(result.summary.rows, result.records),
        config_rows=_config_rows(result),
        config_caption=f"Table {n_tables + 2}: Run configuration",
        phase_link=PHASE_LINK if phase_available else None,
        figures=figures,
        escape=_html.escape,
    )


def _command_line(cfg: Any) -> str:
    """The ``initlab demo`` command that reproduces a run (``--out`` aside).

    >>> from initlab.experiments import DemoConfig
    >>> _command_line(DemoConfig(seed=1, limit=500))
    'initlab demo --seed 1 --dataset mnist5k --limit 500'
    """
    import shlex

    parts = ["initlab demo", f"--seed {cfg.seed}", f"--dataset {shlex.quote(str(cfg.dataset))}"]
    if cfg.data_dir:
        parts.append(f"--data-dir {shlex.quote(str(cfg.data_dir))}")
    for name in ("depth", "width", "epochs", "limit"):
        if getattr(cfg, name) is not None:
            parts.append(f"--{name} {getattr(cfg, name)}")
    if cfg.threads != 1:
        parts.append(f"--threads {cfg.threads}")
    if cfg.quick:
        parts.append("--quick")
    return " ".join(parts)
