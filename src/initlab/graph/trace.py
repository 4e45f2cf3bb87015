"""Trace a module into its data-flow :class:`Graph`: torch.fx where it traces, a recorded forward on
example inputs where it does not (the graph says which, and why).
"""

from __future__ import annotations

import contextlib
import inspect
import io
from collections.abc import Callable
from typing import Any

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from initlab.errors import InitlabError
from initlab.graph import vocab
from initlab.graph.examples import example_inputs as build_example_inputs
from initlab.graph.hook_ops import expose_hook_ops
from initlab.graph.nodes import Graph, Kind
from initlab.graph.record import flatten_tensors, preserved, record, refuse_lazy

__all__ = ["trace", "METHODS"]

#: What ``trace(method=...)`` accepts.
METHODS: tuple[str, ...] = ("auto", "fx", "recorded")
_OPERATOR_MODULES = frozenset({"_operator", "operator", "builtins", "math"})


class _LeafTracer(fx.Tracer):
    """Traces through every container, torch's own included; leaves are :func:`vocab.is_leaf`."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return vocab.is_leaf(m)


def _classifier() -> Callable[[nn.Module, tuple | None], vocab.Entry]:
    """:func:`vocab.classify_module`, once per module; an unknown module that rejects the default
    probe is measured again on a probe of its real input's shape (recorded graphs)."""
    cache: dict[int, vocab.Entry] = {}

    def classify(m: nn.Module, shape: tuple | None = None) -> vocab.Entry:
        if id(m) not in cache:
            entry = vocab.classify_module(m)
            if entry.kind is Kind.OTHER and shape and vocab.lookup_module(m) is None \
                    and next(iter(m.parameters()), None) is None and next(iter(m.children()), None) is None:
                entry = vocab.measure_module(m, shape)
            cache[id(m)] = entry
        return cache[id(m)]

    return classify


def _bound(sig: inspect.Signature, inputs: Any) -> dict[str, Any]:
    """``forward``'s arguments that ``inputs`` give (a dict by keyword, a tuple or list by position,
    else one positional input), by name; ``{}`` for none or inputs that do not fit."""
    if inputs is None:
        return {}
    try:
        bound = (sig.bind_partial(**inputs) if isinstance(inputs, dict) else
                 sig.bind_partial(*inputs) if isinstance(inputs, (tuple, list)) else sig.bind_partial(inputs))
    except TypeError:
        return {}
    return dict(bound.arguments)


def _concrete_args(model: nn.Module, given: Any = None) -> dict[str, Any]:
    """Optional forward arguments (masks, flags) that the given example inputs do not provide are
    traced with their defaults: ``mask=None`` stays ``None`` instead of a Proxy that torch's own
    checks cannot branch on. One they provide stays an input of the graph when it holds a tensor
    (``forward(x, c=None)`` on ``(x, c)`` keeps ``c``'s path), else is fixed at the given value."""
    try:
        sig = inspect.signature(model.forward)
    except (TypeError, ValueError):
        return {}
    provided = _bound(sig, given)
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {k: provided.get(k, p.default) for k, p in sig.parameters.items()
            if p.default is not inspect.Parameter.empty and p.kind in named
            and not (k in provided and flatten_tensors(provided[k]))}


def _arg_nodes(node: fx.Node) -> list[fx.Node]:
    """The fx nodes among ``node``'s arguments, in argument order, repeats kept (``x * x``)."""
    found: list[fx.Node] = []
    fx.node.map_arg((node.args, node.kwargs), lambda n: found.append(n) or n)
    return found


def _fx_tensor(node: fx.Node, tensor: dict[fx.Node, bool], shapes: bool) -> bool:
    """Whether fx ``node`` yields a tensor: read from shape propagation when it ran, else by rule
    (``x.size(0)``, ``x.shape`` and arithmetic on them are not)."""
    if shapes:
        return "tensor_meta" in node.meta
    inputs = [tensor.get(n, False) for n in _arg_nodes(node)]
    if node.op in ("call_module", "get_attr"):
        return True
    name = vocab.fn_name(node.target)
    if name == "getattr":
        return bool(inputs and inputs[0]) and node.args[1] in vocab.TENSOR_ATTRIBUTES
    if name in vocab.NON_TENSOR_FUNCTIONS:
        return False
    if node.op == "call_method":
        return bool(inputs and inputs[0])
    return getattr(node.target, "__module__", None) not in _OPERATOR_MODULES or any(inputs)


