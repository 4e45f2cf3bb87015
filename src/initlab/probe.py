"""Signal-propagation probe: per-layer forward and backward statistics of any PyTorch model.

:func:`probe` runs ONE forward and ONE backward pass through a model and records, for every
layer (by default every ``Linear`` / ``Conv`` / ``ConvTranspose`` output and every activation
output, module or functional), where the signal vanishes, explodes, saturates, dies or stays
symmetric:

* **forward** (``kind="forward"``) — ``mean, std, min, max, q01, q50, q99`` of the layer's output
  (its *activation*; for a Linear/Conv layer the *pre-activation* of the next nonlinearity),
  ``nonfinite_fraction``, ``zero_fraction``; for saturating activations ``saturation``; for the
  ReLU family ``dead_fraction``; and what :mod:`initlab.graph.moments` predicts for it
  (``predicted_mean``, ``predicted_std``, ``local_predicted_std``: see :func:`probe`);
* **output** (``kind="output"``, layer :data:`OUTPUT_LAYER`) — ``mean, std`` of the model's output;
* **backward** (``kind="backward"``) — ``grad_mean, grad_std, grad_norm, nonfinite_fraction`` of
  ``dL/d(layer output)``;
* **weight** (``kind="weight"``) — ``weight_mean, weight_std, weight_norm, nonfinite_fraction``,
  ``distinct_units`` (symmetry) and, with ``scheme=``, ``expected_weight_std`` (what the layer's
  fans predict under that scheme);
* **param_grad** (``kind="param_grad"``) — ``param_grad_std, param_grad_norm,
  grad_to_weight_ratio`` (``||dL/dW|| / ||W||``);
* **hist** / **grad_hist** — counts over ``bins`` fixed bins spanning the layer's ``[min, max]``.

Moments, extremes and dead units are exact; quantiles, zero/saturation fractions and histograms
are read from a fixed seeded sample of at most ``max_samples`` entries per tensor (see
:func:`probe`). Each hook reduces its tensor to four exact partials (sum-based mean, centred sum
of squares, min, max) on the tensor's own device and copies its sample (no host sync; on the CPU
the partials are read as Python floats at once, since reading a CPU value is no device sync, and
the few reductions per tensor are the whole per-tensor cost); the hooks on layer outputs'
gradients are pre-hooks on the autograd nodes that made them, attached in one loop after the
forward. A weight's statistics are taken once per probe, in its layer's forward hook (while the
weight is in cache, see :func:`_host_weight`), and a parameter's gradient statistics in a hook
on the weight as the backward produces the gradient. Work that no record needs is skipped: on the CPU, without
histograms (``bins=0``), a finite gradient is reduced to its sum and sum of squares only (its
extremes and sample would serve only the histogram). After each pass ONE batched reduction per (device, dtype)
sorts all samples together and reads quantiles, counts and histograms from them (NumPy on the
CPU, torch on other devices: the same operations), and everything is copied to the host with ONE
``.tolist()`` per pass (per device): one after the forward, one after the backward.
Module and parameter hooks are removed in a ``finally`` (also when the forward or the loss
raises); gradients are taken with :func:`torch.autograd.grad`, so parameters' ``.grad`` are never
touched; training flags, ``requires_grad`` and buffers (BatchNorm running statistics) are
restored; no weight changes. The probe's own passes run with autograd on, also when called under
``torch.no_grad()`` or ``torch.inference_mode()`` (inference-mode input tensors are copied).

Functional activations (``torch.tanh(x)`` inside a ``forward``) are captured with a
:class:`torch.overrides.TorchFunctionMode` that sees every torch call the model really makes
(so data-dependent control flow works, unlike ``torch.fx`` symbolic tracing, which the
measurements deliberately do not use; only the prediction traces the model, after the passes).
They are named ``"<owner>.forward.<fn>_<k>"``, e.g.
``"forward.tanh_1"`` for the first ``tanh`` called in the root model's ``forward`` and
``"block1.forward.relu_2"`` for the second ``relu`` in submodule ``block1``. Calls made inside an
activation module (``nn.Tanh`` calls ``torch.tanh``) are not counted twice.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import math
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from initlab.errors import InitlabError
from initlab.fans import compute_fans
from initlab.records import records_to_csv, records_to_json

__all__ = ["probe", "ProbeResult", "Verdict", "Thresholds", "STATS", "VERDICT_KINDS", "OUTPUT_LAYER",
           "NOTE_LAYER"]

#: Stat names the probe emits (stable: other modules and the report read them).
STATS: tuple[str, ...] = (
    "mean", "std", "min", "max", "q01", "q50", "q99", "nonfinite_fraction", "zero_fraction",
    "saturation", "dead_fraction", "grad_mean", "grad_std", "grad_norm", "weight_mean",
    "weight_std", "weight_norm", "expected_weight_std", "distinct_units", "param_grad_std",
    "param_grad_norm", "grad_to_weight_ratio", "count", "predicted_mean", "predicted_std",
    "local_predicted_std",
)

#: Verdict kinds, in the order :meth:`ProbeResult.verdicts` reports them.
VERDICT_KINDS: tuple[str, ...] = (
    "nonfinite", "vanishing", "exploding", "vanishing_gradient", "exploding_gradient",
    "saturated", "dead", "symmetric", "logits", "mismatch",
)

#: The pseudo-layer of the records about the model's output (``kind="output"``: its ``mean``,
#: ``std``, ``predicted_std``); not in :attr:`ProbeResult.layers`.
OUTPUT_LAYER = "(output)"
#: The pseudo-layer of the probe's notes (``kind="note"``, the text in the record's ``note``).
NOTE_LAYER = "(probe)"

_QUANTILES = (0.01, 0.5, 0.99)
_SATURATING = ("tanh", "softsign", "sigmoid", "hardsigmoid", "hardtanh", "relu6")
_RELU_FAMILY = ("relu", "relu6", "leaky_relu", "prelu", "rrelu")

# ---- activation identification ------------------------------------------------------------------

_ACT_MODULES: dict[type, str] = {
    nn.Identity: "linear", nn.ReLU: "relu", nn.ReLU6: "relu6", nn.LeakyReLU: "leaky_relu",
    nn.PReLU: "prelu", nn.RReLU: "rrelu", nn.ELU: "elu", nn.SELU: "selu", nn.CELU: "celu",
    nn.GELU: "gelu", nn.SiLU: "silu", nn.Mish: "mish", nn.Softplus: "softplus",
    nn.Softsign: "softsign", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.Hardtanh: "hardtanh",
    nn.Hardsigmoid: "hardsigmoid", nn.Hardswish: "hardswish", nn.Tanhshrink: "tanhshrink",
    nn.LogSigmoid: "logsigmoid",
}

_FUNCTIONAL: dict[Any, str] = {}


def _register_functional(name: str, *names: str) -> None:
    for dotted in names:
        owner_name, _, attr = dotted.rpartition(".")
        owner = {"torch": torch, "F": F, "Tensor": torch.Tensor}[owner_name]
        fn = getattr(owner, attr, None)
        if fn is not None:
            _FUNCTIONAL[fn] = name


_register_functional("tanh", "torch.tanh", "torch.tanh_", "Tensor.tanh", "Tensor.tanh_", "F.tanh")
_register_functional("sigmoid", "torch.sigmoid", "torch.sigmoid_", "Tensor.sigmoid", "Tensor.sigmoid_",
                     "F.sigmoid")
_register_functional("relu", "torch.relu", "torch.relu_", "Tensor.relu", "Tensor.relu_", "F.relu",
                     "F.relu_")
_register_functional("relu6", "F.relu6")
_register_functional("leaky_relu", "F.leaky_relu", "F.leaky_relu_")
_register_functional("prelu", "F.prelu", "torch.prelu")
_register_functional("rrelu", "F.rrelu", "F.rrelu_")
_register_functional("elu", "F.elu", "F.elu_")
_register_functional("selu", "F.selu", "torch.selu", "torch.selu_")
_register_functional("celu", "F.celu", "torch.celu", "torch.celu_")
_register_functional("gelu", "F.gelu")
_register_functional("silu", "F.silu")
_register_functional("mish", "F.mish")
_register_functional("softplus", "F.softplus")
_register_functional("softsign", "F.softsign")
_register_functional("hardtanh", "F.hardtanh", "F.hardtanh_")
_register_functional("hardsigmoid", "F.hardsigmoid")
_register_functional("hardswish", "F.hardswish")


def _module_activation(module: nn.Module) -> tuple[str, tuple[float, float] | None] | None:
    """``(activation name, hardtanh limits or None)`` of an activation module, else ``None``."""
    name = _ACT_MODULES.get(type(module))
    if name is None:
        for cls, cand in _ACT_MODULES.items():
            if cls is not nn.Identity and isinstance(module, cls):
                name = cand
                break
    if name is None:
        return None
    if name == "gelu" and getattr(module, "approximate", "none") == "tanh":
        name = "gelu_tanh"
    limits = None
    if isinstance(module, nn.Hardtanh):
        limits = (float(module.min_val), float(module.max_val))
    return name, limits


def _functional_limits(name: str, args: tuple, kwargs: dict) -> tuple[float, float] | None:
    if name == "relu6":
        return (0.0, 6.0)
    if name != "hardtanh":
        return None
    lo = kwargs.get("min_val", args[1] if len(args) > 1 else -1.0)
    hi = kwargs.get("max_val", args[2] if len(args) > 2 else 1.0)
    return (float(lo), float(hi))


def _layer_type(module: nn.Module) -> str | None:
    """Category of a default-probed module: linear, conv, conv_transpose, activation; else None."""
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        return "conv_transpose"
    if isinstance(module, nn.modules.conv._ConvNd):
        return "conv"
    if _module_activation(module) is not None:
        return "activation"
    return None


_WEIGHT_TYPES = ("linear", "conv", "conv_transpose")

#: Modules a weight layer's output passes through on its way to the activation that consumes it
#: (for ``layer.activation`` and the gain of ``expected_weight_std``): norm layers re-standardise
#: their input, so ``conv -> BatchNorm -> ReLU`` takes the ReLU's gain, as
#: :func:`initlab.init_model` does; also dropout, identity, flatten and pooling (the same modules
#: ``initlab.apply`` follows). Functional pass-throughs (``F.dropout``, ``x.view``) are not followed.
_NORMS: tuple[type, ...] = (
    nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm,
    nn.LocalResponseNorm, *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)
_PASS_THROUGH: tuple[type, ...] = (
    *_NORMS,
    nn.modules.dropout._DropoutNd, nn.Identity, nn.Flatten, nn.Unflatten,
    nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd, nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
)

#: torch.nn classes whose ``forward`` calls no functional activation (besides the activation
#: modules, whose own calls are not counted): a model built only from these (exact types) has no
#: functional activations to capture, so the probe skips the TorchFunctionMode and its hooks.
_NO_FUNCTIONAL: frozenset[type] = frozenset(_ACT_MODULES) | frozenset(
    getattr(nn, name) for name in """
    Sequential ModuleList ModuleDict Linear Bilinear Conv1d Conv2d Conv3d ConvTranspose1d ConvTranspose2d
    ConvTranspose3d BatchNorm1d BatchNorm2d BatchNorm3d LayerNorm GroupNorm InstanceNorm1d InstanceNorm2d
    InstanceNorm3d Dropout Dropout1d Dropout2d Dropout3d AlphaDropout Flatten Unflatten Embedding MaxPool1d
    MaxPool2d MaxPool3d AvgPool1d AvgPool2d AvgPool3d AdaptiveAvgPool1d AdaptiveAvgPool2d AdaptiveAvgPool3d
    AdaptiveMaxPool1d AdaptiveMaxPool2d AdaptiveMaxPool3d Upsample ZeroPad2d ConstantPad1d ConstantPad2d
    ConstantPad3d""".split() if hasattr(nn, name)
)

#: Runs the hooks' own reductions outside the functional-capture mode (no per-op Python dispatch);
#: a no-op context where torch lacks it.
_no_torch_function = getattr(torch._C, "DisableTorchFunction", contextlib.nullcontext)

# ---- thresholds, verdicts ----------------------------------------------------------------------


@dataclass(frozen=True)
class Thresholds:
    """When :meth:`ProbeResult.verdicts` calls a layer unhealthy, and what counts as saturated.

    Attributes:
        vanishing: forward ``std`` below ``vanishing`` times the first layer's of the same kind
            (weight-layer outputs and activation outputs are compared separately) is vanishing;
            backward ``grad_norm`` below ``vanishing`` times the LAST layer's (where the backward
            pass starts) is a vanishing gradient. Default ``1e-3``. The gradient is compared by
            its norm ``||dL/da||`` (= ``sqrt(B)`` times the per-example RMS norm, ``B`` the batch,
            the same for every layer), not its per-element std: the norm is what backprop
            through a layer's Jacobian preserves when the layer is healthy (dynamical isometry),
            while the per-element std also shrinks with the number of elements per example, e.g.
            by ``1 / (H W)`` through global average pooling, which would flag a healthy CNN.
        exploding: the same ratios above ``exploding`` (default ``1e3``) are exploding.
        saturated: ``saturation`` above this fraction is saturated (default ``0.5``).
        dead: ``dead_fraction`` above this fraction is dead (default ``0.5``).
        saturation_level: an output counts as saturated when ``|a| > level`` (tanh, softsign),
            ``a > level * max_val`` or ``a < level * min_val`` (hardtanh, relu6), or
            ``a < 1 - level`` or ``a > level`` (sigmoid, hardsigmoid). Default ``0.99``.
        symmetry_rtol, symmetry_atol: two units of a weight layer count as one when their
            weight rows (length ``k``) differ by at most ``sqrt(k) * (atol + rtol * max|W|)`` in
            Euclidean norm (tested on 8 fixed random projections; rows equal within
            ``atol + rtol * max|W|`` entry-wise always pass).
        logits_low, logits_high: the model's output std outside ``[logits_low, logits_high]``
            (default ``[0.3, 3]``) is a ``logits`` verdict. Over 10 classes, iid logits of std 3
            give the argmax a median softmax weight of 0.66 and a first cross-entropy of 5.1 (twice
            ``log 10 = 2.3``); std 8 gives 0.96 and 12.4: the softmax starts saturated. Below 0.3 the
            output barely depends on the input (by design after a zeroed head: then ignore it).
            ``logits_low=0`` and ``logits_high=math.inf`` turn it off.
        mismatch: the relative tolerance of the ``mismatch`` verdict (default ``0.25``): a layer's
            measured ``std`` off its ``local_predicted_std`` by more than a factor ``1 + tol``
            either way, where ``tol = mismatch * max(1, sqrt(mismatch_units / units))`` and
            ``units`` are the layer's features (channels for a conv). Why: the std estimated from
            ``n`` entries has a standard error of ``std / sqrt(2 n)`` (negligible here), but the
            entries of one unit share its weights: the part of its mean square set by its weight row
            (``w_j^T S w_j``, ``S`` the batch's second-moment matrix) is one draw per unit, so over
            ``U`` units the measured second moment spreads by up to ``sqrt(2 / U)`` relative, the
            std by up to ``1 / sqrt(2 U)``. The default ``0.25`` at ``128`` units is 4 such
            standard errors (``4 / sqrt(256)``), and widens as ``1 / sqrt(units)`` below (a head
            of 10 classes: ``0.89``). The comparison is local (each layer against what its own
            measured input predicts), so the finite-width drift that builds up along depth (the
            end-to-end ``predicted_std`` of a healthy 30-layer ReLU MLP at width 256 is off by
            20-50 %) cannot trigger it. ``math.inf`` turns it off.
        mismatch_units: see ``mismatch`` (default ``128``; ``1`` keeps ``mismatch`` at every width).

    Raises:
        InitlabError: a non-positive, non-finite or boolean threshold, ``vanishing >= exploding``,
            a fraction outside ``[0, 1]``, ``saturation_level`` outside ``(0.5, 1]``,
            ``logits_low`` negative or not below ``logits_high``.

    >>> Thresholds(vanishing=1e-2).exploding
    1000.0
    """

    vanishing: float = 1e-3
    exploding: float = 1e3
    saturated: float = 0.5
    dead: float = 0.5
    saturation_level: float = 0.99
    symmetry_rtol: float = 1e-4
    symmetry_atol: float = 1e-12
    logits_low: float = 0.3
    logits_high: float = 3.0
    mismatch: float = 0.25
    mismatch_units: int = 128

    def __post_init__(self) -> None:
        def number(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        for name in ("vanishing", "exploding", "symmetry_rtol"):
            v = getattr(self, name)
            if not (number(v) and v > 0):
                raise InitlabError(f"Thresholds.{name}={v!r} is invalid: pass a finite number > 0")
        if self.vanishing >= self.exploding:
            raise InitlabError(f"Thresholds.vanishing={self.vanishing!r} >= exploding={self.exploding!r}: "
                               "pass vanishing < exploding (defaults 1e-3 and 1e3)")
        for name in ("saturated", "dead"):
            v = getattr(self, name)
            if not (number(v) and 0.0 <= v <= 1.0):
                raise InitlabError(f"Thresholds.{name}={v!r} is invalid: pass a fraction in [0, 1]")
        if not (number(self.saturation_level) and 0.5 < self.saturation_level <= 1.0):
            raise InitlabError(f"Thresholds.saturation_level={self.saturation_level!r} is invalid: pass a "
                               "fraction in (0.5, 1] (at or below 0.5 every sigmoid output would count)")
        if not (number(self.symmetry_atol) and self.symmetry_atol >= 0):
            raise InitlabError(f"Thresholds.symmetry_atol={self.symmetry_atol!r} is invalid: pass a finite "
                               "number >= 0")
        lo, hi = self.logits_low, self.logits_high
        if not (number(lo) and lo >= 0 and isinstance(hi, (int, float)) and not isinstance(hi, bool)
                and hi > lo):
            raise InitlabError(f"Thresholds.logits_low={lo!r}, logits_high={hi!r} are invalid: pass "
                               "0 <= logits_low < logits_high (math.inf allowed; defaults 0.3 and 3)")
        tol = self.mismatch
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol > 0:
            raise InitlabError(f"Thresholds.mismatch={self.mismatch!r} is invalid: pass a relative tolerance "
                               "> 0 (e.g. 0.25), or math.inf to turn the verdict off")
        units = self.mismatch_units
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise InitlabError(f"Thresholds.mismatch_units={units!r} is invalid: pass an integer >= 1")

    def mismatch_tolerance(self, units: int | None) -> float:
        """The relative tolerance of the ``mismatch`` verdict for a layer of ``units`` units (see
        ``mismatch``; ``None``: ``mismatch`` itself).

        >>> round(Thresholds().mismatch_tolerance(32), 3), Thresholds().mismatch_tolerance(512)
        (0.5, 0.25)
        """
        if not units or units >= self.mismatch_units:
            return float(self.mismatch)
        return float(self.mismatch) * math.sqrt(self.mismatch_units / units)


@dataclass(frozen=True)
class Verdict:
    """One diagnosis: ``kind`` (see :data:`VERDICT_KINDS`), the first offending ``layer``, a
    one-line ``message`` and the ``value`` that triggered it (a ratio, fraction or count)."""

    kind: str
    layer: str
    message: str
    value: float

    def __str__(self) -> str:
        return self.message


# ---- the result ----------------------------------------------------------------------------------


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if v == 0:
            return "0"
        return f"{v:.3g}"
    return str(v)


class ProbeResult:
    """What :func:`probe` saw: tidy records plus accessors, a table and verdicts.

    Attributes:
        records: list of dicts with keys ``layer, kind, stat, value`` and extras ``index`` (order
            of the layer's first call), ``layer_type`` (``linear``, ``conv``, ``conv_transpose``,
            ``activation``, ``module``), ``module`` (class or function name), ``activation``
            (an activation layer's own activation; for a weight layer the activation that
            its output reaches, directly or through norm, dropout, identity, flatten or pooling
            modules), ``shape`` (forward records), ``bin,
            bin_lo, bin_hi`` (histogram records), ``units`` (``distinct_units``), ``gain`` and
            ``spec`` (``expected_weight_std``), plus ``scheme`` and any ``tags`` given to probe.
            The model's output has records of ``kind="output"`` under the pseudo-layer
            :data:`OUTPUT_LAYER`; each note one of ``kind="note"`` under :data:`NOTE_LAYER`.
            Built on first use (a probe's cost is its passes; materialising thousands of dicts
            is left to whoever reads them).
        layers: layer names in the order of their first call.
        loss: the scalar loss the backward pass started from (``None`` without backward).
        thresholds: the :class:`Thresholds` :meth:`verdicts` uses by default.
        notes: what the probe could not do, one line each (``"prediction: none (...)"``: why no
            layer has a ``predicted_std``).

    ``ProbeResult(records, layers)`` rebuilds a result from records (e.g. read back from JSON).
    """

    def __init__(self, records: Iterable[dict[str, Any]] | None = None, layers: Sequence[str] | None = None,
                 loss: float | None = None, thresholds: Thresholds | None = None, *,
                 build: Callable[[], list[dict[str, Any]]] | None = None,
                 notes: Sequence[str] | None = None) -> None:
        if records is None and build is None:
            raise InitlabError("ProbeResult needs records: pass the records list")
        self._records = list(records) if records is not None else None
        self._build = build
        if layers is None:
            seen: dict[str, int] = {}
            for r in self.records:
                if r.get("kind") not in ("output", "note"):
                    seen.setdefault(r["layer"], r.get("index", len(seen)))
            layers = sorted(seen, key=seen.__getitem__)
        if notes is None:
            notes = [str(r.get("note")) for r in (self.records if records is not None else ())
                     if r.get("kind") == "note"]
        self.layers = list(layers)
        self.loss = loss
        self.notes = list(notes)
        self.thresholds = thresholds if thresholds is not None else Thresholds()
        self._cache: tuple[dict, dict] | None = None
        self._hists: dict[tuple[str, str], list[dict[str, Any]]] = {}

    @property
    def records(self) -> list[dict[str, Any]]:
        if self._records is None:
            assert self._build is not None
            self._records, self._build = self._build(), None
        return self._records

    def _indexes(self) -> tuple[dict[tuple[str, str, str], Any], dict[str, dict[str, Any]]]:
        if self._cache is None:
            index: dict[tuple[str, str, str], Any] = {}
            info: dict[str, dict[str, Any]] = {}
            hists: dict[tuple[str, str], list[dict[str, Any]]] = {}
            for r in self.records:
                kind = r.get("kind")
                if kind in ("hist", "grad_hist"):
                    hists.setdefault((r["layer"], kind), []).append(r)
                    continue
                index.setdefault((r["layer"], kind, r["stat"]), r["value"])
                if r["layer"] not in info:
                    info[r["layer"]] = {k: r[k] for k in ("index", "layer_type", "module", "activation")
                                        if k in r}
                if "shape" in r:
                    info[r["layer"]].setdefault("shape", tuple(r["shape"]))
                if "units" in r:
                    info[r["layer"]].setdefault("units", r["units"])
                if "out_units" in r:
                    info[r["layer"]].setdefault("out_units", r["out_units"])
            self._cache = (index, info)
            self._hists = hists
        return self._cache

    @property
    def _index(self) -> dict[tuple[str, str, str], Any]:
        return self._indexes()[0]

    @property
    def _info(self) -> dict[str, dict[str, Any]]:
        return self._indexes()[1]

    def __repr__(self) -> str:
        return f"ProbeResult({len(self.layers)} layers, loss={_fmt(self.loss)})"

    def _check_layer(self, layer: str) -> None:
        if layer not in self._info:
            raise InitlabError(f"layer {layer!r} was not probed: use one of {', '.join(self.layers)}")

    def info(self, layer: str) -> dict[str, Any]:
        """``{index, layer_type, module, activation, shape}`` of ``layer``."""
        self._check_layer(layer)
        return dict(self._info[layer])

    def stat(self, layer: str, stat: str, kind: str | None = None) -> float:
        """The value of ``stat`` for ``layer`` (``kind`` disambiguates, e.g. ``nonfinite_fraction``
        exists for ``forward``, ``backward`` and ``weight``; without it the first of forward,
        weight, backward, param_grad, output wins). ``stat(OUTPUT_LAYER, "std")`` is the model
        output's.

        Raises:
            InitlabError: unknown layer, or a stat the layer does not have (the message lists
                the ones it has).
        """
        self._check_layer(layer)
        kinds = (kind,) if kind is not None else ("forward", "weight", "backward", "param_grad", "output")
        for k in kinds:
            key = (layer, k, stat)
            if key in self._index:
                v = self._index[key]
                return float("nan") if v is None else float(v)
        have = sorted({f"{k}:{s}" for (lay, k, s) in self._index if lay == layer})
        raise InitlabError(
            f"layer {layer!r} has no stat {stat!r}" + (f" of kind {kind!r}" if kind else "")
            + f": it has {', '.join(have)}"
        )

    def series(
        self, stat: str, kind: str = "forward", layer_type: str | Iterable[str] | None = None
    ) -> list[tuple[str, float]]:
        """``[(layer, value), ...]`` of ``stat`` in layer order, for the layers that have it.

        ``layer_type`` keeps only layers whose category (``"linear"``, ``"conv"``,
        ``"conv_transpose"``, ``"activation"``, ``"module"``, or ``"weight"`` for the first three),
        module class name (``"Tanh"``) or activation name (``"tanh"``) matches.
        """
        if isinstance(layer_type, str):
            wanted: set[str] | None = {layer_type}
        else:
            wanted = None if layer_type is None else set(layer_type)
        out = []
        for layer in self.layers:
            key = (layer, kind, stat)
            if key not in self._index:
                continue
            if wanted is not None:
                info = self._info[layer]
                tags = {info.get("layer_type"), info.get("module")}
                if info.get("layer_type") == "activation":
                    tags.add(info.get("activation"))
                if info.get("layer_type") in _WEIGHT_TYPES:
                    tags.add("weight")
                if not tags & wanted:
                    continue
            v = self._index[key]
            out.append((layer, float("nan") if v is None else float(v)))
        return out

    def histogram(self, layer: str, kind: str = "hist") -> tuple[list[float], list[float]]:
        """``(edges, counts)`` of ``layer``'s histogram: ``len(edges) == len(counts) + 1``.
        ``kind="grad_hist"`` gives the gradient's histogram. Non-finite entries are not counted."""
        self._check_layer(layer)
        rows = sorted(self._hists.get((layer, kind), []), key=lambda r: r["bin"])
        if not rows:
            raise InitlabError(f"layer {layer!r} has no {kind!r} histogram (was it probed with bins > 0?)")
        edges = [float(r["bin_lo"]) for r in rows] + [float(rows[-1]["bin_hi"])]
        return edges, [float(r["value"]) for r in rows]

    def table(self) -> str:
        """A fixed-width text table, one row per layer (forward std next to the propagated
        ``predicted_std``, saturation/dead, backward grad std, weight std observed vs expected,
        distinct units)."""
        cols = [("layer", 0), ("type", 0), ("act", 0), ("shape", 0), ("mean", 1), ("std", 1),
                ("pred_std", 1), ("q01", 1), ("q99", 1), ("sat", 1), ("dead", 1), ("grad_std", 1),
                ("w_std", 1), ("w_expect", 1), ("units", 1)]
        rows = []
        for layer in self.layers:
            info = self._info.get(layer, {})

            def get(kind: str, stat: str, layer: str = layer) -> Any:
                return self._index.get((layer, kind, stat))

            shape = info.get("shape")
            rows.append([
                layer, str(info.get("module", "")), str(info.get("activation") or "-"),
                "x".join(str(s) for s in shape) if shape else "-",
                _fmt(get("forward", "mean")), _fmt(get("forward", "std")),
                _fmt(get("forward", "predicted_std")), _fmt(get("forward", "q01")),
                _fmt(get("forward", "q99")), _fmt(get("forward", "saturation")),
                _fmt(get("forward", "dead_fraction")), _fmt(get("backward", "grad_std")),
                _fmt(get("weight", "weight_std")), _fmt(get("weight", "expected_weight_std")),
                _fmt(get("weight", "distinct_units")),
            ])
        widths = [max([len(c[0])] + [len(r[i]) for r in rows]) for i, c in enumerate(cols)]

        def line(cells: list[str]) -> str:
            padded = zip(cells, cols, widths, strict=True)
            return "  ".join(v.rjust(w) if c[1] else v.ljust(w) for v, c, w in padded)

        lines = [line([c[0] for c in cols]), "  ".join("-" * w for w in widths)]
        lines += [line(r) for r in rows]
        return "\n".join(lines)

    def verdicts(self, thresholds: Thresholds | None = None) -> list[Verdict]:
        """Diagnoses, each naming the first offending layer (see :class:`Thresholds`):

        * ``nonfinite`` — any NaN/inf in a layer's output or weight (else in a gradient);
        * ``vanishing`` / ``exploding`` — forward std below ``vanishing`` / above ``exploding``
          times the first layer's of the same kind;
        * ``vanishing_gradient`` / ``exploding_gradient`` — backward ``grad_norm`` relative to the
          last layer's of the same kind, first offender in backward order (see
          :class:`Thresholds` for why the norm and not the per-element std);
        * ``saturated`` — ``saturation > saturated``; ``dead`` — ``dead_fraction > dead``;
        * ``symmetric`` — a weight layer with more than one unit but 1 distinct unit;
        * ``logits`` — the model output's std outside ``[logits_low, logits_high]``;
        * ``mismatch`` — a layer's measured ``std`` off the ``local_predicted_std`` (what
          :func:`initlab.graph.moments.propagate` predicts from its measured input) by more than
          the width's tolerance (see :class:`Thresholds`), first offender in layer order.

        Returns:
            list of :class:`Verdict`, empty when the network looks healthy, in the order of
            :data:`VERDICT_KINDS`.
        """
        th = thresholds or self.thresholds
        out: list[Verdict] = []
        order = {layer: i for i, layer in enumerate(self.layers)}

        # non-finite
        bad = [(order[lay], lay, k, float(v)) for (lay, k, s), v in self._index.items()
               if s == "nonfinite_fraction" and k in ("forward", "weight") and v is not None and v > 0]
        if bad:
            _, lay, k, v = min(bad)
            where = "output" if k == "forward" else "weight"
            out.append(Verdict("nonfinite", lay, f"non-finite: {v:.3g} of the {where} of {lay} is NaN/inf "
                               f"({len({b[1] for b in bad})} layer(s) affected)", v))
        else:
            badg = [(-order[lay], lay, float(v)) for (lay, k, s), v in self._index.items()
                    if s == "nonfinite_fraction" and k == "backward" and v is not None and v > 0]
            if badg:
                _, lay, v = min(badg)
                msg = f"non-finite: {v:.3g} of dL/d(output) of {lay} is NaN/inf"
                out.append(Verdict("nonfinite", lay, msg, v))

        def groups(kind: str, stat: str) -> list[list[tuple[str, float]]]:
            gs = []
            for types in (_WEIGHT_TYPES, ("activation",), ("module",)):
                s = [(lay, v) for lay, v in self.series(stat, kind)
                     if self._info[lay].get("layer_type") in types and math.isfinite(v)]
                if len(s) > 1:
                    gs.append(s)
            return gs

        for kind, stat, backward in (("forward", "std", False), ("backward", "grad_norm", True)):
            hits: dict[str, tuple[int, str, float, str, float]] = {}
            for g in groups(kind, stat):
                seq = list(reversed(g)) if backward else g
                ref_layer, ref = seq[0]
                if ref <= 0:
                    continue
                for lay, v in seq[1:]:
                    ratio = v / ref
                    checks = (("vanishing", ratio < th.vanishing), ("exploding", ratio > th.exploding))
                    for vk, cond in checks:
                        if not cond:
                            continue
                        pos = -order[lay] if backward else order[lay]
                        if vk not in hits or pos < hits[vk][0]:
                            hits[vk] = (pos, lay, ratio, ref_layer, v)
            for vk in ("vanishing", "exploding"):
                if vk not in hits:
                    continue
                _, lay, ratio, ref_layer, v = hits[vk]
                name = vk + ("_gradient" if backward else "")
                limit = th.vanishing if vk == "vanishing" else th.exploding
                what = "gradient norm" if backward else "forward std"
                out.append(Verdict(name, lay, f"{name.replace('_', ' ')}: {what} at {lay} is {v:.3g}, "
                                   f"{ratio:.3g} x that of {ref_layer} (threshold {limit:g})", ratio))
        for vk, stat, limit, label in (("saturated", "saturation", th.saturated, "saturated"),
                                       ("dead", "dead_fraction", th.dead, "dead units")):
            hits2 = [(lay, v) for lay, v in self.series(stat) if v > limit]
            if hits2:
                lay, v = hits2[0]
                out.append(Verdict(vk, lay, f"{vk}: {v:.1%} {label} at {lay} (threshold {limit:.0%}; "
                                   f"{len(hits2)} layer(s) affected)", v))
        sym = []
        for lay, v in self.series("distinct_units", "weight"):
            units = self._info[lay].get("units")
            if v == 1 and units is not None and units > 1:
                sym.append((lay, units))
        if sym:
            lay, units = sym[0]
            out.append(Verdict("symmetric", lay, f"symmetric: {lay} has 1 distinct unit out of {units} "
                               f"(all weight rows equal; {len(sym)} layer(s) affected): identical "
                               "units get identical gradients and stay identical", 1.0))
        out += self._logits_verdict(th) + self._mismatch_verdict(th)
        rank = {k: i for i, k in enumerate(VERDICT_KINDS)}
        out.sort(key=lambda vd: rank[vd.kind])
        return out

    def _logits_verdict(self, th: Thresholds) -> list[Verdict]:
        v = self._index.get((OUTPUT_LAYER, "output", "std"))
        if v is None or not math.isfinite(v) or th.logits_low <= v <= th.logits_high:
            return []
        if v > th.logits_high:
            why = ("if these are logits, the softmax starts saturated (near one-hot guesses, a first "
                   "cross-entropy far above log(classes)): scale the head's weights down, or zero them")
        else:
            why = ("the output barely varies with the input (intended after a zeroed head; else the "
                   "signal shrank on its way: see the std column)")
        return [Verdict("logits", OUTPUT_LAYER, f"logits: the model's output std is {v:.3g} at init, outside "
                        f"[{th.logits_low:g}, {th.logits_high:g}]: {why}", float(v))]

    def _mismatch_verdict(self, th: Thresholds) -> list[Verdict]:
        hits = []
        for lay in self.layers:
            meas, pred = (self._index.get((lay, "forward", s)) for s in ("std", "local_predicted_std"))
            if meas is None or pred is None or not (math.isfinite(meas) and math.isfinite(pred)):
                continue
            mean = self._index.get((lay, "forward", "mean")) or 0.0
            floor = 1e-6 * math.sqrt(meas**2 + mean**2) + 1e-30  # both ~0: agree (a constant output)
            ratio = (meas + floor) / (pred + floor)
            units = self._info[lay].get("out_units")
            tol = th.mismatch_tolerance(units)
            if abs(math.log(ratio)) > math.log1p(tol):
                hits.append((lay, meas, pred, ratio, tol, units))
        if not hits:
            return []
        lay, meas, pred, ratio, tol, units = hits[0]
        width = f" at {units} units" if units else ""
        return [Verdict("mismatch", lay, f"mismatch: the output std of {lay} is {meas:.3g}, {ratio:.3g} x "
                        f"the {pred:.3g} its measured input predicts (tolerance {tol:.0%}{width}; "
                        f"{len(hits)} layer(s) affected): an assumption of the propagation fails here "
                        "(correlated or identical units, weights tied to the input, a module that computes "
                        "something other than its type says)", float(ratio))]

    def to_json(self, *, indent: int | None = None) -> str:
        """The records as a JSON array (NaN/inf become ``null``)."""
        return records_to_json(self.records, indent=indent)

    def to_csv(self) -> str:
        """The records as CSV text (standard record fields first, then the extras)."""
        return records_to_csv(self.records)


# ---- on-device reductions -----------------------------------------------------------------------
#
# Each hook reduces its tensor to four exact partials (one small vector on the tensor's device, no
# host sync) and keeps a fixed sample of it; after the pass, ONE batched reduction per (device,
# dtype) sorts all samples at once and reads quantiles, counts and histograms from them
# (:func:`_reduce`); the results reach the host with one ``.tolist()`` per pass (per device).

#: Columns of a reduced row (:func:`_reduce`), followed by ``bins`` histogram counts. ``extra`` is
#: ``dead_fraction`` (forward, ReLU family) or ``distinct_units`` (weight), else NaN.
_ROW_LAYOUT = ["mean", "std", "min", "max", "_bad", "_k", "_zeros", "_sat", "q01", "q50", "q99",
               "_bin_lo", "_bin_hi", "extra"]


_AMINMAX_FROM = 1 << 20

#: CPU tensors take the host path (see :func:`_host_partials`), the one-pass sum of squares and
#: NumPy's sort (see :func:`_sort_rows`); ``False`` sends them down the device path (the tests
#: compare the two).
_CPU_SHORTCUTS = True

#: The host path reduces a tensor larger than this in slices of this many entries (1 MiB of
#: float32, inside a core's L2 cache): the first reduction over a slice reads it from memory, the
#: others from cache, so a tensor larger than the cache is read from memory once, not three times.
_SLICE_ENTRIES = 1 << 18

_HOST_DTYPES = (torch.float32, torch.float64)


def _host_ok(flat: torch.Tensor) -> bool:
    """Whether ``flat`` takes the host path: a CPU float32/float64 tensor (and the shortcut on)."""
    return _CPU_SHORTCUTS and flat.device.type == "cpu" and flat.dtype in _HOST_DTYPES


def _host_partials(flat: torch.Tensor, units: tuple[int, int, int] | None = None,
                   scratch: Callable[[], torch.Tensor] | None = None
                   ) -> tuple[list[float], torch.Tensor | None]:
    """Host path of :func:`_partials` for a 1-D contiguous CPU float32/float64 ``flat``:
    ``[mean, ss, min, max]`` as Python floats (on the CPU reading a value is not a device sync),
    plus, with ``units = (rows, U, post)`` (``flat`` viewed as ``[rows, U, post]``), each unit's
    peak, its ``max`` over rows and post: ``[U]`` (whose max is the max).

    Four kernels per tensor, no tensor arithmetic on the results (in a hook, each kernel's first
    call after the layer's own work costs more than its arithmetic): ``sum`` (cascade summation),
    ``dot`` (``||x||^2``), ``amin`` and ``amax`` (the unit peaks instead of ``amax`` when
    ``units`` is given; ``aminmax`` from 1M entries). A tensor longer than :data:`_SLICE_ENTRIES`
    is reduced slice by slice (whole rows when ``units`` is given; NumPy's min/max/dot within
    the loop), slices combined in float64, so that each slice is read from memory once.
    ``ss = ||x||^2 - N mean^2`` (float64) is kept when ``mean^2 <= ss / N`` (``|mean| <= std``),
    where its relative error is at most about twice the two-pass one; otherwise (``|mean| > std``,
    or a non-finite entry) the two-pass ``||x - mean||^2``, with ``x - mean`` written to
    ``scratch()`` when given. NaN propagates into every partial, as in torch."""
    n = flat.numel()
    if units is None:
        step = n if n <= _SLICE_ENTRIES else _SLICE_ENTRIES
    else:
        _, u, post = units
        step = n if n <= _SLICE_ENTRIES else max(1, _SLICE_ENTRIES // (u * post)) * (u * post)
    peak = None
    if step == n:  # one slice (the common case): no lists
        total = flat.sum().item()
        sq = torch.dot(flat, flat).item()
        if units is None:
            # same values; on CPU amin + amax is faster up to ~1M entries, aminmax beyond
            lo_t, hi_t = (flat.amin(), flat.amax()) if n < _AMINMAX_FROM else torch.aminmax(flat)
            lo, hi = lo_t.item(), hi_t.item()
        else:
            lo = flat.amin().item()
            peak = flat.view(-1, u, post).amax(dim=(0, 2))
            hi = peak.max().item()
        return _finish_host(flat, n, total, sq, lo, hi, scratch), peak
    # slice by slice; within the loop NumPy's min/max/dot (faster than torch's on cached data)
    a = flat.numpy()
    total = sq = 0.0
    los: list[float] = []
    his: list[float] = []
    peaks: list[torch.Tensor] = []
    for i in range(0, n, step):
        c = a[i:i + step]
        total += flat[i:i + step].sum().item()
        sq += float(np.dot(c, c))
        los.append(float(c.min()))
        if units is None:
            his.append(float(c.max()))
        else:
            peaks.append(flat[i:i + step].view(-1, u, post).amax(dim=(0, 2)))
    if units is not None:
        peak = torch.stack(peaks).amax(dim=0)
        his = [peak.max().item()]
    return _finish_host(flat, n, total, sq, _nan_min(los), _nan_max(his), scratch), peak


def _finish_host(flat: torch.Tensor, n: int, total: float, sq: float, lo: float, hi: float,
                 scratch: Callable[[], torch.Tensor] | None) -> list[float]:
    """``[mean, ss, lo, hi]`` from ``sum`` and ``||x||^2`` (see :func:`_host_partials`)."""
    mean = total / n
    ss = sq - total * mean
    if not (math.isfinite(ss) and mean * mean * n <= ss):
        d = torch.sub(flat, mean, out=scratch()) if scratch is not None else flat - mean
        ss = torch.dot(d, d).item()
    return [mean, ss, lo, hi]


def _nan_min(values: list[float]) -> float:
    """``min(values)``, NaN when one is NaN (as torch's reductions)."""
    return math.nan if any(v != v for v in values) else min(values)


def _nan_max(values: list[float]) -> float:
    """``max(values)``, NaN when one is NaN (as torch's reductions)."""
    return math.nan if any(v != v for v in values) else max(values)


def _partials(flat: torch.Tensor, scratch: Callable[[], torch.Tensor] | None = None,
              hi: torch.Tensor | None = None) -> torch.Tensor:
    """Exact full-tensor partials of a 1-D ``flat``, stacked on its device: ``[mean, ss, min, max]``
    with ``ss = sum (flat - mean)^2``.

    Device tensors: two-pass, ``ss = ||flat - mean||^2`` (sum, subtract, dot, aminmax; no host
    sync). CPU float32/float64 tensors: :func:`_host_partials` (one pass fewer and no write when
    ``|mean| <= std``, slices kept in cache). ``scratch()`` (same numel and dtype), called only on
    the two-pass path, receives ``flat - mean`` so that no new buffer is allocated per tensor.
    A NaN/inf propagates into every partial (torch semantics). All float arithmetic or
    reductions (comparison kernels returning bool are several times slower on CPU). ``hi``: the
    max when the caller already has it (the ReLU family's dead-unit pass), saving a pass.
    """
    if hi is None and _host_ok(flat):
        vals, _ = _host_partials(flat.contiguous(), scratch=scratch if flat.is_contiguous() else None)
        return torch.tensor(vals, dtype=flat.dtype)
    n = flat.numel()
    total = flat.sum()
    mean = total / n
    # same values; on CPU amin + amax is faster up to ~1M entries, aminmax beyond
    if hi is not None:
        lo = flat.amin()
    else:
        lo, hi = (flat.amin(), flat.amax()) if n < _AMINMAX_FROM else torch.aminmax(flat)
    if flat.device.type == "cpu" and _CPU_SHORTCUTS:
        ss = torch.dot(flat, flat) - total * mean
        m, v = float(mean), float(ss)  # CPU: reading a value is not a device sync
        if math.isfinite(v) and m * m * n <= v:
            return torch.stack([mean, ss, lo, hi])
    d = torch.sub(flat, mean, out=scratch()) if scratch is not None else flat - mean
    return torch.stack([mean, torch.dot(d, d), lo, hi])


def _finish_core(parts: torch.Tensor, ns: Sequence[int]) -> torch.Tensor:
    """``[L, 4]`` partials (see :func:`_partials`) of tensors with ``ns`` entries -> ``[L, 5]``
    ``[mean, std, min, max, bad]``, elementwise (each row equals its one-tensor value): population
    ``std = sqrt(ss / N)``; ``bad = (min - min) + (max - max)`` is exactly 0 when every entry is
    finite and NaN otherwise (min/max propagate NaN and are infinite when an entry is)."""
    n = torch.tensor(list(ns), dtype=parts.dtype, device=parts.device)
    lo, hi = parts[:, 2], parts[:, 3]
    std = (parts[:, 1] / n).sqrt()
    return torch.stack([parts[:, 0], std, lo, hi, (lo - lo) + (hi - hi)], dim=1)


class _Sampler:
    """Deterministic subsample of at most ``max_samples`` entries: seeded indices (drawn with
    replacement, then sorted for a cache-friendly gather: the sample is the same multiset) cached
    per (numel, device) and shared by all probes; plus the projection directions."""

    #: Sample indices and projection directions, shared by all probes (a device probe then copies
    #: nothing to the device after its first call); cleared when it grows.
    _shared: dict[Any, torch.Tensor] = {}

    def __init__(self, max_samples: int | None, seed: int) -> None:
        self.max_samples = max_samples
        self.seed = seed
        if len(self._shared) > 512:
            self._shared.clear()
        self._cache = self._shared

    def directions(self, k: int, like: torch.Tensor, count: int = 8) -> torch.Tensor:
        """``count`` fixed random unit vectors of length ``k``, seeded, cached: the rows of a
        contiguous ``[count, k]`` tensor."""
        key = ("dirs", k, count, self.seed, like.dtype, like.device)
        if key not in self._cache:
            g = torch.Generator().manual_seed(self.seed + 1)
            d = torch.randn(k, count, generator=g, dtype=torch.float64)
            d = (d / d.norm(dim=0, keepdim=True)).T.contiguous()
            self._cache[key] = d.to(like.device, like.dtype)
        return self._cache[key]

    def sample(self, flat: torch.Tensor) -> torch.Tensor:
        """A copy of all entries of the 1-D ``flat`` when there are at most ``max_samples``, else
        a fixed seeded draw (with replacement) of ``max_samples`` of them (a snapshot either way:
        a later in-place change of the tensor does not reach it)."""
        n = flat.numel()
        if self.max_samples is None or n <= self.max_samples:
            return flat.clone()
        key = ("idx", n, self.max_samples, self.seed, flat.device)
        if key not in self._cache:
            g = torch.Generator().manual_seed(self.seed)
            idx = torch.randint(n, (self.max_samples,), generator=g).sort().values
            self._cache[key] = idx.to(flat.device)
        return flat.index_select(0, self._cache[key])


@dataclass
class _Pending:
    """One tensor's partials and sample, waiting for the pass's batched reduction. ``parts``:
    ``[mean, ss, min, max]`` (see :func:`_partials`), a tensor on the tensor's device or, from the
    host path, a list of Python floats (a host-path weight: ``[||W||^2, min, max, sum W]``, see
    :func:`_host_weight`); ``extra`` likewise a 0-d tensor or a float."""

    layer: str
    kind: str
    parts: torch.Tensor | list[float]
    sample: torch.Tensor
    n: int
    below: tuple[float, ...] = ()
    above: tuple[float, ...] = ()
    extra: torch.Tensor | float | None = None
    meta: dict[str, Any] | None = None


#: Most sample entries (rows x padded length) one batch of :func:`_reduce` holds at once.
_BATCH_ENTRIES = 1 << 22


def _chunks(entries: list[_Pending]) -> list[list[int]]:
    """``entries`` split into batches that share a device and dtype and hold at most
    ``_BATCH_ENTRIES`` padded sample entries (rows of similar length together; one row at least):
    one batch per (device, dtype) with the default ``max_samples``."""
    out: list[list[int]] = []
    for idxs in _group_keys(entries).values():
        idxs = sorted(idxs, key=lambda i: entries[i].sample.numel())
        chunk: list[int] = []
        for i in idxs:
            if chunk and (len(chunk) + 1) * entries[i].sample.numel() > _BATCH_ENTRIES:
                out.append(chunk)
                chunk = []
            chunk.append(i)
        out.append(chunk)
    return out


def _reduce(entries: list[_Pending], bins: int) -> list[tuple[list[int], torch.Tensor]]:
    """ONE batched reduction for all ``entries`` of a pass: per batch (see :func:`_chunks`), the
    samples are padded (+inf), sorted together and read with two batched ``searchsorted``; returns
    ``(indices into entries, [len(indices), len(_ROW_LAYOUT) + bins] tensor)`` per batch.

    On each row: ``k`` = finite sampled entries; quantiles by linear interpolation between order
    statistics of the finite entries; ``zeros``, saturation (entries below a ``below`` threshold or
    above an ``above`` one) and the ``bins`` counts over ``[lo, hi]`` (the exact min/max, the
    sample's finite extremes when those are not finite; ``[lo - 0.5, lo + 0.5]`` when ``hi <= lo``)
    are counted among the finite entries, comparisons in float64.
    """
    out = []
    for idxs in _chunks(entries):
        group = [entries[i] for i in idxs]
        if _host_ok(group[0].sample):
            out.append((idxs, torch.from_numpy(_reduce_host(group, bins))))
            continue
        core = _finish_core(_stack_parts(group), [e.n for e in group])
        dtype, device = core.dtype, core.device
        f64 = torch.float64
        samples = [e.sample for e in group]
        if len({s.numel() for s in samples}) == 1:
            padded = torch.stack(samples)
        else:
            padded = _pad_rows(samples, math.inf)
        # padded is a fresh copy: non-finite entries -> +inf and the sort, in place
        srt = _sort_rows_(padded.nan_to_num_(nan=math.inf, posinf=math.inf, neginf=math.inf))
        rows, width = srt.shape
        # k = finite entries (non-finite ones were mapped to +inf, sorted last)
        k = torch.searchsorted(srt, torch.full((rows, 1), math.inf, dtype=srt.dtype, device=device))[:, 0]
        last = (k - 1).clamp_min(0)
        # quantiles: v0 + (pos - i0) * (v1 - v0), the difference in the tensor's dtype
        pos = torch.tensor(_QUANTILES, dtype=f64, device=device) * (k - 1).unsqueeze(1).to(f64)
        i0 = pos.floor().long().clamp_min(0)
        v0 = srt.gather(1, i0)
        v1 = srt.gather(1, torch.minimum(i0 + 1, last.unsqueeze(1)))
        quant = v0.to(f64) + (pos - i0.to(f64)) * (v1 - v0).to(f64)
        quant = torch.where(k.unsqueeze(1) > 0, quant, math.nan).to(dtype)
        # histogram range, float64
        lo, hi = core[:, 2].to(f64), core[:, 3].to(f64)
        first = torch.where(k > 0, srt[:, 0].to(f64), 0.0)
        top = torch.where(k > 0, srt.gather(1, last.unsqueeze(1))[:, 0].to(f64), 0.0)
        lo_eff, hi_eff = _hist_range(torch.where, torch.isfinite, lo, hi, first, top)
        # probes per row, counted "< p": 0, below thresholds (pad -inf), bin edges; counted "<= p":
        # 0, above thresholds (pad +inf), hi
        nb = max(len(e.below) for e in group)
        na = max(len(e.above) for e in group)
        thr = [[0.0, *e.below, *[-math.inf] * (nb - len(e.below)), 0.0, *e.above,
                *[math.inf] * (na - len(e.above))] for e in group]
        thr_t = torch.tensor(thr, dtype=f64, device=device)
        lt = [thr_t[:, :1 + nb]]
        if bins:
            grid = torch.arange(bins, dtype=f64, device=device) / bins
            lt.append(lo_eff.unsqueeze(1) + (hi_eff - lo_eff).unsqueeze(1) * grid)
        upto = torch.cat([thr_t[:, 1 + nb:], hi_eff.unsqueeze(1)], dim=1)
        left, right = _count_below(srt, torch.cat(lt, dim=1), upto)
        zeros = right[:, 0] - left[:, 0]
        k1 = k.unsqueeze(1)
        sat = left[:, 1:1 + nb].sum(dim=1) + (k1 - right[:, 1:1 + na]).clamp_min(0).sum(dim=1)
        head = torch.stack([k, zeros, sat], dim=1).to(dtype)
        if bins:
            counts = torch.cat([left[:, 1 + nb:], right[:, -1:]], dim=1).diff(dim=1).to(dtype)
            rng = torch.stack([lo_eff, hi_eff], dim=1).to(dtype)
        else:
            counts = torch.zeros((rows, 0), dtype=dtype, device=device)
            rng = torch.full((rows, 2), math.nan, dtype=dtype, device=device)
        extra = _stack_extra(group, dtype, device)
        out.append((idxs, torch.cat([core, head, quant, rng, extra, counts], dim=1)))
    return out


def _hist_range(where: Callable, isfinite: Callable, lo: Any, hi: Any, first: Any, top: Any) -> tuple:
    """Each row's histogram range ``(lo_eff, hi_eff)`` (float64 arrays or tensors, with
    ``where``/``isfinite`` of NumPy or torch): the tensor's exact min and max, the sample's
    finite extremes ``first``/``top`` where those are not finite, widened by 0.5 each side for a
    constant row."""
    lo = where(isfinite(lo), lo, first)
    hi = where(isfinite(hi), hi, top)
    positive = hi > lo
    return where(positive, lo, lo - 0.5), where(positive, hi, lo + 0.5)


def _reduce_host(group: list[_Pending], bins: int) -> np.ndarray:
    """:func:`_reduce` of one batch of CPU float32/float64 entries in NumPy, operation for
    operation (same values; a few dozen NumPy calls instead of as many torch ones, whose fixed
    cost dominates at these sizes): ``[len(group), len(_ROW_LAYOUT) + bins]``."""
    dt = group[0].sample.numpy().dtype
    f64 = np.float64
    rows = len(group)
    with np.errstate(all="ignore"):
        parts = np.array([e.parts.tolist() if isinstance(e.parts, torch.Tensor) else e.parts for e in group],
                         dtype=dt).reshape(rows, 4)
        lo32, hi32 = parts[:, 2], parts[:, 3]
        core = np.stack([parts[:, 0], np.sqrt(parts[:, 1] / np.array([e.n for e in group], dtype=dt)),
                         lo32, hi32, (lo32 - lo32) + (hi32 - hi32)], axis=1)
        widths = [e.sample.numel() for e in group]
        width = max(widths)
        if min(widths) == width:
            srt = np.stack([e.sample.numpy() for e in group])
        else:
            srt = np.full((rows, width), np.inf, dtype=dt)
            for r, e in enumerate(group):
                srt[r, :widths[r]] = e.sample.numpy()
        # non-finite entries -> +inf (only a tensor with one has one in its sample: ``bad`` is
        # then NaN), then each row sorted (in place; srt_t shares the memory)
        srt_t = torch.from_numpy(srt)
        all_finite = bool((core[:, 4] == 0).all())
        if not all_finite:
            srt_t.nan_to_num_(nan=math.inf, posinf=math.inf, neginf=math.inf)
        srt.sort(axis=1)
        # k = finite entries (non-finite ones were mapped to +inf, sorted last)
        if all_finite:
            k = np.array(widths, dtype=np.int64)
        else:
            inf = dt.type(np.inf)
            k = np.array([row.searchsorted(inf) for row in srt], dtype=np.int64)
        last = np.maximum(k - 1, 0)
        # quantiles: v0 + (pos - i0) * (v1 - v0), the difference in the tensor's dtype
        pos = np.array(_QUANTILES, dtype=f64) * (k - 1)[:, None].astype(f64)
        i0 = np.maximum(np.floor(pos).astype(np.int64), 0)
        v0 = np.take_along_axis(srt, i0, axis=1)
        v1 = np.take_along_axis(srt, np.minimum(i0 + 1, last[:, None]), axis=1)
        quant = v0.astype(f64) + (pos - i0.astype(f64)) * (v1 - v0).astype(f64)
        quant = np.where(k[:, None] > 0, quant, np.nan).astype(dt)
        # histogram range, float64
        lo, hi = lo32.astype(f64), hi32.astype(f64)
        first = np.where(k > 0, srt[:, 0].astype(f64), 0.0)
        top = np.where(k > 0, srt[np.arange(rows), last].astype(f64), 0.0)
        lo_eff, hi_eff = _hist_range(np.where, np.isfinite, lo, hi, first, top)
        # probes: counted "< p": 0, below thresholds (pad -inf), bin edges; "<= p": 0, above (pad +inf), hi
        nb = max(len(e.below) for e in group)
        na = max(len(e.above) for e in group)
        below = np.array([[0.0, *e.below, *[-np.inf] * (nb - len(e.below))] for e in group], dtype=f64)
        upto = np.array([[0.0, *e.above, *[np.inf] * (na - len(e.above))] for e in group], dtype=f64)
        if bins:
            grid = np.arange(bins, dtype=f64) / bins
            below = np.concatenate([below, lo_eff[:, None] + (hi_eff - lo_eff)[:, None] * grid], axis=1)
        upto = np.concatenate([upto, hi_eff[:, None]], axis=1)
        if dt != f64:  # rounded outwards to the samples' dtype (see _count_below)
            near = below.astype(dt)
            below = np.where(near.astype(f64) < below, np.nextafter(near, dt.type(np.inf)), near)
            near = upto.astype(dt)
            upto = np.where(near.astype(f64) > upto, np.nextafter(near, dt.type(-np.inf)), near)
        left = torch.searchsorted(srt_t, torch.from_numpy(np.ascontiguousarray(below))).numpy()
        right = torch.searchsorted(srt_t, torch.from_numpy(np.ascontiguousarray(upto)), right=True).numpy()
        zeros = right[:, 0] - left[:, 0]
        sat = left[:, 1:1 + nb].sum(axis=1) + np.maximum(k[:, None] - right[:, 1:1 + na], 0).sum(axis=1)
        head = np.stack([k, zeros, sat], axis=1).astype(dt)
        if bins:
            counts = np.diff(np.concatenate([left[:, 1 + nb:], right[:, -1:]], axis=1), axis=1).astype(dt)
            rng = np.stack([lo_eff, hi_eff], axis=1).astype(dt)
        else:
            counts = np.zeros((rows, 0), dtype=dt)
            rng = np.full((rows, 2), np.nan, dtype=dt)
        extra = np.array([np.nan if e.extra is None else float(e.extra) for e in group], dtype=dt)[:, None]
        return np.concatenate([core, head, quant, rng, extra, counts], axis=1)


def _pad_rows(rows: list[torch.Tensor], value: float) -> torch.Tensor:
    """The 1-D ``rows`` stacked into ``[len(rows), longest]``, shorter ones padded with ``value``
    (what ``pad_sequence(rows, batch_first=True, padding_value=value)`` returns, in one ``cat``
    instead of one copy per row)."""
    width = max(r.shape[0] for r in rows)
    tail = rows[0].shape[1:]
    parts = [r if r.shape[0] == width else torch.cat([r, r.new_full((width - r.shape[0], *tail), value)])
             for r in rows]
    return torch.cat(parts).view(len(rows), width, *tail)


def _sort_rows_(x: torch.Tensor) -> torch.Tensor:
    """:func:`_sort_rows` in place (CPU rows with NumPy's in-place sort); returns ``x``."""
    if x.device.type == "cpu" and _CPU_SHORTCUTS and x.is_contiguous():
        x.numpy().sort(axis=1)
        return x
    return x.copy_(x.sort(dim=1).values)


def _count_below(srt: torch.Tensor, below: torch.Tensor, upto: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(left, right)``: per row of the sorted ``srt``, the number of entries ``< p`` for each
    float64 probe ``p`` of ``below`` and ``<= p`` for each of ``upto`` (``[rows, P]`` each),
    compared exactly as in float64. A float32 ``srt`` is searched as it is (no float64 copy), each
    probe rounded outwards to float32: for a float32 ``x``, ``x < p`` iff ``x < up(p)`` and
    ``x <= p`` iff ``x <= down(p)``, ``up(p)`` / ``down(p)`` the nearest float32 at or above / at
    or below ``p``."""
    if srt.dtype == torch.float64:
        return torch.searchsorted(srt, below), torch.searchsorted(srt, upto, right=True)

    def rounded(p: torch.Tensor, outward: float) -> torch.Tensor:
        near = p.to(srt.dtype)
        off = near.to(p.dtype) < p if outward > 0 else near.to(p.dtype) > p
        return torch.where(off, torch.nextafter(near, torch.full_like(near, outward)), near)

    left = torch.searchsorted(srt, rounded(below, math.inf))
    return left, torch.searchsorted(srt, rounded(upto, -math.inf), right=True)


def _sort_rows(x: torch.Tensor) -> torch.Tensor:
    """Each row of a 2-D tensor sorted ascending; CPU rows with NumPy (~20x faster than
    ``torch.sort`` there; same values), others with ``torch.sort`` on their device."""
    if x.device.type == "cpu" and _CPU_SHORTCUTS:
        return torch.from_numpy(np.sort(x.numpy(), axis=1))
    return x.sort(dim=1).values


def _group_keys(entries: list[_Pending]) -> dict[tuple, list[int]]:
    groups: dict[tuple, list[int]] = {}
    for i, e in enumerate(entries):
        groups.setdefault((e.sample.device, e.sample.dtype), []).append(i)
    return groups


def _stack_parts(group: list[_Pending]) -> torch.Tensor:
    """The ``[L, 4]`` partials of ``group`` (one device and dtype, that of the samples): tensors
    stacked, host-path floats in one ``torch.tensor``."""
    like = group[0].sample
    if all(isinstance(e.parts, torch.Tensor) for e in group):
        return torch.stack([e.parts for e in group]).to(like.dtype)  # type: ignore[misc]
    rows = [e.parts.tolist() if isinstance(e.parts, torch.Tensor) else e.parts for e in group]
    return torch.tensor(rows, dtype=like.dtype, device=like.device)


def _stack_extra(group: list[_Pending], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The ``extra`` column of ``group``: ``[L, 1]``, NaN where there is none."""
    vals = [math.nan if e.extra is None else e.extra for e in group]
    if not any(isinstance(v, torch.Tensor) for v in vals):
        return torch.tensor(vals, dtype=dtype, device=device).reshape(-1, 1)
    col = [v.to(device, dtype) if isinstance(v, torch.Tensor) else torch.tensor(v, dtype=dtype, device=device)
           for v in vals]
    return torch.stack(col).reshape(-1, 1)


def _nonfinite_fraction(bad: float, k: float, m: int, n: int) -> float:
    """Host side: exactly 0 when ``bad`` (see :func:`_finish_core`) is 0; else the sample's non-finite
    fraction ``(m - k) / m`` (exact when the sample is the whole tensor), at least ``1 / n``."""
    if bad == 0:
        return 0.0
    return max((m - k) / m, 1.0 / n)


def _saturation_thresholds(act: str, limits: tuple[float, float] | None, level: float
                           ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(below, above)``: an output saturates when it lies below one of ``below`` or above one of
    ``above`` (see :class:`Thresholds`)."""
    if act in ("tanh", "softsign"):
        return (-level,), (level,)
    if act in ("sigmoid", "hardsigmoid"):
        return (1.0 - level,), (level,)
    lo, hi = limits if limits is not None else (-1.0, 1.0)  # hardtanh, relu6
    return ((level * lo,) if lo < 0 else ()), ((level * hi,) if hi > 0 else ())


def _unit_layout(shape: Sequence[int], unit_dim: int) -> tuple[int, int, int]:
    """``(rows, U, post)``: a tensor of ``shape`` viewed as ``[rows, U, post]`` with its units (along
    ``unit_dim``, see :func:`_unit_peak`) in the middle; a 0-d/1-d tensor: every entry a unit."""
    if len(shape) <= 1:
        return 1, math.prod(shape), 1
    ud = unit_dim % len(shape)
    return math.prod(shape[:ud]), shape[ud], math.prod(shape[ud + 1:])


def _unit_peak(x: torch.Tensor, unit_dim: int) -> torch.Tensor:
    """The max of each unit (along ``unit_dim``) over every example and position; a unit is dead
    when its peak is ``<= 0``. A 0-d/1-d ``x``: every entry is a unit."""
    if x.dim() <= 1:
        return x.reshape(-1)
    ud = unit_dim % x.dim()
    return x.amax(dim=[d for d in range(x.dim()) if d != ud])


def _projections(w: torch.Tensor, transposed: bool, sampler: _Sampler) -> torch.Tensor:
    """The units of ``w`` (rows; dim 1 of a transposed-conv weight), each of length ``k``,
    projected on 8 fixed random unit directions: ``[units, 8]`` (one pass over ``w``), computed as
    ``(D R^T)^T`` (``D`` the contiguous ``[8, k]`` directions, ``R`` the rows): the same products,
    about three times as fast on the CPU as ``R D^T`` with its 8-column right-hand side."""
    units = w.shape[1] if transposed else w.shape[0]
    rows = (w.transpose(0, 1) if transposed else w).reshape(units, -1)
    d = sampler.directions(rows.shape[1], rows)
    return (d @ rows.T).T


def _host_weight(flat: torch.Tensor, shape: torch.Size, transposed: bool, sampler: _Sampler
                 ) -> tuple[list[float], torch.Tensor]:
    """Host path of a weight's statistics in its layer's hook (``flat``: 1-D contiguous CPU
    float32/float64), five kernels while the weight is in cache: ``[||W||^2, min, max, sum W]``
    (dot, amin, amax, sum: exact, whatever the matmul precision) and the projections
    (``[units, 8]``, computed outside any autocast); :func:`_weight_rows_host` finishes the rest
    after the pass, in NumPy."""
    sq = torch.dot(flat, flat).item()  # first: the streaming pass brings W into cache
    with torch.autocast("cpu", enabled=False):  # a bf16 autocast would round the projections
        p8 = _projections(flat.view(shape), transposed, sampler)
    return [sq, flat.amin().item(), flat.amax().item(), flat.sum().item()], p8


def _distinct_units(projs: list[torch.Tensor], ks: Sequence[int], wmax: torch.Tensor, rtol: float,
                    atol: float) -> torch.Tensor:
    """Number of distinct units of each weight, from its :func:`_projections` (same device and
    dtype; ``ks`` the row lengths, ``wmax`` the ``max|W|`` of each), in one batch: ``[L]``.

    Rows sorted (stably) by the first projection, two neighbours are the same unit when all 8
    projections differ by at most ``sqrt(k) * (atol + rtol * max|w|)``, which rows equal
    entry-wise within ``atol + rtol * max|w|`` always satisfy, and rows that differ fail with
    probability ~0. A weight with a NaN/inf entry gets NaN (rows cannot be compared).
    """
    units = torch.tensor([p.shape[0] for p in projs], device=wmax.device)
    padded = _pad_rows(projs, math.inf)
    order = torch.argsort(padded[:, :, 0], dim=1, stable=True)
    srt = padded.gather(1, order.unsqueeze(2).expand(-1, -1, padded.shape[2]))
    gaps = (srt[:, 1:] - srt[:, :-1]).abs().amax(dim=2)
    tol = (atol + rtol * wmax) * torch.tensor(ks, dtype=wmax.dtype, device=wmax.device).sqrt()
    valid = torch.arange(gaps.shape[1], device=wmax.device) < (units - 1).unsqueeze(1)
    distinct = 1 + ((gaps > tol.unsqueeze(1)) & valid).sum(dim=1)
    count = torch.where(units <= 1, units, distinct).to(wmax.dtype)
    return torch.where(torch.isfinite(wmax), count, math.nan)  # a NaN/inf weight: unknown


def _first_tensor(obj: Any) -> torch.Tensor | None:
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, Mapping):
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        for o in obj:
            t = _first_tensor(o)
            if t is not None:
                return t
    return None


def _tensor_leaves(obj: Any) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, Mapping):
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensor_leaves(o)]
    return []


# ---- the session: hooks and bookkeeping -----------------------------------------------------------


@dataclass
class _Layer:
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
        self.stack: list[tuple[str, nn.Module]] = []
        self.fn_counts: dict[tuple[str, str], int] = {}
        self.busy = False
        self.skip_types: tuple[type, ...] = tuple(_ACT_MODULES)
        self.wants_functional: Callable[[str], bool] = lambda name: True

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
        if not out.is_floating_point():
            return
        layer.shape = tuple(out.shape)
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
            # pass-through modules, see _PASS_THROUGH) takes it as its consuming activation;
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
        except TypeError:  # pragma: no cover - tensors support weakrefs
            pass
        if self.backward and out.requires_grad:  # dL/d(out): hooked after the pass (grad_hooks)
            fn = out.grad_fn
            # with the user's tensor hooks on ``out`` so far: those registered later must not
            # change what the probe sees (see grad_hooks)
            self.grad_targets.append((layer.name, fn, out.output_nr, out, len(out._backward_hooks or ()))
                                     if fn is not None else (layer.name, out, -1, out, 0))
        if out.numel() == 0:
            return
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
        transposed = layer.layer_type == "conv_transpose"
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
        """Forward hook of a pass-through module (see :data:`_PASS_THROUGH`): its output carries
        the same weight layer's signal as its input."""
        inp, out = _first_tensor(args), _first_tensor(output)
        if inp is None or out is None or out is inp:
            return
        entry = self.sources.get(id(inp))
        if entry is not None and entry[0]() is inp:
            self.sources[id(out)] = (weakref.ref(out), entry[1])
        if not isinstance(module, _NORMS):  # a norm's output has unit second moment: no producer
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
        if self.stack and isinstance(owner, self.skip_types):
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
            try:
                act = _FUNCTIONAL.get(func)
            except TypeError:  # an unhashable callable: not an activation we know
                act = None
            if act is not None:
                s.busy = True
                try:
                    s.on_functional(act, func, args, kwargs, out)
                finally:
                    s.busy = False
        return out


# ---- selection ---------------------------------------------------------------------------------


def _selector(layers: Any) -> tuple[Callable[[str, nn.Module], str | None], Callable[[str], bool], list]:
    """Turn ``layers=`` into (module -> layer_type or None, functional-name predicate, patterns)."""
    if layers is None:
        return (lambda name, m: _layer_type(m)), (lambda name: True), []
    if isinstance(layers, (str, type)) or callable(layers):
        items = [layers]
    elif isinstance(layers, Iterable):
        items = list(layers)
    else:
        raise TypeError(f"layers={layers!r} is invalid: pass a name pattern, an nn.Module subclass, "
                        "a callable (name, module) -> bool, or a list of these")
    patterns: list[str] = []
    types: list[type] = []
    preds: list[Callable] = []
    for it in items:
        if isinstance(it, str):
            patterns.append(it)
        elif isinstance(it, type) and issubclass(it, nn.Module):
            types.append(it)
        elif callable(it):
            preds.append(it)
        else:
            raise TypeError(f"layers entry {it!r} is invalid: pass a name pattern (str), an nn.Module "
                            "subclass, or a callable (name, module) -> bool")

    def choose(name: str, m: nn.Module) -> str | None:
        hit = (any(fnmatch.fnmatchcase(name, p) for p in patterns)
               or (types and isinstance(m, tuple(types))) or any(p(name, m) for p in preds))
        if not hit:
            return None
        return _layer_type(m) or "module"

    def wants(name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in patterns)

    return choose, wants, patterns


# ---- the default loss ------------------------------------------------------------------------------


def _default_loss(outputs: Any, generator: torch.Generator) -> torch.Tensor:
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


def _gain(activation: str | None) -> float:
    """``initlab.gains.gain(activation)`` (forward criterion); 1 for no / a linear activation or
    one :mod:`initlab.gains` does not know (e.g. ``tanhshrink``)."""
    if activation in (None, "linear", "identity"):
        return 1.0
    from initlab import gains  # noqa: PLC0415  (math layer, imported when a scheme is named)

    try:
        return float(gains.gain(activation))
    except (ValueError, TypeError, KeyError):
        return 1.0


# ---- the probe ----------------------------------------------------------------------------------


def probe(
    model: nn.Module,
    inputs: Any,
    targets: Any = None,
    loss_fn: Callable[..., torch.Tensor] | None = None,
    *,
    layers: Any = None,
    bins: int = 64,
    scheme: str | None = None,
    thresholds: Thresholds | None = None,
    train: bool | None = None,
    backward: bool = True,
    functional: bool = True,
    max_samples: int | None = 4096,
    generator: torch.Generator | None = None,
    tags: Mapping[str, Any] | None = None,
    predict: bool = True,
) -> ProbeResult:
    """Run one forward and one backward pass through ``model`` and record per-layer statistics.

    Forward statistics of a layer output ``a`` with ``N`` entries, EXACT over all of them:

    .. math::
        \\mu = \\frac{1}{N}\\sum a_i, \\qquad \\sigma = \\sqrt{\\frac{1}{N}\\sum (a_i - \\mu)^2}

    (``mean``, population ``std``; the centred sum of squares is computed two-pass,
    ``||a - mu||^2``, on devices; on the CPU as ``||a||^2 - N mu^2`` when ``|mu| <= sigma``, where
    its rounding error is at most about twice the two-pass one, and two-pass otherwise), ``min``,
    ``max`` (a NaN/inf propagates into these, as in torch), and ``dead_fraction`` for relu, relu6,
    leaky_relu, prelu, rrelu: the fraction of units (features, the last dim, after a Linear;
    channels, dim 1, after a conv, or for any activation output with >= 3 dims whose producer is
    unknown) that are ``<= 0`` for every example and position in the batch.

    Read from a fixed seeded sample of ``m = min(N, max_samples)`` entries (the whole tensor when
    ``N <= max_samples``; else drawn with replacement, same indices for every call): quantiles
    ``q01, q50, q99`` of the finite entries (linear interpolation, standard error about
    ``sqrt(p (1 - p) / m) / f(q_p)``), ``zero_fraction``, ``saturation`` (tanh, softsign, sigmoid,
    hardsigmoid, hardtanh, relu6; see :class:`Thresholds`) as fractions of ``m`` (standard error
    ``<= 0.5 / sqrt(m)``, 0.008 at the default 4096), and the histogram counts (of the sample's
    finite entries, on ``bins`` equal bins spanning the exact ``[min, max]``).
    ``nonfinite_fraction`` is exactly 0 when every entry is finite (checked exactly); otherwise the
    sample's fraction, at least ``1 / N``.

    Backward: ``grad_mean, grad_std, grad_norm`` of ``dL/da`` (exact), its ``nonfinite_fraction``
    and histogram (``kind="grad_hist"``). Weights (``Linear``/``Conv``/``ConvTranspose``):
    ``weight_mean, weight_std, weight_norm``; ``distinct_units`` (see :class:`Thresholds`; NaN
    for a weight with a NaN/inf entry); with
    ``scheme``, ``expected_weight_std = named_spec(scheme, compute_fans(W.shape, groups=...,
    transposed=...), gain).expected_std`` where ``gain = initlab.gains.gain(activation)`` of the
    activation that consumes the layer's output, directly or through norm layers
    (BatchNorm/LayerNorm/GroupNorm/InstanceNorm/...), Dropout, Identity, Flatten or pooling modules,
    as :func:`initlab.init_model` follows them (so ``conv -> BatchNorm -> ReLU`` gets the ReLU
    gain); 1 when none does, and 1 when no recorded nonlinearity made the layer's *input* (the
    first layer reads the data; a layer after a norm reads unit second moments: He et al. 2015,
    sec. 2.2), again as :func:`initlab.init_model` does. Parameters:
    ``param_grad_std``, ``param_grad_norm``, ``grad_to_weight_ratio = ||dL/dW|| / ||W||``.

    The default loss (no ``loss_fn``): a fixed random projection of the outputs,

    .. math::
        L = \\frac{1}{B} \\sum_{\\text{tensor leaves } y} \\sum_i y_i r_i, \\quad r_i \\sim N(0, 1)

    (``B`` = leading dim of each leaf; ``r`` drawn on the CPU from ``generator``, default seed 0),
    so ``dL/dy = r / B`` at the output, with std about ``1 / B`` whatever the forward scale: the
    backward statistics then measure how the network's Jacobians grow or shrink the gradient
    (vanishing/exploding), not how large the output happened to be (as ``0.5 * ||y||^2`` would).

    The model's output (its first floating-point tensor) gets ``mean`` and ``std`` records under
    :data:`OUTPUT_LAYER` (the ``logits`` verdict reads them).

    With ``predict`` (default), each recorded layer output also gets what the theory predicts for
    it: the model is traced (:func:`initlab.graph.trace`; shapes from the first two examples of
    ``inputs`` when the graph has no op that mixes examples or reads a sequence length — a
    Linear/Conv/Embedding/activation/norm/pool/residual network — else from all of ``inputs``)
    and :func:`initlab.graph.moments.propagate` runs on it with the model's weights (the probe's
    own exact weight statistics) and the moments of the actual input batch (mean, ``E[x^2]`` and
    the cross moment of each floating input; token ids: the embedding's rule). Records:

    * ``predicted_mean``, ``predicted_std``: end to end from the data,
      ``predicted_std = sqrt(E[a^2] - E[a]^2)`` of the propagated moments, which pool examples,
      positions and units exactly as the measured population ``std`` over all entries does (not a
      per-unit std, which would leave out the spread of the units' means). Finite width makes the
      two drift apart along depth (a few % per layer at width 256, compounding);
    * ``local_predicted_std``: the same rules, every recorded layer's output replaced by its
      measured mean and second moment before its consumers read it: what the layer's own measured
      input predicts. None for a layer whose input passed a pooling, attention or recurrent layer
      since the last recorded one (their rules read the cross moment, which is not measured). The
      ``mismatch`` verdict compares it with ``std`` (see :class:`Thresholds`).

    Functional activations are matched to the graph by order (only with ``layers=None``, and only
    when both count the same); a module called twice by call. Where tracing or propagation fails,
    the probe still runs: no prediction, and :attr:`ProbeResult.notes` says why (also when some
    layers have none). ``predict=False`` skips it: the trace costs one forward on two examples (or
    on the whole batch), the two propagations a few ms (about +0.12 on the probe / plain ratio of
    ``benchmarks/probe_overhead.py``); the first call in a process also imports SciPy.

    Args:
        model: any ``nn.Module``; its output may be a tensor or a (nested) tuple/list/dict.
        inputs: a tensor (``model(inputs)``), a tuple/list (``model(*inputs)``) or a dict
            (``model(**inputs)``).
        targets: passed to ``loss_fn(outputs, targets)``. With targets and no ``loss_fn``:
            cross-entropy for integer targets, MSE for floating targets, on the model's first
            floating-point output tensor.
        loss_fn: ``loss_fn(outputs, targets)`` (or ``loss_fn(outputs)`` when ``targets`` is None)
            returning a scalar tensor.
        layers: ``None`` (default: every Linear/Conv/ConvTranspose and activation module, plus
            functional activations), or a name pattern (``fnmatch``, e.g. ``"fc*"``; matches
            module qualified names and functional names like ``"forward.tanh_1"``), an
            ``nn.Module`` subclass, a callable ``(name, module) -> bool``, or a list of these.
            Modules called more than once get one layer per call: ``name``, ``name#2``, ...
        bins: histogram bins per layer (0 disables histograms).
        scheme: a name in :data:`initlab.schemes.NAMED_SCHEMES` whose expected weight std is
            recorded next to the observed one.
        thresholds: :class:`Thresholds` for :meth:`ProbeResult.verdicts` and saturation.
        train: ``True``/``False`` puts the model in train/eval mode for the probe (restored
            after); ``None`` keeps the current mode. In train mode, dropout draws its masks from
            torch's global RNG (the model's randomness, not the probe's); BatchNorm uses batch
            statistics and its running statistics are restored afterwards.
        backward: ``False`` skips the backward pass (forward and weight stats only).
        functional: capture functional activations (``TorchFunctionMode``); skipped anyway for
            a model built only from torch.nn modules (exact types) that call none.
        max_samples: sample size for quantiles, fractions and histograms (``None``: every entry,
            exact but a full sort per layer).
        generator: ``torch.Generator`` for the default loss's projection (CPU); default seed 0.
        tags: extra keys stamped on every record (e.g. ``{"experiment": "tutorial", "seed": 0}``).
        predict: record the propagated prediction of every layer (see above).

    Returns:
        :class:`ProbeResult`.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``; a bad ``layers`` entry; ``generator`` is
            not a ``torch.Generator``.
        InitlabError: bad ``bins``/``max_samples``; unknown ``scheme``; a ``layers`` pattern
            that matches nothing, or a selection (or a model) that yields no probed layer; inputs
            whose tensors are all empty (a batch of 0 examples); lazy modules not yet initialised
            (run one forward first); a loss that is not a scalar; a model output without a
            floating tensor (default loss).
        Exception: whatever the model's forward raises (hooks are removed first).

    Source: the diagnostics of Glorot & Bengio (2010), "Understanding the difficulty of training
    deep feedforward neural networks" (activation/gradient histograms per layer, saturation);
    Schoenholz et al. (2017), "Deep Information Propagation" (signal propagation in depth).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(4, 3), nn.Tanh())
        >>> _ = nn.init.constant_(net[0].weight, 1.0); _ = nn.init.zeros_(net[0].bias)
        >>> res = probe(net, torch.ones(2, 4))
        >>> res.layers
        ['0', '1']
        >>> res.stat("0", "mean"), res.stat("0", "distinct_units")
        (4.0, 1.0)
        >>> [v.kind for v in res.verdicts()]
        ['saturated', 'symmetric', 'logits']
        >>> res.stat("0", "predicted_mean"), res.stat("0", "predicted_std")
        (4.0, 0.0)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model={type(model).__name__} is not an nn.Module: pass a torch.nn.Module")
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 0:
        raise InitlabError(f"bins={bins!r} is invalid: pass an integer >= 0 (0 disables histograms)")
    if max_samples is not None and (isinstance(max_samples, bool) or not isinstance(max_samples, int)
                                    or max_samples < 1):
        raise InitlabError(f"max_samples={max_samples!r} is invalid: pass an integer >= 1, or None (exact)")
    if scheme is not None:
        from initlab.schemes import NAMED_SCHEMES  # noqa: PLC0415
        if scheme not in NAMED_SCHEMES:
            raise InitlabError(f"scheme {scheme!r} is unknown: use one of {', '.join(sorted(NAMED_SCHEMES))}")
    th = thresholds if thresholds is not None else Thresholds()
    if not isinstance(th, Thresholds):
        raise TypeError(f"thresholds={th!r} is not a Thresholds: pass initlab.probe.Thresholds(...)")
    if not isinstance(predict, bool):
        raise TypeError(f"predict={predict!r} is not a bool: pass True or False")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    elif not isinstance(generator, torch.Generator):
        raise TypeError(f"generator={generator!r} is not a torch.Generator: pass "
                        "torch.Generator().manual_seed(seed), or None")

    params = list(model.parameters())
    buffers = list(model.buffers())
    if any(nn.parameter.is_lazy(t) for t in (*params, *buffers)):
        raise InitlabError("the model has uninitialized (lazy) parameters, e.g. of nn.LazyLinear: run one "
                           "forward pass (model(inputs)) before probing; the probe does not initialise them")
    leaves = _tensor_leaves(list(inputs.values()) if isinstance(inputs, Mapping) else inputs)
    if leaves and all(t.numel() == 0 for t in leaves):
        shapes = ", ".join(str(tuple(t.shape)) for t in leaves[:4])
        raise InitlabError(f"inputs have no entries (shape {shapes}): pass a batch of at least one example")
    choose, wants, patterns = _selector(layers)
    session = _Session(model, bins, th, _Sampler(max_samples, seed=0), backward)
    session.wants_functional = wants
    named = list(model.named_modules())
    selected = []
    for name, m in named:
        lt = choose(name or "model", m)
        if lt is not None:
            selected.append((name, m, lt))

    handles: list[Any] = []
    hooked: dict[int, None] = {}  # ids of the weights whose gradients are recorded
    grad_handles: list[Any] = []
    saved_training = {m: m.training for _, m in named}
    saved_rg = [p.requires_grad for p in params]
    saved_buffers = [b.detach().clone() for b in buffers]
    capture_functional = (functional and (layers is None or bool(patterns))
                          and not all(type(m) in _NO_FUNCTIONAL for _, m in named))
    loss_value = None
    try:
        if train is not None:
            model.train(bool(train))
        for name, m, lt in selected:
            act = _module_activation(m) if lt == "activation" else None
            handles.append(m.register_forward_hook(session.module_hook(name or "model", lt, act, name)))
        if any(lt in _WEIGHT_TYPES for _, _, lt in selected):
            for _, m in named:
                if isinstance(m, _PASS_THROUGH):
                    handles.append(m.register_forward_hook(session.pass_hook))
        if capture_functional:
            for name, m in named:
                handles.append(m.register_forward_pre_hook(session.push_hook(name)))
                handles.append(m.register_forward_hook(session.pop_hook))
        if backward:
            for p in params:
                if not p.requires_grad and (p.is_floating_point() or p.is_complex()):
                    p.requires_grad_(True)
            for _, m, lt in selected:  # weights whose gradient statistics are recorded
                w = getattr(m, "weight", None) if lt in _WEIGHT_TYPES else None
                if isinstance(w, torch.Tensor) and w.dim() >= 2 and w.requires_grad and id(w) not in hooked:
                    hooked[id(w)] = None
                    grad_handles.append(w.register_hook(session.param_grad_hook(id(w))))
        args, kwargs = _split_inputs(_thaw(inputs) if backward else inputs)
        input_leaves: list[torch.Tensor] = []
        if backward and not any(p.requires_grad for p in params):
            # nothing to differentiate: let gradients reach the layers through the inputs
            input_leaves = [a.detach().requires_grad_() for a in args
                            if isinstance(a, torch.Tensor) and a.is_floating_point()]
            it = iter(input_leaves)
            args = [next(it) + 0 if isinstance(a, torch.Tensor) and a.is_floating_point() else a
                    for a in args]
        with contextlib.ExitStack() as modes:
            if backward:  # autograd on for the probe's own passes, also under no_grad / inference_mode
                modes.enter_context(torch.inference_mode(False))
                modes.enter_context(torch.enable_grad())
            else:
                modes.enter_context(torch.no_grad())
            if capture_functional:
                with _FunctionalCapture(session):
                    outputs = model(*args, **kwargs)
            else:
                outputs = model(*args, **kwargs)
            for h in handles:
                h.remove()
            handles = []
            grad_handles += session.grad_hooks()
            weight_entries = _weight_stats(session, th) + _output_entry(session, outputs)
            fwd_values = _sync(session.fwd, weight_entries, bins)
            output = _output_stats(fwd_values.pop()) if fwd_values and fwd_values[-1][1] == "output" else {}
            bwd_values: list[tuple] = []
            if backward:
                loss = _loss(outputs, targets, loss_fn, generator)
                plain: list[tuple] = []
                wanted = [p for p in params if p.requires_grad]
                if loss.requires_grad and wanted + input_leaves:
                    torch.autograd.grad(loss.reshape(()), wanted + input_leaves, allow_unused=True)
                    plain = _param_grad_stats(session)
                loss_entry = ("_loss", "loss", ["loss"], loss.detach().reshape(1).to(torch.float64), {})
                bwd_values = _sync(session.bwd, plain + [loss_entry], bins)
                loss_value = bwd_values.pop()[3][0]
        predicted: dict[str, dict[str, float]] = {}
        notes: list[str] = []
        if predict:  # after the passes (hooks gone), in the probe's train/eval mode
            predicted, notes = _predict(model, inputs, session, fwd_values, model.training,
                                        functional_order=layers is None)
    finally:
        for h in handles + grad_handles:
            h.remove()
        for m, flag in saved_training.items():
            if m.training != flag:
                m.training = flag
        for p, flag in zip(params, saved_rg, strict=True):
            if p.requires_grad != flag:
                p.requires_grad_(flag)
        with torch.no_grad():
            for b, old in zip(buffers, saved_buffers, strict=True):
                b.copy_(old)

    for pat in patterns:
        if not any(fnmatch.fnmatchcase(n, pat) for n in session.layers) and not any(
            fnmatch.fnmatchcase(n or "model", pat) for n, _ in named
        ):
            known = [n for n, _ in named if n] + list(session.layers)
            raise InitlabError(f"layers pattern {pat!r} matches no layer: names are {', '.join(known[:40])}")
    if not session.layers:
        known = ", ".join(n for n, _ in named[1:41])
        if layers is not None:
            raise InitlabError(f"layers={layers!r} selects no layer of this model (its modules: {known}): "
                               "pass names, types or a predicate that match")
        raise InitlabError("no layer was probed: the model has no Linear/Conv/ConvTranspose or activation "
                           f"module and calls no functional activation (its modules: {known}); choose some "
                           "with layers=")
    ordered = sorted(session.layers.values(), key=lambda lay: lay.index)
    tag_dict = dict(tags or {})
    session.fwd, session.bwd, session.producers, session.model = [], [], {}, None
    session.sources = {}  # keep only layers
    session.scratch, session.weights, session.projections, session.pgrads = {}, [], [], {}
    session.grad_targets = []
    extra = _Extra(predicted, output, notes)
    return ProbeResult(layers=[lay.name for lay in ordered], loss=loss_value, thresholds=th, notes=notes,
                       build=lambda: _build_records(session, fwd_values, bwd_values, scheme, tag_dict, extra))


def _loss(outputs: Any, targets: Any, loss_fn: Callable[..., torch.Tensor] | None,
          generator: torch.Generator) -> torch.Tensor:
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


def _thaw(obj: Any) -> Any:
    """``obj`` with every inference-mode tensor (made under ``torch.inference_mode()``, which
    autograd cannot save) replaced by a normal copy; containers rebuilt, other values as is."""
    if isinstance(obj, torch.Tensor):
        if not obj.is_inference():
            return obj
        with torch.inference_mode(False):
            return obj.clone()
    if isinstance(obj, Mapping):
        return {k: _thaw(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_thaw(v) for v in obj) if type(obj) in (list, tuple) else obj
    return obj


def _split_inputs(inputs: Any) -> tuple[list, dict]:
    if isinstance(inputs, Mapping):
        return [], dict(inputs)
    if isinstance(inputs, (list, tuple)):
        return list(inputs), {}
    return [inputs], {}


def _weight_of(layer: _Layer) -> torch.Tensor | None:
    w = getattr(layer.module, "weight", None) if layer.layer_type in _WEIGHT_TYPES else None
    return w if isinstance(w, torch.Tensor) and w.dim() >= 2 else None


#: Columns of a weight entry (:func:`_weight_stats`).
_WEIGHT_LAYOUT = ["mean", "std", "min", "max", "_bad", "_k", "extra"]


def _weight_stats(session: _Session, th: Thresholds) -> list[tuple]:
    """The weight entries recorded by the forward hooks, finished in one batch per (device,
    dtype): exact moments and extremes, the finite count of the sample (for the non-finite
    fraction) and the distinct units; no quantiles or histograms (weights have none)."""
    out: list[tuple | None] = [None] * len(session.weights)
    groups: dict[tuple, list[int]] = {}
    for i, e in enumerate(session.weights):
        groups.setdefault((e.sample.device, e.sample.dtype), []).append(i)
    for idxs in groups.values():
        group = [session.weights[i] for i in idxs]
        proj = [session.projections[i] for i in idxs]
        if _host_ok(group[0].sample):
            rows_host = _weight_rows_host(group, proj, th, session.sampler)
            for i, e, row_h in zip(idxs, group, rows_host, strict=True):
                meta = dict(e.meta or {}, m=e.sample.numel(), n=e.n)
                out[i] = (e.layer, "weight", _WEIGHT_LAYOUT, row_h, meta)
            continue
        core = _finish_core(_stack_parts(group), [e.n for e in group])
        samples = _pad_rows([e.sample for e in group], math.nan)
        k = torch.isfinite(samples).sum(dim=1).to(core.dtype)
        wmax = core[:, 2:4].abs().amax(dim=1)  # max|W| (NaN when W has a NaN)
        distinct = _distinct_units([p[0] for p in proj], [p[1] for p in proj], wmax, th.symmetry_rtol,
                                   th.symmetry_atol)
        rows = torch.cat([core, k.unsqueeze(1), distinct.to(core.dtype).unsqueeze(1)], dim=1)
        for i, e, row in zip(idxs, group, rows.unbind(), strict=True):
            meta = dict(e.meta or {}, m=e.sample.numel(), n=e.n)
            out[i] = (e.layer, "weight", _WEIGHT_LAYOUT, row, meta)
    return out  # type: ignore[return-value]


def _weight_rows_host(group: list[_Pending], proj: list[tuple], th: Thresholds, sampler: _Sampler
                      ) -> list[list[float]]:
    """:func:`_weight_stats` of one batch of host-path weights (see :func:`_host_weight`), in
    NumPy, operation for operation: ``_WEIGHT_LAYOUT`` rows with the same values as the device
    path. ``ss`` as in
    :func:`_host_partials` (one pass, or two when ``|mean| > std``); distinct units as in
    :func:`_distinct_units`, weight by weight. The sample (for the non-finite fraction) is taken
    only from a weight with a NaN/inf."""
    dt = group[0].sample.numpy().dtype
    rows: list[list[float]] = []
    wmax = np.empty(len(group), dtype=dt)
    with np.errstate(all="ignore"):
        for r, (e, (_, _, flat)) in enumerate(zip(group, proj, strict=True)):
            sq, lo, hi, total = e.parts
            mean, ss, _, _ = _finish_host(flat, e.n, total, sq, lo, hi, None)
            lo32, hi32 = dt.type(lo), dt.type(hi)
            bad = float((lo32 - lo32) + (hi32 - hi32))
            wmax[r] = max(abs(lo32), abs(hi32))
            finite = 0.0
            if bad != 0:
                e.sample = sampler.sample(flat)
                finite = float(torch.isfinite(e.sample).sum())
            rows.append([float(dt.type(mean)), float(np.sqrt(dt.type(ss) / dt.type(e.n))), float(lo32),
                         float(hi32), bad, finite, math.nan])
        for r, (p8, k, _) in enumerate(proj):
            units = p8.shape[0]
            if rows[r][4] != 0:
                continue  # a NaN/inf weight: unknown
            if units <= 1:
                rows[r][6] = float(units)
                continue
            pt = p8.T.numpy()  # [8, units]
            srt = np.take(pt, np.argsort(pt[0], kind="stable"), axis=1)
            gaps = np.abs(srt[:, 1:] - srt[:, :-1]).max(axis=0)
            tol = (th.symmetry_atol + th.symmetry_rtol * wmax[r]) * np.sqrt(dt.type(k))
            rows[r][6] = float(dt.type(1 + np.count_nonzero(gaps > tol)))
    return rows


def _param_grad_stats(session: _Session) -> list[tuple]:
    """The parameter-gradient entries recorded by the weights' hooks, in layer order."""
    out = []
    seen: set[int] = set()
    for layer in session.layers.values():
        w = _weight_of(layer)
        if w is None or id(w) in seen:
            continue
        seen.add(id(w))
        if id(w) in session.pgrads:
            vec, n = session.pgrads[id(w)]
            out.append((layer.name, "param_grad", ["_sum", "_sumsq"], vec, {"n": n}))
    return out


def _sync(pending: list[_Pending], plain: list[tuple], bins: int) -> list[tuple]:
    """Reduce ``pending`` in one batch (:func:`_reduce`) and copy everything to the host with ONE
    ``.tolist()`` per device (the pass's only host sync). ``plain`` entries are ``(layer, kind,
    layout, vector, meta)``. Returns ``(layer, kind, layout, values, meta)`` tuples, ``pending``
    first, in order."""
    batches = _reduce(pending, bins) if pending else []
    tensors = [b[1] for b in batches] + [e[3] for e in plain]
    by_device: dict[torch.device, list[int]] = {}
    values: list[list] = [[] for _ in tensors]
    for i, t in enumerate(tensors):
        if isinstance(t, torch.Tensor):
            by_device.setdefault(t.device, []).append(i)
        else:  # host-path values, already Python floats
            values[i] = list(t)
    for idxs in by_device.values():
        flat = torch.cat([tensors[i].reshape(-1).to(torch.float64) for i in idxs]).tolist()
        pos = 0
        for i in idxs:
            n = tensors[i].numel()
            values[i] = flat[pos: pos + n]
            pos += n
    out: list[tuple | None] = [None] * len(pending)
    width = len(_ROW_LAYOUT) + bins
    for g, (idxs, _) in enumerate(batches):
        for r, i in enumerate(idxs):
            e = pending[i]
            meta = dict(e.meta or {}, m=e.sample.numel(), n=e.n)
            out[i] = (e.layer, e.kind, _ROW_LAYOUT, values[g][r * width: (r + 1) * width], meta)
    ng = len(tensors) - len(plain)
    return out + [(e[0], e[1], e[2], values[ng + j], *e[4:]) for j, e in enumerate(plain)]


def _decode(kind: str, layout: list[str], values: list[float], meta: dict[str, Any]
            ) -> tuple[dict[str, float], list[float], float, float]:
    """Host side: the public stats of one entry, its histogram counts and range."""
    raw = dict(zip(layout, values[: len(layout)], strict=True))
    counts = values[len(layout):]
    nan = float("nan")
    if kind == "param_grad":
        n = meta["n"]
        mean = raw["_sum"] / n
        var = max(raw["_sumsq"] / n - mean * mean, 0.0)
        return {"param_grad_std": math.sqrt(var), "param_grad_norm": math.sqrt(raw["_sumsq"])}, [], nan, nan
    m, n = meta["m"], meta["n"]
    nonfinite = _nonfinite_fraction(raw["_bad"], raw["_k"], m, n)
    if kind == "weight":
        norm = math.sqrt(raw["std"] ** 2 + raw["mean"] ** 2) * math.sqrt(n)
        return {"weight_mean": raw["mean"], "weight_std": raw["std"], "weight_norm": norm,
                "nonfinite_fraction": nonfinite, "distinct_units": raw["extra"]}, [], nan, nan
    if kind == "backward":
        norm = math.sqrt(raw["std"] ** 2 + raw["mean"] ** 2) * math.sqrt(n)
        stats = {"grad_mean": raw["mean"], "grad_std": raw["std"], "grad_norm": norm,
                 "nonfinite_fraction": nonfinite}
        return stats, counts, raw["_bin_lo"], raw["_bin_hi"]
    stats = {s: raw[s] for s in ("mean", "std", "min", "max", "q01", "q50", "q99")}
    if nonfinite == 1.0:
        stats = dict.fromkeys(stats, nan)
    stats["nonfinite_fraction"] = nonfinite
    stats["zero_fraction"] = raw["_zeros"] / m
    if meta.get("saturating"):
        stats["saturation"] = raw["_sat"] / m
    if meta.get("dead"):
        stats["dead_fraction"] = raw["extra"]
    return stats, counts, raw["_bin_lo"], raw["_bin_hi"]


def _expected(layer: _Layer, scheme: str) -> tuple[float | None, float, str]:
    from initlab.schemes import named_spec  # noqa: PLC0415
    m = layer.module
    w = _weight_of(layer)
    groups = int(getattr(m, "groups", 1))
    try:
        fans = compute_fans(tuple(w.shape), groups=groups, transposed=layer.layer_type == "conv_transpose")
    except InitlabError:  # a weight whose layout the fans cannot read: no expectation
        return None, 1.0, ""
    gain = _gain(layer.activation) if layer.input_from_activation else 1.0
    spec = named_spec(scheme, fans, gain)
    return spec.expected_std, gain, spec.describe()


@dataclass
class _Extra:
    """What the records add to the passes' statistics: the predicted stats by layer (and
    :data:`OUTPUT_LAYER`), the output's measured stats (and ``shape``), the notes."""

    predicted: dict[str, dict[str, float]]
    output: dict[str, Any]
    notes: list[str]


def _build_records(session: _Session, fwd: list, bwd: list, scheme: str | None,
                   tags: dict[str, Any], extra: _Extra | None = None) -> list[dict[str, Any]]:
    base: dict[str, dict[str, Any]] = {}
    for layer in session.layers.values():
        b = dict(tags)
        if scheme is not None:
            b["scheme"] = scheme
        b.update(layer=layer.name, index=layer.index, layer_type=layer.layer_type,
                 module=layer.module_type, activation=layer.activation)
        base[layer.name] = b
    records: list[dict[str, Any]] = []
    hist_kind = {"forward": "hist", "backward": "grad_hist"}
    weight_norms: dict[str, float] = {}
    for name, kind, layout, values, meta in list(fwd) + list(bwd):
        b = base[name]
        layer = session.layers[name]
        stats, counts, lo, hi = _decode(kind, layout, values, meta)
        for s, v in stats.items():
            r = dict(b, kind=kind, stat=s, value=v)
            if kind == "forward":
                r["shape"] = list(layer.shape)
            if s == "distinct_units":
                r["units"] = meta["units"]
            records.append(r)
        if kind == "weight":
            weight_norms[name] = stats["weight_norm"]
            if scheme is not None:
                exp, gain, desc = _expected(layer, scheme)
                if exp is not None:
                    records.append(dict(b, kind="weight", stat="expected_weight_std", value=float(exp),
                                        gain=gain, spec=desc))
        if kind == "param_grad" and name in weight_norms:
            wn = weight_norms[name]
            ratio = stats["param_grad_norm"] / wn if wn > 0 else float("inf")
            records.append(dict(b, kind="param_grad", stat="grad_to_weight_ratio", value=ratio))
        if kind == "forward" and extra is not None and name in extra.predicted:
            for s, v in extra.predicted[name].items():
                records.append(dict(b, kind="forward", stat=s, value=v, shape=list(layer.shape),
                                    out_units=layer.units))
        if counts and kind in hist_kind:
            width = (hi - lo) / len(counts)
            for i, c in enumerate(counts):
                top = hi if i == len(counts) - 1 else lo + (i + 1) * width
                records.append(dict(b, kind=hist_kind[kind], stat="count", value=c, bin=i,
                                    bin_lo=lo + i * width, bin_hi=top))
    if extra is not None:
        records += _extra_records(extra, tags)
    return records


def _extra_records(extra: _Extra, tags: dict[str, Any]) -> list[dict[str, Any]]:
    """The output's records (``kind="output"``) and the notes' (``kind="note"``)."""
    out = []
    stats = {k: v for k, v in extra.output.items() if k != "shape"}
    stats.update(extra.predicted.get(OUTPUT_LAYER, {}))
    for s, v in stats.items():
        out.append(dict(tags, layer=OUTPUT_LAYER, kind="output", stat=s, value=v,
                        shape=extra.output.get("shape")))
    for text in extra.notes:
        out.append(dict(tags, layer=NOTE_LAYER, kind="note", stat="note", value=math.nan, note=text))
    return out


# ---- the model's output -----------------------------------------------------------------------------


def _output_entry(session: _Session, outputs: Any) -> list[tuple]:
    """The forward sync's entry for the model's first floating-point output tensor: its exact
    partials ``[mean, ss, min, max]`` (none when the output holds no float tensor)."""
    floats = [t for t in _tensor_leaves(outputs) if t.is_floating_point() and t.numel() > 0]
    if not floats:
        return []
    flat = session.flat(floats[0])
    with _no_torch_function():
        parts = session.partials(flat)
    return [(OUTPUT_LAYER, "output", ["mean", "ss", "min", "max"], parts,
             {"n": flat.numel(), "shape": list(floats[0].shape)})]


def _output_stats(entry: tuple) -> dict[str, Any]:
    """``{mean, std, shape}`` of the output from its synced entry (NaN when it has a NaN/inf)."""
    _, _, _, (mean, ss, lo, hi), meta = entry
    finite = math.isfinite(lo) and math.isfinite(hi)
    std = math.sqrt(max(ss, 0.0) / meta["n"]) if finite else math.nan
    return {"mean": mean if finite else math.nan, "std": std, "shape": meta["shape"]}


# ---- the propagated prediction ----------------------------------------------------------------------
#
# After the passes: trace the model (initlab.graph), propagate the input batch's moments through it
# with the model's weights, match the graph's nodes to the probe's layers, and propagate once more
# with every recorded layer's output pinned to its measurement (the local prediction). Any failure
# becomes a note, never an error of the probe.

#: Names of the functional activations the probe records (to match the graph's by order).
_FUNCTIONAL_NAMES = frozenset(_FUNCTIONAL.values())


def _predict(model: nn.Module, inputs: Any, session: _Session, fwd_values: list[tuple], train: bool, *,
             functional_order: bool) -> tuple[dict[str, dict[str, float]], list[str]]:
    """``({layer: {predicted_mean, predicted_std, local_predicted_std}}, notes)``; the output's
    prediction under :data:`OUTPUT_LAYER`."""
    if any(e[1] in ("forward", "weight") and e[3][4] != 0 for e in fwd_values):
        return {}, ["prediction: none (a layer's output or weight has NaN/inf entries)"]
    try:
        from initlab.graph.moments import propagate  # noqa: PLC0415  (scipy: imported when used)

        inputs = dict(inputs) if isinstance(inputs, Mapping) else inputs
        graph = _trace_for_prediction(model, inputs)
        nodes = _match_nodes(graph, sorted(session.layers.values(), key=lambda lay: lay.index),
                             functional_order)
        measured = {e[0]: (e[3][0], e[3][1]) for e in fwd_values if e[1] == "forward" and e[3][4] == 0}
        stats = _layer_stats(model, {id(w): (e[3][0], e[3][1] ** 2 + e[3][0] ** 2) for e in fwd_values
                                     if e[1] == "weight" and e[3][4] == 0
                                     and (w := _weight_of(session.layers[e[0]])) is not None})
        x = _input_moments(graph, model, inputs)
        pure = propagate(graph, x, model=model, layer_stats=stats, train=train)
        anchors = {nodes[name]: measured[name] for name in nodes if name in measured}
        local = _local_pass(graph, x, model, stats, train, anchors)
    except Exception as exc:  # the prediction never breaks the probe
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return {}, [f"prediction: none ({type(exc).__name__}: {text})".replace(": )", ")")]
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
    return out, _prediction_notes(graph, session, nodes, out)


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
        if graph.inputs_from is not None and _batch_free(graph, model):
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
        if n.module is not None and n.kind.value != "output":
            calls.setdefault(n.module, []).append(n.id)
    out: dict[str, int] = {}
    seen: dict[str, int] = {}
    functional = []
    for layer in layers:
        if layer.path is not None:
            k = seen.get(layer.path, 0)
            seen[layer.path] = k + 1
            if k < len(calls.get(layer.path, ())):
                out[layer.name] = calls[layer.path][k]
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
    from the model (:func:`initlab.graph.moments.model_layer_stats`); each part read once."""
    from initlab.graph.moments import LayerStats, model_layer_stats, part_params  # noqa: PLC0415

    read = model_layer_stats(model)
    cache: dict[tuple, Any] = {}

    def stats(node: Any, part: str, x: Any) -> Any:
        key = (node.module, part)
        if key not in cache:
            try:
                p = part_params(model, node, part)
                w = weights.get(id(p.weight)) if p is not None and not p.lookup else None
                if w is None:
                    cache[key] = read(node, part, x)
                else:
                    b = p.bias.detach().double() if p.bias is not None and p.bias.numel() else None
                    bm, b2 = (float(b.mean()), float(b.square().mean())) if b is not None else (0.0, 0.0)
                    cache[key] = LayerStats(p.fan_in, w[1], w[0], bm, b2)
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


def _local_pass(graph: Any, x: Mapping[int, Any], model: nn.Module, stats: Callable, train: bool,
                anchors: dict[int, tuple[float, float]]) -> dict[int, Any]:
    """Each node's moments by its rule (:data:`initlab.graph.moments.RULES`) from its inputs, where
    every anchored node (a recorded layer) passes on its measured ``(mean, std)`` instead of its
    prediction (the predicted share of its second moment that units keep over positions, ``spread /
    var``, kept): ``{node id: Moments}`` of the nodes predicted from measured moments only — no
    node that reads a cross moment (:func:`_reads_cross`) between them and the measurements."""
    from initlab.graph.moments import RULES, Moments, MomentsUnknown, PropagationContext  # noqa: PLC0415

    ctx = PropagationContext(graph, {}, model, stats, train, x)
    local: dict[int, Any] = {}
    measured: dict[int, bool] = {}  # the node's output is measured, or predicted from measured ones
    for node in graph:
        node.meta.pop("moments_note", None)
        try:
            out = RULES[node.kind](node, ctx)
        except MomentsUnknown:
            out = None
        measured[node.id] = not _reads_cross(node, model) and all(measured[i] for i in node.inputs)
        if measured[node.id]:
            local[node.id] = out
        if node.id in anchors:
            measured[node.id] = True
            mean, std = anchors[node.id]
            share = min(max(out.spread / out.var, 0.0), 1.0) if out is not None and out.var > 0 else 0.0
            out = Moments(mean, std * std + mean * mean, mean * mean + share * std * std)
        ctx.results[node.id] = out
    return local
