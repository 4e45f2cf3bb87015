"""The sweep engine on a local Ray with 2 workers: a 2x2x2 grid, the same records as the serial
runner, a worker that dies mid-cell, and a sweep killed with SIGTERM half-way and resumed.

One Ray for the module (``local_ray``, 2 CPUs); the SIGTERM test's subprocess joins it by address.
Every cell is tiny (a few SGD steps on scikit-learn's digits), so the module takes well under 60 s.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")
pytest.importorskip("pyarrow")

from sweep_helpers import phase_spec, runs, train_spec, write_factory  # noqa: E402

from initlab.sweep import SweepStore, expand, parse_spec, run  # noqa: E402

pytestmark = pytest.mark.ray


def _stored_keys(out: Path) -> list[str]:
    return sorted(p.stem for p in (out / "cells").glob("*.parquet")) if (out / "cells").is_dir() else []


def test_a_2x2x2_grid_stores_exactly_8_cells(local_ray, tmp_path):
    spec = parse_spec(phase_spec())
    result = run(spec, out=tmp_path / "s", runner="ray")
    assert (result.n_cells, result.n_ran, result.failures) == (8, 8, [])
    assert result.runner.startswith("ray (this machine, 2 CPUs)")
    store = SweepStore.open(tmp_path / "s")
    assert _stored_keys(tmp_path / "s") == sorted(c.key for c in expand(spec))
    records = store.records()
    assert len(records) == 8 * 3  # test_accuracy, train_loss, diverged per cell
    assert sorted({r["cell"] for r in records}) == _stored_keys(tmp_path / "s")
    again = run(spec, out=tmp_path / "s", runner="ray")  # everything is stored: nothing runs
    assert (again.n_stored_before, again.n_ran) == (8, 0)


def test_same_seed_same_records_serially_and_on_ray(local_ray, tmp_path):
    """Same configs and threads on the same machine: the runner must not change a bit (each cell
    sets its own torch threads, flushes denormals and seeds its own generators)."""
    spec = parse_spec(phase_spec(depths=(2,), sigma_w2s=(1.0, 4.0)))
    run(spec, out=tmp_path / "serial", runner="serial")
    run(spec, out=tmp_path / "ray", runner="ray")
    serial = SweepStore.open(tmp_path / "serial").records()
    on_ray = SweepStore.open(tmp_path / "ray").records()
    assert len(serial) == 12 and serial == on_ray
    assert len({r["value"] for r in serial if r["stat"] == "train_loss"}) == 4  # the seeds differ


def test_a_worker_that_dies_mid_cell_is_retried(local_ray, tmp_path):
    """width 5's first build kills its worker process (os._exit); Ray retries the task on a new
    worker and the sweep completes with every cell stored and no failure."""
    factory = write_factory(tmp_path, crash_once=(5,))
    spec = parse_spec(train_spec(factory, widths=[4, 5], depths=[1], seeds=[0]))
    result = run(spec, out=tmp_path / "s", runner="ray")
    assert (result.n_ran, result.failures) == (2, [])
    assert (tmp_path / "crashed-5").exists()  # it did crash once
    assert runs(tmp_path) == {"4-1": 1, "5-1": 2}  # and ran again
    assert len(_stored_keys(tmp_path / "s")) == 2


def test_sigterm_half_way_then_resume_runs_each_cell_once(local_ray, tmp_path):
    """`initlab sweep` in a subprocess (joining the module's Ray by --address) gets SIGTERM once 3
    of 8 slow cells are stored: it exits 143 and says how to resume. Run again (here, on the same
    Ray), the sweep finishes: all 8 stored exactly once, and none of the cells stored before the
    kill ran again (each build of a model is counted in a file)."""
    factory = write_factory(tmp_path, sleep=0.7)
    spec_path = tmp_path / "spec.toml"
    spec = train_spec(factory, widths=[4, 5, 6, 7], depths=[1, 2], seeds=[0], out=tmp_path / "out")
    spec_path.write_text("\n".join(f"[{table}]\n" + "\n".join(f"{k} = {_toml(v)}" for k, v in values.items())
                                   for table, values in spec.items()))
    cmd = [sys.executable, "-m", "initlab", "sweep", str(spec_path), "--address", local_ray, "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    out = tmp_path / "out"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and len(_stored_keys(out)) < 3:
        time.sleep(0.02)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "run the same command again to resume" in err and err.strip().endswith("initlab: terminated")
    before = _stored_keys(out)
    assert 3 <= len(before) < 8
    counts_before = runs(tmp_path)
    result = run(spec_path, runner="ray")  # the same spec again: it resumes
    assert (result.n_stored_before, result.n_ran, result.failures) == (len(before), 8 - len(before), [])
    keys = _stored_keys(out)
    assert keys == sorted(c.key for c in expand(parse_spec(spec)))
    store = SweepStore.open(out)
    by_cell = {c.key: f"{c.params['width']}-{c.params['depth']}" for c in store.cells()}
    counts = runs(tmp_path)
    for key in before:  # finished before the kill: never built again
        assert counts[by_cell[key]] == counts_before[by_cell[key]] == 1
    records = store.records()
    per_cell = len([r for r in records if r["cell"] == keys[0]])
    assert len(records) == 8 * per_cell
    assert len({(r["cell"], r["stat"], r.get("step")) for r in records}) == len(records)
    assert not [p for p in (out / "cells").iterdir() if p.name.startswith(".")]  # no half-written file


def _toml(value) -> str:
    import json

    return json.dumps(value)
