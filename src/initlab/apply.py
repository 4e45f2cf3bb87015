"""Whole-model initialization: :func:`init_model` picks the right scheme for every parameter and
shows what it did in an :class:`InitPlan`.

One traversal over ``(qualified name, module)`` (STYLE.md rule 7) gives every parameter exactly one
owner module and one row of the plan:

========================================  ============================================================
module                                    what ``scheme="auto"`` does
========================================  ============================================================
``Linear``, ``Conv{1,2,3}d``,             weight from the propagated second moment of the layer's own
``ConvTranspose{1,2,3}d``                 input (below; a plain MLP gets the isometric rule), with the
                                          true fans of :func:`initlab.fans.compute_fans` (grouped,
                                          depthwise, transposed); bias 0
transformers' ``Conv1D`` (GPT, GPT-2:     as Linear, its weight stored ``(in, out)`` (``y = x W + b``):
``c_attn``, ``c_proj``, ``c_fc``)         ``fan_in = in``, ``fan_out = out`` (Keras's Dense layout);
                                          a ``c_attn`` whose parent splits its output into blocks of
                                          ``split_size`` (GPT-2's attention) is packed: Q, K, V
                                          (``chunks = out / split_size``) along dim 1, each by its own
                                          fans. Found through ``sys.modules``: initlab never imports
                                          transformers
``MultiheadAttention``                    packed ``in_proj_weight`` per chunk (Q, K, V: ``chunks=3``),
                                          each from its input's propagated second moment (the
                                          per-layer rule: Glorot normal, gain 1 — ``E = 512`` gives
                                          ``std = sqrt(2 / 1024) = 0.0442``); separate
                                          ``q/k/v_proj_weight`` each by its own fans; biases 0;
                                          ``out_proj`` a Linear
``LSTM``, ``GRU``, ``RNN``                input weights per gate (LSTM 4, GRU 3, RNN 1 block):
                                          Glorot normal, gain 1; recurrent weights orthogonal per
                                          gate (``W_g W_g^T = I``, Saxe et al. 2013); projection
                                          ``weight_hr`` Glorot normal; biases 0 except the LSTM
                                          forget gate: ``bias_ih[f] = 1`` and ``bias_hh[f] = 0``
                                          (torch adds the two, so the forget bias is exactly 1;
                                          Jozefowicz et al. 2015)
``Embedding``, ``EmbeddingBag``           ``N(0, embedding_std^2)`` (default 1; one tied to an output
                                          head: below), padding row 0
``BatchNorm*``, ``LayerNorm``,            weight 1, bias 0
``GroupNorm``, ``InstanceNorm*``,
``RMSNorm``
``PReLU``                                 its ``init`` slope (0.25 by default)
anything else with its own parameters     left alone, listed in :attr:`InitPlan.skipped` and named in
                                          one :class:`SkippedParameterWarning`
========================================  ============================================================

**Plain MLPs: the isometric rule.** When the whole model is one *plain chain* — every module with
parameters an ``nn.Linear`` called once and no weight tied, linked ``Linear -> phi -> Linear -> ...
-> Linear`` with nothing but dropout or ``Identity`` between them, the first layer reading the
model's only input (a ``Flatten`` / ``view`` before it is fine) and the last writing its output (a
softmax after it is fine), as fx sees it — ``"auto"`` starts it at dynamical isometry, link by link
(:func:`initlab.theory.isometric_point`):

* a link whose activation has a linear odd part, :math:`\\phi(u) - \\phi(-u) = c\\,u` (ReLU,
  leaky ReLU, GELU, SiLU, softplus, hardswish), is **looks-linear** (Balduzzi et al. 2017): the
  layer before it has mirrored rows :math:`[A; -A]`, the layer after it mirrored columns
  :math:`[B, -B]` (both: :math:`[[B, -B], [-B, B]]`), ``A``, ``B`` orthogonal, so
  :math:`B(\\phi(Au) - \\phi(-Au)) = c\\,BAu`: the network is an orthogonal linear map at init
  (with dropout off, i.e. in eval mode), and the first gradient step breaks the mirror
  (:math:`\\phi'(u) \\ne \\phi'(-u)`);
* any other link (tanh, sigmoid, SELU, ELU, ...) is **orthogonal at its near-critical point**:
  the smallest ``q*`` where :math:`\\chi_1 = 1.01` at zero bias, :math:`\\sigma_w^2 = q^* /
  \\mathbb{E}[\\psi(\\sqrt{q^*} z)^2]` with :math:`\\psi = \\phi - \\phi(0)` (tanh: ``q* = 0.11``,
  ``sigma_w2 = 1.21``; Pennington et al. 2017); the layer after a sigmoid (any
  :math:`\\phi(0) \\ne 0`) gets the bias :math:`b = -\\phi(0)\\,W\\mathbf{1}`, so it reads
  :math:`\\psi`, not a constant 0.5 that makes every input look alike;
* each layer's block gain is :math:`\\sqrt{q_{out} / V_{in}}`: it reads ``V_in`` per unit (1 for the
  data, assumed standardised; :math:`c^2 q` from a mirrored link; :math:`q^*/\\sigma_w^2` otherwise)
  and writes the next link's ``q``; a head (no activation after it) has gain 1, or ``1/c`` after a
  mirrored link (so the whole network is orthogonal). Blocks that
  expand (rows > cols) are scaled by :math:`\\sqrt{rows/cols}` so each unit keeps the variance;
* a link that cannot be mirrored (odd width; the model's last activation) takes the near-critical
  point, or for the last activation the variance point ``q = 1``;
* the propagation below (what ``"variance"`` gives) is used instead when a link cannot be planned:
  an asymmetric ``Hardtanh`` (whose bounds detection does not read), or a sigmoid-like link whose
  next layer has no bias.

Biases are zero except the centring ones. Why: a deep plain network trains fast only near
:math:`\\chi_1 = 1` with a well-conditioned Jacobian; He/Glorot keep the forward variance but not
that (``benchmarks/time_to_accuracy.py``: at depth 50 "auto" reaches 80 % on Fashion-MNIST for
tanh, ReLU, GELU, SELU and sigmoid; He, Glorot and LSUV for at most two of them).

**Every other model: the propagation** (also ``scheme="variance"`` for any model;
:func:`initlab.model.plan_scales`). The model's data-flow graph is traced (:func:`initlab.graph.trace`:
fx, else a recorded forward on ``example_inputs`` or on inputs built from the model) and the second
moment of every tensor propagated through it (:mod:`initlab.graph.moments`; standardised data). Each
weighted layer gets zero-mean normal weights with
:math:`\\mathrm{Var}(w) = q_{target} / (fan_{in}\\,\\mathbb{E}[x^2])`, :math:`\\mathbb{E}[x^2]` the
propagated second moment of *its own* input and :math:`q_{target} = 1` (a pre-activation): He et al.
2015's argument with the input's actual second moment, so no gain table is needed (after a ReLU
:math:`\\mathbb{E}[x^2] = 1/2`, after a tanh :math:`\\mathbb{E}[\\tanh(z)^2]`, after a sigmoid its mean
included, after a norm 1). Zero padding lowers a conv's output second moment (a fraction of its taps
read real entries) and an average over positions lowers the second moment of what it averages, so
these stds depend on the spatial size of the example input (given, or built). Under ``"auto"`` only:

* the last layer of a residual branch (no norm between it and the add) targets
  :math:`q_{skip} (2^{1/L} - 1)` with ``L`` such branches: the stream's second moment doubles over the
  whole depth rather than per block (Radford et al. 2019; Zhang et al. 2019);
* an ``Embedding`` tied to an output head (GPT-2's ``lm_head``) gets
  :math:`\\mathbb{E}[w^2] = 1 / (d\\,\\mathbb{E}[h^2])`, ``h`` the head's input, so the logits start at
  unit second moment when ``h`` does not scale with the table (a final norm, as GPT-2's ``ln_f``);
  the embeddings added to it (positions) get the same scale;
* a parameter the forward adds to or concatenates with the data (a class token, position
  embeddings) gets the second moment of the tensor it joins.

These rows have scheme ``"propagated"``, spec ``normal(std=...)``, gain ``std * sqrt(fan_in)`` (the
equivalent gain: the forward gain of the activation that *feeds* the layer), and a note with the role
(``pre-activation``, ``residual branch``, ``tied head``, ...) and the :math:`\\mathbb{E}[x^2]` it
solved from. Every layer row, under any scheme, carries ``q_in`` / ``q_out``, the predicted
:math:`\\mathbb{E}[x^2]` of its input and output (an attention's rows: the whole module's; the
table's ``E[x^2] in`` / ``E[y^2] out``); :attr:`InitPlan.propagation` says how the graph was built.

**When the graph cannot be traced** (:attr:`InitPlan.propagation` says why), ``"auto"`` and
``"variance"`` use the per-layer rule. Activation -> scheme (the gain ``g`` is
:func:`initlab.gains.gain` with ``criterion="forward"``,
:math:`g = \\mathbb{E}[\\phi(z)^2]^{-1/2}`, :math:`z \\sim N(0, 1)`, so it exists for every
activation, not only torch's list):

* ReLU family (``relu``, ``leaky_relu``, ``prelu``, ``relu6``): He normal,
  :math:`\\sigma = g / \\sqrt{fan_{in}}` (He et al. 2015);
* ``selu``: LeCun normal, :math:`\\sigma = 1 / \\sqrt{fan_{in}}` (Klambauer et al. 2017);
* everything else (``tanh``, ``sigmoid``, ``gelu``, ``silu``, ``elu``, ``mish``, ...): Glorot normal
  with the derived gain, :math:`\\sigma = g \\sqrt{2 / (fan_{in} + fan_{out})}` (Glorot & Bengio 2010);
* no nonlinearity consumes the output (a classifier head, attention projections): Glorot normal,
  gain 1.

The gain is that of the nonlinearity that *consumes* the layer's output (torch's
``calculate_gain`` convention; the named schemes use it too), with one exception: a layer whose input
no nonlinearity produced (the model's input, a norm layer's output, another layer's output; the
plan's ``input_activation`` is ``"linear"``) gets gain 1. The variance argument (He et al. 2015, sec.
2.2: :math:`\\mathrm{Var}[y_l] = fan_{in}\\,\\mathrm{Var}[w_l]\\,\\mathbb{E}[x_l^2]`) compensates the
second moment of the activation that *feeds* the layer; in a chain of equal activations that is the
consuming one, but the first layer sees standardised data (:math:`\\mathbb{E}[x^2] = 1`), and the
consumer's gain there would start the chain off the fixed point (``q_1 = g^2``).

For square hidden layers Glorot and He coincide (and agree with the propagation), so a chain of
equal layers keeps the pre-activation second moment at the fixed point ``q = 1`` of the variance map
:math:`q \\mapsto g^2\\,\\mathbb{E}[\\phi(\\sqrt{q} z)^2]`. That fixed point attracts for tanh,
sigmoid and SELU, is neutral for the ReLU family, and *repels* for GELU and SiLU (slope 1.14 and
1.17 at ``q = 1``: :math:`\\mathbb{E}[\\phi(\\sqrt q z)^2]/q` grows with ``q``). No zero-bias
variance-scaling init keeps a deep GELU/SiLU MLP's activation scale constant: finite-width
fluctuations grow by ~1.14 per layer (depth 50, width 512: ×8 to ×18). Sigmoid is not zero-mean;
the gain keeps the *second moment* :math:`\\mathbb{E}[\\phi(z)^2]` (mean included) at 1/g², which
is what the next layer's pre-activation variance depends on for zero-mean weights
(:math:`\\mathrm{Var}[\\sum_i w_i x_i] = fan_{in}\\,\\sigma_w^2\\,\\mathbb{E}[x^2]`), so its std is
preserved too.

Activation detection (the plan's ``found_by`` column says which one found each row):

1. ``"fx"`` — :func:`torch.fx.symbolic_trace` with a tracer that traces through every container
   (only modules without children, and MultiheadAttention / RNNs, are leaves). From each layer's
   node the data flow is followed through *shape- and scale-free* nodes until a nonlinearity:
   ``Dropout*``, ``Identity``, ``Flatten``, reshapes (``view``, ``reshape``, ``permute``,
   ``transpose``, ``flatten``, ``contiguous``, ``squeeze``, ``chunk``, ``[...]``), residual
   ``add``/``cat``, pooling (and ``mean``), and **norm layers** (``BatchNorm*``, ``LayerNorm``,
   ``GroupNorm``, ``InstanceNorm*``, ``RMSNorm``). Norm layers re-standardise their input, so the
   weight's scale cancels in the forward pass at init; following through them gives the usual
   choice for ``conv -> bn -> relu`` (He, as torchvision does). The same walk *backwards* from
   the layer finds its ``input_activation``; there a norm layer stops the walk (its output has
   unit second moment: gain 1). Modules (``nn.ReLU``, ``nn.GELU``, ...),
   functionals (``F.relu``, ``torch.tanh``, ``F.gelu(approximate="tanh")``, ``F.leaky_relu``
   with its slope) and methods (``x.sigmoid()``, ``x.relu_()``) count as nonlinearities. A
   product (gating), another layer, or any other op ends the search: gain 1.
2. ``"hooks"`` — when tracing fails (data-dependent control flow, ...): on ``example_inputs``, or
   without them on inputs built from the model (:func:`initlab.graph.examples.example_inputs`: a
   Hugging Face model's ``dummy_inputs`` or config, else its first weighted layer; the
   ``detection_note`` says ``hooks on inputs built from ...``), one forward pass under
   :func:`torch.no_grad` that records leaf-module calls (forward hooks) and top-level tensor
   functions (a :class:`torch.overrides.TorchFunctionMode`), linked by tensor identity into the same
   data-flow graph. Buffers (BatchNorm running stats) and the global RNG are restored.
3. ``"module_order"`` — when no forward ran (the given inputs failed, or none was given and none
   built fits): the first activation module registered after the layer, skipping the pass-through
   modules above. A guess: functional activations are invisible to it, so
   ``init_model`` warns (:class:`DetectionFallbackWarning`) when a row was guessed this way.
4. ``"structure"`` — layers inside MultiheadAttention and the RNN gates (the module defines them),
   and ``linear1`` / ``linear2`` of torch's ``nn.TransformerEncoderLayer`` / ``DecoderLayer`` (their
   ``activation`` attribute) when neither fx nor hooks saw them (fx cannot trace these layers).

Activations written by hand are recognised in both graphs: ``x * torch.sigmoid(x)`` is ``silu``
(Swish, as EfficientNet code writes it), ``x * F.hardsigmoid(x)`` is ``hardswish``, and
``F.hardtanh(x, 0, 6)`` / ``nn.Hardtanh(0, 6)`` is ``relu6``. A sigmoid that gates *another*
tensor (squeeze-and-excitation) stays a sigmoid. Parameter-free modules no table knows are measured:
transformers' ``GELUActivation`` is ``gelu``, ``NewGELUActivation`` ``gelu_tanh``.

Named schemes (:data:`initlab.schemes.NAMED_SCHEMES`: ``he_normal``, ``glorot_uniform``,
``lecun_normal``, ``orthogonal``, ``small``, ...) apply to every weight with the detected gain and
zero biases; ``"torch_default"`` is exactly what each module's ``reset_parameters`` samples
(Linear/Conv ``U(±1/sqrt(fan_in))`` with torch's own fans for weight and bias, RNNs
``U(±1/sqrt(hidden))`` everywhere, MHA ``xavier_uniform_`` on the packed weight, Embedding
``N(0, 1)``, transformers' ``Conv1D`` ``N(0, 0.02^2)`` and bias 0, as its ``__init__``) but from
``generator``; ``"keras_default"`` is Keras's (Glorot uniform on the whole kernel — a packed Conv1D
per block, as MHA — zero bias, recurrent orthogonal, unit forget bias, Embedding ``U(±0.05)``);
``"critical"`` puts each layer at the edge of chaos of its activation,
:func:`initlab.theory.critical_point`: weights :math:`N(0, \\sigma_w^2 / fan_{in})`, biases
:math:`N(0, \\sigma_b^2)` (Poole et al. 2016; Schoenholz et al. 2017).

With ``"critical"``, ``sigma_b2`` picks the point on the critical line (default 0). An activation
that has no stable critical point there (GELU, SiLU, Mish, hardswish, softplus at ``sigma_b2 = 0``:
:func:`initlab.theory.critical_point`) is an error that names the layer and suggests a
``sigma_b2``; a rule that decides all of that layer's parameters (e.g. ``(r"^mlp\\.fc1\\.", "auto")``)
lets the rest of the model be critical.

``rules`` override the scheme for matching parameters: see :func:`init_model`. Besides scheme
names, Specs and callables, a rule may say ``"keep"`` (leave the parameter as it is: pretrained or
frozen weights) or :class:`Packed` (``Packed(3)``: a layer holding Q, K and V gets per-block fans,
the blocks along its output axis: dim 0 of a Linear, dim 1 of a Conv1D). A rule that decides no
parameter (a typo in its pattern, a pattern that only matches the second name of a tied weight, a
rule shadowed by an earlier one) gives a ``UserWarning``.

Parameters that are not the weight or bias of a known layer (``weight_norm``'s ``weight_g`` and
``weight_v``, a custom module's ``nn.Parameter``, ``parametrizations.*.original``) are left alone
unless a rule matches them: :attr:`InitPlan.skipped` lists them and one
:class:`SkippedParameterWarning` names them (dry runs too), with the rule that decides them
(``(r"^name$", "keep")`` leaves one as it is without the warning). A zero-element weight
(``nn.Linear(0, n)``) gets scheme ``"empty"`` and is not drawn. Frozen parameters
(``requires_grad=False``) are initialized like any other — ``init_model`` initializes models, and
which parameters will be trained is not its business — and their rows say ``frozen``; a
``"keep"`` rule leaves them alone. A model on the meta device gets its plan, but meta tensors hold
no data: ``init_model`` warns; call ``model.to_empty(device=...)`` first.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import math
import re
import sys
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from initlab import schemes
from initlab.errors import InitlabError
from initlab.fans import Fans, compute_fans
from initlab.model.propagation import LayerScale, PropagationPlan, plan_scales
from initlab.records import records_to_json

__all__ = [
    "init_model",
    "InitPlan",
    "PlanRow",
    "SCHEMES",
    "RELU_FAMILY",
    "residual_scaling_rule",
    "detect_activations",
    "load_factory",
    "parse_shape",
    "Packed",
    "DetectionFallbackWarning",
    "SkippedParameterWarning",
    "fallback_message",
]

#: Activations that get He (fan_in) under ``"auto"``.
RELU_FAMILY: frozenset[str] = frozenset({"relu", "leaky_relu", "prelu", "rrelu", "relu6"})

_EXTRA_SCHEMES = ("auto", "variance", "critical")

#: Every scheme name :func:`init_model` accepts.
SCHEMES: tuple[str, ...] = tuple(sorted(set(schemes.NAMED_SCHEMES) | set(_EXTRA_SCHEMES)))

_LINEAR = (None, "linear", "identity")
#: Positively homogeneous activations: their critical point exists only at sigma_b2 = 0.
_HOMOGENEOUS = frozenset({"linear", "identity", "relu", "leaky_relu", "prelu"})

# ---- module classification ---------------------------------------------------------------------

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONVT = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_LAYER_TYPES = (nn.Linear, *_CONV, *_CONVT)
_NORM_TYPES: tuple[type, ...] = (
    nn.modules.batchnorm._BatchNorm,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.LocalResponseNorm,
) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())
_ATOMIC = (nn.MultiheadAttention, nn.RNNBase, *_LAYER_TYPES)
_PASS_MODULES: tuple[type, ...] = (
    nn.modules.dropout._DropoutNd,
    nn.Identity,
    nn.Flatten,
    nn.Unflatten,
    *_NORM_TYPES,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
)
_PASS_FUNCTIONS = frozenset({
    "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout",
    "flatten", "view", "reshape", "permute", "transpose", "contiguous", "squeeze", "unsqueeze",
    "add", "radd", "iadd", "cat", "concat", "getitem", "chunk", "split", "unbind", "clone", "to",
    "float", "type_as", "mean", "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d",
    "avg_pool3d",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d",
    "adaptive_max_pool2d", "adaptive_max_pool3d", "max_pool1d_with_indices", "max_pool2d_with_indices",
    "max_pool3d_with_indices",
})
#: Pass-through nodes that keep every feature in its place (a private link may cross them).
_ELEMENTWISE_MODULES: tuple[type, ...] = (nn.modules.dropout._DropoutNd, nn.Identity)
_ELEMENTWISE_FUNCTIONS = frozenset({
    "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout",
    "contiguous", "clone",
})
#: Reshapes allowed between the model's input and a plain chain's first layer (``x.view(-1, 784)``).
_INPUT_RESHAPE_MODULES: tuple[type, ...] = (nn.Flatten,)
_INPUT_RESHAPE_FUNCTIONS = frozenset({"flatten", "view", "reshape"})
#: Allowed between a plain chain's last layer and the model's output (a classifier's log-probabilities).
_OUTPUT_MODULES: tuple[type, ...] = (nn.Softmax, nn.LogSoftmax)
_OUTPUT_FUNCTIONS = frozenset({"softmax", "log_softmax"})
#: Calls on the model's input that only read its shape (``x.size(0)`` in ``x.view(x.size(0), -1)``).
_SHAPE_READS = frozenset({"size", "dim", "getattr"})
_NORM_FUNCTIONS = frozenset({"batch_norm", "layer_norm", "group_norm", "instance_norm", "rms_norm"})
_ACT_FUNCTIONS = frozenset({
    "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu", "silu", "mish", "softplus",
    "softsign", "tanh", "sigmoid", "hardtanh", "hardsigmoid", "hardswish", "logsigmoid", "tanhshrink",
    "rrelu", "prelu",
})


#: Layers that store their weight as ``(in, out)`` and compute ``y = x W + b``, by (module, class):
#: transformers' ``Conv1D`` (GPT, GPT-2). Looked up in ``sys.modules`` only, never imported: a model
#: that holds one has imported its module, and initlab works without transformers.
_CONV1D_CLASSES = (("transformers.pytorch_utils", "Conv1D"),)


def _conv1d_types() -> tuple[type, ...]:
    """The classes of :data:`_CONV1D_CLASSES` whose module is loaded (subclasses match too)."""
    found = (getattr(sys.modules.get(mod), cls, None) for mod, cls in _CONV1D_CLASSES)
    return tuple(c for c in found if isinstance(c, type) and issubclass(c, nn.Module))


def _layer_types() -> tuple[type, ...]:
    """Linear, Conv, ConvTranspose and the loaded Conv1D classes: the layers with a weight and fans."""
    return (*_LAYER_TYPES, *_conv1d_types())


def _atomic_types() -> tuple[type, ...]:
    """Modules detection treats as one node (fx leaves, hook targets)."""
    return (*_ATOMIC, *_conv1d_types())


def _module_activation(m: nn.Module) -> tuple[str, float | None] | None:
    """(name, param) of an activation module, else ``None``."""
    table: list[tuple[type, Callable[[Any], tuple[str, float | None]]]] = [
        (nn.ReLU, lambda m: ("relu", None)),
        (nn.LeakyReLU, lambda m: ("leaky_relu", float(m.negative_slope))),
        (nn.PReLU, lambda m: ("prelu", float(m.weight.detach().float().mean()))),
        (nn.RReLU, lambda m: ("leaky_relu", (m.lower + m.upper) / 2.0)),
        (nn.ReLU6, lambda m: ("relu6", None)),
        (nn.ELU, lambda m: ("elu", float(m.alpha))),
        (nn.CELU, lambda m: ("celu", float(m.alpha))),
        (nn.SELU, lambda m: ("selu", None)),
        (nn.GELU, lambda m: ("gelu_tanh" if m.approximate == "tanh" else "gelu", None)),
        (nn.SiLU, lambda m: ("silu", None)),
        (nn.Mish, lambda m: ("mish", None)),
        (nn.Softplus, lambda m: ("softplus", float(m.beta))),
        (nn.Softsign, lambda m: ("softsign", None)),
        (nn.Tanh, lambda m: ("tanh", None)),
        (nn.Sigmoid, lambda m: ("sigmoid", None)),
        (nn.Hardtanh, lambda m: ("hardtanh", float(m.max_val)) if m.min_val == -m.max_val
         else ("relu6", None) if (m.min_val, m.max_val) == (0.0, 6.0) else ("hardtanh", None)),
        (nn.Hardsigmoid, lambda m: ("hardsigmoid", None)),
        (nn.Hardswish, lambda m: ("hardswish", None)),
        (nn.LogSigmoid, lambda m: ("logsigmoid", None)),
        (nn.Tanhshrink, lambda m: ("tanhshrink", None)),
    ]
    for cls, fn in table:  # ReLU6 subclasses Hardtanh: it comes first
        if isinstance(m, cls):
            return fn(m)
    return None


def _fn_name(target: Any) -> str:
    """Canonical name of a function / method target: ``F.relu_`` and ``Tensor.__iadd__`` ->
    ``relu`` and ``iadd``."""
    name = target if isinstance(target, str) else getattr(target, "__name__", repr(target))
    if name.startswith("__") and name.endswith("__"):
        name = name[2:-2]
    if name.endswith("_") and not name.startswith("_"):
        name = name[:-1]
    return name


def _fn_param(name: str, args: Sequence[Any], kwargs: dict[str, Any]) -> tuple[str, float | None]:
    """Activation name and parameter for a functional call."""
    def arg(i: int, key: str, default: Any) -> Any:
        if key in kwargs:
            return kwargs[key]
        return args[i] if len(args) > i else default

    try:
        if name == "leaky_relu":
            return name, float(arg(1, "negative_slope", 0.01))
        if name in ("elu", "celu"):
            return name, float(arg(1, "alpha", 1.0))
        if name == "gelu":
            return ("gelu_tanh" if arg(1, "approximate", "none") == "tanh" else "gelu"), None
        if name == "softplus":
            return name, float(arg(1, "beta", 1.0))
        if name == "hardtanh":
            lo, hi = float(arg(1, "min_val", -1.0)), float(arg(2, "max_val", 1.0))
            if (lo, hi) == (0.0, 6.0):
                return "relu6", None
            return name, (hi if lo == -hi else None)
        if name == "rrelu":
            return "leaky_relu", (float(arg(1, "lower", 1 / 8)) + float(arg(2, "upper", 1 / 3))) / 2
        if name == "prelu":
            w = arg(1, "weight", None)
            return "prelu", (float(w.detach().float().mean()) if isinstance(w, torch.Tensor) else None)
    except (TypeError, ValueError):  # a Proxy or tensor where a number was expected
        return name, None
    return name, None


# ---- activation detection ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Found:
    activation: str  # "linear" when nothing consumes the output
    param: float | None
    found_by: str
    via: tuple[str, ...] = ()
    input_activation: str = "linear"  # the nonlinearity that produced the layer's input
    next_layer: str | None = None  # the layer a private link ``-> phi ->`` feeds (fx only)
    reads_input: bool = False  # reads the model's only input, which nothing else reads (fx only)
    writes_output: bool = False  # its output reaches the model's output and nothing else (fx only)


class _Graph:
    """A small data-flow graph: nodes with a kind and their consumers."""

    def __init__(self) -> None:
        # ("layer", qualname) | ("act", name, param) | ("pass" | "norm", label) | ("other", name?)
        self.kind: list[tuple] = []
        self.users: list[list[int]] = []
        self.inputs: list[list[int]] = []
        self.elementwise: set[int] = set()  # pass nodes that keep each feature where it is (dropout)
        self.input_reshape: set[int] = set()  # flatten / view / reshape (allowed before the first layer)
        self.output_ok: set[int] = set()  # softmax / log_softmax (allowed after the last layer)

    def add(self, kind: tuple) -> int:
        self.kind.append(kind)
        self.users.append([])
        self.inputs.append([])
        return len(self.kind) - 1

    def edge(self, src: int, dst: int) -> None:
        if dst not in self.users[src]:
            self.users[src].append(dst)
            self.inputs[dst].append(src)

    def swish(self, node: int) -> str | None:
        """``"silu"`` / ``"hardswish"`` when ``node`` is ``x * sigmoid(x)`` / ``x * hardsigmoid(x)``
        (Swish written by hand, as EfficientNet and MobileNetV3 code does), else ``None``."""
        if self.kind[node][:2] != ("other", "mul") or len(self.inputs[node]) != 2:
            return None
        a, b = self.inputs[node]
        for gate, x in ((a, b), (b, a)):
            kind = self.kind[gate]
            if kind[0] == "act" and kind[1] in _GATES_TO_SWISH and x in self.inputs[gate]:
                return _GATES_TO_SWISH[kind[1]]
        return None

    def private_next(self, start: int) -> int | None:
        """The layer node that ``start``'s output reaches by a *private link*, else ``None``:
        ``layer -> [dropout | identity | flatten]* -> act -> [dropout | identity | flatten]* ->
        layer``, every node on the way having one input and one user (no branch, no residual)."""
        node, seen_act = start, False
        while True:
            if len(self.users[node]) != 1:
                return None
            node = self.users[node][0]
            kind = self.kind[node]
            if len(self.inputs[node]) != 1:
                return None
            if kind[0] == "layer":
                return node if seen_act else None
            if kind[0] == "act" and not seen_act:
                seen_act = True
            elif node not in self.elementwise:
                return None

    def reads_input(self, start: int) -> bool:
        """``start`` reads the model's only (used) input through elementwise nodes and reshapes
        (``flatten``, ``view``; a ``x.size(0)`` beside them is allowed), and nothing else reads it."""
        def users(n: int) -> list[int]:
            return [u for u in self.users[n] if not (self.kind[u][0] == "other" and self.kind[u][1:2]
                                                     and self.kind[u][1] in _SHAPE_READS)]

        used_inputs = [i for i, k in enumerate(self.kind) if k[0] == "input" and any(  # fx's guard on
            self.kind[u][1:2] != ("_assert_is_none",) for u in self.users[i])]        # mask=None args
        node = start
        while self.inputs[node]:
            if len(self.inputs[node]) != 1 and node not in self.input_reshape:
                return False
            node = self.inputs[node][0]  # a reshape's tensor argument comes first
            if len(users(node)) != 1:
                return False
            if self.kind[node][0] == "input":
                return used_inputs == [node]
            if node not in self.elementwise and node not in self.input_reshape:
                return False
        return False

    def writes_output(self, start: int) -> bool:
        """``start``'s output reaches the model's output through activations, elementwise nodes
        and a softmax only, and nothing else reads it."""
        node = start
        while len(self.users[node]) == 1:
            node = self.users[node][0]
            if self.kind[node][0] == "output":
                return True
            ok = node in self.elementwise or node in self.output_ok or self.kind[node][0] == "act"
            if len(self.inputs[node]) != 1 or not ok:
                return False
        return False

    def producer(self, start: int) -> str:
        """BFS back from ``start`` through pass-through nodes to the nonlinearity that produced
        its input; a norm layer (which re-standardises), a layer, the model input or any other
        op means "linear"."""
        seen = {start}
        queue: deque[int] = deque(self.inputs[start])
        while queue:
            node = queue.popleft()
            if node in seen:
                continue
            seen.add(node)
            kind = self.kind[node]
            if kind[0] == "act":
                return kind[1]
            if self.swish(node):
                return self.swish(node)
            if kind[0] == "pass":
                queue.extend(self.inputs[node])
        return "linear"

    def consumer(self, start: int) -> tuple[str, float | None, tuple[str, ...]]:
        """BFS from ``start`` through pass-through nodes to the first nonlinearity."""
        seen = {start}
        queue: deque[tuple[int, tuple[str, ...]]] = deque((u, ()) for u in self.users[start])
        while queue:
            node, via = queue.popleft()
            if node in seen:
                continue
            seen.add(node)
            kind = self.kind[node]
            if kind[0] == "act":
                swish = next((w for u in self.users[node] if (w := self.swish(u))), None)
                if swish is not None:
                    return swish, None, via
                return kind[1], kind[2], via
            if kind[0] in ("pass", "norm"):
                queue.extend((u, (*via, kind[1])) for u in self.users[node])
        return "linear", None, ()


_GATES_TO_SWISH = {"sigmoid": "silu", "hardsigmoid": "hardswish"}


def _classify_module(m: nn.Module, qualname: str) -> tuple:
    if isinstance(m, _layer_types()):
        return ("layer", qualname)
    act = _module_activation(m)
    if act is not None:
        return ("act", act[0], act[1])
    if isinstance(m, _NORM_TYPES):
        return ("norm", qualname)
    if isinstance(m, _PASS_MODULES):
        return ("pass", qualname)
    return _classify_unknown(m, qualname)


def _classify_unknown(m: nn.Module, qualname: str) -> tuple:
    """A module none of the tables above knows, as the graph's vocabulary sees it: a parameter-free
    elementwise module measured equal to a known activation (HF's ``GELUActivation`` is ``gelu``,
    ``NewGELUActivation`` ``gelu_tanh``), a norm recognised by what it computes (``LlamaRMSNorm``)."""
    from initlab.graph import Kind
    from initlab.graph.vocab import classify_module

    if next(iter(m.children()), None) is not None:
        return ("other",)
    entry = classify_module(m)
    if entry.kind is Kind.ACTIVATION and entry.activation and entry.activation[0] != "measured":
        return ("act", entry.activation[0], entry.activation[1])
    if entry.kind is Kind.NORM:
        return ("norm", qualname)
    if entry.kind in (Kind.DROPOUT, Kind.RESHAPE):
        return ("pass", qualname)
    return ("other",)


def _classify_function(target: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> tuple:
    name = _fn_name(target)
    if name in _ACT_FUNCTIONS:
        act, param = _fn_param(name, args, kwargs)
        return ("act", act, param)
    if name in _NORM_FUNCTIONS:
        return ("norm", name)
    if name in _PASS_FUNCTIONS:
        return ("pass", name)
    return ("other", name)


class _LeafTracer(torch.fx.Tracer):
    """Traces through every container, torch's own included; leaves are childless modules and the
    structured ones (MultiheadAttention, RNNs, Linear/Conv)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, _atomic_types()) or next(iter(m.children()), None) is None


