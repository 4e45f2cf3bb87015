"""Activation detection: for every Linear / Conv / ConvTranspose / Conv1D of a model, the
nonlinearity that consumes its output and the one that produced its input — by fx, by hooks on a
recorded forward, by module order, or by structure (:func:`detect_activations`)."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from initlab.model.classify import (
    ACT_FUNCTIONS,
    ELEMENTWISE_FUNCTIONS,
    ELEMENTWISE_MODULES,
    INPUT_RESHAPE_FUNCTIONS,
    INPUT_RESHAPE_MODULES,
    OUTPUT_FUNCTIONS,
    OUTPUT_MODULES,
    atomic_types,
    fn_name,
    function_kind,
    layer_types,
    module_activation,
    module_kind,
)
from initlab.model.flow import FlowGraph, Found, resolve_layers


class _LeafTracer(torch.fx.Tracer):
    """Traces through every container, torch's own included; leaves are childless modules and the
    structured ones (MultiheadAttention, RNNs, Linear/Conv)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, atomic_types()) or next(iter(m.children()), None) is None


def _detect_fx(model: nn.Module) -> dict[str, Found]:
    """Detection on the graph :func:`torch.fx.symbolic_trace` gives (``found_by="fx"``).

    Optional forward arguments (masks, flags) are traced with their defaults: ``mask=None`` stays
    ``None`` instead of becoming a Proxy that torch's own checks cannot branch on."""
    try:
        sig = inspect.signature(model.forward)
        concrete = {
            k: v.default for k, v in sig.parameters.items()
            if v.default is not inspect.Parameter.empty
            and v.kind in (v.POSITIONAL_OR_KEYWORD, v.KEYWORD_ONLY)
        }
    except (TypeError, ValueError):
        concrete = {}
    graph = _LeafTracer().trace(model, concrete_args=concrete or None)
    modules = dict(model.named_modules())
    g = FlowGraph()
    index: dict[torch.fx.Node, int] = {}
    layers: dict[str, list[int]] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            kind = module_kind(modules[node.target], node.target)
        elif node.op in ("call_function", "call_method"):
            kind = function_kind(node.target, node.args, node.kwargs)
        elif node.op in ("placeholder", "output"):
            kind = ("input" if node.op == "placeholder" else "output",)
        else:
            kind = ("other",)
        index[node] = g.add(kind)
        if kind[0] == "layer":
            layers.setdefault(kind[1], []).append(index[node])
        mod = modules.get(node.target) if node.op == "call_module" else None
        fn = fn_name(node.target) if node.op in ("call_function", "call_method") else None
        if kind[0] == "pass" and (isinstance(mod, ELEMENTWISE_MODULES) or fn in ELEMENTWISE_FUNCTIONS):
            g.elementwise.add(index[node])
        if kind[0] == "pass" and (isinstance(mod, INPUT_RESHAPE_MODULES) or fn in INPUT_RESHAPE_FUNCTIONS):
            g.input_reshape.add(index[node])
        if isinstance(mod, OUTPUT_MODULES) or fn in OUTPUT_FUNCTIONS:
            g.output_ok.add(index[node])
    for node in graph.nodes:
        for src in node.all_input_nodes:
            g.edge(index[src], index[node])
    return resolve_layers(g, layers, "fx")


