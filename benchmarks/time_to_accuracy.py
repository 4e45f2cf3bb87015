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

Each run is one cell of ``initlab sweep``'s ``train`` experiment (``initlab.experiments.train``), and
the grid runs through the sweep engine (``initlab.sweep``): here, one run after the other, by
default; ``--ray`` on this machine's cores (``--cpus N``), ``--address ADDR`` on a Ray cluster (the
numbers do not depend on where a run ran); ``--store DIR`` keeps every finished run in a sweep store,
so an interrupted benchmark started again with the same options resumes where it stopped. The same
grid as a spec: ``examples/sweeps/time_to_accuracy.toml``.

Usage::

    python benchmarks/time_to_accuracy.py            # full: 15 tasks x 5 inits, ~1 h on 1 CPU core
    python benchmarks/time_to_accuracy.py --quick    # depth 10 only, 1 epoch on 20k examples
    python benchmarks/time_to_accuracy.py --ray --store tta-runs   # on every core, resumable

``--threads N`` sets torch's threads per run (default 1); the steps, not only the times, depend on it.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys

import torch

from initlab.errors import DataError
from initlab.experiments.train import TrainConfig, run_train
from initlab.experiments.train_data import classification_dataset
from initlab.records import records_to_json, write_text_atomic

INITS = ("auto", "torch_default", "keras_default", "torch_recipe", "lsuv")
ACTIVATIONS = ("tanh", "relu", "gelu", "selu", "sigmoid")


def spec(args: argparse.Namespace, dataset: str) -> dict:
    """The benchmark's grid as a sweep spec (``initlab.sweep.parse_spec``): depth x activation x
    init, one cell per seed."""
    fixed = {"model": "mlp", "dataset": dataset, "width": args.width, "optimizer": "sgd", "lr": args.lr,
             "momentum": 0.9, "batch_size": args.batch, "epochs": args.epochs, "eval_every": args.eval_every,
             "eval_size": 2000, "target": 0.8}
    if args.train_limit:
        fixed["train_limit"] = args.train_limit
    return {"sweep": {"experiment": "train", "seeds": list(args.seeds), "threads": args.threads},
            "fixed": fixed, "grid": {"depth": list(args.depths), "activation": list(args.activations),
                                     "init": list(args.inits)}}


def run_grid(args: argparse.Namespace, dataset: str) -> list[dict]:
    """Every run of the grid through the sweep engine; one row per run (the old output's fields)."""
    from initlab import sweep

    the_spec = sweep.parse_spec(spec(args, dataset))
    runner = "ray" if args.ray or args.address else "serial"
    if args.store:
        result = sweep.run(the_spec, out=args.store, runner=runner, address=args.address, cpus=args.cpus,
                           progress=not args.no_progress, notify=lambda line: print(line, file=sys.stderr))
        records = sweep.SweepStore.open(args.store).records()
        for f in result.failures:
            print(f"failed: {f.params}: {f.error}", file=sys.stderr)
    else:
        cells = sweep.expand(the_spec)
        per_cell = sweep.map_cells(run_train, [c.config for c in cells], runner=runner, address=args.address,
                                   cpus=args.cpus, progress=not args.no_progress, desc="runs")
        records = [r for rows in per_cell for r in rows]
    return rows_of(records, args.activations, args.inits)


def rows_of(records: list[dict], activations: list[str], inits: list[str]) -> list[dict]:
    """The train records as one row per run: ``depth, activation, init, seed, steps_to_80, final_acc,
    steps, time_s, diverged``, in the order seed, depth, activation, init (as given)."""
    runs: dict[tuple, dict] = {}
    names = {"steps_to_target": "steps_to_80", "final_accuracy": "final_acc", "steps": "steps",
             "seconds": "time_s", "diverged": "diverged"}
    for r in records:
        if r["stat"] in names:
            key = (r["seed"], r["depth"], r["activation"], r["scheme"])
            row = runs.setdefault(key, {"depth": r["depth"], "activation": r["activation"],
                                        "init": r["scheme"]})
            value = r["value"]
            if r["stat"] in ("steps_to_target", "steps") and value is not None:
                value = int(value)
            row[names[r["stat"]]] = bool(value) if r["stat"] == "diverged" else value
            row["seed"] = r["seed"]
    order = sorted(runs, key=lambda k: (k[0], k[1], activations.index(k[2]), inits.index(k[3])))
    return [runs[k] for k in order]


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
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads per run (default 1)")
    p.add_argument("--ray", action="store_true", help="run on Ray on this machine's cores")
    p.add_argument("--address", default=None, help="run on the Ray cluster at this address")
    p.add_argument("--cpus", type=int, default=None, help="with --ray: CPUs of the local Ray")
    p.add_argument("--store", default=None, help="keep finished runs in this sweep directory (resumable)")
    args = p.parse_args(argv)
    if args.threads < 1:
        p.error(f"--threads {args.threads}: pass 1 or more")
    torch.set_num_threads(args.threads)  # this process; every run sets its own (TrainConfig.threads)
    if args.depths is None:
        args.depths = [10] if args.quick else [10, 30, 50]
    if args.epochs is None:
        args.epochs = 1 if args.quick else 3
    if args.quick and args.train_limit is None:
        args.train_limit = 20000
    dataset = args.dataset
    try:
        ds = classification_dataset(dataset, None, 0)
    except DataError as exc:
        print(f"{dataset} unavailable ({exc}); using mnist5k", file=sys.stderr)
        dataset = "mnist5k"
        ds = classification_dataset(dataset, None, 0)
    print(f"data: {ds.name} train {tuple(ds.x_train.shape)} test {tuple(ds.x_test.shape)}; width "
          f"{args.width}, SGD(lr={args.lr}, momentum=0.9), batch {args.batch}, {args.epochs} epoch(s)"
          + (f" on the first {args.train_limit} examples" if args.train_limit else "")
          + f", seeds {args.seeds}, torch threads {args.threads}")
    try:
        TrainConfig(dataset=dataset, width=args.width, lr=args.lr, batch_size=args.batch)  # bad values: here
        records = run_grid(args, dataset)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

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
