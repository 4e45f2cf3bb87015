"""The sweep report: figures, an HTML page in the house style, ``results.json`` and ``results.csv``,
written from a sweep's records only (what ``initlab sweep report DIR`` writes, by default to
``DIR/report``).

Layout::

    index.html              the page: the per-grid-point table (median and min-max over seeds),
                            figures (heat maps, curves), failed cells, the spec
    figures/*.png           the figures (:mod:`initlab.report.sweep_figures`)
    results.json            {"schema": "initlab.sweep-report", "schema_version": 1, "initlab_version",
                             "meta": {...}, "figures": [...], "record_fields": [...], "records": [...]}
    results.csv             the records, one per row
    .initlab-sweep-report   marker file

Written atomically with the same ``--out`` rules as every initlab report
(:mod:`initlab.report.outdir`): an existing sweep report is replaced, anything else is refused
unless ``force`` (then kept in a backup beside it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from initlab.errors import InitlabError
from initlab.records import RECORD_FIELDS, jsonable, records_to_csv
from initlab.report import outdir
from initlab.report.outdir import ReportLayout
from initlab.report.sweep_figures import summary_table, sweep_figures

__all__ = ["SCHEMA", "SCHEMA_VERSION", "LAYOUT", "write_sweep_report", "check_report_out",
           "render_sweep_html", "spec_toml"]

SCHEMA = "initlab.sweep-report"
SCHEMA_VERSION = 1

#: The sweep report's directory, for :mod:`initlab.report.outdir`.
LAYOUT = ReportLayout(SCHEMA, SCHEMA_VERSION, ".initlab-sweep-report",
                      ("index.html", "results.json", "results.csv"), label="initlab sweep report",
                      example="sweep-report", command="initlab sweep report")


def spec_toml(spec: Mapping[str, Mapping[str, Any]]) -> str:
    """A spec's tables (``sweep``, ``fixed``, ``grid``, ``random``) as TOML text (a ``random``
    distribution as an inline table, ``lr = {"loguniform" = [0.001, 0.1]}``).

    >>> print(spec_toml({"sweep": {"experiment": "phase", "seeds": [0, 1]}, "grid": {"depth": [2, 4]}}))
    [sweep]
    experiment = "phase"
    seeds = [0, 1]
    <BLANKLINE>
    [grid]
    depth = [2, 4]
    """
    parts = []
    for table, values in spec.items():
        if values:
            lines = [f"[{table}]"] + [f"{k} = {json.dumps(jsonable(v), separators=(', ', ' = '))}"
                                      for k, v in values.items()]
            parts.append("\n".join(lines))
    return "\n\n".join(parts)


def render_sweep_html(records: Sequence[Mapping[str, Any]], figures: list[Any],
                      meta: Mapping[str, Any]) -> str:
    """The report page of a sweep's ``records`` and written ``figures``; ``meta`` is the sweep's
    manifest plus ``n_stored``, ``headline`` and ``failures`` (``{key, params, error}``)."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("initlab.report", "templates"),
                             autoescape=jinja2.select_autoescape(["html"]), trim_blocks=True,
                             lstrip_blocks=True)
    axes = list(meta.get("axes") or [])
    table = summary_table(records, axes, list(meta.get("headline") or []))
    n_cells = int(meta.get("n_cells") or 0)
    n_stored = int(meta.get("n_stored") or 0)
    failures = list(meta.get("failures") or [])
    return env.get_template("sweep.html").render(
        title=f"initlab sweep: {meta.get('name') or meta.get('experiment')}",
        experiment=meta.get("experiment"), n_cells=n_cells, n_stored=n_stored, failures=failures,
        n_pending=max(0, n_cells - n_stored - len(failures)), axes=axes, versions=meta.get("versions") or {},
        table=table, table_caption="per grid point: median and min–max over seeds",
        figures=figures, spec=spec_toml(meta.get("spec") or {}))


def _fill(directory: Path, records: list[Mapping[str, Any]], meta: Mapping[str, Any]) -> None:
    from initlab import __version__

    figures = sweep_figures(records, list(meta.get("axes") or []), list(meta.get("headline") or []),
                            directory / "figures")
    doc = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "initlab_version": __version__,
           "meta": dict(meta), "figures": [vars(f) for f in figures], "record_fields": list(RECORD_FIELDS),
           "records": records}
    text = json.dumps(jsonable(doc), indent=1, allow_nan=False)
    (directory / "results.json").write_text(text, encoding="utf-8")
    (directory / "results.csv").write_text(records_to_csv(records), encoding="utf-8")
    (directory / "index.html").write_text(render_sweep_html(records, figures, meta), encoding="utf-8")


def check_report_out(sweep_dir: str | Path, out: str | Path) -> None:
    """Refuse a report directory ``out`` that would replace (or back up) the sweep in ``sweep_dir``
    or part of it: the sweep directory itself, a directory inside it other than its default report
    directory ``sweep_dir/report``, or a directory that contains it. A report replaces its ``--out``
    as a whole (with ``--force``, moving what was there to a backup), so any of these would move the
    manifest or the cells away and leave ``sweep_dir`` unreadable. Paths are compared resolved
    (symbolic links and ``..`` followed), whether ``out`` exists or not.

    Raises:
        InitlabError: ``out`` overlaps the sweep (even with ``--force``); the message names both.

    >>> check_report_out("/data/sweep", "/data/sweep/report")
    >>> check_report_out("/data/sweep", "/data/sweep/cells")
    Traceback (most recent call last):
    ...
    initlab.errors.InitlabError: --out '/data/sweep/cells' is inside the sweep directory /data/sweep: ...
    """
    sweep = Path(os.path.realpath(sweep_dir))
    target = Path(os.path.realpath(out))
    fix = f"choose a directory outside it, or leave --out out (default: {Path(sweep_dir) / 'report'})"
    if target == sweep:
        raise InitlabError(f"--out {str(out)!r} is the sweep directory {sweep_dir}: the report would replace "
                           f"the sweep: {fix}")
    if sweep in target.parents and target != sweep / "report":
        raise InitlabError(f"--out {str(out)!r} is inside the sweep directory {sweep_dir}: the report would "
                           f"replace part of the sweep: {fix}")
    if target in sweep.parents:
        raise InitlabError(f"--out {str(out)!r} contains the sweep directory {sweep_dir}: the report would "
                           f"replace the sweep: {fix}")


def write_sweep_report(records: Iterable[Mapping[str, Any]], out: str | Path, *, meta: Mapping[str, Any],
                       force: bool = False, notify: Callable[[str], None] | None = None,
                       sweep_dir: str | Path | None = None) -> Path:
    """Write the report of a sweep's ``records`` to directory ``out`` (layout in the module
    docstring), atomically.

    Args:
        records: the sweep's tidy records (with its axes and ``cell`` as extras).
        out: the report directory.
        meta: the sweep's manifest plus ``n_stored``, ``headline`` and ``failures``.
        force, notify: as :func:`initlab.report.phase_report.write_phase_report`.
        sweep_dir: the sweep's directory, if ``records`` come from one: ``out`` may not overlap it
            (:func:`check_report_out`), even with ``force``.

    Raises:
        FileExistsError, InitlabError, NotADirectoryError, PermissionError: as
            :func:`initlab.report.outdir.check_out_dir`; InitlabError: as :func:`check_report_out`.
    """
    if sweep_dir is not None:
        check_report_out(sweep_dir, out)
    records = list(records)
    return outdir.replace_dir(out, LAYOUT, lambda d: _fill(d, records, meta), force=force, notify=notify)
