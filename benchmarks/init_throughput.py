"""Throughput of initlab.init against torch.nn.init, same scheme, same tensor, same generator.

For every scheme both sides are timed alternately within one run (A B, B A, ... so neither side
always runs first), several pairs; ``ratio`` is the median over pairs of ``initlab / torch``
(goal <= 1.05), the ms columns are the median times per call. Each measurement times enough
calls to last >= ``--min-time`` seconds, and every call reseeds the generator so both sides draw
the same numbers (same work). Two controls measure the machine's noise: ``torch vs torch`` (the
same function on both sides; its ratio should be 1) and the spread of the per-pair ratios
(``p10-p90`` column). The CPU is shared: read a ratio against those two.

Usage::

    python benchmarks/init_throughput.py            # 1M and 64M float32 tensors, 4096x4096 orthogonal
    python benchmarks/init_throughput.py --quick    # 1M only, 1024x1024 orthogonal, 5 pairs
    python benchmarks/init_throughput.py --threads 4  # torch intra-op threads (default 1)
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.init as tinit

from initlab import init as I  # noqa: N812
from initlab import schemes
from initlab.fans import compute_fans


def _time_calls(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def measure(ours: Callable[[], object], theirs: Callable[[], object], pairs: int, min_time: float):
    """Median seconds per call of each side, and the sorted per-pair ratios.

    The two sides alternate pair by pair (A B, then B A, ...), so a burst of load on the shared
    machine hits both; each measurement times ``calls`` calls, enough to last ``min_time``."""
    ours()
    theirs()  # warm-up (allocator, first touch, lazy init)
    calls = max(1, math.ceil(min_time / max(_time_calls(theirs, 1), 1e-7)))
    t_ours, t_theirs = [], []
    for r in range(pairs):
        pair = [(ours, t_ours), (theirs, t_theirs)]
        if r % 2:
            pair.reverse()
        for fn, out in pair:
            out.append(_time_calls(fn, calls))
    ratios = sorted(a / b for a, b in zip(t_ours, t_theirs, strict=True))
    return statistics.median(t_ours), statistics.median(t_theirs), ratios


def _pct(xs: list[float], q: float) -> float:
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


def cases(shape: tuple[int, ...], g: torch.Generator):
    """(scheme, initlab call, torch call) on one preallocated float32 tensor of ``shape``.

    Every call reseeds the shared generator first, so both sides draw the same numbers and do
    the same work (rejection samplers loop a random number of times otherwise)."""
    t = torch.empty(shape)
    fans = compute_fans(shape)
    glorot_tn = schemes.glorot_truncated_normal(fans)
    he_n = schemes.he_normal(fans)

    def s() -> torch.Generator:
        return g.manual_seed(0)

    yield (
        "torch vs torch (control)",
        lambda: tinit.normal_(t, generator=s()),
        lambda: tinit.normal_(t, generator=s()),
    )
    yield (
        "uniform_",
        lambda: I.uniform_(t, -0.1, 0.1, generator=s()),
        lambda: tinit.uniform_(t, -0.1, 0.1, generator=s()),
    )
    yield (
        "normal_",
        lambda: I.normal_(t, 0.0, 0.02, generator=s()),
        lambda: tinit.normal_(t, 0.0, 0.02, generator=s()),
    )
    yield (
        "trunc_normal_",
        lambda: I.trunc_normal_(t, std=0.02, a=-0.04, b=0.04, generator=s()),
        lambda: tinit.trunc_normal_(t, std=0.02, a=-0.04, b=0.04, generator=s()),
    )
    yield "constant_", lambda: I.constant_(t, 0.5), lambda: tinit.constant_(t, 0.5)
    yield (
        "xavier_uniform_",
        lambda: I.xavier_uniform_(t, generator=s()),
        lambda: tinit.xavier_uniform_(t, generator=s()),
    )
    yield (
        "xavier_normal_",
        lambda: I.xavier_normal_(t, generator=s()),
        lambda: tinit.xavier_normal_(t, generator=s()),
    )
    yield (
        "kaiming_uniform_",
        lambda: I.kaiming_uniform_(t, a=math.sqrt(5), generator=s()),
        lambda: tinit.kaiming_uniform_(t, a=math.sqrt(5), generator=s()),
    )
    yield (
        "kaiming_normal_",
        lambda: I.kaiming_normal_(t, nonlinearity="relu", generator=s()),
        lambda: tinit.kaiming_normal_(t, nonlinearity="relu", generator=s()),
    )
    # new schemes against the torch call that draws the same distribution
    yield (
        "glorot_truncated_normal_ vs trunc_normal_",
        lambda: I.glorot_truncated_normal_(t, generator=s()),
        lambda: tinit.trunc_normal_(t, 0.0, glorot_tn.std, glorot_tn.a, glorot_tn.b, generator=s()),
    )
    yield (
        "variance_scaling_(normal) vs normal_",
        lambda: I.variance_scaling_(t, 2.0, "fan_in", "normal", generator=s()),
        lambda: tinit.normal_(t, 0.0, he_n.std, generator=s()),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1M only, 1024x1024 orthogonal, 5 pairs")
    parser.add_argument(
        "--repeats", type=int, default=None, help="alternating pairs at 1M (default 15; quick 5)"
    )
    parser.add_argument("--min-time", type=float, default=None, help="seconds per measurement (default 0.1)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads {args.threads}: pass 1 or more")
    repeats = args.repeats or (5 if args.quick else 15)
    min_time = args.min_time or (0.02 if args.quick else 0.1)
    torch.set_num_threads(args.threads)
    sizes = [("1M", (1024, 1024))] + ([] if args.quick else [("64M", (8192, 8192))])
    orth = 1024 if args.quick else 4096

    print(
        f"initlab.init vs torch.nn.init | torch {torch.__version__} | float32 CPU | threads={args.threads} | "
        f"pairs={repeats} (1M), {max(3, repeats // 2)} (64M), {max(3, repeats // 3)} (orthogonal) | "
        f"load avg {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    )
    header = (
        f"{'scheme':44s} {'size':>9s} {'initlab ms':>11s} {'torch ms':>10s} {'ratio':>7s} {'p10-p90':>13s}"
    )
    print(header)
    print("-" * len(header))
    worst = 0.0
    g = torch.Generator().manual_seed(0)

    def row(name: str, size: str, ours, theirs, reps: int, mt: float) -> None:
        nonlocal worst
        a, b, ratios = measure(ours, theirs, reps, mt)
        ratio = statistics.median(ratios)  # pairs are adjacent in time: load bursts cancel
        if "control" not in name:
            worst = max(worst, ratio)
        spread = f"{_pct(ratios, 0.1):.3f}-{_pct(ratios, 0.9):.3f}"
        print(f"{name:44s} {size:>9s} {a * 1e3:11.3f} {b * 1e3:10.3f} {ratio:7.3f} {spread:>13s}", flush=True)

    for label, shape in sizes:
        for name, ours, theirs in cases(shape, g):
            # 64M calls take 0.3-10 s each: fewer pairs there keep the run to a few minutes
            row(name, label, ours, theirs, repeats if label == "1M" else max(3, repeats // 2), min_time)
    w = torch.empty(orth, orth)
    row(
        "orthogonal_",
        f"{orth}x{orth}",
        lambda: I.orthogonal_(w, generator=g.manual_seed(0)),
        lambda: tinit.orthogonal_(w, generator=g.manual_seed(0)),
        max(3, repeats // 3),
        0.0,
    )
    tiny = torch.empty(10, 10)
    a, b, _ = measure(
        lambda: I.kaiming_uniform_(tiny, generator=g), lambda: tinit.kaiming_uniform_(tiny, generator=g),
        repeats, min_time,
    )
    print(f"per-call cost on a 10x10 tensor (Python overhead; informative): kaiming_uniform_ "
          f"initlab {a * 1e6:.1f} us, torch {b * 1e6:.1f} us")
    print(f"worst ratio (excluding the control): {worst:.3f}  (goal <= 1.05)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
