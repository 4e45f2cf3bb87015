"""Shared pieces of the demo experiments: scheme names, seeded initialization of an MLP, a
generator-driven dropout, stable seed derivation, record construction and the SGD step with its
divergence check.

Every experiment initializes weights through :func:`init_mlp_`, which turns a scheme name into an
:mod:`initlab.schemes` spec (:func:`initlab.schemes.named_spec`), picks the gain with
:func:`initlab.gains.gain` and realises the spec in place with :func:`initlab.init.apply_spec_`
and an explicit ``torch.Generator`` — never the global RNG.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import torch
from torch import nn

from initlab.errors import InitlabError
from initlab.fans import compute_fans
from initlab.schemes import Constant, Spec, named_spec

__all__ = [
    "SCHEME_LABELS",
    "MODEL_SCHEMES",
    "GAIN_POLICIES",
    "DatasetLike",
    "GeneratorDropout",
    "derive_seed",
    "scheme_gain",
    "scheme_spec",
    "init_mlp_",
    "make_record",
    "sgd_step",
    "check_choice",
    "check_ints",
    "torch_threads",
    "StepCallback",
    "CellMap",
    "map_here",
    "bind_cell",
    "plural",
    "NAIVE_SCHEMES",
]

#: The deliberately naive starts the demo shows failing (zeros, a constant, tiny and huge weights);
#: no rule of thumb picks them, so the summary's "best classic scheme" leaves them out.
NAIVE_SCHEMES: tuple[str, ...] = ("zeros", "constant", "small", "large")

#: Scheme name -> label used in tables and figures.
SCHEME_LABELS: dict[str, str] = {
    "zeros": "zeros",
    "constant": "constant 0.5",
    "small": "small 0.01·N(0,1)",
    "large": "large N(0,1)",
    "torch_default": "PyTorch default",
    "xavier_normal": "Xavier normal",
    "xavier_uniform": "Xavier uniform",
    "he_normal": "He normal",
    "he_uniform": "He uniform",
    "lsuv": "LSUV",
    "pretrain": "layer-wise pretraining",
    "auto": "auto (initlab)",
}

#: Schemes that :func:`init_mlp_` hands to :func:`initlab.init_model` (the library's own choice per
#: layer: the activation each layer feeds, found by tracing the model).
MODEL_SCHEMES: tuple[str, ...] = ("auto",)

#: How Xavier and He pick their gain: ``"paper"`` — as published (Xavier gain 1, Glorot & Bengio
#: 2010; He gain ``initlab.gains.gain("relu") = sqrt(2)``, He et al. 2015) whatever the
#: activation; ``"activation"`` — both use ``initlab.gains.gain(activation)``.
GAIN_POLICIES: tuple[str, ...] = ("paper", "activation")

#: A progress callback: called once per finished experiment step with a short description.
StepCallback = Callable[[str], None]

#: ``map_cells(run_cell, cells)`` returns ``run_cell(cell)``'s records for each cell, in the order of
#: ``cells``: how an experiment runs its grid of one-run cells. The default, :func:`map_here`, runs
#: them here one after the other; ``initlab demo`` and ``initlab phase`` pass the sweep engine
#: (:func:`initlab.sweep.map_cells`: serial or on Ray, with retries and progress). The records do
#: not depend on it.
CellMap = Callable[[Callable[[Any], list[dict[str, Any]]], Sequence[Any]], list[list[dict[str, Any]]]]


class DatasetLike(Protocol):
    """What the experiments read from an :func:`initlab.data.load_dataset` result."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    n_features: int
    name: str


def check_choice(name: str, value: Any, choices: tuple[Any, ...] | list[Any]) -> Any:
    """Return ``value`` if it is one of ``choices``; raise :class:`InitlabError` naming it.

    >>> check_choice("activation", "tanh", ("tanh", "relu"))
    'tanh'
    """
    if value not in choices:
        raise InitlabError(f"{name}={value!r} is invalid: use one of {', '.join(map(str, choices))}")
    return value


