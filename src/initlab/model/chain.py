"""The isometric rule for plain MLPs and CNNs: which models are plain chains (:func:`plain_chain`)
and the looks-linear or orthogonal weights (delta kernels for convs) that start them at dynamical
isometry (:func:`plan_chain`); and the depth-aware targets of a CNN with tanh-like links, which
``"auto"`` solves by propagation instead (:func:`conv_chain_targets`)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from initlab import schemes
from initlab.errors import InitlabError, outside_stacklevel
from initlab.model.classify import LINEAR
from initlab.model.found import Found


@dataclass(frozen=True)
class ChainRole:
    """What the isometric rule gives one Linear of a plain chain (see :func:`plan_chain`)."""

    spec: schemes.Spec
    gain: float  # the block's gain before the semi-orthogonal correction
    shift: float  # phi(0) of the activation the layer reads: the bias subtracts shift * W 1
    note: str
    scheme: str = "orthogonal"  # the plan row's label: orthogonal, looks_linear, delta_orthogonal
    unmirrored: tuple[int, str] | None = None  # (outputs, activation): an odd width left unmirrored


_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _chain_layer(m: nn.Module) -> bool:
    """``m`` can be a layer of a plain chain: an ``nn.Linear``, or a ``Conv1d/2d/3d`` with
    ``groups=1`` and odd kernel sizes (a centre tap exists; any stride, padding, dilation)."""
    if type(m) is nn.Linear:
        return True
    return type(m) in _CONVS and m.groups == 1 and all(k % 2 for k in m.kernel_size)


def _dims(m: nn.Module) -> tuple[int, int]:
    """``(rows, cols)`` of the matrix the isometric rule draws: a Linear's ``(out, in)`` features, a
    conv's ``(out, in)`` channels (its centre tap)."""
    return (m.out_features, m.in_features) if type(m) is nn.Linear else (m.out_channels, m.in_channels)


def _links_fit(modules: dict[str, nn.Module], chain: list[str], found: dict[str, Found]) -> bool:
    """The layers of ``chain`` fit one of the two plain shapes: all Linear, linked by activations
    alone; or convs linked by activations alone, then at most one Linear head whose link crosses
    average pools and a flatten (``next_via``: a per-channel average keeps mirrored channels
    mirrored, and a channel-major flatten keeps them in the halves of the head's input)."""
    convs = [type(modules[q]) is not nn.Linear for q in chain]
    n = sum(convs)
    if n == 0:
        return not any(found[q].next_via for q in chain)
    if not all(convs[:n]) or len(chain) - n > 1:
        return False
    return all(bool(found[q].next_via) == (k + 1 == n) for k, q in enumerate(chain[:-1]))


def plain_chain(model: nn.Module, found: dict[str, Found], method: str) -> list[str] | None:
    """The layers of ``model`` in data-flow order when the model is a *plain chain*, else
    ``None``: every module with parameters is an ``nn.Linear`` or a ``Conv1d/2d/3d`` with
    ``groups=1`` and odd kernel sizes, called once, no weight tied, and the layers form one path
    ``L0 -> phi -> L1 -> phi -> ... -> Ln`` of private links
    (:func:`initlab.model.found.from_graph`: nothing but
    dropout or ``Identity`` between them), ``n >= 1``, the first layer reading the model's only
    input (a ``Flatten`` / ``view`` before it is fine) and the last writing its output (a softmax
    after it is fine); only fx sees the links. A plain CNN is convs, then at most one Linear head,
    whose link may also cross average pools (``AvgPool``, ``AdaptiveAvgPool``, ``x.mean(dims)``)
    and a flatten (:func:`_links_fit`); max pools, norms, residual adds, grouped or transposed
    convs and even kernels make no chain."""
    if method != "fx":
        return None
    names = []
    for q, m in model.named_modules():
        own = dict(m.named_parameters(recurse=False))
        if not own:
            continue
        if not _chain_layer(m) or q not in found or not {"weight"} <= set(own) <= {"weight", "bias"}:
            return None
        names.append(q)
    ids = [id(p) for p in model.parameters()]
    if len(ids) != len(list(model.named_parameters(remove_duplicate=False))):
        return None  # a tied weight: one matrix in two places cannot be mirrored both ways
    if len(names) < 2:
        return None
    nxt = {q: found[q].next_layer for q in names}
    targets = [t for t in nxt.values() if t is not None]
    if len(targets) != len(names) - 1 or len(set(targets)) != len(targets) or not set(targets) <= set(names):
        return None
    start = [q for q in names if q not in set(targets)]
    if len(start) != 1 or not found[start[0]].reads_input:
        return None
    chain = [start[0]]
    while nxt[chain[-1]] is not None:
        chain.append(nxt[chain[-1]])
    if len(chain) != len(names) or not found[chain[-1]].writes_output:
        return None
    return chain if _links_fit(dict(model.named_modules()), chain, found) else None


