"""The schemes :func:`initlab.init_model` accepts, one :class:`Policy` each (the weight and bias
specs of a layer from its fans and activation), and the :class:`SchemeContext` handlers read."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch import nn

from initlab import schemes
from initlab.errors import InitlabError
from initlab.fans import Fans
from initlab.model.classify import LINEAR

if TYPE_CHECKING:
    from initlab.model.chain import ChainRole
    from initlab.model.found import Found
    from initlab.model.propagation import LayerScale, PropagationPlan

#: Activations that get He (fan_in) under ``"auto"``.
RELU_FAMILY: frozenset[str] = frozenset({"relu", "leaky_relu", "prelu", "rrelu", "relu6"})

#: The residual-family schemes (:mod:`initlab.model.residual_family`): their planners decide the
#: layers the graph shows; the per-layer rule decides the rest.
FAMILY_SCHEMES = ("fixup", "skipinit", "rezero", "gpt2", "t_fixup", "deepnorm")

_EXTRA_SCHEMES = ("auto", "variance", "critical", *FAMILY_SCHEMES)

#: Every scheme name :func:`initlab.init_model` accepts.
SCHEMES: tuple[str, ...] = tuple(sorted(set(schemes.NAMED_SCHEMES) | set(_EXTRA_SCHEMES)))

#: Positively homogeneous activations: their critical point exists only at sigma_b2 = 0.
_HOMOGENEOUS = frozenset({"linear", "identity", "relu", "leaky_relu", "prelu"})


class NoCriticalPoint(InitlabError):
    """``scheme="critical"`` met an activation without a (stable) critical point at sigma_b2 = 0."""


#: ``(ctx, fans, activation, param, unit_input) -> (label, spec, gain)`` of a weight block.
WeightPolicy = Callable[..., tuple[str, schemes.Spec, float]]
#: ``(ctx, activation, param) -> (label, spec)`` of a bias.
BiasPolicy = Callable[..., tuple[str, schemes.Spec]]


@dataclass(frozen=True)
class Policy:
    """How one scheme decides a layer's weight (per block) and its bias."""

    weight: WeightPolicy
    bias: BiasPolicy


def _per_layer_weight(
    ctx: SchemeContext, fans: Fans, act: str | None, param: float | None, unit_input: bool
) -> tuple[str, schemes.Spec, float]:
    """``"auto"`` and ``"variance"`` where the graph cannot be traced (or does not have the layer):
    the per-layer rule, activation -> scheme, with the gain ``g`` of :func:`initlab.gains.gain`
    (``criterion="forward"``, :math:`g = \\mathbb{E}[\\phi(z)^2]^{-1/2}`, :math:`z \\sim N(0, 1)`,
    so it exists for every activation, not only torch's list):

    * ReLU family (``relu``, ``leaky_relu``, ``prelu``, ``relu6``): He normal,
      :math:`\\sigma = g / \\sqrt{fan_{in}}` (He et al. 2015);
    * ``selu``: LeCun normal, :math:`\\sigma = 1 / \\sqrt{fan_{in}}` (Klambauer et al. 2017);
    * everything else (``tanh``, ``sigmoid``, ``gelu``, ``silu``, ``elu``, ``mish``, ...): Glorot
      normal with the derived gain, :math:`\\sigma = g \\sqrt{2 / (fan_{in} + fan_{out})}` (Glorot &
      Bengio 2010);
    * no nonlinearity consumes the output (a classifier head, attention projections): Glorot
      normal, gain 1.

    The gain is that of the nonlinearity that *consumes* the layer's output (torch's
    ``calculate_gain`` convention; the named schemes use it too), with one exception: a layer whose
    input no nonlinearity produced (``unit_input``: the model's input, a norm layer's output,
    another layer's output; the plan's ``input_activation`` is ``"linear"``) gets gain 1. The
    variance argument (He et al. 2015, sec. 2.2: :math:`\\mathrm{Var}[y_l] = fan_{in}\\,
    \\mathrm{Var}[w_l]\\,\\mathbb{E}[x_l^2]`) compensates the second moment of the activation that
    *feeds* the layer; in a chain of equal activations that is the consuming one, but the first
    layer sees standardised data (:math:`\\mathbb{E}[x^2] = 1`), and the consumer's gain there would
    start the chain off the fixed point (``q_1 = g^2``).

    For square hidden layers Glorot and He coincide (and agree with the propagation), so a chain of
    equal layers keeps the pre-activation second moment at the fixed point ``q = 1`` of the variance
    map :math:`q \\mapsto g^2\\,\\mathbb{E}[\\phi(\\sqrt{q} z)^2]`. That fixed point attracts for tanh,
    sigmoid and SELU, is neutral for the ReLU family, and *repels* for GELU and SiLU (slope 1.14 and
    1.17 at ``q = 1``: :math:`\\mathbb{E}[\\phi(\\sqrt q z)^2]/q` grows with ``q``). No zero-bias
    variance-scaling init keeps a deep GELU/SiLU MLP's activation scale constant: finite-width
    fluctuations grow by ~1.14 per layer (depth 50, width 512: x8 to x18). Sigmoid is not zero-mean;
    the gain keeps the *second moment* :math:`\\mathbb{E}[\\phi(z)^2]` (mean included) at 1/g², which
    is what the next layer's pre-activation variance depends on for zero-mean weights
    (:math:`\\mathrm{Var}[\\sum_i w_i x_i] = fan_{in}\\,\\sigma_w^2\\,\\mathbb{E}[x^2]`), so its std is
    preserved too.
    """
    g = 1.0 if unit_input else ctx.gain(act, param)
    if act in RELU_FAMILY:
        return "he_normal", schemes.he_normal(fans, g), g
    if act == "selu":
        return "lecun_normal", schemes.lecun_normal(fans, 1.0), 1.0
    return "glorot_normal", schemes.glorot_normal(fans, g), g