def check_ints(config: Any, names: tuple[str, ...], minimum: int = 1, *, optional: bool = False,
               note: str = "") -> None:
    """Check that each attribute ``names`` of ``config`` is an ``int`` (not a ``bool``) ``>= minimum``
    (or ``None`` when ``optional``); the config classes call it from ``__post_init__``.

    Raises:
        InitlabError: the first bad attribute, named with its value and the fix (``note`` is
            appended to the message, e.g. ``"(0 = all)"``).

    >>> from types import SimpleNamespace
    >>> check_ints(SimpleNamespace(depth=3, width=None), ("depth", "width"), optional=True)
    >>> check_ints(SimpleNamespace(depth=0), ("depth",))
    Traceback (most recent call last):
    ...
    initlab.errors.InitlabError: depth=0 is invalid: pass an integer >= 1
    """
    for name in names:
        value = getattr(config, name)
        if optional and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise InitlabError(f"{name}={value!r} is invalid: pass an integer >= {minimum}"
                               + (f" {note}" if note else ""))


def derive_seed(seed: int, *keys: object) -> int:
    """A stable 63-bit seed for one unit of work, from the run's ``seed`` and string ``keys``
    (CRC-32 of the keys; the same inputs give the same seed in every process and platform).

    >>> derive_seed(0, "forward", "tanh") == derive_seed(0, "forward", "tanh")
    True
    >>> derive_seed(0, "a") != derive_seed(1, "a")
    True
    """
    text = "\x1f".join(str(k) for k in keys).encode()
    return (int(seed) * 1_000_003 + zlib.crc32(text)) % (2**63 - 1)


def scheme_gain(scheme: str, activation: str, policy: str = "paper") -> float:
    """The gain a scheme uses in front of ``activation``.

    .. math::  \\mathrm{std}_{\\mathrm{Xavier}} = g\\sqrt{2/(n_{in}+n_{out})},\\qquad
               \\mathrm{std}_{\\mathrm{He}} = g/\\sqrt{n_{in}}

    With ``policy="paper"`` Xavier has ``g = 1`` (Glorot & Bengio 2010) and He has
    ``g = gain("relu") = sqrt(2)`` (He et al. 2015) for every activation; with
    ``policy="activation"`` both use ``g = initlab.gains.gain(activation)`` (the forward gain
    ``1 / sqrt(E[phi(z)^2])``, z ~ N(0, 1)). Other schemes ignore the gain (returns 1.0).

    Raises:
        InitlabError: unknown ``policy``.

    >>> scheme_gain("xavier_normal", "tanh")
    1.0
    >>> round(scheme_gain("he_normal", "tanh"), 6)
    1.414214
    """
    from initlab.gains import gain

    check_choice("gain_policy", policy, GAIN_POLICIES)
    if scheme.startswith(("xavier", "he")):
        if policy == "activation":
            return float(gain(activation))
        return 1.0 if scheme.startswith("xavier") else float(gain("relu"))
    return 1.0


def scheme_spec(scheme: str, weight_shape: tuple[int, ...], gain: float = 1.0,
                constant: float = 0.5) -> Spec:
    """The :mod:`initlab.schemes` spec of ``scheme`` for a weight of ``weight_shape`` (torch
    layout ``(out, in)``). ``"constant"`` is ``Constant(constant)``; every other name goes to
    :func:`initlab.schemes.named_spec`.

    Raises:
        InitlabError: unknown scheme name.

    >>> scheme_spec("he_normal", (50, 50), gain=2 ** 0.5).std
    0.2
    """
    if scheme == "constant":
        return Constant(float(constant))
    return named_spec(scheme, compute_fans(tuple(weight_shape)), gain)


def _apply_spec_(tensor: torch.Tensor, spec: Spec, generator: torch.Generator) -> None:
    from initlab.init import apply_spec_

    apply_spec_(tensor, spec, generator=generator)


