"""The sweep engine: key the cells, skip the stored ones, run the rest (serially or on Ray), store
each as it finishes, show progress, list the failures. ``initlab sweep``, ``initlab phase``,
``initlab demo`` (its training and depth grids) and ``benchmarks/time_to_accuracy.py`` all run
their grids through :func:`drive`.
"""

from __future__ import annotations

import datetime
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from initlab.errors import InitlabError
from initlab.sweep.grid import Cell, cell_key, code_versions, expand, spec_hash
from initlab.sweep.spec import SweepSpec, load_spec, parse_spec
from initlab.sweep.store import SCHEMA, SCHEMA_VERSION, Failure, SweepStore, normalize_records

__all__ = ["SweepResult", "make_runner", "check_runner", "drive", "run", "map_cells"]

Notify = Callable[[str], None]


@dataclass
class SweepResult:
    """What a sweep did.

    Attributes:
        out: the results directory (``None`` without a store).
        n_cells: cells in the grid.
        n_stored_before: cells found finished and skipped.
        n_ran: cells run and stored now.
        failures: cells that failed twice (run again to retry them).
        seconds: wall time.
        runner: where the cells ran.
        records: each cell's records by key (only for :func:`map_cells`, which keeps no store).
    """

    out: Path | None
    n_cells: int
    n_stored_before: int
    n_ran: int
    failures: list[Failure]
    seconds: float
    runner: str
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def summary(self) -> str:
        """One line: cells run, skipped and failed, time, where."""
        where = f" in {self.out}" if self.out else ""
        failed = f", {len(self.failures)} failed" if self.failures else ""
        return (f"initlab sweep: {self.n_ran} cell(s) run, {self.n_stored_before} already stored{failed}, "
                f"{self.n_cells} in the grid; {self.seconds:.1f} s on {self.runner}{where}")


def make_runner(runner: str = "ray", *, address: str | None = None, cpus: int | None = None):
    """A :class:`~initlab.sweep.runners.SerialRunner` (``"serial"``) or a
    :class:`~initlab.sweep.runners.RayRunner` (``"ray"``; ``address``/``cpus`` as it takes them).

    Raises:
        InitlabError: an unknown runner; Ray missing for ``"ray"``.
    """
    from initlab.sweep.runners import RayRunner, SerialRunner

    check_runner(runner, address=address, cpus=cpus)
    return SerialRunner() if runner == "serial" else RayRunner(address=address, cpus=cpus)


def check_runner(runner: str, *, address: str | None = None, cpus: int | None = None) -> None:
    """Refuse a runner and options that do not go together, before anything starts.

    Raises:
        InitlabError: an unknown runner; ``address`` or ``cpus`` without Ray, ``cpus`` with
            ``address``, ``cpus`` above this machine's cores (``os.cpu_count()``) for a local Ray;
            Ray not installed.
    """
    from initlab.sweep.runners import INSTALL_HINT, ray_available

    if runner not in ("serial", "ray"):
        raise InitlabError(f"runner={runner!r} is invalid: use 'serial' or 'ray'")
    if runner == "serial":
        for name, value in (("--address", address), ("--cpus", cpus)):
            if value is not None:
                raise InitlabError(f"{name} {value} runs on Ray: drop --serial")
        return
    if cpus is not None and address is not None:
        raise InitlabError(f"--cpus {cpus} caps this machine's Ray; a cluster (--address {address}) uses "
                           "its own CPUs: drop --cpus")
    cores = os.cpu_count()
    if cpus is not None and address is None and cores is not None and cpus > cores:
        raise InitlabError(f"--cpus {cpus} is more than this machine's {cores} cores: give --cpus {cores} or "
                           "fewer (or leave it out to use them all)")
    if not ray_available():
        raise InitlabError(f"running on Ray needs Ray: {INSTALL_HINT} (or run serially: --serial)")


