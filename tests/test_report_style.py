"""The report's one figure style (initlab.report.style): size and resolution, readable fonts and
axes, clipped diverged values, labelled targets."""

from __future__ import annotations

import math

import pytest

from initlab.report import style


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_save_writes_a_sharp_png_and_returns_its_display_size(tmp_path):
    fig, axes = style.figure(1, 2, panel_height=3.0)
    for ax in axes.flat:
        ax.plot([1, 2, 3], [3, 1, 2], label="a line")
        style.legend(ax)
    width, height = style.save(fig, tmp_path / "f.png")
    assert (width, height) == (round(style.TEXT_WIDTH_IN * 96), round(3.0 * 96))
    px_w, px_h = _png_size(tmp_path / "f.png")
    assert style.DPI >= 150 and px_w == round(style.TEXT_WIDTH_IN * style.DPI)
    # shown at `width` CSS px, the image has DPI / 96 device pixels per CSS pixel
    assert px_w / width == pytest.approx(style.DPI / style.CSS_PX_PER_INCH, rel=1e-3)


def test_every_font_of_the_style_is_at_least_the_minimum():
    assert min(style.FONT_PT.values()) >= style.MIN_FONT_PT >= 9
    fonts = ("font.size", "labelsize", "titlesize", "legend.fontsize")
    sizes = [v for k, v in style.RC.items() if k.endswith(fonts)]
    assert sizes and min(sizes) >= style.MIN_FONT_PT


def test_save_refuses_small_text_and_removes_the_file(tmp_path):
    fig, axes = style.figure()
    axes[0, 0].plot([0, 1], [0, 1])
    axes[0, 0].set_title("tiny", fontsize=6)
    with pytest.raises(ValueError, match="'tiny' is 6 pt"):
        style.save(fig, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


@style.styled
def _log_panel(lo, hi, tmp_path):
    fig, axes = style.figure()
    axes[0, 0].plot([1, 2, 3], [lo, math.sqrt(lo * hi), hi])
    style.log_scale(axes[0, 0], "y")
    style.save(fig, tmp_path / "log.png")
    return [t.get_text() for t in axes[0, 0].yaxis.get_ticklabels() if t.get_text()]


@pytest.mark.parametrize("lo,hi", [(0.5, 1.8), (1e-7, 1.0)])
def test_log_axes_always_show_a_scale(tmp_path, lo, hi):
    """Under two decades the axis is labelled at 1, 2, 5 x 10^k; save() refuses fewer than two
    labels in view, so returning at all means the scale is readable."""
    labels = _log_panel(lo, hi, tmp_path)
    assert len(labels) >= 2


def test_save_refuses_an_axis_with_one_tick_label(tmp_path):
    from matplotlib.ticker import MultipleLocator

    fig, axes = style.figure()
    axes[0, 0].plot([0, 1], [0, 1])
    axes[0, 0].yaxis.set_major_locator(MultipleLocator(1.0))
    axes[0, 0].set_ylim(0.3, 1.4)  # ticks at integers: only 1 in view
    with pytest.raises(ValueError, match="y axis .* [01] tick label"):
        style.save(fig, tmp_path / "one.png")


def test_clip_diverged_and_plot_clipped_mark_what_is_off_scale():
    values, clipped = style.clip_diverged([1.0, 1e10, math.inf, None, 3.0], 10.0)
    assert values[:3] == [1.0, 10.0, 10.0] and math.isnan(values[3]) and values[4] == 3.0
    assert clipped == [False, True, True, False, False]
    fig, axes = style.figure()
    ax = axes[0, 0]
    assert style.plot_clipped(ax, [1, 2, 3], [1.0, 1e10, 2.0], 10.0, color="red", label="run")
    assert not style.plot_clipped(ax, [1, 2, 3], [1.0, 2.0, 3.0], 10.0, color="blue", label="ok")
    markers = [line for line in ax.get_lines() if line.get_marker() == style.DIVERGED_MARKER]
    assert len(markers) == 1 and list(markers[0].get_ydata()) == [10.0]
    assert markers[0].get_label() == "off scale (> 10)"
    assert max(max(line.get_ydata()) for line in ax.get_lines()) == 10.0  # nothing drawn above the ceiling


def test_target_line_is_labelled_on_the_panel():
    fig, axes = style.figure()
    style.target_line(axes[0, 0], 0.85, "target 0.85")
    assert [t.get_text() for t in axes[0, 0].texts] == ["target 0.85"]
    with pytest.raises(ValueError, match="axis='z'"):
        style.target_line(axes[0, 0], 1.0, "x", axis="z")


def test_scheme_colors_are_fixed_and_distinct():
    known = list(style.SCHEME_COLORS.values())
    assert len(set(known)) == len(known)
    assert style.scheme_color("auto") == style.SCHEME_COLORS["auto"]
    assert style.scheme_color("some_new_init") == style.scheme_color("some_new_init")


def test_figure_rejects_a_bad_grid():
    with pytest.raises(ValueError, match="figure\\(0, 1"):
        style.figure(0, 1)
