"""Sweep figures (initlab.report.sweep_figures) from hand-made records: an axis of integers (depth,
width, step) is ticked at integers, a float axis is left alone, a positive axis spread over a
decade or more is drawn on a log scale, and a random search's drawn values (which fill no grid) get
a scatter against each axis instead of a mostly empty heat map."""

from __future__ import annotations

import itertools

import pytest

pytest.importorskip("matplotlib")

from matplotlib.ticker import MaxNLocator  # noqa: E402

from initlab.report import sweep_figures  # noqa: E402


@pytest.fixture
def drawn(monkeypatch):
    """The data panels of every figure saved during the test, by file name."""
    panels = {}
    save_info = sweep_figures.save_info

    def capture(fig, directory, name, *args):
        panels[name] = [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]
        return save_info(fig, directory, name, *args)

    monkeypatch.setattr(sweep_figures, "save_info", capture)
    return panels


def _records(points: list[dict], stat: str = "final_accuracy") -> list[dict]:
    """One record of ``stat`` per cell, its value varying from cell to cell."""
    return [{"cell": f"c{i}", "experiment": "train", "stat": stat, "value": 0.5 + 0.01 * (i % 7), **p}
            for i, p in enumerate(points)]


def _ticks(ax) -> list[float]:
    low, high = ax.get_xlim()
    return [float(t) for t in ax.get_xticks() if low <= t <= high]


