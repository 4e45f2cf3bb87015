"""Sweep scaling: the same 16-cell grid serially and on Ray with 1 and 2 workers, on this machine.

A cell is one ``train`` run of ``initlab sweep`` (``initlab.experiments.train``): an MLP (depth 4,
width 256, ReLU, He normal) trained with SGD on mnist5k for a fixed number of steps, sized to take
``--cell-seconds`` (default 10) on one thread; the 16 cells differ only by seed. Each mode runs the
whole grid into its own results store (a temporary directory), in one process, one after the other:

* ``serial`` — the engine's serial runner (no Ray);
* ``ray1`` — a new local Ray with 1 worker's CPUs (``initlab sweep --cpus 1`` at 1 thread per cell);
* ``ray2`` — a new local Ray with 2 workers' CPUs (``--cpus 2``);
* ``pool2`` — the peer: the same engine and store, its cells on the standard library's
  :class:`concurrent.futures.ProcessPoolExecutor` with 2 spawned processes (no Ray). It measures
  what this machine's two cores give two independent processes, so ``ray2 / pool2`` isolates
  Ray's own cost from the hardware's.

Printed per mode: wall seconds with Ray's start and shutdown, and without them; the mean of the
cells' own seconds (timed inside the worker); the worker warm-up (from submitting the grid to a
worker's first cell: a new Ray worker imports torch and initlab and loads the data once); the mean
gap between one cell's end and the next one's start on the same worker (Ray's steady-state cost per
cell); the overhead per cell, ``(wall without start/stop - sum of cell seconds / workers) / cells``
(warm-up included), as a ratio of the mean cell time (goal: under 5 % of a 10-s cell for
``ray1``); and the speed-up over ``serial`` (goal: >= 1.8 for ``ray2`` on 2 cores). Ray's start
and shutdown are a fixed cost per sweep, printed apart. On a shared machine the cell times move
with other people's load: compare the columns of one run only.

On a cluster nothing changes but the address: ``initlab sweep SPEC.toml --address auto`` (on a node
of the cluster) or ``--address ray://HEAD:10001``; this script measures this machine only.

Usage::

    python benchmarks/sweep_scaling.py                      # 16 cells of ~10 s: ~7 min on 2 cores
    python benchmarks/sweep_scaling.py --cell-seconds 2     # the same, ~1.5 min
    python benchmarks/sweep_scaling.py --steps 300 --modes serial ray2
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

#: mode -> (runner, Ray workers: cells at a time; ``None``: serial, here).
MODES = {"serial": ("serial", None), "pool2": ("pool", 2), "ray1": ("ray", 1), "ray2": ("ray", 2)}


class PoolRunner:
    """The peer runner: cells on a :class:`~concurrent.futures.ProcessPoolExecutor` of ``workers``
    spawned processes, through the engine's own :func:`~initlab.sweep.runners.execute`; the same
    runner interface as the engine's (``run``, ``close``, ``describe``), no retries."""

    name = "pool"

    def __init__(self, workers: int) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.workers = workers
        self._pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))

    def run(self, run, cells, versions):
        """Submit every cell; yield outcomes as they finish."""
        from concurrent.futures import as_completed

        from initlab.sweep.runners import Outcome, error_line, execute

        futures = {self._pool.submit(execute, run, c.config, versions): c for c in cells}
        for fut in as_completed(futures):
            cell = futures[fut]
            try:
                done = fut.result()
            except Exception as exc:  # noqa: BLE001 - reported like the engine's runners
                yield Outcome(cell.key, None, error_line(exc))
                continue
            yield Outcome(cell.key, done["records"], None, done["run"])

    def close(self) -> None:
        """Stop the pool's processes."""
        self._pool.shutdown(cancel_futures=True)

    def describe(self) -> str:
        """One line for the log."""
        return f"process pool ({self.workers} processes)"


def spec(steps: int, cells: int, threads: int = 1) -> dict:
    """The grid: ``cells`` seeds of one fixed-size training cell of ``steps`` SGD steps, each on
    ``threads`` torch threads."""
    return {"sweep": {"experiment": "train", "seeds": list(range(cells)), "threads": threads},
            "fixed": {"model": "mlp", "init": "he_normal", "activation": "relu", "depth": 4, "width": 256,
                      "dataset": "mnist5k", "batch_size": 128, "lr": 0.01, "steps": steps,
                      "eval_every": steps, "eval_size": 1000, "final_size": 1000, "target": 0.99}}


def calibrate(seconds: float, threads: int) -> int:
    """Steps that make one cell take about ``seconds`` here: a cell's cost is a fixed part (data,
    model, start, the final evaluation) plus a cost per step, both taken from timed 60- and
    180-step cells: ``steps = (seconds - fixed) / per_step``."""
    from initlab.experiments.train import TrainConfig, run_train
    from initlab.sweep import parse_spec

    def timed(steps: int) -> float:
        fixed = {**parse_spec(spec(steps, 1)).fixed, "threads": threads}
        t0 = time.perf_counter()
        run_train(TrainConfig(**fixed))
        return time.perf_counter() - t0

    timed(5)  # warm the data cache and torch
    short, long = timed(60), timed(180)
    per_step = max(long - short, 1e-6) / 120
    fixed_s = max(short - 60 * per_step, 0.0)
    return max(5, round((seconds - fixed_s) / per_step))


