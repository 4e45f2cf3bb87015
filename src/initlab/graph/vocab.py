"""The one table of known modules and functions: what each call does, as a :class:`Entry`.

Modules are looked up through the MRO in a registry (:func:`register_module`), functions and
methods by canonical name (:func:`register_function`); a childless module the table does not know
is measured on a seeded probe (:func:`measure_module`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from initlab.errors import InitlabError
from initlab.graph.nodes import Kind

__all__ = [
    "Entry",
    "register_module",
    "register_function",
    "lookup_module",
    "classify_module",
    "classify_function",
    "measure_module",
    "fn_name",
    "is_leaf",
    "NON_TENSOR_FUNCTIONS",
    "ACTIVATION_FUNCTIONS",
    "TENSOR_ATTRIBUTES",
    "FIRST_INPUT_ONLY",
    "POSITION_TABLE_SUFFIXES",
]


@dataclass(frozen=True)
class Entry:
    """What the vocabulary says about one call: the fields a :class:`~initlab.graph.nodes.Node`
    takes from it (``kind``, ``op``, ``activation``, ``fn``, ``params``)."""

    kind: Kind
    op: str
    activation: tuple[str, float | None] | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    fn: Callable[[Any], Any] | None = None


ModuleClassifier = Callable[[nn.Module], Entry]
#: ``(canonical name, args, kwargs, is_tensor) -> Entry``; ``is_tensor(a)`` says whether an argument
#: is a tensor that flows through the graph (a Proxy of one under fx).
FunctionClassifier = Callable[[str, Sequence[Any], Mapping[str, Any], Callable[[Any], bool]], Entry]

_MODULES: dict[type | str, ModuleClassifier] = {}
_FUNCTIONS: dict[str, FunctionClassifier] = {}


def register_module(cls: type | str, classifier: ModuleClassifier | Entry) -> None:
    """Teach the vocabulary a module class (and, through the MRO, its subclasses).

    A registered module is a leaf of the graph: its insides are not traced.

    Args:
        cls: the class, or its dotted path (``"transformers.pytorch_utils.Conv1D"``), so that an
            optional dependency need not be imported to be known.
        classifier: an :class:`Entry`, or ``module -> Entry`` to read numbers off the instance.

    Raises:
        InitlabError: ``cls`` is neither a class nor a dotted path, or ``classifier`` is neither an
            :class:`Entry` nor callable.

    Example:
        >>> class Swish(nn.Module):
        ...     def forward(self, x):
        ...         return x * torch.sigmoid(x)
        >>> register_module(Swish, Entry(Kind.ACTIVATION, "Swish", ("silu", None)))
        >>> lookup_module(Swish()).activation
        ('silu', None)
    """
    if not isinstance(cls, (type, str)):
        raise InitlabError(f"cls={cls!r} is neither a class nor a dotted class path: pass the module class")
    _MODULES[cls] = _checked(classifier, "module -> Entry")


def register_function(names: str | Iterable[str], classifier: FunctionClassifier | Entry) -> None:
    """Teach the vocabulary functions / methods by canonical name (:func:`fn_name`: ``F.relu_``,
    ``Tensor.relu`` and ``torch.relu`` are all ``"relu"``)."""
    fn = _checked(classifier, "(name, args, kwargs, is_tensor) -> Entry")
    for name in [names] if isinstance(names, str) else names:
        _FUNCTIONS[name] = fn


def _checked(classifier: Any, signature: str) -> Callable[..., Entry]:
    if isinstance(classifier, Entry):
        return lambda *a, e=classifier: e
    if not callable(classifier):
        raise InitlabError(f"classifier={classifier!r} is neither an Entry nor a callable {signature}")
    return classifier


def lookup_module(m: nn.Module) -> Entry | None:
    """The registered entry of ``m``'s class or its nearest registered base, else ``None``."""
    for klass in type(m).__mro__:
        classifier = _MODULES.get(klass) or _MODULES.get(f"{klass.__module__}.{klass.__qualname__}")
        if classifier is not None:
            return classifier(m)
    return None


def is_leaf(m: nn.Module) -> bool:
    """A graph leaf: a module the vocabulary knows (Linear, MultiheadAttention, an RNN, ...) or one
    without children; every other module is traced through."""
    return next(iter(m.children()), None) is None or lookup_module(m) is not None


def classify_module(m: nn.Module) -> Entry:
    """The entry of a leaf module: registered, else measured (:func:`measure_module`) when it has
    no children, else ``OTHER``."""
    entry = lookup_module(m)
    if entry is not None:
        return entry
    if type(m).__name__.endswith(POSITION_TABLE_SUFFIXES):
        return Entry(Kind.CONSTANT, type(m).__name__, params={"position_table": True})
    if next(iter(m.children()), None) is None:
        return measure_module(m)
    return Entry(Kind.OTHER, type(m).__name__)