def _flatten_tensors(obj: Any) -> list[torch.Tensor]:
    """The tensors in ``obj`` (nested lists, tuples and dicts), in order."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _flatten_tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _flatten_tensors(o)]
    return []


class _Recorder(TorchFunctionMode):
    """Records top-level tensor functions (not those inside a leaf module) into a graph."""

    def __init__(self, g: FlowGraph, producer: dict[int, int], keep: list[Any]) -> None:
        super().__init__()
        self.g, self.producer, self.keep = g, producer, keep
        self.depth = 0

    def link(self, kind: tuple, inputs: Any, outputs: Any) -> int | None:
        outs = _flatten_tensors(outputs)
        if not outs:
            return None
        node = self.g.add(kind)
        for t in _flatten_tensors(inputs):
            src = self.producer.get(id(t))
            if src is not None:
                self.g.edge(src, node)
        for t in outs:
            self.producer[id(t)] = node
        self.keep.append((inputs, outputs))  # keep ids unique while the graph is built
        return node

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.depth == 0:
            self.link(function_kind(func, args, kwargs), (args, kwargs), out)
        return out


def _detect_hooks(model: nn.Module, example_inputs: Any) -> dict[str, Found]:
    """Detection on one recorded forward on ``example_inputs`` (``found_by="hooks"``): leaf-module
    calls (forward hooks) and top-level tensor functions (:class:`_Recorder`), linked by tensor
    identity; buffers (BatchNorm running stats) and the global RNG are restored."""
    g = FlowGraph()
    producer: dict[int, int] = {}
    keep: list[Any] = []
    rec = _Recorder(g, producer, keep)
    layers: dict[str, list[int]] = {}
    handles = []

    def pre(_m, _args):
        rec.depth += 1

    def make_post(qualname: str, m: nn.Module):
        kind = module_kind(m, qualname)  # before the forward: measuring a module runs it

        def post(_m, args, output):
            rec.depth -= 1
            if rec.depth == 0:
                node = rec.link(kind, args, output)
                if node is not None and g.kind[node][0] == "layer":
                    layers.setdefault(qualname, []).append(node)
        return post

    atomic = atomic_types()
    for qualname, m in model.named_modules():
        if qualname and (isinstance(m, atomic) or next(iter(m.children()), None) is None):
            post = make_post(qualname, m)  # classifies m (may run it) before any hook is on it
            handles.append(m.register_forward_pre_hook(pre))
            handles.append(m.register_forward_hook(post))
    buffers = {k: b.detach().clone() for k, b in model.named_buffers()}
    cuda = sorted({t.device.index or 0 for t in model.parameters() if t.device.type == "cuda"})
    try:  # fork_rng: a dropout in train mode must not advance the caller's global RNG
        with torch.random.fork_rng(devices=cuda), torch.no_grad(), rec:
            if isinstance(example_inputs, dict):
                model(**example_inputs)
            elif isinstance(example_inputs, (tuple, list)):
                model(*example_inputs)
            else:
                model(example_inputs)
    finally:
        for h in handles:
            h.remove()
        with torch.no_grad():
            for k, b in model.named_buffers():
                if k in buffers:
                    b.copy_(buffers[k])
    return resolve_layers(g, layers, "hooks")


def _detect_order(model: nn.Module) -> dict[str, Found]:
    """The guess from module order (``found_by="module_order"``): the first activation module
    registered after each layer, skipping pass-through modules; then :func:`_detect_structure`."""
    atomic, layers = atomic_types(), layer_types()
    leaves = [
        (q, m) for q, m in model.named_modules()
        if q and (isinstance(m, atomic) or next(iter(m.children()), None) is None)
    ]
    found: dict[str, Found] = {}
    for i, (q, m) in enumerate(leaves):
        if not isinstance(m, layers):
            continue
        act: tuple[str, float | None] = ("linear", None)
        via: list[str] = []
        for q2, m2 in leaves[i + 1:]:
            kind = module_kind(m2, q2)
            if kind[0] == "act":
                act = (kind[1], kind[2])
                break
            if kind[0] not in ("pass", "norm"):
                break
            via.append(q2)
        before = "linear"
        for q2, m2 in reversed(leaves[:i]):
            kind = module_kind(m2, q2)
            if kind[0] == "act":
                before = kind[1]
            if kind[0] != "pass":
                break
        found[q] = Found(act[0], act[1], "module_order", tuple(via) if act[0] != "linear" else (), before)
    _detect_structure(model, found)
    return found


def _detect_structure(model: nn.Module, found: dict[str, Found]) -> None:
    """torch's transformer layers, by their ``activation`` attribute (``found_by="structure"``):
    ``linear1 -> activation -> linear2``."""
    for q, m in model.named_modules():
        if not isinstance(m, (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)):
            continue
        fn = getattr(m, "activation", None)
        act_ = module_activation(fn) if isinstance(fn, nn.Module) else (
            (fn_name(fn), None) if fn is not None and fn_name(fn) in ACT_FUNCTIONS else None)
        if act_ is None:
            continue
        l1, l2 = (f"{q}.linear1", f"{q}.linear2") if q else ("linear1", "linear2")
        found[l1] = Found(act_[0], act_[1], "structure", (), found[l1].input_activation if l1 in found
                          else "linear")
        found[l2] = Found("linear", None, "structure", (), act_[0])


def detect_activations(
    model: nn.Module, example_inputs: Any = None
) -> tuple[dict[str, tuple[str, float | None, str]], str, str | None]:
    """Find, for every Linear / Conv / ConvTranspose (and transformers ``Conv1D``) of ``model``, the
    nonlinearity that consumes its output.

    The first method that runs decides (the plan's ``found_by`` column says which one found each
    row):

    1. ``"fx"`` — :func:`torch.fx.symbolic_trace` with a tracer that traces through every container
       (only modules without children, and MultiheadAttention / RNNs, are leaves). From each layer's
       node the data flow is followed through shape- and scale-free nodes and norm layers until a
       nonlinearity (:meth:`FlowGraph.consumer <initlab.model.flow.FlowGraph.consumer>`); the same
       walk *backwards* finds its ``input_activation``, where a norm layer stops the walk.
    2. ``"hooks"`` — when tracing fails (data-dependent control flow, ...): on ``example_inputs``,
       or without them on inputs built from the model (:func:`initlab.graph.examples.example_inputs`:
       a Hugging Face model's ``dummy_inputs`` or config, else its first weighted layer; the note
       says ``hooks on inputs built from ...``), one forward pass under :func:`torch.no_grad` that
       records leaf-module calls (forward hooks) and top-level tensor functions (a
       :class:`torch.overrides.TorchFunctionMode`), linked by tensor identity into the same
       data-flow graph. Buffers (BatchNorm running stats) and the global RNG are restored.
    3. ``"module_order"`` — when no forward ran (the given inputs failed, or none was given and
       none built fits): the first activation module registered after the layer, skipping the
       pass-through modules. A guess: functional activations are invisible to it, so
       :func:`initlab.init_model` warns (:class:`DetectionFallbackWarning`) when a row was guessed
       this way.
    4. ``"structure"`` — layers inside MultiheadAttention and the RNN gates (the module defines
       them), and ``linear1`` / ``linear2`` of torch's ``nn.TransformerEncoderLayer`` /
       ``DecoderLayer`` (their ``activation`` attribute) when neither fx nor hooks saw them (fx
       cannot trace these layers).

    Activations written by hand are recognised in both graphs: ``x * torch.sigmoid(x)`` is ``silu``
    (Swish, as EfficientNet code writes it), ``x * F.hardsigmoid(x)`` is ``hardswish``, and
    ``F.hardtanh(x, 0, 6)`` / ``nn.Hardtanh(0, 6)`` is ``relu6``. A sigmoid that gates *another*
    tensor (squeeze-and-excitation) stays a sigmoid. Parameter-free modules no table knows are
    measured: transformers' ``GELUActivation`` is ``gelu``, ``NewGELUActivation`` ``gelu_tanh``.

    Args:
        model: any ``nn.Module``; nothing in it is changed.
        example_inputs: a tensor, a tuple of positional inputs or a dict of keyword inputs, used
            by the hook fallback when symbolic tracing fails.

    Returns:
        ``(found, method, why)``: ``found`` maps the layer's qualified name to
        ``(activation, param, found_by)`` (``"linear"`` when nothing consumes the output);
        ``method`` is the detection that ran (``"fx"``, ``"hooks"`` or ``"module_order"``);
        ``why`` says why an earlier method was not used (``None`` for fx).

    Example:
        >>> from initlab.models import mlp
        >>> found, method, _ = detect_activations(mlp(4, 8, 2, 3, "tanh"))
        >>> found["fc1"], found["out"][0], method
        (('tanh', None, 'fx'), 'linear', 'fx')
    """
    found, method, why = detect(model, example_inputs)
    return {k: (v.activation, v.param, v.found_by) for k, v in found.items()}, method, why


def lazy_modules(model: nn.Module) -> list[str]:
    """Qualified names of the modules holding a lazy (not yet materialised) parameter or buffer:
    running the model's forward would materialise them, a class change nothing undoes."""
    lazy = (nn.parameter.UninitializedParameter, nn.parameter.UninitializedBuffer)
    return [q for q, m in model.named_modules()
            if any(isinstance(t, lazy) for t in (*m._parameters.values(), *m._buffers.values()))]


