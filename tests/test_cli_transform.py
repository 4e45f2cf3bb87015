"""``initlab plan --transform``: the residual-family transforms from the command line (SkipInit gates,
Fixup scalars), their report on stderr, the plan on stdout, the saved state_dict with the new
parameters; a gated scheme without its transform is one line and exit 2."""

from __future__ import annotations

import pytest
import torch

from initlab.cli import main

MODEL_PY = '''
from initlab import zoo


def build():
    return zoo.cifar_resnet(8, norm=False, in_channels=1)


def mlp():
    import torch.nn as nn
    return nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
'''


def _target(tmp_path, fn="build"):
    (tmp_path / "model.py").write_text(MODEL_PY)
    return f"{tmp_path / 'model.py'}:{fn}"


def test_skip_gates_then_skipinit_plans_every_gate_at_zero(tmp_path, capsys):
    assert main(["plan", _target(tmp_path), "--transform", "skip_gates", "--scheme", "skipinit"]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("add_skip_gates: 3 residual branches gated")  # ResNet-8: n = 1
    gates = [line for line in captured.out.splitlines() if ".skip_gate" in line]
    assert len(gates) == 3 and all("constant(0)" in line for line in gates)


def test_fixup_scalars_saved_with_the_weights(tmp_path, capsys):
    out = tmp_path / "init.pt"
    args = ["plan", _target(tmp_path), "--transform", "fixup_scalars", "--scheme", "fixup", "--apply",
            "--save", str(out)]
    assert main(args) == 0
    assert "given Fixup scalars" in capsys.readouterr().err
    state = torch.load(out)
    scales = [k for k in state if k.endswith(".fixup_scale")]
    assert len(scales) == 3 and all(float(state[k]) == 1.0 for k in scales)
    ends = [k.replace("fixup_scale", "weight") for k in scales]  # fixup zeroes each branch's last layer
    assert all(float(state[k].abs().max()) == 0.0 for k in ends)


def test_gated_scheme_without_its_transform_is_one_line(tmp_path, capsys):
    assert main(["plan", _target(tmp_path), "--scheme", "rezero"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--transform skip_gates" in err and "Traceback" not in err


def test_transform_on_a_model_without_residual_adds_is_one_line(tmp_path, capsys):
    assert main(["plan", _target(tmp_path, "mlp"), "--transform", "fixup_scalars"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no residual add" in err


def test_gates_with_fixup_is_refused_before_anything_is_added(tmp_path, capsys):
    assert main(["plan", _target(tmp_path), "--transform", "skip_gates", "--scheme", "fixup"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--scheme skipinit" in err and "add_skip_gates" not in err


def test_fixup_without_its_scalars_says_how_to_add_them(tmp_path, capsys):
    assert main(["plan", _target(tmp_path), "--scheme", "fixup"]) == 0
    err = capsys.readouterr().err
    assert "--transform fixup_scalars" in err
    assert main(["plan", _target(tmp_path), "--transform", "fixup_scalars", "--scheme", "fixup"]) == 0
    err = capsys.readouterr().err
    assert "--transform fixup_scalars to add" not in err and "report.undo" not in err


# ---- initlab probe --scheme / --transform on a model file -------------------------------------------


def test_probe_a_model_file_under_skipinit_measures_the_gated_start(tmp_path, capsys):
    """The gates are in the probed model (skip_gate rows), the header says how it was started, and
    the branches' intended zeros raise no vanishing verdict."""
    target = _target(tmp_path)
    args = ["probe", target, "--transform", "skip_gates", "--scheme", "skipinit",
            "--input-shape", "4,1,16,16"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("add_skip_gates: 3 residual branches gated")
    header = captured.out.splitlines()[0]
    assert "skip_gates added" in header and "init_model(scheme='skipinit')" in header
    assert "vanishing" not in captured.out


def test_probe_scheme_changes_the_probed_weights_and_is_seeded(tmp_path):
    """--scheme fixup zeroes each branch's last conv: its weight_std record is exactly 0; the same
    seed gives the same records."""
    import json

    target = _target(tmp_path)
    paths = [tmp_path / f"r{i}.json" for i in range(2)]
    for path in paths:
        assert main(["probe", target, "--scheme", "fixup", "--input-shape", "4,1,16,16",
                     "--json", str(path)]) == 0
    a, b = (json.loads(p.read_text()) for p in paths)
    records = a["records"] if isinstance(a, dict) else a
    stds = {r["layer"]: r["value"] for r in records if r["stat"] == "weight_std"}
    assert any(v == 0.0 for v in stds.values()) and any(v > 0.0 for v in stds.values())
    strip = lambda doc: [{k: v for k, v in r.items() if k != "seconds"}  # noqa: E731
                         for r in (doc["records"] if isinstance(doc, dict) else doc)]
    assert strip(a) == strip(b)


def test_probe_transform_without_a_model_file_is_one_line(capsys):
    assert main(["probe", "--transform", "skip_gates"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "FILE.py:FUNCTION" in err and "Traceback" not in err


def test_probe_of_the_builtin_mlp_keeps_its_expected_weight_std(tmp_path):
    """Without --scheme the MLP is drawn from glorot_normal, and the probe compares every weight with
    that scheme's std: expected_weight_std = sqrt(2 / (fan_in + fan_out)) x gain, where gain is 1 for
    the layer that reads the data and initlab's tanh gain after a tanh (the probe's documented rule)."""
    import json
    import math

    from initlab.gains import gain

    path = tmp_path / "p.json"
    assert main(["probe", "--depth", "2", "--width", "8", "--in-features", "4", "--json", str(path)]) == 0
    doc = json.loads(path.read_text())
    records = doc["records"] if isinstance(doc, dict) else doc
    expected = sorted(r["value"] for r in records if r["stat"] == "expected_weight_std")
    assert len(expected) == 2
    assert expected == pytest.approx(sorted([math.sqrt(2 / (4 + 8)),
                                             gain("tanh") * math.sqrt(2 / (8 + 8))]), rel=1e-12)


PARAM_PY = '''
import pytest
import torch
from torch import nn


class Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.alpha = nn.Parameter(torch.ones(4))

    def forward(self, x):
        return self.fc(x) * self.alpha


def build():
    return Scaled()
'''


def test_probe_scheme_prints_init_model_warnings_as_one_line_each(tmp_path, capsys):
    (tmp_path / "m.py").write_text(PARAM_PY)
    assert main(["probe", f"{tmp_path / 'm.py'}:build", "--scheme", "he_normal", "--input-shape", "8,4"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err and all(line.startswith("initlab: warning: ") for line in err)
    assert not any("cli.py" in line for line in err)


SEQ_RESNET_PY = '''
import torch.nn as nn


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c1, self.r, self.c2 = nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return x + self.c2(self.r(self.c1(x)))


def resnet():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), Block(8), Block(8), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 10))


def mlp():
    return nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))


def lazy():
    return nn.Sequential(nn.LazyLinear(6), nn.ReLU(), nn.Linear(6, 2))
'''


def test_fixup_zeroed_head_after_a_zeroed_branch_end_is_not_symmetric(tmp_path, capsys):
    """The head reads the stream (x + 0), not the zeroed conv recorded just before it: no
    "symmetric" verdict, only the logits note that names the zeroed head."""
    (tmp_path / "m.py").write_text(SEQ_RESNET_PY)
    target = f"{tmp_path / 'm.py'}:resnet"
    assert main(["probe", target, "--scheme", "fixup", "--input-shape", "4,3,8,8"]) == 0
    out = capsys.readouterr().out
    assert "symmetric" not in out and "intended after a zeroed head" in out


def test_refused_fixup_is_one_line_without_the_note(tmp_path, capsys):
    (tmp_path / "m.py").write_text(SEQ_RESNET_PY)
    for command in ("plan", "probe"):
        assert main([command, f"{tmp_path / 'm.py'}:mlp", "--scheme", "fixup"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and err.startswith("initlab: error:") and "residual" in err


def test_probe_materialises_lazy_layers_before_init_model(tmp_path, capsys):
    (tmp_path / "m.py").write_text(SEQ_RESNET_PY)
    assert main(["probe", f"{tmp_path / 'm.py'}:lazy", "--scheme", "auto", "--input-shape", "4,5"]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert "+ lazy parameters" in header and "init_model(scheme='auto')" in header