#: Class-name endings of modules whose output depends only on positions, not on their input's values
#: (HF's ``LlamaRotaryEmbedding``, ``MistralRotaryEmbedding``, ... return the ``cos`` / ``sin`` tables):
#: ``CONSTANT`` nodes, whose value moments a recorded forward keeps.
POSITION_TABLE_SUFFIXES: tuple[str, ...] = ("RotaryEmbedding",)


# ---- modules ---------------------------------------------------------------------------------------


def _layer(m: nn.Module, **params: Any) -> Entry:
    return Entry(Kind.LAYER, type(m).__name__, params=params)


def _conv(m: nn.Module) -> Entry:
    transposed = isinstance(m, nn.modules.conv._ConvTransposeNd)
    return _layer(m, in_channels=m.in_channels, out_channels=m.out_channels, kernel_size=m.kernel_size,
                  stride=m.stride, padding=m.padding, dilation=m.dilation, groups=m.groups,
                  transposed=transposed, layout="torch", fans={"groups": m.groups, "transposed": transposed})


def _rnn(m: nn.Module) -> Entry:
    mode = getattr(m, "mode", type(m).__name__.replace("Cell", "").upper())
    gates = {"LSTM": 4, "GRU": 3}.get(mode, 1)
    return _layer(m, mode=mode, input_size=m.input_size, hidden_size=m.hidden_size, gates=gates,
                  num_layers=getattr(m, "num_layers", 1), batch_first=getattr(m, "batch_first", False),
                  bidirectional=getattr(m, "bidirectional", False), layout="torch", fans={"chunks": gates})


_LAYER_MODULES: dict[type | str, ModuleClassifier] = {
    nn.Linear: lambda m: _layer(m, in_features=m.in_features, out_features=m.out_features,
                                layout="torch", fans={}),
    nn.Bilinear: lambda m: _layer(m, in1_features=m.in1_features, in2_features=m.in2_features,
                                  out_features=m.out_features, layout="torch", fans={}),
    nn.modules.conv._ConvNd: _conv,
    nn.Embedding: lambda m: _layer(m, num_embeddings=m.num_embeddings, embedding_dim=m.embedding_dim,
                                   padding_idx=m.padding_idx),
    nn.EmbeddingBag: lambda m: _layer(m, num_embeddings=m.num_embeddings, embedding_dim=m.embedding_dim,
                                      padding_idx=m.padding_idx, mode=m.mode),
    nn.MultiheadAttention: lambda m: _layer(m, embed_dim=m.embed_dim, num_heads=m.num_heads,
                                            batch_first=m.batch_first, kdim=m.kdim, vdim=m.vdim,
                                            packed=m._qkv_same_embed_dim, fans={"chunks": 3}),
    nn.RNNBase: _rnn,
    nn.RNNCellBase: _rnn,
    # HF GPT-2 style: y = x @ W + b with W of shape (in, out), the transpose of Linear's.
    "transformers.pytorch_utils.Conv1D": lambda m: _layer(
        m, in_features=int(m.weight.shape[0]), out_features=int(m.nf), layout="transposed",
        fans={"layout": "keras"}),
}


def _act(name: str, param: Callable[[nn.Module], float | None] = lambda m: None) -> ModuleClassifier:
    return lambda m: Entry(Kind.ACTIVATION, type(m).__name__, (name, param(m)))


def _hardtanh_entry(op: str, lo: float, hi: float, fn: Callable[[Any], Any]) -> Entry:
    """``hardtanh(lo, hi)``: relu6 at (0, 6), symmetric by ``max_val``, else measured by ``fn``."""
    if (lo, hi) == (0.0, 6.0):
        return Entry(Kind.ACTIVATION, op, ("relu6", None), {"min_val": lo, "max_val": hi})
    if lo == -hi:
        return Entry(Kind.ACTIVATION, op, ("hardtanh", hi), {"min_val": lo, "max_val": hi})
    return Entry(Kind.ACTIVATION, op, ("measured", None), {"min_val": lo, "max_val": hi}, fn)