def init_mlp_(
    model: nn.Module,
    scheme: str,
    activation: str,
    *,
    generator: torch.Generator,
    gain_policy: str = "paper",
    constant: float = 0.5,
    head: str = "out",
) -> list[dict[str, Any]]:
    """Initialize every ``nn.Linear`` of ``model`` in place with ``scheme`` and return the plan
    (one dict per layer: name, shape, spec, gain).

    Hidden layers use :func:`scheme_gain` for ``activation``; the linear head (module named
    ``head``) uses gain 1. Biases are zero, except under ``"torch_default"``, where they follow
    ``nn.Linear.reset_parameters`` (``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``) and under
    ``"constant"``, where they are zero too (only weights are constant). ``"auto"``
    (:data:`MODEL_SCHEMES`) is :func:`initlab.init_model`'s choice for the whole model, head and
    biases included (its plan's weight rows are returned; ``gain_policy`` does not apply).
    ``"lsuv"`` and ``"pretrain"`` are not schemes here: the training experiment starts them from
    Xavier normal.

    Raises:
        InitlabError: unknown scheme or gain policy.

    >>> from initlab.models import mlp
    >>> plan = init_mlp_(mlp(4, 3, 2, 2, "tanh"), "zeros", "tanh", generator=torch.Generator())
    >>> [row["layer"] for row in plan]
    ['fc1', 'fc2', 'out']
    """
    check_choice("gain_policy", gain_policy, GAIN_POLICIES)
    if scheme in MODEL_SCHEMES:
        from initlab.model import init_model

        rows = init_model(model, scheme, generator=generator).rows
        return [{"layer": r.module, "shape": tuple(r.shape), "spec": r.spec, "gain": r.gain}
                for r in rows if r.name.endswith(".weight")]
    plan = []
    with torch.no_grad():
        for name, module in model.named_modules():
            if not isinstance(module, nn.Linear):
                continue
            g = 1.0 if name == head else scheme_gain(scheme, activation, gain_policy)
            spec = scheme_spec(scheme, tuple(module.weight.shape), g, constant)
            _apply_spec_(module.weight, spec, generator)
            if module.bias is not None:
                if scheme == "torch_default":
                    bound = 1.0 / math.sqrt(module.weight.shape[1])
                    module.bias.uniform_(-bound, bound, generator=generator)
                else:
                    module.bias.zero_()
            plan.append({"layer": name, "shape": tuple(module.weight.shape), "spec": spec.describe(),
                         "gain": g})
    return plan


class GeneratorDropout(nn.Module):
    """Inverted dropout whose masks come from an explicit ``torch.Generator`` (``nn.Dropout``
    reads the global RNG). In training mode each entry is kept with probability ``1 - p`` and
    scaled by ``1 / (1 - p)``; in eval mode it is the identity.

    Source: Srivastava et al., "Dropout: a simple way to prevent neural networks from overfitting",
    2014.

    >>> d = GeneratorDropout(0.5, torch.Generator().manual_seed(0)).eval()
    >>> d(torch.ones(3)).tolist()
    [1.0, 1.0, 1.0]
    """

    def __init__(self, p: float, generator: torch.Generator) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise InitlabError(f"dropout={p!r} is invalid: pass a probability in [0, 1)")
        self.p = float(p)
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.full_like(x, 1.0 - self.p)
        mask = torch.bernoulli(keep, generator=self.generator)
        return x * mask / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def plural(n: float, word: str, many: str | None = None) -> str:
    """``n`` and ``word`` in the number that fits: the singular for exactly 1, else ``many``
    (default ``word + "s"``). For the reports' sentences ("3 epochs", "1 seed").

    >>> plural(1, "epoch"), plural(3, "epoch"), plural(2, "child", "children"), plural(1000, "step")
    ('1 epoch', '3 epochs', '2 children', '1,000 steps')
    """
    shown = f"{n:,}" if isinstance(n, int) and not isinstance(n, bool) else f"{n:g}"
    return f"{shown} {word if n == 1 else (many or word + 's')}"


def make_record(experiment: str, scheme: str | None, activation: str | None, layer: Any, stat: str,
                value: Any, epoch: Any = None, seed: int | None = None, **extra: Any) -> dict[str, Any]:
    """One tidy record (see :mod:`initlab.records`); tensors and NumPy scalars become floats.

    >>> make_record("forward", "small", "tanh", 1, "std", 0.5, seed=0)["value"]
    0.5
    """
    if hasattr(value, "item"):
        value = value.item()
    rec = {"experiment": experiment, "scheme": scheme, "activation": activation, "layer": layer,
           "stat": stat, "value": value, "epoch": epoch, "seed": seed}
    rec.update(extra)
    return rec