#: Under ``"auto"`` the hidden layers of a plain CNN whose links are not looks-linear (tanh, softsign,
#: SELU, ...) get iid weights on every tap by the propagated variance rule, each targeting the
#: pre-activation second moment ``q*`` of :func:`initlab.theory.depth_point` for the chain's depth, not
#: the isometric chain's delta kernels. Measured on ``zoo.plain_cnn``, tanh, 32 channels, Fashion-MNIST,
#: SGD lr 0.005 (times 32/depth beyond 32 layers), 500 steps, steps to 75 % test accuracy and final
#: accuracy (``benchmarks/time_to_accuracy_arch.py``): delta kernels at the near-critical point
#: (q* = 0.11) never reached 75 % at depth 8 / 32 / 64 / 128 (median final 0.646 / 0.740 / 0.747 /
#: 0.746, 3 seeds), and not at chi_1 = 1.09 or q* = 1 at depth 8 either (0.71-0.72): a delta kernel
#: starts every conv as a 1x1 one. iid taps: at q = 1 (the variance rule), 60 / 80 steps at depth 8
#: and 140 / 100 at 32 (seeds 0 / 1), but never at 64 (0.69 / 0.64: chi_1(1)^64 = 3.5e4); at
#: q = 0.111, 360 / 160 at depth 8 (0.77 / 0.81), 140 / 100 at 32, 120 / 40 at 64 (0.82 / 0.84), 120 /
#: 40 at 128 (0.83 / 0.84). This rule (seeds 0 / 1 / 2): depth 8 (q* = 1) 60 / 80 / 80, 32 (0.31) 60 / 60 /
#: 120, 64 (0.19) 80 / 60 / 60, 128 (0.12) 80 / 40 / 80, median final 0.830 / 0.844 / 0.840 / 0.832; LSUV
#: and He fan_out did not reach 75 % at 64 or 128 (median final 0.600 / 0.136, 0.698 / 0.573).
CONV_DEPTH_NOTE = ("plain CNN with {act} links: iid weights on every tap (the variance rule) at the "
                   "pre-activation q*={q} of its {depth} links (chi_1={chi}, "
                   "initlab.theory.depth_point), not delta kernels (initlab.model.chain.CONV_DEPTH_NOTE)")


