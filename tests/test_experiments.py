"""Unit tests of the demo experiments on small configs (digits data, tiny nets)."""

from __future__ import annotations

import math

import pytest
import torch

from initlab.errors import InitlabError
from initlab.experiments import (
    DemoConfig,
    ForwardConfig,
    SymmetryConfig,
    TrainingConfig,
    distinct_units,
    run_forward,
    run_symmetry,
    run_training,
    summarize,
)
from initlab.experiments.common import GeneratorDropout, derive_seed, init_mlp_, scheme_gain
from initlab.experiments.summary import TIE_AT_CHANCE
from initlab.models import mlp
from initlab.records import RECORD_FIELDS


@pytest.fixture(scope="module")
def digits():
    from initlab.data import load_dataset

    return load_dataset("digits", seed=0, limit=400)


TINY_FWD = ForwardConfig(schemes=("small", "xavier_normal"), activations=("tanh", "relu"), batch=64,
                         in_features=20, width=16, depth=3, bins=8)


def _key(records):
    return [tuple(r.get(k) for k in RECORD_FIELDS) for r in records]


def test_forward_records_are_tidy_and_seeded():
    a, b = run_forward(TINY_FWD), run_forward(TINY_FWD)
    assert _key(a.records) == _key(b.records)  # same seed, same bits
    c = run_forward(ForwardConfig(**{**TINY_FWD.__dict__, "seed": 1}))
    assert _key(c.records) != _key(a.records)
    for r in a.records:
        assert set(RECORD_FIELDS) <= set(r)
        assert r["experiment"] == "forward" and r["layer"] in (1, 2, 3)
    stats = {r["stat"] for r in a.records if r["activation"] == "tanh"}
    assert {"std", "mean", "saturation", "grad_std", "histogram"} <= stats
    assert "dead_fraction" in {r["stat"] for r in a.records if r["activation"] == "relu"}
    # histogram masses of one layer sum to 1
    mass = sum(r["value"] for r in a.records if r["stat"] == "histogram" and r["scheme"] == "small"
               and r["activation"] == "tanh" and r["layer"] == 2)
    assert mass == pytest.approx(1.0, abs=1e-9)


def test_forward_small_tanh_follows_linear_theory():
    """Near 0, tanh is the identity, so each layer scales the std by 0.01 * sqrt(fan_in)."""
    res = run_forward(ForwardConfig(schemes=("small",), activations=("tanh",), batch=512, in_features=100,
                                    width=50, depth=4, bins=4))
    std = {r["layer"]: r["value"] for r in res.records if r["stat"] == "std"}
    expected = (0.01 * math.sqrt(50)) ** 3 * std[1]
    # tolerance: sample std of 512 x 50 entries and a random-matrix product: a factor 1.5
    assert expected / 1.5 < std[4] < expected * 1.5


def test_forward_config_rejects_bad_values():
    with pytest.raises(InitlabError, match="depth=0"):
        ForwardConfig(depth=0)
    with pytest.raises(InitlabError, match="gain_policy"):
        ForwardConfig(gain_policy="nope")
    with pytest.raises(InitlabError, match="scheme 'nope'"):
        run_forward(ForwardConfig(schemes=("nope",), activations=("tanh",), batch=4, depth=1))


def test_distinct_units_counts_groups():
    w = torch.tensor([[1.0, 2.0], [1.0, 2.0], [3.0, 4.0]])
    assert distinct_units(w) == 2
    assert distinct_units(w, torch.tensor([0.0, 1.0, 0.0])) == 3
    # within tolerance atol + rtol * max|W| = 1e-4 * 4 -> same unit
    assert distinct_units(w + torch.tensor([[0.0, 0.0], [3e-4, 0.0], [0.0, 0.0]])) == 2
    assert distinct_units(torch.zeros(5, 3)) == 1
    with pytest.raises(InitlabError, match="2-D"):
        distinct_units(torch.zeros(3))


def test_symmetry_constant_stays_one_unit_and_random_stays_distinct(digits):
    cfg = SymmetryConfig(schemes=("constant", "zeros", "xavier_normal"), dropouts=(0.0,), width=8, epochs=1)
    res = run_symmetry(digits, cfg)
    after = {(r["scheme"], r["layer"]): r["value"] for r in res.records
             if r["stat"] == "distinct_units" and r["epoch"] == 1}
    assert after[("constant", 1)] == after[("constant", 2)] == 1
    assert after[("zeros", 1)] == after[("zeros", 2)] == 1
    assert after[("xavier_normal", 1)] == after[("xavier_normal", 2)] == 8


