"""Tests for initlab.lsuv (Mishkin & Matas 2016, LSUV)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from initlab.errors import InitlabError
from initlab.lsuv import HANDLED_TYPES, LSUVResult, lsuv_
from initlab.models import mlp


def _handled_output_stds(model: nn.Module, batch) -> dict[str, float]:
    """Std of every handled layer's output on ``batch``, measured independently of lsuv_."""
    inner = {m.out_proj for m in model.modules() if isinstance(m, nn.MultiheadAttention)}
    stds: dict[str, float] = {}
    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, HANDLED_TYPES) and m not in inner:
            def hook(mod, args, out, name=name):
                y = out[0] if isinstance(out, tuple) else out
                stds.setdefault(name, float(y.detach().double().std()))
            hooks.append(m.register_forward_hook(hook))
    was = model.training
    model.eval()
    try:
        with torch.enable_grad():  # keeps torch's fused attention fast path (no module calls) off
            model(batch)
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    return stds


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_bit_identical(model: nn.Module, snap: dict[str, torch.Tensor]) -> None:
    for k, v in model.state_dict().items():
        assert torch.equal(v, snap[k]), f"{k} changed"


class _Attn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(6, 16)
        self.attn = nn.MultiheadAttention(16, 4, batch_first=True)
        self.block = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.1, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        h = self.embed(x)
        h, _ = self.attn(h, h, h)
        return self.head(self.block(h))


def _cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2), nn.ReLU(),
        nn.ConvTranspose2d(16, 8, 2, stride=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 4 * 4, 10),
    )


MODELS = {
    # name: (factory, input shape)
    "mlp_relu_4": (lambda: mlp(20, 48, 4, 10, "relu"), (128, 20)),
    "mlp_relu_20": (lambda: mlp(20, 48, 20, 10, "relu"), (128, 20)),
    "mlp_tanh_dropout": (lambda: mlp(20, 48, 3, 10, "tanh", dropout=0.5), (128, 20)),
    "cnn": (_cnn, (32, 1, 8, 8)),
    "conv1d": (lambda: nn.Sequential(nn.Conv1d(3, 8, 3), nn.ReLU(), nn.ConvTranspose1d(8, 4, 3)),
               (16, 3, 20)),
    "attention": (_Attn, (16, 5, 6)),
}


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("orthogonal", [True, False])
def test_every_handled_layer_within_tol(name, orthogonal, gen):
    factory, shape = MODELS[name]
    torch.manual_seed(0)  # the module constructors' default init (test setup, not library code)
    model = factory()
    batch = torch.randn(*shape, generator=gen)
    result = lsuv_(model, batch, target_std=1.0, tol=0.1, orthogonal=orthogonal, generator=gen)
    stds = _handled_output_stds(model, batch)
    assert set(stds) == {layer.name for layer in result.layers}
    for layer, std in stds.items():
        assert abs(std - 1.0) <= 0.1, (layer, std)
    assert result.converged
    for layer in result.layers:  # the reported final std is the measured one
        assert layer.final_std == pytest.approx(stds[layer.name], rel=1e-9)


@pytest.mark.parametrize("target_std, tol", [(0.5, 0.01), (2.0, 0.05)])
def test_other_targets(target_std, tol, gen):
    model = mlp(10, 32, 6, 4, "relu")
    batch = torch.randn(64, 10, generator=gen)
    lsuv_(model, batch, target_std=target_std, tol=tol, generator=gen)
    for layer, std in _handled_output_stds(model, batch).items():
        assert abs(std - target_std) <= tol, (layer, std)


def test_forward_passes_and_zero_bias_one_step(gen):
    # With zero biases a layer's output is linear in its weight: one rescaling lands exactly.
    model = mlp(10, 32, 8, 4, "relu")
    batch = torch.randn(64, 10, generator=gen)
    result = lsuv_(model, batch, tol=1e-3, generator=gen)
    assert result.forward_passes == 2  # one calibration pass + one verification pass
    assert all(layer.iterations <= 1 for layer in result.layers)
    assert result.layer_calls == sum(layer.iterations for layer in result.layers)
    for layer in result.layers:
        assert layer.final_std == pytest.approx(1.0, abs=1e-4)
        expected = 1.0 if layer.iterations == 0 else 1.0 / layer.initial_std
        assert layer.scale == pytest.approx(expected, rel=1e-12)
    for m in model.modules():
        if isinstance(m, nn.Linear):
            assert torch.count_nonzero(m.bias) == 0  # zeroed with the orthonormal pre-init


def test_orthonormal_preinit(gen):
    model = mlp(16, 32, 2, 8, "relu")
    result = lsuv_(model, torch.randn(64, 16, generator=gen), generator=gen)
    # the first layer (32 x 16) has orthonormal columns before rescaling: W^T W = scale^2 I
    w = model.fc1.weight.double()
    s = result.layers[0].scale
    torch.testing.assert_close(w.T @ w, s**2 * torch.eye(16, dtype=torch.float64), atol=1e-5, rtol=0)


