"""``initlab sweep``: run a sweep spec (``initlab sweep SPEC.toml``), print a sweep's table
(``initlab sweep show DIR``), write its report (``initlab sweep report DIR``). Thin: it checks that
the sweep extra is installed, parses options and calls :mod:`initlab.sweep` and
:mod:`initlab.report.sweep_report`."""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import Any

import click

from initlab.errors import InitlabError

__all__ = ["sweep_group"]

_INSTALL = "pip install 'initlab[sweep]'"


def _require(*modules: str) -> None:
    """One line (exit 2) when a module of the sweep extra is missing."""
    missing = []
    for m in modules:
        try:
            importlib.import_module(m)
        except ImportError:
            missing.append(m)
    if missing:
        raise InitlabError(f"initlab sweep needs {' and '.join(missing)}: {_INSTALL}")


class _SweepGroup(click.Group):
    """``initlab sweep SPEC.toml`` is ``initlab sweep run SPEC.toml``: a first argument that is not
    a subcommand (nor an option) is the spec. Its help shows the three uses and the options of
    running a spec, which is what a new user came for, then the subcommands."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().parse_args(ctx, args)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        path = ctx.command_path
        formatter.write_usage(path, "SPEC.toml [OPTIONS]")
        for use in ("show DIR [--records]", "report DIR [--out DIR] [--force]"):
            formatter.write_usage(path, use, prefix="       ")

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        run = self.commands["run"]
        rows = [r for p in run.get_params(ctx) if isinstance(p, click.Option)
                and (r := p.get_help_record(ctx)) is not None]
        with formatter.section("Options of `initlab sweep SPEC.toml` (the same as `initlab sweep run`)"):
            formatter.write_dl(rows)
        self.format_commands(ctx, formatter)


@click.group("sweep", cls=_SweepGroup, invoke_without_command=True)
@click.pass_context
def sweep_group(ctx: click.Context) -> None:
    """Grids of initialization experiments on Ray, resumable: `initlab sweep SPEC.toml` runs a spec
    (examples: examples/sweeps/), `initlab sweep show DIR` prints its cells, `initlab sweep report
    DIR` writes its figures and page. Needs the sweep extra: pip install 'initlab[sweep]'."""
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


@sweep_group.command("run", short_help="Run a spec (what `initlab sweep SPEC.toml` does).")
@click.argument("spec", metavar="SPEC.toml", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(), default=None, metavar="DIR",
              help="Results directory [default: the spec's out].")
@click.option("--address", default=None, metavar="ADDRESS",
              help="Run on a Ray cluster: auto (this machine's running cluster), ray://HEAD:10001, "
                   "HEAD:6379.")
@click.option("--cpus", type=click.IntRange(min=1), default=None, metavar="N",
              help="CPUs of the local Ray [default: all of this machine's].")
@click.option("--serial", is_flag=True, help="Run the cells here, one after the other, without Ray.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar on stderr.")
def run_command(spec: str, out: str | None, address: str | None, cpus: int | None, serial: bool,
                progress: bool) -> None:
    """Run every cell of SPEC.toml not yet stored in the results directory (exit 1 if a cell failed)."""
    _require("pyarrow", *(() if serial else ("ray",)))
    from initlab.sweep import load_spec, run

    loaded = load_spec(spec)
    with _Interruptible():  # `kill` stops it like Ctrl-C: stored cells stay, the rest is cancelled
        result = run(loaded, out=out, runner="serial" if serial else "ray", address=address, cpus=cpus,
                     progress=progress, notify=lambda line: click.echo(line, err=True))
    click.echo(result.summary())
    for f in result.failures:
        label = " ".join(f"{k}={v}" for k, v in f.params.items())
        click.echo(f"  failed: {label} ({f.key[:12]}): {f.error}")
    if result.failures:
        click.echo(f"{len(result.failures)} cell(s) failed twice: run the same command again to retry them")
        click.get_current_context().exit(1)


class _Interruptible:
    """:class:`initlab.cli._SigtermAsInterrupt` that remembers a SIGTERM: Ray re-raises an
    interrupt that arrives while it waits as a plain ``KeyboardInterrupt``, which this turns back
    into :class:`initlab.cli.Terminated` (exit 143, not 130)."""

    def __enter__(self) -> _Interruptible:
        import signal

        from initlab.cli import _SigtermAsInterrupt

        self.guard = _SigtermAsInterrupt().__enter__()
        self.sigterm = False
        if self.guard.installed:
            raise_terminated = signal.getsignal(signal.SIGTERM)

            def handler(signum: int, frame: object) -> None:
                self.sigterm = True
                raise_terminated(signum, frame)

            signal.signal(signal.SIGTERM, handler)
        return self

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: object) -> bool:
        from initlab.cli import Terminated

        self.guard.__exit__(kind, exc, tb)
        if self.sigterm and isinstance(exc, KeyboardInterrupt) and not isinstance(exc, Terminated):
            raise Terminated from exc
        return False


def _cell_value(rows: list[dict[str, Any]]) -> str:
    """One cell's value of a stat: the value, or ``first→last`` of a per-layer stat."""
    values = [r.get("value") for r in rows]

    def fmt(v: Any) -> str:
        if v is None:
            return "never" if rows[0].get("stat") == "steps_to_target" else "–"
        return "nan" if math.isnan(v) else f"{v:.4g}"

    return fmt(values[0]) if len(values) == 1 else f"{fmt(values[0])}→{fmt(values[-1])}"


