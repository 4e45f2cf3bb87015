"""Time to accuracy across architectures: ``init_model(..., "auto")`` against each family's usual
initializations, on real data (issue 13).

Families (models from :mod:`initlab.zoo`), each task run with every start one after the other in
one process, the same seed for all of them (same data order; ``torch.manual_seed(seed)`` before the
model is built, ``torch.Generator().manual_seed(seed)`` for the init):

* ``cnn`` — ``zoo.plain_cnn``: 32 channels, no normalization, no residual, depths 8 / 32 / 64 /
  128, ReLU and tanh; Fashion-MNIST (Debian's ``dataset-fashion-mnist`` through
  ``initlab.data.load_dataset``; mnist5k when absent) as 1x28x28 standardised images; SGD,
  momentum 0.9, lr 0.005 (at 0.02 every start, "auto" included, dies within ~20 steps at depth 32:
  the loss pins at ln 10), batch 128, 500 steps. Starts: ``torch_default`` (as constructed),
  ``he_fan_out`` (``kaiming_normal_(mode="fan_out", nonlinearity="relu")``, zero biases, as
  torchvision), ``lsuv`` (``initlab.lsuv_`` on 512 training images), ``delta_orthogonal``
  (``initlab.init.delta_orthogonal_`` at the critical point, gain ``sigma_w`` of
  ``initlab.theory.critical_point(activation)``: ``sqrt(2)`` for ReLU, 1 for tanh; zero biases;
  head ``xavier_normal_``), ``auto`` (``init_model(model, "auto", generator=g)``, as every
  ``init_model`` start).
* ``resnet`` — ``zoo.cifar_resnet`` without normalization, depths 20 / 56 / 110, width 16, on the
  same images; SGD, momentum 0.9, lr 0.05, batch 128, 500 steps. Starts: ``torch_default``,
  ``he`` (He fan_out), ``fixup`` (``initlab.transforms.add_fixup_scalars(model, verbose=False)``
  then ``init_model(model, "fixup")``), ``skipinit`` (``add_skip_gates`` then
  ``init_model(model, "skipinit")``), ``auto``; and the reference ``bn_he``: the same ResNet with
  BatchNorm under He fan_out (torchvision's), shown but never the "best peer".
* ``gpt`` — ``zoo.char_gpt`` (width 128, 4 heads, context 128), pre-LN and no-LN, depths 6 / 12 /
  24, on the CPython standard library's own source (``initlab.corpus.stdlib_split``: bytes as
  tokens, 4 MB train and 400 kB validation, split by file); AdamW, lr 3e-3 with no warmup and no
  clipping, weight decay 0.01, batch 32 x 128 bytes, 600 steps. Starts: ``torch_default``,
  ``gpt2``, ``t_fixup``, ``deepnorm`` (``init_model(model, name)``), ``auto``.

A start that raises (a scheme or transform not written yet, a model it does not handle) is
recorded as ``error: <message>`` and the benchmark goes on; so is a run that fails while training.
A loss that turns non-finite stops the run (``diverged``; final ``nan``).

Measured: ``steps`` — the first step at which the metric on a fixed evaluation set reaches the
target (checked every ``--eval-every`` steps, so a multiple of it; ``-`` never): accuracy on a
fixed 2,000-image subset of the test set >= 75 % (cnn: its global-average-pooled 32-channel head
learns slowly; the CNN-8 is at 0.69-0.78 after 300 steps) or >= 80 % (resnet: the BatchNorm
ResNet-20 gets there in ~150 steps), or validation bits per byte (cross-entropy / ln 2) <= 3.0 on
32 fixed 128-byte windows (gpt; the byte bigram model scores 3.84; the pre-LN GPT-6 gets there in
400-500 steps); ``final`` — the metric after the step budget on the whole test set or on 256
validation windows (``--quick``: on the evaluation set); ``time`` — wall seconds. Per task, the
medians over seeds (never reached, or diverged = infinitely many steps; a diverged final is the
worst value) and ``auto / best peer``: auto's steps over the fewest of any peer (< 1: auto is
faster). Then the issue's goals as PASS / FAIL / SKIP lines: auto reaches the target on every
task; auto is never slower than the best peer; the no-norm ResNet-56 under auto within 1 point of
the BatchNorm ResNet-56's final accuracy; the plain CNN-128 under auto within 2 points of the
CNN-8. ``--json PATH`` writes every run as a tidy record (family, depth, variant, init, seed,
steps_to_target, final, steps, diverged, time_s, error).

Cost on 1 core (a shared 2-core box), seconds per training step: CNN-8 0.12, CNN-128 0.48;
ResNet-20 0.35, ResNet-110 1.6; GPT-6 0.5, GPT-24 2.0 (pre-LN and no-LN alike). One default run:
~1 min (CNN-8) to ~4 min (CNN-128), ~3 to ~14 min (ResNets), ~5 to ~20 min (GPTs). ``--quick``
(smallest depth, first variant, 100 / 30 / 30 steps) takes ~70 s for cnn, ~85 s for resnet, ~85 s
for gpt, ~13-16 s a run. The full run (every depth, variant and start, 3 seeds) is about 5 h for
cnn, 7 h for resnet and 18 h for gpt on one core: run one family, depth or seed per call, each
with its own ``--json``.

Usage::

    python benchmarks/time_to_accuracy_arch.py --family cnn --depths 8 128 --seeds 0 1 2
    python benchmarks/time_to_accuracy_arch.py --quick --family all   # smallest depths, few steps

``--threads N`` sets torch's threads (default 1); the steps, not only the times, depend on it.
"""

