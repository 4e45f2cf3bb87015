"""The propagated prediction: what :mod:`initlab.graph.moments` predicts for each recorded layer.

After the passes: trace the model (initlab.graph), propagate the input batch's moments through it
with the model's weights, match the graph's nodes to the probe's layers, and propagate once more
with every recorded layer's output pinned to its measurement (the local prediction). Any failure
becomes a note, never an error of the probe.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from initlab.errors import InitlabError
from initlab.graph.hook_ops import module_output_node
from initlab.graph.trace import UNFIT_INPUTS
from initlab.probe.classify import _FUNCTIONAL_NAMES
from initlab.probe.records import OUTPUT_LAYER
from initlab.probe.tensors import _tensor_leaves
from initlab.probe.weights import _weight_of

if TYPE_CHECKING:
    from initlab.probe.hooks import _Layer, _Session


def _predict(model: nn.Module, inputs: Any, session: _Session, fwd_values: list[tuple], train: bool, *,
             functional_order: bool) -> tuple[dict[str, dict[str, float]], list[str]]:
    """``({layer: {predicted_mean, predicted_std, local_predicted_std}}, notes)``; the output's
    prediction under :data:`OUTPUT_LAYER`."""
    if any(e[1] in ("forward", "weight") and e[3][4] != 0 for e in fwd_values):
        return {}, ["prediction: none (a layer's output or weight has NaN/inf entries)"]
    try:
        from initlab.graph.moments import model_tap_energy, propagate  # noqa: PLC0415  (scipy: when used)

        inputs = dict(inputs) if isinstance(inputs, Mapping) else inputs
        graph = _trace_for_prediction(model, inputs)
        nodes = _match_nodes(graph, sorted(session.layers.values(), key=lambda lay: lay.index),
                             functional_order)
        measured = {e[0]: (e[3][0], e[3][1]) for e in fwd_values if e[1] == "forward" and e[3][4] == 0}
        stats = _layer_stats(model, {id(w): (e[3][0], e[3][1] ** 2 + e[3][0] ** 2) for e in fwd_values
                                     if e[1] == "weight" and e[3][4] == 0
                                     and isinstance(w := _weight_of(session.layers[e[0]]), nn.Parameter)})
        x = _input_moments(graph, model, inputs)
        try:
            pure = propagate(graph, x, model=model, layer_stats=stats, train=train,
                             tap_energy=model_tap_energy(model))
            failed = {}
        except InitlabError:  # one node's rule failed: node by node, that node and its consumers unknown
            pure, _, failed = _stepwise(graph, x, model, stats, train, {}, write_meta=True)
        anchors = {nodes[name]: measured[name] for name in nodes if name in measured}
        _, local, failed_local = _stepwise(graph, x, model, stats, train, anchors)
    except Exception as exc:  # the prediction never breaks the probe
        return {}, [f"prediction: none ({_why(exc)})"]
    out = _predicted_stats(graph, nodes, pure, local)
    # a node that failed end to end is the cause _prediction_notes names; one that failed only in the
    # local pass left its layer with a predicted_std but no local_predicted_std: a note of its own
    failed_local = {i: why for i, why in failed_local.items() if i not in failed}
    return out, _prediction_notes(graph, session, nodes, out) + _failure_notes(graph, failed_local)


def _why(exc: BaseException) -> str:
    """``"Type: first line of the message"`` (``"Type"`` for an empty message)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _failure_notes(graph: Any, failed: Mapping[int, str]) -> list[str]:
    """One note naming the nodes whose rule raised in the local pass only (the first two), and why:
    they, and what reads them up to the next recorded layer, have no ``local_predicted_std``."""
    if not failed:
        return []
    where = [f"{graph[i].op} {graph[i].module!r} ({why})" if graph[i].module else f"{graph[i].op} ({why})"
             for i, why in list(failed.items())[:2]]
    more = f", and {len(failed) - 2} more" if len(failed) > 2 else ""
    return [f"prediction: no local_predicted_std from {len(failed)} node(s) whose rule failed: "
            f"{', '.join(where)}{more}"]


