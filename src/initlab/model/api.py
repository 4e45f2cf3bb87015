"""The entry point: :func:`init_model` checks its arguments, plans every parameter, and writes."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from initlab.errors import InitlabError
from initlab.graph import Graph
from initlab.model.chain import conv_chain_targets, plain_chain, plan_chain, warn_unmirrored
from initlab.model.detect import DetectionFallbackWarning, detect, fallback_message, lazy_modules
from initlab.model.found import Found
from initlab.model.handlers.linear import packed_by_structure
from initlab.model.plan import InitPlan, PlanRow
from initlab.model.policies import SCHEMES, SchemeContext
from initlab.model.predict import predict_moments, propagation_plans
from initlab.model.rules import check_rules, warn_unused_rules
from initlab.model.traverse import SkippedParameterWarning, plan_rows, skipped_message
from initlab.model.write import write_plan


def init_model(
    model: nn.Module,
    scheme: str = "auto",
    *,
    example_inputs: Any = None,
    rules: Sequence[tuple[Any, Any]] | None = None,
    generator: torch.Generator | None = None,
    dry_run: bool = False,
    embedding_std: float = 1.0,
    sigma_b2: float | None = None,
) -> InitPlan:
    """Initialize every parameter of ``model`` in place with the scheme its layer needs, and
    return the plan: check the arguments, detect the activations
    (:func:`~initlab.model.detect.detect_activations`), build the scheme's context (the isometric
    chain of a plain MLP or CNN, :func:`~initlab.model.chain.plan_chain`, or the propagated scales,
    :func:`~initlab.model.predict.propagation_plans`), plan every parameter once
    (:func:`~initlab.model.traverse.plan_rows`: one handler per module family,
    :mod:`initlab.model.handlers`, then the rules), predict the moments, and write (with rollback,
    :func:`~initlab.model.write.write_plan`).

    .. math::
        \\text{"auto", "variance":}\\quad
        \\mathrm{Var}(w) = \\frac{q_{target}}{fan_{in}\\,\\mathbb{E}[x^2]},\\qquad
        q_{target} = \\begin{cases}
            q_{skip}\\,(2^{1/L} - 1) & \\text{last layer of one of } L
                \\text{ residual branches ("auto")} \\\\
            1 & \\text{otherwise}
        \\end{cases}

    with :math:`\\mathbb{E}[x^2]` the propagated second moment of the layer's own input
    (:func:`initlab.model.plan_scales`). When the graph cannot be traced, the per-layer rule:
    He :math:`g_\\phi / \\sqrt{fan_{in}}` for the ReLU family, LeCun :math:`1 / \\sqrt{fan_{in}}`
    for SELU, else Glorot :math:`g_\\phi \\sqrt{2 / (fan_{in} + fan_{out})}`, with
    :math:`g_\\phi = \\mathbb{E}[\\phi(z)^2]^{-1/2}` of the consuming activation (1 for none, or
    when no nonlinearity made the layer's input).

    Args:
        model: the ``nn.Module``; its parameters are written in place (not with ``dry_run``).
        scheme: ``"auto"`` (a plain MLP or CNN: the isometric rule, delta kernels for convs; a
            plain CNN with tanh-like links: iid kernels at the depth-aware ``q*`` of
            :func:`initlab.theory.depth_point`, :data:`initlab.model.chain.CONV_DEPTH_NOTE`;
            otherwise the propagation with the residual-branch, tied-embedding and
            joined-parameter rules), ``"variance"`` (the
            propagation alone, for every model; both use the per-layer rule when the graph cannot be
            traced), ``"critical"``, or a name of :data:`initlab.schemes.NAMED_SCHEMES`
            (``"he_normal"``, ``"glorot_uniform"``, ``"orthogonal"``, ``"torch_default"``,
            ``"keras_default"``, ...); every weight gets it with its detected gain.
        example_inputs: inputs for one forward pass (a tensor, a tuple of positional inputs, or a
            dict of keyword inputs): for the hook detection when symbolic tracing fails, and for
            the shapes of the graph the propagation reads (zero padding and averages over positions
            make its stds depend on the spatial size). ``None``: built from the model where needed
            (:func:`initlab.graph.examples.example_inputs`).
        rules: ordered ``(pattern, target)`` pairs (or a dict); the first whose pattern matches a
            parameter decides it. ``pattern``: a regex searched in the qualified parameter name
            (``r"^head\\."``) or an ``nn.Module`` subclass (matches the parameters it owns).
            ``target``: a scheme name (with the row's fans and gain); ``"keep"`` (leave it as it
            is); :class:`Packed` (``Packed(3)``: per-block fans for a packed QKV layer); an
            :mod:`initlab.schemes` Spec (e.g. ``Constant(0.0)``, or :func:`residual_scaling_rule`),
            checked against the parameter's shape while planning; or ``callable(tensor,
            generator)`` that fills the tensor in place, as it is stored (a Conv1D weight is
            ``(in, out)``; if it raises, every parameter written so far and ``generator``'s state
            are restored: the model is unchanged). Rules also reach parameters of modules the
            plan does not know. A rule that decides no parameter warns (``UserWarning``).
        sigma_b2: with ``scheme="critical"``, the bias variance whose critical point each layer
            takes (:func:`initlab.theory.critical_point`); ``None`` means 0. ReLU, leaky ReLU and
            linear layers always use 0 (their critical point exists only there). GELU and SiLU
            have a stable critical point only with a bias variance (GELU from about 0.5, SiLU
            about 1).
        generator: ``torch.Generator`` for every draw (parameters are filled in plan order, so
            one seed gives identical bits); ``None`` uses torch's global generator, like
            ``torch.nn.init`` (then ``torch.manual_seed(s)`` before the call gives identical bits:
            the detection's forward pass, if any, runs under a forked RNG).
        dry_run: return the plan and write nothing (every parameter stays bit-identical).
        embedding_std: std of ``Embedding`` weights under ``"auto"`` (except a table tied to an
            output head), ``"variance"`` and the named schemes.

    Warns:
        DetectionFallbackWarning: (a ``UserWarning``) fx could not trace the model and the
            forward failed on ``example_inputs`` (or, without them, on every input built from the
            model), so the activations of
            some rows were guessed from module order (:func:`fallback_message` says why). Not for
            a container without ``forward`` (``nn.ModuleDict``), where module order is all there is.
        SkippedParameterWarning: (a ``UserWarning``, once per call, dry runs included) some
            parameters were left as they were: no handler knows them and no rule decides them
            (the message names up to 10, why, and a rule that decides them), or their lazy module
            is not materialised. :attr:`InitPlan.skipped` lists them all.

    Returns:
        :class:`InitPlan`, one row per parameter (tied parameters: one row, noted).

    Raises:
        InitlabError: unknown ``scheme`` (the message lists the valid names); ``embedding_std``
            not finite and >= 0; a malformed rule (a single pair instead of a list of pairs, a
            bad regex, an unknown target); a rule naming a fan-based scheme for a parameter
            without fans; a rule Spec or ``Packed`` the parameter's shape cannot take (e.g.
            ``Orthogonal`` on a bias), also with ``dry_run``; ``scheme="critical"`` for a layer
            whose activation has no critical point (the message names the layer); a rule's
            callable that raised (chained; the model is left unchanged).
        TypeError: ``model`` is not an ``nn.Module``; ``generator`` is not a ``torch.Generator``.

    Source: Glorot & Bengio (2010); He et al. (2015), "Delving deep into rectifiers"; LeCun et al.
    (1998); Klambauer et al. (2017); Saxe et al. (2013); Jozefowicz et al. (2015); Balduzzi et al.
    (2017), "The shattered gradients problem" (looks-linear); Pennington, Schoenholz & Ganguli
    (2017), "Resurrecting the sigmoid in deep learning through dynamical isometry"; Bingham &
    Miikkulainen (2023), "AutoInit" (the propagation); Radford et al. (2019), GPT-2, and Zhang et
    al. (2019), Fixup (residual branches).

    Example:
        >>> from initlab.models import mlp
        >>> net = mlp(784, 256, 2, 10, "relu")
        >>> plan = init_model(net, generator=torch.Generator().manual_seed(0))
        >>> plan["fc2.weight"].scheme, plan["fc2.weight"].spec, plan["fc2.weight"].found_by
        ('looks_linear', 'looks_linear(gain=1, rows+cols)', 'fx')
        >>> plan = init_model(net, "variance", generator=torch.Generator().manual_seed(0))
        >>> row = plan["fc2.weight"]  # reads relu of a unit pre-activation: E[x^2] = 1/2
        >>> row.scheme, round(row.q_in, 6), round(row.std, 4), round(1 / (256 * 0.5) ** 0.5, 4)
        ('propagated', 0.5, 0.0884, 0.0884)
        >>> plan["out.weight"].activation, plan["out.bias"].scheme
        ('linear', 'zeros')
        >>> print(plan.table())  # doctest: +SKIP
    """
    _check_args(model, scheme, embedding_std, generator, sigma_b2)
    checked_rules = check_rules(rules)
    lazy = lazy_modules(model)  # a forward would materialise them (a class change nothing undoes)
    found, method, why, graph = detect(model, example_inputs, run_forward=not lazy)
    ctx, propagation_note = _context(model, scheme, checked_rules, found, method, graph, why,
                                     float(embedding_std), None if sigma_b2 is None else float(sigma_b2),
                                     lazy)
    rows, skipped, use = plan_rows(model, ctx, checked_rules)
    warn_unused_rules(checked_rules, use)
    _warn_unmirrored(ctx, rows)
    _warn_left_alone(model, rows, skipped, method, why)
    graph_note = (f"not traced: lazy module {lazy[0]!r} is not materialised (run one forward first)"
                  if lazy else predict_moments(model, rows, graph, why, skip=set(ctx.chain),
                                                          scales=ctx.scales))
    plan = InitPlan(scheme=scheme, rows=rows, skipped=skipped, detection=method, detection_note=why,
                    propagation=propagation_note or graph_note)
    if dry_run:
        return plan
    write_plan(model, rows, generator)
    plan.applied = True
    return plan


def _check_args(model: Any, scheme: Any, embedding_std: Any, generator: Any, sigma_b2: Any) -> None:
    """Raise where a bad argument enters :func:`init_model`, naming it and the fix."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"init_model: model must be an nn.Module, got {type(model).__name__}")
    if isinstance(model, torch.jit.ScriptModule):
        raise InitlabError(
            f"init_model: {type(model).__name__} is a TorchScript module, which can be neither traced nor "
            "hooked: initialize the eager model, then script it (torch.jit.script(model) after init_model)"
        )
    if not isinstance(scheme, str) or scheme not in SCHEMES:
        raise InitlabError(f"scheme {scheme!r} is unknown: use one of {', '.join(SCHEMES)}")
    if (isinstance(embedding_std, bool) or not isinstance(embedding_std, (int, float))
            or not (math.isfinite(embedding_std) and embedding_std >= 0)):
        raise InitlabError(f"embedding_std={embedding_std!r} is invalid: pass a finite number >= 0")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"init_model: generator must be a torch.Generator or None, got {type(generator).__name__}: "
            "pass e.g. torch.Generator().manual_seed(0)"
        )
    if sigma_b2 is not None and (
        isinstance(sigma_b2, bool) or not isinstance(sigma_b2, (int, float))
        or not (math.isfinite(sigma_b2) and sigma_b2 >= 0)
    ):
        raise InitlabError(f"sigma_b2={sigma_b2!r} is invalid: pass a finite bias variance >= 0, or None")


