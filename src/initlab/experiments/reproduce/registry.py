"""The reproductions by name, and the run of several of them (what ``initlab reproduce`` calls).

:data:`REPRODUCTIONS` maps each name to its :class:`~initlab.experiments.reproduce.common.Reproduction`;
adding a paper is one module and one entry here. :func:`run_reproductions` builds each config
(full or quick, the run's seed and number of seeds), runs every cell with one progress bar and a
fixed torch thread count, adds each paper's numbers and verdicts, and returns the records with
the texts the report needs.
"""

from __future__ import annotations

import datetime as _dt
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from initlab.errors import InitlabError
from initlab.experiments.common import torch_threads
from initlab.experiments.reproduce import bengio2007, glorot2010, he2015, saxe2013
from initlab.experiments.reproduce.common import Reproduction

__all__ = ["REPRODUCTIONS", "reproduction_names", "get_reproduction", "make_config", "ReproduceResult",
           "run_reproductions", "CellMap"]

#: Every reproduction, in the order of the report.
REPRODUCTIONS: dict[str, Reproduction] = {
    r.name: r for r in (he2015.REPRODUCTION, glorot2010.REPRODUCTION, bengio2007.REPRODUCTION,
                        saxe2013.REPRODUCTION)
}

#: ``map_cells(run_cell, cells)`` returns each cell's records in the order of ``cells`` (default:
#: here, one after the other; a sweep engine may run them elsewhere — the records do not change).
CellMap = Callable[[Callable[[Any], list[dict[str, Any]]], Sequence[Any]], list[list[dict[str, Any]]]]


def reproduction_names() -> tuple[str, ...]:
    """The names ``initlab reproduce`` takes, in report order.

    >>> reproduction_names()
    ('he2015', 'glorot2010', 'bengio2007', 'saxe2013')
    """
    return tuple(REPRODUCTIONS)


def get_reproduction(name: str) -> Reproduction:
    """The :class:`Reproduction` called ``name``.

    Raises:
        InitlabError: an unknown name; the message lists the valid ones.

    >>> get_reproduction("he2016")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    initlab.errors.InitlabError: unknown reproduction 'he2016': use one of he2015, glorot2010, ...
    """
    try:
        return REPRODUCTIONS[name]
    except KeyError:
        raise InitlabError(f"unknown reproduction {name!r}: use one of {', '.join(REPRODUCTIONS)}") from None


def make_config(name: str, *, quick: bool = False, seed: int = 0, seeds: int | None = None,
                data_dir: str | None = None) -> Any:
    """The config of reproduction ``name``: the full run, or its ``quick()`` one, with the run's
    ``seed``, number of training ``seeds`` (``None``: the preset's — 3 full, 1 quick) and the
    directory of the IDX files (``None``: the system's).

    Raises:
        InitlabError: unknown name, or a bad seed or number of seeds.

    >>> make_config("saxe2013", quick=True, seed=2).seeds
    1
    """
    rep = get_reproduction(name)
    overrides: dict[str, Any] = {"seed": seed, "data_dir": data_dir}
    if seeds is not None:
        overrides["seeds"] = seeds
    return rep.config.quick(**overrides) if quick else rep.config(**overrides)


@dataclass
class ReproduceResult:
    """Output of :func:`run_reproductions`.

    Attributes:
        names: the reproductions run, in report order.
        configs: name -> its config.
        records: tidy records of every reproduction (experiment = its name).
        sections: one dict per reproduction: ``name``, ``title``, ``summary`` and the texts of
            :attr:`Reproduction.describe` (``citation``, ``claim``, ``paper_setup``,
            ``our_setup``, ``scale``).
        timings: seconds per reproduction and ``total``.
        environment: versions, ``threads``, ``quick``, ``platform``, ``started_utc``.
    """

    names: tuple[str, ...]
    configs: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)
    sections: list[dict[str, str]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)

    def config_dicts(self) -> dict[str, dict[str, Any]]:
        """Each config as a JSON-ready dict."""
        return {name: asdict(cfg) for name, cfg in self.configs.items()}


def _map_here(progress: bool, total: int) -> tuple[CellMap, Any]:
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc="initlab reproduce", unit="run", disable=not progress, file=sys.stderr,
               leave=False)

    def map_cells(fn: Callable[[Any], list[dict[str, Any]]], cells: Sequence[Any]) -> list[list[dict]]:
        out = []
        for cell in cells:
            out.append(fn(cell))
            bar.update(1)
        return out

    return map_cells, bar


def run_reproductions(names: Sequence[str], *, quick: bool = False, seed: int = 0, seeds: int | None = None,
                      threads: int = 1, data_dir: str | None = None, progress: bool = False,
                      map_cells: CellMap | None = None) -> ReproduceResult:
    """Run the reproductions ``names`` (each at most once, in report order).

    Args:
        names: reproduction names (:func:`reproduction_names`).
        quick: the test-sized configs.
        seed: seeds the data split and is the first training seed.
        seeds: training seeds per setting (``None``: 3 full, 1 quick); claims rest on their median.
        threads: torch threads during the run (``0``: torch's setting); the numbers depend on it.
        data_dir: directory with the Fashion-MNIST IDX files (``None``: the system's).
        progress: a progress bar on stderr (with the default ``map_cells``).
        map_cells: runs the cells (:data:`CellMap`); default: here, one after the other.

    Returns:
        a :class:`ReproduceResult`.

    Raises:
        InitlabError: an unknown name, a bad seed, number of seeds or thread count.
        DataError: a data set cannot be loaded.

    >>> res = run_reproductions(["saxe2013"], quick=True)  # doctest: +SKIP
    >>> sorted({r["stat"] for r in res.records})[:2]  # doctest: +SKIP
    ['finding', 'initial_error']
    """
    wanted = set(names)
    for name in wanted:
        get_reproduction(name)
    order = tuple(n for n in REPRODUCTIONS if n in wanted)
    configs = {n: make_config(n, quick=quick, seed=seed, seeds=seeds, data_dir=data_dir) for n in order}
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    result = ReproduceResult(names=order, configs=configs)
    all_cells = {n: REPRODUCTIONS[n].cells(configs[n]) for n in order}
    mapper, bar = (map_cells, None) if map_cells is not None else _map_here(
        progress, sum(len(c) for c in all_cells.values()))
    t_total = time.perf_counter()
    try:
        with torch_threads(threads) as used:
            torch.set_flush_denormal(True)
            for name in order:
                rep, t0 = REPRODUCTIONS[name], time.perf_counter()
                records = [r for rs in mapper(rep.run_cell, all_cells[name]) for r in rs]
                records += rep.conclude(configs[name], records)
                result.records += records
                result.sections.append({"name": name, "title": rep.title, "summary": rep.summary,
                                        **rep.describe(configs[name])})
                result.timings[name] = time.perf_counter() - t0
    finally:
        if bar is not None:
            bar.close()
    result.timings["total"] = time.perf_counter() - t_total
    from initlab import __version__

    result.environment = {"initlab": __version__, "torch": torch.__version__,
                          "python": sys.version.split()[0], "threads": used, "quick": quick,
                          "platform": platform.platform(), "started_utc": started}
    return result
