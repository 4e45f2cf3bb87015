"""The sweepable experiment cells: ``train`` (initlab.experiments.train) and ``probe``
(initlab.experiments.probe_cell) over the model families and starts."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch

from initlab.errors import InitlabError
from initlab.experiments.families import ModelArgs, build_model, input_kind
from initlab.experiments.probe_cell import ProbeCellConfig, run_probe_cell
from initlab.experiments.starts import StartContext, apply_start, start_names
from initlab.experiments.train import TrainConfig, run_train

TINY = dict(dataset="digits", depth=2, width=16, steps=12, eval_every=4, eval_size=100, final_size=200)


def _no_time(records):
    return [r for r in records if r["stat"] != "seconds"]


def test_train_same_seed_same_records_and_the_records_say_what_ran():
    config = TrainConfig(**TINY, init="he_normal", activation="relu", target=0.3, curve=True)
    first = run_train(config)
    assert _no_time(first) == _no_time(run_train(config))
    assert _no_time(first) != _no_time(run_train(TrainConfig(**TINY, init="he_normal", seed=1, target=0.3)))
    stats = {r["stat"]: r["value"] for r in first}
    curve = [(r["step"], r["value"]) for r in first if r["stat"] == "eval_accuracy"]
    assert [s for s, _ in curve] == [4, 8, 12]  # curve=True: evaluated to the end
    reached = next((s for s, v in curve if v >= 0.3), None)
    assert stats["steps_to_target"] == reached and stats["steps"] == 12 and stats["diverged"] == 0.0
    assert 0.0 <= stats["final_accuracy"] <= 1.0 and stats["seconds"] > 0
    assert all(r["experiment"] == "train" and r["scheme"] == "he_normal" and r["dataset"] == "digits"
               for r in first)


def test_train_epochs_budget_and_divergence():
    n_train = 1437  # digits' training split
    recs = run_train(TrainConfig(dataset="digits", depth=1, width=8, epochs=2, batch_size=500,
                                 eval_every=100))
    assert {r["stat"]: r["value"] for r in recs}["steps"] == 2 * math.ceil(n_train / 500)
    blown = run_train(TrainConfig(dataset="digits", depth=4, width=16, steps=20, init="large", lr=50.0))
    stats = {r["stat"]: r["value"] for r in blown}
    assert stats["diverged"] == 1.0 and math.isnan(stats["final_accuracy"]) and stats["steps"] < 20


@pytest.mark.parametrize("model, activation", [("cnn", "relu"), ("resnet", "relu")])
def test_train_image_families(model, activation):
    depth = 8 if model == "resnet" else 3
    recs = run_train(TrainConfig(model=model, dataset="digits", depth=depth, width=4, steps=2, eval_every=2,
                                 eval_size=20, final_size=20, init="auto", activation=activation))
    assert {r["stat"] for r in recs} >= {"final_accuracy", "steps_to_target"}


@pytest.mark.parametrize("bad, match", [
    ({"epochs": 1, "steps": 5}, "give one budget"),
    ({"model": "gpt", "dataset": "stdlib"}, "give steps"),
    ({"optimizer": "adam"}, "optimizer='adam' is invalid"),
    ({"model": "transformer"}, "model='transformer' is invalid"),
    ({"model": "nope.py:build"}, "is not a file"),
    ({"init": "glorot_sometimes"}, "init='glorot_sometimes' is invalid"),
    ({"lr": 0.0}, "lr=0.0 is invalid"),
    ({"depth": 0}, "depth=0 is invalid"),
])
def test_train_config_errors(bad, match):
    with pytest.raises(InitlabError, match=match):
        TrainConfig(**bad)


def test_data_that_does_not_fit_the_model_is_refused():
    with pytest.raises(InitlabError, match="does not fit a model fed tokens"):
        run_train(TrainConfig(model="gpt", dataset="digits", steps=1))
    with pytest.raises(InitlabError, match="norm=true is invalid for model 'mlp'"):
        run_train(TrainConfig(dataset="digits", norm=True, steps=1, depth=1, width=4))


def test_families_build_with_the_right_inputs():
    args = ModelArgs(depth=2, width=8, activation="tanh", norm=None, n_features=64, n_classes=3, context=16)
    assert build_model("mlp", args)(torch.zeros(2, 64)).shape == (2, 3)
    assert build_model("cnn", ModelArgs(3, 4, "tanh", None, 64, 3))(torch.zeros(2, 1, 8, 8)).shape == (2, 3)
    gpt = build_model("gpt", ModelArgs(1, 16, "gelu", False, 16, 256, context=16))
    assert gpt(torch.zeros(2, 16, dtype=torch.long)).shape == (2, 16, 256)
    assert isinstance(gpt.ln_f, torch.nn.Identity)
    assert (input_kind("resnet", "digits"), input_kind("gpt", "stdlib")) == ("images", "tokens")
    with pytest.raises(InitlabError, match="not a square image"):
        build_model("cnn", ModelArgs(3, 4, "relu", None, 60, 3))


@pytest.mark.parametrize("start", ["torch_default", "keras_default", "torch_recipe", "lsuv", "auto",
                                   "he_normal"])
def test_every_kind_of_start_initializes_an_mlp(start):
    torch.manual_seed(0)
    model = build_model("mlp", ModelArgs(2, 16, "tanh", None, 8, 3))
    before = [p.detach().clone() for p in model.parameters()]
    apply_start(start, StartContext(model, torch.Generator().manual_seed(0), "tanh",
                                    torch.randn(64, 8, generator=torch.Generator().manual_seed(1))))
    changed = any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert changed == (start != "torch_default")
    assert start in start_names()


def test_probe_cell_records_per_layer_statistics():
    recs = run_probe_cell(ProbeCellConfig(depth=3, width=16, n_features=32, activation="tanh",
                                          init="xavier_normal", batch=32))
    assert recs == run_probe_cell(ProbeCellConfig(depth=3, width=16, n_features=32, activation="tanh",
                                                  init="xavier_normal", batch=32))
    stds = [r for r in recs if r["stat"] == "std"]
    assert len(stds) >= 6 and all(r["activation"] == "tanh" and r["scheme"] == "xavier_normal" for r in recs)
    assert {r["layer_activation"] for r in stds} >= {"tanh"} and not any(r["stat"] == "count" for r in recs)
    gpt = run_probe_cell(ProbeCellConfig(model="gpt", depth=1, width=16, context=8, batch=2, init="gpt2"))
    assert any(r["stat"] == "std" for r in gpt)


@pytest.mark.parametrize(("field", "value", "says"), [
    ("activation", "reluu", "activation 'reluu' is unknown"),
    ("dataset", "nosuchdata", "dataset='nosuchdata' is unknown"),
])
def test_a_train_cell_with_an_unknown_name_is_refused_before_it_runs(field, value, says):
    """A new user's typo used to pass the spec check, fail in every cell, be retried and exit 1."""
    with pytest.raises(InitlabError, match=re.escape(says)):
        TrainConfig(**{field: value})


