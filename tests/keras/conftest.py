"""Keras tests run on the torch backend (no TensorFlow, no JAX): chosen before Keras is imported."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")

_HERE = Path(__file__).resolve().parent
_SOURCE = _HERE.parents[1] / "src" / "initlab" / "keras"  # its doctests
#: Keras's torch backend converts tensors with ``np.array(tensor)``, which NumPy 2 warns about (torch's
#: ``Tensor.__array__`` takes no ``copy``): Keras's and torch's business, not these tests'.
_KERAS_NUMPY_WARNING = "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"


def pytest_collection_modifyitems(config, items):
    for item in items:
        parents = Path(str(item.fspath)).resolve().parents
        if _HERE in parents or _SOURCE in parents:
            item.add_marker(pytest.mark.filterwarnings(_KERAS_NUMPY_WARNING))