def test_generator_dropout_is_seeded_and_scaled():
    x = torch.ones(2000)
    a = GeneratorDropout(0.5, torch.Generator().manual_seed(3)).train()(x)
    b = GeneratorDropout(0.5, torch.Generator().manual_seed(3)).train()(x)
    assert torch.equal(a, b)
    assert set(a.unique().tolist()) <= {0.0, 2.0}
    # mean of inverted dropout is 1; std of the mean is 1/sqrt(2000) ~ 0.022: allow 5 of them
    assert abs(a.mean().item() - 1.0) < 5 / math.sqrt(2000)
    assert torch.equal(GeneratorDropout(0.5, torch.Generator()).eval()(x), x)
    with pytest.raises(InitlabError, match="dropout=1.0"):
        GeneratorDropout(1.0, torch.Generator())


def test_init_mlp_is_seeded_and_uses_gains():
    from initlab.gains import gain

    def weights(seed):
        m = mlp(30, 20, 2, 5, "relu")
        init_mlp_(m, "he_normal", "relu", generator=torch.Generator().manual_seed(seed))
        return torch.cat([p.flatten() for p in m.parameters()])

    assert torch.equal(weights(0), weights(0))
    assert not torch.equal(weights(0), weights(1))
    assert scheme_gain("xavier_normal", "tanh") == 1.0
    assert scheme_gain("he_normal", "tanh") == pytest.approx(gain("relu"))
    assert scheme_gain("xavier_uniform", "tanh", "activation") == pytest.approx(gain("tanh"))
    m = mlp(10, 4, 1, 2, "tanh")
    init_mlp_(m, "torch_default", "tanh", generator=torch.Generator().manual_seed(0))
    assert m.fc1.bias.abs().max() > 0  # torch's default bias init
    init_mlp_(m, "constant", "tanh", generator=torch.Generator(), constant=0.5)
    assert torch.all(m.fc1.weight == 0.5) and torch.all(m.fc1.bias == 0)


def test_derive_seed_is_stable():
    assert derive_seed(0, "forward", "tanh") == derive_seed(0, "forward", "tanh")
    assert derive_seed(0, "forward", "tanh") != derive_seed(0, "forward", "relu")


def test_training_is_seeded_and_records_steps(digits):
    cfg = TrainingConfig(schemes=("zeros", "he_normal"), activations=("relu",), depth=2, width=16, epochs=3,
                         lr=0.1, target_accuracy=0.5, evals_per_epoch=2)
    a, b = run_training(digits, cfg), run_training(digits, cfg)
    strip = [r for r in a.records if r["stat"] != "seconds"]
    assert _key(strip) == _key([r for r in b.records if r["stat"] != "seconds"])
    get = {(r["scheme"], r["stat"]): r["value"] for r in a.records if r["layer"] is None}
    assert get[("he_normal", "final_test_accuracy")] > get[("zeros", "final_test_accuracy")]
    steps = get[("he_normal", "steps_to_target")]
    per_epoch = math.ceil(digits.x_train.shape[0] / cfg.batch_size)
    assert steps is not None and steps <= 3 * per_epoch
    assert get[("zeros", "steps_to_target")] is None
    epochs = sorted(r["epoch"] for r in a.records if r["stat"] == "test_accuracy" and r["scheme"] == "zeros")
    assert epochs == [0, 1, 2, 3]


@pytest.fixture(scope="module")
def diverged_run(digits):
    """The records of a run whose loss becomes non-finite within its first epoch (N(0, 1) weights,
    8 ReLU layers, lr 1: the logits overflow after a step or two)."""
    cfg = TrainingConfig(schemes=("large",), activations=("relu",), depth=8, width=64, epochs=2, lr=1.0)
    return run_training(digits, cfg).records


