"""The graph-wide variance policy: every weighted layer's scale solved from the propagated second
moment of its own input, with the residual-stream and tied-embedding rules."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from initlab.errors import InitlabError
from initlab.graph import Graph, Kind, Node, consumers, producers, residual_adds, trace
from initlab.graph.moments import (
    LayerStats,
    Moments,
    model_layer_stats,
    model_tap_energy,
    part_params,
    propagate,
    solve_layer_scale,
)

__all__ = ["DEPTH_ROLE", "INNER_EXPONENT", "RESIDUAL_GROWTH", "ZERO_ENDS_WITHOUT_NORM", "LayerScale",
           "PropagationPlan", "plan_scales", "branch_end_targets"]

#: In a network without any normalization layer, ``"auto"`` starts the last layer of every residual
#: branch at 0 (the stream is its shortcut at init, as under Fixup and SkipInit) instead of scaling
#: it: on the no-norm ResNet-20 of ``benchmarks/time_to_accuracy_arch.py`` (Fashion-MNIST, SGD lr
#: 0.05, 250 steps, seeds 0-2) zeroed ends reached a median test accuracy of 0.776 (worst seed 0.744)
#: against 0.740 (worst 0.593) for the scaled branches, Fixup 0.753 and SkipInit 0.677. The layers
#: before a zeroed end take Fixup's exponent (:data:`INNER_EXPONENT`). Deeper and longer, SkipInit's
#: gates caught up and passed: on the no-norm ResNet-56 at 500 steps they reached 80 % in a median 240
#: steps against 320 for every zeroed-end start measured, so the plan's note points to
#: :func:`initlab.transforms.add_skip_gates` (new parameters, which ``init_model`` does not add).
ZERO_ENDS_WITHOUT_NORM = True

#: Before a zeroed branch end, the ``k``-th of a branch's ``m - 1`` inner layers targets
#: ``L^(-INNER_EXPONENT * k / (m - 1))`` (1: Fixup's ``L^(-1/(2m-2))`` per layer). Measured on the
#: no-norm ResNet-56 of ``benchmarks/time_to_accuracy_arch.py`` (500 steps, SGD lr 0.05; steps to 80 %,
#: final accuracy, by seed): 1 reached 400 / 300 / 320 (0.817 / 0.843 / 0.838, seeds 0-2); 0.5 (larger
#: inner layers) never / 360 (0.675 / 0.840, seeds 0-1: the accuracy fell back to chance around step
#: 100); 1.5 (smaller) 420 / 340 (0.816 / 0.828, seeds 0-1).
INNER_EXPONENT = 1.0

#: Over all its residual adds, a stream's second moment grows by this factor at init: each branch
#: adds ``q_skip * (RESIDUAL_GROWTH ** (1 / L) - 1)`` for ``L`` residual adds, so the stream's
#: second moment at the last add is ``RESIDUAL_GROWTH`` times that at the first.
RESIDUAL_GROWTH = 2.0

#: The role of a layer whose target comes from ``plan_scales(layer_targets=...)``: a plain CNN's
#: depth-aware pre-activation ``q*`` (:data:`initlab.model.chain.CONV_DEPTH_NOTE`).
DEPTH_ROLE = "depth q*"

_STANDARDISED = Moments(0.0, 1.0)


@dataclass(frozen=True)
class LayerScale:
    """The scale chosen for one weighted part of a layer.

    Attributes:
        module, part: the layer's qualified name and part (``"weight"``; ``"query"``, ``"key"``,
            ``"value"``, ``"out"`` of an attention; ``"ih_l0"`` of an RNN).
        weight_second: ``E[w^2]`` of the zero-mean weights to draw (``std = sqrt(weight_second)``).
        q_in: the propagated second moment ``E[x^2]`` of the part's input (``None`` for a lookup).
        q_out: the second moment of its output at init (the target it was solved for); ``None``
            for a scale a formula sets (the residual-family schemes).
        role: why this target: ``"pre-activation"`` (1), ``"residual branch"``, ``"tied head"``,
            ``"embedding"``; a residual-family scheme's formula.
        label: the plan row's scheme (``"propagated"``; ``"fixup"``, ``"gpt2"``, ...; a zero
            ``weight_second`` is shown as ``"zeros"``).
        uniform: draw ``U(-a, a)`` with ``a = sqrt(3 weight_second)`` rather than a normal.
    """

    module: str
    part: str
    weight_second: float
    q_in: float | None
    q_out: float | None
    role: str
    label: str = "propagated"
    uniform: bool = False

    @property
    def std(self) -> float:
        """``sqrt(weight_second)``."""
        return math.sqrt(self.weight_second)


@dataclass
class PropagationPlan:
    """What :func:`plan_scales` decided.

    Attributes:
        graph: the traced graph, each node's ``meta["moments"]`` the moments at init under the plan.
        scales: ``(module, part) -> LayerScale`` for every weighted part the graph calls.
        params: a parameter read directly by the forward (a class token, position embeddings) ->
            the std to draw it with (it gets the second moment of the tensor it joins).
        residual: number of residual adds whose branch was scaled.
        notes: what could not be planned, and why.
    """

    graph: Graph
    scales: dict[tuple[str, str], LayerScale] = field(default_factory=dict)
    params: dict[str, float] = field(default_factory=dict)
    shifts: set[str] = field(default_factory=set)
    residual: int = 0
    notes: list[str] = field(default_factory=list)


class _Solver:
    """The layer-statistics callback of :func:`initlab.graph.moments.propagate` that solves each part's
    ``E[w^2]`` for its target output second moment, given its own input's moments."""

    def __init__(self, model: nn.Module, targets: Mapping[int, Any], embedding_second: float,
                 kept: frozenset[str] = frozenset(), layer_targets: Mapping[str, float] | None = None,
                 ) -> None:
        self.model, self.targets, self.embedding_second, self.kept = model, targets, embedding_second, kept
        self.layer_targets = dict(layer_targets or {})
        self.fixed: dict[tuple[str, str], tuple[float, str]] = {}
        self.scales: dict[tuple[str, str], LayerScale] = {}
        self._read = model_layer_stats(model)

    def __call__(self, node: Node, part: str, x: Moments) -> LayerStats | None:
        if node.module is None:
            return None
        if part == "affine" or node.module in self.kept:  # norm affines (1, 0 at init), kept layers
            return self._read(node, part, x)
        p = part_params(self.model, node, part)
        if p is None:
            return None
        module = self.model.get_submodule(node.module)
        if isinstance(module, nn.RNNBase):  # drawn by init_model's recurrent handler, not solved
            return _recurrent_stats(module, part, p.fan_in)
        key = (node.module, part)
        if key not in self.scales:
            self.scales[key] = self._solve(node, part, x, p)
        return LayerStats(p.fan_in, self.scales[key].weight_second)

    def _solve(self, node: Node, part: str, x: Moments, p: Any) -> LayerScale:
        key = (node.module, part)
        if key in self.fixed:
            second, role = self.fixed[key]
            return LayerScale(node.module, part, second, None if p.lookup else x.second,
                              second if p.lookup else p.fan_in * second * x.second, role)
        if p.lookup:
            second = self.embedding_second
            return LayerScale(node.module, part, second, None, second, "embedding")
        target, role = 1.0, "pre-activation"
        if node.module in self.layer_targets:
            target, role = self.layer_targets[node.module], DEPTH_ROLE
        end = self.targets.get(node.id)
        if end is not None and part in ("weight", "out"):
            target, role = end(), end.role
        second = 0.0 if target == 0 else solve_layer_scale(p.fan_in, x, target)
        return LayerScale(node.module, part, second, x.second, target, role)


