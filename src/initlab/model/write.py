"""Writing a plan into the model's parameters, all or nothing: a fill that raises restores every
parameter written so far and the generator's state."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from initlab import schemes
from initlab.errors import InitlabError
from initlab.init import apply_spec_
from initlab.model.chain import CenteringBias
from initlab.model.plan import Fill, PlanRow


def write_plan(model: nn.Module, rows: list[PlanRow], generator: torch.Generator | None) -> None:
    """Draw every row's fills into ``model``'s parameters, in plan order, from ``generator``, and
    mark the rows applied.

    A rule's callable is the user's code and may raise: then every parameter written so far is
    restored (from copies kept only when the plan has a callable) and so is the generator, and the
    error is an :class:`~initlab.errors.InitlabError` chained to it. A model on the meta device
    holds no data: nothing is written to it, and the caller of :func:`initlab.init_model` is warned
    to call ``model.to_empty(device=...)`` first.
    """
    params = dict(model.named_parameters(remove_duplicate=False))
    on_meta = [r.name for r in rows if r._fills and params[r.name].is_meta]
    if on_meta:
        warnings.warn(
            f"init_model: {len(on_meta)} parameter(s) are on the meta device ({on_meta[0]}, ...), which "
            "holds no data: nothing is written to them; call model.to_empty(device=...) first, then "
            "init_model", UserWarning, stacklevel=3,
        )
    user_code = any(not isinstance(f.spec, (schemes.Spec, CenteringBias)) for r in rows for f in r._fills)
    backups: list[tuple[torch.Tensor, torch.Tensor]] = []
    gen_state = generator.get_state() if (user_code and isinstance(generator, torch.Generator)) else None
    try:
        with torch.no_grad():
            for row in rows:
                if not row._fills:
                    continue
                p = params[row.name]
                if user_code:
                    backups.append((p, p.detach().clone()))
                for fill in row._fills:
                    _write_fill(row, fill, p, generator)
                row.applied = True
    except BaseException:
        with torch.no_grad():
            for p, saved in backups:
                p.copy_(saved)
        if gen_state is not None:
            generator.set_state(gen_state)
        for row in rows:
            row.applied = False
        raise


def _write_fill(row: PlanRow, fill: Fill, p: torch.Tensor, generator: torch.Generator | None) -> None:
    """One fill of ``row`` into parameter ``p``: a Spec by :func:`initlab.init.apply_spec_`, else
    the callable (a rule's, or a :class:`~initlab.model.chain.CenteringBias`) on the view."""
    view = fill.view(p)
    if isinstance(fill.spec, schemes.Spec):
        apply_spec_(view, fill.spec, generator=generator, chunks=max(fill.chunks, 1))
        return
    try:
        fill.spec(view, generator)
    except Exception as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise InitlabError(
            f"rule {row.rule} failed on {row.name} (shape {row.shape}): "
            f"{type(exc).__name__}: {msg}; nothing was written: fix the callable, which "
            "is called as callable(tensor, generator) and fills tensor in place"
        ) from exc