def test_training_marks_divergence_and_measures_nothing_after_it(diverged_run):
    """A diverged run's final and mean accuracy, and the test numbers of the epoch it diverged in,
    are NaN (as the train experiment's final accuracy), not the accuracy of a net that gives NaN;
    the evaluations before the non-finite loss stay, and the run stops in that epoch."""
    get = {r["stat"]: r for r in diverged_run if r["layer"] is None}
    assert get["diverged"]["value"] == 1.0
    step = get["diverged"]["step"]
    assert isinstance(step, int) and step >= 1
    assert math.isnan(get["final_test_accuracy"]["value"]) and math.isnan(get["mean_test_accuracy"]["value"])
    last = {r["stat"]: r["value"] for r in diverged_run if r["epoch"] == 1 and r["stat"] != "train_loss"}
    assert math.isnan(last["test_accuracy"]) and math.isnan(last["test_loss"])
    assert not any(r["epoch"] == 2 for r in diverged_run if r["stat"] in ("test_accuracy", "train_loss"))
    curve = [r for r in diverged_run if r["stat"] == "test_accuracy_at_step"]
    assert curve and all(r["step"] < step and 0.0 <= r["value"] <= 1.0 for r in curve)


def test_reports_say_diverged_where_a_run_has_no_accuracy(diverged_run, digits):
    """The demo's training and depth tables and its narrative read a diverged run's NaN accuracy as
    "diverged", not as a number, and the summary ranks a diverged run as a guess (at chance), last."""
    from types import SimpleNamespace

    from initlab.report import narrative
    from initlab.report.figure_common import scheme_label
    from initlab.report.tables import depth_table, training_table

    fine = run_training(digits, TrainingConfig(schemes=("he_normal",), activations=("relu",), depth=2,
                                               width=8, epochs=1)).records
    both = diverged_run + fine
    large, he = scheme_label("large"), scheme_label("he_normal")
    rows = {row[1]: row for row in training_table(both)["rows"]}
    assert rows[large][2:4] == ["– (diverged)", "– (diverged)"] and rows[large][5].startswith("yes, at step ")
    assert rows[he][5] == "no" and 0.0 <= float(rows[he][2]) <= 1.0
    depth = depth_table([{**r, "experiment": "depth", "depth": 8} for r in both])
    assert depth["header"][2:] == [large, he]
    assert depth["rows"][0][2].startswith("diverged / ") and not depth["rows"][0][3].startswith("diverged")
    cfg = SimpleNamespace(depth=8, width=64, epochs=2, lr=1.0, momentum=0.9, batch_size=64, evals_per_epoch=4,
                          activations=("relu",), target_accuracy=0.85, pretrain_epochs_per_layer=1)
    text = " ".join(narrative.training(both, cfg, {"name": "digits", "n_train": 400, "n_test": 100}))
    assert f"Final accuracy: {large} – (diverged), {he} 0." in text
    row = summarize(both).rows[0]  # the diverged run ranks as a guess, last
    assert row["ranking"] == ["he_normal", "large"] and row["best_scheme"] == "he_normal"


def test_training_unknown_scheme_raises(digits):
    with pytest.raises(InitlabError, match="scheme 'bogus'"):
        run_training(digits, TrainingConfig(schemes=("bogus",), activations=("relu",), depth=1, width=4,
                                            epochs=1))


def _no_seconds(records):
    return [{k: v for k, v in r.items() if not (k == "value" and r["stat"] == "seconds")} for r in records]


def test_training_records_are_init_start_then_fit_per_cell(digits):
    """What run_training returns per (activation, scheme) cell, recomputed here from init_start and
    fit with the documented seed; the same computation in one process and thread count, so the
    floats are equal bit for bit (wall time aside)."""
    from initlab.experiments.training import fit, init_start

    cfg = TrainingConfig(schemes=("xavier_normal", "lsuv"), activations=("tanh", "relu"), depth=2, width=8,
                         epochs=1, evals_per_epoch=2, target_accuracy=0.3, seed=3)
    expected = []
    for activation in cfg.activations:
        for scheme in cfg.schemes:
            gen = torch.Generator().manual_seed(derive_seed(3, "training", scheme, activation))
            model = mlp(digits.n_features, 8, 2, digits.n_classes, activation)
            start, init_steps = init_start(model, scheme, activation, digits, generator=gen, seed=3)
            common = {"experiment": "training", "scheme": scheme, "activation": activation, "layer": None,
                      "seed": 3}
            expected += start + fit(model, digits, common, epochs=1, batch_size=64, lr=0.01, momentum=0.9,
                                    evals_per_epoch=2, target_accuracy=0.3, generator=gen,
                                    init_steps=init_steps)
            expected.append({**common, "stat": "seconds", "epoch": None})
    got = run_training(digits, cfg).records
    assert any(r["experiment"] == "lsuv" for r in got)  # the start's own records come first
    assert _no_seconds(got) == expected
    assert all(r["value"] > 0 for r in got if r["stat"] == "seconds")


