"""Walking a model's inputs and outputs: the tensors in nested tuples, lists and dicts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch


def _first_tensor(obj: Any) -> torch.Tensor | None:
    """The first tensor in ``obj`` (depth first), else ``None``."""
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, Mapping):
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        for o in obj:
            t = _first_tensor(o)
            if t is not None:
                return t
    return None


def _tensor_leaves(obj: Any) -> list[torch.Tensor]:
    """Every tensor in ``obj``, depth first."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, Mapping):
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensor_leaves(o)]
    return []


def _thaw(obj: Any) -> Any:
    """``obj`` with every inference-mode tensor (made under ``torch.inference_mode()``, which
    autograd cannot save) replaced by a normal copy; containers rebuilt, other values as is."""
    if isinstance(obj, torch.Tensor):
        if not obj.is_inference():
            return obj
        with torch.inference_mode(False):
            return obj.clone()
    if isinstance(obj, Mapping):
        return {k: _thaw(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_thaw(v) for v in obj) if type(obj) in (list, tuple) else obj
    return obj


def _split_inputs(inputs: Any) -> tuple[list, dict]:
    """``(args, kwargs)`` of ``model(inputs)``, ``model(*inputs)`` or ``model(**inputs)``."""
    if isinstance(inputs, Mapping):
        return [], dict(inputs)
    if isinstance(inputs, (list, tuple)):
        return list(inputs), {}
    return [inputs], {}