def test_the_demos_training_run_is_a_registered_experiment_run_by_the_engine():
    """A spec with experiment = "training" expands to the demo's (activation, scheme) cells, and the
    engine runs them serially (no Ray, no store) into the records run_training gives."""
    from initlab.experiments.training import TrainingConfig, load_cell_dataset, run_training
    from initlab.sweep import EXPERIMENTS, drive, expand, parse_spec
    from initlab.sweep.runners import SerialRunner

    assert EXPERIMENTS["training"].config.__name__ == "TrainingCell"
    spec = parse_spec({"sweep": {"experiment": "training", "seeds": [1]},
                       "fixed": {"dataset": "digits", "limit": 300, "max_test": 100, "depth": 2, "width": 8,
                                 "epochs": 1, "evals_per_epoch": 2, "lr": 1},
                       "grid": {"scheme": ["zeros", "he_normal"]}})
    cells = expand(spec)
    assert [c.label for c in cells] == ["scheme=zeros seed=1", "scheme=he_normal seed=1"]
    assert all(c.config.lr == 1.0 and c.config.threads == 1 for c in cells)
    result = drive(EXPERIMENTS["training"].run, cells, SerialRunner())
    assert (result.n_ran, result.failures) == (2, [])
    got = [r for c in cells for r in _no_time(result.records[c.key])]
    config = TrainingConfig(schemes=("zeros", "he_normal"), activations=("relu",), depth=2, width=8, epochs=1,
                            evals_per_epoch=2, lr=1.0, seed=1)
    assert got == _no_time(run_training(load_cell_dataset(cells[0].config), config).records)
    with pytest.raises(InitlabError, match="grid.optimizer is not a setting of experiment 'training'"):
        parse_spec({"sweep": {"experiment": "training"}, "grid": {"optimizer": ["sgd"]}})


