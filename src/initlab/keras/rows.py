"""Deciding the rows of a Keras plan: one :class:`~initlab.model.plan.PlanRow` per variable, decided
per layer family as the torch front end's handlers decide them (:mod:`initlab.model.handlers`), and the
draw (:class:`KerasFill`) each row will make."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from initlab import gains, schemes
from initlab.errors import InitlabError
from initlab.fans import Fans
from initlab.keras.kernels import RNN_GATES, Slot, prelu_init, stored
from initlab.keras.layouts import KernelLayout
from initlab.model.chain import ChainRole
from initlab.model.plan import PlanRow
from initlab.model.policies import NoCriticalPoint, SchemeContext, torch_fans
from initlab.model.propagation import LayerScale
from initlab.model.rows import spec_std_bound

__all__ = ["KerasFill", "Found", "KerasContext", "RowDecider", "keras_fans"]

_LINEAR = (None, "linear", "identity")


@dataclass
class KerasFill:
    """What a row draws: ``spec`` on the variable (through ``layout``'s torch twin for a kernel, on the
    variable as it is for a vector or a table), then ``blocks`` ``(slice, value)`` set to constants (an
    LSTM's forget-gate bias); ``centre`` instead: the bias ``-centre * kernel.sum(all but last axis)`` of
    the layer's kernel ``kernel`` (drawn before it); ``order``: the kernel's rows taken in this order
    after the draw (a chain head that reads a position-major flatten: row ``j`` of the Keras kernel is
    column ``order[j]`` of the torch twin's channel-major weight)."""

    spec: schemes.Spec | None
    layout: KernelLayout | None = None
    blocks: list[tuple[slice, float]] = field(default_factory=list)
    centre: float | None = None
    kernel: str | None = None
    order: np.ndarray | None = None


@dataclass(frozen=True)
class Found:
    """The activation that consumes a layer call's output and the one that fed its input
    (:func:`initlab.graph.consuming_activation`, :func:`~initlab.graph.feeding_activation`)."""

    activation: str = "linear"
    param: float | None = None
    found_by: str = "keras graph"
    input_activation: str | None = "linear"
    via: tuple[str, ...] = ()


class KerasContext(SchemeContext):
    """The torch front end's :class:`~initlab.model.policies.SchemeContext` (policies, gains, critical
    points), plus activations measured from their Keras functions (``"measured:<name>"``)."""

    def __init__(self, scheme: str, embedding_std: float, sigma_b2: float | None,
                 measured: dict[str, Callable[[Any], Any]]) -> None:
        super().__init__(scheme, {}, embedding_std, sigma_b2)
        self.measured = measured

    def gain(self, act: str | None, param: float | None) -> float:
        if act in self.measured:
            key = (act, None)
            if key not in self._gains:
                self._gains[key] = float(gains.gain(self.measured[act], "forward"))
            return self._gains[key]
        return super().gain(act, param)


def keras_fans(shape: tuple[int, ...], slot: Slot) -> Fans:
    """The fans Keras's own initializers use for ``slot``'s variable of ``shape``
    (:meth:`~initlab.keras.layouts.KernelLayout.keras_fans`)."""
    return (slot.layout or KernelLayout("keras")).keras_fans(shape)


def _decide(row: PlanRow, label: str, spec: schemes.Spec, fill: KerasFill, gain: float | None = None,
            torch_shape: tuple[int, ...] | None = None) -> None:
    row.scheme, row.spec, row.gain = label, spec.describe(), gain
    row.std, row.bound = spec_std_bound(spec, torch_shape or row.shape, row.chunks)
    row._fills = [fill]


def _note(row: PlanRow, text: str) -> None:
    row.note = "; ".join(filter(None, [row.note, text]))


class RowDecider:
    """Decides the rows of one plan: ``ctx`` (the scheme), each call's :class:`Found`, the plain chain's
    roles and the propagated scales (``"auto"`` / ``"variance"``), by module key."""

    def __init__(self, ctx: KerasContext, found: dict[str, Found], roles: dict[str, ChainRole] | None = None,
                 scales: dict[str, LayerScale] | None = None, names: dict[int, str] | None = None) -> None:
        self.ctx, self.found, self.roles, self.scales = ctx, found, roles or {}, scales or {}
        self.names = names or {}
        #: module key -> the row order of a chain head's kernel behind a position-major flatten
        #: (:func:`initlab.keras.chain.head_orders`).
        self.orders: dict[str, np.ndarray] = {}

    def name(self, var: Any) -> str:
        """The plan's name of ``var``: unique in the model (:func:`initlab.keras.kernels.variable_names`)."""
        return self.names.get(id(var)) or var.path

    @property
    def scheme(self) -> str:
        return self.ctx.scheme

    def row(self, layer: Any, slot: Slot, key: str | None) -> PlanRow:
        """The decided row of ``slot`` of ``layer`` (``key``: its graph call's module key)."""
        var = slot.variable
        row = PlanRow(name=self.name(var), module=layer.name, module_type=type(layer).__name__,
                      shape=tuple(int(d) for d in var.shape), chunks=slot.gates)
        if slot.call is None:  # a norm's gamma and beta: no activation to find
            f = Found(None, found_by="-", input_activation=None)  # type: ignore[arg-type]
        else:
            f = self.found.get(key or "", Found(found_by="not in graph", input_activation="unknown"))
        row.activation, row.found_by, row.input_activation = f.activation, f.found_by, f.input_activation
        if f.via:
            row.note = "via " + ", ".join(f.via)
        if slot.call == "cell":
            self._recurrent(row, slot.owner or layer, slot)
        elif slot.role == "embeddings":
            self._embedding(row)
        elif slot.role in ("gamma", "beta"):
            value = 1.0 if slot.role == "gamma" else 0.0
            spec = schemes.Constant(value)
            _decide(row, "ones" if value else "zeros", spec, KerasFill(spec))
        elif slot.role == "alpha":  # a PReLU's slope: its initializer's value, under every scheme (torch's)
            spec = schemes.Constant(prelu_init(layer))  # type: ignore[arg-type]
            _decide(row, "prelu_init", spec, KerasFill(spec))
        elif slot.role in ("lora_a", "lora_b"):  # Keras's enable_lora: the adapted kernel is the kernel
            a = slot.role == "lora_a"
            spec = schemes.he_uniform(Fans(row.shape[0], row.shape[-1])) if a else schemes.Constant(0.0)
            _decide(row, "he_uniform" if a else "zeros", spec, KerasFill(spec))
            _note(row, "LoRA adapter, as Keras's enable_lora (A He uniform, B 0)")
        elif slot.role == "bias":
            self._bias(row, layer, key, f)
        else:
            try:
                self._kernel(row, slot, key, f)
            except NoCriticalPoint as exc:
                raise InitlabError(
                    f"init_model(scheme='critical'): layer {layer.name!r} feeds {f.activation}, which has no "
                    f"critical point here ({exc}): pass sigma_b2= (GELU from about 0.5, SiLU about 1), or "
                    "another scheme"
                ) from None
        owner = slot.owner or layer
        if not (getattr(owner, "trainable", True) and getattr(var, "trainable", True)):
            _note(row, "frozen (trainable=False)")
        return row

    # ---- kernels ------------------------------------------------------------------------------------

    def _kernel(self, row: PlanRow, slot: Slot, key: str | None, f: Found) -> None:
        lay, shape = slot.layout, row.shape
        assert lay is not None
        fans, torch_shape = lay.fans(shape), lay.to_torch_shape(shape)
        row.fan_in, row.fan_out = fans.fan_in, fans.fan_out
        fill = KerasFill(None, lay)
        if self.scheme == "torch_default":
            fill.spec = schemes.torch_default(torch_fans(torch_shape))
            _decide(row, "torch_default", fill.spec, fill, torch_shape=torch_shape)
            _note(row, "torch's fans of the torch twin")
        elif self.scheme == "keras_default":
            fill.spec = schemes.glorot_uniform(keras_fans(shape, slot))
            _decide(row, "keras_default", fill.spec, fill, torch_shape=torch_shape)
            _note(row, "Keras's own fans")
        elif self.scheme == "auto" and key in self.roles:
            role = self.roles[key]
            fill.spec, fill.order = role.spec, self.orders.get(key)
            _decide(row, role.scheme, role.spec, fill, role.gain, torch_shape)
            _note(row, role.note)
        elif self.scheme in ("auto", "variance") and key in self.scales:
            self._propagated(row, self.scales[key], fill, torch_shape)
        else:
            unit = f.input_activation in _LINEAR
            label, spec, g = self.ctx.weight_spec(fans, f.activation, f.param, unit_input=unit)
            fill.spec = spec
            _decide(row, label, spec, fill, g, torch_shape)
            if unit and f.activation not in _LINEAR and self.scheme != "critical":
                _note(row, "input not from a nonlinearity: gain 1")
        if lay.name == "keras_transposed" and row.fan_in is not None:
            _note(row, "fan_in per output position (strides)")

    def _propagated(self, row: PlanRow, s: LayerScale, fill: KerasFill, torch_shape: tuple[int, ...]) -> None:
        """``N(0, E[w^2])`` from the propagation (:func:`initlab.model.rows.set_propagated`'s row)."""
        fill.spec = schemes.Normal(s.std) if s.weight_second else schemes.Constant(0.0)
        _decide(row, "propagated" if s.weight_second else "zeros", fill.spec, fill, torch_shape=torch_shape)
        row.gain = s.std * math.sqrt(row.fan_in) if row.fan_in and s.weight_second else None
        target = f": E[y^2] {s.q_out:.3g}" if s.q_out is not None else ""
        _note(row, s.role + target + (f" from E[x^2] {s.q_in:.3g}" if s.q_in is not None else ""))

    # ---- biases, recurrent layers, tables ---------------------------------------------------------------

    def _bias(self, row: PlanRow, layer: Any, key: str | None, f: Found) -> None:
        if self.scheme == "torch_default":
            kernel = _bias_kernel_shape(layer)
            fan_in = torch_fans(kernel).fan_in if kernel else 0
            spec: schemes.Spec = schemes.Constant(0.0) if not fan_in else schemes.Uniform(
                -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))
            _decide(row, "torch_default", spec, KerasFill(spec))
        elif self.scheme == "auto" and key in self.roles and self.roles[key].shift:
            shift = self.roles[key].shift
            row.scheme, row.spec = "centering", f"-{shift:.4g} * kernel.sum(inputs)"
            row._fills = [KerasFill(None, centre=shift, kernel=self.name(stored(layer, "kernel")))]
        elif self.scheme == "keras_default":
            _decide(row, "keras_default", schemes.Constant(0.0), KerasFill(schemes.Constant(0.0)))
        else:
            label, spec = self.ctx.bias_spec(f.activation, f.param)
            _decide(row, label, spec, KerasFill(spec))

    def _recurrent(self, row: PlanRow, layer: Any, slot: Slot) -> None:
        """An RNN's packed kernels and bias, per gate (:func:`initlab.model.handlers.recurrent.handle_rnn`):
        input kernel Glorot normal per gate, gain 1; recurrent kernel orthogonal per gate; bias 0 but an
        LSTM's forget gate 1 (``unit_forget_bias``) under ``"auto"``, ``"variance"`` and ``"keras_default"``;
        ``"torch_default"``: ``U(±1/sqrt(units))``; ``"keras_default"``: the whole kernel (Glorot uniform,
        recurrent orthogonal)."""
        kind, units = type(layer).__name__, int(layer.cell.units)
        gates = RNN_GATES[kind]
        row.found_by = "structure"
        row.activation = "gates " + ",".join(gates) if len(gates) > 1 else "tanh"
        if self.scheme == "torch_default":
            b = 1.0 / math.sqrt(units)
            spec: schemes.Spec = schemes.Uniform(-b, b)
            _decide(row, "torch_default", spec, KerasFill(spec, slot.layout))
            return
        if slot.role == "bias":
            forget = kind == "LSTM" and self.scheme in ("auto", "variance", "keras_default") and bool(
                getattr(layer.cell, "unit_forget_bias", True)) and len(row.shape) == 1
            if self.scheme == "critical":
                label, spec = self.ctx.bias_spec("linear", None)
            else:
                label = "keras_default" if self.scheme == "keras_default" else "zeros"
                spec = schemes.Constant(0.0)
            blocks = [(slice(units, 2 * units), 1.0)] if forget else []
            _decide(row, label, spec, KerasFill(spec, blocks=blocks))
            if forget:
                row.spec = "constant(0), forget gate constant(1)"
                _note(row, "forget-gate bias 1 (Jozefowicz et al. 2015)")
            return
        assert slot.layout is not None
        recurrent = slot.role == "recurrent_kernel"
        if self.scheme == "keras_default":
            lay = KernelLayout("keras")
            fans = keras_fans(row.shape, slot)
            spec = schemes.Orthogonal(1.0) if recurrent else schemes.glorot_uniform(fans)
            row.fan_in, row.fan_out, row.chunks = fans.fan_in, fans.fan_out, 1
            _decide(row, "keras_default", spec, KerasFill(spec, lay),
                    torch_shape=lay.to_torch_shape(row.shape))
            _note(row, "whole packed kernel, as Keras")
            return
        fans = slot.layout.fans(row.shape)
        row.fan_in, row.fan_out = fans.fan_in, fans.fan_out
        if recurrent and self.scheme in ("auto", "variance"):
            label, spec, g = "orthogonal", schemes.Orthogonal(1.0), 1.0
        else:
            label, spec, g = self.ctx.weight_spec(fans, "linear", None)
        _decide(row, label, spec, KerasFill(spec, slot.layout), g, slot.layout.to_torch_shape(row.shape))
        _note(row, "per gate" + (" (recurrent)" if recurrent else " (input)"))

    def _embedding(self, row: PlanRow) -> None:
        """``N(0, embedding_std^2)``; ``"keras_default"``: ``U(±0.05)``; ``"torch_default"``: ``N(0, 1)``."""
        if self.scheme == "keras_default":
            label, spec = "keras_default", schemes.Uniform(-0.05, 0.05)
        elif self.scheme == "torch_default":
            label, spec = "torch_default", schemes.Normal(1.0)
        else:
            label, spec = "embedding", schemes.Normal(self.ctx.embedding_std)
        _decide(row, label, spec, KerasFill(spec))


def _bias_kernel_shape(layer: Any) -> tuple[int, ...] | None:
    """The torch twin's shape of the kernel a bias belongs to (a SeparableConv's pointwise kernel)."""
    from initlab.keras.kernels import layer_slots

    kernels = [s for s in layer_slots(layer) or () if s.layout is not None and s.role != "recurrent_kernel"]
    if not kernels:
        return None
    return kernels[-1].layout.to_torch_shape(tuple(int(d) for d in kernels[-1].variable.shape))  # type: ignore[union-attr]


def draw_fill(fill: KerasFill, shape: tuple[int, ...], rng: np.random.Generator, dtype: type,
              drawn: dict[str, np.ndarray]) -> np.ndarray:
    """The values of one row: ``fill`` realised on ``shape`` from ``rng`` (``drawn``: the kernels drawn
    so far, by variable path, for a centring bias)."""
    from initlab import numpy_init
    from initlab.keras.initializers import sample_kernel

    if fill.centre is not None:
        kernel = drawn[fill.kernel]  # type: ignore[index]
        values = -fill.centre * kernel.sum(axis=tuple(range(kernel.ndim - 1)), dtype=np.float64)
        return values.astype(dtype)
    assert fill.spec is not None
    if fill.layout is not None and len(shape) >= 2:
        values = sample_kernel(fill.spec, shape, fill.layout, rng, dtype)
        if fill.order is not None:
            values = np.ascontiguousarray(values[fill.order])
    else:
        values = numpy_init.sample_spec(fill.spec, shape, rng=rng, dtype=dtype)
    for index, value in fill.blocks:
        values[index] = value
    return values
