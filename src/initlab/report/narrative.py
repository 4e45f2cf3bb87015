"""The demo report's narratives: one function per section, each returning paragraphs whose every
number comes from the run (its records and configs), and the explanations of summary rows that do
not plainly agree. The text speaks to a reader of the report: what was measured and why it
matters, never how initlab is tested or built."""

from __future__ import annotations

import math
from typing import Any

from initlab.experiments.common import plural
from initlab.experiments.summary import IN_RANGE_FACTOR, TIE_AT_CHANCE, UNHEALTHY_FRACTION
from initlab.report.figure_common import scheme_label
from initlab.report.tables import (
    depth_stats,
    fmt,
    forward_stats,
    mean,
    pct,
    ratio,
    steps_text,
    training_stats,
)

__all__ = ["symmetry", "vanishing", "saturation", "xavier", "he", "training", "depth", "explanations",
           "in_range_definition", "propagation_factor"]


def _words(text: str) -> str:
    """Collapse a triple-quoted paragraph to one line."""
    return " ".join(text.split())


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


#: How the text names an activation (a sentence may start with it: :func:`_act`).
_ACT_NAMES = {"relu": "ReLU", "leaky_relu": "leaky ReLU", "gelu": "GELU", "selu": "SELU", "elu": "ELU"}


def _act(activation: str, start: bool = False) -> str:
    """An activation's name in prose, capitalised when it starts a sentence.

    >>> _act("relu"), _act("tanh", start=True)
    ('ReLU', 'Tanh')
    """
    name = _ACT_NAMES.get(activation, activation)
    return _cap(name) if start else name


def _and(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1] if items else ""


def _fraction(value: float) -> str:
    """``5/3`` for a value that is a simple fraction, else 3 significant digits.

    >>> _fraction(5 / 3), _fraction(1.5925)
    ('5/3', '1.59')
    """
    from fractions import Fraction

    frac = Fraction(value).limit_denominator(12)
    if frac.denominator > 1 and abs(float(frac) - value) < 1e-9:
        return f"{frac.numerator}/{frac.denominator}"
    return f"{value:.3g}"


def _times(x: float) -> str:
    """A factor in words' company: ``3,175`` rather than ``3.17e+03``, 3 digits below 100.

    >>> _times(3175.4), _times(2.449)
    ('3,175', '2.45')
    """
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _chance(records: list[dict[str, Any]]) -> float | None:
    """Chance accuracy ``1 / n_classes`` of the training runs (from their ``chance_loss``)."""
    loss = next((r["chance_loss"] for r in records if r.get("chance_loss")), None)
    return None if loss is None else 1.0 / round(math.exp(float(loss)))


def in_range_definition() -> str:
    """The one statement of what "in range" means in this report (the summary's criterion)."""
    return _words(f"""In range means: at every layer the activation std stays within a factor
        {IN_RANGE_FACTOR:g} of layer 1's and the back-propagated gradient std within a factor
        {IN_RANGE_FACTOR:g}
        of the top layer's, and on average fewer than {UNHEALTHY_FRACTION:.0%} of the units are saturated or
        dead. This answers the question these sections ask: does the signal survive the depth in both
        directions?""")


def propagation_factor(stats: dict[str, dict[int, float]]) -> float | None:
    """The largest factor by which the activation std (from layer 1) or the gradient std (from
    the top layer) changes across the layers of one forward run (the summary's score)."""
    std, grad = stats.get("std"), stats.get("grad_std")
    if not std or not grad:
        return None
    f = [v / std[min(std)] for v in std.values()] + [v / grad[max(grad)] for v in grad.values()]
    return max(max(x, 1.0 / x) if x > 0 else math.inf for x in f)


# ---- section 1: symmetry -------------------------------------------------------------------------


def _symmetry_units(records: list[dict[str, Any]], stat: str, scheme: str, p: float) -> list[Any]:
    rows = [r for r in records if r.get("experiment") == "symmetry" and r["stat"] == stat
            and r["scheme"] == scheme and r.get("dropout") == p]
    last = max((r["epoch"] for r in rows), default=None)
    return [r["value"] for r in sorted(rows, key=lambda r: r["layer"]) if r["epoch"] == last]


