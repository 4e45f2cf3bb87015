"""The tracker: hooks that record each layer's output, weight and gradients during the passes (the
session's bookkeeping), and the mode that captures functional activations.
"""

from __future__ import annotations

import contextlib
import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from initlab.probe.classify import (
    _REARRANGING_NODES,
    _RELU_FAMILY,
    _SATURATING,
    _WEIGHT_TYPES,
    _functional_activation,
    _functional_limits,
    _is_norm,
    _saturation_thresholds,
    _torch_activation,
    _units_in_dim1,
)
from initlab.probe.partials import (
    _finish_host,
    _host_ok,
    _host_partials,
    _partials,
    _Sampler,
    _unit_layout,
    _unit_peak,
)
from initlab.probe.reductions import _Pending
from initlab.probe.tensors import _first_tensor
from initlab.probe.thresholds import Thresholds
from initlab.probe.weights import _host_weight, _projections, _weight_of

#: Runs the hooks' own reductions outside the functional-capture mode (no per-op Python dispatch);
#: a no-op context where torch lacks it.
_no_torch_function = getattr(torch._C, "DisableTorchFunction", contextlib.nullcontext)


@dataclass
class _Layer:
    """One recorded layer: a module's call (``path``) or a functional activation's (``owner``)."""

    name: str
    index: int
    layer_type: str
    module_type: str
    activation: str | None = None
    limits: tuple[float, float] | None = None
    module: nn.Module | None = None
    shape: tuple[int, ...] = ()
    unit_dim: int = -1
    input_from_activation: bool = False  # a recorded nonlinearity made the weight layer's input
    path: str | None = None  # a module's qualified name ("" for the root model); None: functional
    owner: str | None = None  # a functional activation's: the module whose forward called it

    @property
    def units(self) -> int | None:
        """Features (channels after a conv) of the recorded output; ``None`` before it is seen."""
        if not self.shape:
            return None
        return self.shape[self.unit_dim] if len(self.shape) > 1 else self.shape[0]


