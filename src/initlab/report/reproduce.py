"""The ``initlab reproduce`` report: one section per reproduced paper (its claim, the paper's setup
and ours, the scale difference, verdicts, figures, the paper's numbers beside ours), a closing
table of every number, ``results.json`` and ``results.csv`` — written from records only.

Layout of a report directory (default ``initlab-reproduce/``)::

    index.html                  the page; opens from disk (figures are files beside it)
    figures/*.png               the figures (:mod:`initlab.report.reproduce_figures`)
    results.json                the object below
    results.csv                 the records, one per row (standard fields first, then extras)
    .initlab-reproduce-report   marker file: "initlab.reproduce <schema_version>"

``results.json`` (``schema_version`` 1): ``schema`` (``"initlab.reproduce"``), ``schema_version``,
``initlab_version``, ``created_utc``, ``run`` (``names``, ``quick``, ``seed``, ``seeds``,
``threads``, ``command``), ``config`` (name -> that reproduction's config), ``sections`` (name,
title, citation, claim, paper_setup, our_setup, scale per reproduction), ``environment``,
``timings`` (seconds per reproduction and ``total``), ``figures`` (``{file, title, section, alt,
width, height}``), ``record_fields`` and ``records``: tidy records whose ``experiment`` is the
reproduction's name and whose extra ``source`` is ``"ours"`` or ``"paper"`` (a number or finding
quoted from the paper; ``where`` names its table or figure); ``stat="verdict"`` records hold
1.0 (agrees), 0.5 (agrees in part), 0.0 (does not agree) or ``null`` (cannot tell) with the claim,
the sentence and the verdict's word in ``claim``, ``text`` and ``word``. NaN and inf are written
as ``null``.

Writing follows :mod:`initlab.report.outdir`: built in a temporary directory and renamed into
place; a non-empty ``out`` that is not a reproduce report is refused unless ``force=True``, and
then kept as a backup beside it, never deleted.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from initlab.errors import InitlabError
from initlab.records import RECORD_FIELDS, jsonable, records_to_csv
from initlab.report import outdir
from initlab.report.outdir import ReportLayout

__all__ = ["SCHEMA", "SCHEMA_VERSION", "MARKER", "LAYOUT", "check_reproduce_out_dir",
           "is_reproduce_report_dir", "results_document", "validate_reproduce_results",
           "render_reproduce_html", "write_reproduce_report"]

SCHEMA = "initlab.reproduce"
SCHEMA_VERSION = 1
MARKER = ".initlab-reproduce-report"

#: The reproduce report's directory (the same ``--out`` rules as every initlab report).
LAYOUT = ReportLayout(SCHEMA, SCHEMA_VERSION, MARKER, ("index.html", "results.json", "results.csv"),
                      label="initlab reproduce report", example="initlab-reproduce",
                      command="initlab reproduce")

_TOP_KEYS = {"schema": str, "schema_version": int, "initlab_version": str, "created_utc": str, "run": dict,
             "config": dict, "sections": list, "environment": dict, "timings": dict, "figures": list,
             "record_fields": list, "records": list}
_SECTION_KEYS = ("name", "title", "citation", "claim", "paper_setup", "our_setup", "scale")


def is_reproduce_report_dir(path: str | Path) -> bool:
    """Whether ``path`` holds a reproduce report and nothing else (only such a directory is replaced
    without ``force``).

    >>> is_reproduce_report_dir("/nonexistent-initlab-dir")
    False
    """
    return outdir.is_report_dir(path, LAYOUT)


def check_reproduce_out_dir(out: str | Path, *, force: bool = False) -> Path:
    """Check that a reproduce report may be written to ``out``; nothing is created or changed
    (:func:`initlab.report.outdir.check_out_dir` with :data:`LAYOUT`).

    Raises:
        FileExistsError, InitlabError, NotADirectoryError, PermissionError: as that function says.

    >>> check_reproduce_out_dir("/nonexistent-initlab-dir").name
    'nonexistent-initlab-dir'
    """
    return outdir.check_out_dir(out, LAYOUT, force=force)


def results_document(result: Any, figures: list[Mapping[str, Any]], run: Mapping[str, Any]) -> dict[str, Any]:
    """The ``results.json`` object (module docstring) of a
    :class:`initlab.experiments.reproduce.ReproduceResult`, its figures and the ``run`` options."""
    from initlab import __version__

    return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "initlab_version": __version__,
            "created_utc": str(result.environment.get("started_utc", "")), "run": dict(run),
            "config": result.config_dicts(), "sections": list(result.sections),
            "environment": dict(result.environment),
            "timings": {k: round(v, 3) for k, v in result.timings.items()}, "figures": list(figures),
            "record_fields": list(RECORD_FIELDS), "records": list(result.records)}


def _load(doc: Any) -> dict[str, Any]:
    if not isinstance(doc, (str, Path)):
        return doc
    path = Path(doc)
    path = path / "results.json" if path.is_dir() else path
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InitlabError(f"{path} does not exist: pass the results.json of initlab reproduce") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InitlabError(f"{path} is not a readable JSON file ({exc})") from None


def validate_reproduce_results(doc: Any) -> None:
    """Check that ``doc`` (the parsed ``results.json``, its path, or the report directory) follows
    the schema of the module docstring.

    Raises:
        InitlabError: the first deviation (a missing key, a wrong type, schema or version, a
            record without a standard field or ``source``, a non-numeric value, a verdict without
            its text, a section without its texts), or a file that is missing or not JSON.

    >>> validate_reproduce_results({"schema": "initlab.reproduce"})
    Traceback (most recent call last):
    ...
    initlab.errors.InitlabError: results.json: key 'schema_version' is missing
    """
    doc = _load(doc)
    if not isinstance(doc, dict):
        raise InitlabError(f"results.json: top level is {type(doc).__name__}, expected an object")
    for key, typ in _TOP_KEYS.items():
        if key not in doc:
            raise InitlabError(f"results.json: key {key!r} is missing")
        if not isinstance(doc[key], typ) or (typ is int and isinstance(doc[key], bool)):
            raise InitlabError(f"results.json: key {key!r} is {type(doc[key]).__name__}, "
                               f"expected {typ.__name__}")
    if (doc["schema"], doc["schema_version"]) != (SCHEMA, SCHEMA_VERSION):
        raise InitlabError(f"results.json: schema {doc['schema']!r} version {doc['schema_version']} is not "
                           f"{SCHEMA!r} version {SCHEMA_VERSION}")
    if doc["record_fields"] != list(RECORD_FIELDS):
        raise InitlabError(f"results.json: record_fields {doc['record_fields']} differ from "
                           f"{list(RECORD_FIELDS)}")
    for i, sec in enumerate(doc["sections"]):
        missing = [k for k in _SECTION_KEYS if not isinstance(sec, dict) or not isinstance(sec.get(k), str)]
        if missing:
            raise InitlabError(f"results.json: section {i} lacks {missing[0]!r}")
    for i, rec in enumerate(doc["records"]):
        if not isinstance(rec, dict) or any(k not in rec for k in (*RECORD_FIELDS, "source")):
            raise InitlabError(f"results.json: record {i} lacks a standard field or 'source': {rec!r:.200}")
        if not isinstance(rec["stat"], str) or not isinstance(rec["experiment"], str):
            raise InitlabError(f"results.json: record {i} has a non-string experiment or stat")
        value = rec["value"]
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise InitlabError(f"results.json: record {i} has a non-numeric value {rec['value']!r}")
        texts_ok = isinstance(rec.get("text"), str) and isinstance(rec.get("claim"), str)
        if rec["stat"] == "verdict" and not texts_ok:
            raise InitlabError(f"results.json: verdict record {i} lacks its claim or text")
    for i, fig in enumerate(doc["figures"]):
        if not isinstance(fig, dict) or not isinstance(fig.get("file"), str):
            raise InitlabError(f"results.json: figure {i} lacks a file name")


def _config_rows(result: Any) -> list[dict[str, str]]:
    rows = []
    for name, cfg in result.config_dicts().items():
        text = ", ".join(f"{k}={v}" for k, v in cfg.items())
        rows.append({"name": name, "config": text, "seconds": f"{result.timings.get(name, 0.0):.1f}"})
    rows.append({"name": "total", "config": "", "seconds": f"{result.timings.get('total', 0.0):.1f}"})
    return rows


def render_reproduce_html(result: Any, figures: list[Mapping[str, Any]], run: Mapping[str, Any]) -> str:
    """The page (template ``templates/reproduce.html``, autoescaped) of ``result``."""
    import jinja2

    from initlab.report.reproduce_sections import build_section

    env = jinja2.Environment(loader=jinja2.PackageLoader("initlab.report", "templates"),
                             autoescape=jinja2.select_autoescape(["html"]), trim_blocks=True,
                             lstrip_blocks=True)
    from initlab.experiments.common import plural
    from initlab.experiments.reproduce.common import seeds_text

    sections = [build_section(result.records, meta, list(figures)) for meta in result.sections]
    envir = ", ".join(f"{k} {v}" for k, v in result.environment.items())
    seed = int(run.get("seed") or 0)
    seeds = seeds_text(SimpleNamespace(seed=seed, seeds=int(run.get("seeds") or 1)))
    threads = result.environment.get("threads")
    return env.get_template("reproduce.html").render(
        title="initlab reproduce — the papers' results beside ours", sections=sections,
        quick=run.get("quick"), seeds=seeds, seed=seed,
        threads=plural(int(threads), "torch thread") if threads is not None else "torch's threads",
        command=run.get("command", "initlab reproduce"), config_rows=_config_rows(result), environment=envir)


def _fill(directory: Path, result: Any, run: Mapping[str, Any]) -> None:
    from initlab.report.reproduce_figures import reproduce_figures

    figures = reproduce_figures(result.records, directory / "figures")
    doc = jsonable(results_document(result, figures, run))
    (directory / "results.json").write_text(json.dumps(doc, indent=1, allow_nan=False), encoding="utf-8")
    (directory / "results.csv").write_text(records_to_csv(result.records), encoding="utf-8")
    (directory / "index.html").write_text(render_reproduce_html(result, figures, run), encoding="utf-8")


def write_reproduce_report(result: Any, out: str | Path = "initlab-reproduce", *,
                           run: Mapping[str, Any] | None = None, force: bool = False,
                           notify: Callable[[str], None] | None = None) -> Path:
    """Write the report of ``result`` (:func:`initlab.experiments.reproduce.run_reproductions`) to
    directory ``out`` atomically (module docstring).

    Args:
        result: the run's result (records, section texts, configs, timings, environment).
        out: the report directory.
        run: the run's options for the page and ``results.json`` (``names``, ``quick``, ``seed``,
            ``seeds``, ``threads``, ``command``).
        force: write over a non-empty ``out`` that is not a reproduce report; its contents are
            moved to a backup directory beside it, never deleted.
        notify: called with the backup's location when one is made (default: a ``UserWarning``).

    Returns:
        The report directory.

    Raises:
        FileExistsError, InitlabError, NotADirectoryError, PermissionError: see
            :func:`check_reproduce_out_dir`.
    """
    run = dict(run or {})
    return outdir.replace_dir(out, LAYOUT, lambda directory: _fill(directory, result, run), force=force,
                              notify=notify)