def _units_text(units: list[Any], width: int) -> str:
    """``"1 of 32 distinct units in each hidden layer"`` or ``"3 and 5 of 32 ... in hidden layers 1-2"``."""
    if len(set(units)) == 1:
        return f"{int(units[0])} of {width} distinct units in each hidden layer"
    counts = " and ".join(str(int(v)) for v in units)
    return f"{counts} of {width} distinct units in hidden layers 1-{len(units)}"


def symmetry(records: list[dict[str, Any]], dataset: dict[str, Any]) -> list[str]:
    """Section 1: zero and constant weights never break symmetry; dropout only nudges the units."""
    sym = [r for r in records if r.get("experiment") == "symmetry" and r["stat"] == "distinct_units"]
    if not sym:
        return ["The symmetry experiment did not run."]
    last, act = max(r["epoch"] for r in sym), sym[0]["activation"]
    width = max(r.get("width") or 0 for r in sym)
    acc = {(r["scheme"], r.get("dropout")): r["value"] for r in records
           if r.get("experiment") == "symmetry" and r["stat"] == "test_accuracy"}
    tol = next((r.get("relative_tol") for r in records if r.get("stat") == "distinct_units_relative"), 0.1)
    out = [_words(f"""A 2-hidden-layer {_act(act)} network with {width} units per layer was trained for
        {plural(last, 'epoch')} on {dataset['name']}. If all units of a layer start with the same incoming
        weights they compute the same activation and receive the same gradient, so they stay equal: the
        layer behaves like a single unit.""")]
    for scheme in ("zeros", "constant"):
        u = _symmetry_units(records, "distinct_units", scheme, 0.0)
        if u:
            verdict = ("Symmetry was never broken." if all(v == 1 for v in u) else
                       "Some units drifted apart through rounding, far fewer than the layer's width.")
            out.append(f"{_cap(scheme_label(scheme))}, no dropout: {_units_text(u, width)} after training, "
                       f"test accuracy {fmt(acc.get((scheme, 0.0)))}. {verdict}")
    for scheme in sorted({r["scheme"] for r in sym} - {"zeros", "constant"}):
        u = _symmetry_units(records, "distinct_units", scheme, 0.0)
        out.append(f"{_cap(scheme_label(scheme))} (random), no dropout: {_units_text(u, width)}, test "
                   f"accuracy {fmt(acc.get((scheme, 0.0)))}.")
    for p in sorted({r.get("dropout") for r in sym if r.get("dropout")}):
        out += _dropout_paragraph(records, p, tol, act, acc, width)
    return out


def _dropout_paragraph(records: list[dict[str, Any]], p: float, tol: float, act: str, acc: dict,
                       width: int) -> list[str]:
    """The paragraphs on dropout ``p``: what the masks do to zero weights, then to constant ones."""
    parts = [f"With dropout p = {p:g}, each unit sees its own random mask, which is often said to break the "
             "symmetry."]
    for scheme in ("zeros", "constant"):
        exact = _symmetry_units(records, "distinct_units", scheme, p)
        if not exact:
            continue
        name = _cap(scheme_label(scheme))
        if max(exact) == 1:
            why = (f"with zero weights the {_act(act)} activations and the gradients reaching the hidden "
                   "weights are zero, so the masks have nothing to act on" if scheme == "zeros" else
                   "the masks did not separate them")
            parts.append(f"{name}: still 1 distinct unit per layer, because {why}.")
            continue
        rel = _symmetry_units(records, "distinct_units_relative", scheme, p)
        spread = _symmetry_units(records, "unit_spread", scheme, p)
        random = _symmetry_units(records, "unit_spread", "xavier_normal", p)
        random_t = f"; Xavier normal's are {' and '.join(fmt(v, 2) for v in random)}" if random else ""
        exact_t = _units_text(exact, width).replace(" distinct units", " units")
        spread_t = " and ".join(fmt(v, 2) for v in spread)
        parts.append("\n" + _words(f"""{name}: the masks break the exact tie ({exact_t} differ in some
            weight), but only by a hair. The units' spread, their distance from the layer's mean unit
            relative to their size (about 1 for random units), is {spread_t}{random_t};
            counting units closer than {tol:.0%} of a unit's norm as one leaves
            {_units_text(rel, width)}. Test accuracy {fmt(acc.get((scheme, p)))}."""))
    return [p.strip() for p in " ".join(parts).split("\n")]


