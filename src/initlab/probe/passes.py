"""The probe's two passes around its hooks: the forward (the model called, then ONE sync of every
hook's partials, the weights' and the output's), the loss and the backward (gradients by
:func:`torch.autograd.grad`, then ONE sync)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from initlab.errors import InitlabError
from initlab.probe.hooks import _FunctionalCapture, _no_torch_function, _Session
from initlab.probe.records import OUTPUT_LAYER
from initlab.probe.reductions import _sync
from initlab.probe.tensors import _first_tensor, _split_inputs, _tensor_leaves, _thaw
from initlab.probe.weights import _param_grad_stats, _weight_stats


def _model_args(inputs: Any, params: Sequence[torch.Tensor], backward: bool
                ) -> tuple[list, dict, list[torch.Tensor]]:
    """``(args, kwargs, input_leaves)``: the model's arguments from ``inputs`` (inference-mode
    tensors thawed for a backward, see :func:`~initlab.probe.tensors._thaw`) and, for a backward
    when no parameter requires a gradient, the floating inputs as leaves to differentiate."""
    args, kwargs = _split_inputs(_thaw(inputs) if backward else inputs)
    input_leaves: list[torch.Tensor] = []
    if backward and not any(p.requires_grad for p in params):
        # nothing to differentiate: let gradients reach the layers through the inputs
        input_leaves = [a.detach().requires_grad_() for a in args
                        if isinstance(a, torch.Tensor) and a.is_floating_point()]
        it = iter(input_leaves)
        args = [next(it) + 0 if isinstance(a, torch.Tensor) and a.is_floating_point() else a
                for a in args]
    return args, kwargs, input_leaves


@contextlib.contextmanager
def _autograd(backward: bool) -> Iterator[None]:
    """Autograd on for the probe's own passes with a backward, also under ``torch.no_grad()`` or
    ``torch.inference_mode()``; off without."""
    with contextlib.ExitStack() as modes:
        if backward:
            modes.enter_context(torch.inference_mode(False))
            modes.enter_context(torch.enable_grad())
        else:
            modes.enter_context(torch.no_grad())
        yield


def _forward(model: nn.Module, args: list, kwargs: dict, session: _Session, capture: bool) -> Any:
    """The model's output, its functional activations captured when ``capture``."""
    if capture:
        with _FunctionalCapture(session):
            return model(*args, **kwargs)
    return model(*args, **kwargs)


def _forward_sync(session: _Session, outputs: Any) -> tuple[list[tuple], dict[str, Any]]:
    """``(entries, output)``: the forward's synced entries (the hooks', then the weights') and the
    stats of the model's output, in one sync."""
    weight_entries = _weight_stats(session, session.th) + _output_entry(session, outputs)
    fwd_values = _sync(session.fwd, weight_entries, session.bins)
    output = _output_stats(fwd_values.pop()) if fwd_values and fwd_values[-1][1] == "output" else {}
    return fwd_values, output


def _backward(session: _Session, outputs: Any, targets: Any, loss_fn: Callable[..., torch.Tensor] | None,
              generator: torch.Generator, params: Sequence[torch.Tensor], input_leaves: list[torch.Tensor]
              ) -> tuple[list[tuple], float]:
    """``(entries, loss)``: the backward's synced entries (the gradient hooks', then the parameter
    gradients') and the loss, after one :func:`torch.autograd.grad` (``.grad`` untouched)."""
    loss = _loss(outputs, targets, loss_fn, generator)
    plain: list[tuple] = []
    wanted = [p for p in params if p.requires_grad]
    if loss.requires_grad and wanted + input_leaves:
        torch.autograd.grad(loss.reshape(()), wanted + input_leaves, allow_unused=True)
        plain = _param_grad_stats(session)
    loss_entry = ("_loss", "loss", ["loss"], loss.detach().reshape(1).to(torch.float64), {})
    bwd_values = _sync(session.bwd, plain + [loss_entry], session.bins)
    loss_value = bwd_values.pop()[3][0]
    return bwd_values, loss_value


def _loss(outputs: Any, targets: Any, loss_fn: Callable[..., torch.Tensor] | None,
          generator: torch.Generator) -> torch.Tensor:
    """The scalar the backward starts from: ``loss_fn``'s; with targets and no ``loss_fn``,
    cross-entropy (integer targets) or MSE on the first floating output; else the default loss."""
    if loss_fn is not None:
        loss = loss_fn(outputs) if targets is None else loss_fn(outputs, targets)
    elif targets is not None:
        floats = [t for t in _tensor_leaves(outputs) if t.is_floating_point()]
        out = floats[0] if floats else _first_tensor(outputs)
        if isinstance(targets, torch.Tensor) and not targets.is_floating_point():
            loss = F.cross_entropy(out, targets)
        else:
            loss = F.mse_loss(out, targets)
    else:
        loss = _default_loss(outputs, generator)
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise InitlabError(f"loss_fn returned {shape}: return a scalar (e.g. reduction='mean')")
    return loss


def _default_loss(outputs: Any, generator: torch.Generator) -> torch.Tensor:
    """A fixed random projection of the outputs (see :func:`~initlab.probe.probe`)."""
    leaves = [t for t in _tensor_leaves(outputs) if t.is_floating_point() and t.requires_grad]
    if not leaves:
        leaves = [t for t in _tensor_leaves(outputs) if t.is_floating_point()]
    if not leaves:
        raise InitlabError("the model returned no floating-point tensor: pass loss_fn= to reduce its output")
    total = None
    for t in leaves:
        r = torch.randn(tuple(t.shape), generator=generator, dtype=torch.float32).to(t.device, t.dtype)
        batch = t.shape[0] if t.dim() > 0 else 1
        term = (t * r).sum() / max(batch, 1)
        total = term if total is None else total + term
    return total


def _output_entry(session: _Session, outputs: Any) -> list[tuple]:
    """The forward sync's entry for the model's first floating-point output tensor: its exact
    partials ``[mean, ss, min, max]`` (none when the output holds no float tensor)."""
    floats = [t for t in _tensor_leaves(outputs) if t.is_floating_point() and t.numel() > 0]
    if not floats:
        return []
    flat = session.flat(floats[0])
    with _no_torch_function():
        parts = session.partials(flat)
    meta = {"n": flat.numel(), "shape": list(floats[0].shape), "from_layer": session.output_source(floats[0])}
    return [(OUTPUT_LAYER, "output", ["mean", "ss", "min", "max"], parts, meta)]


def _output_stats(entry: tuple) -> dict[str, Any]:
    """``{mean, std, shape, from_layer}`` of the output from its synced entry (NaN when it has a
    NaN/inf); ``from_layer``: the weight layer that made it (see :meth:`_Session.output_source`)."""
    _, _, _, (mean, ss, lo, hi), meta = entry
    finite = math.isfinite(lo) and math.isfinite(hi)
    std = math.sqrt(max(ss, 0.0) / meta["n"]) if finite else math.nan
    return {"mean": mean if finite else math.nan, "std": std, "shape": meta["shape"],
            "from_layer": meta["from_layer"]}