def test_training_grid_runs_through_the_sweep_engine(digits):
    """initlab demo hands the grid to the sweep engine: same records, the demo's bar moves once per
    cell, and a failing cell is named."""
    import functools

    from initlab.sweep import map_cells

    cfg = TrainingConfig(schemes=("zeros", "he_normal"), activations=("relu",), depth=1, width=8, epochs=1,
                         evals_per_epoch=1)
    steps: list[str] = []
    engine = functools.partial(map_cells, runner="serial")
    got = run_training(digits, cfg, on_step=steps.append, map_cells=engine)
    assert steps == ["training relu/zeros", "training relu/he_normal"]
    assert _no_seconds(got.records) == _no_seconds(run_training(digits, cfg).records)
    with pytest.raises(InitlabError, match="scheme 'bogus' is unknown"):  # refused before any cell runs
        run_training(digits, TrainingConfig(schemes=("bogus",), activations=("relu",), depth=1, width=4,
                                            epochs=1), map_cells=engine)


def test_training_cells_and_their_checks():
    from initlab.experiments.training import TrainingCell, training_cells

    cells = training_cells(TrainingConfig(schemes=("zeros", "auto"), activations=("tanh", "relu"), depth=3,
                                          seed=2), dataset="digits")
    assert [(c.activation, c.scheme) for c in cells] == [("tanh", "zeros"), ("tanh", "auto"),
                                                         ("relu", "zeros"), ("relu", "auto")]
    assert {(c.depth, c.seed, c.dataset, c.threads) for c in cells} == {(3, 2, "digits", 0)}
    for bad, match in (({"activation": "reluu"}, "activation 'reluu' is unknown"),
                       ({"lr": 0.0}, "lr=0.0 is invalid"), ({"threads": -1}, "threads=-1 is invalid"),
                       ({"max_test": -5}, "max_test=-5 is invalid")):
        with pytest.raises(InitlabError, match=match):
            TrainingCell(**bad)


def _rec(exp, scheme, act, stat, value, layer=None, **extra):
    return {"experiment": exp, "scheme": scheme, "activation": act, "layer": layer, "stat": stat,
            "value": value, "epoch": 1, "seed": 0, **extra}


def test_summary_verdicts():
    recs = [_rec("training", s, "tanh", "final_test_accuracy", v, n_test=1000) for s, v in
            (("xavier_normal", 0.90), ("he_normal", 0.905), ("zeros", 0.1), ("lsuv", 0.95), ("auto", 0.93))]
    recs += [_rec("training", s, "relu", "final_test_accuracy", v, n_test=1000) for s, v in
             (("xavier_normal", 0.95), ("he_normal", 0.80), ("zeros", 0.1))]
    rows = {r["activation"]: r for r in summarize(recs).rows if r["evidence"] == "training"}
    # LSUV is best overall (auto second) but the rule is judged against the best classic scheme: He,
    # 0.5 pt ahead, within two standard errors 2 * sqrt((p1 q1 + p2 q2) / n) of a difference
    tol = 2 * math.sqrt((0.905 * 0.095 + 0.90 * 0.10) / 1000)
    assert 0.005 < tol
    assert rows["tanh"]["best_scheme"] == "lsuv" and rows["tanh"]["best_classic_scheme"] == "he_normal"
    assert rows["tanh"]["ranking"][:2] == ["lsuv", "auto"]
    assert rows["tanh"]["verdict"].startswith("agree (tie")
    assert rows["relu"]["verdict"].startswith("disagree")  # 15 pt behind
    strict = {r["activation"]: r for r in summarize(recs, tie_tolerance=0.001).rows}
    assert strict["tanh"]["verdict"].startswith("disagree")
    any_row = [r for r in summarize(recs).rows if r["activation"] == "any"][0]
    assert any_row["verdict"] == "agree"  # zeros >= 10 pt below the best for both
    out = summarize(recs).records
    assert all(r["experiment"] == "summary" and r["value"] in (0.0, 1.0) for r in out)
    # the mean accuracy over training (speed) is preferred to the final accuracy when present
    recs += [_rec("training", s, "relu", "mean_test_accuracy", v) for s, v in
             (("xavier_normal", 0.6), ("he_normal", 0.75), ("zeros", 0.1))]
    rows = {r["activation"]: r for r in summarize(recs).rows if r["evidence"] == "training"}
    assert rows["relu"]["best_scheme"] == "he_normal" and rows["relu"]["verdict"] == "agree"