def _context(
    model: nn.Module, scheme: str, rules: list[tuple[Any, Any]], found: dict[str, Found], method: str,
    graph: Graph | None, why: str | None, embedding_std: float, sigma_b2: float | None,
    lazy: Sequence[str] = (),
) -> tuple[SchemeContext, str | None]:
    """The context the handlers read: the plain chain's isometric roles (where ``"auto"`` is used
    and the model is one), else the scales propagated through ``graph`` (the one detection traced);
    and how the graph was built."""
    wants_auto = scheme == "auto" or any(isinstance(t, str) and t == "auto" for _, t in rules)
    chain = plain_chain(model, found, method) if wants_auto else None
    conv_targets = conv_chain_targets(model, chain, found) if chain else None  # a tanh CNN: depth q*
    roles = plan_chain(model, chain, found) if chain and conv_targets is None else None  # None: not planned
    if lazy:  # tracing would run the forward: the per-layer rule decides, nothing is materialised
        scales: dict = {}
        propagation_note = f"not traced: lazy module {lazy[0]!r} is not materialised (run one forward first)"
    else:
        scales, propagation_note = propagation_plans(model, graph, why, scheme, rules, roles,
                                                     embedding_std, conv_targets)
    mha_out = frozenset(
        f"{q}.out_proj" if q else "out_proj"
        for q, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)
    )
    ctx = SchemeContext(scheme, found, embedding_std, sigma_b2, roles, packed_by_structure(model), scales,
                        mha_out, dict(model.named_modules()))
    return ctx, propagation_note


def _warn_unmirrored(ctx: SchemeContext, rows: list[PlanRow]) -> None:
    """Warn about the layers of a plain chain whose ReLU-like link is not looks-linear for an odd
    width, among those the chain's rule actually planned (a rule's other scheme is not warned)."""
    notes = {r.module: r.note for r in rows if r.name.endswith("weight")}
    odd = [(q, *role.unmirrored) for q, role in ctx.chain.items()
           if role.unmirrored is not None and role.note in notes.get(q, "")]
    if odd:
        warn_unmirrored(odd)


def _warn_left_alone(
    model: nn.Module, rows: list[PlanRow], skipped: list[dict[str, Any]], method: str, why: str | None
) -> None:
    """Warn the caller of :func:`init_model` about skipped parameters and rows whose activation
    was guessed from module order (not for a container without ``forward``: no data flow)."""
    if skipped:
        warnings.warn(skipped_message(skipped), SkippedParameterWarning, stacklevel=3)
    has_forward = type(model).forward is not nn.Module.forward  # ModuleDict / ModuleList: no data flow
    if method == "module_order" and has_forward and any(r.found_by == "module_order" for r in rows):
        warnings.warn(f"init_model: {fallback_message(why)}", DetectionFallbackWarning, stacklevel=3)