# ---- sections 2-5: signal propagation at initialization -------------------------------------------


def _small_std(width: int) -> float:
    from initlab.experiments.common import scheme_spec

    return float(scheme_spec("small", (width, width)).std)


def _vanish_measured(act: str, st: dict[str, dict[int, float]]) -> str:
    std, grad = st["std"], st.get("grad_std", {})
    first, last = min(std), max(std)
    text = (f"{_act(act, start=True)}, small weights: the activation std falls from {fmt(std[first])} at "
            f"layer {first} to {fmt(std[last])} at layer {last} (ratio {fmt(ratio(std))})")
    if grad:
        text += (f"; the back-propagated gradient std falls from {fmt(grad[last])} at layer {last} to "
                 f"{fmt(grad[first])} at layer {first} (ratio {fmt(ratio(grad, top=False))})")
    return text + "."


def vanishing(fw: dict, records: list[dict[str, Any]], cfg: Any) -> list[str]:
    """Section 2: small random weights make activations and gradients vanish with depth (for tanh
    and ReLU; sigmoid's mean of 0.5 keeps its activation std up, and only its gradient vanishes)."""
    s, n, L = _small_std(cfg.width), cfg.width, cfg.depth
    per_layer = n * s * s
    out = [_words(f"""Each layer multiplies the activation variance by about fan_in · Var(W) · E[φ'(z)²].
        With weights of std {s:g} and {n} inputs per unit (layers 2-{L}) that is {n} · {s * s:g} =
        {per_layer:g} for tanh near 0, a factor √{per_layer:g} = {math.sqrt(per_layer):.3g} in std per layer,
        so from layer 1 to layer {L} the std should shrink by {math.sqrt(per_layer):.3g}^{L - 1} =
        {math.sqrt(per_layer) ** (L - 1):.3g}, forward and backward.""")]
    st = fw.get(("tanh", "small"))
    if st and "std" in st:
        out.append(_vanish_measured("tanh", st))
    st = fw.get(("relu", "small"))
    if st and "std" in st:
        relu = math.sqrt(per_layer / 2)
        out.append(_words(f"""ReLU passes half of the second moment (E[relu(z)²] = Var(z) / 2), so it
            predicts √({per_layer:g} / 2) = {relu:.3g} per layer and {relu:.3g}^{L - 1} =
            {relu ** (L - 1):.3g} from layer 1 to layer {L}.""") + " " + _vanish_measured("relu", st))
    st = fw.get(("sigmoid", "small"))
    if st and "std" in st:
        out.append(_sigmoid_small(st, s, n, L))
    tr = training_stats(records)
    for act in ("tanh", "relu"):
        if (act, "small") in tr:
            best = max((_final_or_zero(v), k[1]) for k, v in tr.items() if k[0] == act)
            small = _final_text(tr[(act, "small")])
            out.append(f"In training ({_act(act)}), small init ended at {small} test accuracy; the best "
                       f"start, {scheme_label(best[1])}, at {fmt(best[0])}.")
    return out if len(out) > 1 else ["The forward experiment did not include the small scheme."]


def _sigmoid_small(st: dict[str, dict[int, float]], s: float, n: int, L: int) -> str:
    """Why sigmoid's activation std does not collapse under small weights while its gradient does."""
    std, mu = st["std"], st.get("mean", {})
    m = mean(mu) or 0.5
    z = math.sqrt(n) * s * m  # the pre-activation spread that the activations' mean alone gives
    text = _words(f"""Sigmoid is different: its activations have mean {fmt(m, 2)}, not 0, and that mean
        alone gives each next pre-activation a spread of about √{n} · {s:g} · {fmt(m, 2)} = {z:.2g}, one fixed
        offset per unit, so the activation std settles near {z / 4:.2g} (sigmoid's slope at 0 is 1/4) instead
        of collapsing: from {fmt(std[min(std)])} at layer {min(std)} to {fmt(std[max(std)])} at layer
        {max(std)} (ratio {fmt(ratio(std))}).""")
    grad = st.get("grad_std", {})
    if grad:
        back = math.sqrt(n) * s / 4
        text += " " + _words(f"""Only the gradient vanishes: each layer multiplies it by about √{n} · {s:g}
            · 1/4 = {back:.3g}, {back ** (L - 1):.2g} over the depth; measured ratio
            {fmt(ratio(grad, top=False))}.""")
    return text


