"""Tests of initlab.records: the one JSON conversion (``jsonable``) that records, the demo report and
the phase report share."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from initlab.records import jsonable, records_to_csv, records_to_json


def test_jsonable_converts_scalars_containers_and_non_finite_values():
    obj = {"t": torch.tensor(0.25), "n": np.float64(1.5), "i": np.int64(3), "b": np.bool_(True),
           "one": np.array([2.0]), "many": torch.arange(3), "tup": (1, (2, float("inf"))),
           "nested": {7: [float("nan"), -math.inf]}, "path": Path("a/b"), "none": None, "s": "x"}
    out = jsonable(obj)
    assert out == {"t": 0.25, "n": 1.5, "i": 3, "b": True, "one": 2.0, "many": str(torch.arange(3)),
                   "tup": [1, [2, None]], "nested": {"7": [None, None]}, "path": str(Path("a/b")),
                   "none": None, "s": "x"}
    assert type(out["i"]) is int and type(out["b"]) is bool
    json.dumps(out, allow_nan=False)  # raises if anything is left that JSON cannot hold
    assert obj["tup"] == (1, (2, float("inf")))  # the input is not modified


def test_records_to_json_and_csv_use_the_same_conversion():
    rec = {"stat": "std", "value": np.float32(0.5), "extra": {"q": float("nan")}, "shape": (2, 3)}
    assert json.loads(records_to_json([rec])) == [jsonable(rec)]
    lines = records_to_csv([rec]).splitlines()
    assert lines == ["experiment,scheme,activation,layer,stat,value,epoch,seed,extra,shape",
                     ",,,,std,0.5,,,{'q': None},\"[2, 3]\""]