def _named_weight(
    ctx: SchemeContext, fans: Fans, act: str | None, param: float | None, unit_input: bool
) -> tuple[str, schemes.Spec, float]:
    """A named scheme (:data:`initlab.schemes.NAMED_SCHEMES`) with the detected gain (1 when
    ``unit_input``)."""
    g = 1.0 if unit_input else ctx.gain(act, param)
    return ctx.scheme, schemes.named_spec(ctx.scheme, fans, g), g


def _critical_weight(
    ctx: SchemeContext, fans: Fans, act: str | None, param: float | None, unit_input: bool
) -> tuple[str, schemes.Spec, float]:
    """``"critical"``: :math:`N(0, \\sigma_w^2 / fan_{in})` at the edge of chaos of the activation
    (:meth:`SchemeContext.critical`; Poole et al. 2016; Schoenholz et al. 2017)."""
    cp = ctx.critical(act, param)
    return "critical", schemes.Normal(cp.sigma_w / math.sqrt(fans.fan_in)), cp.sigma_w


def _zero_bias(ctx: SchemeContext, act: str | None, param: float | None) -> tuple[str, schemes.Spec]:
    """Zero."""
    return "zeros", schemes.Constant(0.0)


def _critical_bias(ctx: SchemeContext, act: str | None, param: float | None) -> tuple[str, schemes.Spec]:
    """``"critical"``: :math:`N(0, \\sigma_b^2)` of the critical point (zero at ``sigma_b2 = 0``)."""
    cp = ctx.critical(act, param)
    return "critical", (schemes.Normal(cp.sigma_b) if cp.sigma_b2 > 0 else schemes.Constant(0.0))


_NAMED = Policy(_named_weight, _zero_bias)

#: The policies by scheme name; every other name of :data:`SCHEMES` is a named scheme.
POLICIES: dict[str, Policy] = {
    "auto": Policy(_per_layer_weight, _zero_bias),
    "variance": Policy(_per_layer_weight, _zero_bias),
    "critical": Policy(_critical_weight, _critical_bias),
    **{name: Policy(_per_layer_weight, _zero_bias) for name in FAMILY_SCHEMES},
}


