"""Sweep specs (initlab.sweep.spec) and cells (initlab.sweep.grid): parsing, every refusal, grid
expansion, cell keys; the shipped example specs parse and validate."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import pytest
from sweep_helpers import train_spec, write_factory

from initlab.errors import InitlabError
from initlab.experiments.phase import PhaseCell
from initlab.sweep import cell_key, expand, load_spec, parse_spec, spec_hash
from initlab.sweep.grid import canonical_json, code_versions

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "sweeps"


def _spec(**tables):
    base = {"sweep": {"experiment": "phase"}}
    for k, v in tables.items():
        base[k] = {**base.get(k, {}), **v}
    return base


@pytest.mark.parametrize("doc, match", [
    ({"sweep": {"experiment": "phase"}, "params": {}}, r"unknown table \[params\]"),
    ({"sweep": {"experiment": "phase", "gpus": 1}}, r"sweep.gpus is not a sweep setting"),
    ({"sweep": {}}, "names no experiment"),
    ({"sweep": {"experiment": "fit"}}, r"experiment='fit' is invalid: use one of train"),
    (_spec(grid={"depthh": [1]}), r"grid.depthh is not a setting of experiment 'phase'"),
    (_spec(fixed={"seed": 1}), r"fixed.seed: set it in \[sweep\] as seeds"),
    (_spec(grid={"threads": [1, 2]}), r"grid.threads: set it in \[sweep\] as threads"),
    (_spec(fixed={"depth": 2}, grid={"depth": [1]}), "in both"),
    (_spec(fixed={"depth": [2, 3]}), r"put it under \[grid\]"),
    (_spec(grid={"depth": []}), "non-empty list"),
    (_spec(grid={"depth": 4}), "non-empty list"),
    (_spec(grid={"depth": [2, 2]}), r"grid.depth = \[2, 2\] repeats a value: list each once"),
    (_spec(grid={"lr": [0.5, 1, 1.0]}),
     r"grid.lr = \[0.5, 1, 1.0\] repeats a value: 1 and 1.0 are the same lr \(1.0\): list each once"),
    (_spec(sweep={"seeds": [0, 0]}), "sweep.seeds .* repeats"),
    (_spec(sweep={"seeds": [-1]}), r"sweep.seeds = \[-1\] is invalid"),
    (_spec(sweep={"threads": 0}), "sweep.threads = 0 is invalid"),
    (_spec(sweep={"threads": [1]}), "sweep.threads"),
    (_spec(sweep={"out": ""}), "sweep.out"),
])
def test_bad_specs_are_refused_with_the_key_and_the_fix(doc, match):
    with pytest.raises(InitlabError, match=match):
        parse_spec(doc)


def test_a_bad_value_is_refused_at_expansion_naming_the_cell():
    spec = parse_spec(_spec(grid={"depth": [2, 0]}))
    with pytest.raises(InitlabError, match=r"^cell depth=0 seed=0: depth=0 is invalid: pass an integer >= 1"):
        expand(spec)
    with pytest.raises(InitlabError, match="init='nope' is invalid"):
        expand(parse_spec({"sweep": {"experiment": "train"}, "fixed": {"init": "nope"}}))


def _refuse_to_build(monkeypatch):
    """Make drawing a ``[random]`` point or building a cell fail the test: the cap is checked first."""
    from initlab.sweep import grid
    from initlab.sweep.random_search import RandomSearch

    def called(*_args, **_kwargs):
        raise AssertionError("points were drawn or a cell was built before the cell cap was checked")

    monkeypatch.setattr(RandomSearch, "points", called)
    monkeypatch.setattr(grid, "_make", called)


def test_a_grid_over_the_cell_cap_is_refused_before_any_cell_is_built(monkeypatch):
    from initlab.sweep.grid import MAX_CELLS

    n = math.isqrt(MAX_CELLS) + 1  # n * n > MAX_CELLS; at 0.5 ms a cell, building them would take ~1 min
    spec = parse_spec(_spec(grid={"depth": list(range(1, n + 1)), "width": list(range(1, n + 1))}))
    _refuse_to_build(monkeypatch)
    with pytest.raises(InitlabError, match=rf"makes {n * n:,} cells \({n} depth x {n} width x 1 seed\), "
                                           rf"more than {MAX_CELLS:,}: narrow the grid"):
        expand(spec)


def test_random_samples_over_the_cell_cap_are_refused_before_any_point_is_drawn(monkeypatch):
    """The grid's product x ``samples`` x seeds is counted from the sizes: drawing 100,000 points
    alone takes seconds, so the spec is refused before :meth:`RandomSearch.points` runs."""
    from initlab.sweep.grid import MAX_CELLS
    from initlab.sweep.random_search import MAX_SAMPLES

    spec = parse_spec(_spec(sweep={"seeds": [0, 1]}, grid={"depth": [2, 4, 8]},
                            random={"samples": MAX_SAMPLES, "sigma_w2": {"uniform": [1.0, 2.0]}}))
    n = 3 * MAX_SAMPLES * 2
    assert n > MAX_CELLS
    _refuse_to_build(monkeypatch)
    with pytest.raises(InitlabError, match=rf"makes {n:,} cells \(3 depth x {MAX_SAMPLES:,} random points "
                                           rf"x 2 seeds\), more than {MAX_CELLS:,}"):
        expand(spec)


def test_the_cap_message_counts_one_random_point_in_the_singular(monkeypatch):
    from initlab.sweep import grid

    monkeypatch.setattr(grid, "MAX_CELLS", 3)
    spec = parse_spec(_spec(sweep={"seeds": [0, 1]}, grid={"depth": [2, 4]},
                            random={"samples": 1, "sigma_w2": {"uniform": [1.0, 2.0]}}))
    _refuse_to_build(monkeypatch)
    with pytest.raises(InitlabError, match=r"makes 4 cells \(2 depth x 1 random point x 2 seeds\), "
                                           r"more than 3"):
        expand(spec)


def test_expansion_order_and_params():
    spec = parse_spec(_spec(sweep={"seeds": [3, 4]}, grid={"depth": [1, 2], "sigma_w2": [1.0, 2.0]}))
    cells = expand(spec)
    assert [c.params for c in cells[:3]] == [{"depth": 1, "sigma_w2": 1.0, "seed": 3},
                                             {"depth": 1, "sigma_w2": 1.0, "seed": 4},
                                             {"depth": 1, "sigma_w2": 2.0, "seed": 3}]
    assert len(cells) == 8 == len({c.key for c in cells})
    assert cells[5].config == PhaseCell(depth=2, sigma_w2=1.0, seed=4)


def test_critical_is_resolved_to_the_critical_point():
    from initlab import theory

    cell = expand(parse_spec(_spec(fixed={"sigma_b2": 0.05}, grid={"sigma_w2": ["critical"]})))[0]
    assert cell.params["sigma_w2"] == "critical"
    assert cell.config.sigma_w2 == theory.critical_point("tanh", sigma_b2=0.05).sigma_w2


def test_keys_are_the_hash_of_the_full_config():
    a = PhaseCell(depth=2)
    assert cell_key("phase", a) == cell_key("phase", PhaseCell(depth=2))
    assert cell_key("phase", a) != cell_key("phase", PhaseCell(depth=2, seed=1))
    assert cell_key("phase", a) != cell_key("phase", PhaseCell(depth=2, threads=2))
    assert cell_key("phase", a) != cell_key("train", a)
    other = {**code_versions(), "torch": "0.0.0"}
    assert cell_key("phase", a) != cell_key("phase", a, other)
    import hashlib
    from dataclasses import asdict

    doc = {"experiment": "phase", "config": asdict(a), "versions": code_versions()}
    assert cell_key("phase", a) == hashlib.sha256(canonical_json(doc).encode()).hexdigest()


def test_an_int_where_a_float_is_meant_is_the_same_cell():
    one = expand(parse_spec(_spec(fixed={"lr": 1})))[0]
    other = expand(parse_spec(_spec(fixed={"lr": 1.0})))[0]
    assert one.key == other.key and isinstance(one.config.lr, float)


def test_spec_hash_does_not_depend_on_how_the_spec_is_written():
    a = expand(parse_spec(_spec(grid={"depth": [1, 2], "sigma_w2": [1.0, 2.0]})))
    b = expand(parse_spec(_spec(grid={"sigma_w2": [2.0, 1.0], "depth": [2, 1]})))
    assert spec_hash(a) == spec_hash(b)
    c = expand(parse_spec(_spec(grid={"depth": [1, 2, 3], "sigma_w2": [1.0, 2.0]})))
    assert spec_hash(a) != spec_hash(c)


def test_a_factory_model_is_keyed_by_its_code_not_its_path(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = write_factory(tmp_path / "a")
    two = tmp_path / "b" / "nets.py"
    shutil.copy(one, two)
    key = expand(parse_spec(train_spec(one, [4], [1], [0])))[0].key
    assert expand(parse_spec(train_spec(two, [4], [1], [0])))[0].key == key
    two.write_text(two.read_text() + "\n# changed\n")
    assert expand(parse_spec(train_spec(two, [4], [1], [0])))[0].key != key


def test_relative_paths_are_relative_to_the_spec_file(tmp_path):
    write_factory(tmp_path)
    (tmp_path / "spec.toml").write_text('[sweep]\nexperiment = "train"\n[fixed]\nmodel = "nets.py:build"\n'
                                        'dataset = "digits"\n[grid]\nwidth = [4]\n')
    spec = load_spec(tmp_path / "spec.toml")
    assert spec.fixed["model"] == f"{(tmp_path / 'nets.py').resolve()}:build"
    assert spec.source == str(tmp_path / "spec.toml")


def test_a_grid_of_paths_that_are_one_directory_is_refused(tmp_path):
    """``data_dir`` is taken relative to the spec: ``data`` and ``./data`` are one directory, one cell."""
    (tmp_path / "data").mkdir()
    (tmp_path / "spec.toml").write_text('[sweep]\nexperiment = "phase"\n[grid]\n'
                                        'data_dir = ["data", "./data"]\n')
    says = (f"grid.data_dir = ['data', './data'] repeats a value: 'data' and './data' are the same data_dir "
            f"({str((tmp_path / 'data').resolve())!r}): list each once")
    with pytest.raises(InitlabError, match=re.escape(says)):
        load_spec(tmp_path / "spec.toml")


def test_load_spec_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_spec(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("[sweep\nexperiment = 1")
    with pytest.raises(InitlabError, match="is not valid TOML"):
        load_spec(tmp_path / "bad.toml")


@pytest.mark.parametrize("name, experiment, n_cells", [
    ("phase.toml", "phase", 18), ("time_to_accuracy.toml", "train", 20), ("depth_study.toml", "train", 32),
    ("random_lr.toml", "train", 24)])
def test_the_example_specs_parse_and_validate(name, experiment, n_cells):
    spec = load_spec(EXAMPLES / name)
    cells = expand(spec)  # builds every cell's config: every value is checked
    assert spec.experiment == experiment and len(cells) == n_cells and spec.out
    assert len({c.key for c in cells}) == n_cells
