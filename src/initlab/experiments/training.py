"""Experiment 3: training speed — a deep MLP under each initialization.

A deep MLP (default 10 hidden layers of 128 units) with tanh and with ReLU is trained with SGD
and momentum on cross-entropy from zeros, small (``0.01 * N(0, 1)``), large (``N(0, 1)``),
PyTorch's default, Xavier normal (Glorot & Bengio 2010), He normal (He et al. 2015) and
initlab's own ``init_model(model, "auto")``; LSUV (Mishkin & Matas, "All you need is a good
init", 2016) and greedy layer-wise pretraining (Bengio et al., "Greedy layer-wise training of deep
networks", 2007) join when :func:`initlab.lsuv_` / :func:`initlab.pretrain_layerwise` are
importable. Recorded per run:
train and test loss and test accuracy per epoch, test accuracy every ``1 / evals_per_epoch``
epoch, the SGD steps to reach ``target_accuracy`` on the test set, and the final accuracy.
Mini-batches are shuffled with a seeded ``torch.Generator``; subnormals are flushed
(``torch.set_flush_denormal(True)``: vanishing activations make them, and they slow CPUs tenfold).

One (activation, scheme) run is one cell (:class:`TrainingCell`, :func:`run_training_cell`):
:func:`run_training` hands the grid of a :class:`TrainingConfig` to a ``map_cells`` (``initlab
demo``: the sweep engine's), and ``initlab sweep``'s ``training`` experiment runs any grid of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import nn

from initlab.errors import InitlabError
from initlab.experiments.common import (
    GAIN_POLICIES,
    MODEL_SCHEMES,
    CellMap,
    StepCallback,
    bind_cell,
    check_choice,
    check_ints,
    derive_seed,
    init_mlp_,
    make_record,
    map_here,
    sgd_step,
    torch_threads,
)
from initlab.models import activation_module, mlp

__all__ = ["TrainingConfig", "TrainingResult", "TrainingCell", "run_training", "run_training_cell",
           "training_cells", "load_cell_dataset", "available_schemes", "DATA_DEPENDENT_SCHEMES", "init_start",
           "fit"]

EXPERIMENT = "training"

#: Schemes that need another module: name -> (module, attribute).
DATA_DEPENDENT_SCHEMES: dict[str, tuple[str, str]] = {
    "lsuv": ("initlab.lsuv", "lsuv_"),
    "pretrain": ("initlab.pretrain", "pretrain_layerwise"),
}

_BASE_SCHEMES = ("zeros", "small", "large", "torch_default", "xavier_normal", "he_normal")


def _data_dependent(name: str) -> Any | None:
    module, attr = DATA_DEPENDENT_SCHEMES[name]
    try:
        mod = __import__(module, fromlist=[attr])
        return getattr(mod, attr)
    except (ImportError, AttributeError):
        return None


def available_schemes() -> tuple[str, ...]:
    """The default schemes of the training experiment: the six fixed ones, ``"lsuv"`` and
    ``"pretrain"`` when their modules are importable, and ``"auto"`` (``initlab.init_model``).

    >>> available_schemes()[:3], available_schemes()[-1]
    (('zeros', 'small', 'large'), 'auto')
    """
    return (_BASE_SCHEMES + tuple(n for n in DATA_DEPENDENT_SCHEMES if _data_dependent(n) is not None)
            + MODEL_SCHEMES)


@dataclass(frozen=True)
class TrainingConfig:
    """Configuration of :func:`run_training`.

    Attributes:
        schemes: initializations (``None``: :func:`available_schemes`).
        activations: hidden activations.
        depth, width: hidden layers and units per layer.
        epochs, batch_size, lr, momentum: SGD training.
        target_accuracy: test accuracy that ``steps_to_target`` counts the steps to.
        evals_per_epoch: test evaluations per epoch (for ``steps_to_target`` and curves).
        pretrain_epochs_per_layer: epochs per layer of layer-wise pretraining.
        gain_policy: see :func:`~initlab.experiments.common.scheme_gain`.
        seed: the run's seed.
    """

    schemes: tuple[str, ...] | None = None
    activations: tuple[str, ...] = ("tanh", "relu")
    depth: int = 10
    width: int = 128
    epochs: int = 8
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    target_accuracy: float = 0.85
    evals_per_epoch: int = 4
    pretrain_epochs_per_layer: int = 1
    gain_policy: str = "paper"
    seed: int = 0

    def __post_init__(self) -> None:
        check_ints(self, ("depth", "width", "epochs", "batch_size", "evals_per_epoch",
                          "pretrain_epochs_per_layer"))
        if not 0.0 < self.target_accuracy <= 1.0:
            raise InitlabError(f"target_accuracy={self.target_accuracy!r} is invalid: pass a value in (0, 1]")
        if not self.lr > 0:
            raise InitlabError(f"lr={self.lr!r} is invalid: pass a positive learning rate")
        check_choice("gain_policy", self.gain_policy, GAIN_POLICIES)

    @property
    def resolved_schemes(self) -> tuple[str, ...]:
        """``schemes``, or :func:`available_schemes` when ``None``."""
        return available_schemes() if self.schemes is None else tuple(self.schemes)

    @property
    def n_steps(self) -> int:
        """Units of work (one training run per scheme x activation), for progress bars."""
        return len(self.resolved_schemes) * len(self.activations)


@dataclass
class TrainingResult:
    """Output of :func:`run_training`: ``config`` and tidy ``records`` (experiment
    ``"training"``, layer ``None``): per epoch (0 = before training) ``"train_loss"``,
    ``"test_loss"``, ``"test_accuracy"``; per evaluation ``"test_accuracy_at_step"`` (extra
    ``step``; ``epoch`` fractional); per run ``"final_test_accuracy"``, ``"mean_test_accuracy"``
    (the mean over all evaluations from step 0 — the area under the accuracy curve, which rewards
    learning fast as well as ending high; extras ``n_test``, ``evaluations``), ``"steps_to_target"``
    (``None`` if never reached; extras ``target``, ``steps_per_epoch`` and ``init_steps``, the SGD
    steps the start itself took: layer-wise pretraining's, 0 for the others), ``"diverged"`` (1.0
    if the loss became non-finite; extra ``step``, the SGD step whose loss it was; the numbers measured
    after it are NaN: :func:`fit`), ``"seconds"``;
    loss records carry ``chance_loss`` (``ln(n_classes)``, the loss of a uniform guess); for
    ``"pretrain"`` the pretraining records with experiment ``"pretrain"`` (stat
    ``"reconstruction_loss"`` per layer and epoch) and for ``"lsuv"`` the LSUV records, as those
    modules emit them, tagged with scheme and activation."""

    config: TrainingConfig
    records: list[dict[str, Any]] = field(default_factory=list)


def _evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        logits = model(x)
        loss = float(nn.functional.cross_entropy(logits, y))
        acc = float((logits.argmax(1) == y).double().mean())
    model.train()
    return loss, acc


def _tag(records: Any, scheme: str, activation: str, seed: int, experiment: str) -> list[dict[str, Any]]:
    out = []
    for r in records or []:
        rec = dict(r)
        rec.setdefault("experiment", experiment)
        if rec.get("experiment") is None:
            rec["experiment"] = experiment
        rec["scheme"] = scheme
        rec["activation"] = activation
        if rec.get("seed") is None:
            rec["seed"] = seed
        rec.setdefault("epoch", None)
        rec.setdefault("layer", None)
        out.append(rec)
    return out


def init_start(model: nn.Module, scheme: str, activation: str, dataset: Any, *, generator: torch.Generator,
               gain_policy: str = "paper", pretrain_epochs_per_layer: int = 1,
               seed: int | None = None) -> tuple[list[dict[str, Any]], int]:
    """Initialize ``model`` (an :func:`initlab.models.mlp`) in place with ``scheme``: a scheme of
    :func:`~initlab.experiments.common.init_mlp_` (``"auto"`` included), or a data-dependent one
    (:data:`DATA_DEPENDENT_SCHEMES`: LSUV on up to 512 training examples, or layer-wise autoencoder
    pretraining on all of them, both from Xavier normal).

    Returns:
        ``(records, init_steps)``: the start's own records (LSUV's, pretraining's; tagged with
        scheme, activation and ``seed``) and the SGD steps it took (pretraining: layers x epochs x
        mini-batches of its batch size; 0 for the others).

    Raises:
        InitlabError: unknown scheme, or a data-dependent scheme whose module is missing.
    """
    if scheme not in DATA_DEPENDENT_SCHEMES:
        init_mlp_(model, scheme, activation, generator=generator, gain_policy=gain_policy)
        return [], 0
    fn = _data_dependent(scheme)
    if fn is None:
        module = DATA_DEPENDENT_SCHEMES[scheme][0]
        raise InitlabError(f"scheme {scheme!r} needs {module}, which is not importable: drop {scheme!r} "
                           f"from the schemes")
    init_mlp_(model, "xavier_normal", activation, generator=generator, gain_policy=gain_policy)
    if scheme == "lsuv":
        n = min(dataset.x_train.shape[0], 512)
        perm = torch.randperm(dataset.x_train.shape[0], generator=generator)[:n]
        result = fn(model, dataset.x_train[perm], generator=generator)
        return _tag(getattr(result, "records", None), scheme, activation, seed, "lsuv"), 0
    result = fn(model, dataset.x_train, method="autoencoder", epochs_per_layer=pretrain_epochs_per_layer,
                generator=generator, progress=False)
    batch = int(getattr(result, "settings", {}).get("batch_size", 64))
    steps = len(getattr(result, "layers", [])) * pretrain_epochs_per_layer * math.ceil(
        dataset.x_train.shape[0] / batch)
    return _tag(getattr(result, "records", None), scheme, activation, seed, "pretrain"), steps


def _evaluate_at(model: nn.Module, dataset: Any, common: dict[str, Any], step: int, epoch: float,
                 records: list[dict[str, Any]]) -> float:
    _, acc = _evaluate(model, dataset.x_test, dataset.y_test)
    records.append(make_record(**common, stat="test_accuracy_at_step", value=acc, epoch=epoch, step=step))
    return acc


def fit(model: nn.Module, dataset: Any, common: dict[str, Any], *, epochs: int, batch_size: int, lr: float,
        momentum: float, evals_per_epoch: int, target_accuracy: float, generator: torch.Generator,
        init_steps: int = 0) -> list[dict[str, Any]]:
    """Train ``model`` on ``dataset`` with ``SGD(lr, momentum)`` on the mean cross-entropy of
    shuffled mini-batches (:func:`~initlab.experiments.common.sgd_step`) and return its records
    (the stats of :class:`TrainingResult`, each with the fields of ``common``: ``experiment``,
    ``scheme``, ``activation``, ``layer``, ``seed`` and any extras).

    The test set is evaluated before training, every ``steps_per_epoch // evals_per_epoch`` steps
    and after each epoch; ``steps_to_target`` is the first evaluated step with test accuracy
    :math:`\\ge` ``target_accuracy`` (``None`` if never). A non-finite loss stops the run
    (``diverged`` 1.0, extra ``step``): the net that gave it is not evaluated again, so that
    epoch's ``test_loss`` and ``test_accuracy``, ``final_test_accuracy`` and ``mean_test_accuracy``
    are NaN (as :func:`initlab.experiments.train.run_train`'s ``final_accuracy``); the evaluations
    before it and ``steps_to_target`` stay.
    """
    x, y, n = dataset.x_train, dataset.y_train, dataset.x_train.shape[0]
    steps_per_epoch = math.ceil(n / batch_size)
    eval_every = max(1, steps_per_epoch // evals_per_epoch)
    chance = math.log(int(dataset.n_classes))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    test_loss, acc = _evaluate(model, dataset.x_test, dataset.y_test)
    records = [make_record(**common, stat="test_loss", value=test_loss, epoch=0, chance_loss=chance),
               make_record(**common, stat="test_accuracy", value=acc, epoch=0),
               make_record(**common, stat="test_accuracy_at_step", value=acc, epoch=0.0, step=0)]
    step, steps_to_target, diverged = 0, (0 if acc >= target_accuracy else None), False
    curve = [acc]
    model.train()
    for epoch in range(1, epochs + 1):
        perm = torch.randperm(n, generator=generator)
        total, count = 0.0, 0
        for start in range(0, n, batch_size):
            idx = perm[start:start + batch_size]
            loss = sgd_step(model, opt, x[idx], y[idx])
            if loss is None:
                diverged = True
                break
            step, total, count = step + 1, total + loss * len(idx), count + len(idx)
            if step % eval_every == 0:
                curve.append(_evaluate_at(model, dataset, common, step, step / steps_per_epoch, records))
                if steps_to_target is None and curve[-1] >= target_accuracy:
                    steps_to_target = step
        # the net that gave a non-finite loss is no longer measured: its test numbers are NaN
        test_loss, acc = (math.nan, math.nan) if diverged else _evaluate(model, dataset.x_test,
                                                                         dataset.y_test)
        records += [make_record(**common, stat="train_loss", value=total / count if count else float("nan"),
                                epoch=epoch, chance_loss=chance),
                    make_record(**common, stat="test_loss", value=test_loss, epoch=epoch, chance_loss=chance),
                    make_record(**common, stat="test_accuracy", value=acc, epoch=epoch)]
        if diverged:
            break
    n_test, mean_acc = int(dataset.x_test.shape[0]), math.nan if diverged else sum(curve) / len(curve)
    return records + [
        make_record(**common, stat="final_test_accuracy", value=acc, epoch=epochs, n_test=n_test),
        make_record(**common, stat="mean_test_accuracy", value=mean_acc, epoch=epochs, n_test=n_test,
                    evaluations=len(curve)),
        make_record(**common, stat="steps_to_target", value=steps_to_target, epoch=None,
                    target=target_accuracy, steps_per_epoch=steps_per_epoch, init_steps=init_steps),
        make_record(**common, stat="diverged", value=float(diverged), epoch=None,
                    step=step + 1 if diverged else None),
    ]


@dataclass(frozen=True)
class TrainingCell:
    """One run of the training experiment (:func:`run_training_cell`): ``mlp(n_features, width,
    depth, n_classes, activation)`` started with ``scheme`` (:func:`init_start`) and trained by
    :func:`fit`; the training fields mean what they mean in :class:`TrainingConfig`.
    :func:`run_training` runs the cells of one config (:func:`training_cells`); ``initlab sweep``'s
    ``training`` experiment runs grids of them.

    Attributes:
        activation, scheme: the run's hidden activation and start.
        depth, width, epochs, batch_size, lr, momentum, target_accuracy, evals_per_epoch,
            pretrain_epochs_per_layer, gain_policy, seed: as in :class:`TrainingConfig`.
        dataset, data_dir, limit, max_test: the data a cell loads when it is given none
            (:func:`load_cell_dataset`, as ``initlab demo`` loads it: split by ``seed``, at most
            ``limit`` training and ``max_test`` test examples, ``None`` or ``0``: all); a cell
            given a data set keeps only its name here.
        threads: torch threads while it runs (``0``: keep the current setting).

    Raises:
        InitlabError: a bad value (named, with the fix), an unknown scheme included. The data set's
            name is not checked here (a cell may be given its data); ``initlab sweep`` checks it.
    """

    activation: str = "relu"
    scheme: str = "he_normal"
    depth: int = 10
    width: int = 128
    epochs: int = 8
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    target_accuracy: float = 0.85
    evals_per_epoch: int = 4
    pretrain_epochs_per_layer: int = 1
    gain_policy: str = "paper"
    dataset: str = "mnist5k"
    data_dir: str | None = None
    limit: int | None = None
    max_test: int | None = None
    seed: int = 0
    threads: int = 1

    def __post_init__(self) -> None:
        self.training_config()  # the checks of TrainingConfig
        _check_scheme(self.scheme)
        activation_module(self.activation)
        check_ints(self, ("seed",), 0)
        check_ints(self, ("threads",), 0, note="(0 = keep torch's setting)")
        check_ints(self, ("limit", "max_test"), 0, optional=True, note="(0 = all)")

    def training_config(self) -> TrainingConfig:
        """The :class:`TrainingConfig` of this one run."""
        return TrainingConfig(schemes=(self.scheme,), activations=(self.activation,),
                              **_shared_settings(self))


def _shared_settings(source: TrainingConfig | TrainingCell) -> dict[str, Any]:
    """``source``'s values of the settings :class:`TrainingConfig` and :class:`TrainingCell` both
    declare (``depth``, ``width``, ``epochs``, ..., ``seed``), by name: what a cell takes from its
    config and a config from its cell."""
    shared = {f.name for f in fields(TrainingConfig)} & {f.name for f in fields(TrainingCell)}
    return {name: getattr(source, name) for name in shared}


def _check_scheme(scheme: Any) -> None:
    """``scheme`` is a start :func:`init_start` runs: one of :func:`available_schemes`, ``"constant"``
    or a name of :data:`initlab.schemes.NAMED_SCHEMES`; else :class:`InitlabError` listing them (so a
    typo is refused when the cell is built, not in every cell's run)."""
    from initlab.schemes import NAMED_SCHEMES

    known = available_schemes()
    if scheme not in known and scheme not in ("constant", *NAMED_SCHEMES):
        names = (*known, *sorted({"constant", *NAMED_SCHEMES} - set(known)))
        raise InitlabError(f"scheme {scheme!r} is unknown: use one of {', '.join(names)}")


def training_cells(config: TrainingConfig, *, dataset: str = "mnist5k",
                   threads: int = 0) -> list[TrainingCell]:
    """The runs of ``config``: every activation x scheme (:attr:`TrainingConfig.resolved_schemes`),
    in that order (the scheme varying fastest), on the data set called ``dataset``, each with
    ``threads`` torch threads (``0``: keep the setting).

    >>> [(c.activation, c.scheme) for c in training_cells(TrainingConfig(schemes=("zeros", "auto")))]
    [('tanh', 'zeros'), ('tanh', 'auto'), ('relu', 'zeros'), ('relu', 'auto')]
    """
    return [TrainingCell(activation=activation, scheme=scheme, dataset=dataset, threads=threads,
                         **_shared_settings(config))
            for activation in config.activations for scheme in config.resolved_schemes]


def load_cell_dataset(cell: TrainingCell) -> Any:
    """The data of ``cell`` as ``initlab demo`` loads it: :func:`initlab.data.load_dataset` split by
    ``cell.seed`` with at most ``cell.limit`` training examples (cached per process:
    :func:`~initlab.experiments.train_data.classification_dataset`), then at most ``cell.max_test``
    test examples (:func:`~initlab.experiments.train_data.subset_test`).

    Raises:
        DataError: the data set cannot be loaded.
    """
    from initlab.experiments.train_data import classification_dataset, subset_test

    ds = classification_dataset(cell.dataset, cell.data_dir, cell.seed, cell.limit or None)
    return subset_test(ds, cell.max_test or None, cell.seed)


def run_training_cell(cell: TrainingCell, dataset: Any = None) -> list[dict[str, Any]]:
    """Run one :class:`TrainingCell` on ``dataset`` (``None``: :func:`load_cell_dataset`) with
    ``cell.threads`` torch threads (restored after) and return its records: the start's
    (:func:`init_start`), :func:`fit`'s and ``"seconds"`` (the run's wall time, start included),
    each with experiment ``"training"``, the cell's scheme, activation and seed (the stats of
    :class:`TrainingResult`). Weights and shuffling come from one generator seeded with
    ``derive_seed(seed, "training", scheme, activation)``.

    Raises:
        InitlabError: an unknown scheme, or a data-dependent scheme whose module is missing.
        DataError: the data set cannot be loaded.

    >>> recs = run_training_cell(TrainingCell(dataset="digits", limit=200, max_test=100, depth=2, width=8,
    ...                                       epochs=1))
    >>> [r["stat"] for r in recs][-3:]
    ['steps_to_target', 'diverged', 'seconds']
    """
    import time

    with torch_threads(cell.threads):
        torch.set_flush_denormal(True)
        dataset = load_cell_dataset(cell) if dataset is None else dataset
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(derive_seed(cell.seed, EXPERIMENT, cell.scheme, cell.activation))
        model = mlp(int(dataset.n_features), cell.width, cell.depth, int(dataset.n_classes), cell.activation)
        records, init_steps = init_start(model, cell.scheme, cell.activation, dataset, generator=gen,
                                         gain_policy=cell.gain_policy,
                                         pretrain_epochs_per_layer=cell.pretrain_epochs_per_layer,
                                         seed=cell.seed)
        common = {"experiment": EXPERIMENT, "scheme": cell.scheme, "activation": cell.activation,
                  "layer": None, "seed": cell.seed}
        records += fit(model, dataset, common, epochs=cell.epochs, batch_size=cell.batch_size, lr=cell.lr,
                       momentum=cell.momentum, evals_per_epoch=cell.evals_per_epoch,
                       target_accuracy=cell.target_accuracy, generator=gen, init_steps=init_steps)
        records.append(make_record(**common, stat="seconds", value=time.perf_counter() - t0, epoch=None))
    return records


def run_training(dataset: Any, config: TrainingConfig | None = None, *, on_step: StepCallback | None = None,
                 map_cells: CellMap | None = None) -> TrainingResult:
    """Run experiment 3 on ``dataset`` (an :func:`initlab.data.load_dataset` result): every run of
    :func:`training_cells` (activations x schemes), each one cell of ``map_cells``
    (:func:`run_training_cell`), records in the cells' order.

    Each run trains ``mlp(n_features, width, depth, n_classes, activation)`` with
    ``SGD(lr, momentum)`` on the mean cross-entropy over mini-batches of ``batch_size``,
    stopping early if the loss becomes non-finite (the run is then marked ``diverged`` and its
    final and mean accuracy are NaN: :func:`fit`). ``steps_to_target`` is the first evaluated step ``s`` with
    test accuracy :math:`\\ge` ``target_accuracy`` (resolution ``steps_per_epoch / evals_per_epoch``).

    Args:
        dataset: the data, shared by every run.
        config: the experiment (default: ``TrainingConfig()``).
        on_step: called with ``"training ACTIVATION/SCHEME"`` after each run.
        map_cells: runs the cells (:data:`~initlab.experiments.common.CellMap`; ``initlab demo``
            passes :func:`initlab.sweep.map_cells`); default: here, one after the other. The
            records do not depend on it.

    Raises:
        InitlabError: invalid config, unknown scheme, or a data-dependent scheme whose module is
            missing.

    >>> from types import SimpleNamespace
    >>> g = torch.Generator().manual_seed(0)
    >>> ds = SimpleNamespace(x_train=torch.randn(64, 5, generator=g), y_train=torch.arange(64) % 2,
    ...                      x_test=torch.randn(16, 5, generator=g), y_test=torch.arange(16) % 2,
    ...                      n_classes=2, n_features=5, name="toy")
    >>> cfg = TrainingConfig(schemes=("he_normal",), activations=("relu",), depth=2, width=8, epochs=1)
    >>> [r["stat"] for r in run_training(ds, cfg).records][-3:]
    ['steps_to_target', 'diverged', 'seconds']
    """
    config = config or TrainingConfig()
    cells = training_cells(config, dataset=str(getattr(dataset, "name", "")))
    run_cell = bind_cell(run_training_cell, dataset, on_step,
                         lambda c: f"training {c.activation}/{c.scheme}")
    per_cell = (map_cells or map_here)(run_cell, cells)
    return TrainingResult(config=config, records=[r for records in per_cell for r in records])
