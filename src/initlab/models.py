"""Reference networks the probe, experiments and benchmarks share.

Layers are named for what they are (``fc1``, ``act1``, ..., ``out``) so that per-layer records
read like the tutorial: "layer 3 std".
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from torch import nn

from initlab.errors import InitlabError

__all__ = ["ACTIVATION_MODULES", "activation_module", "mlp"]

#: Activation name -> ``nn.Module`` factory (``param`` goes to the one-parameter ones).
ACTIVATION_MODULES: dict[str, Callable[..., nn.Module]] = {
    "linear": lambda p=None: nn.Identity(),
    "identity": lambda p=None: nn.Identity(),
    "relu": lambda p=None: nn.ReLU(),
    "leaky_relu": lambda p=None: nn.LeakyReLU(0.01 if p is None else p),
    "elu": lambda p=None: nn.ELU(1.0 if p is None else p),
    "selu": lambda p=None: nn.SELU(),
    "celu": lambda p=None: nn.CELU(1.0 if p is None else p),
    "gelu": lambda p=None: nn.GELU(),
    "gelu_tanh": lambda p=None: nn.GELU(approximate="tanh"),
    "silu": lambda p=None: nn.SiLU(),
    "swish": lambda p=None: nn.SiLU(),
    "mish": lambda p=None: nn.Mish(),
    "softplus": lambda p=None: nn.Softplus(),
    "softsign": lambda p=None: nn.Softsign(),
    "tanh": lambda p=None: nn.Tanh(),
    "sigmoid": lambda p=None: nn.Sigmoid(),
    "hardtanh": lambda p=None: nn.Hardtanh(),
    "hardsigmoid": lambda p=None: nn.Hardsigmoid(),
    "hardswish": lambda p=None: nn.Hardswish(),
    "relu6": lambda p=None: nn.ReLU6(),
}


def activation_module(name: str, param: float | None = None) -> nn.Module:
    """A fresh ``nn.Module`` for activation ``name`` (see :data:`ACTIVATION_MODULES`).

    Raises:
        InitlabError: unknown ``name``; the message lists the known names.

    >>> activation_module("tanh")
    Tanh()
    """
    try:
        factory = ACTIVATION_MODULES[name]
    except KeyError:
        raise InitlabError(
            f"activation {name!r} is unknown: use one of {', '.join(sorted(ACTIVATION_MODULES))}"
        ) from None
    return factory(param)


def mlp(
    in_features: int,
    width: int,
    depth: int,
    out_features: int | None = None,
    activation: str = "relu",
    *,
    dropout: float = 0.0,
    bias: bool = True,
) -> nn.Sequential:
    """A plain MLP: ``depth`` hidden blocks ``fc{i} -> act{i} [-> drop{i}]``, then ``out``.

    Shapes: input ``(batch, in_features)``; output ``(batch, out_features)``, or
    ``(batch, width)`` when ``out_features`` is ``None`` (no head; the tutorial's network).

    Raises:
        InitlabError: a non-positive size or depth, a dropout outside [0, 1), an unknown activation.

    >>> mlp(100, 50, 2, 10, "tanh")
    Sequential(
      (fc1): Linear(in_features=100, out_features=50, bias=True)
      (act1): Tanh()
      (fc2): Linear(in_features=50, out_features=50, bias=True)
      (act2): Tanh()
      (out): Linear(in_features=50, out_features=10, bias=True)
    )
    """
    for name, value in (("in_features", in_features), ("width", width), ("depth", depth)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InitlabError(f"{name}={value!r} is invalid: pass an integer >= 1")
    if out_features is not None and (not isinstance(out_features, int) or out_features < 1):
        raise InitlabError(f"out_features={out_features!r} is invalid: pass an integer >= 1 or None")
    if not 0.0 <= dropout < 1.0:
        raise InitlabError(f"dropout={dropout!r} is invalid: pass a probability in [0, 1)")
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    fan_in = in_features
    for i in range(1, depth + 1):
        layers[f"fc{i}"] = nn.Linear(fan_in, width, bias=bias)
        layers[f"act{i}"] = activation_module(activation)
        if dropout > 0:
            layers[f"drop{i}"] = nn.Dropout(dropout)
        fan_in = width
    if out_features is not None:
        layers["out"] = nn.Linear(fan_in, out_features, bias=bias)
    return nn.Sequential(layers)
