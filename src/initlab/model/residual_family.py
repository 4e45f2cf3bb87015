"""The residual-family schemes of :func:`initlab.init_model` (``"fixup"``, ``"skipinit"``,
``"rezero"``, ``"gpt2"``, ``"t_fixup"``, ``"deepnorm"``): one planner each, which finds the residual
branches in the model's data-flow graph (never from module names) and returns every weighted part's
scale as a :class:`~initlab.model.propagation.PropagationPlan`."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import NamedTuple

from torch import nn

from initlab.errors import InitlabError
from initlab.fans import Fans, compute_fans
from initlab.graph import Graph, Kind, Node, producers
from initlab.graph.queries import Residual, ancestors
from initlab.model.classify import LAYER_TYPES, LOOKUP_TYPES, block_adds, conv1d_types
from initlab.model.handlers.linear import layer_fans, packed_by_structure
from initlab.model.propagation import LayerScale, PropagationPlan, plan_scales

__all__ = ["FAMILY_PLANNERS", "Branches", "FamilyOptions", "attention_roles", "classifier_layers",
           "family_plans", "fixup_factor", "plan_deepnorm", "plan_fixup", "plan_gpt2", "plan_skip_gates",
           "plan_t_fixup", "residual_branches", "Stacks", "transformer_stacks"]

Key = tuple[str, str]  # (module qualname, part)

#: The scalars :func:`initlab.transforms.add_fixup_scalars` adds (biases 0, multiplier 1 at init).
FIXUP_SCALARS = ("fixup_bias_in", "fixup_bias_out", "fixup_scale")
#: The gate :func:`initlab.transforms.add_skip_gates` adds (0 at init).
SKIP_GATE = "skip_gate"
#: Kinds walked through from an attention's operand back to the layer that made it: reshapes, scales,
#: dropout, norms (QK-norm), and the sums and products of rotary embeddings.
_OPERAND_PASS = frozenset({Kind.RESHAPE, Kind.SCALE, Kind.DROPOUT, Kind.NORM, Kind.ADD, Kind.SUB,
                           Kind.MUL, Kind.CONCAT})
#: Kinds walked through from a cross-attention's key or value back to the projection that made it
#: (a concatenation: a key/value cache joined to the new keys).
_FEED_PASS = frozenset({Kind.RESHAPE, Kind.SCALE, Kind.DROPOUT, Kind.CONCAT})


@dataclass(frozen=True)
class FamilyOptions:
    """What a planner needs besides the model and its graph: the scheme's name (for messages), the
    embedding tables' ``E[w^2]`` (``embedding_std ** 2``) and the layers a ``"keep"`` rule keeps."""

    scheme: str
    embedding_second: float = 1.0
    kept: frozenset[str] = frozenset()


class _Part(NamedTuple):
    """A layer's weighted part: its fans (per block), or for a lookup ``fans=None`` and its width."""

    module: str
    part: str
    fans: Fans | None
    dim: int | None = None


@dataclass(frozen=True)
class Branches:
    """The residual branches of a graph.

    Attributes:
        adds: the residual adds whose branch has a weighted layer (:func:`initlab.graph.residual_adds`).
        ends: ``(module, part)`` of the last weighted layer of each branch (an attention's ``"out"``).
        inner: every other ``(module, part)`` on a branch -> the number of weighted layers ``m`` of the
            innermost branch that holds it.
    """

    adds: tuple[Residual, ...]
    ends: frozenset[Key]
    inner: dict[Key, int] = field(default_factory=dict)

    def on_branch(self, key: Key) -> bool:
        """Whether ``(module, part)`` lies on a residual branch."""
        return key in self.ends or key in self.inner


def _parts(model: nn.Module, node: Node, packed: dict[str, int]) -> list[_Part]:
    """The weighted parts the handlers read a scale for: a Linear / Conv / Conv1D ``"weight"`` (per
    block of a packed ``c_attn``), a ``MultiheadAttention``'s ``"query"``, ``"key"``, ``"value"`` (of
    a packed ``in_proj_weight``) and ``"out"``, an embedding table's ``"weight"``."""
    q, m = node.module, _module(model, node)
    if isinstance(m, nn.MultiheadAttention):
        out = [_Part(q, "out", layer_fans(m.out_proj, 1))]
        if m.in_proj_weight is not None:
            f = compute_fans(tuple(m.in_proj_weight.shape), chunks=3)
            out = [_Part(q, p, f) for p in ("query", "key", "value")] + out
        return out
    if isinstance(m, (nn.Embedding, nn.EmbeddingBag)):
        return [_Part(q, "weight", None, m.embedding_dim)]
    if isinstance(m, LAYER_TYPES + conv1d_types()) and m.weight.numel():
        return [_Part(q, "weight", layer_fans(m, packed.get(q, 1)))]
    return []


def _layer_parts(model: nn.Module, g: Graph) -> dict[Key, _Part]:
    """Every weighted part the graph calls, once, in execution order."""
    packed = packed_by_structure(model)
    out: dict[Key, _Part] = {}
    for n in g.of_kind(Kind.LAYER):
        for p in _parts(model, n, packed):
            out.setdefault((p.module, p.part), p)
    return out


