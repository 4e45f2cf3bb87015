"""Signal-propagation probe: per-layer forward and backward statistics of any PyTorch model.

:func:`probe` runs ONE forward and ONE backward pass through a model and records, for every
layer (by default every ``Linear`` / ``Conv`` / ``ConvTranspose`` / transformers ``Conv1D`` output
and every activation output, module or functional), where the signal vanishes, explodes,
saturates, dies or stays symmetric:

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
weight is in cache), and a parameter's gradient statistics in a hook on the weight as the
backward produces the gradient. Work that no record needs is skipped: on the CPU, without
histograms (``bins=0``), a finite gradient is reduced to its sum and sum of squares only (its
extremes and sample would serve only the histogram). After each pass ONE batched reduction per
(device, dtype) sorts all samples together and reads quantiles, counts and histograms from them
(NumPy on the CPU, torch on other devices: the same operations), and everything is copied to the
host with ONE ``.tolist()`` per pass (per device): one after the forward, one after the backward.
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
activation module (``nn.Tanh`` calls ``torch.tanh``; HF's ``NewGELUActivation`` too, which the
probe names by running it) are not counted twice.

The package, one concept per module: :mod:`~initlab.probe.run` (argument checks, selection, the
hook context, :func:`probe`), :mod:`~initlab.probe.classify` (the probe's table of modules and
functions), :mod:`~initlab.probe.hooks` (the tracker), :mod:`~initlab.probe.partials` (what a hook
keeps of a tensor), :mod:`~initlab.probe.reductions` (the pass's batched reduction and sync),
:mod:`~initlab.probe.tuning` (their knobs), :mod:`~initlab.probe.weights`,
:mod:`~initlab.probe.passes`, :mod:`~initlab.probe.predicted` (the propagated prediction),
:mod:`~initlab.probe.records` (the reader), :mod:`~initlab.probe.result`,
:mod:`~initlab.probe.thresholds`, :mod:`~initlab.probe.verdicts`, :mod:`~initlab.probe.tensors`.
"""

from initlab.probe.records import NOTE_LAYER, OUTPUT_LAYER, STATS
from initlab.probe.result import ProbeResult
from initlab.probe.run import probe
from initlab.probe.thresholds import Thresholds
from initlab.probe.verdicts import VERDICT_KINDS, Verdict

__all__ = ["probe", "ProbeResult", "Verdict", "Thresholds", "STATS", "VERDICT_KINDS", "OUTPUT_LAYER",
           "NOTE_LAYER"]
