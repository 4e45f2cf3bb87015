"""Sweep specs: a TOML file (or a dict) that names the experiment, the settings every cell shares,
the grid, the seeds, the threads per cell and the output directory; parsed and checked here.

.. code-block:: toml

    [sweep]
    experiment = "train"        # train | probe | phase | training (initlab.sweep.experiments)
    out = "sweeps/depth-study"  # results directory (relative to the current directory)
    seeds = [0, 1, 2]
    threads = 1                 # torch threads per cell = CPUs Ray reserves for it

    [fixed]                     # fields of the experiment's config, the same in every cell
    model = "mlp"               # mlp | cnn | resnet | gpt | FILE.py:FUNCTION (relative to this file)
    dataset = "mnist5k"

    [grid]                      # every combination of these lists, times the seeds, is one cell
    depth = [2, 6, 10]
    init = ["auto", "torch_default"]

    [random]                    # optional: times `samples` drawn points (initlab.sweep.random_search)
    samples = 8
    seed = 0
    lr = { loguniform = [1e-3, 1e-1] }
"""

from __future__ import annotations

import itertools
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from initlab.errors import InitlabError
from initlab.sweep.experiments import SweepExperiment, get_experiment
from initlab.sweep.random_search import Choice, RandomSearch, parse_random

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
        random: the ``[random]`` table (``None``: none): the cells are the grid's product times
            its drawn points (:meth:`random_points`).
        seeds: one cell per seed for every grid point (and drawn point).
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
    random: RandomSearch | None = None

    @property
    def axes(self) -> tuple[str, ...]:
        """What varies between cells, in a cell's ``params`` order: the grid's keys (spec order),
        the ``[random]`` keys (sorted), ``seed``."""
        return (*self.grid, *(self.random.params if self.random else ()), "seed")

    def random_points(self) -> list[dict[str, Any]]:
        """The drawn points of ``[random]`` as config values (an int drawn for a float field becomes
        a float); ``[{}]`` without ``[random]``: one point that sets nothing."""
        if self.random is None:
            return [{}]
        config = self.spec_experiment.config
        return [{k: _coerce(config, k, v, None) for k, v in p.items()} for p in self.random.points()]

    @property
    def spec_experiment(self) -> SweepExperiment:
        """The :class:`~initlab.sweep.experiments.SweepExperiment` it runs."""
        return get_experiment(self.experiment)

    def to_dict(self) -> dict[str, Any]:
        """The spec as TOML-shaped data (``sweep``, ``fixed``, ``grid`` and, if any, ``random``
        tables); :func:`parse_spec` reads it back as the same spec."""
        sweep = {"experiment": self.experiment, "seeds": list(self.seeds), "threads": self.threads}
        if self.name:
            sweep["name"] = self.name
        if self.out is not None:
            sweep["out"] = self.out
        doc = {"sweep": sweep, "fixed": dict(self.fixed), "grid": {k: list(v) for k, v in self.grid.items()}}
        if self.random is not None:
            doc["random"] = self.random.to_dict()
        return doc


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


def _check_fields(exp: SweepExperiment, fixed: dict[str, Any], grid: dict[str, Any],
                  drawn: RandomSearch | None) -> None:
    known = exp.field_names
    tables = {"fixed": fixed, "grid": grid, "random": drawn.params if drawn else {}}
    for table, keys in tables.items():
        for key in keys:
            if key in _RUN_FIELDS:
                where = "seeds = [...]" if key == "seed" else "threads = N"
                raise InitlabError(f"{table}.{key}: set it in [sweep] as {where}, not in [{table}]")
            if key not in known:
                raise InitlabError(f"{table}.{key} is not a setting of experiment {exp.name!r}: use some of "
                                   + ", ".join(k for k in known if k not in _RUN_FIELDS))
    for (one, a), (other, b) in itertools.combinations(tables.items(), 2):
        both = sorted(set(a) & set(b))
        if both:
            raise InitlabError(f"{', '.join(both)} is in both [{one}] and [{other}]: keep it in one of them")
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
    if drawn is not None:
        _check_kinds(exp, drawn)


def _check_repeats(shown: str, key: str, written: Sequence[Any], values: Sequence[Any]) -> None:
    """Refuse a list whose ``values`` (the spec's ``written`` values as :func:`_coerce` takes them)
    repeat one: ``lr = [1, 1.0]`` is one cell twice, and the sweep would silently have fewer cells
    than the spec says. ``shown`` is the list as the spec wrote it, for the message.

    Raises:
        InitlabError: naming the list, and the two values written that are one value.
    """
    first: dict[str, int] = {}
    for i, value in enumerate(values):
        j = first.setdefault(repr(value), i)
        if j != i:
            a, b = written[j], written[i]
            same = "" if repr(a) == repr(b) else f": {a!r} and {b!r} are the same {key} ({value!r})"
            raise InitlabError(f"{shown} repeats a value{same}: list each once")


