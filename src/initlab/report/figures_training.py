"""Figures of the demo report's symmetry, training, pretraining and depth sections, drawn from
records only in the style of :mod:`initlab.report.style`."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from matplotlib.ticker import MaxNLocator

from initlab.report import style
from initlab.report.figure_common import FigureInfo, ordered, save_info, scheme_label, select

__all__ = ["fig_symmetry", "fig_training", "fig_pretrain", "fig_depth", "DIVERGED_LOSS_FACTOR",
           "MAX_LEGEND"]

#: A training loss above this many times the chance loss ``ln(n_classes)`` is drawn clipped and
#: marked (a diverged or exploded run would flatten every other curve).
DIVERGED_LOSS_FACTOR = 10.0

#: Above this many lines a panel shows a colour bar instead of a legend.
MAX_LEGEND = 12


def _bar_labels(ax: Any, xs: list[float], values: list[float], fmt: str) -> None:
    for x, v in zip(xs, values, strict=True):
        ax.annotate(format(v, fmt), (x, v), xytext=(0, 2), textcoords="offset points", ha="center",
                    va="bottom", fontsize=style.FONT_PT["annotation"])


@style.styled
def fig_symmetry(records: list[dict[str, Any]], directory: Path) -> FigureInfo | None:
    """After training, per hidden layer and init, with and without dropout (columns): the distinct
    units, counting units closer than ``relative_tol`` of a unit's norm as one (top row), and the
    units' spread relative to their size (bottom row, :func:`initlab.experiments.unit_spread`).

    >>> fig_symmetry([], Path(".")) is None
    True
    """
    counts = select(records, experiment="symmetry", stat="distinct_units_relative")
    spread = select(records, experiment="symmetry", stat="unit_spread")
    if not counts:
        return None
    last = max(r["epoch"] for r in counts)
    counts = [r for r in counts if r["epoch"] == last]
    dropouts = sorted({r["dropout"] for r in counts})
    schemes = ordered(r["scheme"] for r in counts)
    layers = sorted({r["layer"] for r in counts})
    width = max(r.get("width") or 1 for r in counts)
    tol = counts[0].get("relative_tol", 0.1)
    value = {(r["stat"], r["dropout"], r["scheme"], r["layer"]): r["value"] for r in counts + spread}
    fig, axes = style.figure(2, len(dropouts), panel_height=3.0)
    bar_w = 0.8 / max(len(schemes), 1)
    for j, p in enumerate(dropouts):
        for i, (stat, fmt) in enumerate((("distinct_units_relative", "d"), ("unit_spread", ".2g"))):
            ax = axes[i][j]
            for k, scheme in enumerate(schemes):
                vals = [value.get((stat, p, scheme, layer), 0) or 0 for layer in layers]
                xs = [n + (k - (len(schemes) - 1) / 2) * bar_w for n in range(len(layers))]
                ax.bar(xs, vals, width=bar_w, color=style.scheme_color(scheme), label=scheme_label(scheme))
                _bar_labels(ax, xs, [int(v) if fmt == "d" else v for v in vals], fmt)
            ax.set_xticks(range(len(layers)), [f"hidden layer {layer}" for layer in layers])
            ax.grid(False, axis="x")
            if stat == "distinct_units_relative":
                ax.set_ylim(0, width * 1.45)
                ax.set_ylabel(f"distinct units (of {width})")
                ax.set_title(("no dropout" if p == 0 else f"dropout p = {p:g}")
                             + f": distinct units ({tol:.0%} tolerance)")
            else:
                ax.set_ylim(0, 1.45)
                ax.set_ylabel("spread / unit size")
                ax.set_title(("no dropout" if p == 0 else f"dropout p = {p:g}") + ": spread of the units")
            style.legend(ax, loc="upper left", ncol=len(schemes))
    return save_info(fig, directory, "symmetry.png", "Distinct hidden units after training", "symmetry",
                     "Bar charts: distinct hidden units per layer after training (top) and how far apart the "
                     "units are relative to their size (bottom), without and with dropout")


def _curves(rows: list[dict[str, Any]], x: str) -> dict[tuple[str, str], list[tuple[float, Any]]]:
    out: dict[tuple[str, str], list[tuple[float, Any]]] = defaultdict(list)
    for r in rows:
        out[(r["activation"], r["scheme"])].append((r[x], r["value"]))
    return {k: sorted(v, key=lambda t: t[0]) for k, v in out.items()}


#: How the end of a run whose loss became NaN or infinite is drawn.
DIVERGED_END = "X"
#: Accuracy curves within this of chance count as "at chance" (and overlap on the page).
AT_CHANCE = 0.02


def _run_info(records: list[dict[str, Any]], experiment: str) -> dict[tuple[str, str], dict[str, Any]]:
    """Per ``(activation, scheme)`` of ``experiment``: ``diverged_step`` (the SGD step whose loss
    was not finite, when the run diverged), ``steps_per_epoch`` and ``init_steps``."""
    out: dict[tuple[str, str], dict[str, Any]] = defaultdict(dict)
    for r in records:
        if r.get("experiment") != experiment:
            continue
        if r.get("stat") == "diverged" and r.get("value"):
            out[(r["activation"], r["scheme"])]["diverged_step"] = r.get("step")
        elif r.get("stat") == "steps_to_target":
            out[(r["activation"], r["scheme"])].update(steps_per_epoch=r.get("steps_per_epoch"),
                                                       init_steps=r.get("init_steps") or 0)
    return out


def _diverged_label(label: str, step: Any) -> str:
    return f"{label}: diverged (loss not finite)" + (f" at step {step}" if step is not None else "")


def _chance_of(records: list[dict[str, Any]]) -> float | None:
    loss = next((r["chance_loss"] for r in records if r.get("chance_loss")), None)
    return None if loss is None else 1.0 / round(math.exp(float(loss)))


def _chance_line(ax: Any, chance: float, at_chance: list[str]) -> None:
    """The chance level, labelled; starts whose curves lie on it (and so hide each other) named."""
    note = (f": {len(at_chance)} starts here, overlapping ({', '.join(at_chance)})" if len(at_chance) > 1
            else "")
    style.target_line(ax, chance, f"chance {chance:g}{note}", below=True)


@style.styled
def fig_training(records: list[dict[str, Any]], directory: Path) -> list[FigureInfo]:
    """Test accuracy against epoch (evaluated several times per epoch; the target and chance
    labelled, the starts that stay at chance named; a diverged run ends in an ``X`` and says at which
    step; layer-wise pretraining's label gives the pretraining steps before its epoch 0) and train
    loss per epoch (:func:`_fig_loss`): two figures, or none without experiment-3 records.

    >>> fig_training([], Path("."))
    []
    """
    acc = select(records, experiment="training", stat="test_accuracy_at_step")
    if not acc:
        return []
    activations = ordered(r["activation"] for r in acc)
    schemes = ordered(r["scheme"] for r in acc)
    target = next((r.get("target") for r in records if r.get("experiment") == "training"
                   and r.get("stat") == "steps_to_target"), None)
    info, chance = _run_info(records, "training"), _chance_of(records)
    curves = _curves(acc, "epoch")
    fig, axes = style.figure(len(activations), 1, panel_height=3.2)
    for ax, act in zip(axes[:, 0], activations, strict=True):
        at_chance = []
        for scheme in schemes:
            pts, run = curves.get((act, scheme)), info.get((act, scheme), {})
            if not pts:
                continue
            label, color = scheme_label(scheme), style.scheme_color(scheme)
            if run.get("init_steps"):
                label += f" (after {run['init_steps']} pretraining steps)"
            if "diverged_step" in run:
                step, spe = run["diverged_step"], run.get("steps_per_epoch")
                end = step / spe if step is not None and spe else pts[-1][0]
                ax.plot([p[0] for p in pts] + [end], [p[1] for p in pts] + [pts[-1][1]], color=color)
                ax.plot([end], [pts[-1][1]], DIVERGED_END, color=color, ms=9, markeredgecolor="black",
                        ls="none", label=_diverged_label(label, step), zorder=5)
                continue
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color=color, label=label)
            if chance is not None and all(abs(p[1] - chance) <= AT_CHANCE for p in pts):
                at_chance.append(label)
        if target is not None:
            style.target_line(ax, target, f"target {target:g}")
        if chance is not None:
            _chance_line(ax, chance, at_chance)
        ax.set_ylim(0, 1)
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy")
        ax.set_title(act)
        style.legend(ax, outside=True)
    out = [save_info(fig, directory, "training_accuracy.png", "Test accuracy during training", "training",
                     "Test accuracy against epoch for each start; dotted lines: the target accuracy and "
                     "chance; a cross: a run whose loss became NaN or infinite")]
    loss = [r for r in select(records, experiment="training", stat="train_loss") if r["value"] is not None]
    if loss:
        out.append(_fig_loss(loss, activations, schemes, directory, info))
    return out


def _fig_loss(loss: list[dict[str, Any]], activations: list[str], schemes: list[str], directory: Path,
              info: dict[tuple[str, str], dict[str, Any]]) -> FigureInfo:
    """Train loss per epoch, log scale: a loss above :data:`DIVERGED_LOSS_FACTOR` times the chance
    loss clipped and marked; a diverged run not drawn as a loss but as an ``X`` on the top edge at
    the epoch it diverged in, its legend entry naming the step."""
    chance = max((r.get("chance_loss") or math.log(10)) for r in loss)
    limit = DIVERGED_LOSS_FACTOR * chance
    curves = _curves(loss, "epoch")
    fig, axes = style.figure(len(activations), 1, panel_height=3.2)
    for ax, act in zip(axes[:, 0], activations, strict=True):
        for scheme in schemes:
            run, color = info.get((act, scheme), {}), style.scheme_color(scheme)
            pts = [(e, v) for e, v in curves.get((act, scheme), []) if v is None or not math.isnan(v)]
            if "diverged_step" in run:  # its last epoch's mean loss covers a few steps before the NaN
                step, spe = run["diverged_step"], run.get("steps_per_epoch")
                epoch = math.ceil(step / spe) if step is not None and spe else (pts[-1][0] if pts else 1)
                kept = [p for p in pts if p[0] < epoch]
                if kept:
                    style.plot_clipped(ax, [p[0] for p in kept], [p[1] for p in kept], limit, marker="o",
                                       color=color, label=None, clip_label=f"off scale: loss > {limit:.3g}")
                ax.plot([epoch], [limit], DIVERGED_END, color=color, ms=9, markeredgecolor="black", ls="none",
                        label=_diverged_label(scheme_label(scheme), step), clip_on=False, zorder=5)
            elif pts:
                style.plot_clipped(ax, [p[0] for p in pts], [p[1] for p in pts], limit, marker="o",
                                   color=color, label=scheme_label(scheme),
                                   clip_label=f"off scale: loss > {limit:.3g}")
        style.target_line(ax, chance, f"chance level ln(classes) = {chance:.2f}")
        style.log_scale(ax, "y")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("mean train loss (cross-entropy)")
        ax.set_title(act)
        style.legend(ax, outside=True)
    return save_info(fig, directory, "training_loss.png", "Training loss per epoch", "training",
                     f"Mean training cross-entropy per epoch for each start, log scale; values above "
                     f"{limit:.3g} are drawn on the top edge as triangles, a run whose loss became NaN or "
                     "infinite as a cross")


@style.styled
def fig_pretrain(records: list[dict[str, Any]], directory: Path) -> FigureInfo | None:
    """Layer-wise pretraining: reconstruction loss per epoch, one line per layer, one panel per
    activation (a legend up to :data:`MAX_LEGEND` layers, a colour bar over the layer index beyond);
    ``None`` without ``pretrain`` records.

    >>> fig_pretrain([], Path(".")) is None
    True
    """
    rows = select(records, experiment="pretrain", stat="reconstruction_loss")
    if not rows:
        return None
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    activations = ordered(r["activation"] for r in rows)
    fig, axes = style.figure(1, len(activations), panel_height=3.6)
    cmap = colormaps["viridis"]
    for ax, act in zip(axes[0], activations, strict=True):
        sub = [r for r in rows if r["activation"] == act]
        layers = ordered(r["layer"] for r in sub)
        for k, layer in enumerate(layers):
            pts = sorted((r["epoch"], r["value"]) for r in sub if r["layer"] == layer)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=str(layer),
                    color=cmap(k / max(len(layers) - 1, 1)))
        style.log_scale(ax, "y")
        ax.set_xlabel("pretraining epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("reconstruction loss (MSE)")
        ax.set_title(f"{act}: autoencoder per layer")
        if len(layers) <= MAX_LEGEND:
            style.legend(ax, outside=True, title="layer")
        else:  # one legend entry per layer would not fit: a colour bar over the layer index
            bar = fig.colorbar(ScalarMappable(Normalize(1, len(layers)), cmap), ax=ax)
            bar.set_label("layer (1 = first hidden)")
    return save_info(fig, directory, "pretrain_reconstruction.png",
                     "Layer-wise pretraining: reconstruction loss", "training",
                     "Reconstruction loss per pretraining epoch, one line per layer")


@style.styled
def fig_depth(records: list[dict[str, Any]], directory: Path) -> FigureInfo | None:
    """The depth experiment: final test accuracy (top row) and steps to the target (bottom row; the
    start's own steps included; a run that never reached it drawn as a cross on the budget line)
    against depth, one column per activation, one line per start, each start's points shifted a
    little sideways so that equal values stay visible; starts that end at chance at the same depth
    are named in the title (the page's caption). One legend for all panels: the starts, the crosses,
    the target and the budget.

    >>> fig_depth([], Path(".")) is None
    True
    """
    final = select(records, experiment="depth", stat="final_test_accuracy")
    if not final:
        return None
    steps = {(r["activation"], r["scheme"], r["depth"]): r for r in
             select(records, experiment="depth", stat="steps_to_target")}
    activations = ordered(r["activation"] for r in final)
    schemes = ordered(r["scheme"] for r in final)
    depths = sorted({r["depth"] for r in final})
    target = next(iter(steps.values()), {}).get("target")
    budget = max((r.get("steps_per_epoch") or 0) for r in steps.values()) * max(
        (r["epoch"] or 0) for r in final)
    acc = {(r["activation"], r["scheme"], r["depth"]): r["value"] for r in final}
    chance = _chance_of(select(records, experiment="depth"))
    fig, axes = style.figure(2, len(activations), panel_height=3.1)
    notes: list[str] = []
    for j, act in enumerate(activations):
        top, bottom = axes[0][j], axes[1][j]
        for scheme in schemes:
            color = style.scheme_color(scheme)
            dodge = (schemes.index(scheme) - (len(schemes) - 1) / 2) * 0.02 * (depths[-1] - depths[0] or 1)
            ys = [acc.get((act, scheme, d)) for d in depths]
            top.plot([d + dodge for d in depths], [math.nan if y is None else y for y in ys], marker="o",
                     color=color)
            _steps_line(bottom, depths, [steps.get((act, scheme, d)) for d in depths], budget, color, dodge)
        if target is not None:
            top.axhline(target, color="black", ls="--", lw=1.0, zorder=1)
        if chance is not None:
            style.target_line(top, chance, f"chance {chance:g}", below=True)
            overlap = _overlapping_at_chance(acc, act, schemes, depths, chance)
            if len(overlap) > 1:
                notes.append(f"{act}: {', '.join(overlap[:-1])} and {overlap[-1]} end at chance and overlap")
        bottom.axhline(budget, color="black", ls=":", lw=1.2, zorder=1)
        top.set_ylim(0, 1)
        top.set_ylabel("final test accuracy")
        top.set_title(act)
        bottom.set_ylim(0, budget * 1.12)
        bottom.set_ylabel(f"steps to {target:g} accuracy" if target is not None else "steps to target")
        bottom.set_title(f"{act}: steps to the target")
        for ax in (top, bottom):
            ax.set_xticks(depths)
            ax.set_xlabel("depth (hidden layers)")
    _depth_legend(fig, schemes, budget, target)
    title = "Depth: final accuracy and steps to the target" + (f" ({'; '.join(notes)})" if notes else "")
    return save_info(fig, directory, "depth.png", title, "depth",
                     "Final test accuracy and steps to the target accuracy against depth, one panel per "
                     "activation, one line per start")


def _depth_legend(fig: Any, schemes: list[str], budget: int, target: float | None) -> None:
    """One legend below all panels of the depth figure: the starts, the cross of a run that never
    reached the target, and the target line."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=style.scheme_color(s), marker="o", label=scheme_label(s))
               for s in schemes]
    handles.append(Line2D([], [], color="grey", marker="x", ms=9, mew=2, ls="none",
                          label=f"never reached the target within the budget ({budget} steps, dotted line)"))
    if target is not None:
        handles.append(Line2D([], [], color="black", ls="--", lw=1.0,
                              label=f"target: {target:g} test accuracy"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4),
               fontsize=style.FONT_PT["legend"])


def _overlapping_at_chance(acc: dict[tuple[str, str, int], Any], act: str, schemes: list[str],
                           depths: list[int], chance: float) -> list[str]:
    """The starts that end at chance at a depth where another start does too (their points coincide)."""
    names: list[str] = []
    for d in depths:
        here = [s for s in schemes if acc.get((act, s, d)) is not None
                and abs(float(acc[(act, s, d)]) - chance) <= AT_CHANCE]
        if len(here) > 1:
            names += [scheme_label(s) for s in here if scheme_label(s) not in names]
    return names


def _steps_line(ax: Any, depths: list[int], rows: list[dict[str, Any] | None], budget: int, color: str,
                dodge: float) -> None:
    """Steps to the target against depth; runs that never reached it as crosses on the budget line,
    shifted by ``dodge`` (x units) so that the starts' points do not hide each other."""
    reached = [(d, r["value"] + (r.get("init_steps") or 0)) for d, r in zip(depths, rows, strict=True)
               if r is not None and r["value"] is not None]
    never = [d for d, r in zip(depths, rows, strict=True) if r is not None and r["value"] is None]
    if reached:
        ax.plot([p[0] + dodge for p in reached], [p[1] for p in reached], marker="o", color=color)
    if never:
        ax.plot([d + dodge for d in never], [budget] * len(never), "x", color=color, ms=9, mew=2,
                clip_on=False)
