"""Saxe et al. 2013: how long a deep linear network takes to learn, against its depth, from
random orthogonal and from scaled random Gaussian weights.

A deep linear net ``y = W_D ... W_1 x`` on whitened inputs (``E[x x^T] = I``) trained by
full-batch gradient descent on the mean squared error follows

.. math::  L(W) = \\tfrac12 \\lVert W_D \\cdots W_1 - \\Sigma_{31} \\rVert_F^2 + \\text{const},
           \\qquad \\Sigma_{31} = E[y x^\\top]

(Saxe et al., eq. 2-3), so one step on all examples (one epoch) is one gradient step on this
loss. Ours: ``x`` = the mnist5k training digits projected on their top ``n_components``
principal components and whitened, ``y`` = the centred one-hot labels; hidden width ``width``.
Learning time = the epochs until ``||W_D...W_1 - Sigma_31||^2 <= criterion * ||Sigma_31||^2``,
at the best learning rate of the grid ``lr = s / depth`` (``s`` in ``lr_scales``; Saxe et al.
optimise it per depth, and the ``1/depth`` keeps the product's step size the same at every
depth). Weights: ``orthogonal`` (:func:`initlab.init.orthogonal_`, gain 1) or ``gaussian``
(:func:`initlab.init.normal_`, std ``1/sqrt(fan_in)``).

Records (experiment ``"saxe2013"``, extras ``source``, ``depth``): ``learning_time`` (epochs;
``None`` when no learning rate reached the criterion within ``max_steps``; extras ``lr``,
``censored``, ``max_steps``), ``learning_time_at_lr`` per learning rate (extras ``lr``,
``lr_scale``, ``diverged``), ``initial_error`` (the relative error at the start), the paper's
findings and the verdicts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch

from initlab.experiments.common import check_ints, derive_seed
from initlab.experiments.reproduce.common import (
    Reproduction,
    check_positive,
    dataset,
    paper_record,
    seed_stats,
    seeds_of,
    seeds_text,
    verdict_record,
)

__all__ = ["Saxe2013Config", "Saxe2013Cell", "cells", "run_cell", "conclude", "describe", "target_map",
           "learning_time", "REPRODUCTION"]

NAME = "saxe2013"
SCHEMES = ("orthogonal", "gaussian")
_DIVERGED = 1e6  # a relative error this large: the step size was too large for this start
_QUICK = {"depths": (1, 4, 16), "lr_scales": (0.5, 2.0), "max_steps": 300, "n_components": 16, "width": 16,
          "seeds": 1}


@dataclass(frozen=True)
class Saxe2013Config:
    """Configuration of the deep-linear-network reproduction (full run; :meth:`quick` for tests).

    Attributes:
        dataset, data_dir: the inputs and labels (mnist5k's 4,000 training digits).
        n_components: principal components kept (the whitened input's dimension).
        width: hidden units of every hidden layer (the output has ``n_classes`` units).
        depths: numbers of weight matrices ``D`` (1: plain linear regression).
        lr_scales: the learning-rate grid, ``lr = s / D``; the fastest one counts.
        max_steps: gradient steps (epochs) before a run counts as not learned.
        criterion: learned when the squared error of the product is at most this share of
            ``||Sigma_31||^2``.
        seed: data split and first weight seed; ``seeds``: weight seeds ``seed, seed+1, ...``.
    """

    dataset: str = "mnist5k"
    data_dir: str | None = None
    n_components: int = 32
    width: int = 32
    depths: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 100)
    lr_scales: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)
    max_steps: int = 1_000
    criterion: float = 0.1
    seed: int = 0
    seeds: int = 3

    def __post_init__(self) -> None:
        check_ints(self, ("n_components", "width", "max_steps", "seeds"))
        check_ints(self, ("seed",), 0)
        check_positive(self, ("criterion",))
        object.__setattr__(self, "depths", tuple(sorted({int(d) for d in self.depths})))
        object.__setattr__(self, "lr_scales", tuple(float(s) for s in self.lr_scales))
        from types import SimpleNamespace

        for d in self.depths:
            check_ints(SimpleNamespace(depth=d), ("depth",))
        for s in self.lr_scales:
            check_positive(SimpleNamespace(lr_scale=s), ("lr_scale",))

    @classmethod
    def quick(cls, **overrides: Any) -> Saxe2013Config:
        """The test-sized run: depths 1, 4, 16, width 16, two learning rates, 300 steps, one seed."""
        return cls(**{**_QUICK, **overrides})


@dataclass(frozen=True)
class Saxe2013Cell:
    """One learning-time measurement: a depth, a weight distribution, a seed."""

    config: Saxe2013Config
    depth: int
    scheme: str
    seed: int


def cells(config: Saxe2013Config) -> list[Saxe2013Cell]:
    """Every (depth, scheme, seed) measurement."""
    return [Saxe2013Cell(config, d, scheme, seed) for d in config.depths for scheme in SCHEMES
            for seed in seeds_of(config)]


@lru_cache(maxsize=2)
def target_map(name: str, data_dir: str | None, seed: int, n_components: int) -> torch.Tensor:
    """:math:`\\Sigma_{31} = \\frac1n Y_c^\\top X_w` (float64, ``(n_classes, n_components)``): the
    input-output correlation of the whitened top principal components ``X_w`` (``X_w^T X_w / n = I``)
    of the centred training inputs and the centred one-hot labels ``Y_c``.

    Raises:
        InitlabError: ``n_components`` exceeds the number of features or examples.
    """
    from initlab.errors import InitlabError

    ds = dataset(name, data_dir, seed, None)
    x = ds.x_train.double()
    n = x.shape[0]
    if n_components > min(x.shape):
        raise InitlabError(f"n_components={n_components} is invalid: {ds.name} has {x.shape[1]} features and "
                           f"{n} training examples; pass at most {min(x.shape)}")
    u, _, _ = torch.linalg.svd(x - x.mean(0), full_matrices=False)
    xw = u[:, :n_components] * math.sqrt(n)
    y = torch.nn.functional.one_hot(ds.y_train, int(ds.n_classes)).double()
    return (y - y.mean(0)).T @ xw / n


def _weights(shapes: list[tuple[int, int]], scheme: str, gen: torch.Generator) -> list[torch.Tensor]:
    from initlab import init

    out = []
    for rows, cols in shapes:
        w = torch.empty(rows, cols, dtype=torch.float64)
        if scheme == "orthogonal":
            init.orthogonal_(w, generator=gen)
        else:
            init.normal_(w, 0.0, 1.0 / math.sqrt(cols), generator=gen)
        out.append(w)
    return out


def learning_time(weights: list[torch.Tensor], target: torch.Tensor, lr: float, max_steps: int,
                  criterion: float) -> tuple[int | None, bool, float]:
    """Full-batch gradient descent on :math:`\\frac12\\lVert W_D\\cdots W_1 - T\\rVert_F^2` from
    copies of ``weights`` (``W_1`` first); returns ``(steps, diverged, initial relative error)``
    with ``steps`` the first step count whose relative error
    :math:`\\lVert W_D\\cdots W_1 - T\\rVert_F^2 / \\lVert T\\rVert_F^2` is at most ``criterion``
    (``None`` if not within ``max_steps``, or if the error passed :data:`_DIVERGED` or became
    non-finite, which is ``diverged``).

    >>> t = torch.eye(2, dtype=torch.float64)
    >>> learning_time([torch.zeros(2, 2, dtype=torch.float64) + 0.5], t, 1.0, 10, 0.01)[0]
    1
    """
    ws = [w.clone().requires_grad_(True) for w in weights]
    scale = float((target ** 2).sum())
    first = math.nan
    for step in range(max_steps + 1):
        prod = ws[0]
        for w in ws[1:]:
            prod = w @ prod
        loss = 0.5 * ((prod - target) ** 2).sum()
        rel = 2.0 * loss.item() / scale
        first = rel if step == 0 else first
        if not math.isfinite(rel) or rel > _DIVERGED:
            return None, True, first
        if rel <= criterion:
            return step, False, first
        if step == max_steps:
            break
        grads = torch.autograd.grad(loss, ws)
        with torch.no_grad():
            for w, g in zip(ws, grads, strict=True):
                w.sub_(lr * g)
    return None, False, first


def run_cell(cell: Saxe2013Cell) -> list[dict[str, Any]]:
    """Measure one learning time (the fastest over the learning-rate grid); return its records.

    Raises:
        DataError: the data set cannot be loaded.
    """
    c, d = cell.config, cell.depth
    target = target_map(c.dataset, c.data_dir, c.seed, c.n_components)
    shapes = [(c.width if i < d - 1 else target.shape[0], c.n_components if i == 0 else c.width)
              for i in range(d)]
    weights = _weights(shapes, cell.scheme, torch.Generator().manual_seed(derive_seed(cell.seed, NAME, d,
                                                                                      cell.scheme)))
    common = {"experiment": NAME, "scheme": cell.scheme, "activation": "linear", "layer": None, "epoch": None,
              "seed": cell.seed, "source": "ours", "depth": d}
    records, best, first = [], (None, None), math.nan
    for s in c.lr_scales:
        steps, diverged, first = learning_time(weights, target, s / d, c.max_steps, c.criterion)
        records.append({**common, "stat": "learning_time_at_lr", "value": steps, "lr": s / d, "lr_scale": s,
                        "diverged": diverged})
        if steps is not None and (best[0] is None or steps < best[0]):
            best = (steps, s / d)
    records.append({**common, "stat": "initial_error", "value": first})
    records.append({**common, "stat": "learning_time", "value": best[0], "lr": best[1],
                    "censored": best[0] is None, "max_steps": c.max_steps, "criterion": c.criterion})
    return records


def _times(records: list[dict[str, Any]], scheme: str, cap: int) -> dict[int, float]:
    """depth -> median learning time (a run that did not learn counts as ``cap + 1``: the median is
    then a lower bound)."""
    by_depth: dict[int, list[float]] = {}
    for r in records:
        if r["stat"] == "learning_time" and r["scheme"] == scheme and r.get("source") == "ours":
            value = cap + 1.0 if r["value"] is None else float(r["value"])
            by_depth.setdefault(int(r["depth"]), []).append(value)
    return {d: seed_stats(v)[0] for d, v in sorted(by_depth.items())}


def _show(t: float, cap: int) -> str:
    return f"> {cap}" if t > cap else f"{t:.0f}"


def _epochs(t: float, cap: int) -> str:
    """``"1 epoch"``, ``"31 epochs"``, ``"> 1000 epochs"``."""
    return f"{_show(t, cap)} epoch" + ("" if _show(t, cap) == "1" else "s")


#: Learning times within this factor of each other count as flat.
FLAT_FACTOR = 2.0


def _plateau(times: dict[int, float], cap: int) -> int | None:
    """The shallowest depth from which every deeper median learning time lies within
    :data:`FLAT_FACTOR` of the others (at least two depths, all learned within ``cap``); ``None``
    when there is none.

    >>> _plateau({1: 1, 2: 8, 8: 20, 32: 25}, 100), _plateau({1: 1, 2: 8, 8: 20, 32: 70}, 100)
    (8, None)
    """
    depths = sorted(times)
    for i, d in enumerate(depths[:-1]):
        tail = [times[e] for e in depths[i:]]
        if max(tail) <= cap and max(tail) <= FLAT_FACTOR * max(min(tail), 1.0):
            return d
    return None


def _orthogonal_verdict(orth: dict[int, float], cap: int) -> dict[str, Any]:
    depths = sorted(orth)
    listing = ", ".join(f"D={d}: {_show(orth[d], cap)}" for d in depths)
    start = _plateau(orth, cap)
    flat = start is not None and start <= depths[len(depths) // 2]  # flat over the deeper half at least
    claim = "orthogonal: learning time independent of depth, beyond a finite delay"
    if not flat:
        return verdict_record(NAME, claim, False, f"does not agree: orthogonal learning time (median epochs) "
                              f"{listing} keeps growing over the deeper half of the depths (by more than a "
                              f"factor {FLAT_FACTOR:g}, or some nets did not learn).")
    tail = [orth[d] for d in depths if d >= start]
    ratio = max(tail) / max(min(tail), 1.0)
    grows = (f"grows from {_epochs(orth[depths[0]], cap)} at D={depths[0]} to about "
             f"{_epochs(orth[start], cap)} by D={start}, then " if start > depths[0] else "")
    return verdict_record(NAME, claim, True, f"agrees: orthogonal learning time {grows}stays flat up to "
                          f"D={depths[-1]} (within a factor {ratio:.2f}, at most {FLAT_FACTOR:g}): the "
                          f"paper's finite, depth-independent delay. Median epochs: {listing}.")


def conclude(config: Saxe2013Config, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The paper's findings and two verdicts: orthogonal learning time stops growing with depth
    (from some depth on, over at least the deeper half of the depths, its median varies by at most
    :data:`FLAT_FACTOR`; the text says where it stops growing), and Gaussian learning time grows
    with depth (its median at the deepest net is over twice that at depth 2 or more — the
    shallowest net with a hidden layer — and over twice the orthogonal one there)."""
    cap = config.max_steps
    out = [paper_record(NAME, "orthogonal", "linear", "finding", None, where="sec. 4-5",
                        text="learning time is independent of depth: a finite, depth-independent delay "
                             "relative to a shallow net"),
           paper_record(NAME, "gaussian", "linear", "finding", None, where="sec. 4-5",
                        text="learning time grows with depth (scaled random Gaussian weights)")]
    orth, gauss = _times(records, "orthogonal", cap), _times(records, "gaussian", cap)
    if len(orth) < 2 or len(gauss) < 2:
        return out
    depths = sorted(orth)
    out.append(_orthogonal_verdict(orth, cap))
    shallow = min(d for d in depths if d >= 2) if any(d >= 2 for d in depths) else depths[0]
    top = depths[-1]
    grows = gauss[top] > 2 * gauss[shallow] and gauss[top] > 2 * orth[top]
    listing = ", ".join(f"D={d}: {_show(gauss[d], cap)}" for d in depths)
    out.append(verdict_record(
        NAME, "Gaussian: learning time grows with depth", grows,
        f"{'agrees' if grows else 'does not agree'}: Gaussian learning time (median epochs) {listing}; at "
        f"D={top} {_show(gauss[top], cap)} against {_show(gauss[shallow], cap)} at D={shallow} and "
        f"{_show(orth[top], cap)} for orthogonal weights."))
    return out


def describe(config: Saxe2013Config) -> dict[str, str]:
    """The section's texts for ``config``."""
    c = config
    return {
        "citation": "A. M. Saxe, J. L. McClelland, S. Ganguli, \"Exact solutions to the nonlinear dynamics "
                    "of learning in deep linear neural networks\", ICLR 2014 (arXiv 1312.6120, 2013).",
        "claim": "In a deep linear network, random orthogonal weights (every singular value of the "
                 "product 1) give a learning time that does not grow with depth, a finite delay relative "
                 "to a shallow net; scaled random Gaussian weights (variance 1/fan_in, norm-preserving only "
                 "on average, their product's singular values spread with depth) learn more slowly the "
                 "deeper the net.",
        "paper_setup": "Deep linear networks of depth up to about 100 trained by gradient descent, the "
                       "learning rate optimised for each depth; learning time (epochs to an error "
                       "criterion) against depth, shown as curves (no table of numbers).",
        "our_setup": f"Depths {', '.join(map(str, c.depths))} (weight matrices), hidden width {c.width}; "
                     f"inputs the top {c.n_components} principal components of {c.dataset}'s training "
                     "digits, whitened; targets the centred one-hot labels; full-batch gradient descent "
                     "(one step = one epoch) on the squared error; learning time = epochs until the "
                     "squared error of the product of the weight matrices is at most "
                     f"{c.criterion:g} × ‖Σ31‖², where Σ31 = E[y xᵀ] is the input-output correlation the "
                     "net has to learn (a deep linear net on whitened inputs learns exactly that map), at "
                     f"the fastest of lr = s / depth, s in {{{', '.join(f'{s:g}' for s in c.lr_scales)}}}; "
                     f"at most {c.max_steps:,} epochs; {seeds_text(c)}.",
        "scale": f"Width {c.width} and {c.n_components} input dimensions instead of the paper's larger nets; "
                 f"a {len(c.lr_scales)}-value learning-rate grid per depth instead of a full optimisation; "
                 f"runs are cut at {c.max_steps:,} epochs, so the slowest times are lower bounds.",
    }


REPRODUCTION = Reproduction(
    name=NAME,
    title="Saxe et al. 2013: deep linear nets — learning time vs depth, orthogonal vs Gaussian",
    summary="Saxe et al. 2013: deep linear nets (depth 1-100), learning time vs depth, orthogonal vs "
            "scaled Gaussian",
    config=Saxe2013Config,
    cells=cells,
    run_cell=run_cell,
    conclude=conclude,
    describe=describe,
)
