"""Benchmark: initlab.lsuv_ against the reference PyPI package ``lsuv`` (``pip install lsuv``).

Same models, same starting weights, same batch; the two run alternately (order flipped every
repeat) in one process. Printed per model:

* wall time of the init (median over repeats) and the ratio reference / initlab (> 1: initlab faster);
* full-model forward passes used (counted by a pre-hook on the model; initlab also reports its
  single-layer recomputations);
* spread of the final per-layer output stds on the batch (max |std - 1| and the std of the stds),
  measured independently after each init;
* test accuracy after one epoch of SGD from each init (mean over repeats).

Goal: at least as accurate, no slower. Run: ``python benchmarks/lsuv.py [--quick] [--threads N]``
(torch threads, default 1; the times and the accuracies depend on it).
The ``lsuv`` package is a benchmark-only dependency, not one of initlab's.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from initlab.data import load_dataset
from initlab.lsuv import HANDLED_TYPES, lsuv_
from initlab.models import mlp


def _import_reference():
    """Import the PyPI ``lsuv`` package, not this script (which is also called lsuv.py)."""
    here = os.path.dirname(os.path.abspath(__file__))
    saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    try:
        return importlib.import_module("lsuv")
    except ImportError as exc:
        raise SystemExit("this benchmark needs the reference package: pip install lsuv") from exc
    finally:
        sys.path[:] = saved


reference = _import_reference()


class _Image(nn.Module):
    def forward(self, x):
        return x.view(x.shape[0], 1, 8, 8)


def cnn() -> nn.Module:
    return nn.Sequential(
        _Image(),
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(64 * 4 * 4, 10),
    )


MODELS = {
    "mlp-relu-20x128": lambda: mlp(64, 128, 20, 10, "relu"),
    "mlp-tanh-8x128": lambda: mlp(64, 128, 8, 10, "tanh"),
    "cnn-3conv": cnn,
}


def layer_stds(model: nn.Module, batch: torch.Tensor) -> list[float]:
    stds: dict[str, float] = {}
    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, HANDLED_TYPES):
            def hook(mod, args, out, name=name):
                stds.setdefault(name, float(out.detach().double().std()))
            hooks.append(m.register_forward_hook(hook))
    model.eval()
    with torch.no_grad():
        model(batch)
    for h in hooks:
        h.remove()
    model.train()
    return list(stds.values())


def count_passes(model: nn.Module) -> tuple[list[int], object]:
    counter = [0]

    def pre(mod, args):
        counter[0] += 1

    return counter, model.register_forward_pre_hook(pre)


def one_epoch_accuracy(model: nn.Module, ds, seed: int, lr: float = 0.01) -> float:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    x, y = ds.x_train, ds.y_train
    perm = torch.randperm(len(x), generator=g)
    model.train()
    for s in range(0, len(x), 32):
        i = perm[s:s + 32]
        loss = F.cross_entropy(model(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        return float((model(ds.x_test).argmax(1) == ds.y_test).float().mean())


def run_initlab(model, batch, seed):
    lsuv_(model, batch, generator=torch.Generator().manual_seed(seed))


def run_reference(model, batch, seed):
    torch.manual_seed(seed)  # the reference's orthogonal init reads the global RNG
    reference.lsuv_with_singlebatch(model, batch, verbose=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats instead of 10")
    parser.add_argument("--batch", type=int, default=256, help="LSUV batch size")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    args = parser.parse_args()
    if args.threads < 1:
        parser.error(f"--threads {args.threads}: pass 1 or more")
    repeats = 3 if args.quick else 10
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    ds = load_dataset("digits", seed=0)
    batch = ds.x_train[: args.batch]
    impls = {"initlab": run_initlab, "lsuv (PyPI)": run_reference}
    print(f"digits: {len(ds.x_train)} train / {len(ds.x_test)} test; LSUV batch {len(batch)}; "
          f"target std 1, tol 0.1, max_iter 10; {repeats} repeats, alternating order; "
          f"threads {torch.get_num_threads()}")
    summary = []
    for model_name, factory in MODELS.items():
        stats = {k: {"time": [], "passes": [], "maxdev": [], "spread": [], "acc": []} for k in impls}
        for r in range(repeats):
            torch.manual_seed(100 + r)  # the same starting weights for both
            start = factory().state_dict()
            order = list(impls) if r % 2 == 0 else list(impls)[::-1]
            for name in order:
                model = factory()
                model.load_state_dict(start)
                counter, handle = count_passes(model)
                t0 = time.perf_counter()
                impls[name](model, batch, seed=r)
                elapsed = time.perf_counter() - t0
                handle.remove()
                stds = layer_stds(model, batch)
                s = stats[name]
                s["time"].append(elapsed)
                s["passes"].append(counter[0])
                s["maxdev"].append(max(abs(v - 1.0) for v in stds))
                s["spread"].append(statistics.pstdev(stds))
                s["acc"].append(one_epoch_accuracy(model, ds, seed=1000 + r))
        print(f"\n== {model_name} ==")
        print(f"{'impl':<12} {'time ms (median)':>16} {'fwd passes':>10} {'max|std-1|':>11} "
              f"{'std of stds':>11} {'test acc (mean +- sd)':>22}")
        for name in impls:
            s = stats[name]
            print(f"{name:<12} {1e3 * statistics.median(s['time']):>16.2f} "
                  f"{statistics.median(s['passes']):>10.0f} "
                  f"{max(s['maxdev']):>11.4f} {statistics.mean(s['spread']):>11.4f} "
                  f"{statistics.mean(s['acc']):>13.4f} +- {statistics.pstdev(s['acc']):.4f}")
        ratio = statistics.median(stats["lsuv (PyPI)"]["time"]) / statistics.median(stats["initlab"]["time"])
        dacc = statistics.mean(stats["initlab"]["acc"]) - statistics.mean(stats["lsuv (PyPI)"]["acc"])
        print(f"time ratio reference/initlab = {ratio:.2f}x; "
              f"forward passes {statistics.median(stats['lsuv (PyPI)']['passes']):.0f} vs "
              f"{statistics.median(stats['initlab']['passes']):.0f}; "
              f"accuracy initlab - reference = {dacc:+.4f}")
        summary.append((model_name, ratio, dacc))
    print("\nsummary (goal: ratio >= 1, accuracy difference >= 0 within noise):")
    for model_name, ratio, dacc in summary:
        print(f"  {model_name:<18} speed-up {ratio:6.2f}x   accuracy diff {dacc:+.4f}")


if __name__ == "__main__":
    main()