_ACTIVATION_MODULES: dict[type | str, ModuleClassifier] = {
    nn.ReLU: _act("relu"),
    nn.ReLU6: _act("relu6"),  # a Hardtanh subclass: the MRO finds it first
    nn.LeakyReLU: _act("leaky_relu", lambda m: float(m.negative_slope)),
    nn.PReLU: _act("prelu", lambda m: float(m.weight.detach().float().mean())),
    nn.RReLU: _act("leaky_relu", lambda m: (m.lower + m.upper) / 2.0),
    nn.ELU: _act("elu", lambda m: float(m.alpha)),
    nn.CELU: _act("celu", lambda m: float(m.alpha)),
    nn.SELU: _act("selu"),
    nn.GELU: lambda m: Entry(Kind.ACTIVATION, type(m).__name__,
                             ("gelu_tanh" if m.approximate == "tanh" else "gelu", None)),
    nn.SiLU: _act("silu"),
    nn.Mish: _act("mish"),
    nn.Softplus: _act("softplus", lambda m: float(m.beta)),
    nn.Softsign: _act("softsign"),
    nn.Tanh: _act("tanh"),
    nn.Sigmoid: _act("sigmoid"),
    nn.Hardtanh: lambda m: _hardtanh_entry(type(m).__name__, float(m.min_val), float(m.max_val), m),
    nn.Hardsigmoid: _act("hardsigmoid"),
    nn.Hardswish: _act("hardswish"),
    nn.LogSigmoid: _act("logsigmoid"),
    nn.Tanhshrink: _act("tanhshrink"),
}


def _simple(kind: Kind, **read: str) -> ModuleClassifier:
    """An entry of ``kind`` whose params are attributes of the module (``p="p"``)."""
    return lambda m: Entry(kind, type(m).__name__, params={k: getattr(m, a) for k, a in read.items()})


def _norm(kind: str, **read: str) -> ModuleClassifier:
    return lambda m: Entry(Kind.NORM, type(m).__name__,
                           params={"kind": kind, **{k: getattr(m, a, None) for k, a in read.items()}})


def _pool(kind: str) -> ModuleClassifier:
    return lambda m: Entry(Kind.POOL, type(m).__name__, params={"type": kind})


def _upsample(m: nn.Module) -> Entry:
    """``nn.Upsample``: as ``F.interpolate`` with its arguments (:func:`_interpolate`)."""
    keys = ("size", "scale_factor", "mode", "align_corners", "recompute_scale_factor")
    kind = Kind.RESHAPE if str(m.mode).startswith("nearest") else Kind.POOL
    params = {k: getattr(m, k, None) for k in keys}
    return Entry(kind, type(m).__name__, params={**params, "type": "interpolate", "rule": "interpolate"})


def _padding(mode: str) -> ModuleClassifier:
    return lambda m: Entry(Kind.RESHAPE, type(m).__name__, params={
        "pad": tuple(m.padding), "mode": mode, "value": getattr(m, "value", None), "rule": "pad"})


#: Padding modules and the ``F.pad`` mode each applies (``ZeroPadNd`` is a ``ConstantPadNd``).
_PAD_MODULES = [(getattr(nn.modules.padding, cls), mode) for cls, mode in (
    ("_ConstantPadNd", "constant"), ("_ReflectionPadNd", "reflect"), ("_ReplicationPadNd", "replicate"),
    ("_CircularPadNd", "circular")) if hasattr(nn.modules.padding, cls)]

_OTHER_MODULES: dict[type | str, ModuleClassifier] = {
    nn.modules.batchnorm._BatchNorm: _norm("batch_norm", num_features="num_features", eps="eps"),
    nn.LayerNorm: _norm("layer_norm", normalized_shape="normalized_shape", eps="eps"),
    nn.GroupNorm: _norm("group_norm", num_groups="num_groups", num_channels="num_channels", eps="eps"),
    nn.modules.instancenorm._InstanceNorm: _norm("instance_norm", num_features="num_features", eps="eps"),
    nn.LocalResponseNorm: _norm("local_response_norm", size="size"),
    **({nn.RMSNorm: _norm("rms_norm", normalized_shape="normalized_shape", eps="eps")}
       if hasattr(nn, "RMSNorm") else {}),
    nn.modules.dropout._DropoutNd: _simple(Kind.DROPOUT, p="p"),
    nn.Identity: _simple(Kind.RESHAPE),
    nn.Flatten: _simple(Kind.RESHAPE, start_dim="start_dim", end_dim="end_dim"),
    nn.Unflatten: _simple(Kind.RESHAPE, dim="dim"),
    nn.PixelShuffle: _simple(Kind.RESHAPE),
    nn.PixelUnshuffle: _simple(Kind.RESHAPE),
    nn.modules.pooling._MaxPoolNd: _pool("max"),
    nn.modules.pooling._AvgPoolNd: _pool("avg"),
    nn.modules.pooling._AdaptiveAvgPoolNd: _pool("avg"),
    nn.modules.pooling._AdaptiveMaxPoolNd: _pool("max"),
    nn.modules.pooling._LPPoolNd: _pool("lp"),
    nn.Softmax: _simple(Kind.SOFTMAX, dim="dim"),
    nn.LogSoftmax: lambda m: Entry(Kind.SOFTMAX, type(m).__name__,
                                   params={"dim": m.dim, "rule": "log_softmax"}),
    nn.Upsample: _upsample,
    **{cls: _padding(mode) for cls, mode in _PAD_MODULES},
    nn.Softmin: _simple(Kind.SOFTMAX, dim="dim"),
}