def _gaps(cells: list) -> tuple[float, float]:
    """``(mean gap between one cell's end and the next cell's start on the same worker, mean first
    start)``: Ray's steady-state cost per cell, and when each worker began its first cell."""
    by_pid: dict[int, list] = {}
    for c in cells:
        by_pid.setdefault(c.run["pid"], []).append((c.run["started"], c.run["ended"]))
    gaps, firsts = [], []
    for runs in by_pid.values():
        runs.sort()
        firsts.append(runs[0][0])
        gaps += [b[0] - a[1] for a, b in zip(runs, runs[1:], strict=False)]
    return (statistics.fmean(gaps) if gaps else 0.0), statistics.fmean(firsts)


def measure(mode: str, steps: int, cells: int, threads: int) -> dict:
    """Run the grid in ``mode`` into a fresh store; wall, start/stop and the cells' own seconds."""
    from initlab import sweep
    from initlab.sweep.store import SweepStore

    runner_name, workers = MODES[mode]
    cpus = workers * threads if workers else None  # each cell reserves `threads` CPUs
    cell_list = sweep.expand(sweep.parse_spec(spec(steps, cells, threads)))
    with tempfile.TemporaryDirectory(prefix="initlab-sweep-scaling-") as tmp:
        store = SweepStore.create(os.path.join(tmp, "s"), {"schema": "initlab.sweep", "schema_version": 1,
                                                           "spec_hash": sweep.spec_hash(cell_list),
                                                           "n_cells": cells})
        t0 = time.perf_counter()
        runner = PoolRunner(workers) if runner_name == "pool" else sweep.make_runner(runner_name, cpus=cpus)
        start = time.perf_counter() - t0
        close = runner.close
        stop = {"s": 0.0}

        def timed_close() -> None:
            t = time.perf_counter()
            close()
            stop["s"] = time.perf_counter() - t

        runner.close = timed_close
        submitted = time.time()
        result = sweep.drive(sweep.get_experiment("train").run, cell_list, runner, store=store)
        wall = time.perf_counter() - t0
        stored = store.cells()
        store.close()
    if result.failures:
        raise RuntimeError(f"{mode}: {len(result.failures)} cells failed: {result.failures[0].error}")
    workers = workers or 1
    own = [c.run["seconds"] for c in stored]
    gap, first = _gaps(stored)
    inner = wall - start - stop["s"]
    return {"mode": mode, "workers": workers, "wall": wall, "start_stop": start + stop["s"], "inner": inner,
            "cell_sum": sum(own), "cell_mean": statistics.fmean(own), "warmup": first - submitted,
            "gap": gap, "overhead": (inner - sum(own) / workers) / cells}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, default=16, help="cells in the grid (default 16)")
    p.add_argument("--cell-seconds", type=float, default=10.0, help="target seconds per cell (default 10)")
    p.add_argument("--steps", type=int, default=None, help="SGD steps per cell (default: calibrated)")
    p.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    p.add_argument("--threads", type=int, default=1, help="torch threads per cell (default 1)")
    args = p.parse_args(argv)
    if args.threads < 1:
        p.error(f"--threads {args.threads}: pass 1 or more")
    import torch

    torch.set_num_threads(args.threads)  # this process; every cell sets its own (TrainConfig.threads)
    steps = args.steps or calibrate(args.cell_seconds, args.threads)
    print(f"{args.cells} cells of {steps} SGD steps (MLP 4x256 on mnist5k, {args.threads} torch thread(s) "
          f"each); {os.cpu_count()} CPUs here", flush=True)
    rows = []
    for mode in args.modes:
        rows.append(measure(mode, steps, args.cells, args.threads))
        r = rows[-1]
        print(f"  {mode}: {r['wall']:.1f} s", file=sys.stderr, flush=True)
    serial = next((r for r in rows if r["mode"] == "serial"), None)
    print(f"\n{'mode':<7} {'workers':>7} {'wall s':>7} {'start+stop s':>16} {'wall w/o s':>10} "
          f"{'cell mean s':>11} {'worker warm-up s':>16} {'gap/cell s':>10} {'overhead/cell s':>15} "
          f"{'/cell time':>10} {'speed-up':>8}")
    for r in rows:
        speed = f"{serial['wall'] / r['wall']:.2f}" if serial else "-"
        print(f"{r['mode']:<7} {r['workers']:>7} {r['wall']:>7.1f} {r['start_stop']:>16.1f} "
              f"{r['inner']:>10.1f} {r['cell_mean']:>11.2f} {r['warmup']:>16.2f} {r['gap']:>10.3f} "
              f"{r['overhead']:>15.3f} {r['overhead'] / r['cell_mean']:>10.1%} {speed:>8}")
    by = {r["mode"]: r for r in rows}
    if "ray1" in by:
        r = by["ray1"]
        ratio = r["overhead"] / r["cell_mean"]
        print(f"\n{'PASS' if ratio < 0.05 else 'FAIL'}  Ray overhead per cell (1 worker, without "
              f"start/stop): {r['overhead']:.3f} s = {ratio:.1%} of a {r['cell_mean']:.1f}-s cell "
              f"(goal < 5 %); of it, {r['warmup']:.1f} s of worker start-up once, {r['gap']:.3f} s between "
              "cells")
    if "ray2" in by and serial:
        speed = serial["wall"] / by["ray2"]["wall"]
        inner = serial["inner"] / by["ray2"]["inner"]
        print(f"{'PASS' if speed >= 1.8 else 'FAIL'}  speed-up on 2 workers: {speed:.2f} with Ray's start "
              f"and stop, {inner:.2f} without (goal >= 1.8)")
    if "ray2" in by and "pool2" in by and serial:
        pool = serial["wall"] / by["pool2"]["wall"]
        print(f"      peer: a 2-process pool without Ray: speed-up {pool:.2f}; Ray / pool wall "
              f"{by['ray2']['wall'] / by['pool2']['wall']:.3f} (1.0 = Ray costs nothing over the pool)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
