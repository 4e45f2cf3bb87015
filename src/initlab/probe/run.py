"""The probe's entry point: argument checks, layer selection, the hook context, and :func:`probe`,
which only composes them with the passes, the prediction and the result."""

from __future__ import annotations

import contextlib
import fnmatch
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from initlab.errors import InitlabError
from initlab.probe.classify import (
    _WEIGHT_TYPES,
    _calls_no_functional,
    _layer_type,
    _module_activation,
    _passes_through,
)
from initlab.probe.hooks import _Session
from initlab.probe.partials import _Sampler
from initlab.probe.passes import _autograd, _backward, _forward, _forward_sync, _model_args
from initlab.probe.predicted import _predict
from initlab.probe.records import _build_records, _Extra
from initlab.probe.result import ProbeResult
from initlab.probe.tensors import _tensor_leaves
from initlab.probe.thresholds import Thresholds


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
    and histogram (``kind="grad_hist"``). Weights (``Linear``/``Conv``/``ConvTranspose``, and
    transformers' ``Conv1D``, whose ``(in, out)`` weight has its units in dim 1, as a ConvTranspose):
    ``weight_mean, weight_std, weight_norm``; ``distinct_units`` (see :class:`Thresholds`; NaN
    for a weight with a NaN/inf entry); with
    ``scheme``, ``expected_weight_std = named_spec(scheme, compute_fans(W.shape, groups=...,
    transposed=<units in dim 1>), gain).expected_std`` where ``gain = initlab.gains.gain(activation)`` of the
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
    :data:`OUTPUT_LAYER`, with ``from_layer``: the weight layer (Linear, Conv, ConvTranspose, HF
    ``Conv1D``) whose output it is, as the layer returned it or only reshaped, sliced or cast
    (``None`` for any other output, e.g. a sigmoid's, or a layer output changed in place). The
    ``logits`` verdict reads them, only for an output with a ``from_layer``.

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
        layers: ``None`` (default: every Linear/Conv/ConvTranspose/HF Conv1D and activation
            module — also a parameter-free one the probe's table does not know that
            :func:`initlab.graph.vocab.classify_module` names, such as HF's ``NewGELUActivation``,
            probed as one leaf —, plus functional activations), or a name pattern (``fnmatch``,
            e.g. ``"fc*"``; matches module qualified names and functional names like
            ``"forward.tanh_1"``), an
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
        >>> [v.kind for v in res.verdicts()]  # no logits verdict: the output is a Tanh's
        ['saturated', 'symmetric']
        >>> res.stat("0", "predicted_mean"), res.stat("0", "predicted_std")
        (4.0, 0.0)
    """
    th, generator = _check_args(model, bins, max_samples, scheme, thresholds, predict, generator)
    params, buffers = list(model.parameters()), list(model.buffers())
    _check_model_inputs(params, buffers, inputs)
    choose, wants, patterns = _selector(layers)
    session = _Session(model, bins, th, _Sampler(max_samples, seed=0), backward)
    session.wants_functional = wants
    named = list(model.named_modules())
    selected = _select(named, choose)
    capture = (functional and (layers is None or bool(patterns))
               and not all(_calls_no_functional(m) for _, m in named))
    bwd_values: list[tuple] = []
    loss_value = None
    predicted: dict[str, dict[str, float]] = {}
    notes: list[str] = []
    with _restored(named, params, buffers), _Hooks(session) as hooks:
        if train is not None:
            model.train(bool(train))
        hooks.install(selected, named, capture, backward, params)
        args, kwargs, input_leaves = _model_args(inputs, params, backward)
        with _autograd(backward):
            outputs = _forward(model, args, kwargs, session, capture)
            hooks.end_forward()
            fwd_values, output = _forward_sync(session, outputs)
            if backward:
                bwd_values, loss_value = _backward(session, outputs, targets, loss_fn, generator, params,
                                                   input_leaves)
        if predict:  # after the passes (hooks gone), in the probe's train/eval mode
            predicted, notes = _predict(model, inputs, session, fwd_values, model.training,
                                        functional_order=layers is None)
    _check_selection(layers, patterns, named, session)
    layer_names = [lay.name for lay in sorted(session.layers.values(), key=lambda lay: lay.index)]
    tag_dict = dict(tags or {})
    session.release()
    extra = _Extra(predicted, output, notes)
    return ProbeResult(layers=layer_names, loss=loss_value, thresholds=th, notes=notes,
                       build=lambda: _build_records(session, fwd_values, bwd_values, scheme, tag_dict, extra))


# ---- argument checks ----------------------------------------------------------------------------


def _whole_model_schemes() -> frozenset[str]:
    """The schemes of :func:`initlab.init_model` that are not per-tensor named schemes."""
    from initlab.model.policies import SCHEMES  # noqa: PLC0415
    from initlab.schemes import NAMED_SCHEMES  # noqa: PLC0415

    return frozenset(SCHEMES) - frozenset(NAMED_SCHEMES)


def _check_args(model: Any, bins: Any, max_samples: Any, scheme: Any, thresholds: Any, predict: Any,
                generator: Any) -> tuple[Thresholds, torch.Generator]:
    """``(thresholds, generator)`` with their defaults, after checking every argument of
    :func:`probe` that can be checked before the passes (see its Raises)."""
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
            whole = (" is a whole-model scheme, whose stds depend on the layer's place in the graph: "
                     "compare with init_model(model, scheme, dry_run=True) rows instead, or pass"
                     if isinstance(scheme, str) and scheme in _whole_model_schemes() else " is unknown: use")
            raise InitlabError(f"scheme {scheme!r}{whole} one of {', '.join(sorted(NAMED_SCHEMES))}")
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
    return th, generator


def _check_model_inputs(params: Sequence[torch.Tensor], buffers: Sequence[torch.Tensor], inputs: Any) -> None:
    """No lazy (uninitialised) parameter or buffer in the model; inputs with at least one entry."""
    if any(nn.parameter.is_lazy(t) for t in (*params, *buffers)):
        raise InitlabError("the model has uninitialized (lazy) parameters, e.g. of nn.LazyLinear: run one "
                           "forward pass (model(inputs)) before probing; the probe does not initialise them")
    leaves = _tensor_leaves(list(inputs.values()) if isinstance(inputs, Mapping) else inputs)
    if leaves and all(t.numel() == 0 for t in leaves):
        shapes = ", ".join(str(tuple(t.shape)) for t in leaves[:4])
        raise InitlabError(f"inputs have no entries (shape {shapes}): pass a batch of at least one example")


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


def _select(named: list[tuple[str, nn.Module]], choose: Callable[[str, nn.Module], str | None]
            ) -> list[tuple[str, nn.Module, str]]:
    """``(name, module, layer_type)`` of every module ``choose`` selects, in module order."""
    selected = []
    for name, m in named:
        lt = choose(name or "model", m)
        if lt is not None:
            selected.append((name, m, lt))
    return selected


def _check_selection(layers: Any, patterns: list[str], named: list[tuple[str, nn.Module]],
                     session: _Session) -> None:
    """After the passes: every pattern matched a layer or module, and some layer was probed."""
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


# ---- the hook context ----------------------------------------------------------------------------


class _Hooks:
    """The hooks of one probe: module hooks for the forward (removed right after it), tensor hooks
    for the backward; all removed on exit, also when the forward or the loss raises."""

    def __init__(self, session: _Session) -> None:
        self.session = session
        self.module: list[Any] = []
        self.tensor: list[Any] = []

    def __enter__(self) -> _Hooks:
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self.module + self.tensor:
            h.remove()
        self.module, self.tensor = [], []

    def install(self, selected: list[tuple[str, nn.Module, str]], named: list[tuple[str, nn.Module]],
                capture: bool, backward: bool, params: Sequence[torch.Tensor]) -> None:
        """Forward hooks on the selected modules (and on the pass-through modules when a weight
        layer is selected); the module stack for functional names when ``capture``; with
        ``backward``, gradients on for every floating parameter and a hook on each selected weight."""
        s = self.session
        for name, m, lt in selected:
            act = _module_activation(m) if lt == "activation" else None
            if act is not None:  # a leaf: the functions it calls are its own
                s.leaves.add(id(m))
            self.module.append(m.register_forward_hook(s.module_hook(name or "model", lt, act, name)))
        if any(lt in _WEIGHT_TYPES for _, _, lt in selected):
            for _, m in named:
                if _passes_through(m):
                    self.module.append(m.register_forward_hook(s.pass_hook))
        if capture:
            for name, m in named:
                self.module.append(m.register_forward_pre_hook(s.push_hook(name)))
                self.module.append(m.register_forward_hook(s.pop_hook))
        if backward:
            for p in params:
                if not p.requires_grad and (p.is_floating_point() or p.is_complex()):
                    p.requires_grad_(True)
            self._weight_hooks(selected)

    def _weight_hooks(self, selected: list[tuple[str, nn.Module, str]]) -> None:
        """A hook on each selected weight whose gradient statistics are recorded (once per weight)."""
        hooked: set[int] = set()
        for _, m, lt in selected:
            w = getattr(m, "weight", None) if lt in _WEIGHT_TYPES else None
            if isinstance(w, torch.Tensor) and w.dim() >= 2 and w.requires_grad and id(w) not in hooked:
                hooked.add(id(w))
                self.tensor.append(w.register_hook(self.session.param_grad_hook(id(w))))

    def end_forward(self) -> None:
        """After the forward: the module hooks removed, the layer outputs' gradients hooked."""
        for h in self.module:
            h.remove()
        self.module = []
        self.tensor += self.session.grad_hooks()


@contextlib.contextmanager
def _restored(named: list[tuple[str, nn.Module]], params: Sequence[torch.Tensor],
              buffers: Sequence[torch.Tensor]) -> Iterator[None]:
    """Training flags, ``requires_grad`` and buffers (BatchNorm running statistics) restored on
    exit, also when the body raises."""
    saved_training = {m: m.training for _, m in named}
    saved_rg = [p.requires_grad for p in params]
    saved_buffers = [b.detach().clone() for b in buffers]
    try:
        yield
    finally:
        for m, flag in saved_training.items():
            if m.training != flag:
                m.training = flag
        for p, flag in zip(params, saved_rg, strict=True):
            if p.requires_grad != flag:
                p.requires_grad_(flag)
        with torch.no_grad():
            for b, old in zip(buffers, saved_buffers, strict=True):
                b.copy_(old)
