"""The command line as a whole: help, version, bare invocation, python -m, bad commands."""

from __future__ import annotations

import subprocess
import sys

import pytest

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


# ---- review: one rule per option, errors that are errors ----------------------------------------


MODEL_PY = '''
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(10, 20), nn.Linear(20, 5)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: fx cannot trace, the example input is needed
            x = x * 1
        return self.fc2(self.fc1(x).relu())


def build():
    return Net()
'''


def test_plan_input_shape_that_does_not_fit_is_an_error(tmp_path, capsys):
    """An explicit --input-shape whose forward fails used to give a warning, a guessed plan and
    exit 0; it is a bad value: one line naming the shape and the error, exit 2."""
    (tmp_path / "model.py").write_text(MODEL_PY)
    target = f"{tmp_path / 'model.py'}:build"
    assert main(["plan", target, "--input-shape", "2,7"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("initlab: error: --input-shape 2,7")
    assert "(2, 7)" in err and "mat1 and mat2" in err and "Traceback" not in err
    assert captured.out == ""
    assert main(["plan", target, "--input-shape", "2,10"]) == 0  # the right shape: hooks find the ReLU
    captured = capsys.readouterr()
    assert "detection=hooks" in captured.out and captured.err == ""
    assert main(["plan", target]) == 0  # no input given: built from the first Linear, hooks as well
    captured = capsys.readouterr()
    assert "detection=hooks" in captured.out and "hooks on inputs built from Linear" in captured.out
    assert captured.err == ""


def test_every_seed_option_follows_one_rule(tmp_path, capsys):
    """probe and plan took a negative --seed that demo and phase refused: one type for all."""
    (tmp_path / "model.py").write_text(MODEL_PY)
    calls = {"demo": ["demo", "--out", str(tmp_path / "d")], "phase": ["phase", "--out", str(tmp_path / "p")],
             "probe": ["probe"], "plan": ["plan", f"{tmp_path / 'model.py'}:build"]}
    for bad in ("-1", str(2**63)):
        errors = set()
        for command, args in calls.items():
            assert main([*args, "--seed", bad]) == 2, command
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1, err
            errors.add(err)
        assert len(errors) == 1 and "'--seed'" in errors.pop()
    assert main(["probe", "--depth", "1", "--width", "2", "--batch", "2", "--in-features", "2",
                 "--seed", str(2**63 - 1)]) == 0
    assert f"seed {2**63 - 1}" in capsys.readouterr().out


def test_sigterm_exits_143_and_ctrl_c_130(monkeypatch, capsys):
    """128 + the signal's number, as a shell reports a process the signal killed."""
    from initlab import cli, gains

    for raised, status, message in ((cli.Terminated, 143, "terminated"), (KeyboardInterrupt, 130, "")):
        def interrupted(*args, raised=raised, **kwargs):
            raise raised

        monkeypatch.setattr(gains, "gain", interrupted)
        assert main(["gain", "tanh"]) == status
        assert message in capsys.readouterr().err


def test_every_benchmark_takes_threads():
    """The benchmarks train or time, and both depend on the thread count: each takes --threads
    (default 1), sets it and prints it."""
    import ast
    from pathlib import Path

    scripts = sorted((Path(__file__).parents[1] / "benchmarks").glob("*.py"))
    assert scripts
    for script in scripts:
        tree = ast.parse(script.read_text(encoding="utf-8"))
        options = {}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument"
                    and node.args and isinstance(node.args[0], ast.Constant)):
                options[node.args[0].value] = {k.arg: k.value for k in node.keywords}
        assert "--threads" in options, script.name
        assert ast.literal_eval(options["--threads"]["default"]) == 1, script.name
        source = script.read_text(encoding="utf-8")
        assert "torch.set_num_threads(args.threads)" in source, script.name


# ---- probe FILE.py:FUNCTION (engineer "probe") ----------------------------------------------------


PROBE_PY = '''
import torch.nn as nn


def mlp():
    return nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 10))


def cnn28():  # wants 28 x 28 inputs: the built ones (32 x 32) do not fit
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 28 * 28, 10))


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(100, 64)
        nn.init.normal_(self.wte.weight)
        self.head = nn.Linear(64, 100, bias=False)
        self.head.weight = self.wte.weight

    def forward(self, ids):
        return self.head(self.wte(ids))


def tied():
    return Tied()
'''


def _table_rows(out: str) -> dict[str, list[str]]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("layer "))
    rows = {}
    for line in lines[start + 2:]:
        if line.startswith("verdicts"):
            break
        rows[line.split()[0]] = line.split()
    return rows


def test_probe_file_function_with_and_without_input_shape(tmp_path, capsys):
    (tmp_path / "m.py").write_text(PROBE_PY)
    target = f"{tmp_path / 'm.py'}:mlp"
    assert main(["probe", target, "--input-shape", "64,20", "--bins", "0"]) == 0
    out = capsys.readouterr().out
    assert "inputs float32 64x20, seed 0" in out and "(Sequential, 1,994 parameters)" in out
    assert out.splitlines()[1].split()[5:7] == ["std", "pred_std"]
    assert list(_table_rows(out)) == ["0", "1", "2"]
    assert main(["probe", target, "--input-shape", "64,20", "--bins", "0"]) == 0
    assert capsys.readouterr().out == out  # --seed fixes the weights, the inputs and the loss
    assert main(["probe", target, "--input-shape", "64,20", "--bins", "0", "--seed", "1"]) == 0
    assert capsys.readouterr().out != out
    assert main(["probe", target, "--json", str(tmp_path / "r.json")]) == 0  # inputs built: randn(16, 20)
    captured = capsys.readouterr()
    assert "inputs built from Linear '0' in_features=20: randn(16, 20) (redrawn)" in captured.out
    assert '"predicted_std"' in (tmp_path / "r.json").read_text()