def _check_kinds(exp: SweepExperiment, drawn: RandomSearch) -> None:
    """A distribution of numbers only for a number setting, of floats only for a float one."""
    hints = typing.get_type_hints(exp.config)
    for key, dist in drawn.params.items():
        hint = hints.get(key)
        text = getattr(hint, "__name__", str(hint))
        numeric = "int" in text or "float" in text
        (name, args), = dist.to_dict().items()
        shown = f"random.{key} = {{ {name} = {args!r} }}"
        if dist.kind == "float" and "float" not in text:
            fix = "use randint = [LOW, HIGH]" if numeric else "use choice = [...]"
            raise InitlabError(f"{shown} draws floats, but {key} takes {text} values: {fix}")
        if dist.kind == "int" and not numeric:
            raise InitlabError(f"{shown} draws integers, but {key} takes {text} values: use choice = [...]")


def parse_spec(doc: Mapping[str, Any], *, base: str | Path | None = None,
               source: str | None = None) -> SweepSpec:
    """Check a spec given as data (what :func:`load_spec` reads from TOML) and return it.

    Raises:
        InitlabError: an unknown table, key, experiment or config field; a setting in two of
            ``[fixed]``, ``[grid]`` and ``[random]``; an empty grid list, or a grid or ``choice``
            list that repeats a value once taken as the setting's type (``lr = [1, 1.0]``); a bad
            ``[random]`` table (:func:`~initlab.sweep.random_search.parse_random`) or a distribution
            that does not fit its setting (floats for an integer); bad seeds or threads.

    >>> spec = parse_spec({"sweep": {"experiment": "phase", "seeds": [0, 1]},
    ...                    "grid": {"depth": [2, 4], "sigma_w2": [1.0, "critical"]}})
    >>> spec.grid["depth"], spec.seeds
    ((2, 4), (0, 1))
    """
    extra = sorted(set(doc) - {"sweep", "fixed", "grid", "random"})
    if extra:
        raise InitlabError(f"unknown table [{extra[0]}] in the sweep spec: use [sweep], [fixed], [grid] and "
                           "[random]")
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
    drawn = parse_random(_table(doc, "random")) if "random" in doc else None
    _check_fields(exp, fixed, grid, drawn)
    base_path = Path(base) if base is not None else None
    out = sweep.get("out")
    if out is not None and (not isinstance(out, str) or not out.strip()):
        raise InitlabError(f"sweep.out = {out!r} is invalid: give a directory name, e.g. "
                           "out = \"sweep-results\"")
    name = sweep.get("name", "")
    if not isinstance(name, str):
        raise InitlabError(f"sweep.name = {name!r} is invalid: give a string")
    grid_values = {k: tuple(_coerce(exp.config, k, v, base_path) for v in vs) for k, vs in grid.items()}
    for key, values in grid_values.items():
        _check_repeats(f"grid.{key} = {grid[key]!r}", key, grid[key], values)
    return SweepSpec(
        experiment=exp.name,
        fixed={k: _coerce(exp.config, k, v, base_path) for k, v in fixed.items()},
        grid=grid_values,
        seeds=_int_list("seeds", sweep.get("seeds", [0]), 0), threads=_threads(sweep.get("threads", 1)),
        out=out, name=name, source=source, random=_coerce_choices(exp, drawn, base_path))


def _coerce_choices(exp: SweepExperiment, drawn: RandomSearch | None,
                    base: Path | None) -> RandomSearch | None:
    """``drawn`` with its ``choice`` values taken as :func:`_coerce` takes a grid's (relative paths
    relative to the spec); a ``choice`` that repeats a value once taken so is refused
    (:func:`_check_repeats`)."""
    if drawn is None:
        return None
    params = dict(drawn.params)
    for key, dist in drawn.params.items():
        if isinstance(dist, Choice):
            values = tuple(_coerce(exp.config, key, v, base) for v in dist.values)
            _check_repeats(f"random.{key} = {{ choice = {list(dist.values)!r} }}", key, dist.values, values)
            params[key] = Choice(values)
    return RandomSearch(drawn.samples, drawn.seed, params)


def _threads(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InitlabError(f"sweep.threads = {value!r} is invalid: pass one integer >= 1 (torch threads "
                           "per cell)")
    return value
