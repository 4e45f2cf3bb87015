"""``init_model`` for Keras 3 models: walk the model's graph, find each layer's activation, decide every
variable as the torch front end does, draw with NumPy and assign in place."""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from initlab import schemes
from initlab.errors import InitlabError
from initlab.graph import consuming_activation, feeding_activation
from initlab.graph.moments import LayerStats
from initlab.keras.chain import chain_roles, chain_targets, head_orders, plain_chain
from initlab.keras.graph import KerasGraph, keras_graph, subclassed_message
from initlab.keras.initializers import seed_sequence
from initlab.keras.kernels import Slot, call_key, has_graph, layer_slots, variable_names, walk_layers
from initlab.keras.propagation import predict, solve_scales
from initlab.keras.rows import Found, KerasContext, RowDecider, draw_fill
from initlab.model.plan import InitPlan, PlanRow
from initlab.model.traverse import SkippedParameterWarning

__all__ = ["KERAS_SCHEMES", "init_model"]

#: Every scheme name the Keras :func:`init_model` accepts (the torch front end's, but the residual family,
#: which needs torch modules: Fixup's scalars, skip gates).
KERAS_SCHEMES: tuple[str, ...] = tuple(sorted({"auto", "variance", "critical", *schemes.NAMED_SCHEMES}))


