"""A spec's grid as cells, and the key of each: the SHA-256 of the canonical JSON of the cell's full
config (every field, defaults included, and the code versions that make its numbers).

.. math::  \\text{key} = \\mathrm{sha256}(\\mathrm{json}(\\{experiment, config, versions\\},
           \\text{sorted keys, no spaces}))

The same config gives the same key in every process and on every machine, so a re-run skips
finished cells and no cell is stored twice. A ``FILE.py:FUNCTION`` model enters the key by the
file's content hash and the function's name, not by where the file lies.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import asdict, dataclass
from typing import Any

from initlab.errors import InitlabError
from initlab.sweep.experiments import SweepExperiment, get_experiment
from initlab.sweep.random_search import Choice
from initlab.sweep.spec import SweepSpec

__all__ = ["CELL_SCHEMA", "MAX_CELLS", "Cell", "canonical_json", "code_versions", "cell_key", "expand",
           "spec_hash"]

#: The most cells one spec may make (grid product x random points x seeds): every cell is built and
#: keyed before anything runs (0.4-0.6 ms each on a loaded 2-core machine), so a grid typo such as
#: ``depth = [...1000 values...]`` times a few other axes would expand for hours, silently, and a
#: sweep that large is a cluster's work split over several specs anyway.
MAX_CELLS = 100_000

#: Version of what a cell's records mean; bump it when an experiment's records change.
CELL_SCHEMA = 1


@dataclass(frozen=True)
class Cell:
    """One unit of work: ``config`` (the experiment's dataclass) and its ``key``; ``params`` are
    the spec values that vary between cells (grid axes and ``seed``), for tables and figures."""

    key: str
    experiment: str
    params: dict[str, Any]
    config: Any

    @property
    def label(self) -> str:
        """``depth=4 init=auto seed=0``: the varying parameters in one line."""
        return " ".join(f"{k}={v}" for k, v in self.params.items())


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no spaces (tuples as lists); NaN and infinities are refused.

    >>> canonical_json({"b": (1, 2.5), "a": None})
    '{"a":null,"b":[1,2.5]}'
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False, ensure_ascii=True)


def code_versions() -> dict[str, Any]:
    """The versions a cell's numbers depend on: initlab, torch and :data:`CELL_SCHEMA`."""
    import torch

    from initlab import __version__

    return {"initlab": __version__, "torch": torch.__version__, "cell_schema": CELL_SCHEMA}


def _key_view(config: Any) -> dict[str, Any]:
    from initlab.experiments.families import factory_sha256, is_factory

    view = asdict(config)
    model = view.get("model")
    if isinstance(model, str) and is_factory(model):
        view["model"] = {"file_sha256": factory_sha256(model), "function": model.rpartition(":")[2]}
    return view


def cell_key(experiment: str, config: Any, versions: dict[str, Any] | None = None) -> str:
    """The cell's key: SHA-256 (hex) of the canonical JSON of the experiment, the full config and
    :func:`code_versions`.

    >>> from initlab.experiments.phase import PhaseCell
    >>> cell_key("phase", PhaseCell(depth=2)) == cell_key("phase", PhaseCell(depth=2))
    True
    >>> cell_key("phase", PhaseCell(depth=2)) != cell_key("phase", PhaseCell(depth=3))
    True
    """
    doc = {"experiment": experiment, "config": _key_view(config), "versions": versions or code_versions()}
    return hashlib.sha256(canonical_json(doc).encode()).hexdigest()


def _build(exp: SweepExperiment, values: dict[str, Any]) -> Any:
    """The config of ``values`` (every field given), checked (``exp.check``)."""
    config = exp.config(**(exp.prepare(values) if exp.prepare else values))
    if exp.check is not None:
        exp.check(config)
    return config


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _make(exp: SweepExperiment, values: dict[str, Any], params: dict[str, Any]) -> Any:
    """The config of one cell (``values``: every field given); a bad value names the cell by its
    ``params``."""
    try:
        return _build(exp, values)
    except (InitlabError, TypeError, ValueError) as exc:
        label = " ".join(f"{k}={v}" for k, v in params.items())
        raise InitlabError(f"cell {label}: {_first_line(exc)}") from None


def _check_choices(exp: SweepExperiment, spec: SweepSpec, first: dict[str, Any]) -> None:
    """Build a config with every value of every ``[random]`` ``choice`` (in the first cell, ``first``:
    all its fields given), so a bad value is refused before any work even when no sample draws it,
    as every ``[grid]`` value is (each is in some cell).

    Raises:
        InitlabError: naming the key, the bad value and why.
    """
    for key, dist in (spec.random.params.items() if spec.random is not None else ()):
        if not isinstance(dist, Choice):
            continue
        for value in dist.values:
            try:
                _build(exp, {**first, key: value})
            except (InitlabError, TypeError, ValueError) as exc:
                raise InitlabError(f"random.{key} = {{ choice = {list(dist.values)!r} }}: {key}={value!r} is "
                                   f"invalid: {_first_line(exc)}: fix or remove it") from None


def _count(n: int, noun: str) -> str:
    """``1 seed``, ``2 seeds``: ``n`` and ``noun``, plural unless ``n`` is 1."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def _check_count(spec: SweepSpec) -> None:
    """Refuse a spec of more than :data:`MAX_CELLS` cells (grid product x ``[random] samples`` x
    seeds), counted from the sizes alone: before any point is drawn or cell built.

    Raises:
        InitlabError: naming the count, each axis's size and the fix.
    """
    samples = spec.random.samples if spec.random is not None else 1
    n = math.prod(len(values) for values in spec.grid.values()) * samples * len(spec.seeds)
    if n <= MAX_CELLS:
        return
    drawn = [_count(samples, "random point")] if spec.random is not None else []
    grid = [f"{len(v):,} {a}" for a, v in spec.grid.items()]
    shape = " x ".join([*grid, *drawn, _count(len(spec.seeds), "seed")])
    raise InitlabError(f"the spec makes {n:,} cells ({shape}), more than {MAX_CELLS:,}: "
                       "narrow the grid, or split it into several specs")


def expand(spec: SweepSpec) -> list[Cell]:
    """Every cell of ``spec``: the product of the grid's lists (in spec order, the last varying
    fastest) times the ``[random]`` points (in draw order, :meth:`SweepSpec.random_points`) times
    the seeds (fastest of all). A cell's ``params`` are the grid's values, the drawn values (keys
    sorted) and ``seed``. Each config is built, so a bad value is refused here, before any work; a
    point drawn twice (a small ``randint`` or ``choice``) is one cell. Every value of a ``choice``
    is built into a config too (in the first cell), drawn or not.

    Raises:
        InitlabError: a cell whose config is invalid (the message names the cell and the value); a
            ``choice`` value that makes an invalid config (the message names the key and the value);
            more than :data:`MAX_CELLS` cells (counted from the sizes, before any point is drawn or
            cell built).

    >>> from initlab.sweep.spec import parse_spec
    >>> cells = expand(parse_spec({"sweep": {"experiment": "phase", "seeds": [0, 1]},
    ...                            "grid": {"depth": [2, 4]}}))
    >>> [c.label for c in cells]
    ['depth=2 seed=0', 'depth=2 seed=1', 'depth=4 seed=0', 'depth=4 seed=1']
    """
    exp = get_experiment(spec.experiment)
    versions = code_versions()
    axes = list(spec.grid)
    cells: dict[str, Cell] = {}
    _check_count(spec)
    points = spec.random_points()
    first = {**spec.fixed, **{a: spec.grid[a][0] for a in axes}, **points[0], "seed": spec.seeds[0],
             "threads": spec.threads}
    _check_choices(exp, spec, first)
    for *combo, point, seed in itertools.product(*(spec.grid[a] for a in axes), points, spec.seeds):
        params = {**dict(zip(axes, combo, strict=True)), **point, "seed": seed}
        config = _make(exp, {**spec.fixed, **params, "threads": spec.threads}, params)
        key = cell_key(exp.key_name, config, versions)
        cells.setdefault(key, Cell(key, exp.name, params, config))
    return list(cells.values())


def spec_hash(cells: list[Cell]) -> str:
    """The sweep's identity: SHA-256 of its sorted cell keys (so two specs that make the same
    cells are the same sweep, however they are written)."""
    return hashlib.sha256(canonical_json(sorted(c.key for c in cells)).encode()).hexdigest()
