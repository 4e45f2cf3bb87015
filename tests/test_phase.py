"""Tests of the phase experiment (initlab.experiments.phase), its report and ``initlab phase``.

All runs are seeded and CPU-only; the data set is scikit-learn's digits (bundled, offline).
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from pathlib import Path

import pytest
import torch

from initlab import theory
from initlab.cli import main
from initlab.errors import InitlabError
from initlab.experiments.phase import (
    PhaseConfig,
    init_gaussian_,
    init_orthogonal_,
    jacobian_singular_values,
    run_phase,
)
from initlab.models import mlp
from initlab.report.phase_report import MARKER, SCHEMA, is_phase_report_dir, write_phase_report

TINY = dict(sigma_w2s=(1.0,), include_critical=False, depths=(2,), width=8, steps=5, theory_points=2,
            jacobian_width=4, jacobian_depth=2, jacobian_seeds=1)


@pytest.fixture(scope="module")
def tiny_result():
    return run_phase(PhaseConfig(**TINY))


def test_quick_run_trains_deeper_at_criticality():
    """sigma_b2 = 0.05 puts the edge of chaos at sigma_w2 ~ 1.76, so sigma_w2 = 1 is ordered (not
    critical) and 4 chaotic; at depth 30 the critical network learns in 200 steps, the others
    hardly do. The claim is on the median over seeds 0-2, with a margin, not on one seed.

    Measured (quick config, depth 30, seeds 0-9, each with 1 and 2 threads and with 1 thread under
    ATEN_CPU_CAPABILITY=default; 30 runs): critical 0.39-0.84 test accuracy (sd over seeds
    0.08-0.15), sigma_w2 = 1 0.10-0.37, sigma_w2 = 4 0.09-0.32. One seed's gap, critical minus
    the better of the others, ranged 0.16-0.63: the old single-seed claim (trainable depth 30 vs
    20, threshold ~0.5) failed on seed 0 with 1 thread (critical 0.499). The gap of the medians
    over seeds 0-2 was 0.37-0.54 in the three settings (>= 0.16 for any 3 of the 10 seeds), so
    the test asks for > 0.1."""
    config = PhaseConfig.quick(depths=(30,), theory_points=2, jacobian_seeds=1, jacobian_width=8,
                               jacobian_depth=2)
    assert config.sigma_b2 == 0.05 and set(config.sigma_w2s) == {1.0, 4.0}
    runs = [run_phase(dataclasses.replace(config, seed=seed)) for seed in range(3)]
    crit = runs[0].critical.sigma_w2
    assert crit == pytest.approx(theory.critical_point("tanh", sigma_b2=0.05).sigma_w2)
    assert theory.mean_field("tanh", 1.0, 0.05).phase == "ordered"
    assert theory.mean_field("tanh", 4.0, 0.05).phase == "chaotic"
    accs = [res.accuracy() for res in runs]
    assert all(len(acc) == 3 and all(0.0 <= a <= 1.0 for a in acc.values()) for acc in accs)
    median = {w: statistics.median(acc[(w, 30)] for acc in accs) for w in (1.0, crit, 4.0)}
    assert median[crit] > median[1.0] + 0.1, median
    assert median[crit] > median[4.0] + 0.1, median
    assert all(set(res.trainable_depth()) == {1.0, crit, 4.0} for res in runs)
    # the theory agrees on the ordering: 6 xi_c is infinite at criticality, finite on both sides
    theo = {r["sigma_w2"]: r["value"] for r in runs[0].select("trainable_depth_theory")}
    assert theo[crit] == math.inf and theo[1.0] < math.inf and theo[4.0] < math.inf


def test_orthogonal_weights_give_a_tighter_jacobian_spectrum_at_criticality():
    cp = theory.critical_point("tanh", sigma_b2=0.05)
    for seed in range(3):
        spread = {}
        for kind in ("gaussian", "orthogonal"):
            sv = jacobian_singular_values("tanh", cp, weights=kind, width=32, depth=16,
                                          generator=torch.Generator().manual_seed(seed))
            p10, p90 = torch.quantile(sv, torch.tensor([0.1, 0.9], dtype=sv.dtype)).tolist()
            spread[kind] = p90 / p10
        # Gaussian products spread by orders of magnitude more (Pennington et al. 2017)
        assert spread["orthogonal"] * 100 < spread["gaussian"], spread


def test_jacobian_is_the_product_of_layer_jacobians():
    """jacrev's Jacobian against the explicit product D_L W_L ... D_1 W_1."""
    cp = theory.critical_point("tanh", sigma_b2=0.05)
    width, depth = 6, 3
    gen = torch.Generator().manual_seed(7)
    sv = jacobian_singular_values("tanh", cp, weights="gaussian", width=width, depth=depth, generator=gen)
    gen = torch.Generator().manual_seed(7)  # replay the same draws
    model = mlp(width, width, depth, None, "tanh").to(torch.float64)
    init_gaussian_(model, cp.sigma_w2, cp.sigma_b2, generator=gen)
    x = torch.tanh(torch.randn(width, generator=gen, dtype=torch.float64) * math.sqrt(cp.q_star))
    jac = torch.eye(width, dtype=torch.float64)
    with torch.no_grad():
        for i in range(1, depth + 1):
            lin = getattr(model, f"fc{i}")
            h = lin(x)
            jac = torch.diag(1 - torch.tanh(h) ** 2) @ lin.weight @ jac
            x = torch.tanh(h)
    torch.testing.assert_close(sv, torch.linalg.svdvals(jac), atol=1e-12, rtol=1e-10)


