"""Time to accuracy across architectures: ``init_model(..., "auto")`` against each family's usual
initializations, on real data.

Every run (family, depth, variant, start, seed) is one cell of ``initlab sweep``'s ``train``
experiment (:class:`initlab.experiments.train.TrainConfig`, :func:`~initlab.experiments.train.run_train`:
the model built after ``torch.manual_seed(seed)``, the start drawn from
``torch.Generator().manual_seed(seed)``, the batches from another generator of the same seed, so
every start of a task sees the same data order), and the grid runs through the sweep engine
(:mod:`initlab.sweep`): here, one run after the other, by default; ``--ray`` on this machine's cores
(``--cpus N``), ``--address ADDR`` on a Ray cluster (the numbers do not depend on where a run ran);
``--store DIR`` keeps every finished run in a sweep store, so the same command started again skips
the finished runs and resumes where it stopped (``initlab sweep show DIR`` lists them). The
families, as cells (starts: :mod:`initlab.experiments.starts`; models:
:mod:`initlab.experiments.families`):

* ``cnn`` — model ``cnn`` (``zoo.plain_cnn``: width 32 channels, no normalization, no residual),
  depths 8 / 32 / 64 / 128, activation ``relu`` and ``tanh`` (the variants); Fashion-MNIST
  (Debian's ``dataset-fashion-mnist``; mnist5k when absent) as 1x28x28 standardised images; SGD,
  momentum 0.9, lr 0.005 up to depth 32 (at 0.02 every start, "auto" included, dies within ~20
  steps at depth 32: the loss pins at ln 10), then ``0.005 * 32 / depth`` (0.0025 at 64, 0.00125 at
  128), the same for every start: at a critical start every layer of a plain chain adds the same
  amount to the neural tangent kernel, so one SGD step moves the function ~depth times as far
  (CNN-128 under auto at 0.005 rose to 0.58 by step 140 and crashed to 0.28 by step 180; at 0.00125
  it reached 75 % at steps 320 / 300 / 340 and ended at 0.773 / 0.801 / 0.785, seeds 0-2: the
  CNN-8's median is 0.779), batch 128, 500 steps. Starts:
  ``torch_default`` (as constructed), ``he_fan_out`` (torchvision's
  ``kaiming_normal_(mode="fan_out")``), ``lsuv`` (on 512 training images), ``delta_orthogonal``
  (at the activation's critical ``sigma_w``), ``auto``.
* ``resnet`` — model ``resnet`` (``zoo.cifar_resnet``, width 16) with ``norm = false`` (variant
  ``nonorm``), depths 20 / 56 / 110, on the same images; SGD, momentum 0.9, lr 0.05, batch 128, 500
  steps. Starts: ``torch_default``, ``he_fan_out``, ``fixup`` (Fixup's scalars added, then
  ``init_model(model, "fixup")``), ``skipinit`` (the gates, then ``init_model(model,
  "skipinit")``), ``auto``; and the reference ``bn_he``: the same ResNet with BatchNorm (``norm =
  true``) under ``he_fan_out`` (torchvision's), shown but never the "best peer".
* ``gpt`` — model ``gpt`` (``zoo.char_gpt``: width 128, 4 heads, context 128) on data set
  ``stdlib``, the CPython standard library's own source (bytes as tokens, 4 MB train and 400 kB
  validation, split by file); variants ``pre`` (pre-LN, the default norm) and ``none`` (``norm =
  false``: no LayerNorm), depths 6 / 12 / 24; AdamW, lr 3e-3 with no warmup and no clipping, weight
  decay 0.01, batch 32 x 128 bytes, 600 steps. Starts: ``torch_default``, ``gpt2``, ``t_fixup``,
  ``deepnorm`` (``init_model(model, name)``), ``auto``.

A run that raises (a start or transform that does not fit the model, a failure while training) is
retried once by the engine, then recorded as ``error: <message>``, and the benchmark goes on. A
loss that turns non-finite stops the run (``diverged``; final ``nan``).

Measured: ``steps`` — the first step at which the metric on a fixed evaluation set reaches the
target (checked every ``--eval-every`` steps, so a multiple of it; ``-`` never): accuracy on the
first 2,000 test images >= 75 % (cnn: its global-average-pooled 32-channel head learns slowly; the
CNN-8 is at 0.69-0.78 after 300 steps) or >= 80 % (resnet: the BatchNorm ResNet-20 gets there in
~150 steps), or validation bits per byte (cross-entropy / ln 2) <= 3.0 on 32 fixed 128-byte
windows (gpt; the byte bigram model scores 3.84; the pre-LN GPT-6 gets there in 400-500 steps);
``final`` — the metric after the step budget on the whole test set or on 256 validation windows
(``--quick``: the images' on the evaluation set; the GPT's still on its 256 windows); ``time`` —
wall seconds of the cell. Per task, the medians over seeds (never reached, or diverged = infinitely
many steps; a diverged final is the worst value) and ``auto / best peer``: auto's steps over the
fewest of any peer (< 1: auto is faster). Then the benchmark's goals as PASS / FAIL / SKIP lines: auto
reaches the target on every task; auto is never slower than the best peer; the no-norm ResNet-56
under auto within 1 point of the BatchNorm ResNet-56's final accuracy; the plain CNN-128 under auto
within 2 points of the CNN-8. ``--json PATH`` writes every run as a tidy record (family, depth,
variant, init, seed, lr, metric, target, steps_to_target, final, steps, diverged, time_s, error).

Cost on 1 core (a shared 2-core box), seconds per training step: CNN-8 0.12, CNN-128 0.48;
ResNet-20 0.35, ResNet-110 1.6; GPT-6 0.5, GPT-24 2.0 (pre-LN and no-LN alike). One default run:
~1 min (CNN-8) to ~4 min (CNN-128), ~3 to ~14 min (ResNets), ~5 to ~20 min (GPTs). ``--quick``
(smallest depth, first variant, 100 / 30 / 30 steps) takes ~70 s for cnn, ~85 s for resnet, ~85 s
for gpt, ~13-16 s a run. The full run (every depth, variant and start, 3 seeds) is about 5 h for
cnn, 7 h for resnet and 18 h for gpt on one core: run it with ``--store DIR`` (resumable), on Ray
(``--ray``) where there are cores to spare, or one family, depth or seed per call, each with its
own ``--json``.

Usage::

    python benchmarks/time_to_accuracy_arch.py --family cnn --depths 8 128 --seeds 0 1 2
    python benchmarks/time_to_accuracy_arch.py --quick --family all   # smallest depths, few steps
    python benchmarks/time_to_accuracy_arch.py --family resnet --ray --store arch-runs   # resumable

``--threads N`` sets torch's threads per run (default 1); the steps, not only the times, depend on it.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import math
import os
import statistics
import sys
from dataclasses import dataclass
from typing import Any

import torch

from initlab.errors import DataError, InitlabError
from initlab.records import records_to_json, write_text_atomic

# ---- families -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    """One family of tasks: its depths, variants, starts, references (shown, never the best peer),
    target, optimiser settings and the :class:`~initlab.experiments.train.TrainConfig` fields
    (``fixed``) every one of its cells shares."""

    name: str
    depths: tuple[int, ...]
    variants: tuple[str, ...]
    starts: tuple[str, ...]
    references: tuple[str, ...]
    target: float
    higher_is_better: bool
    metric: str
    lr: float
    batch: int
    steps: int
    eval_every: int
    quick_steps: int
    fixed: dict[str, Any]
    lr_depth: int | None = None  # beyond this depth the lr shrinks as lr_depth / depth (see lr_at)

    def lr_at(self, lr: float, depth: int) -> float:
        """The learning rate of a depth-``depth`` run of base rate ``lr``: ``lr`` up to
        :attr:`lr_depth`, then ``lr * lr_depth / depth``; the same for every start of a task."""
        if self.lr_depth is None or depth <= self.lr_depth:
            return lr
        return lr * self.lr_depth / depth


_SGD = {"optimizer": "sgd", "momentum": 0.9, "weight_decay": 0.0}

#: The images of the cnn and resnet families (mnist5k when its Debian package is absent).
DEFAULT_DATASET = "fashion-mnist"

FAMILIES: dict[str, Family] = {
    "cnn": Family("cnn", (8, 32, 64, 128), ("relu", "tanh"),
                  ("torch_default", "he_fan_out", "lsuv", "delta_orthogonal", "auto"), (),
                  0.75, True, "accuracy", 0.005, 128, 500, 20, 100, {"model": "cnn", "width": 32, **_SGD},
                  lr_depth=32),
    "resnet": Family("resnet", (20, 56, 110), ("nonorm",),
                     ("torch_default", "he_fan_out", "fixup", "skipinit", "auto"), ("bn_he",),
                     0.80, True, "accuracy", 0.05, 128, 500, 20, 30,
                     {"model": "resnet", "width": 16, **_SGD}),
    "gpt": Family("gpt", (6, 12, 24), ("pre", "none"),
                  ("torch_default", "gpt2", "t_fixup", "deepnorm", "auto"), (),
                  3.0, False, "bits/byte", 3e-3, 32, 600, 25, 30,
                  {"model": "gpt", "dataset": "stdlib", "width": 128, "activation": "gelu",
                   "optimizer": "adamw", "weight_decay": 0.01}),
}

#: Each variant's TrainConfig fields (a cnn variant is its activation).
VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "resnet": {"nonorm": {"norm": False}},
    "gpt": {"pre": {}, "none": {"norm": False}},
}

#: The references' TrainConfig fields, over their variant's: ``bn_he`` is torchvision's ResNet.
REFERENCES: dict[str, dict[str, Any]] = {"bn_he": {"norm": True, "init": "he_fan_out"}}

AXES = ("family", "depth", "variant", "init", "seed")
IMAGE_EVAL = 2000  # test images scored every eval_every steps


def variant_fields(fam: Family, variant: str) -> dict[str, Any]:
    """The TrainConfig fields of ``variant`` of ``fam``.

    Raises:
        InitlabError: a variant the family does not have (the message lists them).
    """
    if fam.name == "cnn":
        return {"activation": variant}
    try:
        return VARIANTS[fam.name][variant]
    except KeyError:
        raise InitlabError(f"variant {variant!r} of {fam.name}: use some of "
                           f"{', '.join(VARIANTS[fam.name])}") from None


# ---- the grid as cells ----------------------------------------------------------------------------


def family_parts(fam: Family, settings: argparse.Namespace, depths: list[int], variants: list[str],
                 inits: list[str], dataset: str) -> list[tuple[str, dict, dict, dict]]:
    """The family's grid as sweep parts ``(name, fixed, grid, labels)``: per variant, the peers'
    ``depth x init`` and each reference's ``depth``; ``labels`` are the cells' ``variant`` (and a
    reference's ``init``)."""
    common = {"batch_size": settings.batch, "steps": settings.steps,
              "eval_every": settings.eval_every, "target": settings.target}
    if fam.name != "gpt":
        common.update(dataset=dataset, eval_size=IMAGE_EVAL)
        if settings.quick:
            common["final_size"] = IMAGE_EVAL
    by_lr: dict[float, list[int]] = {}  # the depths that share a learning rate (Family.lr_at)
    for d in depths:
        by_lr.setdefault(fam.lr_at(settings.lr, d), []).append(d)
    parts = []
    for v in variants:
        for lr, ds in by_lr.items():
            base = {**fam.fixed, **variant_fields(fam, v), **common, "lr": lr}
            name = f"{fam.name}.{v}" + ("" if len(by_lr) == 1 else f".lr{lr:g}")
            peers = [i for i in inits if i not in fam.references]
            if peers:
                parts.append((name, base, {"depth": ds, "init": peers}, {"variant": v}))
            for ref in (i for i in inits if i in fam.references):
                parts.append((f"{name}.{ref}", {**base, **REFERENCES[ref]}, {"depth": ds},
                              {"variant": v, "init": ref}))
    return parts


def part_cells(family: str, fixed: dict, grid: dict, labels: dict, seeds: list[int], threads: int) -> list:
    """The cells of one part (:func:`initlab.sweep.expand` of its spec), their params relabelled
    ``family, depth, variant, init, seed`` (the key is the config's, unchanged)."""
    from initlab import sweep

    spec = sweep.parse_spec({"sweep": {"experiment": "train", "seeds": seeds, "threads": threads},
                             "fixed": fixed, "grid": grid})
    cells = []
    for c in sweep.expand(spec):
        params = {"family": family, "depth": c.params["depth"], "variant": labels["variant"],
                  "init": labels.get("init", c.params.get("init")), "seed": c.params["seed"]}
        cells.append(dataclasses.replace(c, params=params))
    return cells


def manifest(cells: list, spec_parts: dict[str, dict], seeds: list[int], threads: int) -> dict[str, Any]:
    """The store's manifest (:mod:`initlab.sweep.store`) of the benchmark's cells: its identity is
    the cells' keys, its ``spec`` the parts (fixed settings and grid lists) by name."""
    from initlab import __version__
    from initlab.sweep import spec_hash
    from initlab.sweep.grid import code_versions
    from initlab.sweep.store import SCHEMA, SCHEMA_VERSION

    sweep_table = {"experiment": "train", "name": "time_to_accuracy_arch", "seeds": seeds, "threads": threads}
    return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "spec_hash": spec_hash(cells),
            "experiment": "train", "name": "time_to_accuracy_arch", "axes": list(AXES), "n_cells": len(cells),
            "initlab_version": __version__, "versions": code_versions(),
            "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "spec": {"sweep": sweep_table, **spec_parts}}


# ---- running --------------------------------------------------------------------------------------

_STATS = {"steps_to_target": "steps_to_target", "final_accuracy": "final", "final_bits_per_byte": "final",
          "steps": "steps", "diverged": "diverged", "seconds": "time_s"}


def run_row(cell: Any, records: list[dict] | None, error: str | None) -> dict:
    """One run as the benchmark's record, from its cell's ``train`` records (or its ``error``)."""
    p = cell.params
    fam = FAMILIES[p["family"]]
    row = {**{k: p[k] for k in AXES}, "lr": cell.config.lr, "metric": fam.metric,
           "target": cell.config.target, "steps_to_target": None, "final": None, "steps": 0,
           "diverged": False, "time_s": 0.0, "error": error}
    for r in records or []:
        if r["stat"] in _STATS:
            row[_STATS[r["stat"]]] = r["value"]
    if row["steps_to_target"] is not None:
        row["steps_to_target"] = int(row["steps_to_target"])
    row["steps"], row["diverged"] = int(row["steps"]), bool(row["diverged"])
    return row


def where(args: argparse.Namespace) -> str:
    """The runner the options ask for (``serial`` or ``ray``), checked before anything runs.

    Raises:
        InitlabError: ``--cpus`` without Ray, with ``--address``; Ray not installed.
    """
    from initlab.sweep.engine import check_runner

    runner = "ray" if args.ray or args.address else "serial"
    if args.cpus is not None and runner == "serial":
        raise InitlabError(f"--cpus {args.cpus} caps a local Ray: add --ray")
    check_runner(runner, address=args.address, cpus=args.cpus)
    return runner


def run_cells(cells: list, args: argparse.Namespace, parts: dict[str, dict]) -> list[dict]:
    """Every cell through the sweep engine (skipping those ``--store`` holds); one row per cell."""
    from initlab import sweep
    from initlab.experiments.train import run_train

    runner = where(args)
    store = None
    if args.store:
        try:
            store = sweep.SweepStore.create(args.store, manifest(cells, parts, args.seeds, args.threads))
        except InitlabError as exc:  # the store's advice names initlab sweep's option
            raise InitlabError(str(exc).replace("--out", "--store")) from None
    try:
        made = sweep.make_runner(runner, address=args.address, cpus=args.cpus)
        result = sweep.drive(run_train, cells, made, store=store, progress=not args.no_progress, desc="runs",
                             notify=lambda line: print(line, file=sys.stderr, flush=True))
        if store is not None:
            by_key: dict[str, list[dict]] = {}
            for r in store.records():
                by_key.setdefault(r["cell"], []).append(r)
        else:
            by_key = result.records
    finally:
        if store is not None:
            store.close()
    errors = {f.key: f.error for f in result.failures}
    if store is not None:
        print(result.summary(), file=sys.stderr)
    return [run_row(c, by_key.get(c.key), errors.get(c.key, None if c.key in by_key else "not run"))
            for c in cells]


# ---- summary (pure helpers) -----------------------------------------------------------------------


def median_steps(values: list[int | None]) -> float:
    """Median of steps to target, ``None`` (never reached) counted as ``inf``; ``nan`` if empty."""
    if not values:
        return math.nan
    return statistics.median(math.inf if v is None else v for v in values)


def median_final(values: list[float | None], higher_is_better: bool) -> float:
    """Median final metric; a diverged run (``nan``) counts as the worst value (``-inf`` / ``inf``)."""
    if not values:
        return math.nan
    worst = -math.inf if higher_is_better else math.inf
    return statistics.median(worst if v is None or math.isnan(v) else v for v in values)


def best_peer(steps: dict[str, float], exclude: tuple[str, ...] = ("auto",)) -> tuple[float, str] | None:
    """The peer with the fewest (finite) median steps, as ``(steps, name)``; ``None`` if none reached."""
    peers = [(v, k) for k, v in steps.items() if k not in exclude and math.isfinite(v)]
    return min(peers) if peers else None


def ratio(auto: float, best: float | None) -> str:
    """``auto / best`` as text: ``0.67``; ``inf`` (auto never reached, a peer did); ``only auto``;
    ``-`` (nobody reached, or auto failed)."""
    if best is None or math.isnan(auto):
        return "only auto" if math.isfinite(auto) and best is None else "-"
    return "inf" if auto == math.inf else f"{auto / best:.2f}"


def fmt(value: float, digits: int = 0) -> str:
    """A median for a table: ``-`` never / diverged (``inf``), ``err`` (no run, ``nan``)."""
    if value is None or math.isnan(value):
        return "err"
    if math.isinf(value):
        return "-"
    return f"{value:.{digits}f}" if digits else f"{value:g}"


def format_table(header: list[str], rows: list[list[str]], left: tuple[int, ...] = ()) -> str:
    """Rows as aligned text: the columns whose index is in ``left`` left-aligned, the rest right."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) if i in left else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()
                     for r in [header, *rows])


def _runs(records: list[dict], fam: str, depth: int, variant: str, init: str) -> list[dict]:
    key = (fam, depth, variant, init)
    return [r for r in records
            if (r["family"], r["depth"], r["variant"], r["init"]) == key and r["error"] is None]


def task_medians(records: list[dict], fam: Family, depth: int, variant: str,
                 inits: list[str]) -> tuple[dict[str, float], dict[str, float]]:
    """Per init: median steps to target and median final metric (``nan``: every run failed)."""
    steps, finals = {}, {}
    for init in inits:
        runs = _runs(records, fam.name, depth, variant, init)
        steps[init] = median_steps([r["steps_to_target"] for r in runs])
        finals[init] = median_final([r["final"] for r in runs], fam.higher_is_better)
    return steps, finals


def family_tables(records: list[dict], fam: Family, depths: list[int], variants: list[str],
                  inits: list[str]) -> str:
    """The steps table (with best peer and ``auto / best peer``) and the final-metric table."""
    head = ["depth", "variant", *inits]
    srows, frows = [], []
    for d in depths:
        for v in variants:
            steps, finals = task_medians(records, fam, d, v, inits)
            best = best_peer(steps, ("auto", *fam.references))
            auto = steps.get("auto", math.nan)
            srows.append([str(d), v, *(fmt(steps[i]) for i in inits),
                          f"{best[0]:g} ({best[1]})" if best else "-", ratio(auto, best and best[0])])
            frows.append([str(d), v, *(fmt(finals[i], 4 if fam.higher_is_better else 3) for i in inits)])
    cmp = "accuracy >=" if fam.higher_is_better else "bits/byte <="
    return (f"{fam.name}: median steps to {cmp} {records[0]['target'] if records else fam.target:g}"
            f" (- never, err: the start failed)\n"
            + format_table(head + ["best peer", "auto/best"], srows, (1,))
            + f"\n{fam.name}: median final {fam.metric}\n" + format_table(head, frows, (1,)))


def _goal(ok: bool | None, text: str) -> str:
    return f"{'SKIP' if ok is None else 'PASS' if ok else 'FAIL'}  {text}"


def goal_lines(records: list[dict], fam: Family, depths: list[int], variants: list[str]) -> list[str]:
    """The benchmark's goals for one family, as ``PASS`` / ``FAIL`` / ``SKIP`` lines with the numbers."""
    inits = sorted({r["init"] for r in records if r["family"] == fam.name})
    missed, slower, compared, lines = [], [], 0, []
    for d in depths:
        for v in variants:
            steps, _ = task_medians(records, fam, d, v, inits)
            auto, best = steps.get("auto", math.nan), best_peer(steps, ("auto", *fam.references))
            if not math.isfinite(auto):
                missed.append(f"{d}/{v}")
            compared += bool(best)
            if best and not auto <= best[0]:
                slower.append(f"{d}/{v} {ratio(auto, best[0])}")
    lines.append(_goal(not missed, f"{fam.name}: auto reaches the target on every task"
                       + (f" (missed: {', '.join(missed)})" if missed else "")))
    lines.append(_goal(not slower if compared else None, f"{fam.name}: auto never slower than the best peer"
                       + (f" (auto/best: {', '.join(slower)})" if slower else "")
                       + ("" if compared else " (no peer reached the target)")))
    if fam.name == "resnet":
        lines.append(_finals_goal(records, fam, (56, "nonorm", "auto"), (56, "nonorm", "bn_he"), 0.01,
                                  "no-norm ResNet-56 under auto vs BatchNorm ResNet-56 (bn_he)"))
    if fam.name == "cnn":
        lines += [_finals_goal(records, fam, (128, v, "auto"), (8, v, "auto"), 0.02,
                               f"plain CNN-128 vs CNN-8 under auto, {v}") for v in variants]
    return lines


def _finals_goal(records: list[dict], fam: Family, got: tuple, ref: tuple, tol: float, text: str) -> str:
    """``got``'s median final accuracy at least ``ref``'s minus ``tol``; SKIP if either did not run."""
    a = median_final([r["final"] for r in _runs(records, fam.name, *got)], True)
    b = median_final([r["final"] for r in _runs(records, fam.name, *ref)], True)
    if math.isnan(a) or math.isnan(b):
        need = f"depth {got[0]}" if got[0] == ref[0] else f"depths {ref[0]} and {got[0]}"
        starts = got[2] if got[2] == ref[2] else f"{got[2]} and {ref[2]}"
        return _goal(None, f"{text}: needs {need} with {starts}")
    return _goal(a >= b - tol, f"{text}: {a:.4f} vs {b:.4f} (allowed {100 * tol:g} point(s) below)")


# ---- main -----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--family", choices=[*FAMILIES, "all"], default="all")
    p.add_argument("--quick", action="store_true",
                   help="smallest depth, first variant, few steps, final accuracy on the evaluation set")
    p.add_argument("--depths", type=int, nargs="+", default=None, help="default: the family's")
    p.add_argument("--activations", nargs="+", default=None, help="cnn: relu tanh")
    p.add_argument("--ln", nargs="+", default=None, help="gpt: pre none")
    p.add_argument("--inits", nargs="+", default=None,
                   help="default: every start of the family (and resnet's reference bn_he)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per seed; medians compared")
    p.add_argument("--steps", type=int, default=None, help="step budget (cnn/resnet: 500, gpt: 600)")
    p.add_argument("--eval-every", type=int, default=None, help="cnn/resnet: 20, gpt: 25")
    p.add_argument("--target", type=float, default=None,
                   help="cnn: 0.75, resnet: 0.80 accuracy; gpt: 3.0 bits/byte")
    p.add_argument("--lr", type=float, default=None,
                   help="cnn: 0.005 up to depth 32, then x 32/depth; resnet: 0.05 (SGD), gpt: 3e-3 (AdamW)")
    p.add_argument("--batch", type=int, default=None, help="cnn/resnet: 128 images, gpt: 32 x 128 bytes")
    p.add_argument("--dataset", default=DEFAULT_DATASET,
                   help=f"images for cnn and resnet (default: {DEFAULT_DATASET}; mnist5k when Debian's "
                        "dataset-fashion-mnist package is absent)")
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
    if args.cpus is not None and args.cpus < 1:
        p.error(f"--cpus {args.cpus}: pass 1 or more (leave it out for every core)")
    if args.json and not os.path.isdir(os.path.dirname(os.path.abspath(args.json))):
        p.error(f"--json {args.json}: its directory does not exist; create it first")
    return args


def _unique(values: list) -> list:
    return list(dict.fromkeys(values))


def family_plan(fam: Family, args: argparse.Namespace) -> tuple[argparse.Namespace, list[int], list[str],
                                                                 list[str]]:
    """This family's settings (options given, else the family's defaults), depths, variants, inits."""
    from initlab.experiments.starts import start_names

    picked = {"cnn": args.activations, "gpt": args.ln}.get(fam.name)
    variants = _unique(picked or (fam.variants[:1] if args.quick else fam.variants))
    depths = _unique(args.depths or (fam.depths[:1] if args.quick else fam.depths))
    inits = _unique(args.inits or (*fam.starts, *fam.references))
    known = (*start_names(), *fam.references)
    unknown = [i for i in inits if i not in known]
    if unknown:
        raise InitlabError(f"--inits {' '.join(unknown)}: unknown for {fam.name}; use some of "
                           f"{', '.join(known)}")
    defaults = {"steps": fam.quick_steps if args.quick else fam.steps, "eval_every": fam.eval_every,
                "target": fam.target, "lr": fam.lr, "batch": fam.batch}
    settings = argparse.Namespace(**{k: default if getattr(args, k) is None else getattr(args, k)
                                     for k, default in defaults.items()})
    settings.quick = args.quick
    return settings, depths, variants, inits


def check_models(cells: list) -> None:
    """Build each (family, depth, variant) model once, so a bad depth or variant stops here, not
    once per run (:func:`initlab.experiments.families.build_model`)."""
    from initlab.experiments.families import ModelArgs, build_model
    from initlab.experiments.train_data import classification_dataset

    seen = set()
    for c in cells:
        cfg, what = c.config, (c.params["family"], c.params["depth"], c.params["variant"])
        if what in seen:
            continue
        seen.add(what)
        if cfg.model == "gpt":
            dims = (128, 256)
        else:
            ds = classification_dataset(cfg.dataset, cfg.data_dir, cfg.data_seed)
            dims = (int(ds.n_features), int(ds.n_classes))
        with torch.random.fork_rng():
            build_model(cfg.model, ModelArgs(cfg.depth, cfg.width, cfg.activation, cfg.norm, *dims))


def image_dataset(name: str) -> str:
    """``name`` if it loads; the default ``fashion-mnist`` falls back to ``mnist5k`` when absent
    (said on stderr).

    Raises:
        InitlabError: another name that does not load.
    """
    from initlab.experiments.train_data import classification_dataset

    try:
        classification_dataset(name, None, 0)
    except DataError as exc:
        if name != DEFAULT_DATASET:
            raise InitlabError(f"--dataset {name}: {exc}") from None
        print(f"{name} unavailable ({exc}); using mnist5k", file=sys.stderr)
        return "mnist5k"
    return name


def plan(args: argparse.Namespace, families: list[str]) -> tuple[list, dict[str, dict], list[tuple]]:
    """Every cell of the families asked for, the sweep parts by name, and per family what its
    tables show ``(family, settings, depths, variants, inits)``."""
    cells, parts, shown = [], {}, []
    dataset = image_dataset(args.dataset) if set(families) - {"gpt"} else args.dataset
    for name in families:
        fam = FAMILIES[name]
        settings, depths, variants, inits = family_plan(fam, args)
        shown.append((fam, settings, depths, variants, inits))
        for part, fixed, grid, labels in family_parts(fam, settings, depths, variants, inits, dataset):
            cells += part_cells(name, fixed, grid, labels, args.seeds, args.threads)
            parts[part] = {**fixed, **grid}
        lrs = ", ".join(f"{fam.lr_at(settings.lr, d):g} at depth {d}" for d in depths)
        print(f"\n== {fam.name}: depths {depths}, variants {variants}, seeds {args.seeds}, {settings.steps} "
              f"steps, batch {settings.batch}, lr {lrs}, target {fam.metric} "
              f"{'>=' if fam.higher_is_better else '<='} {settings.target:g}"
              + ("" if name == "gpt" else f", data {dataset}"), flush=True)
    cells = list({c.key: c for c in cells}.values())
    check_models(cells)
    return cells, parts, shown


def print_runs(rows: list[dict], shown: list[tuple]) -> None:
    """One line per run, in the order family, seed, depth, variant, init."""
    order = {(fam.name, v, i): (n, variants.index(v), inits.index(i))
             for n, (fam, _, _, variants, inits) in enumerate(shown) for v in variants for i in inits}

    def position(r: dict) -> tuple:
        n, v, i = order[r["family"], r["variant"], r["init"]]
        return n, r["seed"], r["depth"], v, i

    for r in sorted(rows, key=position):
        print(f"{r['family']} depth {r['depth']} {r['variant']} {r['init']} seed {r['seed']}: " + (
            f"error: {r['error']}" if r["error"] else
            f"steps {fmt(median_steps([r['steps_to_target']]))}, final {r['final']:.4f}, "
            f"{r['time_s']:.1f} s"), flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.seeds = _unique(args.seeds)
    torch.set_num_threads(args.threads)  # this process; every run sets its own (TrainConfig.threads)
    print(f"torch {torch.__version__}, threads {args.threads}")
    families = list(FAMILIES) if args.family == "all" else [args.family]
    try:
        where(args)
        cells, parts, shown = plan(args, families)
        rows = run_cells(cells, args, parts)
    except (InitlabError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # the store keeps the finished runs: the same command resumes
        return 130
    print()
    print_runs(rows, shown)
    quick_note = ["SKIP  the benchmark's goals: --quick runs too few steps to reach the targets; run without "
                  "--quick to judge them"]
    report = ["\n".join([family_tables([r for r in rows if r["family"] == fam.name], fam, depths, variants,
                                       inits),
                         *(quick_note if args.quick else goal_lines(rows, fam, depths, variants))])
              for fam, _, depths, variants, inits in shown]
    print("\n\n" + "\n\n".join(report))
    if args.json:  # non-finite numbers become null
        write_text_atomic(args.json, records_to_json(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
