"""The trainability phase diagram: does a deep plain network train, as a function of
(sigma_w^2, depth), and does the mean-field depth scale ``6 xi_c`` predict where it stops?

Two measurements, both as tidy records (no plotting here; :mod:`initlab.report.phase_report`
draws them):

1. **Trainability** (Schoenholz et al. 2017, Fig. 5-6): for every ``sigma_w2`` of a grid (the
   critical value of :func:`initlab.theory.critical_point` is added) and every depth, an MLP
   ``mlp(n_features, width, depth, n_classes, activation)`` with weights ``N(0, sigma_w2 /
   fan_in)`` and biases ``N(0, sigma_b2)`` is trained by plain SGD for ``steps`` minibatch steps
   on a real data set (:func:`initlab.data.load_dataset`), then scored on its test split. Next
   to it, the theory's ``xi_c`` and ``6 xi_c`` on a fine ``sigma_w2`` grid.
2. **Dynamical isometry** (Pennington et al. 2017): at the critical point, the singular values of
   the input-output Jacobian ``J = D_L W_L ... D_1 W_1`` of a deep net (float64, exact via
   ``torch.func.jacrev``) for Gaussian against orthogonal weights: their 10th, 50th and 90th
   percentiles and the spread ``p90 / p10``.

Stats (``experiment = "phase"``): ``test_accuracy``, ``train_loss``, ``diverged`` (scheme
``"gaussian"``, extras ``sigma_w2, sigma_b2, depth, width, steps``); ``trainable_depth`` (the
largest depth whose accuracy reaches ``chance + trainable_fraction * (best - chance)``, 0 if
none); ``xi_c``, ``xi_q``, ``chi_1``, ``trainable_depth_theory`` (scheme ``"mean_field"``);
``critical_sigma_w2`` (scheme ``"critical"``, extras ``q_star``); a ``sigma_w2`` where
:func:`initlab.theory.mean_field` fails (e.g. ``q*`` too large for its quadrature) gets NaN theory
values with the reason in the extra ``theory_error``, and the run goes on; ``jac_sv_p10``, ``jac_sv_p50``,
``jac_sv_p90``, ``jac_sv_spread``, ``jac_sv_mean_sq`` (scheme ``"gaussian"`` / ``"orthogonal"``,
one per seed).

Sources: S. S. Schoenholz, J. Gilmer, S. Ganguli, J. Sohl-Dickstein, "Deep Information
Propagation", ICLR 2017. J. Pennington, S. S. Schoenholz, S. Ganguli, "Resurrecting the sigmoid
in deep learning through dynamical isometry: theory and practice", NeurIPS 2017.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from initlab import gains, theory
from initlab.errors import InitlabError
from initlab.experiments.common import check_choice, check_ints, derive_seed, sgd_step, torch_threads
from initlab.models import ACTIVATION_MODULES, mlp

__all__ = ["ACTIVATIONS", "PhaseConfig", "PhaseResult", "PhaseCell", "CellMap", "run_phase", "run_phase_cell",
           "phase_cells", "jacobian_singular_values", "init_gaussian_", "init_orthogonal_"]

EXPERIMENT = "phase"

#: The activations the experiment runs: the networks need a module
#: (:data:`initlab.models.ACTIVATION_MODULES`), the theory a function (:data:`initlab.gains.ACTIVATIONS`).
#: ``initlab phase --activation`` takes exactly these.
ACTIVATIONS: tuple[str, ...] = tuple(name for name in gains.ACTIVATIONS if name in ACTIVATION_MODULES)


def _is_real(value: Any) -> bool:
    """A real number (Python or NumPy scalar), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass(frozen=True)
