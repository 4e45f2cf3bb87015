"""The phase report: figures, a self-contained HTML page, ``results.json`` and ``results.csv``,
written from the records of :func:`initlab.experiments.phase.run_phase` only.

Layout of a report directory (default ``initlab-phase/``)::

    index.html              the report, self-contained (figures embedded as data: URIs)
    figures/*.png           the same figures as files (matplotlib Agg, PNG)
    results.json            {"schema": "initlab.phase", "schema_version": 1, "initlab_version",
                             "meta": {config (with threads), dataset, environment (threads,
                             torch), timings}, "figures": [...],
                             "record_fields": [...], "records": [...]}
    results.csv             the records, one per row (standard fields first, then extras)
    .initlab-phase-report   marker file: "initlab.phase <schema_version>"

Writing is atomic at the directory level: the report is built in ``.<out>.tmp-<id>`` next to
``out`` and renamed into place; an existing phase report is renamed aside first and deleted only
after the new one is in place. A non-empty ``out`` that is not a phase report is refused unless
``force=True``; with ``force`` its contents are moved to a backup directory beside it, never
deleted. The current directory, its ancestors, top-level and home directories, files and symbolic
links are always refused. These rules are :mod:`initlab.report.outdir`'s, shared with the demo
report (:mod:`initlab.report`).
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from initlab.records import RECORD_FIELDS, jsonable, records_to_csv
from initlab.report import outdir, style
from initlab.report.outdir import ReportLayout

__all__ = ["SCHEMA", "SCHEMA_VERSION", "MARKER", "LAYOUT", "is_phase_report_dir", "check_phase_out_dir",
           "write_phase_report", "phase_figures"]

SCHEMA = "initlab.phase"
SCHEMA_VERSION = 1
MARKER = ".initlab-phase-report"


# ---- the output directory ----------------------------------------------------------------------


#: The phase report's directory, for :mod:`initlab.report.outdir` (the same ``--out`` rules and
#: atomic replacement as the demo report).
LAYOUT = ReportLayout(SCHEMA, SCHEMA_VERSION, MARKER, ("index.html", "results.json", "results.csv"),
                      label="initlab phase report", example="initlab-phase", command="initlab phase")


def is_phase_report_dir(path: str | Path) -> bool:
    """Whether ``path`` is a directory that holds an initlab phase report and nothing else: the
    marker file :data:`MARKER` is there and every entry is one :func:`write_phase_report` writes
    (``index.html``, ``results.json``, ``results.csv``, PNG files in ``figures/``). Only such a
    directory is replaced without ``force``.

    >>> is_phase_report_dir("/nonexistent-initlab-dir")
    False
    """
    return outdir.is_report_dir(path, LAYOUT)


def check_phase_out_dir(out: str | Path, *, force: bool = False) -> Path:
    """Check that a phase report may be written to ``out`` and return it as a ``Path``; nothing is
    created or changed. :func:`initlab.report.outdir.check_out_dir` with :data:`LAYOUT`, the same
    rules as the demo report's: ``force=True`` keeps a foreign directory's contents in a backup
    beside it; the current directory and its ancestors, top-level and home directories, files and
    links are refused even then.

    Raises:
        FileExistsError, InitlabError, NotADirectoryError, PermissionError: as
            :func:`initlab.report.outdir.check_out_dir` says.

    >>> check_phase_out_dir("/nonexistent-initlab-dir").name
    'nonexistent-initlab-dir'
    """
    return outdir.check_out_dir(out, LAYOUT, force=force)


# ---- reading records ------------------------------------------------------------------------------


def _sel(records: Iterable[Mapping[str, Any]], stat: str, scheme: str | None = None) -> list[Mapping]:
    return [r for r in records if r.get("stat") == stat and (scheme is None or r.get("scheme") == scheme)]


def _num(value: Any, none_as: float = math.nan) -> float:
    return none_as if value is None else float(value)


def _critical(records: list[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    found = _sel(records, "critical_sigma_w2")
    return found[0] if found else None


# ---- figures -------------------------------------------------------------------------------------


def _figure(width: float, height: float) -> tuple[Any, Any]:
    """``(fig, ax)``: one panel of ``width`` x ``height`` inches in the report style
    (:mod:`initlab.report.style`)."""
    fig, axes = style.figure(1, 1, width=width, height=height)
    return fig, axes[0, 0]


def _saved(fig: Any, path: Path, title: str, alt: str) -> dict[str, Any]:
    width, height = style.save(fig, path)
    return {"file": f"figures/{path.name}", "title": title, "alt": alt, "width": width, "height": height}


def _plain_log_x(ax: Any, ticks: list[float]) -> None:
    """Log x axis labelled with the given values in plain numbers (no 2x10^0)."""
    from matplotlib.ticker import FixedLocator, NullLocator

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticks(ticks, [f"{t:.3g}" for t in ticks])


def _edges(values: list[float], log: bool) -> np.ndarray:
    v = np.log(values) if log else np.asarray(values, dtype=float)
    if len(v) == 1:
        e = np.array([v[0] - 0.5, v[0] + 0.5]) if not log else np.array([v[0] - 0.2, v[0] + 0.2])
    else:
        mids = (v[1:] + v[:-1]) / 2
        e = np.concatenate([[v[0] - (mids[0] - v[0])], mids, [v[-1] + (v[-1] - mids[-1])]])
    return np.exp(e) if log else e


@style.styled
def _fig_phase(records: list[Mapping[str, Any]], path: Path) -> dict[str, str] | None:
    acc = _sel(records, "test_accuracy", "gaussian")
    if not acc:
        return None
    ws = sorted({float(r["sigma_w2"]) for r in acc})
    ds = sorted({int(r["depth"]) for r in acc})
    grid = np.full((len(ds), len(ws)), np.nan)
    for r in acc:
        grid[ds.index(int(r["depth"])), ws.index(float(r["sigma_w2"]))] = _num(r["value"])
    fig, ax = _figure(6.4, 5.0)
    mesh = ax.pcolormesh(_edges(ws, True), _edges([float(d) for d in ds], False), grid, cmap="viridis",
                         vmin=0.0, vmax=1.0, shading="flat")
    fig.colorbar(mesh, ax=ax, label="test accuracy")
    _plain_log_x(ax, ws)
    phases = {float(r["sigma_w2"]): r.get("phase") for r in _sel(records, "xi_c", "mean_field")}
    ax.set_xticks(ws, [f"{w:.3g}" + (f"\n{phases[w]}" if phases.get(w) else "") for w in ws])
    ymax = ds[-1] + (ds[-1] - ds[-2] if len(ds) > 1 else 1)
    theo = sorted(((float(r["sigma_w2"]), _num(r["value"], math.inf))
                   for r in _sel(records, "trainable_depth_theory")), key=lambda t: t[0])
    if theo:
        tx = [t[0] for t in theo if ws[0] / 1.5 <= t[0] <= ws[-1] * 1.5]
        ty = [min(t[1], 10 * ymax) for t in theo if ws[0] / 1.5 <= t[0] <= ws[-1] * 1.5]
        from matplotlib import patheffects

        ax.plot(tx, ty, color="white", lw=2, label=r"theory: $6\,\xi_c$ (trainable depth)",
                path_effects=[patheffects.withStroke(linewidth=3.5, foreground="black")])
    emp = sorted((float(r["sigma_w2"]), _num(r["value"]))
                 for r in _sel(records, "trainable_depth", "gaussian"))
    if emp:
        ax.plot([e[0] for e in emp], [e[1] for e in emp], "o", color="#ff7f0e", ms=6,
                label="deepest trainable (measured)")
    crit = _critical(records)
    if crit is not None:
        ax.axvline(float(crit["value"]), color="#d62728", ls="--", lw=1.2,
                   label=rf"critical $\sigma_w^2$ = {float(crit['value']):.3g}")
    ax.set_ylim(_edges([float(d) for d in ds], False)[0], _edges([float(d) for d in ds], False)[-1])
    ax.set_xlim(_edges(ws, True)[0], _edges(ws, True)[-1])
    ax.set_xlabel(r"$\sigma_w^2$ (weight variance $\times$ fan_in)")
    ax.set_ylabel("depth (hidden layers)")
    act = acc[0].get("activation")
    b2 = acc[0].get("sigma_b2")
    steps = acc[0].get("steps")
    ax.set_title(f"{act}, $\\sigma_b^2$={b2:g}: test accuracy after {steps} SGD steps")
    handles, labels = ax.get_legend_handles_labels()
    if handles:  # below the panel: inside it would hide the top row of cells
        fig.legend(handles, labels, loc="outside lower center", ncol=len(labels),
                   fontsize=style.FONT_PT["legend"])
    return _saved(fig, path, "Trainability phase diagram",
                  "heat map of test accuracy over weight variance and depth, with the 6 xi_c curve")


@style.styled
def _fig_depth_scales(records: list[Mapping[str, Any]], path: Path) -> dict[str, str] | None:
    def curve(stat: str) -> list[tuple[float, float]]:
        rows = _sel(records, stat, "mean_field")
        return sorted((float(r["sigma_w2"]), _num(r["value"], math.inf)) for r in rows)

    xc, xq = curve("xi_c"), curve("xi_q")
    chi = sorted((float(r["sigma_w2"]), _num(r["value"])) for r in _sel(records, "chi_1", "mean_field"))
    if not xc:
        return None
    fig, ax = _figure(6.4, 3.6)
    ax.plot([x for x, _ in xc], [min(y, 1e4) for _, y in xc], color="#1f77b4", label=r"$\xi_c$ (correlation)")
    ax.plot([x for x, _ in xq], [min(y, 1e4) for _, y in xq], color="#2ca02c", label=r"$\xi_q$ (length)")
    lo, hi = xc[0][0], xc[-1][0]
    _plain_log_x(ax, sorted({lo, hi, *[t for t in (0.5, 1.0, 2.0, 4.0, 8.0, 16.0) if lo < t < hi]}))
    ax.set_yscale("log")
    ax.set_xlabel(r"$\sigma_w^2$")
    ax.set_ylabel("depth scale (layers)")
    ax2 = ax.twinx()
    ax2.plot([x for x, _ in chi], [y for _, y in chi], color="#7f7f7f", ls="-.",
             label=r"$\chi_1$ (right axis)")
    style.target_line(ax2, 1.0, r"$\chi_1 = 1$: the critical line", at="start")
    ax2.set_ylabel(r"$\chi_1$")
    crit = _critical(records)
    if crit is not None:
        ax.axvline(float(crit["value"]), color="#d62728", ls="--", lw=1.2, label="critical")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=style.FONT_PT["legend"], loc="upper left")
    ax.set_title(r"mean-field depth scales (Schoenholz et al. 2017); $\xi$ capped at $10^4$")
    return _saved(fig, path, "Depth scales",
                  "xi_c and xi_q against the weight variance; xi_c diverges at the critical point")


@style.styled
def _fig_jacobian(records: list[Mapping[str, Any]], path: Path) -> dict[str, str] | None:
    kinds = [k for k in ("gaussian", "orthogonal") if _sel(records, "jac_sv_p50", k)]
    if not kinds:
        return None
    fig, ax = _figure(6.4, 3.6)
    colors = {"gaussian": "#1f77b4", "orthogonal": "#ff7f0e"}
    for i, kind in enumerate(kinds):
        rows: dict[Any, dict[str, float]] = {}
        for stat in ("jac_sv_p10", "jac_sv_p50", "jac_sv_p90"):
            for r in _sel(records, stat, kind):
                rows.setdefault(r.get("jacobian_seed"), {})[stat] = _num(r["value"])
        for j, (_, v) in enumerate(sorted(rows.items(), key=lambda t: str(t[0]))):
            x = i + (j - (len(rows) - 1) / 2) * 0.12
            ax.vlines(x, v.get("jac_sv_p10", np.nan), v.get("jac_sv_p90", np.nan), color=colors[kind], lw=3)
            ax.plot(x, v.get("jac_sv_p50", np.nan), "o", color="black", ms=4)
    ax.set_yscale("log")
    ax.set_xticks(range(len(kinds)), [f"{k} weights" for k in kinds])
    ax.set_xlim(-0.6, len(kinds) - 0.4)
    ax.set_ylabel("singular value of the input-output Jacobian")
    one = _sel(records, "jac_sv_p50")[0]
    ax.set_title(f"at criticality: depth {one.get('depth')}, width {one.get('width')}\n"
                 "bar: p10 to p90, dot: p50, one per seed")
    return _saved(fig, path, "Dynamical isometry",
                  "p10 to p90 of the Jacobian singular values for Gaussian and orthogonal weights")


def phase_figures(records: Iterable[Mapping[str, Any]], directory: str | Path) -> list[dict[str, str]]:
    """Draw every figure the records allow into ``directory``; return ``{file, title, alt}`` per
    figure (``file`` relative to the report root, ``figures/NAME.png``).

    Figures: ``phase_diagram.png`` (test accuracy over sigma_w2 x depth, with the ``6 xi_c``
    curve, the critical sigma_w2 and the measured deepest trainable depth), ``depth_scales.png``
    (``xi_c``, ``xi_q``, ``chi_1`` against sigma_w2), ``jacobian.png`` (p10-p90 of the Jacobian
    singular values, Gaussian vs orthogonal).
    """
    records = list(records)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for name, fn in (("phase_diagram.png", _fig_phase), ("depth_scales.png", _fig_depth_scales),
                     ("jacobian.png", _fig_jacobian)):
        info = fn(records, directory / name)
        if info is not None:
            out.append(info)
    return out


# ---- HTML ------------------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isinf(value):
            return "∞"
        if math.isnan(value):
            return "–"
        return f"{value:.4g}"
    return html.escape(str(value))


def _table(header: list[str], rows: list[list[Any]], caption: str) -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in row) + "</tr>" for row in rows)
    table = f"<table><caption>{caption}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f"<div class=\"table-wrap\">{table}</div>"


def _css() -> str:
    """The stylesheet every initlab report shares (``templates/report.css``)."""
    from importlib.resources import files

    return (files("initlab.report") / "templates" / "report.css").read_text(encoding="utf-8")


def _phase_section(records: list[Mapping[str, Any]], meta: Mapping[str, Any], tables: list[int]) -> list[str]:
    """The paragraphs and tables under the phase diagram."""
    from initlab.report import phase_text as txt

    acc = _sel(records, "test_accuracy", "gaussian")
    parts = [f"<p>Colour: test accuracy of a plain network of that depth and {txt.SIGMA_W2}. White curve: "
             f"the theory's trainable depth 6 {txt.XI_C}; where it leaves the top of the plot the theory "
             "predicts more than the deepest network tried (it is infinite at the critical "
             f"{txt.SIGMA_W2}, dashed line). Orange dots: the deepest network that trained.</p>"]
    shape = txt.shape(records)
    if shape:
        parts.append(f"<p>{shape}</p>")
    definition = txt.trainable_definition(records, (meta.get("config") or {}).get("trainable_fraction"))
    if definition:
        parts.append(f"<p>{definition}</p>")
    emp = {float(r["sigma_w2"]): r for r in _sel(records, "trainable_depth", "gaussian")}
    theo = {float(r["sigma_w2"]): r for r in _sel(records, "xi_c", "mean_field")}
    chi = {float(r["sigma_w2"]): r for r in _sel(records, "chi_1", "mean_field")}
    rows = []
    for w in sorted(emp):
        xi = _num(theo[w]["value"], math.inf) if w in theo else math.nan
        rows.append([w, theo.get(w, {}).get("phase"), _num(chi[w]["value"]) if w in chi else None, xi, 6 * xi,
                     _num(emp[w]["value"])])
    tables[0] += 1
    parts.append(_table(["σ<sub>w</sub><sup>2</sup>", "phase", "χ<sub>1</sub>", "ξ<sub>c</sub>",
                         "6 ξ<sub>c</sub> (predicted depth)", "deepest trainable depth (measured)"], rows,
                        f"Table {tables[0]}: Predicted and measured trainable depth per "
                        "σ<sub>w</sub><sup>2</sup>"))
    missing = {float(r["sigma_w2"]): r["theory_error"] for r in _sel(records, "xi_c", "mean_field")
               if r.get("theory_error")}
    if missing:
        parts.append(f"<p>Mean-field theory unavailable at {txt.SIGMA_W2} = "
                     + ", ".join(f"{w:.4g}" for w in sorted(missing)) + ": "
                     + html.escape(next(iter(missing.values()))) + "</p>")
    depths = sorted({int(r["depth"]) for r in acc})
    ws = sorted({float(r["sigma_w2"]) for r in acc})
    cell = {(float(r["sigma_w2"]), int(r["depth"])): _num(r["value"]) for r in acc}
    steps = acc[0].get("steps") if acc else None
    tables[0] += 1
    parts.append(_table(["σ<sub>w</sub><sup>2</sup> \\ depth", *map(str, depths)],
                        [[w, *[cell.get((w, d)) for d in depths]] for w in ws],
                        f"Table {tables[0]}: Test accuracy after {_fmt(steps)} SGD steps, per "
                        f"σ<sub>w</sub><sup>2</sup> (rows) and depth in hidden layers (columns)"))
    return parts


def _jacobian_section(records: list[Mapping[str, Any]], tables: list[int]) -> list[str]:
    """The paragraphs and the table under the Jacobian figure."""
    from initlab.report import phase_text as txt

    parts = ["<p>Singular values of the input–output Jacobian of a deep network at the critical point. All "
             "of them near 1 (a short bar, p90 / p10 close to 1) is dynamical isometry: gradients keep their "
             "size in every direction. Orthogonal weights are expected to give a much shorter bar than "
             "Gaussian ones (Pennington et al. 2017).</p>"]
    measured = txt.jacobian(records)
    if measured:
        parts.append(f"<p>{measured}</p>")
    rows = []
    for kind in ("gaussian", "orthogonal"):
        by_seed: dict[Any, dict[str, Any]] = {}
        for stat in ("jac_sv_p10", "jac_sv_p50", "jac_sv_p90", "jac_sv_spread", "jac_sv_mean_sq"):
            for r in _sel(records, stat, kind):
                by_seed.setdefault(r.get("jacobian_seed"), {})[stat] = _num(r["value"], math.inf)
        for seed, v in sorted(by_seed.items(), key=lambda t: str(t[0])):
            rows.append([kind, seed, v.get("jac_sv_p10"), v.get("jac_sv_p50"), v.get("jac_sv_p90"),
                         v.get("jac_sv_spread"), v.get("jac_sv_mean_sq")])
    tables[0] += 1
    parts.append(_table(["weights", "seed", "p10", "p50", "p90", "p90 / p10", "mean s²"], rows,
                        f"Table {tables[0]}: Singular values of the Jacobian, per weight kind and seed"))
    return parts


def _html(records: list[Mapping[str, Any]], figures: list[dict[str, str]], root: Path,
          meta: Mapping[str, Any]) -> str:
    from initlab.experiments.common import plural
    from initlab.report import phase_text as txt

    crit = _critical(records)
    acc = _sel(records, "test_accuracy", "gaussian")
    act = (crit or (acc[0] if acc else {})).get("activation", "?")
    b2 = crit.get("sigma_b2") if crit else None
    parts = [f"<h1>initlab phase — {html.escape(str(act))}: the trainability phase diagram</h1>",
             '<section id="intro">', f"<p>{txt.intro(records)}</p>"]
    if crit is not None:
        q_star = _num(crit.get("q_star"))
        q_text = (f"q* = {_fmt(q_star)}" if not math.isnan(q_star) else
                  "q* = any (a positively homogeneous activation: every q is a fixed point)")
        parts.append(f"<p><b>Critical point</b> at {txt.SIGMA_B2} = {_fmt(b2)}: {txt.SIGMA_W2} = "
                     f"{_fmt(crit.get('value'))}, {q_text}, {txt.XI_Q} = {_fmt(crit.get('xi_q'))} "
                     "layers.</p>")
    ds = meta.get("dataset") or {}
    cfg = meta.get("config") or {}
    threads = (meta.get("environment") or {}).get("threads") or cfg.get("threads")
    if ds or cfg:
        seed = cfg.get("seed")
        parts.append(f"<p>Data: {html.escape(str(ds.get('name', '?')))} ({_fmt(ds.get('n_train'))} train / "
                     f"{_fmt(ds.get('n_test'))} test, {_fmt(ds.get('n_classes'))} classes). Training: width "
                     f"{_fmt(cfg.get('width'))}, {_fmt(cfg.get('steps'))} SGD steps, batch "
                     f"{_fmt(cfg.get('batch_size'))}, lr {_fmt(cfg.get('lr'))}, seed {_fmt(seed)}, "
                     + (plural(int(threads), "torch thread") if threads else "torch's thread count")
                     + " (the accuracies depend on the thread count: rerun with the same seed and threads "
                       "to get the same numbers).</p>")
    tables = [0]
    for n, fig in enumerate(figures, start=1):
        data = base64.b64encode((root / fig["file"]).read_bytes()).decode("ascii")
        size = (f" width=\"{fig['width']}\" height=\"{fig['height']}\"" if fig.get("width") else "")
        slug = Path(fig["file"]).stem.replace("_", "-")
        parts.append(f"</section><section id=\"{slug}\">")  # one section per figure and its tables
        title = html.escape(fig["title"])
        parts.append(f"<h2>{title}</h2><figure><img alt=\"{html.escape(fig['alt'])}\"{size} "
                     f"src=\"data:image/png;base64,{data}\"><figcaption>Figure {n}: {title}</figcaption>"
                     "</figure>")
        if fig["title"].startswith("Trainability"):
            parts += _phase_section(records, meta, tables)
        elif fig["title"].startswith("Depth scales"):
            text = txt.depth_scales(records)
            if text:
                parts.append(f"<p>{text}</p>")
        elif fig["title"].startswith("Dynamical"):
            parts += _jacobian_section(records, tables)
    parts.append("</section><section id=\"run\"><h2>Run</h2>")
    timings = meta.get("timings") or {}
    if timings:
        parts.append("<p>Timings (s): " + ", ".join(f"{html.escape(k)} {v:.1f}" for k, v in timings.items())
                     + ".</p>")
    parts.append('<p>Records: <a href="results.json">results.json</a> · '
                 '<a href="results.csv">results.csv</a></p></section>')
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<title>initlab phase</title>"
            f"<style>\n{_css()}</style></head><body>{''.join(parts)}</body></html>\n")


# ---- writing ---------------------------------------------------------------------------------------


def _fill(directory: Path, records: list[Mapping[str, Any]], meta: Mapping[str, Any]) -> None:
    from initlab import __version__

    figures = phase_figures(records, directory / "figures")
    doc = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "initlab_version": __version__,
        "meta": dict(meta),
        "figures": figures,
        "record_fields": list(RECORD_FIELDS),
        "records": records,
    }
    text = json.dumps(jsonable(doc), indent=1, allow_nan=False)
    (directory / "results.json").write_text(text, encoding="utf-8")
    (directory / "results.csv").write_text(records_to_csv(records), encoding="utf-8")
    (directory / "index.html").write_text(_html(records, figures, directory, meta), encoding="utf-8")


def write_phase_report(
    records: Iterable[Mapping[str, Any]],
    out: str | Path = "initlab-phase",
    *,
    meta: Mapping[str, Any] | None = None,
    force: bool = False,
    notify: Callable[[str], None] | None = None,
) -> Path:
    """Write the phase report of ``records`` (from :func:`initlab.experiments.phase.run_phase`)
    to directory ``out`` (layout in the module docstring), atomically.

    Args:
        records: the run's tidy records.
        out: the report directory.
        meta: JSON-ready context for the page and ``results.json`` (``config``, ``dataset``,
            ``environment``, ``timings``); optional.
        force: write over a non-empty ``out`` that is not a phase report; its contents are
            moved to a backup directory beside it (:func:`initlab.report.outdir.backup_path`),
            never deleted.
        notify: called with the backup's location when one is made (default: a ``UserWarning``).

    An interruption never leaves half a report over a good one, nor a temporary directory
    (:func:`initlab.report.outdir.replace_dir`).

    Returns:
        The report directory.

    Raises:
        FileExistsError, InitlabError, NotADirectoryError, PermissionError: see
            :func:`check_phase_out_dir`.

    >>> write_phase_report([], "/tmp/initlab-phase-doctest", force=True).name  # doctest: +SKIP
    'initlab-phase-doctest'
    """
    records = list(records)
    return outdir.replace_dir(out, LAYOUT, lambda directory: _fill(directory, records, meta or {}),
                              force=force, notify=notify)