def test_init_helpers_variances_and_orthogonality():
    gen = torch.Generator().manual_seed(0)
    model = mlp(256, 256, 1, None, "tanh")
    init_gaussian_(model, 2.0, 0.5, generator=gen)
    n = model.fc1.weight.numel()
    std = float(model.fc1.weight.detach().std())
    expected = math.sqrt(2.0 / 256)
    assert abs(std - expected) < 5 * expected / math.sqrt(2 * n)  # 5 standard errors of a std
    init_orthogonal_(model, 2.0, 0.0, generator=gen)
    w = model.fc1.weight.double()
    torch.testing.assert_close(w @ w.T, 2.0 * torch.eye(256, dtype=torch.float64), atol=1e-5, rtol=0)
    assert float(model.fc1.bias.detach().abs().max()) == 0.0
    wide = mlp(4, 16, 1, None, "tanh")  # out > in: orthonormal columns, entries still var sigma_w2/fan_in
    init_orthogonal_(wide, 1.0, 0.0, generator=gen)
    w = wide.fc1.weight.double()
    torch.testing.assert_close(w.T @ w, (16 / 4) * torch.eye(4, dtype=torch.float64), atol=1e-5, rtol=0)


def test_same_seed_same_bits(tiny_result):
    again = run_phase(PhaseConfig(**TINY))
    assert again.records == tiny_result.records
    other = run_phase(PhaseConfig(**{**TINY, "seed": 1}))
    losses = [r["value"] for r in tiny_result.select("train_loss")]
    assert [r["value"] for r in other.select("train_loss")] != losses


def test_records_are_tidy(tiny_result):
    stats = {r["stat"] for r in tiny_result.records}
    assert {"test_accuracy", "train_loss", "diverged", "trainable_depth", "xi_c", "xi_q", "chi_1",
            "trainable_depth_theory", "critical_sigma_w2", "jac_sv_p10", "jac_sv_p50", "jac_sv_p90",
            "jac_sv_spread", "jac_sv_mean_sq"} <= stats
    for r in tiny_result.records:
        assert r["experiment"] == "phase" and r["activation"] == "tanh" and r["seed"] == 0
        assert {"scheme", "layer", "value", "epoch"} <= set(r)


@pytest.mark.parametrize("bad, match", [
    ({"depths": (0,)}, "depths"),
    ({"sigma_w2s": (-1.0,)}, "sigma_w2"),
    ({"sigma_b2": -0.1}, "sigma_b2"),
    ({"lr": 0.0}, "lr"),
    ({"trainable_fraction": 1.5}, "trainable_fraction"),
])
def test_config_errors(bad, match):
    with pytest.raises(InitlabError, match=match):
        PhaseConfig(**bad).validate()