from __future__ import annotations

import argparse
import importlib
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from initlab import zoo
from initlab.errors import DataError, InitlabError
from initlab.experiments.common import check_ints
from initlab.records import records_to_json, write_text_atomic

# ---- families -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    """One family of tasks: its models, starts, optimiser settings and target."""

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


FAMILIES: dict[str, Family] = {
    "cnn": Family("cnn", (8, 32, 64, 128), ("relu", "tanh"),
                  ("torch_default", "he_fan_out", "lsuv", "delta_orthogonal", "auto"), (),
                  0.75, True, "accuracy", 0.005, 128, 500, 20, 100),
    "resnet": Family("resnet", (20, 56, 110), ("nonorm",),
                     ("torch_default", "he", "fixup", "skipinit", "auto"), ("bn_he",),
                     0.80, True, "accuracy", 0.05, 128, 500, 20, 30),
    "gpt": Family("gpt", (6, 12, 24), ("pre", "none"),
                  ("torch_default", "gpt2", "t_fixup", "deepnorm", "auto"), (),
                  3.0, False, "bits/byte", 3e-3, 32, 600, 25, 30),
}

CONTEXT = 128
EVAL_WINDOWS, FINAL_WINDOWS = 32, 256


def build_model(family: str, depth: int, variant: str, init: str) -> nn.Module:
    """The family's model (``bn_he`` gets the BatchNorm ResNet), built after the caller seeded torch."""
    if family == "cnn":
        return zoo.plain_cnn(depth, 32, variant, in_channels=1)
    if family == "resnet":
        return zoo.cifar_resnet(depth, norm=init == "bn_he", in_channels=1)
    return zoo.char_gpt(depth, context=CONTEXT, ln=variant)


# ---- starts ---------------------------------------------------------------------------------------


@dataclass
class StartContext:
    """What a start may use: the model, the init generator, the variant, 512 training inputs."""

    model: nn.Module
    gen: torch.Generator
    variant: str
    examples: torch.Tensor


def he_fan_out_(s: StartContext) -> None:
    """torchvision's init: convs ``kaiming_normal_(mode="fan_out")``, zero conv biases, norms 1/0."""
    for m in s.model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=s.gen)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def delta_orthogonal_start_(s: StartContext) -> None:
    """Delta-orthogonal convs at the critical ``sigma_w`` of the activation, zero biases, Glorot head."""
    from initlab.init import delta_orthogonal_
    from initlab.theory import critical_point

    sigma_w = math.sqrt(critical_point(s.variant).sigma_w2)
    for m in s.model.modules():
        if isinstance(m, nn.Conv2d):
            delta_orthogonal_(m.weight, gain=sigma_w, generator=s.gen)
        elif isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight, generator=s.gen)
        if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
            nn.init.zeros_(m.bias)


