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
from initlab.report import outdir
from initlab.report.outdir import ReportLayout

__all__ = ["SCHEMA", "SCHEMA_VERSION", "MARKER", "LAYOUT", "is_phase_report_dir", "check_phase_out_dir",
           "write_phase_report", "phase_figures"]

SCHEMA = "initlab.phase"
SCHEMA_VERSION = 1
MARKER = ".initlab-phase-report"
FIGURE_DPI = 90


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


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=FIGURE_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


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


def _fig_phase(records: list[Mapping[str, Any]], path: Path) -> dict[str, str] | None:
    acc = _sel(records, "test_accuracy", "gaussian")
    if not acc:
        return None
    ws = sorted({float(r["sigma_w2"]) for r in acc})
    ds = sorted({int(r["depth"]) for r in acc})
    grid = np.full((len(ds), len(ws)), np.nan)
    for r in acc:
        grid[ds.index(int(r["depth"])), ws.index(float(r["sigma_w2"]))] = _num(r["value"])
    fig = _figure(6.4, 4.4)
    ax = fig.add_subplot()
    mesh = ax.pcolormesh(_edges(ws, True), _edges([float(d) for d in ds], False), grid, cmap="viridis",
                         vmin=0.0, vmax=1.0, shading="flat")
    fig.colorbar(mesh, ax=ax, label="test accuracy")
    _plain_log_x(ax, ws)
    ymax = ds[-1] + (ds[-1] - ds[-2] if len(ds) > 1 else 1)
    theo = sorted(((float(r["sigma_w2"]), _num(r["value"], math.inf))
                   for r in _sel(records, "trainable_depth_theory")), key=lambda t: t[0])
    if theo:
        tx = [t[0] for t in theo if ws[0] / 1.5 <= t[0] <= ws[-1] * 1.5]
        ty = [min(t[1], 10 * ymax) for t in theo if ws[0] / 1.5 <= t[0] <= ws[-1] * 1.5]
        ax.plot(tx, ty, color="white", lw=2, label=r"theory: $6\,\xi_c$")
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
    ax.set_title(f"{act}, $\\sigma_b^2$={b2:g}: test accuracy after {steps} SGD steps", fontsize=10)
    ax.legend(loc="upper right", fontsize=8, framealpha=0.8)
    fig.savefig(path, format="png", dpi=FIGURE_DPI)
    return {"file": f"figures/{path.name}", "title": "Trainability phase diagram",
            "alt": "heat map of test accuracy over weight variance and depth, with the 6 xi_c curve"}


def _fig_depth_scales(records: list[Mapping[str, Any]], path: Path) -> dict[str, str] | None:
    def curve(stat: str) -> list[tuple[float, float]]:
        rows = _sel(records, stat, "mean_field")
        return sorted((float(r["sigma_w2"]), _num(r["value"], math.inf)) for r in rows)

    xc, xq = curve("xi_c"), curve("xi_q")
    chi = sorted((float(r["sigma_w2"]), _num(r["value"])) for r in _sel(records, "chi_1", "mean_field"))
    if not xc:
        return None
    fig = _figure(6.4, 3.6)
    ax = fig.add_subplot()
    ax.plot([x for x, _ in xc], [min(y, 1e4) for _, y in xc], color="#1f77b4", label=r"$\xi_c$ (correlation)")
    ax.plot([x for x, _ in xq], [min(y, 1e4) for _, y in xq], color="#2ca02c", label=r"$\xi_q$ (length)")
    lo, hi = xc[0][0], xc[-1][0]
    _plain_log_x(ax, sorted({lo, hi, *[t for t in (0.5, 1.0, 2.0, 4.0, 8.0, 16.0) if lo < t < hi]}))
    ax.set_yscale("log")
    ax.set_xlabel(r"$\sigma_w^2$")
    ax.set_ylabel("depth scale (layers)")
    ax2 = ax.twinx()
    ax2.plot([x for x, _ in chi], [y for _, y in chi], color="#7f7f7f", ls=":", label=r"$\chi_1$")
    ax2.axhline(1.0, color="#7f7f7f", lw=0.6)
    ax2.set_ylabel(r"$\chi_1$")
    crit = _critical(records)
    if crit is not None:
        ax.axvline(float(crit["value"]), color="#d62728", ls="--", lw=1.2, label="critical")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, loc="upper left")
    ax.set_title(r"mean-field depth scales (Schoenholz et al. 2017); $\xi$ capped at $10^4$", fontsize=10)
    fig.savefig(path, format="png", dpi=FIGURE_DPI)
    return {"file": f"figures/{path.name}", "title": "Depth scales",
            "alt": "xi_c and xi_q against the weight variance; xi_c diverges at the critical point"}


