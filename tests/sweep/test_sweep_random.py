"""Random search in a sweep spec (the ``[random]`` table, :mod:`initlab.sweep.random_search`): the
draw is the documented one and reproducible, values lie within their bounds, a random spec runs
serially into samples x seeds cells and resumes, a changed ``[random]`` is another sweep, and a bad
table is one line from the CLI (exit 2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from initlab.cli import main
from initlab.errors import InitlabError
from initlab.sweep import expand, parse_spec
from initlab.sweep.random_search import (
    MAX_SAMPLES,
    MIN_RELATIVE_WIDTH,
    SIG_DIGITS,
    Choice,
    LogUniform,
    RandInt,
    Uniform,
    parse_random,
)

#: One key of every distribution, for a phase cell (activation, depth, lr, sigma_w2 are its fields).
TABLE = {"samples": 6, "seed": 3, "lr": {"loguniform": [1e-3, 1e-1]}, "sigma_w2": {"uniform": [0.5, 3.0]},
         "depth": {"randint": [1, 4]}, "activation": {"choice": ["tanh", "relu"]}}

#: Below the largest u that ``rng.random()`` returns, 1 - 2**-53.
U_MAX = 1 - 2.0 ** -53

#: A float rounded to SIG_DIGITS significant digits is within half a unit of its last digit.
ROUNDED = 10.0 ** (1 - SIG_DIGITS)


def _phase(random: dict, seeds=(0,), grid: dict | None = None) -> dict:
    doc = {"sweep": {"experiment": "phase", "seeds": list(seeds), "threads": 1},
           "fixed": {"width": 8, "steps": 3, "dataset": "digits"}, "random": random}
    if grid:
        doc["grid"] = grid
    return doc


def test_the_draw_is_default_rng_sample_by_sample_keys_sorted_one_uniform_each():
    """Recomputed from the documented rule: one ``rng.random()`` per key (sorted) per sample, through
    each distribution's inverse CDF; floats agree to the SIG_DIGITS they are rounded to."""
    points = parse_random(TABLE).points()
    rng = np.random.default_rng(3)
    assert len(points) == 6
    for point in points:
        assert list(point) == ["activation", "depth", "lr", "sigma_w2"]
        u = {k: rng.random() for k in sorted(point)}
        assert point["activation"] == ["tanh", "relu"][math.floor(2 * u["activation"])]
        assert point["depth"] == 1 + math.floor(4 * u["depth"])
        assert point["lr"] == pytest.approx(1e-3 * 100 ** u["lr"], rel=ROUNDED)
        assert point["sigma_w2"] == pytest.approx(0.5 + 2.5 * u["sigma_w2"], rel=ROUNDED)


def test_same_seed_same_cells_another_seed_other_cells():
    one = expand(parse_spec(_phase(TABLE)))
    assert [(c.key, c.params) for c in expand(parse_spec(_phase(TABLE)))] == [(c.key, c.params) for c in one]
    other = expand(parse_spec(_phase({**TABLE, "seed": 4})))
    assert {c.params["lr"] for c in one}.isdisjoint({c.params["lr"] for c in other})
    assert {c.key for c in one}.isdisjoint({c.key for c in other})


def test_drawn_values_lie_within_their_bounds_and_follow_their_distribution():
    """4,000 draws: every value in [low, high], randint hits both ends and nothing else, floats keep
    SIG_DIGITS digits; KS tests (p > 1e-4) that lr is log-uniform and sigma_w2 uniform."""
    table = {"samples": 4000, "seed": 0, "lr": {"loguniform": [1e-4, 1e-1]},
             "sigma_w2": {"uniform": [0.5, 3.0]}, "depth": {"randint": [2, 5]}}
    points = parse_random(table).points()
    lr = np.array([p["lr"] for p in points])
    sigma_w2 = np.array([p["sigma_w2"] for p in points])
    assert lr.min() >= 1e-4 and lr.max() <= 1e-1 and sigma_w2.min() >= 0.5 and sigma_w2.max() <= 3.0
    assert {p["depth"] for p in points} == {2, 3, 4, 5}
    assert all(isinstance(p["depth"], int) for p in points)
    assert all(float(f"{v:.{SIG_DIGITS}g}") == v for v in [*lr, *sigma_w2])
    assert stats.kstest(np.log10(lr), stats.uniform(-4, 3).cdf).pvalue > 1e-4
    assert stats.kstest(sigma_w2, stats.uniform(0.5, 2.5).cdf).pvalue > 1e-4


