"""The demo report: figures, a self-contained HTML page, ``results.json`` and ``results.csv``,
written from records only.

Layout of a report directory (default ``initlab-report/``)::

    index.html          the report; opens from disk (figures are files beside it)
    figures/*.png       matplotlib figures (Agg, PNG at 192 dpi; initlab.report.style)
    results.json        everything below, machine-readable
    results.csv         the records, one per row (columns: the record fields, then extras)
    .initlab-report     marker file: "initlab.report <schema_version>"

``results.json`` schema (``schema_version`` 1) — one JSON object:

==================  ========================================================================
key                 value
==================  ========================================================================
``schema``          the string ``"initlab.report"`` (identifies the file)
``schema_version``  integer, :data:`SCHEMA_VERSION`; bumped on any incompatible change
``initlab_version`` the initlab version that wrote it
``created_utc``     ISO 8601 start time of the run
``config``          object: ``demo`` (the ``initlab demo`` options, presets resolved;
                    ``limit`` and ``max_test``: the training and test examples used),
                    ``forward``, ``symmetry``, ``training`` (each experiment's config),
                    ``depth`` (the depth grid: ``depths``, ``activations``, ``schemes``
                    and the settings its runs share)
``dataset``         object: ``name``, ``n_train``, ``n_test``, ``n_features``, ``n_classes``,
                    ``source``
``environment``     object: versions (``initlab``, ``torch``, ``python``), ``threads``,
                    ``platform``, ``started_utc``
``timings``         object: seconds for ``data``, ``forward``, ``symmetry``, ``training``,
                    ``depth``, ``total``
``summary``         array of rows: ``activation``, ``evidence`` (``"training"``,
                    ``"training at depth D"``, ``"signal propagation"``,
                    ``"symmetry + training"``), ``best_scheme`` (initlab's ``"auto"``,
                    LSUV and pretraining among the candidates), ``best_value``,
                    ``best_classic_scheme``, ``best_classic_value``, ``rule``,
                    ``rule_schemes``, ``rule_scheme``,
                    ``rule_value``, ``verdict`` (starts with ``"agree"`` or
                    ``"disagree"``, or is ``"tie at chance – no classic scheme
                    trains"``), ``criterion``, ``source``, ``ranking``
``figures``         array of ``{file, title, section, alt, width, height}``; ``file``
                    relative to the report, ``width`` x ``height`` the CSS pixels it is
                    shown at (:mod:`initlab.report.style`)
``record_fields``   the standard record fields, in order
``records``         array of records: objects with the keys ``experiment``, ``scheme``,
                    ``activation``, ``layer``, ``stat``, ``value``, ``epoch``, ``seed``
                    (``null`` where not applicable; ``value`` ``null`` also for NaN/inf)
                    plus extras (``module``, ``gain``, ``bin``, ``bin_lo``, ``bin_hi``,
                    ``dropout``, ``width``, ``step``, ``target``, ...)
==================  ========================================================================

Experiments and stats in ``records``: ``forward`` (``std``, ``mean``, ``saturation``,
``dead_fraction``, ``zero_fraction``, ``grad_std``, ``histogram`` per layer 1..5), ``symmetry``
(``distinct_units``, ``distinct_units_relative``, ``unit_spread``, ``test_accuracy``),
``training`` (``train_loss``, ``test_loss``, ``test_accuracy`` per epoch;
``test_accuracy_at_step``; ``final_test_accuracy``, ``mean_test_accuracy``, ``steps_to_target``
with ``init_steps``, ``diverged`` (extra ``step``), ``seconds``), ``depth`` (the same per-run stats, extra
``depth``), ``pretrain`` (``reconstruction_loss`` per layer and epoch), ``lsuv`` (per-layer LSUV
stats) and ``summary`` (``agree`` 1/0 per row, ``null`` for a tie at chance).

Writing is atomic at the directory level: the report is built in a temporary directory next to
``out`` and renamed into place; an existing initlab report is renamed aside first and deleted
only after the new one is in place. A non-empty ``out`` that is not an initlab report (no marker
file, or files initlab does not write) is refused unless ``force=True``; with ``force`` its
contents are moved to a backup directory beside it, never deleted. The current directory, its
ancestors and files are always refused. These rules are :mod:`initlab.report.outdir`'s, shared
with the phase report (:mod:`initlab.report.phase_report`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from initlab.errors import InitlabError
from initlab.records import RECORD_FIELDS, jsonable, records_to_csv
from initlab.report import outdir
from initlab.report.outdir import ReportLayout, backup_path

__all__ = ["SCHEMA", "SCHEMA_VERSION", "MARKER", "REPORT_ENTRIES", "LAYOUT", "is_report_dir",
           "foreign_entries", "check_out_dir", "backup_path", "results_document", "validate_results",
           "write_report"]

SCHEMA = "initlab.report"
SCHEMA_VERSION = 1
MARKER = ".initlab-report"

_TOP_KEYS = {"schema": str, "schema_version": int, "initlab_version": str, "created_utc": str,
             "config": dict, "dataset": dict, "environment": dict, "timings": dict, "summary": list,
             "figures": list, "record_fields": list, "records": list}


#: The demo report's directory, for :mod:`initlab.report.outdir` (which checks ``--out`` and
#: replaces the directory atomically for every report).
LAYOUT = ReportLayout(SCHEMA, SCHEMA_VERSION, MARKER, ("index.html", "results.json", "results.csv"),
                      label="initlab report", example="initlab-report", command="initlab demo")

#: What a report directory holds; anything else in it is the user's and is never deleted.
REPORT_ENTRIES = LAYOUT.entries


def foreign_entries(path: str | Path) -> list[str]:
    """Entries of directory ``path`` that :func:`write_report` does not write (sorted; names
    inside ``figures/`` are given as ``figures/NAME``). Symbolic links always count as foreign;
    file-browser metadata (``.DS_Store``, ``Thumbs.db``, ``desktop.ini``) never does. See
    :func:`initlab.report.outdir.foreign_entries`.

    >>> foreign_entries("/nonexistent-initlab-dir")
    []
    """
    return outdir.foreign_entries(path, LAYOUT)


def is_report_dir(path: str | Path) -> bool:
    """Whether ``path`` is a directory that holds an initlab report and nothing else: the marker
    file :data:`MARKER` is there and every entry is one :func:`write_report` writes
    (:data:`REPORT_ENTRIES`, PNG files in ``figures/``). Only such a directory is replaced
    without ``force``.

    >>> is_report_dir("/nonexistent-initlab-dir")
    False
    """
    return outdir.is_report_dir(path, LAYOUT)


def check_out_dir(out: str | Path, *, force: bool = False) -> Path:
    """Check that a report may be written to ``out`` and return it as a ``Path``; nothing is
    created or changed. :func:`initlab.report.outdir.check_out_dir` with :data:`LAYOUT`: a missing
    path, an empty directory or an initlab report (:func:`is_report_dir`) is allowed; any other
    directory only with ``force=True`` (its contents are then kept in a backup beside it); the
    current directory, its ancestors, top-level and home directories, files and links never.

    Raises:
        FileExistsError, InitlabError, NotADirectoryError, PermissionError: as
            :func:`initlab.report.outdir.check_out_dir` says.

    >>> check_out_dir("/nonexistent-initlab-dir").name
    'nonexistent-initlab-dir'
    """
    return outdir.check_out_dir(out, LAYOUT, force=force)


def results_document(result: Any, figures: list[Any]) -> dict[str, Any]:
    """The ``results.json`` object (see the module docstring) of a
    :class:`initlab.experiments.DemoResult` and its figures (:class:`~initlab.report.figures.FigureInfo`).

    >>> from initlab.experiments import DemoConfig, run_demo
    >>> doc = results_document(run_demo(DemoConfig(quick=True), progress=False), [])  # doctest: +SKIP
    >>> validate_results(doc)  # doctest: +SKIP
    """
    from dataclasses import asdict

    from initlab import __version__

    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "initlab_version": __version__,
        "created_utc": result.environment.get("started_utc", ""),
        "config": result.configs(),
        "dataset": dict(result.dataset),
        "environment": dict(result.environment),
        "timings": {k: round(v, 3) for k, v in result.timings.items()},
        "summary": result.summary.rows,
        "figures": [asdict(f) for f in figures],
        "record_fields": list(RECORD_FIELDS),
        "records": result.records,
    }


def validate_results(doc: Any) -> None:
    """Check that ``doc`` follows the documented ``results.json`` schema.

    Args:
        doc: the parsed ``results.json`` (a dict), or the path of the file (``str`` or
            ``pathlib.Path``), or of the report directory that holds it.

    Raises:
        InitlabError: the first deviation found (missing key, wrong type, wrong schema or
            version, a record without a standard field), or a file that is missing or not JSON.

    >>> validate_results({"schema": "other"})
    Traceback (most recent call last):
    ...
    initlab.errors.InitlabError: results.json: key 'schema_version' is missing: ...
    """
    if isinstance(doc, (str, Path)):
        path = Path(doc)
        if path.is_dir():
            path = path / "results.json"
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InitlabError(f"{path} does not exist: pass the results.json of initlab demo") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InitlabError(f"{path} is not a readable JSON file ({exc})") from None
    if not isinstance(doc, dict):
        raise InitlabError(f"results.json: top level is {type(doc).__name__}, expected an object")
    for key, typ in _TOP_KEYS.items():
        if key not in doc:
            raise InitlabError(f"results.json: key {key!r} is missing: write it with initlab.report")
        if not isinstance(doc[key], typ) or (typ is int and isinstance(doc[key], bool)):
            raise InitlabError(f"results.json: key {key!r} is {type(doc[key]).__name__}, "
                               f"expected {typ.__name__}")
    if doc["schema"] != SCHEMA:
        raise InitlabError(f"results.json: schema {doc['schema']!r} is not {SCHEMA!r}")
    if doc["schema_version"] != SCHEMA_VERSION:
        raise InitlabError(f"results.json: schema_version {doc['schema_version']} is not {SCHEMA_VERSION}")
    if doc["record_fields"] != list(RECORD_FIELDS):
        raise InitlabError(f"results.json: record_fields {doc['record_fields']} differ from "
                           f"{list(RECORD_FIELDS)}")
    for sub in ("demo", "forward", "symmetry", "training"):
        if not isinstance(doc["config"].get(sub), dict):
            raise InitlabError(f"results.json: config.{sub} is missing")
    for key in ("name", "n_train", "n_test", "n_features", "n_classes"):
        if key not in doc["dataset"]:
            raise InitlabError(f"results.json: dataset.{key} is missing")
    for i, rec in enumerate(doc["records"]):
        if not isinstance(rec, dict) or any(k not in rec for k in RECORD_FIELDS):
            raise InitlabError(f"results.json: record {i} lacks a standard field: {rec!r:.200}")
        if not isinstance(rec["stat"], str) or not isinstance(rec["experiment"], str):
            raise InitlabError(f"results.json: record {i} has a non-string experiment or stat")
        if rec["value"] is not None and not isinstance(rec["value"], (int, float)):
            raise InitlabError(f"results.json: record {i} has a non-numeric value {rec['value']!r}")
    for i, row in enumerate(doc["summary"]):
        for key in ("activation", "evidence", "best_scheme", "rule", "verdict"):
            if key not in row:
                raise InitlabError(f"results.json: summary row {i} lacks {key!r}")
    for i, fig in enumerate(doc["figures"]):
        if not isinstance(fig, dict) or not isinstance(fig.get("file"), str):
            raise InitlabError(f"results.json: figure {i} lacks a file name")


def _fill(directory: Path, result: Any) -> None:
    from initlab.report.figures import make_figures
    from initlab.report.html import PHASE_LINK, render_html

    figures = make_figures(result.records, directory / "figures")
    doc = results_document(result, figures)
    (directory / "results.json").write_text(json.dumps(jsonable(doc), indent=1, allow_nan=False),
                                            encoding="utf-8")
    (directory / "results.csv").write_text(records_to_csv(result.records), encoding="utf-8")
    # ``directory`` is a sibling of the final report, so the relative link resolves the same way
    phase_available = (directory / PHASE_LINK).is_file()
    (directory / "index.html").write_text(render_html(result, figures, phase_available=phase_available),
                                          encoding="utf-8")


def write_report(result: Any, out: str | Path = "initlab-report", *, force: bool = False,
                 notify: Any = None) -> Path:
    """Write the report of a :class:`initlab.experiments.DemoResult` to directory ``out``.

    The report is built in ``.<out>.tmp-<id>`` next to ``out`` and renamed into place, so an
    interruption never leaves half a report over a good one. An existing ``out``:

    * an empty directory or an initlab report (:func:`is_report_dir`) is renamed to
      ``.<out>.old-<id>`` and deleted once the new report is in place (renamed back if that fails);
    * any other directory (only with ``force=True``) is renamed to :func:`backup_path` and kept:
      nothing a user had is deleted. ``notify(message)`` is called with its location (default: a
      ``UserWarning``).

    Raises:
        FileExistsError, InitlabError, NotADirectoryError, PermissionError: see
            :func:`check_out_dir`.

    Returns:
        The report directory.

    >>> from initlab.experiments import DemoConfig, run_demo
    >>> write_report(run_demo(DemoConfig(quick=True)), "initlab-report")  # doctest: +SKIP
    PosixPath('initlab-report')
    """
    return outdir.replace_dir(out, LAYOUT, lambda directory: _fill(directory, result), force=force,
                              notify=notify)
