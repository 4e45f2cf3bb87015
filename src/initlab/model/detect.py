"""Activation detection: for every Linear / Conv / ConvTranspose / Conv1D of a model, the
nonlinearity that consumes its output and the one that produced its input, read from the model's
one data-flow graph (:func:`initlab.graph.trace`) — or guessed from module order when no graph can
be built (:func:`detect_activations`)."""

from __future__ import annotations

from typing import Any

from torch import nn

from initlab.errors import InitlabError
from initlab.graph import Graph, trace
from initlab.graph.record import lazy_modules
from initlab.model.classify import layer_types
from initlab.model.found import Found, from_graph, from_module_order

__all__ = ["detect", "detect_activations", "DetectionFallbackWarning", "fallback_message", "lazy_modules"]


def detect_activations(
    model: nn.Module, example_inputs: Any = None
) -> tuple[dict[str, tuple[str, float | None, str]], str, str | None]:
    """Find, for every Linear / Conv / ConvTranspose (and transformers ``Conv1D``) of ``model``, the
    nonlinearity that consumes its output.

    The first method that runs decides (the plan's ``found_by`` column says which one found each
    row):

    1. ``"fx"`` — the model's data-flow graph by :func:`torch.fx` symbolic tracing
       (:func:`initlab.graph.trace`). From each layer's node the data flow is followed through
       shape- and scale-free nodes, residual sums and norm layers until a nonlinearity
       (:func:`initlab.graph.consuming_activation`); the same walk *backwards* finds its
       ``input_activation``, where a norm layer stops the walk
       (:func:`initlab.graph.feeding_activation`).
    2. ``"hooks"`` — when tracing fails (data-dependent control flow, ...): on ``example_inputs``,
       or without them on inputs built from the model (:func:`initlab.graph.examples.example_inputs`:
       a Hugging Face model's ``dummy_inputs`` or config, else its first weighted layer; the note
       says ``hooks on inputs built from ...``), the same graph from one recorded forward pass
       (:func:`initlab.graph.record`: forward hooks on leaf modules, a
       :class:`torch.overrides.TorchFunctionMode` for tensor functions). The model's state,
       buffers and the global RNG are restored.
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
    found, method, why, _ = detect(model, example_inputs)
    return {k: (v.activation, v.param, v.found_by) for k, v in found.items()}, method, why


def detect(
    model: nn.Module, example_inputs: Any, run_forward: bool = True
) -> tuple[dict[str, Found], str, str | None, Graph | None]:
    """Trace ``model`` once (:func:`initlab.graph.trace`: fx, else a recorded forward on
    ``example_inputs`` or on inputs built from the model) and read every layer's activations from
    that graph; the graph is returned for the propagation to reuse. ``run_forward=False`` (a lazy
    model, which a forward would materialise): module order only, nothing runs. Module-order and
    structure rows fill in the layers the traced forward never reached. Nothing in ``model``
    changes (tracing restores its state).

    Returns:
        ``(found, method, why, graph)``: ``method`` is ``"fx"``, ``"hooks"`` (a recorded
        forward), ``"structure"`` (a single layer) or ``"module_order"``; ``why`` says why fx was
        not used (``"fx: ...; hooks: ..."``); ``graph`` is ``None`` when none could be built.
    """
    order = from_module_order(model)
    if isinstance(model, layer_types()):  # a single layer: nothing to trace
        order[""] = Found("linear", None, "structure")
        return order, "structure", None, None
    if not run_forward:
        lazy = lazy_modules(model)
        why = f"lazy module {lazy[0]!r} not materialised; hooks: no example_inputs"
        return order, "module_order", why, None
    graph, why = _graph(model, example_inputs)
    if graph is None:
        return order, "module_order", why, None
    method = "fx" if graph.method == "fx" else "hooks"
    found = from_graph(model, graph, method)
    for name, f in order.items():  # layers the traced forward never reached
        found.setdefault(name, f)
    return found, method, why, graph


def _reason(stage: str, exc: BaseException) -> str:
    """``"stage: Type: first line"`` of the error behind an :class:`InitlabError` from tracing."""
    exc = exc.__cause__ or exc
    text = str(exc).strip()
    return f"{stage}: {type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def _graph(model: nn.Module, example_inputs: Any) -> tuple[Graph | None, str | None]:
    """fx, else the recorded forward (on inputs built from the model when none are given), and
    why fx was not used (``"fx: ...; hooks on inputs ..."`` or ``"fx: ...; hooks: <why not>"``)."""
    try:
        return trace(model, example_inputs, method="fx"), None
    except InitlabError as exc:
        why = _reason("fx", exc)
    built = None
    if example_inputs is None:  # build them from what the model declares (its first layer, HF config)
        from initlab.graph.examples import example_inputs as build_inputs

        try:
            example_inputs, built = build_inputs(model)
        except Exception:  # noqa: BLE001  nothing to build from: module order it is
            return None, why + "; hooks: no example_inputs"
    try:
        graph = trace(model, example_inputs, method="recorded")
    except InitlabError as exc:
        return None, why + ("; hooks: no example_inputs" if built else "; " + _reason("hooks", exc))
    graph.reason, graph.inputs_from = why, built or "given"
    return graph, why + (f"; hooks on inputs {built}" if built else "")


class DetectionFallbackWarning(UserWarning):
    """Warned by :func:`init_model` when fx could not trace the model and the hook fallback did
    not run (no ``example_inputs``, and none built from the model fits) or failed on them: the
    activations were guessed from module order, which misses functional activations (``F.relu`` in
    ``forward``)."""


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