def _recurrent_stats(module: nn.RNNBase, part: str, fan_in: int) -> LayerStats:
    """The statistics of ``part`` of an RNN as :func:`initlab.init_model` draws it under "auto" and
    "variance" (Saxe et al. 2013; Jozefowicz et al. 2015): input weights Glorot normal per gate,
    ``E[w^2] = 2 / (fan_in + hidden)``; recurrent weights orthogonal per gate, ``E[w^2] =
    1 / max(hidden, cols)``; the projection Glorot normal; biases 0 except the LSTM forget gate's 1
    (carried by its ``ih`` part, as :func:`initlab.graph.layer_stats.part_params` splits them)."""
    base, _, gate = part.partition(":")
    hidden, proj = module.hidden_size, getattr(module, "proj_size", 0) or 0
    if base.startswith("hh"):
        return LayerStats(fan_in, 1.0 / max(hidden, proj or hidden))
    if base.startswith("hr"):
        return LayerStats(fan_in, 2.0 / (hidden + proj))
    forget = module.mode == "LSTM" and gate == "f" and module.bias
    return LayerStats(fan_in, 2.0 / (fan_in + hidden), bias_mean=1.0 if forget else 0.0,
                      bias_second=1.0 if forget else 0.0)


def branch_end_targets(g: Graph, growth: float, notes: list[str],
                       zero_ends: bool | None = None) -> dict[int, Any]:
    r"""The output second moments the graph-wide propagation targets at the ends of residual branches
    (and, when the ends start at 0, at the layers before them), shared by the torch and Keras front
    ends.

    For each of the ``L`` residual adds whose branch ends in a weighted layer with no norm between it
    and the add, the branch end's output targets

    .. math::  E[y^2] = q_{skip}\,\bigl(\text{growth}^{1/L} - 1\bigr)

    so the stream's second moment grows by ``growth`` over the whole network; or 0 with
    ``zero_ends`` (Fixup / SkipInit: the stream is its shortcut at init), in which case the ``k``-th
    of the ``m - 1`` layers before each end targets :math:`L^{-k/(m-1)}` times its own scale (Fixup's
    :math:`L^{-1/(2m-2)}` per layer, compounded).

    Args:
        g: the traced graph, its nodes' ``moments`` filled by the propagation (``q_skip`` is read
            from the shortcut's node when the target is evaluated).
        growth: the stream's total second-moment growth (:data:`RESIDUAL_GROWTH`).
        notes: a list the rule appends its explanations to (the plan's notes).
        zero_ends: start the ends at 0; ``None``: when the network has no normalization layer at all
            (:data:`ZERO_ENDS_WITHOUT_NORM`).

    Returns:
        ``{layer node id: target}``, each target a callable ``() -> float`` with a ``role`` attribute
        (the plan row's words).

    Source: Zhang, Dauphin & Ma (2019), "Fixup initialization"; De & Smith (2020), "Batch
    normalization biases residual blocks towards the identity function in deep networks" (SkipInit).
    """
    ends: dict[int, int] = {}
    for r in residual_adds(g):
        if not r.layers:
            continue
        last = max(r.layers)
        path = _path_kinds(g, last, r.branch) | ({g[r.branch].kind} if r.branch != last else set())
        if Kind.NORM in path:  # between the layer and the add, or the add's operand itself (bn2)
            notes.append(f"residual add #{r.add}: its branch ends in a norm, which sets its scale")
            continue
        ends[last] = r.skip
    per_add = growth ** (1.0 / max(len(ends), 1)) - 1.0
    zero = bool(ends) and (ZERO_ENDS_WITHOUT_NORM and not g.of_kind(Kind.NORM) if zero_ends is None
                           else zero_ends)
    if zero:
        notes.append(f"no normalization: the last layer of each of the {len(ends)} residual branches starts "
                     f"at 0 and the layers before it on the branch target L^(-{INNER_EXPONENT:g}/(m-1)) each "
                     "(Fixup's rule; "
                     "measured faster than branch scaling without norms; SkipInit's gates, added by "
                     "initlab.transforms.add_skip_gates before init_model, trained a no-norm ResNet-56 "
                     "faster still)")

    def target(skip: int) -> Any:
        def q() -> float:
            if zero:
                return 0.0
            m = g[skip].meta.get("moments")
            return (m.second if m is not None else 1.0) * per_add
        q.role = "residual branch end, no norm: 0" if zero else "residual branch"  # type: ignore[attr-defined]
        return q

    out = {last: target(skip) for last, skip in ends.items()}
    if zero:
        out.update({i: t for i, t in _inner_targets(g, set(ends), len(ends)).items() if i not in out})
    return out


