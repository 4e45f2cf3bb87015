"""The demo report's HTML page: one section per claim of the field, each with a narrative whose
numbers come from this run's records (:mod:`initlab.report.narrative`), its figures and tables
(:mod:`initlab.report.tables`), then the summary table, the run's config and seed, and a link to
the trainability phase diagram (``initlab phase``).

Rendered with Jinja2 (template ``templates/report.html``, autoescaped); figures are PNG files in
``figures/`` beside ``index.html``, referenced by relative paths and shown at their physical size
(:mod:`initlab.report.style`), so the page opens from disk. Wide tables scroll inside their own box.
"""

from __future__ import annotations

import html as _html
from collections import defaultdict
from typing import Any

from initlab.experiments.common import plural
from initlab.report import narrative
from initlab.report.figure_common import FigureInfo
from initlab.report.tables import (
    depth_table,
    fmt,
    forward_stats,
    forward_table,
    ratio,
    summary_table,
    symmetry_table,
    training_table,
)

__all__ = ["render_html", "PHASE_LINK", "forward_table", "training_table", "symmetry_table", "depth_table",
           "summary_table", "summary_explanations", "fmt"]

#: Relative link to the report of ``initlab phase`` (written by that command next to this one).
PHASE_LINK = "../initlab-phase/index.html"

#: Which report section shows which figure (by file name); others use ``FigureInfo.section``.
_FIGURE_SECTION = {
    "forward_std.png": "vanishing",
    "forward_saturation.png": "saturation",
    "forward_histograms_tanh.png": "saturation",
    "forward_histograms_sigmoid.png": "xavier",
    "forward_histograms_relu.png": "he",
    "symmetry.png": "symmetry",
}

#: The explanations of summary rows that do not plainly agree (:func:`narrative.explanations`).
summary_explanations = narrative.explanations


def _verdict(rows: list[dict[str, Any]], activation: str, evidence: str) -> bool | None:
    """Whether the summary row agrees (``None``: no such row, or a tie at chance)."""
    row = next((r for r in rows if r["activation"] == activation and r["evidence"] == evidence), None)
    if row is None or row["verdict"].startswith("tie"):
        return None
    return row["verdict"].startswith("agree")


def _xavier_title(rows: list[dict[str, Any]]) -> str:
    """Section 4's title: the claim for tanh, and what this run says about sigmoid."""
    tanh = _verdict(rows, "tanh", "signal propagation")
    sigmoid = _verdict(rows, "sigmoid", "signal propagation")
    if tanh is False:
        return "4. Xavier/Glorot does not keep tanh in range in this run"
    if sigmoid is False:
        return "4. Xavier/Glorot keeps tanh in range, not sigmoid"
    return "4. Xavier/Glorot keeps tanh" + (" and sigmoid" if sigmoid else "") + " in range"


def _vanishing_title(fw: dict) -> str:
    """Section 2's title: gradients vanish, and the activations of the activations whose std does."""
    from initlab.experiments.summary import IN_RANGE_FACTOR

    acts = [a for a in ("tanh", "relu", "sigmoid") if fw.get((a, "small"), {}).get("std")
            and (ratio(fw[(a, "small")]["std"]) or 0.0) < 1.0 / IN_RANGE_FACTOR]
    names = [{"relu": "ReLU"}.get(a, a) for a in acts]
    tail = f", and so do {' and '.join(names)} activations" if names else ""
    return f"2. Small random weights: gradients vanish with depth{tail}"


def _claim(number: int, ok: bool | None, claim: str, otherwise: str) -> str:
    """A section title that states the claim only when this run supports it."""
    return f"{number}. {claim if ok is not False else otherwise}"


def _section_list(result: Any) -> list[dict[str, Any]]:
    records, rows = result.records, result.summary.rows
    fw, fcfg = forward_stats(records), result.forward.config
    depths = [r.config.depth for r in result.depth]
    return [
        {"id": "symmetry", "data": True, "title": "1. Zero or constant weights never break symmetry",
         "paragraphs": narrative.symmetry(records, result.dataset), "tables": [symmetry_table(records)]},
        {"id": "vanishing", "data": False, "title": _vanishing_title(fw),
         "paragraphs": narrative.vanishing(fw, records, fcfg), "tables": [forward_table(records)]},
        {"id": "saturation", "data": False, "title": "3. Large weights saturate tanh and sigmoid",
         "paragraphs": narrative.saturation(fw, fcfg), "tables": []},
        {"id": "xavier", "data": False, "title": _xavier_title(rows), "paragraphs": narrative.xavier(fw),
         "tables": []},
        {"id": "he", "data": False,
         "title": _claim(5, _verdict(rows, "relu", "signal propagation"), "He keeps ReLU networks in range",
                         "He does not keep ReLU networks in range in this run"),
         "paragraphs": narrative.he(fw, fcfg), "tables": []},
        {"id": "training", "data": True, "title": "6. The right init trains much faster",
         "paragraphs": narrative.training(records, result.training.config, result.dataset),
         "tables": [training_table(records)]},
        {"id": "depth", "data": True, "title": "7. Depth: where the right start matters most",
         "paragraphs": narrative.depth(records, result.configs().get("depth", {}), claim_section=6),
         "tables": [depth_table(records)] if depths else []},
    ]


