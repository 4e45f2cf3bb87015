"""The sweep engine without Ray (the serial runner: the same cells, keys and store as on Ray),
``initlab phase``'s use of it, and the ``initlab sweep`` commands."""

from __future__ import annotations

import html
import json
import os
import socket
import sys

import pytest
from sweep_helpers import phase_spec, runs, train_spec, write_factory

from initlab.cli import main
from initlab.errors import InitlabError
from initlab.experiments.phase import PhaseCell, PhaseConfig, run_phase, run_phase_cell
from initlab.sweep import map_cells

pyarrow = pytest.importorskip("pyarrow")

from initlab.sweep import SweepStore, run  # noqa: E402


def _toml(spec: dict) -> str:
    return "\n".join(f"[{t}]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in vals.items())
                     for t, vals in spec.items())


def test_serial_sweep_stores_every_cell_once_and_a_rerun_skips_them(tmp_path):
    result = run(phase_spec(), out=tmp_path / "s", runner="serial")
    assert (result.n_cells, result.n_stored_before, result.n_ran, result.failures) == (8, 0, 8, [])
    records = SweepStore.open(tmp_path / "s").records()
    again = run(phase_spec(), out=tmp_path / "s", runner="serial")
    assert (again.n_stored_before, again.n_ran) == (8, 0)
    assert SweepStore.open(tmp_path / "s").records() == records
    cell = PhaseCell(depth=1, sigma_w2=2.0, width=8, steps=5, seed=1)  # a stored cell's records, recomputed
    mine = [r for r in records if (r["depth"], r["sigma_w2"], r["seed"]) == (1, 2.0, 1)]
    assert [(r["stat"], r["value"]) for r in mine] == [(r["stat"], r["value"]) for r in run_phase_cell(cell)]


def test_a_failing_cell_is_retried_once_then_recorded_and_the_sweep_goes_on(tmp_path):
    factory = write_factory(tmp_path, raise_=(5,))
    result = run(train_spec(factory, [4, 5], [1], [0]), out=tmp_path / "s", runner="serial")
    assert result.n_ran == 1 and len(result.failures) == 1
    assert result.failures[0].params == {"width": 5, "depth": 1, "seed": 0}
    assert result.failures[0].error == "RuntimeError: width 5 always fails"
    assert runs(tmp_path) == {"4-1": 1, "5-1": 2}  # tried twice
    store = SweepStore.open(tmp_path / "s")
    assert len(store.cells()) == 1 and [f.error for f in store.failures()] == [result.failures[0].error]
    rerun = run(train_spec(factory, [4, 5], [1], [0]), out=tmp_path / "s", runner="serial")
    assert (rerun.n_stored_before, rerun.n_ran, len(rerun.failures)) == (1, 0, 1)  # the failed one is retried
    assert runs(tmp_path)["5-1"] == 4


def test_map_cells_is_the_phase_loop():
    """`initlab phase` runs its cells through the engine; the records are those of the default map."""
    config = PhaseConfig(sigma_w2s=(1.0,), include_critical=False, depths=(1, 2), width=8, steps=5,
                         theory_points=2, jacobian_width=4, jacobian_depth=2, jacobian_seeds=1)
    assert run_phase(config, map_cells=map_cells).records == run_phase(config).records
    cells = [PhaseCell(depth=2, width=8, steps=3), PhaseCell(depth=1, width=8, steps=3)]
    assert map_cells(run_phase_cell, cells) == [run_phase_cell(c) for c in cells]


def test_map_cells_raises_when_a_cell_fails_twice():
    def broken(config):
        raise RuntimeError("no")

    with pytest.raises(InitlabError, match="1 of 1 cells failed twice.*RuntimeError: no"):
        map_cells(broken, [PhaseCell(depth=1)])