def test_probe_file_function_token_ids_and_the_logits_verdict(tmp_path, capsys):
    (tmp_path / "m.py").write_text(PROBE_PY)
    for extra in (["--input-shape", "8,16", "--input-dtype", "int64"], []):
        assert main(["probe", f"{tmp_path / 'm.py'}:tied", *extra]) == 0
        out = capsys.readouterr().out
        assert "logits: the model's output std is" in out and "saturated" in out


@pytest.mark.parametrize("args, match", [
    (["--input-shape", "2,x"], "--input-shape '2,x' is invalid"),
    (["--input-shape", "2,7"],
     "--input-shape 2,7: the model.s forward failed on an input of shape \\(2, 7\\) "
     "\\(RuntimeError: mat1 and mat2"),
    (["--input-dtype", "int64"], "--input-dtype int64 needs --input-shape"),
    (["--depth", "3"], "--depth builds the built-in MLP"),
    (["--batch", "8"], "--batch builds the built-in MLP"),
])
def test_probe_file_function_bad_options_one_line_exit_2(tmp_path, capsys, args, match):
    import re

    (tmp_path / "m.py").write_text(PROBE_PY)
    assert main(["probe", f"{tmp_path / 'm.py'}:mlp", *args]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and captured.out == ""
    assert re.search(match, err), err


def test_probe_built_inputs_that_do_not_fit_and_options_without_a_model(tmp_path, capsys):
    (tmp_path / "m.py").write_text(PROBE_PY)
    assert main(["probe", f"{tmp_path / 'm.py'}:cnn28"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pass --input-shape" in err
    assert main(["probe", f"{tmp_path / 'm.py'}:cnn28", "--input-shape", "4,1,28,28", "--bins", "0"]) == 0
    capsys.readouterr()
    assert main(["probe", "--input-shape", "2,3"]) == 2
    assert "describe the input of FILE.py:FUNCTION" in capsys.readouterr().err
    assert main(["probe", f"{tmp_path / 'm.py'}:nope"]) == 2
    assert "has no function 'nope'" in capsys.readouterr().err
    (tmp_path / "c.py").write_text("WIDTH = 8\ndef build():\n    return None\n")
    assert main(["probe", f"{tmp_path / 'c.py'}:WIDTH"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "defines 'WIDTH', but it is not a function (type int): use one of build" in err


def test_plan_sigma_b2_needs_the_critical_scheme(tmp_path, capsys):
    """--sigma-b2 only means something under --scheme critical: elsewhere it is refused, not ignored."""
    (tmp_path / "model.py").write_text(MODEL_PY)
    target = f"{tmp_path / 'model.py'}:build"
    assert main(["plan", target, "--input-shape", "2,10", "--sigma-b2", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--scheme critical" in err, err


SEQ2SEQ_PY = """
import torch.nn as nn


def build():
    return nn.Transformer(d_model=16, nhead=2, num_encoder_layers=1, num_decoder_layers=2, dim_feedforward=32,
                          batch_first=True)
"""


def test_several_input_shapes_feed_a_forward_of_several_tensors(tmp_path, capsys):
    """nn.Transformer takes src and tgt: '--input-shape 2,7,16;2,5,16' plans and probes it under
    t_fixup (its branches need the graph); a bad list is one line, exit 2."""
    (tmp_path / "s.py").write_text(SEQ2SEQ_PY)
    target = f"{tmp_path / 's.py'}:build"
    assert main(["plan", target, "--scheme", "t_fixup", "--input-shape", "2,7,16;2,5,16"]) == 0
    out = capsys.readouterr().out
    assert "encoder-decoder" in out and "N=1" in out and "M=2" in out
    shapes = "4,7,16; 4,5,16"
    assert main(["probe", target, "--scheme", "t_fixup", "--input-shape", shapes, "--bins", "0"]) == 0
    assert "inputs float32 4x7x16 and 4x5x16" in capsys.readouterr().out
    for bad in ("2,7,16 2,5,16", "2,7,16;;0,5"):
        assert main(["plan", target, "--input-shape", bad]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "separate the shapes of several inputs by ';'" in err
    assert main(["plan", target, "--input-shape", "2,7,16;2,5,17"]) == 2  # the forward refuses it
    assert "the model's forward failed" in capsys.readouterr().err


def test_a_forward_that_fails_on_integer_ids_names_the_dtype(tmp_path, capsys):
    """A conv net probed with --input-dtype int64: the shape is right, the dtype is not, and the one
    line says so (it used to ask for the model's shape only)."""
    (tmp_path / "c.py").write_text("import torch.nn as nn\n\n\ndef build():\n"
                                   "    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())\n")
    assert main(["probe", f"{tmp_path / 'c.py'}:build", "--input-dtype", "int64",
                 "--input-shape", "2,3,32,32"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "and its dtype (--input-dtype int64 gave integer ids; leave it out for floats)" in err
