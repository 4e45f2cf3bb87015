"""What every reproduction shares: the registry entry (:class:`Reproduction`), the config's checks
and test-sized run (:class:`ReproductionConfig`), the seeds of a run, a per-process data cache, one
MLP's training run (:func:`train_records`), seed statistics, and the paper / verdict records.

A reproduction is an experiment in the house shape: a config dataclass (``quick()`` gives the
test-sized one), the independent units of work it splits into (``cells``, one training run each,
so a sweep could map them), ``run_cell`` (cell in, tidy records out) and ``conclude`` (all the
cells' records in, the paper's numbers and the verdict out, as records too). No plotting here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar, TypeVar

import numpy as np

from initlab.errors import InitlabError
from initlab.experiments.common import check_ints

__all__ = ["Reproduction", "ReproductionConfig", "train_records", "seeds_of", "seeds_text", "dataset",
           "subset", "seed_stats", "chance_error_pct", "paper_record", "verdict_record", "error_se_pct",
           "retag", "check_positive", "SOURCE_OURS", "SOURCE_PAPER", "PARTLY", "VERDICT_WORDS"]

#: ``source`` extra of a measured record and of a number quoted from the paper.
SOURCE_OURS = "ours"
SOURCE_PAPER = "paper"

#: The value of a verdict that agrees in part (the paper's ranking, say, but not its picture).
PARTLY = 0.5

#: A verdict record's value -> the word the report shows (unless the record names its own ``word``).
VERDICT_WORDS: dict[float | None, str] = {1.0: "agrees", PARTLY: "partly agrees", 0.0: "does not agree",
                                          None: "cannot tell"}


@dataclass(frozen=True)
class Reproduction:
    """One paper's result, as ``initlab reproduce NAME`` runs it.

    Attributes:
        name: the CLI name (``"he2015"``); also the ``experiment`` of its records.
        title: the section title (paper, year, the claim in a few words).
        summary: one line for ``initlab reproduce --list``.
        config: the config class; ``config(**kw)`` is the full run, ``config.quick(**kw)`` the
            test-sized one (``seed``, ``seeds``, ``data_dir`` are the keywords the CLI passes).
        cells: ``cells(config)`` -> the independent training runs, in a fixed order.
        run_cell: ``run_cell(cell)`` -> that run's tidy records.
        conclude: ``conclude(config, records)`` -> the paper's numbers and the verdict as records.
        describe: ``describe(config)`` -> ``{citation, claim, paper_setup, our_setup, scale}``,
            the texts of the report's section (JSON-ready).
    """

    name: str
    title: str
    summary: str
    config: type
    cells: Callable[[Any], list[Any]]
    run_cell: Callable[[Any], list[dict[str, Any]]]
    conclude: Callable[[Any, list[dict[str, Any]]], list[dict[str, Any]]]
    describe: Callable[[Any], dict[str, str]]


def check_positive(config: Any, names: Sequence[str]) -> None:
    """Raise :class:`InitlabError` for the first attribute of ``config`` in ``names`` that is not a
    finite number > 0 (learning rates, targets).

    >>> from types import SimpleNamespace
    >>> check_positive(SimpleNamespace(lr=0.0), ("lr",))
    Traceback (most recent call last):
    ...
    initlab.errors.InitlabError: lr=0.0 is invalid: pass a finite number > 0
    """
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or value <= 0:
            raise InitlabError(f"{name}={value!r} is invalid: pass a finite number > 0")


_Config = TypeVar("_Config", bound="ReproductionConfig")


class ReproductionConfig:
    """Base of a reproduction's config (a frozen dataclass): the checks of its fields and
    :meth:`quick`. A subclass sets, as plain class attributes (not fields):

    * ``COUNTS``: the fields that must be integers >= 1 (``seed`` must be an integer >= 0);
    * ``POSITIVE``: the fields that must be finite numbers > 0 (learning rates, targets);
    * ``QUICK``: the field values of the test-sized run.

    A subclass with checks of its own calls ``super().__post_init__()`` first.

    Raises:
        InitlabError: from ``__post_init__``, the first bad field, named with its value and the fix.

    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Toy(ReproductionConfig):
    ...     width: int = 256
    ...     lr: float = 0.1
    ...     seed: int = 0
    ...     COUNTS = ("width",)
    ...     POSITIVE = ("lr",)
    ...     QUICK = {"width": 8}
    >>> Toy.quick(), Toy.quick(lr=0.5).lr
    (Toy(width=8, lr=0.1, seed=0), 0.5)
    >>> Toy(width=0)
    Traceback (most recent call last):
    ...
    initlab.errors.InitlabError: width=0 is invalid: pass an integer >= 1
    """

    COUNTS: ClassVar[tuple[str, ...]] = ()
    POSITIVE: ClassVar[tuple[str, ...]] = ()
    QUICK: ClassVar[Mapping[str, Any]] = {}

    def __post_init__(self) -> None:
        check_ints(self, self.COUNTS)
        check_ints(self, ("seed",), 0)
        check_positive(self, self.POSITIVE)

    @classmethod
    def quick(cls: type[_Config], **overrides: Any) -> _Config:
        """The test-sized run: the fields of ``QUICK``, then ``overrides``, on the defaults."""
        return cls(**{**cls.QUICK, **overrides})


def seeds_of(config: Any) -> tuple[int, ...]:
    """The training seeds of a run: ``seed, seed + 1, ..., seed + seeds - 1`` (the data split uses
    ``seed`` alone, so every training seed sees the same data).

    >>> from types import SimpleNamespace
    >>> seeds_of(SimpleNamespace(seed=4, seeds=3))
    (4, 5, 6)
    """
    return tuple(int(config.seed) + k for k in range(int(config.seeds)))


def seeds_text(config: Any) -> str:
    """The training seeds of a run in words.

    >>> from types import SimpleNamespace
    >>> seeds_text(SimpleNamespace(seed=0, seeds=3)), seeds_text(SimpleNamespace(seed=4, seeds=1))
    ('3 training seeds (0, 1 and 2)', '1 training seed (4)')
    """
    seeds = [str(s) for s in seeds_of(config)]
    listed = seeds[0] if len(seeds) == 1 else ", ".join(seeds[:-1]) + " and " + seeds[-1]
    return f"{len(seeds)} training seed{'s' if len(seeds) != 1 else ''} ({listed})"


@lru_cache(maxsize=6)
def dataset(name: str, data_dir: str | None, seed: int, limit: int | None, standardize: bool = True) -> Any:
    """:func:`initlab.data.load_dataset` cached per process (the cells of a run share their data;
    the cache never changes a number, only the time to get it).

    Raises:
        DataError: the data set cannot be loaded (the message says where initlab looked).
    """
    from initlab.data import load_dataset

    return load_dataset(name, data_dir=data_dir, seed=seed, limit=limit, standardize=standardize)


def subset(ds: Any, n_test: int | None) -> Any:
    """A view of data set ``ds`` with only its first ``n_test`` test examples (``None``: all); what
    :func:`initlab.experiments.run_training` reads (train and test tensors, sizes, name)."""
    from types import SimpleNamespace

    stop = None if n_test is None else int(n_test)
    return SimpleNamespace(x_train=ds.x_train, y_train=ds.y_train, x_test=ds.x_test[:stop],
                           y_test=ds.y_test[:stop], n_classes=int(ds.n_classes),
                           n_features=int(ds.n_features), name=ds.name)


def train_records(config: Any, ds: Any, scheme: str, activation: str, seed: int,
                  **training: Any) -> list[dict[str, Any]]:
    """The records of one :func:`initlab.experiments.run_training` run on data ``ds`` (a
    :func:`subset`): an MLP of ``config.depth`` hidden ``activation`` layers of ``config.width``
    units started from ``scheme``, trained by SGD with ``config``'s ``epochs``, ``batch_size``,
    ``lr`` and ``momentum`` from training seed ``seed``; ``training`` sets the other fields of
    :class:`~initlab.experiments.training.TrainingConfig` (``evals_per_epoch``,
    ``target_accuracy``, ...). The records keep experiment ``"training"`` (see :func:`retag`).

    Raises:
        InitlabError: a bad training setting (:class:`~initlab.experiments.training.TrainingConfig`)
            or an unknown scheme.
    """
    from initlab.experiments.training import TrainingConfig, run_training

    train_cfg = TrainingConfig(schemes=(scheme,), activations=(activation,), depth=config.depth,
                               width=config.width, epochs=config.epochs, batch_size=config.batch_size,
                               lr=config.lr, momentum=config.momentum, seed=seed, **training)
    return run_training(ds, train_cfg).records


def seed_stats(values: Iterable[float | None],
               diverged: float | None = None) -> tuple[float, float, float, int]:
    """Median, minimum and maximum over seeds of the finite values, and how many there were;
    ``(nan, nan, nan, 0)`` when none is finite. ``diverged``: the value a non-finite one (a run whose
    loss diverged, its final metric ``nan``) counts as, e.g. chance error; ``None`` (missing) values
    are left out either way.

    >>> seed_stats([3.0, 1.0, None, 2.0])
    (2.0, 1.0, 3.0, 3)
    >>> seed_stats([float("nan"), 4.0], diverged=90.0)
    (47.0, 4.0, 90.0, 2)
    """
    values = [x if x is None or math.isfinite(float(x)) or diverged is None else diverged for x in values]
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    if not v:
        return math.nan, math.nan, math.nan, 0
    return float(np.median(v)), min(v), max(v), len(v)


def chance_error_pct(row: dict[str, Any]) -> float | None:
    """The test error (%) of a guess, ``100 (1 - 1 / n_classes)``, from a ``test_error_pct`` record's
    ``n_classes`` (``None`` for a record without it): what a diverged run counts as in a verdict.

    >>> chance_error_pct({"n_classes": 10})
    90.0
    """
    n = row.get("n_classes")
    return None if not n else 100.0 * (1.0 - 1.0 / int(n))


def error_se_pct(error_pct: float, n_test: int) -> float:
    """Standard error, in percentage points, of a test error of ``error_pct`` % measured on
    ``n_test`` examples (binomial):

    .. math::  \\mathrm{SE} = 100 \\sqrt{p (1 - p) / n}, \\quad p = \\mathrm{error\\_pct} / 100

    >>> round(error_se_pct(10.0, 1000), 3)
    0.949
    """
    p = min(max(error_pct / 100.0, 0.0), 1.0)
    return 100.0 * math.sqrt(p * (1.0 - p) / max(int(n_test), 1))


def paper_record(experiment: str, scheme: str | None, activation: str | None, stat: str, value: float | None,
                 *, where: str, **extra: Any) -> dict[str, Any]:
    """A number (or, with ``value=None``, a finding in the extra ``text``) quoted from the paper:
    ``source="paper"``, ``where`` names the table or figure.

    >>> paper_record("glorot2010", "torch_default", "tanh", "test_error_pct", 1.76, where="Table 1")["source"]
    'paper'
    """
    return {"experiment": experiment, "scheme": scheme, "activation": activation, "layer": None, "stat": stat,
            "value": value, "epoch": None, "seed": None, "source": SOURCE_PAPER, "where": where, **extra}


def verdict_record(experiment: str, claim: str, agrees: bool | float | None, text: str, *,
                   word: str | None = None, **extra: Any) -> dict[str, Any]:
    """The verdict on one claim of the paper: ``stat="verdict"``, ``value`` 1.0 (our numbers agree),
    :data:`PARTLY` (0.5: they agree in part), 0.0 (they do not) or ``None`` (this run cannot tell),
    the sentence in ``text`` (it starts with ``word + ": "``) and the verdict's ``word``
    (:data:`VERDICT_WORDS` of the value unless given, e.g. "holds" for a claim of our own).

    >>> r = verdict_record("he2015", "He trains, Xavier does not", PARTLY, "partly agrees: ...")
    >>> r["value"], r["word"]
    (0.5, 'partly agrees')
    """
    value = None if agrees is None else PARTLY if agrees == PARTLY else float(bool(agrees))
    return {"experiment": experiment, "scheme": None, "activation": None, "layer": None, "stat": "verdict",
            "value": value, "epoch": None, "seed": None, "source": SOURCE_OURS, "claim": claim, "text": text,
            "word": word or VERDICT_WORDS[value], **extra}


def retag(records: Iterable[Mapping[str, Any]], experiment: str, **extra: Any) -> list[dict[str, Any]]:
    """Copies of ``records`` (e.g. from :func:`initlab.experiments.run_training`) under this
    reproduction's ``experiment``, the original one kept in the extra ``part``, plus ``extra``
    and ``source="ours"``."""
    out = []
    for r in records:
        rec = dict(r)
        rec["part"] = rec.get("experiment")
        rec["experiment"] = experiment
        rec["source"] = SOURCE_OURS
        rec.update(extra)
        out.append(rec)
    return out