def test_the_ends_of_each_distribution():
    """u = 0 gives the low end, the largest u the high end (randint and choice include it); a float
    rounded past ``high`` is kept at ``high``."""
    assert Uniform(0.5, 3.0).draw(0.0) == 0.5 and LogUniform(1e-3, 0.1).draw(0.0) == 1e-3
    assert Uniform(0.0, 0.9999999).draw(U_MAX) == 0.9999999  # 0.99999990 rounds to 1.0, past high
    assert LogUniform(1e-3, 0.1).draw(U_MAX) <= 0.1
    assert (RandInt(2, 5).draw(0.0), RandInt(2, 5).draw(U_MAX)) == (2, 5)
    assert (Choice(("a", "b", "c")).draw(0.0), Choice(("a", "b", "c")).draw(U_MAX)) == ("a", "c")


def test_cells_are_grid_times_points_times_seeds_with_the_drawn_keys_in_params():
    spec = parse_spec(_phase({"samples": 2, "lr": {"loguniform": [1e-3, 1e-1]}}, seeds=(0, 1),
                             grid={"depth": [1, 2]}))
    cells = expand(spec)
    points = spec.random_points()
    assert spec.axes == ("depth", "lr", "seed")
    assert [c.params for c in cells] == [{"depth": d, **p, "seed": s} for d in (1, 2) for p in points
                                         for s in (0, 1)]
    assert all(c.config.lr == c.params["lr"] for c in cells)
    assert cells[0].label == f"depth=1 lr={points[0]['lr']} seed=0"


def test_a_point_drawn_twice_is_one_cell():
    spec = parse_spec(_phase({"samples": 6, "activation": {"choice": ["tanh", "relu"]}}, seeds=(0, 1)))
    distinct = {p["activation"] for p in spec.random_points()}
    cells = expand(spec)
    assert len(cells) == 2 * len(distinct) == len({c.key for c in cells})


def test_to_dict_round_trips_the_random_table():
    doc = {**_phase(TABLE, grid={"width": [8, 16]}), "fixed": {"steps": 3}}
    spec = parse_spec(doc)
    doc = spec.to_dict()
    assert doc["grid"] == {"width": [8, 16]}
    assert doc["random"] == {"samples": 6, "seed": 3, "activation": {"choice": ["tanh", "relu"]},
                             "depth": {"randint": [1, 4]}, "lr": {"loguniform": [0.001, 0.1]},
                             "sigma_w2": {"uniform": [0.5, 3.0]}}
    assert parse_spec(doc) == spec
    assert parse_spec({k: v for k, v in doc.items() if k != "random"}).random is None


def test_a_float_distribution_for_an_integer_setting_is_refused():
    with pytest.raises(InitlabError, match="draws floats, but depth takes int values: use randint"):
        parse_spec(_phase({"samples": 2, "depth": {"loguniform": [1, 10]}}))
    with pytest.raises(InitlabError, match="draws integers, but activation takes str values: use choice"):
        parse_spec(_phase({"samples": 2, "activation": {"randint": [1, 3]}}))
    lr = expand(parse_spec(_phase({"samples": 2, "lr": {"randint": [1, 3]}})))[0].config.lr
    assert isinstance(lr, float)  # an integer drawn for a float setting is a float, as in [grid]


def _toml_spec(tmp_path, random_body: str) -> str:
    path = tmp_path / "spec.toml"
    path.write_text('[sweep]\nexperiment = "phase"\nseeds = [0, 1]\n\n[fixed]\nwidth = 8\nsteps = 3\n'
                    f'dataset = "digits"\n\n[random]\n{random_body}\n')
    return str(path)