def _first_shape(meta: Any) -> tuple[int, ...] | None:
    if hasattr(meta, "shape"):
        return tuple(meta.shape)
    if isinstance(meta, (list, tuple)):
        for m in meta:
            if (shape := _first_shape(m)) is not None:
                return shape
    if isinstance(meta, dict):
        return _first_shape(list(meta.values()))
    return None


class _Propagate(ShapeProp):
    """:class:`ShapeProp` that also keeps the numbers of non-tensor nodes (``x.size(-1) ** -0.5``),
    so a ``SCALE`` node knows its factor."""

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        if isinstance(result, (int, float)) and not isinstance(result, bool):
            n.meta["value"] = result
        return result


#: How :attr:`Graph.inputs_from` starts for given example inputs that do not fit the forward (the graph
#: has no shapes then; the rest says why and what to pass).
UNFIT_INPUTS = "given, which do not fit the forward"


def _propagate_shapes(model: nn.Module, graph: fx.Graph, inputs: Any, concrete: dict[str, Any]) -> str | None:
    """Run :class:`ShapeProp` on the example inputs (arguments fixed at trace time take their fixed values);
    the first line of the error when they do not fit, else ``None``."""
    try:
        sig = inspect.signature(model.forward)
        bound = (sig.bind_partial(**inputs) if isinstance(inputs, dict) else
                 sig.bind_partial(*inputs) if isinstance(inputs, (tuple, list)) else sig.bind_partial(inputs))
        placeholders = [n for n in graph.nodes if n.op == "placeholder"]
        names = list(sig.parameters)[: len(placeholders)]
        values = [concrete[n] if n in concrete else bound.arguments[n] for n in names]
        # ShapeProp prints the traceback of a failing node before it raises: keep stderr clean
        with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
            _Propagate(fx.GraphModule(model, graph)).propagate(*values)
    except Exception as exc:  # the inputs do not fit the traced forward: no shapes, same graph
        for node in graph.nodes:
            node.meta.pop("tensor_meta", None)
            node.meta.pop("value", None)
        cause = exc.__cause__ or exc  # ShapeProp wraps the forward's own error
        return (str(cause).strip().splitlines() or [type(cause).__name__])[0][:200]
    return None


def _fx_entry(node: fx.Node, modules: dict[str, nn.Module], named: dict[str, str], is_tensor: Callable,
              classify: Callable) -> vocab.Entry:
    if node.op == "call_module":
        return classify(modules[node.target])
    if node.op == "get_attr":  # a parameter or buffer, else a tensor constant fx made
        kind = Kind.PARAM if node.target in named else Kind.CONSTANT
        return vocab.Entry(kind, named.get(node.target, "tensor"), params={"name": node.target})
    if node.op == "output":
        return vocab.Entry(Kind.OUTPUT, "output")
    target = node.args[1] if vocab.fn_name(node.target) == "getattr" else node.target
    args, kwargs = fx.node.map_arg((node.args, node.kwargs), lambda n: n.meta.get("value", n))
    return vocab.classify_function(target, args, kwargs, is_tensor)


def _shape_inputs(model: nn.Module, graph: fx.Graph, inputs: Any, concrete: dict[str, Any]) -> str | None:
    """Propagate shapes through the fx graph on ``inputs``, or on built ones
    (:func:`~initlab.graph.examples.example_inputs`) when none are given; returns where the inputs
    came from, ``None`` when no shapes could be propagated; given inputs that do not fit get a source
    that says so (shown in the plan's graph note), and the graph has no shapes."""
    source = "given"
    if inputs is None:
        try:
            inputs, source = build_example_inputs(model)
        except InitlabError:  # nothing to build from: a graph without shapes
            return None
    error = _propagate_shapes(model, graph, inputs, concrete)
    if error is None:
        return source
    if source == "given":
        return (f"{UNFIT_INPUTS} ({error}): no shapes, so no zero padding, pooling "
                "or conv geometry in the moments; pass example_inputs shaped like your data")
    return None