def test_report_files_and_atomic_replace(tiny_result, tmp_path):
    out = tmp_path / "rep"
    write_phase_report(tiny_result.records, out, meta={"config": tiny_result.config_dict()})
    assert is_phase_report_dir(out) and (out / MARKER).is_file()
    doc = json.loads((out / "results.json").read_text())
    assert doc["schema"] == SCHEMA and len(doc["records"]) == len(tiny_result.records)
    assert {f["file"] for f in doc["figures"]} == {"figures/phase_diagram.png", "figures/depth_scales.png",
                                                    "figures/jacobian.png"}
    for f in doc["figures"]:
        assert (out / f["file"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "index.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and "<table>" in page
    assert (out / "results.csv").read_text().startswith("experiment,scheme,activation,layer,stat,value")
    # a phase report is replaced in place; no temporary directories are left behind
    write_phase_report(tiny_result.records, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]
    # anything else is refused unless forced
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not an initlab phase report"):
        write_phase_report(tiny_result.records, other)
    assert (other / "notes.txt").read_text() == "keep me"
    notes = []
    write_phase_report(tiny_result.records, other, force=True, notify=notes.append)
    assert is_phase_report_dir(other) and not (other / "notes.txt").exists()
    # --force never deletes: the old contents are kept in <out>.backup-<time> beside it
    backups = [p for p in tmp_path.iterdir() if p.name.startswith("mine.backup-")]
    assert len(backups) == 1 and (backups[0] / "notes.txt").read_text() == "keep me"
    assert len(notes) == 1 and str(backups[0]) in notes[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["rep", "mine", backups[0].name])


def test_phase_report_holding_user_files_is_not_replaced_silently(tiny_result, tmp_path):
    out = write_phase_report(tiny_result.records, tmp_path / "rep")
    (out / "mine.txt").write_text("mine")
    assert not is_phase_report_dir(out)
    with pytest.raises(FileExistsError, match="mine.txt"):
        write_phase_report(tiny_result.records, out)
    assert (out / "mine.txt").read_text() == "mine"


def test_cli_phase_force_keeps_user_files_in_a_backup(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    args = ["phase", "--quick", "--depths", "2", "--steps", "2", "--sigma-w2", "1", "--width", "8",
            "--out", str(out), "--no-progress"]
    assert main(args) == 2  # refused without --force, before any work
    assert "--force" in capsys.readouterr().err and (out / "thesis.tex").read_text() == "precious"
    assert main([*args, "--force"]) == 0
    assert is_phase_report_dir(out)
    backups = [p for p in tmp_path.iterdir() if p.name != "mine"]
    assert len(backups) == 1 and (backups[0] / "thesis.tex").read_text() == "precious"
    assert str(backups[0]) in capsys.readouterr().err  # the user is told where their files are


@pytest.mark.parametrize("kind", ["file", "symlink", "home"])
def test_cli_phase_force_never_replaces_a_file_link_or_home(kind, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if kind == "home":
        target, needle = Path.home(), "system or home directory"
    else:
        target = tmp_path / kind
        if kind == "file":
            target.write_text("data")
            needle = "not a directory"
        else:
            (tmp_path / "real").mkdir()
            target.symlink_to(tmp_path / "real", target_is_directory=True)
            needle = "symbolic link"
    assert main(["phase", "--quick", "--out", str(target), "--force", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert (needle in err or (kind == "home" and "current directory" in err))  # tmp under home
    assert len(err.strip().splitlines()) == 1
    if kind == "file":
        assert target.read_text() == "data"


def test_cli_phase(tmp_path, capsys):
    out = tmp_path / "phase"
    args = ["phase", "--quick", "--depths", "2", "--steps", "5", "--sigma-w2", "1,4", "--width", "8",
            "--out", str(out), "--no-progress"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "critical sigma_w2=1.761" in text and "<- critical" in text and "Jacobian" in text
    assert is_phase_report_dir(out)


def test_cli_phase_errors(tmp_path, capsys):
    assert main(["phase", "--depths", "a,b", "--out", str(tmp_path / "x")]) == 2
    assert "--depths" in capsys.readouterr().err
    assert main(["phase", "--activation", "nope", "--quick", "--out", str(tmp_path / "y")]) == 2
    assert "nope" in capsys.readouterr().err
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "f").write_text("x")
    assert main(["phase", "--quick", "--out", str(busy)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["phase", "--activation", "relu", "--sigma-b2", "0.1", "--quick", "--out",
                 str(tmp_path / "z"), "--no-progress"]) == 2
    assert "homogeneous" in capsys.readouterr().err


# ---- review: edge cases found by breaking it ------------------------------------------------


def test_activation_param_reaches_the_jacobian_net():
    """leaky_relu with slope 0.5: the Jacobian net must use the slope the theory used (it used
    torch's default 0.01)."""
    slope = 0.5
    cp = theory.critical_point("leaky_relu", param=slope)
    width, depth = 5, 3
    sv = jacobian_singular_values("leaky_relu", cp, weights="gaussian", width=width, depth=depth,
                                  param=slope, generator=torch.Generator().manual_seed(3))
    gen = torch.Generator().manual_seed(3)  # replay the same draws
    model = mlp(width, width, depth, None, "relu").to(torch.float64)
    init_gaussian_(model, cp.sigma_w2, cp.sigma_b2, generator=gen)
    x = torch.nn.functional.leaky_relu(torch.randn(width, generator=gen, dtype=torch.float64), slope)
    jac = torch.eye(width, dtype=torch.float64)
    with torch.no_grad():
        for i in range(1, depth + 1):
            lin = getattr(model, f"fc{i}")
            h = lin(x)
            jac = torch.diag(torch.where(h > 0, 1.0, slope).double()) @ lin.weight @ jac
            x = torch.nn.functional.leaky_relu(h, slope)
    torch.testing.assert_close(sv, torch.linalg.svdvals(jac), atol=1e-12, rtol=1e-10)


def test_activation_param_reaches_the_trained_nets():
    base = dict(TINY, activation="leaky_relu", sigma_b2=0.0)
    a = run_phase(PhaseConfig(**base, param=0.5))
    b = run_phase(PhaseConfig(**base, param=0.01))
    # same seeds and sigma_w2 grid: only the slope differs, so the losses must differ
    assert [r["value"] for r in a.select("train_loss")] != [r["value"] for r in b.select("train_loss")]


def test_numpy_depths_are_accepted():
    import numpy as np

    res = run_phase(PhaseConfig(**{**TINY, "depths": tuple(np.array([2]))}))
    assert [r["depth"] for r in res.select("test_accuracy")] == [2]


@pytest.mark.parametrize("text", ["4,,8", "4,", ",4"])
def test_cli_phase_refuses_empty_list_items(text, tmp_path, capsys):
    assert main(["phase", "--depths", text, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "--depths" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_phase_refuses_the_current_directory(tmp_path, capsys, monkeypatch):
    """The report directory is replaced as a whole: --out . (or an ancestor of the working
    directory) used to fail after all the work with a raw OSError (rename of '.')."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for out in (".", str(work), str(tmp_path)):
        assert main(["phase", "--quick", "--out", out, "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert "current directory" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"] and not any(work.iterdir())


def test_report_explains_what_it_shows(tiny_result, tmp_path):
    """A reader must be told what the accuracy grid holds, that the 6 xi_c curve leaves the top of
    the plot where the theory predicts more than the deepest net tried, and what a good Jacobian
    spectrum looks like."""
    out = write_phase_report(tiny_result.records, tmp_path / "rep")
    page = (out / "index.html").read_text()
    assert "Test accuracy after" in page
    assert "leaves the top" in page
    assert "p90 / p10 close to 1" in page
    # every symbol is defined, and each figure is followed by what this run measured
    assert "ξ<sub>q</sub>, the number of layers" in page and "ξ<sub>c</sub>, the number of layers" in page
    assert "Measured deepest trainable depth" in page and "Measured: p90 / p10 is" in page
    assert "trainable_fraction" not in page and "of the way from chance to the best accuracy" in page


def test_phase_shape_sentence_says_what_the_grid_shows():
    """"Falling off on both sides" only when both sides train less deep than the critical point; a
    side that trains as deep is named."""
    from initlab.report import phase_text

    def records(ordered, critical, chaotic):
        crit = {"stat": "critical_sigma_w2", "scheme": "critical", "value": 1.76, "sigma_b2": 0.05}
        emp = [{"stat": "trainable_depth", "scheme": "gaussian", "sigma_w2": w, "value": d, "critical": c}
               for w, d, c in ((1.0, ordered, False), (1.76, critical, True), (4.0, chaotic, False))]
        return [crit, *emp]

    assert "falls off on both sides" in phase_text.shape(records(10, 30, 20))
    tie = phase_text.shape(records(10, 20, 20))
    assert "falls off on the ordered side" in tie and "chaotic side this grid's networks train as deep" in tie
    assert "Neither side falls off" in phase_text.shape(records(20, 20, 20))


def test_interrupted_write_leaves_the_old_report_and_no_temporaries(tiny_result, tmp_path, monkeypatch):
    from initlab.report import phase_report

    out = write_phase_report(tiny_result.records, tmp_path / "rep")
    before = (out / "results.json").read_bytes()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(phase_report, "_html", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_phase_report(tiny_result.records[:5], out)
    assert (out / "results.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]


def test_theory_unavailable_at_a_grid_point_does_not_sink_the_run(tmp_path, capsys):
    """sigma_w2 = 100 is beyond what the 2-D quadrature resolves for tanh: the run used to stop
    with an error naming a theory-curve point the user never asked for (41.56); now that point
    has no theory (NaN, with the reason) and the measured diagram is still produced."""
    res = run_phase(PhaseConfig(**{**TINY, "sigma_w2s": (1.0, 100.0)}))
    theo = {r["sigma_w2"]: r for r in res.select("xi_c", "mean_field")}
    assert math.isnan(theo[100.0]["value"]) and "order_2d" in theo[100.0]["theory_error"]
    assert math.isfinite(theo[1.0]["value"]) and "theory_error" not in theo[1.0]
    assert set(res.trainable_depth()) == {1.0, 100.0}
    out = write_phase_report(res.records, tmp_path / "rep")
    assert "theory unavailable" in (out / "index.html").read_text()
    args = ["phase", "--depths", "2", "--steps", "2", "--sigma-w2", "1,100", "--width", "8", "--quick",
            "--out", str(tmp_path / "cli"), "--no-progress"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "theory unavailable" in text and "nan" not in text and "n/a" in text


def test_config_accepts_numpy_numbers_and_rejects_bools():
    import numpy as np

    cfg = PhaseConfig(sigma_w2s=(np.float32(1.0), np.float64(4.0)), sigma_b2=np.float32(0.05),
                      lr=np.float32(0.1), depths=(np.int64(4),)).validate()
    assert cfg.sigma_w2s[0] == 1.0
    with pytest.raises(InitlabError, match="sigma_w2"):
        PhaseConfig(sigma_w2s=(True,)).validate()
    with pytest.raises(InitlabError, match="trainable_fraction"):
        PhaseConfig(trainable_fraction="0.5").validate()


def test_homogeneous_q_star_is_explained_not_nan(tmp_path, capsys):
    """ReLU at sigma_b2 = 0: every q is a fixed point (q* is NaN in the records); the CLI and the
    report used to print 'q*=nan' / 'q* = –'."""
    args = ["phase", "--activation", "relu", "--sigma-b2", "0", "--depths", "2", "--steps", "2",
            "--sigma-w2", "1", "--width", "8", "--quick", "--out", str(tmp_path / "r"), "--no-progress"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "q*=nan" not in text and "every q is a fixed point" in text
    assert "every q is a fixed point" in (tmp_path / "r" / "index.html").read_text()


def test_cli_phase_refuses_an_out_under_a_file_before_any_work(tmp_path, capsys):
    """--out some_file/report used to fail only when writing, after the whole run."""
    blocker = tmp_path / "notes.txt"
    blocker.write_text("x")
    assert main(["phase", "--out", str(blocker / "report"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "not a directory" in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(not hasattr(__import__("signal"), "SIGTERM") or __import__("os").name != "posix",
                    reason="POSIX signals")
def test_cli_phase_sigterm_while_writing_keeps_the_old_report(tmp_path, capsys, monkeypatch):
    """`kill` (SIGTERM) while the report is written: the CLI turns it into an interrupt (exit 143,
    128 + SIGTERM, as a shell reports it; Ctrl-C stays 130), the old report stays and no temporary
    directory is left (same handling as `initlab demo`)."""
    import os
    import signal

    from initlab.report import phase_report

    out = tmp_path / "rep"
    args = ["phase", "--quick", "--depths", "2", "--steps", "2", "--sigma-w2", "1", "--width", "8",
            "--out", str(out), "--no-progress"]
    assert main(args) == 0
    before = (out / "results.json").read_bytes()

    def killed(*a, **k):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not interrupt")  # pragma: no cover

    monkeypatch.setattr(phase_report, "_html", killed)
    previous = signal.getsignal(signal.SIGTERM)
    assert main(args) == 143
    assert capsys.readouterr().err.strip() == "initlab: terminated"
    assert (out / "results.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]
    assert signal.getsignal(signal.SIGTERM) == previous  # the handler is restored


# ---- review: threads, activations ----------------------------------------------------------------


def test_threads_are_set_for_the_run_restored_and_recorded(tmp_path, capsys, monkeypatch):
    """The accuracies depend on the thread count (seed 0, quick config, critical net at depth 30:
    0.499 with 1 thread, 0.685 with 2), so the run sets it (default 1, like `initlab demo`),
    restores the caller's count after, and records it in results.json and on the page."""
    from initlab.experiments import phase

    seen = []
    real = phase._train_one

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(phase, "_train_one", spy)
    before = torch.get_num_threads()
    assert PhaseConfig().threads == 1
    res = run_phase(PhaseConfig(**{**TINY, "threads": 2}))
    assert set(seen) == {2} and torch.get_num_threads() == before
    assert res.config_dict()["threads"] == 2 and res.environment["threads"] == 2
    with pytest.raises(InitlabError, match="threads"):
        PhaseConfig(threads=-1).validate()
    out = tmp_path / "rep"
    args = ["phase", "--quick", "--depths", "2", "--steps", "2", "--sigma-w2", "1", "--width", "8",
            "--out", str(out), "--no-progress", "--threads", "2"]
    seen.clear()
    assert main(args) == 0
    assert set(seen) == {2} and torch.get_num_threads() == before
    assert "2 thread(s)" in capsys.readouterr().out
    doc = json.loads((out / "results.json").read_text())
    assert doc["meta"]["config"]["threads"] == 2 and doc["meta"]["environment"]["threads"] == 2
    assert "2 torch threads" in (out / "index.html").read_text()
    assert "--threads" in _help(capsys, "phase")


def _help(capsys, command):
    assert main([command, "--help"]) == 0
    return capsys.readouterr().out


def test_cli_phase_activations_help_and_validation_are_one_list(tmp_path, capsys):
    """`initlab phase --help` listed `sin`, which the run then refused: the help now shows the
    names the run takes (initlab.experiments.phase.ACTIVATIONS), and each is accepted."""
    from initlab.experiments.phase import ACTIVATIONS

    text = " ".join(_help(capsys, "phase").split())
    listed = text.split("--activation [", 1)[1].split("]", 1)[0].replace(" ", "").split("|")
    assert tuple(listed) == ACTIVATIONS and "tanh" in listed and "sin" not in listed
    for name in ACTIVATIONS:
        PhaseConfig(activation=name).validate()
    with pytest.raises(InitlabError, match="activation"):
        PhaseConfig(activation="sin").validate()
    assert main(["phase", "--activation", "sin", "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "'sin' is not one of" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
