"""The deep architectures of the time-to-accuracy benchmark (``zoo.plain_cnn``, ``zoo.cifar_resnet``,
``zoo.char_gpt``), the standard-library text corpus, and ``benchmarks/time_to_accuracy_arch.py``:
its summary helpers, the ``train`` cells it makes of each family, and one tiny run through the
sweep engine into a store and back (the benchmark itself trains for minutes: not a test)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from initlab import corpus, zoo
from initlab.errors import InitlabError

BENCH = Path(__file__).parents[2] / "benchmarks" / "time_to_accuracy_arch.py"


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _seeded(build, seed: int):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build()


# ---- plain CNN -------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [3, 8, 32])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_plain_cnn_depth_shapes_and_plainness(depth, activation):
    m = zoo.plain_cnn(depth, 16, activation)
    convs = [x for x in m.modules() if isinstance(x, nn.Conv2d)]
    assert len(convs) == depth
    assert [c.stride[0] for c in convs].count(2) == 2
    assert not any(isinstance(x, (nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)) for x in m.modules())
    act = nn.ReLU if activation == "relu" else nn.Tanh
    assert sum(isinstance(x, act) for x in m.modules()) == depth
    assert tuple(m(torch.zeros(2, 1, 28, 28)).shape) == (2, 10)
    h = m.features(torch.zeros(2, 1, 28, 28))
    assert tuple(h.shape) == (2, 16, 7, 7)


def test_plain_cnn_rejects_bad_arguments():
    with pytest.raises(InitlabError, match="depth=2"):
        zoo.plain_cnn(2)
    with pytest.raises(InitlabError, match="activation='gelu'"):
        zoo.plain_cnn(8, activation="gelu")


# ---- CIFAR ResNet ----------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [20, 56, 110])
def test_cifar_resnet_depth(depth):
    m = zoo.cifar_resnet(depth, norm=False, in_channels=1)
    blocks = [x for x in m.modules() if isinstance(x, zoo.BasicBlock)]
    assert len(blocks) == (depth - 2) // 6 * 3
    # weighted layers on the main path: stem + 2 per block + head (the 1x1 shortcuts are not counted)
    main = [n for n, x in m.named_modules() if isinstance(x, (nn.Conv2d, nn.Linear)) and "shortcut" not in n]
    assert len(main) == depth
    assert not any(isinstance(x, nn.BatchNorm2d) for x in m.modules())


def test_cifar_resnet_forward_norm_and_errors():
    m = zoo.cifar_resnet(20, norm=True, in_channels=1).eval()
    assert sum(isinstance(x, nn.BatchNorm2d) for x in m.modules()) == 1 + 2 * 9 + 2
    assert tuple(m(torch.zeros(2, 1, 28, 28)).shape) == (2, 10)
    assert tuple(zoo.cifar_resnet(8)(torch.zeros(1, 3, 8, 8)).shape) == (1, 10)
    for bad in (21, 2, 0):
        with pytest.raises(InitlabError, match=f"depth={bad}"):
            zoo.cifar_resnet(bad)


def test_zoo_resnet20_unchanged_by_the_generalisation():
    """``in_channels`` defaults to 3: the zoo's resnet20 keeps its RGB stem."""
    assert zoo.build("resnet20").stem.in_channels == 3


# ---- char GPT --------------------------------------------------------------------------------------


@pytest.mark.parametrize("ln", ["pre", "none"])
@pytest.mark.parametrize("depth", [1, 3])
def test_char_gpt_structure_and_shapes(depth, ln):
    m = zoo.char_gpt(depth, width=32, heads=4, context=16, ln=ln)
    assert len(m.blocks) == depth
    attn = m.blocks[0].attn
    assert all(isinstance(getattr(attn, n), nn.Linear) for n in ("q", "k", "v", "proj"))
    assert m.blocks[0].mlp.fc.out_features == 4 * 32
    n_ln = sum(isinstance(x, nn.LayerNorm) for x in m.modules())
    assert n_ln == (2 * depth + 1 if ln == "pre" else 0)
    assert m.head.weight.data_ptr() != m.tok.weight.data_ptr()
    ids = torch.randint(0, 256, (3, 10), generator=torch.Generator().manual_seed(0))
    assert tuple(m(ids).shape) == (3, 10, 256)