def test_forward_order_not_registration_order(gen):
    class Reordered(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.second = nn.Linear(8, 4)
            self.first = nn.Linear(5, 8)

        def forward(self, x):
            return self.second(torch.relu(self.first(x)))

    result = lsuv_(Reordered(), torch.randn(32, 5, generator=gen), generator=gen)
    assert [layer.name for layer in result.layers] == ["first", "second"]


def test_same_seed_same_weights():
    def run(seed):
        torch.manual_seed(0)
        model = mlp(12, 24, 5, 3, "tanh")
        batch = torch.randn(40, 12, generator=torch.Generator().manual_seed(5))
        lsuv_(model, batch, generator=torch.Generator().manual_seed(seed))
        return model.state_dict()

    a, b, c = run(7), run(7), run(8)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert any(not torch.equal(a[k], c[k]) for k in a if k.endswith("weight"))


def test_training_mode_restored_and_hooks_removed(gen):
    model = mlp(10, 16, 3, 2, "relu", dropout=0.2)
    model.train()
    model.drop2.eval()  # a mixed state must come back exactly
    modes = {n: m.training for n, m in model.named_modules()}
    lsuv_(model, torch.randn(32, 10, generator=gen), generator=gen)
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert all(not m._forward_hooks for m in model.modules())


def test_attention_output_is_out_proj(gen):
    model = _Attn()
    result = lsuv_(model, torch.randn(8, 5, 6, generator=gen), generator=gen)
    names = [layer.name for layer in result.layers]
    assert names == ["embed", "attn", "block.self_attn", "block.linear1", "block.linear2", "head"]
    assert not any(n.endswith("out_proj") for n in names)
    # q, k, v blocks are each orthonormal (rows), with zero in-projection bias
    for block in model.attn.in_proj_weight.detach().double().chunk(3):
        torch.testing.assert_close(block @ block.T, torch.eye(16, dtype=torch.float64), atol=1e-5, rtol=0)
    assert torch.count_nonzero(model.attn.in_proj_bias) == 0


def test_tuple_and_dict_batches(gen):
    class TwoInputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 8)
            self.b = nn.Linear(8, 2)

        def forward(self, x, scale):
            return self.b(torch.tanh(self.a(x * scale)))

    x = torch.randn(32, 4, generator=gen)
    for batch in ((x, 3.0), {"x": x, "scale": 3.0}):
        model = TwoInputs()
        result = lsuv_(model, batch, generator=gen)
        assert result.converged


def test_max_iter_and_warning_when_bias_dominates(gen):
    # orthogonal=False keeps the bias; a bias spread of std 5 puts the output std above 5 for any
    # weight scale, so target 1 is unreachable: max_iter rescalings, then a warning.
    model = nn.Sequential(nn.Linear(8, 64))
    with torch.no_grad():
        model[0].bias.copy_(5 * torch.randn(64, generator=gen))
    with pytest.warns(UserWarning, match="did not reach"):
        result = lsuv_(model, torch.randn(32, 8, generator=gen), orthogonal=False, max_iter=3)
    assert result.layers[0].iterations == 3
    assert not result.converged


def test_records_and_table(gen):
    result = lsuv_(mlp(10, 16, 2, 3), torch.randn(32, 10, generator=gen), generator=gen)
    assert isinstance(result, LSUVResult)
    recs = result.records
    assert all(r["experiment"] == "lsuv" for r in recs)
    layer_stats = {(r["layer"], r["stat"]) for r in recs if r["layer"] is not None}
    for name in ("fc1", "fc2", "out"):
        for stat in ("iterations", "initial_std", "final_std", "scale"):
            assert (name, stat) in layer_stats
    passes = [r["value"] for r in recs if r["stat"] == "forward_passes"]
    assert passes == [result.forward_passes]
    text = result.table()
    assert "fc1" in text and "forward passes" in text


# ---- bad inputs: clear errors, weights bit-identical ----------------------------------------


class _WithLSTM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(4, 8)
        self.rnn = nn.LSTM(8, 8, batch_first=True)

    def forward(self, x):
        return self.rnn(self.embed(x))[0]


class _Zero(nn.Module):
    def forward(self, x):
        return x * 0