def _fig_jacobian(records: list[Mapping[str, Any]], path: Path) -> dict[str, str] | None:
    kinds = [k for k in ("gaussian", "orthogonal") if _sel(records, "jac_sv_p50", k)]
    if not kinds:
        return None
    fig = _figure(5.2, 3.6)
    ax = fig.add_subplot()
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
    ax.set_title(f"at criticality: depth {one.get('depth')}, width {one.get('width')} "
                 "(bar p10-p90, dot p50, one per seed)", fontsize=9)
    fig.savefig(path, format="png", dpi=FIGURE_DPI)
    return {"file": f"figures/{path.name}", "title": "Dynamical isometry",
            "alt": "p10 to p90 of the Jacobian singular values for Gaussian and orthogonal weights"}


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


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html(records: list[Mapping[str, Any]], figures: list[dict[str, str]], root: Path,
          meta: Mapping[str, Any]) -> str:
    crit = _critical(records)
    acc = _sel(records, "test_accuracy", "gaussian")
    act = (crit or (acc[0] if acc else {})).get("activation", "?")
    b2 = crit.get("sigma_b2") if crit else None
    parts = [f"<h1>initlab phase — {html.escape(str(act))}</h1>"]
    intro = ("A plain deep network trains only if signals and gradients survive its depth. Mean-field "
             "theory (Poole et al. 2016; Schoenholz et al. 2017) predicts the depth scale "
             "ξ<sub>c</sub> over which two inputs' correlations converge; networks deeper than about "
             "6 ξ<sub>c</sub> do not train. ξ<sub>c</sub> diverges on the critical line χ<sub>1</sub> = 1 "
             "(the edge of chaos), where orthogonal weights also give a well-conditioned input-output "
             "Jacobian (dynamical isometry; Pennington et al. 2017). With the short SGD budget used here the "
             "measured depths sit below 6 ξ<sub>c</sub> (Schoenholz et al. trained for far longer), but the "
             "shape — deepest at the critical point, falling off on both sides — is the prediction.")
    parts.append(f"<p>{intro}</p>")
    if crit is not None:
        q_star = _num(crit.get("q_star"))
        q_text = (f"q* = {_fmt(q_star)}" if not math.isnan(q_star) else
                  "q* = any (a positively homogeneous activation: every q is a fixed point)")
        parts.append(f"<p><b>Critical point</b> at σ<sub>b</sub><sup>2</sup> = {_fmt(b2)}: "
                     f"σ<sub>w</sub><sup>2</sup> = {_fmt(crit.get('value'))}, "
                     f"{q_text}, "
                     f"ξ<sub>q</sub> = {_fmt(crit.get('xi_q'))}.</p>")
    ds = meta.get("dataset") or {}
    cfg = meta.get("config") or {}
    threads = (meta.get("environment") or {}).get("threads") or cfg.get("threads")
    if ds or cfg:
        parts.append(f"<p>Data: {html.escape(str(ds.get('name', '?')))} ({_fmt(ds.get('n_train'))} train / "
                     f"{_fmt(ds.get('n_test'))} test, {_fmt(ds.get('n_classes'))} classes). Training: width "
                     f"{_fmt(cfg.get('width'))}, {_fmt(cfg.get('steps'))} SGD steps, batch "
                     f"{_fmt(cfg.get('batch_size'))}, lr {_fmt(cfg.get('lr'))}, "
                     f"seed {_fmt(cfg.get('seed'))}, torch threads {_fmt(threads)} (the accuracies "
                     "depend on the thread count: rerun with the same seed and threads to get the same "
                     "numbers).</p>")
    for fig in figures:
        data = base64.b64encode((root / fig["file"]).read_bytes()).decode("ascii")
        parts.append(f"<h2>{html.escape(fig['title'])}</h2><img alt=\"{html.escape(fig['alt'])}\" "
                     f"src=\"data:image/png;base64,{data}\">")
        if fig["title"].startswith("Trainability"):
            parts.append("<p>Colour: test accuracy of a plain network of that depth and σ<sub>w</sub>"
                         "<sup>2</sup>. White curve: the theory's trainable depth 6 ξ<sub>c</sub>; where it "
                         "leaves the top of the plot the theory predicts more than the deepest network "
                         "tried (it is infinite at the critical σ<sub>w</sub><sup>2</sup>, dashed line). "
                         "Orange dots: the deepest network that trained.</p>")
            emp = {float(r["sigma_w2"]): r for r in _sel(records, "trainable_depth", "gaussian")}
            theo = {float(r["sigma_w2"]): r for r in _sel(records, "xi_c", "mean_field")}
            chi = {float(r["sigma_w2"]): r for r in _sel(records, "chi_1", "mean_field")}
            rows = []
            for w in sorted(emp):
                xi = _num(theo[w]["value"], math.inf) if w in theo else math.nan
                rows.append([w, theo.get(w, {}).get("phase"), _num(chi[w]["value"]) if w in chi else None,
                             xi, 6 * xi, _num(emp[w]["value"])])
            parts.append(_table(["σw²", "phase", "χ1", "ξc", "6 ξc (predicted depth)",
                                 "deepest trainable depth (measured)"], rows))
            missing = {float(r["sigma_w2"]): r["theory_error"] for r in _sel(records, "xi_c", "mean_field")
                       if r.get("theory_error")}
            if missing:
                parts.append("<p>Mean-field theory unavailable at σ<sub>w</sub><sup>2</sup> = "
                             + ", ".join(f"{w:.4g}" for w in sorted(missing)) + ": "
                             + html.escape(next(iter(missing.values()))) + "</p>")
            if emp:
                thr = next(iter(emp.values())).get("threshold")
                parts.append(f"<p>“Trainable”: test accuracy ≥ {_fmt(thr)} (chance + "
                             "trainable_fraction of the way to the best accuracy of the grid).</p>")
            depths = sorted({int(r["depth"]) for r in acc})
            ws = sorted({float(r["sigma_w2"]) for r in acc})
            cell = {(float(r["sigma_w2"]), int(r["depth"])): _num(r["value"]) for r in acc}
            steps = acc[0].get("steps") if acc else None
            parts.append(f"<p>Test accuracy after {_fmt(steps)} SGD steps, per σ<sub>w</sub><sup>2</sup> "
                         "(rows) and depth in hidden layers (columns):</p>")
            parts.append(_table(["σw² \\ depth", *map(str, depths)],
                                [[w, *[cell.get((w, d)) for d in depths]] for w in ws]))
        if fig["title"].startswith("Dynamical"):
            parts.append("<p>Singular values of the input–output Jacobian of a deep network at the "
                         "critical point. All of them near 1 (a short bar, p90 / p10 close to 1) is "
                         "dynamical isometry: gradients keep their size in every direction. Expect "
                         "orthogonal weights to give a much shorter bar than Gaussian ones (Pennington "
                         "et al. 2017).</p>")
            rows = []
            for kind in ("gaussian", "orthogonal"):
                by_seed: dict[Any, dict[str, Any]] = {}
                for stat in ("jac_sv_p10", "jac_sv_p50", "jac_sv_p90", "jac_sv_spread", "jac_sv_mean_sq"):
                    for r in _sel(records, stat, kind):
                        by_seed.setdefault(r.get("jacobian_seed"), {})[stat] = _num(r["value"], math.inf)
                for seed, v in sorted(by_seed.items(), key=lambda t: str(t[0])):
                    rows.append([kind, seed, v.get("jac_sv_p10"), v.get("jac_sv_p50"), v.get("jac_sv_p90"),
                                 v.get("jac_sv_spread"), v.get("jac_sv_mean_sq")])
            parts.append(_table(["weights", "seed", "p10", "p50", "p90", "p90 / p10", "mean s²"], rows))
    timings = meta.get("timings") or {}
    if timings:
        parts.append("<p>Timings (s): " + ", ".join(f"{html.escape(k)} {v:.1f}" for k, v in timings.items())
                     + "</p>")
    parts.append('<p>Records: <a href="results.json">results.json</a> · '
                 '<a href="results.csv">results.csv</a></p>')
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.2em .5em;"
             "text-align:right}img{max-width:100%}")
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>initlab phase</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n")


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