def residual_branches(model: nn.Module, g: Graph, scheme: str = "fixup") -> Branches:
    """The residual branches of ``model``'s graph ``g``: their adds, their last weighted layers and
    the layers inside them (:class:`Branches`). An attention module counts as one layer, its output
    projection (``"out"``) ending the branch. An add whose branch holds only embedding lookups (token
    plus position embeddings computed from the same ids, as BART's) is a sum of embeddings, not a
    residual branch.

    Raises:
        InitlabError: ``g`` has no residual add with a weighted layer on its branch (the message names
            the model's class and suggests ``scheme="auto"``).

    >>> import torch
    >>> from initlab.graph import trace
    >>> from initlab.zoo import build
    >>> net = build("resnet20_nonorm")
    >>> br = residual_branches(net, trace(net, torch.randn(2, 3, 32, 32)))
    >>> len(br.adds), ("blocks.0.conv2", "weight") in br.ends, br.inner[("blocks.0.conv1", "weight")]
    (9, True, 2)
    """
    adds = tuple(block_adds(model, g))  # a sum of embeddings (BART's positions) is no block
    if not adds:
        raise InitlabError(
            f"scheme {scheme!r} scales residual branches, and {type(model).__name__} has none (no residual "
            f"add x + f(x) in its graph, traced by {g.method}): use scheme='auto' (or 'variance')"
        )
    packed = packed_by_structure(model)
    ends: set[Key] = set()
    inner: dict[Key, int] = {}
    for r in adds:
        nodes = [g[i] for i in r.layers if g[i].module is not None]
        last = max(nodes, key=lambda n: n.id)
        for n in nodes:
            for p in _parts(model, n, packed):
                key = (p.module, p.part)
                if n is last and p.part in ("weight", "out"):
                    ends.add(key)
                else:
                    inner[key] = min(inner.get(key, len(nodes)), len(nodes))
    return Branches(adds, frozenset(ends), {k: m for k, m in inner.items() if k not in ends})


def classifier_layers(model: nn.Module, g: Graph) -> set[str]:
    """The weighted layers whose output is the model's output (through reshapes, dropout and
    pooling): the classifier, or a language model's head. A head whose weight is shared with an
    embedding table (a tied head) is left out: zeroing it would zero the table.

    >>> import torch
    >>> from initlab.graph import trace
    >>> from initlab.zoo import build
    >>> net = build("resnet20_nonorm")
    >>> classifier_layers(net, trace(net, torch.randn(2, 3, 32, 32)))
    {'head'}
    """
    tied = _tied_to_lookup(model)
    return {p.module for n in g.of_kind(Kind.OUTPUT) for p in producers(g, n.id)
            if p.kind is Kind.LAYER and p.module is not None and p.module not in tied}


def _tied_to_lookup(model: nn.Module) -> dict[str, str]:
    """Module -> the embedding table whose ``weight`` it shares (GPT-2's ``lm_head`` -> ``wte``)."""
    lookups = (nn.Embedding, nn.EmbeddingBag)
    modules = list(model.named_modules(remove_duplicate=False))
    tables = {id(m.weight): q for q, m in modules if isinstance(m, lookups)}
    tied = {}
    for q, m in modules:
        w = getattr(m, "_parameters", {}).get("weight")
        if not isinstance(m, lookups) and w is not None and id(w) in tables:
            tied[q] = tables[id(w)]
    return tied


def _operand_layers(g: Graph, i: int) -> tuple[list[Node], bool]:
    """The layers that made node ``i`` (backwards through :data:`_OPERAND_PASS`), and whether a
    softmax (attention weights) was met on the way."""
    stack, seen, found, softmax = [i], set(), [], False
    while stack:
        j = stack.pop()
        if j in seen:
            continue
        seen.add(j)
        n = g[j]
        if n.kind is Kind.LAYER:
            found.append(n)
        elif n.kind in (Kind.SOFTMAX, Kind.ATTENTION):
            softmax = True
        elif n.kind in _OPERAND_PASS:
            stack.extend(n.inputs)
    return found, softmax


def attention_roles(model: nn.Module, g: Graph) -> tuple[set[Key], set[Key]]:
    """``(query/key parts, value parts)`` found structurally: a ``MultiheadAttention``'s
    ``"query"``/``"key"`` and ``"value"``; the layers whose outputs feed the first two operands of
    ``scaled_dot_product_attention`` (the third: values), or both operands of a ``MATMUL`` of two
    layers' outputs (``q @ k^T``; a ``MATMUL`` whose first operand is a softmax takes values), walking
    back through reshapes, scales, dropout, norms and rotary embeddings' sums and products. A packed
    ``c_attn`` lands in both sets.

    >>> import torch
    >>> from initlab.graph import trace
    >>> enc = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 1)
    >>> qk, v = attention_roles(enc, trace(enc, torch.randn(1, 4, 8)))
    >>> sorted(qk), sorted(v)
    ([('layers.0.self_attn', 'key'), ('layers.0.self_attn', 'query')], [('layers.0.self_attn', 'value')])
    """
    qk: set[Key] = set()
    values: set[Key] = set()
    for n in g:
        if n.kind is Kind.LAYER and isinstance(_module(model, n), nn.MultiheadAttention):
            qk |= {(n.module, "query"), (n.module, "key")}
            values.add((n.module, "value"))
        elif n.kind is Kind.ATTENTION and n.op == "scaled_dot_product_attention" and len(n.inputs) >= 3:
            for i, into in zip(n.inputs[:3], (qk, qk, values), strict=True):
                into |= {(p.module, "weight") for p in _operand_layers(g, i)[0] if p.module is not None}
        elif n.kind is Kind.MATMUL and len(n.inputs) == 2:
            (a, soft_a), (b, soft_b) = (_operand_layers(g, i) for i in n.inputs)
            if a and b and not (soft_a or soft_b):
                qk |= {(p.module, "weight") for p in (*a, *b) if p.module is not None}
            elif soft_a:
                values |= {(p.module, "weight") for p in b if p.module is not None}
    return qk, values