def _inner_targets(g: Graph, ends: set[int], n_branches: int) -> dict[int, Any]:
    """Fixup's scaling of the layers before a zeroed branch end, as targets: on a branch of ``m``
    weighted layers in a network of ``L`` branches, the ``k``-th layer's output targets
    ``c^(2k)`` with ``c = L^(-e/(2m-2))``, ``e`` = :data:`INNER_EXPONENT` (1: Fixup's; each layer's own
    scale times ``c``, compounding as Fixup's He x ``c`` does), so that one SGD step changes the output
    by ``O(lr)`` whatever ``L`` (Zhang et al. 2019, sec. 3). A layer on nested branches takes its
    innermost (fewest layers)."""
    best: dict[int, tuple[int, int]] = {}  # node id -> (m, k)
    for r in residual_adds(g):
        layers = sorted(i for i in r.layers if g[i].module is not None)
        if not layers or layers[-1] not in ends:
            continue
        m = len(layers)
        for k, i in enumerate(layers[:-1], start=1):
            if i not in best or m < best[i][0]:
                best[i] = (m, k)

    def target(m: int, k: int) -> Any:
        def q() -> float:
            return float(n_branches) ** (-INNER_EXPONENT * k / (m - 1))
        power = f"{k}" if INNER_EXPONENT == 1.0 else f"{INNER_EXPONENT:g}*{k}"
        q.role = f"residual branch, no norm: L^(-{power}/(m-1)), L={n_branches}, m={m}"  # type: ignore[attr-defined]
        q.inner = True  # type: ignore[attr-defined]
        return q

    return {i: target(m, k) for i, (m, k) in best.items()}


