"""Tidy records: the unit of data between initlab's layers.

A record is a flat ``dict`` with the keys of :data:`RECORD_FIELDS` (absent keys read as ``None``):
``experiment, scheme, activation, layer, stat, value, epoch, seed`` plus free extra keys. Plots,
tables and the HTML report only ever read records (STYLE.md, rule 8).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

RECORD_FIELDS: tuple[str, ...] = (
    "experiment",
    "scheme",
    "activation",
    "layer",
    "stat",
    "value",
    "epoch",
    "seed",
)


def _jsonable(value: Any) -> Any:
    """Turn NumPy / torch scalars into plain Python; non-finite floats into ``None``."""
    if hasattr(value, "item") and callable(value.item):
        try:
            value = value.item()
        except (ValueError, RuntimeError):
            return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def records_to_json(records: Iterable[Mapping[str, Any]], *, indent: int | None = None) -> str:
    """Serialise records to a JSON array; NaN and inf become ``null`` (JSON has neither).

    >>> records_to_json([{"stat": "std", "value": 0.5}])
    '[{"stat": "std", "value": 0.5}]'
    """
    rows = [{k: _jsonable(v) for k, v in r.items()} for r in records]
    return json.dumps(rows, indent=indent, allow_nan=False)


def records_to_csv(records: Iterable[Mapping[str, Any]], fields: Iterable[str] | None = None) -> str:
    """Serialise records to CSV text, columns ``fields`` (default: the standard fields first,
    then any extra keys in first-seen order).

    >>> print(records_to_csv([{"layer": "fc1", "stat": "std", "value": 1.0}]).strip())
    experiment,scheme,activation,layer,stat,value,epoch,seed
    ,,,fc1,std,1.0,,
    """
    rows = list(records)
    if fields is None:
        cols = list(RECORD_FIELDS)
        for r in rows:
            for k in r:
                if k not in cols:
                    cols.append(k)
    else:
        cols = list(fields)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: _jsonable(r.get(k)) for k in cols})
    return buf.getvalue()


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename, so a reader never sees
    half a file and an interrupted write leaves the old one intact."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