def _module(model: nn.Module, n: Node) -> nn.Module | None:
    try:
        return model.get_submodule(n.module) if n.module is not None else None
    except AttributeError:  # a name the recorded forward made up
        return None


def _scale(p: _Part, second: float, role: str, label: str, uniform: bool = False) -> LayerScale:
    return LayerScale(p.module, p.part, second, None, None, role, label, uniform)


def _xavier_second(fans: Fans, gain: float = 1.0) -> float:
    """``E[w^2]`` of Glorot/Xavier with ``gain``: ``2 gain^2 / (fan_in + fan_out)``."""
    return 2.0 * gain**2 / (fans.fan_in + fans.fan_out)


def _has_parameter(model: nn.Module, names: Collection[str]) -> bool:
    return any(n.rsplit(".", 1)[-1] in names for n, _ in model.named_parameters())


def fixup_factor(n_branches: int, m: int) -> float:
    """Fixup's scale of the layers inside a residual branch of ``m`` weighted layers, with ``L``
    branches in the network.

    .. math::
        c = L^{-1/(2m-2)} \\quad (m \\ge 2), \\qquad c = 1 \\quad (m = 1)

    For ``m = 1`` the exponent is undefined (the branch's only layer is its last, which Fixup
    zeroes): no scaling.

    Source: Zhang, Dauphin & Ma (2019), "Fixup Initialization: Residual Learning Without
    Normalization".

    >>> fixup_factor(9, 2), fixup_factor(16, 3), fixup_factor(9, 1)
    (0.3333333333333333, 0.5, 1.0)
    """
    return float(n_branches) ** (-1.0 / (2 * m - 2)) if m > 1 else 1.0


def plan_fixup(model: nn.Module, g: Graph, opts: FamilyOptions | None = None) -> PropagationPlan:
    """``scheme="fixup"``: the last layer of every residual branch and the classifier 0, the other
    layers on a branch He normal scaled by :func:`fixup_factor`, every other layer He normal.

    .. math::
        \\sigma = \\sqrt{2 / fan_{in}} \\cdot \\begin{cases}
            0 & \\text{last layer of a branch; the classifier (weight and bias)} \\\\
            L^{-1/(2m-2)} & \\text{other layers of a branch of } m \\text{ layers } (m \\ge 2) \\\\
            1 & \\text{off the branches (stem, projection shortcuts); } m = 1
        \\end{cases}

    ``L`` is the number of residual branches (:func:`residual_branches`), ``m`` the number of
    weighted layers on the branch (the innermost one, for nested branches); ``fan_in`` the true
    fan_in (one block of a packed weight). He's ``sqrt 2`` is the ReLU gain Fixup's ResNets use.
    Biases are 0; the scalars :func:`initlab.transforms.add_fixup_scalars` adds (``fixup_bias_in``,
    ``fixup_bias_out``: 0, ``fixup_scale``: 1) are set by :func:`initlab.init_model` when present;
    without them the zero init and scaling still apply and the plan's note says how to add them.
    Embedding tables are left to their handler; a head tied to one is not zeroed.

    Returns:
        :class:`~initlab.model.propagation.PropagationPlan`: ``scales`` for every weighted part of
        ``g`` (label ``"fixup"``; ``E[w^2] = 0`` rows are ``"zeros"``), ``residual = L``.

    Raises:
        InitlabError: no residual add in ``g`` (use ``"auto"``); the model has SkipInit gates.

    Source: Zhang, Dauphin & Ma (2019), "Fixup Initialization: Residual Learning Without
    Normalization", ICLR.

    >>> import torch
    >>> from initlab.graph import trace
    >>> from initlab.zoo import build
    >>> net = build("resnet20_nonorm")
    >>> plan = plan_fixup(net, trace(net, torch.randn(2, 3, 32, 32)))
    >>> s = plan.scales[("blocks.0.conv1", "weight")]  # fan_in 16 * 3 * 3, L = 9, m = 2
    >>> round(s.std, 6) == round((2 / 144) ** 0.5 * 9 ** -0.5, 6), plan.scales[("head", "weight")].std
    (True, 0.0)
    """
    opts = opts or FamilyOptions("fixup")
    if _has_parameter(model, ("skip_gate",)):  # zero gate x zeroed end: no gradient
        raise InitlabError(
            f"scheme 'fixup' zeroes each branch's last layer, and {type(model).__name__} has SkipInit gates "
            "(skip_gate), also 0 at init: neither would ever get a gradient. Use scheme='skipinit', or undo "
            "the gates (the report of add_skip_gates: report.undo())")
    br = residual_branches(model, g, opts.scheme)
    n_br, head = len(br.adds), classifier_layers(model, g)
    plan = PropagationPlan(g.fresh(), residual=n_br)
    for key, p in _layer_parts(model, g).items():
        if p.fans is None:
            continue
        he = 2.0 / p.fans.fan_in
        if key in br.ends:
            second, role = 0.0, "fixup: last layer of a residual branch, 0"
        elif p.module in head:
            second, role = 0.0, "fixup: classifier, 0"
        elif key in br.inner:
            m = br.inner[key]
            second = he * fixup_factor(n_br, m) ** 2
            role = (f"fixup: He x L^(-1/(2m-2)), L={n_br}, m={m}" if m > 1
                    else "fixup: He (a branch of one layer: unscaled)")
        else:
            second, role = he, "fixup: He (not on a residual branch)"
        plan.scales[key] = _scale(p, second, role, "fixup")
    if not _has_parameter(model, FIXUP_SCALARS):
        plan.notes.append(
            "fixup: no Fixup scalars (fixup_bias_in, fixup_bias_out, fixup_scale): the zero init and "
            "branch scaling are applied without them; call initlab.transforms.add_fixup_scalars(model) "
            "first to add them")
    return plan