def _preactivation_std(st: dict[str, dict[int, float]], cfg: Any) -> list[float]:
    """Pre-activation std per layer under N(0, 1) weights: layer 1 sums ``in_features`` inputs of
    variance 1; layer l sums ``width`` activations of second moment std² + mean² of layer l - 1."""
    std, mu = st.get("std", {}), st.get("mean", {})
    out = [math.sqrt(cfg.in_features)]
    for layer in range(2, cfg.depth + 1):
        if layer - 1 in std:
            out.append(math.sqrt(cfg.width * (std[layer - 1] ** 2 + mu.get(layer - 1, 0.0) ** 2)))
    return out


def saturation(fw: dict, cfg: Any) -> list[str]:
    """Section 3: large weights push tanh and sigmoid into their flat tails."""
    from initlab.probe import Thresholds

    level = Thresholds().saturation_level
    out = []
    for act in ("tanh", "sigmoid"):
        st = fw.get((act, "large"))
        if not st or "saturation" not in st:
            continue
        pre = _preactivation_std(st, cfg)
        sat, std = st["saturation"], st.get("std", {})
        first, last = min(sat), max(sat)
        text = _words(f"""{_act(act, start=True)}, large weights N(0, 1): a pre-activation sums its inputs
            with weights of std 1.
            Layer 1 has {cfg.in_features} inputs of variance 1, so its pre-activation std is
            √{cfg.in_features}
            = {pre[0]:.3g}; layers 2-{cfg.depth} have {cfg.width} inputs, the previous layer's activations,
            whose measured second moment gives a pre-activation std of {min(pre[1:]):.3g}-{max(pre[1:]):.3g}.
            Either is far in the flat tails: {pct(sat[first])} of the activations are saturated at layer
            {first} and {pct(sat[last])} at layer {last} (mean {pct(mean(sat))}).""")
        if std:
            text += (f" The activation std stays at {fmt(std.get(last))}, so the forward signal looks alive, "
                     "but a saturated unit passes almost no gradient (φ'(z) ≈ 0).")
        out.append(text)
        ref = fw.get((act, "xavier_normal"))
        if ref and "saturation" in ref:
            out.append(f"For comparison, Xavier normal saturates {pct(mean(ref['saturation']))} of the "
                       f"{_act(act)} activations on average.")
    if out:
        out.append(f"Saturated here: |a| > {level:g} for tanh, a outside [{1 - level:.2g}, {level:g}] for "
                   "sigmoid.")
    return out or ["The forward experiment did not include the large scheme with tanh or sigmoid."]


def _in_range(st: dict[str, dict[int, float]]) -> tuple[float | None, bool]:
    """(the summary's propagation factor, whether the run stays in range) of one forward run."""
    factor = propagation_factor(st)
    unhealthy = max([mean(st.get(k)) or 0.0 for k in ("saturation", "dead_fraction")])
    return factor, factor is not None and factor <= IN_RANGE_FACTOR and unhealthy < UNHEALTHY_FRACTION


def _range_sentence(act: str, scheme: str, st: dict[str, dict[int, float]]) -> str:
    std, grad = st["std"], st.get("grad_std", {})
    factor, ok = _in_range(st)
    text = (f"{_act(act, start=True)}, {scheme_label(scheme)}: activation std from {fmt(std[min(std)])} "
            f"(layer {min(std)}) to {fmt(std[max(std)])} (layer {max(std)})")
    if grad:
        text += f", gradient std ratio first / last layer {fmt(ratio(grad, top=False))}"
    return text + (f"; the largest change is a factor {fmt(factor)}: {'in range' if ok else 'out of range'}.")


