"""``initlab reproduce``: run classic results of the initialization literature again and write a
report with the papers' numbers beside ours. Thin: it checks the options and ``--out`` before any
work, then calls :func:`initlab.experiments.reproduce.run_reproductions` and
:func:`initlab.report.reproduce.write_reproduce_report`."""

from __future__ import annotations

import shlex
import time

import click

from initlab.errors import InitlabError

__all__ = ["reproduce_command"]


def _list_lines() -> list[str]:
    from initlab.experiments.reproduce import REPRODUCTIONS

    width = max(len(n) for n in REPRODUCTIONS)
    return [f"{name:<{width}}  {rep.summary}" for name, rep in REPRODUCTIONS.items()]


def _names(names: tuple[str, ...], run_all: bool) -> tuple[str, ...]:
    """The reproductions to run; one-line errors (exit 2) for none, both, or an unknown name."""
    from initlab.experiments.reproduce import get_reproduction, reproduction_names

    valid = ", ".join(reproduction_names())
    if run_all and names:
        raise InitlabError(f"give reproduction names or --all, not both (got {' '.join(names)} and --all)")
    if not run_all and not names:
        raise InitlabError(f"name a reproduction ({valid}) or pass --all; `initlab reproduce --list` says "
                           "what each shows")
    for name in names:
        get_reproduction(name)
    return reproduction_names() if run_all else tuple(dict.fromkeys(names))


def _command(names: tuple[str, ...], run_all: bool, quick: bool, seed: int, seeds: int, threads: int,
             out: str) -> str:
    """The command line that gives this run's numbers again."""
    words = ["initlab", "reproduce", *(["--all"] if run_all else names), *(["--quick"] if quick else []),
             "--seed", str(seed), "--seeds", str(seeds), "--threads", str(threads), "--out", out]
    return " ".join(shlex.quote(w) for w in words)


@click.command("reproduce")
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option("--all", "run_all", is_flag=True, help="Run every reproduction.")
@click.option("--list", "list_only", is_flag=True,
              help="Name the reproductions and what each shows, then exit.")
@click.option("--quick", is_flag=True,
              help="Tiny, fast runs (a few seconds each): for tests; the numbers mean nothing.")
@click.option("--out", default="initlab-reproduce", show_default=True, type=click.Path(),
              help="Report directory (index.html, figures/, results.json, results.csv).")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True,
              help="Seeds the data splits; training seeds are seed, seed+1, ...")
@click.option("--seeds", type=click.IntRange(min=1), default=None,
              help="Training seeds per setting; the claims rest on their median [default: 3; --quick: 1].")
@click.option("--threads", type=click.IntRange(min=0), default=1, show_default=True,
              help="torch threads for the run (0 = torch's default); the numbers depend on it.")
@click.option("--data-dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Directory with the Fashion-MNIST IDX files [default: /usr/share/datasets/fashion-mnist].")
@click.option("--force", is_flag=True,
              help="Replace --out even if it is not a reproduce report (its contents are kept as a backup).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar on stderr.")
def reproduce_command(names: tuple[str, ...], run_all: bool, list_only: bool, quick: bool, out: str,
                      seed: int, seeds: int | None, threads: int, data_dir: str | None, force: bool,
                      progress: bool) -> None:
    """Run papers' results again (NAME ... or --all) and write a report with their numbers beside ours."""
    if list_only:
        for line in _list_lines():
            click.echo(line)
        return
    from initlab.cli import _SigtermAsInterrupt
    from initlab.experiments.reproduce import run_reproductions
    from initlab.report.reproduce import check_reproduce_out_dir, write_reproduce_report

    chosen = _names(names, run_all)
    check_reproduce_out_dir(out, force=force)  # refuse before any work
    start = time.perf_counter()
    with _SigtermAsInterrupt():  # `kill` cleans up like Ctrl-C: no temporary directory is left
        result = run_reproductions(chosen, quick=quick, seed=seed, seeds=seeds, threads=threads,
                                   data_dir=data_dir, progress=progress, map_cells=_engine_cells(progress))
        n_seeds = next(iter(result.configs.values())).seeds
        run = {"names": list(chosen), "quick": quick, "seed": seed, "seeds": n_seeds, "threads": threads,
               "command": _command(chosen, run_all, quick, seed, n_seeds, threads, out)}
        path = write_reproduce_report(result, out, run=run, force=force,
                                      notify=lambda message: click.echo(message, err=True))
    from initlab.experiments.common import plural
    from initlab.experiments.reproduce.common import seeds_text

    for name in result.names:
        found = [r for r in result.records if r["experiment"] == name and r["stat"] == "verdict"]
        words = list(dict.fromkeys(str(r.get("word")) for r in found))
        counts = ", ".join(f"{sum(str(r.get('word')) == w for r in found)} {w}" for w in words)
        click.echo(f"{name}: {counts or 'no verdict'}")
    click.echo(f"initlab reproduce: wrote {path / 'index.html'} in {time.perf_counter() - start:.1f} s "
               f"({seeds_text(next(iter(result.configs.values())))}, "
               f"{plural(int(result.environment['threads']), 'thread')}{', quick' if quick else ''})")


def _engine_cells(progress: bool):
    """The sweep engine's grid loop for the reproductions' cells (serial, no store): one bar per
    reproduction, named after it."""
    from initlab.sweep.engine import map_cells

    def mapper(run_cell, cells):
        return map_cells(run_cell, cells, runner="serial", progress=progress,
                         desc=run_cell.__module__.rpartition(".")[2])

    return mapper