def init_model(model: Any, scheme: str = "auto", *, seed: int | np.random.Generator | None = None,
               sigma_b2: float | None = None, embedding_std: float = 1.0, dry_run: bool = False) -> InitPlan:
    """Re-initialize every kernel of a built Keras model in place with the scheme its layer needs; return
    the plan (``print(plan.table())``: the torch front end's columns).

    The model is walked as a graph (:func:`initlab.keras.graph.keras_graph`: Sequential, functional,
    nested models); each layer's activation is the one that consumes its output there: its
    ``activation`` argument, an activation layer or ``keras.ops`` call after it, seen through dropout,
    reshapes, pools, norms and residual adds (:func:`initlab.graph.consuming_activation`). Then, as
    :func:`initlab.init_model` for torch:

    * ``"auto"``: a plain chain (:func:`initlab.keras.chain.plain_chain`: Dense layers, or odd-kernel
      convs and a Dense head, linked by activations) starts at dynamical isometry: looks-linear kernels
      for ReLU/GELU/SiLU-like links, orthogonal at the near-critical point otherwise, delta kernels for
      convs — but a CNN with tanh-like links gets iid kernels solved at the depth-aware ``q*``
      (:data:`initlab.model.chain.CONV_DEPTH_NOTE`); a head behind Keras's position-major
      ``Flatten`` reads the mirrored channels where the
      ``Flatten`` puts them (:func:`initlab.keras.chain.head_orders`). Any other model: every kernel
      :math:`N(0, q_{target} / (fan_{in}\\,\\mathbb{E}[x^2]))` from the second moment of its own input
      propagated from standardised data
      (:func:`initlab.keras.propagation.solve_scales`), the last layer of each residual branch (a
      functional ``Add``) at ``q_skip (2^{1/L} - 1)``, or 0 in a network without normalization layers.
    * ``"variance"``: the propagation alone. Where the graph cannot say (an unknown layer before it),
      both use the per-layer rule: He for the ReLU family, LeCun for SELU, else Glorot with the derived
      gain of the activation.
    * ``"critical"``: :math:`N(0, \\sigma_w^2 / fan_{in})` and biases :math:`N(0, \\sigma_b^2)` at the
      activation's critical point for ``sigma_b2``.
    * a name of :data:`initlab.schemes.NAMED_SCHEMES` (``"he_normal"``, ``"glorot_uniform"``,
      ``"orthogonal"``, ...) with the detected gain; ``"keras_default"`` reproduces Keras's defaults
      (Glorot uniform with Keras's own fans, recurrent orthogonal, unit forget bias, embeddings
      ``U(±0.05)``), ``"torch_default"`` torch's.

    Kernels have their true fans (:mod:`initlab.keras.layouts`: depthwise, transposed with strides,
    einsum, grouped; LSTM/GRU/SimpleRNN kernels per gate, also inside ``Bidirectional``, recurrent
    kernels orthogonal per gate, the LSTM forget bias 1); biases are 0, norms' gamma 1 and beta 0,
    embeddings ``N(0, embedding_std^2)``, a ``PReLU``'s slope its constant ``alpha_initializer``'s value
    (torch: its ``init``). Frozen layers (``trainable=False``) are initialized too, with a note, as torch's
    frozen parameters. A layer with weights that no family knows (``MultiHeadAttention``,
    ``TimeDistributed``, a custom layer or a nested subclassed model) is left as it is, listed in
    ``plan.skipped`` and named in one :class:`~initlab.apply.SkippedParameterWarning`.

    Args:
        model: a built ``keras.Model`` (Sequential or functional).
        scheme: one of :data:`KERAS_SCHEMES`.
        seed: an int >= 0 or a ``numpy.random.Generator``: every variable drawn in plan order from
            ``numpy.random.default_rng(seed)`` (same seed, same bits); ``None``: a seed from Keras's
            global ``SeedGenerator`` (``keras.utils.set_random_seed`` makes it reproducible).
        sigma_b2: the bias variance of ``"critical"``'s point (``None``: 0).
        embedding_std: std of embedding tables.
        dry_run: plan only; nothing is written.

    Returns:
        :class:`initlab.model.InitPlan`, one row per variable (``name`` its Keras path, prefixed by its
        nested functional model's name where that path is another layer's too:
        :func:`initlab.keras.kernels.variable_names`).

    Raises:
        TypeError: ``model`` is not a ``keras.Model``; a bad ``seed`` type.
        InitlabError: an unbuilt model; a subclassed model (no graph to walk); an unknown scheme; a bad
            ``sigma_b2``, ``embedding_std`` or seed; ``"critical"`` for a layer whose activation has no
            critical point (the message names it).

    Source: as :func:`initlab.init_model` (Glorot & Bengio 2010; He et al. 2015; Saxe et al. 2013;
    Balduzzi et al. 2017; Pennington et al. 2017; Xiao et al. 2018; Bingham & Miikkulainen 2023).

    Example:
        >>> import keras
        >>> net = keras.Sequential([keras.Input((784,)), keras.layers.Dense(256, activation="relu"),
        ...                         keras.layers.Dense(10)])
        >>> plan = init_model(net, seed=0)
        >>> [(r.shape, r.scheme) for r in plan][:2]
        [((784, 256), 'looks_linear'), ((256,), 'zeros')]
        >>> print(plan.table())  # doctest: +SKIP
    """
    _check_args(model, scheme, sigma_b2, embedding_std)
    rng = _generator(seed)
    kg = keras_graph(model)
    layered = [(layer, layer_slots(layer)) for layer in walk_layers(model)]
    planned = [(layer, slots) for layer, slots in layered if slots is not None]
    names = variable_names(planned, kg.keys)
    found, measured = _found(kg)
    ctx = KerasContext(scheme, float(embedding_std), None if sigma_b2 is None else float(sigma_b2), measured)
    decider = RowDecider(ctx, found, names=names)
    notes: list[str] = list(kg.notes)
    links = _chain(kg, planned) if scheme == "auto" else None
    conv_targets = chain_targets(kg, links) if links else None  # a tanh CNN: the depth-aware q*
    roles = chain_roles(kg, links) if links and conv_targets is None else None
    if roles is not None:
        decider.roles, decider.orders = roles, head_orders(kg, links)  # type: ignore[arg-type]
        notes.insert(0, "plain chain: isometric rule")
    solve = scheme in ("auto", "variance") and roles is None
    decided = _decide_all(decider, kg, planned, skip_solved=solve)
    if solve:
        fixed = _stats_fn(kg, [r for r, _, _ in decided], names)
        decider.scales, solve_notes = solve_scales(kg, _fan_ins(kg, planned), fixed,
                                                   residual=scheme == "auto",
                                                   layer_targets=conv_targets[0] if conv_targets else None)
        if conv_targets:
            solve_notes.append(conv_targets[1])
        notes = solve_notes + notes
        decided = _decide_all(decider, kg, planned)
    rows = [r for r, _, _ in decided]
    _predicted(kg, decided, names, skip=set(roles or ()))
    skipped = _skipped(layered)
    if skipped:
        warnings.warn(_skipped_message(skipped), SkippedParameterWarning, stacklevel=2)
    plan = InitPlan(scheme=scheme, rows=rows, skipped=skipped, detection="keras graph",
                    propagation=f"keras graph, {len(kg.graph)} nodes"
                    + (": " + "; ".join(notes) if notes else ""))
    if not dry_run:
        _write(rows, {names[id(s.variable)]: s.variable for _, slots in planned for s in slots}, rng)
        plan.applied = True
    return plan


def _check_args(model: Any, scheme: Any, sigma_b2: Any, embedding_std: Any) -> None:
    """Raise where a bad argument enters :func:`init_model`, naming it and the fix."""
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"initlab.keras.init_model: model must be a keras.Model, got {type(model).__name__} (for a torch "
            "nn.Module use initlab.init_model)"
        )
    if not has_graph(model):
        raise InitlabError(subclassed_message(model))
    if not model.built:
        raise InitlabError(
            f"init_model: model {model.name!r} is not built: call model.build(input_shape), or give it a "
            "keras.Input, before initializing it (its kernels do not exist yet)"
        )
    if not isinstance(scheme, str) or scheme not in KERAS_SCHEMES:
        raise InitlabError(f"scheme {scheme!r} is unknown: use one of {', '.join(KERAS_SCHEMES)}")
    for name, value in (("sigma_b2", sigma_b2), ("embedding_std", embedding_std)):
        if value is None and name == "sigma_b2":
            continue
        real = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if not (real and math.isfinite(value) and value >= 0):
            raise InitlabError(f"{name}={value!r} is invalid: pass a finite number >= 0")


