"""Figures of the demo report, drawn from records only, in the one style of
:mod:`initlab.report.style` (size, resolution, fonts, colours).

Each ``fig_*`` function takes the run's records and a directory, writes one PNG there and returns
a :class:`FigureInfo` (or ``None`` when the records hold nothing to draw). This module draws the
forward experiment's figures (sections 2-5 of the report); :mod:`initlab.report.figures_training`
draws those of the symmetry, training and depth experiments. :func:`make_figures` draws them all.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator

from initlab.report import style
from initlab.report.figure_common import FigureInfo, ordered, save_info, scheme_label, select
from initlab.report.figures_training import fig_depth, fig_pretrain, fig_symmetry, fig_training

__all__ = ["FigureInfo", "make_figures", "scheme_label", "fig_histograms", "fig_std", "fig_saturation",
           "fig_symmetry", "fig_training", "fig_pretrain", "fig_depth", "LINE_SKIP"]

#: Schemes the forward figures leave out: the uniform twins of Xavier and He have the same variance
#: and draw on top of their normal twins (their numbers are in the forward table).
LINE_SKIP: tuple[str, ...] = ("xavier_uniform", "he_uniform")


def _short(value: float, _pos: Any = None, scientific: bool | None = None) -> str:
    """A tick label in few characters: ``0``, ``0.8``, ``-0.025``, ``160``, ``1.5e-4``, ``2e4``;
    ``scientific`` forces (``True``) or forbids (``False``) the ``2e4`` form, so one axis shows one
    form (default: values below 0.01 or from 1000 up).

    >>> [_short(v) for v in (0, 0.8, -0.025, 160.0, 1.5e-4, 2e4)], _short(500.0, scientific=True)
    (['0', '0.8', '-0.025', '160', '1.5e-4', '2e4'], '5e2')
    """
    if value == 0:
        return "0"
    if scientific is None:
        scientific = not 0.01 <= abs(value) < 1000
    if not scientific:
        return f"{value:.3g}"
    mantissa, exponent = f"{value:.1e}".split("e")
    return f"{mantissa.replace('.0', '')}e{int(exponent)}"


def _tick_formatter(lo: float, hi: float) -> FuncFormatter:
    """One label form for an axis from ``lo`` to ``hi``: ``2e4`` when its largest value is below
    0.01 or from 1000 up, plain numbers otherwise."""
    top = max(abs(lo), abs(hi))
    scientific = not 0.01 <= top < 1000
    return FuncFormatter(lambda v, pos: _short(v, pos, scientific))


def _nice_below(x: float) -> float:
    """The largest 1, 2 or 5 times a power of ten that is at most ``x`` (> 0).

    >>> _nice_below(0.37), _nice_below(1.6e-5), _nice_below(25.0)
    (0.2, 1e-05, 20.0)
    """
    power = 10.0 ** math.floor(math.log10(x))
    return max(m * power for m in (1.0, 2.0, 5.0) if m * power <= x * (1 + 1e-12))


def _histogram_ticks(ax: Any, lo: float, hi: float) -> None:
    """Ticks at ``-m, 0, m`` on an x range around 0 (the same distance on both sides, both in view),
    three round ticks otherwise; labels in one form (:func:`_tick_formatter`)."""
    if lo < 0 < hi:
        m = _nice_below(0.95 * min(-lo, hi))
        ax.xaxis.set_major_locator(FixedLocator([-m, 0.0, m]))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(3))
    ax.xaxis.set_major_formatter(_tick_formatter(lo, hi))


@style.styled
def fig_histograms(records: list[dict[str, Any]], directory: Path, activation: str) -> FigureInfo | None:
    """Grid of per-layer activation histograms (rows: schemes, columns: layers) for one activation,
    from ``histogram`` records of experiment 1; ``None`` without such records. Each panel has its
    own x range (tick labels: ``-m, 0, m`` around 0, one label form per panel); the y axis (share of
    the activations per bin) is shared by a row. Exact zeros (``zero_fraction``: half of a ReLU's
    outputs) are left out of their bin, which would dwarf the rest, and their share written in the
    panel.

    >>> fig_histograms([], Path("."), "tanh") is None
    True
    """
    hist = [r for r in select(records, experiment="forward", activation=activation, stat="histogram")
            if r["scheme"] not in LINE_SKIP]
    if not hist:
        return None
    zeros = {(r["scheme"], r["layer"]): float(r["value"]) for r in
             select(records, experiment="forward", activation=activation, stat="zero_fraction")
             if r["value"] is not None}
    schemes = ordered(r["scheme"] for r in hist)
    layers = sorted({r["layer"] for r in hist})
    fig, axes = style.figure(len(schemes), len(layers), panel_height=1.55, sharey="row")
    groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for r in hist:
        groups[(r["scheme"], r["layer"])].append(r)
    for i, scheme in enumerate(schemes):
        for j, layer in enumerate(layers):
            ax = axes[i][j]
            rows = sorted(groups[(scheme, layer)], key=lambda r: r["bin"])
            if rows:
                edges = [rows[0]["bin_lo"]] + [r["bin_hi"] for r in rows]
                values = [r["value"] for r in rows]
                zero = zeros.get((scheme, layer))
                if zero:  # exact zeros (half of a ReLU's outputs) would dwarf the rest: leave them out
                    at = next((k for k, r in enumerate(rows) if r["bin_lo"] <= 0.0 < r["bin_hi"]), 0)
                    values[at] = max(0.0, values[at] - zero)
                    ax.annotate(f"{zero:.0%} at 0\n(not drawn)", (0.97, 0.95), xycoords="axes fraction",
                                ha="right", va="top", fontsize=style.FONT_PT["annotation"])
                ax.stairs(values, edges, fill=True, color=style.scheme_color(scheme), alpha=0.85)
                ax.set_xlim(edges[0], edges[-1])
                _histogram_ticks(ax, edges[0], edges[-1])
            ax.yaxis.set_major_locator(MaxNLocator(3))
            ax.grid(False)
            if i == 0:
                ax.set_title(f"layer {layer}")
            if j == 0:
                ax.set_ylabel(scheme_label(scheme), fontweight="bold")
    fig.supylabel("share of the activations in each bin", x=0.005, ha="left")
    fig.supxlabel("activation value (each panel has its own range)", y=0.005, va="bottom")
    fig.suptitle(f"{activation}: activation histograms per layer, N(0, 1) input"
                 + (" (exact zeros left out)" if zeros else ""))
    style.grid_layout(fig, suptitle=True, supxlabel=True, supylabel=True)
    return save_info(fig, directory, f"forward_histograms_{activation}.png",
                     f"Activation histograms, {activation}", "forward",
                     f"Histograms of the {activation} activations of layers {layers[0]}-{layers[-1]}, "
                     "one row per scheme")


def _forward_lines(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[tuple[int, float]]]:
    lines: dict[tuple[str, str, str], list[tuple[int, float]]] = defaultdict(list)
    for r in rows:
        if r["scheme"] not in LINE_SKIP and r["value"] is not None:
            lines[(r["activation"], r["scheme"], r["stat"])].append((r["layer"], float(r["value"])))
    return {k: sorted(v) for k, v in lines.items()}


@style.styled
def fig_std(records: list[dict[str, Any]], directory: Path) -> FigureInfo | None:
    """Activation std (forward, left) and back-propagated gradient std (backward, right) against
    layer, one row per activation, log scale, a legend beside every panel; ``None`` without
    experiment-1 records.

    >>> fig_std([], Path(".")) is None
    True
    """
    rows = [r for r in records if r.get("experiment") == "forward" and r["stat"] in ("std", "grad_std")]
    if not rows:
        return None
    lines = _forward_lines(rows)
    activations = ordered(r["activation"] for r in rows)
    schemes = ordered(r["scheme"] for r in rows if r["scheme"] not in LINE_SKIP)
    layers = sorted({r["layer"] for r in rows})
    fig, axes = style.figure(len(activations), 2, panel_height=2.7)
    for i, act in enumerate(activations):
        for j, stat in enumerate(("std", "grad_std")):
            ax = axes[i][j]
            for scheme in schemes:
                pts = lines.get((act, scheme, stat))
                if pts:
                    ax.plot([p[0] for p in pts], [max(p[1], 1e-30) for p in pts], marker="o",
                            color=style.scheme_color(scheme), label=scheme_label(scheme))
            style.log_scale(ax, "y")
            ax.set_xticks(layers)
            ax.set_xlabel("layer")
            ax.set_ylabel("activation std" if stat == "std" else "std of dL/d(activation)")
            ax.set_title(f"{act}: {'forward' if stat == 'std' else 'backward'}")
            style.legend(ax, outside=True)
    return save_info(fig, directory, "forward_std.png", "Std against layer, forward and backward", "forward",
                     "Per-layer activation std (left) and back-propagated gradient std (right), log scale, "
                     "one row per activation, one line per scheme")


@style.styled
def fig_saturation(records: list[dict[str, Any]], directory: Path) -> FigureInfo | None:
    """Saturated fraction (tanh, sigmoid) and dead-unit fraction (ReLU) against layer, one legend
    below the panels (inside one it would hide lines).

    >>> fig_saturation([], Path(".")) is None
    True
    """
    rows = [r for r in records if r.get("experiment") == "forward" and r["stat"] in ("saturation",
                                                                                   "dead_fraction")]
    if not rows:
        return None
    lines = _forward_lines(rows)
    activations = ordered(r["activation"] for r in rows)
    schemes = ordered(r["scheme"] for r in rows if r["scheme"] not in LINE_SKIP)
    fig, axes = style.figure(1, len(activations), panel_height=3.6)
    for ax, act in zip(axes[0], activations, strict=True):
        stat = "dead_fraction" if act == "relu" else "saturation"
        for scheme in schemes:
            pts = lines.get((act, scheme, stat))
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o",
                        color=style.scheme_color(scheme), label=scheme_label(scheme))
        ax.set_ylim(-0.03, 1.03)
        ax.set_xticks(sorted({r["layer"] for r in rows}))
        ax.set_xlabel("layer")
        ax.set_ylabel("dead unit fraction" if stat == "dead_fraction" else "saturated fraction")
        ax.set_title(act)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if handles:  # one legend for the three panels, below them: it hides no line
        fig.legend(handles, labels, loc="outside lower center", ncol=len(labels),
                   fontsize=style.FONT_PT["legend"])
    return save_info(fig, directory, "forward_saturation.png", "Saturation and dead units", "forward",
                     "Fraction of saturated tanh/sigmoid activations and of dead ReLU units per layer")


def make_figures(records: list[dict[str, Any]], directory: str | Path) -> list[FigureInfo]:
    """Write every figure the records support into ``directory`` (created if missing) and return
    their :class:`FigureInfo` in report order.

    >>> make_figures([], "/tmp/initlab-empty-figures")
    []
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    figs: list[FigureInfo | None] = []
    for act in ordered(r["activation"] for r in records if r.get("experiment") == "forward"):
        figs.append(fig_histograms(records, directory, act))
    figs += [fig_std(records, directory), fig_saturation(records, directory),
             fig_symmetry(records, directory)]
    figs += fig_training(records, directory)
    figs += [fig_pretrain(records, directory), fig_depth(records, directory)]
    return [f for f in figs if f is not None]