def test_a_random_spec_runs_serially_into_samples_times_seeds_cells_and_resumes(tmp_path, capsys):
    """3 points x 2 seeds = 6 cells stored; `sweep show` lists the drawn sigma_w2; the same spec
    resumes; another draw seed or sample count is another sweep, refused on that directory."""
    pytest.importorskip("pyarrow")
    from initlab.sweep import SweepStore, run

    body = "samples = 3\nseed = 0\nsigma_w2 = { uniform = [0.5, 3.0] }"
    spec = _toml_spec(tmp_path, body)
    out = tmp_path / "s"
    assert main(["sweep", spec, "--out", str(out), "--serial", "--no-progress"]) == 0
    assert "6 cell(s) run, 0 already stored, 6 in the grid" in capsys.readouterr().out
    store = SweepStore.open(out)
    table = {"samples": 3, "sigma_w2": {"uniform": [0.5, 3.0]}}
    drawn = [p["sigma_w2"] for p in parse_random(table).points()]
    assert sorted(c.params["sigma_w2"] for c in store.cells()) == sorted(drawn * 2)
    assert store.manifest["axes"] == ["sigma_w2", "seed"]
    assert main(["sweep", "show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert shown.splitlines()[1].split()[:2] == ["sigma_w2", "seed"] and all(str(v) in shown for v in drawn)
    assert main(["sweep", spec, "--out", str(out), "--serial", "--no-progress"]) == 0
    assert "0 cell(s) run, 6 already stored" in capsys.readouterr().out
    before = sorted(p.name for p in (out / "cells").iterdir())
    for changed in (body.replace("seed = 0", "seed = 1"), body.replace("samples = 3", "samples = 2")):
        with pytest.raises(InitlabError, match="holds another sweep"):
            run(_toml_spec(tmp_path, changed), out=out, runner="serial")
    assert sorted(p.name for p in (out / "cells").iterdir()) == before


@pytest.mark.parametrize("body, message", [
    ("samples = 2\nlr = { uniform = [0.1, 0.01] }",
     "random.lr = { uniform = [0.1, 0.01] } is invalid: low must be < high"),
    ("samples = 2\nlr = { loguniform = [0.0, 0.1] }", "low must be > 0 on a log scale"),
    ("samples = 2\ndepth = { randint = [1.5, 4] }", "give [LOW, HIGH], two integers (both included)"),
    ("samples = 2\nactivation = { choice = [] }", "give a non-empty list of single values"),
    ('samples = 2\nactivation = { choice = ["tanh", "tanh"] }', "repeats a value"),
    ("samples = 2\nlr = { normal = [0.0, 1.0] }",
     "random.lr: unknown distribution 'normal': use one of uniform, loguniform, randint, choice"),
    ("samples = 2\nlr = 0.1", "random.lr = 0.1 is not a distribution: write lr = { uniform"),
    ("samples = 2\nlr = { uniform = [0.1, 0.2], loguniform = [0.1, 0.2] }", "is not a distribution"),
    ("samples = 2\ndepth = { uniform = [1, 4] }", "draws floats, but depth takes int values"),
    ("lr = { loguniform = [0.001, 0.1] }", "[random] has no samples: add samples = N"),
    ("samples = 0\nlr = { loguniform = [0.001, 0.1] }", "random.samples = 0 is invalid"),
    ("samples = 2\nseed = -1\nlr = { loguniform = [0.001, 0.1] }", "random.seed = -1 is invalid"),
    ("samples = 2", "[random] names no setting to draw"),
    ("samples = 2\nthreads = { randint = [1, 2] }", "random.threads: set it in [sweep] as threads"),
    ("samples = 2\ndepthh = { randint = [1, 2] }", "random.depthh is not a setting of experiment 'phase'"),
    ("samples = 2\nwidth = { randint = [4, 8] }", "width is in both [fixed] and [random]"),
    (f"samples = {MAX_SAMPLES + 1}\nlr = {{ loguniform = [0.001, 0.1] }}",
     f"random.samples = {MAX_SAMPLES + 1} is more than {MAX_SAMPLES}, the most one spec draws: give "
     f"samples <= {MAX_SAMPLES}"),
    ("samples = 2\nlr = { uniform = [1000000.0, 1000001.0] }",
     "random.lr = { uniform = [1000000.0, 1000001.0] } is too narrow for values rounded to 6 significant "
     "digits to differ (it needs high - low >= 1e-05 * max(|low|, |high|))"),
    ("samples = 2\nlr = { loguniform = [0.1, 0.1000001] }", "is too narrow for values rounded to 6"),
    ("samples = 2\nsigma_b2 = { uniform = [-1e308, 1e308] }",
     "random.sigma_b2 = { uniform = [-1e+308, 1e+308] } is invalid: high - low overflows a float"),
    ("samples = 4\nlr = { choice = [1, 1.0] }",
     "random.lr = { choice = [1, 1.0] } repeats a value: 1 and 1.0 are the same lr (1.0): list each once"),
])
def test_a_bad_random_table_is_one_line_from_the_cli(body, message, tmp_path, capsys):
    spec = _toml_spec(tmp_path, body)
    assert main(["sweep", spec, "--out", str(tmp_path / "new"), "--serial"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("initlab: error: ") and message in err, err
    assert not (tmp_path / "new").exists()


def test_samples_up_to_the_cap_are_accepted():
    assert parse_random({"samples": MAX_SAMPLES, "lr": {"loguniform": [1e-3, 1e-1]}}).samples == MAX_SAMPLES


@pytest.mark.parametrize("name, low", [("uniform", 1e6), ("uniform", 123.456), ("uniform", -5.0),
                                       ("uniform", 3e-300), ("loguniform", 1e6), ("loguniform", 3e-300)])
def test_a_float_range_is_refused_exactly_when_the_rounding_could_not_tell_its_values_apart(name, low):
    """The rule: refused when high - low < MIN_RELATIVE_WIDTH * max(|low|, |high|). A range 1.5 times
    that wide is drawn into two or more distinct values; one 0.9 times as wide is refused."""

    def high(factor: float) -> float:  # solves high - low = factor * MIN_RELATIVE_WIDTH * max(|low|, |high|)
        if low > 0:
            return low / (1 - factor * MIN_RELATIVE_WIDTH)
        return low + factor * MIN_RELATIVE_WIDTH * abs(low)  # |low| > |high| near a negative low

    wide = parse_random({"samples": 200, "x": {name: [low, high(1.5)]}})
    values = {p["x"] for p in wide.points()}
    assert len(values) >= 2 and all(low <= v <= high(1.5) for v in values)
    with pytest.raises(InitlabError, match="too narrow for values rounded to 6 significant digits"):
        parse_random({"samples": 2, "x": {name: [low, high(0.9)]}})


def test_every_choice_value_is_checked_up_front_drawn_or_not(tmp_path, capsys):
    """samples = 1 draws one of the three activations; "frob", the bad one, is refused whether it is
    drawn or not, before any cell runs or any directory is made."""
    good = parse_spec(_phase({"samples": 1, "activation": {"choice": ["tanh", "relu"]}}))
    assert len(expand(good)) == 1
    choice = {"choice": ["tanh", "relu", "frob"]}
    for seed in range(3):
        spec = parse_spec(_phase({"samples": 1, "seed": seed, "activation": choice}))
        with pytest.raises(InitlabError, match=r"random.activation = \{ choice = \['tanh', 'relu', 'frob'\] "
                                               r"\}: activation='frob' is invalid: "):
            expand(spec)
    spec = _toml_spec(tmp_path, 'samples = 4\nactivation = { choice = ["tanh", "relu", "frob"] }')
    assert main(["sweep", spec, "--out", str(tmp_path / "new"), "--serial"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "activation='frob' is invalid" in err, err
    assert not (tmp_path / "new").exists()


def test_a_grid_or_choice_repeat_after_taking_the_settings_type_is_refused_and_distinct_values_pass():
    """``lr`` is a float: 1 and 1.0 are one cell (4 samples silently became 1 cell); 1 and 2.0 are two."""
    with pytest.raises(InitlabError, match=r"grid.lr = \[1, 1.0\] repeats a value: 1 and 1.0 are the same"):
        parse_spec(_phase({"samples": 2, "depth": {"randint": [1, 3]}}, grid={"lr": [1, 1.0]}))
    spec = parse_spec(_phase({"samples": 8, "lr": {"choice": [1, 2.0]}}))
    assert spec.random.params["lr"] == Choice((1.0, 2.0))
    assert len(expand(spec)) == len({p["lr"] for p in spec.random_points()}) == 2
