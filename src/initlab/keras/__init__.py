"""Keras 3 front end: initlab's schemes as Keras initializers, and :func:`init_model` for Keras models.

``pip install 'initlab[keras]'`` (Keras 3; no TensorFlow or JAX needed: Keras runs on the torch
backend). When Keras is not imported yet, ``KERAS_BACKEND`` is not set and the backend named in
``~/.keras/keras.json`` (Keras writes ``"tensorflow"`` there on its first import) is not installed,
importing this package sets ``KERAS_BACKEND=torch``, the backend initlab already depends on; a backend
chosen otherwise is kept (the initializers draw with NumPy and convert with ``keras.ops``, so they work
on any backend; ``init_model`` measures an activation initlab does not know only on the torch backend).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path


def _configured_backend_installed() -> bool:
    """Whether ``keras.json`` names a backend whose package is installed."""
    home = os.environ.get("KERAS_HOME") or str(Path("~").expanduser() / ".keras")
    try:
        name = json.loads((Path(home) / "keras.json").read_text(encoding="utf-8")).get("backend")
    except (OSError, ValueError, TypeError, AttributeError):
        return False
    return isinstance(name, str) and name.isidentifier() and importlib.util.find_spec(name) is not None


if "keras" not in sys.modules and "KERAS_BACKEND" not in os.environ and not _configured_backend_installed():
    os.environ["KERAS_BACKEND"] = "torch"

try:
    import keras
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "initlab.keras needs Keras 3: pip install 'initlab[keras]' (or pip install 'keras>=3')"
    ) from exc

if not str(getattr(keras, "__version__", "0")).startswith("3"):  # pragma: no cover
    raise ImportError(
        f"initlab.keras needs Keras 3, found keras {keras.__version__}: pip install 'keras>=3'"
    )

from initlab.keras.initializers import (  # noqa: E402  (after the backend is chosen)
    ConvOrthogonal,
    Critical,
    CriticalBias,
    DeltaLooksLinear,
    DeltaOrthogonal,
    Dirac,
    GlorotNormal,
    GlorotUniform,
    HeNormal,
    HeUniform,
    Identity,
    InitlabInitializer,
    LecunNormal,
    LecunUniform,
    LooksLinear,
    Named,
    Normal,
    Orthogonal,
    Sparse,
    TorchDefault,
    Uniform,
    VarianceScaling,
)
from initlab.keras.layouts import KERAS_LAYOUTS, KernelLayout, kernel_layout  # noqa: E402
from initlab.keras.model import KERAS_SCHEMES, init_model  # noqa: E402

__all__ = [
    "init_model", "KERAS_SCHEMES", "KERAS_LAYOUTS", "KernelLayout", "kernel_layout", "InitlabInitializer",
    "VarianceScaling", "GlorotUniform", "GlorotNormal", "HeNormal", "HeUniform", "LecunNormal",
    "LecunUniform", "TorchDefault", "Named", "Orthogonal", "DeltaOrthogonal", "ConvOrthogonal",
    "LooksLinear", "DeltaLooksLinear", "Critical", "CriticalBias", "Normal", "Uniform", "Sparse", "Identity",
    "Dirac",
]