def xavier(fw: dict) -> list[str]:
    """Section 4: Xavier/Glorot for zero-mean activations (tanh), and why sigmoid is different."""
    import torch

    from initlab.gains import gain

    out = [_words("""Glorot & Bengio (2010) choose Var(W) = 2 / (fan_in + fan_out) so that, for an activation
        that is linear with slope 1 around 0 (tanh), the variance of activations and of back-propagated
        gradients is roughly preserved layer to layer."""), in_range_definition()]
    for act in ("tanh", "sigmoid"):
        for scheme in ("xavier_normal", "auto"):
            st = fw.get((act, scheme))
            if st and "std" in st:
                out.append(_range_sentence(act, scheme, st))
        st = fw.get((act, "xavier_normal"))
        if act == "tanh" and st and "std" in st:
            kept = ("slowly enough to stay in range at this depth" if _in_range(st)[1] else
                    "and at this depth it leaves the range")
            out.append(_words(f"""For z ~ N(0, 1), initlab's tanh gain, {gain('tanh'):.3g}, is the one that
                preserves the second moment through tanh (PyTorch's calculate_gain uses
                {_fraction(torch.nn.init.calculate_gain('tanh'))}); Xavier as published uses gain 1, so
                tanh's std shrinks a little per layer, {kept}."""))
        if act == "sigmoid" and st and st.get("grad_std"):
            grad, mu = st["grad_std"], st.get("mean", {})
            per_layer = ratio(grad, top=False) ** (1.0 / max(len(grad) - 1, 1))
            out.append(_words(f"""Sigmoid is not zero-mean (mean activation {fmt(mean(mu))}) and its slope is
                at most 1/4, so Xavier's assumption fails: the gradient shrinks by a factor
                {1 / per_layer:.2g} per layer here, which is why Glorot & Bengio found sigmoid networks hard
                to train. The figure shows where it fails: the sigmoid histograms from layer 2 on are combs
                of narrow peaks, because every unit receives inputs of mean about {fmt(mean(mu), 2)}, so its
                pre-activation is dominated by its own offset, one peak per unit."""))
    return out


def he(fw: dict, cfg: Any = None) -> list[str]:
    """Section 5: He keeps ReLU networks in range; Xavier loses a factor per layer."""
    out = [_words("""He et al. (2015) note that ReLU zeroes half of its inputs, halving the second moment per
        layer; Var(W) = 2 / fan_in compensates. Xavier (Var(W) = 2 / (fan_in + fan_out) = 1 / fan_in for equal
        fans) therefore loses a factor √2 in std per ReLU layer.""")]
    batch = getattr(cfg, "batch", None)
    inputs = f"every one of the {batch:,} inputs" if batch else "every input"
    for scheme in ("he_normal", "auto"):
        st = fw.get(("relu", scheme))
        if st and "std" in st:
            dead = pct(mean(st.get("dead_fraction")))
            out.append(_range_sentence("relu", scheme, st) + f" Dead units: {dead} on average.")
    zeros = [mean(st.get("zero_fraction")) for (a, _), st in fw.items()
             if a == "relu" and st.get("zero_fraction")]
    out.append(_words(f"""A dead unit is one that outputs 0 for {inputs}: it passes no gradient and never
        recovers. A healthy ReLU unit is 0 for about half of its inputs"""
        + (f" (here {pct(sum(zeros) / len(zeros))} of all ReLU activations, averaged over the starts)"
           if zeros else "")
        + "; the histograms below leave these exact zeros out and give their share in each panel."))
    xa = fw.get(("relu", "xavier_normal"))
    if xa and "std" in xa:
        n = max(xa["std"]) - min(xa["std"])
        out.append(f"ReLU, Xavier normal: ratio {fmt(ratio(xa['std']))} over the same layers (for equal fans "
                   f"after the first layer the derivation predicts (1/√2)^{n} = {fmt(2 ** (-n / 2))}).")
        predicted = {"he_normal": 1.0, "he_uniform": 1.0, "xavier_uniform": 2 ** (-n / 2)}
        scatter = [f"{scheme_label(k)} {fmt(ratio(fw[('relu', k)]['std']))} (predicted {fmt(v)})"
                   for k, v in predicted.items() if fw.get(("relu", k), {}).get("std")]
        if scatter and getattr(cfg, "width", None):
            out[-1] += " " + _words(f"""The prediction is an average over weight draws, and one draw of
                {cfg.width}-unit layers scatters around it: the same run gives {_and(scatter)}.""")
    large = fw.get(("relu", "large"))
    if large and "std" in large:
        out.append(f"ReLU, large weights: ratio {fmt(ratio(large['std']))}: the activations explode.")
    return out