def _path_kinds(g: Graph, start: int, end: int) -> set[Kind]:
    """Kinds of the nodes strictly between ``start`` and ``end`` on the paths from one to the other."""
    kinds: set[Kind] = set()
    stack, seen = [end], {end}
    while stack:
        i = stack.pop()
        for j in g[i].inputs:
            if j in seen or j < start:
                continue
            seen.add(j)
            if j != start:
                kinds.add(g[j].kind)
                stack.append(j)
    return kinds


def _tied_heads(model: nn.Module, g: Graph) -> list[tuple[list[str], str, Node]]:
    """``(embedding qualnames, head qualname, head node)`` for every weight ``Embedding`` modules
    share with a layer the graph calls as a projection (GPT-2's ``lm_head`` tied to ``wte``; BART's
    ``shared``, ``encoder.embed_tokens`` and ``decoder.embed_tokens`` tied to ``lm_head``)."""
    owners: dict[int, list[tuple[str, nn.Module]]] = {}
    for q, m in model.named_modules(remove_duplicate=False):
        w = m._parameters.get("weight") if hasattr(m, "_parameters") else None
        if w is not None:
            owners.setdefault(id(w), []).append((q, m))
    out = []
    for group in owners.values():
        embs = [q for q, m in group if isinstance(m, nn.Embedding)]
        heads = [q for q, m in group if not isinstance(m, nn.Embedding)]
        for h in heads:
            node = next((n for n in g if n.module == h and n.kind is Kind.LAYER), None)
            if embs and node is not None:
                out.append((embs, h, node))
    return out


def _summed_embeddings(g: Graph) -> list[list[str]]:
    """Groups of ``Embedding`` layers whose outputs the forward adds together (token + position)."""
    from initlab.graph import producer_layers

    groups = []
    for n in g.of_kind(Kind.ADD):
        made = [g[i] if g[i].kind is Kind.LAYER else p for i in n.inputs
                for p in ([g[i]] if g[i].kind is Kind.LAYER else producer_layers(g, i))]
        embs = [p.module for p in made if p.module is not None and p.op in ("Embedding", "EmbeddingBag")]
        if len(embs) > 1:
            groups.append(embs)
    return groups


