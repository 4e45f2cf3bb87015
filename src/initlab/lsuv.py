"""LSUV: layer-sequential unit-variance initialization (Mishkin & Matas, 2016).

A data-dependent init: start from orthonormal weights, then walk the layers in forward order and
rescale each layer's weight until the layer's output ("activation" of the Linear / conv, i.e. the
pre-activation of the following nonlinearity) has standard deviation ``target_std`` on one batch.

How this implementation differs from the reference PyPI package ``lsuv`` (same algorithm):

* no module-level state: everything lives in one call;
* layers are taken in the order the forward pass *calls* them (not registration order);
* one calibration forward pass does all layers: each layer's forward hook rescales the weight,
  recomputes just that layer on its cached inputs, and hands the corrected output downstream, so a
  model of ``L`` layers costs 1 model forward (+ 1 verification forward) instead of ``~2L``;
  the forward is cut short (a private exception from the hook) once every handled layer has run;
* the model's weights are restored bit for bit if anything fails, and hooks and every module's
  train/eval flag are restored always.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from initlab.errors import InitlabError
from initlab.init import orthogonal_

__all__ = ["HANDLED_TYPES", "LSUVLayer", "LSUVResult", "lsuv_"]


#: Module types whose weight LSUV rescales (subclasses included).
HANDLED_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d, nn.Conv2d, nn.Conv3d,
    nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
    nn.MultiheadAttention,
)

#: Module types LSUV refuses: their recurrent weights are applied many times per forward, so one
#: scale factor cannot set "the layer's output std" (and torch may fuse them into one kernel).
UNSUPPORTED_TYPES: tuple[type[nn.Module], ...] = (nn.RNNBase, nn.RNNCellBase)


class _StopForward(Exception):
    """Raised from a hook to cut the forward short once every handled layer has run."""


@dataclass(frozen=True)
class LSUVLayer:
    """What LSUV did to one layer.

    Attributes:
        name: qualified module name (``""`` for the model itself).
        kind: module class name, e.g. ``"Linear"``.
        iterations: rescalings applied (0 if the layer was already within ``tol``).
        initial_std: output std on the batch before rescaling (after the orthonormal pre-init).
        final_std: output std on the batch after LSUV, measured by a clean verification forward
            (``nan`` if the layer was not called by the forward).
        scale: the product of all factors applied to the weight.
        layer_calls: single-layer recomputations used for this layer (one per rescaling).
        converged: ``abs(final_std - target_std) <= tol`` (plus the weight dtype's rounding,
            ``eps * target_std``: float32 cannot hit a target bit-exactly, so ``tol=0`` means
            "as close as the dtype allows").
        shares_weight_with: for a layer whose weight tensor is shared with (tied to) a layer
            calibrated earlier in the forward, that layer's name: the shared tensor is rescaled
            once, at its first use, and this layer is left as it is (``None`` otherwise).
    """

    name: str
    kind: str
    iterations: int
    initial_std: float
    final_std: float
    scale: float
    layer_calls: int
    converged: bool
    shares_weight_with: str | None = None


@dataclass
class LSUVResult:
    """Result of :func:`lsuv_`: one :class:`LSUVLayer` per handled layer, in forward order.

    Attributes:
        layers: per-layer outcome.
        target_std, tol, max_iter: the settings used.
        forward_passes: full model forward calls used (calibration + verification; each may be
            cut short after the last handled layer).
        layer_calls: single-layer recomputations used in total.
        skipped: handled layers the forward never called (kept at their pre-init).
        seed: ``generator.initial_seed()`` (``None`` without a generator), copied into records.
    """

    layers: list[LSUVLayer]
    target_std: float
    tol: float
    max_iter: int
    forward_passes: int
    layer_calls: int = 0
    skipped: list[str] = field(default_factory=list)
    seed: int | None = None

    @property
    def converged(self) -> bool:
        """True when every called layer that owns its weight ended within ``tol`` of
        ``target_std`` (layers sharing an earlier layer's weight are not counted)."""
        return all(layer.converged for layer in self.layers
                   if layer.name not in self.skipped and layer.shares_weight_with is None)

    @property
    def records(self) -> list[dict[str, Any]]:
        """Tidy records (``experiment="lsuv"``): per layer the stats ``iterations``,
        ``initial_std``, ``final_std``, ``scale``, ``layer_calls``; plus one
        ``forward_passes`` record with ``layer=None``."""
        rows: list[dict[str, Any]] = []
        for layer in self.layers:
            for stat in ("iterations", "initial_std", "final_std", "scale", "layer_calls"):
                rows.append({
                    "experiment": "lsuv", "scheme": "lsuv", "activation": None,
                    "layer": layer.name, "stat": stat, "value": getattr(layer, stat),
                    "epoch": None, "seed": self.seed, "kind": layer.kind,
                    "target_std": self.target_std, "tol": self.tol,
                })
        rows.append({
            "experiment": "lsuv", "scheme": "lsuv", "activation": None, "layer": None,
            "stat": "forward_passes", "value": self.forward_passes, "epoch": None, "seed": self.seed,
        })
        return rows

    def table(self) -> str:
        """A fixed-width text table, one row per layer."""
        head = f"{'layer':<24} {'kind':<18} {'iters':>5} {'std before':>11} {'std after':>10} {'scale':>10}"
        lines = [head, "-" * len(head)]
        for layer in self.layers:
            lines.append(
                f"{layer.name or '(model)':<24} {layer.kind:<18} {layer.iterations:>5d} "
                f"{layer.initial_std:>11.4g} {layer.final_std:>10.4g} {layer.scale:>10.4g}"
            )
        lines.append(
            f"target std {self.target_std:g} +- {self.tol:g}; forward passes {self.forward_passes}; "
            f"single-layer calls {self.layer_calls}; converged: {self.converged}"
        )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _scalable_weight(module: nn.Module) -> torch.Tensor:
    """The weight LSUV rescales: ``out_proj.weight`` for attention, ``weight`` otherwise."""
    if isinstance(module, nn.MultiheadAttention):
        return module.out_proj.weight
    return module.weight


def _orthonormal_(module: nn.Module, generator: torch.Generator | None) -> None:
    """Orthonormal weights, zero biases (the LSUV pre-init). Attention: q, k, v blocks each
    orthonormal, ``out_proj`` orthonormal."""
    if isinstance(module, nn.MultiheadAttention):
        if module.in_proj_weight is not None:
            orthogonal_(module.in_proj_weight, generator=generator, chunks=3)
        else:
            for w in (module.q_proj_weight, module.k_proj_weight, module.v_proj_weight):
                orthogonal_(w, generator=generator)
        orthogonal_(module.out_proj.weight, generator=generator)
        for b in (module.in_proj_bias, module.out_proj.bias, module.bias_k, module.bias_v):
            if b is not None:
                b.zero_()
        return
    orthogonal_(module.weight, generator=generator)
    if getattr(module, "bias", None) is not None:
        module.bias.zero_()


def _is_real(value: Any) -> bool:
    """A real number (Python or NumPy scalar), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _first_output(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


def _std(output: Any) -> float:
    y = _first_output(output)
    return float(y.detach().double().std()) if y.numel() > 1 else float("nan")


def _check_std(std: float, name: str, kind: str) -> None:
    if not math.isfinite(std):
        raise InitlabError(
            f"LSUV: layer {name!r} ({kind}) has a non-finite output std ({std}) on the batch: "
            "check the batch and the layers before it (and pass a batch of more than one element)"
        )
    if std == 0.0:
        raise InitlabError(
            f"LSUV: layer {name!r} ({kind}) has output std 0 on the batch (constant or dead output), "
            "so no rescaling can reach the target: check the batch and the layers before it"
        )


def _check_batch(batch: Any) -> list[torch.Tensor]:
    """All tensors in ``batch``; raise on empty / non-finite / unsupported types."""
    if isinstance(batch, torch.Tensor):
        tensors = [batch]
    elif isinstance(batch, Mapping):
        tensors = [v for v in batch.values() if isinstance(v, torch.Tensor)]
    elif isinstance(batch, Sequence) and not isinstance(batch, (str, bytes)):
        tensors = [v for v in batch if isinstance(v, torch.Tensor)]
    else:
        raise TypeError(
            f"LSUV: batch of type {type(batch).__name__} is not supported: pass a tensor, "
            "a tuple/list of tensors (model(*batch)) or a dict of tensors (model(**batch))"
        )
    if not tensors:
        raise InitlabError("LSUV: the batch holds no tensor: pass the model's input tensor(s)")
    for t in tensors:
        if t.numel() == 0 or (t.dim() > 0 and t.shape[0] == 0):
            raise InitlabError(
                f"LSUV: the batch is empty (shape {tuple(t.shape)}): pass at least one example "
                "(LSUV needs a representative batch, e.g. 64-512 examples)"
            )
        if t.is_floating_point() or t.is_complex():
            if not bool(torch.isfinite(t).all()):
                raise InitlabError(
                    f"LSUV: the batch (shape {tuple(t.shape)}) contains NaN or inf: clean or impute "
                    "the data before initialising"
                )
    return tensors


def _call(model: nn.Module, batch: Any) -> Any:
    if isinstance(batch, torch.Tensor):
        return model(batch)
    if isinstance(batch, Mapping):
        return model(**batch)
    return model(*batch)


def lsuv_(
    model: nn.Module,
    batch: Any,
    *,
    target_std: float = 1.0,
    tol: float = 0.1,
    max_iter: int = 10,
    orthogonal: bool = True,
    generator: torch.Generator | None = None,
    verify: bool = True,
) -> LSUVResult:
    r"""Layer-sequential unit-variance init, in place: orthonormal weights, then per layer in
    forward order rescale the weight until the layer's output std on ``batch`` is ``target_std``.

    For each handled layer (Linear, Conv1-3d, ConvTranspose1-3d, MultiheadAttention), with
    :math:`y` its output on the batch and :math:`\hat\sigma(y)` the (unbiased) std over **all**
    elements of :math:`y` (examples, units and positions pooled; with a batch of one example it is
    the spread over that example's units, and a single-element output is an error):

    .. math::

        W \leftarrow W \cdot \frac{\sigma_{target}}{\hat\sigma(y)}
        \quad\text{until}\quad |\hat\sigma(y) - \sigma_{target}| \le tol
        \quad\text{(at most max\_iter times).}

    With zero biases :math:`y` is linear in :math:`W`, so one rescaling lands exactly on the target.

    What "output" means: for Linear / conv / transposed conv, the module's own output (the
    pre-activation of the next nonlinearity), measured before anything that follows it: with
    ``Conv -> BatchNorm -> ReLU`` it is the conv output, not the normalised one (batch norm would
    undo any rescaling anyway). For ``nn.MultiheadAttention``, the attention output
    (first element of the returned tuple, after ``out_proj``); the rescaled weight is
    ``out_proj.weight``, while the q/k/v in-projection gets only the orthonormal pre-init (as the
    reference implementation). ``out_proj`` is not handled as a separate Linear (attention never
    calls it as a module).

    Biases: with ``orthogonal=True`` every handled layer's biases are zeroed with the orthonormal
    pre-init (as the paper's reference code); with ``orthogonal=False`` weights and biases are kept
    and only the weight is rescaled (the loop then may need more than one iteration).

    Other modules (norms, embeddings, activations, ...) are run but left untouched. The model runs
    in eval mode (dropout off, batch norm on running statistics); each module's train/eval flag is
    restored afterwards. A module called several times in one forward is calibrated on its first
    call; a weight tensor shared by several modules (tied weights) is rescaled once, for the first
    of them to run, and the others are reported with ``shares_weight_with`` (and a warning).
    Parametrized weights (``weight_norm``, ``spectral_norm``) are refused: they are recomputed on
    every forward. ``tol`` is widened by the weight dtype's rounding (``eps * target_std``), so
    ``tol=0`` stops after one rescaling instead of chasing the last bit. Models containing
    attention run the forward with autograd enabled (no backward is done) so that torch's fused
    attention fast path, which bypasses module calls, stays off.

    Args:
        model: the network, modified in place.
        batch: one batch of inputs: a tensor (``model(batch)``), a tuple/list (``model(*batch)``)
            or a dict (``model(**batch)``); on the model's device.
        target_std: :math:`\sigma_{target}` > 0 (paper: 1).
        tol: tolerance on the std, >= 0 (paper: 0.1).
        max_iter: most rescalings per layer, >= 1 (paper: 10).
        orthogonal: do the orthonormal pre-init (Saxe et al. 2014) with zero biases first.
        generator: torch generator for the orthonormal pre-init, on the model's device (``None``:
            torch's global generator, as in ``torch.nn.init`` and :mod:`initlab.init`).
        verify: run one more clean forward to measure every layer's final std (recommended).

    Returns:
        :class:`LSUVResult` (per layer: iterations, initial and final std, scale; ``.records``,
        ``.table()``); warns if some layer did not converge or was never called.

    Raises:
        InitlabError: bad settings; an empty batch or one with NaN/inf; a model with a recurrent
            module (``nn.LSTM``, ``nn.GRU``, ``nn.RNN``, cells) or none of the handled layers; a layer
            with a parametrized weight, or whose output std is 0 or non-finite (named). The weights
            are left bit-identical.
        TypeError: ``model`` is not an ``nn.Module`` or ``batch`` is not a tensor / tuple / dict.

    Source: D. Mishkin, J. Matas, "All you need is a good init", ICLR 2016.

    >>> import torch
    >>> from initlab.models import mlp
    >>> net = mlp(20, 64, 4, 10, "relu")
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(256, 20, generator=g)
    >>> result = lsuv_(net, x, generator=g)
    >>> [layer.name for layer in result.layers]
    ['fc1', 'fc2', 'fc3', 'fc4', 'out']
    >>> all(abs(layer.final_std - 1.0) <= 0.1 for layer in result.layers)
    True
    >>> result.forward_passes
    2
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"LSUV: model must be a torch.nn.Module, got {type(model).__name__}")
    if not (_is_real(target_std) and math.isfinite(target_std) and target_std > 0):
        raise InitlabError(f"LSUV: target_std={target_std!r} is invalid: pass a finite number > 0")
    if not (_is_real(tol) and math.isfinite(tol) and tol >= 0):
        raise InitlabError(f"LSUV: tol={tol!r} is invalid: pass a finite number >= 0")
    if isinstance(max_iter, bool) or not isinstance(max_iter, numbers.Integral) or max_iter < 1:
        raise InitlabError(f"LSUV: max_iter={max_iter!r} is invalid: pass an integer >= 1")
    target_std, tol, max_iter = float(target_std), float(tol), int(max_iter)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"LSUV: generator must be a torch.Generator or None, got {type(generator).__name__}")

    handled: dict[nn.Module, str] = {}
    inner_out_proj: set[nn.Module] = set()
    has_attention = False
    for name, module in model.named_modules():
        if isinstance(module, UNSUPPORTED_TYPES):
            raise InitlabError(
                f"LSUV cannot handle module {name or '(model)'!r} ({type(module).__name__}): recurrent "
                "weights are reused every time step, so one output std per layer is undefined; "
                "initialise it separately (e.g. initlab.init.orthogonal_) and LSUV a model without it"
            )
        if isinstance(module, nn.MultiheadAttention):
            inner_out_proj.add(module.out_proj)
        if isinstance(module, (nn.MultiheadAttention, nn.TransformerEncoderLayer,
                               nn.TransformerDecoderLayer)):
            has_attention = True
        if isinstance(module, HANDLED_TYPES) and module not in handled:
            handled[module] = name
    for m in inner_out_proj:
        handled.pop(m, None)
    for module, name in handled.items():
        for p in module.parameters(recurse=False):
            if isinstance(p, nn.parameter.UninitializedParameter):
                raise InitlabError(
                    f"LSUV: layer {name!r} ({type(module).__name__}) is lazy and not initialised yet: "
                    "run one forward pass first"
                )
        holder = module.out_proj if isinstance(module, nn.MultiheadAttention) else module
        if "weight" not in holder._parameters:  # parametrize, or the hook-based weight_norm
            raise InitlabError(
                f"LSUV: layer {name!r} ({type(module).__name__}) has a parametrized weight (weight_norm, "
                "spectral_norm, torch.nn.utils.parametrize): it is recomputed on every forward, so "
                "rescaling it does nothing; run LSUV before adding the parametrization"
            )
    if not handled:
        raise InitlabError(
            f"LSUV: model {type(model).__name__} has no Linear, ConvNd, ConvTransposeNd or "
            "MultiheadAttention layer to rescale"
        )
    _check_batch(batch)

    # Snapshot: restored bit for bit if anything below fails.
    snapshot = {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}
    modes = {m: m.training for m in model.modules()}
    hooks: list[Any] = []
    state: dict[str, Any] = {"passes": 0, "layer_calls": 0}
    order: list[nn.Module] = []
    info: dict[nn.Module, dict[str, Any]] = {}
    busy: set[nn.Module] = set()

    def run_forward() -> None:
        state["passes"] += 1
        grad_ctx = torch.enable_grad() if has_attention else torch.no_grad()
        with grad_ctx:
            try:
                _call(model, batch)
            except _StopForward:
                pass

    def calibrate_hook(module: nn.Module, args: Any, kwargs: Any, output: Any) -> Any:
        if module in busy or module in info:
            return None  # our own recomputation, or a second call of a shared module
        name, kind = handled[module], type(module).__name__
        std = _std(output)
        _check_std(std, name, kind)
        weight = _scalable_weight(module)
        # the dtype's rounding: float32 cannot land on the target bit-exactly (tol=0)
        slack = tol + target_std * max(torch.finfo(weight.dtype).eps, 1e-12)
        owner = next((handled[m] for m in order if _scalable_weight(m) is weight), None)
        entry = {"initial_std": std, "iterations": 0, "scale": 1.0, "slack": slack, "shares": owner}
        info[module] = entry
        order.append(module)
        new_output = None
        while owner is None and abs(std - target_std) > slack and entry["iterations"] < max_iter:
            factor = target_std / std
            with torch.no_grad():
                weight.mul_(factor)
            entry["scale"] *= factor
            entry["iterations"] += 1
            busy.add(module)
            try:
                new_output = module(*args, **kwargs)
            finally:
                busy.discard(module)
            state["layer_calls"] += 1
            std = _std(new_output)
            _check_std(std, name, kind)
        entry["last_std"] = std
        if len(info) == len(handled):
            raise _StopForward
        return new_output

    final: dict[nn.Module, float] = {}

    def measure_hook(module: nn.Module, args: Any, output: Any) -> None:
        if module not in final:
            final[module] = _std(output)
        if len(final) == len(handled):
            raise _StopForward

    try:
        model.eval()
        if orthogonal:
            with torch.no_grad():
                for module in handled:
                    _orthonormal_(module, generator)
        for module in handled:
            hooks.append(module.register_forward_hook(calibrate_hook, with_kwargs=True))
        run_forward()
        for h in hooks:
            h.remove()
        hooks.clear()
        if verify:
            for module in handled:
                hooks.append(module.register_forward_hook(measure_hook))
            run_forward()
    except BaseException:
        with torch.no_grad():
            for k, v in model.state_dict(keep_vars=True).items():
                v.copy_(snapshot[k])
        raise
    finally:
        for h in hooks:
            h.remove()
        for m, training in modes.items():
            m.training = training

    layers: list[LSUVLayer] = []
    skipped: list[str] = []
    called = order + [m for m in handled if m not in info]
    for module in called:
        name, kind = handled[module], type(module).__name__
        if module not in info:
            skipped.append(name)
            layers.append(LSUVLayer(name, kind, 0, float("nan"), float("nan"), 1.0, 0, False))
            continue
        entry = info[module]
        # verify: measured by a clean forward; otherwise the last std seen in calibration
        fstd = final.get(module, float("nan")) if verify else entry["last_std"]
        layers.append(LSUVLayer(
            name, kind, entry["iterations"], entry["initial_std"], fstd, entry["scale"],
            entry["iterations"], bool(abs(fstd - target_std) <= entry["slack"]), entry["shares"],
        ))
    result = LSUVResult(layers, float(target_std), float(tol), max_iter, state["passes"],
                        state["layer_calls"], skipped,
                        generator.initial_seed() if generator is not None else None)
    if skipped:
        warnings.warn(f"LSUV: layer(s) {', '.join(map(repr, skipped))} were not called by the forward "
                      "pass on this batch and keep their pre-init weights", stacklevel=2)
    tied = [layer for layer in layers if layer.shares_weight_with is not None]
    if tied:
        warnings.warn("LSUV: " + ", ".join(f"layer {t.name!r} shares its weight with {t.shares_weight_with!r}"
                                           for t in tied)
                      + ": a shared weight is rescaled once, at its first use", stacklevel=2)
    bad = [layer.name for layer in layers
           if layer.name not in skipped and layer.shares_weight_with is None and not layer.converged]
    if bad:
        warnings.warn(f"LSUV: layer(s) {', '.join(map(repr, bad))} did not reach std {target_std:g} +- "
                      f"{tol:g} within max_iter={max_iter}", stacklevel=2)
    return result