def _require_gates(model: nn.Module, scheme: str) -> int:
    """The number of ``skip_gate`` parameters; none raises."""
    n = sum(1 for name, _ in model.named_parameters() if name.rsplit(".", 1)[-1] == SKIP_GATE)
    if not n:
        raise InitlabError(
            f"scheme {scheme!r} needs a learnable gate on every residual branch, and {type(model).__name__} "
            f"has no {SKIP_GATE!r} parameter: call initlab.transforms.add_skip_gates(model) first"
        )
    return n


def plan_skip_gates(model: nn.Module, g: Graph, opts: FamilyOptions | None = None) -> PropagationPlan:
    """``scheme="skipinit"`` / ``"rezero"``: a learnable scalar gate on every residual branch,
    ``x + \\alpha f(x)`` with :math:`\\alpha = 0` at init, and the weights of the ``"variance"``
    propagation (:func:`initlab.model.plan_scales`, no residual-branch rule):

    .. math::
        \\alpha = 0, \\qquad \\mathrm{Var}(w) = \\frac{1}{fan_{in}\\,\\mathbb{E}[x^2]}

    with :math:`\\mathbb{E}[x^2]` the propagated second moment of the layer's own input (He's
    :math:`2 / fan_{in}` after a ReLU). The gates (parameters named ``skip_gate``, added by
    :func:`initlab.transforms.add_skip_gates`) are set to 0 by :func:`initlab.init_model`; the
    propagation reads the graph as traced (a gate the trace does not see is ignored). An untraced
    model gets the per-layer rule (He for the ReLU family).

    Raises:
        InitlabError: the model has no ``skip_gate`` parameter (call
            ``initlab.transforms.add_skip_gates(model)`` first).

    Source: De & Smith (2020), "Batch Normalization Biases Residual Blocks Towards the Identity
    Function in Deep Networks" (SkipInit); Bachlechner et al. (2020), "ReZero is All You Need: Fast
    Convergence at Large Depth".

    >>> import torch
    >>> from initlab.graph import trace
    >>> from initlab.zoo import build
    >>> net = build("resnet20_nonorm")
    >>> plan_skip_gates(net, trace(net, torch.randn(2, 3, 32, 32)))
    Traceback (most recent call last):
        ...
    initlab.errors.InitlabError: scheme 'skipinit' needs a learnable gate on every residual branch, ...
    """
    opts = opts or FamilyOptions("skipinit")
    n_gates = _require_gates(model, opts.scheme)
    plan = plan_scales(model, residual_growth=None, tied=False, embedding_second=opts.embedding_second,
                       kept=opts.kept, graph=g)
    n_adds = len(block_adds(model, g))
    plan.notes.append(f"{opts.scheme}: {n_gates} skip_gate(s) 0 at init ({n_adds} residual adds in the "
                      "graph; weights by the variance propagation)")
    return plan


def plan_gpt2(model: nn.Module, g: Graph, opts: FamilyOptions | None = None) -> PropagationPlan:
    """``scheme="gpt2"``: every Linear / Conv1D / Conv / attention / Embedding weight
    :math:`N(0, 0.02^2)`, and the last layer of every residual branch (the attention's output
    projection, the MLP's down projection, found from the graph) scaled by :math:`1/\\sqrt{L}`:

    .. math::
        \\sigma = 0.02, \\qquad \\sigma_{proj} = \\frac{0.02}{\\sqrt{L}} = \\frac{0.02}{\\sqrt{2 n_{layer}}}

    with ``L`` the number of residual adds (two per transformer block). Biases 0; LayerNorm
    weight 1, bias 0 (the norm handler).

    Returns:
        :class:`~initlab.model.propagation.PropagationPlan` (label ``"gpt2"``), ``residual = L``.

    Raises:
        InitlabError: no residual add in ``g`` (use ``"auto"``).

    Source: Radford et al. (2019), "Language Models are Unsupervised Multitask Learners" (GPT-2;
    transformers' ``GPT2PreTrainedModel._init_weights``; nanoGPT's ``c_proj`` rule).

    >>> import torch
    >>> from initlab.graph import trace
    >>> enc = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 2)
    >>> plan = plan_gpt2(enc, trace(enc, torch.randn(1, 4, 8)))  # 2 blocks: L = 4 residual adds
    >>> plan.scales[("layers.0.linear2", "weight")].std == 0.02 / 4 ** 0.5
    True
    >>> plan.scales[("layers.0.linear1", "weight")].std, plan.scales[("layers.0.self_attn", "out")].std
    (0.02, 0.01)
    """
    opts = opts or FamilyOptions("gpt2")
    br = residual_branches(model, g, opts.scheme)
    n_adds = len(br.adds)
    plan = PropagationPlan(g.fresh(), residual=n_adds)
    for key, p in _layer_parts(model, g).items():
        if key in br.ends:
            std, role = 0.02 / math.sqrt(n_adds), f"gpt2: residual projection 0.02/sqrt(L), L={n_adds} adds"
        else:
            std, role = 0.02, "gpt2: N(0, 0.02^2)"
        plan.scales[key] = _scale(p, std**2, role, "gpt2")
    return plan