def _reads_only(g: Graph, i: int, param: int) -> bool:
    """Node ``i`` is ``param`` seen through reshapes (``cls_token.expand(...)``)."""
    while g[i].kind is Kind.RESHAPE and g[i].inputs:
        i = g[i].inputs[0]
    return i == param or g[i].kind is Kind.PARAM


def _joined_params(model: nn.Module, g: Graph, shifts: set[str] | None = None) -> list[tuple[Node, int]]:
    """``(PARAM node, other operand id)`` for every trainable parameter the forward adds to or
    concatenates with a data tensor (class tokens, position embeddings). A parameter added with
    one value per feature, broadcast over every position (``h + self.offset``), is a shift, like a
    bias, not an embedding: it is left out (:func:`initlab.init_model` zeroes it)."""
    trainable = {n for n, _ in model.named_parameters()}
    out = []
    for n in g.of_kind(Kind.PARAM):
        if n.params.get("name") not in trainable:
            continue
        t = model.get_parameter(n.params["name"])
        for u in consumers(g, n.id):
            if u.kind is Kind.ADD and t.numel() == (t.shape[-1] if t.dim() else 1):
                if shifts is not None:  # broadcast over every position: a shift (a bias), not an embedding
                    shifts.add(n.params["name"])
                break
            if u.kind in (Kind.ADD, Kind.CONCAT):
                mine = {n.id, *(p.id for i in u.inputs for p in producers(g, i) if p.id == n.id)}
                other = next((i for i in u.inputs if i not in mine and not _reads_only(g, i, n.id)), None)
                if other is not None:
                    out.append((n, other))
                    break
    return out


def _plan_joined(g: Graph, joined: list[tuple[Node, int]], plan: PropagationPlan) -> bool:
    """Give each joined parameter the second moment of the tensor it joins; True if any changed."""
    changed = False
    for node, other in joined:
        name, m = node.params["name"], g[other].meta.get("moments")
        if m is None:
            if name not in plan.params:
                plan.notes.append(f"parameter {name}: the tensor it joins has unknown moments")
            continue
        std = math.sqrt(m.second)
        if not math.isclose(plan.params.get(name, -1.0), std, rel_tol=1e-9):
            node.meta["planned_moments"] = Moments(0.0, m.second)
            plan.params[name] = std
            changed = True
    return changed


def _check_layer_targets(model: nn.Module, targets: Any) -> dict[str, float]:
    """``targets`` as ``{module name: float}``; raise :class:`InitlabError` for a non-mapping, a name
    that is no module of ``model`` or a value that is not a finite real number ``> 0``."""
    if targets is None:
        return {}
    if not isinstance(targets, Mapping):
        raise InitlabError(f"layer_targets={targets!r} is invalid: pass {{module name: second moment}}")
    names = dict(model.named_modules())
    out: dict[str, float] = {}
    for name, t in targets.items():
        if name not in names:
            raise InitlabError(f"layer_targets names {name!r}, which is no module of the model: use module "
                               "names as model.named_modules() gives them (e.g. 'features.0', not "
                               "'features.0.weight')")
        if isinstance(t, bool) or not isinstance(t, numbers.Real) or not (math.isfinite(t) and t > 0):
            raise InitlabError(f"layer_targets[{name!r}]={t!r} is invalid: pass a finite second moment > 0")
        out[name] = float(t)
    return out


