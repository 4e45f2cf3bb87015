"""initlab: neural-network weight initialization — every scheme from the literature, applied
correctly to whole PyTorch models, and the instruments to see why an init works or fails.

Public entry points (submodules are imported on first use; :func:`initlab.probe` is imported
eagerly, because ``import initlab.probe`` would otherwise rebind the name to the submodule):

* :mod:`initlab.init` — drop-in for ``torch.nn.init`` (in place, ``generator=``);
* :mod:`initlab.numpy_init` — the same schemes as pure NumPy samplers;
* :func:`initlab.gain` — forward/backward gain of any elementwise activation;
* :mod:`initlab.fans`, :mod:`initlab.schemes` — the math layer;
* :func:`initlab.probe` — per-layer forward/backward statistics of a model;
* :func:`initlab.init_model` — whole-model initialization with activation detection;
* :mod:`initlab.graph` — a model's data-flow graph and the moments propagated through it;
* :mod:`initlab.model` — the graph-wide scale policy behind ``"auto"`` and ``"variance"``;
* :mod:`initlab.zoo` — reference models (ResNets, plain CNNs, MobileNet, U-Net, LSTM, GPTs, HF);
* :mod:`initlab.transforms` — add the parameters Fixup and SkipInit/ReZero need (scalars, gates);
* :mod:`initlab.corpus` — real text on every machine: the CPython standard library's source;
* :func:`initlab.lsuv_`, :func:`initlab.pretrain_layerwise` — data-dependent inits;
* :mod:`initlab.theory` — mean-field signal propagation (q*, chi_1, depth scales).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = {
    "fans", "gains", "schemes", "init", "numpy_init", "apply", "lsuv",
    "pretrain", "theory", "data", "experiments", "report", "records", "errors", "models", "graph",
    "model", "zoo", "transforms", "corpus",
}
_ATTRS = {
    "gain": ("initlab.gains", "gain"),
    "probe": ("initlab.probe", "probe"),
    "ProbeResult": ("initlab.probe", "ProbeResult"),
    "init_model": ("initlab.model", "init_model"),
    "InitPlan": ("initlab.model", "InitPlan"),
    "lsuv_": ("initlab.lsuv", "lsuv_"),
    "LSUVResult": ("initlab.lsuv", "LSUVResult"),
    "pretrain_layerwise": ("initlab.pretrain", "pretrain_layerwise"),
    "PretrainResult": ("initlab.pretrain", "PretrainResult"),
    "InitlabError": ("initlab.errors", "InitlabError"),
}

__all__ = sorted(_SUBMODULES | set(_ATTRS) | {"__version__"})


def __getattr__(name: str) -> Any:
    if name in _ATTRS:
        module, attr = _ATTRS[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        module = importlib.import_module(f"initlab.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'initlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The loaded names and every lazily imported public one (``dir(initlab)``, tab completion)."""
    return sorted(set(globals()) | set(__all__))

# `initlab.probe` must be the FUNCTION even after `import initlab.probe` (which binds the submodule
# as an attribute of the package): import it eagerly so the name is rebound to the function.
from initlab.probe import ProbeResult as ProbeResult  # noqa: E402
from initlab.probe import probe as probe  # noqa: E402