# ---- sections 6-7: training ----------------------------------------------------------------------


def _final_or_zero(run: dict[str, Any]) -> float:
    """A run's final test accuracy for ranking: 0 when it has none (a diverged run's is NaN)."""
    final = run.get("final_test_accuracy")
    return float(final) if final is not None and math.isfinite(final) else 0.0


def _final_text(run: dict[str, Any]) -> str:
    """A run's final test accuracy as text, ``– (diverged)`` for a run whose loss became non-finite."""
    return "– (diverged)" if run.get("diverged") else fmt(run.get("final_test_accuracy"))


def _diverged_text(label: str, run: dict[str, Any]) -> str:
    step = run.get("diverged_step")
    return f"{label} at step {step}" if step is not None else label


def training(records: list[dict[str, Any]], cfg: Any, ds: dict[str, Any]) -> list[str]:
    """Section 6: every start trained on the data, with steps to the target and final accuracy."""
    tr = training_stats(records)
    if not tr:
        return ["The training experiment did not run."]
    out = [_words(f"""A {cfg.depth}-hidden-layer MLP of width {cfg.width} was trained for
        {plural(cfg.epochs, 'epoch')} with SGD (lr {cfg.lr:g}, momentum {cfg.momentum:g}, batch
        {cfg.batch_size}) on {ds['name']} ({ds['n_train']} training / {ds['n_test']} test examples) from each
        start, the test set evaluated {plural(cfg.evals_per_epoch, 'time')} per epoch. "auto (initlab)" is
        initlab's own choice for each layer, made from the activation that layer feeds.""")]
    for act in cfg.activations:
        rows = {k[1]: v for k, v in tr.items() if k[0] == act}
        if not rows:
            continue
        reached = sorted(((v["steps_to_target"] + (v.get("init_steps") or 0), s) for s, v in rows.items()
                          if v.get("steps_to_target") is not None))
        never = [scheme_label(s) for s, v in rows.items() if v.get("steps_to_target") is None]
        diverged = [_diverged_text(scheme_label(s), v) for s, v in rows.items() if v.get("diverged")]
        text = f"{_act(act, start=True)}: "
        if reached:
            text += (f"SGD steps to {fmt(cfg.target_accuracy)} test accuracy: "
                     + ", ".join(f"{scheme_label(s)} {steps_text(rows[s])}" for _, s in reached) + ". ")
        if never:
            text += f"Never reached it: {', '.join(never)}. "
        if diverged:
            text += f"Diverged (the loss became NaN or infinite): {', '.join(diverged)}. "
        text += "Final accuracy: " + ", ".join(
            f"{scheme_label(s)} {_final_text(v)}" for s, v in rows.items()) + "."
        out.append(text)
    default = _default_at_chance(tr, records, cfg)
    if default:
        out.append(default)
    if any(r.get("experiment") == "pretrain" for r in records):
        out.append(_words(f"""Layer-wise pretraining trains an autoencoder per layer
            ({plural(cfg.pretrain_epochs_per_layer, 'epoch')} each) before the supervised training, starting
            from Xavier normal; its steps to the target count those pretraining steps too, and its curve in
            the accuracy figure starts after them. Its reconstruction loss per layer is shown below. LSUV
            starts from orthogonal weights and rescales each layer to unit output variance on a batch of
            training data (two forward passes, no SGD steps)."""))
    return out


