"""The ``initlab demo`` run: load the data set, run the experiments (forward, symmetry, training,
depth) and the summary with one progress bar, and return everything the report needs as records
plus metadata.

Presets: the full run (default; about 2 minutes on 2 CPU cores) and ``quick=True`` (<= 20 s; for
tests and CI): a smaller forward batch, a narrower symmetry net, a 6 x 64 training net for 2 epochs
on at most 1,500 training examples, depths 10 and 30 only. Explicit ``depth``, ``width``,
``epochs`` and ``limit`` override either preset (``depth`` and ``width`` are the training
experiment's; the depth experiment has its own grid, :data:`DEPTH_PRESETS`).

The training and depth experiments are grids of single runs (cells:
:func:`initlab.experiments.training.training_cells`, :func:`initlab.experiments.depth.depth_grid`),
run by a ``map_cells`` (:data:`~initlab.experiments.common.CellMap`): ``initlab demo`` passes the
sweep engine's, serially in this process and without a store.
"""

from __future__ import annotations

import datetime as _dt
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from initlab import __version__
from initlab.experiments.common import GAIN_POLICIES, CellMap, check_choice, check_ints, torch_threads
from initlab.experiments.depth import DEPTH_SCHEMES, DepthConfig, DepthResult, depth_grid, run_depth_grid
from initlab.experiments.forward import ForwardConfig, ForwardResult, run_forward
from initlab.experiments.summary import SummaryResult, summarize
from initlab.experiments.symmetry import SymmetryConfig, SymmetryResult, run_symmetry
from initlab.experiments.train_data import subset_test
from initlab.experiments.training import TrainingConfig, TrainingResult, run_training

__all__ = ["DemoConfig", "DemoResult", "DEPTH_PRESETS", "run_demo", "subset_test", "torch_threads"]

_FULL = {"depth": 10, "width": 128, "epochs": 8, "limit": 4000, "max_test": 2000}
_QUICK = {"depth": 6, "width": 64, "epochs": 2, "limit": 1500, "max_test": 500}

#: The depth experiment's grid per preset: depths, activations and the other DepthConfig fields
#: (width 32 keeps the 50-layer runs at about a second each on one core).
DEPTH_PRESETS: dict[str, dict[str, Any]] = {
    "full": {"depths": (10, 30, 50), "activations": ("tanh", "relu", "sigmoid"), "width": 32, "epochs": 2,
             "evals_per_epoch": 8, "target_accuracy": 0.8},
    "quick": {"depths": (10, 30), "activations": ("tanh", "relu", "sigmoid"), "width": 32, "epochs": 2,
              "evals_per_epoch": 4, "target_accuracy": 0.75},
}