def conv_depth_targets(convs: list[bool], points: list[Any], unmirrored: Sequence[int],
                       ) -> tuple[dict[int, float], str] | None:
    """The targets ``{position in the chain: q*}`` of a plain CNN's hidden layers under
    :data:`CONV_DEPTH_NOTE`'s rule, with the plan note; ``None`` where the isometric chain keeps the
    model (:func:`plan_chain`): no conv; a link between two layers that is looks-linear, or ReLU-like
    and left unmirrored for an odd width (in ``unmirrored``) — a mixed chain keeps its looks-linear
    links exact, which the variance rule would not (a ReLU CNN-64 under it measured q 0.001-0.5
    against 1); a link whose activation is not 0 at 0 (sigmoid: only the isometric chain's bias
    centres it); or an activation for which no ``q* <= 1`` keeps ``chi_1^L <= 4``
    (:func:`initlab.theory.depth_point` raises: tanhshrink).

    ``convs[k]`` says whether layer ``k`` of the chain is a conv, ``points[k]`` is the
    :class:`~initlab.theory.IsometricPoint` of the link after it (``None``: no activation). The
    layer before each link targets :func:`initlab.theory.depth_point` of that link's activation,
    ``L`` the number of links; the last layer (the head) targets 1. Shared by the torch and Keras
    front ends.
    """
    from initlab.theory import depth_point

    if not any(convs):
        return None
    links = [k for k, pt in enumerate(points[:-1]) if pt is not None]
    bent = [k for k in links if points[k].kind != "looks_linear" and k not in unmirrored]
    if not bent or len(bent) != len(links) or any(points[k].shift != 0.0 for k in bent):
        return None
    depth = len(bent)
    by_act: dict[tuple[str, float | None], Any] = {}
    try:
        for k in bent:
            key = (points[k].activation, points[k].param)
            if key not in by_act:
                by_act[key] = depth_point(key[0], depth, param=key[1])
    except InitlabError:
        return None
    targets = {k: by_act[(points[k].activation, points[k].param)].q_star for k in bent}
    many = len(by_act) > 1

    def each(fmt: str, attr: str) -> str:
        return ", ".join(format(getattr(p, attr), fmt) + (f" ({p.activation})" if many else "")
                         for p in by_act.values())

    acts = ", ".join(dict.fromkeys(p.activation for p in by_act.values()))
    return targets, CONV_DEPTH_NOTE.format(act=acts, q=each(".3g", "q_star"), depth=depth,
                                           chi=each(".4g", "chi_1"))


def conv_chain_targets(model: nn.Module, chain: list[str], found: dict[str, Found],
                       ) -> tuple[dict[str, float], str] | None:
    """:func:`conv_depth_targets` for the torch front end's plain chain ``chain``: ``({layer name:
    q*}, note)`` or ``None``."""
    modules = dict(model.named_modules())
    planned = _link_points(modules, chain, found)
    if planned is None:
        return None
    out = conv_depth_targets([type(modules[q]) is not nn.Linear for q in chain], *planned)
    return None if out is None else ({chain[k]: q for k, q in out[0].items()}, out[1])


