"""Overhead of :func:`initlab.probe.probe` against a plain forward + backward pass.

Measured alternately in one run (probe, plain, probe, plain, ...) so that machine noise hits both
sides alike; reports the median time of each and the ratio probe / plain (goal: <= 1.5).

* a 30-layer MLP, width 512, batch 256, tanh (``initlab.models.mlp``);
* a small CNN (3 conv layers + ReLU, 32x32 inputs, batch 64).

The plain side computes the same loss (the probe's default random projection) and the gradients
of all parameters with ``torch.autograd.grad``. Run ``python benchmarks/probe_overhead.py``
(``--quick`` for a short run, ``--reps N``, ``--threads N``: torch threads, default 1).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from torch import nn

from initlab.models import mlp
from initlab.probe import probe


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1, stride=2), nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=1, stride=2), nn.ReLU(),
        nn.Flatten(), nn.Linear(64 * 8 * 8, 10),
    )


def plain(model: nn.Module, x: torch.Tensor, r: torch.Tensor) -> None:
    params = [p for p in model.parameters() if p.requires_grad]
    out = model(x)
    loss = (out * r).sum() / out.shape[0]
    torch.autograd.grad(loss, params)


def bench(name: str, model: nn.Module, x: torch.Tensor, reps: int, **kw) -> float:
    """Median wall and CPU (process) time of probe and plain, measured alternately. On a shared
    machine the CPU-time ratio is the more faithful one: it does not count time spent waiting
    for a core."""
    with torch.no_grad():
        out = model(x)
    r = torch.randn(out.shape, generator=torch.Generator().manual_seed(0))
    for _ in range(2):  # warm-up
        plain(model, x, r)
        probe(model, x, **kw)
    wall: dict[str, list[float]] = {"probe": [], "plain": []}
    cpu: dict[str, list[float]] = {"probe": [], "plain": []}
    for _ in range(reps):
        for side in ("probe", "plain"):
            w0, c0 = time.perf_counter(), time.process_time()
            if side == "probe":
                probe(model, x, **kw)
            else:
                plain(model, x, r)
            wall[side].append(time.perf_counter() - w0)
            cpu[side].append(time.process_time() - c0)
    med = {k: statistics.median(v) for k, v in wall.items()}
    cmed = {k: statistics.median(v) for k, v in cpu.items()}
    extra = " ".join(f"{k}={v}" for k, v in kw.items()) or "defaults"
    print(f"{name:<28} wall: probe {med['probe'] * 1e3:7.1f} ms  plain {med['plain'] * 1e3:7.1f} ms  "
          f"ratio {med['probe'] / med['plain']:4.2f} | cpu: probe {cmed['probe'] * 1e3:7.1f} ms  "
          f"plain {cmed['plain'] * 1e3:7.1f} ms  ratio {cmed['probe'] / cmed['plain']:4.2f}  [{extra}]")
    return cmed["probe"] / cmed["plain"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few repetitions")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    args = ap.parse_args()
    if args.threads < 1:
        ap.error(f"--threads {args.threads}: pass 1 or more")
    torch.set_num_threads(args.threads)
    reps = args.reps or (3 if args.quick else 15)
    torch.set_flush_denormal(True)
    g = torch.Generator().manual_seed(0)
    load = " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, reps {reps} (median), load average {load}")
    net = mlp(512, 512, 30, 10, "tanh")
    x = torch.randn(256, 512, generator=g)
    bench("MLP 30x512, batch 256", net, x, reps)
    bench("MLP 30x512, batch 256", net, x, reps, bins=0, functional=False)
    cnn = small_cnn()
    xc = torch.randn(64, 3, 32, 32, generator=g)
    bench("CNN 3 conv, 32x32, batch 64", cnn, xc, reps)
    bench("CNN 3 conv, 32x32, batch 64", cnn, xc, reps, bins=0, functional=False)


if __name__ == "__main__":
    main()