@dataclass(frozen=True)
class Stacks:
    """The transformer stacks of a residual graph: one (an encoder or a decoder), or an encoder and
    a decoder.

    Attributes:
        n: blocks of the encoder, or of the only stack: its residual adds / 2 (attention + MLP); 0
            for a decoder alone (its memory given).
        m: blocks of the decoder (self-attention + cross-attention + MLP: 3 adds each), ``None`` with
            one stack.
        decoder: ids of the decoder's residual adds (empty with one stack).
        owner: ``(module, part)`` on a branch -> the id of the innermost residual add over it; a
            cross-attention's key and value projections belong to its branch.
        note: why an encoder-decoder was counted as one stack (its adds did not split as 2 per
            encoder block and 3 per decoder block), else ``None``.
    """

    n: float
    m: int | None
    decoder: frozenset[int]
    owner: dict[Key, int] = field(compare=False)
    note: str | None = None

    def in_decoder(self, key: Key) -> bool:
        """Whether ``(module, part)`` lies on a branch of the decoder's stack."""
        return self.owner.get(key) in self.decoder

    def on_branch(self, key: Key) -> bool:
        """Whether ``(module, part)`` lies on a residual branch, a cross-attention's key and value
        projections (computed off the branch from the encoder's output) included."""
        return key in self.owner


def transformer_stacks(model: nn.Module, g: Graph, br: Branches) -> Stacks:
    """Count the blocks of each transformer stack from the graph, not from module names.

    A residual branch that reads a node from outside its own stream (not computed from its fork)
    which was itself computed through residual adds is a **cross-attention** branch: it reads the
    encoder's output (an ``nn.TransformerDecoderLayer``'s ``multihead_attn``, BART's or T5's
    ``encoder_attn`` keys and values), or that a weighted layer on the branch reads as its data
    (a decoder called on a given ``memory``). With none, one stack of ``N = adds / 2`` blocks. With
    some, the adds that the encoder's output depends on are the encoder's (``N`` = those / 2; 0 for
    a decoder alone) and the others the decoder's (``M`` = the cross-attention branches, 3 adds per
    block). Masks and position biases computed once and reused are not cross-attention: they pass
    through no add and no projection.

    Returns:
        :class:`Stacks`.

    Source: the encoder-decoder forms of Huang et al. (2020, T-Fixup) and Wang et al. (2022, DeepNet)
    count ``N`` encoder and ``M`` decoder blocks.

    >>> import torch
    >>> from initlab.graph import trace
    >>> t = torch.nn.Transformer(8, 2, 2, 3, 16, batch_first=True)
    >>> g = trace(t, (torch.randn(1, 5, 8), torch.randn(1, 4, 8)))
    >>> st = transformer_stacks(t, g, residual_branches(t, g))
    >>> st.n, st.m, len(st.decoder)
    (2.0, 3, 9)
    """
    anc = ancestors(g)
    adds_bits = sum(1 << r.add for r in br.adds)

    def projection(i: int) -> bool:  # a weighted layer that is not a lookup table
        m = _module(model, g[i]) if g[i].kind is Kind.LAYER else None
        return m is not None and not isinstance(m, LOOKUP_TYPES)

    def feeders(x: int) -> list[int]:
        """The projections that made ``x``, back through reshapes, scales and dropout (the keys
        and values of a cross-attention, computed off the branch from the memory); one whose output
        has other readers (an encoder's last layer, read by every decoder block) is not one."""
        stack, seen, found = [x], set(), []
        while stack:
            j = stack.pop()
            if j not in seen:
                seen.add(j)
                if projection(j):
                    if len(g.users(j)) == 1:
                        found.append(j)
                elif g[j].kind in _FEED_PASS:
                    stack.extend(g[j].inputs)
        return found

    def memory_of(r: Residual) -> tuple[list[int], list[int]]:
        """The nodes from outside ``r``'s stream that its branch attends to (empty: self-attention),
        and the projections off the branch that made them."""
        fork, below = 1 << r.fork, anc[r.branch] | 1 << r.branch
        found, made = [], []
        for i in range(r.fork + 1, r.branch + 1):
            if not (anc[i] & fork and below >> i & 1):
                continue  # not on the branch
            data = g[i].inputs[:3] if projection(i) else g[i].inputs  # an attention's q, k, v
            for x in data:
                if x == r.fork or anc[x] & fork:
                    continue
                by = feeders(x)
                if (anc[x] | 1 << x) & adds_bits or by or projection(i):
                    found.append(x)  # the encoder's stream, its keys / values, or a layer reading it
                    made += by
        return found, made

    memory, cross = 0, 0
    packed = packed_by_structure(model)
    owner = _owners(model, g, br, packed)
    for r in br.adds:
        outside, made = memory_of(r)
        if outside:
            cross += 1
            for x in outside:
                memory |= anc[x] | 1 << x
            for j in made:  # a cross-attention's key and value projections belong to its branch
                owner.update({(p.module, p.part): r.add for p in _parts(model, g[j], packed)})
    if not cross:
        return Stacks(len(br.adds) / 2.0, None, frozenset(), owner)
    encoder = [r.add for r in br.adds if memory >> r.add & 1]
    decoder = frozenset(r.add for r in br.adds) - set(encoder)
    if len(encoder) % 2 or len(decoder) != 3 * cross:
        note = (f"{cross} residual branches read a tensor from outside their stream (cross-attention?), "
                f"but the {len(encoder)} adds before it and the {len(decoder)} others do not split as 2 per "
                "encoder block and 3 per decoder block: counted as one stack")
        return Stacks(len(br.adds) / 2.0, None, frozenset(), owner, note)
    return Stacks(len(encoder) / 2.0, cross, decoder, owner)


