"""The sweep store (initlab.sweep.store): records round-trip, atomic one-file-per-cell writes, and
every directory it refuses (with one line, leaving it as it was)."""

from __future__ import annotations

import json
import math
import os

import pytest

pytest.importorskip("pyarrow")

from initlab.errors import InitlabError  # noqa: E402
from initlab.sweep.store import MANIFEST, SweepStore, normalize_records  # noqa: E402

KEY_A, KEY_B = "a" * 64, "b" * 64


def _manifest(spec_hash: str = "h1", n: int = 2) -> dict:
    return {"schema": "initlab.sweep", "schema_version": 1, "spec_hash": spec_hash, "n_cells": n,
            "experiment": "phase", "axes": ["depth", "seed"]}


def _snapshot(root) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_records_round_trip_with_nan_none_and_mixed_extras(tmp_path):
    store = SweepStore.create(tmp_path / "s", _manifest())
    a = normalize_records([{"experiment": "phase", "stat": "loss", "value": math.nan, "seed": 0, "layer": 3,
                            "flag": True, "shape": (2, 3), "x": 1},
                           {"experiment": "phase", "stat": "steps", "value": None, "seed": 0, "x": 2.5}],
                          {"depth": 2, "cell": KEY_A})
    b = normalize_records([{"experiment": "phase", "stat": "loss", "value": 0.5, "seed": 1, "x": "text"}],
                          {"depth": 4, "cell": KEY_B})
    store.put(KEY_A, a, {"params": {"depth": 2}, "config": {"depth": 2}, "run": {"seconds": 1.0}})
    store.put(KEY_B, b, {"params": {"depth": 4}, "config": {"depth": 4}, "run": {"seconds": 2.0}})
    store.close()
    got = SweepStore.open(tmp_path / "s").records()
    assert len(got) == 3
    assert math.isnan(got[0]["value"]) and got[1]["value"] is None and got[2]["value"] == 0.5
    assert got[0]["layer"] == "3" and got[0]["flag"] is True and json.loads(got[0]["shape"]) == [2, 3]
    assert [r["x"] for r in got] == ["1", "2.5", "text"]  # an extra whose type differs becomes text
    assert [r["depth"] for r in got] == [2, 2, 4] and got[2].get("flag") is None
    cells = SweepStore.open(tmp_path / "s").cells()
    assert [(c.key, c.params, c.run["seconds"]) for c in cells] == [(KEY_A, {"depth": 2}, 1.0),
                                                                     (KEY_B, {"depth": 4}, 2.0)]


def test_a_stored_cell_is_never_written_again(tmp_path):
    store = SweepStore.create(tmp_path / "s", _manifest())
    path = store.put(KEY_A, normalize_records([{"stat": "s", "value": 1.0}]), {"params": {}})
    before = path.read_bytes()
    store.put(KEY_A, normalize_records([{"stat": "s", "value": 2.0}]), {"params": {}})
    assert path.read_bytes() == before and store.has(KEY_A) and not store.has(KEY_B)
    assert sorted(p.name for p in (tmp_path / "s" / "cells").iterdir()) == [f"{KEY_A}.parquet"]


def test_failures_are_noted_and_cleared_by_success(tmp_path):
    store = SweepStore.create(tmp_path / "s", _manifest())
    store.put_failure(KEY_A, {"depth": 2}, "RuntimeError: boom")
    noted = [(f.key, f.params, f.error) for f in store.failures()]
    assert noted == [(KEY_A, {"depth": 2}, "RuntimeError: boom")]
    store.put(KEY_A, normalize_records([{"stat": "s", "value": 1.0}]), {"params": {"depth": 2}})
    assert store.failures() == [] and not (tmp_path / "s" / "failed" / f"{KEY_A}.parquet").exists()


def test_a_crashed_write_leaves_no_half_file(tmp_path):
    store = SweepStore.create(tmp_path / "s", _manifest())
    stale = tmp_path / "s" / "cells" / f".{KEY_A}.parquet.tmp-1234abcd"
    stale.write_bytes(b"half")
    store.close()
    SweepStore.create(tmp_path / "s", _manifest()).close()  # reopening cleans it up
    assert not stale.exists()


def _refused(root, match, manifest=None):
    before = _snapshot(root) if root.is_dir() else None
    with pytest.raises(InitlabError, match=match) as info:
        SweepStore.create(root, manifest or _manifest())
    assert "\n" not in str(info.value)
    if before is not None:
        assert _snapshot(root) == before  # never written to
    return info


def test_foreign_and_corrupt_directories_are_refused_and_left_alone(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    _refused(mine, r"is a non-empty directory that is not an initlab sweep .*choose a new or empty --out")

    store = SweepStore.create(tmp_path / "s", _manifest())
    store.put(KEY_A, normalize_records([{"stat": "s", "value": 1.0}]), {"params": {}})
    store.close()
    _refused(tmp_path / "s", r"holds another sweep \(spec h1", _manifest("h2"))

    (tmp_path / "s" / "notes.txt").write_text("mine")
    _refused(tmp_path / "s", r"holds files an initlab sweep does not write \(notes.txt\)")
    os.remove(tmp_path / "s" / "notes.txt")

    (tmp_path / "s" / "cells" / "extra.csv").write_text("x")
    _refused(tmp_path / "s", "cells/extra.csv")
    os.remove(tmp_path / "s" / "cells" / "extra.csv")

    (tmp_path / "s" / "cells" / f"{KEY_B}.parquet").write_bytes(b"not parquet")
    _refused(tmp_path / "s", "is not a readable cell file")
    os.replace(tmp_path / "s" / "cells" / f"{KEY_A}.parquet", tmp_path / "s" / "cells" / f"{KEY_B}.parquet")
    _refused(tmp_path / "s", f"does not hold cell {KEY_B[:12]}")

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / MANIFEST).write_text("{not json")
    _refused(bad, f"{MANIFEST} is corrupt")
    (bad / MANIFEST).write_text(json.dumps({"schema": "something.else"}))
    _refused(bad, "not an initlab sweep manifest")

    (tmp_path / "file").write_text("x")
    _refused(tmp_path / "file", "is not a directory")
    _refused(tmp_path / "file" / "sub", r"file is a file, not a directory: choose --out in a directory")


def test_a_second_writer_is_refused_while_the_first_runs(tmp_path):
    first = SweepStore.create(tmp_path / "s", _manifest())
    _refused(tmp_path / "s", "being written by another running sweep")
    first.close()
    SweepStore.create(tmp_path / "s", _manifest()).close()


def test_open_for_reading(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        SweepStore.open(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InitlabError, match="is not an initlab sweep directory"):
        SweepStore.open(tmp_path / "empty")