def _predicted_stats(graph: Any, nodes: dict[str, int], pure: Mapping[int, Any], local: Mapping[int, Any]
                     ) -> dict[str, dict[str, float]]:
    """The prediction's stats of each matched layer from the end-to-end (``pure``) and the local
    moments of its node, and the output's (of the graph's last output node)."""
    out: dict[str, dict[str, float]] = {}
    for name, i in nodes.items():
        d = {}
        if pure.get(i) is not None:
            d["predicted_mean"], d["predicted_std"] = pure[i].mean, math.sqrt(max(pure[i].var, 0.0))
        if local.get(i) is not None:
            d["local_predicted_std"] = math.sqrt(max(local[i].var, 0.0))
        if d:
            out[name] = d
    ends = [n for n in graph if n.kind.value == "output"]
    if ends and pure.get(ends[-1].id) is not None:
        m = pure[ends[-1].id]
        out[OUTPUT_LAYER] = {"predicted_mean": m.mean, "predicted_std": math.sqrt(max(m.var, 0.0))}
    return out


def _prediction_notes(graph: Any, session: _Session, nodes: dict[str, int],
                      out: dict[str, dict[str, float]]) -> list[str]:
    """One note naming the layers without a prediction (the first few), and why: the first node
    upstream whose moments are unknown for a reason of its own, or that the graph has no node for
    the layer (a functional call inside a module the graph takes as one op)."""
    missing = [name for name in session.layers if name not in out]
    if not missing:
        return []
    why = [f"{name} ({_unknown_cause(graph, nodes[name])})" if name in nodes else
           f"{name} (no node in the graph: inside a module it takes as one op)" for name in missing[:3]]
    more = f", and {len(missing) - 3} more" if len(missing) > 3 else ""
    return [f"prediction: {len(missing)} of {len(session.layers)} layer(s) have none: {', '.join(why)}{more}"]


def _unknown_cause(graph: Any, i: int) -> str:
    """Why node ``i`` has no moments: the reason of the first node, walking up its unknown inputs,
    whose own rule could not see through it."""
    node = graph[i]
    while True:
        up = [graph[j] for j in node.inputs if graph[j].meta.get("moments") is None]
        if not up or node.kind.value == "input":
            break
        node = up[0]
    where = f"{node.op} {node.module!r}" if node.module else node.op
    return f"{where}: {node.meta.get('moments_unknown') or 'unknown'}"


#: Examples the shapes are propagated on when the batch does not matter (2: BatchNorm in train
#: mode needs more than one value per channel).
_SHAPE_EXAMPLES = 2


def _first_examples(inputs: Any) -> Any | None:
    """``inputs`` cut to their first :data:`_SHAPE_EXAMPLES` examples (``t[:2]`` of every tensor),
    when every tensor has the same leading size, and a larger one; else ``None``."""
    leaves = _tensor_leaves(list(inputs.values()) if isinstance(inputs, Mapping) else inputs)
    sizes = {t.shape[0] if t.dim() else 0 for t in leaves}
    if len(sizes) != 1 or min(sizes) <= _SHAPE_EXAMPLES:
        return None

    def cut(o: Any) -> Any:
        if isinstance(o, torch.Tensor):
            return o[:_SHAPE_EXAMPLES]
        if isinstance(o, Mapping):
            return {k: cut(v) for k, v in o.items()}
        return type(o)(cut(v) for v in o) if type(o) in (list, tuple) else o

    return cut(inputs)


