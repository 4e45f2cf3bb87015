"""Figures of the ``initlab reproduce`` report, drawn from its records only, in the house style
(:mod:`initlab.report.style`): one function per reproduction, each returning the figures it drew
as ``{file, title, section, alt, width, height}`` (``file`` relative to the report root,
``width`` / ``height`` the display size in CSS pixels).

* ``he2015_curves.png`` — test accuracy over SGD steps (median and range over seeds, the target
  line) and test loss per epoch, Xavier vs He.
* ``glorot2010_errors.png`` — test error per activation x init, one panel per data set, each seed
  a dot, the median a bar, the paper's Table 1 (MNIST) as crosses on the MNIST panel.
* ``bengio2007_errors.png`` — test error per arm, one panel per activation, the papers' numbers.
* ``saxe2013_learning_time.png`` — learning time against depth, log-log, orthogonal vs Gaussian.

Values off the panel's scale (a net that learned little or nothing; a learning time past the
budget) are drawn on the panel's edge as :data:`~initlab.report.style.DIVERGED_MARKER`, an error
with its median written under it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from initlab.report import style

__all__ = ["reproduce_figures", "FIGURES"]

Records = list[Mapping[str, Any]]
#: One group of dots on an error panel: (tick label, colour, per-seed values).
Group = tuple[str, str, list[Any]]
#: One error panel: (title, its groups, the paper's values by group index).
Panel = tuple[str, list[Group], dict[int, float]]

_LABELS = {"xavier_normal": "Xavier normal", "he_normal": "He normal", "torch_default": "standard",
           "xavier_uniform": "normalized", "pretrain_autoencoder": "autoencoder", "pretrain_rbm": "RBM",
           "orthogonal": "orthogonal", "gaussian": "Gaussian"}
_PAPER = {"marker": "x", "color": "black", "ms": 8, "mew": 2, "ls": "none"}
#: Colours of the arms that are not schemes of :data:`initlab.report.style.SCHEME_COLORS`.
_COLORS = {"pretrain_autoencoder": style.scheme_color("pretrain"), "pretrain_rbm": "#e377c2",
           "orthogonal": style.scheme_color("he_normal"), "gaussian": style.scheme_color("small")}


def _color(scheme: str) -> str:
    return _COLORS.get(scheme) or style.scheme_color(scheme)


def _fig_legend(fig: Any, axes: Any, ncol: int = 3) -> None:
    """One legend for all panels, below them: every labelled artist once."""
    seen: dict[str, Any] = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    if seen:
        fig.legend(list(seen.values()), list(seen), loc="outside lower center", ncol=ncol,
                   fontsize=style.FONT_PT["legend"])


def _save(fig: Any, directory: Path, name: str, section: str, title: str, alt: str) -> list[dict[str, Any]]:
    width, height = style.save(fig, directory / name)
    return [{"file": f"figures/{name}", "section": section, "title": title, "alt": alt, "width": width,
             "height": height}]


def _ours(records: Records, experiment: str, stat: str) -> list[Mapping[str, Any]]:
    return [r for r in records if r.get("experiment") == experiment and r.get("stat") == stat
            and r.get("source") != "paper"]


def _spread(values: Iterable[Any]) -> tuple[float, float, float]:
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    return (float(np.median(v)), min(v), max(v)) if v else (math.nan, math.nan, math.nan)


def _band(ax: Any, rows: list[Mapping[str, Any]], key: str, color: str, label: str) -> None:
    """Median line and min-max band over seeds of ``rows`` grouped by ``key``."""
    by: dict[float, list[Any]] = {}
    for r in rows:
        by.setdefault(float(r[key]), []).append(r["value"])
    xs = sorted(by)
    stats = [_spread(by[x]) for x in xs]
    ax.plot(xs, [s[0] for s in stats], color=color, label=label)
    if any(len(v) > 1 for v in by.values()):
        ax.fill_between(xs, [s[1] for s in stats], [s[2] for s in stats], color=color, alpha=0.2, lw=0)


def _fig_he2015(records: Records, directory: Path) -> list[dict[str, Any]]:
    acc = _ours(records, "he2015", "test_accuracy_at_step")
    if not acc:
        return []
    fig, axes = style.figure(1, 2)
    left, right = axes[0, 0], axes[0, 1]
    for scheme in ("xavier_normal", "he_normal"):
        color = style.scheme_color(scheme)
        _band(left, [r for r in acc if r["scheme"] == scheme], "step", color, _LABELS[scheme])
        loss = [r for r in _ours(records, "he2015", "test_loss") if r["scheme"] == scheme]
        _band(right, loss, "epoch", color, _LABELS[scheme])
    target = next((r.get("target") for r in _ours(records, "he2015", "steps_to_target")), None)
    if target is not None:
        style.target_line(left, float(target), f"target {float(target):.0%}")
    style.target_line(left, 0.1, "chance 10%")
    left.set_ylim(0.0, 1.0)
    left.set_xlabel("SGD step")
    left.set_ylabel("test accuracy")
    left.set_title("30 ReLU layers: test accuracy (median, range over seeds)")
    style.legend(left, loc="center right")
    right.set_xlabel("epoch")
    right.set_ylabel("test loss (cross-entropy)")
    style.log_scale(right, "y")
    style.target_line(right, math.log(10), "chance: ln 10")
    right.set_title("test loss per epoch")
    style.legend(right, loc="lower left")
    return _save(fig, directory, "he2015_curves.png", "he2015",
                 "30-layer ReLU MLP on Fashion-MNIST: Xavier vs He (median and range over seeds)",
                 "test accuracy over SGD steps and test loss per epoch for Xavier and He initialization")


def _dots(ax: Any, groups: list[Group], paper: dict[int, float], limit: float) -> None:
    """Per group (label, colour, per-seed values) the seeds as dots, the median as a bar; values
    above ``limit`` on the top edge as triangles, with the median written under them (and the
    range over seeds when they differ); ``paper`` (group index -> value) as crosses."""
    clipped_any = False
    for i, (_, color, values) in enumerate(groups):
        vals = [float(v) for v in values if v is not None]
        ys, clipped = style.clip_diverged(vals, limit)
        offsets = np.linspace(-0.12, 0.12, len(ys)) if len(ys) > 1 else np.zeros(len(ys))
        for off, y, c in zip(offsets, ys, clipped, strict=True):
            ax.plot(i + off, y, style.DIVERGED_MARKER if c else "o", color=color, ms=8 if c else 6,
                    markeredgecolor="black" if c else color, clip_on=False, zorder=4)
            clipped_any = clipped_any or c
        if vals:
            med = min(float(np.median(vals)), limit)
            ax.plot([i - 0.28, i + 0.28], [med, med], color=color, lw=2.5, zorder=3)
        off_scale = [v for v, c in zip(vals, clipped, strict=True) if c]
        if off_scale:  # its value, so an off-scale net that learned a little is not read as "did not learn"
            text = f"{np.median(vals):.1f} %"
            if len(off_scale) > 1 and max(off_scale) - min(off_scale) >= 0.05:
                text += f"\n({min(off_scale):.1f}–{max(off_scale):.1f})"
            ax.annotate(text, (i, limit), xytext=(0, -8), textcoords="offset points", ha="center", va="top",
                        fontsize=style.FONT_PT["annotation"], zorder=6)
    xs = sorted(paper)
    if xs:
        ax.plot(xs, [paper[i] for i in xs], label="the paper (MNIST)", zorder=5, **_PAPER)
    if clipped_any:
        ax.plot([], [], style.DIVERGED_MARKER, color="grey", markeredgecolor="black", ls="none",
                label=f"off scale (> {limit:.0f} %), median written below it")
    ax.plot([], [], "o", color="grey", ls="none", label="one seed (bar: median)")
    ax.set_xticks(range(len(groups)), [g[0] for g in groups])
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_ylim(0.0, limit * 1.04)
    ax.set_ylabel("test error (%)")


def _limit(values: Iterable[Any]) -> float:
    """A y ceiling that shows every net that learned: 1.3 x the largest value below 60 %, at least 10."""
    learned = [float(v) for v in values if v is not None and float(v) < 60.0]
    return max(10.0, 1.3 * max(learned)) if learned else 100.0


def _error_panels(errs: Records, panels: list[Panel], directory: Path, name: str, section: str, title: str,
                  alt: str) -> list[dict[str, Any]]:
    """A row of test-error panels sharing their y axis, one per :data:`Panel` (:func:`_dots`), up to
    the ceiling of :func:`_limit` over ``errs``; one legend below; saved as ``figures/name``."""
    fig, axes = style.figure(1, len(panels), panel_height=3.6, sharey=True)
    limit = _limit(r["value"] for r in errs)
    for ax, (panel, groups, paper) in zip(axes[0], panels, strict=True):
        _dots(ax, groups, paper, limit)
        ax.set_title(panel)
    _fig_legend(fig, axes)
    return _save(fig, directory, name, section, title, alt)


def _fig_glorot2010(records: Records, directory: Path) -> list[dict[str, Any]]:
    errs = _ours(records, "glorot2010", "test_error_pct")
    if not errs:
        return []
    paper = {(r["activation"], r["scheme"]): r["value"] for r in records
             if r.get("experiment") == "glorot2010" and r.get("source") == "paper"}
    datasets = sorted({r["dataset"] for r in errs}, key=lambda d: (d != "mnist5k", d))
    keys = list(dict.fromkeys((r["activation"], r["scheme"]) for r in errs))  # the run's order
    init = {r["scheme"]: r.get("init", r["scheme"]) for r in errs}
    panels = []
    for ds in datasets:
        mine = [r for r in errs if r["dataset"] == ds]
        groups = [(f"{a}\n{init[s]}", _color(s),
                   [r["value"] for r in mine if r["activation"] == a and r["scheme"] == s]) for a, s in keys]
        mnist = ds.lower().startswith("mnist")  # the paper's numbers are MNIST's: no crosses on other data
        panels.append((ds, groups, {i: paper[k] for i, k in enumerate(keys) if k in paper} if mnist else {}))
    return _error_panels(errs, panels, directory, "glorot2010_errors.png", "glorot2010",
                         "Test error after training, standard vs normalized init (dots: seeds; bars: "
                         "medians; crosses, on the MNIST panel only: the paper's Table 1)",
                         "test error of softsign, tanh and sigmoid nets under the standard and normalized "
                         "init")


def _fig_bengio2007(records: Records, directory: Path) -> list[dict[str, Any]]:
    errs = _ours(records, "bengio2007", "test_error_pct")
    if not errs:
        return []
    paper = {r["scheme"]: r["value"] for r in records if r.get("experiment") == "bengio2007"
             and r.get("source") == "paper" and str(r.get("where", "")).startswith("Bengio")}
    activations = list(dict.fromkeys(r["activation"] for r in errs))
    arms = list(dict.fromkeys(r["scheme"] for r in errs))
    label = {r["scheme"]: str(r.get("arm", r["scheme"])) for r in errs}
    panels = []
    for act in activations:
        groups = [(label[a].replace(" (", "\n(").replace(" pretraining", "\npretraining"), _color(a),
                   [r["value"] for r in errs if r["activation"] == act and r["scheme"] == a]) for a in arms]
        marks = {i: paper[a] for i, a in enumerate(arms) if a in paper} if act == "sigmoid" else {}
        panels.append((f"{act} net", groups, marks))
    return _error_panels(errs, panels, directory, "bengio2007_errors.png", "bengio2007",
                         "Test error after fine-tuning on the labelled digits, with and without layer-wise "
                         "pretraining (crosses: Bengio et al. 2007, Table 1, full MNIST, sigmoid nets)",
                         "test error per pretraining arm for sigmoid and tanh nets")


def _fig_saxe2013(records: Records, directory: Path) -> list[dict[str, Any]]:
    times = _ours(records, "saxe2013", "learning_time")
    if not times:
        return []
    cap = max(int(r.get("max_steps") or 0) for r in times)
    fig, axes = style.figure(1, 1, width=style.TEXT_WIDTH_IN * 0.75, panel_height=4.0)
    ax = axes[0, 0]
    depths = sorted({int(r["depth"]) for r in times})
    for scheme in ("orthogonal", "gaussian"):
        color = _color(scheme)
        med, lo, hi = [], [], []
        for d in depths:
            vals = [cap * 1.5 if r["value"] is None else float(r["value"]) for r in times
                    if r["scheme"] == scheme and int(r["depth"]) == d]
            m, a, b = _spread(vals)
            med.append(m)
            lo.append(a)
            hi.append(b)
        ys, clipped = style.clip_diverged(med, float(cap))
        ax.errorbar(depths, ys, yerr=[np.maximum(0, np.array(ys) - np.minimum(lo, cap)),
                                      np.maximum(0, np.minimum(hi, cap) - np.array(ys))],
                    color=color, marker="o", capsize=3, label=f"{_LABELS[scheme]} (median, range over seeds)")
        cx = [d for d, c in zip(depths, clipped, strict=True) if c]
        if cx:
            ax.plot(cx, [cap] * len(cx), style.DIVERGED_MARKER, color=color, ms=9, markeredgecolor="black",
                    ls="none", label=f"{_LABELS[scheme]}: not learned within {cap:,} epochs", zorder=5)
    style.target_line(ax, float(cap), f"budget: {cap:,} epochs")
    style.log_scale(ax, "x")
    style.log_scale(ax, "y")
    ax.set_xticks(depths, [str(d) for d in depths])
    ax.set_xlabel("depth (weight matrices)")
    ax.set_ylabel("learning time (epochs)")
    ax.set_title("deep linear nets: epochs to the criterion (best learning rate)")
    style.legend(ax, loc="lower right")
    return _save(fig, directory, "saxe2013_learning_time.png", "saxe2013",
                 "Learning time against depth: orthogonal vs scaled Gaussian weights",
                 "learning time in epochs against depth, log-log, for orthogonal and Gaussian weights")


#: The figure functions, in report order.
FIGURES: tuple[Callable[[Records, Path], list[dict[str, Any]]], ...] = (
    style.styled(_fig_he2015), style.styled(_fig_glorot2010), style.styled(_fig_bengio2007),
    style.styled(_fig_saxe2013))


def reproduce_figures(records: Iterable[Mapping[str, Any]], directory: str | Path) -> list[dict[str, Any]]:
    """Draw every figure the records allow into ``directory`` (created if missing); return
    ``{file, title, section, alt, width, height}`` per figure, in report order.

    Raises:
        ValueError: a figure would not be readable (:func:`initlab.report.style.save`).
    """
    records = list(records)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return [info for fn in FIGURES for info in fn(records, directory)]
