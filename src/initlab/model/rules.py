"""Rules: ``(pattern, target)`` pairs that override the scheme for matching parameters, by
name or by module type, and show up in the plan (:func:`apply_rule`); :class:`Packed` and
:func:`residual_scaling_rule` make common targets."""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from initlab import schemes
from initlab.errors import InitlabError
from initlab.fans import Fans, compute_fans
from initlab.model.classify import layer_types
from initlab.model.handlers import handle
from initlab.model.handlers.linear import handle_layer
from initlab.model.plan import Fill, PlanRow
from initlab.model.policies import SCHEMES, SchemeContext
from initlab.model.rows import set_spec


@dataclass(frozen=True)
class Packed:
    """Rule target for a packed weight: ``chunks`` equal blocks stacked along its output axis, each
    initialized with its own fans (``fan_out`` of one block, not of the whole tensor). The output
    axis is dim 0 of a torch weight ``(out, in, ...)`` and dim 1 of a transformers ``Conv1D``
    weight ``(in, out)``, which is filled through its transposed view (the plan's note says
    ``per chunk along dim 1``).

    .. math::
        \\text{Glorot per block:}\\quad \\sigma = g \\sqrt{\\frac{2}{fan_{in} + fan_{out}/k}}

    The way to tell :func:`init_model` that one layer holds several projections, e.g. a fused QKV
    ``Linear(d, 3 * d)`` (``k = 3``) or a fused gate ``Linear(d, 2 * h)`` (``k = 2``).
    ``nn.MultiheadAttention``, the RNNs and transformers GPT-2's ``c_attn`` (a Conv1D whose
    parent has ``split_size``) are split without a rule.

    Args:
        chunks: number of blocks ``k`` (an int >= 1; must divide dim 0 of the matched weight).
        scheme: the scheme for each block (a name :func:`init_model` accepts); ``None`` uses
            ``init_model``'s own ``scheme``.

    Raises:
        InitlabError: ``chunks`` not an int >= 1 or ``scheme`` unknown (here); at planning, a
            matched parameter with fewer than 2 dims or an output axis that ``chunks`` does not
            divide.

    Source: Radford et al. (2019), GPT-2 (``c_attn``); Glorot & Bengio (2010).

    >>> Packed(3)
    Packed(chunks=3, scheme=None)
    >>> from initlab.model import init_model
    >>> plan = init_model(nn.Linear(8, 24), rules=[(r"weight", Packed(3))], dry_run=True)
    >>> plan["weight"].fan_in, plan["weight"].fan_out, plan["weight"].chunks
    (8, 8, 3)
    """

    chunks: int
    scheme: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.chunks, bool) or not isinstance(self.chunks, int) or self.chunks < 1:
            raise InitlabError(
                f"Packed(chunks={self.chunks!r}) is invalid: pass the number of blocks, an int >= 1"
            )
        if self.scheme is not None and self.scheme not in SCHEMES:
            raise InitlabError(f"Packed scheme {self.scheme!r} is unknown: use one of {', '.join(SCHEMES)}")


#: Rule targets that are not schemes: ``"keep"`` leaves the matched parameters as they are.
RULE_ONLY = ("keep",)


def describe_rule(i: int, pattern: Any, target: Any) -> str:
    """How the plan names rule ``i``: ``"#0 head\\. -> zeros"``."""
    pat = pattern.__name__ if isinstance(pattern, type) else (
        pattern.pattern if isinstance(pattern, re.Pattern) else str(pattern))
    if isinstance(target, str):
        tgt = target
    elif isinstance(target, schemes.Spec):
        tgt = target.describe()
    elif isinstance(target, Packed):
        tgt = f"packed({target.chunks}" + (f", {target.scheme})" if target.scheme else ")")
    else:
        tgt = getattr(target, "__name__", type(target).__name__)
    return f"#{i} {pat} -> {tgt}"


def check_rules(rules: Iterable[Any] | None) -> list[tuple[Any, Any]]:
    """``rules`` (a list of pairs or a dict) as ``(compiled pattern or type, target)`` pairs,
    checked: a malformed rule raises :class:`~initlab.errors.InitlabError` naming it."""
    if rules is None:
        return []
    if isinstance(rules, dict):
        rules = list(rules.items())
    if isinstance(rules, (str, bytes)) or (isinstance(rules, tuple) and len(rules) == 2
                                           and isinstance(rules[0], (str, re.Pattern, type))):
        raise InitlabError(
            f"rules={rules!r} must be a list of (pattern, target) pairs: wrap it, e.g. rules=[{rules!r}]"
        )
    out = []
    for i, rule in enumerate(rules):
        if not (isinstance(rule, (tuple, list)) and len(rule) == 2):
            raise InitlabError(
                f"rules[{i}]={rule!r} is not a (pattern, target) pair: pass e.g. (r'head\\.', 'zeros')"
            )
        pattern, target = rule
        if isinstance(pattern, str):
            try:
                pattern = re.compile(pattern)
            except re.error as exc:
                raise InitlabError(f"rules[{i}] pattern {rule[0]!r} is not a valid regex: {exc}") from None
        elif not (isinstance(pattern, re.Pattern)
                  or (isinstance(pattern, type) and issubclass(pattern, nn.Module))):
            raise InitlabError(
                f"rules[{i}] pattern {pattern!r} must be a regex on the parameter name or an nn.Module type"
            )
        if isinstance(target, str):
            if target not in SCHEMES and target not in RULE_ONLY:
                raise InitlabError(
                    f"rules[{i}] scheme {target!r} is unknown: use one of "
                    f"{', '.join(SCHEMES + RULE_ONLY)}"
                )
        elif not (isinstance(target, (schemes.Spec, Packed)) or callable(target)):
            raise InitlabError(
                f"rules[{i}] target {target!r} must be a scheme name, 'keep', an initlab.schemes Spec, "
                "a Packed(chunks) or a callable(tensor, generator)"
            )
        out.append((pattern, target))
    return out


