"""Deciding a row of the plan: a Spec becomes the row's fills, its std, bound and gain."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from initlab import schemes
from initlab.model.plan import Fill, PlanRow

if TYPE_CHECKING:
    from initlab.model.propagation import LayerScale


def spec_std_bound(
    spec: schemes.Spec, shape: Sequence[int], chunks: int
) -> tuple[float | None, float | None]:
    """``(std, bound)`` of the entries ``spec`` draws into ``shape`` in ``chunks`` blocks (for
    orthogonal blocks ``gain / sqrt(max(rows, cols))``); ``bound`` is ``None`` but for a uniform
    or a truncated normal. A delta kernel's std is over all its entries: the centre block's over
    ``sqrt(prod(k))``."""
    if isinstance(spec, schemes.Uniform):
        return spec.expected_std, spec.bound
    if isinstance(spec, schemes.TruncatedNormal):
        return spec.expected_std, (spec.b - spec.a) / 2.0
    if isinstance(spec, schemes.Orthogonal) and len(shape) >= 2:
        rows = shape[0] // chunks
        cols = math.prod(shape[1:])
        return spec.gain / math.sqrt(max(rows, cols)), None
    if isinstance(spec, schemes.LooksLinear) and len(shape) == 2:
        rb, cb = schemes.looks_linear_block(spec, (shape[0] // chunks, shape[1]))
        return spec.gain / math.sqrt(max(rb, cb)), None
    if isinstance(spec, (schemes.Delta, schemes.ConvOrthogonal)) and len(shape) >= 3:
        # the centre block's energy, over all taps (a ConvOrthogonal kernel's too: Parseval)
        centre, _ = spec_std_bound(spec.block, shape[:2], chunks)
        return (None if centre is None else centre / math.sqrt(math.prod(shape[2:]))), None
    return spec.expected_std, None


def set_spec(
    row: PlanRow, label: str, spec: schemes.Spec, chunks: int = 1, gain: float | None = None
) -> None:
    """Decide ``row``: ``spec`` in ``chunks`` blocks along the row's output axis."""
    shape = row.shape if row._axis == 0 else (row.shape[1], row.shape[0], *row.shape[2:])
    row.scheme = label
    row.spec = spec.describe()
    row.gain = gain
    row.std, row.bound = spec_std_bound(spec, shape, chunks)
    row._fills = [Fill(None, spec, chunks, row._axis)]


def set_propagated(row: PlanRow, s: LayerScale, chunks: int,
                   chunk_scales: Sequence[LayerScale] | None = None) -> None:
    """A weight drawn ``N(0, E[w^2])`` from the graph-wide propagation (:func:`initlab.model.plan_scales`);
    ``chunk_scales``: one per block of a packed weight (attention Q, K, V).

    The row gets scheme ``"propagated"``, spec ``normal(std=...)``, gain ``std * sqrt(fan_in)`` (the
    equivalent gain: the forward gain of the activation that *feeds* the layer), and a note with
    the role (``pre-activation``, ``residual branch``, ``tied head``, ...) and the
    :math:`\\mathbb{E}[x^2]` it solved from. A residual-family scale (:mod:`initlab.model.residual_family`)
    gets its own label (``"fixup"``, ...) and, with ``uniform``, ``U(-a, a)``, ``a = sqrt(3 E[w^2])``;
    ``E[w^2] = 0`` is scheme ``"zeros"``, written as zeros."""
    if chunk_scales is not None and len({(c.weight_second, c.uniform) for c in chunk_scales}) > 1:
        rows_per = row.shape[0] // len(chunk_scales)
        set_spec(row, s.label, _scale_spec(s), chunks=1)
        row._fills = [Fill(slice(i * rows_per, (i + 1) * rows_per), _scale_spec(c))
                      for i, c in enumerate(chunk_scales)]
        row.std = None
    else:  # iid entries: one draw for all blocks
        set_spec(row, s.label if s.weight_second else "zeros", _scale_spec(s))
    # the equivalent gain g of std = g / sqrt(fan_in): the forward gain of the activation that
    # *feeds* the layer (1 / sqrt(E[x^2]) for a unit target)
    row.gain = s.std * math.sqrt(row.fan_in) if row.fan_in and s.weight_second else None
    source = "E[x^2]" if s.q_in is not None else "table"
    target = f": E[y^2] {s.q_out:.3g}" if s.q_out is not None else ""
    row.note = "; ".join(filter(None, [row.note, s.role + target
                                       + (f" from {source} {s.q_in:.3g}" if s.q_in is not None else "")]))


def _scale_spec(s: LayerScale) -> schemes.Spec:
    """The Spec that draws ``s``: zeros, ``U(±sqrt(3 E[w^2]))`` or ``N(0, E[w^2])``."""
    if not s.weight_second:
        return schemes.Constant(0.0)
    if s.uniform:
        a = math.sqrt(3.0 * s.weight_second)
        return schemes.Uniform(-a, a)
    return schemes.Normal(s.std)


def new_row(name: str, p: torch.Tensor, qualname: str, m: nn.Module) -> PlanRow:
    """An undecided row for parameter ``name`` (``p``) of module ``qualname`` (``m``)."""
    return PlanRow(name=name, module=qualname, module_type=type(m).__name__, shape=tuple(p.shape))


def own_rows(q: str, m: nn.Module) -> Iterator[tuple[str, PlanRow]]:
    """``(name, undecided row)`` of each parameter that module ``m`` (qualified name ``q``) owns."""
    for pname, p in m.named_parameters(recurse=False):
        yield pname, new_row(f"{q}.{pname}" if q else pname, p, q, m)
