"""The recorded forward: one real call of a model on example inputs, turned into a :class:`Graph`.

Also the helpers every caller of a model shares: :func:`call_model`, :func:`flatten_tensors`,
:func:`leaf_modules` and :func:`preserved` (leave the model as it was).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from initlab.errors import InitlabError
from initlab.graph import vocab
from initlab.graph.nodes import Graph, Kind, Node

__all__ = [
    "record",
    "call_model",
    "flatten_tensors",
    "leaf_modules",
    "preserved",
    "input_names",
    "value_moments",
    "lazy_modules",
    "refuse_lazy",
]


def value_moments(tensors: list[torch.Tensor]) -> tuple[float, float, float] | None:
    """Mean, second moment and cross moment (two different positions along dim -2, one unit along
    dim -1, one leading index) pooled over ``tensors``, weighted by entries; ``None`` unless all are
    finite floating-point tensors of 2 or more dims and at least 2 positions.

    >>> value_moments([torch.tensor([[1.0, 3.0], [1.0, 3.0]])])  # each unit constant: cross = second
    (2.0, 5.0, 5.0)
    """
    if not tensors or any(not t.is_floating_point() or t.ndim < 2 or t.shape[-2] < 2 for t in tensors):
        return None
    sums, total = [0.0, 0.0, 0.0], 0
    for t in tensors:
        y = t.detach().double().reshape(-1, t.shape[-2], t.shape[-1])
        if not bool(torch.isfinite(y).all()):
            return None
        p, s = y.shape[1], y.sum(1)
        cross = ((s.square() - y.square().sum(1)) / (p * (p - 1))).mean()
        for k, v in enumerate((y.mean(), y.square().mean(), cross)):
            sums[k] += float(v) * y.numel()
        total += y.numel()
    mean, second, cross = (v / total for v in sums)
    return mean, second, min(max(cross, mean * mean), second)


def lazy_modules(model: nn.Module) -> list[str]:
    """Qualified names of the modules that hold an uninitialized (lazy) parameter or buffer
    (``nn.LazyLinear`` before its first forward), in module order; ``""`` for ``model`` itself.

    A forward materialises them (``LazyLinear`` becomes ``Linear``: a class change nothing undoes),
    so graph tracing refuses such a model (:func:`refuse_lazy`) and the model level skips it.

    >>> lazy_modules(nn.Sequential(nn.LazyLinear(8), nn.ReLU(), nn.Linear(8, 2)))
    ['0']
    """
    return [name for name, m in model.named_modules()
            if any(nn.parameter.is_lazy(t) for t in (*m._parameters.values(), *m._buffers.values()))]


def refuse_lazy(model: nn.Module, what: str) -> None:
    """Raise :class:`~initlab.errors.InitlabError` before ``what`` runs anything when ``model`` has lazy
    modules (:func:`lazy_modules`); the message names the first and says how to fix it."""
    lazy = lazy_modules(model)
    if lazy:
        m = model.get_submodule(lazy[0])
        more = f" (and {len(lazy) - 1} more)" if len(lazy) > 1 else ""
        raise InitlabError(
            f"{what}: {type(m).__name__} {lazy[0]!r}{more} has uninitialized (lazy) parameters, and a "
            "forward would materialise it for good: run one forward on real data first, then initialize")


def call_model(model: nn.Module, inputs: Any) -> Any:
    """``model(**inputs)`` for a dict, ``model(*inputs)`` for a tuple or list, else ``model(inputs)``."""
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def flatten_tensors(obj: Any) -> list[torch.Tensor]:
    """Every tensor in ``obj``, depth first: tensors, lists, tuples, dicts (HF ``ModelOutput``
    included) and dataclasses; anything else (caches, ``None``, numbers) holds none.

    >>> [t.shape for t in flatten_tensors({"a": (torch.zeros(2), None), "b": [torch.ones(1, 3)]})]
    [torch.Size([2]), torch.Size([1, 3])]
    """
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in flatten_tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in flatten_tensors(o)]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return [t for f in dataclasses.fields(obj) for t in flatten_tensors(getattr(obj, f.name, None))]
    return []


def leaf_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """``(qualified name, module)`` of every graph leaf below ``model`` (:func:`vocab.is_leaf`),
    each module once, not descending into leaves."""
    seen: set[int] = {id(model)}

    def walk(prefix: str, parent: nn.Module) -> Iterator[tuple[str, nn.Module]]:
        for name, child in parent.named_children():
            if id(child) in seen:
                continue
            seen.add(id(child))
            qualname = f"{prefix}.{name}" if prefix else name
            if vocab.is_leaf(child):
                yield qualname, child
            else:
                yield from walk(qualname, child)

    return walk("", model)


def _writes_parameters(m: nn.Module) -> bool:
    """A module known to write its own parameters in forward: ``Embedding`` / ``EmbeddingBag`` with
    ``max_norm`` renormalise the rows they look up, in place."""
    return getattr(m, "max_norm", None) is not None


@contextlib.contextmanager
def preserved(model: nn.Module) -> Iterator[None]:
    """Run the body and leave ``model`` as it was: every module's attributes (``training``, a
    forward that stores ``self.last = h``) and its parameter / buffer / submodule tables, the
    values of its buffers (BatchNorm running statistics, a step counter), the values of the
    parameters of modules known to write them in forward (:func:`_writes_parameters`: an
    ``Embedding`` with ``max_norm``), and the global RNG (CPU and the model's CUDA devices: a
    dropout in train mode draws from it).

    Parameters are not copied wholesale (GPT-2's 124M would double in memory): a parameter written
    in place that no snapshot holds (its ``_version`` moved) is named in a ``UserWarning``.
    Attributes mutated in place (a list appended to) are not undone.

    >>> emb = nn.Embedding(10, 4, max_norm=0.1)
    >>> before = emb.weight.detach().clone()
    >>> with preserved(emb), torch.no_grad():
    ...     _ = emb(torch.arange(10))
    >>> torch.equal(emb.weight, before)
    True
    """
    modules = list(model.modules())
    saved = [(m, dict(m.__dict__), dict(m._parameters), dict(m._buffers), dict(m._modules)) for m in modules]
    values = [(b, b.detach().clone()) for b in model.buffers()]
    written = {id(p): p.detach().clone() for m in modules if _writes_parameters(m)
               for p in m.parameters(recurse=False)}
    named = list(model.named_parameters())
    versions = [p._version for _, p in named]
    tensors = [*model.parameters(), *model.buffers()]
    cuda = sorted({t.device.index or 0 for t in tensors if t.device.type == "cuda"})
    try:
        with torch.random.fork_rng(devices=cuda):
            yield
    finally:
        for m, attrs, params, buffers, children in saved:
            m.__dict__.clear()
            m.__dict__.update(attrs)
            for table, old in ((m._parameters, params), (m._buffers, buffers), (m._modules, children)):
                table.clear()
                table.update(old)
        with torch.no_grad():
            for b, value in values:
                b.copy_(value)
            changed = [(n, p) for (n, p), v in zip(named, versions, strict=True) if p._version != v]
            for _, p in changed:
                if id(p) in written:
                    p.copy_(written[id(p)])
        lost = [n for n, p in changed if id(p) not in written]
        if lost:
            names = ", ".join(map(repr, lost[:5]))
            warnings.warn(f"{type(model).__name__}'s forward wrote parameter(s) {names} in place while "
                          "initlab ran it; they keep the written values", UserWarning, stacklevel=3)


def input_names(model: nn.Module, inputs: Any) -> list[tuple[str, Any]]:
    """``(argument name, value)`` of each example input: a dict's keys, else the names of
    ``forward``'s positional parameters (``arg0``, ... where the signature does not say)."""
    if isinstance(inputs, dict):
        return list(inputs.items())
    values = list(inputs) if isinstance(inputs, (tuple, list)) else [inputs]
    try:
        params = [p.name for p in inspect.signature(model.forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    return [(params[i] if i < len(params) else f"arg{i}", v) for i, v in enumerate(values)]


class _Recorder(TorchFunctionMode):
    """Builds the graph while the model runs: leaf-module calls (hooks) and top-level tensor
    functions (this mode; calls inside a leaf are its own business), linked by tensor identity."""

    def __init__(self, model: nn.Module, classify: Callable[[nn.Module, tuple | None], vocab.Entry]) -> None:
        super().__init__()
        self.graph = Graph(method="recorded")
        self.producer: dict[int, int] = {}  # id(tensor) -> node id
        self.static: set[int] = set()  # nodes whose value no input or parameter reaches
        self.keep: list[Any] = []  # every linked tensor stays alive, so ids stay unique
        self.depth = 0
        self.classify = classify
        self.names = {id(t): n for n, t in (*model.named_parameters(), *model.named_buffers())}

    def add(self, entry: vocab.Entry, inputs: list[int], out: torch.Tensor | None, **kw: Any) -> Node:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else None
        return self.graph.add(entry.kind, entry.op, inputs, activation=entry.activation, fn=entry.fn,
                              params=dict(entry.params), shape=shape, **kw)

    def source(self, t: torch.Tensor) -> int:
        """The node that produced ``t``; a parameter or buffer seen for the first time becomes a
        ``PARAM`` node, any other unseen tensor (a plain attribute) a ``CONSTANT``."""
        if id(t) not in self.producer:
            name = self.names.get(id(t))
            if name is not None:
                op = "parameter" if isinstance(t, nn.Parameter) else "buffer"
                node = self.add(vocab.Entry(Kind.PARAM, op, params={"name": name}), [], t)
            else:
                node = self.add(vocab.Entry(Kind.CONSTANT, "tensor"), [], t)
                self.static.add(node.id)
            self.producer[id(t)] = node.id
            self.keep.append(t)
        return self.producer[id(t)]

    def is_tensor(self, a: Any) -> bool:
        """A tensor of the graph; a one-element tensor no input reaches is a number (``x / c``)."""
        if not isinstance(a, torch.Tensor):
            return False
        if a.numel() != 1 or id(a) in self.names:
            return True
        return id(a) in self.producer and self.producer[id(a)] not in self.static

    def link(self, entry: vocab.Entry, inputs: list[torch.Tensor], outputs: Any, **kw: Any) -> Node | None:
        outs = flatten_tensors(outputs)
        if not outs:
            return None
        ids = [self.source(t) for t in inputs] if entry.kind is not Kind.CONSTANT else []
        node = self.add(entry, ids, outs[0], **kw)
        if entry.params.get("position_table"):
            node.params["value_moments"] = value_moments(outs)
        if all(i in self.static for i in ids):
            self.static.add(node.id)
        for t in outs:
            self.producer[id(t)] = node.id
        self.keep.append((inputs, outputs))
        return node

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.depth == 0:
            self.on_function(func, args, kwargs, out)
        return out

    def on_function(self, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
        name = vocab.fn_name(func)
        if name in vocab.NON_TENSOR_FUNCTIONS:
            return
        entry = vocab.classify_function(func, args, kwargs, self.is_tensor)
        tensors = [t for t in flatten_tensors((args, kwargs)) if self.is_tensor(t)]
        if name in vocab.FIRST_INPUT_ONLY:
            tensors = tensors[:1]
        if name == "setitem":  # x[i] = v returns None and changes x
            out = args[0]
        if not tensors and entry.kind is not Kind.CONSTANT:
            entry = vocab.Entry(Kind.CONSTANT, entry.op)
        self.link(entry, tensors, out)

    def hooks(self, model: nn.Module) -> list[Any]:
        """Forward pre / post hooks on every leaf of ``model``; returns their handles."""
        handles = []

        def pre(_m, _args, _kwargs):
            self.depth += 1

        def make_post(qualname: str):
            def post(m, args, kwargs, output):
                self.depth -= 1
                if self.depth == 0:
                    tensors = flatten_tensors((args, kwargs))
                    first = tuple(tensors[0].shape) if tensors else None
                    self.depth += 1  # measuring an unknown module runs it: not part of the graph
                    try:
                        entry = self.classify(m, first)
                    finally:
                        self.depth -= 1
                    self.link(entry, tensors, output, module=qualname)
            return post

        for qualname, m in leaf_modules(model):
            handles.append(m.register_forward_pre_hook(pre, with_kwargs=True))
            handles.append(m.register_forward_hook(make_post(qualname), with_kwargs=True, always_call=True))
        return handles


def record(model: nn.Module, inputs: Any,
           classify: Callable[[nn.Module, tuple | None], vocab.Entry] | None = None) -> Graph:
    """Run ``model`` once on ``inputs`` and record its data-flow graph.

    Leaf modules (:func:`leaf_modules`) become one node each (forward hooks); tensor functions and
    methods called outside any leaf (``torch.cat``, ``x.view``, ``F.relu``, ``+``) one node each (a
    :class:`torch.overrides.TorchFunctionMode`); a node's inputs are the nodes whose output tensors
    (by identity) it reads. Parameters and buffers read outside a leaf (ViT's ``cls_token``) become
    ``PARAM`` nodes named in ``params["name"]``; tensors made from no input (``torch.arange``)
    ``CONSTANT`` ones, and a one-element constant multiplying or dividing a tensor is a ``SCALE``
    factor. Every node has its output's shape.

    The forward runs under :func:`torch.no_grad`, inside :func:`preserved` (the model's state,
    buffers and the global RNG are as before). Every linked tensor is kept until the graph is
    built (ids must stay unique), so memory is one forward's activations.

    Args:
        model: any ``nn.Module``.
        inputs: a tensor, a tuple of positional inputs or a dict of keyword inputs.
        classify: ``(module, first input's shape) -> Entry`` for leaf modules (default
            :func:`vocab.classify_module`).

    Returns:
        A :class:`Graph` with ``method="recorded"``.

    Raises:
        InitlabError: ``model`` has a lazy module not materialised yet (:func:`lazy_modules`;
            nothing runs).
        Whatever ``model``'s forward raises on ``inputs``.

    >>> g = record(nn.Sequential(nn.Linear(3, 4), nn.ReLU()), torch.zeros(2, 3))
    >>> [(n.kind.value, n.op, n.inputs, n.shape) for n in g]  # doctest: +NORMALIZE_WHITESPACE
    [('input', 'input', [], (2, 3)), ('layer', 'Linear', [0], (2, 4)),
     ('activation', 'ReLU', [1], (2, 4)), ('output', 'output', [2], (2, 4))]
    """
    refuse_lazy(model, f"cannot record {type(model).__name__}")
    rec = _Recorder(model, classify or (lambda m, shape: vocab.classify_module(m)))
    for name, value in input_names(model, inputs):
        tensors = flatten_tensors(value)
        for j, t in enumerate(tensors):
            if id(t) not in rec.producer:
                label = name if len(tensors) == 1 else f"{name}[{j}]"
                node = rec.add(vocab.Entry(Kind.INPUT, "input", params={"name": label}), [], t)
                rec.producer[id(t)] = node.id
                rec.keep.append(t)
    with preserved(model):
        handles = rec.hooks(model)
        try:
            with torch.no_grad(), rec:
                out = call_model(model, inputs)
        finally:
            for h in handles:
                h.remove()
    outs = flatten_tensors(out)
    rec.graph.add(Kind.OUTPUT, "output", [rec.source(t) for t in outs],
                  shape=tuple(outs[0].shape) if outs else None)
    return rec.graph