def plan_chain(model: nn.Module, chain: list[str], found: dict[str, Found]) -> dict[str, ChainRole] | None:
    """The isometric rule for a plain chain (:func:`initlab.theory.isometric_point` per link):
    what ``scheme="auto"`` gives a plain MLP or CNN (:func:`plain_chain`), link by link.

    A link is the activation between ``chain[k]`` and ``chain[k + 1]``; the last layer's consuming
    activation (if any) is a link without a next layer.

    * A link whose activation has a linear odd part, :math:`\\phi(u) - \\phi(-u) = c\\,u` (ReLU,
      leaky ReLU, GELU, SiLU, softplus, hardswish), is **looks-linear** (Balduzzi et al. 2017): the
      layer before it has mirrored rows :math:`[A; -A]`, the layer after it mirrored columns
      :math:`[B, -B]` (both: :math:`[[B, -B], [-B, B]]`), ``A``, ``B`` orthogonal, so
      :math:`B(\\phi(Au) - \\phi(-Au)) = c\\,BAu`: the network is an orthogonal linear map at init
      (with dropout off, i.e. in eval mode), and the first gradient step breaks the mirror
      (:math:`\\phi'(u) \\ne \\phi'(-u)`).
    * Any other link (tanh, sigmoid, SELU, ELU, ...) is **orthogonal at its near-critical point**:
      the smallest ``q*`` where :math:`\\chi_1 = 1.01` at zero bias, :math:`\\sigma_w^2 = q^* /
      \\mathbb{E}[\\psi(\\sqrt{q^*} z)^2]` with :math:`\\psi = \\phi - \\phi(0)` (tanh: ``q* = 0.11``,
      ``sigma_w2 = 1.21``; Pennington et al. 2017); the layer after a sigmoid (any
      :math:`\\phi(0) \\ne 0`) gets the bias :math:`b = -\\phi(0)\\,W\\mathbf{1}`
      (:class:`CenteringBias`), so it reads :math:`\\psi`, not a constant 0.5 that makes every input
      look alike.
    * Each layer's block gain is :math:`\\sqrt{q_{out} / V_{in}}`: it reads ``V_in`` per unit (1 for
      the data, assumed standardised; :math:`c^2 q` from a mirrored link; :math:`q^*/\\sigma_w^2`
      otherwise) and writes the next link's ``q``; a head (no activation after it) has gain 1, or
      ``1/c`` after a mirrored link (so the whole network is orthogonal). The logits then start
      at the last link's scale, below 1 after a near-critical link (tanh ``q* = 0.11``: logits std
      about 0.3): a head scaled to unit logits trained slower at depth 50 on Fashion-MNIST (SELU
      did not reach 80 % in 1 epoch, 3 seeds; tanh 100 steps against 80). Blocks that expand
      (rows > cols) are scaled by :math:`\\sqrt{rows/cols}` so each unit keeps the variance.
    * A link that cannot be mirrored (odd width; the model's last activation) takes the
      near-critical point, or for the last activation the variance point ``q = 1``; an odd width
      is noted on the role (``unmirrored``), and :func:`initlab.init_model` warns for the layers it
      planned so (:func:`warn_unmirrored`; not for one a rule gives another scheme).
    * A conv (a plain CNN) gets a **delta kernel** (Xiao et al. 2018; :class:`~initlab.schemes.Delta`):
      zero but the spatial centre tap, which holds the block a Linear with ``(rows, cols) =
      (out_channels, in_channels)`` gets (orthogonal, delta-orthogonal at the near-critical point;
      or mirrored channels, looks-linear). Not for a CNN with tanh-like links (not looks-linear,
      ``phi(0) = 0``): ``"auto"`` does not call this for it but solves iid kernels at the depth-aware
      ``q*`` (:data:`CONV_DEPTH_NOTE`, :func:`conv_chain_targets`), which trained far faster.
      At every output position the conv is then the Linear
      of its centre tap applied to one input position (dilation does not move the centre), so
      the rule above holds position by position. Channel changes are the Linear's semi-orthogonal
      blocks: more channels, orthonormal columns scaled by :math:`\\sqrt{rows/cols}`; fewer,
      orthonormal rows (a projection: the per-channel second moment is kept on average over the
      draw, not for every input). A stride ``s`` keeps every ``s``-th position, each at its norm:
      the per-position second moment is kept, the positions skipped are dropped (so the Jacobian
      has zero singular values for them). The head (a Linear after the last conv) reads the last
      link through average pools and a channel-major flatten, per-channel linear maps that keep
      mirrored channels in the two halves of its input, and gets the Linear head's gain.
      Why delta kernels and not orthogonal kernels with every tap set
      (:class:`~initlab.schemes.ConvOrthogonal`; isometric at every spatial frequency under
      circular padding), measured on ``zoo.plain_cnn``, ReLU, Fashion-MNIST, SGD lr 0.005, seed 0,
      test accuracy: depth 32, zero padding, 300 steps: 0.81 against 0.78; but depth 128, zero
      padding: 0.10 after 500 steps (delta: 0.62), since the spread taps lose energy across the
      border at every layer (a 32-layer width-16 ReLU net on 8x8 inputs has Jacobian singular
      values of median 0.15, against all 1.41 with delta kernels); and depth 32 with circular
      padding, where they are exactly isometric: 0.41 at step 20 (delta: 0.30), then a collapse
      to 0.10 by step 220 (delta: 0.73 at step 300).

    Biases are zero except the centring ones. Why: a deep plain network trains fast only near
    :math:`\\chi_1 = 1` with a well-conditioned Jacobian; He/Glorot keep the forward variance but not
    that (``benchmarks/time_to_accuracy.py``: at depth 50 "auto" reaches 80 % on Fashion-MNIST for
    tanh, ReLU, GELU, SELU and sigmoid; He, Glorot and LSUV for at most two of them).

    Returns ``None`` (the caller falls back to the propagation of ``"variance"``) when a link cannot
    be planned: an activation whose parameters detection could not read (an asymmetric
    ``Hardtanh``), or a layer after an activation with ``phi(0) != 0`` (sigmoid) that has no bias
    to centre it with.
    """
    modules = dict(model.named_modules())
    planned = _link_points(modules, chain, found)
    if planned is None:
        return None
    points, unmirrored = planned
    roles = {q: chain_role(modules[q], points[k - 1] if k > 0 else None, points[k])
             for k, q in enumerate(chain)}
    for k in unmirrored:
        q = chain[k]
        note = unmirrored_note(_dims(modules[q])[0], points[k])
        roles[q] = replace(roles[q], note=f"{roles[q].note}; {note}",
                           unmirrored=(_dims(modules[q])[0], points[k].activation))
    for before, q in zip(chain, chain[1:], strict=False):  # the head of a CNN: say what its link averages
        if found[before].next_via:
            roles[q] = replace(roles[q], note=f"{roles[q].note}; reads {' -> '.join(found[before].next_via)}")
    return roles


