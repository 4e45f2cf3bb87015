"""The isometric rule of ``"auto"`` for plain Keras MLPs and CNNs: which models are plain chains
(:func:`plain_chain`) and the looks-linear or near-critical orthogonal kernels (delta kernels for
convs) that start them at dynamical isometry (:func:`chain_roles`) — the torch front end's rule
(:func:`initlab.model.chain.plan_chain`), link by link the same numbers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from initlab.errors import InitlabError
from initlab.graph import Graph, Kind, Node
from initlab.keras.graph import KerasGraph
from initlab.model.chain import ChainRole, _chain_role

__all__ = ["ChainLink", "plain_chain", "chain_roles"]

_LINEAR = (None, "linear", "identity")


@dataclass(frozen=True)
class ChainLink:
    """One layer of a plain chain: its graph ``module`` key, the activation after it (``None``: none),
    and whether its link to the next layer crosses average pools and a flatten (a CNN's head link)."""

    module: str
    activation: tuple[str, float | None] | None
    via: tuple[str, ...] = ()


def _kind(layer: Any) -> str | None:
    """``"dense"``, ``"conv"`` (groups 1, odd kernels, not depthwise, separable or transposed) or ``None``."""
    names = {c.__name__ for c in type(layer).__mro__}
    if "Dense" in names and "EinsumDense" not in names:
        return "dense"
    grouped = int(getattr(layer, "groups", 1) or 1) != 1
    if "BaseConv" in names and not grouped and all(k % 2 for k in layer.kernel_size):
        return "conv"
    return None


def _path(g: Graph) -> list[Node] | None:
    """The nodes of ``g`` when it is one path from a single input to a single output, else ``None``."""
    inputs = g.of_kind(Kind.INPUT)
    if len(inputs) != 1 or len(g.of_kind(Kind.OUTPUT)) != 1:
        return None
    path, node = [inputs[0]], inputs[0]
    while node.kind is not Kind.OUTPUT:
        users = g.users(node.id)
        if len(users) != 1 or len(users[0].inputs) != 1:
            return None
        node = users[0]
        path.append(node)
    return path if len(path) == len(g) else None


def plain_chain(kg: KerasGraph, planned: set[str]) -> list[ChainLink] | None:
    """The layers of a *plain chain* in order, else ``None``: one path input -> (flatten) -> L0 -> phi ->
    L1 -> ... -> Ln (-> phi) (-> softmax) -> output with only dropout and reshapes besides, every weighted
    layer (``planned``: the layers the plan decides) a ``Dense`` or a ``ConvND`` with ``groups=1`` and odd
    kernels called once, at least two; a CNN is convs, then at most one Dense head whose link may cross
    average pools and a flatten (as :func:`initlab.model.chain.plain_chain` for torch)."""
    path = _path(kg.graph)
    layers = [n for n in path or () if n.kind is Kind.LAYER]
    if path is None or len(layers) < 2 or len(planned) != len(layers):
        return None
    if {n.module for n in layers} != planned:
        return None
    kinds = [_kind(kg.calls[n.module].layer) for n in layers]
    n_conv = sum(k == "conv" for k in kinds)
    heads = len(kinds) - n_conv
    if None in kinds or kinds[:n_conv] != ["conv"] * n_conv or (n_conv and heads > 1):
        return None
    start = path.index(layers[0])
    if any(n.kind not in (Kind.RESHAPE, Kind.DROPOUT) for n in path[1:start]):
        return None  # the first layer reads the model's input (through a flatten at most)
    links: list[ChainLink] = []
    current, act, via = layers[0], None, []
    for node in path[start + 1:]:
        if node.kind in (Kind.LAYER, Kind.OUTPUT, Kind.SOFTMAX):
            links.append(ChainLink(current.module, act, tuple(via)))
            if node.kind is not Kind.LAYER:
                break
            current, act, via = node, None, []
        elif node.kind is Kind.ACTIVATION and act is None and node.activation[0] != "measured":  # type: ignore[index]
            act = node.activation
        elif node.kind is Kind.DROPOUT or (node.kind is Kind.RESHAPE and node.params.get("layout")):
            continue
        elif node.kind is Kind.RESHAPE or (node.kind is Kind.POOL and "Average" in node.op):
            via.append(node.op)
        else:
            return None
    if len(links) != len(layers):
        return None
    for k, link in enumerate(links[:-1]):  # only a CNN's head link crosses pools and a flatten
        if link.via and not (n_conv and k + 1 == n_conv and kinds[k + 1] == "dense"):
            return None
    if links[-1].via:
        return None
    return links


def _torch_twin(layer: Any) -> nn.Module:
    """A meta-device torch layer with ``layer``'s channels, kernel and strides, for the torch rule."""
    kernel = layer.kernel.shape
    if _kind(layer) == "dense":
        return nn.Linear(kernel[0], kernel[1], device="meta")
    conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[len(layer.kernel_size) - 1]
    return conv(kernel[-2], kernel[-1], tuple(layer.kernel_size), stride=tuple(layer.strides), device="meta")


def chain_roles(kg: KerasGraph, links: list[ChainLink]) -> dict[str, ChainRole] | None:
    """The isometric role of each layer of a plain chain (:func:`initlab.model.chain.plan_chain`'s rule:
    :func:`initlab.theory.isometric_point` per link, looks-linear where the activation's odd part is
    linear and the width even, else orthogonal at the near-critical point; delta kernels for convs;
    a bias that centres ``phi(0)`` after a sigmoid), or ``None`` when a link cannot be planned (an
    activation the theory refuses, a sigmoid link into a layer without a bias)."""
    from initlab.theory import isometric_point

    layers = [kg.calls[link.module].layer for link in links]
    points: list[Any] = []
    for k, link in enumerate(links):
        if link.activation is None or link.activation[0] in _LINEAR:
            points.append(None)
            continue
        name, param = link.activation
        last = k + 1 == len(links)
        try:
            pt = isometric_point(name, param=param)
            if pt.kind == "looks_linear" and (last or layers[k].kernel.shape[-1] % 2):
                pt = isometric_point(name, param=param, looks_linear=False, near_critical=not last)
        except (InitlabError, TypeError):
            return None
        if pt.shift != 0.0 and not last and getattr(layers[k + 1], "bias", None) is None:
            return None
        points.append(pt)
    roles = {}
    for k, link in enumerate(links):
        role = _chain_role(_torch_twin(layers[k]), points[k - 1] if k else None, points[k])
        if k and links[k - 1].via:
            note = f"{role.note}; reads {' -> '.join(links[k - 1].via)}"
            role = ChainRole(role.spec, role.gain, role.shift, note, role.scheme)
        roles[link.module] = role
    return roles
