"""Tests of the probe's fast paths: the host (CPU) reductions, the NumPy batched reduction, the
float32 searches and the gradient pre-hooks give what the plain definitions give.

Deterministic (seeded generators), CPU-only, small tensors. Exact where the operations are the
same; float tolerances stated where the order of summation differs.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

import initlab.probe  # noqa: F401  (binds the submodule first)
from initlab.probe import partials, probe, reductions, tuning


def _tune(monkeypatch, **knobs) -> None:
    """Swap the probe's tuning knobs (a frozen config, read as ``tuning.TUNING``) for the test."""
    monkeypatch.setattr(tuning, "TUNING", dataclasses.replace(tuning.TUNING, **knobs))


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


def _records_close(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for ra, rb in zip(a, b, strict=True):
        assert (ra["layer"], ra["kind"], ra["stat"]) == (rb["layer"], rb["kind"], rb["stat"])
        va, vb = ra["value"], rb["value"]
        if isinstance(va, float) and math.isnan(va):
            assert math.isnan(vb), (ra["layer"], ra["stat"])
        else:
            assert va == pytest.approx(vb, rel=1e-5, abs=1e-7), (ra["layer"], ra["kind"], ra["stat"])


@pytest.mark.parametrize("plant", [None, math.nan, math.inf])
def test_host_partials_in_slices_match_one_slice(gen, monkeypatch, plant):
    """A tensor longer than slice_entries is reduced slice by slice (slices combined in float64):
    min/max exactly, mean and centred sum of squares to float32 rounding (1e-5 relative); unit
    peaks equal _unit_peak; a NaN/inf propagates into every partial as in torch."""
    x = torch.randn(6, 5, 7, 11, generator=gen) + 0.3
    if plant is not None:
        x[3, 2, 1, 4] = plant
    flat = x.reshape(-1)
    whole, peak_whole = partials._host_partials(flat, (6, 5, 77))
    _tune(monkeypatch, slice_entries=400)  # 6 slices of whole rows (385 entries each)
    sliced, peak_sliced = partials._host_partials(flat, (6, 5, 77))
    plain, _ = partials._host_partials(flat)
    torch.testing.assert_close(peak_sliced, peak_whole, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(peak_whole, partials._unit_peak(x, 1), rtol=0, atol=0, equal_nan=True)
    ref = flat.double()
    for vals in (whole, sliced, plain):
        if plant is None:
            assert vals[2:] == [x.min().item(), x.max().item()]
            assert vals[0] == pytest.approx(ref.mean().item(), rel=1e-5)
            assert vals[1] == pytest.approx(((ref - ref.mean()) ** 2).sum().item(), rel=1e-5)
        else:
            assert math.isnan(vals[0]) or math.isinf(vals[0])
            assert not math.isfinite(vals[1])
            assert math.isnan(vals[2]) == math.isnan(plant) and math.isnan(vals[3]) == math.isnan(plant)


def test_host_partials_two_pass_when_the_mean_dominates(gen):
    """|mean| > std (1e3 + N(0, 1), sigmoid-like offsets): the two-pass centred sum of squares is
    used, accurate to 1e-5 relative against float64 (the one-pass formula would cancel)."""
    x = torch.randn(50_000, generator=gen) + 1e3
    mean, ss, lo, hi = partials._host_partials(x)[0]
    ref = x.double()
    assert mean == pytest.approx(ref.mean().item(), rel=1e-7)
    assert math.sqrt(ss / x.numel()) == pytest.approx(ref.std(correction=0).item(), rel=1e-5)
    assert (lo, hi) == (x.min().item(), x.max().item())


def test_float32_search_counts_as_in_float64(gen):
    """_count_below searches float32 rows with probes rounded outwards: the counts equal float64
    comparisons, also for probes between two float32 values, on them, and at +-inf."""
    srt = torch.sort(torch.randn(3, 200, generator=gen), dim=1).values
    srt[:, -5:] = math.inf
    base = srt[:, 10:60:7].double()
    nxt = torch.nextafter(srt[:, 10:60:7], torch.tensor(math.inf)).double()
    probes = torch.cat([base, (base + nxt) / 2, base - 1e-12, base + 1e-12,
                        torch.full((3, 2), math.inf, dtype=torch.float64),
                        torch.full((3, 1), -math.inf, dtype=torch.float64)], dim=1)
    left, right = reductions._count_below(srt, probes, probes)
    s64 = srt.double().unsqueeze(1)
    assert torch.equal(left, (s64 < probes.unsqueeze(2)).sum(dim=2))
    assert torch.equal(right, (s64 <= probes.unsqueeze(2)).sum(dim=2))


def _entries(gen: torch.Generator, dtype: torch.dtype) -> list:
    rows = []
    x = torch.tanh(3 * torch.randn(40, 30, generator=gen)).to(dtype)
    x[:5, :4] = 0.0
    x[10:15, 0] = math.nan
    x[20:23, 1] = math.inf
    x[23:25, 1] = -math.inf
    cases = ((x, (-0.99,), (0.99,), None), (torch.randn(500, generator=gen).to(dtype), (), (), 0.25),
             (torch.zeros(64, dtype=dtype), (0.01,), (0.99,), None),
             (torch.full((33,), math.nan, dtype=dtype), (), (), None))
    for t, below, above, extra in cases:
        flat = t.reshape(-1)
        rows.append(reductions._Pending("l", "forward", partials._partials(flat), flat.clone(), flat.numel(),
                                        below, above, extra))
    return rows


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bins", [0, 16])
def test_numpy_reduction_equals_the_torch_one(gen, monkeypatch, dtype, bins):
    """The host batch reduction (NumPy) and the device one (torch, forced on the CPU) give the
    same rows: rows of different lengths, zeros, NaN/inf entries, an all-NaN row, saturation
    thresholds on some rows only, a dead fraction, with and without histograms.

    Counts (finite entries, zeros, saturation, histogram bins), min/max and the quantiles (order
    statistics interpolated in float64) are equal exactly. ``std = sqrt(ss / n)`` takes two
    roundings in either path, and torch's vectorised division and square root (AVX2, AVX-512)
    may round differently from NumPy's: the float columns agree to ``4 * eps(dtype)`` relative
    (two roundings of at most ``eps / 2`` each per path), never bit for bit."""
    entries = _entries(gen, dtype)
    ((order_h, rows_h),) = reductions._reduce(entries, bins)
    _tune(monkeypatch, cpu_shortcuts=False)
    ((order_d, rows_d),) = reductions._reduce(entries, bins)
    rows_h = rows_h[torch.tensor(order_h).argsort()]
    rows_d = rows_d[torch.tensor(order_d).argsort()]
    assert rows_h.dtype == rows_d.dtype == dtype
    assert torch.equal(rows_h.isnan(), rows_d.isnan())
    rounded = [reductions._ROW_LAYOUT.index(c) for c in ("mean", "std")]
    exact = [i for i in range(rows_h.shape[1]) if i not in rounded]
    assert torch.equal(rows_h[:, exact].nan_to_num(nan=0.0), rows_d[:, exact].nan_to_num(nan=0.0))
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(rows_h[:, rounded], rows_d[:, rounded], rtol=4 * eps, atol=0, equal_nan=True)


def test_weight_rows_host_equal_device_for_symmetric_and_broken_weights(gen, monkeypatch):
    """Weight statistics on the host path (NumPy distinct units, sample taken only for a
    non-finite weight) equal the device path: duplicated units, a constant layer, a NaN weight,
    a transposed convolution."""
    net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 5), nn.ReLU(),
                        nn.Unflatten(1, (5, 1, 1)), nn.ConvTranspose2d(5, 4, 3), nn.Flatten(),
                        nn.Linear(36, 2))
    with torch.no_grad():
        w = net[0].weight
        w[4:] = w[:4]  # 4 distinct units of 8
        net[2].weight.fill_(0.3)  # 1 distinct unit
        net[4].weight[1, 2] = math.nan
    x = torch.randn(9, 6, generator=gen)
    host = probe(net, x)
    assert host.stat("0", "distinct_units") == 4 and host.stat("2", "distinct_units") == 1
    assert math.isnan(host.stat("4", "distinct_units")) and host.stat("4", "nonfinite_fraction", "weight") > 0
    _tune(monkeypatch, cpu_shortcuts=False)
    _records_close(host.records, probe(net, x).records)


