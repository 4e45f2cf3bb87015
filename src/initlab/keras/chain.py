"""The isometric rule of ``"auto"`` for plain Keras MLPs and CNNs: which models are plain chains
(:func:`plain_chain`) and the looks-linear or near-critical orthogonal kernels (delta kernels for
convs) that start them at dynamical isometry (:func:`chain_roles`) — the torch front end's rule
(:func:`initlab.model.chain.plan_chain`), link by link the same numbers. Keras's ``Flatten`` is
position-major where torch's is channel-major, so a Dense head behind it takes the torch twin's columns
in the ``Flatten``'s order (:func:`head_orders`): the mirrored channel halves stay paired."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from initlab.errors import InitlabError
from initlab.graph import Graph, Kind, Node
from initlab.keras.graph import KerasGraph
from initlab.model.chain import ChainRole, chain_role, conv_depth_targets, unmirrored_note, warn_unmirrored

__all__ = ["ChainLink", "plain_chain", "chain_roles", "chain_targets", "head_orders"]

_LINEAR = (None, "linear", "identity")


@dataclass(frozen=True)
class ChainLink:
    """One layer of a plain chain: its graph ``module`` key, the activation after it (``None``: none),
    whether its link to the next layer crosses average pools and a flatten (a CNN's head link), and
    ``flatten``: ``(channels, positions)`` of a position-major flatten on that link (Keras's ``Flatten``,
    or a ``Reshape`` of channels-last data, of more than one position), else ``None``."""

    module: str
    activation: tuple[str, float | None] | None
    via: tuple[str, ...] = ()
    flatten: tuple[int, int] | None = None


#: Keras ops that keep every feature where it is: a link may cross them anywhere.
_ELEMENTWISE = frozenset({"Identity"})
#: Reshapes before the first layer, and on a conv chain's link into its Dense head (to ``(N, features)``).
_FLATTENS = frozenset({"Flatten", "Reshape", "Squeeze"})


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


def _passes(node: Node) -> bool:
    """``node`` keeps every feature where it is (dropout, a layout reshape, ``Identity``), or makes the data
    (a preprocessing layer on the input: :func:`initlab.keras.graph.keras_graph`)."""
    return node.kind is Kind.DROPOUT or (node.kind is Kind.RESHAPE and (
        bool(node.params.get("layout") or node.params.get("data")) or node.op in _ELEMENTWISE))


def _flatten(kg: KerasGraph, node: Node) -> tuple[int, int] | None | bool:
    """A head link's reshape ``node``: ``(channels, positions)`` when it flattens several positions
    position-major, ``None`` when it keeps torch's channel-major order, ``False`` when it is not a
    flatten to ``(N, features)``. A ``Reshape`` reads the memory order: channel-major only for
    channels-first tensors (:attr:`~initlab.keras.graph.KerasGraph.channels_first`); Keras's ``Flatten``
    moves channels last first when its ``data_format`` is ``"channels_first"``, so it is channel-major
    only on channels-first tensors it takes for channels-last."""
    x = kg.graph[node.inputs[0]].shape if node.inputs else None
    if node.op not in _FLATTENS or node.shape is None or len(node.shape) != 2 or x is None:
        return False
    positions = math.prod(x[2:]) if len(x) >= 3 else 1
    if positions == 1:
        return None
    if node.op == "Flatten":
        position_major = not kg.channels_first or node.params.get("data_format") == "channels_first"
    else:
        position_major = not kg.channels_first
    return (int(x[1]), int(positions)) if position_major else None


def plain_chain(kg: KerasGraph, planned: set[str]) -> list[ChainLink] | None:
    """The layers of a *plain chain* in order, else ``None``: one path input -> (flatten) -> L0 -> phi ->
    L1 -> ... -> Ln (-> phi) (-> softmax) -> output with only dropout and ``Identity`` besides, every
    weighted layer (``planned``: the layers the plan decides) a ``Dense`` or a ``ConvND`` with ``groups=1``
    and odd kernels called once, at least two, every link but the last through one activation; a CNN is
    convs, then at most one Dense head whose link may cross average pools and a flatten after its
    activation, the head reading ``(N, features)`` (as :func:`initlab.model.chain.plain_chain` for
    torch; a position-major flatten is recorded in :attr:`ChainLink.flatten`)."""
    g = kg.graph
    path = _path(g)
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
    if not all(_passes(n) or (n.kind is Kind.RESHAPE and n.op in _FLATTENS) for n in path[1:start]):
        return None  # the first layer reads the model's input (through a flatten at most)
    links: list[ChainLink] = []
    current, act, via, flat = layers[0], None, [], None
    for node in path[start + 1:]:
        if node.kind in (Kind.LAYER, Kind.OUTPUT, Kind.SOFTMAX):
            x = g[node.inputs[0]].shape if node.inputs else None
            if via and node.kind is Kind.LAYER and (x is None or len(x) != 2):
                return None  # the head reads (N, features), as torch's private link
            links.append(ChainLink(current.module, act, tuple(via), flat))
            if node.kind is not Kind.LAYER:
                break
            current, act, via, flat = node, None, [], None
        elif _passes(node):
            continue
        elif node.kind is Kind.ACTIVATION and act is None and node.activation[0] != "measured":  # type: ignore[index]
            act = node.activation
        elif act is not None and node.kind is Kind.POOL and "Average" in node.op:
            via.append(node.op)
        elif act is not None and node.kind is Kind.RESHAPE:
            order = _flatten(kg, node)
            if order is False or (order is not None and flat is not None):
                return None
            flat = flat or order  # type: ignore[assignment]
            via.append(node.op)
        else:
            return None
    if len(links) != len(layers) or any(link.activation is None for link in links[:-1]):
        return None  # torch's private link: -> phi -> between every two layers
    for k, link in enumerate(links[:-1]):  # only a CNN's head link crosses pools and a flatten
        if link.via and not (n_conv and k + 1 == n_conv and kinds[k + 1] == "dense"):
            return None
    if links[-1].via:
        return None
    return links


def head_orders(kg: KerasGraph, links: list[ChainLink]) -> dict[str, np.ndarray]:
    """Module key of a chain's Dense head -> the order of its kernel's rows, where its link crosses a
    position-major flatten of ``C`` channels at ``P`` positions: the head is drawn as the torch twin reading
    a channel-major flatten (its mirrored input halves are the mirrored channel halves), and Keras row
    ``j = p C + c`` takes the twin's column ``order[j] = c P + p``.

    >>> head_orders(None, [ChainLink("conv", ("relu", None), ("Flatten",), (2, 3)), ChainLink("head", None)])
    {'head': array([0, 3, 1, 4, 2, 5])}
    """
    out = {}
    for link, nxt in zip(links, links[1:], strict=False):
        if link.flatten is not None:
            channels, positions = link.flatten
            j = np.arange(channels * positions)
            out[nxt.module] = (j % channels) * positions + j // channels
    return out


def _torch_twin(layer: Any) -> nn.Module:
    """A meta-device torch layer with ``layer``'s channels, kernel and strides, for the torch rule."""
    kernel = layer.kernel.shape
    if _kind(layer) == "dense":
        return nn.Linear(kernel[0], kernel[1], device="meta")
    conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[len(layer.kernel_size) - 1]
    return conv(kernel[-2], kernel[-1], tuple(layer.kernel_size), stride=tuple(layer.strides), device="meta")


def _link_points(kg: KerasGraph, links: list[ChainLink]) -> tuple[list[Any], list[Any], set[int]] | None:
    """The chain's layers, the :func:`~initlab.theory.isometric_point` of the link after each
    (``None``: no activation) and the positions left unmirrored for an odd width; ``None`` when a link
    cannot be planned (the torch front end's ``initlab.model.chain._link_points``)."""
    from initlab.theory import isometric_point

    layers = [kg.calls[link.module].layer for link in links]
    points: list[Any] = []
    unmirrored: set[int] = set()
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
                if not last:
                    unmirrored.add(k)
        except (InitlabError, TypeError):
            return None
        if pt.shift != 0.0 and not last and getattr(layers[k + 1], "bias", None) is None:
            return None
        points.append(pt)
    return layers, points, unmirrored


def chain_targets(kg: KerasGraph, links: list[ChainLink]) -> tuple[dict[str, float], str] | None:
    """``({module key: q*}, note)`` for a plain CNN whose links are not looks-linear (the torch front
    end's rule, :func:`initlab.model.chain.conv_depth_targets`: its hidden kernels are solved by the
    propagated variance rule at the depth-aware ``q*``), or ``None``: the isometric chain decides."""
    planned = _link_points(kg, links)
    if planned is None:
        return None
    layers, points, unmirrored = planned
    out = conv_depth_targets([_kind(layer) != "dense" for layer in layers], points, sorted(unmirrored))
    return None if out is None else ({links[k].module: q for k, q in out[0].items()}, out[1])


def chain_roles(kg: KerasGraph, links: list[ChainLink]) -> dict[str, ChainRole] | None:
    """The isometric role of each layer of a plain chain (:func:`initlab.model.chain.plan_chain`'s rule:
    :func:`initlab.theory.isometric_point` per link, looks-linear where the activation's odd part is
    linear and the width even, else orthogonal at the near-critical point; delta kernels for convs;
    a bias that centres ``phi(0)`` after a sigmoid), or ``None`` when a link cannot be planned (an
    activation the theory refuses, a sigmoid link into a layer without a bias)."""
    planned = _link_points(kg, links)
    if planned is None:
        return None
    layers, points, unmirrored = planned
    if unmirrored:
        warn_unmirrored([(links[k].module, layers[k].kernel.shape[-1], points[k].activation)
                         for k in sorted(unmirrored)])
    roles = {}
    for k, link in enumerate(links):
        role = chain_role(_torch_twin(layers[k]), points[k - 1] if k else None, points[k])
        if k in unmirrored:
            note = f"{role.note}; {unmirrored_note(layers[k].kernel.shape[-1], points[k])}"
            role = ChainRole(role.spec, role.gain, role.shift, note, role.scheme)
        if k and links[k - 1].via:
            note = f"{role.note}; reads {' -> '.join(links[k - 1].via)}"
            role = ChainRole(role.spec, role.gain, role.shift, note, role.scheme)
        roles[link.module] = role
    return roles
