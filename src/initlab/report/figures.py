"""Figures of the demo report, drawn from records only (matplotlib, Agg canvas, PNG).

Each ``fig_*`` function takes the run's records and a directory, writes one PNG there and returns
a :class:`FigureInfo` (or ``None`` when the records hold nothing to draw). Figures are built on
``matplotlib.figure.Figure`` with an Agg canvas, so no pyplot state and no display are touched.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.ticker import MaxNLocator, NullLocator

from initlab.experiments.common import SCHEME_LABELS

__all__ = ["FigureInfo", "make_figures", "scheme_label", "FIGURE_DPI", "fig_histograms", "fig_std",
           "fig_saturation", "fig_symmetry", "fig_training", "fig_pretrain"]

FIGURE_DPI = 90

#: Above this many lines a figure shows a colour bar instead of a legend.
_MAX_LEGEND = 12

_COLORS = {
    "zeros": "#7f7f7f", "constant": "#bcbd22", "small": "#1f77b4", "large": "#d62728",
    "torch_default": "#8c564b", "xavier_normal": "#2ca02c", "xavier_uniform": "#98df8a",
    "he_normal": "#9467bd", "he_uniform": "#c5b0d5", "lsuv": "#ff7f0e", "pretrain": "#17becf",
}


@dataclass(frozen=True)
class FigureInfo:
    """One written figure: ``file`` (path relative to the report, e.g. ``figures/x.png``),
    ``title``, ``section`` (the report section it belongs to) and ``alt`` text."""

    file: str
    title: str
    section: str
    alt: str


def scheme_label(scheme: str) -> str:
    """Display name of a scheme.

    >>> scheme_label("he_normal")
    'He normal'
    """
    return SCHEME_LABELS.get(scheme, scheme)


def _color(scheme: str) -> str:
    return _COLORS.get(scheme, "#000000")


def _new_figure(width: float, height: float, layout: str | None = "tight"):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=FIGURE_DPI, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, directory: Path, name: str) -> str:
    path = directory / name
    fig.savefig(path, format="png", dpi=FIGURE_DPI)
    return f"{directory.name}/{name}"


def _select(records: Iterable[dict[str, Any]], **where: Any) -> list[dict[str, Any]]:
    return [r for r in records if all(r.get(k) == v for k, v in where.items())]


def _ordered(values: Iterable[Any]) -> list[Any]:
    seen: dict[Any, None] = {}
    for v in values:
        seen.setdefault(v, None)
    return list(seen)


def fig_histograms(records: list[dict[str, Any]], directory: Path, activation: str) -> FigureInfo | None:
    """Grid of per-layer activation histograms (rows: schemes, columns: layers) for one activation,
    from ``histogram`` records of experiment 1; ``None`` without such records.

    >>> fig_histograms([], Path("."), "tanh") is None
    True
    """
    hist = _select(records, experiment="forward", activation=activation, stat="histogram")
    if not hist:
        return None
    schemes = _ordered(r["scheme"] for r in hist)
    layers = sorted({r["layer"] for r in hist})
    fig = _new_figure(1.9 * len(layers) + 1.0, 1.0 * len(schemes) + 0.6, layout=None)
    axes = fig.subplots(len(schemes), len(layers), squeeze=False)
    groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for r in hist:
        groups[(r["scheme"], r["layer"])].append(r)
    for i, scheme in enumerate(schemes):
        for j, layer in enumerate(layers):
            ax = axes[i][j]
            rows = sorted(groups[(scheme, layer)], key=lambda r: r["bin"])
            if rows:
                edges = [rows[0]["bin_lo"]] + [r["bin_hi"] for r in rows]
                ax.stairs([r["value"] for r in rows], edges, fill=True, color=_color(scheme), alpha=0.8)
                ax.text(0.02, 0.97, f"[{edges[0]:.2g}, {edges[-1]:.2g}]", transform=ax.transAxes,
                        fontsize=6, va="top", ha="left", color="#333")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"layer {layer}", fontsize=8)
            if j == 0:
                ax.set_ylabel(scheme_label(scheme), fontsize=7)
    fig.suptitle(f"{activation}: activation histograms per layer (x ~ N(0,1) input; each panel's "
                 "x range in brackets)", fontsize=9)
    fig.subplots_adjust(left=0.08, right=0.99, bottom=0.02, top=0.9, wspace=0.06, hspace=0.12)
    name = f"forward_histograms_{activation}.png"
    return FigureInfo(_save(fig, directory, name), f"Activation histograms, {activation}", "forward",
                      f"Histograms of the {activation} activations of layers {layers[0]}-{layers[-1]} "
                      f"for each scheme")


def fig_std(records: list[dict[str, Any]], directory: Path) -> FigureInfo | None:
    """Activation std (forward, top row) and gradient std (backward, bottom row) against layer, one
    column per activation, log scale; ``None`` without experiment-1 records.

    >>> fig_std([], Path(".")) is None
    True
    """
    rows = [r for r in records if r.get("experiment") == "forward" and r["stat"] in ("std", "grad_std")]
    if not rows:
        return None
    activations = _ordered(r["activation"] for r in rows)
    schemes = _ordered(r["scheme"] for r in rows)
    fig = _new_figure(3.6 * len(activations), 5.6)
    axes = fig.subplots(2, len(activations), squeeze=False)
    for j, act in enumerate(activations):
        for i, stat in enumerate(("std", "grad_std")):
            ax = axes[i][j]
            for scheme in schemes:
                pts = sorted((r["layer"], r["value"]) for r in rows
                             if r["activation"] == act and r["scheme"] == scheme and r["stat"] == stat)
                if pts:
                    ax.plot([p[0] for p in pts], [max(p[1], 1e-30) for p in pts], marker="o", ms=3,
                            color=_color(scheme), label=scheme_label(scheme))
            ax.set_yscale("log")
            ax.yaxis.set_minor_locator(NullLocator())
            ax.set_xticks(sorted({r["layer"] for r in rows}))
            ax.set_xlabel("layer", fontsize=8)
            ax.set_ylabel("activation std" if stat == "std" else "std of dL/d(activation)", fontsize=8)
            ax.set_title(f"{act}: {'forward' if stat == 'std' else 'backward'}", fontsize=9)
            ax.tick_params(labelsize=7)
            ax.grid(True, which="major", alpha=0.3)
    axes[0][0].legend(fontsize=6, loc="best")
    return FigureInfo(_save(fig, directory, "forward_std.png"), "Std against layer, forward and backward",
                      "forward",
                      "Per-layer activation std (top) and backward gradient std (bottom), log scale")


def fig_saturation(records: list[dict[str, Any]], directory: Path) -> FigureInfo | None:
    """Saturated fraction (tanh, sigmoid) and dead-unit fraction (ReLU) against layer.

    >>> fig_saturation([], Path(".")) is None
    True
    """
    rows = [r for r in records if r.get("experiment") == "forward" and r["stat"] in ("saturation",
                                                                                   "dead_fraction")]
    if not rows:
        return None
    activations = _ordered(r["activation"] for r in rows)
    schemes = _ordered(r["scheme"] for r in rows)
    fig = _new_figure(3.6 * len(activations), 3.0)
    axes = fig.subplots(1, len(activations), squeeze=False)[0]
    for ax, act in zip(axes, activations, strict=True):
        stat = "dead_fraction" if act == "relu" else "saturation"
        for scheme in schemes:
            pts = sorted((r["layer"], r["value"]) for r in rows
                         if r["activation"] == act and r["scheme"] == scheme and r["stat"] == stat)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, color=_color(scheme),
                        label=scheme_label(scheme))
        ax.set_ylim(-0.03, 1.03)
        ax.set_xticks(sorted({r["layer"] for r in rows}))
        ax.set_xlabel("layer", fontsize=8)
        ax.set_ylabel("dead unit fraction" if stat == "dead_fraction" else "saturated fraction", fontsize=8)
        ax.set_title(act, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
    axes[-1].legend(fontsize=6, loc="upper left")
    return FigureInfo(_save(fig, directory, "forward_saturation.png"), "Saturation and dead units",
                      "forward",
                      "Fraction of saturated tanh/sigmoid activations and of dead ReLU units per layer")


def fig_symmetry(records: list[dict[str, Any]], directory: Path) -> FigureInfo | None:
    """Distinct hidden units per layer after training, per init, with and without dropout.

    >>> fig_symmetry([], Path(".")) is None
    True
    """
    rows = _select(records, experiment="symmetry", stat="distinct_units")
    if not rows:
        return None
    last = max(r["epoch"] for r in rows)
    rows = [r for r in rows if r["epoch"] == last]
    dropouts = sorted({r["dropout"] for r in rows})
    schemes = _ordered(r["scheme"] for r in rows)
    layers = sorted({r["layer"] for r in rows})
    width = max(r.get("width") or 1 for r in rows)
    fig = _new_figure(3.4 * len(dropouts), 3.0)
    axes = fig.subplots(1, len(dropouts), squeeze=False)[0]
    bar_w = 0.8 / max(len(schemes), 1)
    for ax, p in zip(axes, dropouts, strict=True):
        for k, scheme in enumerate(schemes):
            vals = [next((r["value"] for r in rows if r["dropout"] == p and r["scheme"] == scheme
                          and r["layer"] == layer), 0) for layer in layers]
            xs = [i + (k - (len(schemes) - 1) / 2) * bar_w for i in range(len(layers))]
            ax.bar(xs, vals, width=bar_w, color=_color(scheme), label=scheme_label(scheme))
            for x, v in zip(xs, vals, strict=True):
                ax.text(x, v, str(int(v)), ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(layers)), [f"hidden {layer}" for layer in layers], fontsize=8)
        ax.set_ylim(0, width * 1.4)
        ax.set_ylabel(f"distinct units (of {width})", fontsize=8)
        ax.set_title("no dropout" if p == 0 else f"dropout p={p:g}", fontsize=9)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=6, loc="upper left", ncol=len(schemes))
    return FigureInfo(_save(fig, directory, "symmetry.png"), "Distinct hidden units after training",
                      "symmetry", "Bar chart of the number of distinct hidden units per layer after training")


def fig_training(records: list[dict[str, Any]], directory: Path) -> list[FigureInfo]:
    """Test accuracy against epoch (evaluated several times per epoch) and train loss per epoch: two
    figures, or none without experiment-3 records.

    >>> fig_training([], Path("."))
    []
    """
    acc = _select(records, experiment="training", stat="test_accuracy_at_step")
    if not acc:
        return []
    out = []
    activations = _ordered(r["activation"] for r in acc)
    schemes = _ordered(r["scheme"] for r in acc)
    target = next((r.get("target") for r in records if r.get("stat") == "steps_to_target"), None)
    fig = _new_figure(4.2 * len(activations), 3.3)
    axes = fig.subplots(1, len(activations), squeeze=False)[0]
    for ax, act in zip(axes, activations, strict=True):
        for scheme in schemes:
            pts = sorted((r["epoch"], r["value"]) for r in acc
                         if r["activation"] == act and r["scheme"] == scheme)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], color=_color(scheme),
                        label=scheme_label(scheme), lw=1.4)
        if target is not None:
            ax.axhline(target, color="k", ls=":", lw=0.8)
        ax.set_ylim(0, 1)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel("test accuracy", fontsize=8)
        ax.set_title(act, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
    axes[-1].legend(fontsize=6, loc="lower right")
    out.append(FigureInfo(_save(fig, directory, "training_accuracy.png"), "Test accuracy during training",
                          "training", "Test accuracy against epoch for each scheme; dotted line: target"))
    loss = _select(records, experiment="training", stat="train_loss")
    if loss:
        fig = _new_figure(4.2 * len(activations), 3.3)
        axes = fig.subplots(1, len(activations), squeeze=False)[0]
        for ax, act in zip(axes, activations, strict=True):
            for scheme in schemes:
                pts = sorted((r["epoch"], r["value"]) for r in loss
                             if r["activation"] == act and r["scheme"] == scheme
                             and r["value"] is not None and math.isfinite(r["value"]))
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, color=_color(scheme),
                            label=scheme_label(scheme))
            ax.set_yscale("log")
            ax.yaxis.set_minor_locator(NullLocator())
            ax.set_xlabel("epoch", fontsize=8)
            ax.set_ylabel("mean train loss (cross-entropy)", fontsize=8)
            ax.set_title(act, fontsize=9)
            ax.tick_params(labelsize=7)
            ax.grid(True, alpha=0.3)
        axes[-1].legend(fontsize=6)
        out.append(FigureInfo(_save(fig, directory, "training_loss.png"), "Training loss per epoch",
                              "training", "Mean training cross-entropy per epoch for each scheme, log scale"))
    return out


def fig_pretrain(records: list[dict[str, Any]], directory: Path) -> FigureInfo | None:
    """Layer-wise pretraining: reconstruction loss per epoch, one line per layer, one panel per
    activation (a legend up to 12 layers, a colour bar over the layer index beyond); ``None``
    without ``pretrain`` records.

    >>> fig_pretrain([], Path(".")) is None
    True
    """
    rows = _select(records, experiment="pretrain", stat="reconstruction_loss")
    if not rows:
        return None
    activations = _ordered(r["activation"] for r in rows)
    fig = _new_figure(4.0 * len(activations), 3.2)
    axes = fig.subplots(1, len(activations), squeeze=False)[0]
    for ax, act in zip(axes, activations, strict=True):
        sub = [r for r in rows if r["activation"] == act]
        layers = _ordered(r["layer"] for r in sub)
        for k, layer in enumerate(layers):
            pts = sorted((r["epoch"], r["value"]) for r in sub if r["layer"] == layer)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=str(layer),
                    color=_cmap(k, len(layers)))
        ax.set_yscale("log")
        ax.yaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("pretraining epoch", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("reconstruction loss (MSE)", fontsize=8)
        ax.set_title(f"{act}: autoencoder per layer", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
        if len(layers) <= _MAX_LEGEND:
            ax.legend(fontsize=6, ncol=2)
        else:  # one legend entry per layer would not fit: a colour bar over the layer index
            from matplotlib import colormaps
            from matplotlib.cm import ScalarMappable
            from matplotlib.colors import Normalize

            bar = fig.colorbar(ScalarMappable(Normalize(1, len(layers)), colormaps["viridis"]), ax=ax)
            bar.set_label("layer (1 = first hidden)", fontsize=7)
            bar.ax.tick_params(labelsize=6)
    return FigureInfo(_save(fig, directory, "pretrain_reconstruction.png"),
                      "Layer-wise pretraining: reconstruction loss", "training",
                      "Reconstruction loss per pretraining epoch, one line per layer")


def _cmap(k: int, n: int) -> Any:
    from matplotlib import colormaps

    return colormaps["viridis"](k / max(n - 1, 1))


def make_figures(records: list[dict[str, Any]], directory: str | Path) -> list[FigureInfo]:
    """Write every figure the records support into ``directory`` (created if missing) and return
    their :class:`FigureInfo` in report order.

    >>> make_figures([], "/tmp/initlab-empty-figures")
    []
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    figs: list[FigureInfo | None] = []
    for act in _ordered(r["activation"] for r in records if r.get("experiment") == "forward"):
        figs.append(fig_histograms(records, directory, act))
    figs += [fig_std(records, directory), fig_saturation(records, directory),
             fig_symmetry(records, directory)]
    figs += fig_training(records, directory)
    figs.append(fig_pretrain(records, directory))
    return [f for f in figs if f is not None]