def _cli_refuses(tmp_path, capsys, doc: dict, says: str) -> None:
    """``initlab sweep`` on ``doc`` exits 2 with one line containing ``says`` and makes no directory."""
    from initlab.cli import main

    spec = tmp_path / "spec.toml"
    spec.write_text("\n".join(f"[{t}]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in vals.items())
                              for t, vals in doc.items()))
    assert main(["sweep", str(spec), "--out", str(tmp_path / "new"), "--serial", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("initlab: error: ") and says in err, err
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(("experiment", "tables", "says"), [
    ("training", {"grid": {"scheme": ["he_normal", "nosuch"]}},
     "cell scheme=nosuch seed=0: scheme 'nosuch' is unknown: use one of zeros, small, large"),
    ("training", {"fixed": {"dataset": "nosuch"}}, "dataset='nosuch' is unknown: use one of mnist5k, digits"),
    ("training", {"grid": {"dataset": ["digits", "missing.csv"]}},
     "cell dataset=missing.csv seed=0: dataset='missing.csv' is not a file"),
    ("training", {"fixed": {"dataset": "fashion-mnist", "data_dir": "no-such-dir"}},
     "data_dir='{tmp}/no-such-dir' is not a directory"),
    ("phase", {"fixed": {"dataset": "nosuch"}}, "dataset='nosuch' is unknown: use one of mnist5k, digits"),
    ("phase", {"grid": {"dataset": ["digits", "nosuch"]}}, "cell dataset=nosuch seed=0: dataset='nosuch'"),
])
def test_a_training_or_phase_sweep_with_an_unknown_scheme_or_dataset_is_refused_before_it_runs(
        experiment, tables, says, tmp_path, capsys):
    """These used to pass expansion, make the results directory, fail in every cell twice and exit 1."""
    pytest.importorskip("pyarrow")  # --serial needs only it
    _cli_refuses(tmp_path, capsys, {"sweep": {"experiment": experiment}, **tables},
                 says.format(tmp=tmp_path.resolve()))


def test_the_dataset_check_lets_through_what_load_dataset_reads(tmp_path):
    """Every name of DATASETS, as load_dataset spells them (any case, ``_`` for ``-``, the aliases),
    and an existing .csv file; the scheme check lets through every start of the training experiment."""
    from initlab.data import DATASETS
    from initlab.experiments.phase import PhaseCell
    from initlab.experiments.training import TrainingCell, available_schemes
    from initlab.schemes import NAMED_SCHEMES
    from initlab.sweep.experiments import check_dataset

    for file in ("mine.csv", "MINE.CSV"):
        (tmp_path / file).write_text("a,label\n0,0\n1,1\n")
    files = [str(tmp_path / "mine.csv"), str(tmp_path / "MINE.CSV")]
    for name in (*DATASETS, "Fashion_MNIST", "fashionmnist", "MNIST-5K", "mnist_5k", *files):
        check_dataset(PhaseCell(dataset=name))
        check_dataset(TrainingCell(dataset=name))
    check_dataset(PhaseCell(dataset="fashion-mnist", data_dir=str(tmp_path)))
    for scheme in (*available_schemes(), "constant", *NAMED_SCHEMES):
        assert TrainingCell(scheme=scheme).scheme == scheme
    with pytest.raises(InitlabError, match="scheme 'he_normall' is unknown: use one of zeros, small"):
        TrainingCell(scheme="he_normall")