def _owners(model: nn.Module, g: Graph, br: Branches, packed: dict[str, int]) -> dict[Key, int]:
    """``(module, part)`` on a branch -> the id of the innermost residual add whose branch holds it
    (``packed``: :func:`~initlab.model.handlers.linear.packed_by_structure` of ``model``)."""
    owner: dict[Key, int] = {}
    for r in sorted(br.adds, key=lambda r: -len(r.layers)):  # inner (shorter) branches last: they win
        for i in r.layers:
            if g[i].module is not None:
                owner.update({(p.module, p.part): r.add for p in _parts(model, g[i], packed)})
    return owner


#: T-Fixup's encoder factor: ``0.67 N^(-1/4)`` (Huang et al. 2020, sec. 3.2).
T_FIXUP_ENCODER = 0.67


def causal_evidence(model: nn.Module, g: Graph) -> str | None:
    """Why ``model`` is a decoder (its attention is causal), or ``None`` when nothing says so: an
    attention node called with ``is_causal=True``, a ``tril`` / ``triu`` mask built in forward, a
    module with ``is_causal = True`` (Hugging Face attention), an ``nn.TransformerDecoderLayer``,
    or a config with ``is_decoder`` / ``is_encoder_decoder``."""
    for n in g:
        if n.kind is Kind.ATTENTION and n.params.get("is_causal"):
            return f"causal attention {n.module or n.op!r} (is_causal=True)"
        if n.op in ("tril", "triu", "tril_", "triu_"):
            return f"a causal mask ({n.op}) built in forward"
    for name, m in model.named_modules():
        if isinstance(m, nn.TransformerDecoderLayer):
            return f"decoder layer {name!r}"
        if getattr(m, "is_causal", False) is True:
            return f"module {name or type(m).__name__!r} has is_causal=True"
    config = getattr(model, "config", None)
    for flag in ("is_decoder", "is_encoder_decoder"):
        if getattr(config, flag, False) is True:
            return f"config.{flag}=True"
    return None


def plan_t_fixup(model: nn.Module, g: Graph, opts: FamilyOptions | None = None) -> PropagationPlan:
    """``scheme="t_fixup"``: Xavier uniform for every weight; the value and output projections and
    the MLP weights (every layer on a residual branch but the query and key,
    :func:`attention_roles`; a cross-attention's value projection included) scaled by ``c``;
    embedding tables :math:`N(0, d^{-1})` (std :math:`d^{-1/2}`) scaled by :math:`(9N)^{-1/4}`
    (:math:`(9M)^{-1/4}` in an encoder-decoder):

    .. math::
        w \\sim U(\\pm a), \\quad a = c \\sqrt{\\frac{6}{fan_{in} + fan_{out}}}, \\qquad
        c = \\begin{cases} (9N)^{-1/4} & \\text{v, out, MLP of a decoder} \\\\
        0.67 N^{-1/4} & \\text{v, out, MLP of an encoder} \\\\
        (9M)^{-1/4} & \\text{v, out, MLP of an encoder-decoder's decoder} \\\\
        1 & \\text{q, k; off the branches} \\end{cases}, \\qquad
        \\sigma_{emb} = d^{-1/2} (9N)^{-1/4}\\ \\text{or}\\ d^{-1/2} (9M)^{-1/4}

    ``N`` = residual adds / 2 (blocks of attention + MLP; the encoder's in an encoder-decoder),
    ``M`` the decoder blocks of an encoder-decoder (:func:`transformer_stacks`), ``d`` the table's
    width. The decoder form
    applies when the model's attention is causal (:func:`causal_evidence`: ``is_causal=True``, a
    ``tril`` mask, a decoder layer or config), the encoder form otherwise; the plan's note says which
    and why. An encoder-decoder (:func:`transformer_stacks`: ``N`` encoder blocks, ``M`` decoder
    blocks) gets each stack's form: ``0.67 N^{-1/4}`` on the encoder's branches, ``(9M)^{-1/4}`` on
    the decoder's and the embedding tables (the paper's setting has ``N = M``). T-Fixup also removes the
    LayerNorms and warm-up, which is the model's business: initlab does not change the
    architecture. A packed ``c_attn`` (Q, K, V in one weight) is planned as a query/key layer: its
    value block is not scaled (a note says so).

    Returns:
        :class:`~initlab.model.propagation.PropagationPlan` (label ``"t_fixup"``).

    Raises:
        InitlabError: no residual add in ``g`` (use ``"auto"``).

    Source: Huang, Perez, Ba & Volkovs (2020), "Improving Transformer Optimization Through Better
    Initialization", ICML, sec. 3.2.

    >>> import torch
    >>> from initlab.graph import trace
    >>> enc = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 2)
    >>> s = plan_t_fixup(enc, trace(enc, torch.randn(1, 4, 8))).scales[("layers.0.linear1", "weight")]
    >>> s.uniform, abs(s.std - 0.67 * 2 ** -0.25 * (2 / 24) ** 0.5) < 1e-15  # encoder, N = 2, fans 8 -> 16
    (True, True)
    """
    opts = opts or FamilyOptions("t_fixup")
    br = residual_branches(model, g, opts.scheme)
    st = transformer_stacks(model, g, br)
    n = st.n
    encoder = (T_FIXUP_ENCODER * n ** -0.25, f"{T_FIXUP_ENCODER} N^(-1/4), N={n:g}") if n else (0.0, "")
    if st.m is not None:  # encoder-decoder: each stack its form, the tables the decoder's
        c_emb, emb = (9.0 * st.m) ** -0.25, ("(9M)^(-1/4)", f"M={st.m}")
        why, decoder = None, (c_emb, ", ".join(emb))
    else:
        why = causal_evidence(model, g)
        c_emb, emb = (9.0 * n) ** -0.25, ("(9N)^(-1/4)", f"N={n:g}")
        decoder = (c_emb, ", ".join(emb))
    qk, values = attention_roles(model, g)
    plan = PropagationPlan(g.fresh(), residual=len(br.adds))
    for key, p in _layer_parts(model, g).items():
        if p.fans is None:
            second = c_emb**2 / p.dim
            role = f"t_fixup: embedding N(0, 1/d) x {emb[0]}, d={p.dim}, {emb[1]}"
            plan.scales[key] = _scale(p, second, role, "t_fixup")
        elif st.on_branch(key) and key not in qk:
            c, factor = decoder if st.in_decoder(key) or (st.m is None and why is not None) else encoder
            role = f"t_fixup: Xavier uniform x {factor}"
            plan.scales[key] = _scale(p, c**2 * _xavier_second(p.fans), role, "t_fixup", uniform=True)
        else:
            where = "query/key" if key in qk else "not on a residual branch"
            plan.scales[key] = _scale(p, _xavier_second(p.fans), f"t_fixup: Xavier uniform ({where})",
                                      "t_fixup", uniform=True)
    _tie_heads(model, plan)
    if st.m is not None:
        plan.notes.append(f"t_fixup: encoder-decoder: encoder 0.67 N^(-1/4) with N={n:g}, decoder and "
                          f"embeddings (9M)^(-1/4) with M={st.m} (cross-attention found)" if n else
                          f"t_fixup: decoder form, (9M)^(-1/4) with M={st.m} (a decoder with "
                          "cross-attention to a given memory)")
    else:
        plan.notes.append(f"t_fixup: decoder form, (9N)^(-1/4) with N={n:g} ({why})" if why is not None else
                          f"t_fixup: encoder form, 0.67 N^(-1/4) with N={n:g} (no causal attention found)")
    if st.note:
        plan.notes.append(f"t_fixup: {st.note}")
    plan.notes += [f"t_fixup: {m}: one layer makes queries, keys and values (packed): its value block "
                   "is not scaled" for m, _ in sorted(qk & values)]
    return plan