def test_demo_config_validation():
    with pytest.raises(InitlabError, match="depth=0"):
        DemoConfig(depth=0)
    with pytest.raises(InitlabError, match="seed=-1"):
        DemoConfig(seed=-1)
    q = DemoConfig(quick=True)
    assert q.resolved("depth") == 6 and DemoConfig().resolved("depth") == 10
    assert DemoConfig(limit=0).resolved("limit") is None


def test_summary_signal_propagation_asks_whether_the_signal_stays_in_range():
    """The criterion: every layer's activation std within a factor IN_RANGE_FACTOR of layer 1's and
    gradient std within that factor of the top layer's, fewer than UNHEALTHY_FRACTION saturated or
    dead units. Xavier's std halving per layer over 3 layers (factor 4) is in range; a factor 4 per
    layer (16) is not; the best scheme is the in-range one with the smallest factor, auto included."""
    from initlab.experiments.summary import IN_RANGE_FACTOR

    def forward(scheme, factor, act="tanh", saturation=0.0):
        return [r for layer in (1, 2, 3) for r in (
            _rec("forward", scheme, act, "std", factor ** (layer - 1), layer=layer),
            _rec("forward", scheme, act, "grad_std", 1.0, layer=layer),
            _rec("forward", scheme, act, "saturation", saturation, layer=layer))]

    assert 0.5 ** -2 <= IN_RANGE_FACTOR < 0.25 ** -2
    recs = forward("xavier_normal", 0.5) + forward("he_normal", 1.1) + forward("auto", 1.0)
    row = summarize(recs).rows[0]
    # the rule's Xavier is in range but He is the best classic scheme: both in range, and the verdict says so
    assert row["verdict"] == "agree (both in range)" and row["rule_value"] == pytest.approx(4.0)
    assert row["best_scheme"] == "auto" and row["best_classic_scheme"] == "he_normal"
    assert row["best_classic_value"] == pytest.approx(1.1 ** 2) and row["in_range"] == ["auto", "he_normal",
                                                                                        "xavier_normal"]
    row = summarize(forward("xavier_normal", 0.25) + forward("he_normal", 1.0)).rows[0]
    assert row["verdict"] == ("disagree (Xavier normal: a std changes by a factor 16 across layers, "
                              f"more than {IN_RANGE_FACTOR:g})")
    row = summarize(forward("xavier_normal", 1.0, saturation=0.5) + forward("he_normal", 1.0)).rows[0]
    assert row["verdict"].startswith("disagree (Xavier normal: 20% or more of the units saturated")


def test_summary_naive_starts_are_not_classic_candidates():
    """A deliberately naive start (large N(0, 1)) can have the smallest propagation factor on sigmoid
    (it saturates instead of shrinking); it is no candidate of the rules, so the best classic scheme
    is the best of the others, and a plain "agree" names the rule's scheme itself."""
    def forward(scheme, factor, saturation=0.0):
        return [r for layer in (1, 2, 3) for r in (
            _rec("forward", scheme, "sigmoid", "std", factor ** (layer - 1), layer=layer),
            _rec("forward", scheme, "sigmoid", "grad_std", 1.0, layer=layer),
            _rec("forward", scheme, "sigmoid", "saturation", saturation, layer=layer))]

    row = summarize(forward("large", 1.0, saturation=0.5) + forward("xavier_normal", 0.5)
                    + forward("he_normal", 0.3)).rows[0]
    assert row["best_classic_scheme"] == "xavier_normal" and row["verdict"] == "agree"