for _table in (_LAYER_MODULES, _ACTIVATION_MODULES, _OTHER_MODULES):
    for _cls, _classifier in _table.items():
        register_module(_cls, _classifier)


# ---- functions and methods -------------------------------------------------------------------------


def fn_name(target: Any) -> str:
    """Canonical name of a function / method target: ``F.relu_``, ``Tensor.relu`` -> ``"relu"``;
    ``Tensor.__iadd__``, ``operator.iadd`` -> ``"iadd"``; the getter of ``Tensor.T`` -> ``"T"``.

    >>> fn_name(torch.Tensor.__iadd__), fn_name(F.relu_), fn_name(torch.Tensor.T.__get__)
    ('iadd', 'relu', 'T')
    """
    name = target if isinstance(target, str) else getattr(target, "__name__", repr(target))
    if name == "__get__":  # a property getter (x.T, x.data)
        name = getattr(getattr(target, "__self__", None), "__name__", name)
    if name.startswith("__") and name.endswith("__"):
        name = name[2:-2]
    if name.endswith("_") and not name.startswith("_"):
        name = name[:-1]
    return name


def _arg(args: Sequence[Any], kwargs: Mapping[str, Any], i: int, key: str, default: Any = None) -> Any:
    if key in kwargs:
        return kwargs[key]
    return args[i] if len(args) > i else default


def _number(a: Any) -> float | None:
    """``a`` as a float when it is a number (or a one-element tensor), else ``None``."""
    if isinstance(a, (int, float)) and not isinstance(a, bool):
        return float(a)
    if isinstance(a, torch.Tensor) and a.numel() == 1 and not a.is_meta:
        return float(a.detach().reshape(()))
    return None


def _activation_fn(name: str, args: Sequence[Any], kwargs: Mapping[str, Any], is_tensor) -> Entry:
    def num(i: int, key: str, default: float) -> float | None:
        return _number(_arg(args, kwargs, i, key, default))

    if name == "hardtanh":
        lo, hi = num(1, "min_val", -1.0), num(2, "max_val", 1.0)
        if lo is None or hi is None:
            return Entry(Kind.ACTIVATION, name, ("hardtanh", None))
        return _hardtanh_entry(name, lo, hi, lambda x, lo=lo, hi=hi: F.hardtanh(x, lo, hi))
    if name == "gelu":
        tanh = _arg(args, kwargs, 1, "approximate", "none") == "tanh"
        return Entry(Kind.ACTIVATION, name, ("gelu_tanh" if tanh else "gelu", None))
    if name == "rrelu":
        lo, hi = num(1, "lower", 1 / 8), num(2, "upper", 1 / 3)
        return Entry(Kind.ACTIVATION, name, ("leaky_relu", None if None in (lo, hi) else (lo + hi) / 2))
    if name == "prelu":
        w = _arg(args, kwargs, 1, "weight")
        slope = float(w.detach().float().mean()) if isinstance(w, torch.Tensor) else None
        return Entry(Kind.ACTIVATION, name, ("prelu", slope))
    read = {"leaky_relu": (1, "negative_slope", 0.01), "elu": (1, "alpha", 1.0),
            "celu": (1, "alpha", 1.0), "softplus": (1, "beta", 1.0)}.get(name)
    return Entry(Kind.ACTIVATION, name, (name, num(*read) if read else None))