def _tie_heads(model: nn.Module, plan: PropagationPlan) -> None:
    """A head that shares its weight with an embedding table gets the table's scale (whichever of
    the two the plan meets first draws it)."""
    for head, table in _tied_to_lookup(model).items():
        if (head, "weight") in plan.scales and (table, "weight") in plan.scales:
            s = plan.scales[(table, "weight")]
            plan.scales[(head, "weight")] = LayerScale(head, "weight", s.weight_second, None, None,
                                                       f"{s.role} (tied to {table})", s.label, s.uniform)


def plan_deepnorm(model: nn.Module, g: Graph, opts: FamilyOptions | None = None) -> PropagationPlan:
    """``scheme="deepnorm"``: Xavier normal with gain :math:`\\beta` for the value and output
    projections and the MLP weights (every layer on a residual branch but the query and key,
    :func:`attention_roles`), gain 1 for the query, key and the layers off the branches:

    .. math::
        \\sigma = g \\sqrt{\\frac{2}{fan_{in} + fan_{out}}}, \\qquad
        g = \\beta = (8N)^{-1/4} \\ \\text{(v, out, MLP)}, \\quad g = 1 \\ \\text{(q, k; off the branches)}

    with ``N`` = residual adds / 2 (blocks), the constants of a decoder-only (or encoder-only)
    stack. An encoder-decoder (:func:`transformer_stacks`: ``N`` encoder, ``M`` decoder blocks) gets
    DeepNet's two-stack constants: :math:`\\beta_e = 0.87 (N^4 M)^{-1/16}` on the encoder's branches,
    :math:`\\beta_d = (12M)^{-1/4}` on the decoder's (:math:`\\alpha_e = 0.81 (N^4 M)^{1/16}`,
    :math:`\\alpha_d = (3M)^{1/4}`). DeepNorm's residual multiplier :math:`\\alpha = (2N)^{1/4}`
    (:math:`x_{l+1} = \\mathrm{LN}(\\alpha x_l + G(x_l))`) is an architecture choice: initlab does not
    change the forward, and the plan's note gives its value. Embedding tables get
    :math:`N(0, 1/d)` (``d`` the table's width): fairseq's embedding, on which DeepNet was trained
    (``embedding_std`` does not apply), so a head tied to the table starts with logits of unit scale
    rather than :math:`\\sqrt{d}`.

    Returns:
        :class:`~initlab.model.propagation.PropagationPlan` (label ``"deepnorm"``).

    Raises:
        InitlabError: no residual add in ``g`` (use ``"auto"``).

    Source: Wang, Ma, Dong, Huang, Zhang & Wei (2022), "DeepNet: Scaling Transformers to 1,000
    Layers".

    >>> import torch
    >>> from initlab.graph import trace
    >>> enc = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 2)
    >>> plan = plan_deepnorm(enc, trace(enc, torch.randn(1, 4, 8)))
    >>> abs(plan.scales[("layers.0.self_attn", "value")].std - 16 ** -0.25 * (2 / 16) ** 0.5) < 1e-15
    True
    >>> plan.scales[("layers.0.self_attn", "query")].std == (2 / 16) ** 0.5
    True
    """
    opts = opts or FamilyOptions("deepnorm")
    br = residual_branches(model, g, opts.scheme)
    st = transformer_stacks(model, g, br)
    n, m = st.n, st.m
    if m is None:
        beta, alpha = (8.0 * n) ** -0.25, (2.0 * n) ** 0.25
        gains = {False: (beta, f"(8N)^(-1/4), N={n:g}")}
        note = (f"deepnorm: beta = (8N)^(-1/4) = {beta:.4g}, N = {n:g}; the residual multiplier "
                f"alpha = (2N)^(1/4) = {alpha:.4g}")
    else:  # DeepNet's encoder-decoder constants
        gains = {True: ((12.0 * m) ** -0.25, f"(12M)^(-1/4), M={m}")}
        note = (f"deepnorm: decoder beta = (12M)^(-1/4) = {gains[True][0]:.4g}, alpha = (3M)^(1/4) = "
                f"{(3.0 * m) ** 0.25:.4g}, M = {m}")
        if n:
            nm = n**4 * m
            gains[False] = (0.87 * nm ** (-1 / 16), f"0.87 (N^4 M)^(-1/16), N={n:g}, M={m}")
            note = (f"deepnorm: encoder-decoder, N = {n:g}, M = {m}: encoder beta = 0.87 (N^4 M)^(-1/16) = "
                    f"{gains[False][0]:.4g}, alpha = 0.81 (N^4 M)^(1/16) = {0.81 * nm ** (1 / 16):.4g}; "
                    f"{note.removeprefix('deepnorm: ').removesuffix(f', M = {m}')}")
    qk, _ = attention_roles(model, g)
    plan = PropagationPlan(g.fresh(), residual=len(br.adds))
    for key, p in _layer_parts(model, g).items():
        if p.fans is None:  # fairseq's embedding, which DeepNet trained with: N(0, 1/d)
            plan.scales[key] = _scale(p, 1.0 / p.dim, f"deepnorm: embedding N(0, 1/d), d={p.dim} (fairseq's)",
                                      "deepnorm")
            continue
        if st.on_branch(key) and key not in qk:
            beta, factor = gains[m is not None and st.in_decoder(key)]
            second, role = _xavier_second(p.fans, beta), f"deepnorm: Xavier normal, gain {factor}"
        else:
            why = "query/key" if key in qk else "not on a residual branch"
            second, role = _xavier_second(p.fans), f"deepnorm: Xavier normal, gain 1 ({why})"
        plan.scales[key] = _scale(p, second, role, "deepnorm")
    _tie_heads(model, plan)
    plan.notes.append(f"{note} (LN(alpha x + f(x))): the multiplier is the model's, initlab does not change "
                      "the forward")
    if st.note:
        plan.notes.append(f"deepnorm: {st.note}")
    return plan