def test_summary_training_where_every_classic_scheme_stays_at_chance_is_a_tie():
    """At chance (1 / n_classes, read from the loss records' ln(n_classes)) for every classic scheme,
    within two standard errors, the rule cannot be judged: neither agree nor disagree."""
    n_test, chance = 1000, 0.1
    recs = [_rec("depth", s, "sigmoid", "final_test_accuracy", v, n_test=n_test, depth=50)
            for s, v in (("xavier_normal", 0.1), ("he_normal", 0.107), ("auto", 0.87))]
    recs.append(_rec("depth", "auto", "sigmoid", "test_loss", 2.0, depth=50, chance_loss=math.log(10)))
    row = [r for r in summarize(recs).rows if r["evidence"] == "training at depth 50"][0]
    assert 0.107 - chance < 2 * math.sqrt(2 * chance * (1 - chance) / n_test)  # within the tie tolerance
    assert row["verdict"] == TIE_AT_CHANCE and row["best_scheme"] == "auto"
    assert [r["value"] for r in summarize(recs).records if r["evidence"] == "training at depth 50"] == [None]
    recs[1] = _rec("depth", "he_normal", "sigmoid", "final_test_accuracy", 0.5, n_test=n_test, depth=50)
    row = [r for r in summarize(recs).rows if r["evidence"] == "training at depth 50"][0]
    assert row["verdict"].startswith("disagree")  # He trains, Xavier does not: a verdict again


def test_summary_symmetry_rule_names_the_failed_check():
    # the symmetry rule names the check that failed
    recs = [_rec("training", s, "relu", "final_test_accuracy", v)
            for s, v in (("zeros", 0.85), ("he_normal", 0.9))]
    any_row = [r for r in summarize(recs).rows if r["activation"] == "any"][0]
    assert any_row["verdict"] == "disagree (zero init ended less than 10 pt below the best: relu 5.0 pt)"


def test_summary_tie_tolerance_uses_both_accuracies():
    """On a tiny test set the best scheme can score exactly 1.0; the tolerance must not collapse to
    0 then. Tolerance: two standard errors of the difference, 2 * sqrt((p1 q1 + p2 q2) / n)."""
    recs = [_rec("training", s, "tanh", "final_test_accuracy", v, n_test=6)
            for s, v in (("he_normal", 1.0), ("xavier_normal", 4 / 6), ("zeros", 0.5))]
    row = [r for r in summarize(recs).rows if r["evidence"] == "training"][0]
    tol = 2 * math.sqrt((1.0 * 0.0 + (4 / 6) * (2 / 6)) / 6)
    assert 1 / 3 < tol  # two test examples out of six are within the noise
    assert row["verdict"] == f"agree (tie: Xavier normal 33.3 pt behind, tolerance {tol * 100:.1f} pt)"


def test_unit_spread_and_relative_distinct_units_follow_their_formulas():
    from initlab.experiments import distinct_units_relative, unit_spread

    g = torch.Generator().manual_seed(0)
    w = torch.randn(16, 64, generator=g, dtype=torch.float64)
    # spread^2 = sum ||w_i - mean||^2 / sum ||w_i||^2, recomputed here
    expected = math.sqrt(float((w - w.mean(0)).pow(2).sum() / w.pow(2).sum()))
    assert unit_spread(w) == pytest.approx(expected, rel=1e-12)
    assert unit_spread(torch.zeros(4, 3)) == 0.0
    # equal rows nudged by 1% of their norm: one unit at a 10% tolerance, 4 exactly; random rows stay 16
    rows = torch.full((4, 8), 0.5, dtype=torch.float64)
    nudged = rows + 0.01 * rows.norm(dim=1, keepdim=True) * torch.eye(4, 8, dtype=torch.float64)
    assert distinct_units_relative(nudged, 0.1) == 1 and distinct_units(nudged) == 4
    assert distinct_units_relative(w, 0.1) == 16
    with pytest.raises(InitlabError, match="2-D"):
        unit_spread(torch.zeros(3))


def test_symmetry_records_relative_counts_and_spread(digits):
    cfg = SymmetryConfig(schemes=("constant", "xavier_normal"), dropouts=(0.5,), width=8, epochs=1)
    recs = run_symmetry(digits, cfg).records
    rel = {(r["scheme"], r["layer"]): r["value"] for r in recs
           if r["stat"] == "distinct_units_relative" and r["epoch"] == 1}
    spread = {(r["scheme"], r["layer"]): r["value"] for r in recs if r["stat"] == "unit_spread"}
    assert rel[("constant", 1)] == rel[("constant", 2)] == 1
    assert rel[("xavier_normal", 1)] == 8
    assert spread[("constant", 1)] < 0.1 < 0.5 < spread[("xavier_normal", 1)] <= 1.0