def _fx_graph(model: nn.Module, inputs: Any, classify: Callable) -> Graph:
    concrete = _concrete_args(model, inputs)
    graph = _LeafTracer().trace(model, concrete_args=concrete or None)
    source = _shape_inputs(model, graph, inputs, concrete)
    g = _convert(model, graph, concrete, source is not None and not source.startswith(UNFIT_INPUTS), classify)
    g.inputs_from = source
    return g


def _convert(model: nn.Module, graph: fx.Graph, concrete: dict[str, Any], shapes: bool,
             classify: Callable) -> Graph:
    """The typed graph of an fx graph: nodes that yield no tensor are left out, and so are the
    placeholders of arguments fixed at their defaults."""
    modules = dict(model.named_modules())
    named = {**{n: "buffer" for n, _ in model.named_buffers()},
             **{n: "parameter" for n, _ in model.named_parameters()}}
    sig_names = list(inspect.signature(model.forward).parameters)
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    arg_name = {n: sig_names[i] if i < len(sig_names) else n.target for i, n in enumerate(placeholders)}
    tensor: dict[fx.Node, bool] = {}
    ids: dict[fx.Node, int] = {}
    g = Graph(method="fx")

    def is_tensor(a: Any) -> bool:
        return isinstance(a, fx.Node) and tensor.get(a, False)

    for node in graph.nodes:
        shape = _first_shape(node.meta.get("tensor_meta"))
        if node.op == "placeholder":
            tensor[node] = arg_name[node] not in concrete
            if tensor[node]:
                ids[node] = g.add(Kind.INPUT, "input", params={"name": arg_name[node]}, shape=shape).id
            continue
        tensor[node] = node.op == "output" or _fx_tensor(node, tensor, shapes)
        if not tensor[node]:
            continue
        entry = _fx_entry(node, modules, named, is_tensor, classify)
        inputs = [ids[n] for n in _arg_nodes(node) if n in ids]
        if vocab.fn_name(node.target) in vocab.FIRST_INPUT_ONLY:
            inputs = inputs[:1]
        if not inputs and entry.kind not in (Kind.PARAM, Kind.CONSTANT, Kind.OUTPUT):
            entry = vocab.Entry(Kind.CONSTANT, entry.op)
        if entry.kind in (Kind.PARAM, Kind.CONSTANT):
            inputs = []
        module = node.target if node.op == "call_module" else None
        ids[node] = g.add(entry.kind, entry.op, inputs, module=module, activation=entry.activation,
                          fn=entry.fn, params=dict(entry.params), shape=shape).id
    return g


def _leaf_graph(model: nn.Module, entry: vocab.Entry) -> Graph:
    """A model that is itself a leaf (``trace(nn.Linear(3, 4))``): its required forward arguments ->
    one node -> output."""
    g = Graph(method="fx")
    try:
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        params = [p for p in inspect.signature(model.forward).parameters.values()
                  if p.default is inspect.Parameter.empty and p.kind in positional]
    except (TypeError, ValueError):
        params = []
    inputs = [g.add(Kind.INPUT, "input", params={"name": p.name}).id for p in params] or [
        g.add(Kind.INPUT, "input", params={"name": "input"}).id]
    node = g.add(entry.kind, entry.op, inputs, module="", activation=entry.activation, fn=entry.fn,
                 params=dict(entry.params))
    g.add(Kind.OUTPUT, "output", [node.id])
    return g