def plan_scales(
    model: nn.Module,
    example_inputs: Any = None,
    *,
    input_moments: Moments = _STANDARDISED,
    residual_growth: float | None = RESIDUAL_GROWTH,
    embedding_second: float = 1.0,
    logits_second: float = 1.0,
    tied: bool = True,
    kept: frozenset[str] | set[str] = frozenset(),
    graph: Graph | None = None,
    zero_ends: bool | None = None,
    layer_targets: Mapping[str, float] | None = None,
) -> PropagationPlan:
    r"""Choose every weighted layer's weight variance by propagating moments through ``model``'s graph.

    Each weighted part ``y = W x + b`` (Linear, Conv, ConvTranspose, HF ``Conv1D``, attention
    projections, RNN input weights) reads the propagated second moment ``E[x^2]`` of *its own
    input* and gets zero-mean weights with

    .. math::
        \mathrm{Var}(w) = \frac{q_\text{target}}{\mathrm{fan\_in}\;\mathbb{E}[x^2]}

    (the He et al. 2015 argument with the input's actual second moment: a layer after a ReLU reads
    ``E[x^2] = q/2``, after a tanh less, after a sigmoid its mean included — so mixed activations
    need no gain table; a convolution's ``E[x^2]`` is what its taps read on average — zero padding,
    its input's spatial profile, ``prod(k_i / s_i)`` of ``prod(k_i)`` taps for a transposed one with
    stride ``s``: :func:`initlab.graph.spatial.conv_geometry`). Targets:

    * ``1`` for a pre-activation (any layer not below), or ``layer_targets[name]``;
    * the last layer of a residual branch (no norm between it and the add) targets
      ``q_skip (G^{1/L} - 1)`` with ``L`` such branches and ``G = residual_growth`` (2): the stream's
      second moment grows by ``G^{1/L}`` per add, ``G`` over the whole depth (branch and shortcut
      uncorrelated at init); ``residual_growth=None`` treats branch ends as pre-activations; in a
      network with no normalization layer at all, 0 instead (:data:`ZERO_ENDS_WITHOUT_NORM`: the
      rule Fixup and SkipInit share), and then the ``k``-th of the ``m - 1`` layers before it on a
      branch of ``m`` layers targets ``L^(-k/(m-1))`` (Fixup's ``L^(-1/(2m-2))`` per layer: one SGD
      step changes the output by ``O(lr)`` whatever ``L``; on the no-norm ResNet-56 this trained to
      0.75 in 250 steps where zeroed ends alone reached 0.22);
    * an ``Embedding`` table gets ``E[w^2] = embedding_second``; one tied to an output projection
      (GPT-2's ``lm_head``) instead gets ``logits_second / (d E[h^2])``, ``h`` the head's input, so
      the logits start with second moment ``logits_second`` (1) rather than ``d``, and the
      embeddings added to it (position embeddings) get the same scale;
    * a parameter the forward adds to or concatenates with the data (ViT's ``cls_token`` and
      ``position_embeddings``) gets the second moment of that tensor.

    Recurrent (``hh``) weights and norm affines are left to their handlers (orthogonal gates;
    ``1``/``0``); their effect is propagated.

    Args:
        model: any ``nn.Module``; nothing in it changes.
        example_inputs: inputs for tracing (see :func:`initlab.graph.trace`); built from the model
            when ``None`` and fx needs shapes or fails.
        input_moments: moments of the data entering the model (standardised: mean 0, ``E[x^2] = 1``).
        residual_growth: ``G`` above, ``> 1``; ``None`` to leave residual branches unscaled.
        embedding_second, logits_second: the targets above (``>= 0``, ``> 0``).
        tied: apply the tied-embedding rule (``False``: tables get ``embedding_second``).
        kept: qualified names of layers whose weights stay as they are (a ``"keep"`` rule:
            pretrained, frozen): the propagation reads their current weights, and the layers after
            them are solved for what those actually give.
        zero_ends: start the last layer of every residual branch at 0 rather than scaling it
            (``None``: when the graph has no normalization layer, :data:`ZERO_ENDS_WITHOUT_NORM`).
        graph: ``model``'s graph, already traced (:func:`initlab.graph.trace`); the plan works on a
            :meth:`~initlab.graph.Graph.fresh` copy. ``None``: traced here from ``example_inputs``.
        layer_targets: ``{layer name: q}``: these layers' outputs target second moment ``q`` (finite,
            ``> 0``) instead of 1, role :data:`DEPTH_ROLE` (a residual-branch target still wins): the
            depth-aware ``q*`` ``"auto"`` gives a tanh CNN (:data:`initlab.model.chain.CONV_DEPTH_NOTE`).

    Returns:
        :class:`PropagationPlan`.

    Raises:
        InitlabError: tracing failed (see :func:`initlab.graph.trace`), or a bad argument.

    Source: Bingham & Miikkulainen (2023), "AutoInit: analytic signal-preserving weight
    initialization for neural networks"; He et al. (2015); the branch rule follows the
    depth-scaled residual inits of Radford et al. (2019, GPT-2) and Zhang et al. (2019, Fixup).

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
        >>> plan = plan_scales(net)
        >>> s = plan.scales[("2", "weight")]
        >>> round(s.q_in, 3), round(s.weight_second * 16 * s.q_in, 6), s.role
        (0.5, 1.0, 'pre-activation')
    """
    if not (isinstance(embedding_second, (int, float)) and math.isfinite(embedding_second)
            and embedding_second >= 0):
        raise InitlabError(f"embedding_second={embedding_second!r} is invalid: pass a finite number >= 0")
    if not (isinstance(logits_second, (int, float)) and math.isfinite(logits_second) and logits_second > 0):
        raise InitlabError(f"logits_second={logits_second!r} is invalid: pass a finite number > 0")
    if residual_growth is not None and not (math.isfinite(residual_growth) and residual_growth > 1):
        raise InitlabError(f"residual_growth={residual_growth!r} is invalid: pass a number > 1, or None")
    g = trace(model, example_inputs) if graph is None else graph.fresh()
    plan = PropagationPlan(g)
    ends = branch_end_targets(g, residual_growth, plan.notes, zero_ends) if residual_growth else {}
    plan.residual = sum(1 for t in ends.values() if not getattr(t, "inner", False))
    layer_targets = _check_layer_targets(model, layer_targets)
    solver = _Solver(model, ends, float(embedding_second), frozenset(kept), layer_targets)
    read_taps = model_tap_energy(model)

    def taps(node: Any) -> Any:  # a kept layer spreads its weight as it does now; a solved one evenly
        return read_taps(node) if node.module in solver.kept else None

    propagate(g, input_moments, model=model, layer_stats=solver, tap_energy=taps)
    again = False
    for embs, head, node in _tied_heads(model, g) if tied else ():
        x = g[node.inputs[0]].meta.get("moments") if node.inputs else None
        p = part_params(model, node, "weight")
        if x is None or p is None or x.second <= 0:
            plan.notes.append(f"tied {embs[0]} / {head}: the head's input moments are unknown")
            continue
        second = logits_second / (p.fan_in * x.second)
        for name in (*embs, head):
            solver.fixed[(name, "weight")] = (second, "tied head")
        again = True
    for group in _summed_embeddings(g) if tied else ():  # token + position: the same scale as the tied one
        seconds = [solver.fixed[(e, "weight")][0] for e in group if (e, "weight") in solver.fixed]
        for e in group:
            if seconds and (e, "weight") not in solver.fixed:
                solver.fixed[(e, "weight")] = (seconds[0], "summed with a tied embedding")
    joined = _joined_params(model, g, plan.shifts)
    for _ in range(4):  # a joined parameter's scale depends on the others' (cat, then + position)
        if not again and not joined:
            break
        changed = _plan_joined(g, joined, plan)
        if not again and not changed:
            break
        again = False
        solver.scales.clear()
        propagate(g, input_moments, model=model, layer_stats=solver, tap_energy=taps)
    plan.scales = dict(solver.scales)
    for key, (second, role) in solver.fixed.items():  # tied owners the forward never calls (BART's shared)
        plan.scales.setdefault(key, LayerScale(key[0], key[1], second, None, second, role))
    return plan
