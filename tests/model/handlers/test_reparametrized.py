"""Weights behind weight_norm and spectral_norm get rows: the direction is drawn as the layer's
weight would be, weight_norm's magnitude is its norm, so the layer starts with that draw."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations

from initlab import init_model
from initlab.model.traverse import SkippedParameterWarning


def _old_weight_norm(m: nn.Module) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch deprecates the old API, people still use it
        return torch.nn.utils.weight_norm(m)


def _net(wrap) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(32, 256, 3), nn.ReLU(), wrap(nn.Conv1d(256, 256, 3)), nn.ReLU(),
                         wrap(nn.Conv1d(256, 8, 1)))


def _init(model: nn.Module, scheme: str = "he_normal"):
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkippedParameterWarning)
        return init_model(model, scheme, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("api", ["old", "parametrizations"])
def test_weight_norm_starts_the_layer_at_the_planned_draw(api):
    wrap = _old_weight_norm if api == "old" else parametrizations.weight_norm
    model = _net(wrap)
    plan = _init(model)
    v_name, g_name = (("2.weight_v", "2.weight_g") if api == "old"
                      else ("2.parametrizations.weight.original1", "2.parametrizations.weight.original0"))
    v, g = model.get_parameter(v_name), model.get_parameter(g_name)
    row = plan[v_name]
    # He normal on a ReLU layer: std = sqrt(2 / fan_in), fan_in = 256 * 3
    assert row.std == pytest.approx(math.sqrt(2 / (256 * 3)), rel=1e-12)
    n = v.numel()
    assert float(v.detach().std()) == pytest.approx(row.std, abs=5 * row.std / math.sqrt(2 * n))
    assert torch.allclose(g.flatten(), v.detach().flatten(1).norm(dim=1), rtol=1e-6, atol=0)
    with torch.no_grad():
        model(torch.randn(2, 32, 16))  # the old API recomputes .weight in its forward pre-hook
    eps = torch.finfo(v.dtype).eps
    assert torch.allclose(model[2].weight, v, rtol=8 * eps, atol=8 * eps * float(v.abs().max()))
    assert plan[g_name].scheme == "weight_norm" and "||v||" in plan[g_name].spec


def test_weight_norm_draws_are_reproducible():
    a, b = _net(parametrizations.weight_norm), _net(parametrizations.weight_norm)
    _init(a, "auto")
    _init(b, "auto")
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert na == nb and torch.equal(pa, pb), na


def test_spectral_norm_draws_its_original_as_the_weight():
    model = _net(parametrizations.spectral_norm)
    plan = _init(model)
    row = plan["2.parametrizations.weight.original"]
    assert row.std == pytest.approx(math.sqrt(2 / (256 * 3)), rel=1e-12)
    assert "SpectralNorm" in row.note
    original = model.get_parameter("2.parametrizations.weight.original")
    se = row.std / math.sqrt(2 * original.numel())
    assert float(original.detach().std()) == pytest.approx(row.std, abs=5 * se)


def test_an_unknown_parametrization_is_named_in_the_warning():
    model = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), parametrizations.orthogonal(nn.Linear(8, 8)))
    with pytest.warns(SkippedParameterWarning, match=r"2\.parametrizations\.weight\.original"):
        plan = init_model(model, generator=torch.Generator().manual_seed(0), dry_run=True)
    assert any("2.parametrizations.weight" == s["module"] for s in plan.skipped)


@pytest.mark.parametrize("api", ["old", "parametrizations"])
def test_spectral_norm_singular_vectors_are_re_estimated_after_the_draw(api):
    """In eval mode no power iteration runs: the first forward divides by the estimate the buffers
    hold. u^T W v never exceeds sigma_max(W), so the normalised weight's spectral norm is >= 1; 15
    iterations from the old vectors bring it near 1 (a stale estimate left it at 40-90)."""
    def wrap(m):
        if api == "parametrizations":
            return parametrizations.spectral_norm(m)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return torch.nn.utils.spectral_norm(m)

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), wrap(nn.Linear(256, 256)), nn.ReLU(),
                          wrap(nn.Conv1d(256, 32, 1)))
    _init(model, "auto")
    model.eval()
    with torch.no_grad():
        model[4](model[2](torch.randn(2, 256)).reshape(1, 256, 2))  # the old API computes .weight here
    for layer in (model[2], model[4]):
        sigma = float(torch.linalg.matrix_norm(layer.weight.detach().flatten(1), 2))
        assert 1 - 1e-4 <= sigma <= 1.15, sigma


def test_plan_and_probe_read_the_planned_weight_behind_a_parametrization():
    """The plan predicts each layer's E[y^2] from the planned v (not the weights before init), and
    the probe's prediction reads each parametrized layer's own weight (a weight_norm weight is a new
    tensor on every access: an id can be reused by another layer's)."""
    from initlab import probe

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = parametrizations.weight_norm(nn.Linear(32, 256))
            self.c = parametrizations.weight_norm(nn.Conv1d(256, 256, 1))
            self.d = nn.Linear(256, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.relu(self.c(torch.relu(self.a(x))[:, :, None]))[:, :, 0]
            return self.d(h)

    torch.manual_seed(0)
    model = Net()
    plan = _init(model, "auto")
    assert plan["c.parametrizations.weight.original1"].q_out == pytest.approx(1.0, rel=1e-9)
    result = probe(model, torch.randn(512, 32, generator=torch.Generator().manual_seed(1)))
    assert not [v for v in result.verdicts() if v.kind == "mismatch"], result.verdicts()
