"""Model transforms that add the parameters residual-family schemes need: SkipInit / ReZero gates
(:func:`add_skip_gates`) and Fixup's scalar biases and multiplier (:func:`add_fixup_scalars`).

Each finds the residual branches in the model's traced data-flow graph (never by module name),
registers scalar parameters and hooks on the modules it picks, and returns a
:class:`TransformReport` that names every change and can undo it.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from initlab.errors import InitlabError
from initlab.graph.hook_ops import HookOp, declare_graph_ops
from initlab.graph.nodes import Graph, Kind, Node
from initlab.graph.queries import PASS, Residual, ancestors
from initlab.graph.trace import trace
from initlab.model.classify import block_adds

__all__ = [
    "SKIP_GATE",
    "FIXUP_BIAS_IN",
    "FIXUP_BIAS_OUT",
    "FIXUP_SCALE",
    "TRANSFORM_PARAMS",
    "BranchEdit",
    "TransformReport",
    "add_skip_gates",
    "add_fixup_scalars",
    "gated_modules",
]

#: The parameter names the transforms register; init schemes recognise them by these names.
SKIP_GATE, FIXUP_SCALE = "skip_gate", "fixup_scale"
FIXUP_BIAS_IN, FIXUP_BIAS_OUT = "fixup_bias_in", "fixup_bias_out"
#: Each transform parameter's name -> the transform that adds it.
TRANSFORM_PARAMS: dict[str, str] = {
    SKIP_GATE: "add_skip_gates",
    FIXUP_BIAS_IN: "add_fixup_scalars",
    FIXUP_BIAS_OUT: "add_fixup_scalars",
    FIXUP_SCALE: "add_fixup_scalars",
}
#: Kinds that commute with multiplication by a scalar: a gate may sit before them (not a pad: it
#: adds entries, which a constant other than 0 would leave ungated).
_COMMUTE: frozenset[Kind] = PASS | {Kind.SCALE}
#: Kinds walked back through from the model's output to its classifier.
_HEAD_PASS: frozenset[Kind] = PASS | {Kind.SCALE, Kind.ACTIVATION, Kind.NORM, Kind.SOFTMAX}
_NO_INPUT_BIAS = (nn.Embedding, nn.EmbeddingBag)  # integer inputs: a scalar cannot be added


# -- hooks: module-level functions that read the scalars from the module they are called on, so a
# -- deep copy or a pickle of the model carries working hooks bound to its own parameters.

def _map_tensors(value: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """``fn`` of every tensor in ``value`` (a tensor, or a tuple, list or dict of them: an RNN's
    ``(output, h_n)``): the branch reads one of them, and the transform made sure nothing else
    reads the module's output."""
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple
        return type(value)(*(_map_tensors(v, fn) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(_map_tensors(v, fn) for v in value)
    if isinstance(value, dict):  # a copy keeps the class (transformers' ModelOutput)
        out = copy.copy(value)
        for k, v in value.items():
            out[k] = _map_tensors(v, fn)
        return out
    return value


def _gate_hook(module: nn.Module, args: tuple, output: Any) -> Any:
    """Forward hook of :func:`add_skip_gates`: ``output * skip_gate``."""
    return _map_tensors(output, lambda t: t * module.skip_gate)


declare_graph_ops(_gate_hook, HookOp("scale", SKIP_GATE))


def _fixup_in_hook(module: nn.Module, args: tuple) -> tuple | None:
    """Forward pre-hook of :func:`add_fixup_scalars`: ``x + fixup_bias_in`` on the first input."""
    if not args or not isinstance(args[0], torch.Tensor):
        return None
    return (args[0] + module.fixup_bias_in, *args[1:])


def _fixup_out_hook(module: nn.Module, args: tuple, output: Any) -> Any:
    """Forward hook of :func:`add_fixup_scalars`: ``output * fixup_scale + fixup_bias_out`` (each
    only where the module holds it)."""
    scale, bias = module._parameters.get(FIXUP_SCALE), module._parameters.get(FIXUP_BIAS_OUT)

    def apply(t: torch.Tensor) -> torch.Tensor:
        t = t * scale if scale is not None else t
        return t + bias if bias is not None else t

    return _map_tensors(output, apply)


declare_graph_ops(_fixup_in_hook, HookOp("shift", FIXUP_BIAS_IN))
declare_graph_ops(_fixup_out_hook, HookOp("scale", FIXUP_SCALE), HookOp("shift", FIXUP_BIAS_OUT))


# -- the report

@dataclass(frozen=True)
class BranchEdit:
    """What a transform did to one residual branch.

    Attributes:
        add: the residual ``ADD`` node's id in the traced graph.
        modules: qualified names of the modules on the branch, in execution order.
        end: the module whose output the gate (or Fixup's scale) multiplies.
        params: full names of the parameters added for this branch.
    """

    add: int
    modules: tuple[str, ...]
    end: str
    params: tuple[str, ...]


@dataclass
class TransformReport:
    """The record of one transform: what it added, where, and how to take it back.

    Attributes:
        transform: ``"add_skip_gates"`` or ``"add_fixup_scalars"``.
        model: the model's class name.
        added: full names of the new parameters, in ``named_parameters`` order.
        modules: qualified names of the hooked modules, in module order.
        original_keys: the model's ``state_dict`` keys before the transform (hooks and new
            parameters keep every one of them).
        branches: one :class:`BranchEdit` per residual branch, in graph order.
        notes: anything left out, and why (a functional layer, the classifier).
        handles: the hook handles (:meth:`undo` removes them).
    """

    transform: str
    model: str
    added: list[str]
    modules: list[str]
    original_keys: list[str]
    branches: list[BranchEdit]
    notes: list[str] = field(default_factory=list)
    handles: list[RemovableHandle] = field(default_factory=list, repr=False)
    _target: nn.Module | None = field(default=None, repr=False, compare=False)

    def undo(self) -> None:
        """Remove the hooks and the added parameters: ``state_dict().keys()`` is ``original_keys``
        again and the original ``state_dict`` loads with ``strict=True``. A second call does nothing.

        Only the model the transform ran on is undone; a deep copy keeps its hooks and scalars.
        """
        if self._target is None:
            return
        for handle in self.handles:
            handle.remove()
        for name in self.added:
            owner, _, attr = name.rpartition(".")
            self._target.get_submodule(owner)._parameters.pop(attr, None)
        self.handles, self._target = [], None

    def summary(self, *, undo_hint: bool = True) -> str:
        """What was added, one line per branch; ``undo_hint``: end with how to undo it from Python
        (the command line, which holds no report, leaves it out)."""
        verb = "gated" if self.transform == "add_skip_gates" else "given Fixup scalars"
        lines = [f"{self.transform}: {len(self.branches)} residual branches {verb} in {self.model}"]
        lines += [f"  add #{b.add}  {_branch_label(b.modules)}: {_edit_label(b)}" for b in self.branches]
        lines += [f"  note: {note}" for note in self.notes]
        undo = "; undo with report.undo()" if undo_hint else ""
        lines.append(f"  {len(self.added)} parameters added on {len(self.modules)} modules; "
                     f"the traced graph shows their hooks{undo}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _edit_label(b: BranchEdit) -> str:
    """``"gate on blocks.0.bn2.skip_gate"`` / ``"scale on blocks.0.conv2.fixup_scale, 4 biases"``."""
    gates = [p for p in b.params if p.endswith(SKIP_GATE) or p.endswith(FIXUP_SCALE)]
    rest = len(b.params) - len(gates)
    what = "gate" if any(p.endswith(SKIP_GATE) for p in gates) else "scale"
    return f"{what} on {', '.join(gates)}" + (f", {rest} biases" if rest else "")


def _branch_label(modules: tuple[str, ...]) -> str:
    """``"blocks.0 (conv1 -> bn1 -> conv2)"``: the modules' common prefix, then their own names."""
    if not modules:
        return "(no modules)"
    parts = [m.split(".") for m in modules]
    common = 0
    while all(len(p) > common + 1 and p[common] == parts[0][common] for p in parts):
        common += 1
    prefix = ".".join(parts[0][:common])
    chain = " -> ".join(".".join(p[common:]) for p in parts)
    return f"{prefix} ({chain})" if prefix else f"({chain})"


# -- graph questions

def _users(g: Graph) -> list[list[int]]:
    """For each node, the ids of the nodes that read its output (one pass over the graph)."""
    out: list[list[int]] = [[] for _ in g.nodes]
    for n in g:
        for j in set(n.inputs):
            out[j].append(n.id)
    return out


def _label(node: Node) -> str:
    return f"{node.op} {node.module!r}" if node.module is not None else f"{node.op}()"


def _branch_modules(g: Graph, anc: list[int], r: Residual) -> tuple[str, ...]:
    """Modules called on ``r``'s branch (after the fork, up to the branch input), in order, once each."""
    on = [n for n in g if n.id != r.fork and anc[n.id] >> r.fork & 1
          and (n.id == r.branch or anc[r.branch] >> n.id & 1)]
    return tuple(dict.fromkeys(n.module for n in on if n.module is not None))


def _branch_end(g: Graph, r: Residual, users: list[list[int]], calls: Counter,
                layer: bool) -> tuple[int | None, str]:
    """The module nearest ``r``'s add on its branch whose output reaches the add only through ops
    that commute with a scalar multiple (:data:`_COMMUTE`) and that nothing else reads: ``(node id,
    "")``, or ``(None, why not)``. ``layer``: only a weighted layer will do (Fixup's scale)."""
    i, after = r.branch, r.add
    while True:
        node = g[i]
        if set(users[i]) != {after}:
            others = ", ".join(_label(g[u]) for u in users[i] if u != after)
            return None, f"the output of {_label(node)} is also read by {others}"
        once = node.module is not None and calls[node.module] == 1
        if once and (not layer or node.kind is Kind.LAYER):
            return i, ""
        if node.kind not in _COMMUTE or "pad" in node.op.lower() or not node.inputs:  # pads add entries
            shared = f", called {calls[node.module]} times" if node.module is not None and not once else ""
            return None, (f"it ends in {_label(node)} ({node.kind.value}{shared}), which "
                          + ("is not a weighted layer" if layer else "is not a module called once")
                          + " and does not commute with a scalar multiple")
        i, after = node.inputs[0], i


def _head_layers(g: Graph) -> list[Node]:
    """The weighted layers whose output reaches the model's output without another layer, a sum or
    a product on the way (the classifier), in graph order."""
    found: dict[int, Node] = {}
    stack = [j for n in g.of_kind(Kind.OUTPUT) for j in n.inputs]
    seen: set[int] = set()
    while stack:
        i = stack.pop()
        if i in seen:
            continue
        seen.add(i)
        if g[i].kind is Kind.LAYER and g[i].module is not None:
            found[i] = g[i]
        elif g[i].kind in _HEAD_PASS:
            stack.extend(g[i].inputs[:1])
    return [found[i] for i in sorted(found)]


# -- shared steps

def _graph(model: nn.Module, example_inputs: Any, transform: str, names: tuple[str, ...],
           why: str) -> tuple[Graph, list[Residual]]:
    """Refuse a model already transformed, trace it, and return its graph and residual adds (or
    refuse a model without any)."""
    if not isinstance(model, nn.Module):
        raise InitlabError(f"{transform}: model must be an nn.Module, got {type(model).__name__}")
    held = [f"{q}.{p}" if q else p for q, held in gated_modules(model, raw=True).items() for p in held]
    if held:  # gates and Fixup's scalars do not stack: a zeroed branch end behind a zero gate never trains
        raise InitlabError(f"{transform}: {type(model).__name__} is already transformed (it holds "
                           f"{', '.join(held[:3])}{' ...' if len(held) > 3 else ''}); undo the first "
                           "transform (report.undo()) or use the model as it is")
    g = trace(model, example_inputs)
    residuals = block_adds(model, g)  # a sum of embeddings (BART's positions) gets no gate
    if not residuals:
        raise InitlabError(f"{transform}: model {type(model).__name__} has no residual add (x + f(x)) in "
                           f"its graph; {why}")
    return g, residuals


def _place(module: nn.Module, model: nn.Module) -> dict[str, Any]:
    """``device`` and ``dtype`` of ``module``'s first floating parameter or buffer, else the model's,
    else float32 on the CPU."""
    for owner in (module, model):
        for t in (*owner.parameters(), *owner.buffers()):
            if t.is_floating_point():
                return {"device": t.device, "dtype": t.dtype}
    return {"device": torch.device("cpu"), "dtype": torch.float32}


def _add_scalar(model: nn.Module, qualname: str, name: str, value: float) -> str:
    """Register a 0-dim parameter ``name`` = ``value`` on module ``qualname``; its full name."""
    module = model.get_submodule(qualname)
    module.register_parameter(name, nn.Parameter(torch.full((), value, **_place(module, model))))
    return f"{qualname}.{name}" if qualname else name


def _finish(model: nn.Module, transform: str, before: set[str], keys: list[str],
            branches: list[BranchEdit], notes: list[str], handles: list[RemovableHandle],
            verbose: bool) -> TransformReport:
    added = [n for n, _ in model.named_parameters() if n not in before]
    hooked = [q for q, _ in model.named_modules() if q in {a.rpartition(".")[0] for a in added}]
    report = TransformReport(transform, type(model).__name__, added, hooked, keys, branches, notes,
                             handles, model)
    if verbose:
        print(report)
    return report


def _refuse_branch(transform: str, g: Graph, r: Residual, modules: tuple[str, ...], why: str,
                   fix: str) -> NoReturn:
    raise InitlabError(f"{transform}: cannot place a scalar on the residual branch of add node #{r.add} "
                       f"({_branch_label(modules)}, branch input {_label(g[r.branch])}): {why}; {fix}")


# -- the transforms

def add_skip_gates(model: nn.Module, *, example_inputs: Any = None, verbose: bool = True) -> TransformReport:
    """Gate every residual branch with a learnable scalar that starts at 0 (SkipInit / ReZero).

    .. math::
        y = x + \\alpha \\, F(x), \\qquad \\alpha = 0 \\text{ at init}

    For each residual add of the traced graph (:func:`initlab.model.classify.block_adds`: a sum of
    embeddings is no block) the gate sits
    on the module nearest the add on the branch whose output reaches the add only through ops that
    commute with a scalar multiple (reshape, dropout, pooling, scaling by a constant) and that
    nothing else reads; a module called more than once is passed over (a gate would scale every
    call). It gets a 0-dim parameter ``skip_gate`` (0.0, the module's device and dtype) and a
    forward hook returning ``output * skip_gate``; at init every branch contributes exactly 0 and
    the model computes its shortcut path. Nothing is changed unless every branch can be gated.

    Hooks on graph leaves do not run under torch.fx, so :func:`initlab.graph.trace` of the gated
    model does not show the gates: :func:`gated_modules` lists them.

    Args:
        model: any ``nn.Module`` with residual adds (``x + f(x)``), on any device and dtype.
        example_inputs: inputs for tracing (see :func:`initlab.graph.trace`); built when ``None``.
        verbose: print the report.

    Returns:
        A :class:`TransformReport`; ``report.added`` holds one ``<module>.skip_gate`` per branch.

    Raises:
        InitlabError: ``model`` has no residual add; it already holds skip gates; a branch has no
            module a gate can sit on (it ends in a function such as ``F.relu``, a norm or
            nonlinearity read through, or a shared module): the message names the add node, the
            branch and the fix; tracing failed (see :func:`initlab.graph.trace`).

    Source: De & Smith, "Batch Normalization Biases Residual Blocks Towards the Identity Function in
    Deep Networks" (SkipInit), NeurIPS 2020; Bachlechner et al., "ReZero is All You Need", UAI 2021.

    Example:
        >>> from initlab.zoo import build
        >>> report = add_skip_gates(build("resnet20"), verbose=False)
        >>> len(report.added), report.added[0]
        (9, 'blocks.0.bn2.skip_gate')
    """
    fix = ("make the branch end in a module called once (e.g. self.act = nn.ReLU() instead of F.relu, "
           "or an nn.Identity() after the last op) so the gate can sit on it")
    g, residuals = _graph(model, example_inputs, "add_skip_gates", (SKIP_GATE,),
                          "skip gates need residual branches (SkipInit / ReZero gate them): "
                          "use scheme 'auto' or a variance-scaling scheme")
    users, calls, anc = _users(g), Counter(n.module for n in g if n.module is not None), ancestors(g)
    plan: list[tuple[Residual, tuple[str, ...], str]] = []
    for r in residuals:
        modules = _branch_modules(g, anc, r)
        end, why = _branch_end(g, r, users, calls, layer=False)
        if end is None:
            _refuse_branch("add_skip_gates", g, r, modules, why, fix)
        plan.append((r, modules, g[end].module))
    before, keys = dict(model.named_parameters()).keys(), list(model.state_dict().keys())
    branches, handles = [], []
    for r, modules, end in plan:
        name = _add_scalar(model, end, SKIP_GATE, 0.0)
        handles.append(model.get_submodule(end).register_forward_hook(_gate_hook))
        branches.append(BranchEdit(r.add, modules, end, (name,)))
    return _finish(model, "add_skip_gates", set(before), keys, branches, [], handles, verbose)


def _fixup_plan(g: Graph, residuals: list[Residual]) -> tuple[list, list[str], list[str]]:
    """Per branch ``(residual, branch modules, end, layers)``; the classifier modules; notes."""
    fix = ("Fixup is for networks without normalization, with each branch ending in a weighted layer "
           "(its zero-initialised conv / linear): use add_skip_gates (SkipInit) for this model")
    users, calls, anc = _users(g), Counter(n.module for n in g if n.module is not None), ancestors(g)
    plan, notes, on_branch = [], [], set()
    for r in residuals:
        modules = _branch_modules(g, anc, r)
        end, why = _branch_end(g, r, users, calls, layer=True)
        if end is None:
            _refuse_branch("add_fixup_scalars", g, r, modules, why, fix)
        layers = list(dict.fromkeys(g[i].module for i in r.layers if g[i].module is not None))
        notes += [f"add #{r.add}: functional layer {_label(g[i])} has no module to hold scalars"
                  for i in r.layers if g[i].module is None]
        plan.append((r, modules, g[end].module, layers))
        on_branch.update(layers)
    heads = [n.module for n in _head_layers(g) if n.module not in on_branch]
    if not heads:
        notes.append("no classifier (a weighted layer feeding the output): no input bias added for it")
    return plan, list(dict.fromkeys(heads)), notes


def _input_bias(model: nn.Module, qualname: str, notes: list[str],
                handles: list[RemovableHandle]) -> str | None:
    """``fixup_bias_in`` and its pre-hook on ``qualname``; ``None`` (and a note) for an embedding."""
    module = model.get_submodule(qualname)
    if isinstance(module, _NO_INPUT_BIAS):
        notes.append(f"{type(module).__name__} {qualname!r} reads integer indices: no fixup_bias_in")
        return None
    handles.append(module.register_forward_pre_hook(_fixup_in_hook))
    return _add_scalar(model, qualname, FIXUP_BIAS_IN, 0.0)


def _layer_scalars(model: nn.Module, qualname: str, end: bool, notes: list[str],
                   handles: list[RemovableHandle]) -> list[str]:
    """Fixup's scalars on one branch layer: input bias, output bias, and the scale on the branch end."""
    added = [_input_bias(model, qualname, notes, handles), _add_scalar(model, qualname, FIXUP_BIAS_OUT, 0.0)]
    if end:
        added.append(_add_scalar(model, qualname, FIXUP_SCALE, 1.0))
    handles.append(model.get_submodule(qualname).register_forward_hook(_fixup_out_hook))
    return [a for a in added if a is not None]


def add_fixup_scalars(model: nn.Module, *, example_inputs: Any = None,
                      verbose: bool = True) -> TransformReport:
    """Add Fixup's scalar biases and multiplier to every residual branch and the classifier.

    .. math::
        y = x + s \\, W_m(\\cdots \\phi(W_1(x + a_1) + b_1) \\cdots + a_m) + b_m

    Every weighted layer on a residual branch (the graph's ``LAYER`` nodes with a module,
    :attr:`initlab.graph.Residual.layers`) gets ``fixup_bias_in`` (:math:`a_i`, added to its first
    input by a forward pre-hook) and ``fixup_bias_out`` (:math:`b_i`, added to its output by a
    forward hook); the branch's last weighted layer (the nearest the add, reaching it only through
    ops that commute with a scalar multiple) also gets ``fixup_scale`` (:math:`s`), which
    multiplies its output before ``fixup_bias_out`` is added. The classifier (each weighted layer
    whose output reaches the model's output without another layer, sum or product) gets
    ``fixup_bias_in``. All are 0-dim parameters on the module's device and dtype: biases 0.0,
    scales 1.0. The transform adds scalars only: Fixup's zero init of each branch's last layer and
    its :math:`L^{-1/(2m-2)}` rescaling of the others are the init scheme's. Nothing is changed
    unless every branch can be handled.

    Hooks on graph leaves do not run under torch.fx, so :func:`initlab.graph.trace` of the model
    does not show the scalars: :func:`gated_modules` lists them.

    Args:
        model: any ``nn.Module`` with residual adds and no normalization on its branches.
        example_inputs: inputs for tracing (see :func:`initlab.graph.trace`); built when ``None``.
        verbose: print the report.

    Returns:
        A :class:`TransformReport`.

    Raises:
        InitlabError: ``model`` has no residual add; it already holds Fixup scalars; a branch does
            not end in a weighted layer a scale can sit on (a norm, a nonlinearity or a function
            between its last layer and the add, or a shared layer): the message names the add node
            and the branch; tracing failed (see :func:`initlab.graph.trace`).

    Source: Zhang, Dauphin & Ma, "Fixup Initialization: Residual Learning Without Normalization", ICLR 2019.

    Example:
        >>> from initlab.zoo import build
        >>> report = add_fixup_scalars(build("resnet20_nonorm"), verbose=False)
        >>> [n for n in report.added if n.startswith("blocks.0.conv2.")]
        ['blocks.0.conv2.fixup_bias_in', 'blocks.0.conv2.fixup_bias_out', 'blocks.0.conv2.fixup_scale']
    """
    names = (FIXUP_BIAS_IN, FIXUP_BIAS_OUT, FIXUP_SCALE)
    g, residuals = _graph(model, example_inputs, "add_fixup_scalars", names,
                          "fixup needs residual branches: use scheme 'auto' or a variance-scaling scheme")
    plan, heads, notes = _fixup_plan(g, residuals)
    before, keys = dict(model.named_parameters()).keys(), list(model.state_dict().keys())
    branches, handles, done = [], [], set()
    for r, modules, end, layers in plan:
        added = []
        for q in (q for q in layers if q not in done):  # nested branches share layers: scalars once
            added += _layer_scalars(model, q, q == end, notes, handles)
            done.add(q)
        branches.append(BranchEdit(r.add, modules, end, tuple(added)))
    added = [h for h in heads if _input_bias(model, h, notes, handles)]
    notes += [f"classifier {h!r}: {FIXUP_BIAS_IN}" for h in added]
    return _finish(model, "add_fixup_scalars", set(before), keys, branches, notes, handles, verbose)


def gated_modules(model: nn.Module, *, raw: bool = False) -> dict[str, Any]:
    """The modules that hold transform parameters (:data:`TRANSFORM_PARAMS`), by qualified name.

    Traced graphs do not show the transforms' hooks (torch.fx does not run hooks on leaves); init
    schemes read this instead.

    Args:
        model: any ``nn.Module``.
        raw: return the parameter names as a tuple instead of one string.

    Returns:
        ``{qualname: "skip_gate"}`` / ``{qualname: "fixup_bias_in, fixup_bias_out, fixup_scale"}``
        (the names it holds, comma separated), in module order.

    Example:
        >>> m = nn.Linear(2, 2)
        >>> m.register_parameter("skip_gate", nn.Parameter(torch.zeros(())))
        >>> gated_modules(m)
        {'': 'skip_gate'}
    """
    out: dict[str, Any] = {}
    for q, m in model.named_modules():
        held = tuple(p for p in TRANSFORM_PARAMS if p in m._parameters)
        if held:
            out[q] = held if raw else ", ".join(held)
    return out
