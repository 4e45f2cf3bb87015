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


def jsonable(obj: Any) -> Any:
    """A JSON-ready deep copy of ``obj``: what ``json.dumps(..., allow_nan=False)`` accepts.

    Conversions, applied recursively:

    * mappings become ``dict`` with ``str`` keys; lists and tuples become lists;
    * tensors, arrays and NumPy scalars of one element become Python numbers (``.item()``);
    * non-finite floats (NaN, +-inf) become ``None`` (JSON has neither);
    * ``None``, ``str``, ``int``, ``float`` and ``bool`` stay as they are;
    * anything else (a multi-element tensor or array, a path, an object) becomes ``str(obj)``.

    Args:
        obj: any value; records, report documents, configs.

    Returns:
        A new object made of ``dict``, ``list``, ``str``, ``int``, ``float``, ``bool`` and
        ``None`` only; ``obj`` is not modified.

    Raises:
        Nothing: every value has a JSON form.

    >>> import numpy as np
    >>> jsonable({"value": np.float32(0.5), "shape": (2, 3), 1: float("nan")})
    {'value': 0.5, 'shape': [2, 3], '1': None}
    """
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):
        try:
            obj = obj.item()
        except (ValueError, RuntimeError):
            return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj)


def records_to_json(records: Iterable[Mapping[str, Any]], *, indent: int | None = None) -> str:
    """Serialise records to a JSON array; NaN and inf become ``null`` (JSON has neither).

    >>> records_to_json([{"stat": "std", "value": 0.5}])
    '[{"stat": "std", "value": 0.5}]'
    """
    rows = [jsonable(r) for r in records]
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
        writer.writerow({k: jsonable(r.get(k)) for k in cols})
    return buf.getvalue()


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename, so a reader never sees
    half a file and an interrupted write leaves the old one intact."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