def _transform(name: str) -> Callable[..., object]:
    """``initlab.transforms.<name>`` (or ``initlab.model.transforms.<name>``)."""
    errors = []
    for module in ("initlab.transforms", "initlab.model.transforms"):
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as exc:
            errors.append(f"{module}: {exc}")
    raise ImportError(f"no transform {name}: " + "; ".join(errors))


def _scheme(name: str, transform: str | None = None) -> Callable[[StartContext], None]:
    def start(s: StartContext) -> None:
        from initlab import init_model

        if transform:
            _transform(transform)(s.model, verbose=False)
        init_model(s.model, name, generator=s.gen)

    return start


def auto_zero_ends_(s: StartContext) -> None:
    """``"auto"``, then every residual branch's last weighted layer zeroed (weight and bias; the
    branches from the graph, :func:`initlab.model.residual_family.residual_branches`): the rule
    Fixup and SkipInit share, tried as ``"auto"``'s residual rule against its branch scaling."""
    import re

    from initlab import init_model
    from initlab.graph import trace
    from initlab.model.residual_family import residual_branches

    br = residual_branches(s.model, trace(s.model, s.examples[:2]))
    ends = sorted({module for module, _ in br.ends})
    rules = [(rf"^{re.escape(m)}\.(weight|bias)$", "zeros") for m in ends]
    init_model(s.model, "auto", rules=rules, generator=s.gen)


def lsuv_start_(s: StartContext) -> None:
    from initlab.lsuv import lsuv_

    lsuv_(s.model, s.examples, generator=s.gen)


STARTS: dict[str, Callable[[StartContext], None]] = {
    "torch_default": lambda s: None,
    "he_fan_out": he_fan_out_,
    "he": he_fan_out_,
    "bn_he": he_fan_out_,
    "lsuv": lsuv_start_,
    "delta_orthogonal": delta_orthogonal_start_,
    "auto": _scheme("auto"),
    "auto_zero_ends": auto_zero_ends_,
    "fixup": _scheme("fixup", "add_fixup_scalars"),
    "skipinit": _scheme("skipinit", "add_skip_gates"),
    "gpt2": _scheme("gpt2"),
    "t_fixup": _scheme("t_fixup"),
    "deepnorm": _scheme("deepnorm"),
}


# ---- data -----------------------------------------------------------------------------------------


@dataclass
class Data:
    """Training data and the two evaluation sets of one family (images or byte windows)."""

    x_train: torch.Tensor
    y_train: torch.Tensor | None
    x_eval: torch.Tensor
    y_eval: torch.Tensor
    x_final: torch.Tensor
    y_final: torch.Tensor


def load_images(name: str = "fashion-mnist") -> Data:
    from initlab.data import load_dataset

    try:
        ds = load_dataset(name, seed=0)
    except DataError as exc:
        print(f"{name} unavailable ({exc}); using mnist5k", file=sys.stderr)
        ds = load_dataset("mnist5k", seed=0)
    img = (-1, 1, 28, 28)
    x_test = ds.x_test.reshape(img)
    return Data(ds.x_train.reshape(img), ds.y_train, x_test[:2000], ds.y_test[:2000], x_test, ds.y_test)