def test_host_and_device_paths_agree_on_a_conv_net_with_big_tensors(gen, monkeypatch):
    """Tensors reduced in slices (a small slice_entries), ReLU dead units, a sigmoid (two-pass
    sum of squares), float64: the host path's records equal the device path's."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 4, 3), nn.Sigmoid(),
                            nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    x = torch.randn(5, 3, 8, 8, generator=gen)
    _tune(monkeypatch, slice_entries=500)
    for dtype in (torch.float32, torch.float64):
        net_d, x_d = net.to(dtype), x.to(dtype)
        host = probe(net_d, x_d).records
        _tune(monkeypatch, cpu_shortcuts=False)
        device = probe(net_d, x_d).records
        _tune(monkeypatch, cpu_shortcuts=True)
        _records_close(host, device)


def test_gradient_of_an_output_changed_in_place_is_the_one_before_the_change(gen):
    """dL/d(output) is taken by a pre-hook on the node that made the output, attached after the
    forward: an in-place ReLU applied to a Linear's output later does not redirect it, the
    recorded gradient is dL/dz of the Linear's output z (as a tensor hook in the layer's hook
    would see it), not dL/d relu(z)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(5, 6), nn.ReLU(inplace=True), nn.Linear(6, 2))
    x = torch.randn(11, 5, generator=gen)
    res = probe(net, x, loss_fn=lambda out: (out ** 2).sum())
    z = net[0](x)
    a = torch.relu(z)
    gz, ga = torch.autograd.grad((net[2](a) ** 2).sum(), [z, a])
    assert res.stat("0", "grad_std") == pytest.approx(gz.std(correction=0).item(), rel=1e-5)
    assert res.stat("0", "grad_norm") == pytest.approx(gz.norm().item(), rel=1e-5)
    assert res.stat("1", "grad_norm") == pytest.approx(ga.norm().item(), rel=1e-5)
    assert gz.norm().item() != pytest.approx(ga.norm().item(), rel=1e-3)  # the two differ