def test_cli_sweep_serial_show_and_report(tmp_path, capsys):
    spec = tmp_path / "spec.toml"
    spec.write_text(_toml(phase_spec(depths=(1, 2), sigma_w2s=(1.0, 2.0), seeds=(0,))))
    out = tmp_path / "s"
    assert main(["sweep", str(spec), "--out", str(out), "--serial", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "4 cell(s) run, 0 already stored, 4 in the grid" in text and "serial" in text
    assert main(["sweep", "show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "4 of 4 cells stored, 0 failed, 0 not run yet" in shown
    assert shown.count(" done ") == 4 and "test_accuracy" in shown
    assert main(["sweep", "show", str(out), "--records"]) == 0
    assert capsys.readouterr().out.startswith("experiment,scheme,activation,layer,stat,value,epoch,seed")
    assert main(["sweep", "report", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    doc = json.loads((out / "report" / "results.json").read_text())
    assert doc["schema"] == "initlab.sweep-report" and len(doc["records"]) == 12
    files = {f["file"] for f in doc["figures"]}
    assert files == {"figures/heatmap_test_accuracy.png", "figures/curves_phase.png"}
    page = html.unescape((out / "report" / "index.html").read_text())
    assert "test_accuracy: median" in page and 'experiment = "phase"' in page
    assert main(["sweep", "report", str(out)]) == 0  # a report is replaced in place
    assert main(["sweep", str(spec), "--out", str(out), "--serial", "--no-progress"]) == 0  # report/ is ours
    assert "0 cell(s) run, 4 already stored" in capsys.readouterr().out


@pytest.mark.parametrize("out, says", [
    ("{s}", "is the sweep directory"),
    ("{s}/cells", "is inside the sweep directory"),
    ("{s}/report/sub", "is inside the sweep directory"),
    ("{s}/cells/..", "is the sweep directory"),
    ("{tmp}", "contains the sweep directory"),
])
def test_a_report_never_replaces_its_sweep_even_with_force(out, says, tmp_path, capsys):
    """`initlab sweep report D --out D --force` moved the whole sweep to a backup: --out may be
    D/report (the default) or outside D, never D, another directory inside D, or one holding D."""
    s = tmp_path / "s"
    run(phase_spec(depths=(1,), sigma_w2s=(1.0,), seeds=(0,)), out=s, runner="serial")
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert main(["sweep", "report", str(s), "--out", out.format(s=s, tmp=tmp_path), "--force"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("initlab: error: --out ") and says in err, err
    assert len(err.strip().splitlines()) == 1
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before
    assert main(["sweep", "report", str(s), "--out", str(s / "report"), "--force"]) == 0
    assert main(["sweep", "report", str(s), "--out", str(tmp_path / "elsewhere")]) == 0
    assert main(["sweep", "show", str(s)]) == 0


def test_cli_sweep_failed_cells_exit_1_and_are_listed(tmp_path, capsys):
    factory = write_factory(tmp_path, raise_=(5,))
    spec = tmp_path / "spec.toml"
    spec.write_text(_toml(train_spec(factory, [4, 5], [1], [0], out=tmp_path / "s")))
    assert main(["sweep", str(spec), "--serial", "--no-progress"]) == 1
    text = capsys.readouterr().out
    assert "1 failed" in text and "failed: width=5 depth=1 seed=0" in text and "always fails" in text
    assert main(["sweep", "show", str(tmp_path / "s")]) == 0
    assert "FAILED" in capsys.readouterr().out


@pytest.mark.parametrize("args, match", [
    (["sweep", "show", "{tmp}/mine"], "is not an initlab sweep directory"),
    (["sweep", "report", "{tmp}/mine"], "is not an initlab sweep directory"),
    (["sweep", "{tmp}/spec.toml", "--out", "{tmp}/mine", "--serial"],
     "--out {tmp}/mine is a non-empty directory that is not an initlab sweep (no initlab-sweep.json): it is "
     "left as it is: choose a new or empty --out"),
    (["sweep", "{tmp}/spec.toml", "--out", "{tmp}/mine/data.csv/sub", "--serial"],
     "--out {tmp}/mine/data.csv/sub: {tmp}/mine/data.csv is a file, not a directory: choose --out in a "
     "directory"),
    (["sweep", "{tmp}/spec.toml", "--out", "{tmp}/new", "--cpus", str((os.cpu_count() or 1) + 1)],
     f"--cpus {(os.cpu_count() or 1) + 1} is more than this machine's {os.cpu_count()} cores: give --cpus "
     f"{os.cpu_count()} or fewer"),
    (["sweep", "{tmp}/missing.toml"], "does not exist"),
    (["sweep", "{tmp}/spec.toml", "--out", "{tmp}/new", "--serial", "--address", "auto"],
     "--address auto runs on Ray"),
])
def test_cli_sweep_errors_are_one_line(args, match, tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "data.csv").write_text("precious")
    (tmp_path / "spec.toml").write_text(_toml(phase_spec()))
    assert main([a.format(tmp=tmp_path) for a in args]) == 2
    err = capsys.readouterr().err
    assert match.format(tmp=tmp_path) in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert (tmp_path / "mine" / "data.csv").read_text() == "precious"
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["data.csv"]
    assert not (tmp_path / "new").exists()  # refused before anything is created


@pytest.mark.parametrize("missing, args", [("ray", ["sweep", "{tmp}/spec.toml"]),
                                           ("pyarrow", ["sweep", "show", "{tmp}"])])
def test_without_the_sweep_extra_one_line_says_how_to_install_it(missing, args, tmp_path, capsys,
                                                                   monkeypatch):
    (tmp_path / "spec.toml").write_text(_toml(phase_spec()))
    monkeypatch.setitem(sys.modules, missing, None)  # as if it were not installed
    assert main([a.format(tmp=tmp_path) for a in args]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"initlab: error: initlab sweep needs {missing}: pip install 'initlab[sweep]'"


def test_cli_phase_runner_options(tmp_path, capsys):
    assert main(["phase", "--quick", "--cpus", "2", "--out", str(tmp_path / "p"), "--no-progress"]) == 2
    assert "--cpus 2 sets the CPUs of Ray: add --ray" in capsys.readouterr().err
    assert main(["phase", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--ray" in text and "--address" in text


def test_report_figures_of_a_depth_study_and_a_probe_sweep(tmp_path):
    """One numeric axis: the headline against it (a depth study); a probe sweep: per-layer curves."""
    from initlab.report.sweep_report import write_sweep_report
    from initlab.sweep import get_experiment

    factory = write_factory(tmp_path)
    probe = {"sweep": {"experiment": "probe", "seeds": [0]}, "fixed": {"width": 8, "n_features": 16},
             "grid": {"depth": [2, 4], "init": ["auto", "he_normal"]}}
    for name, spec in (("train", train_spec(factory, [4], [1, 2], [0, 1])), ("probe", probe)):
        run(spec, out=tmp_path / name, runner="serial")
        store = SweepStore.open(tmp_path / name)
        meta = {**store.manifest, "n_stored": len(store.cells()), "failures": [],
                "headline": list(get_experiment(name).headline)}
        write_sweep_report(store.records(), tmp_path / name / "report", meta=meta)
    assert sorted(p.name for p in (tmp_path / "train" / "report" / "figures").iterdir()) == [
        "by_depth_final_accuracy.png", "curves_train.png"]
    figures = tmp_path / "probe" / "report" / "figures"
    assert sorted(p.name for p in figures.iterdir()) == ["curves_probe.png"]
    page = html.unescape((tmp_path / "train" / "report" / "index.html").read_text())
    assert "steps_to_target: reached" in page and "final_accuracy: median" in page


def test_the_report_of_a_training_sweep_draws_its_test_accuracy_curves(tmp_path, capsys):
    """``initlab sweep report`` of a training sweep: the curves of test accuracy against the SGD step
    (its ``test_accuracy_at_step`` records), besides the table."""
    spec = {"sweep": {"experiment": "training", "seeds": [0]},
            "fixed": {"dataset": "digits", "limit": 200, "max_test": 100, "depth": 2, "width": 8, "epochs": 1,
                      "evals_per_epoch": 2},
            "grid": {"scheme": ["zeros", "he_normal"]}}
    assert run(spec, out=tmp_path / "s", runner="serial").failures == []
    assert main(["sweep", "report", str(tmp_path / "s")]) == 0
    capsys.readouterr()
    doc = json.loads((tmp_path / "s" / "report" / "results.json").read_text())
    assert "figures/curves_training.png" in {f["file"] for f in doc["figures"]}
    assert (tmp_path / "s" / "report" / "figures" / "curves_training.png").is_file()
    steps = {r["step"] for r in doc["records"] if r["stat"] == "test_accuracy_at_step"}
    assert len(steps) == 3 and min(steps) == 0  # before training, and evals_per_epoch = 2 times


def test_sweep_help_shows_how_to_run_a_spec(capsys):
    """`initlab sweep --help` (and a bare `initlab sweep`) shows the three uses and the options of
    running a spec, not only the subcommands."""
    for args in (["sweep", "--help"], ["sweep"]):
        assert main(args) == 0
        text = capsys.readouterr().out
        assert "initlab sweep SPEC.toml [OPTIONS]" in text
        assert "initlab sweep show DIR" in text and "initlab sweep report DIR" in text
        for option in ("--out DIR", "--address ADDRESS", "--cpus N", "--serial", "--no-progress"):
            assert option in text, option
        assert "Commands:" in text and "run" in text


def _refused_port() -> int:
    """A TCP port of this machine where nothing listens (bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("address, says", [
    ("127.0.0.1:{port}", "nothing answers at port {port} of 127.0.0.1"),
    ("ray://nohost.invalid:10001", "host 'nohost.invalid' is unknown"),  # .invalid never resolves (RFC 2606)
    ("nohost", "--address nohost is invalid: give auto (the Ray cluster running on this machine), HOST:PORT"),
    ("http://127.0.0.1:{port}", "--address http://127.0.0.1:{port} is invalid: give auto (the Ray cluster "
     "running on this machine), HOST:PORT (e.g. head:6379) or ray://HOST:PORT (e.g. ray://head:10001)"),
])
def test_an_unreachable_address_is_one_line_and_leaves_no_directory(address, says, tmp_path, capsys):
    """Checked before ray.init (which would retry for minutes): one line, exit 2, no results
    directory made (nor its parents), a directory the user had left as it was."""
    pytest.importorskip("ray")
    port = _refused_port()
    address, says = address.format(port=port), says.format(port=port)
    (tmp_path / "spec.toml").write_text(_toml(phase_spec()))
    (tmp_path / "mine").mkdir()
    for out in (tmp_path / "new" / "s", tmp_path / "mine"):
        assert main(["sweep", str(tmp_path / "spec.toml"), "--out", str(out), "--address", address]) == 2
        err = capsys.readouterr().err
        assert err.startswith("initlab: error: ") and says in err, err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "new").exists()
    assert list((tmp_path / "mine").iterdir()) == []


def test_an_interrupted_sweep_says_so_on_its_own_line_after_the_bar(tmp_path, capsys):
    """Ctrl-C during the second of two cells (the factory raises KeyboardInterrupt): the bar is
    closed first, so the resume line starts a line of its own; exit 130, the first cell stored."""
    factory = write_factory(tmp_path, interrupt=(5,))
    spec = tmp_path / "spec.toml"
    spec.write_text(_toml(train_spec(factory, [4, 5], [1], [0], out=tmp_path / "s")))
    assert main(["sweep", str(spec), "--serial", "--progress"]) == 130
    err = capsys.readouterr().err
    lines = err.split("\n")
    resume = [line for line in lines if "interrupted; 1 of 2 cells are stored" in line]
    assert len(resume) == 1 and resume[0].startswith("initlab sweep: interrupted;"), err
    assert "run the same command again to resume" in resume[0]
    assert "1/2" in err  # the bar was drawn, and ended before that line
    assert "\r" not in resume[0] and err.rstrip().endswith("initlab: aborted")  # Ctrl-C: exit 130
    assert len(list((tmp_path / "s" / "cells").glob("*.parquet"))) == 1


def test_a_local_ray_runs_its_workers_at_the_drivers_priority(monkeypatch):
    """Ray starts workers at niceness 15 (they then lose their cores to the driver and Ray's daemons:
    benchmarks/sweep_scaling.py measured 10.1 s against 8.5 s per cell); a local Ray the runner
    starts gets RAY_worker_niceness=0 unless the user set it. ray.init is faked: no Ray starts."""
    ray = pytest.importorskip("ray")
    from initlab.sweep.runners import RayRunner

    seen = {}
    monkeypatch.delenv("RAY_worker_niceness", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    def fake_init(**kw):
        seen.update(kw, niceness=os.environ.get("RAY_worker_niceness"))

    monkeypatch.setattr(ray, "init", fake_init)
    RayRunner(cpus=1)
    assert seen["niceness"] == "0" and seen["address"] == "local"
    monkeypatch.setenv("RAY_worker_niceness", "5")
    RayRunner(cpus=1)
    assert seen["niceness"] == "5"
