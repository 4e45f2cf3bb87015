"""Time to accuracy: ``init_model(..., "auto")`` against the usual initializations, on real data.

Tasks: plain MLPs (``initlab.models.mlp``) of depth 10, 30 and 50, width 128, with tanh, relu,
gelu, selu and sigmoid, on Fashion-MNIST (Debian's ``dataset-fashion-mnist`` through
``initlab.data.load_dataset``; mnist5k when it is absent), standardised pixels. Training: SGD,
momentum 0.9, lr 0.01, batch 128, 3 epochs, cross-entropy; the same seed for every run (same data
order, same generator for the init).

Initializations, run one after the other on each task (alternating, in one process):

* ``auto``          — ``initlab.init_model(model, "auto")``;
* ``torch_default`` — the modules as constructed (``reset_parameters``: ``U(±1/sqrt(fan_in))``),
  after ``torch.manual_seed(seed)``;
* ``keras_default`` — ``torch.nn.init.xavier_uniform_`` weights, zero biases (Keras's Dense);
* ``torch_recipe``  — what torch's docs recommend: ``kaiming_normal_(nonlinearity="relu")`` for
  ReLU, ``xavier_normal_(gain=calculate_gain(act))`` for tanh (5/3) and sigmoid (1),
  ``kaiming_normal_(nonlinearity="linear")`` for SELU (the docs' advice for self-normalising
  nets), and for GELU, which torch's table lacks, ``kaiming_normal_`` with the ReLU gain (the
  closest rectifier); the output layer ``xavier_normal_`` (gain 1); zero biases;
* ``lsuv``          — ``initlab.lsuv_`` (Mishkin & Matas 2016) on 512 training examples.

``auto`` on these plain MLPs is the isometric rule of :mod:`initlab.apply` (looks-linear weights for
ReLU and GELU, orthogonal near-critical weights for tanh, SELU and sigmoid, with centring biases
after a sigmoid).

Measured: ``steps`` — the first optimiser step at which the accuracy on a fixed 2,000-example
subset of the test set reaches 80 % (checked every ``--eval-every`` steps, so it is a multiple of
that), ``-`` if never; ``final`` — accuracy on the whole test set after training; ``time`` — wall
seconds of the run. Per task: ``auto / best peer`` = auto's steps over the fewest steps of any peer
(< 1: auto is faster; ``inf``: auto never reached 80 % but a peer did). With ``--seeds 0 1 2`` every
run is repeated per seed (the seed sets the data order and every init) and the summary compares the
medians over seeds (a run that never reaches 80 % counts as infinitely many steps).

Usage::

    python benchmarks/time_to_accuracy.py            # full: 15 tasks x 5 inits, ~1 h on 1 CPU core
    python benchmarks/time_to_accuracy.py --quick    # depth 10 only, 1 epoch on 20k examples

``--threads N`` sets torch's threads (default 1); the steps, not only the times, depend on it.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

import torch
from torch import nn
from tqdm import tqdm

from initlab.data import load_dataset
from initlab.errors import DataError
from initlab.experiments.common import sgd_step
from initlab.lsuv import lsuv_
from initlab.model import init_model
from initlab.models import mlp
from initlab.records import records_to_json, write_text_atomic

INITS = ("auto", "torch_default", "keras_default", "torch_recipe", "lsuv")
ACTIVATIONS = ("tanh", "relu", "gelu", "selu", "sigmoid")


def keras_default_(model: nn.Module, gen: torch.Generator) -> None:
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight, generator=gen)
            nn.init.zeros_(m.bias)


def torch_recipe_(model: nn.Module, activation: str, gen: torch.Generator) -> None:
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    for i, m in enumerate(layers):
        act = "linear" if i == len(layers) - 1 else activation
        if act in ("relu", "gelu"):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=gen)
        elif act == "selu":
            nn.init.kaiming_normal_(m.weight, nonlinearity="linear", generator=gen)
        else:
            nn.init.xavier_normal_(m.weight, gain=nn.init.calculate_gain(act), generator=gen)
        nn.init.zeros_(m.bias)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 2000) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            correct += (model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item()
    model.train()
    return correct / len(x)


def run(ds, depth: int, activation: str, init: str, args) -> dict:
    torch.manual_seed(args.seed)  # torch_default draws from the global generator, as torch does
    model = mlp(ds.n_features, args.width, depth, ds.n_classes, activation)
    gen = torch.Generator().manual_seed(args.seed)
    if init == "auto":
        init_model(model, "auto", generator=gen)
    elif init == "keras_default":
        keras_default_(model, gen)
    elif init == "torch_recipe":
        torch_recipe_(model, activation, gen)
    elif init == "lsuv":
        idx = torch.randperm(len(ds.x_train), generator=torch.Generator().manual_seed(args.seed))[:512]
        lsuv_(model, ds.x_train[idx], generator=gen)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    x_tr, y_tr = ds.x_train, ds.y_train
    if args.train_limit:
        x_tr, y_tr = x_tr[:args.train_limit], y_tr[:args.train_limit]
    x_ev, y_ev = ds.x_test[:2000], ds.y_test[:2000]
    order_gen = torch.Generator().manual_seed(args.seed)
    steps_to, step, diverged = None, 0, False
    t0 = time.perf_counter()
    for _ in range(args.epochs):
        perm = torch.randperm(len(x_tr), generator=order_gen)
        for i in range(0, len(x_tr), args.batch):
            b = perm[i:i + args.batch]
            if sgd_step(model, opt, x_tr[b], y_tr[b]) is None:
                diverged = True
                break
            step += 1
            if steps_to is None and step % args.eval_every == 0 and accuracy(model, x_ev, y_ev) >= 0.8:
                steps_to = step
        if diverged:
            break
    final = float("nan") if diverged else accuracy(model, ds.x_test, ds.y_test)
    return {"depth": depth, "activation": activation, "init": init, "steps_to_80": steps_to,
            "final_acc": final, "steps": step, "time_s": time.perf_counter() - t0, "diverged": diverged}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="depth 10, 1 epoch on 20k examples")
    p.add_argument("--depths", type=int, nargs="+", default=None)
    p.add_argument("--activations", nargs="+", default=list(ACTIVATIONS))
    p.add_argument("--inits", nargs="+", default=list(INITS))
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--eval-every", type=int, default=20)
    p.add_argument("--train-limit", type=int, default=None)
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per seed; medians compared")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--json", default=None, help="also write the records here")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    args = p.parse_args(argv)
    if args.threads < 1:
        p.error(f"--threads {args.threads}: pass 1 or more")
    torch.set_num_threads(args.threads)
    if args.depths is None:
        args.depths = [10] if args.quick else [10, 30, 50]
    if args.epochs is None:
        args.epochs = 1 if args.quick else 3
    if args.quick and args.train_limit is None:
        args.train_limit = 20000
    torch.set_flush_denormal(True)
    try:
        ds = load_dataset(args.dataset, seed=0)
    except DataError as exc:
        print(f"{args.dataset} unavailable ({exc}); using mnist5k", file=sys.stderr)
        ds = load_dataset("mnist5k", seed=0)
    print(f"data: {ds.name} train {tuple(ds.x_train.shape)} test {tuple(ds.x_test.shape)}; width "
          f"{args.width}, SGD(lr={args.lr}, momentum=0.9), batch {args.batch}, {args.epochs} epoch(s)"
          + (f" on the first {args.train_limit} examples" if args.train_limit else "")
          + f", seeds {args.seeds}, torch threads {torch.get_num_threads()}")
    jobs = [(d, a, i, s) for s in args.seeds for d in args.depths for a in args.activations
            for i in args.inits]
    records = []
    for d, a, i, s in tqdm(jobs, file=sys.stderr, disable=args.no_progress, desc="runs"):
        args.seed = s
        records.append({**run(ds, d, a, i, args), "seed": s})

    def fmt_steps(v: float | None) -> str:
        return "-" if v is None or v == math.inf else f"{v:g}"

    print(f"\n{'depth':>5} {'act':<8} {'init':<14} {'seed':>4} {'steps>=80%':>10} {'final':>7} {'time_s':>7}")
    for r in records:
        print(f"{r['depth']:>5} {r['activation']:<8} {r['init']:<14} {r['seed']:>4} "
              f"{fmt_steps(r['steps_to_80']):>10} {r['final_acc']:>7.4f} {r['time_s']:>7.1f}")
    what = "steps" if len(args.seeds) == 1 else f"median steps over {len(args.seeds)} seeds"
    print(f"\n{what}\n{'depth':>5} {'act':<8} {'auto':>6} {'best peer':>16} {'auto/best':>9}")
    for d in args.depths:
        for a in args.activations:
            steps: dict[str, float] = {}
            for i in args.inits:
                got = [r["steps_to_80"] for r in records
                       if (r["depth"], r["activation"], r["init"]) == (d, a, i)]
                if got:
                    steps[i] = statistics.median(math.inf if v is None else v for v in got)
            if "auto" not in steps:
                continue
            peers = [(v, k) for k, v in steps.items() if k != "auto" and v != math.inf]
            auto = steps["auto"]
            if peers:
                best, who = min(peers)
                ratio = f"{auto / best:.2f}" if auto != math.inf else "inf"
                peer = f"{best:g} ({who})"
            else:
                peer, ratio = "-", ("-" if auto == math.inf else "only auto")
            print(f"{d:>5} {a:<8} {fmt_steps(auto):>6} {peer:>16} {ratio:>9}")
    if args.json:  # non-finite numbers become null
        write_text_atomic(args.json, records_to_json(records, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