def _detect_fx(model: nn.Module) -> dict[str, _Found]:
    # Optional forward arguments (masks, flags) are traced with their defaults: ``mask=None``
    # stays ``None`` instead of becoming a Proxy that torch's own checks cannot branch on.
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
    g = _Graph()
    index: dict[torch.fx.Node, int] = {}
    layers: dict[str, list[int]] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            kind = _classify_module(modules[node.target], node.target)
        elif node.op in ("call_function", "call_method"):
            kind = _classify_function(node.target, node.args, node.kwargs)
        elif node.op in ("placeholder", "output"):
            kind = ("input" if node.op == "placeholder" else "output",)
        else:
            kind = ("other",)
        index[node] = g.add(kind)
        if kind[0] == "layer":
            layers.setdefault(kind[1], []).append(index[node])
        mod = modules.get(node.target) if node.op == "call_module" else None
        fn = _fn_name(node.target) if node.op in ("call_function", "call_method") else None
        if kind[0] == "pass" and (isinstance(mod, _ELEMENTWISE_MODULES) or fn in _ELEMENTWISE_FUNCTIONS):
            g.elementwise.add(index[node])
        if kind[0] == "pass" and (isinstance(mod, _INPUT_RESHAPE_MODULES) or fn in _INPUT_RESHAPE_FUNCTIONS):
            g.input_reshape.add(index[node])
        if isinstance(mod, _OUTPUT_MODULES) or fn in _OUTPUT_FUNCTIONS:
            g.output_ok.add(index[node])
    for node in graph.nodes:
        for src in node.all_input_nodes:
            g.edge(index[src], index[node])
    return _resolve_layers(g, layers, "fx")