#: The functional activations the table knows by canonical name (``F.relu``, ``torch.tanh``,
#: ``Tensor.sigmoid_``); the probe records their outputs.
ACTIVATION_FUNCTIONS: frozenset[str] = frozenset({
    "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu", "silu", "mish", "softplus", "softsign",
    "tanh", "sigmoid", "hardtanh", "hardsigmoid", "hardswish", "logsigmoid", "tanhshrink", "rrelu", "prelu",
})
register_function(sorted(ACTIVATION_FUNCTIONS), _activation_fn)
register_function(
    ["batch_norm", "layer_norm", "group_norm", "instance_norm", "rms_norm", "local_response_norm"],
    lambda name, args, kwargs, t: Entry(Kind.NORM, name, params={"kind": name}),
)
# unit L2 norm along ``dim``: E[y^2] = 1/d, not a unit-RMS norm (its own rule, "normalize")
register_function(
    "normalize",
    lambda name, args, kwargs, t: Entry(Kind.NORM, name, params={
        "kind": name, "rule": name, "p": _number(_arg(args, kwargs, 1, "p", 2.0)),
        "dim": _arg(args, kwargs, 2, "dim", 1)}),
)
register_function(
    ["dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout"],
    lambda name, args, kwargs, t: Entry(Kind.DROPOUT, name, params={
        "p": _number(_arg(args, kwargs, 1, "p", 0.5)), "training": _arg(args, kwargs, 2, "training", True)}),
)
_POOL_TYPES = {"max": "max", "avg": "avg", "lp": "lp", "adaptive_avg": "avg", "adaptive_max": "max"}
register_function(
    [f"{p}_pool{d}d{s}" for p in _POOL_TYPES for d in (1, 2, 3) for s in ("", "_with_indices")],
    lambda name, args, kwargs, t: Entry(Kind.POOL, name,
                                        params={"type": _POOL_TYPES[name.split("_pool")[0]]}),
)
register_function(
    ["mean", "nanmean", "amax"],
    lambda name, args, kwargs, t: Entry(Kind.POOL, name, params={
        "type": "max" if name == "amax" else "avg", "dim": _arg(args, kwargs, 1, "dim")}),
)
register_function(
    ["view", "reshape", "permute", "transpose", "swapaxes", "movedim", "t", "T", "mT", "flatten", "unflatten",
     "contiguous", "squeeze", "unsqueeze", "getitem", "chunk", "split", "tensor_split", "unbind", "narrow",
     "select", "expand", "expand_as", "repeat", "repeat_interleave", "tile", "view_as", "reshape_as", "to",
     "float", "double", "half", "bfloat16", "type", "type_as", "clone", "detach", "data", "cpu", "cuda",
     "identity", "pixel_shuffle", "pixel_unshuffle", "channel_shuffle"],
    lambda name, args, kwargs, t: Entry(Kind.RESHAPE, name),
)
#: Functions whose later tensor arguments give only a shape or dtype (``x.view_as(y)``): only the
#: first argument is an edge of the graph.
FIRST_INPUT_ONLY: frozenset[str] = frozenset({"view_as", "reshape_as", "expand_as", "type_as", "to"})


def _sum(name: str, args: Sequence[Any], kwargs: Mapping[str, Any], is_tensor) -> Entry:
    kind = Kind.SUB if "sub" in name else Kind.ADD
    operands = [args[0] if args else kwargs.get("input"), _arg(args, kwargs, 1, "other")]
    if all(is_tensor(a) for a in operands):
        return Entry(kind, name)
    where = 0 if not is_tensor(operands[0]) else 1
    scalar = operands[where]
    return Entry(kind, name, params={"value": _number(scalar), "value_first": where == 0})


def _product(name: str, args: Sequence[Any], kwargs: Mapping[str, Any], is_tensor) -> Entry:
    a, b = args[0] if args else kwargs.get("input"), _arg(args, kwargs, 1, "other")
    divide = name in ("div", "divide", "truediv", "itruediv", "true_divide")
    if name == "neg":
        return Entry(Kind.SCALE, name, params={"factor": -1.0})
    if name in ("rtruediv", "rdiv", "rdivide") or (divide and is_tensor(b)):
        return Entry(Kind.OTHER, name)
    if is_tensor(a) and is_tensor(b):
        return Entry(Kind.MUL, name)
    factor = _number(b if is_tensor(a) else a)
    if divide and factor is not None:
        factor = 1.0 / factor if factor != 0 else float("inf")
    return Entry(Kind.SCALE, name, params={"factor": factor})


register_function(["add", "iadd", "radd", "sub", "isub", "rsub", "subtract"], _sum)
register_function(["mul", "imul", "rmul", "multiply", "div", "divide", "truediv", "itruediv", "true_divide",
                   "rtruediv", "rdiv", "neg"], _product)
register_function(
    ["cat", "concat", "concatenate", "stack"],
    lambda name, args, kwargs, t: Entry(Kind.CONCAT, name, params={"dim": _arg(args, kwargs, 1, "dim", 0)}),
)
register_function(["matmul", "bmm", "mm", "einsum"], lambda name, args, kwargs, t: Entry(Kind.MATMUL, name))
register_function(
    ["softmax", "softmin"],
    lambda name, args, kwargs, t: Entry(Kind.SOFTMAX, name, params={"dim": _arg(args, kwargs, 1, "dim")}),
)
register_function(
    "log_softmax",
    lambda name, args, kwargs, t: Entry(Kind.SOFTMAX, name, params={
        "dim": _arg(args, kwargs, 1, "dim"), "rule": "log_softmax"}),
)