def policy_for(scheme: str) -> Policy:
    """The policy of ``scheme``: :data:`POLICIES`, else the named scheme's.

    * Named schemes (:data:`initlab.schemes.NAMED_SCHEMES`: ``he_normal``, ``glorot_uniform``,
      ``lecun_normal``, ``orthogonal``, ``small``, ...) apply to every weight with the detected
      gain and zero biases.
    * ``"torch_default"`` is exactly what each module's ``reset_parameters`` samples (Linear/Conv
      ``U(±1/sqrt(fan_in))`` with torch's own fans for weight and bias, RNNs ``U(±1/sqrt(hidden))``
      everywhere, MHA ``xavier_uniform_`` on the packed weight, Embedding ``N(0, 1)``,
      transformers' ``Conv1D`` ``N(0, 0.02^2)`` and bias 0, as its ``__init__``) but from
      ``generator``; ``"keras_default"`` is Keras's (Glorot uniform on the whole kernel — a packed
      Conv1D per block, as MHA — zero bias, recurrent orthogonal, unit forget bias, Embedding
      ``U(±0.05)``). The handlers of :mod:`initlab.model.handlers` decide those per module family.
    * ``"critical"`` puts each layer at the edge of chaos of its activation,
      :func:`initlab.theory.critical_point`: weights :math:`N(0, \\sigma_w^2 / fan_{in})`, biases
      :math:`N(0, \\sigma_b^2)` (Poole et al. 2016; Schoenholz et al. 2017).
    * ``"auto"`` and ``"variance"``: the propagated scales of
      :func:`initlab.model.predict.propagation_plans`, else the per-layer rule
      (:func:`_per_layer_weight`).
    * The residual family (:data:`FAMILY_SCHEMES`: ``"fixup"``, ``"skipinit"``, ``"rezero"``,
      ``"gpt2"``, ``"t_fixup"``, ``"deepnorm"``): the scales of their planners
      (:mod:`initlab.model.residual_family`), else the per-layer rule.

    >>> policy_for("critical") is POLICIES["critical"], policy_for("he_normal").bias.__name__
    (True, '_zero_bias')
    """
    return POLICIES.get(scheme, _NAMED)