def _resolve_layers(g: _Graph, layers: dict[str, list[int]], how: str) -> dict[str, _Found]:
    found: dict[str, _Found] = {}
    name_of = {i: name for name, nodes in layers.items() for i in nodes}
    for name, nodes in layers.items():
        results = [g.consumer(i) for i in nodes]  # a module called several times: first with an act
        act, param, via = next((r for r in results if r[0] != "linear"), results[0])
        nxt = g.private_next(nodes[0]) if len(nodes) == 1 else None
        nxt_name = name_of.get(nxt) if nxt is not None and len(layers[name_of[nxt]]) == 1 else None
        one = len(nodes) == 1
        found[name] = _Found(act, param, how, via, g.producer(nodes[0]), nxt_name,
                             one and g.reads_input(nodes[0]), one and g.writes_output(nodes[0]))
    return found


def _flatten_tensors(obj: Any) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _flatten_tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _flatten_tensors(o)]
    return []


class _Recorder(TorchFunctionMode):
    """Records top-level tensor functions (not those inside a leaf module) into a graph."""

    def __init__(self, g: _Graph, producer: dict[int, int], keep: list[Any]) -> None:
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
            self.link(_classify_function(func, args, kwargs), (args, kwargs), out)
        return out


def _detect_hooks(model: nn.Module, example_inputs: Any) -> dict[str, _Found]:
    g = _Graph()
    producer: dict[int, int] = {}
    keep: list[Any] = []
    rec = _Recorder(g, producer, keep)
    layers: dict[str, list[int]] = {}
    handles = []

    def pre(_m, _args):
        rec.depth += 1

    def make_post(qualname: str, m: nn.Module):
        kind = _classify_module(m, qualname)  # before the forward: measuring a module runs it

        def post(_m, args, output):
            rec.depth -= 1
            if rec.depth == 0:
                node = rec.link(kind, args, output)
                if node is not None and g.kind[node][0] == "layer":
                    layers.setdefault(qualname, []).append(node)
        return post

    atomic = _atomic_types()
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
    return _resolve_layers(g, layers, "hooks")


def _detect_order(model: nn.Module) -> dict[str, _Found]:
    atomic, layer_types = _atomic_types(), _layer_types()
    leaves = [
        (q, m) for q, m in model.named_modules()
        if q and (isinstance(m, atomic) or next(iter(m.children()), None) is None)
    ]
    found: dict[str, _Found] = {}
    for i, (q, m) in enumerate(leaves):
        if not isinstance(m, layer_types):
            continue
        act: tuple[str, float | None] = ("linear", None)
        via: list[str] = []
        for q2, m2 in leaves[i + 1:]:
            kind = _classify_module(m2, q2)
            if kind[0] == "act":
                act = (kind[1], kind[2])
                break
            if kind[0] not in ("pass", "norm"):
                break
            via.append(q2)
        before = "linear"
        for q2, m2 in reversed(leaves[:i]):
            kind = _classify_module(m2, q2)
            if kind[0] == "act":
                before = kind[1]
            if kind[0] != "pass":
                break
        found[q] = _Found(act[0], act[1], "module_order", tuple(via) if act[0] != "linear" else (), before)
    for q, m in model.named_modules():  # torch's transformer layers: linear1 -> activation -> linear2
        if not isinstance(m, (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)):
            continue
        fn = getattr(m, "activation", None)
        act_ = _module_activation(fn) if isinstance(fn, nn.Module) else (
            (_fn_name(fn), None) if fn is not None and _fn_name(fn) in _ACT_FUNCTIONS else None)
        if act_ is None:
            continue
        l1, l2 = (f"{q}.linear1", f"{q}.linear2") if q else ("linear1", "linear2")
        found[l1] = _Found(act_[0], act_[1], "structure", (), found[l1].input_activation if l1 in found
                           else "linear")
        found[l2] = _Found("linear", None, "structure", (), act_[0])
    return found