def _link_points(
    modules: dict[str, nn.Module], chain: list[str], found: dict[str, Found]
) -> tuple[list[Any], list[int]] | None:
    """The isometric point of the link after each layer of ``chain`` (``None``: no activation) and
    the positions of the looks-linear links left unmirrored for an odd width; ``None`` when a link
    cannot be planned."""
    from initlab.theory import isometric_point

    cache: dict[tuple, Any] = {}

    def point(act: str, param: float | None, **kw: bool) -> Any:
        key = (act, param, tuple(sorted(kw.items())))
        if key not in cache:
            cache[key] = isometric_point(act, param=param, **kw)
        return cache[key]

    points: list[Any] = []
    unmirrored: list[int] = []
    for k, q in enumerate(chain):
        f = found[q]
        if f.activation in LINEAR:
            points.append(None)
            continue
        if f.activation == "hardtanh" and f.param is None:  # asymmetric bounds: not in the table
            return None
        try:
            pt = point(f.activation, f.param)
        except (InitlabError, TypeError):
            return None
        last = k + 1 == len(chain)
        if pt.kind == "looks_linear" and (last or _dims(modules[q])[0] % 2):
            # the model's output (keep q = 1, the chain's scale) or an odd width (near-critical)
            pt = point(pt.activation, pt.param, looks_linear=False, near_critical=not last)
            if not last:
                unmirrored.append(k)
        if pt.shift != 0.0 and not last and modules[chain[k + 1]].bias is None:
            return None
        points.append(pt)
    return points, unmirrored


class UnmirroredWarning(UserWarning):
    """A ReLU-like link of a plain chain under ``"auto"`` is not looks-linear because its layer has
    an odd number of outputs (:func:`plan_chain`)."""


def warn_unmirrored(layers: list[tuple[str, int, str]]) -> None:
    """Warn (:class:`UnmirroredWarning`, at the caller's line outside initlab) that the ReLU-like
    links after ``layers`` — ``(name, outputs, activation)`` each — are not looks-linear, and why."""
    which = ", ".join(f"{name!r} ({n} outputs, then {act})" for name, n, act in layers)
    warnings.warn(f"auto: {which}: an odd number of outputs, so the activation after it is not "
                  "looks-linear (orthogonal at its near-critical point instead, not an exact isometry): "
                  "use an even width for the looks-linear start", UnmirroredWarning,
                  stacklevel=outside_stacklevel())