def _interpolate(name: str, args: Sequence[Any], kwargs: Mapping[str, Any], is_tensor) -> Entry:
    """``F.interpolate``: nearest modes copy entries (``RESHAPE``), the others average neighbours
    (``POOL``); both take the ``"interpolate"`` rule (:mod:`initlab.graph.resample`)."""
    mode = _arg(args, kwargs, 3, "mode", "nearest")
    keys = ("size", "scale_factor", "mode", "align_corners", "recompute_scale_factor", "antialias")
    defaults = (None, None, "nearest", None, None, False)
    params = {k: _plain(_arg(args, kwargs, i + 1, k, d))
              for i, (k, d) in enumerate(zip(keys, defaults, strict=True))}
    kind = Kind.RESHAPE if str(mode).startswith("nearest") else Kind.POOL
    return Entry(kind, name, params={**params, "type": "interpolate", "rule": "interpolate"})


def _plain(v: Any) -> Any:
    """``v`` when it is a plain value (number, string, ``None``, or a tuple / list of them), else
    ``None`` (an fx node standing for a size computed in forward)."""
    if isinstance(v, (tuple, list)):
        return tuple(v) if all(_plain(x) is not None for x in v) else None
    return v if v is None or isinstance(v, (int, float, str)) else None


def _pad(name: str, args: Sequence[Any], kwargs: Mapping[str, Any], is_tensor) -> Entry:
    value = _arg(args, kwargs, 3, "value")
    return Entry(Kind.RESHAPE, name, params={
        "pad": _plain(_arg(args, kwargs, 1, "pad")), "rule": "pad",
        "mode": _arg(args, kwargs, 2, "mode", "constant"),
        "value": value if value is None else _number(value)})


def _clamp(name: str, args: Sequence[Any], kwargs: Mapping[str, Any], is_tensor) -> Entry:
    """``clamp`` / ``clip``: an activation when it is a named one (``min=0``: relu, ``(0, 6)``: relu6,
    ``(-a, a)``: hardtanh), else ``OTHER`` (unknown to propagation)."""
    lo = _arg(args, kwargs, 1, "min") if name != "clamp_max" else None
    hi = _arg(args, kwargs, 2 if name in ("clamp", "clip") else 1, "max") if name != "clamp_min" else None
    lo_n, hi_n = _number(lo), _number(hi)
    if (lo is not None and lo_n is None) or (hi is not None and hi_n is None):
        return Entry(Kind.OTHER, name)  # tensor bounds
    if lo_n == 0.0 and hi is None:
        return Entry(Kind.ACTIVATION, name, ("relu", None))
    if lo_n is not None and hi_n is not None and (lo_n == -hi_n or (lo_n, hi_n) == (0.0, 6.0)):
        return _hardtanh_entry(name, lo_n, hi_n, lambda x, lo=lo_n, hi=hi_n: torch.clamp(x, lo, hi))
    return Entry(Kind.OTHER, name)


register_function("interpolate", _interpolate)
register_function("pad", _pad)
register_function(["clamp", "clip", "clamp_min", "clamp_max"], _clamp)
register_function(
    "roll",
    lambda name, args, kwargs, t: Entry(Kind.RESHAPE, name, params={
        "shifts": _arg(args, kwargs, 1, "shifts"), "dims": _arg(args, kwargs, 2, "dims"), "rule": "roll"}),
)


def _flip(name: str, args: Sequence[Any], kwargs: Mapping[str, Any], is_tensor) -> Entry:
    """``flip(x, dims)``, ``x.flip(d0, d1, ...)``, ``fliplr`` / ``flipud``: dims as a tuple."""
    dims = {"fliplr": (1,), "flipud": (0,)}.get(name) or kwargs.get("dims", tuple(args[1:]))
    dims = tuple(dims[0]) if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else tuple(dims)
    return Entry(Kind.RESHAPE, name, params={"dims": dims, "rule": "flip"})


register_function(["flip", "fliplr", "flipud"], _flip)
register_function(
    "scaled_dot_product_attention",
    lambda name, args, kwargs, t: Entry(Kind.ATTENTION, name, params={
        "is_causal": bool(kwargs.get("is_causal", False)), "scale": _number(kwargs.get("scale"))}),
)
register_function(
    ["linear", "bilinear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
     "conv_transpose3d", "embedding", "embedding_bag"],
    lambda name, args, kwargs, t: Entry(Kind.LAYER, name, params={"functional": True}),
)
register_function(
    ["arange", "zeros", "ones", "full", "empty", "eye", "linspace", "logspace", "tensor", "as_tensor",
     "rand", "randn", "randint", "zeros_like", "ones_like", "full_like", "empty_like", "rand_like",
     "randn_like", "new_zeros", "new_ones", "new_full", "new_empty", "new_tensor"],
    lambda name, args, kwargs, t: Entry(Kind.CONSTANT, name),
)

