"""Data of the training experiment: a classification data set (flat features or square images)
or the CPython standard library's source as bytes, with the batches and the metric it is scored by.

Loaded data sets are cached per process (a sweep worker runs many cells on the same data), keyed
by everything that changes them; the cache never changes a number, only the time to get it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch.nn import functional as F

from initlab.experiments.common import derive_seed
from initlab.experiments.families import image_side

__all__ = ["TEXT_DATASET", "TrainData", "load_train_data", "classification_dataset", "subset_test"]

#: The data set name of the byte-level language-modelling task (:func:`initlab.corpus.stdlib_split`).
TEXT_DATASET = "stdlib"
_TEXT_BYTES = (4_000_000, 400_000)
_EVAL_WINDOWS, _FINAL_WINDOWS = 32, 256


@dataclass(frozen=True)
class TrainData:
    """Training inputs and two scoring sets: ``x_eval``/``y_eval`` (checked every few steps for the
    steps to target) and ``x_final``/``y_final`` (scored once, after training).

    ``lm``: a byte language model (``x_train`` the byte stream, ``y_train`` ``None``; metric bits
    per byte, lower is better); otherwise a classifier (metric accuracy, higher is better).
    ``context``: the window length of ``lm`` data.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor | None
    x_eval: torch.Tensor
    y_eval: torch.Tensor
    x_final: torch.Tensor
    y_final: torch.Tensor
    n_features: int
    n_classes: int
    lm: bool = False
    context: int = 128

    @property
    def metric(self) -> str:
        """``"bits_per_byte"`` (language model) or ``"accuracy"``."""
        return "bits_per_byte" if self.lm else "accuracy"

    def reached(self, value: float, target: float) -> bool:
        """Whether ``value`` of the metric reaches ``target`` (``>=`` accuracy, ``<=`` bits per byte)."""
        return value <= target if self.lm else value >= target

    def batches(self, batch: int, gen: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless training batches drawn with ``gen``: shuffled epochs (a new ``randperm`` each,
        the last batch of an epoch may be short) of a classifier's examples, or random
        ``context``-byte windows and their next bytes."""
        if self.lm:
            span = torch.arange(self.context + 1)
            while True:
                start = torch.randint(0, len(self.x_train) - self.context - 1, (batch, 1), generator=gen)
                w = self.x_train[start + span]
                yield w[:, :-1], w[:, 1:]
        n = len(self.x_train)
        while True:
            perm = torch.randperm(n, generator=gen)
            for i in range(0, n, batch):
                b = perm[i:i + batch]
                yield self.x_train[b], self.y_train[b]

    def score(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 2000) -> float:
        """Accuracy, or bits per byte ``cross-entropy / ln 2``, of ``model`` on ``(x, y)`` in eval
        mode (then back to train mode), in chunks of ``chunk`` examples."""
        model.eval()
        total = 0.0
        with torch.no_grad():
            for i in range(0, len(x), chunk):
                out = model(x[i:i + chunk])
                if self.lm:
                    target = y[i:i + chunk].flatten()
                    total += F.cross_entropy(out.flatten(0, 1), target, reduction="sum").item()
                else:
                    total += (out.argmax(1) == y[i:i + chunk]).sum().item()
        model.train()
        return total / y.numel() / math.log(2) if self.lm else total / len(x)


@lru_cache(maxsize=4)
def classification_dataset(name: str, data_dir: str | None, seed: int, limit: int | None = None):
    """:func:`initlab.data.load_dataset` (``seed`` splits it, ``limit`` a stratified subset of
    the training examples), cached per process."""
    from initlab.data import load_dataset

    return load_dataset(name, data_dir=data_dir, seed=seed, limit=limit)


@lru_cache(maxsize=1)
def _text() -> tuple[torch.Tensor, torch.Tensor]:
    from initlab.corpus import stdlib_split

    train, valid = (torch.from_numpy(a).long() for a in stdlib_split(*_TEXT_BYTES))
    return train, valid


def _windows(data: torch.Tensor, n: int, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    n = min(n, (len(data) - 1) // context)
    return data[:n * context].reshape(n, context), data[1:n * context + 1].reshape(n, context)


def load_train_data(dataset: str, inputs: str, *, data_dir: str | None = None, data_seed: int = 0,
                    train_limit: int | None = None, eval_size: int = 2000, final_size: int | None = None,
                    context: int = 128) -> TrainData:
    """The :class:`TrainData` of ``dataset`` shaped for ``inputs`` (``features``: ``(N, F)``;
    ``images``: ``(N, 1, side, side)``; ``tokens``: the ``stdlib`` byte stream).

    Classifiers: ``x_train`` is the first ``train_limit`` training examples (``None``: all; the
    standardisation statistics are the whole training set's), ``x_eval`` the first ``eval_size``
    test examples, ``x_final`` the first ``final_size`` (``None``: all). The byte task: 32 and 256
    validation windows.

    Raises:
        InitlabError: ``tokens`` without the ``stdlib`` data set or the reverse; a non-square
            image; :class:`initlab.errors.DataError` when the data set cannot be loaded.

    >>> data = load_train_data("digits", "features", eval_size=100)
    >>> data.x_eval.shape, data.metric
    (torch.Size([100, 64]), 'accuracy')
    """
    from initlab.errors import InitlabError

    if (inputs == "tokens") != (dataset == TEXT_DATASET):
        raise InitlabError(f"dataset={dataset!r} does not fit a model fed {inputs}: use dataset="
                           f"{TEXT_DATASET!r} with model gpt, and a classification data set otherwise")
    if inputs == "tokens":
        train, valid = _text()
        return TrainData(TEXT_DATASET, train, None, *_windows(valid, _EVAL_WINDOWS, context),
                         *_windows(valid, _FINAL_WINDOWS, context), n_features=context, n_classes=256,
                         lm=True, context=context)
    ds = classification_dataset(dataset, data_dir, data_seed)
    shape = (-1, 1, image_side(ds.n_features), image_side(ds.n_features)) if inputs == "images" else None

    def view(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(shape) if shape else x

    n_final = len(ds.x_test) if final_size is None else final_size
    n_train = len(ds.x_train) if train_limit is None else train_limit
    return TrainData(ds.name, view(ds.x_train[:n_train]), ds.y_train[:n_train], view(ds.x_test[:eval_size]),
                     ds.y_test[:eval_size], view(ds.x_test[:n_final]), ds.y_test[:n_final],
                     n_features=int(ds.n_features), n_classes=int(ds.n_classes))


def subset_test(dataset, max_test: int | None, seed: int):
    """``dataset`` with at most ``max_test`` test examples (a seeded random subset, same order
    every run; ``original`` is the full data set); the dataset itself when it is small enough.

    >>> from types import SimpleNamespace
    >>> ds = SimpleNamespace(name="toy", x_train=torch.zeros(4, 2), y_train=torch.zeros(4),
    ...                      x_test=torch.zeros(10, 2), y_test=torch.zeros(10), n_classes=2, n_features=2)
    >>> subset_test(ds, 4, 0).x_test.shape
    torch.Size([4, 2])
    """
    from types import SimpleNamespace

    n = dataset.x_test.shape[0]
    if max_test is None or n <= max_test:
        return dataset
    gen = torch.Generator().manual_seed(derive_seed(seed, "test-subset"))
    idx = torch.randperm(n, generator=gen)[:max_test].sort().values
    fields = {k: getattr(dataset, k) for k in ("name", "x_train", "y_train", "n_classes", "n_features")}
    return SimpleNamespace(**fields, x_test=dataset.x_test[idx], y_test=dataset.y_test[idx],
                           source=getattr(dataset, "source", ""), original=dataset)