@dataclass(frozen=True)
class DemoConfig:
    """Configuration of :func:`run_demo` (what ``initlab demo`` parses its options into).

    Attributes:
        seed: seeds everything: data split, weights, shuffling, dropout masks.
        dataset: data set name or ``.npz`` / ``.csv`` path (:func:`initlab.data.load_dataset`).
        data_dir: directory with IDX files (``fashion-mnist``, ``mnist``).
        depth, width: the training experiment's hidden layers and units (``None``: preset).
        epochs: training epochs (``None``: preset).
        limit: at most this many training examples, a stratified seeded subset (``None``: preset;
            ``0``: all).
        max_test: at most this many test examples, a seeded subset (``None``: preset; ``0``: all).
        quick: use the quick preset.
        gain_policy: ``"paper"`` or ``"activation"`` (see ``initlab.experiments.common.scheme_gain``).
        threads: torch intra-op threads during the run (``torch.set_num_threads``, restored after);
            ``0`` keeps torch's setting. Default 1: the demo's networks are tiny, and on a busy
            machine several threads synchronising on every small matmul are many times slower.
    """

    seed: int = 0
    dataset: str = "mnist5k"
    data_dir: str | None = None
    depth: int | None = None
    width: int | None = None
    epochs: int | None = None
    limit: int | None = None
    max_test: int | None = None
    quick: bool = False
    gain_policy: str = "paper"
    threads: int = 1

    def __post_init__(self) -> None:
        check_ints(self, ("seed",), 0)
        check_ints(self, ("depth", "width", "epochs"), optional=True)
        check_ints(self, ("threads",), 0, note="(0 = torch's default)")
        check_ints(self, ("limit", "max_test"), 0, optional=True, note="(0 = all)")
        check_choice("gain_policy", self.gain_policy, GAIN_POLICIES)

    def resolved(self, name: str) -> Any:
        """The value of ``name`` after applying the preset (``0`` limits become ``None``)."""
        value = getattr(self, name)
        if value is None:
            value = (_QUICK if self.quick else _FULL)[name]
        if name in ("limit", "max_test") and value == 0:
            return None
        return value

    def experiment_configs(self) -> tuple[ForwardConfig, SymmetryConfig, TrainingConfig]:
        """The configs of experiments 1-3 for this run."""
        q = self.quick
        forward = ForwardConfig(batch=256 if q else 1000, bins=30 if q else 40, gain_policy=self.gain_policy,
                                seed=self.seed)
        symmetry = SymmetryConfig(width=16 if q else 32, epochs=2 if q else 3, seed=self.seed)
        training = TrainingConfig(depth=self.resolved("depth"), width=self.resolved("width"),
                                  epochs=self.resolved("epochs"), evals_per_epoch=2 if q else 4,
                                  target_accuracy=0.8 if q else 0.85, gain_policy=self.gain_policy,
                                  pretrain_epochs_per_layer=2 if q else 3, seed=self.seed)
        return forward, symmetry, training

    def depth_configs(self) -> list[DepthConfig]:
        """The runs of the depth experiment (:data:`DEPTH_PRESETS`), seeded with ``seed``."""
        preset = dict(DEPTH_PRESETS["quick" if self.quick else "full"])
        depths, activations = preset.pop("depths"), preset.pop("activations")
        return depth_grid(depths, activations, DEPTH_SCHEMES, seed=self.seed, **preset)

    def to_dict(self) -> dict[str, Any]:
        """The config, presets resolved, as a JSON-ready dict."""
        d = asdict(self)
        for name in ("depth", "width", "epochs", "limit", "max_test"):
            d[name] = self.resolved(name)
        return d


@dataclass
class DemoResult:
    """Everything one demo run produced: ``config``, ``dataset`` (a dict: name, sizes, source),
    the per-experiment results (``depth``: one :class:`DepthResult` per run of the grid), the
    ``summary``, ``records`` (all experiments together), ``timings`` (seconds per experiment) and
    ``environment`` (versions, threads, start time)."""

    config: DemoConfig
    dataset: dict[str, Any]
    forward: ForwardResult
    symmetry: SymmetryResult
    training: TrainingResult
    depth: list[DepthResult]
    summary: SummaryResult
    records: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)

    def configs(self) -> dict[str, Any]:
        """The demo config and each experiment's config, JSON-ready. The demo's ``limit`` and
        ``max_test`` are the numbers of training and test examples the run used (a preset's
        "at most 2000" on a data set of 1,000 test examples is 1000 here); ``depth`` lists the
        depth grid (``depths``, ``activations``, ``schemes``) and the fields its runs share."""
        training = asdict(self.training.config)
        training["schemes"] = list(self.training.config.resolved_schemes)
        demo = self.config.to_dict()
        demo["limit"], demo["max_test"] = self.dataset["n_train"], self.dataset["n_test"]
        return {"demo": demo, "forward": asdict(self.forward.config),
                "symmetry": asdict(self.symmetry.config), "training": training,
                "depth": _grid_config([r.config for r in self.depth])}


def _grid_config(configs: list[DepthConfig]) -> dict[str, Any]:
    """The depth grid as one dict: the values that vary as sorted lists, the shared ones once."""
    if not configs:
        return {}
    out: dict[str, Any] = {"depths": sorted({c.depth for c in configs}),
                           "activations": list(dict.fromkeys(c.activation for c in configs)),
                           "schemes": list(dict.fromkeys(c.scheme for c in configs))}
    shared = {k: v for k, v in asdict(configs[0]).items() if k not in ("depth", "activation", "scheme")}
    return {**out, **shared}