def _why(stage: str, exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{stage}: {type(exc).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


def trace(model: nn.Module, example_inputs: Any = None, *, method: str = "auto") -> Graph:
    """The data-flow graph of ``model``'s forward, one typed node per operation.

    1. ``"fx"``: :func:`torch.fx` symbolic tracing with a tracer that goes through every container
       (leaves: modules the vocabulary knows, :mod:`initlab.graph.vocab`, and modules without
       children), optional forward arguments that ``example_inputs`` do not give fixed at their
       defaults (given tensors stay graph inputs, given non-tensors are fixed at their value).
       ``get_attr`` nodes are ``PARAM`` nodes; calls that yield no tensor (``x.size(0)``) are left out.
       :class:`~torch.fx.passes.shape_prop.ShapeProp` on ``example_inputs`` (or, when none are
       given, on built ones) fills ``Node.shape`` and the numbers that shapes give
       (``x * x.size(-1) ** -0.5`` is a ``SCALE`` by a known factor); when that fails the graph
       has no shapes, factors computed from shapes are ``None``, and ``inputs_from`` is ``None``.
    2. ``"recorded"`` (:func:`initlab.graph.record.record`), when fx fails (data-dependent control
       flow, unsupported Python): one real forward on ``example_inputs``, or on inputs built by
       :func:`initlab.graph.examples.example_inputs` when none are given (``Graph.inputs_from`` says
       which); ``Graph.reason`` says why fx was not used.

    3. Forward hooks that declare their effect (:mod:`initlab.graph.hook_ops`: the gates and scalars
       of :mod:`initlab.transforms`) get nodes of their own, which neither method sees otherwise.

    Nothing in ``model`` changes: both run inside :func:`initlab.graph.record.preserved`
    (attributes, buffer values, parameters a module writes in forward such as an ``Embedding``'s
    ``max_norm`` rows, the global RNG); the recorded forward also under :func:`torch.no_grad`. A
    model with lazy modules is refused before anything runs (a forward would materialise them).

    Args:
        model: any ``nn.Module``; one the vocabulary knows (``nn.Linear``) gives input -> node -> output.
        example_inputs: a tensor, a tuple of positional inputs or a dict of keyword inputs.
        method: ``"auto"`` (fx, else recorded), ``"fx"`` or ``"recorded"`` (only that one).

    Returns:
        A :class:`Graph` (``method``, ``reason``, ``inputs_from`` set).

    Raises:
        InitlabError: unknown ``method``; a lazy module not materialised yet (nothing runs:
            :func:`initlab.graph.record.lazy_modules`); fx failed with ``method="fx"``; fx failed and
            the recorded forward could not run (no example inputs could be built, or the forward raised
            on them) — the message gives both reasons and says to pass ``example_inputs``.

    Example:
        >>> g = trace(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)))
        >>> g.method, [n.op for n in g]
        ('fx', ['input', 'Linear', 'Tanh', 'Linear', 'output'])
    """
    if method not in METHODS:
        raise InitlabError(f"method={method!r} is unknown: use one of {', '.join(METHODS)}")
    refuse_lazy(model, f"cannot trace {type(model).__name__}")
    classify = _classifier()
    with preserved(model):
        entry = vocab.lookup_module(model)
        if entry is not None:
            return _leaf_graph(model, entry)
        reason = "method='recorded' was asked for"
        if method != "recorded":
            try:
                return expose_hook_ops(model, _fx_graph(model, example_inputs, classify))
            except Exception as exc:  # fx fails in many ways: control flow, unsupported ops, ...
                reason = _why("fx", exc)
                if method == "fx":
                    raise InitlabError(f"cannot trace {type(model).__name__} with torch.fx ({reason}); "
                                       "use method='auto' or 'recorded' with example_inputs") from exc
        if example_inputs is not None:
            inputs, source = example_inputs, "given"
        else:
            try:
                inputs, source = build_example_inputs(model)
            except InitlabError as exc:
                raise InitlabError(f"{reason}; {exc}") from exc
        try:
            g = record(model, inputs, classify)
        except Exception as exc:  # the user's forward failed on the inputs
            shapes = [tuple(t.shape) for t in flatten_tensors(inputs)]
            raise InitlabError(
                f"cannot trace {type(model).__name__}: {reason}; the recorded forward on inputs "
                f"{source!r} (shapes {shapes}) failed ({_why('forward', exc)}); "
                "pass example_inputs that the model accepts"
            ) from exc
    g.reason, g.inputs_from = reason, source
    return expose_hook_ops(model, g)