#: ``(model, graph, options) -> PropagationPlan`` of each residual-family scheme.
Planner = Callable[[nn.Module, Graph, FamilyOptions], PropagationPlan]
FAMILY_PLANNERS: dict[str, Planner] = {
    "fixup": plan_fixup, "skipinit": plan_skip_gates, "rezero": plan_skip_gates, "gpt2": plan_gpt2,
    "t_fixup": plan_t_fixup, "deepnorm": plan_deepnorm}
#: Schemes that work without a graph (the per-layer rule decides the weights).
_GRAPH_FREE = frozenset({"skipinit", "rezero"})


def family_plans(
    model: nn.Module, graph: Graph | None, why: str | None, wanted: Collection[str],
    kept: Collection[str] = frozenset(), embedding_std: float = 1.0,
) -> tuple[dict[str, PropagationPlan], str | None]:
    """The plans of the residual-family schemes in ``wanted`` (the scheme and the rules' schemes),
    on ``graph`` (the one detection traced; ``None`` when it could not, ``why`` says why), and a
    note of what they could not do (one line, ``None`` if nothing).

    Raises:
        InitlabError: a graph scheme (``"fixup"``, ``"gpt2"``, ``"t_fixup"``, ``"deepnorm"``) and no
            graph (the message gives the trace's reason and says to pass ``example_inputs``), or no
            residual add; ``"skipinit"`` / ``"rezero"`` without ``skip_gate`` parameters.

    >>> family_plans(None, None, None, {"auto"})
    ({}, None)
    """
    plans: dict[str, PropagationPlan] = {}
    notes: list[str] = []
    for name in (n for n in FAMILY_PLANNERS if n in wanted):
        opts = FamilyOptions(name, float(embedding_std) ** 2, frozenset(kept))
        if graph is None and name in _GRAPH_FREE:
            _require_gates(model, name)
            notes.append(f"{name}: not traced ({why}): the per-layer rule decides every weight; skip_gate 0")
            continue
        if graph is None:
            raise InitlabError(
                f"scheme {name!r} finds the residual branches in the model's graph, and "
                f"{type(model).__name__} could not be traced ({why}): pass example_inputs (inputs its "
                "forward takes)"
            )
        plans[name] = FAMILY_PLANNERS[name](model, graph, opts)
        notes += [n for n in plans[name].notes if n.startswith(f"{name}:")]
    return plans, "; ".join(notes) or None
