"""The one traversal over ``(qualified name, module)``: every parameter gets exactly one owner
module and one row of the plan, from its module's handler, then the first rule that matches."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from initlab import schemes
from initlab.errors import InitlabError
from initlab.fans import compute_fans
from initlab.model.handlers import handle
from initlab.model.plan import PlanRow
from initlab.model.policies import NoCriticalPoint, SchemeContext
from initlab.model.rows import new_row, set_spec
from initlab.model.rules import RuleUse, apply_rule, check_rule_fills, describe_rule, first_match, matches

#: Why a lazy module's parameters are skipped (no rule can decide them before a forward pass).
LAZY = "lazy module not materialised: run a forward first"

#: The parameters :mod:`initlab.model.transforms` adds, by name: ``(value at init, row note)``.
TRANSFORM_PARAMETERS: dict[str, tuple[float, str]] = {
    "skip_gate": (0.0, "SkipInit/ReZero gate: 0 (the residual branch starts switched off)"),
    "fixup_bias_in": (0.0, "Fixup scalar bias (added to the layer's input): 0"),
    "fixup_bias_out": (0.0, "Fixup scalar bias (added to the layer's output): 0"),
    "fixup_scale": (1.0, "Fixup scalar multiplier (of the branch's output): 1"),
}


class SkippedParameterWarning(UserWarning):
    """Warned once by :func:`initlab.init_model` (dry runs included) when it left parameters as
    they were: parameters no handler knows and no rule decides, or those of a lazy module not yet
    materialised. The message names them (the first 10) and how to decide them with a rule;
    :attr:`InitPlan.skipped <initlab.model.plan.InitPlan.skipped>` lists them all."""


def plan_rows(
    model: nn.Module, ctx: SchemeContext, rules: list[tuple[Any, Any]]
) -> tuple[list[PlanRow], list[dict[str, Any]], RuleUse]:
    """The rows of every parameter of ``model`` under ``ctx`` and ``rules``, in ``named_modules``
    order; the modules left alone (:attr:`InitPlan.skipped <initlab.model.plan.InitPlan.skipped>`);
    which rules decided what.

    A tied parameter gets one row, where it first appears; its other names get a ``"tied"`` row
    and are not re-drawn. A weight behind ``weight_norm`` or ``spectral_norm`` (either of torch's
    APIs) is planned through its layer (:mod:`initlab.model.handlers.reparametrized`). Parameters
    that are not the weight or bias of a known layer (a custom module's ``nn.Parameter``, another
    parametrization's ``parametrizations.*.original``) are left alone unless a rule matches them (or, under
    ``"auto"`` / ``"variance"``, :func:`plan_loose_parameter` knows them), and so are those of a
    lazy module not yet materialised. Frozen parameters (``requires_grad=False``) are initialized
    like any other — which parameters will be trained is not the plan's business — and their rows
    say ``frozen``; a ``"keep"`` rule leaves them alone.
    """
    rows: list[PlanRow] = []
    skipped: list[dict[str, Any]] = []
    seen: dict[int, str] = {}
    use = RuleUse()
    for q, m in model.named_modules():
        fresh = _fresh_parameters(q, m, rules, rows, seen, use)
        if not fresh:
            continue
        if any(isinstance(p, nn.parameter.UninitializedParameter) for _, p in fresh):
            skipped.append({"module": q, "type": type(m).__name__, "params": [n for n, _ in fresh],
                            "why": LAZY})
            continue
        mrows, unknown, why_skipped = _module_rows(ctx, rules, q, m, fresh)
        if unknown:
            skipped.append({"module": q, "type": type(m).__name__, "params": unknown, "why": why_skipped})
        _apply_rules(ctx, rules, q, m, mrows, fresh, use)
        check_rule_fills(mrows)
        rows.extend(mrows)
    return rows, skipped, use


def _fresh_parameters(
    q: str, m: nn.Module, rules: list[tuple[Any, Any]], rows: list[PlanRow], seen: dict[int, str],
    use: RuleUse,
) -> list[tuple[str, torch.Tensor]]:
    """The parameters ``m`` owns that no earlier module did; a ``"tied"`` row in ``rows`` for each
    of the others (the rules that match one are noted in ``use``)."""
    fresh = []
    for pname, p in m.named_parameters(recurse=False):
        full = f"{q}.{pname}" if q else pname
        if id(p) in seen:
            rows.append(PlanRow(name=full, module=q, module_type=type(m).__name__, shape=tuple(p.shape),
                                scheme="tied", spec=f"tied to {seen[id(p)]}",
                                note=f"tied to {seen[id(p)]}: not re-drawn"))
            for i in matches(rules, full, m):
                use.tied_hits.setdefault(i, []).append(f"{full} (tied to {seen[id(p)]})")
        else:
            seen[id(p)] = full
            fresh.append((pname, p))
    return fresh


def _module_rows(
    ctx: SchemeContext, rules: list[tuple[Any, Any]], q: str, m: nn.Module,
    fresh: list[tuple[str, torch.Tensor]],
) -> tuple[list[PlanRow], list[str], str]:
    """The rows of ``fresh`` (``m``'s own parameters) from ``m``'s handler, then those only a rule
    or :func:`plan_loose_parameter` decides; the names of the rest, and why they are left alone."""
    fresh_names = {(f"{q}.{n}" if q else n) for n, _ in fresh}
    try:
        mrows = handle(ctx, q, m)
    except NoCriticalPoint as exc:
        if not all(first_match(rules, n, m) for n in fresh_names):
            raise InitlabError(
                f"scheme 'critical' cannot initialise layer {q!r} ({type(m).__name__}): {exc}. "
                "Pass a larger bias variance (e.g. sigma_b2=1.0; CLI --sigma-b2 1), use "
                f"scheme='auto', or a rule for this layer, e.g. rules=[(r'^{re.escape(q)}\\.', 'auto')]"
            ) from None
        mrows = handle(ctx.derive("auto"), q, m)  # placeholders: rules decide all
    why_skipped = "no handler for this module type" if mrows is None else "no handler for this parameter"
    # a transform's scalars (skip_gate, fixup_*) get their value whatever the module's handler says
    mrows = [r for r in mrows or () if r.name in fresh_names
             and r.name.rpartition(".")[2] not in TRANSFORM_PARAMETERS]
    have = {r.name for r in mrows}
    unknown = []
    for pname, p in fresh:  # parameters no handler knows: only rules may touch them
        full = f"{q}.{pname}" if q else pname
        if full in have:
            continue
        if first_match(rules, full, m) is not None:
            row = new_row(full, p, q, m)
            if p.dim() >= 2:
                fans = compute_fans(tuple(p.shape))
                row.fan_in, row.fan_out = fans.fan_in, fans.fan_out
            mrows.append(row)
        elif (row := plan_loose_parameter(ctx, full, pname, p, q, m)) is not None:
            mrows.append(row)
        else:
            unknown.append(pname)
    return mrows, unknown, why_skipped


def _apply_rules(
    ctx: SchemeContext, rules: list[tuple[Any, Any]], q: str, m: nn.Module, mrows: list[PlanRow],
    fresh: list[tuple[str, torch.Tensor]], use: RuleUse,
) -> None:
    """Each row of ``mrows`` decided again by the first rule that matches it; frozen rows noted."""
    frozen = {(f"{q}.{n}" if q else n) for n, p in fresh if not p.requires_grad}
    for row in mrows:
        hits = matches(rules, row.name, m)
        if hits:
            use.decided.add(hits[0])
            use.shadowed.update(hits[1:])
            try:
                apply_rule(ctx, row, m, hits[0], *rules[hits[0]])
            except NoCriticalPoint as exc:
                raise InitlabError(
                    f"rule {describe_rule(hits[0], *rules[hits[0]])}: scheme 'critical' cannot "
                    f"initialise layer {q!r}: {exc}. Choose another scheme in the rules"
                ) from None
        if row.name in frozen:
            row.note = "; ".join(filter(None, [row.note, "frozen (requires_grad=False)"]))


def plan_loose_parameter(
    ctx: SchemeContext, full: str, pname: str, p: torch.Tensor, q: str, m: nn.Module
) -> PlanRow | None:
    """A parameter of a module no handler knows, under ``"auto"`` / ``"variance"``: one the forward
    joins to the data (a class token, position embeddings) gets the second moment of what it joins
    (:func:`initlab.model.plan_scales`); a vector named ``bias``, or a parameter with one value per
    feature (a shift), is zero; anything else ``None``. Under every scheme, the parameters
    :mod:`initlab.model.transforms` adds (:data:`TRANSFORM_PARAMETERS`: ``skip_gate`` 0,
    ``fixup_bias_in`` / ``fixup_bias_out`` 0, ``fixup_scale`` 1) get their value at init."""
    if (known := TRANSFORM_PARAMETERS.get(pname.split(".")[-1])) is not None:
        row = new_row(full, p, q, m)
        set_spec(row, "ones" if known[0] else "zeros", schemes.Constant(known[0]))
        row.note = known[1]
        return row
    std = ctx.param_std(full)
    if std is not None:
        row = new_row(full, p, q, m)
        set_spec(row, "propagated", schemes.Normal(std))
        row.note = "joins the data: the second moment of the tensor it joins"
        return row
    if ctx.scheme in ("auto", "variance") and p.dim() == 1 and pname.split(".")[-1] == "bias":
        row = new_row(full, p, q, m)
        set_spec(row, "zeros", schemes.Constant(0.0))
        row.note = "a bias outside a known layer: zero"
        return row
    if ctx.param_shift(full):
        row = new_row(full, p, q, m)  # one value per feature: a shift (a bias by another name)
        set_spec(row, "zeros", schemes.Constant(0.0))
        row.note = "one value per feature, outside a known layer: a shift, zero"
        return row
    return None


def skipped_message(skipped: Sequence[dict[str, Any]], limit: int = 10) -> str:
    """One line naming the parameters :func:`initlab.init_model` left alone (:attr:`InitPlan.skipped`),
    the first ``limit`` of them, why, and the rule that decides them."""
    names = [f"{s['module']}.{n}" if s["module"] else n for s in skipped for n in s["params"]]
    whys = list(dict.fromkeys(f"{s['type']}: {s.get('why', 'no handler')}" for s in skipped))
    one = len(names) == 1
    them, are, were = ("it", "it is", "it was") if one else ("them", "they are", "they were")
    shown = ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")
    why = "; ".join(whys[:3]) + ("; ..." if len(whys) > 3 else "")
    head = (f"init_model left {len(names)} parameter{'' if one else 's'} as {were}, not initialized: "
            f"{shown} ({why}); plan.skipped lists {them}")
    ruled = [s for s in skipped if s.get("why") != LAZY]
    if not ruled:
        return head
    first = ruled[0]
    pattern = "^" + re.escape(f"{first['module']}.{first['params'][0]}" if first["module"]
                              else first["params"][0]) + "$"
    return (f"{head}. Decide {them} with a rule: rules=[(r\"{pattern}\", \"zeros\")] (zeros for a bias or a "
            f"gate; a scheme such as \"glorot_normal\" for a weight matrix; or a Spec or callable), or "
            f"(r\"{pattern}\", \"keep\") to leave {them} as {are} without this warning")