class _Session:
    """The bookkeeping of one probe: the layers it has seen, the hooks' partials and samples
    waiting for each pass's batched reduction, the weights' and gradients' statistics, and which
    tensor came from which layer."""

    def __init__(self, model: nn.Module, bins: int, thresholds: Thresholds, sampler: _Sampler,
                 backward: bool) -> None:
        self.model: nn.Module | None = model
        self.bins = bins
        self.th = thresholds
        self.sampler = sampler
        self.backward = backward
        self.layers: dict[str, _Layer] = {}
        self.calls: dict[str, int] = {}
        # partials and samples, reduced in one batch and synced once after each pass
        self.fwd: list[_Pending] = []
        self.bwd: list[_Pending] = []
        self.scratch: dict[tuple, torch.Tensor] = {}
        # weights: stats taken in the layer's forward hook (the weight is then in cache), distinct
        # units finished in one batch after the pass; parameter gradients: [sum, sum of squares]
        # taken in a hook on the weight as the backward produces its gradient
        self.weights: list[_Pending] = []
        self.projections: list[tuple] = []  # (proj, k, flat weight); max|W| from min/max later
        self.weight_ids: set[int] = set()
        # (layer, autograd node, output slot) of each recorded output; (layer, leaf tensor, -1)
        self.grad_targets: list[tuple[str, Any, int, torch.Tensor, int]] = []
        self.pgrads: dict[int, tuple[torch.Tensor | list[float], int]] = {}
        self.producers: dict[int, tuple[weakref.ref, str]] = {}
        # tensor id -> the weight layer whose output it carries through pass-through modules
        self.sources: dict[int, tuple[weakref.ref, str]] = {}
        # each weight layer's output as it returned it: (tensor, layer, version, autograd node)
        self.weight_outputs: list[tuple[weakref.ref, str, int | None, Any]] = []
        # the last weight layer's output, held (a head's output may be freed once a bias is added)
        self.last_weight_output: tuple[Any, torch.Tensor] | None = None
        self.stack: list[tuple[str, nn.Module]] = []
        self.fn_counts: dict[tuple[str, str], int] = {}
        self.busy = False
        # owners whose functional calls are not recorded apart: activation modules (nn.Tanh calls
        # torch.tanh), by the table, and the probed ones it identified by running them, by id
        self.leaves: set[int] = set()
        self.wants_functional: Callable[[str], bool] = lambda name: True

    def release(self) -> None:
        """Drop everything but the layers (what the result's records are built from)."""
        self.fwd, self.bwd, self.producers, self.model = [], [], {}, None
        self.sources, self.weight_outputs, self.last_weight_output = {}, [], None
        self.scratch, self.weights, self.projections, self.pgrads = {}, [], [], {}
        self.grad_targets = []

    # -- layer naming
    def _new_layer(self, base: str, layer_type: str, module_type: str, module: nn.Module | None) -> _Layer:
        k = self.calls.get(base, 0) + 1
        self.calls[base] = k
        name = base if k == 1 else f"{base}#{k}"
        layer = _Layer(name, len(self.layers), layer_type, module_type, module=module)
        self.layers[name] = layer
        return layer

    # -- forward
    def record_forward(self, layer: _Layer, out: torch.Tensor, inp: torch.Tensor | None) -> None:
        """Record ``out``, the output of ``layer`` (``inp`` its input): its place in the signal's
        path (:meth:`link`), the target of its gradient's hook, and its partials and sample."""
        if not out.is_floating_point():
            return
        layer.shape = tuple(out.shape)
        self.link(layer, out, inp)
        if self.backward and out.requires_grad:  # dL/d(out): hooked after the pass (grad_hooks)
            fn = out.grad_fn
            # with the user's tensor hooks on ``out`` so far: those registered later must not
            # change what the probe sees (see grad_hooks)
            self.grad_targets.append((layer.name, fn, out.output_nr, out, len(out._backward_hooks or ()))
                                     if fn is not None else (layer.name, out, -1, out, 0))
        if out.numel() == 0:
            return
        self.record_output_stats(layer, out)

    def link(self, layer: _Layer, out: torch.Tensor, inp: torch.Tensor | None) -> None:
        """Where ``layer``'s signal comes from and goes: the dim of its units, whether a recorded
        nonlinearity made a weight layer's input, the activation that consumes a weight layer's
        output; ``out`` is then known as ``layer``'s (for the layers that read it)."""
        producer = None
        if inp is not None:
            entry = self.producers.get(id(inp))
            if entry is not None and entry[0]() is inp:
                producer = self.layers.get(entry[1])
        # units: channels (dim 1) after a conv, features (last dim) after a Linear; an activation
        # inherits its producer's; with no known producer, dim 1 for >= 3-d outputs (NC...)
        if layer.layer_type in _WEIGHT_TYPES:
            layer.input_from_activation = (producer is not None and producer.layer_type == "activation"
                                           and not isinstance(producer.module, nn.Identity))
        if layer.layer_type in ("conv", "conv_transpose"):
            layer.unit_dim = 1
        elif layer.layer_type == "activation":
            if producer is not None:
                layer.unit_dim = producer.unit_dim
            elif out.dim() >= 3:
                layer.unit_dim = 1
            # the weight layer whose output reaches this activation (directly or through
            # pass-through modules, see classify._passes_through) takes it as its consuming activation;
            # nn.Identity is itself a pass-through and claims nothing
            entry = self.sources.get(id(inp)) if inp is not None else None
            if entry is not None and entry[0]() is inp and not isinstance(layer.module, nn.Identity):
                source = self.layers.get(entry[1])
                if source is not None and source.activation is None:
                    source.activation = layer.activation
        try:
            self.producers[id(out)] = (weakref.ref(out), layer.name)
            if layer.layer_type in _WEIGHT_TYPES:
                self.sources[id(out)] = (weakref.ref(out), layer.name)
                self.weight_outputs.append((weakref.ref(out), layer.name, _version(out), out.grad_fn))
                self.last_weight_output = (out.grad_fn, out.detach())
        except TypeError:  # pragma: no cover - tensors support weakrefs
            pass

    def output_source(self, t: torch.Tensor) -> str | None:
        """The weight layer whose output ``t`` is, as returned or rearranged (views, copies, casts,
        slices: :data:`_REARRANGING_NODES`; a constant added, as BART's ``final_logits_bias``),
        else ``None``. With autograd's record of ``t``, walked back through rearranging nodes to a
        weight layer's node (an in-place op on the layer's output, a ReLU(inplace=True), is a node
        of its own); without (no grad), ``t`` must share the storage of a weight layer's output that
        no in-place op has changed since."""
        node = t.grad_fn
        if node is not None:
            made = {id(fn): name for _, name, _, fn in self.weight_outputs if fn is not None}
            shifted = False
            while node is not None and id(node) not in made:
                kind = type(node).__name__.rstrip("0123456789")
                live = [fn for fn, _ in node.next_functions if fn is not None]
                shift = kind in ("AddBackward", "SubBackward") and len(live) == 1  # plus a tensor, no grad
                if kind not in _REARRANGING_NODES and not shift:
                    return None
                shifted = shifted or shift
                node = live[0] if len(live) == 1 else None
            if node is None:
                return None
            name = made[id(node)]
            return name if not shifted or self._constant_shift(t, node) else None
        for ref, name, version, _ in self.weight_outputs:
            out = ref()
            if out is not None and version is not None and _storage_of(out) is _storage_of(t) \
                    and _version(out) == version:
                return name
        return None

    def _constant_shift(self, t: torch.Tensor, node: Any) -> bool:
        """Whether ``t`` is the output of the layer whose autograd node is ``node`` plus the same
        values for every example (a bias buffer: BART's ``final_logits_bias``), not plus a term
        that varies with the input (``5 * x + fc(h)``, whose std is not the head's)."""
        last = self.last_weight_output
        out = last[1] if last is not None and last[0] is node else None
        if out is None or out.shape != t.shape or t.dim() == 0 or t.shape[0] < 2 or not t.is_floating_point():
            return False
        with torch.no_grad():  # t - out = the shift, up to the rounding of the add: a few ulps of t
            diff = t.detach().double() - out.detach().double()
            ulp = torch.finfo(t.dtype).eps * float(t.detach().abs().max().double())
            return bool((diff - diff[:1]).abs().max() <= 4 * ulp)

    def record_output_stats(self, layer: _Layer, out: torch.Tensor) -> None:
        """The partials and sample of a non-empty ``out``, with the saturation thresholds of a
        saturating activation and the dead units of one of the ReLU family."""
        flat = self.flat(out)
        act = layer.activation if layer.layer_type == "activation" else None
        saturating = act in _SATURATING
        below, above = (_saturation_thresholds(act, layer.limits, self.th.saturation_level)
                        if saturating else ((), ()))
        dead = hi = None
        if _host_ok(flat):  # Python floats, stacked for the whole pass in _reduce
            units = _unit_layout(out.shape, layer.unit_dim) if act in _RELU_FAMILY else None
            parts, peak = _host_partials(flat, units, self.scratch_for(flat))
            if peak is not None:  # dead units: units <= 0 everywhere (their peaks also gave the max)
                dead = (peak <= 0).sum().item() / peak.numel()
        else:
            if act in _RELU_FAMILY:  # dead units: units <= 0 everywhere; their peaks also give the max
                peak = _unit_peak(flat.view(out.shape), layer.unit_dim)
                dead, hi = (peak <= 0).to(peak.dtype).mean(), peak.amax()
            parts = self.partials(flat, hi)
        self.fwd.append(_Pending(layer.name, "forward", parts, self.sampler.sample(flat),
                                 flat.numel(), below, above, dead,
                                 {"saturating": saturating, "dead": dead is not None}))

    def flat(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` detached and flattened (float32 for half types)."""
        x = t.detach() if t.requires_grad else t
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        return x.view(-1) if x.is_contiguous() else x.reshape(-1)

    def scratch_for(self, flat: torch.Tensor) -> Callable[[], torch.Tensor] | None:
        """A per-probe scratch buffer like ``flat`` for ``flat - mean``, allocated on first use
        (CPU tensors rarely need one); ``None`` for a non-contiguous ``flat``."""
        if not flat.is_contiguous():
            return None

        def scratch() -> torch.Tensor:
            key = (flat.numel(), flat.dtype, flat.device)
            if key not in self.scratch:
                self.scratch[key] = torch.empty_like(flat)
            return self.scratch[key]

        return scratch

    def partials(self, flat: torch.Tensor, hi: torch.Tensor | None = None) -> torch.Tensor:
        """:func:`_partials` with a per-probe scratch buffer for ``flat - mean``."""
        return _partials(flat, self.scratch_for(flat), hi)

    def record_weight(self, layer: _Layer) -> None:
        """Statistics of the weight ``layer`` used, once per probe, in the layer's forward hook (the
        weight the layer just used is then in cache); see :func:`_host_weight` for the host path."""
        w = _weight_of(layer)
        if w is None or id(w) in self.weight_ids:
            return
        self.weight_ids.add(id(w))
        flat = self.flat(w)
        transposed = _units_in_dim1(layer.module)  # units in dim 1: ConvTranspose, HF Conv1D
        if _host_ok(flat):  # finished in _weight_rows_host
            parts, p = _host_weight(flat, w.shape, transposed, self.sampler)
            sample = self.placeholder(flat, 0)
        else:
            parts, sample = self.partials(flat), self.sampler.sample(flat)
            p = _projections(flat.view(w.shape), transposed, self.sampler)
        self.projections.append((p, flat.numel() // p.shape[0], flat))
        meta = {"units": int(w.shape[1] if transposed else w.shape[0])}
        self.weights.append(_Pending(layer.name, "weight", parts, sample, flat.numel(), meta=meta))

    def param_grad_hook(self, key: int) -> Callable[[torch.Tensor], None]:
        """A tensor hook for the weight with ``id`` ``key``: its gradient's statistics are taken as
        the backward produces it (while it is in cache)."""
        return lambda g: self.record_param_grad(key, g)

    def record_param_grad(self, key: int, g: torch.Tensor | None) -> None:
        """``[sum, sum of squares]`` of the gradient ``g`` of the weight with ``id`` ``key``."""
        if g is None:
            return
        flat = self.flat(g)
        # one pass each: sum and sum of squares (var = E[g^2] - mean^2; for gradients |mean| << std)
        if _host_ok(flat):
            vec: Any = [flat.sum().item(), torch.dot(flat, flat).item()]
        else:
            vec = torch.stack([flat.sum(), torch.dot(flat, flat)])
        self.pgrads[key] = (vec, flat.numel())

    # -- backward
    def grad_hooks(self) -> list[Any]:
        """Hook ``dL/d(out)`` of every recorded output, in one loop after the forward: a pre-hook on
        the autograd node that made ``out`` (taken when ``out`` was recorded, so that a later
        in-place change of ``out`` does not redirect it), reading the gradient of ``out``'s output
        slot, the gradient a tensor hook registered in the layer's hook would see; a tensor hook for
        a leaf. A node pre-hook runs after the tensor hooks of ``out``; when the user registered
        tensor hooks on ``out`` after the layer returned (a gradient-scaling hook), a tensor hook is
        put in their place instead, ahead of them, so that they do not change what is recorded.
        Returns the handles of the tensor hooks (the caller removes them: a leaf, or an output the
        user keeps, outlives the probe)."""
        handles = []
        for name, fn, nr, out, before in self.grad_targets:
            if nr < 0:
                handles.append(fn.register_hook(lambda g, name=name: self.record_grad(name, g)))
            elif len(out._backward_hooks or ()) > before:
                handle = out.register_hook(lambda g, name=name: self.record_grad(name, g))
                hooks = out._backward_hooks  # ordered: move ours to where the layer's hook stood
                items = list(hooks.items())
                mine = items.pop()
                items.insert(before, mine)
                hooks.clear()
                hooks.update(items)
                handles.append(handle)
            else:
                fn.register_prehook(lambda gs, name=name, nr=nr: self.record_grad(name, gs[nr]))
        self.grad_targets = []
        return handles

    def record_grad(self, name: str, g: torch.Tensor | None) -> None:
        if g is None or g.numel() == 0:
            return
        flat = self.flat(g)
        if _host_ok(flat) and not self.bins:
            # no histogram: a gradient's min, max and sample serve only to tell (and measure) a
            # non-finite one, which sum and ||g||^2 tell already (barring an overflow of ||g||^2)
            n = flat.numel()
            total, sq = flat.sum().item(), torch.dot(flat, flat).item()
            if math.isfinite(total) and math.isfinite(sq):
                parts: Any = _finish_host(flat, n, total, sq, 0.0, 0.0, self.scratch_for(flat))
                self.bwd.append(_Pending(name, "backward", parts, self.placeholder(flat), n))
                return
        if _host_ok(flat):
            parts = _host_partials(flat, scratch=self.scratch_for(flat))[0]
        else:
            parts = self.partials(flat)
        self.bwd.append(_Pending(name, "backward", parts, self.sampler.sample(flat), flat.numel()))

    def placeholder(self, like: torch.Tensor, size: int = 1) -> torch.Tensor:
        """A stand-in sample of ``size`` zeros (cached) where the sample would be read for nothing:
        a finite gradient when no histogram is asked for (backward records have no quantiles),
        a host-path weight until it proves non-finite."""
        key = (like.dtype, like.device, size)
        if key not in self.scratch:
            self.scratch[key] = torch.zeros(size, dtype=like.dtype, device=like.device)
        return self.scratch[key]

    def pass_hook(self, module: nn.Module, args: tuple, output: Any) -> None:
        """Forward hook of a pass-through module (see :func:`~initlab.probe.classify._passes_through`):
        its output carries the same weight layer's signal as its input."""
        inp, out = _first_tensor(args), _first_tensor(output)
        if inp is None or out is None or out is inp:
            return
        entry = self.sources.get(id(inp))
        if entry is not None and entry[0]() is inp:
            self.sources[id(out)] = (weakref.ref(out), entry[1])
        if not _is_norm(module):  # a norm's output has unit second moment: no producer
            entry = self.producers.get(id(inp))
            if entry is not None and entry[0]() is inp:
                self.producers[id(out)] = (weakref.ref(out), entry[1])

    # -- module stack (owner of functional calls)
    def push_hook(self, name: str) -> Callable:
        def hook(module: nn.Module, args: tuple) -> None:
            self.stack.append((name, module))
        return hook

    def pop_hook(self, module: nn.Module, args: tuple, output: Any) -> None:
        if self.stack:
            self.stack.pop()

    # -- module hooks
    def module_hook(self, qualname: str, layer_type: str, act: tuple | None, path: str = "") -> Callable:
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            t = _first_tensor(output)
            if t is None:
                return
            self.busy = True
            try:
                with _no_torch_function():
                    layer = self._new_layer(qualname, layer_type, type(module).__name__, module)
                    layer.path = path
                    if act is not None:
                        layer.activation, layer.limits = act
                    self.record_forward(layer, t, _first_tensor(args))
                    if layer_type in _WEIGHT_TYPES:
                        self.record_weight(layer)
            finally:
                self.busy = False
        return hook

    def on_functional(self, act: str, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
        owner_name, owner = self.stack[-1] if self.stack else ("", self.model)
        if self.stack and (_torch_activation(owner) is not None or id(owner) in self.leaves):
            return
        if not isinstance(out, torch.Tensor):
            return
        key = (owner_name, act)
        k = self.fn_counts.get(key, 0) + 1
        self.fn_counts[key] = k
        base = f"{owner_name + '.' if owner_name else ''}forward.{act}_{k}"
        if not self.wants_functional(base):
            return
        layer = _Layer(base, len(self.layers), "activation", getattr(func, "__name__", act))
        layer.activation = act
        layer.limits = _functional_limits(act, args, kwargs)
        layer.owner = owner_name
        self.layers[base] = layer
        self.record_forward(layer, out, args[0] if args and isinstance(args[0], torch.Tensor) else None)


def _storage_of(t: torch.Tensor) -> torch.Tensor:
    """The tensor whose storage ``t`` views (its ``_base``), or ``t`` itself when it is no view."""
    return t if t._base is None else t._base


def _version(t: torch.Tensor) -> int | None:
    """``t``'s version counter (bumped by every in-place op on its storage); ``None`` for an
    inference tensor, which has none."""
    try:
        return t._version
    except RuntimeError:
        return None


class _FunctionalCapture(TorchFunctionMode):
    """Records the outputs of functional activations called while active (see module docstring)."""

    def __init__(self, session: _Session) -> None:
        super().__init__()
        self.session = session

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        s = self.session
        if not s.busy:
            act = _functional_activation(func)
            if act is not None:
                s.busy = True
                try:
                    s.on_functional(act, func, args, kwargs, out)
                finally:
                    s.busy = False
        return out