#: Calls whose result is never a tensor (``x.size(0)``, fx's guards on specialised arguments).
NON_TENSOR_FUNCTIONS: frozenset[str] = frozenset({
    "size", "dim", "numel", "ndimension", "nelement", "len", "stride", "item", "tolist", "get_device",
    "element_size", "is_floating_point", "is_complex", "is_contiguous", "_assert", "_assert_is_none",
    "shape", "dtype", "device", "ndim", "is_cuda", "requires_grad", "is_tracing", "is_scripting",
})
#: Attributes of a tensor that are tensors (``getattr(x, "T")`` under fx).
TENSOR_ATTRIBUTES: frozenset[str] = frozenset({"T", "mT", "H", "mH", "data", "real", "imag", "grad"})


def classify_function(target: Any, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None,
                      is_tensor: Callable[[Any], bool] | None = None) -> Entry:
    """The entry of a function / method call; ``OTHER`` (op = its name) when unknown.

    Args:
        target: the function (``F.relu``, ``operator.add``, ``Tensor.view``) or a method name.
        args, kwargs: the call's arguments (tensors, or fx nodes standing for them).
        is_tensor: whether an argument is a tensor of the graph (default: a ``torch.Tensor``);
            it tells ``x * y`` (``MUL``) from ``x * 0.5`` (``SCALE``).

    >>> classify_function(F.leaky_relu, (torch.zeros(1), 0.2)).activation
    ('leaky_relu', 0.2)
    >>> import operator
    >>> e = classify_function(operator.truediv, (torch.zeros(1), 8))
    >>> e.kind, e.params["factor"]
    (<Kind.SCALE: 'scale'>, 0.125)
    """
    name = fn_name(target)
    classifier = _FUNCTIONS.get(name)
    if classifier is None:
        return Entry(Kind.OTHER, name)
    return classifier(name, args, kwargs or {}, is_tensor or (lambda a: isinstance(a, torch.Tensor)))


# ---- measuring unknown modules ---------------------------------------------------------------------

_PROBE_SHAPE = (2, 4, 8)
#: Known activations a measured module is compared with: ``(name, param)`` as :func:`initlab.gains.gain`
#: takes it; the first match names it (``quick_gelu`` is ``swish`` with beta 1.702).
_KNOWN: tuple[tuple[str, float | None, Callable[[torch.Tensor], torch.Tensor]], ...] = (
    ("relu", None, F.relu),
    ("gelu", None, F.gelu),
    ("gelu_tanh", None, lambda x: F.gelu(x, approximate="tanh")),
    ("silu", None, F.silu),
    ("swish", 1.702, lambda x: x * torch.sigmoid(1.702 * x)),
    ("tanh", None, torch.tanh),
    ("sigmoid", None, torch.sigmoid),
    ("mish", None, F.mish),
    ("elu", 1.0, F.elu),
    ("selu", None, F.selu),
    ("softplus", 1.0, F.softplus),
    ("softsign", None, F.softsign),
    ("leaky_relu", 0.01, F.leaky_relu),
    ("relu6", None, F.relu6),
    ("hardtanh", 1.0, F.hardtanh),
    ("hardsigmoid", None, F.hardsigmoid),
    ("hardswish", None, F.hardswish),
    ("logsigmoid", None, F.logsigmoid),
    ("tanhshrink", None, F.tanhshrink),
    ("sin", None, torch.sin),
)