def detect(
    model: nn.Module, example_inputs: Any, run_forward: bool = True
) -> tuple[dict[str, Found], str, str | None]:
    """Run the detections and leave the model's Python state as it was: fx tracing runs
    ``forward`` with Proxies (``self.last = h`` would keep a Proxy), the hook fallback runs it for
    real (``self.calls += 1``); every module's attributes and its parameter, buffer and
    submodule tables are restored afterwards. ``run_forward=False`` (a lazy model): fx or module
    order, never a real forward."""
    from initlab.graph.record import preserved

    with preserved(model):  # attributes, tables, buffer values (fx runs `self.steps += 1` for real), RNG
        return _detect_unrestored(model, example_inputs, run_forward)


def _detect_unrestored(
    model: nn.Module, example_inputs: Any, run_forward: bool = True
) -> tuple[dict[str, Found], str, str | None]:
    """fx, else hooks, else module order; the structure and module-order rows fill in the layers
    the traced forward never reached."""
    order = _detect_order(model)
    if isinstance(model, atomic_types()):  # a single layer / MHA / RNN: nothing to trace
        if isinstance(model, layer_types()):
            order[""] = Found("linear", None, "structure")
        return order, "structure", None
    try:
        found = _detect_fx(model)
        method, why = "fx", None
    except Exception as exc:  # tracing fails in many ways: control flow, unsupported ops, ...
        why = f"fx: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        found = {}
        method = "module_order"
        built = None
        if not run_forward:
            example_inputs = None
        elif example_inputs is None:  # build them from what the model declares (its first layer, HF config)
            from initlab.graph.examples import example_inputs as build_inputs

            try:
                example_inputs, built = build_inputs(model)
            except Exception:  # noqa: BLE001  nothing to build from: module order it is
                example_inputs = None
        if example_inputs is not None:
            try:
                found = _detect_hooks(model, example_inputs)
                method = "hooks"
                if built:
                    why += f"; hooks on inputs {built}"
            except Exception as exc2:  # the user's forward failed on the example inputs
                msg = str(exc2).strip().splitlines()[0] if str(exc2).strip() else ""
                why += f"; hooks: {type(exc2).__name__}: {msg}" if not built else "; hooks: no example_inputs"
        else:
            why += "; hooks: no example_inputs"
    for name, f in order.items():  # layers the traced forward never reached
        found.setdefault(name, f)
    return found, method, why


