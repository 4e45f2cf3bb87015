"""Figures and tables of a sweep, drawn from its records only (matplotlib, Agg canvas, PNG).

Drawn in the one style of :mod:`initlab.report.style`. The records carry the sweep's axes (the
spec's grid names, and ``seed``) and ``cell``, the cell's key. Figures: heat maps of a cell's
headline number over two numeric axes (a phase grid: test accuracy over sigma_w2 x depth), or
that number against the one numeric axis (a depth study), one panel per value of the other axes,
averaged over seeds; a random search's drawn values fill no grid, so with two numeric axes that
do not either, that number against each of them (a scatter); and curves (train: the evaluated
metric against the step; training: test accuracy against the step; phase: accuracy against depth;
probe: each layer's activation std). A run without a finite value (diverged) keeps its place on the
axes and panels and is marked there. An axis of integers (depth, width, steps, layer index) is ticked
at integers. The table gives, per grid point, the median and the min-max over seeds of every headline
number, and how many seeds reached the target.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from initlab.report import style
from initlab.report.figure_common import FigureInfo, save_info, scheme_label

__all__ = ["per_cell", "grid_axes", "summary_table", "fig_heatmaps", "fig_by_axis", "fig_scatter",
           "fig_curves", "sweep_figures"]

_MAX_PANELS = 12
#: An axis of at most this many integer values is ticked at each of them.
_MAX_EXPLICIT_TICKS = 10
#: Axes whose values are starts (a train or probe sweep's ``init``, a training sweep's ``scheme``):
#: the first present is the series of a line plot, drawn in the scheme's colour and label.
_START_AXES = ("init", "scheme")


def _start_axis(axes: Iterable[str]) -> str | None:
    """The first of :data:`_START_AXES` in ``axes``, else ``None``."""
    axes = list(axes)
    return next((a for a in _START_AXES if a in axes), None)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _spread_wide(values: Iterable[Any]) -> bool:
    """Positive values a factor 8 or more apart: drawn on a log scale."""
    vals = [v for v in values if _finite(v)]
    return bool(vals) and min(vals) > 0 and max(vals) / min(vals) >= 8


def _integer_ticks(ax, values: Iterable[Any], *, at_values: bool = True) -> None:
    """Tick the x axis at integers when ``values`` are all integers (depth, width, step, layer
    index): at each value if ``at_values`` and there are at most :data:`_MAX_EXPLICIT_TICKS`, else
    where ``MaxNLocator(integer=True)`` puts them (on a linear axis); never at 2.5 or 7.5."""
    from matplotlib.ticker import MaxNLocator

    xs = sorted(set(values))
    if not xs or not all(isinstance(v, int) and not isinstance(v, bool) for v in xs):
        return
    if at_values and len(xs) <= _MAX_EXPLICIT_TICKS:
        ax.minorticks_off()
        ax.set_xticks(xs, [str(v) for v in xs])
    elif ax.get_xscale() == "linear":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _sort_key(v: Any) -> tuple:
    return (0, v, "") if _finite(v) else (1, 0, str(v))


def _values(rows: Iterable[Mapping[str, Any]], axis: str) -> list[Any]:
    return sorted({r.get(axis) for r in rows}, key=_sort_key)


def grid_axes(records: Sequence[Mapping[str, Any]], axes: Sequence[str]) -> list[str]:
    """The axes (not ``seed``) that take two or more values in ``records``.

    >>> grid_axes([{"depth": 2, "seed": 0}, {"depth": 4, "seed": 1}], ["depth", "seed"])
    ['depth']
    """
    return [a for a in axes if a != "seed" and len({r.get(a) for r in records}) > 1]


def per_cell(records: Iterable[Mapping[str, Any]], stat: str) -> list[Mapping[str, Any]]:
    """The records of ``stat``, one per cell (the first; a stat a cell records several times, such
    as a per-layer one, is left out for that cell)."""
    seen: dict[Any, list[Mapping[str, Any]]] = defaultdict(list)
    for r in records:
        if r.get("stat") == stat:
            seen[r.get("cell")].append(r)
    return [rows[0] for rows in seen.values() if len(rows) == 1]


def _group(rows: Iterable[Mapping[str, Any]], axes: Sequence[str]) -> dict[tuple, list[Mapping[str, Any]]]:
    out: dict[tuple, list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        out[tuple(r.get(a) for a in axes)].append(r)
    return dict(sorted(out.items(), key=lambda kv: tuple(_sort_key(v) for v in kv[0])))


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def _spread(values: list[float], digits: int = 3) -> tuple[str, str]:
    """``(median, "min–max")`` of the finite values, as text."""
    vals = [v for v in values if _finite(v)]
    if not vals:
        return "–", "–"
    if len(vals) == 1:
        return _fmt(float(vals[0]), digits), "–"
    low, high = _fmt(float(min(vals)), digits), _fmt(float(max(vals)), digits)
    return _fmt(float(statistics.median(vals)), digits), f"{low}–{high}"


def summary_table(records: Sequence[Mapping[str, Any]], axes: Sequence[str],
                  stats: Sequence[str]) -> dict[str, Any] | None:
    """Per grid point (every axis but ``seed``): seeds, then for each stat of ``stats`` recorded
    once per cell its median and min-max over seeds; ``steps_to_target`` also counts the seeds that
    reached the target (a seed that never did is not in its median). When the cells record
    ``diverged`` (train, training, phase), a ``diverged`` column counts the seeds whose loss became
    non-finite (train's and training's accuracies are then NaN, so not in the medians; phase scores
    the broken net's outputs as wrong, 0), and a stat with no finite value at a point where every
    seed diverged reads ``diverged``, not ``–``. ``None`` without such stats.

    >>> t = summary_table([{"cell": "a", "depth": 2, "seed": 0, "stat": "steps_to_target", "value": 40.0},
    ...                    {"cell": "b", "depth": 2, "seed": 1, "stat": "steps_to_target", "value": None}],
    ...                   ["depth", "seed"], ["steps_to_target"])
    >>> t["header"], t["rows"]
    (['depth', 'seeds', 'steps_to_target: reached', 'median', 'min–max'], [['2', '2', '1/2', '40', '–']])
    """
    present = [s for s in stats if per_cell(records, s)]
    if not present:
        return None
    keep = [a for a in axes if a != "seed"]
    cells = {s: _group(per_cell(records, s), keep) for s in present}
    diverged = _group(per_cell(records, "diverged"), keep)
    points = sorted({p for g in cells.values() for p in g}, key=lambda p: tuple(_sort_key(v) for v in p))
    header = [*keep, "seeds"] + (["diverged"] if diverged else [])
    for s in present:
        header += ([f"{s}: reached", "median", "min–max"] if s == "steps_to_target"
                   else [f"{s}: median", "min–max"])
    rows = []
    for p in points:
        n = max(len(g.get(p, [])) for g in cells.values())
        lost = sum(bool(r.get("value")) for r in diverged.get(p, []))
        row = [_fmt(v) for v in p] + [str(n)] + ([f"{lost}/{len(diverged.get(p, []))}"] if diverged else [])
        for s in present:
            vals = [r.get("value") for r in cells[s].get(p, [])]
            if s == "steps_to_target":
                row.append(f"{sum(_finite(v) for v in vals)}/{len(vals)}")
            all_lost = lost and lost == len(vals) and not any(_finite(v) for v in vals)
            row += ["diverged", "–"] if all_lost else list(_spread(vals, 4))
        rows.append(row)
    return {"header": header, "rows": rows}


def _panels(rows: Sequence[Mapping[str, Any]], panel_axes: Sequence[str]) -> list[tuple[str, list]]:
    """Rows split by the values of ``panel_axes`` (at most :data:`_MAX_PANELS` panels), with titles."""
    groups = _group(rows, panel_axes)
    out = [(", ".join(f"{a}={_fmt(v)}" for a, v in zip(panel_axes, key, strict=True)) or "", g)
           for key, g in groups.items()]
    return out[:_MAX_PANELS]


def _subplots(n: int):
    """A styled figure of ``n`` panels, at most three per row (unused panels hidden)."""
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, grid = style.figure(rows, cols)
    axes = list(grid.flat)
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _edges(values: list[float], log: bool) -> list[float]:
    v = [math.log(x) for x in values] if log else list(values)
    if len(v) == 1:
        e = [v[0] - 0.5, v[0] + 0.5]
    else:
        mids = [(a + b) / 2 for a, b in itertools.pairwise(v)]
        e = [v[0] - (mids[0] - v[0]), *mids, v[-1] + (v[-1] - mids[-1])]
    return [math.exp(x) for x in e] if log else e


def _mark_lost_points(ax, points: Sequence[tuple[float, float]]) -> None:
    """Mark the grid points ``(x, y)`` of a heat map whose every run diverged (blank cells), with
    one legend entry."""
    if points:
        n = len(points)
        ax.plot([p[0] for p in points], [p[1] for p in points], style.DIVERGED_MARKER, color="white", ms=8,
                markeredgecolor="black", ls="none", zorder=5,
                label=f"diverged (no value) at every seed: {n} point{'s' if n != 1 else ''}")
        style.legend(ax)


@style.styled
def fig_heatmaps(records: Sequence[Mapping[str, Any]], axes: Sequence[str], stat: str,
                 directory: Path) -> FigureInfo | None:
    """``stat`` (once per cell; mean over seeds) over the first two numeric axes with two or more
    values, one panel per combination of the other axes; ``None`` without two such axes or without
    a finite value. The axes and panels come from every run, diverged (no finite value) or not; a
    grid point whose every run diverged is left blank and marked by
    :data:`~initlab.report.style.DIVERGED_MARKER`."""
    cells = per_cell(records, stat)
    rows = [r for r in cells if _finite(r.get("value"))]
    varying = grid_axes(cells, axes)
    numeric = [a for a in varying if all(_finite(r.get(a)) for r in cells)]
    if len(numeric) < 2 or not rows:
        return None
    x_axis, y_axis = numeric[0], numeric[1]
    xs, ys = _values(cells, x_axis), _values(cells, y_axis)
    if 2 * len({(r[x_axis], r[y_axis]) for r in cells}) < len(xs) * len(ys):
        return None  # most of the grid empty: drawn values (a random search), not a grid
    panels = _panels(cells, [a for a in varying if a not in (x_axis, y_axis)])
    log_x = _spread_wide(xs)
    fig, panes = _subplots(len(panels))
    lo = min(r["value"] for r in rows)
    hi = max(r["value"] for r in rows)
    for ax, (title, group) in zip(panes, panels, strict=True):
        sums: dict[tuple, list[float]] = defaultdict(list)
        for r in group:
            if _finite(r.get("value")):
                sums[(r[x_axis], r[y_axis])].append(r["value"])
        grid = [[statistics.fmean(sums[(x, y)]) if (x, y) in sums else math.nan for x in xs] for y in ys]
        mesh = ax.pcolormesh(_edges(xs, log_x), _edges(ys, False), grid, cmap="viridis", vmin=lo, vmax=hi)
        if len(xs) * len(ys) <= 36:
            for i, y in enumerate(ys):
                for j, x in enumerate(xs):
                    if math.isfinite(grid[i][j]):
                        ax.text(x, y, f"{grid[i][j]:.2g}", ha="center", va="center", color="white",
                                fontsize=style.FONT_PT["annotation"])
        _mark_lost_points(ax, sorted({(r[x_axis], r[y_axis]) for r in group} - set(sums)))
        if log_x:
            ax.set_xscale("log")
            ax.minorticks_off()
        ax.set_xticks(xs, [_fmt(x) for x in xs])
        ax.set_yticks(ys, [_fmt(y) for y in ys])
        ax.grid(False)
        ax.set_xlabel(x_axis)
        ax.set_ylabel(y_axis)
        if title:
            ax.set_title(title)
        fig.colorbar(mesh, ax=ax, label=f"{stat}, mean over seeds")
    return save_info(fig, directory, f"heatmap_{stat}.png", f"{stat} over {x_axis} x {y_axis}", "grid",
                     f"heat map of {stat} (mean over seeds) over {x_axis} and {y_axis}")


@style.styled
def fig_by_axis(records: Sequence[Mapping[str, Any]], axes: Sequence[str], stat: str,
                directory: Path) -> FigureInfo | None:
    """``stat`` (once per cell; mean over seeds) against the one numeric axis with two or more
    values (a depth study: final accuracy against depth), one line per start (or per value of the
    first other axis), one panel per combination of the rest; ``None`` unless exactly one numeric
    axis varies. A run without a finite ``stat`` (diverged: its loss turned NaN) is drawn as
    :data:`~initlab.report.style.DIVERGED_MARKER` on the panel's ceiling at its x, in its series'
    colour, so a learning rate that killed runs shows where the line stops. The axes, the panels,
    the x range, its log scale and its ticks come from every run, diverged or not (a learning rate
    that killed every run is still on the axis, a width whose runs all diverged still has its
    panel); the lines from the finite ones; a series with no finite run in a panel is named by its
    markers' legend entry."""
    cells = per_cell(records, stat)
    varying = grid_axes(cells, axes)
    numeric = [a for a in varying if all(_finite(r.get(a)) for r in cells)]
    if len(numeric) != 1:
        return None
    x = numeric[0]
    others = [a for a in varying if a != x]
    ser = _start_axis(others) or (others[0] if others else None)
    by_series = [ser] if ser else []
    order = list(_group(cells, by_series))  # one colour per series in every panel
    panels = _panels(cells, [a for a in others if a != ser])
    fig, panes = _subplots(len(panels))
    for ax, (title, group) in zip(panes, panels, strict=True):
        alive = [r for r in group if _finite(r.get("value"))]
        _plot_series(ax, alive, x, ser, order)
        _mark_lost(ax, [r for r in group if not _finite(r.get("value"))], set(_group(alive, by_series)), x,
                   ser, order)
        if not alive:
            ax.set_yticks([])  # no value to put on a scale: every run of the panel diverged
        xs = [r[x] for r in group]
        if _spread_wide(xs):  # a learning rate, a width 16 to 512
            style.log_scale(ax, "x")
        _integer_ticks(ax, xs)
        ax.set_xlabel(x)
        ax.set_ylabel(f"{stat}, mean over seeds")
        if title:
            ax.set_title(title)
        style.legend(ax)
    return save_info(fig, directory, f"by_{x}_{stat}.png", f"{stat} against {x}", "grid",
                     f"{stat} (mean over seeds) against {x}")


@style.styled
def fig_scatter(records: Sequence[Mapping[str, Any]], axes: Sequence[str], stat: str,
                directory: Path) -> FigureInfo | None:
    """``stat`` (once per cell; mean over seeds) against each numeric axis with two or more values,
    one panel per axis, one point per grid point, coloured by start when ``init`` (or ``scheme``)
    varies: a random search, whose drawn values fill no grid; ``None`` with fewer than two such axes."""
    rows = [r for r in per_cell(records, stat) if _finite(r.get("value"))]
    varying = grid_axes(rows, axes)
    numeric = [a for a in varying if all(_finite(r.get(a)) for r in rows)][:_MAX_PANELS]
    if len(numeric) < 2:
        return None
    ser = _start_axis(varying)
    series: dict[Any, list[tuple[Mapping[str, Any], float]]] = defaultdict(list)
    for group in _group(rows, varying).values():  # one point per grid point: the mean over seeds
        mean = statistics.fmean(r["value"] for r in group)
        series[group[0].get(ser) if ser else None].append((group[0], mean))
    fig, panes = _subplots(len(numeric))
    for ax, x in zip(panes, numeric, strict=True):
        for k, (start, pts) in enumerate(series.items()):
            label = scheme_label(str(start)) if ser else None
            color = style.scheme_color(str(start)) if ser else f"C{k % 10}"
            ax.scatter([p[x] for p, _ in pts], [m for _, m in pts], color=color, label=label, s=18)
        xs = [r[x] for r in rows]
        if _spread_wide(xs):
            style.log_scale(ax, "x")
        _integer_ticks(ax, xs, at_values=False)  # drawn values: ticks at each would collide
        ax.set_xlabel(x)
        ax.set_ylabel(f"{stat}, mean over seeds")
        if ser:
            style.legend(ax)
    return save_info(fig, directory, f"scatter_{stat}.png", f"{stat} against {', '.join(numeric)}", "grid",
                     f"{stat} (mean over seeds) of each drawn point against {', '.join(numeric)}")


def _series_style(ser: str | None, skey: tuple, order: Sequence[tuple]) -> tuple[str | None, str]:
    """The legend label and colour of series ``skey`` (a key of ``_group(rows, [ser])``): a start
    (:data:`_START_AXES`) takes the scheme's label and colour, another axis ``"ser=value"`` and the
    ``k``-th colour of the cycle, ``k`` its place in ``order``; no label when ``ser`` is ``None``."""
    k = order.index(skey) if skey in order else len(order)
    if not ser:
        return None, f"C{k % 10}"
    if ser in _START_AXES:
        return scheme_label(str(skey[0])), style.scheme_color(str(skey[0]))
    return f"{ser}={_fmt(skey[0])}", f"C{k % 10}"


def _plot_series(ax, group: Sequence[Mapping[str, Any]], x: str, ser: str | None,
                 order: Sequence[tuple] | None = None) -> None:
    """One line per value of the series axis ``ser`` (all rows one line when ``None``): the mean
    over seeds of ``value`` against ``x``, labelled and coloured by :func:`_series_style` (the
    colour by the series' place in ``order``, default the series of ``group``)."""
    groups = _group(group, [ser] if ser else [])
    order = list(groups) if order is None else order
    for skey, srows in groups.items():
        pts: dict[float, list[float]] = defaultdict(list)
        for r in srows:
            pts[r[x]].append(r["value"])
        xs = sorted(pts)
        label, color = _series_style(ser, skey, order)
        ax.plot(xs, [statistics.fmean(pts[v]) for v in xs], marker="o", color=color, label=label)


def _lost_label(n: int, name: str | None = None) -> str:
    runs = f"{n} run{'s' if n != 1 else ''}"
    return f"{name}: diverged (no value), {runs}" if name else f"diverged (no value): {runs}"


def _mark_lost(ax, lost: Sequence[Mapping[str, Any]], drawn: set[tuple], x: str, ser: str | None,
               order: Sequence[tuple]) -> None:
    """Mark the runs of ``lost`` (no finite value: diverged) on the ceiling of ``ax`` at their ``x``,
    in the colour :func:`_series_style` gives their series. The runs of series drawn as a line in
    the panel (``drawn``: their keys) share one legend entry; a series with no line gets its own,
    naming it (its colour would be in no other entry)."""
    groups = _group(lost, [ser] if ser else [])
    unnamed = [k for k in groups if k in drawn or not ser]
    shared = _lost_label(sum(len(groups[k]) for k in unnamed)) if unnamed else None
    for skey, rows in groups.items():
        name, color = _series_style(ser, skey, order)
        if skey in unnamed:
            label, shared = shared, None
        else:
            label = _lost_label(len(rows), name)
        for r in rows:
            ax.plot([r[x]], [0.97], style.DIVERGED_MARKER, color=color, ms=8, markeredgecolor="black",
                    ls="none", transform=ax.get_xaxis_transform(), clip_on=False, zorder=5, label=label)
            label = None


#: What the curves figure draws per experiment: (y stat or prefix, x field, series axis, y label).
_CURVES = {
    "train": ("eval_", "step", "init", "eval metric"),
    "training": ("test_accuracy_at_step", "step", "scheme", "test accuracy"),
    "phase": ("test_accuracy", "depth", "sigma_w2", "test accuracy"),
    "probe": ("std", "index", "init", "activation std (forward)"),
}


def _curve_rows(records: Sequence[Mapping[str, Any]], experiment: str) -> list[Mapping[str, Any]]:
    y, x, _, _ = _CURVES[experiment]
    def wanted(stat: str) -> bool:
        return stat.startswith(y) if y.endswith("_") else stat == y

    rows = [r for r in records if r.get("experiment") == experiment and _finite(r.get("value"))
            and _finite(r.get(x)) and wanted(str(r.get("stat", "")))]
    if experiment == "probe":  # the nonlinearities' outputs (every layer's, in a net without them)
        rows = [r for r in rows if r.get("kind") == "forward"]
        acts = [r for r in rows if r.get("layer_type") == "activation"]
        rows = acts or rows
    return rows


@style.styled
def fig_curves(records: Sequence[Mapping[str, Any]], axes: Sequence[str],
               directory: Path) -> list[FigureInfo]:
    """One curves figure per experiment in ``records`` that has one (see :data:`_CURVES`): the
    mean over seeds against the x field, one line per value of the series axis, one panel per
    combination of the other varying axes."""
    out = []
    for experiment, (_, x, series, ylabel) in _CURVES.items():
        rows = _curve_rows(records, experiment)
        if not rows:
            continue
        if experiment == "train":
            ylabel = rows[0]["stat"]
        varying = grid_axes(rows, axes)
        ser = series if series in varying else None
        panels = _panels(rows, [a for a in varying if a not in (ser, x)])
        fig, panes = _subplots(len(panels))
        for ax, (title, group) in zip(panes, panels, strict=True):
            _plot_series(ax, group, x, ser)
            values = [r["value"] for r in group if r["value"] > 0]
            if experiment == "probe" and values and max(values) >= 10 * min(values):  # decades apart
                style.log_scale(ax, "y")
            _integer_ticks(ax, [r[x] for r in group])
            ax.set_xlabel("layer index" if x == "index" else x)
            ax.set_ylabel(ylabel)
            if title:
                ax.set_title(title)
            style.legend(ax)
        out.append(save_info(fig, directory, f"curves_{experiment}.png", f"{ylabel} against {x}", "curves",
                             f"{ylabel} against {x}, mean over seeds"))
    return out


def sweep_figures(records: Sequence[Mapping[str, Any]], axes: Sequence[str], headline: Sequence[str],
                  directory: str | Path) -> list[FigureInfo]:
    """Every figure the records allow, written to ``directory``: the heat map of the first headline
    stat recorded once per cell (or, with one numeric axis, that stat against it; with numeric axes
    that fill no grid, a random search's, that stat against each), and the curves.
    Returns their :class:`FigureInfo` (``file`` relative to the report: ``figures/NAME.png``)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    stat = next((s for s in headline if per_cell(records, s)), None)
    if stat is not None:
        grid = (fig_heatmaps(records, axes, stat, directory) or fig_by_axis(records, axes, stat, directory)
                or fig_scatter(records, axes, stat, directory))
        if grid is not None:
            out.append(grid)
    return out + fig_curves(records, axes, directory)