def _probe(shape: Sequence[int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded Gaussian probe (float64, std 2, so the tails reach the kinks) and a permutation of
    its entries."""
    gen = torch.Generator().manual_seed(0)
    x = 2.0 * torch.randn(tuple(shape), generator=gen, dtype=torch.float64)
    return x.to(device), torch.randperm(x.numel(), generator=gen).to(device)


def _device(m: nn.Module) -> torch.device:
    for t in (*m.parameters(), *m.buffers()):
        return t.device
    return torch.device("cpu")


def _run(m: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """``m(x)`` on a copy of ``x`` (an in-place module must not change the probe) under no_grad with
    the global RNG forked and ``m``'s buffer values restored after; ``None`` when it fails or is no
    tensor."""
    cuda = [x.device.index or 0] if x.device.type == "cuda" else []
    buffers = [(b, b.detach().clone()) for b in m.buffers()]
    try:
        with torch.random.fork_rng(devices=cuda), torch.no_grad():
            y = m(x.clone())
    except Exception:  # an unknown module may reject the probe in any way
        return None
    finally:
        with torch.no_grad():
            for b, value in buffers:
                b.copy_(value)
    return y if isinstance(y, torch.Tensor) else None


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-6) -> bool:
    a, b = a.double(), b.double()
    return a.shape == b.shape and bool((a - b).abs().max() <= rtol * max(1.0, float(b.abs().max())))


def _elementwise(m: nn.Module, shape: Sequence[int]) -> Entry | None:
    x, perm = _probe(shape, _device(m))
    y, y2 = _run(m, x), _run(m, x)
    yp = _run(m, x.flatten()[perm].view_as(x))
    if y is None or y2 is None or yp is None or y.shape != x.shape or yp.shape != x.shape:
        return None
    if not torch.equal(y, y2) or not _close(yp.flatten(), y.flatten()[perm], 1e-9):
        return None
    op = type(m).__name__
    if _close(y, x):
        return Entry(Kind.RESHAPE, op, params={"identified_by": "probe", "as": "identity"})
    for name, param, ref in _KNOWN:
        if _close(y, ref(x)):
            return Entry(Kind.ACTIVATION, op, (name, param), {"identified_by": "probe"})
    return Entry(Kind.ACTIVATION, op, ("measured", None), {"identified_by": "probe"}, m)


def _norm_like(m: nn.Module) -> Entry | None:
    """A childless module with one ``weight`` (and maybe ``bias``) of size ``d`` whose output, with
    ``weight = 1`` (or ``0``: Gemma's ``1 + weight``) and ``bias = 0``, is its input normalised over
    the last dim: RMS norm or layer norm."""
    params = dict(m.named_parameters())
    w = params.get("weight")
    if w is None or set(params) - {"weight", "bias"} or any(p.dim() != 1 or p.shape != w.shape
                                                             for p in params.values()):
        return None
    x, _ = _probe((*_PROBE_SHAPE[:-1], w.numel()), w.device)
    rms = x / x.pow(2).mean(-1, keepdim=True).sqrt()
    centred = x - x.mean(-1, keepdim=True)
    ln = centred / centred.pow(2).mean(-1, keepdim=True).sqrt()
    for offset in (0.0, 1.0):
        try:
            probe = copy.deepcopy(m)
        except Exception:  # a module holding something that cannot be copied: not measured
            return None
        with torch.no_grad():
            probe.weight.fill_(1.0 - offset)
            if "bias" in params:
                probe.bias.zero_()
        y = _run(probe, x)
        for kind, ref in (("rms_norm", rms), ("layer_norm", ln)):
            if y is not None and _close(y, ref, 1e-3):
                return Entry(Kind.NORM, type(m).__name__, params={
                    "kind": kind, "normalized_shape": (w.numel(),), "weight_offset": offset,
                    "identified_by": "probe"})
    return None


def measure_module(m: nn.Module, shape: Sequence[int] | None = None) -> Entry:
    """Classify a childless module the table does not know by running it on a seeded probe.

    * no parameters: an **elementwise** module (the output has the input's shape, two runs agree,
      and permuting the input's entries permutes the output's: :math:`f(x_\\pi) = f(x)_\\pi`) is an
      ``ACTIVATION``, named when it equals a known one on the probe (max abs difference
      :math:`\\le 10^{-6}\\max(1, \\max|g(x)|)`: HF's ``GELUActivation`` is ``"gelu"``,
      ``NewGELUActivation`` ``"gelu_tanh"``, ``QuickGELUActivation`` ``("swish", 1.702)``), else
      ``("measured", None)`` with ``fn`` the module; an identity is a ``RESHAPE``;
    * one ``weight`` (and maybe a ``bias``) of the last dim's size: a **norm** when, with unit
      weight and zero bias, it returns the input over its RMS (``"rms_norm"``: Llama's
      ``LlamaRMSNorm``, T5's ``T5LayerNorm``) or standardised (``"layer_norm"``);
    * anything else (or a module that rejects the probe): ``OTHER``.

    The probe is float64, shape ``shape`` (default ``(2, 4, 8)``), from a fixed
    :class:`torch.Generator`; the module runs under :func:`torch.no_grad` with the global RNG
    forked, and norms on a deep copy: ``m`` is not changed (a module that mutates its own Python
    state when called is, unless the caller restores it, as :func:`initlab.graph.trace` does).

    >>> class Swish(nn.Module):
    ...     def forward(self, x):
    ...         return x * torch.sigmoid(x)
    >>> measure_module(Swish()).activation
    ('silu', None)
    """
    if next(iter(m.parameters()), None) is None:
        entry = _elementwise(m, shape or _PROBE_SHAPE)
    else:
        entry = _norm_like(m)
    return entry or Entry(Kind.OTHER, type(m).__name__)

