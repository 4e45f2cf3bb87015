"""The pass's batched reduction: the partials and samples every hook kept (:class:`_Pending`) reduced
in ONE batch per (device, dtype) — samples sorted together, quantiles, counts and histograms read
from them (torch on devices, NumPy on the CPU, the same operations) — and copied to the host with
ONE ``.tolist()`` per device (:func:`_sync`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from initlab.probe import tuning
from initlab.probe.partials import _finish_core, _host_ok

_QUANTILES = (0.01, 0.5, 0.99)

#: Columns of a reduced row (:func:`_reduce`), followed by ``bins`` histogram counts. ``extra`` is
#: ``dead_fraction`` (forward, ReLU family) or ``distinct_units`` (weight), else NaN.
_ROW_LAYOUT = ["mean", "std", "min", "max", "_bad", "_k", "_zeros", "_sat", "q01", "q50", "q99",
               "_bin_lo", "_bin_hi", "extra"]


@dataclass
class _Pending:
    """One tensor's partials and sample, waiting for the pass's batched reduction. ``parts``:
    ``[mean, ss, min, max]`` (see :func:`~initlab.probe.partials._partials`), a tensor on the
    tensor's device or, from the host path, a list of Python floats (a host-path weight:
    ``[||W||^2, min, max, sum W]``, see :func:`~initlab.probe.weights._host_weight`); ``extra``
    likewise a 0-d tensor or a float."""

    layer: str
    kind: str
    parts: torch.Tensor | list[float]
    sample: torch.Tensor
    n: int
    below: tuple[float, ...] = ()
    above: tuple[float, ...] = ()
    extra: torch.Tensor | float | None = None
    meta: dict[str, Any] | None = None


def _chunks(entries: list[_Pending]) -> list[list[int]]:
    """``entries`` split into batches that share a device and dtype and hold at most
    :attr:`~initlab.probe.tuning.Tuning.batch_entries` padded sample entries (rows of similar
    length together; one row at least): one batch per (device, dtype) with the default
    ``max_samples``."""
    out: list[list[int]] = []
    limit = tuning.TUNING.batch_entries
    for idxs in _group_keys(entries).values():
        idxs = sorted(idxs, key=lambda i: entries[i].sample.numel())
        chunk: list[int] = []
        for i in idxs:
            if chunk and (len(chunk) + 1) * entries[i].sample.numel() > limit:
                out.append(chunk)
                chunk = []
            chunk.append(i)
        out.append(chunk)
    return out


def _reduce(entries: list[_Pending], bins: int) -> list[tuple[list[int], torch.Tensor]]:
    """ONE batched reduction for all ``entries`` of a pass: per batch (see :func:`_chunks`), the
    samples are padded (+inf), sorted together and read with two batched ``searchsorted``; returns
    ``(indices into entries, [len(indices), len(_ROW_LAYOUT) + bins] tensor)`` per batch.

    On each row: ``k`` = finite sampled entries; quantiles by linear interpolation between order
    statistics of the finite entries; ``zeros``, saturation (entries below a ``below`` threshold or
    above an ``above`` one) and the ``bins`` counts over ``[lo, hi]`` (the exact min/max, the
    sample's finite extremes when those are not finite; ``[lo - 0.5, lo + 0.5]`` when ``hi <= lo``)
    are counted among the finite entries, comparisons in float64. A batch of CPU float32/float64
    entries is reduced in NumPy (:func:`_reduce_host`), any other with torch on its device
    (:func:`_reduce_device`): the same operations, the same values.
    """
    out = []
    for idxs in _chunks(entries):
        group = [entries[i] for i in idxs]
        if _host_ok(group[0].sample):
            out.append((idxs, torch.from_numpy(_reduce_host(group, bins))))
        else:
            out.append((idxs, _reduce_device(group, bins)))
    return out


def _reduce_device(group: list[_Pending], bins: int) -> torch.Tensor:
    """:func:`_reduce` of one batch with torch on its device: ``[len(group), len(_ROW_LAYOUT) + bins]``."""
    core = _finish_core(_stack_parts(group), [e.n for e in group])
    dtype, device = core.dtype, core.device
    f64 = torch.float64
    srt = _sorted_samples(group)
    rows = srt.shape[0]
    # k = finite entries (non-finite ones were mapped to +inf, sorted last)
    k = torch.searchsorted(srt, torch.full((rows, 1), math.inf, dtype=srt.dtype, device=device))[:, 0]
    last = (k - 1).clamp_min(0)
    # quantiles: v0 + (pos - i0) * (v1 - v0), the difference in the tensor's dtype
    pos = torch.tensor(_QUANTILES, dtype=f64, device=device) * (k - 1).unsqueeze(1).to(f64)
    i0 = pos.floor().long().clamp_min(0)
    v0 = srt.gather(1, i0)
    v1 = srt.gather(1, torch.minimum(i0 + 1, last.unsqueeze(1)))
    quant = v0.to(f64) + (pos - i0.to(f64)) * (v1 - v0).to(f64)
    quant = torch.where(k.unsqueeze(1) > 0, quant, math.nan).to(dtype)
    # histogram range, float64
    lo, hi = core[:, 2].to(f64), core[:, 3].to(f64)
    first = torch.where(k > 0, srt[:, 0].to(f64), 0.0)
    top = torch.where(k > 0, srt.gather(1, last.unsqueeze(1))[:, 0].to(f64), 0.0)
    lo_eff, hi_eff = _hist_range(torch.where, torch.isfinite, lo, hi, first, top)
    head, counts = _device_counts(group, srt, k, lo_eff, hi_eff, bins, dtype)
    if bins:
        rng = torch.stack([lo_eff, hi_eff], dim=1).to(dtype)
    else:
        rng = torch.full((rows, 2), math.nan, dtype=dtype, device=device)
    extra = _stack_extra(group, dtype, device)
    return torch.cat([core, head, quant, rng, extra, counts], dim=1)


def _sorted_samples(group: list[_Pending]) -> torch.Tensor:
    """The samples of ``group`` as the rows of one tensor (shorter ones padded with +inf),
    non-finite entries mapped to +inf, each row sorted."""
    samples = [e.sample for e in group]
    if len({s.numel() for s in samples}) == 1:
        padded = torch.stack(samples)
    else:
        padded = _pad_rows(samples, math.inf)
    # padded is a fresh copy: non-finite entries -> +inf and the sort, in place
    return _sort_rows_(padded.nan_to_num_(nan=math.inf, posinf=math.inf, neginf=math.inf))


def _device_counts(group: list[_Pending], srt: torch.Tensor, k: torch.Tensor, lo_eff: torch.Tensor,
                   hi_eff: torch.Tensor, bins: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``(head, counts)`` of one batch's sorted samples ``srt``: ``[k, zeros, saturated]`` and the
    ``bins`` histogram counts over ``[lo_eff, hi_eff]`` of each row, in ``dtype``."""
    device = srt.device
    f64 = torch.float64
    # probes per row, counted "< p": 0, below thresholds (pad -inf), bin edges; counted "<= p":
    # 0, above thresholds (pad +inf), hi
    nb = max(len(e.below) for e in group)
    na = max(len(e.above) for e in group)
    thr = [[0.0, *e.below, *[-math.inf] * (nb - len(e.below)), 0.0, *e.above,
            *[math.inf] * (na - len(e.above))] for e in group]
    thr_t = torch.tensor(thr, dtype=f64, device=device)
    lt = [thr_t[:, :1 + nb]]
    if bins:
        grid = torch.arange(bins, dtype=f64, device=device) / bins
        lt.append(lo_eff.unsqueeze(1) + (hi_eff - lo_eff).unsqueeze(1) * grid)
    upto = torch.cat([thr_t[:, 1 + nb:], hi_eff.unsqueeze(1)], dim=1)
    left, right = _count_below(srt, torch.cat(lt, dim=1), upto)
    zeros = right[:, 0] - left[:, 0]
    k1 = k.unsqueeze(1)
    sat = left[:, 1:1 + nb].sum(dim=1) + (k1 - right[:, 1:1 + na]).clamp_min(0).sum(dim=1)
    head = torch.stack([k, zeros, sat], dim=1).to(dtype)
    if bins:
        counts = torch.cat([left[:, 1 + nb:], right[:, -1:]], dim=1).diff(dim=1).to(dtype)
    else:
        counts = torch.zeros((srt.shape[0], 0), dtype=dtype, device=device)
    return head, counts


def _hist_range(where: Callable, isfinite: Callable, lo: Any, hi: Any, first: Any, top: Any) -> tuple:
    """Each row's histogram range ``(lo_eff, hi_eff)`` (float64 arrays or tensors, with
    ``where``/``isfinite`` of NumPy or torch): the tensor's exact min and max, the sample's
    finite extremes ``first``/``top`` where those are not finite, widened by 0.5 each side for a
    constant row."""
    lo = where(isfinite(lo), lo, first)
    hi = where(isfinite(hi), hi, top)
    positive = hi > lo
    return where(positive, lo, lo - 0.5), where(positive, hi, lo + 0.5)


def _reduce_host(group: list[_Pending], bins: int) -> np.ndarray:
    """:func:`_reduce` of one batch of CPU float32/float64 entries in NumPy, operation for
    operation (same values; a few dozen NumPy calls instead of as many torch ones, whose fixed
    cost dominates at these sizes): ``[len(group), len(_ROW_LAYOUT) + bins]``."""
    dt = group[0].sample.numpy().dtype
    f64 = np.float64
    rows = len(group)
    with np.errstate(all="ignore"):
        core = _host_core(group, dt)
        srt, srt_t, k = _host_sorted(group, core, dt)
        last = np.maximum(k - 1, 0)
        # quantiles: v0 + (pos - i0) * (v1 - v0), the difference in the tensor's dtype
        pos = np.array(_QUANTILES, dtype=f64) * (k - 1)[:, None].astype(f64)
        i0 = np.maximum(np.floor(pos).astype(np.int64), 0)
        v0 = np.take_along_axis(srt, i0, axis=1)
        v1 = np.take_along_axis(srt, np.minimum(i0 + 1, last[:, None]), axis=1)
        quant = v0.astype(f64) + (pos - i0.astype(f64)) * (v1 - v0).astype(f64)
        quant = np.where(k[:, None] > 0, quant, np.nan).astype(dt)
        # histogram range, float64
        lo, hi = core[:, 2].astype(f64), core[:, 3].astype(f64)
        first = np.where(k > 0, srt[:, 0].astype(f64), 0.0)
        top = np.where(k > 0, srt[np.arange(rows), last].astype(f64), 0.0)
        lo_eff, hi_eff = _hist_range(np.where, np.isfinite, lo, hi, first, top)
        head, counts = _host_counts(group, srt_t, k, lo_eff, hi_eff, bins, dt)
        if bins:
            rng = np.stack([lo_eff, hi_eff], axis=1).astype(dt)
        else:
            rng = np.full((rows, 2), np.nan, dtype=dt)
        extra = np.array([np.nan if e.extra is None else float(e.extra) for e in group], dtype=dt)[:, None]
        return np.concatenate([core, head, quant, rng, extra, counts], axis=1)


def _host_core(group: list[_Pending], dt: np.dtype) -> np.ndarray:
    """:func:`~initlab.probe.partials._finish_core` in NumPy: ``[L, 5]`` ``[mean, std, min, max,
    bad]`` of ``group``'s partials, in the samples' dtype ``dt``."""
    rows = len(group)
    parts = np.array([e.parts.tolist() if isinstance(e.parts, torch.Tensor) else e.parts for e in group],
                     dtype=dt).reshape(rows, 4)
    lo32, hi32 = parts[:, 2], parts[:, 3]
    return np.stack([parts[:, 0], np.sqrt(parts[:, 1] / np.array([e.n for e in group], dtype=dt)),
                     lo32, hi32, (lo32 - lo32) + (hi32 - hi32)], axis=1)


def _host_sorted(group: list[_Pending], core: np.ndarray, dt: np.dtype
                 ) -> tuple[np.ndarray, torch.Tensor, np.ndarray]:
    """``(srt, srt_t, k)``: the samples of ``group`` as the rows of one array (padded with +inf),
    non-finite entries mapped to +inf, each row sorted; the same memory as a tensor; the finite
    entries of each row."""
    rows = len(group)
    widths = [e.sample.numel() for e in group]
    width = max(widths)
    if min(widths) == width:
        srt = np.stack([e.sample.numpy() for e in group])
    else:
        srt = np.full((rows, width), np.inf, dtype=dt)
        for r, e in enumerate(group):
            srt[r, :widths[r]] = e.sample.numpy()
    # non-finite entries -> +inf (only a tensor with one has one in its sample: ``bad`` is
    # then NaN), then each row sorted (in place; srt_t shares the memory)
    srt_t = torch.from_numpy(srt)
    all_finite = bool((core[:, 4] == 0).all())
    if not all_finite:
        srt_t.nan_to_num_(nan=math.inf, posinf=math.inf, neginf=math.inf)
    srt.sort(axis=1)
    # k = finite entries (non-finite ones were mapped to +inf, sorted last)
    if all_finite:
        k = np.array(widths, dtype=np.int64)
    else:
        inf = dt.type(np.inf)
        k = np.array([row.searchsorted(inf) for row in srt], dtype=np.int64)
    return srt, srt_t, k


def _host_counts(group: list[_Pending], srt_t: torch.Tensor, k: np.ndarray, lo_eff: np.ndarray,
                 hi_eff: np.ndarray, bins: int, dt: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_device_counts` in NumPy (the two ``searchsorted`` on the sorted rows ``srt_t``)."""
    f64 = np.float64
    # probes: counted "< p": 0, below thresholds (pad -inf), bin edges; "<= p": 0, above (pad +inf), hi
    nb = max(len(e.below) for e in group)
    na = max(len(e.above) for e in group)
    below = np.array([[0.0, *e.below, *[-np.inf] * (nb - len(e.below))] for e in group], dtype=f64)
    upto = np.array([[0.0, *e.above, *[np.inf] * (na - len(e.above))] for e in group], dtype=f64)
    if bins:
        grid = np.arange(bins, dtype=f64) / bins
        below = np.concatenate([below, lo_eff[:, None] + (hi_eff - lo_eff)[:, None] * grid], axis=1)
    upto = np.concatenate([upto, hi_eff[:, None]], axis=1)
    if dt != f64:  # rounded outwards to the samples' dtype (see _count_below)
        near = below.astype(dt)
        below = np.where(near.astype(f64) < below, np.nextafter(near, dt.type(np.inf)), near)
        near = upto.astype(dt)
        upto = np.where(near.astype(f64) > upto, np.nextafter(near, dt.type(-np.inf)), near)
    left = torch.searchsorted(srt_t, torch.from_numpy(np.ascontiguousarray(below))).numpy()
    right = torch.searchsorted(srt_t, torch.from_numpy(np.ascontiguousarray(upto)), right=True).numpy()
    zeros = right[:, 0] - left[:, 0]
    sat = left[:, 1:1 + nb].sum(axis=1) + np.maximum(k[:, None] - right[:, 1:1 + na], 0).sum(axis=1)
    head = np.stack([k, zeros, sat], axis=1).astype(dt)
    if bins:
        counts = np.diff(np.concatenate([left[:, 1 + nb:], right[:, -1:]], axis=1), axis=1).astype(dt)
    else:
        counts = np.zeros((len(group), 0), dtype=dt)
    return head, counts


def _pad_rows(rows: list[torch.Tensor], value: float) -> torch.Tensor:
    """The 1-D ``rows`` stacked into ``[len(rows), longest]``, shorter ones padded with ``value``
    (what ``pad_sequence(rows, batch_first=True, padding_value=value)`` returns, in one ``cat``
    instead of one copy per row)."""
    width = max(r.shape[0] for r in rows)
    tail = rows[0].shape[1:]
    parts = [r if r.shape[0] == width else torch.cat([r, r.new_full((width - r.shape[0], *tail), value)])
             for r in rows]
    return torch.cat(parts).view(len(rows), width, *tail)


def _sort_rows_(x: torch.Tensor) -> torch.Tensor:
    """:func:`_sort_rows` in place (CPU rows with NumPy's in-place sort); returns ``x``."""
    if x.device.type == "cpu" and tuning.TUNING.cpu_shortcuts and x.is_contiguous():
        x.numpy().sort(axis=1)
        return x
    return x.copy_(x.sort(dim=1).values)


def _count_below(srt: torch.Tensor, below: torch.Tensor, upto: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(left, right)``: per row of the sorted ``srt``, the number of entries ``< p`` for each
    float64 probe ``p`` of ``below`` and ``<= p`` for each of ``upto`` (``[rows, P]`` each),
    compared exactly as in float64. A float32 ``srt`` is searched as it is (no float64 copy), each
    probe rounded outwards to float32: for a float32 ``x``, ``x < p`` iff ``x < up(p)`` and
    ``x <= p`` iff ``x <= down(p)``, ``up(p)`` / ``down(p)`` the nearest float32 at or above / at
    or below ``p``."""
    if srt.dtype == torch.float64:
        return torch.searchsorted(srt, below), torch.searchsorted(srt, upto, right=True)

    def rounded(p: torch.Tensor, outward: float) -> torch.Tensor:
        near = p.to(srt.dtype)
        off = near.to(p.dtype) < p if outward > 0 else near.to(p.dtype) > p
        return torch.where(off, torch.nextafter(near, torch.full_like(near, outward)), near)

    left = torch.searchsorted(srt, rounded(below, math.inf))
    return left, torch.searchsorted(srt, rounded(upto, -math.inf), right=True)


def _sort_rows(x: torch.Tensor) -> torch.Tensor:
    """Each row of a 2-D tensor sorted ascending; CPU rows with NumPy (~20x faster than
    ``torch.sort`` there; same values), others with ``torch.sort`` on their device."""
    if x.device.type == "cpu" and tuning.TUNING.cpu_shortcuts:
        return torch.from_numpy(np.sort(x.numpy(), axis=1))
    return x.sort(dim=1).values


def _group_keys(entries: list[_Pending]) -> dict[tuple, list[int]]:
    """Indices of ``entries`` by the (device, dtype) of their samples."""
    groups: dict[tuple, list[int]] = {}
    for i, e in enumerate(entries):
        groups.setdefault((e.sample.device, e.sample.dtype), []).append(i)
    return groups


def _stack_parts(group: list[_Pending]) -> torch.Tensor:
    """The ``[L, 4]`` partials of ``group`` (one device and dtype, that of the samples): tensors
    stacked, host-path floats in one ``torch.tensor``."""
    like = group[0].sample
    if all(isinstance(e.parts, torch.Tensor) for e in group):
        return torch.stack([e.parts for e in group]).to(like.dtype)  # type: ignore[misc]
    rows = [e.parts.tolist() if isinstance(e.parts, torch.Tensor) else e.parts for e in group]
    return torch.tensor(rows, dtype=like.dtype, device=like.device)


def _stack_extra(group: list[_Pending], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The ``extra`` column of ``group``: ``[L, 1]``, NaN where there is none."""
    vals = [math.nan if e.extra is None else e.extra for e in group]
    if not any(isinstance(v, torch.Tensor) for v in vals):
        return torch.tensor(vals, dtype=dtype, device=device).reshape(-1, 1)
    col = [v.to(device, dtype) if isinstance(v, torch.Tensor) else torch.tensor(v, dtype=dtype, device=device)
           for v in vals]
    return torch.stack(col).reshape(-1, 1)


def _sync(pending: list[_Pending], plain: list[tuple], bins: int) -> list[tuple]:
    """Reduce ``pending`` in one batch (:func:`_reduce`) and copy everything to the host with ONE
    ``.tolist()`` per device (the pass's only host sync). ``plain`` entries are ``(layer, kind,
    layout, vector, meta)``. Returns ``(layer, kind, layout, values, meta)`` tuples, ``pending``
    first, in order."""
    batches = _reduce(pending, bins) if pending else []
    tensors = [b[1] for b in batches] + [e[3] for e in plain]
    by_device: dict[torch.device, list[int]] = {}
    values: list[list] = [[] for _ in tensors]
    for i, t in enumerate(tensors):
        if isinstance(t, torch.Tensor):
            by_device.setdefault(t.device, []).append(i)
        else:  # host-path values, already Python floats
            values[i] = list(t)
    for idxs in by_device.values():
        flat = torch.cat([tensors[i].reshape(-1).to(torch.float64) for i in idxs]).tolist()
        pos = 0
        for i in idxs:
            n = tensors[i].numel()
            values[i] = flat[pos: pos + n]
            pos += n
    out: list[tuple | None] = [None] * len(pending)
    width = len(_ROW_LAYOUT) + bins
    for g, (idxs, _) in enumerate(batches):
        for r, i in enumerate(idxs):
            e = pending[i]
            meta = dict(e.meta or {}, m=e.sample.numel(), n=e.n)
            out[i] = (e.layer, e.kind, _ROW_LAYOUT, values[g][r * width: (r + 1) * width], meta)
    ng = len(tensors) - len(plain)
    return out + [(e[0], e[1], e[2], values[ng + j], *e[4:]) for j, e in enumerate(plain)]
