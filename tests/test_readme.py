"""README.md stays true: its Python examples run, and CI runs its test command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_readme_has_python_examples():
    assert len(PYTHON_BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_readme_python_example_runs(index, capsys):
    exec(compile(PYTHON_BLOCKS[index], f"README.md[python {index}]", "exec"), {})


def test_quick_start_has_exactly_two_commands_and_ci_runs_the_second():
    quick = README[README.index("## Quick start"):README.index("\n## ", README.index("## Quick start") + 5)]
    commands = re.findall(r"```bash\n(.*?)\n```", quick, flags=re.S)
    assert len(commands) == 2
    assert commands[0].rstrip().endswith("initlab demo")
    assert commands[1].rstrip().endswith("pytest")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "## Quick start" in ci and "n == 2" in ci  # .ci/run extracts and runs the second command