class PhaseConfig:
    """What :func:`run_phase` measures. Defaults take about a minute on 2 cores.

    Attributes:
        activation: activation name (one of :data:`ACTIVATIONS`); param its parameter
            (leaky_relu slope, ...).
        sigma_b2: bias variance of every layer. At ``0.05`` tanh is critical at
            ``sigma_w2 ~ 1.76``, so ``sigma_w2 = 1`` is ordered, not critical.
        sigma_w2s: weight variances (times fan_in) of the grid; ``include_critical`` adds the
            critical one.
        depths: numbers of hidden layers.
        width: hidden width of the trained networks.
        steps, batch_size, lr: plain SGD (no momentum, no weight decay).
        dataset, data_dir, limit: passed to :func:`initlab.data.load_dataset` (``limit`` caps the
            training examples).
        seed: the run's seed; every cell derives its own from it (same seed and threads, same
            bits).
        threads: torch intra-op threads during the run (restored after; ``0``: torch's
            setting). The accuracies depend on it, so it is part of the configuration.
        trainable_fraction: a depth counts as trainable when its test accuracy reaches
            ``chance + trainable_fraction * (best - chance)``, ``best`` over the whole grid.
        theory_points: ``sigma_w2`` points of the ``6 xi_c`` curve (log-spaced over the grid).
        jacobian_width, jacobian_depth, jacobian_seeds: the isometry measurement (square layers).
        jacobian_sigma_b2: bias variance there (``None``: ``sigma_b2``).
    """

    activation: str = "tanh"
    param: float | None = None
    sigma_b2: float = 0.05
    sigma_w2s: tuple[float, ...] = (0.5, 1.0, 1.4, 2.2, 3.0, 4.0, 6.0)
    include_critical: bool = True
    depths: tuple[int, ...] = (4, 8, 16, 24, 32, 48)
    width: int = 48
    steps: int = 300
    batch_size: int = 64
    lr: float = 0.1
    dataset: str = "digits"
    data_dir: str | None = None
    limit: int | None = None
    seed: int = 0
    threads: int = 1
    trainable_fraction: float = 0.5
    theory_points: int = 48
    jacobian_width: int = 64
    jacobian_depth: int = 16
    jacobian_seeds: int = 3
    jacobian_sigma_b2: float | None = None

    @classmethod
    def quick(cls, **overrides: Any) -> PhaseConfig:
        """A ~10 s configuration: sigma_w2 in {1, critical, 4}, depths {10, 20, 30}, 200 steps."""
        base = cls(sigma_w2s=(1.0, 4.0), depths=(10, 20, 30), width=32, steps=200, theory_points=24,
                   jacobian_width=32, jacobian_depth=16, jacobian_seeds=2)
        return replace(base, **overrides)

    def validate(self) -> PhaseConfig:
        """Check every field; return ``self``.

        Raises:
            InitlabError: a bad value (named, with the fix).
        """
        def positive_ints(name: str, values: Sequence[Any]) -> None:
            if not values or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1
                                 for v in values):
                raise InitlabError(f"{name}={tuple(values)!r} is invalid: pass one or more integers >= 1")

        check_choice("activation", self.activation, ACTIVATIONS)
        positive_ints("depths", self.depths)
        for name in ("width", "steps", "batch_size", "theory_points", "jacobian_width", "jacobian_depth",
                     "jacobian_seeds"):
            positive_ints(name, [getattr(self, name)])
        if not self.sigma_w2s and not self.include_critical:
            raise InitlabError("sigma_w2s is empty: pass at least one weight variance")
        real = _is_real
        for w in self.sigma_w2s:
            if not (real(w) and math.isfinite(w) and w > 0):
                raise InitlabError(f"sigma_w2={w!r} is invalid: pass weight variances > 0")
        for name in ("sigma_b2", "jacobian_sigma_b2"):
            b = getattr(self, name)
            if b is not None and not (real(b) and math.isfinite(b) and b >= 0):
                raise InitlabError(f"{name}={b!r} is invalid: pass a bias variance >= 0")
        if not (real(self.lr) and math.isfinite(self.lr) and self.lr > 0):
            raise InitlabError(f"lr={self.lr!r} is invalid: pass a learning rate > 0")
        if not (real(self.trainable_fraction) and 0.0 < self.trainable_fraction < 1.0):
            raise InitlabError(
                f"trainable_fraction={self.trainable_fraction!r} is invalid: pass a value in (0, 1)"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise TypeError(f"seed={self.seed!r} is invalid: pass an integer")
        check_ints(self, ("threads",), 0, note="(0 = torch's default)")
        return self


@dataclass(frozen=True)
class PhaseCell:
    """One trainability cell of the phase diagram: a plain MLP of ``depth`` hidden layers, weights
    ``N(0, sigma_w2 / fan_in)``, biases ``N(0, sigma_b2)``, trained by plain SGD for ``steps`` steps
    on ``dataset`` split by ``seed`` (:func:`run_phase_cell`). The fields mean what they mean in
    :class:`PhaseConfig`; ``initlab sweep``'s ``phase`` experiment runs grids of these.

    Raises:
        InitlabError: a bad value (named, with the fix), from :meth:`validate`.
    """

    activation: str = "tanh"
    param: float | None = None
    sigma_w2: float = 1.0
    sigma_b2: float = 0.05
    depth: int = 10
    width: int = 48
    steps: int = 300
    batch_size: int = 64
    lr: float = 0.1
    dataset: str = "digits"
    data_dir: str | None = None
    limit: int | None = None
    seed: int = 0
    threads: int = 1

    def __post_init__(self) -> None:
        check_ints(self, ("depth", "width", "steps", "batch_size"))
        PhaseConfig(activation=self.activation, param=self.param, sigma_w2s=(self.sigma_w2,),
                    sigma_b2=self.sigma_b2, depths=(self.depth,), width=self.width, steps=self.steps,
                    batch_size=self.batch_size, lr=self.lr, seed=self.seed, threads=self.threads).validate()
        check_ints(self, ("limit",), optional=True)


#: ``map_cells(run_phase_cell, cells)`` returns each cell's records, in the order of ``cells``. The
#: default runs them here one after the other; ``initlab phase`` passes the sweep engine
#: (:func:`initlab.sweep.map_cells`: serial, or on Ray, with retries and progress).
CellMap = Callable[[Callable[[PhaseCell], list[dict[str, Any]]], Sequence[PhaseCell]],
                   list[list[dict[str, Any]]]]


@dataclass
class PhaseResult:
    """Output of :func:`run_phase`.

    Attributes:
        config: the configuration that ran.
        critical: the critical point used (:class:`initlab.theory.CriticalPoint`).
        records: tidy records (see the module docstring).
        dataset: name, sizes and source of the data.
        timings: seconds for ``data``, ``theory``, ``training``, ``jacobian``, ``total``.
        environment: ``threads`` (torch threads in effect during the run) and ``torch`` (version).
    """

    config: PhaseConfig
    critical: theory.CriticalPoint
    records: list[dict[str, Any]]
    dataset: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)

    def select(self, stat: str, scheme: str | None = None) -> list[dict[str, Any]]:
        """Records with this ``stat`` (and ``scheme``, if given)."""
        return [r for r in self.records if r["stat"] == stat and (scheme is None or r["scheme"] == scheme)]

    def accuracy(self) -> dict[tuple[float, int], float]:
        """``{(sigma_w2, depth): test accuracy}``."""
        return {(r["sigma_w2"], r["depth"]): r["value"] for r in self.select("test_accuracy")}

    def trainable_depth(self) -> dict[float, int]:
        """Empirical trainable depth per ``sigma_w2`` (0: no depth of the grid trained)."""
        return {r["sigma_w2"]: r["value"] for r in self.select("trainable_depth", "gaussian")}

    def jacobian_spread(self) -> dict[str, float]:
        """Median over seeds of ``p90 / p10`` of the Jacobian singular values, per weight kind."""
        out: dict[str, list[float]] = {}
        for r in self.select("jac_sv_spread"):
            out.setdefault(r["scheme"], []).append(r["value"])
        return {k: float(np.median(v)) for k, v in out.items()}

    def config_dict(self) -> dict[str, Any]:
        """The configuration as a JSON-ready dict."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self.config).items()}


# ---- building blocks ---------------------------------------------------------------------------


def _mlp(in_features: int, width: int, depth: int, out_features: int | None, activation: str,
         param: float | None) -> nn.Sequential:
    """:func:`initlab.models.mlp` with the activation's parameter (e.g. the leaky_relu slope) set,
    so that the networks use the activation the theory was computed for."""
    from initlab.models import activation_module

    model = mlp(int(in_features), int(width), int(depth), out_features, activation)
    if param is not None:
        for name, _ in list(model.named_children()):
            if name.startswith("act"):
                setattr(model, name, activation_module(activation, param))
    return model


def _linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def _check_variances(sigma_w2: float, sigma_b2: float) -> None:
    if not (sigma_w2 >= 0 and sigma_b2 >= 0):
        raise InitlabError(f"sigma_w2={sigma_w2!r}, sigma_b2={sigma_b2!r}: pass variances >= 0")


def _init_bias_(lin: nn.Linear, sigma_b2: float, generator: torch.Generator) -> None:
    """``b ~ N(0, sigma_b2)`` (zero when ``sigma_b2 == 0``, drawing nothing)."""
    if lin.bias is not None:
        if sigma_b2 > 0:
            lin.bias.normal_(0.0, math.sqrt(sigma_b2), generator=generator)
        else:
            lin.bias.zero_()


def init_gaussian_(model: nn.Module, sigma_w2: float, sigma_b2: float, *,
                   generator: torch.Generator) -> nn.Module:
    """Mean-field init of every ``nn.Linear``: ``W ~ N(0, sigma_w2 / fan_in)``, ``b ~ N(0, sigma_b2)``.

    .. math::
        W_{ij} \\sim N(0, \\sigma_w^2 / fan_{in}),\\quad b_i \\sim N(0, \\sigma_b^2)

    Raises:
        InitlabError: a negative variance.

    Source: Poole et al. 2016; Schoenholz et al. 2017.

    >>> m = init_gaussian_(mlp(8, 8, 2), 1.0, 0.0, generator=torch.Generator().manual_seed(0))
    >>> float(m.fc1.bias.detach().abs().max())
    0.0
    """
    _check_variances(sigma_w2, sigma_b2)
    with torch.no_grad():
        for lin in _linears(model):
            lin.weight.normal_(0.0, math.sqrt(sigma_w2 / lin.in_features), generator=generator)
            _init_bias_(lin, sigma_b2, generator)
    return model


def init_orthogonal_(model: nn.Module, sigma_w2: float, sigma_b2: float, *,
                     generator: torch.Generator) -> nn.Module:
    """Orthogonal weights scaled to ``sigma_w`` (``W W^T = sigma_w^2 I`` for square layers; entries
    of variance ``sigma_w2 / fan_in``), biases ``N(0, sigma_b2)`` — Pennington et al. 2017.

    .. math::
        W = \\sigma_w Q,\\ Q^T Q = I,\\quad b_i \\sim N(0, \\sigma_b^2)

    Raises:
        InitlabError: a negative variance.

    Source: Saxe et al. 2014; Pennington et al. 2017.

    >>> m = init_orthogonal_(mlp(8, 8, 1), 2.0, 0.0, generator=torch.Generator().manual_seed(0))
    >>> bool(torch.allclose(m.fc1.weight @ m.fc1.weight.T, 2.0 * torch.eye(8), atol=1e-5))
    True
    """
    _check_variances(sigma_w2, sigma_b2)
    with torch.no_grad():
        for lin in _linears(model):
            # orthonormal rows (out <= in) have entry variance 1/in, orthonormal columns 1/out:
            # the gain makes it sigma_w2 / fan_in either way
            gain = math.sqrt(sigma_w2 * max(1.0, lin.out_features / lin.in_features))
            nn.init.orthogonal_(lin.weight, gain=gain, generator=generator)
            _init_bias_(lin, sigma_b2, generator)
    return model


def jacobian_singular_values(
    activation: str,
    critical: theory.CriticalPoint,
    *,
    weights: str = "orthogonal",
    width: int = 64,
    depth: int = 16,
    param: float | None = None,
    generator: torch.Generator,
) -> torch.Tensor:
    """Singular values of the input-output Jacobian of a deep square net at a critical point.

    .. math::
        J = \\frac{\\partial x^L}{\\partial x^0} = \\prod_{l=L}^{1} D_l W_l,\\qquad
        D_l = \\mathrm{diag}(\\phi'(h^l))

    The net is ``mlp(width, width, depth)`` (no head; ``activation`` with its ``param``) in
    float64, initialised with
    ``weights="gaussian"`` or ``"orthogonal"`` at ``critical.sigma_w2, critical.sigma_b2``; the
    input is ``x^0 = phi(h^0)``, ``h^0 ~ N(0, q*)``, so every layer sits at the fixed point
    (``q* = 1`` when it is undefined). ``J`` comes from ``torch.func.jacrev``.

    Returns:
        float64 tensor ``(width,)``, singular values in descending order.

    Raises:
        InitlabError: unknown ``weights`` or activation, bad sizes.

    Source: Pennington, Schoenholz, Ganguli, "Resurrecting the sigmoid in deep learning through
    dynamical isometry", 2017.

    >>> cp = theory.critical_point("tanh", sigma_b2=0.0)
    >>> s = jacobian_singular_values("tanh", cp, width=8, depth=4, generator=torch.Generator().manual_seed(0))
    >>> s.shape, bool(torch.allclose(s, torch.ones(8, dtype=torch.float64)))
    (torch.Size([8]), True)
    """
    if weights not in ("gaussian", "orthogonal"):
        raise InitlabError(f"weights={weights!r} is invalid: use 'gaussian' or 'orthogonal'")
    model = _mlp(width, width, depth, None, activation, param).to(torch.float64)
    init = init_orthogonal_ if weights == "orthogonal" else init_gaussian_
    init(model, critical.sigma_w2, critical.sigma_b2, generator=generator)
    q = critical.q_star if math.isfinite(critical.q_star) else 1.0
    h0 = torch.randn(width, generator=generator, dtype=torch.float64) * math.sqrt(max(q, 0.0))
    from initlab.models import activation_module

    x0 = activation_module(activation, param)(h0).detach()
    model.requires_grad_(False)  # only d(output)/d(input) is needed
    jac = torch.func.jacrev(model)(x0)
    return torch.linalg.svdvals(jac)


def _load(config: PhaseConfig | PhaseCell) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                                     dict]:
    """The data set split by ``config.seed`` (cached per process:
    :func:`initlab.experiments.train_data.classification_dataset`), and its description."""
    from initlab.experiments.train_data import classification_dataset

    ds = classification_dataset(config.dataset, config.data_dir, config.seed, config.limit)
    info = {"name": ds.name, "n_train": int(ds.x_train.shape[0]), "n_test": int(ds.x_test.shape[0]),
            "n_features": int(ds.n_features), "n_classes": int(ds.n_classes), "source": ds.source}
    return ds.x_train.float(), ds.y_train.long(), ds.x_test.float(), ds.y_test.long(), info


def _train_one(config: PhaseCell, data: tuple, n_classes: int) -> dict:
    xtr, ytr, xte, yte = data
    sigma_w2, depth = config.sigma_w2, config.depth
    gen = torch.Generator().manual_seed(derive_seed(config.seed, "train", f"{sigma_w2:.6g}", depth))
    model = _mlp(xtr.shape[1], config.width, depth, n_classes, config.activation, config.param)
    init_gaussian_(model, sigma_w2, config.sigma_b2, generator=gen)
    opt = torch.optim.SGD(model.parameters(), lr=config.lr)
    losses: list[float] = []
    diverged = False
    for _ in range(config.steps):
        idx = torch.randint(0, xtr.shape[0], (config.batch_size,), generator=gen)
        loss = sgd_step(model, opt, xtr[idx], ytr[idx])
        if loss is None:
            diverged = True
            break
        losses.append(loss)
    with torch.no_grad():
        logits = model(xte)
        ok = torch.isfinite(logits).all(dim=1)
        acc = float(((logits.argmax(dim=1) == yte) & ok).float().mean())
    tail = losses[-10:]
    return {"test_accuracy": acc, "train_loss": float(np.mean(tail)) if tail and not diverged else math.nan,
            "diverged": float(diverged)}


def run_phase_cell(cell: PhaseCell) -> list[dict[str, Any]]:
    """Train one :class:`PhaseCell` and return its records (experiment ``"phase"``, scheme
    ``"gaussian"``): ``test_accuracy``, ``train_loss`` (mean of the last 10 steps; NaN if
    diverged), ``diverged``, each with extras ``sigma_w2, sigma_b2, depth, width, steps``. Runs
    with ``cell.threads`` torch threads (restored after).

    Raises:
        DataError: the data set cannot be loaded.

    >>> recs = run_phase_cell(PhaseCell(depth=2, width=8, steps=3))
    >>> [r["stat"] for r in recs]
    ['test_accuracy', 'train_loss', 'diverged']
    """
    with torch_threads(cell.threads):
        torch.set_flush_denormal(True)
        xtr, ytr, xte, yte, info = _load(cell)
        out = _train_one(cell, (xtr, ytr, xte, yte), int(info["n_classes"]))
    extra = {"sigma_w2": cell.sigma_w2, "sigma_b2": cell.sigma_b2, "depth": cell.depth, "width": cell.width,
             "steps": cell.steps}
    return [{"experiment": EXPERIMENT, "scheme": "gaussian", "activation": cell.activation, "layer": None,
             "stat": stat, "value": float(value), "epoch": None, "seed": cell.seed, **extra}
            for stat, value in out.items()]


def phase_cells(config: PhaseConfig, sigma_w2s: Sequence[float]) -> list[PhaseCell]:
    """The trainability cells of ``config``: every ``sigma_w2`` of ``sigma_w2s`` x every depth
    (sorted, without repeats), in that order."""
    return [PhaseCell(activation=config.activation, param=config.param, sigma_w2=w,
                      sigma_b2=float(config.sigma_b2), depth=d, width=config.width, steps=config.steps,
                      batch_size=config.batch_size, lr=config.lr, dataset=config.dataset,
                      data_dir=config.data_dir, limit=config.limit, seed=config.seed, threads=config.threads)
            for w in sigma_w2s for d in sorted({int(d) for d in config.depths})]


def _map_here(progress: bool) -> CellMap:
    """The default :data:`CellMap`: the cells one after the other in this process."""
    from tqdm.auto import tqdm

    def map_cells(fn: Callable[[PhaseCell], list[dict[str, Any]]], cells: Sequence[PhaseCell]) -> list:
        bar = tqdm(cells, disable=not progress, desc="initlab phase", unit="cell", leave=False)
        return [fn(c) for c in bar]

    return map_cells


# ---- the experiment ------------------------------------------------------------------------------


def run_phase(config: PhaseConfig | None = None, *, progress: bool = False,
              map_cells: CellMap | None = None) -> PhaseResult:
    """Run the trainability phase diagram and the Jacobian-spectrum comparison (module docstring).

    .. math::
        \\text{trainable iff } L \\lesssim 6\\, \\xi_c(\\sigma_w^2, \\sigma_b^2)

    Args:
        config: a :class:`PhaseConfig` (default: ``PhaseConfig()``); the run uses
            ``config.threads`` torch threads and restores the previous count after.
        progress: show a tqdm bar on stderr (with the default ``map_cells``).
        map_cells: runs the trainability cells (:data:`CellMap`); default: here, one after the
            other. The records do not depend on it.

    Returns:
        a :class:`PhaseResult` with tidy records.

    Raises:
        InitlabError: a bad config value, an activation without a critical point at ``sigma_b2``.
        DataError: the data set cannot be loaded.

    Source: Schoenholz et al. 2017; Pennington et al. 2017.

    >>> res = run_phase(PhaseConfig.quick(steps=5, depths=(2,), jacobian_seeds=1))  # doctest: +SKIP
    >>> sorted(res.trainable_depth())  # doctest: +SKIP
    [1.0, 1.7609546396067..., 4.0]
    """
    config = (config or PhaseConfig()).validate()
    with torch_threads(config.threads) as threads:
        result = _run(config, map_cells or _map_here(progress))
    result.environment = {"threads": threads, "torch": torch.__version__}
    return result


class _Records(list):
    """The run's records; :meth:`add` appends one with the run's experiment, activation and seed."""

    def __init__(self, config: PhaseConfig) -> None:
        super().__init__()
        self.config = config

    def add(self, scheme: str | None, stat: str, value: Any, **extra: Any) -> None:
        self.append({"experiment": EXPERIMENT, "scheme": scheme, "activation": self.config.activation,
                     "layer": None, "stat": stat, "value": float(value) if value is not None else None,
                     "epoch": None, "seed": self.config.seed, **extra})


def _theory(config: PhaseConfig, records: _Records) -> tuple[theory.CriticalPoint, list[float], dict]:
    """The critical point, the grid's sigma_w2 (with the critical one) and the mean-field records on a
    finer curve; returns ``(critical, sigma_w2s, {sigma_w2: xi_c})``."""
    act, b2 = config.activation, float(config.sigma_b2)
    critical = theory.critical_point(act, sigma_b2=b2, param=config.param)
    sigma_w2s = sorted(set(float(w) for w in config.sigma_w2s)
                       | ({critical.sigma_w2} if config.include_critical else set()))
    lo, hi = min(sigma_w2s), max(sigma_w2s)
    curve = sorted(set(np.geomspace(lo, hi, config.theory_points).tolist()) | set(sigma_w2s))
    records.add("critical", "critical_sigma_w2", critical.sigma_w2, sigma_w2=critical.sigma_w2, sigma_b2=b2,
                q_star=critical.q_star, xi_q=critical.xi_q)
    xi_c_at: dict[float, float] = {}
    for w in curve:
        on_grid = w in sigma_w2s
        try:
            mf = theory.mean_field(act, w, b2, param=config.param)
        except InitlabError as exc:  # e.g. q* too large for the 2-D quadrature: no theory here
            for stat in ("xi_c", "xi_q", "chi_1", "trainable_depth_theory"):
                records.add("mean_field", stat, math.nan, sigma_w2=w, sigma_b2=b2, phase=None,
                            on_grid=on_grid, theory_error=str(exc))
            xi_c_at[w] = math.nan
            continue
        for stat, value in (("xi_c", mf.xi_c), ("xi_q", mf.xi_q), ("chi_1", mf.chi_1),
                            ("trainable_depth_theory", mf.trainable_depth)):
            records.add("mean_field", stat, value, sigma_w2=w, sigma_b2=b2, phase=mf.phase, on_grid=on_grid)
        xi_c_at[w] = mf.xi_c
    return critical, sigma_w2s, xi_c_at


def _trainable_depths(config: PhaseConfig, records: _Records, critical: theory.CriticalPoint,
                      xi_c_at: dict[float, float], n_classes: int) -> None:
    """Per sigma_w2, the deepest depth whose accuracy reaches the trainability threshold."""
    acc = {(r["sigma_w2"], r["depth"]): r["value"] for r in records
           if r["stat"] == "test_accuracy" and r["scheme"] == "gaussian"}
    chance = 1.0 / n_classes
    threshold = chance + config.trainable_fraction * (max(acc.values()) - chance)
    for w in sorted(xi_c_at.keys() & {ww for ww, _ in acc}):
        ok = [d for (ww, d), a in acc.items() if ww == w and a >= threshold]
        records.add("gaussian", "trainable_depth", max(ok) if ok else 0, sigma_w2=w,
                    sigma_b2=float(config.sigma_b2), threshold=threshold, critical=w == critical.sigma_w2,
                    theory=theory.TRAINABLE_DEPTH_FACTOR * xi_c_at[w])


def _jacobians(config: PhaseConfig, records: _Records, critical: theory.CriticalPoint) -> None:
    """Jacobian singular-value percentiles at criticality, Gaussian and orthogonal weights, per seed."""
    act, b2 = config.activation, float(config.sigma_b2)
    jac_b2 = b2 if config.jacobian_sigma_b2 is None else float(config.jacobian_sigma_b2)
    jcp = critical if jac_b2 == b2 else theory.critical_point(act, sigma_b2=jac_b2, param=config.param)
    for kind in ("gaussian", "orthogonal"):
        for s in range(config.jacobian_seeds):
            gen = torch.Generator().manual_seed(derive_seed(config.seed, "jacobian", kind, s))
            sv = jacobian_singular_values(act, jcp, weights=kind, width=config.jacobian_width,
                                          depth=config.jacobian_depth, param=config.param, generator=gen)
            p10, p50, p90 = torch.quantile(sv, torch.tensor([0.1, 0.5, 0.9], dtype=sv.dtype)).tolist()
            extra = {"sigma_w2": jcp.sigma_w2, "sigma_b2": jcp.sigma_b2, "depth": config.jacobian_depth,
                     "width": config.jacobian_width, "jacobian_seed": s}
            for stat, value in (("jac_sv_p10", p10), ("jac_sv_p50", p50), ("jac_sv_p90", p90),
                                ("jac_sv_spread", p90 / p10 if p10 > 0 else math.inf),
                                ("jac_sv_mean_sq", float((sv**2).mean()))):
                records.add(kind, stat, value, **extra)


def _run(config: PhaseConfig, map_cells: CellMap) -> PhaseResult:
    from initlab.models import activation_module

    torch.set_flush_denormal(True)
    t_start = time.perf_counter()
    activation_module(config.activation, config.param)  # unknown names fail here, before any work
    records = _Records(config)
    t0 = time.perf_counter()
    critical, sigma_w2s, xi_c_at = _theory(config, records)
    timings = {"theory": time.perf_counter() - t0}
    t0 = time.perf_counter()
    info = _load(config)[-1]
    timings["data"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for cell_records in map_cells(run_phase_cell, phase_cells(config, sigma_w2s)):
        records += [{**r, "critical": r["sigma_w2"] == critical.sigma_w2} for r in cell_records]
    timings["training"] = time.perf_counter() - t0
    _trainable_depths(config, records, critical, xi_c_at, int(info["n_classes"]))
    t0 = time.perf_counter()
    _jacobians(config, records, critical)
    timings["jacobian"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    return PhaseResult(config=config, critical=critical, records=list(records), dataset=info, timings=timings)