def drive(run_cell: Callable[[Any], list[dict[str, Any]]], cells: Sequence[Cell], runner: Any, *,
          store: SweepStore | None = None, progress: bool = False, desc: str = "initlab sweep",
          notify: Notify | None = None) -> SweepResult:
    """Run ``cells`` on ``runner``: the ones ``store`` holds are skipped, every other one is run
    (retried once), and stored as it finishes (or kept in the result when there is no store).
    A tqdm bar on stderr counts cells, with the ETA and the failures so far. On an interrupt
    (Ctrl-C, or SIGTERM under the CLI) the unfinished cells are cancelled, the stored ones stay,
    ``notify`` is told how to resume, and the interrupt goes on.

    Returns:
        a :class:`SweepResult`.
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    todo = [c for c in cells if store is None or not store.has(c.key)]
    by_key = {c.key: c for c in todo}
    result = SweepResult(store.root if store else None, len(cells), len(cells) - len(todo), 0, [], 0.0, "")
    bar = None
    try:
        result.runner = runner.describe()
        if notify is not None and store is not None:
            notify(f"{desc}: {len(cells)} cells, {result.n_stored_before} already stored in {store.root}; "
                   f"running {len(todo)} on {result.runner}")
        bar = tqdm(total=len(cells), initial=result.n_stored_before, desc=desc, unit="cell",
                   disable=not progress, file=sys.stderr, dynamic_ncols=True)
        for outcome in runner.run(run_cell, todo, code_versions()):
            cell = by_key[outcome.key]
            if not outcome.records:  # failed twice, or an experiment that returned nothing
                error = outcome.error or "the cell returned no records"
                result.failures.append(Failure(cell.key, cell.params, error))
                if store is not None:
                    store.put_failure(cell.key, cell.params, error)
            else:
                _keep(result, store, cell, outcome)
            bar.update(1)
            if result.failures:
                bar.set_postfix(failed=len(result.failures))
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()  # the bar's line ends before the message starts (closing twice is a no-op)
        if notify is not None and store is not None:
            stored = result.n_stored_before + result.n_ran
            notify(f"initlab sweep: interrupted; {stored} of {len(cells)} cells are stored in {store.root}: "
                   "run the same command again to resume")
        raise
    finally:
        if bar is not None:
            bar.close()
        runner.close()
    result.seconds = time.perf_counter() - t0
    return result


def _keep(result: SweepResult, store: SweepStore | None, cell: Cell, outcome: Any) -> None:
    """Store a finished cell (its records normalized, with the cell's params and key as extras), or
    keep its records as they came when there is no store."""
    if store is None:
        result.records[cell.key] = outcome.records
    else:
        finished = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        records = normalize_records(outcome.records, {**cell.params, "cell": cell.key})
        store.put(cell.key, records, {"params": cell.params, "config": _config_dict(cell.config),
                                      "run": {**outcome.run, "finished_utc": finished}})
    result.n_ran += 1


def _config_dict(config: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(config)


def _as_spec(spec: SweepSpec | str | Path | dict) -> SweepSpec:
    if isinstance(spec, SweepSpec):
        return spec
    if isinstance(spec, dict):
        return parse_spec(spec)
    return load_spec(spec)


def _manifest(spec: SweepSpec, cells: list[Cell]) -> dict[str, Any]:
    from initlab import __version__

    return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "spec_hash": spec_hash(cells),
            "experiment": spec.experiment, "name": spec.name, "axes": list(spec.axes),
            "n_cells": len(cells),
            "initlab_version": __version__, "versions": code_versions(),
            "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "spec": spec.to_dict()}


def run(spec: SweepSpec | str | Path | dict, *, out: str | Path | None = None, runner: str = "ray",
        address: str | None = None, cpus: int | None = None, progress: bool = False,
        notify: Notify | None = None) -> SweepResult:
    """Run a sweep: every cell of ``spec`` (a :class:`SweepSpec`, a TOML path or spec data) not yet
    in the results directory, on Ray (``runner="ray"``: this machine, or ``address``) or here
    (``"serial"``); each finished cell is stored at once (:class:`~initlab.sweep.store.SweepStore`).
    Running it again skips the stored cells and retries the failed ones.

    Args:
        spec: what to run.
        out: the results directory (default: the spec's ``out``).
        runner, address, cpus: where (:func:`make_runner`).
        progress: a progress bar on stderr.
        notify: called with a line when the run is interrupted.

    Returns:
        a :class:`SweepResult` (its ``failures`` list the cells that failed twice).

    Raises:
        InitlabError: a bad spec; ``out`` missing, or a directory that is not this sweep's
            (foreign files, another spec, a corrupt file: never written to); Ray missing, or not
            reachable at ``address`` (checked before the results directory is made, so none is
            left behind).

    >>> import tempfile, os
    >>> spec = {"sweep": {"experiment": "phase", "seeds": [0]},
    ...         "fixed": {"width": 8, "steps": 3}, "grid": {"depth": [1, 2]}}
    >>> res = run(spec, out=os.path.join(tempfile.mkdtemp(), "s"), runner="serial")
    >>> res.n_ran, res.failures
    (2, [])
    """
    spec = _as_spec(spec)
    target = out if out is not None else spec.out
    if target is None:
        raise InitlabError("the sweep has no results directory: set out = \"DIR\" under [sweep], or pass "
                           "--out DIR")
    check_runner(runner, address=address, cpus=cpus)
    cells = expand(spec)
    manifest = _manifest(spec, cells)
    SweepStore.check(target, manifest)  # refused before Ray starts, and created only once it runs:
    made = make_runner(runner, address=address, cpus=cpus)  # a Ray it cannot reach leaves no directory
    try:
        store = SweepStore.create(target, manifest)
    except BaseException:
        made.close()
        raise
    try:
        return drive(spec.spec_experiment.run, cells, made, store=store, progress=progress, notify=notify)
    finally:
        store.close()


def map_cells(run_cell: Callable[[Any], list[dict[str, Any]]], configs: Sequence[Any], *,
              runner: str = "serial", address: str | None = None, cpus: int | None = None,
              progress: bool = False, desc: str = "cells") -> list[list[dict[str, Any]]]:
    """Run ``run_cell`` on every config through the engine (:func:`drive`, no store) and return each
    config's records in the order of ``configs``: the :data:`initlab.experiments.phase.CellMap` that
    ``initlab phase`` passes to :func:`~initlab.experiments.phase.run_phase`, and the
    :data:`initlab.experiments.common.CellMap` that ``initlab demo`` passes to
    :func:`~initlab.experiments.demo.run_demo`.

    Raises:
        InitlabError: a cell failed twice (the message names it and its error).
    """
    name = f"{run_cell.__module__}.{run_cell.__qualname__}"
    versions = code_versions()
    cells = [Cell(cell_key(name, c, versions), name, {"cell": i}, c) for i, c in enumerate(configs)]
    unique = list({c.key: c for c in cells}.values())
    made = make_runner(runner, address=address, cpus=cpus)
    result = drive(run_cell, unique, made, progress=progress, desc=desc)
    if result.failures:
        first = result.failures[0]
        raise InitlabError(f"{len(result.failures)} of {len(unique)} cells failed twice; the first, "
                           f"{configs[first.params['cell']]}: {first.error}")
    return [[dict(r) for r in result.records[c.key]] for c in cells]
