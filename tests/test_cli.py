"""The command line as a whole: help, version, bare invocation, python -m, bad commands."""

from __future__ import annotations

import subprocess
import sys

from initlab import __version__
from initlab.cli import main

COMMANDS = ("demo", "gain", "probe", "plan", "phase")


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert command in out


def test_each_command_has_help(capsys):
    for command in COMMANDS:
        assert main([command, "--help"]) == 0
        assert "Usage: initlab " + command in capsys.readouterr().out


def test_version(capsys):
    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out


def test_bare_initlab_shows_help_and_succeeds(capsys):
    assert main([]) == 0
    assert "demo" in capsys.readouterr().out


def test_unknown_command_is_one_line_and_exit_2(capsys):
    assert main(["nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No such command 'nope'" in err and "Traceback" not in err


def test_python_dash_m_runs_the_cli():
    done = subprocess.run([sys.executable, "-m", "initlab", "gain", "relu"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "1.414214" in done.stdout