def test_init_mlp_auto_is_init_models_choice():
    from initlab import init_model

    a, b = mlp(20, 16, 3, 4, "tanh"), mlp(20, 16, 3, 4, "tanh")
    plan = init_mlp_(a, "auto", "tanh", generator=torch.Generator().manual_seed(5))
    init_model(b, "auto", generator=torch.Generator().manual_seed(5))
    assert [row["layer"] for row in plan] == ["fc1", "fc2", "fc3", "out"]
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


def test_depth_experiment_records_and_grid(digits):
    from initlab.experiments import DepthConfig, depth_grid, run_depth

    grid = depth_grid((2, 4), ("tanh",), ("he_normal", "auto"), width=8, epochs=1, evals_per_epoch=2,
                      target_accuracy=0.3)
    assert [(c.depth, c.scheme) for c in grid] == [(2, "he_normal"), (2, "auto"), (4, "he_normal"),
                                                   (4, "auto")]
    a, b = run_depth(digits, grid[3]), run_depth(digits, grid[3])
    strip = lambda res: _key([r for r in res.records if r["stat"] != "seconds"])  # noqa: E731
    assert strip(a) == strip(b)  # same seed, same bits
    got = {r["stat"]: r for r in a.records}
    assert all(r["experiment"] == "depth" and r["depth"] == 4 and r["scheme"] == "auto" for r in a.records)
    assert {"final_test_accuracy", "mean_test_accuracy", "steps_to_target", "diverged", "seconds"} <= set(got)
    per_epoch = math.ceil(digits.x_train.shape[0] / 64)
    steps = got["steps_to_target"]
    assert steps["target"] == 0.3 and steps["init_steps"] == 0 and steps["steps_per_epoch"] == per_epoch
    assert steps["value"] is None or 0 <= steps["value"] <= per_epoch
    assert 0.0 <= got["final_test_accuracy"]["value"] <= 1.0
    with pytest.raises(InitlabError, match="activation='bogus'"):
        DepthConfig(activation="bogus")


def test_depth_grid_runs_each_config_as_one_cell_of_the_engine(digits):
    import functools

    from initlab.experiments import depth_grid, run_depth
    from initlab.experiments.depth import run_depth_grid
    from initlab.sweep import map_cells

    grid = depth_grid((1, 2), ("relu",), ("he_normal",), width=8, epochs=1, evals_per_epoch=1)
    steps: list[str] = []
    res = run_depth_grid(digits, grid, on_step=steps.append, map_cells=functools.partial(map_cells))
    assert [r.config for r in res] == grid and steps == ["depth relu/1/he_normal", "depth relu/2/he_normal"]
    for result, config in zip(res, grid, strict=True):
        assert _no_seconds(result.records) == _no_seconds(run_depth(digits, config).records)


def test_pretraining_steps_count_in_steps_to_target(digits):
    cfg = TrainingConfig(schemes=("pretrain",), activations=("tanh",), depth=2, width=8, epochs=1,
                         pretrain_epochs_per_layer=2, target_accuracy=0.05)
    steps = next(r for r in run_training(digits, cfg).records if r["stat"] == "steps_to_target")
    # 2 pretrained hidden layers x 2 epochs x ceil(n / 64) mini-batches
    assert steps["init_steps"] == 2 * 2 * math.ceil(digits.x_train.shape[0] / 64)


def test_summary_keeps_an_activation_whose_rule_start_diverged():
    """He (ReLU's rule) diverged: the summary still has ReLU's training row, He ranked as a guess."""
    from initlab.data import load_dataset
    from initlab.experiments.summary import summarize
    from initlab.experiments.training import TrainingConfig, run_training

    ds = load_dataset("digits", seed=0, limit=400)
    bad = run_training(ds, TrainingConfig(schemes=("large",), activations=("relu",), depth=8, width=64,
                                          epochs=1, lr=1.0)).records
    assert any(r["stat"] == "diverged" and r["value"] == 1.0 for r in bad)
    bad = [{**r, "scheme": "he_normal"} for r in bad]
    fine = run_training(ds, TrainingConfig(schemes=("xavier_normal", "small"), activations=("relu",), depth=2,
                                           width=8, epochs=1)).records
    rows = [r for r in summarize(bad + fine).rows
            if r["activation"] == "relu" and r["evidence"] == "training"]
    assert len(rows) == 1 and rows[0]["best_scheme"] != "he_normal"