def _sections(result: Any, figures: list[FigureInfo]) -> list[dict[str, Any]]:
    sections = _section_list(result)
    by_section: dict[str, list[FigureInfo]] = defaultdict(list)
    for f in figures:
        by_section[_FIGURE_SECTION.get(f.file.rsplit("/", 1)[-1], f.section)].append(f)
    placed = set()
    for sec in sections:
        sec["figures"] = by_section.get(sec["id"], [])
        placed.add(sec["id"])
    extra = [f for s, fs in by_section.items() if s not in placed for f in fs]
    if extra:
        sections[-1]["figures"] = sections[-1]["figures"] + extra
    n_fig = n_tab = 0
    sigmoid_fails = _verdict(result.summary.rows, "sigmoid", "signal propagation") is False
    for sec in sections:
        numbered = []
        for f in sec["figures"]:
            n_fig += 1
            title = f.title
            if f.file.endswith("forward_histograms_sigmoid.png") and sigmoid_fails:
                title += ": where Xavier's zero-mean assumption fails"
            numbered.append({"file": f.file, "alt": f.alt, "id": f"figure-{n_fig}", "width": f.width or None,
                             "height": f.height or None, "title": f"Figure {n_fig}: {title}"})
        sec["figures"] = numbered
        for table in sec["tables"]:
            n_tab += 1
            table["caption"] = f"Table {n_tab}: {table['caption']}"
            table["id"] = f"table-{n_tab}"
    return sections


def _numbers(sections: list[dict[str, Any]], data: bool) -> str:
    """The section numbers (``"1, 6 and 7"``) that do (``data``) or do not use the data set."""
    nums = [sec["title"].split(".", 1)[0] for sec in sections if sec["data"] == data]
    return nums[0] if len(nums) == 1 else ", ".join(nums[:-1]) + " and " + nums[-1] if nums else ""


def _config_rows(result: Any) -> list[list[str]]:
    rows = []
    for group, cfg in result.configs().items():
        for k, v in cfg.items():
            rows.append([group, k, ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)])
    return rows


def render_html(result: Any, figures: list[FigureInfo], *, phase_available: bool = False) -> str:
    """The report page for a :class:`initlab.experiments.DemoResult` and its written figures.

    Every figure in ``figures`` appears as an ``<img src="figures/...">`` in the section of its
    claim; tables and narratives quote this run's numbers. Sections are numbered 1-9; figures and
    tables are numbered in page order. The page links to :data:`PHASE_LINK` only when
    ``phase_available`` (the ``initlab phase`` report exists beside this one); otherwise it names
    the command, so the page has no dead link.

    >>> from initlab.experiments import DemoConfig, run_demo
    >>> page = render_html(run_demo(DemoConfig(quick=True), progress=False), [])  # doctest: +SKIP
    >>> "Summary" in page  # doctest: +SKIP
    True
    """
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("initlab.report", "templates"),
                             autoescape=jinja2.select_autoescape(["html"]), trim_blocks=True,
                             lstrip_blocks=True)
    template = env.get_template("report.html")
    cfg = result.config
    sections = _sections(result, figures)
    summary = summary_table(result.summary.rows)
    for row in summary["rows"]:
        if row[1] == "signal propagation":
            row[6] = ("in range (defined in section 4); score: the largest factor a std changes by, lower "
                      "is better")
    n_tables = sum(len(sec["tables"]) for sec in sections)
    summary["caption"] = f"Table {n_tables + 1}: {summary['caption']}"
    return template.render(
        title="initlab demo: weight initialization, measured",
        dataset=result.dataset,
        seed=cfg.seed,
        command=_command_line(cfg),
        environment=result.environment,
        threads=plural(int(result.environment.get("threads") or 0), "thread"),
        timings={k: f"{v:.1f} s" for k, v in result.timings.items()},
        sections=sections,
        summary=summary,
        why=narrative.explanations(result.summary.rows, result.records),
        data_sections=_numbers(sections, True),
        synthetic_sections=_numbers(sections, False),
        config_rows=_config_rows(result),
        config_caption=f"Table {n_tables + 2}: Run configuration",
        phase_link=PHASE_LINK if phase_available else None,
        figures=figures,
        escape=_html.escape,
    )


def _command_line(cfg: Any) -> str:
    """The ``initlab demo`` command that reproduces a run (``--out`` aside).

    >>> from initlab.experiments import DemoConfig
    >>> _command_line(DemoConfig(seed=1, limit=500))
    'initlab demo --seed 1 --dataset mnist5k --limit 500'
    """
    import shlex

    parts = ["initlab demo", f"--seed {cfg.seed}", f"--dataset {shlex.quote(str(cfg.dataset))}"]
    if cfg.data_dir:
        parts.append(f"--data-dir {shlex.quote(str(cfg.data_dir))}")
    for name in ("depth", "width", "epochs", "limit"):
        if getattr(cfg, name) is not None:
            parts.append(f"--{name} {getattr(cfg, name)}")
    if cfg.threads != 1:
        parts.append(f"--threads {cfg.threads}")
    if cfg.quick:
        parts.append("--quick")
    return " ".join(parts)