def _trace_for_prediction(model: nn.Module, inputs: Any) -> Any:
    """The model's graph with shapes. Shapes from the first two examples when fx traces the model
    and no node reads the batch (:func:`_batch_free`): then the graph is the one the whole batch
    would give, for a forward on two examples. Else traced on all of ``inputs`` (a recorded graph
    always is: its control flow may depend on the data)."""
    from initlab.graph import trace  # noqa: PLC0415

    few = _first_examples(inputs)
    if few is not None:
        try:  # torch's ShapeProp prints the traceback of a forward that fails: not the user's business
            with contextlib.redirect_stderr(io.StringIO()):
                graph = trace(model, few, method="fx")
        except InitlabError:  # fx cannot trace it: one recorded forward on the whole batch
            return trace(model, inputs, method="recorded")
        if graph.inputs_from is not None and not graph.inputs_from.startswith(UNFIT_INPUTS) \
                and _batch_free(graph, model):
            return graph
    return trace(model, inputs)


#: Node kinds whose propagation rule reads no shape, or none that two examples instead of the batch
#: change.
_BATCH_FREE_KINDS = frozenset("input output activation add sub mul scale dropout norm reshape param constant "
                              "other".split())


def _batch_free(graph: Any, model: nn.Module) -> bool:
    """Whether no node's propagation reads a size that two examples instead of the batch change:
    Linear/Conv/Embedding layers, pooling over non-batch dims, concatenation along a non-batch dim
    and the kinds of :data:`_BATCH_FREE_KINDS`. Attention, softmax, matmul and recurrent layers read
    a sequence length, which sits in dim 0 of a sequence-first input."""
    def ok(node: Any) -> bool:
        kind = node.kind.value
        if kind in _BATCH_FREE_KINDS:
            return True
        if kind == "layer":
            try:
                m = model.get_submodule(node.module) if node.module is not None else None
            except AttributeError:
                return False
            return (isinstance(m, (nn.Linear, nn.modules.conv._ConvNd, nn.Embedding, nn.Bilinear))
                    or type(m).__name__ == "Conv1D")
        shape = graph[node.inputs[0]].shape if node.inputs else None
        nd = len(shape) if shape else 0
        if kind == "pool":
            dims = node.params.get("dim")
            if node.module is not None or "pool" in node.op:
                return True
            dims = dims if isinstance(dims, (list, tuple)) else [dims]
            return nd > 0 and all(isinstance(d, int) and d % nd != 0 for d in dims)
        if kind == "concat":
            dim = node.params.get("dim", 0)
            return nd > 0 and isinstance(dim, int) and dim % nd != 0
        return False

    return all(ok(n) for n in graph)


def _match_nodes(graph: Any, layers: list[_Layer], functional_order: bool) -> dict[str, int]:
    """``{probe layer: graph node id}``: a module's ``k``-th call to its ``k``-th node; functional
    activations (outside the graph's leaf modules, which it does not look into) to the graph's
    functional activations of the probe's names, in order, when ``functional_order`` and both
    count the same and every pair names the same function."""
    calls: dict[str, list[int]] = {}
    for n in graph:
        if n.module is not None and n.kind.value != "output" and "hook_of" not in n.params:
            calls.setdefault(n.module, []).append(n.id)
    out: dict[str, int] = {}
    seen: dict[str, int] = {}
    functional = []
    for layer in layers:
        if layer.path is not None:
            k = seen.get(layer.path, 0)
            seen[layer.path] = k + 1
            if k < len(calls.get(layer.path, ())):  # what the caller gets: after the module's hook ops
                out[layer.name] = module_output_node(graph, calls[layer.path][k])
        elif not any(leaf == "" or layer.owner == leaf or str(layer.owner).startswith(leaf + ".")
                     for leaf in calls):
            functional.append(layer)
    fn_nodes = [n for n in graph if n.kind.value == "activation" and n.module is None
                and n.op.rstrip("_") in _FUNCTIONAL_NAMES]
    pairs = list(zip(functional, fn_nodes, strict=False))
    if functional_order and len(functional) == len(fn_nodes) and all(
            n.op.rstrip("_") == lay.activation for lay, n in pairs):
        out.update((lay.name, n.id) for lay, n in pairs)
    return out