def _status(stats: dict[str, list[dict[str, Any]]]) -> str:
    """A stored cell's status: ``diverged`` when its run's loss became non-finite (a ``diverged``
    record of value 1: train, training, phase), else ``done``."""
    return "diverged" if any(r.get("value") for r in stats.get("diverged", [])) else "done"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in [header, *rows])


def _order(value: Any) -> tuple:
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    return (0, value, "") if numeric else (1, 0, str(value))


@sweep_group.command("show", short_help="Print a sweep's cells, headline numbers and failures.")
@click.argument("directory", metavar="DIR", type=click.Path())
@click.option("--records", is_flag=True, help="Print every record as CSV instead of the table of cells.")
def show_command(directory: str, records: bool) -> None:
    """Print the cells of the sweep in DIR: parameters, headline numbers, failures."""
    _require("pyarrow")
    from initlab.records import records_to_csv
    from initlab.sweep import SweepStore, get_experiment

    store = SweepStore.open(directory)
    recs = store.records()
    if records:
        click.echo(records_to_csv(recs), nl=False)
        return
    m = store.manifest
    headline = [s for s in get_experiment(m["experiment"]).headline if any(r["stat"] == s for r in recs)]
    by_cell: dict[str, dict[str, list]] = {}
    for r in recs:
        by_cell.setdefault(r["cell"], {}).setdefault(r["stat"], []).append(r)
    cells, failures = store.cells(), store.failures()
    axes = list(m.get("axes") or [])
    rows = []
    for c in sorted(cells, key=lambda c: tuple(_order(c.params.get(a)) for a in axes)):
        stats = by_cell.get(c.key, {})
        rows.append([str(c.params.get(a, "")) for a in axes] + [_status(stats)]
                    + [_cell_value(stats[s]) if s in stats else "–" for s in headline] + [c.key[:12]])
    rows += [[str(f.params.get(a, "")) for a in axes] + ["FAILED"] + ["–"] * len(headline) + [f.key[:12]]
             for f in failures]
    pending = int(m.get("n_cells", 0)) - len(cells) - len(failures)
    diverged = sum(row[len(axes)] == "diverged" for row in rows)
    click.echo(f"{directory}: {m['experiment']} sweep {m.get('name') or ''}".rstrip() + f"; {len(cells)} of "
               f"{m.get('n_cells')} cells stored" + (f" ({diverged} diverged)" if diverged else "")
               + f", {len(failures)} failed, {pending} not run yet")
    if rows:
        click.echo(_table([*axes, "status", *headline, "cell"], rows))
    for f in failures:
        click.echo(f"failed {f.key[:12]}: {f.error}")


@sweep_group.command("report", short_help="Write a sweep's figures and HTML page (DIR/report).")
@click.argument("directory", metavar="DIR", type=click.Path())
@click.option("--out", type=click.Path(), default=None, help="Report directory [default: DIR/report].")
@click.option("--force", is_flag=True,
              help="Replace --out even if it is not a sweep report (kept as a backup); never the sweep "
                   "itself.")
def report_command(directory: str, out: str | None, force: bool) -> None:
    """Write the figures and HTML page of the sweep in DIR (default: DIR/report/index.html)."""
    _require("pyarrow")
    from initlab.report.sweep_report import check_report_out, write_sweep_report
    from initlab.sweep import SweepStore, get_experiment

    store = SweepStore.open(directory)
    target = Path(out) if out is not None else Path(directory) / "report"
    check_report_out(directory, target)  # before reading the records: a report never replaces its sweep
    records = store.records()
    meta = {**store.manifest, "n_stored": len(store.cells()),
            "headline": list(get_experiment(store.manifest["experiment"]).headline),
            "failures": [{"key": f.key, "params": f.params, "error": f.error} for f in store.failures()]}
    with _Interruptible():
        path = write_sweep_report(records, target, meta=meta, force=force, sweep_dir=directory,
                                  notify=lambda line: click.echo(line, err=True))
    click.echo(f"initlab sweep report: wrote {path / 'index.html'} ({len(records)} records, "
               f"{meta['n_stored']} cells)")