class SchemeContext:
    """Everything a handler needs: the scheme and its policy, the detection, the propagated
    scales, the plain chain's roles, the packed layers; gains and critical points are cached."""

    def __init__(
        self, scheme: str, found: dict[str, Found], embedding_std: float, sigma_b2: float | None = None,
        chain: dict[str, ChainRole] | None = None, packed: dict[str, int] | None = None,
        scales: dict[str, PropagationPlan] | None = None, mha_out: frozenset[str] = frozenset(),
        modules: dict[str, Any] | None = None,
    ) -> None:
        self.scheme = scheme
        self.scales = scales or {}  # "auto" / "variance" -> the graph-wide propagation plan
        self.found = found
        self.embedding_std = embedding_std
        self.sigma_b2 = sigma_b2
        self.chain = chain or {}
        self.packed = packed or {}  # layer -> blocks of its packed weight, by structure
        self.mha_out = mha_out  # the out_proj layers of MultiheadAttention modules
        self.modules = modules or {}  # the model's modules by qualified name (a parametrized layer's parent)
        self._gains: dict[tuple[str, float | None], float] = {}
        self._critical: dict[tuple[str, float | None], Any] = {}
        self._aliases: dict[str, tuple[str, ...]] | None = None

    def derive(self, scheme: str) -> SchemeContext:
        """The same detection and caches under another scheme (for rules)."""
        sub = SchemeContext(scheme, self.found, self.embedding_std, self.sigma_b2, self.chain, self.packed,
                            self.scales, self.mha_out, self.modules)
        sub._gains, sub._critical, sub._aliases = self._gains, self._critical, self._aliases
        return sub

    def scale(self, module: str, part: str = "weight") -> LayerScale | None:
        """The propagated scale of ``part`` of ``module`` under this scheme, if the graph has it; for
        a module the forward never calls whose ``weight`` is tied to one it does (T5's and BART's
        ``shared`` table, called as ``encoder.embed_tokens``), the called module's scale."""
        plan = self.scales.get(self.scheme)
        if plan is None:
            return None
        found = plan.scales.get((module, part))
        if found is None and part == "weight":
            for alias in self._tied_weights().get(module, ()):
                if (found := plan.scales.get((alias, part))) is not None:
                    break
        return found

    def _tied_weights(self) -> dict[str, tuple[str, ...]]:
        """Module name -> the other modules of the same class whose ``weight`` is the same parameter
        (computed once). Of another class (a head tied to an embedding table) it is no alias: the
        head's scale is not the table's."""
        if self._aliases is None:
            by_id: dict[tuple[int, type], list[str]] = {}
            for q, m in self.modules.items():
                w = getattr(m, "weight", None)
                if isinstance(w, nn.Parameter):
                    by_id.setdefault((id(w), type(m)), []).append(q)
            self._aliases = {q: tuple(o for o in names if o != q)
                             for names in by_id.values() if len(names) > 1 for q in names}
        return self._aliases

    def param_shift(self, name: str) -> bool:
        """Whether the forward adds parameter ``name`` to the data with one value per feature (a
        shift: zero at init), as the propagation found."""
        plan = self.scales.get(self.scheme)
        return plan is not None and name in plan.shifts

    def param_std(self, name: str) -> float | None:
        """The propagated std of a parameter the forward reads directly (class token, positions)."""
        plan = self.scales.get(self.scheme)
        return plan.params.get(name) if plan is not None else None

    def gain(self, act: str | None, param: float | None) -> float:
        """The forward gain of ``act`` (1 for none), cached."""
        if act in LINEAR:
            return 1.0
        key = (act, param)
        if key not in self._gains:
            from initlab.gains import gain

            try:
                self._gains[key] = float(gain(act, "forward", param))
            except InitlabError:
                self._gains[key] = float(gain(act, "forward"))
        return self._gains[key]

    def critical(self, act: str | None, param: float | None):
        """The critical point of ``act`` at the context's ``sigma_b2``, cached.

        ``sigma_b2`` picks the point on the critical line (``None``: 0). Positively homogeneous
        activations (ReLU, leaky ReLU, linear) always use 0: their critical point exists only there.
        An activation that has no stable critical point at the bias variance asked for (GELU, SiLU,
        Mish, hardswish, softplus at ``sigma_b2 = 0``) raises :class:`NoCriticalPoint`, which
        :func:`initlab.init_model` turns into an error that names the layer and suggests a
        ``sigma_b2`` (GELU has one from about 0.5, SiLU about 1); a rule that decides all of that
        layer's parameters (e.g. ``(r"^mlp\\.fc1\\.", "auto")``) lets the rest of the model be critical.
        """
        key = (act or "linear", param)
        if key not in self._critical:
            from initlab.theory import critical_point

            # positively homogeneous activations are critical only at sigma_b2 = 0 (q* diverges
            # for any bias variance), so a requested sigma_b2 applies to the others only
            kwargs = {} if self.sigma_b2 is None or key[0] in _HOMOGENEOUS else {"sigma_b2": self.sigma_b2}
            try:
                try:
                    self._critical[key] = critical_point(key[0], param=param, **kwargs)
                except InitlabError:
                    if param is None:
                        raise
                    self._critical[key] = critical_point(key[0], **kwargs)
            except InitlabError as exc:
                raise NoCriticalPoint(str(exc)) from None
        return self._critical[key]

    def weight_spec(
        self, fans: Fans, act: str | None, param: float | None, unit_input: bool = False
    ) -> tuple[str, schemes.Spec, float]:
        """(scheme label, spec, gain) for a weight block under the context's scheme; with
        ``unit_input`` (no nonlinearity produced the layer's input) the gain is 1."""
        return policy_for(self.scheme).weight(self, fans, act, param, unit_input)

    def bias_spec(self, act: str | None, param: float | None) -> tuple[str, schemes.Spec]:
        """(scheme label, spec) for a bias under the context's scheme."""
        return policy_for(self.scheme).bias(self, act, param)


def torch_fans(shape: Sequence[int]) -> Fans:
    """torch's ``_calculate_fan_in_and_fan_out``: ``(shape[1] * rf, shape[0] * rf)``."""
    rf = math.prod(shape[2:]) if len(shape) > 2 else 1
    return Fans(shape[1] * rf, shape[0] * rf, rf)