def _generator(seed: Any) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        return np.random.default_rng(seed_sequence(None, 0))
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(
            f"init_model: seed must be an int, a numpy.random.Generator or None, got {type(seed).__name__}")
    if seed < 0:
        raise InitlabError(f"seed={seed!r} is negative: pass an int >= 0")
    return np.random.default_rng(int(seed))


def _found(kg: KerasGraph) -> tuple[dict[str, Found], dict[str, Any]]:
    """Each call's consuming and feeding activations, and the measured activations' functions."""
    g, found, measured = kg.graph, {}, {}
    for key, call in kg.calls.items():
        nl = consuming_activation(g, call.node)
        act, param = ("linear", None) if nl is None else nl.activation
        if act == "measured":
            act = f"measured:{nl.node.op}"  # type: ignore[union-attr]
            measured[act] = nl.node.fn  # type: ignore[union-attr]
        feeder = feeding_activation(g, call.node)
        fed = "linear" if feeder is None else feeder.activation[0]
        via = tuple(g[i].op for i in (nl.via if nl is not None else ())
                    if not (g[i].params.get("layout") or g[i].params.get("data")))
        found[key] = Found(act, param, "keras graph", fed, via)
    return found, measured


def _chain(kg: KerasGraph, planned: list[tuple[Any, list[Slot]]]) -> list | None:
    """The links of a plain chain (:func:`initlab.keras.chain.plain_chain`), else ``None``."""
    keys = {_key(kg, layer, s) for layer, slots in planned for s in slots if s.call is not None}
    every = [s for _, slots in planned for s in slots]
    dense_or_conv = all(s.call in ("kernel", None) and s.role != "alpha" for s in every)
    return plain_chain(kg, keys) if dense_or_conv else None


def _key(kg: KerasGraph, layer: Any, slot: Slot) -> str:
    """The graph call key of ``slot`` of ``layer`` (:meth:`initlab.keras.graph._Builder.layer`)."""
    return call_key(layer, slot.call, kg.keys)


def _decide_all(decider: RowDecider, kg: KerasGraph, planned: list[tuple[Any, list[Slot]]],
                skip_solved: bool = False) -> list[tuple[PlanRow, Slot, str | None]]:
    """Every row; with ``skip_solved`` only those the propagation reads before it solves the kernels (RNN
    gates, embeddings): the kernels and biases to solve are decided after :func:`solve_scales`. Each row
    comes with its slot and its graph call's key (``None``: not in the graph)."""
    out = []
    for layer, slots in planned:
        for slot in slots:
            if skip_solved and slot.call not in ("cell", "embeddings"):
                continue
            key = _key(kg, layer, slot) if slot.call is not None else None
            key = key if key in kg.calls else None
            out.append((decider.row(layer, slot, key), slot, key))
    return out


def _fan_ins(kg: KerasGraph, planned: list[tuple[Any, list[Slot]]]) -> dict[str, int]:
    """Module key -> connection-count fan_in of every kernel the propagation solves."""
    out = {}
    for layer, slots in planned:
        for s in slots:
            if s.layout is not None and s.call in ("kernel", "depthwise_kernel", "pointwise_kernel"):
                out[_key(kg, layer, s)] = s.layout.connections(tuple(int(d) for d in s.variable.shape)).fan_in
    return {k: v for k, v in out.items() if k in kg.calls}


def _second(row: PlanRow) -> tuple[float, float]:
    """``(E[x], E[x^2])`` of a decided row's entries (a centring bias: 0, 0)."""
    fill = row._fills[0] if row._fills else None
    spec = getattr(fill, "spec", None)
    if isinstance(spec, schemes.Constant):
        return spec.value, spec.value**2
    std = row.std or 0.0
    return 0.0, std**2


