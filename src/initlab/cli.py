"""The ``initlab`` command line: thin wrappers that parse options, show progress, and call the
library. Every bad value becomes one line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import sys

import click

from initlab import __version__
from initlab.errors import InitlabError

#: Exceptions that mean "the user gave a bad value"; the CLI prints them as one line, exit 2.
USER_ERRORS = (InitlabError, ValueError, TypeError, FileNotFoundError, FileExistsError,
               NotADirectoryError, PermissionError, KeyError)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="initlab")
def cli() -> None:
    """initlab: weight initialization for deep networks — every scheme, and why it works."""


# ---- commands are added below, one section each --------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``initlab`` console script; returns the exit status."""
    try:
        cli.main(args=argv, prog_name="initlab", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("initlab: aborted", err=True)
        return 130
    except click.exceptions.ClickException as exc:  # bad option, missing argument, ...
        click.echo(f"initlab: error: {exc.format_message()}", err=True)
        return 2
    except USER_ERRORS as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, KeyError):
            message = str(exc.args[0]) if exc.args else "KeyError"
        click.echo(f"initlab: error: {message}", err=True)
        return 2
    except KeyboardInterrupt:
        click.echo("initlab: interrupted", err=True)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