def test_a_depth_axis_is_ticked_at_its_values(drawn, tmp_path):
    points = [{"depth": d, "init": i, "seed": s}
              for d, i, s in itertools.product([1, 2, 3, 4], ["auto", "he_normal"], [0, 1])]
    sweep_figures.fig_by_axis(_records(points), ["depth", "init", "seed"], "final_accuracy", tmp_path)
    (ax,) = drawn["by_depth_final_accuracy.png"]
    assert _ticks(ax) == [1.0, 2.0, 3.0, 4.0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3", "4"]


def test_a_long_step_axis_gets_integer_ticks_and_a_float_axis_is_left_alone(drawn, tmp_path):
    """Curves over 13 steps (more than are ticked one by one): MaxNLocator(integer=True); a
    sigma_w2 axis of floats keeps matplotlib's own ticks."""
    curve = [{"cell": f"c{i}", "experiment": "train", "stat": "eval_accuracy", "value": 0.1 + 0.05 * step,
              "step": step, "init": init, "seed": 0}
             for i, init in enumerate(["auto", "he_normal"]) for step in range(1, 14)]
    sweep_figures.fig_curves(curve, ["init", "seed"], tmp_path)
    (ax,) = drawn["curves_train.png"]
    assert type(ax.xaxis.get_major_locator()) is MaxNLocator
    assert all(t.is_integer() for t in _ticks(ax)) and len(_ticks(ax)) >= 3
    points = [{"sigma_w2": w, "seed": 0} for w in (1.0, 1.5, 2.0)]
    sweep_figures.fig_by_axis(_records(points), ["sigma_w2", "seed"], "final_accuracy", tmp_path)
    (ax,) = drawn["by_sigma_w2_final_accuracy.png"]
    assert not all(t.is_integer() for t in _ticks(ax))


def test_a_random_search_gets_a_scatter_with_a_log_lr_and_integer_depth_and_width(drawn, tmp_path):
    lrs = [0.0011, 0.0034, 0.0093, 0.021, 0.047, 0.088]
    depths = [1, 3, 4, 3, 1, 4]
    widths = [8, 10, 38, 49, 60, 23]
    points = [{"init": init, "depth": d, "lr": lr, "width": w, "seed": s}
              for init in ("auto", "he_normal") for d, lr, w in zip(depths, lrs, widths, strict=True)
              for s in (0, 1)]
    axes = ["init", "depth", "lr", "width", "seed"]
    infos = sweep_figures.sweep_figures(_records(points), axes, ["final_accuracy"], tmp_path)
    assert [i.file for i in infos] == [f"{tmp_path.name}/scatter_final_accuracy.png"]  # no heat map
    assert sweep_figures.fig_heatmaps(_records(points), axes, "final_accuracy", tmp_path) is None
    depth, lr, width = drawn["scatter_final_accuracy.png"]
    assert (depth.get_xlabel(), lr.get_xlabel(), width.get_xlabel()) == ("depth", "lr", "width")
    assert lr.get_xscale() == "log" and depth.get_xscale() == width.get_xscale() == "linear"
    for ax in (depth, width):
        assert type(ax.xaxis.get_major_locator()) is MaxNLocator
        assert all(t.is_integer() for t in _ticks(ax)), _ticks(ax)
    assert len(depth.collections) == 2  # one series per start, one point per drawn point
    assert [len(c.get_offsets()) for c in depth.collections] == [6, 6]


def test_a_training_sweep_gets_test_accuracy_curves_one_line_per_scheme(drawn, tmp_path):
    """The training experiment's ``test_accuracy_at_step`` records (extra ``step``): one line per
    scheme in the scheme's colour and label, the mean over seeds at each step, one panel per depth;
    its other records (a per-epoch ``test_accuracy``, LSUV's) are not drawn."""
    from initlab.experiments.common import SCHEME_LABELS
    from initlab.report import style

    def acc(scheme, depth, seed, step):
        return 0.1 + 0.01 * step + 0.1 * (scheme == "auto") + 0.05 * seed - 0.02 * depth

    steps = range(0, 60, 5)
    records = [{"cell": f"{s}{d}{seed}", "experiment": "training", "scheme": s, "depth": d, "seed": seed,
                "stat": "test_accuracy_at_step", "value": acc(s, d, seed, step), "step": step}
               for s in ("he_normal", "auto") for d in (2, 4) for seed in (0, 1) for step in steps]
    records += [{"cell": "x", "experiment": "training", "scheme": "auto", "depth": 2, "seed": 0,
                 "stat": "test_accuracy", "value": 0.9, "epoch": 1},
                {"cell": "x", "experiment": "lsuv", "scheme": "lsuv", "depth": 2, "seed": 0, "stat": "std",
                 "value": 1.0, "step": 3}]
    (info,) = sweep_figures.fig_curves(records, ["scheme", "depth", "seed"], tmp_path)
    assert info.file.endswith("curves_training.png") and (tmp_path / "curves_training.png").is_file()
    panels = drawn["curves_training.png"]
    assert [ax.get_title() for ax in panels] == ["depth=2", "depth=4"]
    for ax, depth in zip(panels, (2, 4), strict=True):
        assert ax.get_xlabel() == "step" and ax.get_ylabel() == "test accuracy"
        lines = {line.get_label(): line for line in ax.get_lines()}
        assert sorted(lines) == sorted(SCHEME_LABELS[s] for s in ("he_normal", "auto"))
        for scheme in ("he_normal", "auto"):
            line = lines[SCHEME_LABELS[scheme]]
            assert list(line.get_xdata()) == list(steps)
            mean = [(acc(scheme, depth, 0, t) + acc(scheme, depth, 1, t)) / 2 for t in steps]
            assert line.get_ydata() == pytest.approx(mean, rel=1e-12)
            assert line.get_color() == style.scheme_color(scheme)
        assert all(t.is_integer() for t in _ticks(ax))


def test_diverged_runs_are_marked_on_the_ceiling_at_their_x(drawn, tmp_path):
    """A learning rate that killed a start's runs (value NaN or None) is shown where its line stops:
    one ceiling marker per lost run, in the start's colour, and one legend entry."""
    from initlab.report import style

    lrs = [0.001, 0.01, 0.1, 1.0]
    points = [{"lr": lr, "init": init, "seed": 0} for lr in lrs for init in ("auto", "he_normal")]
    recs = _records(points)
    for r in recs:
        if r["lr"] == 1.0:
            r["value"] = float("nan") if r["init"] == "auto" else None
    sweep_figures.fig_by_axis(recs, ["lr", "init", "seed"], "final_accuracy", tmp_path)
    (ax,) = drawn["by_lr_final_accuracy.png"]
    marks = [ln for ln in ax.get_lines() if ln.get_marker() == style.DIVERGED_MARKER]
    assert sorted(float(ln.get_xdata()[0]) for ln in marks) == [1.0, 1.0]
    assert {ln.get_color() for ln in marks} == {style.scheme_color("auto"), style.scheme_color("he_normal")}
    labels = [ln.get_label() for ln in marks if not ln.get_label().startswith("_")]
    assert labels == ["diverged (no value): 2 runs"]
    assert ax.get_xlim()[1] >= 1.0  # the x range reaches the lost runs


def _diverged(points: list[dict], lost) -> list[dict]:
    """:func:`_records` with the value of every point where ``lost(point)`` NaN (a diverged run)."""
    recs = _records(points)
    for r in recs:
        if lost(r):
            r["value"] = float("nan")
    return recs


def _marks(ax) -> list:
    from initlab.report import style

    return [ln for ln in ax.get_lines() if ln.get_marker() == style.DIVERGED_MARKER]


def _lines(ax) -> list:
    from initlab.report import style

    return [ln for ln in ax.get_lines() if ln.get_marker() != style.DIVERGED_MARKER]


def _legend(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_the_x_scale_and_ticks_come_from_every_run_diverged_or_not(drawn, tmp_path):
    """lr 1e-3 and 3e-3 survive, 0.1 and 1 diverged: the axis spans 1e-3..1, a factor 1000, so it
    is a log axis (not linear 0..1 with the lines squashed left); a depth that diverged for every
    start still gets its tick."""
    lrs = [1e-3, 3e-3, 0.1, 1.0]
    points = [{"lr": lr, "init": init, "seed": 0} for lr in lrs for init in ("auto", "he_normal")]
    sweep_figures.fig_by_axis(_diverged(points, lambda r: r["lr"] >= 0.1), ["lr", "init", "seed"],
                              "final_accuracy", tmp_path)
    (ax,) = drawn["by_lr_final_accuracy.png"]
    assert ax.get_xscale() == "log"
    low, high = ax.get_xlim()
    assert low <= min(lrs) and high >= max(lrs)
    assert [list(ln.get_xdata()) for ln in _lines(ax)] == [[1e-3, 3e-3]] * 2
    assert sorted(float(ln.get_xdata()[0]) for ln in _marks(ax)) == [0.1, 0.1, 1.0, 1.0]

    depths = [4, 8, 16, 32]
    points = [{"depth": d, "init": init, "seed": 0} for d in depths for init in ("auto", "he_normal")]
    sweep_figures.fig_by_axis(_diverged(points, lambda r: r["depth"] == 32), ["depth", "init", "seed"],
                              "final_accuracy", tmp_path)
    (ax,) = drawn["by_depth_final_accuracy.png"]
    assert _ticks(ax) == [float(d) for d in depths]
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(d) for d in depths]


def test_a_panel_whose_every_run_diverged_keeps_its_panel(drawn, tmp_path):
    """Every run with optimizer adam diverged: its panel is still drawn (markers, no line) and the
    sgd panel gets none of its markers; each start there is named by its own legend entry."""
    from initlab.report import style
    from initlab.report.figure_common import scheme_label

    lrs = [1e-3, 1e-2, 1e-1]
    points = [{"lr": lr, "init": init, "optimizer": opt, "seed": 0}
              for lr in lrs for init in ("auto", "he_normal") for opt in ("adam", "sgd")]
    recs = _diverged(points, lambda r: r["optimizer"] == "adam")
    sweep_figures.fig_by_axis(recs, ["lr", "init", "optimizer", "seed"], "final_accuracy", tmp_path)
    adam, sgd = drawn["by_lr_final_accuracy.png"]
    assert (adam.get_title(), sgd.get_title()) == ("optimizer=adam", "optimizer=sgd")
    assert _lines(adam) == [] and len(_marks(adam)) == len(lrs) * 2
    assert sorted({float(ln.get_xdata()[0]) for ln in _marks(adam)}) == lrs
    colors = {style.scheme_color("auto"), style.scheme_color("he_normal")}
    assert {ln.get_color() for ln in _marks(adam)} == colors
    assert sorted(_legend(adam)) == sorted(f"{scheme_label(s)}: diverged (no value), {len(lrs)} runs"
                                           for s in ("auto", "he_normal"))
    assert len(_lines(sgd)) == 2 and _marks(sgd) == []


def test_a_numeric_axis_whose_every_run_diverged_stays_on_the_heat_map(drawn, tmp_path):
    """Width 512 diverged at every lr: lr x width is still a grid (a heat map, not lr alone), its
    512 row blank and marked at each lr."""
    lrs, widths = [1e-3, 1e-2, 1e-1], [64, 512]
    points = [{"lr": lr, "width": w, "seed": 0} for lr in lrs for w in widths]
    recs = _diverged(points, lambda r: r["width"] == 512)
    infos = sweep_figures.sweep_figures(recs, ["lr", "width", "seed"], ["final_accuracy"], tmp_path)
    assert [i.file for i in infos] == [f"{tmp_path.name}/heatmap_final_accuracy.png"]
    assert sweep_figures.fig_by_axis(recs, ["lr", "width", "seed"], "final_accuracy", tmp_path) is None
    (ax,) = drawn["heatmap_final_accuracy.png"]
    (mark,) = _marks(ax)
    assert list(mark.get_xdata()) == lrs and list(mark.get_ydata()) == [512] * len(lrs)
    assert [float(t) for t in ax.get_yticks()] == [64.0, 512.0]
    assert _legend(ax) == [f"diverged (no value) at every seed: {len(lrs)} points"]


def test_one_surviving_x_still_gets_its_figure(drawn, tmp_path):
    """Only lr 1e-3 survived: the figure shows it as a point and the diverged lrs on the ceiling."""
    lrs = [1e-3, 0.1, 1.0]
    points = [{"lr": lr, "init": init, "seed": 0} for lr in lrs for init in ("auto", "he_normal")]
    info = sweep_figures.fig_by_axis(_diverged(points, lambda r: r["lr"] >= 0.1), ["lr", "init", "seed"],
                                     "final_accuracy", tmp_path)
    assert info is not None and (tmp_path / "by_lr_final_accuracy.png").is_file()
    (ax,) = drawn["by_lr_final_accuracy.png"]
    assert [list(ln.get_xdata()) for ln in _lines(ax)] == [[1e-3]] * 2
    assert sorted(float(ln.get_xdata()[0]) for ln in _marks(ax)) == [0.1, 0.1, 1.0, 1.0]
    assert ax.get_xscale() == "log" and ax.get_xlim()[1] >= 1.0


def test_a_series_with_only_diverged_runs_is_named_in_the_legend(drawn, tmp_path):
    """Every tanh run diverged: its markers take the colour tanh has among the series (the third of
    relu, sigmoid, tanh), which no line has, and a legend entry of their own names it."""
    points = [{"depth": d, "activation": a, "seed": 0}
              for d in (4, 8, 16) for a in ("relu", "tanh", "sigmoid")]
    recs = _diverged(points, lambda r: r["activation"] == "tanh")
    sweep_figures.fig_by_axis(recs, ["depth", "activation", "seed"], "final_accuracy", tmp_path)
    (ax,) = drawn["by_depth_final_accuracy.png"]
    assert [(ln.get_label(), ln.get_color()) for ln in _lines(ax)] == [("activation=relu", "C0"),
                                                                     ("activation=sigmoid", "C1")]
    assert {ln.get_color() for ln in _marks(ax)} == {"C2"}
    assert _legend(ax) == ["activation=relu", "activation=sigmoid",
                           "activation=tanh: diverged (no value), 3 runs"]