def matches(rules: list[tuple[Any, Any]], name: str, module: nn.Module) -> list[int]:
    """Indices of every rule whose pattern matches parameter ``name`` of ``module``."""
    return [i for i, (pattern, _) in enumerate(rules)
            if (isinstance(module, pattern) if isinstance(pattern, type) else pattern.search(name))]


def first_match(rules: list[tuple[Any, Any]], name: str, module: nn.Module) -> tuple[int, Any] | None:
    """``(index, target)`` of the first rule that matches, else ``None``."""
    hits = matches(rules, name, module)
    return (hits[0], rules[hits[0]][1]) if hits else None


def residual_scaling_rule(
    n_layers: int, pattern: str = r"c_proj\.weight$", std: float = 0.02
) -> tuple[str, schemes.Normal]:
    """The GPT-2 rule: residual output projections ``N(0, (std / sqrt(2 n_layers))^2)``.

    .. math::
        \\sigma = \\frac{0.02}{\\sqrt{2 L}}

    Each of the ``L`` blocks adds two residual branches (attention, MLP) to the stream; scaling
    their output projections by ``1/sqrt(2L)`` keeps the stream's variance from growing with depth
    (Radford et al. 2019, "Language Models are Unsupervised Multitask Learners"; nanoGPT's
    ``_init_weights``).

    Args:
        n_layers: number of transformer blocks ``L`` (>= 1).
        pattern: regex on the qualified parameter name (GPT-2 / nanoGPT: ``c_proj.weight``; torch's
            ``nn.TransformerEncoderLayer``: ``r"(self_attn\\.out_proj|linear2)\\.weight$"``).
        std: the base std (GPT-2: 0.02).

    Returns:
        A ``(pattern, Normal)`` rule for :func:`init_model`'s ``rules``.

    Raises:
        InitlabError: ``n_layers < 1`` or ``std <= 0``.

    >>> residual_scaling_rule(12)
    ('c_proj\\\\.weight$', Normal(std=0.004082482904638631, mean=0.0))
    """
    if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 1:
        raise InitlabError(f"n_layers={n_layers!r} is invalid: pass the number of blocks, an int >= 1")
    if not (isinstance(std, (int, float)) and std > 0):
        raise InitlabError(f"std={std!r} is invalid: pass a number > 0")
    return pattern, schemes.Normal(std / math.sqrt(2 * n_layers))


FANLESS = ("zeros", "small", "large")


def apply_rule(ctx: SchemeContext, row: PlanRow, m: nn.Module, i: int, pattern: Any, target: Any) -> None:
    """Override ``row`` by rule ``i``. A scheme name gives the row exactly what ``init_model``
    would give it under that scheme (weights by the scheme, biases zero, gates per chunk, ...);
    ``"zeros"``, ``"small"``, ``"large"`` apply to any parameter, norm layers included; ``"keep"``
    leaves the parameter as it is (pretrained or frozen weights); :class:`Packed` gives each of
    ``chunks`` blocks its own fans; a Spec is drawn as it is (checked against the parameter's shape
    by :func:`check_rule_fills`); a callable fills the parameter as it is stored."""
    label = describe_rule(i, pattern, target)
    if isinstance(target, schemes.Spec):
        set_spec(row, "rule", target, chunks=row.chunks if row.fan_in is not None else 1)
    elif isinstance(target, str) and target in RULE_ONLY:  # "keep"
        row.scheme, row.spec, row._fills = "keep", "left as it is", []
        row.std = row.bound = row.gain = None
    elif isinstance(target, str) and target in FANLESS:
        set_spec(row, target, schemes.named_spec(target, Fans(1, 1), 1.0))
    elif isinstance(target, (str, Packed)):
        _apply_scheme(ctx, row, m, label, target)
    else:
        row.scheme = getattr(target, "__name__", "callable")
        row.spec = f"callable {row.scheme}"
        row.std = row.bound = row.gain = None
        row._fills = [Fill(None, target)]  # the parameter as it is stored
    row.rule = label