def _stats_fn(kg: KerasGraph, rows: list[PlanRow], names: dict[int, str]):
    """``(module key, part) -> LayerStats`` of the decided rows (kernels, RNN gates, embeddings), found by
    their variables' plan ``names``."""
    by_name = {r.name: r for r in rows}

    def row(var: Any) -> PlanRow | None:
        return by_name.get(names.get(id(var), ""))

    def stats(key: str, part: str) -> LayerStats | None:
        call = kg.calls.get(key)
        if call is None:
            return None
        slots = {s.role: s for s in layer_slots(call.layer) or ()}
        if call.part == "cell":
            return _rnn_stats(call.layer, part, slots, row)
        if part != "weight":
            return None
        kernel = slots.get("embeddings") or slots.get(call.part)
        krow = None if kernel is None else row(kernel.variable)
        if krow is None:
            return None
        shape = tuple(int(d) for d in kernel.variable.shape)  # type: ignore[union-attr]
        fan_in = shape[0] if kernel.layout is None else kernel.layout.connections(shape).fan_in  # type: ignore[union-attr]
        bias = slots.get("bias")
        brow = row(bias.variable) if bias is not None and bias.call == call.part else None
        b_mean, b_second = _second(brow) if brow is not None else (0.0, 0.0)
        return LayerStats(fan_in, _second(krow)[1], 0.0, b_mean, b_second)

    return stats


def _rnn_stats(layer: Any, part: str, slots: dict[str, Slot],
               row: Callable[[Any], PlanRow | None]) -> LayerStats | None:
    """An RNN part (``"ih_l0:f"``, ``"hh_l0"``; torch's gate names) as the rows draw it: per-gate second
    moments, the LSTM forget bias's mean 1 (carried by the input part, as torch's ``bias_ih``)."""
    base, _, gate = part.partition(":")
    role = "kernel" if base.startswith("ih") else "recurrent_kernel" if base.startswith("hh") else None
    slot = slots.get(role or "")
    krow = None if slot is None else row(slot.variable)
    if krow is None:
        return None
    fan_in = int(slot.variable.shape[0])  # type: ignore[union-attr]
    b_mean = b_second = 0.0
    bias = slots.get("bias")
    brow = row(bias.variable) if role == "kernel" and bias is not None else None
    if brow is not None:
        b_mean, b_second = _second(brow)
        fill = brow._fills[0] if brow._fills else None
        if type(layer).__name__ == "LSTM" and gate == "f" and fill is not None and fill.blocks:
            b_mean, b_second = 1.0, 1.0
    return LayerStats(fan_in, (krow.std or 0.0) ** 2, 0.0, b_mean, b_second)


def _predicted(kg: KerasGraph, decided: list[tuple[PlanRow, Slot, str | None]], names: dict[int, str],
               skip: set[str]) -> None:
    """Fill each kernel row's ``q_in`` / ``q_out``: the second moments of its layer call's input and output
    under the plan (:func:`initlab.keras.propagation.predict`), but for a plain chain's layers (``skip``),
    whose mirrored kernels the moment algebra of iid weights does not describe (the torch plan leaves
    them out too)."""
    moments = predict(kg, _stats_fn(kg, [r for r, _, _ in decided], names))
    for row, slot, key in decided:
        if key in skip:
            continue
        if key in moments and (slot.layout is not None or slot.role == "embeddings"):
            row.q_in, row.q_out = moments[key]  # type: ignore[index]


def _skipped(layered: list[tuple[Any, list[Slot] | None]]) -> list[dict[str, Any]]:
    """The layers with weights that no family plans (a frozen layer's weights count: torch's front end
    initializes frozen parameters too)."""
    out = []
    for layer, slots in layered:
        quantized = getattr(layer, "quantization_mode", None)
        weights = layer.trainable_weights if layer.trainable and not quantized else layer.weights
        if slots is None and weights:
            why = f"quantized ({quantized}): no float kernel to draw" if quantized else (
                "no initlab family for this layer")
            out.append({"module": layer.name, "type": type(layer).__name__,
                        "params": [v.path for v in weights], "why": why})
    return out


def _skipped_message(skipped: list[dict[str, Any]]) -> str:
    names = ", ".join(f"{s['module']} ({s['type']})" for s in skipped[:10])
    more = f" and {len(skipped) - 10} more" if len(skipped) > 10 else ""
    return (f"initlab.keras.init_model left {len(skipped)} layer(s) as they were: {names}{more}: "
            "initialize them with their own initializers (e.g. an initlab.keras initializer as "
            "kernel_initializer=)")


def _write(rows: list[PlanRow], variables: dict[str, Any], rng: np.random.Generator) -> None:
    """Draw every row in plan order from ``rng`` (all of them first), then assign them; a failed assignment
    restores the variables assigned so far."""
    drawn: dict[str, np.ndarray] = {}
    for row in rows:
        if not row._fills:
            continue
        var = variables[row.name]
        work = np.float64 if keras.backend.standardize_dtype(var.dtype) == "float64" else np.float32
        drawn[row.name] = draw_fill(row._fills[0], row.shape, rng, work, drawn)
    backups = []
    try:
        for name, values in drawn.items():
            var = variables[name]
            backups.append((var, keras.ops.copy(var.value)))
            var.assign(keras.ops.convert_to_tensor(values, dtype=var.dtype))
    except BaseException:
        for var, old in backups:
            var.assign(old)
        raise
    for row in rows:
        row.applied = row.name in drawn