def detect_activations(
    model: nn.Module, example_inputs: Any = None
) -> tuple[dict[str, tuple[str, float | None, str]], str, str | None]:
    """Find, for every Linear / Conv / ConvTranspose (and transformers ``Conv1D``) of ``model``, the
    nonlinearity that consumes its output (see the module docstring for what is followed through).

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
    found, method, why = _detect(model, example_inputs)
    return {k: (v.activation, v.param, v.found_by) for k, v in found.items()}, method, why


def _detect(model: nn.Module, example_inputs: Any) -> tuple[dict[str, _Found], str, str | None]:
    """Run the detections and leave the model's Python state as it was: fx tracing runs
    ``forward`` with Proxies (``self.last = h`` would keep a Proxy), the hook fallback runs it for
    real (``self.calls += 1``); every module's attributes and its parameter, buffer and
    submodule tables are restored afterwards."""
    saved = [(m, dict(m.__dict__), dict(m._parameters), dict(m._buffers), dict(m._modules))
             for m in model.modules()]
    try:
        return _detect_unrestored(model, example_inputs)
    finally:
        for m, attrs, params, buffers, modules in saved:
            m.__dict__.clear()
            m.__dict__.update(attrs)
            for table, old in ((m._parameters, params), (m._buffers, buffers), (m._modules, modules)):
                table.clear()
                table.update(old)


def _detect_unrestored(
    model: nn.Module, example_inputs: Any
) -> tuple[dict[str, _Found], str, str | None]:
    order = _detect_order(model)
    if isinstance(model, _atomic_types()):  # a single layer / MHA / RNN: nothing to trace
        if isinstance(model, _layer_types()):
            order[""] = _Found("linear", None, "structure")
        return order, "structure", None
    try:
        found = _detect_fx(model)
        method, why = "fx", None
    except Exception as exc:  # tracing fails in many ways: control flow, unsupported ops, ...
        why = f"fx: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        found = {}
        method = "module_order"
        built = None
        if example_inputs is None:  # build them from what the model declares (its first layer, HF config)
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


# ---- the plan ------------------------------------------------------------------------------------


#: Specs whose entries are independent and identically distributed.
_IID_SPECS = (schemes.Normal, schemes.Uniform, schemes.TruncatedNormal, schemes.Constant)


class _Fill(NamedTuple):
    """One write of a row: ``spec`` (a Spec, a :class:`_CenteringBias` or a rule's callable) into
    ``index`` of the parameter (``None``: all of it), in ``chunks`` blocks along ``axis``. Blocks
    along axis 1 (a Conv1D's output axis) are filled through the transposed view, whose dim 0 it is."""

    index: Any
    spec: Any
    chunks: int = 1
    axis: int = 0

    def view(self, tensor: torch.Tensor) -> torch.Tensor:
        part = tensor if self.index is None else tensor[self.index]
        return part.transpose(0, 1) if self.axis == 1 and not self.iid else part

    @property
    def iid(self) -> bool:
        """Every entry drawn alike, whatever the block: the stored layout is filled directly (a
        contiguous draw, ~5x faster than through a transposed view)."""
        return self.chunks <= 1 and isinstance(self.spec, _IID_SPECS)


@dataclass
class PlanRow:
    """One parameter of the plan.

    Attributes:
        name: qualified parameter name (``"layer1.0.conv1.weight"``).
        module: qualified name of the owning module; module_type its class name.
        shape: the parameter's shape.
        fan_in, fan_out: fans of one block (per chunk for packed weights), ``None`` for vectors.
        chunks: number of blocks a packed weight is split into (QKV 3, LSTM 4, GRU 3).
        activation: the nonlinearity consuming the layer's output (``"linear"`` when none);
            found_by: how it was found (``"fx"``, ``"hooks"``, ``"module_order"``, ``"structure"``,
            ``"-"`` for parameters that do not need one).
        gain: the gain used (``"propagated"`` rows: ``std * sqrt(fan_in)``, the forward gain of the
            activation that feeds the layer); scheme: the scheme's name; spec: what is sampled, per
            block.
        std: std of the entries (for orthogonal blocks ``gain / sqrt(max(rows, cols))``);
            bound: half-width of a uniform or truncated normal, else ``None``.
        rule: the rule that decided this row (``None`` when the scheme did); note: free text.
        q_in, q_out: the second moments ``E[x^2]`` of the layer's input and output at init under
            this plan, propagated through the model's graph (:mod:`initlab.graph.moments`;
            standardised data assumed; a ``MultiheadAttention``'s rows: the module's input and
            output), ``None`` where the graph could not say.
        applied: whether the parameter was written.
    """

    name: str
    module: str
    module_type: str
    shape: tuple[int, ...]
    fan_in: int | None = None
    fan_out: int | None = None
    chunks: int = 1
    activation: str | None = None
    found_by: str = "-"
    input_activation: str | None = None
    gain: float | None = None
    scheme: str = ""
    spec: str = ""
    std: float | None = None
    bound: float | None = None
    rule: str | None = None
    note: str = ""
    q_in: float | None = None
    q_out: float | None = None
    applied: bool = False
    _fills: list[_Fill] = field(default_factory=list, repr=False, compare=False)
    _axis: int = field(default=0, repr=False, compare=False)  # the output axis: 1 for a Conv1D weight

    def as_dict(self) -> dict[str, Any]:
        """The row as a plain dict (JSON-ready)."""
        return {
            "name": self.name, "module": self.module, "module_type": self.module_type,
            "shape": list(self.shape), "fan_in": self.fan_in, "fan_out": self.fan_out,
            "chunks": self.chunks, "activation": self.activation, "found_by": self.found_by,
            "input_activation": self.input_activation,
            "gain": self.gain, "scheme": self.scheme, "spec": self.spec, "std": self.std,
            "bound": self.bound, "rule": self.rule, "note": self.note, "q_in": self.q_in,
            "q_out": self.q_out, "applied": self.applied,
        }


@dataclass
class InitPlan:
    """What :func:`init_model` did (or, with ``dry_run=True``, would do): one row per parameter.

    Attributes:
        scheme: the scheme asked for.
        rows: list of :class:`PlanRow`, in ``named_modules`` order.
        skipped: modules with their own parameters that no handler knows and no rule decides,
            left alone: dicts ``{"module", "type", "params", "why"}``; :func:`init_model` names
            them in one :class:`SkippedParameterWarning`.
        detection: the activation detection that ran (``"fx"``, ``"hooks"``, ``"module_order"``);
            detection_note: why an earlier method was not used.
        propagation: how the graph behind the rows' ``q_in`` / ``q_out`` (and, under ``"auto"`` and
            ``"variance"``, the propagated scales) was built, or why it could not be.
        applied: ``False`` for a dry run.
    """

    scheme: str
    rows: list[PlanRow]
    skipped: list[dict[str, Any]]
    detection: str
    detection_note: str | None = None
    propagation: str | None = None
    applied: bool = False

    def __iter__(self):
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, name: str) -> PlanRow:
        """The row of parameter ``name``.

        Raises:
            KeyError: no such parameter (the message lists a few names).
        """
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"no parameter {name!r} in the plan: have {', '.join(r.name for r in self.rows[:8])}")

    @property
    def records(self) -> list[dict[str, Any]]:
        """Tidy records (:mod:`initlab.records`): per row ``std``, ``fan_in``, ``fan_out`` and
        ``gain`` (those that are defined), with the row's other fields as extras."""
        out = []
        for r in self.rows:
            for stat in ("std", "bound", "fan_in", "fan_out", "gain"):
                value = getattr(r, stat)
                if value is None:
                    continue
                out.append({
                    "experiment": "init_plan", "scheme": r.scheme, "activation": r.activation,
                    "layer": r.name, "stat": stat, "value": value, "epoch": None, "seed": None,
                    "module_type": r.module_type, "found_by": r.found_by, "rule": r.rule,
                })
        return out

    def to_json(self, indent: int | None = 2) -> str:
        """The plan as JSON: ``{"scheme", "detection", "detection_note", "applied", "rows",
        "skipped"}``; NaN becomes ``null``."""
        rows = json.loads(records_to_json([r.as_dict() for r in self.rows]))
        return json.dumps({
            "scheme": self.scheme, "detection": self.detection, "detection_note": self.detection_note,
            "propagation": self.propagation, "applied": self.applied, "rows": rows, "skipped": self.skipped,
        }, indent=indent)

    def table(self) -> str:
        """A fixed-width text table, one line per parameter, then the skipped modules."""
        def fmt(x: Any) -> str:
            if x is None:
                return "-"
            if isinstance(x, float):
                return f"{x:.4g}"
            return str(x)

        head = ("parameter", "shape", "fan_in", "fan_out", "input", "activation", "found", "gain",
                "scheme", "spec", "std", "bound", "E[x^2] in", "E[y^2] out", "rule")
        body = []
        for r in self.rows:
            fans_in = fmt(r.fan_in) + (f"x{r.chunks}" if r.chunks > 1 and r.fan_in else "")
            body.append((
                r.name, "x".join(map(str, r.shape)) or "()", fans_in, fmt(r.fan_out),
                fmt(r.input_activation), fmt(r.activation), r.found_by, fmt(r.gain), r.scheme, r.spec,
                fmt(r.std), fmt(r.bound), fmt(r.q_in), fmt(r.q_out), fmt(r.rule),
            ))
        widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
        lines = [
            f"init plan: scheme={self.scheme}  detection={self.detection}"
            + (f" ({self.detection_note})" if self.detection_note else "")
            + ("" if self.applied else "  [dry run: nothing written]")
            + (f"\ngraph: {self.propagation}" if self.propagation else ""),
            "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip(),
            "  ".join("-" * w for w in widths),
        ]
        lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)).rstrip() for b in body]
        for s in self.skipped:
            lines.append(f"skipped ({s.get('why', 'unknown module')}, left alone): {s['module'] or '(root)'} "
                         f"({s['type']}): "
                         + ", ".join(s["params"]))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


# ---- specs ---------------------------------------------------------------------------------------