def _apply_scheme(ctx: SchemeContext, row: PlanRow, m: nn.Module, label: str, target: str | Packed) -> None:
    """A scheme name or :class:`Packed`: the row the module's handler gives under that scheme (in
    ``chunks`` blocks), else the scheme on the raw tensor with gain 1."""
    packed = isinstance(target, Packed)
    name = (target.scheme or ctx.scheme) if packed else target
    chunks = target.chunks if packed else 1
    if packed:
        _check_packed(row, label, chunks)
    sub = ctx.derive(name)
    layer = isinstance(m, layer_types())
    if packed and layer:
        sub_rows = handle_layer(sub, row.module, m, chunks)
    else:
        sub_rows = handle(sub, row.module, m)
    new = next((r for r in sub_rows or () if r.name == row.name), None)
    if packed and new is not None and not layer:
        if new.chunks > 1 and new.chunks != chunks:
            raise InitlabError(
                f"rule {label}: {row.name} is split into {new.chunks} blocks by its module "
                f"({type(m).__name__}) already: drop the rule or use Packed({new.chunks})"
            )
        if new.chunks == 1:  # a weight its module does not split: pack the raw tensor
            new = None
    if new is None:  # a parameter no handler knows: the scheme on the raw tensor, gain 1
        _apply_raw(sub, row, label, name, chunks if packed else None)
    else:
        for attr in ("fan_in", "fan_out", "scheme", "spec", "gain", "std", "bound", "chunks", "note",
                     "_fills"):
            setattr(row, attr, getattr(new, attr))


def _check_packed(row: PlanRow, label: str, chunks: int) -> None:
    """A :class:`Packed` rule fits ``row``: >= 2 dims, an output axis that ``chunks`` divides."""
    if len(row.shape) < 2:
        raise InitlabError(
            f"rule {label} packs {row.name} of shape {row.shape}: only a weight with >= 2 dims is "
            "packed; match the weight alone, e.g. r'c_attn\\.weight$'"
        )
    if row.shape[row._axis] % chunks:
        raise InitlabError(
            f"rule {label}: chunks={chunks} does not divide dim {row._axis} of {row.name} (shape "
            f"{row.shape}), its output axis: pass the number of blocks stacked along dim {row._axis}"
        )


def _apply_raw(sub: SchemeContext, row: PlanRow, label: str, name: str, chunks: int | None) -> None:
    """Scheme ``name`` on the raw tensor with gain 1, in ``chunks`` blocks (``None``: one block,
    by the row's own fans)."""
    if row.fan_in is None:
        raise InitlabError(
            f"rule {label} names scheme {name!r} for {row.name} of shape {row.shape}, which "
            f"has no fans: use one of {', '.join(FANLESS + RULE_ONLY)}, a Spec, or a callable"
        )
    fans = compute_fans(row.shape, chunks=chunks) if chunks is not None else Fans(row.fan_in, row.fan_out)
    chunks = 1 if chunks is None else chunks
    if name in ("auto", "variance", "critical"):
        label_, spec, g = sub.weight_spec(fans, "linear", None)
    else:
        label_, spec, g = name, schemes.named_spec(name, fans, 1.0), 1.0
    set_spec(row, label_, spec, chunks=chunks, gain=g)
    row.fan_in, row.fan_out, row.chunks = fans.fan_in, fans.fan_out, chunks


def check_rule_fills(rows: list[PlanRow]) -> None:
    """Realise every rule-decided Spec on a meta tensor of the row's shape, so that a spec the
    parameter cannot take (orthogonal on a bias, ...) fails while planning, dry runs included."""
    from initlab.init import apply_spec_

    for row in rows:
        if row.rule is None:
            continue
        for fill in row._fills:
            if not isinstance(fill.spec, schemes.Spec):
                continue
            meta = torch.empty(row.shape, device="meta")
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    apply_spec_(fill.view(meta), fill.spec, chunks=max(fill.chunks, 1))
            except (InitlabError, TypeError) as exc:
                raise InitlabError(f"rule {row.rule} cannot fill {row.name}: {exc}") from None


@dataclass
class RuleUse:
    """What the rules did in one plan: the rules that decided a row, those that matched a row an
    earlier rule decided, and those that matched a tied alias (not re-drawn), with its names."""

    decided: set[int] = field(default_factory=set)
    shadowed: set[int] = field(default_factory=set)
    tied_hits: dict[int, list[str]] = field(default_factory=dict)


def warn_unused_rules(rules: list[tuple[Any, Any]], use: RuleUse) -> None:
    """A rule that decides no parameter is almost always a mistake — a typo in its pattern, a
    pattern that matches only the second name of a tied weight, a rule shadowed by an earlier one:
    say which (a ``UserWarning`` that points at the caller of the function that calls this one)."""
    for i, (pattern, _) in enumerate(rules):
        if i in use.decided:
            continue
        pat = pattern.__name__ if isinstance(pattern, type) else repr(pattern.pattern)
        if i in use.tied_hits:
            why = (f"matches only tied parameters, which are not re-drawn: {', '.join(use.tied_hits[i])}; "
                   "match the name it is tied to")
        elif i in use.shadowed:
            why = "matches only parameters an earlier rule decides (the first match wins)"
        else:
            why = "matches no parameter: check the pattern against the names in the plan"
        warnings.warn(f"init_model: rules[{i}] {pat} {why}", UserWarning, stacklevel=3)
