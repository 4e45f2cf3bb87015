"""The experiments a sweep can run, by name: each a config dataclass and a function from it to
tidy records (one cell), plus what ``initlab sweep show`` and the report put first.

Adding an experiment is one entry of :data:`EXPERIMENTS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from initlab.errors import InitlabError

__all__ = ["SweepExperiment", "EXPERIMENTS", "get_experiment", "check_dataset"]


@dataclass(frozen=True)
class SweepExperiment:
    """One sweepable experiment.

    Attributes:
        name: its name in a spec (``experiment = "train"``).
        config: the cell's config dataclass; a spec's ``[fixed]`` and ``[grid]`` keys are its fields.
        run: ``run(config) -> list[record]``, importable by name (Ray workers import it).
        headline: the stats ``initlab sweep show`` prints per cell, and the report's heat maps
            use the first of that is present.
        prepare: turns a cell's raw parameters (spec values) into config fields, e.g. the phase
            experiment's ``sigma_w2 = "critical"``; ``None``: taken as they are.
        check: ``check(config)`` raises :class:`~initlab.errors.InitlabError` for what a built
            config does not check itself but a sweep cell needs (:func:`check_dataset`: a cell
            that loads its data set by name); ``None``: nothing more.
        description: one line for ``--help`` and errors.
        records_version: bump it when this experiment's records change meaning (a diverged
            ``training`` run's accuracies became NaN: 2), so a sweep directory made before does not
            pass its old cells off as new ones; it enters the cell key (:attr:`key_name`) from 2 on,
            and the other experiments' keys stay as they were.
    """

    name: str
    config: type
    run: Callable[[Any], list[dict[str, Any]]]
    headline: tuple[str, ...]
    prepare: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    description: str = ""
    check: Callable[[Any], None] | None = None
    records_version: int = 1

    @property
    def key_name(self) -> str:
        """The experiment's part of a cell key: its name, with ``/records-vN`` from version 2 on."""
        return self.name if self.records_version == 1 else f"{self.name}/records-v{self.records_version}"

    @property
    def field_names(self) -> tuple[str, ...]:
        """The config's fields, in declaration order."""
        return tuple(f.name for f in fields(self.config))


def _phase_prepare(params: dict[str, Any]) -> dict[str, Any]:
    """``sigma_w2 = "critical"`` becomes the critical weight variance of the cell's activation at
    its ``sigma_b2`` (:func:`initlab.theory.critical_point`)."""
    if params.get("sigma_w2") != "critical":
        return params
    from initlab import theory
    from initlab.experiments.phase import PhaseCell

    base = PhaseCell()
    activation = params.get("activation", base.activation)
    sigma_b2 = params.get("sigma_b2", base.sigma_b2)
    cp = theory.critical_point(activation, sigma_b2=sigma_b2, param=params.get("param", base.param))
    return {**params, "sigma_w2": cp.sigma_w2}


#: The data sets read from IDX files in ``data_dir`` (:func:`initlab.data.load_dataset`), as
#: :func:`check_dataset` compares names (lower case, no ``-`` or ``_``).
_IDX_DATASETS = ("mnist", "fashionmnist")


def check_dataset(config: Any) -> None:
    """Refuse a cell whose ``config.dataset`` its run could not load: a name of
    :data:`initlab.data.DATASETS` (any case, ``-`` and ``_`` optional, as
    :func:`initlab.data.load_dataset` reads it) or an existing ``.npz`` / ``.csv`` file; and, for
    the IDX data sets (``mnist``, ``fashion-mnist``), a ``config.data_dir`` that is not a directory.
    The training and phase cells load their data by name when they run, so without this a typo
    failed every cell twice.

    Raises:
        InitlabError: the bad name or directory, with the choices.

    >>> from initlab.experiments.phase import PhaseCell
    >>> check_dataset(PhaseCell(dataset="Fashion_MNIST"))
    >>> check_dataset(PhaseCell(dataset="nosuch"))
    Traceback (most recent call last):
    ...
    initlab.errors.InitlabError: dataset='nosuch' is unknown: use one of mnist5k, digits, ...
    """
    from pathlib import Path

    from initlab.data import DATASETS

    name, data_dir = config.dataset, getattr(config, "data_dir", None)
    squash = str(name).strip().lower().replace("_", "").replace("-", "")
    if squash in {d.replace("-", "") for d in DATASETS}:
        if squash in _IDX_DATASETS and data_dir is not None and not Path(str(data_dir)).expanduser().is_dir():
            raise InitlabError(f"data_dir={data_dir!r} is not a directory: give the folder that holds the "
                               f"{name} IDX files, or leave data_dir out")
        return
    path = Path(str(name)).expanduser()
    if path.suffix.lower() in (".npz", ".csv"):
        if path.is_file():
            return
        raise InitlabError(f"dataset={name!r} is not a file (looked at {str(path.resolve())!r}): check the "
                           "path")
    raise InitlabError(f"dataset={name!r} is unknown: use one of {', '.join(DATASETS)}, or the path of an "
                       "existing .npz / .csv file")


def _registry() -> dict[str, SweepExperiment]:
    from initlab.experiments.phase import PhaseCell, run_phase_cell
    from initlab.experiments.probe_cell import ProbeCellConfig, run_probe_cell
    from initlab.experiments.train import TrainConfig, run_train
    from initlab.experiments.training import TrainingCell, run_training_cell

    return {
        "train": SweepExperiment("train", TrainConfig, run_train,
                                 ("final_accuracy", "final_bits_per_byte", "steps_to_target", "seconds"),
                                 description="steps to a target and final accuracy on a data set"),
        "probe": SweepExperiment("probe", ProbeCellConfig, run_probe_cell, ("std", "grad_std"),
                                 description="per-layer statistics at init"),
        "phase": SweepExperiment("phase", PhaseCell, run_phase_cell, ("test_accuracy", "train_loss"),
                                 prepare=_phase_prepare, description="the trainability cell",
                                 check=check_dataset),
        "training": SweepExperiment("training", TrainingCell, run_training_cell,
                                    ("final_test_accuracy", "mean_test_accuracy", "steps_to_target",
                                     "seconds"),
                                    description="the demo's training run: one MLP from one start",
                                    check=check_dataset, records_version=2),
    }


EXPERIMENTS: dict[str, SweepExperiment] = _registry()


def get_experiment(name: str) -> SweepExperiment:
    """The experiment called ``name``.

    Raises:
        InitlabError: an unknown name (the message lists the known ones).

    >>> get_experiment("phase").field_names[:3]
    ('activation', 'param', 'sigma_w2')
    """
    try:
        return EXPERIMENTS[name]
    except (KeyError, TypeError):
        raise InitlabError(f"experiment={name!r} is invalid: use one of "
                           + ", ".join(f"{k} ({v.description})" for k, v in EXPERIMENTS.items())) from None