def _layer_stats(model: nn.Module, weights: dict[int, tuple[float, float]]) -> Callable:
    """A :data:`initlab.graph.moments.LayerStatsFn`: a weight the probe measured takes its exact
    ``(E[w], E[w^2])`` from ``weights`` (by ``id``; no second pass over it), anything else is read
    from the model (:func:`initlab.graph.moments.model_layer_stats`); each part read once. Either
    way, whether the weight's columns or rows come in mirrored (looks-linear) pairs is read from the
    tensors themselves (:func:`initlab.graph.layer_stats.with_mirrors`)."""
    from initlab.graph.layer_stats import with_mirrors  # noqa: PLC0415
    from initlab.graph.moments import LayerStats, model_layer_stats, part_params  # noqa: PLC0415

    read = model_layer_stats(model)
    cache: dict[tuple, Any] = {}

    def stats(node: Any, part: str, x: Any) -> Any:
        key = (node.module, part)
        if key not in cache:
            try:
                p = part_params(model, node, part)
                # by id only for a stored Parameter: a parametrized weight (weight_norm) is a new
                # tensor on every access, and a freed one's id is reused by the next
                stored = p is not None and not p.lookup and isinstance(p.weight, nn.Parameter)
                w = weights.get(id(p.weight)) if stored else None
                if w is None:
                    cache[key] = read(node, part, x)
                else:
                    b = p.bias.detach().double() if p.bias is not None and p.bias.numel() else None
                    bm, b2 = (float(b.mean()), float(b.square().mean())) if b is not None else (0.0, 0.0)
                    cache[key] = with_mirrors(LayerStats(p.fan_in, w[1], w[0], bm, b2), model, node, part, p)
            except InitlabError:  # weights whose fans cannot be read: no statistics, unknown
                cache[key] = None
        return cache[key]

    return stats


def _input_moments(graph: Any, model: nn.Module, inputs: Any) -> dict[int, Any]:
    """``{input node id: Moments}`` of each floating input tensor (integer ones — token ids, masks —
    are left to the rules: an embedding reads its table)."""
    from initlab.graph.record import flatten_tensors, input_names  # noqa: PLC0415

    named: dict[str, torch.Tensor] = {}
    for name, value in input_names(model, inputs):
        tensors = flatten_tensors(value)
        for j, t in enumerate(tensors):
            named[name if len(tensors) == 1 else f"{name}[{j}]"] = t
    out = {}
    for node in graph:
        t = named.get(node.params.get("name")) if node.kind.value == "input" else None
        if t is not None and t.is_floating_point() and t.numel() > 0:
            conv = any(u.kind.value == "layer" and u.module is not None
                       and isinstance(_submodule(model, u.module), nn.modules.conv._ConvNd)
                       for u in graph.users(node.id))
            out[node.id] = _tensor_moments(t, 1 if conv else -1)
    return out


def _submodule(model: nn.Module, name: str) -> nn.Module | None:
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


def _tensor_moments(t: torch.Tensor, unit_dim: int) -> Any:
    r"""The :class:`~initlab.graph.moments.Moments` of a batch ``t``: mean, ``E[x^2]`` and the cross
    moment, estimated without bias from the pairs of positions of each (example, unit) — units along
    ``unit_dim``, positions the dims after the batch and the unit —, or, with no positions, from
    the pairs of examples of each unit:

    .. math:: c = \operatorname{mean}_{b,u} \frac{(\sum_a x_{bua})^2 - \sum_a x_{bua}^2}{P (P - 1)}

    (clipped into ``[m^2, E[x^2]]``; ``m^2`` when there is no pair).
    """
    from initlab.graph.moments import Moments  # noqa: PLC0415

    with torch.no_grad():
        x = t.detach().to(torch.float64)
        m, q = float(x.mean()), float(x.square().mean())
        if x.dim() >= 3:
            x = x.movedim(unit_dim, 1).reshape(x.shape[0], x.shape[unit_dim], -1)  # [B, U, positions]
        elif x.dim() == 2:
            x = x.T.unsqueeze(0)  # one "example" whose positions are the batch's examples
        pairs = x.shape[-1] * (x.shape[-1] - 1) if x.dim() == 3 else 0
        if pairs <= 0:
            return Moments(m, q)
        c = float(((x.sum(-1).square() - x.square().sum(-1)) / pairs).mean())
    return Moments(m, q, min(max(c, m * m), q))


