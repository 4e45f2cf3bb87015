"""Sweep specs: a TOML file (or a dict) that names the experiment, the settings every cell shares,
the grid, the seeds, the threads per cell and the output directory; parsed and checked here.

.. code-block:: toml

    [sweep]
    experiment = "train"        # train | probe | phase (initlab.sweep.experiments)
    out = "sweeps/depth-study"  # results directory (relative to the current directory)
    seeds = [0, 1, 2]
    threads = 1                 # torch threads per cell = CPUs Ray reserves for it

    [fixed]                     # fields of the experiment's config, the same in every cell
    model = "mlp"               # mlp | cnn | resnet | gpt | FILE.py:FUNCTION (relative to this file)
    dataset = "mnist5k"

    [grid]                      # every combination of these lists, times the seeds, is one cell
    depth = [2, 6, 10]
    init = ["auto", "torch_default"]
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from initlab.errors import InitlabError
from initlab.sweep.experiments import SweepExperiment, get_experiment

__all__ = ["SweepSpec", "load_spec", "parse_spec"]

_SWEEP_KEYS = ("experiment", "name", "out", "seeds", "threads")
_RUN_FIELDS = ("seed", "threads")  # set by [sweep] seeds / threads, never by [fixed] or [grid]
_PATH_FIELDS = ("data_dir",)


@dataclass(frozen=True)
class SweepSpec:
    """A checked sweep spec.

    Attributes:
        experiment: the experiment's name (:data:`initlab.sweep.experiments.EXPERIMENTS`).
        fixed: config fields shared by every cell.
        grid: config field -> the values it takes (in spec order); the cells are their product.
        seeds: one cell per seed for every grid point.
        threads: torch threads per cell (Ray reserves that many CPUs for it).
        out: the results directory (``None``: give one when running).
        name: a label for the report.
        source: the spec file, if it came from one.
    """

    experiment: str
    fixed: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    threads: int = 1
    out: str | None = None
    name: str = ""
    source: str | None = None

    @property
    def spec_experiment(self) -> SweepExperiment:
        """The :class:`~initlab.sweep.experiments.SweepExperiment` it runs."""
        return get_experiment(self.experiment)

    def to_dict(self) -> dict[str, Any]:
        """The spec as TOML-shaped data (``sweep``, ``fixed``, ``grid`` tables)."""
        sweep = {"experiment": self.experiment, "seeds": list(self.seeds), "threads": self.threads}
        if self.name:
            sweep["name"] = self.name
        if self.out is not None:
            sweep["out"] = self.out
        return {"sweep": sweep, "fixed": dict(self.fixed), "grid": {k: list(v) for k, v in self.grid.items()}}


def load_spec(path: str | Path) -> SweepSpec:
    """Read and check the TOML spec at ``path`` (relative ``FILE.py`` models and ``data_dir`` are
    taken relative to the spec's directory).

    Raises:
        FileNotFoundError: no such file.
        InitlabError: not TOML, or a bad spec (the message names the key and the fix).
    """
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sweep spec {str(path)!r} does not exist: pass the path of a .toml file "
                                "(examples: examples/sweeps/)")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InitlabError(f"sweep spec {str(path)!r} is not valid TOML ({exc}): fix the file") from None
    return parse_spec(doc, base=path.parent, source=str(path))


def _table(doc: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = doc.get(name, {})
    if not isinstance(value, Mapping):
        raise InitlabError(f"[{name}] must be a table: write it as [{name}] followed by key = value lines")
    return dict(value)


def _int_list(name: str, value: Any, minimum: int) -> tuple[int, ...]:
    values = value if isinstance(value, list) else [value]
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in values):
        raise InitlabError(f"sweep.{name} = {value!r} is invalid: pass a list of integers >= {minimum}")
    if len(set(values)) != len(values):
        raise InitlabError(f"sweep.{name} = {value!r} repeats a value: list each once")
    return tuple(values)


def _coerce(config: type, name: str, value: Any, base: Path | None) -> Any:
    """``value`` as field ``name`` of ``config`` wants it: an int where only a float is meant
    becomes a float (so ``lr = 1`` and ``lr = 1.0`` are the same cell); relative paths become
    relative to the spec's directory."""
    from initlab.experiments.families import is_factory

    hint = str(typing.get_type_hints(config).get(name, ""))
    if isinstance(value, int) and not isinstance(value, bool) and "float" in hint and "int" not in hint:
        return float(value)
    if base is not None and isinstance(value, str):
        if name == "model" and is_factory(value) and not Path(value.rpartition(":")[0]).is_absolute():
            path, _, fn = value.rpartition(":")
            return f"{(base / path).resolve()}:{fn}"
        if name in _PATH_FIELDS and not Path(value).is_absolute():
            return str((base / value).resolve())
    return value


def _check_fields(exp: SweepExperiment, fixed: dict[str, Any], grid: dict[str, Any]) -> None:
    known = exp.field_names
    for table, keys in (("fixed", fixed), ("grid", grid)):
        for key in keys:
            if key in _RUN_FIELDS:
                where = "seeds = [...]" if key == "seed" else "threads = N"
                raise InitlabError(f"{table}.{key}: set it in [sweep] as {where}, not in [{table}]")
            if key not in known:
                raise InitlabError(f"{table}.{key} is not a setting of experiment {exp.name!r}: use some of "
                                   + ", ".join(k for k in known if k not in _RUN_FIELDS))
    both = sorted(set(fixed) & set(grid))
    if both:
        raise InitlabError(f"{', '.join(both)} is in both [fixed] and [grid]: keep it in one of them")
    for key, value in fixed.items():
        if isinstance(value, (list, dict)):
            raise InitlabError(f"fixed.{key} = {value!r} is not one value: put it under [grid] to sweep "
                               "over it")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise InitlabError(f"grid.{key} = {values!r} is invalid: give a non-empty list, e.g. "
                               f"{key} = [1, 2]")
        if any(isinstance(v, (list, dict)) for v in values):
            raise InitlabError(f"grid.{key} = {values!r} is invalid: give a list of single values")
        if len({repr(v) for v in values}) != len(values):
            raise InitlabError(f"grid.{key} = {values!r} repeats a value: list each once")


def parse_spec(doc: Mapping[str, Any], *, base: str | Path | None = None,
               source: str | None = None) -> SweepSpec:
    """Check a spec given as data (what :func:`load_spec` reads from TOML) and return it.

    Raises:
        InitlabError: an unknown table, key, experiment or config field; a setting in both
            ``[fixed]`` and ``[grid]``; an empty or repeated grid list; bad seeds or threads.

    >>> spec = parse_spec({"sweep": {"experiment": "phase", "seeds": [0, 1]},
    ...                    "grid": {"depth": [2, 4], "sigma_w2": [1.0, "critical"]}})
    >>> spec.grid["depth"], spec.seeds
    ((2, 4), (0, 1))
    """
    extra = sorted(set(doc) - {"sweep", "fixed", "grid"})
    if extra:
        raise InitlabError(f"unknown table [{extra[0]}] in the sweep spec: use [sweep], [fixed] and [grid]")
    sweep = _table(doc, "sweep")
    unknown = sorted(set(sweep) - set(_SWEEP_KEYS))
    if unknown:
        raise InitlabError(f"sweep.{unknown[0]} is not a sweep setting: use some of {', '.join(_SWEEP_KEYS)} "
                           "(experiment settings go under [fixed] or [grid])")
    if "experiment" not in sweep:
        raise InitlabError("the spec names no experiment: add experiment = \"train\" (or probe, phase) "
                           "under [sweep]")
    exp = get_experiment(sweep["experiment"])
    fixed, grid = _table(doc, "fixed"), _table(doc, "grid")
    _check_fields(exp, fixed, grid)
    base_path = Path(base) if base is not None else None
    out = sweep.get("out")
    if out is not None and (not isinstance(out, str) or not out.strip()):
        raise InitlabError(f"sweep.out = {out!r} is invalid: give a directory name, e.g. "
                           "out = \"sweep-results\"")
    name = sweep.get("name", "")
    if not isinstance(name, str):
        raise InitlabError(f"sweep.name = {name!r} is invalid: give a string")
    return SweepSpec(
        experiment=exp.name,
        fixed={k: _coerce(exp.config, k, v, base_path) for k, v in fixed.items()},
        grid={k: tuple(_coerce(exp.config, k, v, base_path) for v in vs) for k, vs in grid.items()},
        seeds=_int_list("seeds", sweep.get("seeds", [0]), 0), threads=_threads(sweep.get("threads", 1)),
        out=out, name=name, source=source)


def _threads(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InitlabError(f"sweep.threads = {value!r} is invalid: pass one integer >= 1 (torch threads "
                           "per cell)")
    return value
