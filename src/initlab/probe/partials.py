"""What a hook keeps of one tensor: four exact partials (sum-based mean, centred sum of squares,
min, max) on the tensor's device, or as Python floats on the CPU, and a fixed seeded sample.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from initlab.probe import tuning

_HOST_DTYPES = (torch.float32, torch.float64)


def _host_ok(flat: torch.Tensor) -> bool:
    """Whether ``flat`` takes the host path: a CPU float32/float64 tensor (and the shortcut on)."""
    return tuning.TUNING.cpu_shortcuts and flat.device.type == "cpu" and flat.dtype in _HOST_DTYPES


def _host_partials(flat: torch.Tensor, units: tuple[int, int, int] | None = None,
                   scratch: Callable[[], torch.Tensor] | None = None
                   ) -> tuple[list[float], torch.Tensor | None]:
    """Host path of :func:`_partials` for a 1-D contiguous CPU float32/float64 ``flat``:
    ``[mean, ss, min, max]`` as Python floats (on the CPU reading a value is not a device sync),
    plus, with ``units = (rows, U, post)`` (``flat`` viewed as ``[rows, U, post]``), each unit's
    peak, its ``max`` over rows and post: ``[U]`` (whose max is the max).

    Four kernels per tensor, no tensor arithmetic on the results (in a hook, each kernel's first
    call after the layer's own work costs more than its arithmetic): ``sum`` (cascade summation),
    ``dot`` (``||x||^2``), ``amin`` and ``amax`` (the unit peaks instead of ``amax`` when
    ``units`` is given; ``aminmax`` from 1M entries). A tensor longer than
    :attr:`~initlab.probe.tuning.Tuning.slice_entries` is reduced slice by slice
    (:func:`_sliced_partials`), so that each slice is read from memory once.
    ``ss = ||x||^2 - N mean^2`` (float64) is kept when ``mean^2 <= ss / N`` (``|mean| <= std``),
    where its relative error is at most about twice the two-pass one; otherwise (``|mean| > std``,
    or a non-finite entry) the two-pass ``||x - mean||^2``, with ``x - mean`` written to
    ``scratch()`` when given. NaN propagates into every partial, as in torch."""
    n = flat.numel()
    knobs = tuning.TUNING
    if units is None:
        step = n if n <= knobs.slice_entries else knobs.slice_entries
    else:
        _, u, post = units
        step = n if n <= knobs.slice_entries else max(1, knobs.slice_entries // (u * post)) * (u * post)
    peak = None
    if step != n:
        return _sliced_partials(flat, step, units, scratch)
    # one slice (the common case): no lists
    total = flat.sum().item()
    sq = torch.dot(flat, flat).item()
    if units is None:
        # same values; on CPU amin + amax is faster up to ~1M entries, aminmax beyond
        lo_t, hi_t = (flat.amin(), flat.amax()) if n < knobs.aminmax_from else torch.aminmax(flat)
        lo, hi = lo_t.item(), hi_t.item()
    else:
        lo = flat.amin().item()
        peak = flat.view(-1, u, post).amax(dim=(0, 2))
        hi = peak.max().item()
    return _finish_host(flat, n, total, sq, lo, hi, scratch), peak


def _sliced_partials(flat: torch.Tensor, step: int, units: tuple[int, int, int] | None,
                     scratch: Callable[[], torch.Tensor] | None
                     ) -> tuple[list[float], torch.Tensor | None]:
    """:func:`_host_partials` of a tensor longer than one slice, ``step`` entries (whole rows with
    ``units``) at a time; within the loop NumPy's min/max/dot (faster than torch's on cached data),
    slices combined in float64."""
    n = flat.numel()
    peak = None
    a = flat.numpy()
    total = sq = 0.0
    los: list[float] = []
    his: list[float] = []
    peaks: list[torch.Tensor] = []
    for i in range(0, n, step):
        c = a[i:i + step]
        total += flat[i:i + step].sum().item()
        sq += float(np.dot(c, c))
        los.append(float(c.min()))
        if units is None:
            his.append(float(c.max()))
        else:
            peaks.append(flat[i:i + step].view(-1, *units[1:]).amax(dim=(0, 2)))
    if units is not None:
        peak = torch.stack(peaks).amax(dim=0)
        his = [peak.max().item()]
    return _finish_host(flat, n, total, sq, _nan_min(los), _nan_max(his), scratch), peak


def _finish_host(flat: torch.Tensor, n: int, total: float, sq: float, lo: float, hi: float,
                 scratch: Callable[[], torch.Tensor] | None) -> list[float]:
    """``[mean, ss, lo, hi]`` from ``sum`` and ``||x||^2`` (see :func:`_host_partials`)."""
    mean = total / n
    ss = sq - total * mean
    if not (math.isfinite(ss) and mean * mean * n <= ss):
        d = torch.sub(flat, mean, out=scratch()) if scratch is not None else flat - mean
        ss = torch.dot(d, d).item()
    return [mean, ss, lo, hi]


def _nan_min(values: list[float]) -> float:
    """``min(values)``, NaN when one is NaN (as torch's reductions)."""
    return math.nan if any(v != v for v in values) else min(values)


def _nan_max(values: list[float]) -> float:
    """``max(values)``, NaN when one is NaN (as torch's reductions)."""
    return math.nan if any(v != v for v in values) else max(values)


def _partials(flat: torch.Tensor, scratch: Callable[[], torch.Tensor] | None = None,
              hi: torch.Tensor | None = None) -> torch.Tensor:
    """Exact full-tensor partials of a 1-D ``flat``, stacked on its device: ``[mean, ss, min, max]``
    with ``ss = sum (flat - mean)^2``.

    Device tensors: two-pass, ``ss = ||flat - mean||^2`` (sum, subtract, dot, aminmax; no host
    sync). CPU float32/float64 tensors: :func:`_host_partials` (one pass fewer and no write when
    ``|mean| <= std``, slices kept in cache). ``scratch()`` (same numel and dtype), called only on
    the two-pass path, receives ``flat - mean`` so that no new buffer is allocated per tensor.
    A NaN/inf propagates into every partial (torch semantics). All float arithmetic or
    reductions (comparison kernels returning bool are several times slower on CPU). ``hi``: the
    max when the caller already has it (the ReLU family's dead-unit pass), saving a pass.
    """
    if hi is None and _host_ok(flat):
        vals, _ = _host_partials(flat.contiguous(), scratch=scratch if flat.is_contiguous() else None)
        return torch.tensor(vals, dtype=flat.dtype)
    n = flat.numel()
    total = flat.sum()
    mean = total / n
    # same values; on CPU amin + amax is faster up to ~1M entries, aminmax beyond
    if hi is not None:
        lo = flat.amin()
    else:
        lo, hi = (flat.amin(), flat.amax()) if n < tuning.TUNING.aminmax_from else torch.aminmax(flat)
    if flat.device.type == "cpu" and tuning.TUNING.cpu_shortcuts:
        ss = torch.dot(flat, flat) - total * mean
        m, v = float(mean), float(ss)  # CPU: reading a value is not a device sync
        if math.isfinite(v) and m * m * n <= v:
            return torch.stack([mean, ss, lo, hi])
    d = torch.sub(flat, mean, out=scratch()) if scratch is not None else flat - mean
    return torch.stack([mean, torch.dot(d, d), lo, hi])


def _finish_core(parts: torch.Tensor, ns: Sequence[int]) -> torch.Tensor:
    """``[L, 4]`` partials (see :func:`_partials`) of tensors with ``ns`` entries -> ``[L, 5]``
    ``[mean, std, min, max, bad]``, elementwise (each row equals its one-tensor value): population
    ``std = sqrt(ss / N)``; ``bad = (min - min) + (max - max)`` is exactly 0 when every entry is
    finite and NaN otherwise (min/max propagate NaN and are infinite when an entry is)."""
    n = torch.tensor(list(ns), dtype=parts.dtype, device=parts.device)
    lo, hi = parts[:, 2], parts[:, 3]
    std = (parts[:, 1] / n).sqrt()
    return torch.stack([parts[:, 0], std, lo, hi, (lo - lo) + (hi - hi)], dim=1)


def _unit_layout(shape: Sequence[int], unit_dim: int) -> tuple[int, int, int]:
    """``(rows, U, post)``: a tensor of ``shape`` viewed as ``[rows, U, post]`` with its units (along
    ``unit_dim``, see :func:`_unit_peak`) in the middle; a 0-d/1-d tensor: every entry a unit."""
    if len(shape) <= 1:
        return 1, math.prod(shape), 1
    ud = unit_dim % len(shape)
    return math.prod(shape[:ud]), shape[ud], math.prod(shape[ud + 1:])


def _unit_peak(x: torch.Tensor, unit_dim: int) -> torch.Tensor:
    """The max of each unit (along ``unit_dim``) over every example and position; a unit is dead
    when its peak is ``<= 0``. A 0-d/1-d ``x``: every entry is a unit."""
    if x.dim() <= 1:
        return x.reshape(-1)
    ud = unit_dim % x.dim()
    return x.amax(dim=[d for d in range(x.dim()) if d != ud])


class _Sampler:
    """Deterministic subsample of at most ``max_samples`` entries: seeded indices (drawn with
    replacement, then sorted for a cache-friendly gather: the sample is the same multiset) cached
    per (numel, device) and shared by all probes; plus the projection directions."""

    #: Sample indices and projection directions, shared by all probes (a device probe then copies
    #: nothing to the device after its first call); cleared when it grows.
    _shared: dict[Any, torch.Tensor] = {}

    def __init__(self, max_samples: int | None, seed: int) -> None:
        self.max_samples = max_samples
        self.seed = seed
        if len(self._shared) > tuning.TUNING.shared_cache:
            self._shared.clear()
        self._cache = self._shared

    def directions(self, k: int, like: torch.Tensor, count: int = 8) -> torch.Tensor:
        """``count`` fixed random unit vectors of length ``k``, seeded, cached: the rows of a
        contiguous ``[count, k]`` tensor."""
        key = ("dirs", k, count, self.seed, like.dtype, like.device)
        if key not in self._cache:
            g = torch.Generator().manual_seed(self.seed + 1)
            d = torch.randn(k, count, generator=g, dtype=torch.float64)
            d = (d / d.norm(dim=0, keepdim=True)).T.contiguous()
            self._cache[key] = d.to(like.device, like.dtype)
        return self._cache[key]

    def sample(self, flat: torch.Tensor) -> torch.Tensor:
        """A copy of all entries of the 1-D ``flat`` when there are at most ``max_samples``, else
        a fixed seeded draw (with replacement) of ``max_samples`` of them (a snapshot either way:
        a later in-place change of the tensor does not reach it)."""
        n = flat.numel()
        if self.max_samples is None or n <= self.max_samples:
            return flat.clone()
        key = ("idx", n, self.max_samples, self.seed, flat.device)
        if key not in self._cache:
            g = torch.Generator().manual_seed(self.seed)
            idx = torch.randint(n, (self.max_samples,), generator=g).sort().values
            self._cache[key] = idx.to(flat.device)
        return flat.index_select(0, self._cache[key])