def map_here(run_cell: Callable[[Any], list[dict[str, Any]]],
             cells: Sequence[Any]) -> list[list[dict[str, Any]]]:
    """The default :data:`CellMap`: ``run_cell`` on each of ``cells``, here, one after the other.

    >>> map_here(lambda c: [{"value": c}], [1, 2])
    [[{'value': 1}], [{'value': 2}]]
    """
    return [run_cell(cell) for cell in cells]


def bind_cell(run: Callable[[Any, Any], list[dict[str, Any]]], dataset: Any,
              on_step: StepCallback | None = None,
              label: Callable[[Any], str] = str) -> Callable[[Any], list[dict[str, Any]]]:
    """``run(cell, dataset)`` as the one-argument cell function a :data:`CellMap` calls: the data
    set already loaded travels with it, and after each finished cell ``on_step(label(cell))``
    moves the caller's progress bar (in the process that ran the cell: the serial runner's, the
    caller's).

    >>> steps = []
    >>> run_cell = bind_cell(lambda cell, ds: [{"value": cell * ds}], 10, steps.append, lambda c: f"cell {c}")
    >>> run_cell(2), steps
    ([{'value': 20}], ['cell 2'])
    """
    def run_cell(cell: Any) -> list[dict[str, Any]]:
        records = run(cell, dataset)
        if on_step is not None:
            on_step(label(cell))
        return records

    return run_cell


def sgd_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
             y: torch.Tensor) -> float | None:
    """One optimiser step on the mean cross-entropy of the mini-batch ``(x, y)``, unless the loss
    is not finite (the run has diverged): then nothing is updated and ``None`` is returned.

    .. math::  L = -\\frac{1}{B}\\sum_{i=1}^{B} \\log \\mathrm{softmax}(f(x_i))_{y_i},\\qquad
               \\theta \\leftarrow \\mathrm{optimizer}(\\theta, \\nabla_\\theta L)

    Args:
        model: maps ``x`` of shape ``(B, n_features)`` to logits ``(B, n_classes)``.
        optimizer: over ``model``'s parameters (SGD, with or without momentum, in initlab's
            experiments); its gradients are cleared (``set_to_none``) before the backward pass.
        x: float inputs ``(B, n_features)``.
        y: int64 class labels ``(B,)`` in ``[0, n_classes)``.

    Returns:
        The loss before the step (a Python float), or ``None`` if it was NaN or infinite.

    Raises:
        Whatever ``torch.nn.functional.cross_entropy`` raises for mismatched shapes or labels.

    Source: Robbins & Monro, "A stochastic approximation method", 1951 (stochastic gradient
    descent).

    >>> from initlab.models import mlp
    >>> model = mlp(4, 8, 1, 3)
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> g = torch.Generator().manual_seed(0)
    >>> loss = sgd_step(model, opt, torch.randn(16, 4, generator=g), torch.arange(16) % 3)
    >>> isinstance(loss, float)
    True
    >>> sgd_step(model, opt, torch.full((2, 4), float("nan")), torch.tensor([0, 1])) is None
    True
    """
    loss = nn.functional.cross_entropy(model(x), y)
    if not torch.isfinite(loss):
        return None
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


@contextmanager
def torch_threads(threads: int) -> Iterator[int]:
    """Run the block with ``threads`` torch intra-op threads and restore the previous count after.

    Training results depend on the thread count (a matmul split over threads sums in another
    order, and over hundreds of SGD steps the rounding differences grow), so the experiments
    (``initlab demo``, ``initlab phase``) set it for the run and record it.

    Args:
        threads: threads for ``torch.set_num_threads``; ``0`` keeps torch's current setting.

    Yields:
        the thread count in effect inside the block.

    Raises:
        InitlabError: ``threads`` is not an integer ``>= 0``.

    >>> with torch_threads(1) as n:
    ...     n == torch.get_num_threads() == 1
    True
    """
    from types import SimpleNamespace

    check_ints(SimpleNamespace(threads=threads), ("threads",), 0, note="(0 = torch's default)")
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)