def _reads_cross(node: Any, model: nn.Module) -> bool:
    """Whether the node's rule reads its input's cross moment (what units keep over positions):
    pooling, attention, softmax, recurrent and attention layers; the probe measures no cross
    moment, so after such a node the prediction is end to end again."""
    if node.kind.value in ("pool", "attention", "softmax"):
        return True
    if node.kind.value != "layer":
        return False
    m = _submodule(model, node.module) if node.module is not None else None
    return not (isinstance(m, (nn.Linear, nn.modules.conv._ConvNd, nn.Embedding, nn.Bilinear))
                or type(m).__name__ == "Conv1D")


def _rule(node: Any) -> Callable:
    """The propagation rule of ``node``, as :func:`initlab.graph.moments.propagate` picks it: an
    op's own (``OP_RULES``, keyed by ``node.params["rule"]``, where the graph has them), else its
    kind's (``RULES``)."""
    from initlab.graph import moments  # noqa: PLC0415

    op_rules = getattr(moments, "OP_RULES", {})
    return op_rules.get(node.params.get("rule")) or moments.RULES[node.kind]


def _stepwise(graph: Any, x: Mapping[int, Any], model: nn.Module, stats: Callable, train: bool,
              anchors: dict[int, tuple[float, float]], *, write_meta: bool = False
              ) -> tuple[dict[int, Any], dict[int, Any], dict[int, str]]:
    """Each node's moments by its rule (:func:`_rule`) from its inputs, node by node, where every
    anchored node (a recorded layer) passes on its measured ``(mean, std)`` instead of its
    prediction (the predicted share of its second moment that units keep over positions, ``spread /
    var``, kept). A rule that raises :class:`~initlab.errors.InitlabError` (an impossible
    ``Moments`` from a quadrature's rounding) leaves its node unknown, as one that cannot see through
    it does, and the others predicted. With ``write_meta`` (no anchors: the end-to-end pass where
    :func:`~initlab.graph.moments.propagate` raised), each node's ``meta["moments"]`` and
    ``meta["moments_unknown"]`` are written as it writes them (what :func:`_unknown_cause` reads).

    Returns:
        ``(moments, local, failed)``: ``{node id: Moments or None}`` of every node; of the nodes
        predicted from measured moments only — no node that reads a cross moment
        (:func:`_reads_cross`) between them and the measurements; ``{node id: why}`` of the nodes
        whose rule raised.
    """
    from initlab.graph.moments import Moments, MomentsUnknown, PropagationContext, model_tap_energy  # noqa: PLC0415

    ctx = PropagationContext(graph, {}, model, stats, train, x, model_tap_energy(model))
    local: dict[int, Any] = {}
    failed: dict[int, str] = {}
    measured: dict[int, bool] = {}  # the node's output is measured, or predicted from measured ones
    for node in graph:
        node.meta.pop("moments_note", None)
        why = None
        try:
            out = _rule(node)(node, ctx)
        except MomentsUnknown as exc:
            out, why = None, str(exc)
        except InitlabError as exc:
            out, why = None, _why(exc)
            failed[node.id] = why
        if write_meta:
            node.meta.pop("moments_unknown", None)
            if why is not None:
                node.meta["moments_unknown"] = why
        measured[node.id] = not _reads_cross(node, model) and all(measured[i] for i in node.inputs)
        if measured[node.id]:
            local[node.id] = out
        if node.id in anchors:
            measured[node.id] = True
            mean, std = anchors[node.id]
            share = min(max(out.spread / out.var, 0.0), 1.0) if out is not None and out.var > 0 else 0.0
            out = Moments(mean, std * std + mean * mean, mean * mean + share * std * std)
        ctx.results[node.id] = out
        if write_meta:
            node.meta["moments"] = out
    return ctx.results, local, failed