class DetectionFallbackWarning(UserWarning):
    """Warned by :func:`init_model` when fx could not trace the model and the hook fallback did
    not run (no ``example_inputs``, and none built from the model fits) or failed on them: the
    activations were guessed from module order, which misses functional activations (``F.relu`` in
    ``forward``)."""


class SkippedParameterWarning(UserWarning):
    """Warned once by :func:`init_model` (dry runs included) when it left parameters as they were:
    parameters no handler knows and no rule decides, or those of a lazy module not yet
    materialised. The message names them (the first 10) and how to decide them with a rule;
    :attr:`InitPlan.skipped` lists them all."""


def fallback_message(why: str | None, hint: str = "pass example_inputs matching the model's input") -> str:
    """One line that says why activation detection fell back to module order, and ``hint``.

    Args:
        why: the detection note (:attr:`InitPlan.detection_note`, ``"fx: ...; hooks: ..."``).
        hint: what the user should do (the CLI names ``--input-shape``).

    >>> print(fallback_message("fx: TraceError: symbolically traced variables; hooks: no example_inputs"))
    fx could not trace the model (TraceError: symbolically traced variables) and no example input was ...
    """
    fx, sep, hooks = (why or "").rpartition("; hooks: ")
    if not sep:
        fx, hooks = why or "", ""
    fx = fx.removeprefix("fx: ") or "unknown error"
    second = ("no example input was given" if hooks in ("", "no example_inputs")
              else f"the example input failed ({hooks})")
    return (f"fx could not trace the model ({fx}) and {second}: activations were guessed from module "
            f"order; {hint}")
