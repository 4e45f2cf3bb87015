"""The one figure style of initlab's reports: size, resolution, fonts, colours, and the helpers
every figure uses (legends, log axes, clipped diverged values, labelled target lines).

A figure is drawn for the width it is shown at: :data:`TEXT_WIDTH_IN` inches is the report's
text column, and a page shows a figure at ``width_in * CSS_PX_PER_INCH`` CSS pixels (the
``width`` that :func:`save` returns, written on the ``<img>``), so a 9 pt font in the figure is
9 pt on the screen. PNGs are written at :data:`DPI` (two device pixels per CSS pixel: sharp on
high-DPI screens); a path ending in ``.svg`` writes a vector file instead.

Usage (every figure function follows it)::

    @style.styled
    def fig_x(records, directory):
        fig, axes = style.figure(1, 2)
        ax = axes[0, 0]
        ax.plot(x, y, color=style.scheme_color("he_normal"), label="He normal")
        style.target_line(ax, 0.85, "target accuracy 0.85")
        style.legend(ax)
        width, height = style.save(fig, directory / "x.png")

:func:`save` refuses (``ValueError``) a figure with a visible text below :data:`MIN_FONT_PT` or a
labelled axis with fewer than two tick labels in view, so no figure can be unreadable unnoticed.
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["DPI", "CSS_PX_PER_INCH", "TEXT_WIDTH_IN", "PANEL_HEIGHT_IN", "MIN_FONT_PT", "FONT_PT", "RC",
           "SCHEME_COLORS", "DIVERGED_MARKER", "context", "styled", "figure", "save", "scheme_color",
           "legend", "log_scale", "clip_diverged", "plot_clipped", "target_line", "readability_problems",
           "grid_layout"]

#: Pixels per inch of the PNG files: 2 device pixels per CSS pixel (>= 150 dpi).
DPI = 192
#: CSS pixels per inch: a figure is shown at ``width_in * 96`` CSS px, its physical size.
CSS_PX_PER_INCH = 96
#: Width of a full-width figure, inches (1008 CSS px; the report's text column holds 1100).
TEXT_WIDTH_IN = 10.5
#: Height of one row of panels, inches.
PANEL_HEIGHT_IN = 3.0
#: No visible text of a figure is smaller than this, at the size the page shows it.
MIN_FONT_PT = 9.0
#: Font sizes by role, points.
FONT_PT = {"tick": 9.0, "legend": 9.0, "label": 10.0, "title": 11.0, "suptitle": 12.0, "annotation": 9.0}

#: The matplotlib settings of every figure (applied by :func:`context` / :func:`styled`).
RC: dict[str, Any] = {
    "font.size": FONT_PT["label"],
    "axes.titlesize": FONT_PT["title"],
    "axes.labelsize": FONT_PT["label"],
    "xtick.labelsize": FONT_PT["tick"],
    "ytick.labelsize": FONT_PT["tick"],
    "legend.fontsize": FONT_PT["legend"],
    "legend.title_fontsize": FONT_PT["legend"],
    "figure.titlesize": FONT_PT["suptitle"],
    "figure.labelsize": FONT_PT["label"],
    "axes.grid": True,
    "grid.alpha": 0.3,
    "lines.linewidth": 1.6,
    "lines.markersize": 4.5,
    "legend.framealpha": 0.85,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "savefig.dpi": DPI,
    "svg.fonttype": "none",
}

#: Colour of each scheme, the same in every figure (initlab's "auto" in black).
SCHEME_COLORS: dict[str, str] = {
    "zeros": "#7f7f7f", "constant": "#bcbd22", "small": "#1f77b4", "large": "#d62728",
    "torch_default": "#8c564b", "xavier_normal": "#2ca02c", "xavier_uniform": "#98df8a",
    "he_normal": "#9467bd", "he_uniform": "#c5b0d5", "lsuv": "#ff7f0e", "pretrain": "#17becf",
    "auto": "#000000",
}
_FALLBACK = ("#e377c2", "#17becf", "#bcbd22", "#8c564b", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728",
             "#9467bd", "#7f7f7f")

#: How a value clipped by :func:`plot_clipped` is drawn: an upward triangle on the ceiling.
DIVERGED_MARKER = "^"

F = TypeVar("F", bound=Callable[..., Any])


@contextmanager
def context() -> Iterator[None]:
    """Apply :data:`RC` for the duration of the block (matplotlib reads font sizes when a text is
    created and tick sizes when a figure is drawn, so build *and* save inside it)."""
    import matplotlib

    with matplotlib.rc_context(RC):
        yield


def styled(fn: F) -> F:
    """Decorator: run a figure function inside :func:`context`."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with context():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def figure(nrows: int = 1, ncols: int = 1, *, width: float = TEXT_WIDTH_IN,
           panel_height: float = PANEL_HEIGHT_IN, height: float | None = None,
           **subplots: Any) -> tuple[Any, Any]:
    """A new figure of ``nrows x ncols`` panels on an Agg canvas (no pyplot state, no display)
    with constrained layout.

    Args:
        nrows, ncols: the panel grid.
        width: inches (default the text column, :data:`TEXT_WIDTH_IN`).
        panel_height: inches per row of panels (ignored when ``height`` is given).
        height: total height in inches.
        **subplots: passed to ``Figure.subplots`` (``sharex``, ``sharey``, ``gridspec_kw``).

    Returns:
        ``(fig, axes)`` with ``axes`` a 2-D array of shape ``(nrows, ncols)``.

    Raises:
        ValueError: a non-positive grid or size.

    >>> fig, axes = figure(2, 3)
    >>> axes.shape, [float(v) for v in fig.get_size_inches()]
    ((2, 3), [10.5, 6.0])
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if nrows < 1 or ncols < 1 or width <= 0 or (height if height is not None else panel_height) <= 0:
        raise ValueError(f"figure({nrows}, {ncols}, width={width}, height={height}) is invalid: pass a "
                         "positive grid and size")
    fig = Figure(figsize=(width, height if height is not None else panel_height * nrows), dpi=DPI,
                 layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **subplots)
    for ax in axes.flat:
        ax.tick_params(labelsize=FONT_PT["tick"])
    return fig, axes


def _line_in(role: str) -> float:
    """Height of one line of text of ``role`` (:data:`FONT_PT`), inches, with its padding."""
    return FONT_PT[role] / 72 * 1.45


def grid_layout(fig: Any, *, ylabel_lines: int = 1, tick_chars: int = 5, suptitle: bool = False,
                supxlabel: bool = False, supylabel: bool = False) -> None:
    """Lay out a grid of equal panels with margins computed from the font sizes instead of a layout
    engine (constrained layout measures every tick label: seconds for a 5 x 5 grid). For grids whose
    panels have a title, x tick labels on every panel, y tick labels of at most ``tick_chars``
    characters on the first column, and ``ylabel_lines`` lines of y label there.
    """
    w, h = fig.get_size_inches()
    char = FONT_PT["tick"] / 72 * 0.62
    left = (supylabel + ylabel_lines) * _line_in("label") + tick_chars * char + 0.12
    bottom = _line_in("tick") + supxlabel * _line_in("label") + 0.1
    top = _line_in("title") + suptitle * _line_in("suptitle") + 0.05
    right = 3 * char  # the last column's rightmost tick label overhangs its panel
    fig.set_layout_engine(None)
    nrows, ncols = fig.axes[0].get_subplotspec().get_gridspec().get_geometry()
    panel_w = (w - left - right - (ncols - 1) * 6 * char) / ncols
    panel_h = (h - top - bottom - (nrows - 1) * (_line_in("tick") + _line_in("title"))) / nrows
    fig.subplots_adjust(left=left / w, right=1 - right / w, bottom=bottom / h, top=1 - top / h,
                        wspace=6 * char / panel_w, hspace=(_line_in("tick") + _line_in("title")) / panel_h)
    if suptitle and fig._suptitle is not None:
        fig._suptitle.set_y(1 - 0.04 / h)
        fig._suptitle.set_va("top")


def save(fig: Any, path: str | Path) -> tuple[int, int]:
    """Write ``fig`` to ``path`` (PNG at :data:`DPI`, or SVG when the name ends in ``.svg``),
    check that it is readable, and return its display size in CSS pixels ``(width, height)``
    (``inches * CSS_PX_PER_INCH``), for the page's ``<img width height>``.

    Raises:
        ValueError: :func:`readability_problems` found a problem (the file is removed again).
    """
    path = Path(path)
    if path.suffix.lower() == ".svg":
        fig.savefig(path, format="svg", dpi=DPI)
    else:  # fast zlib level: the files are 20 % larger, written in a third of the time
        fig.savefig(path, format="png", dpi=DPI, pil_kwargs={"compress_level": 1})
    problems = readability_problems(fig)
    if problems:
        path.unlink(missing_ok=True)
        raise ValueError(f"figure {path.name} is not readable: " + "; ".join(problems[:5]))
    w, h = fig.get_size_inches()
    return round(w * CSS_PX_PER_INCH), round(h * CSS_PX_PER_INCH)


def readability_problems(fig: Any) -> list[str]:
    """What makes a drawn figure hard to read: visible texts smaller than :data:`MIN_FONT_PT`, and
    axes with tick labels of which fewer than two lie in view (a log axis with one label gives
    no scale; axes whose ticks were placed one by one, ``set_xticks``, are the figure's choice and
    not checked). Empty when the figure is fine. Call after the figure was drawn (``savefig``).

    >>> fig, axes = figure()
    >>> _ = axes[0, 0].plot([1, 2], [1, 2]); _ = axes[0, 0].set_title("x", fontsize=6)
    >>> fig.canvas.draw()
    >>> readability_problems(fig)
    ["text 'x' is 6 pt (< 9 pt)"]
    """
    from matplotlib.text import Text
    from matplotlib.ticker import FixedLocator

    problems = []
    for text in fig.findobj(Text):
        if text.get_visible() and text.get_text().strip() and text.get_fontsize() < MIN_FONT_PT - 1e-9:
            problems.append(f"text {text.get_text()[:30]!r} is {text.get_fontsize():g} pt "
                            f"(< {MIN_FONT_PT:g} pt)")
    for ax in fig.axes:
        if not ax.get_visible() or not ax.axison:
            continue
        for axis, name, coord in ((ax.xaxis, "x", 0), (ax.yaxis, "y", 1)):
            if not axis.get_visible() or isinstance(axis.get_major_locator(), FixedLocator):
                continue  # ticks placed one by one (categories, grid values) are the figure's choice
            params = axis.get_tick_params()
            sides = ("labelleft", "labelright") if name == "y" else ("labelbottom", "labeltop")
            if not any(params.get(side, side in ("labelleft", "labelbottom")) for side in sides):
                continue  # labels switched off on purpose (a shared axis shows them on another panel)
            lo, hi = sorted(axis.get_view_interval())
            slack = 1e-9 * max(abs(lo), abs(hi), 1e-300)
            labels = [lab for lab in axis.get_ticklabels(which="both")
                      if lab.get_visible() and lab.get_text()]
            shown = [lab for lab in labels if lo - slack <= lab.get_position()[coord] <= hi + slack]
            if len(shown) < 2:
                title = ax.get_title() or ax.get_ylabel() or "a panel"
                problems.append(f"the {name} axis of {title!r} has {len(shown)} tick label in view")
    return problems


def scheme_color(name: str) -> str:
    """The colour of scheme ``name`` (:data:`SCHEME_COLORS`); other names get a colour of a fixed
    palette chosen by a hash of the name, the same in every run.

    >>> scheme_color("auto"), scheme_color("he_normal")
    ('#000000', '#9467bd')
    >>> scheme_color("my_init") == scheme_color("my_init")
    True
    """
    if name in SCHEME_COLORS:
        return SCHEME_COLORS[name]
    return _FALLBACK[zlib.crc32(str(name).encode()) % len(_FALLBACK)]


def legend(ax: Any, *, outside: bool = False, **kwargs: Any) -> Any:
    """A legend in panel ``ax`` at the style's font size: inside, where it hides the least data
    (``loc="best"``), or ``outside=True`` to the right of the panel. ``kwargs`` go to
    ``Axes.legend`` (``ncol``, ``loc``, ``title``); ``None`` when the panel has no labelled artist."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return None
    opts: dict[str, Any] = {"fontsize": FONT_PT["legend"], "handlelength": 1.8, "borderaxespad": 0.4}
    if outside:
        opts.update(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        opts.update(loc="best")
    opts.update(kwargs)
    return ax.legend(**opts)


def log_scale(ax: Any, axis: str = "y") -> None:
    """Log scale on ``axis`` (``"x"`` or ``"y"``) labelled at 1, 2 and 5 times each power of ten,
    in plain numbers, where the data span under two decades (so a short range still shows a
    scale), at the powers of ten otherwise. Call it after plotting (it reads the data limits).

    Raises:
        ValueError: ``axis`` is not ``"x"`` or ``"y"``.
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    if axis not in ("x", "y"):
        raise ValueError(f"axis={axis!r} is invalid: pass 'x' or 'y'")
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
    target = ax.yaxis if axis == "y" else ax.xaxis
    lo, hi = (ax.dataLim.y0, ax.dataLim.y1) if axis == "y" else (ax.dataLim.x0, ax.dataLim.x1)
    narrow = lo > 0 and math.isfinite(lo) and math.isfinite(hi) and hi / lo < 100
    if narrow:
        target.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        target.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    else:
        target.set_major_locator(LogLocator(base=10, numticks=8))
    target.set_minor_locator(NullLocator())  # unlabelled minor ticks cost drawing time and say little


def clip_diverged(values: Sequence[float | None], limit: float) -> tuple[list[float], list[bool]]:
    """Values for plotting with everything above ``limit`` (and ``inf``) put on ``limit``, and
    which were clipped; ``None`` and NaN become NaN (a gap in the line).

    >>> clip_diverged([0.5, 1e10, None, float("inf")], 10.0)
    ([0.5, 10.0, nan, 10.0], [False, True, False, True])
    """
    out, clipped = [], []
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append(math.nan)
            clipped.append(False)
        elif v > limit:
            out.append(float(limit))
            clipped.append(True)
        else:
            out.append(float(v))
            clipped.append(False)
    return out, clipped


def plot_clipped(ax: Any, x: Sequence[float], y: Sequence[float | None], limit: float, *, color: str,
                 label: str, clip_label: str | None = None, **line: Any) -> bool:
    """Plot the line ``(x, y)`` in ``ax`` with values above ``limit`` clipped to it
    (:func:`clip_diverged`) and each clipped point marked by :data:`DIVERGED_MARKER` on the ceiling;
    the first panel marker gets the legend entry ``clip_label`` (default ``"off scale (> limit)"``).
    Returns whether anything was clipped."""
    ys, clipped = clip_diverged(y, limit)
    ax.plot(x, ys, color=color, label=label, **line)
    cx = [xi for xi, c in zip(x, clipped, strict=True) if c]
    if not cx:
        return False
    seen = any(h.get_label() == (clip_label or _clip_label(limit)) for h in ax.get_lines())
    ax.plot(cx, [limit] * len(cx), DIVERGED_MARKER, color=color, ms=8, markeredgecolor="black", ls="none",
            label=None if seen else (clip_label or _clip_label(limit)), clip_on=False, zorder=5)
    return True


def _clip_label(limit: float) -> str:
    return f"off scale (> {limit:.3g})"


def target_line(ax: Any, y: float, label: str, *, axis: str = "y", at: str = "end",
                below: bool = False) -> None:
    """A dotted line at ``y`` (or at ``x = y`` with ``axis="x"``) with ``label`` written on it, at
    the ``"end"`` (right or top) or the ``"start"`` (left or bottom) of the panel, on a white box
    above the data (curves that cross the label do not strike it through). ``below=True`` writes a
    horizontal line's label under it (for a chance level, under which no curve runs).

    Raises:
        ValueError: ``axis`` or ``at`` is not one of its values.
    """
    if axis not in ("x", "y") or at not in ("start", "end"):
        raise ValueError(f"axis={axis!r}, at={at!r} is invalid: pass axis 'x' or 'y', at 'start' or 'end'")
    end = at == "end"
    box = {"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.85}
    if axis == "y":
        ax.axhline(y, color="black", ls=":", lw=1.2, zorder=1)
        ax.annotate(label, xy=(1.0 if end else 0.0, y), xycoords=("axes fraction", "data"),
                    xytext=(-4 if end else 4, -3 if below else 3), textcoords="offset points",
                    ha="right" if end else "left", va="top" if below else "bottom",
                    fontsize=FONT_PT["annotation"], bbox=box, zorder=6)
    else:
        ax.axvline(y, color="black", ls=":", lw=1.2, zorder=1)
        ax.annotate(label, xy=(y, 1.0 if end else 0.0), xycoords=("data", "axes fraction"),
                    xytext=(3, -4 if end else 4), textcoords="offset points", ha="left",
                    va="top" if end else "bottom", rotation=90, fontsize=FONT_PT["annotation"], bbox=box,
                    zorder=6)