def _default_at_chance(tr: dict, records: list[dict[str, Any]], cfg: Any) -> str | None:
    """Why PyTorch's default left the ReLU net at chance, when it did: the variance it draws."""
    from initlab.experiments.common import scheme_spec

    run, chance = tr.get(("relu", "torch_default")), _chance(records)
    final = (run or {}).get("final_test_accuracy")
    if final is None or not math.isfinite(final) or chance is None or final > chance + 0.02:
        return None
    var = cfg.width * scheme_spec("torch_default", (cfg.width, cfg.width)).expected_std ** 2  # fan_in Var(W)
    shrink = math.sqrt(2 / var)
    return _words(f"""PyTorch's default draws weights from U(−1/√fan_in, 1/√fan_in), so
        Var(W) = {_fraction(var)} / fan_in: a ReLU layer keeps fan_in · Var(W) / 2 = {_fraction(var / 2)} of
        the second moment, and the std shrinks by √{_fraction(2 / var)} = {shrink:.3g} per layer,
        {_times(shrink ** (cfg.depth - 1))} times from the first to the last of the {cfg.depth} hidden layers.
        The gradients shrink as fast going back, and the ReLU net stayed at chance (final accuracy
        {fmt(final)}).""")


def depth(records: list[dict[str, Any]], grid: dict[str, Any], claim_section: int = 6) -> list[str]:
    """Section 7: depths x activations x starts, steps to the target and final accuracy."""
    runs = depth_stats(records)
    if not runs:
        return ["The depth experiment did not run."]
    depths = sorted({k[1] for k in runs})
    budget = max((r.get("steps_per_epoch") or 0) for r in runs.values()) * grid.get("epochs", 0)
    target = grid.get("target_accuracy")
    out = [_words(f"""Section {claim_section}'s claim, "the right init trains much faster", is strongest at
        depth. Plain MLPs of width {grid.get('width')} and depth {', '.join(map(str, depths))} were trained
        for {budget} SGD steps (lr {grid.get('lr'):g}, momentum {grid.get('momentum'):g}, batch
        {grid.get('batch_size')}) from Xavier normal, He normal, LSUV and initlab's "auto" start, which for a
        plain MLP picks orthogonal weights scaled so that every layer keeps its input's size, with the bias
        removing a sigmoid's mean. The target is {fmt(target)} test accuracy.""")]
    deepest = depths[-1]
    for act in dict.fromkeys(k[0] for k in runs):
        at = {k[2]: v for k, v in runs.items() if k[0] == act and k[1] == deepest}
        trained = [s for s, v in at.items() if v.get("steps_to_target") is not None]
        text = (f"{_act(act, start=True)} at depth {deepest}: "
                + ", ".join(f"{scheme_label(s)} {_final_text(v)}" for s, v in at.items())
                + " final accuracy; ")
        if trained:
            text += "reached the target: " + ", ".join(
                f"{scheme_label(s)} in {_steps_epochs(at[s])}" for s in trained)
        else:
            text += "none reached the target"
        shallow = {k[2] for k, v in runs.items() if k[0] == act and k[1] == depths[0]
                   and v.get("steps_to_target") is not None}
        text += (f". At depth {depths[0]}, {len(shallow)} of {len(at)} starts reached it"
                 + (f" ({', '.join(scheme_label(s) for s in at if s in shallow)})." if shallow else "."))
        out.append(text)
    return out


def _steps_epochs(run: dict[str, Any]) -> str:
    """``"21 steps (0.33 epochs)"``: a run's steps to the target, its start's own steps included."""
    total = int(run["steps_to_target"]) + int(run.get("init_steps") or 0)
    spe = run.get("steps_per_epoch")
    return f"{plural(total, 'step')}" + (f" ({plural(float(f'{total / spe:.2g}'), 'epoch')})" if spe else "")


# ---- the summary's explanations --------------------------------------------------------------------


