"""Keras 3 ``Initializer``s for every initlab scheme: true fans, gains for any activation, and a fresh
seeded draw on every call.

Each initializer builds an :mod:`initlab.schemes` spec from the kernel's true fans
(:mod:`initlab.keras.layouts`: ``layout``, ``groups``, ``chunks``, ``strides``, ``equation``), draws the
torch weight of the same layer with :mod:`initlab.numpy_init`, and moves it into the Keras layout
(:meth:`~initlab.keras.layouts.KernelLayout.from_torch`): the numbers are exactly those of
``numpy_init`` for the same spec and ``rng``, on every backend (``keras.ops.convert_to_tensor``).

Seeds. ``seed=s`` (an int >= 0): call ``i`` (0, 1, 2, ... of this instance) draws from
``numpy.random.default_rng(SeedSequence(s, spawn_key=(i,)))``, so one instance shared by several
layers gives each a different draw (Keras's own seeded initializers repeat the same values on every
call: keras-team/keras-hub#352), and the same construction and call order give the same bits in a
fresh process. ``seed=None``: every call takes a fresh seed from Keras's global ``SeedGenerator``
(``keras.random.randint``), so ``keras.utils.set_random_seed(s)`` makes the draws reproducible, as for
Keras's own unseeded initializers. ``get_config`` records the construction arguments: an instance
rebuilt by ``from_config`` (a reloaded model) starts again at call 0.

Every class is registered (``keras.saving.register_keras_serializable(package="initlab")``): a saved
model reloads after ``import initlab.keras``.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import keras
import numpy as np

from initlab import numpy_init, schemes
from initlab.errors import InitlabError
from initlab.fans import Fans
from initlab.gains import gain as derived_gain
from initlab.keras.activations import activation_name
from initlab.keras.layouts import KernelLayout, kernel_layout

__all__ = [
    "InitlabInitializer", "VarianceScaling", "GlorotUniform", "GlorotNormal", "HeNormal", "HeUniform",
    "LecunNormal", "LecunUniform", "TorchDefault", "Named", "Orthogonal", "DeltaOrthogonal",
    "ConvOrthogonal", "LooksLinear",
    "DeltaLooksLinear", "Critical", "CriticalBias", "Normal", "Uniform", "Sparse", "Identity", "Dirac",
    "sample_kernel", "seed_sequence", "resolve_gain",
]

_register = keras.saving.register_keras_serializable(package="initlab")


def seed_sequence(seed: int | None, call: int) -> np.random.SeedSequence:
    """The seed of call ``call`` of an initializer built with ``seed`` (module docstring).

    ``None``: a fresh seed from Keras's global ``SeedGenerator`` (two 31-bit draws).

    >>> seed_sequence(3, 1).spawn_key
    (1,)
    """
    if seed is None:
        words = keras.random.randint((2,), 0, 2**31 - 1, dtype="int32")
        return np.random.SeedSequence([int(words[0]), int(words[1])])
    return np.random.SeedSequence(seed, spawn_key=(call,))


def resolve_gain(gain: float | str | None, param: float | None = None,
                 criterion: str = "forward") -> float | None:
    """A gain given as a number, or as an activation name (Keras's or initlab's): the derived gain
    :func:`initlab.gains.gain` of that activation, ``E[phi(z)^2]^{-1/2}`` (forward) or
    ``E[phi'(z)^2]^{-1/2}`` (backward), ``z ~ N(0, 1)``. ``None`` stays ``None`` (the scheme's default).

    Raises:
        InitlabError: a gain that is not a finite non-zero number or a known activation name; a
            ``param`` the activation does not take; an unknown ``criterion`` (with any gain).

    >>> round(resolve_gain("gelu"), 4), round(resolve_gain("leaky_relu"), 4)   # Keras's slope 0.2
    (1.5335, 1.3868)
    """
    if criterion not in ("forward", "backward"):
        raise InitlabError(f"criterion={criterion!r} is unknown: use 'forward' or 'backward'")
    if gain is None:
        if param is not None:
            raise InitlabError(f"param={param!r} needs gain= an activation name: pass e.g. gain='leaky_relu'")
        return None
    if isinstance(gain, str):
        name, default = activation_name(gain)
        return float(derived_gain(name, criterion, default if param is None else param))
    if isinstance(gain, bool) or not isinstance(gain, numbers.Real) or not math.isfinite(gain) or gain == 0:
        raise InitlabError(
            f"gain={gain!r} is invalid: pass a finite non-zero number or an activation name ('relu', 'gelu')"
        )
    if param is not None:
        raise InitlabError(f"param={param!r} applies to an activation-name gain, not gain={gain!r}")
    return float(gain)


def _work_dtype(dtype: Any) -> tuple[str, type]:
    dt = keras.backend.standardize_dtype(dtype or keras.config.floatx())
    if not any(dt.startswith(p) for p in ("float", "bfloat")):
        raise InitlabError(
            f"dtype={dt!r}: initlab initializers draw floating-point kernels; pass a float dtype")
    return dt, (np.float64 if dt == "float64" else np.float32)


def sample_kernel(spec: schemes.Spec, shape: tuple[int, ...], layout: KernelLayout,
                  rng: np.random.Generator | np.random.SeedSequence | int | None,
                  dtype: type = np.float32) -> np.ndarray:
    """A Keras kernel of ``shape`` realising ``spec``: the torch weight of the same layer drawn by
    :func:`initlab.numpy_init.sample_spec` (in :meth:`~initlab.keras.layouts.KernelLayout.blocks` blocks:
    LSTM gates, einsum heads; structural specs also per conv group), moved into the Keras layout.

    >>> lay = kernel_layout()
    >>> w = sample_kernel(schemes.Orthogonal(), (8, 4), lay, 0, np.float64)   # Dense(4) on 8 features
    >>> bool(np.allclose(w.T @ w, np.eye(4), atol=1e-12))
    True
    """
    torch_shape = layout.to_torch_shape(shape)
    blocks = layout.blocks(shape)
    if isinstance(spec, _PER_GROUP):  # a grouped / depthwise conv: one isometry per group
        blocks *= layout.conv_groups(shape)
    w = numpy_init.sample_spec(spec, torch_shape, rng=rng, dtype=dtype, chunks=blocks)
    return layout.from_torch(w, shape)


#: Structural specs drawn block by block along the output axis: each group of a grouped conv is one.
_PER_GROUP = (schemes.Orthogonal, schemes.DeltaOrthogonal, schemes.Delta, schemes.ConvOrthogonal,
              schemes.LooksLinear)


def _check_shape(shape: Any) -> tuple[int, ...]:
    """``shape`` as a tuple of ints ``>= 0``, or one clear error (an unknown ``None`` dim, a negative one)."""
    try:
        dims = tuple(shape)
    except TypeError:
        dims = None
    if dims is None or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 0
                               for d in dims):
        raise InitlabError(
            f"shape {shape!r} is invalid: pass the kernel's full shape, a tuple of ints >= 0 (a Keras layer "
            "passes it when it builds)"
        )
    return tuple(int(d) for d in dims)


def _check_seed(seed: Any) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise InitlabError(
            f"seed={seed!r} is invalid: pass an int >= 0, or None (Keras's global seed generator)"
        )
    return int(seed)


class InitlabInitializer(keras.initializers.Initializer):
    """Base: the kernel layout, the seed and its call counter, and the draw (module docstring).

    Subclasses define :meth:`spec` (the :mod:`initlab.schemes` spec of a kernel with ``fans``) and
    :meth:`_options` (their own constructor arguments, for ``get_config``).

    Args:
        seed: int >= 0 (a fresh, reproducible draw per call) or ``None`` (Keras's global seed generator).
        layout, groups, chunks, strides, equation: how to read the kernel
            (:func:`initlab.keras.layouts.kernel_layout`): ``"keras"`` (Dense, ConvND; a vector),
            ``"keras_depthwise"``, ``"keras_transposed"`` (with ``strides``), ``"einsum"`` (with
            ``equation``); ``chunks`` packed blocks along the last axis (LSTM 4, GRU 3).

    Raises:
        InitlabError: a bad seed or layout option; at call time, a shape the layout or the scheme cannot
            take, or a non-float dtype.
    """

    #: Whether :meth:`spec` reads the fans (distribution-only initializers draw on the kernel as is).
    uses_layout: bool = True

    def __init__(self, *, seed: int | None = None, layout: str = "keras", groups: int = 1, chunks: int = 1,
                 strides: Any = None, equation: str | None = None) -> None:
        self.seed = _check_seed(seed)
        self.layout = kernel_layout(layout, groups=groups, chunks=chunks, strides=strides, equation=equation)
        self.calls = 0

    def spec(self, fans: Fans | None) -> schemes.Spec:
        """The spec of one block of a kernel with ``fans`` (``None`` when :attr:`uses_layout` is False)."""
        raise NotImplementedError

    def _options(self) -> dict[str, Any]:
        return {}

    def _kernel_spec(self, shape: tuple[int, ...]) -> schemes.Spec:
        """The spec of a kernel of ``shape`` (:meth:`spec` of its true fans)."""
        return self.spec(self.layout.fans(shape))

    def __call__(self, shape: Any, dtype: Any = None) -> Any:
        """A new kernel of ``shape`` and ``dtype`` (Keras's ``floatx()`` by default)."""
        shape = _check_shape(shape)
        dt, work = _work_dtype(dtype)
        rng = seed_sequence(self.seed, self.calls)
        self.calls += 1
        if math.prod(shape) == 0:
            warnings.warn(f"{type(self).__name__}: a zero-element shape {shape} gives an empty kernel",
                          UserWarning, stacklevel=2)
            return keras.ops.zeros(shape, dtype=dt)
        if self.uses_layout:
            values = sample_kernel(self._kernel_spec(shape), shape, self.layout, rng, work)
        else:
            values = numpy_init.sample_spec(self.spec(None), shape, rng=rng, dtype=work)
        return keras.ops.convert_to_tensor(values, dtype=dt)

    def get_config(self) -> dict[str, Any]:
        """The constructor's arguments (JSON-ready); ``from_config`` rebuilds the initializer at call 0."""
        lay = self.layout
        strides = list(lay.strides) if isinstance(lay.strides, tuple) else lay.strides
        return {**self._options(), "seed": self.seed, "layout": lay.name, "groups": lay.groups,
                "chunks": lay.chunks, "strides": strides, "equation": lay.equation}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


# ---- variance scaling ---------------------------------------------------------------------------------

_DISTRIBUTIONS = {"truncated_normal": "truncated_normal", "normal": "truncated_normal",
                  "untruncated_normal": "normal", "uniform": "uniform"}


@_register
class VarianceScaling(InitlabInitializer):
    r"""Keras's ``VarianceScaling`` with true fans, ``mode="fan_geo_avg"`` and a gain for any activation.

    .. math::
        \sigma^2 = \frac{\text{scale}\cdot\text{gain}^2}{n},\qquad
        n \in \{fan_{in},\ fan_{out},\ (fan_{in}+fan_{out})/2,\ \sqrt{fan_{in} fan_{out}}\}

    ``"truncated_normal"`` (and ``"normal"``, as in Keras): a normal cut at two parent stds, parent
    std ``sigma / 0.87962566103423978`` so the samples have std ``sigma``; ``"untruncated_normal"``:
    ``N(0, sigma^2)``; ``"uniform"``: ``U(±sqrt(3) sigma)`` (:func:`initlab.schemes.variance_scaling`).

    Args:
        scale: variance multiplier ``> 0``. mode: ``"fan_in"``, ``"fan_out"``, ``"fan_avg"``,
            ``"fan_geo_avg"``. distribution: as above.
        gain: a number, or an activation name (``"gelu"``, ``"silu"``, ``"tanh"``: the derived gain of
            :func:`resolve_gain`); default 1 (He: ``sqrt(2)``). param, criterion: for a named gain.
        seed, layout, groups, chunks, strides, equation: :class:`InitlabInitializer`.

    Raises:
        InitlabError: a bad scale, mode, distribution or gain (at construction); a zero fan (at call).

    Source: Keras / JAX ``VarianceScaling``; Glorot & Bengio (2010); He et al. (2015).

    >>> init = VarianceScaling(2.0, "fan_in", "untruncated_normal", layout="keras_depthwise", seed=0)
    >>> init.spec(init.layout.fans((3, 3, 64, 1))).std    # sqrt(2 / 9): fan_in = 9, not 576
    0.4714045207910317
    """

    _fixed: dict[str, Any] = {}
    _default_gain = 1.0

    def __init__(self, scale: float = 1.0, mode: str = "fan_in", distribution: str = "truncated_normal",
                 seed: int | None = None, *, gain: float | str | None = None, param: float | None = None,
                 criterion: str = "forward", **layout: Any) -> None:
        super().__init__(seed=seed, **layout)
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
            raise InitlabError(f"scale={scale!r} is invalid: pass a finite number > 0 (gain**2)")
        if distribution not in _DISTRIBUTIONS:
            raise InitlabError(
                f"distribution={distribution!r} is unknown: use one of {', '.join(_DISTRIBUTIONS)}")
        self.scale, self.mode, self.distribution = scale, mode, distribution
        self.gain, self.param, self.criterion = gain, param, criterion
        g = resolve_gain(gain, param, criterion)
        self._scale = float(scale) * (self._default_gain if g is None else g) ** 2
        schemes.variance_scaling(self._scale, mode, _DISTRIBUTIONS[distribution], fans=Fans(1, 1))  # checks

    def spec(self, fans: Fans | None) -> schemes.Spec:
        return schemes.variance_scaling(self._scale, self.mode, _DISTRIBUTIONS[self.distribution], fans=fans)

    def _options(self) -> dict[str, Any]:
        own = {"scale": self.scale, "mode": self.mode, "distribution": self.distribution, "gain": self.gain,
               "param": self.param, "criterion": self.criterion}
        return {k: v for k, v in own.items() if k not in self._fixed}


def _torch_fans_spec(self: VarianceScaling, shape: tuple[int, ...]) -> schemes.Spec:
    """``TorchDefault``'s spec: torch's own fans of the kernel's torch twin (a transposed conv's fan_in:
    ``out/g * rf``)."""
    return self.spec(self.layout.torch_fans(shape))


def _fixed(name: str, scale: float, mode: str, distribution: str, default_gain: float, doc: str,
           **methods: Any) -> type:
    """A Keras-named specialisation of :class:`VarianceScaling` (its own ``__init__`` and config)."""

    def __init__(self, seed: int | None = None, *, gain: float | str | None = None,
                 param: float | None = None, criterion: str = "forward", **layout: Any) -> None:
        VarianceScaling.__init__(self, scale, mode, distribution, seed, gain=gain, param=param,
                                 criterion=criterion, **layout)

    cls = type(name, (VarianceScaling,), {
        "__init__": __init__, "__doc__": doc, "__module__": __name__, "__qualname__": name,
        "_fixed": {"scale": scale, "mode": mode, "distribution": distribution}, "_default_gain": default_gain,
        **methods,
    })
    return _register(cls)


_KERAS_DOC = """Keras's ``{name}`` (the same distribution: {what}) with true fans and an optional gain.

    .. math::
        {math}

    ``gain`` (a number or an activation name, :func:`resolve_gain`) replaces the default {default}.
    Other arguments: :class:`VarianceScaling`. Source: {source}.
"""
GlorotUniform = _fixed("GlorotUniform", 1.0, "fan_avg", "uniform", 1.0, _KERAS_DOC.format(
    name="GlorotUniform", what="uniform", math=r"\text{bound} = \text{gain}\sqrt{6 / (fan_{in} + fan_{out})}",
    default="1", source="Glorot & Bengio (2010); Keras's default kernel initializer"))
GlorotNormal = _fixed("GlorotNormal", 1.0, "fan_avg", "truncated_normal", 1.0, _KERAS_DOC.format(
    name="GlorotNormal", what="a normal truncated at two parent stds",
    math=r"\sigma = \text{gain}\sqrt{2 / (fan_{in} + fan_{out})}", default="1",
    source="Glorot & Bengio (2010)"))
HeNormal = _fixed("HeNormal", 1.0, "fan_in", "truncated_normal", math.sqrt(2.0), _KERAS_DOC.format(
    name="HeNormal", what="a normal truncated at two parent stds",
    math=r"\sigma = \text{gain} / \sqrt{fan_{in}}", default="sqrt(2)",
    source="He, Zhang, Ren & Sun (2015), 'Delving deep into rectifiers'"))
HeUniform = _fixed("HeUniform", 1.0, "fan_in", "uniform", math.sqrt(2.0), _KERAS_DOC.format(
    name="HeUniform", what="uniform", math=r"\text{bound} = \text{gain}\sqrt{3 / fan_{in}}",
    default="sqrt(2)", source="He et al. (2015)"))
LecunNormal = _fixed("LecunNormal", 1.0, "fan_in", "truncated_normal", 1.0, _KERAS_DOC.format(
    name="LecunNormal", what="a normal truncated at two parent stds",
    math=r"\sigma = \text{gain} / \sqrt{fan_{in}}", default="1",
    source="LeCun et al. (1998), 'Efficient BackProp'; Klambauer et al. (2017), SELU"))
LecunUniform = _fixed("LecunUniform", 1.0, "fan_in", "uniform", 1.0, _KERAS_DOC.format(
    name="LecunUniform", what="uniform", math=r"\text{bound} = \text{gain}\sqrt{3 / fan_{in}}", default="1",
    source="LeCun et al. (1998)"))
TorchDefault = _fixed("TorchDefault", 1.0 / 3.0, "fan_in", "uniform", 1.0, _KERAS_DOC.format(
    name="TorchDefault", what="torch's nn.Linear / nn.ConvNd / nn.ConvTransposeNd default, "
    "kaiming_uniform_(a=sqrt(5))", math=r"\text{bound} = \text{gain} / \sqrt{fan_{in}}", default="1",
    source="PyTorch's reset_parameters").replace("Keras's ``TorchDefault``", "torch's default").replace(
    "with true fans", "with torch's fans of the kernel's torch twin (a transposed conv's ``fan_in`` is "
    "``out/g * rf``, as torch reads it)"), _kernel_spec=_torch_fans_spec)


@_register
class Named(InitlabInitializer):
    """Any scheme of :data:`initlab.schemes.NAMED_SCHEMES` by name, with initlab's (torch's) semantics:
    ``"he_normal"`` is untruncated (``kaiming_normal_``), ``"he_truncated_normal"`` is Keras's
    ``HeNormal``, ``"small"`` is ``N(0, 0.01^2)``, ... (:func:`initlab.schemes.named_spec`), with the
    kernel's true fans; ``"torch_default"`` and ``"keras_default"`` with the fans torch and Keras read
    themselves (:meth:`~initlab.keras.layouts.KernelLayout.torch_fans`, ``keras_fans``), as
    :func:`initlab.keras.init_model` draws them.

    Args:
        scheme: the name. gain: a number or an activation name (:func:`resolve_gain`); ``None`` keeps
            the scheme's default. Others: :class:`InitlabInitializer`.

    Raises:
        InitlabError: an unknown scheme (the message lists the names), a bad gain.

    >>> Named("he_normal").spec(Fans(50, 50)).std
    0.2
    """

    def __init__(self, scheme: str, seed: int | None = None, *, gain: float | str | None = None,
                 param: float | None = None, criterion: str = "forward", **layout: Any) -> None:
        super().__init__(seed=seed, **layout)
        if not isinstance(scheme, str) or scheme not in schemes.NAMED_SCHEMES:
            raise InitlabError(
                f"scheme {scheme!r} is unknown: use one of {', '.join(sorted(schemes.NAMED_SCHEMES))}")
        self.scheme, self.gain, self.param, self.criterion = scheme, gain, param, criterion
        self._gain = resolve_gain(gain, param, criterion)

    def spec(self, fans: Fans | None) -> schemes.Spec:
        return schemes.named_spec(self.scheme, fans, self._gain)

    def _kernel_spec(self, shape: tuple[int, ...]) -> schemes.Spec:
        """``"torch_default"`` and ``"keras_default"`` reproduce the frameworks' own numbers: torch's fans
        of the torch twin, Keras's fans of the kernel; every other scheme the true fans."""
        if self.scheme == "torch_default":
            return self.spec(self.layout.torch_fans(shape))
        if self.scheme == "keras_default":
            return self.spec(self.layout.keras_fans(shape))
        return super()._kernel_spec(shape)

    def _options(self) -> dict[str, Any]:
        return {"scheme": self.scheme, "gain": self.gain, "param": self.param, "criterion": self.criterion}


# ---- structural ------------------------------------------------------------------------------------


class _Gained(InitlabInitializer):
    """A structural initializer with a gain (a number or an activation name)."""

    def __init__(self, gain: float | str = 1.0, seed: int | None = None, *, param: float | None = None,
                 criterion: str = "forward", **layout: Any) -> None:
        super().__init__(seed=seed, **layout)
        self.gain, self.param, self.criterion = gain, param, criterion
        self._gain = resolve_gain(gain, param, criterion)

    def _options(self) -> dict[str, Any]:
        return {"gain": self.gain, "param": self.param, "criterion": self.criterion}


@_register
class Orthogonal(_Gained):
    r"""A Haar (semi-)orthogonal kernel times ``gain``, per chunk (each LSTM gate its own block).

    The kernel is the torch weight ``(out, prod(rest))`` of the layer (Keras: ``(prod(shape[:-1]),
    out)``, transposed), so :math:`W^\top W = \text{gain}^2 I` over the output units of a Dense
    kernel ``(in, out)`` with ``in >= out`` (Keras's ``Orthogonal``); with ``chunks=k`` each of the ``k``
    blocks along the last axis is orthogonal on its own (a recurrent kernel ``(units, 4 units)``).

    Source: Saxe, McClelland & Ganguli (2014); Mezzadri (2007) for the Haar sign fix.

    >>> w = keras.ops.convert_to_numpy(Orthogonal(chunks=4, seed=0)((8, 32)))
    >>> bool(np.allclose(w[:, 8:16].T @ w[:, 8:16], np.eye(8), atol=1e-5))
    True
    """

    def spec(self, fans: Fans | None) -> schemes.Spec:
        return schemes.Orthogonal(self._gain)


@_register
class DeltaOrthogonal(_Gained):
    r"""Delta-orthogonal conv kernel: zero but the spatial centre tap, an orthogonal ``(in, out)``
    matrix times ``gain`` (``out >= in``): :math:`W[k/2, ..., :, :]^\top`-isometry.

    Source: Xiao, Bahri, Sohl-Dickstein, Schoenholz & Pennington (2018), "Dynamical isometry and a mean
    field theory of CNNs".

    >>> w = keras.ops.convert_to_numpy(DeltaOrthogonal(seed=0)((3, 3, 4, 8)))
    >>> float(abs(w[0, 0]).max()), bool(np.allclose(w[1, 1] @ w[1, 1].T, np.eye(4), atol=1e-5))
    (0.0, True)
    """

    def spec(self, fans: Fans | None) -> schemes.Spec:
        return schemes.DeltaOrthogonal(self._gain)



@_register
class ConvOrthogonal(_Gained):
    r"""Orthogonal conv kernel with every tap set (Xiao et al. 2018; TF's ``ConvolutionOrthogonal``):
    :math:`W(z) = V(z)\,\text{gain}\,H` with ``V`` a product of ``(P + (I - P) z^{\pm 1})``
    factors, unitary on the unit circle (:class:`initlab.schemes.ConvOrthogonal`). With circular
    padding the conv is an isometry at every spatial frequency; the taps sum to ``gain * H``.

    Source: Xiao, Bahri, Sohl-Dickstein, Schoenholz & Pennington (2018), "Dynamical isometry and a mean
    field theory of CNNs".

    >>> w = keras.ops.convert_to_numpy(ConvOrthogonal(seed=0)((3, 3, 4, 8)))
    >>> m = w.sum(axis=(0, 1))
    >>> bool(np.allclose(m @ m.T, np.eye(4), atol=1e-5)), bool(abs(w[0, 0]).max() > 0)
    (True, True)
    """

    def spec(self, fans: Fans | None) -> schemes.Spec:
        return schemes.ConvOrthogonal(schemes.Orthogonal(self._gain))

class _Mirrored(_Gained):
    def __init__(self, gain: float | str = 1.0, seed: int | None = None, *, mirror_outputs: bool = True,
                 mirror_inputs: bool = True, **kw: Any) -> None:
        super().__init__(gain, seed, **kw)
        self.mirror_outputs, self.mirror_inputs = mirror_outputs, mirror_inputs
        self._block()  # checks

    def _block(self) -> schemes.LooksLinear:
        return schemes.LooksLinear(self._gain, self.mirror_outputs, self.mirror_inputs)

    def _options(self) -> dict[str, Any]:
        return {**super()._options(), "mirror_outputs": self.mirror_outputs,
                "mirror_inputs": self.mirror_inputs}


@_register
class LooksLinear(_Mirrored):
    r"""Looks-linear Dense kernel (Balduzzi et al. 2017): an orthogonal block ``A`` mirrored with signs.

    For a Dense kernel ``(in, out)`` (the torch weight ``(out, in)`` of :class:`initlab.schemes.LooksLinear`):

    .. math::
        W^\top = \begin{bmatrix} A & -A \\ -A & A \end{bmatrix}\ (\text{both}),\quad
        \begin{bmatrix} A \\ -A \end{bmatrix}\ (\text{mirror\_outputs}),\quad
        \begin{bmatrix} A & -A \end{bmatrix}\ (\text{mirror\_inputs})

    so a ReLU/GELU/SiLU chain of a first layer with mirrored outputs, hidden layers with both and a
    head with mirrored inputs is an orthogonal linear map at init. Mirrored dims must be even.

    Source: Balduzzi, Frean, Leary, Lewis, Ma & McWilliams (2017), "The Shattered Gradients Problem", ICML.

    >>> w = keras.ops.convert_to_numpy(LooksLinear(seed=0)((6, 4)))
    >>> bool((w[:3, :2] == -w[3:, :2]).all() and (w[:3, :2] == -w[:3, 2:]).all())
    True
    """

    def spec(self, fans: Fans | None) -> schemes.Spec:
        return self._block()


@_register
class DeltaLooksLinear(_Mirrored):
    """Looks-linear delta conv kernel: zero but the centre tap, which holds :class:`LooksLinear`'s
    ``(in, out)`` matrix (Xiao et al. 2018; Balduzzi et al. 2017)."""

    def spec(self, fans: Fans | None) -> schemes.Spec:
        return schemes.Delta(self._block())


# ---- critical (mean field) -------------------------------------------------------------------------


class _CriticalBase(InitlabInitializer):
    def __init__(self, activation: str, sigma_b2: float | None = None, seed: int | None = None, *,
                 param: float | None = None, **layout: Any) -> None:
        super().__init__(seed=seed, **layout)
        from initlab.theory import critical_point

        name, default = activation_name(activation)
        self.activation, self.sigma_b2, self.param = activation, sigma_b2, param
        kwargs = {} if sigma_b2 is None else {"sigma_b2": sigma_b2}
        self.point = critical_point(name, param=default if param is None else param, **kwargs)

    def _options(self) -> dict[str, Any]:
        return {"activation": self.activation, "sigma_b2": self.sigma_b2, "param": self.param}


@_register
class Critical(_CriticalBase):
    r"""Weights at the edge of chaos of ``activation`` (mean-field theory),
    :math:`N(0, \sigma_w^2 / fan_{in})` at the critical point :func:`initlab.theory.critical_point` for
    bias variance ``sigma_b2`` (``None``: 0; tanh: :math:`\sigma_w^2 = 1`, ReLU: 2). Use
    :class:`CriticalBias` for the layer's bias.

    Raises:
        InitlabError: an activation with no (stable) critical point at ``sigma_b2`` (GELU and SiLU need a
            bias variance, about 0.5 and 1).

    Source: Poole et al. (2016); Schoenholz et al. (2017), "Deep information propagation".

    >>> round(Critical("tanh", 0.05).point.sigma_w2, 3)
    1.76
    """

    def spec(self, fans: Fans | None) -> schemes.Spec:
        return schemes.Normal(self.point.sigma_w / math.sqrt(fans.fan_in))  # type: ignore[union-attr]


@_register
class CriticalBias(_CriticalBase):
    r"""The bias of :class:`Critical`: :math:`N(0, \sigma_b^2)` (zeros at ``sigma_b2 = 0``), any shape."""

    uses_layout = False

    def spec(self, fans: Fans | None) -> schemes.Spec:
        sb = self.point.sigma_b
        return schemes.Normal(sb) if sb > 0 else schemes.Constant(0.0)


# ---- plain distributions and the rest ------------------------------------------------------------------


@_register
class Normal(InitlabInitializer):
    """I.i.d. ``N(mean, std^2)`` entries (``Normal(0.01)``: the classic "small" init), any shape."""

    uses_layout = False

    def __init__(self, std: float = 1.0, mean: float = 0.0, seed: int | None = None, **layout: Any) -> None:
        super().__init__(seed=seed, **layout)
        self.std, self.mean = std, mean
        schemes.Normal(std, mean)

    def spec(self, fans: Fans | None) -> schemes.Spec:
        return schemes.Normal(self.std, self.mean)

    def _options(self) -> dict[str, Any]:
        return {"std": self.std, "mean": self.mean}


@_register
class Uniform(InitlabInitializer):
    """I.i.d. ``U(low, high)`` entries, any shape."""

    uses_layout = False

    def __init__(self, low: float = -0.05, high: float = 0.05, seed: int | None = None,
                 **layout: Any) -> None:
        super().__init__(seed=seed, **layout)
        self.low, self.high = low, high
        schemes.Uniform(low, high)

    def spec(self, fans: Fans | None) -> schemes.Spec:
        return schemes.Uniform(self.low, self.high)

    def _options(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high}


@_register
class Sparse(InitlabInitializer):
    """Sparse Dense kernel (Martens 2010; torch ``sparse_``): for each input unit, ``ceil(sparsity *
    out)`` of its outgoing weights are zero, the rest ``N(0, std^2)``."""

    def __init__(self, sparsity: float = 0.9, std: float = 0.01, seed: int | None = None,
                 **layout: Any) -> None:
        super().__init__(seed=seed, **layout)
        self.sparsity, self.std = sparsity, std
        schemes.Sparse(sparsity, std)

    def spec(self, fans: Fans | None) -> schemes.Spec:
        return schemes.Sparse(self.sparsity, self.std)

    def _options(self) -> dict[str, Any]:
        return {"sparsity": self.sparsity, "std": self.std}


@_register
class Identity(_Gained):
    """``gain`` times the (rectangular) identity, a Dense kernel ``(in, out)``."""

    def spec(self, fans: Fans | None) -> schemes.Spec:
        return schemes.Identity(self._gain)


@_register
class Dirac(InitlabInitializer):
    """A conv kernel that passes each input channel through (torch ``dirac_``), per group: the layer's
    ``groups``, or for ``layout="keras_depthwise"`` one group per input channel (channel ``c`` to output
    ``c * depth_multiplier``).

    >>> w = keras.ops.convert_to_numpy(Dirac(layout="keras_depthwise")((3, 3, 4, 1)))
    >>> w[1, 1, :, 0].tolist(), float(abs(w).sum())
    ([1.0, 1.0, 1.0, 1.0], 4.0)
    """

    def __init__(self, seed: int | None = None, **layout: Any) -> None:
        super().__init__(seed=seed, **layout)

    def spec(self, fans: Fans | None) -> schemes.Spec:
        return schemes.Dirac(self.layout.groups)

    def _kernel_spec(self, shape: tuple[int, ...]) -> schemes.Spec:
        self.layout.fans(shape)  # checks the shape
        if self.layout.name == "keras_depthwise":
            return schemes.Dirac(shape[-2])
        return self.spec(None)
