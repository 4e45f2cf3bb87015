"""One training run: a model of a family, started one way, trained to a target on real data.

:func:`run_train` builds the model (:mod:`initlab.experiments.families`: ``mlp``, ``cnn``,
``resnet``, ``gpt`` or ``FILE.py:FUNCTION``) after ``torch.manual_seed(seed)``, initializes it
(:mod:`initlab.experiments.starts`), trains it with SGD (momentum) or AdamW on the mean
cross-entropy, and scores it every ``eval_every`` steps on a fixed evaluation set until it reaches
``target`` (accuracy ``>=``; bits per byte ``<=`` for the byte language model), then once on the
final set. This is the cell of ``initlab sweep``'s ``train`` experiment and of
``benchmarks/time_to_accuracy.py``; a grid of them is a sweep (:mod:`initlab.sweep`).

Records (experiment ``"train"``, scheme = the start, layer and epoch ``None``; extras ``model,
depth, width, dataset, metric, target``): ``eval_accuracy`` / ``eval_bits_per_byte`` per
evaluation (extra ``step``), ``steps_to_target`` (``None``: never reached), ``final_accuracy`` /
``final_bits_per_byte`` (NaN if diverged), ``steps`` (steps run), ``diverged`` (1.0 when the loss
became non-finite, which stops the run), ``seconds`` (wall time: the one value a rerun does not
reproduce).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from initlab.errors import InitlabError
from initlab.experiments.common import check_choice, check_ints, make_record, torch_threads
from initlab.experiments.families import ModelArgs, build_model, check_model, input_kind
from initlab.experiments.starts import StartContext, apply_start, check_start
from initlab.experiments.train_data import TEXT_DATASET, TrainData, load_train_data
from initlab.models import activation_module

__all__ = ["TrainConfig", "run_train", "OPTIMIZERS"]

EXPERIMENT = "train"
OPTIMIZERS = ("sgd", "adamw")


def _positive(name: str, value: Any) -> None:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value < 0:
        raise InitlabError(f"{name}={value!r} is invalid: pass a number >= 0")


@dataclass(frozen=True)
class TrainConfig:
    """Configuration of :func:`run_train`.

    Attributes:
        model: ``mlp``, ``cnn``, ``resnet``, ``gpt`` or ``FILE.py:FUNCTION``.
        init: the start (:func:`initlab.experiments.starts.start_names`).
        depth, width: hidden layers (convs, blocks) and their units (channels, embedding width).
        activation: the hidden activation (mlp: any; cnn: relu, tanh; resnet, gpt: ignored).
        norm: ``None`` the family's default (ResNet BatchNorm, GPT pre-LN), ``False`` without.
        dataset, data_dir, data_seed: :func:`initlab.data.load_dataset` (``data_seed`` splits
            the data); ``"stdlib"`` is the byte corpus of the ``gpt`` family.
        train_limit: train on the first this many training examples (``None``: all).
        optimizer, lr, momentum, weight_decay: ``sgd`` (with momentum) or ``adamw``.
        batch_size: examples (or byte windows) per step.
        epochs, steps: the budget, one of the two (``epochs`` defaults to 1; the byte task needs
            ``steps``).
        eval_every, eval_size, final_size: score on the first ``eval_size`` test examples every
            ``eval_every`` steps, and after training on the first ``final_size`` (``None``: all).
        target: the accuracy (or bits per byte) that ``steps_to_target`` counts the steps to.
        curve: keep evaluating after the target is reached (a whole learning curve).
        seed: seeds the model's construction, the start and the batch order.
        threads: torch threads for the run (``0``: torch's setting); the numbers depend on it.

    Raises:
        InitlabError: a bad value, named with the fix.
    """

    model: str = "mlp"
    init: str = "auto"
    depth: int = 10
    width: int = 128
    activation: str = "relu"
    norm: bool | None = None
    dataset: str = "mnist5k"
    data_dir: str | None = None
    data_seed: int = 0
    train_limit: int | None = None
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 128
    epochs: int | None = None
    steps: int | None = None
    eval_every: int = 20
    eval_size: int = 2000
    final_size: int | None = None
    target: float = 0.8
    curve: bool = False
    seed: int = 0
    threads: int = 1

    def __post_init__(self) -> None:
        check_model(self.model)
        check_start(self.init)
        activation_module(self.activation)  # an unknown name fails here, not in every cell's run
        _check_dataset(self.dataset, self.data_dir)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_ints(self, ("depth", "width", "batch_size", "eval_every", "eval_size"))
        check_ints(self, ("train_limit", "final_size", "epochs", "steps"), optional=True)
        check_ints(self, ("seed", "data_seed", "threads"), 0)
        for name in ("lr", "momentum", "weight_decay", "target"):
            _positive(name, getattr(self, name))
        if not self.lr > 0:
            raise InitlabError(f"lr={self.lr!r} is invalid: pass a learning rate > 0")
        if self.epochs is not None and self.steps is not None:
            raise InitlabError(f"epochs={self.epochs} and steps={self.steps}: give one budget, not both")
        if self.epochs is None and self.steps is None:
            object.__setattr__(self, "epochs", 1)
        if input_kind(self.model, self.dataset) == "tokens" and self.steps is None:
            raise InitlabError("the byte language model has no epochs: give steps (e.g. steps = 600)")


def _check_dataset(name: str, data_dir: str | None) -> None:
    """A bundled data set (:data:`initlab.data.DATASETS`), the byte corpus, or a file or directory
    that exists; else :class:`InitlabError` naming the choices."""
    from pathlib import Path

    from initlab.data import DATASETS

    if name in DATASETS or name == TEXT_DATASET or Path(name).exists() or data_dir is not None:
        return
    raise InitlabError(f"dataset={name!r} is unknown: use one of {', '.join((*DATASETS, TEXT_DATASET))}, "
                       "or the path of an .npz / .csv file")


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay)


def _step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> float | None:
    """One step on the mean cross-entropy (over examples, or over positions of a sequence);
    ``None`` and no update when the loss is not finite (as :func:`~initlab.experiments.common.sgd_step`)."""
    loss = F.cross_entropy(model(x).flatten(0, -2), y.flatten())
    if not torch.isfinite(loss):
        return None
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


def _fit(model: nn.Module, data: TrainData, config: TrainConfig) -> dict[str, Any]:
    """Train for the budget; the evaluations ``[(step, value)]``, the first step that reached the
    target, the steps run and whether the loss diverged."""
    opt = _optimizer(model, config)
    stream = data.batches(config.batch_size, torch.Generator().manual_seed(config.seed))
    budget = config.steps
    if budget is None:
        budget = config.epochs * math.ceil(len(data.x_train) / config.batch_size)
    curve: list[tuple[int, float]] = []
    reached, step, diverged = None, 0, False
    for step in range(1, budget + 1):
        if _step(model, opt, *next(stream)) is None:
            diverged, step = True, step - 1
            break
        if step % config.eval_every == 0 and (reached is None or config.curve):
            value = data.score(model, data.x_eval, data.y_eval)
            curve.append((step, value))
            if reached is None and data.reached(value, config.target):
                reached = step
    return {"curve": curve, "reached": reached, "steps": step, "diverged": diverged}


def _examples(data: TrainData, seed: int) -> torch.Tensor:
    """Up to 512 training inputs for data-dependent starts (a seeded draw)."""
    if data.lm:
        return next(data.batches(512, torch.Generator().manual_seed(seed)))[0]
    idx = torch.randperm(len(data.x_train), generator=torch.Generator().manual_seed(seed))[:512]
    return data.x_train[idx]


def run_train(config: TrainConfig | None = None) -> list[dict[str, Any]]:
    """Build, start and train one model (module docstring); return its tidy records.

    .. math::  \\text{steps\\_to\\_target} = \\min\\{s = k \\cdot \\text{eval\\_every} :
               \\text{metric}(s) \\text{ reaches target}\\}

    Raises:
        InitlabError: a start or model that does not fit; :class:`initlab.errors.DataError` when
            the data cannot be loaded.

    >>> recs = run_train(TrainConfig(dataset="digits", depth=2, width=16, init="he_normal",
    ...                              activation="relu", target=0.5, eval_every=5))
    >>> sorted({r["stat"] for r in recs})  # doctest: +NORMALIZE_WHITESPACE
    ['diverged', 'eval_accuracy', 'final_accuracy', 'seconds', 'steps', 'steps_to_target']
    """
    config = config or TrainConfig()
    t0 = time.perf_counter()
    with torch_threads(config.threads):
        torch.set_flush_denormal(True)
        data = load_train_data(config.dataset, input_kind(config.model, config.dataset),
                               data_dir=config.data_dir, data_seed=config.data_seed,
                               train_limit=config.train_limit, eval_size=config.eval_size,
                               final_size=config.final_size)
        torch.manual_seed(config.seed)  # torch_default draws from the global generator, as torch does
        args = ModelArgs(config.depth, config.width, config.activation, config.norm, data.n_features,
                         data.n_classes, data.context)
        model = build_model(config.model, args)
        apply_start(config.init, StartContext(model, torch.Generator().manual_seed(config.seed),
                                              config.activation, _examples(data, config.seed)))
        fit = _fit(model, data, config)
        final = math.nan if fit["diverged"] else data.score(model, data.x_final, data.y_final)
    common = {"experiment": EXPERIMENT, "scheme": config.init, "activation": config.activation, "layer": None,
              "seed": config.seed, "model": config.model, "depth": config.depth, "width": config.width,
              "dataset": data.name, "metric": data.metric, "target": config.target}
    records = [make_record(**common, stat=f"eval_{data.metric}", value=v, step=s) for s, v in fit["curve"]]
    records += [make_record(**common, stat="steps_to_target", value=fit["reached"]),
                make_record(**common, stat=f"final_{data.metric}", value=final),
                make_record(**common, stat="steps", value=fit["steps"]),
                make_record(**common, stat="diverged", value=float(fit["diverged"])),
                make_record(**common, stat="seconds", value=time.perf_counter() - t0)]
    return records