def explanations(rows: list[dict[str, Any]], records: list[dict[str, Any]]) -> list[dict[str, str]]:
    """One explanation per summary row that does not plainly agree (``"disagree ..."``, an
    ``"agree (...)"`` or a tie at chance): what was measured, and why the rule of thumb and this run
    can differ. Each item has ``id`` (``why-<activation>-<evidence>``), ``title`` and ``text``.

    >>> explanations([{"activation": "relu", "evidence": "training", "verdict": "agree"}], [])
    []
    """
    fw = forward_stats(records)
    out = []
    for r in rows:
        verdict = r.get("verdict", "")
        if verdict == "agree":
            continue
        act, evidence = r["activation"], r["evidence"]
        if evidence == "signal propagation":
            text = _why_signal(r, fw)
        elif verdict == TIE_AT_CHANCE:
            text = _why_tie_at_chance(r)
        elif evidence.startswith("training"):
            rule_s, best_s = r.get("rule_scheme"), r.get("best_classic_scheme") or r.get("best_scheme")
            text = _words(f"""The score is the mean test accuracy over training (area under the accuracy
                curve). {scheme_label(rule_s)} scored {fmt(r.get('rule_value'))}, {scheme_label(best_s)}
                {fmt(r.get('best_classic_value'))}; the best start with auto included,
                {scheme_label(r['best_scheme'])}, {fmt(r.get('best_value'))}. A gap within two standard errors
                of an accuracy difference on this test set is a tie. This is one seed and a short run with one
                learning rate; run again with another --seed to see whether the gap persists.""")
        else:
            text = (f"{_cap(r.get('criterion', ''))}. The rule holds when constant init keeps one distinct "
                    "unit per layer and zero init ends at least 10 points below the best start.")
        out.append({"id": f"why-{act}-{evidence.replace(' ', '-')}",
                    "title": f"{_act(act, start=True)}, {evidence}: {verdict}", "text": text})
    return out


def _why_signal(r: dict[str, Any], fw: dict) -> str:
    act, rule_s = r["activation"], r.get("rule_scheme")
    in_range = r.get("in_range") or []
    if rule_s in in_range:  # agree, but the best classic scheme is another family's
        classic = r.get("best_classic_scheme")
        return _words(f"""Both {scheme_label(rule_s)} (factor {fmt(r.get('rule_value'))}) and the best classic
            scheme, {scheme_label(classic)} (factor {fmt(r.get('best_classic_value'))}), keep the signal in
            range. The criterion asks whether the rule's scheme is in range, not whether it is the very
            best, so the rule agrees.""")
    st = fw.get((act, rule_s), {})
    fwd, bwd = fmt(ratio(st.get("std", {}))), fmt(ratio(st.get("grad_std", {}), top=False))
    factor = r.get("rule_value")
    text = (f"{scheme_label(rule_s)}: activation std ratio last / first layer {fwd}, gradient ratio first / "
            f"last {bwd}: the largest change is a factor {fmt(factor)}"
            + (f", above {IN_RANGE_FACTOR:g}." if factor is not None and factor > IN_RANGE_FACTOR else
               f"; {UNHEALTHY_FRACTION:.0%} or more of the units are saturated or dead."))
    if act == "sigmoid":
        text += " " + _words("""Xavier's derivation assumes a zero-mean activation with slope 1 at 0; sigmoid
            has mean 0.5 and slope at most 1/4, so the gradient shrinks at every layer (section 4). The rule
            'Xavier for sigmoid' is a convention, not a variance-preserving choice.""")
    best = r["best_scheme"]
    if best in in_range:
        text += f" {_cap(scheme_label(best))} keeps it in range (factor {fmt(r.get('best_value'))})."
    else:
        text += (f" No start keeps it in range; the smallest change is {scheme_label(best)}'s (factor "
                 f"{fmt(r.get('best_value'))}).")
    return text


def _why_tie_at_chance(r: dict[str, Any]) -> str:
    from initlab.experiments.summary import is_classic

    best = r["best_scheme"]
    classic = [scheme_label(s) for s in r.get("ranking", []) if is_classic(s)]
    trained = (f" Only a start outside the rules trained: {scheme_label(best)} scored "
               f"{fmt(r.get('best_value'))}." if best != r.get("best_classic_scheme") else "")
    rule, top = r.get("rule_scheme"), r.get("best_classic_scheme")
    scores = (f"the best of them, the rule's own {scheme_label(rule)}, scored {fmt(r.get('rule_value'))}"
              if rule == top else
              f"the best of them, {scheme_label(top)}, scored {fmt(r.get('best_classic_value'))} and the "
              f"rule's {scheme_label(rule)} {fmt(r.get('rule_value'))}")
    return _words(f"""Every classic scheme in this comparison ({_and(classic)}) ended the run at chance:
        {scores} (mean test accuracy over training). When no candidate trains, the run cannot say which of
        them is better, so the row is neither agree nor disagree.{trained}""")