def _windows(data: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    n = min(n, (len(data) - 1) // CONTEXT)
    x = data[:n * CONTEXT].reshape(n, CONTEXT)
    return x, data[1:n * CONTEXT + 1].reshape(n, CONTEXT)


def load_text() -> Data:
    from initlab.corpus import stdlib_split

    train, valid = (torch.from_numpy(a).long() for a in stdlib_split(4_000_000, 400_000))
    return Data(train, None, *_windows(valid, EVAL_WINDOWS), *_windows(valid, FINAL_WINDOWS))


def batches(data: Data, batch: int, gen: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless training batches: shuffled epochs of images, or random byte windows."""
    if data.y_train is None:
        span = torch.arange(CONTEXT + 1)
        while True:
            idx = torch.randint(0, len(data.x_train) - CONTEXT - 1, (batch, 1), generator=gen) + span
            w = data.x_train[idx]
            yield w[:, :-1], w[:, 1:]
    while True:
        perm = torch.randperm(len(data.x_train), generator=gen)
        for i in range(0, len(perm) - batch + 1, batch):
            b = perm[i:i + batch]
            yield data.x_train[b], data.y_train[b]


# ---- training -------------------------------------------------------------------------------------


def loss_of(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits = model(x)
    return F.cross_entropy(logits.flatten(0, -2), y.flatten())


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, lm: bool, batch: int = 500) -> float:
    """Accuracy (classifier) or bits per byte (language model) on ``(x, y)``, in eval mode."""
    model.eval()
    total = 0.0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out = model(x[i:i + batch])
            if lm:
                total += F.cross_entropy(out.flatten(0, 1), y[i:i + batch].flatten(), reduction="sum").item()
            else:
                total += (out.argmax(1) == y[i:i + batch]).sum().item()
    model.train()
    return total / y.numel() / math.log(2) if lm else total / len(x)


def steps_to_target(history: list[tuple[int, float]], target: float, higher_is_better: bool) -> int | None:
    """The first step of ``history`` ``[(step, metric), ...]`` whose metric reaches ``target``."""
    for step, value in history:
        if (value >= target) if higher_is_better else (value <= target):
            return step
    return None


def train(model: nn.Module, data: Data, fam: Family, args, seed: int) -> dict:
    """Train for ``args.steps``; the steps to the target and the final metric."""
    lm = data.y_train is None
    if lm:
        opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    stream = batches(data, args.batch, torch.Generator().manual_seed(seed))
    history: list[tuple[int, float]] = []
    reached, step, diverged = None, 0, False
    for step in range(1, args.steps + 1):
        loss = loss_of(model, *next(stream))
        if not torch.isfinite(loss):
            diverged, step = True, step - 1
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if reached is None and step % args.eval_every == 0:
            history.append((step, evaluate(model, data.x_eval, data.y_eval, lm)))
            reached = steps_to_target(history, args.target, fam.higher_is_better)
    x, y = (data.x_eval, data.y_eval) if args.quick else (data.x_final, data.y_final)
    final = math.nan if diverged else evaluate(model, x, y, lm)
    return {"steps_to_target": reached, "final": final, "steps": step, "diverged": diverged}


def run_one(fam: Family, depth: int, variant: str, init: str, seed: int, data: Data, args) -> dict:
    """One start on one task: build, init (errors become the record's ``error``), train."""
    rec = {"family": fam.name, "depth": depth, "variant": variant, "init": init, "seed": seed,
           "metric": fam.metric, "target": args.target, "steps_to_target": None, "final": None,
           "steps": 0, "diverged": False, "time_s": 0.0, "error": None}
    t0 = time.perf_counter()
    try:
        torch.manual_seed(seed)  # torch_default draws from the global generator, as torch does
        model = build_model(fam.name, depth, variant, init)
        examples = next(batches(data, 512, torch.Generator().manual_seed(seed)))[0]
        STARTS[init](StartContext(model, torch.Generator().manual_seed(seed), variant, examples))
        rec.update(train(model, data, fam, args, seed))
    except Exception as exc:  # noqa: BLE001 - a failing start is a result, not a crash
        rec["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]
    rec["time_s"] = time.perf_counter() - t0
    return rec


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
    """The issue's goals for one family, as ``PASS`` / ``FAIL`` / ``SKIP`` lines with the numbers."""
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
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", choices=[*FAMILIES, "all"], default="all")
    p.add_argument("--quick", action="store_true",
                   help="smallest depth, first variant, few steps, final metric on the evaluation set")
    p.add_argument("--depths", type=int, nargs="+", default=None, help="default: the family's")
    p.add_argument("--activations", nargs="+", default=None, help="cnn: relu tanh")
    p.add_argument("--ln", nargs="+", default=None, help="gpt: pre none")
    p.add_argument("--inits", nargs="+", default=None, help="default: every start of the family")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per seed; medians compared")
    p.add_argument("--steps", type=int, default=None, help="step budget (cnn/resnet: 500, gpt: 600)")
    p.add_argument("--eval-every", type=int, default=None, help="cnn/resnet: 20, gpt: 25")
    p.add_argument("--target", type=float, default=None,
                   help="cnn: 0.75, resnet: 0.80 accuracy; gpt: 3.0 bits/byte")
    p.add_argument("--lr", type=float, default=None, help="cnn: 0.005, resnet: 0.05 (SGD), gpt: 3e-3 (AdamW)")
    p.add_argument("--batch", type=int, default=None, help="cnn/resnet: 128 images, gpt: 32 x 128 bytes")
    p.add_argument("--dataset", default="fashion-mnist", help="images for cnn and resnet")
    p.add_argument("--json", default=None, help="also write the records here")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    args = p.parse_args(argv)
    if args.threads < 1:
        p.error(f"--threads {args.threads}: pass 1 or more")
    return args


def family_plan(fam: Family, args) -> tuple[argparse.Namespace, list[int], list[str], list[str]]:
    """This family's settings (options given, else the family's defaults), depths, variants, inits."""
    picked = {"cnn": args.activations, "gpt": args.ln}.get(fam.name)
    variants = list(picked or (fam.variants[:1] if args.quick else fam.variants))
    depths = list(args.depths or (fam.depths[:1] if args.quick else fam.depths))
    inits = list(args.inits or (*fam.starts, *fam.references))
    unknown = [i for i in inits if i not in STARTS]
    if unknown:
        raise InitlabError(f"--inits {' '.join(unknown)}: unknown; use some of {', '.join(STARTS)}")
    defaults = {"steps": fam.quick_steps if args.quick else fam.steps, "eval_every": fam.eval_every,
                "target": fam.target, "lr": fam.lr, "batch": fam.batch}
    settings = argparse.Namespace(**{k: default if getattr(args, k) is None else getattr(args, k)
                                     for k, default in defaults.items()})
    settings.quick = args.quick
    check_ints(settings, ("steps", "eval_every", "batch"))
    for d in depths:  # a bad depth or variant stops here, not once per run
        for v in variants:
            build_model(fam.name, d, v, inits[0])
    return settings, depths, variants, inits


def run_family(fam: Family, args) -> tuple[list[dict], list[str]]:
    """Every run of one family (seeds x depths x variants x inits); its tables and goal lines."""
    settings, depths, variants, inits = family_plan(fam, args)
    data = load_text() if fam.name == "gpt" else load_images(args.dataset)
    print(f"\n== {fam.name}: depths {depths}, variants {variants}, seeds {args.seeds}, {settings.steps} "
          f"steps, batch {settings.batch}, lr {settings.lr:g}, target {fam.metric} "
          f"{'>=' if fam.higher_is_better else '<='} {settings.target:g}", flush=True)
    records = []
    for seed in args.seeds:
        for d in depths:
            for v in variants:
                for init in inits:
                    r = run_one(fam, d, v, init, seed, data, settings)
                    records.append(r)
                    print(f"{fam.name} depth {d} {v} {init} seed {seed}: " + (
                        f"error: {r['error']}" if r["error"] else
                        f"steps {fmt(median_steps([r['steps_to_target']]))}, final {r['final']:.4f}, "
                        f"{r['time_s']:.1f} s"), flush=True)
    return records, [family_tables(records, fam, depths, variants, inits),
                     *goal_lines(records, fam, depths, variants)]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    families = list(FAMILIES) if args.family == "all" else [args.family]
    records, report = [], []
    try:
        for name in families:
            recs, lines = run_family(FAMILIES[name], args)
            records += recs
            report.append("\n".join(lines))
    except InitlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n\n" + "\n\n".join(report))
    if args.json:  # non-finite numbers become null
        write_text_atomic(args.json, records_to_json(records, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
