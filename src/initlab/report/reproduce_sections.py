"""The sections of the ``initlab reproduce`` page, built from records only: per reproduction its
verdicts, its table of the paper's numbers beside ours (median and range over seeds) and its rows
of the closing table. One builder per reproduction in :data:`SECTIONS`; the page
(:mod:`initlab.report.reproduce`) renders what they return.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

__all__ = ["SECTIONS", "build_section", "spread", "verdicts", "VERDICT_WORDS"]

Records = list[Mapping[str, Any]]

#: A verdict record's value -> (word, CSS class); a record may name its own word (``"holds"``).
VERDICT_WORDS: dict[Any, tuple[str, str]] = {1.0: ("agrees", "agree"), 0.5: ("partly agrees", "partial"),
                                             0.0: ("does not agree", "disagree"),
                                             None: ("cannot tell", "unclear")}
#: CSS class -> how the section's count of verdicts names it.
_COUNT_WORDS = {"agree": "agree", "partial": "agree in part", "disagree": "do not agree",
                "unclear": "cannot tell"}


def spread(values: Iterable[Any], fmt: str = "{:.1f}", unit: str = "", cap: float | None = None) -> str:
    """``median (min–max)`` over seeds of the non-missing ``values`` (just the value for one seed;
    ``–`` for none); a value ``None`` counts as ``> cap`` when ``cap`` is given (a run past its
    budget), and then so does a median or bound above ``cap``; ``(all seeds)`` instead of the range
    when every seed shows the same value or is past ``cap``.

    >>> spread([2.0, 1.0, 3.0], unit=" %"), spread([5.0]), spread([]), spread([None, 4.0], "{:.0f}", cap=10)
    ('2.0 % (1.0–3.0)', '5.0', '–', '> 10 (4–> 10)')
    >>> spread([None, None], "{:.0f}", cap=10), spread([90.0, 90.0], unit=" %")
    ('> 10 (all seeds)', '90.0 % (all seeds)')
    """
    vals = [float(v) if v is not None else (math.inf if cap is not None else math.nan) for v in values]
    vals = [v for v in vals if not math.isnan(v)]
    if not vals:
        return "–"

    def show(v: float, with_unit: bool = True) -> str:
        if cap is not None and v > cap:
            return f"> {fmt.format(cap)}"
        return fmt.format(v) + (unit if with_unit else "")

    med = float(np.median(vals)) if not any(math.isinf(v) for v in vals) else sorted(vals)[len(vals) // 2]
    if len(vals) == 1:
        return show(vals[0])
    if (cap is not None and min(vals) > cap) or show(min(vals)) == show(max(vals)):
        return f"{show(med)} (all seeds)"
    return f"{show(med)} ({show(min(vals), False)}–{show(max(vals), False)})"


def _ours(records: Records, name: str, stat: str, **match: Any) -> list[Mapping[str, Any]]:
    return [r for r in records if r.get("experiment") == name and r.get("stat") == stat
            and r.get("source") != "paper" and all(r.get(k) == v for k, v in match.items())]


def _paper(records: Records, name: str, **match: Any) -> list[Mapping[str, Any]]:
    return [r for r in records if r.get("experiment") == name and r.get("source") == "paper"
            and all(r.get(k) == v for k, v in match.items())]


def verdicts(records: Records, name: str) -> list[dict[str, str]]:
    """The verdict records of reproduction ``name`` as ``{claim, word, cls, text, detail}`` (``word``:
    the record's own or the value's, :data:`VERDICT_WORDS`; ``cls``: ``agree`` / ``partial`` /
    ``disagree`` / ``unclear``; ``detail``: ``text`` without its leading word)."""
    out = []
    for r in _ours(records, name, "verdict"):
        word, cls = VERDICT_WORDS.get(r["value"], VERDICT_WORDS[None])
        word = str(r.get("word") or word)
        claim = str(r.get("claim", ""))
        if r.get("dataset"):
            claim += f" — {r['dataset']}"
        text = str(r.get("text", ""))
        detail = text[len(word) + 2:] if text.startswith(word + ": ") else text
        out.append({"claim": claim, "word": word, "cls": cls, "text": text, "detail": detail})
    return out


def _he2015(records: Records) -> tuple[list[dict[str, Any]], list[list[str]]]:
    name = "he2015"
    labels = {"xavier_normal": "Xavier normal", "he_normal": "He normal"}
    target = next((r.get("target") for r in _ours(records, name, "steps_to_target")), None)
    tgt = f"{float(target):.0%}" if target is not None else "the target"
    rows, closing = [], []
    for scheme, label in labels.items():
        finding = next((str(r.get("text")) for r in _paper(records, name, scheme=scheme)), "–")
        steps = [r["value"] for r in _ours(records, name, "steps_to_target", scheme=scheme)]
        reached = sum(v is not None for v in steps)
        epoch1 = [r["value"] for r in _ours(records, name, "test_accuracy", scheme=scheme, epoch=1)]
        final = [r["value"] for r in _ours(records, name, "final_test_accuracy", scheme=scheme)]
        pct = [None if v is None else 100.0 * v for v in final]
        rows.append([label, finding, spread([v for v in steps if v is not None], "{:.0f}"),
                     f"{reached} of {len(steps)}", spread([100.0 * v for v in epoch1], "{:.1f}", " %"),
                     spread(pct, "{:.1f}", " %")])
        median = f" (median {spread([v for v in steps if v is not None], '{:.0f}')} steps)" if reached else ""
        closing.append([f"{label}, 30 ReLU layers", finding,
                        f"final test accuracy {spread(pct, '{:.1f}', ' %')}; reached {tgt} in {reached} of "
                        f"{len(steps)} seed{'s' if len(steps) != 1 else ''}{median}"])
    table = {"caption": "He et al. 2015, Fig. 3 beside ours (median (min–max) over seeds)",
             "header": ["init", "the paper (Fig. 3)", f"SGD steps to {tgt} test accuracy",
                        "seeds that reached it", "test accuracy after epoch 1", "final test accuracy"],
             "rows": rows}
    return [table], closing


def _glorot2010(records: Records) -> tuple[list[dict[str, Any]], list[list[str]]]:
    name = "glorot2010"
    errs = _ours(records, name, "test_error_pct")
    datasets = sorted({r["dataset"] for r in errs}, key=lambda d: (d != "mnist5k", d))
    paper = {(r["activation"], r["scheme"]): r["value"] for r in _paper(records, name)}
    keys = list(dict.fromkeys((r["activation"], r["scheme"]) for r in errs))
    init = {r["scheme"]: r.get("init", r["scheme"]) for r in errs}
    rows, closing = [], []
    for act, scheme in keys:
        ours = [spread([r["value"] for r in errs if r["dataset"] == ds and r["activation"] == act
                        and r["scheme"] == scheme], unit=" %") for ds in datasets]
        p = paper.get((act, scheme))
        p_text = f"{p:.2f} %" if p is not None else "– (not in Table 1)"
        rows.append([act, init[scheme], p_text, *ours])
        closing.append([f"{act}, {init[scheme]} init", p_text,
                        " · ".join(f"{ds} {o}" for ds, o in zip(datasets, ours, strict=True))])
    n_test = {r["dataset"]: r.get("n_test") for r in errs}
    table = {"caption": "Test error (%): the paper's Table 1 (MNIST) beside ours (median (min–max) over "
                        "seeds)",
             "header": ["activation", "init", "paper: MNIST (Table 1)",
                        *[f"ours: {ds} ({n_test[ds]:,} test)" for ds in datasets]],
             "rows": rows}
    return [table], closing


def _bengio2007(records: Records) -> tuple[list[dict[str, Any]], list[list[str]]]:
    name = "bengio2007"
    errs = _ours(records, name, "test_error_pct")
    acts = list(dict.fromkeys(r["activation"] for r in errs))
    arms = list(dict.fromkeys(r["scheme"] for r in errs))
    label = {r["scheme"]: str(r.get("arm", r["scheme"])) for r in errs}
    rows, closing = [], []
    for arm in arms:
        paper = "; ".join(f"{r['value']:.2f} % ({r.get('where')})" for r in _paper(records, name, scheme=arm))
        mine = [r for r in errs if r["scheme"] == arm]
        ours = [spread([r["value"] for r in mine if r["activation"] == a], "{:.1f}", " %") for a in acts]
        rows.append([label[arm], paper or "– (not in the papers)", *ours])
        closing.append([label[arm], paper or "–",
                        " · ".join(f"{a} {o}" for a, o in zip(acts, ours, strict=True))])
    n = next((r.get("n_test") for r in errs), None)
    table = {"caption": f"Test error (%) after fine-tuning: the papers (full MNIST) beside ours ({n} test "
                        "digits; median (min–max) over seeds)",
             "header": ["arm", "the papers (MNIST, sigmoid)", *[f"ours: {a}" for a in acts]], "rows": rows}
    return [table], closing


def _saxe2013(records: Records) -> tuple[list[dict[str, Any]], list[list[str]]]:
    name = "saxe2013"
    times = _ours(records, name, "learning_time")
    cap = max((int(r.get("max_steps") or 0) for r in times), default=0)
    depths = sorted({int(r["depth"]) for r in times})
    schemes = ("orthogonal", "gaussian")

    def cell(scheme: str, d: int) -> str:
        return spread([r["value"] for r in times if r["scheme"] == scheme and int(r["depth"]) == d], "{:.0f}",
                      cap=cap)

    rows = [[str(d), *[cell(s, d) for s in schemes]] for d in depths]
    closing = []
    for scheme in schemes:
        finding = next((str(r.get("text")) for r in _paper(records, name, scheme=scheme)), "–")
        closing.append([f"{'scaled Gaussian' if scheme == 'gaussian' else scheme} weights: learning time vs "
                        "depth", finding,
                        " · ".join(f"D={d}: {cell(scheme, d).split(' (')[0]}" for d in depths)])
    table = {"caption": f"Learning time (epochs to the criterion at the best learning rate; > {cap:,}: not "
                        "within the budget), median (min–max) over seeds",
             "header": ["depth", "orthogonal", "scaled Gaussian"], "rows": rows}
    return [table], closing


#: name -> builder of (tables, closing rows).
SECTIONS: dict[str, Callable[[Records], tuple[list[dict[str, Any]], list[list[str]]]]] = {
    "he2015": _he2015, "glorot2010": _glorot2010, "bengio2007": _bengio2007, "saxe2013": _saxe2013}


def build_section(records: Records, meta: Mapping[str, Any],
                  figures: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The page section of one reproduction: ``meta`` (its texts: ``name``, ``title``, ``citation``,
    ``claim``, ``paper_setup``, ``our_setup``, ``scale``), its ``verdicts``, ``tables``, the
    ``figures`` whose ``section`` is its name, and ``closing`` rows ``[reproduction, what, paper,
    ours, verdict words]`` for the closing table.

    Raises:
        KeyError: ``meta["name"]`` has no builder in :data:`SECTIONS`.
    """
    name = meta["name"]
    tables, closing = SECTIONS[name](records)
    found = verdicts(records, name)
    summary = ", ".join(f"{_COUNT_WORDS[c]}: {sum(v['cls'] == c for v in found)}" for c in _COUNT_WORDS
                        if any(v["cls"] == c for v in found))
    return {**meta, "id": name, "verdicts": found, "tables": tables,
            "figures": [f for f in figures if f.get("section") == name],
            "closing": [[meta["title"].split(":")[0], *row] for row in closing], "verdict_summary": summary}
