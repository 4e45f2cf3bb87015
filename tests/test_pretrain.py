"""Tests for initlab.pretrain (greedy layer-wise pretraining: autoencoder, denoising, RBM)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from initlab.data import load_dataset
from initlab.errors import InitlabError
from initlab.models import mlp
from initlab.pretrain import find_blocks, pretrain_layerwise

METHODS = ("autoencoder", "denoising", "rbm")


@pytest.fixture(scope="module")
def digits():
    """scikit-learn's bundled 8x8 digits (offline), standardised with training statistics."""
    return load_dataset("digits", seed=0)


def _small_init_(model: nn.Module, seed: int) -> None:
    """The classic bad init: every weight 0.01 * N(0, 1), biases 0."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.weight.copy_(0.01 * torch.randn(m.weight.shape, generator=g))
                m.bias.zero_()


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_bit_identical(model: nn.Module, snap: dict[str, torch.Tensor]) -> None:
    for k, v in model.state_dict().items():
        assert torch.equal(v, snap[k]), f"{k} changed"


def test_find_blocks_skips_head_and_dropout():
    model = mlp(8, 16, 3, 4, "relu", dropout=0.5)
    pre, blocks, head = find_blocks(model)
    assert pre == []
    assert [b.name for b in blocks] == ["fc1", "fc2", "fc3"]
    assert all(isinstance(b.activation, nn.ReLU) for b in blocks)
    assert head == ["out"]
    # no head: every block is pretrained; nested Sequential and a leading Flatten are fine
    nested = nn.Sequential(nn.Flatten(), nn.Sequential(nn.Linear(4, 6), nn.Tanh()),
                           nn.Linear(6, 6), nn.Sigmoid())
    pre, blocks, head = find_blocks(nested)
    assert len(pre) == 1 and [b.name for b in blocks] == ["1.0", "2"] and head == []


@pytest.mark.parametrize("method", METHODS)
def test_reconstruction_loss_decreases_every_layer(method, digits):
    model = mlp(64, 32, 3, 10, "sigmoid" if method == "rbm" else "tanh")
    result = pretrain_layerwise(model, digits.x_train, method=method, epochs_per_layer=4,
                                generator=torch.Generator().manual_seed(0))
    assert result.layers == ["fc1", "fc2", "fc3"] and result.head == ["out"]
    for layer in result.layers:
        losses = result.losses[layer]
        assert len(losses) == 4
        assert losses[-1] < losses[0], (layer, losses)
    recs = result.records
    assert len(recs) == 3 * 4
    assert {r["experiment"] for r in recs} == {"pretrain"}
    assert {r["stat"] for r in recs} == {"reconstruction_loss"}
    assert sorted({r["epoch"] for r in recs}) == [1, 2, 3, 4]
    assert [r["value"] for r in recs if r["layer"] == "fc2"] == result.losses["fc2"]
    if method == "rbm":  # standardised inputs -> Gaussian visible units; sigmoid codes -> Bernoulli
        assert result.visible == {"fc1": "gaussian", "fc2": "bernoulli", "fc3": "bernoulli"}
    assert "fc1" in result.table()


def test_pretrained_tanh_mlp_beats_small_init(digits):
    """5 hidden tanh layers; after one epoch of SGD fine-tuning the pretrained net must beat the
    same net left at 0.01 * N(0, 1) (whose signal vanishes through 5 layers: ~chance accuracy)."""
    x, y = digits.x_train, digits.y_train

    def finetune_one_epoch(model):
        g = torch.Generator().manual_seed(3)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        perm = torch.randperm(len(x), generator=g)
        for s in range(0, len(x), 32):
            i = perm[s:s + 32]
            loss = F.cross_entropy(model(x[i]), y[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            return float((model(digits.x_test).argmax(1) == digits.y_test).float().mean())

    small = mlp(64, 64, 5, 10, "tanh")
    _small_init_(small, seed=1)
    pretrained = mlp(64, 64, 5, 10, "tanh")
    pretrained.load_state_dict(small.state_dict())
    pretrain_layerwise(pretrained, x, method="autoencoder", epochs_per_layer=3,
                       generator=torch.Generator().manual_seed(2))
    acc_small, acc_pre = finetune_one_epoch(small), finetune_one_epoch(pretrained)
    # margin: at least 0.2 accuracy above the small init (observed gap is much larger)
    assert acc_pre > acc_small + 0.2, (acc_pre, acc_small)
    assert acc_pre > 0.5


def test_head_untouched_hidden_changed(digits):
    model = mlp(64, 16, 2, 10, "tanh")
    snap = _snapshot(model)
    pretrain_layerwise(model, digits.x_train[:256], epochs_per_layer=1,
                       generator=torch.Generator().manual_seed(0))
    assert torch.equal(model.out.weight, snap["out.weight"]) and torch.equal(model.out.bias, snap["out.bias"])
    assert not torch.equal(model.fc1.weight, snap["fc1.weight"])
    assert not torch.equal(model.fc2.weight, snap["fc2.weight"])


@pytest.mark.parametrize("method, tied", [("autoencoder", False), ("autoencoder", True),
                                          ("denoising", False), ("rbm", False)])
def test_same_seed_same_weights(method, tied, digits):
    x = digits.x_train[:300]

    def run(seed):
        model = mlp(64, 16, 2, 10, "sigmoid")
        _small_init_(model, seed=0)
        pretrain_layerwise(model, x, method=method, tied=tied, epochs_per_layer=2,
                           generator=torch.Generator().manual_seed(seed))
        return model.state_dict()

    a, b, c = run(11), run(11), run(12)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert any(not torch.equal(a[k], c[k]) for k in ("fc1.weight", "fc2.weight"))


def test_dataloader_input(digits):
    ds = TensorDataset(digits.x_train[:400], digits.y_train[:400])
    loader = DataLoader(ds, batch_size=50, shuffle=True, generator=torch.Generator().manual_seed(0))
    model = mlp(64, 16, 2, 10, "tanh")
    result = pretrain_layerwise(model, loader, method="denoising", epochs_per_layer=3, noise=0.3,
                                generator=torch.Generator().manual_seed(0))
    for layer in result.layers:
        assert result.losses[layer][-1] < result.losses[layer][0]
    assert {r["noise"] for r in result.records} == {0.3}


def test_float64_data_and_seed_in_records(digits):
    model = mlp(64, 8, 1, 10)
    result = pretrain_layerwise(model, digits.x_train[:64].double(), epochs_per_layer=1,
                                generator=torch.Generator().manual_seed(42))
    assert model.fc1.weight.dtype == torch.float32
    assert {r["seed"] for r in result.records} == {42}


def test_progress_bar_goes_to_stderr(digits, capsys):
    pretrain_layerwise(mlp(64, 8, 1, 10), digits.x_train[:64], epochs_per_layer=1, progress=True)
    captured = capsys.readouterr()
    assert "pretrain" in captured.err and captured.out == ""


# ---- bad inputs: clear errors, weights bit-identical ----------------------------------------


BAD_MODELS = {
    "lstm": (lambda: nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.LSTM(8, 8)), r"'2' \(LSTM\)"),
    "conv": (lambda: nn.Sequential(nn.Conv1d(1, 2, 3), nn.ReLU()), r"'0' \(Conv1d\)"),
    "softmax": (lambda: nn.Sequential(nn.Linear(4, 8), nn.Softmax(dim=1), nn.Linear(8, 2)),
                r"'1' \(Softmax\)"),
    "head_only": (lambda: nn.Sequential(nn.Linear(4, 2)), r"no hidden"),
}


@pytest.mark.parametrize("case", sorted(BAD_MODELS))
def test_unsupported_model_names_first_module(case):
    factory, pattern = BAD_MODELS[case]
    model = factory()
    snap = _snapshot(model)
    with pytest.raises(InitlabError, match=pattern):
        pretrain_layerwise(model, torch.randn(16, 4), epochs_per_layer=1)
    _assert_bit_identical(model, snap)


def test_not_sequential_is_type_error():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

    with pytest.raises(TypeError, match="nn.Sequential"):
        pretrain_layerwise(Net(), torch.randn(8, 4))


def _nan_at(x: torch.Tensor, row: int) -> torch.Tensor:
    x = x.clone()
    x[row, 0] = float("nan")
    return x


BAD_DATA = {
    "empty": (lambda: torch.randn(0, 4), r"empty"),
    "nan": (lambda: _nan_at(torch.randn(16, 4), 5), r"NaN"),
    "shape": (lambda: torch.randn(16, 5), r"shape \(16, 5\).*\(batch, 4\)"),
    "int": (lambda: torch.ones(16, 4, dtype=torch.int64), r"dtype"),
    "empty_loader": (lambda: DataLoader(TensorDataset(torch.randn(0, 4)), batch_size=4), r"empty"),
    # NaN in a later batch: found mid-training, after the first layer has started -> rolled back
    "nan_later_batch": (lambda: DataLoader(TensorDataset(_nan_at(torch.randn(32, 4), 30)), batch_size=8),
                        r"batch 3 .*NaN"),
}


@pytest.mark.parametrize("case", sorted(BAD_DATA))
@pytest.mark.parametrize("method", ["autoencoder", "rbm"])
def test_bad_data_clear_error_weights_untouched(case, method):
    make, pattern = BAD_DATA[case]
    model = mlp(4, 8, 2, 2, "sigmoid")
    snap = _snapshot(model)
    with pytest.raises(InitlabError, match=pattern):
        pretrain_layerwise(model, make(), method=method, epochs_per_layer=2)
    _assert_bit_identical(model, snap)


@pytest.mark.parametrize("kwargs, pattern", [
    ({"method": "pca"}, "method"),
    ({"epochs_per_layer": 0}, "epochs_per_layer"),
    ({"batch_size": 0}, "batch_size"),
    ({"lr": -1.0}, "lr"),
    ({"method": "autoencoder", "noise": 0.3}, "noise"),
    ({"method": "denoising", "noise": 1.5}, "noise"),
    ({"method": "rbm", "tied": True}, "tied"),
])
def test_bad_settings(kwargs, pattern):
    model = mlp(4, 8, 1, 2)
    snap = _snapshot(model)
    with pytest.raises(InitlabError, match=pattern):
        pretrain_layerwise(model, torch.randn(8, 4), **kwargs)
    _assert_bit_identical(model, snap)


def test_divergence_is_reported_and_rolled_back():
    model = mlp(4, 8, 2, 2, "relu")
    snap = _snapshot(model)
    x = 1e3 * torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(InitlabError, match="diverged.*lower lr"):
        pretrain_layerwise(model, x, method="rbm", lr=1e6, epochs_per_layer=3)
    _assert_bit_identical(model, snap)


def test_numpy_scalar_settings_accepted():
    """Settings often come from NumPy (a sweep grid): np.float32 / np.int64 are numbers too."""
    import numpy as np

    x = torch.randn(32, 4, generator=torch.Generator().manual_seed(0))
    result = pretrain_layerwise(mlp(4, 8, 1, 2), x, method="denoising", lr=np.float32(1e-3),
                                noise=np.float32(0.25), epochs_per_layer=np.int64(1), batch_size=np.int64(16))
    assert result.settings["lr"] == pytest.approx(1e-3) and type(result.settings["lr"]) is float
    assert result.settings["epochs_per_layer"] == 1 and type(result.settings["epochs_per_layer"]) is int
    with pytest.raises(InitlabError, match="lr"):
        pretrain_layerwise(mlp(4, 8, 1, 2), x, lr=True)
