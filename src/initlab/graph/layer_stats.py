"""What one weighted part of a layer contributes to moment propagation: its statistics
(:class:`LayerStats`), the parts a module has (:func:`part_params`), and the two callbacks that decide
them — the model's current tensors (:func:`model_layer_stats`) or a scale solved from each part's own
input (:class:`LayerSolver`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import nn

from initlab.errors import InitlabError
from initlab.fans import Fans, compute_fans
from initlab.graph.nodes import Node

if TYPE_CHECKING:
    from initlab.graph.moments import Moments

__all__ = [
    "RNN_GATES",
    "LayerSolver",
    "LayerStats",
    "LayerStatsFn",
    "PartParams",
    "layer_fans",
    "mirrored_halves",
    "model_layer_stats",
    "part_params",
    "solve_layer_scale",
    "with_mirrors",
]

#: Gates of a packed recurrent weight, in torch's row order, by ``module.mode``: the blocks that the
#: parts ``"ih_l0:f"``, ``"hh_l0:f"``, ... name.
RNN_GATES: dict[str, tuple[str, ...]] = {"LSTM": ("i", "f", "g", "o"), "GRU": ("r", "z", "n")}


@dataclass(frozen=True)
class LayerStats:
    """What one weighted map contributes: ``y_j = sum_i w_ji x_i + b_j`` over ``fan_in`` inputs.

    Attributes:
        fan_in: inputs per output (the layer's true fan_in: groups, layouts; for a lookup table, the
            number of rows; 1 for a per-unit affine map such as a norm's).
        weight_second: ``E[w^2]`` over the weight's entries (``Var(w)`` for zero-mean weights).
        weight_mean: ``E[w]``.
        bias_mean, bias_second: ``E[b]`` and ``E[b^2]`` (0 without a bias).
        mirrored_inputs: the weight's input columns come in negated pairs, ``W = [U, -U]`` along the
            input axis (the whole kernel of a convolution): the layer reads ``x_i - x_{n/2 + i}``
            (:func:`mirrored_halves`; the propagation then reads a looks-linear pair exactly,
            :mod:`initlab.graph.mirrored`).
        mirrored_outputs: rows and bias in negated pairs, ``W = [A; -A]``, ``b = [c; -c]``: output
            unit ``m/2 + j`` is exactly ``-(unit j)``.
    """

    fan_in: int
    weight_second: float
    weight_mean: float = 0.0
    bias_mean: float = 0.0
    bias_second: float = 0.0
    mirrored_inputs: bool = False
    mirrored_outputs: bool = False

    @classmethod
    def from_tensors(cls, weight: torch.Tensor | None, bias: torch.Tensor | None, fan_in: int) -> LayerStats:
        """Read the statistics of actual tensors (``weight=None``: a weight of ones)."""
        w = torch.ones(1) if weight is None else weight.detach().double()
        b = torch.zeros(1) if bias is None else bias.detach().double()
        return cls(
            int(fan_in), float(w.square().mean()), float(w.mean()), float(b.mean()), float(b.square().mean())
        )


#: ``layer_stats(node, part, x)``: the statistics of ``part`` of the layer at ``node`` (``"weight"``;
#: ``"query"``/``"key"``/``"value"``/``"out"`` for attention; ``"ih_l0"``/``"hh_l0"``... for an RNN,
#: ``"ih_l0:f"``/``"hh_l0:f"``... for one gate of an LSTM / GRU, ``"hr_l0"`` for an LSTM's projection;
#: ``"affine"`` for a norm) given the moments ``x`` of that part's input, or ``None`` if unknown.
LayerStatsFn = Callable[[Node, str, "Moments"], "LayerStats | None"]


def solve_layer_scale(fan_in: int, x: Moments, target_second: float = 1.0, bias_second: float = 0.0) -> float:
    r"""The weight second moment (``Var(w)`` of a zero-mean init) that gives the output ``E[y^2] = target``.

    .. math::
        \mathrm{Var}(w) = \frac{q_\text{target} - \mathbb{E}[b^2]}{\mathrm{fan\_in}\; \mathbb{E}[x^2]}

    Raises:
        InitlabError: ``E[x^2] = 0`` (no scale restores a zero signal) or ``bias_second >= target``.

    Source: Bingham & Miikkulainen (2023), "AutoInit".

    >>> from initlab.graph.moments import Moments
    >>> solve_layer_scale(512, Moments(0.0, 0.5))
    0.00390625
    """
    if x.second <= 0:
        raise InitlabError(f"the input's E[x^2] = {x.second}: no weight scale restores a zero signal")
    if not target_second > bias_second:
        raise InitlabError(f"target_second={target_second} must exceed the bias's E[b^2] = {bias_second}")
    return (target_second - bias_second) / (fan_in * x.second)


def _is_hf_conv1d(module: nn.Module | None) -> bool:
    return type(module).__name__ == "Conv1D" and getattr(getattr(module, "weight", None), "ndim", 0) == 2


def layer_fans(module: nn.Module, node: Node | None = None) -> Fans:
    """The true fans of ``module.weight``: groups, transposed convolutions, HF ``Conv1D`` ``(in, out)``.

    ``node.params["groups"]`` / ``["transposed"]`` override the module's attributes. These are the
    weight's connection counts (:func:`initlab.fans.compute_fans`): a transposed convolution's
    ``fan_in`` is ``in_channels / groups * prod(k)``, the taps an output would get at stride 1; with
    stride ``s`` an output gets ``prod(k_i / s_i)`` of them on average, which the propagation applies
    as the convolution's coverage (:func:`initlab.graph.spatial.conv_geometry`), not here.

    >>> layer_fans(nn.Conv2d(8, 8, 3, groups=8))
    Fans(fan_in=9, fan_out=9, receptive_field=9)
    """
    params = node.params if node is not None else {}
    groups = params.get("groups", getattr(module, "groups", 1))
    transposed = params.get("transposed", bool(getattr(module, "transposed", False)) or _is_hf_conv1d(module))
    return compute_fans(tuple(module.weight.shape), groups=groups, transposed=transposed)


class PartParams(NamedTuple):
    """The tensors of one weighted part of a layer: ``weight``, ``bias`` (``None`` if absent),
    its ``fan_in``, and ``lookup`` (a table read row by row: an embedding)."""

    weight: torch.Tensor | None
    bias: torch.Tensor | None
    fan_in: int
    lookup: bool = False


def _mha_part(module: nn.Module, part: str) -> PartParams:
    if part == "out":
        return PartParams(module.out_proj.weight, module.out_proj.bias, module.out_proj.weight.shape[1])
    i = ("query", "key", "value").index(part)
    e = module.embed_dim
    w = module.in_proj_weight[i * e : (i + 1) * e] if module.in_proj_weight is not None else None
    if w is None:
        w = getattr(module, f"{('q', 'k', 'v')[i]}_proj_weight")
    b = module.in_proj_bias[i * e : (i + 1) * e] if module.in_proj_bias is not None else None
    return PartParams(w, b, w.shape[1])


def _rnn_part(module: nn.RNNBase, part: str) -> PartParams:
    """``"ih_l0"`` / ``"hh_l0"`` (``_reverse``): the whole packed weight, the ``ih`` part with
    ``bias_ih + bias_hh``; ``"ih_l0:f"`` / ``"hh_l0:f"``: the rows of one gate (:data:`RNN_GATES`), the
    ``ih`` part with that gate's ``bias_ih + bias_hh`` — except GRU's ``n``, whose ``bias_hh`` sits inside
    ``r * (W_hn h + b_hn)`` and so belongs to ``"hh_l0:n"``; ``"hr_l0"``: an LSTM's projection."""
    base, _, gate = part.partition(":")
    w = getattr(module, f"weight_{base}")
    kind, sfx = base[:2], base[2:]
    has_bias = module.bias and kind != "hr"
    b_ih, b_hh = (getattr(module, f"bias_{k}{sfx}") if has_bias else None for k in ("ih", "hh"))
    if not gate:
        return PartParams(w, b_ih + b_hh if kind == "ih" and b_ih is not None else None, w.shape[1])
    gates, h = RNN_GATES.get(module.mode, ()), module.hidden_size
    if gate not in gates or kind == "hr":
        raise AttributeError(f"{type(module).__name__} has no part {part!r} (gates: {gates})")
    rows = slice(gates.index(gate) * h, (gates.index(gate) + 1) * h)
    b = None
    if b_ih is not None and (module.mode, gate) == ("GRU", "n"):
        b = (b_ih if kind == "ih" else b_hh)[rows]
    elif b_ih is not None and kind == "ih":
        b = b_ih[rows] + b_hh[rows]  # type: ignore[index]
    return PartParams(w[rows], b, w.shape[1])


def part_params(model: nn.Module, node: Node, part: str) -> PartParams | None:
    """``part`` (``"weight"``, ``"query"``, ``"out"``, ``"ih_l0"``, ``"ih_l0:f"``, ``"affine"``, ...) of
    the module ``node`` calls in ``model``, ``None`` if there is none (or it has no such weight).

    >>> from initlab.graph.nodes import Kind
    >>> p = part_params(nn.LSTM(3, 5), Node(0, Kind.LAYER, "LSTM", module=""), "hh_l0:f")
    >>> tuple(p.weight.shape), p.bias, p.fan_in
    ((5, 5), None, 5)
    """
    if node.module is None:
        return None
    try:
        return _module_params(model.get_submodule(node.module), part, node)
    except AttributeError:
        return None


def _module_params(module: nn.Module, part: str, node: Node | None = None) -> PartParams:
    """The weight, bias and fan_in of ``part`` of ``module``."""
    if part == "affine":
        return PartParams(getattr(module, "weight", None), getattr(module, "bias", None), 1)
    if isinstance(module, nn.MultiheadAttention):
        return _mha_part(module, part)
    if isinstance(module, nn.RNNBase):
        return _rnn_part(module, part)
    if isinstance(module, nn.Embedding):
        return PartParams(module.weight, None, module.num_embeddings, lookup=True)
    return PartParams(module.weight, getattr(module, "bias", None), layer_fans(module, node).fan_in)


def model_layer_stats(model: nn.Module) -> LayerStatsFn:
    """A :data:`LayerStatsFn` that reads ``model``'s current weights (predicts what the model does now)."""

    def read(node: Node, part: str, x: Moments) -> LayerStats | None:
        p = part_params(model, node, part)
        if p is None:
            return None
        return with_mirrors(LayerStats.from_tensors(p.weight, p.bias, p.fan_in), model, node, part, p)

    return read


def _negated_halves(t: torch.Tensor, dim: int) -> bool:
    """Whether the second half of ``t`` along ``dim`` is exactly minus the first (an even size >= 2)."""
    n = t.shape[dim] if t.ndim > dim else 0
    if n < 2 or n % 2:
        return False
    a, b = t.detach().narrow(dim, 0, n // 2), t.detach().narrow(dim, n // 2, n // 2)
    with torch.no_grad():  # one pair first: a random weight fails there, without a copy of half of it
        return bool(torch.equal(b.select(dim, 0), -a.select(dim, 0)) and torch.equal(b, -a))


def mirrored_halves(module: nn.Module | None, weight: torch.Tensor | None, bias: torch.Tensor | None
                    ) -> tuple[bool, bool]:
    r"""``(inputs, outputs)``: whether ``weight`` (of ``module``) has mirrored input columns and
    whether its rows and ``bias`` are mirrored — the looks-linear structure (Balduzzi et al. 2017).

    .. math::
        \text{inputs: } W_{:, n/2 + i} = -W_{:, i}\ (i < n/2), \qquad
        \text{outputs: } W_{m/2 + j} = -W_j,\ b_{m/2 + j} = -b_j\ (j < m/2)

    compared exactly (``torch.equal``), along dim 1 (Linear's ``in_features``; a convolution's
    ``in_channels``, every tap of the kernel) and dim 0 (``out_features`` / ``out_channels``). Only
    for ``nn.Linear`` and non-transposed convolutions with ``groups == 1`` (for which these dims are
    the input and output axes); anything else, an odd size, or a weight that cannot be compared (on the
    meta device, not yet materialised): ``(False, False)``.

    Source: Balduzzi et al. (2017), "The Shattered Gradients Problem: If resnets are the answer, then
    what is the question?" (the looks-linear initialization).

    >>> u = torch.randn(3, 2)
    >>> mirrored_halves(nn.Linear(4, 3), torch.cat([u, -u], 1), None)
    (True, False)
    """
    conv = isinstance(module, nn.modules.conv._ConvNd)
    if weight is None or not (isinstance(module, nn.Linear) or conv):
        return False, False
    if conv and (module.transposed or module.groups != 1):  # type: ignore[union-attr]
        return False, False
    try:
        if weight.ndim < 2:
            return False, False
        inputs = _negated_halves(weight, 1)
        outputs = _negated_halves(weight, 0) and (bias is None or _negated_halves(bias, 0))
    except (RuntimeError, ValueError, NotImplementedError):  # meta or uninitialised tensors
        return False, False
    return inputs, outputs


def with_mirrors(st: LayerStats, model: nn.Module, node: Node, part: str, p: PartParams) -> LayerStats:
    """``st`` with :attr:`LayerStats.mirrored_inputs` / ``mirrored_outputs`` read from the tensors
    ``p`` of ``part`` of the module ``node`` calls (:func:`mirrored_halves`; only the ``"weight"``
    part of a Linear or convolution can be mirrored)."""
    if part != "weight" or p.lookup or node.module is None:
        return st
    try:
        module = model.get_submodule(node.module)
    except AttributeError:
        return st
    inputs, outputs = mirrored_halves(module, p.weight, p.bias)
    return replace(st, mirrored_inputs=inputs, mirrored_outputs=outputs) if inputs or outputs else st


class LayerSolver:
    """A :data:`LayerStatsFn` that solves each layer's weight scale from its own input's moments.

    Every weighted map gets zero-mean weights with ``E[w^2] = target / (fan_in E[x^2])`` and zero bias
    (:func:`solve_layer_scale`), so each output — every pre-activation — has second moment ``target``
    whatever came before (ReLU then tanh, gates, residual sums); a lookup table gets ``E[w^2] = target``.
    Recurrent ``hh`` weights and norm affines are read from the model, not solved (their scale sets
    the dynamics / is 1). A module called twice keeps its first solution. ``solved`` maps
    ``(module qualname, part)`` to the weight second moment (``Var(w)``) the model level should write.

    Source: Bingham & Miikkulainen (2023), "AutoInit".
    """

    def __init__(self, model: nn.Module, target_second: float = 1.0) -> None:
        self.model, self.target_second = model, float(target_second)
        self.solved: dict[tuple[str, str], float] = {}
        self._read = model_layer_stats(model)

    def __call__(self, node: Node, part: str, x: Moments) -> LayerStats | None:
        if part == "affine" or part.startswith("hh"):
            return self._read(node, part, x)
        p = part_params(self.model, node, part)
        if p is None:
            return None
        key = (str(node.module), part)
        if key not in self.solved:
            solve = self.target_second if p.lookup else solve_layer_scale(p.fan_in, x, self.target_second)
            self.solved[key] = solve
        return LayerStats(p.fan_in, self.solved[key])