BAD_CASES = {
    "lstm": (_WithLSTM, lambda g: torch.randn(4, 3, 4, generator=g), r"'rnn' \(LSTM\)"),
    "empty": (lambda: mlp(4, 8, 2, 2), lambda g: torch.randn(0, 4), r"empty"),
    "nan": (lambda: mlp(4, 8, 2, 2),
            lambda g: torch.randn(8, 4, generator=g).index_fill_(0, torch.tensor([3]), float("nan")),
            r"NaN"),
    "zero_batch": (lambda: mlp(4, 8, 2, 2), lambda g: torch.zeros(8, 4), r"'fc1' \(Linear\).*std 0"),
    # fails at the second layer, after the first was already rescaled: must be rolled back
    "dead_midway": (lambda: nn.Sequential(nn.Linear(4, 8), _Zero(), nn.Linear(8, 2)),
                    lambda g: torch.randn(8, 4, generator=g), r"'2' \(Linear\).*std 0"),
    "no_layers": (lambda: nn.Sequential(nn.ReLU()), lambda g: torch.randn(8, 4, generator=g), r"no Linear"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_inputs_clear_error_weights_untouched(case, gen):
    factory, make_batch, pattern = BAD_CASES[case]
    model = factory()
    model.train()
    snap = _snapshot(model)
    with pytest.raises(InitlabError, match=pattern):
        lsuv_(model, make_batch(gen), generator=gen)
    _assert_bit_identical(model, snap)
    assert all(m.training for m in model.modules())
    assert all(not m._forward_hooks for m in model.modules())


@pytest.mark.parametrize("kwargs, pattern", [
    ({"target_std": 0.0}, "target_std"),
    ({"target_std": math.inf}, "target_std"),
    ({"tol": -0.1}, "tol"),
    ({"max_iter": 0}, "max_iter"),
])
def test_bad_settings(kwargs, pattern, gen):
    model = mlp(4, 8, 1, 2)
    snap = _snapshot(model)
    with pytest.raises(InitlabError, match=pattern):
        lsuv_(model, torch.randn(8, 4, generator=gen), **kwargs)
    _assert_bit_identical(model, snap)


def test_bad_types(gen):
    with pytest.raises(TypeError, match="nn.Module"):
        lsuv_("not a model", torch.randn(2, 2))
    with pytest.raises(TypeError, match="batch"):
        lsuv_(mlp(4, 8, 1, 2), 3.0)
    with pytest.raises(TypeError, match="generator"):
        lsuv_(mlp(4, 8, 1, 2), torch.randn(8, 4, generator=gen), generator=0)


# ---- review: edge cases found by breaking it ------------------------------------------------


def test_tol_zero_stops_at_float_rounding(gen):
    """tol=0 cannot be met bit-exactly in float32: the first rescaling lands on the target up to
    rounding, which must count as converged (no warning, no max_iter pointless rescalings)."""
    import warnings

    model = mlp(10, 32, 3, 4, "relu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = lsuv_(model, torch.randn(64, 10, generator=gen), tol=0.0, generator=gen)
    assert result.converged
    assert all(layer.iterations <= 2 for layer in result.layers), result.table()
    for layer, std in _handled_output_stds(model, torch.randn(64, 10, generator=gen)).items():
        assert std == pytest.approx(1.0, abs=0.5), layer  # sanity on a fresh batch


def test_numpy_scalar_settings_accepted(gen):
    import numpy as np

    result = lsuv_(mlp(4, 8, 1, 2), torch.randn(16, 4, generator=gen), target_std=np.float32(1.0),
                   tol=np.float32(0.1), max_iter=np.int64(3), generator=gen)
    assert result.target_std == 1.0 and result.max_iter == 3 and isinstance(result.max_iter, int)
    with pytest.raises(InitlabError, match="target_std"):
        lsuv_(mlp(4, 8, 1, 2), torch.randn(16, 4, generator=gen), target_std=True)


def test_shared_weight_is_calibrated_once_at_its_first_use(gen):
    """Two Linear modules sharing one weight tensor: rescaling it for the second module would
    silently undo the first one's calibration; LSUV calibrates the tensor at its first use only."""
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(10, 10)
            self.b = nn.Linear(10, 10)
            self.b.weight = self.a.weight

        def forward(self, x):
            return self.b(torch.tanh(self.a(x)))

    model = Tied()
    batch = torch.randn(64, 10, generator=gen)
    with pytest.warns(UserWarning, match="'b' shares its weight with 'a'"):
        result = lsuv_(model, batch, generator=gen)
    assert model.b.weight is model.a.weight and result.converged
    by_name = {layer.name: layer for layer in result.layers}
    assert by_name["b"].iterations == 0 and by_name["b"].scale == 1.0
    assert by_name["b"].shares_weight_with == "a" and by_name["a"].shares_weight_with is None
    assert abs(_handled_output_stds(model, batch)["a"] - 1.0) <= 0.1


@pytest.mark.parametrize("wrap", ["weight_norm", "spectral_norm", "old_weight_norm"])
def test_parametrized_weight_is_refused(wrap, gen):
    """weight_norm / spectral_norm recompute ``weight`` on every forward: rescaling it in place
    has no effect (LSUV used to report scale 200+ and leave the std unchanged)."""
    p = nn.utils.parametrizations
    wrappers = {"weight_norm": p.weight_norm, "spectral_norm": p.spectral_norm,
                "old_weight_norm": nn.utils.weight_norm}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch deprecates nn.utils.weight_norm
        model = nn.Sequential(wrappers[wrap](nn.Linear(10, 20)), nn.ReLU(), nn.Linear(20, 3))
    snap = _snapshot(model)
    with pytest.raises(InitlabError, match=r"'0' .*(parametri|weight_norm)"):
        lsuv_(model, torch.randn(32, 10, generator=gen), generator=gen)
    _assert_bit_identical(model, snap)
    assert all(not m._forward_hooks for m in model.modules())
