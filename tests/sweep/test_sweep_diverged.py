"""A diverged run in a sweep: its accuracy is NaN in both training experiments, ``initlab sweep
show`` gives its cell the status ``diverged``, and the report's table says ``diverged``."""

from __future__ import annotations

import html
import json
import math

import pytest

from initlab.cli import main
from initlab.report.sweep_figures import summary_table

pyarrow = pytest.importorskip("pyarrow")

#: A learning rate that makes the loss non-finite within a few SGD steps (the weights overflow float32).
BLOWUP_LR = 1e30


def _toml(spec: dict) -> str:
    return "\n".join(f"[{t}]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in vals.items())
                     for t, vals in spec.items())


def _rec(cell: str, lr: float, seed: int, stat: str, value) -> dict:
    return {"cell": cell, "lr": lr, "seed": seed, "stat": stat, "value": value}


def test_the_table_counts_diverged_seeds_and_says_diverged_where_no_seed_has_a_number():
    """lr 0.1: one of two seeds diverged, so the median is the other seed's; lr 10: both diverged, so
    the accuracy reads "diverged" (not "–", which also marks an empty range); seconds stay numbers."""
    recs = []
    for cell, lr, seed, acc, lost in (("a", 0.1, 0, 0.8, 0.0), ("b", 0.1, 1, math.nan, 1.0),
                                      ("c", 10.0, 0, math.nan, 1.0), ("d", 10.0, 1, math.nan, 1.0)):
        recs += [_rec(cell, lr, seed, "final_accuracy", acc), _rec(cell, lr, seed, "diverged", lost),
                 _rec(cell, lr, seed, "seconds", 2.0 + seed)]
    table = summary_table(recs, ["lr", "seed"], ["final_accuracy", "seconds"])
    assert table["header"] == ["lr", "seeds", "diverged", "final_accuracy: median", "min–max",
                               "seconds: median", "min–max"]
    assert table["rows"] == [["0.1", "2", "1/2", "0.8", "–", "2.5", "2–3"],
                             ["10", "2", "2/2", "diverged", "–", "2.5", "2–3"]]


def test_a_table_without_diverged_records_has_no_diverged_column():
    recs = [_rec("a", 0.1, 0, "std", 1.0), _rec("b", 0.1, 1, "std", 3.0)]
    table = summary_table(recs, ["lr", "seed"], ["std"])
    assert table["header"] == ["lr", "seeds", "std: median", "min–max"]
    assert table["rows"] == [["0.1", "2", "2", "1–3"]]


def _train_spec(experiment: str) -> dict:
    if experiment == "training":
        fixed = {"dataset": "digits", "limit": 200, "max_test": 100, "depth": 2, "width": 8, "epochs": 1,
                 "evals_per_epoch": 2, "scheme": "he_normal"}
    else:
        fixed = {"dataset": "digits", "train_limit": 200, "depth": 2, "width": 8, "steps": 8, "eval_every": 4,
                 "eval_size": 50, "final_size": 50, "batch_size": 32, "init": "he_normal"}
    return {"sweep": {"experiment": experiment, "seeds": [0], "threads": 1}, "fixed": fixed,
            "grid": {"lr": [0.01, BLOWUP_LR]}}


@pytest.mark.parametrize(("experiment", "final"), [("training", "final_test_accuracy"),
                                                   ("train", "final_accuracy")])
def test_a_diverged_cell_is_shown_and_reported_as_diverged(experiment, final, tmp_path, capsys):
    """One training cell whose loss blew up, one that trained: the records give the blown-up one NaN
    accuracy, `sweep show` its status `diverged` (the other `done`), and the report's table counts
    it and reads `diverged` for its accuracy."""
    spec, out = tmp_path / "spec.toml", tmp_path / "s"
    spec.write_text(_toml(_train_spec(experiment)))
    assert main(["sweep", str(spec), "--out", str(out), "--serial", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["sweep", "show", str(out)]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert "2 of 2 cells stored (1 diverged), 0 failed, 0 not run yet" in shown[0]
    header = shown[1].split()
    assert header[:3] == ["lr", "seed", "status"] and final in header
    cells = {line.split()[0]: dict(zip(header, line.split(), strict=True)) for line in shown[2:]}
    assert cells["0.01"]["status"] == "done" and 0.0 <= float(cells["0.01"][final]) <= 1.0
    assert cells["1e+30"]["status"] == "diverged" and cells["1e+30"][final] == "nan"
    assert main(["sweep", "report", str(out)]) == 0
    capsys.readouterr()
    doc = json.loads((out / "report" / "results.json").read_text())
    finals = {r["lr"]: r["value"] for r in doc["records"] if r["stat"] == final}
    assert finals[BLOWUP_LR] is None and 0.0 <= finals[0.01] <= 1.0  # NaN is JSON null
    page = html.unescape((out / "report" / "index.html").read_text())
    assert "<th>diverged</th>" in page and "“diverged” counts the seeds whose loss became NaN" in page
    assert "<td>1e+30</td><td>1</td><td>1/1</td>" in page
    blown = page[page.index("<td>1e+30</td>"):].split("</tr>")[0]
    assert blown.count("<td>diverged</td>") >= 1


def test_training_cells_are_keyed_by_their_records_version():
    """A diverged training run's accuracies became NaN (records version 2): its cells get new keys,
    so a sweep directory from before cannot pass its old numbers off as new; train's keys stay."""
    from initlab.sweep import cell_key, expand, parse_spec
    from initlab.sweep.experiments import get_experiment

    training = get_experiment("training")
    assert training.records_version == 2 and training.key_name == "training/records-v2"
    cell = expand(parse_spec({"sweep": {"experiment": "training"}, "grid": {"lr": [0.1]}}))[0]
    assert cell.key == cell_key("training/records-v2", cell.config) != cell_key("training", cell.config)
    train = expand(parse_spec({"sweep": {"experiment": "train"}, "grid": {"lr": [0.1]}}))[0]
    assert get_experiment("train").key_name == "train" and train.key == cell_key("train", train.config)