def test_identity_output_recorded_twice_gets_both_gradients(gen):
    """An nn.Identity returns its input: the same tensor is the output of two layers, and both
    get its gradient."""
    net = nn.Sequential(nn.Linear(4, 3), nn.Identity(), nn.Tanh(), nn.Linear(3, 2))
    res = probe(net, torch.randn(6, 4, generator=gen))
    assert res.stat("0", "grad_norm") == res.stat("1", "grad_norm") > 0


@pytest.mark.parametrize("plant", [None, math.nan])
def test_without_histograms_backward_records_are_unchanged(gen, monkeypatch, plant):
    """bins=0: a finite gradient is reduced to its sum and ||g||^2 only (no min/max/sample, which
    only the histogram and a non-finite gradient need); the records equal the device path's,
    also for NaN gradients (a NaN weight upstream)."""
    net = nn.Sequential(nn.Linear(7, 9), nn.Tanh(), nn.Linear(9, 9), nn.ReLU(), nn.Linear(9, 3))
    if plant is not None:
        with torch.no_grad():
            net[2].weight[0, 0] = plant
    x = torch.randn(13, 7, generator=gen)
    host = probe(net, x, bins=0)
    _tune(monkeypatch, cpu_shortcuts=False)
    device = probe(net, x, bins=0)
    _records_close(host.records, device.records)
    assert not any(r["kind"] in ("hist", "grad_hist") for r in host.records)
    if plant is not None:
        assert host.stat("0", "nonfinite_fraction", "backward") > 0


# ---- regressions found in review -----------------------------------------------------------------


def test_weight_stats_under_cpu_bf16_autocast_match_the_plain_run():
    """The host path's projections run outside autocast; the weight's std is exact either way."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    x = torch.randn(4, 8)
    plain = initlab.probe(net, x, backward=False)
    with torch.autocast("cpu"):
        cast = initlab.probe(net, x, backward=False)
    for layer in ("0", "2"):
        assert cast.stat(layer, "weight_std") == pytest.approx(plain.stat(layer, "weight_std"), rel=1e-6)
        assert cast.stat(layer, "distinct_units") == plain.stat(layer, "distinct_units")


def test_weight_mean_is_exact_when_matmuls_run_in_reduced_precision():
    """sum W does not come from a matmul: with float32 matmul precision "medium" (bf16 on CPUs
    with AMX) a weight 1 + 1e-3 N(0, 1) keeps its mean and std to float32 rounding (tol 1e-6)."""
    g = torch.Generator().manual_seed(0)
    lin = nn.Linear(512, 256)
    with torch.no_grad():
        lin.weight.copy_(1 + 1e-3 * torch.randn(256, 512, generator=g))
    w = lin.weight.detach().double()
    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")
    try:
        res = initlab.probe(nn.Sequential(lin), torch.randn(4, 512, generator=g), backward=False)
    finally:
        torch.set_float32_matmul_precision(old)
    assert res.stat("0", "weight_mean") == pytest.approx(float(w.mean()), rel=1e-6)
    assert res.stat("0", "weight_std") == pytest.approx(float(w.std(unbiased=False)), rel=1e-4)


class _HookedAfter(nn.Module):
    """A gradient-scaling tensor hook registered on a layer's output after the layer returned."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.out = nn.Linear(6, 5), nn.Linear(5, 2)

    def forward(self, x):
        h = self.fc(x)
        h.register_hook(lambda g: g * 10)
        return self.out(torch.tanh(h))


def test_grad_of_an_output_ignores_user_hooks_registered_after_the_layer():
    """dL/dh is what autograd gives for h, not what a later x10 hook turns it into (rel 1e-5)."""
    torch.manual_seed(0)
    net = _HookedAfter()
    x = torch.randn(7, 6)

    def loss_fn(out: torch.Tensor) -> torch.Tensor:
        return out.square().sum()

    res = initlab.probe(net, x, loss_fn=loss_fn)
    h = net.fc(x).detach().requires_grad_()
    (g,) = torch.autograd.grad(loss_fn(net.out(torch.tanh(h))), h)
    assert res.stat("fc", "grad_norm") == pytest.approx(float(g.norm()), rel=1e-5)
    assert res.stat("out", "grad_norm") > 0  # the layers after it are recorded as before


def test_no_hook_is_left_on_a_leaf_output():
    x = torch.randn(3, 4, requires_grad=True)
    initlab.probe(nn.Sequential(nn.Identity(), nn.Linear(4, 2), nn.Tanh()), x)
    assert not x._backward_hooks