def run_demo(config: DemoConfig | None = None, *, progress: bool = True, dataset: Any = None,
             map_cells: CellMap | None = None) -> DemoResult:
    """Run the whole demo: the forward/backward, symmetry, training and depth experiments and the
    summary, with one tqdm bar (stderr) over their steps (a training or depth run is one step).

    Args:
        config: the run's settings (default: the full preset, seed 0, ``mnist5k``).
        progress: show the progress bar.
        dataset: an already loaded data set (``initlab.data.Dataset``-like); ``None`` loads
            ``config.dataset`` with :func:`initlab.data.load_dataset`.
        map_cells: runs the training and depth cells (:data:`~initlab.experiments.common.CellMap`;
            ``initlab demo`` passes :func:`initlab.sweep.map_cells`); default: here, one after the
            other. The records do not depend on it.

    Raises:
        DataError: the data set cannot be loaded (message names the file and the problem).
        InitlabError: invalid settings.

    >>> res = run_demo(DemoConfig(quick=True), progress=False)  # doctest: +SKIP
    >>> res.summary.rows[0]["verdict"]  # doctest: +SKIP
    'agree'
    """
    config = config or DemoConfig()
    with torch_threads(config.threads):
        return _run(config, progress, dataset, map_cells)


def _run(config: DemoConfig, progress: bool, dataset: Any, map_cells: CellMap | None) -> DemoResult:
    from tqdm.auto import tqdm

    torch.set_flush_denormal(True)
    started = _dt.datetime.now(_dt.timezone.utc)
    t0 = time.perf_counter()
    if dataset is None:
        from initlab.data import load_dataset

        dataset = load_dataset(config.dataset, data_dir=config.data_dir, seed=config.seed,
                               limit=_limit_for(config))
    dataset = subset_test(dataset, config.resolved("max_test"), config.seed)
    timings = {"data": time.perf_counter() - t0}
    fwd_cfg, sym_cfg, train_cfg = config.experiment_configs()
    depth_cfgs = config.depth_configs()
    total = fwd_cfg.n_steps + sym_cfg.n_steps + train_cfg.n_steps + len(depth_cfgs)
    bar = tqdm(total=total, desc="initlab demo", unit="step", disable=not progress, file=sys.stderr,
               dynamic_ncols=True, leave=False)

    def step(desc: str) -> None:
        bar.set_postfix_str(desc, refresh=False)
        bar.update(1)

    try:
        t = time.perf_counter()
        forward = run_forward(fwd_cfg, on_step=step)
        timings["forward"] = time.perf_counter() - t
        t = time.perf_counter()
        symmetry = run_symmetry(dataset, sym_cfg, on_step=step)
        timings["symmetry"] = time.perf_counter() - t
        t = time.perf_counter()
        training = run_training(dataset, train_cfg, on_step=step, map_cells=map_cells)
        timings["training"] = time.perf_counter() - t
        t = time.perf_counter()
        depth = run_depth_grid(dataset, depth_cfgs, on_step=step, map_cells=map_cells)
        timings["depth"] = time.perf_counter() - t
    finally:
        bar.close()
    records = forward.records + symmetry.records + training.records + [r for d in depth for r in d.records]
    summary = summarize(records, seed=config.seed)
    records = records + summary.records
    timings["total"] = time.perf_counter() - t0
    info = {"name": dataset.name, "n_train": int(dataset.x_train.shape[0]),
            "n_test": int(dataset.x_test.shape[0]), "n_features": int(dataset.n_features),
            "n_classes": int(dataset.n_classes), "source": str(getattr(dataset, "source", ""))}
    env = {"initlab": __version__, "torch": torch.__version__, "python": platform.python_version(),
           "threads": torch.get_num_threads(), "started_utc": started.isoformat(timespec="seconds"),
           "platform": platform.platform()}
    return DemoResult(config=config, dataset=info, forward=forward, symmetry=symmetry, training=training,
                      depth=depth, summary=summary, records=records, timings=timings, environment=env)


def _limit_for(config: DemoConfig) -> int | None:
    return config.resolved("limit")