def _spec_std_bound(
    spec: schemes.Spec, shape: Sequence[int], chunks: int
) -> tuple[float | None, float | None]:
    if isinstance(spec, schemes.Uniform):
        return spec.expected_std, spec.bound
    if isinstance(spec, schemes.TruncatedNormal):
        return spec.expected_std, (spec.b - spec.a) / 2.0
    if isinstance(spec, schemes.Orthogonal) and len(shape) >= 2:
        rows = shape[0] // chunks
        cols = math.prod(shape[1:])
        return spec.gain / math.sqrt(max(rows, cols)), None
    if isinstance(spec, schemes.LooksLinear) and len(shape) == 2:
        rb, cb = schemes.looks_linear_block(spec, (shape[0] // chunks, shape[1]))
        return spec.gain / math.sqrt(max(rb, cb)), None
    return spec.expected_std, None


@dataclass(frozen=True)
class _ChainRole:
    """What the isometric rule gives one Linear of a plain chain (see :func:`_plan_chain`)."""

    spec: schemes.Spec
    gain: float  # the block's gain before the semi-orthogonal correction
    shift: float  # phi(0) of the activation the layer reads: the bias subtracts shift * W 1
    note: str


def _plain_chain(model: nn.Module, found: dict[str, _Found], method: str) -> list[str] | None:
    """The Linear layers of ``model`` in data-flow order when the model is a *plain chain*, else
    ``None``: every module with parameters is an ``nn.Linear`` called once, and the layers form one
    path ``L0 -> phi -> L1 -> phi -> ... -> Ln`` of private links (:meth:`_Graph.private_next`),
    ``n >= 1``; only fx sees the links."""
    if method != "fx":
        return None
    names = []
    for q, m in model.named_modules():
        own = dict(m.named_parameters(recurse=False))
        if not own:
            continue
        if type(m) is not nn.Linear or q not in found or not {"weight"} <= set(own) <= {"weight", "bias"}:
            return None
        names.append(q)
    ids = [id(p) for p in model.parameters()]
    if len(ids) != len(list(model.named_parameters(remove_duplicate=False))):
        return None  # a tied weight: one matrix in two places cannot be mirrored both ways
    if len(names) < 2:
        return None
    nxt = {q: found[q].next_layer for q in names}
    targets = [t for t in nxt.values() if t is not None]
    if len(targets) != len(names) - 1 or len(set(targets)) != len(targets) or not set(targets) <= set(names):
        return None
    start = [q for q in names if q not in set(targets)]
    if len(start) != 1 or not found[start[0]].reads_input:
        return None
    chain = [start[0]]
    while nxt[chain[-1]] is not None:
        chain.append(nxt[chain[-1]])
    return chain if len(chain) == len(names) and found[chain[-1]].writes_output else None


def _plan_chain(model: nn.Module, chain: list[str], found: dict[str, _Found]) -> dict[str, _ChainRole] | None:
    """The isometric rule for a plain chain (:func:`initlab.theory.isometric_point` per link).

    A link is the activation between ``chain[k]`` and ``chain[k + 1]``; the last layer's consuming
    activation (if any) is a link without a next layer. Looks-linear links (mirrored weights) need
    a next layer and an even width; otherwise the link is orthogonal at its near-critical point
    (``looks_linear=False``). Layer ``k`` reads ``V_in`` per unit — 1 for the chain's input (assumed
    standardised), ``c^2 q`` from a mirrored link, ``q / sigma_w2`` from an orthogonal one — and
    writes the next link's ``q``, so its block gain is ``sqrt(q_out / V_in)``; the last layer
    without an activation (the head) has gain 1, or ``1/c`` after a mirrored link (the whole
    network is then exactly orthogonal).

    Returns ``None`` (the caller falls back to the variance rule) when a link cannot be planned:
    an activation whose parameters detection could not read (an asymmetric ``Hardtanh``), or a
    layer after an activation with ``phi(0) != 0`` (sigmoid) that has no bias to centre it with.
    """
    from initlab.theory import isometric_point

    modules = dict(model.named_modules())
    cache: dict[tuple, Any] = {}

    def point(act: str, param: float | None, **kw: bool) -> Any:
        key = (act, param, tuple(sorted(kw.items())))
        if key not in cache:
            cache[key] = isometric_point(act, param=param, **kw)
        return cache[key]

    points: list[Any] = []
    for k, q in enumerate(chain):
        f = found[q]
        if f.activation in _LINEAR:
            points.append(None)
            continue
        if f.activation == "hardtanh" and f.param is None:  # asymmetric bounds: not in the table
            return None
        try:
            pt = point(f.activation, f.param)
        except (InitlabError, TypeError):
            return None
        last = k + 1 == len(chain)
        if pt.kind == "looks_linear" and (last or modules[q].out_features % 2):
            # the model's output (keep q = 1, the chain's scale) or an odd width (near-critical)
            pt = point(pt.activation, pt.param, looks_linear=False, near_critical=not last)
        if pt.shift != 0.0 and not last and modules[chain[k + 1]].bias is None:
            return None
        points.append(pt)
    roles: dict[str, _ChainRole] = {}
    for k, q in enumerate(chain):
        m = modules[q]
        rows, cols = m.out_features, m.in_features
        before = points[k - 1] if k > 0 else None
        after = points[k]
        cols_m = before is not None and before.kind == "looks_linear"
        rows_m = after is not None and after.kind == "looks_linear"
        if before is None:
            v_in = 1.0
        elif cols_m:
            v_in = before.odd_slope ** 2 * before.q_star
        else:
            v_in = before.q_star / before.sigma_w2
        if after is not None:
            g = math.sqrt(after.q_star / v_in)
        else:  # the head: gain 1, or undo the mirrored link's slope c
            g = 1.0 / before.odd_slope if cols_m else 1.0
        rb, cb = (rows // 2 if rows_m else rows), (cols // 2 if cols_m else cols)
        g_block = g * math.sqrt(max(rb, cb) / cb) if cb else g
        spec: schemes.Spec = (schemes.LooksLinear(g_block, rows_m, cols_m) if rows_m or cols_m
                              else schemes.Orthogonal(g_block))
        bits = []
        if after is not None:
            bits.append(f"{after.kind.replace('_', '-')} {after.activation}: q*={after.q_star:.3g}, "
                        f"chi_1={after.chi_1:.3g}")
        if before is not None and before.shift != 0.0:
            bits.append(f"bias centres {before.activation}(0)={before.shift:.3g}")
        roles[q] = _ChainRole(spec, g, before.shift if before is not None else 0.0,
                              "isometric chain" + (": " + "; ".join(bits) if bits else ""))
    return roles


class _CenteringBias:
    """Bias fill ``b = -shift * W 1``: the layer then reads ``phi - phi(0)`` (a sigmoid's 0.5
    taken out), which passes through the origin; drawn after the layer's weight."""

    def __init__(self, weight: torch.Tensor, shift: float) -> None:
        self.weight, self.shift = weight, shift

    def __call__(self, tensor: torch.Tensor, generator: Any) -> None:
        tensor.copy_(-self.shift * self.weight.detach().sum(dim=1))


class _NoCriticalPoint(InitlabError):
    """``scheme="critical"`` met an activation without a (stable) critical point at sigma_b2 = 0."""


class _Context:
    """Everything a handler needs: scheme, gains, detection, generator."""

    def __init__(
        self, scheme: str, found: dict[str, _Found], embedding_std: float, sigma_b2: float | None = None,
        chain: dict[str, _ChainRole] | None = None, packed: dict[str, int] | None = None,
        scales: dict[str, PropagationPlan] | None = None,
    ) -> None:
        self.scheme = scheme
        self.scales = scales or {}  # "auto" / "variance" -> the graph-wide propagation plan
        self.found = found
        self.embedding_std = embedding_std
        self.sigma_b2 = sigma_b2
        self.chain = chain or {}
        self.packed = packed or {}  # layer -> blocks of its packed weight, by structure
        self._gains: dict[tuple[str, float | None], float] = {}
        self._critical: dict[tuple[str, float | None], Any] = {}

    def derive(self, scheme: str) -> _Context:
        """The same detection and caches under another scheme (for rules)."""
        sub = _Context(scheme, self.found, self.embedding_std, self.sigma_b2, self.chain, self.packed,
                       self.scales)
        sub._gains, sub._critical = self._gains, self._critical
        return sub

    def scale(self, module: str, part: str = "weight") -> LayerScale | None:
        """The propagated scale of ``part`` of ``module`` under this scheme, if the graph has it."""
        plan = self.scales.get(self.scheme)
        return plan.scales.get((module, part)) if plan is not None else None

    def param_std(self, name: str) -> float | None:
        """The propagated std of a parameter the forward reads directly (class token, positions)."""
        plan = self.scales.get(self.scheme)
        return plan.params.get(name) if plan is not None else None

    def gain(self, act: str | None, param: float | None) -> float:
        if act in _LINEAR:
            return 1.0
        key = (act, param)
        if key not in self._gains:
            from initlab.gains import gain

            try:
                self._gains[key] = float(gain(act, "forward", param))
            except InitlabError:
                self._gains[key] = float(gain(act, "forward"))
        return self._gains[key]

    def critical(self, act: str | None, param: float | None):
        key = (act or "linear", param)
        if key not in self._critical:
            from initlab.theory import critical_point

            # positively homogeneous activations are critical only at sigma_b2 = 0 (q* diverges
            # for any bias variance), so a requested sigma_b2 applies to the others only
            kwargs = {} if self.sigma_b2 is None or key[0] in _HOMOGENEOUS else {"sigma_b2": self.sigma_b2}
            try:
                try:
                    self._critical[key] = critical_point(key[0], param=param, **kwargs)
                except InitlabError:
                    if param is None:
                        raise
                    self._critical[key] = critical_point(key[0], **kwargs)
            except InitlabError as exc:
                raise _NoCriticalPoint(str(exc)) from None
        return self._critical[key]

    def weight_spec(
        self, fans: Fans, act: str | None, param: float | None, unit_input: bool = False
    ) -> tuple[str, schemes.Spec, float]:
        """(scheme label, spec, gain) for a weight block under the context's scheme; with
        ``unit_input`` (no nonlinearity produced the layer's input) the gain is 1."""
        if self.scheme == "critical":
            cp = self.critical(act, param)
            return "critical", schemes.Normal(cp.sigma_w / math.sqrt(fans.fan_in)), cp.sigma_w
        g = 1.0 if unit_input else self.gain(act, param)
        if self.scheme in ("auto", "variance"):
            if act in RELU_FAMILY:
                return "he_normal", schemes.he_normal(fans, g), g
            if act == "selu":
                return "lecun_normal", schemes.lecun_normal(fans, 1.0), 1.0
            return "glorot_normal", schemes.glorot_normal(fans, g), g
        return self.scheme, schemes.named_spec(self.scheme, fans, g), g

    def bias_spec(self, act: str | None, param: float | None) -> tuple[str, schemes.Spec]:
        if self.scheme == "critical":
            cp = self.critical(act, param)
            return "critical", (schemes.Normal(cp.sigma_b) if cp.sigma_b2 > 0 else schemes.Constant(0.0))
        return "zeros", schemes.Constant(0.0)


def _torch_fans(shape: Sequence[int]) -> Fans:
    """torch's ``_calculate_fan_in_and_fan_out``: ``(shape[1] * rf, shape[0] * rf)``."""
    rf = math.prod(shape[2:]) if len(shape) > 2 else 1
    return Fans(shape[1] * rf, shape[0] * rf, rf)


def _set(row: PlanRow, label: str, spec: schemes.Spec, chunks: int = 1, gain: float | None = None) -> None:
    """Decide ``row``: ``spec`` in ``chunks`` blocks along the row's output axis."""
    shape = row.shape if row._axis == 0 else (row.shape[1], row.shape[0], *row.shape[2:])
    row.scheme = label
    row.spec = spec.describe()
    row.gain = gain
    row.std, row.bound = _spec_std_bound(spec, shape, chunks)
    row._fills = [_Fill(None, spec, chunks, row._axis)]


def _set_propagated(row: PlanRow, s: LayerScale, chunks: int,
                    chunk_scales: Sequence[LayerScale] | None = None) -> None:
    """A weight drawn ``N(0, E[w^2])`` from the graph-wide propagation (:func:`initlab.model.plan_scales`);
    ``chunk_scales``: one per block of a packed weight (attention Q, K, V)."""
    if chunk_scales is not None and len({c.weight_second for c in chunk_scales}) > 1:
        rows_per = row.shape[0] // len(chunk_scales)
        _set(row, "propagated", schemes.Normal(s.std), chunks=1)
        row._fills = [_Fill(slice(i * rows_per, (i + 1) * rows_per), schemes.Normal(c.std))
                      for i, c in enumerate(chunk_scales)]
        row.std = None
    else:  # iid entries: one draw for all blocks
        _set(row, "propagated", schemes.Normal(s.std))
    # the equivalent gain g of std = g / sqrt(fan_in): the forward gain of the activation that
    # *feeds* the layer (1 / sqrt(E[x^2]) for a unit target)
    row.gain = s.std * math.sqrt(row.fan_in) if row.fan_in else None
    source = "E[x^2]" if s.q_in is not None else "table"
    row.note = "; ".join(filter(None, [row.note, f"{s.role}: E[y^2] {s.q_out:.3g}"
                                       + (f" from {source} {s.q_in:.3g}" if s.q_in is not None else "")]))


def _row(name: str, p: torch.Tensor, qualname: str, m: nn.Module) -> PlanRow:
    return PlanRow(name=name, module=qualname, module_type=type(m).__name__, shape=tuple(p.shape))


def _layer_fans(m: nn.Module, chunks: int) -> Fans:
    """True fans of one block of a layer's weight; a Conv1D's ``(in, out)`` is Keras's Dense layout."""
    shape = tuple(m.weight.shape)
    if isinstance(m, _conv1d_types()):
        return compute_fans(shape, layout="keras", chunks=chunks)
    groups, transposed = getattr(m, "groups", 1), isinstance(m, _CONVT)
    return compute_fans(shape, groups=groups, transposed=transposed, chunks=chunks)


def _packed_by_structure(model: nn.Module) -> dict[str, int]:
    """GPT-2's packed projection -> its number of blocks: a Conv1D named ``c_attn`` whose parent
    splits its output into blocks of ``split_size`` (``q, k, v = c_attn(x).split(split_size, 2)``
    in GPT, GPT-2, ImageGPT, Decision Transformer: 3 blocks; their cross-attention: 2, K and V)."""
    conv1d = _conv1d_types()
    packed: dict[str, int] = {}
    if not conv1d:
        return packed
    for q, parent in model.named_modules():
        child, size = parent._modules.get("c_attn"), getattr(parent, "split_size", None)
        weight = getattr(child, "weight", None)
        if (not isinstance(child, conv1d) or not isinstance(weight, torch.Tensor) or weight.dim() != 2
                or isinstance(size, bool) or not isinstance(size, int) or size < 1):
            continue
        if weight.shape[1] % size == 0 and weight.shape[1] // size > 1:
            packed[f"{q}.c_attn" if q else "c_attn"] = weight.shape[1] // size
    return packed


def _handle_layer(
    ctx: _Context, q: str, m: nn.Module, mha_out: bool, chunks: int | None = None
) -> list[PlanRow]:
    """Rows of a Linear / Conv / ConvTranspose / Conv1D's ``weight`` and ``bias`` (other
    parameters, e.g. ``weight_norm``'s ``weight_g``, get none). ``chunks > 1``: a packed weight
    (:class:`Packed`; ``None``: GPT-2's ``c_attn`` by :func:`_packed_by_structure`, else 1), in
    blocks along its output axis (dim 1 of a Conv1D weight ``(in, out)``, else dim 0)."""
    by_structure = chunks is None and q in ctx.packed
    chunks = ctx.packed.get(q, 1) if chunks is None else chunks
    conv1d = isinstance(m, _conv1d_types())
    f = ctx.found.get(q, _Found("linear", None, "structure" if mha_out else "module_order"))
    if mha_out:
        f = _Found("linear", None, "structure")
    fans = _layer_fans(m, chunks)
    rows = []
    for pname, p in m.named_parameters(recurse=False):
        if pname not in ("weight", "bias"):
            continue
        row = _row(f"{q}.{pname}" if q else pname, p, q, m)
        row._axis = 1 if conv1d and pname == "weight" else 0
        row.activation, row.found_by = f.activation, f.found_by
        row.input_activation = f.input_activation
        row.fan_in, row.fan_out = fans.fan_in, fans.fan_out
        if f.via:
            row.note = "via " + ", ".join(f.via)
        if pname == "weight" and p.numel() == 0:  # torch's own init_ functions: a warned no-op
            row.scheme, row.spec, row.note = "empty", "nothing to draw", "zero-element weight"
        elif pname == "weight":
            _plan_layer_weight(ctx, row, f, fans, chunks, conv1d, mha_out)
            if by_structure:
                row.note = "; ".join(filter(None, [row.note, f"{chunks} blocks of the parent's split_size"]))
        else:
            _plan_layer_bias(ctx, row, m, f, chunks, zero_default=mha_out or conv1d)
        rows.append(row)
    return rows


def _plan_layer_weight(
    ctx: _Context, row: PlanRow, f: _Found, fans: Fans, chunks: int, conv1d: bool, mha_out: bool = False
) -> None:
    """A layer's weight under ``ctx.scheme``; ``fans`` are those of one of its ``chunks`` blocks."""
    per_chunk = True
    if ctx.scheme == "torch_default" and conv1d:
        _set(row, "torch_default", schemes.Normal(0.02))
        row.note = "as transformers' Conv1D.__init__"
        per_chunk = False
    elif ctx.scheme == "torch_default":
        _set(row, "torch_default", schemes.torch_default(_torch_fans(row.shape)))
        row.note = "torch fans"
        per_chunk = False
    elif ctx.scheme == "auto" and row.module in ctx.chain and chunks == 1:
        role = ctx.chain[row.module]
        _set(row, "looks_linear" if isinstance(role.spec, schemes.LooksLinear) else "orthogonal",
             role.spec, gain=role.gain)
        row.note = "; ".join(filter(None, [row.note, role.note]))
    elif (s := ctx.scale(row.module.rpartition(".")[0] if mha_out else row.module,
                         "out" if mha_out else "weight")) is not None:
        _set_propagated(row, s, chunks)
    elif ctx.scheme == "keras_default" and not conv1d:  # Keras: the whole kernel, torch's fans of it
        _set(row, "keras_default", schemes.glorot_uniform(_torch_fans(row.shape)))
        per_chunk = False
    elif ctx.scheme == "keras_default":  # (in, out) is a Keras Dense kernel; packed: per block
        _set(row, "keras_default", schemes.glorot_uniform(fans), chunks=chunks)
    else:
        unit = f.input_activation in _LINEAR
        label, spec, g = ctx.weight_spec(fans, f.activation, f.param, unit_input=unit)
        _set(row, label, spec, chunks=chunks, gain=g)
        if unit and f.activation not in _LINEAR and ctx.scheme != "critical":
            row.note = "; ".join(filter(None, [row.note, "input not from a nonlinearity: gain 1"]))
    row.chunks = chunks
    if chunks > 1 and per_chunk:
        row.note = "; ".join(filter(None, [row.note, f"per chunk along dim {row._axis}"]))


def _plan_layer_bias(ctx: _Context, row: PlanRow, m: nn.Module, f: _Found, chunks: int,
                     zero_default: bool) -> None:
    """A layer's bias under ``ctx.scheme``; ``zero_default``: the module's own init zeroes it
    (MultiheadAttention's ``out_proj``, Conv1D)."""
    if ctx.scheme == "torch_default":
        tfans = _torch_fans(tuple(m.weight.shape))
        spec = schemes.Constant(0.0) if zero_default or tfans.fan_in == 0 else (
            schemes.Uniform(-1 / math.sqrt(tfans.fan_in), 1 / math.sqrt(tfans.fan_in)))
        _set(row, "torch_default", spec)
    elif ctx.scheme == "auto" and row.module in ctx.chain and chunks == 1 and ctx.chain[row.module].shift:
        shift = ctx.chain[row.module].shift
        row.scheme, row.spec = "centering", f"-{shift:.4g} * weight.sum(1)"
        row.std = row.bound = row.gain = None
        row._fills = [_Fill(None, _CenteringBias(m.weight, shift))]
    else:
        label, spec = ctx.bias_spec(f.activation, f.param)
        _set(row, label, spec)


def _handle_mha(ctx: _Context, q: str, m: nn.MultiheadAttention) -> list[PlanRow]:
    rows = []
    for pname, p in m.named_parameters(recurse=False):
        row = _row(f"{q}.{pname}" if q else pname, p, q, m)
        row.activation, row.found_by = "linear", "structure"
        if pname == "in_proj_weight":
            fans = compute_fans(tuple(p.shape), chunks=3)
            row.fan_in, row.fan_out, row.chunks = fans.fan_in, fans.fan_out, 3
            if ctx.scheme == "torch_default":
                _set(row, "torch_default", schemes.glorot_uniform(_torch_fans(tuple(p.shape))))
                row.note = "xavier_uniform_ on the packed weight, as torch"
            elif ctx.scheme == "keras_default":
                _set(row, "keras_default", schemes.glorot_uniform(fans), chunks=3)
            elif (parts := [ctx.scale(q, p) for p in ("query", "key", "value")]) and all(parts):
                _set_propagated(row, parts[0], 3, chunk_scales=parts)
                row.note = "per chunk (Q, K, V); " + row.note
            else:
                label, spec, g = ctx.weight_spec(fans, "linear", None)
                _set(row, label, spec, chunks=3, gain=g)
                row.note = "per chunk (Q, K, V)"
        elif pname in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
            fans = compute_fans(tuple(p.shape))
            row.fan_in, row.fan_out = fans.fan_in, fans.fan_out
            if ctx.scheme in ("torch_default", "keras_default"):
                _set(row, ctx.scheme, schemes.glorot_uniform(fans))
            else:
                label, spec, g = ctx.weight_spec(fans, "linear", None)
                _set(row, label, spec, gain=g)
        elif pname in ("bias_k", "bias_v"):
            fans = _torch_fans(tuple(p.shape))
            _set(row, "glorot_normal", schemes.glorot_normal(fans))
            row.note = "as torch (xavier_normal_)"
        else:  # in_proj_bias
            row.chunks = 3 if pname == "in_proj_bias" else 1
            if ctx.scheme == "critical":
                label, spec = ctx.bias_spec("linear", None)
            else:
                label, spec = "zeros", schemes.Constant(0.0)
            _set(row, label if ctx.scheme not in ("torch_default", "keras_default") else ctx.scheme, spec)
        rows.append(row)
    return rows


_GATES = {"LSTM": ("i", "f", "g", "o"), "GRU": ("r", "z", "n"), "RNN": ("h",)}


def _handle_rnn(ctx: _Context, q: str, m: nn.RNNBase) -> list[PlanRow]:
    rows = []
    gates = _GATES.get(m.mode.split("_")[0] if m.mode.startswith("RNN") else m.mode, ("h",))
    k = len(gates)
    hidden = m.hidden_size
    for pname, p in m.named_parameters(recurse=False):
        row = _row(f"{q}.{pname}" if q else pname, p, q, m)
        row.found_by = "structure"
        row.activation = "gates " + ",".join(gates) if k > 1 else getattr(m, "nonlinearity", "tanh")
        if ctx.scheme == "torch_default":
            b = 1.0 / math.sqrt(hidden) if hidden > 0 else 0.0
            _set(row, "torch_default", schemes.Uniform(-b, b))
            rows.append(row)
            continue
        if pname.startswith("weight_hr"):  # LSTM projection (proj, hidden)
            fans = compute_fans(tuple(p.shape))
            row.fan_in, row.fan_out, row.activation = fans.fan_in, fans.fan_out, "linear"
            if ctx.scheme == "keras_default":
                _set(row, "keras_default", schemes.glorot_uniform(fans))
            else:
                label, spec, g = ctx.weight_spec(fans, "linear", None)
                _set(row, label, spec, gain=g)
        elif pname.startswith("weight_"):
            recurrent = pname.startswith("weight_hh")
            if ctx.scheme == "keras_default":  # Keras: the whole packed kernel
                fans = _torch_fans(tuple(p.shape))
                row.fan_in, row.fan_out = fans.fan_in, fans.fan_out
                spec = schemes.Orthogonal(1.0) if recurrent else schemes.glorot_uniform(fans)
                _set(row, "keras_default", spec)
                row.note = "whole packed kernel, as Keras"
            else:
                fans = compute_fans(tuple(p.shape), chunks=k)
                row.fan_in, row.fan_out, row.chunks = fans.fan_in, fans.fan_out, k
                if recurrent and ctx.scheme in ("auto", "variance"):
                    _set(row, "orthogonal", schemes.Orthogonal(1.0), chunks=k, gain=1.0)
                else:
                    label, spec, g = ctx.weight_spec(fans, "linear", None)
                    _set(row, label, spec, chunks=k, gain=g)
                row.note = "per gate" + (" (recurrent)" if recurrent else " (input)")
        else:  # biases
            row.chunks = k
            forget = m.mode == "LSTM" and ctx.scheme in ("auto", "variance", "keras_default")
            if ctx.scheme == "critical":
                label, spec = ctx.bias_spec("linear", None)
            else:
                label = "zeros" if ctx.scheme != "keras_default" else "keras_default"
                spec = schemes.Constant(0.0)
            _set(row, label, spec)
            if forget and pname.startswith("bias_ih"):
                row._fills.append(_Fill(slice(hidden, 2 * hidden), schemes.Constant(1.0)))
                row.spec = "constant(0), forget gate constant(1)"
                row.note = "forget-gate bias 1 (bias_ih + bias_hh = 1)"
            elif forget:
                row.note = "forget-gate bias 0 here (bias_ih carries the 1)"
        rows.append(row)
    return rows


def _norm_weight_offset(m: nn.Module) -> float | None:
    """``0.0`` for a norm layer whose ``weight`` multiplies (torch's, ``LlamaRMSNorm``), ``1.0`` for
    one that multiplies by ``1 + weight`` (Gemma's), ``None`` for a module that is not a norm. Norms
    torch does not ship are recognised by what they compute (:func:`initlab.graph.vocab.measure_module`)."""
    if isinstance(m, _NORM_TYPES):
        return 0.0
    if next(iter(m.children()), None) is not None or "weight" not in dict(m.named_parameters()):
        return None
    from initlab.graph import Kind
    from initlab.graph.vocab import classify_module

    entry = classify_module(m)
    return float(entry.params.get("weight_offset", 0.0)) if entry.kind is Kind.NORM else None


def _handle_simple(ctx: _Context, q: str, m: nn.Module) -> list[PlanRow] | None:
    """Embedding, norm layers, PReLU; ``None`` when ``m`` is none of them."""
    rows = []
    params = list(m.named_parameters(recurse=False))
    if isinstance(m, (nn.Embedding, nn.EmbeddingBag)):
        for pname, p in params:
            row = _row(f"{q}.{pname}" if q else pname, p, q, m)
            if ctx.scheme == "keras_default":
                _set(row, "keras_default", schemes.Uniform(-0.05, 0.05))
            elif ctx.scheme == "torch_default":
                _set(row, "torch_default", schemes.Normal(1.0))
            elif pname == "weight" and (s := ctx.scale(q, "weight")) is not None:
                _set_propagated(row, s, 1)
            else:
                _set(row, "embedding", schemes.Normal(ctx.embedding_std))
            if getattr(m, "padding_idx", None) is not None:
                row._fills.append(_Fill(slice(m.padding_idx, m.padding_idx + 1), schemes.Constant(0.0)))
                row.note = f"padding row {m.padding_idx} zero"
            rows.append(row)
        return rows
    offset = _norm_weight_offset(m)
    if offset is not None:
        for pname, p in params:
            row = _row(f"{q}.{pname}" if q else pname, p, q, m)
            value = 1.0 - offset if pname == "weight" else 0.0
            _set(row, "ones" if value else "zeros", schemes.Constant(value))
            if not isinstance(m, _NORM_TYPES):
                row.note = "a norm, by what it computes" + (": weight 0 is 1 + weight = 1" if offset else "")
            rows.append(row)
        return rows
    if isinstance(m, nn.PReLU):
        for pname, p in params:
            row = _row(f"{q}.{pname}" if q else pname, p, q, m)
            _set(row, "prelu_init", schemes.Constant(float(getattr(m, "init", 0.25))))
            rows.append(row)
        return rows
    return None


# ---- rules ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Packed:
    """Rule target for a packed weight: ``chunks`` equal blocks stacked along its output axis, each
    initialized with its own fans (``fan_out`` of one block, not of the whole tensor). The output
    axis is dim 0 of a torch weight ``(out, in, ...)`` and dim 1 of a transformers ``Conv1D``
    weight ``(in, out)``, which is filled through its transposed view (the plan's note says
    ``per chunk along dim 1``).

    .. math::
        \\text{Glorot per block:}\\quad \\sigma = g \\sqrt{\\frac{2}{fan_{in} + fan_{out}/k}}

    The way to tell :func:`init_model` that one layer holds several projections, e.g. a fused QKV
    ``Linear(d, 3 * d)`` (``k = 3``) or a fused gate ``Linear(d, 2 * h)`` (``k = 2``).
    ``nn.MultiheadAttention``, the RNNs and transformers GPT-2's ``c_attn`` (a Conv1D whose
    parent has ``split_size``) are split without a rule.

    Args:
        chunks: number of blocks ``k`` (an int >= 1; must divide dim 0 of the matched weight).
        scheme: the scheme for each block (a name :func:`init_model` accepts); ``None`` uses
            ``init_model``'s own ``scheme``.

    Raises:
        InitlabError: ``chunks`` not an int >= 1 or ``scheme`` unknown (here); at planning, a
            matched parameter with fewer than 2 dims or an output axis that ``chunks`` does not
            divide.

    Source: Radford et al. (2019), GPT-2 (``c_attn``); Glorot & Bengio (2010).

    >>> Packed(3)
    Packed(chunks=3, scheme=None)
    >>> plan = init_model(nn.Linear(8, 24), rules=[(r"weight", Packed(3))], dry_run=True)
    >>> plan["weight"].fan_in, plan["weight"].fan_out, plan["weight"].chunks
    (8, 8, 3)
    """

    chunks: int
    scheme: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.chunks, bool) or not isinstance(self.chunks, int) or self.chunks < 1:
            raise InitlabError(
                f"Packed(chunks={self.chunks!r}) is invalid: pass the number of blocks, an int >= 1"
            )
        if self.scheme is not None and self.scheme not in SCHEMES:
            raise InitlabError(f"Packed scheme {self.scheme!r} is unknown: use one of {', '.join(SCHEMES)}")


#: Rule targets that are not schemes: ``"keep"`` leaves the matched parameters as they are.
_RULE_ONLY = ("keep",)


def _describe_rule(i: int, pattern: Any, target: Any) -> str:
    pat = pattern.__name__ if isinstance(pattern, type) else (
        pattern.pattern if isinstance(pattern, re.Pattern) else str(pattern))
    if isinstance(target, str):
        tgt = target
    elif isinstance(target, schemes.Spec):
        tgt = target.describe()
    elif isinstance(target, Packed):
        tgt = f"packed({target.chunks}" + (f", {target.scheme})" if target.scheme else ")")
    else:
        tgt = getattr(target, "__name__", type(target).__name__)
    return f"#{i} {pat} -> {tgt}"


def _check_rules(rules: Iterable[Any] | None) -> list[tuple[Any, Any]]:
    if rules is None:
        return []
    if isinstance(rules, dict):
        rules = list(rules.items())
    if isinstance(rules, (str, bytes)) or (isinstance(rules, tuple) and len(rules) == 2
                                           and isinstance(rules[0], (str, re.Pattern, type))):
        raise InitlabError(
            f"rules={rules!r} must be a list of (pattern, target) pairs: wrap it, e.g. rules=[{rules!r}]"
        )
    out = []
    for i, rule in enumerate(rules):
        if not (isinstance(rule, (tuple, list)) and len(rule) == 2):
            raise InitlabError(
                f"rules[{i}]={rule!r} is not a (pattern, target) pair: pass e.g. (r'head\\.', 'zeros')"
            )
        pattern, target = rule
        if isinstance(pattern, str):
            try:
                pattern = re.compile(pattern)
            except re.error as exc:
                raise InitlabError(f"rules[{i}] pattern {rule[0]!r} is not a valid regex: {exc}") from None
        elif not (isinstance(pattern, re.Pattern)
                  or (isinstance(pattern, type) and issubclass(pattern, nn.Module))):
            raise InitlabError(
                f"rules[{i}] pattern {pattern!r} must be a regex on the parameter name or an nn.Module type"
            )
        if isinstance(target, str):
            if target not in SCHEMES and target not in _RULE_ONLY:
                raise InitlabError(
                    f"rules[{i}] scheme {target!r} is unknown: use one of "
                    f"{', '.join(SCHEMES + _RULE_ONLY)}"
                )
        elif not (isinstance(target, (schemes.Spec, Packed)) or callable(target)):
            raise InitlabError(
                f"rules[{i}] target {target!r} must be a scheme name, 'keep', an initlab.schemes Spec, "
                "a Packed(chunks) or a callable(tensor, generator)"
            )
        out.append((pattern, target))
    return out


def _matches(rules: list[tuple[Any, Any]], name: str, module: nn.Module) -> list[int]:
    """Indices of every rule whose pattern matches parameter ``name`` of ``module``."""
    return [i for i, (pattern, _) in enumerate(rules)
            if (isinstance(module, pattern) if isinstance(pattern, type) else pattern.search(name))]


def _match(rules: list[tuple[Any, Any]], name: str, module: nn.Module) -> tuple[int, Any] | None:
    hits = _matches(rules, name, module)
    return (hits[0], rules[hits[0]][1]) if hits else None


def residual_scaling_rule(
    n_layers: int, pattern: str = r"c_proj\.weight$", std: float = 0.02
) -> tuple[str, schemes.Normal]:
    """The GPT-2 rule: residual output projections ``N(0, (std / sqrt(2 n_layers))^2)``.

    .. math::
        \\sigma = \\frac{0.02}{\\sqrt{2 L}}

    Each of the ``L`` blocks adds two residual branches (attention, MLP) to the stream; scaling
    their output projections by ``1/sqrt(2L)`` keeps the stream's variance from growing with depth
    (Radford et al. 2019, "Language Models are Unsupervised Multitask Learners"; nanoGPT's
    ``_init_weights``).

    Args:
        n_layers: number of transformer blocks ``L`` (>= 1).
        pattern: regex on the qualified parameter name (GPT-2 / nanoGPT: ``c_proj.weight``; torch's
            ``nn.TransformerEncoderLayer``: ``r"(self_attn\\.out_proj|linear2)\\.weight$"``).
        std: the base std (GPT-2: 0.02).

    Returns:
        A ``(pattern, Normal)`` rule for :func:`init_model`'s ``rules``.

    Raises:
        InitlabError: ``n_layers < 1`` or ``std <= 0``.

    >>> residual_scaling_rule(12)
    ('c_proj\\\\.weight$', Normal(std=0.004082482904638631, mean=0.0))
    """
    if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 1:
        raise InitlabError(f"n_layers={n_layers!r} is invalid: pass the number of blocks, an int >= 1")
    if not (isinstance(std, (int, float)) and std > 0):
        raise InitlabError(f"std={std!r} is invalid: pass a number > 0")
    return pattern, schemes.Normal(std / math.sqrt(2 * n_layers))


def _handle(ctx: _Context, q: str, m: nn.Module, mha_out: bool) -> list[PlanRow] | None:
    """The rows of the parameters ``m`` owns under ``ctx``; ``None`` for an unknown module."""
    if isinstance(m, _layer_types()):
        return _handle_layer(ctx, q, m, mha_out)
    if isinstance(m, nn.MultiheadAttention):
        return _handle_mha(ctx, q, m)
    if isinstance(m, nn.RNNBase):
        return _handle_rnn(ctx, q, m)
    return _handle_simple(ctx, q, m)


_FANLESS = ("zeros", "small", "large")


def _apply_rule(
    ctx: _Context, row: PlanRow, m: nn.Module, mha_out: bool, i: int, pattern: Any, target: Any
) -> None:
    """Override ``row`` by rule ``i``. A scheme name gives the row exactly what ``init_model``
    would give it under that scheme (weights by the scheme, biases zero, gates per chunk, ...);
    ``"zeros"``, ``"small"``, ``"large"`` apply to any parameter, norm layers included; ``"keep"``
    leaves the parameter as it is; :class:`Packed` gives each of ``chunks`` blocks its own fans."""
    label = _describe_rule(i, pattern, target)
    if isinstance(target, schemes.Spec):
        _set(row, "rule", target, chunks=row.chunks if row.fan_in is not None else 1)
    elif isinstance(target, str) and target in _RULE_ONLY:  # "keep"
        row.scheme, row.spec, row._fills = "keep", "left as it is", []
        row.std = row.bound = row.gain = None
    elif isinstance(target, str) and target in _FANLESS:
        _set(row, target, schemes.named_spec(target, Fans(1, 1), 1.0))
    elif isinstance(target, (str, Packed)):
        packed = isinstance(target, Packed)
        name = (target.scheme or ctx.scheme) if packed else target
        chunks = target.chunks if packed else 1
        if packed and len(row.shape) < 2:
            raise InitlabError(
                f"rule {label} packs {row.name} of shape {row.shape}: only a weight with >= 2 dims is "
                "packed; match the weight alone, e.g. r'c_attn\\.weight$'"
            )
        if packed and row.shape[row._axis] % chunks:
            raise InitlabError(
                f"rule {label}: chunks={chunks} does not divide dim {row._axis} of {row.name} (shape "
                f"{row.shape}), its output axis: pass the number of blocks stacked along dim {row._axis}"
            )
        sub = ctx.derive(name)
        layer = isinstance(m, _layer_types())
        if packed and layer:
            sub_rows = _handle_layer(sub, row.module, m, mha_out, chunks)
        else:
            sub_rows = _handle(sub, row.module, m, mha_out)
        new = next((r for r in sub_rows or () if r.name == row.name), None)
        if packed and new is not None and not layer:
            if new.chunks > 1 and new.chunks != chunks:
                raise InitlabError(
                    f"rule {label}: {row.name} is split into {new.chunks} blocks by its module "
                    f"({type(m).__name__}) already: drop the rule or use Packed({new.chunks})"
                )
            if new.chunks == 1:  # a weight its module does not split: pack the raw tensor
                new = None
        if new is None:  # a parameter no handler knows: the scheme on the raw tensor, gain 1
            if row.fan_in is None:
                raise InitlabError(
                    f"rule {label} names scheme {name!r} for {row.name} of shape {row.shape}, which "
                    f"has no fans: use one of {', '.join(_FANLESS + _RULE_ONLY)}, a Spec, or a callable"
                )
            fans = compute_fans(row.shape, chunks=chunks) if packed else Fans(row.fan_in, row.fan_out)
            if name in ("auto", "variance", "critical"):
                label_, spec, g = sub.weight_spec(fans, "linear", None)
            else:
                label_, spec, g = name, schemes.named_spec(name, fans, 1.0), 1.0
            _set(row, label_, spec, chunks=chunks, gain=g)
            row.fan_in, row.fan_out, row.chunks = fans.fan_in, fans.fan_out, chunks
        else:
            for attr in ("fan_in", "fan_out", "scheme", "spec", "gain", "std", "bound", "chunks", "note",
                         "_fills"):
                setattr(row, attr, getattr(new, attr))
    else:
        row.scheme = getattr(target, "__name__", "callable")
        row.spec = f"callable {row.scheme}"
        row.std = row.bound = row.gain = None
        row._fills = [_Fill(None, target)]  # the parameter as it is stored
    row.rule = label


# ---- init_model ----------------------------------------------------------------------------------

#: Why a lazy module's parameters are skipped (no rule can decide them before a forward pass).
_LAZY = "lazy module not materialised: run a forward first"


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
    return the plan (see the module docstring for the per-module table and the detection).

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
        scheme: ``"auto"`` (a plain MLP: the isometric rule; otherwise the propagation with the
            residual-branch, tied-embedding and joined-parameter rules), ``"variance"`` (the
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
    if not isinstance(model, nn.Module):
        raise TypeError(f"init_model: model must be an nn.Module, got {type(model).__name__}")
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
    checked_rules = _check_rules(rules)
    found, method, why = _detect(model, example_inputs)
    wants_auto = scheme == "auto" or any(isinstance(t, str) and t == "auto" for _, t in checked_rules)
    chain = _plain_chain(model, found, method) if wants_auto else None
    roles = _plan_chain(model, chain, found) if chain else None  # None: a link cannot be planned
    scales, propagation_note = _propagation_plans(model, example_inputs, scheme, checked_rules, roles,
                                                  float(embedding_std))
    ctx = _Context(scheme, found, float(embedding_std), None if sigma_b2 is None else float(sigma_b2),
                   roles, _packed_by_structure(model), scales)

    mha_out = {
        f"{q}.out_proj" if q else "out_proj"
        for q, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)
    }
    rows: list[PlanRow] = []
    skipped: list[dict[str, Any]] = []
    seen: dict[int, str] = {}
    decided: set[int] = set()  # rules that decided a row
    shadowed: set[int] = set()  # rules that matched a row an earlier rule decided
    tied_hits: dict[int, list[str]] = {}  # rules that matched a tied alias (not re-drawn)
    for q, m in model.named_modules():
        own = list(m.named_parameters(recurse=False))
        if not own:
            continue
        fresh = []
        for pname, p in own:
            full = f"{q}.{pname}" if q else pname
            if id(p) in seen:
                rows.append(PlanRow(name=full, module=q, module_type=type(m).__name__, shape=tuple(p.shape),
                                    scheme="tied", spec=f"tied to {seen[id(p)]}",
                                    note=f"tied to {seen[id(p)]}: not re-drawn"))
                for i in _matches(checked_rules, full, m):
                    tied_hits.setdefault(i, []).append(f"{full} (tied to {seen[id(p)]})")
            else:
                seen[id(p)] = full
                fresh.append((pname, p))
        if not fresh:
            continue
        if any(isinstance(p, nn.parameter.UninitializedParameter) for _, p in fresh):
            skipped.append({"module": q, "type": type(m).__name__, "params": [n for n, _ in fresh],
                            "why": _LAZY})
            continue
        fresh_names = {(f"{q}.{n}" if q else n) for n, _ in fresh}
        try:
            mrows = _handle(ctx, q, m, q in mha_out)
        except _NoCriticalPoint as exc:
            if not all(_match(checked_rules, n, m) for n in fresh_names):
                raise InitlabError(
                    f"scheme 'critical' cannot initialise layer {q!r} ({type(m).__name__}): {exc}. "
                    "Pass a larger bias variance (e.g. sigma_b2=1.0; CLI --sigma-b2 1), use "
                    f"scheme='auto', or a rule for this layer, e.g. rules=[(r'^{re.escape(q)}\\.', 'auto')]"
                ) from None
            mrows = _handle(ctx.derive("auto"), q, m, q in mha_out)  # placeholders: rules decide all
        why_skipped = "no handler for this module type" if mrows is None else "no handler for this parameter"
        mrows = [r for r in mrows or () if r.name in fresh_names]
        have = {r.name for r in mrows}
        unknown = []
        for pname, p in fresh:  # parameters no handler knows: only rules may touch them
            full = f"{q}.{pname}" if q else pname
            if full in have:
                continue
            if _match(checked_rules, full, m) is not None:
                row = _row(full, p, q, m)
                if p.dim() >= 2:
                    fans = compute_fans(tuple(p.shape))
                    row.fan_in, row.fan_out = fans.fan_in, fans.fan_out
                mrows.append(row)
            elif (row := _plan_loose_parameter(ctx, full, pname, p, q, m)) is not None:
                mrows.append(row)
            else:
                unknown.append(pname)
        if unknown:
            skipped.append({"module": q, "type": type(m).__name__, "params": unknown, "why": why_skipped})
        frozen = {(f"{q}.{n}" if q else n) for n, p in fresh if not p.requires_grad}
        for row in mrows:
            hits = _matches(checked_rules, row.name, m)
            if hits:
                decided.add(hits[0])
                shadowed.update(hits[1:])
                try:
                    _apply_rule(ctx, row, m, q in mha_out, hits[0], *checked_rules[hits[0]])
                except _NoCriticalPoint as exc:
                    raise InitlabError(
                        f"rule {_describe_rule(hits[0], *checked_rules[hits[0]])}: scheme 'critical' cannot "
                        f"initialise layer {q!r}: {exc}. Choose another scheme in the rules"
                    ) from None
            if row.name in frozen:
                row.note = "; ".join(filter(None, [row.note, "frozen (requires_grad=False)"]))
        _check_rule_fills(mrows)
        rows.extend(mrows)
    _warn_unused_rules(checked_rules, decided, shadowed, tied_hits)
    if skipped:
        warnings.warn(_skipped_message(skipped), SkippedParameterWarning, stacklevel=2)
    has_forward = type(model).forward is not nn.Module.forward  # ModuleDict / ModuleList: no data flow
    if method == "module_order" and has_forward and any(r.found_by == "module_order" for r in rows):
        warnings.warn(f"init_model: {fallback_message(why)}", DetectionFallbackWarning, stacklevel=2)

    graph_note = _predict_moments(model, rows, scales, example_inputs)
    plan = InitPlan(scheme=scheme, rows=rows, skipped=skipped, detection=method, detection_note=why,
                    propagation=propagation_note or graph_note)
    if dry_run:
        return plan
    params = dict(model.named_parameters(remove_duplicate=False))
    from initlab.init import apply_spec_

    on_meta = [r.name for r in rows if r._fills and params[r.name].is_meta]
    if on_meta:
        warnings.warn(
            f"init_model: {len(on_meta)} parameter(s) are on the meta device ({on_meta[0]}, ...), which "
            "holds no data: nothing is written to them; call model.to_empty(device=...) first, then "
            "init_model", UserWarning, stacklevel=2,
        )
    # A rule's callable is the user's code and may raise: then every parameter written so far is
    # restored (from copies kept only when the plan has a callable) and so is the generator.
    user_code = any(not isinstance(f.spec, (schemes.Spec, _CenteringBias)) for r in rows for f in r._fills)
    backups: list[tuple[torch.Tensor, torch.Tensor]] = []
    gen_state = generator.get_state() if (user_code and isinstance(generator, torch.Generator)) else None
    try:
        with torch.no_grad():
            for row in rows:
                if not row._fills:
                    continue
                p = params[row.name]
                if user_code:
                    backups.append((p, p.detach().clone()))
                for fill in row._fills:
                    view = fill.view(p)
                    if isinstance(fill.spec, schemes.Spec):
                        apply_spec_(view, fill.spec, generator=generator, chunks=max(fill.chunks, 1))
                        continue
                    try:
                        fill.spec(view, generator)
                    except Exception as exc:
                        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                        raise InitlabError(
                            f"rule {row.rule} failed on {row.name} (shape {row.shape}): "
                            f"{type(exc).__name__}: {msg}; nothing was written: fix the callable, which "
                            "is called as callable(tensor, generator) and fills tensor in place"
                        ) from exc
                row.applied = True
    except BaseException:
        with torch.no_grad():
            for p, saved in backups:
                p.copy_(saved)
        if gen_state is not None:
            generator.set_state(gen_state)
        for row in rows:
            row.applied = False
        raise
    plan.applied = True
    return plan


def _plan_loose_parameter(
    ctx: _Context, full: str, pname: str, p: torch.Tensor, q: str, m: nn.Module
) -> PlanRow | None:
    """A parameter of a module no handler knows, under ``"auto"`` / ``"variance"``: one the forward
    joins to the data (a class token, position embeddings) gets the second moment of what it joins
    (:func:`initlab.model.plan_scales`); a vector named ``bias`` is zero; anything else ``None``."""
    std = ctx.param_std(full)
    if std is not None:
        row = _row(full, p, q, m)
        _set(row, "propagated", schemes.Normal(std))
        row.note = "joins the data: the second moment of the tensor it joins"
        return row
    if ctx.scheme in ("auto", "variance") and p.dim() == 1 and pname.split(".")[-1] == "bias":
        row = _row(full, p, q, m)
        _set(row, "zeros", schemes.Constant(0.0))
        row.note = "a bias outside a known layer: zero"
        return row
    return None


def _propagation_plans(
    model: nn.Module, example_inputs: Any, scheme: str, rules: list[tuple[Any, Any]],
    chain: dict[str, Any] | None, embedding_std: float,
) -> tuple[dict[str, PropagationPlan], str | None]:
    """The graph-wide plans the schemes in use need: ``"auto"`` (unless ``chain``, the isometric
    roles of a plain chain, decides every layer) with the residual-branch, tied-embedding and
    joined-parameter rules; ``"variance"`` with each layer's local solve only. When the model
    cannot be traced, ``({}, why)``: the per-layer rule decides those rows instead."""
    wanted = {scheme} | {t for _, t in rules if isinstance(t, str)}
    plans: dict[str, PropagationPlan] = {}
    try:
        if "auto" in wanted and not chain:
            plans["auto"] = plan_scales(model, example_inputs, embedding_second=embedding_std**2)
        if "variance" in wanted:
            plans["variance"] = plan_scales(model, example_inputs, residual_growth=None, tied=False,
                                            embedding_second=embedding_std**2)
    except Exception as exc:  # noqa: BLE001  (untraceable, lazy, meta: the per-layer rule decides)
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return {}, f"not propagated ({why}): the per-layer rule decides every layer"
    if not plans:
        return plans, None
    p = next(iter(plans.values()))
    how = p.graph.method + (f" ({p.graph.reason})" if p.graph.reason else "")
    return plans, (f"{how}; inputs {p.graph.inputs_from}" if p.graph.inputs_from else how) + (
        f"; {p.residual} residual branches scaled" if p.residual else "")


def _predict_moments(
    model: nn.Module, rows: list[PlanRow], scales: dict[str, PropagationPlan], example_inputs: Any
) -> str | None:
    """Fill each layer row's ``q_in`` / ``q_out``: the moments propagated through the model's graph
    with the planned stds (:func:`initlab.graph.moments.propagate`). Informational: a model the
    graph cannot trace keeps ``None`` and the reason is returned."""
    from initlab.graph import Kind, trace
    from initlab.graph.moments import propagate

    by_name = {r.name: r for r in rows}
    try:
        graph = next(iter(scales.values())).graph if scales else trace(model, example_inputs)
        propagate(graph, model=model, layer_stats=_planned_stats(model, by_name))
    except Exception as exc:  # noqa: BLE001  (a prediction never stops an init)
        return f"no predicted moments ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    for node in graph:
        if node.kind is not Kind.LAYER or node.module is None or node.meta.get("moments") is None:
            continue
        x = graph[node.inputs[0]].meta.get("moments") if node.inputs else None
        for r in rows:
            if r.module == node.module or r.module.startswith(node.module + ".out_proj"):
                if r.q_out is None:
                    r.q_in = x.second if x is not None else None
                    r.q_out = node.meta["moments"].second
    return None


def _planned_stats(model: nn.Module, by_name: dict[str, PlanRow]):
    """A layer-statistics callback reading the planned std of each weight (tied rows resolved),
    and the model's current tensors for what the plan leaves alone."""
    from initlab.graph.layer_stats import RNN_GATES, LayerStats, model_layer_stats, part_params

    read = model_layer_stats(model)
    names = {"weight": ("weight",), "query": ("in_proj_weight", "q_proj_weight"),
             "key": ("in_proj_weight", "k_proj_weight"), "value": ("in_proj_weight", "v_proj_weight"),
             "out": ("out_proj.weight",)}

    def row_of(module: str, pname: str) -> PlanRow | None:
        r = by_name.get(f"{module}.{pname}" if module else pname)
        while r is not None and r.scheme == "tied":
            r = by_name.get(r.spec[len("tied to "):])
        return r

    def entries(row: PlanRow | None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(E[w], E[w^2])`` per index along dim 0 as the row's fills plan them (a later fill wins;
        a constant's value is a mean, not a spread); ``None`` for a fill whose moments are unknown."""
        if row is None or not row._fills:
            return None
        n = row.shape[0]
        mean, second = torch.zeros(n, dtype=torch.float64), torch.full((n,), math.nan, dtype=torch.float64)
        for f in row._fills:
            rows_only = f.index is None or (isinstance(f.index, slice) and f.axis == 0)
            if not isinstance(f.spec, schemes.Spec) or not rows_only:
                return None
            idx = slice(None) if f.index is None else f.index
            std = _spec_std_bound(f.spec, (len(range(n)[idx]), *row.shape[1:]), max(f.chunks, 1))[0]
            if std is None:
                return None
            mu = (f.spec.value if isinstance(f.spec, schemes.Constant) else (f.spec.low + f.spec.high) / 2
                  if isinstance(f.spec, schemes.Uniform) else float(getattr(f.spec, "mean", 0.0)))
            mean[idx], second[idx] = mu, mu * mu + std * std
        return None if bool(second.isnan().any()) else (mean, second)

    def rnn_stats(node, part: str, m: nn.RNNBase, fan_in: int) -> LayerStats | None:
        """An RNN part (``"ih_l0"``, ``"hh_l0:f"``, ``"hr_l0"``, as
        :func:`initlab.graph.layer_stats.part_params` names them) from the planned rows of its weight
        and biases, a gate's block of rows alone."""
        base, _, gate = part.partition(":")
        kind, sfx = base[:2], base[2:]
        gi, h = RNN_GATES.get(m.mode, ()).index(gate) if gate else 0, m.hidden_size
        rows = slice(gi * h, (gi + 1) * h) if gate else slice(None)
        w = entries(row_of(node.module, f"weight_{base}"))
        if w is None:
            return None
        biases = ([] if kind == "hr" or not m.bias else [kind] if (m.mode, gate) == ("GRU", "n")
                  else ["ih", "hh"] if kind == "ih" else [])  # as part_params sums them
        bm = b2 = torch.zeros(1, dtype=torch.float64)
        for k in biases:  # bias_ih + bias_hh: independent draws, entry by entry
            e = entries(row_of(node.module, f"bias_{k}{sfx}"))
            if e is None:
                return None
            bm, b2 = bm + e[0][rows], b2 + e[1][rows] + 2 * bm * e[0][rows]
        return LayerStats(fan_in, float(w[1][rows].mean()), float(w[0][rows].mean()),
                          float(bm.mean()), float(b2.mean()))

    def stats(node, part, x):
        p = part_params(model, node, part) if node.module is not None else None
        if p is not None and isinstance(m := model.get_submodule(node.module), nn.RNNBase):
            return rnn_stats(node, part, m, p.fan_in) or read(node, part, x)
        r = next((row_of(node.module, n) for n in names.get(part, ()) if row_of(node.module, n)), None)
        if r is None or r.std is None or p is None:
            return read(node, part, x)
        b = row_of(node.module, "out_proj.bias" if part == "out" else "bias")
        bias_second = b.std**2 if b is not None and b.std is not None and part in ("weight", "out") else 0.0
        return LayerStats(p.fan_in, r.std**2, bias_second=bias_second)

    return stats


def _check_rule_fills(rows: list[PlanRow]) -> None:
    """Realise every rule-decided Spec on a meta tensor of the row's shape, so that a spec the
    parameter cannot take (orthogonal on a bias, ...) fails while planning, dry runs included."""
    from initlab.init import apply_spec_

    for row in rows:
        if row.rule is None:
            continue
        for fill in row._fills:
            if not isinstance(fill.spec, schemes.Spec):
                continue
            meta = torch.empty(row.shape, device="meta")
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    apply_spec_(fill.view(meta), fill.spec, chunks=max(fill.chunks, 1))
            except (InitlabError, TypeError) as exc:
                raise InitlabError(f"rule {row.rule} cannot fill {row.name}: {exc}") from None


def _skipped_message(skipped: Sequence[dict[str, Any]], limit: int = 10) -> str:
    """One line naming the parameters :func:`init_model` left alone (:attr:`InitPlan.skipped`),
    the first ``limit`` of them, why, and the rule that decides them."""
    names = [f"{s['module']}.{n}" if s["module"] else n for s in skipped for n in s["params"]]
    whys = list(dict.fromkeys(f"{s['type']}: {s.get('why', 'no handler')}" for s in skipped))
    one = len(names) == 1
    them, are, were = ("it", "it is", "it was") if one else ("them", "they are", "they were")
    shown = ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")
    why = "; ".join(whys[:3]) + ("; ..." if len(whys) > 3 else "")
    head = (f"init_model left {len(names)} parameter{'' if one else 's'} as {were}, not initialized: "
            f"{shown} ({why}); plan.skipped lists {them}")
    ruled = [s for s in skipped if s.get("why") != _LAZY]
    if not ruled:
        return head
    first = ruled[0]
    pattern = "^" + re.escape(f"{first['module']}.{first['params'][0]}" if first["module"]
                              else first["params"][0]) + "$"
    return (f"{head}. Decide {them} with a rule: rules=[(r\"{pattern}\", \"zeros\")] (or any scheme, Spec "
            f"or callable), or (r\"{pattern}\", \"keep\") to leave {them} as {are} without this warning")


def _warn_unused_rules(
    rules: list[tuple[Any, Any]], decided: set[int], shadowed: set[int], tied_hits: dict[int, list[str]]
) -> None:
    """A rule that decides no parameter is almost always a typo in its pattern: say so."""
    for i, (pattern, _) in enumerate(rules):
        if i in decided:
            continue
        pat = pattern.__name__ if isinstance(pattern, type) else repr(pattern.pattern)
        if i in tied_hits:
            why = (f"matches only tied parameters, which are not re-drawn: {', '.join(tied_hits[i])}; "
                   "match the name it is tied to")
        elif i in shadowed:
            why = "matches only parameters an earlier rule decides (the first match wins)"
        else:
            why = "matches no parameter: check the pattern against the names in the plan"
        warnings.warn(f"init_model: rules[{i}] {pat} {why}", UserWarning, stacklevel=3)


# ---- CLI helpers ---------------------------------------------------------------------------------


def parse_shape(text: str) -> tuple[int, ...]:
    """Parse ``"1,3,32,32"`` (or ``"1x3x32x32"``) into a shape tuple.

    Raises:
        InitlabError: empty text, a non-integer or a non-positive dimension.

    >>> parse_shape("1,3,32,32")
    (1, 3, 32, 32)
    """
    text_s = str(text).strip()
    parts = [s.strip() for s in text_s.split("," if "," in text_s else "x")]
    try:
        dims = tuple(int(s) for s in parts)
    except ValueError:
        dims = ()
    if not dims or any(d < 1 for d in dims):
        raise InitlabError(f"--input-shape {text!r} is invalid: pass positive integers, e.g. 1,3,32,32")
    return dims


def load_factory(target: str) -> Callable[[], nn.Module]:
    """Load ``"path/to/file.py:build_model"``: import the file by path and return the function.

    The file's folder is on ``sys.path`` while it is imported (as with ``python FILE.py``), so
    it may import modules next to it.

    Raises:
        InitlabError: no ``:`` in ``target``; ``FILE.py`` is a directory; importing it raised
            (a syntax error, a missing module, ``sys.exit``: the message names the exception);
            the function is missing or not callable.
        FileNotFoundError: the file does not exist.

    >>> load_factory("no_colon")
    Traceback (most recent call last):
    ...
    initlab.errors.InitlabError: 'no_colon' is not FILE.py:FUNCTION: pass e.g. model.py:build_model
    """
    path_s, sep, fn_name = str(target).rpartition(":")
    if not sep or not path_s or not fn_name:
        raise InitlabError(f"{target!r} is not FILE.py:FUNCTION: pass e.g. model.py:build_model")
    path = Path(path_s)
    if path.is_dir():
        raise InitlabError(f"model file {str(path)!r} is a directory: pass the path of a .py file")
    if not path.is_file():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist: pass the path of a .py file")
    mod_name = f"_initlab_plan_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise InitlabError(f"cannot import {str(path)!r}: pass a Python source file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    folder = str(path.resolve().parent)  # as `python FILE.py` does: the file may import its siblings
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # the user's code: SyntaxError, ImportError, sys.exit(), ...
        sys.modules.pop(mod_name, None)
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise InitlabError(f"importing {str(path)!r} failed: {type(exc).__name__}: {msg}") from exc
    finally:
        if added and folder in sys.path:
            sys.path.remove(folder)
    fn = getattr(module, fn_name, None)
    if fn is None or not callable(fn):
        have = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))
        raise InitlabError(
            f"{str(path)!r} has no function {fn_name!r}: use one of {', '.join(have) or '(none)'}"
        )
    return fn