def unmirrored_note(width: int, point: Any) -> str:
    """The plan note of a layer whose ReLU-like output link is not looks-linear for its odd
    ``width`` (units of a Linear, channels of a conv; looks-linear pairs each with its mirror),
    with the fix."""
    return (f"{width} outputs, an odd number, so its {point.activation} is not mirrored (looks-linear "
            "pairs each unit or channel with its mirror; an even number keeps the link looks-linear)")


def chain_role(m: nn.Module, before: Any, after: Any) -> ChainRole:
    r"""The isometric rule for one Linear or conv ``m`` of a plain chain, between the links
    ``before`` and ``after`` (:class:`~initlab.theory.IsometricPoint`\ s, or ``None`` for the data
    and for the head); shared by the torch and Keras front ends.

    The block gain is :math:`g = \sqrt{q^*_{after} / V_{in}}` with :math:`V_{in}` = 1 (the data),
    :math:`c^2 q^*` (after a mirrored link of odd slope ``c``) or :math:`q^* / \sigma_w^2`; a head
    gets 1, or ``1/c`` after a mirrored link. The block is looks-linear on the mirrored sides
    (:class:`~initlab.schemes.LooksLinear`), else orthogonal, times :math:`\sqrt{\max(r, c)/c}` for an
    expanding ``(r, c)`` block; a conv (weight ``(out, in, *k)``) gets it as the centre tap of a
    delta kernel (:class:`~initlab.schemes.Delta`).

    Returns:
        the :class:`ChainRole` (spec, gain, the centring shift of ``before``, the note, the label).

    Source: Pennington, Schoenholz & Ganguli (2017); Balduzzi et al. (2017); Xiao et al. (2018).
    """
    rows, cols = _dims(m)
    cols_m = before is not None and before.kind == "looks_linear"
    rows_m = after is not None and after.kind == "looks_linear"
    if before is None:
        v_in = 1.0
    elif cols_m:
        v_in = before.odd_slope ** 2 * before.q_star
    else:
        v_in = before.q_star / before.sigma_w2
    if after is not None:
        g = math.sqrt(after.q_star / v_in)
    else:  # the head: gain 1, or undo the mirrored link's slope c (orthogonal: see plan_chain)
        g = 1.0 / before.odd_slope if cols_m else 1.0
    rb, cb = (rows // 2 if rows_m else rows), (cols // 2 if cols_m else cols)
    g_block = g * math.sqrt(max(rb, cb) / cb) if cb else g
    spec: schemes.Spec = (schemes.LooksLinear(g_block, rows_m, cols_m) if rows_m or cols_m
                          else schemes.Orthogonal(g_block))
    label = "looks_linear" if rows_m or cols_m else "orthogonal"
    bits = []
    if after is not None:
        bits.append(f"{after.kind.replace('_', '-')} {after.activation}: q*={after.q_star:.3g}, "
                    f"chi_1={after.chi_1:.3g}")
    if before is not None and before.shift != 0.0:
        bits.append(f"bias centres {before.activation}(0)={before.shift:.3g}")
    if type(m) is not nn.Linear:  # a strided delta conv keeps every s-th position, each at its norm
        spec, label = schemes.Delta(spec), "delta_orthogonal" if label == "orthogonal" else label
        strided = any(s > 1 for s in m.stride)
        bits.append("delta kernel" + (f", stride {'x'.join(map(str, m.stride))}" if strided else ""))
    return ChainRole(spec, g, before.shift if before is not None else 0.0,
                     "isometric chain" + (": " + "; ".join(bits) if bits else ""), label)


class CenteringBias:
    """Bias fill ``b = -shift * W 1``: the layer then reads ``phi - phi(0)`` (a sigmoid's 0.5
    taken out), which passes through the origin; drawn after the layer's weight."""

    def __init__(self, weight: torch.Tensor, shift: float) -> None:
        self.weight, self.shift = weight, shift

    def __call__(self, tensor: torch.Tensor, generator: Any) -> None:
        # a conv's W 1 sums its input channels and taps (a delta kernel: the centre tap's rows)
        tensor.copy_(-self.shift * self.weight.detach().flatten(1).sum(dim=1))
