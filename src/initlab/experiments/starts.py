"""Starts: how the training and probe experiments initialize a freshly built model, by name.

One registry (:data:`STARTS`) of the usual starts that are not :func:`initlab.init_model` schemes
(torch's and Keras's defaults, torch's documented recipe, torchvision's He fan_out, LSUV,
delta-orthogonal); every other name is an :func:`initlab.init_model` scheme (``auto``,
``variance``, ``critical``, ``he_normal``, ``gpt2``, ...), and ``fixup`` / ``skipinit`` first add
their parameters (:mod:`initlab.transforms`). The model is built after ``torch.manual_seed(seed)``,
so ``torch_default`` is torch's own ``reset_parameters`` draw; every other start draws from
``StartContext.gen``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from initlab.errors import InitlabError

__all__ = ["StartContext", "STARTS", "start_names", "check_start", "apply_start"]

_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass
class StartContext:
    """What a start may use: the model, the init generator, the activation, and up to 512
    training inputs (for data-dependent starts)."""

    model: nn.Module
    gen: torch.Generator
    activation: str
    examples: torch.Tensor | None


def _zero_bias(m: nn.Module) -> None:
    if getattr(m, "bias", None) is not None:
        nn.init.zeros_(m.bias)


def keras_default_(s: StartContext) -> None:
    """Keras's Dense/Conv default: Glorot uniform weights, zero biases (Glorot & Bengio 2010)."""
    for m in s.model.modules():
        if isinstance(m, _WEIGHTED):
            nn.init.xavier_uniform_(m.weight, generator=s.gen)
            _zero_bias(m)


def torch_recipe_(s: StartContext) -> None:
    """What torch's docs recommend: ``kaiming_normal_(nonlinearity="relu")`` before ReLU and GELU
    (GELU is not in torch's table; ReLU's gain is the closest), ``kaiming_normal_(nonlinearity=
    "linear")`` before SELU, ``xavier_normal_(gain=calculate_gain(act))`` otherwise; the last
    layer ``xavier_normal_`` (gain 1); zero biases."""
    layers = [m for m in s.model.modules() if isinstance(m, _WEIGHTED)]
    for i, m in enumerate(layers):
        act = "linear" if i == len(layers) - 1 else s.activation
        if act in ("relu", "gelu"):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=s.gen)
        elif act == "selu":
            nn.init.kaiming_normal_(m.weight, nonlinearity="linear", generator=s.gen)
        else:
            nn.init.xavier_normal_(m.weight, gain=nn.init.calculate_gain(act), generator=s.gen)
        _zero_bias(m)


def he_fan_out_(s: StartContext) -> None:
    """torchvision's: convs ``kaiming_normal_(mode="fan_out", nonlinearity="relu")``, zero conv
    biases, BatchNorm 1/0 (He et al. 2015)."""
    for m in s.model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=s.gen)
            _zero_bias(m)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def delta_orthogonal_start_(s: StartContext) -> None:
    """Delta-orthogonal convs at the activation's critical ``sigma_w`` (Xiao et al. 2018), zero
    biases, a Glorot normal head."""
    from initlab.init import delta_orthogonal_
    from initlab.theory import critical_point

    sigma_w = math.sqrt(critical_point(s.activation).sigma_w2)
    for m in s.model.modules():
        if isinstance(m, nn.Conv2d):
            delta_orthogonal_(m.weight, gain=sigma_w, generator=s.gen)
        elif isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight, generator=s.gen)
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            _zero_bias(m)


def lsuv_start_(s: StartContext) -> None:
    """LSUV (Mishkin & Matas 2016) on the context's training examples."""
    from initlab.lsuv import lsuv_

    if s.examples is None:
        raise InitlabError("start 'lsuv' needs training examples: use it with a data set")
    lsuv_(s.model, s.examples, generator=s.gen)


#: Starts that are not :func:`initlab.init_model` schemes, by name.
STARTS: dict[str, Callable[[StartContext], None]] = {
    "torch_default": lambda s: None,
    "keras_default": keras_default_,
    "torch_recipe": torch_recipe_,
    "he_fan_out": he_fan_out_,
    "lsuv": lsuv_start_,
    "delta_orthogonal": delta_orthogonal_start_,
}

#: Schemes that first add parameters to the model: scheme -> transform in :mod:`initlab.transforms`.
_TRANSFORMS = {"fixup": "add_fixup_scalars", "skipinit": "add_skip_gates"}


def start_names() -> tuple[str, ...]:
    """Every start name: :data:`STARTS` and the :func:`initlab.init_model` schemes.

    >>> {"auto", "torch_default", "lsuv"} <= set(start_names())
    True
    """
    from initlab.model.policies import SCHEMES

    return (*STARTS, *(s for s in SCHEMES if s not in STARTS))


def check_start(name: str) -> str:
    """Return ``name`` if it is a start; raise :class:`InitlabError` listing them otherwise."""
    names = start_names()
    if name not in names:
        raise InitlabError(f"init={name!r} is invalid: use one of {', '.join(names)}")
    return name


def apply_start(name: str, s: StartContext) -> None:
    """Initialize ``s.model`` in place with start ``name`` (a :data:`STARTS` entry, else
    ``init_model(model, name, generator=s.gen)`` after its transform, if it has one).

    Raises:
        InitlabError: an unknown name; whatever the start raises for this model.
    """
    fn = STARTS.get(check_start(name))
    if fn is not None:
        fn(s)
        return
    from initlab import init_model

    if name in _TRANSFORMS:
        import initlab.transforms as transforms

        getattr(transforms, _TRANSFORMS[name])(s.model, verbose=False)
    init_model(s.model, name, generator=s.gen)