def test_char_gpt_is_causal():
    """Changing a later byte leaves the logits at earlier positions unchanged."""
    m = zoo.char_gpt(2, width=32, context=16).eval()
    ids = torch.randint(0, 256, (1, 12), generator=torch.Generator().manual_seed(0))
    other = ids.clone()
    other[0, 8] = (ids[0, 8] + 1) % 256
    with torch.no_grad():
        a, b = m(ids), m(other)
    torch.testing.assert_close(a[:, :8], b[:, :8], atol=1e-6, rtol=0)
    assert not torch.allclose(a[:, 8:], b[:, 8:])


def test_char_gpt_rejects_bad_arguments():
    with pytest.raises(InitlabError, match="width=30"):
        zoo.char_gpt(2, width=30, heads=4)
    with pytest.raises(InitlabError, match="ln='post'"):
        zoo.char_gpt(2, ln="post")
    with pytest.raises(InitlabError, match="depth=0"):
        zoo.char_gpt(0)


@pytest.mark.parametrize("build", [lambda: zoo.plain_cnn(8), lambda: zoo.cifar_resnet(20, norm=False),
                                   lambda: zoo.char_gpt(2, width=32)], ids=["cnn", "resnet", "gpt"])
def test_builders_are_deterministic_under_a_seed(build):
    assert _same_weights(_seeded(build, 0), _seeded(build, 0))
    assert not _same_weights(_seeded(build, 0), _seeded(build, 1))


# ---- corpus ----------------------------------------------------------------------------------------


def test_stdlib_bytes_are_the_standard_library_source():
    data = corpus.stdlib_bytes(20_000)
    assert data.dtype == np.uint8 and data.shape == (20_000,)
    first = corpus.stdlib_files()[0].read_bytes()
    assert bytes(data[:len(first)][:20_000]) == first[:20_000]
    assert np.array_equal(corpus.stdlib_bytes(5_000, seed=3), corpus.stdlib_bytes(5_000, seed=3))
    assert not np.array_equal(corpus.stdlib_bytes(5_000, seed=3), corpus.stdlib_bytes(5_000, seed=4))
    files = corpus.stdlib_files()
    assert files == sorted(files)
    assert not any(f.relative_to(corpus.stdlib_dir()).parts[0] in corpus.EXCLUDED for f in files)


def test_split_is_deterministic_and_disjoint_by_file():
    files = corpus.stdlib_files()
    train, valid = corpus.split_files(files, 0.1, seed=0)
    assert (train, valid) == corpus.split_files(files, 0.1, seed=0)
    assert not set(train) & set(valid) and len(train) + len(valid) == len(files)
    assert len(valid) == round(0.1 * len(files))
    t1, v1 = corpus.stdlib_split(50_000, 10_000)
    t2, v2 = corpus.stdlib_split(50_000, 10_000)
    assert np.array_equal(t1, t2) and np.array_equal(v1, v2)
    assert t1.shape == (50_000,) and v1.shape == (10_000,)
    assert bytes(v1[:len(valid[0].read_bytes())][:10_000]) == valid[0].read_bytes()[:10_000]


def test_corpus_errors(tmp_path):
    with pytest.raises(InitlabError, match="no .py files under"):
        corpus.stdlib_files(tmp_path)
    (tmp_path / "a.py").write_bytes(b"x = 1\n")
    with pytest.raises(InitlabError, match="cannot be split"):
        corpus.split_files(corpus.stdlib_files(tmp_path))
    with pytest.raises(InitlabError, match="valid_fraction=1.5"):
        corpus.split_files([Path("a"), Path("b")], 1.5)
    assert bytes(corpus.stdlib_bytes(root=tmp_path)) == b"x = 1\n"


# ---- the benchmark's pure helpers ------------------------------------------------------------------


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("time_to_accuracy_arch", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses resolve their annotations through sys.modules
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_medians_count_never_and_diverged_as_worst(bench):
    assert bench.median_steps([40, None, 60]) == 60
    assert bench.median_steps([None, None, 60]) == math.inf
    assert math.isnan(bench.median_steps([]))
    assert bench.median_final([0.8, math.nan, 0.9], True) == 0.8
    assert bench.median_final([2.5, math.nan, math.nan], False) == math.inf


def test_best_peer_and_ratio(bench):
    steps = {"auto": 40.0, "he": 80.0, "lsuv": 60.0, "bn_he": 20.0, "x": math.inf, "y": math.nan}
    assert bench.best_peer(steps, ("auto", "bn_he")) == (60.0, "lsuv")
    assert bench.best_peer({"auto": 1.0, "he": math.inf}) is None
    assert bench.ratio(40.0, 60.0) == "0.67"
    assert bench.ratio(math.inf, 60.0) == "inf"
    assert bench.ratio(40.0, None) == "only auto"
    assert bench.ratio(math.inf, None) == "-"
    assert bench.ratio(math.nan, 60.0) == "-"


def test_format_table_aligns_columns(bench):
    text = bench.format_table(["depth", "variant", "auto"], [["8", "relu", "40"], ["128", "tanh", "-"]],
                              left=(1,))
    lines = text.splitlines()
    assert lines == ["depth  variant  auto", "    8  relu       40", "  128  tanh        -"]
    assert bench.fmt(math.inf) == "-" and bench.fmt(math.nan) == "err" and bench.fmt(60.0) == "60"


def test_tables_and_goals_from_records(bench):
    fam = bench.FAMILIES["resnet"]

    def rec(init, seed, steps, final, depth=56, error=None):
        return {"family": "resnet", "depth": depth, "variant": "nonorm", "init": init, "seed": seed,
                "steps_to_target": steps, "final": final, "target": 0.8, "error": error}

    records = [rec("auto", s, 40, 0.85) for s in (0, 1, 2)]
    records += [rec("he_fan_out", s, st, 0.84) for s, st in ((0, 60), (1, None), (2, 80))]
    records += [rec("bn_he", s, 20, 0.855) for s in (0, 1, 2)]
    records += [rec("fixup", 0, None, None, error="ImportError: no transform")]
    table = bench.family_tables(records, fam, [56], ["nonorm"], ["he_fan_out", "fixup", "auto", "bn_he"])
    assert "80 (he_fan_out)" in table and "0.50" in table and "err" in table
    lines = bench.goal_lines(records, fam, [56], ["nonorm"])
    assert lines[0].startswith("PASS") and lines[1].startswith("PASS")
    assert lines[2].startswith("PASS") and "0.8500 vs 0.8550" in lines[2]
    worse = records + [rec("auto", s, None, 0.70, depth=20) for s in (0, 1, 2)]
    assert bench.goal_lines(worse, fam, [20, 56], ["nonorm"])[0].startswith("FAIL")


def _cells(bench, argv):
    args = bench.parse_args(argv)
    fam = bench.FAMILIES[args.family]
    settings, depths, variants, inits = bench.family_plan(fam, args)
    cells = []
    for _, fixed, grid, labels in bench.family_parts(fam, settings, depths, variants, inits, "fashion-mnist"):
        cells += bench.part_cells(fam.name, fixed, grid, labels, args.seeds, args.threads)
    return {(c.params["depth"], c.params["variant"], c.params["init"], c.params["seed"]): c for c in cells}


def test_each_run_is_a_train_cell_with_the_family_settings(bench):
    cnn = _cells(bench, ["--family", "cnn", "--quick", "--activations", "relu", "tanh", "--seeds", "0", "1"])
    assert len(cnn) == 2 * 5 * 2
    c = cnn[8, "tanh", "delta_orthogonal", 1].config
    assert (c.model, c.activation, c.init, c.width, c.seed) == ("cnn", "tanh", "delta_orthogonal", 32, 1)
    assert (c.optimizer, c.lr, c.momentum, c.batch_size, c.steps, c.eval_every) == ("sgd", 0.005, 0.9, 128,
                                                                                    100, 20)
    assert (c.target, c.eval_size, c.final_size) == (0.75, 2000, 2000)  # --quick: final on the eval set

    deep = _cells(bench, ["--family", "cnn", "--depths", "8", "32", "64", "128", "--activations", "relu",
                          "--inits", "auto", "he_fan_out", "--lr", "0.004"])
    for depth in (8, 32, 64, 128):  # the base lr up to depth 32, then x 32 / depth, for every start
        want = 0.004 * min(1.0, 32 / depth)
        assert {deep[depth, "relu", i, 0].config.lr for i in ("auto", "he_fan_out")} == {want}

    resnet = _cells(bench, ["--family", "resnet", "--depths", "20", "56", "--steps", "7"])
    assert {k[2] for k in resnet} == {"torch_default", "he_fan_out", "fixup", "skipinit", "auto", "bn_he"}
    ref, peer = resnet[56, "nonorm", "bn_he", 0].config, resnet[56, "nonorm", "he_fan_out", 0].config
    assert (ref.model, ref.norm, ref.init) == ("resnet", True, "he_fan_out")  # torchvision's BatchNorm ResNet
    assert (peer.norm, peer.init, peer.lr, peer.steps) == (False, "he_fan_out", 0.05, 7)
    assert peer.final_size is None  # the whole test set

    gpt = _cells(bench, ["--family", "gpt", "--depths", "6", "--inits", "gpt2", "auto"])
    pre, none = gpt[6, "pre", "gpt2", 0].config, gpt[6, "none", "auto", 0].config
    assert (pre.model, pre.dataset, pre.norm, none.norm) == ("gpt", "stdlib", None, False)
    assert (none.optimizer, none.lr, none.weight_decay, none.batch_size, none.steps, none.eval_every,
            none.target, none.width) == ("adamw", 3e-3, 0.01, 32, 600, 25, 3.0, 128)
    every = [*cnn.values(), *resnet.values(), *gpt.values()]
    assert len({c.key for c in every}) == len(every)


def test_bad_options_exit_2_with_one_line(bench, capsys):
    assert bench.main(["--family", "gpt", "--inits", "bn_he", "--no-progress"]) == 2
    assert "--inits bn_he: unknown for gpt" in capsys.readouterr().err
    assert bench.main(["--family", "cnn", "--cpus", "2", "--no-progress"]) == 2
    assert "add --ray" in capsys.readouterr().err


def test_tiny_run_through_the_store_resumes(bench, tmp_path, capsys):
    """Three runs on the digits (CNN-3, 2 steps): one start fails and is recorded, not raised; the
    same command again runs only that one; the rows match a run without a store."""
    pytest.importorskip("pyarrow")
    argv = ["--family", "cnn", "--depths", "3", "--activations", "relu", "--inits", "torch_default", "auto",
            "fixup", "--steps", "2", "--eval-every", "1", "--target", "0.01", "--dataset", "digits",
            "--no-progress", "--threads", str(torch.get_num_threads())]
    store, out = tmp_path / "runs", tmp_path / "runs.json"
    assert bench.main([*argv, "--store", str(store), "--json", str(out)]) == 0
    first = json.loads(out.read_text())
    assert [(r["init"], r["steps"], r["steps_to_target"]) for r in first[:2]] == [("torch_default", 2, 1),
                                                                                 ("auto", 2, 1)]
    assert first[2]["init"] == "fixup" and first[2]["error"].startswith("InitlabError: add_fixup_scalars")
    assert all(r["error"] is None and 0 <= r["final"] <= 1 for r in first[:2])
    printed = capsys.readouterr().out
    assert "cnn depth 3 relu fixup seed 0: error: InitlabError: add_fixup_scalars" in printed
    assert "PASS  cnn: auto reaches the target on every task" in printed
    assert bench.main([*argv, "--store", str(store), "--json", str(out)]) == 0
    err = capsys.readouterr().err  # only the failed start runs again
    assert "2 already stored" in err and "running 1 on" in err and "0 cell(s) run" in err
    assert json.loads(out.read_text()) == first
    assert bench.main([*argv, "--json", str(out)]) == 0
    again = json.loads(out.read_text())
    assert [{k: v for k, v in r.items() if k != "time_s"} for r in again] == \
        [{k: v for k, v in r.items() if k != "time_s"} for r in first]
