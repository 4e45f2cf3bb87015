"""Example inputs for a model nobody gave inputs for: from a Hugging Face model's own dummy inputs
or config, else from its first weighted layer. Seeded; the global RNG is never read.
"""

from __future__ import annotations

import numbers
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from initlab.errors import InitlabError
from initlab.graph import vocab
from initlab.graph.nodes import Kind
from initlab.graph.record import leaf_modules, refuse_lazy

__all__ = ["example_inputs", "BATCH", "SEQUENCE", "SIDE"]

#: Batch size, sequence length and spatial side of built inputs.
BATCH, SEQUENCE, SIDE = 2, 16, 32
_SEED = 0


def _generator() -> torch.Generator:
    return torch.Generator().manual_seed(_SEED)


def _place(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """The device and floating dtype of the model's first floating parameter (CPU, float32 if none)."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.device, p.dtype
    return torch.device("cpu"), torch.float32


def _randn(model: nn.Module, *shape: int) -> torch.Tensor:
    device, dtype = _place(model)
    return torch.randn(shape, generator=_generator()).to(device=device, dtype=dtype)


def _tokens(model: nn.Module, vocab_size: int, length: int, batch: int) -> torch.Tensor:
    ids = torch.randint(0, vocab_size, (batch, length), generator=_generator())
    return ids.to(_place(model)[0])


def _is_hf(model: nn.Module) -> bool:
    if "transformers" not in sys.modules:  # a transformers model means transformers is imported
        return False
    from transformers import PreTrainedModel

    return isinstance(model, PreTrainedModel)


def _hf_dummy(model: nn.Module) -> dict[str, Any] | None:
    """``model.dummy_inputs`` moved to the model's device, when they hold its main input."""
    main = getattr(model, "main_input_name", "input_ids")
    try:
        dummy = model.dummy_inputs
    except Exception:  # a model class whose dummy_inputs property fails
        return None
    if not isinstance(dummy, dict) or main not in dummy:
        return None
    device = _place(model)[0]
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in dummy.items()}


def _hf_config(model: nn.Module, batch: int, dummy: dict[str, Any] | None) -> tuple[Any, str] | None:
    """Pixel values / input ids of ``batch`` rows built from ``model.config`` by the model's main
    input name; input ids come with decoder ids of the same shape when ``dummy`` holds some (T5's
    decoder needs them). ``None`` when the config lacks the sizes."""
    main = getattr(model, "main_input_name", "input_ids")
    config = getattr(model, "config", None)
    size = getattr(config, "image_size", None)
    side = size if isinstance(size, int) else (tuple(size) if isinstance(size, (tuple, list)) else None)
    if main == "pixel_values" and side is not None:
        channels = getattr(config, "num_channels", 3)
        shape = (batch, channels, *((side, side) if isinstance(side, int) else side))
        return {"pixel_values": _randn(model, *shape)}, f"built from config: pixel_values randn{shape}"
    vocab_size = getattr(config, "vocab_size", None)
    if main != "input_ids" or not isinstance(vocab_size, int):
        return None
    positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    length = min(SEQUENCE, positions) if isinstance(positions, int) else SEQUENCE
    names = ["input_ids", *sorted(k for k in dummy or {} if k.endswith("_input_ids"))]
    gen, device = _generator(), _place(model)[0]
    ids = {k: torch.randint(0, vocab_size, (batch, length), generator=gen).to(device) for k in names}
    also = "".join(f", {k}" for k in names[1:])
    return ids, f"built from config: input_ids{also} randint({vocab_size}, ({batch}, {length}))"


def _from_hf(model: nn.Module, batch: int) -> tuple[Any, str] | None:
    """At the default batch (:data:`BATCH`), ``model.dummy_inputs`` when they hold the model's main
    input (``model.main_input_name``), else inputs built from ``model.config``; at another batch, the
    config's first and the dummy inputs (which keep their own batch) only when it builds none."""
    dummy = _hf_dummy(model)
    if dummy is not None and batch == BATCH:
        return dummy, "model.dummy_inputs"
    built = _hf_config(model, batch, dummy)
    if built is not None or dummy is None:
        return built
    rows = next((v.shape[0] for v in dummy.values() if isinstance(v, torch.Tensor) and v.dim() > 0), None)
    return dummy, (f"model.dummy_inputs (batch {rows}: the config gives no sizes to build batch {batch} "
                   "from)")


def _conv(model: nn.Module, m: nn.Module, batch: int) -> tuple[Any, str]:
    dims = len(m.kernel_size)
    reach = max(d * (k - 1) + 1 for d, k in zip(m.dilation, m.kernel_size, strict=True))
    side = max(SIDE if dims < 3 else SIDE // 2, reach)
    shape = (batch, m.in_channels, *(side,) * dims)
    return _randn(model, *shape), f"randn{shape}"


def _sequence(model: nn.Module, m: nn.Module, features: int, batch: int) -> tuple[Any, str]:
    shape = (batch, 8, features) if getattr(m, "batch_first", False) else (8, batch, features)
    x = _randn(model, *shape)
    return ((x, x, x) if m is model and isinstance(m, nn.MultiheadAttention) else x), f"randn{shape}"


#: First weighted leaf -> (inputs, what they are); keyed by the vocabulary's op (the class name)
#: through the MRO, like the vocabulary itself.
_BUILDERS: dict[type | str, Callable[[nn.Module, nn.Module, int], tuple[Any, str]]] = {
    nn.Linear: lambda model, m, n: (_randn(model, n, m.in_features), f"randn({n}, {m.in_features})"),
    nn.Bilinear: lambda model, m, n: (
        (_randn(model, n, m.in1_features), _randn(model, n, m.in2_features)),
        f"randn({n}, {m.in1_features}), randn({n}, {m.in2_features})"),
    nn.modules.conv._ConvNd: _conv,
    nn.Embedding: lambda model, m, n: (_tokens(model, m.num_embeddings, SEQUENCE, n),
                                       f"randint({m.num_embeddings}, ({n}, {SEQUENCE}))"),
    nn.EmbeddingBag: lambda model, m, n: (_tokens(model, m.num_embeddings, SEQUENCE, n),
                                          f"randint({m.num_embeddings}, ({n}, {SEQUENCE}))"),
    nn.RNNBase: lambda model, m, n: _sequence(model, m, m.input_size, n),
    nn.MultiheadAttention: lambda model, m, n: _sequence(model, m, m.embed_dim, n),
    "transformers.pytorch_utils.Conv1D": lambda model, m, n: (
        _randn(model, n, int(m.weight.shape[0])), f"randn({n}, {int(m.weight.shape[0])})"),
}


def _builder(m: nn.Module) -> Callable[[nn.Module, nn.Module, int], tuple[Any, str]] | None:
    for klass in type(m).__mro__:
        b = _BUILDERS.get(klass) or _BUILDERS.get(f"{klass.__module__}.{klass.__qualname__}")
        if b is not None:
            return b
    return None


def _weighted_leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    if vocab.lookup_module(model) is not None:
        return [("", model)]
    return [(q, m) for q, m in leaf_modules(model)
            if (e := vocab.lookup_module(m)) is not None and e.kind is Kind.LAYER]


def example_inputs(model: nn.Module, batch: int = BATCH) -> tuple[Any, str]:
    """Inputs ``model`` can be called on, and a line that says where they came from.

    Below, ``2`` is the default ``batch`` (:data:`BATCH`: enough to trace; a probe that measures
    statistics asks for more).

    * a Hugging Face ``PreTrainedModel``: ``model.dummy_inputs`` when they hold its
      ``main_input_name``, else from ``model.config`` by that name: ``pixel_values``
      ``(2, num_channels, image_size, image_size)``, ``input_ids``
      ``(2, min(16, max_position_embeddings))`` below ``vocab_size`` (with ``decoder_input_ids`` of
      that shape when the dummy inputs hold them: T5). At a ``batch`` other than :data:`BATCH` the
      config's inputs come first (the dummy ones have a batch of their own, 3 x 5 tokens for GPT-2),
      and the dummy inputs, as they are, only when the config gives no sizes to build them from;
    * else the first weighted leaf (in module order; a model that is itself a layer counts):
      ``Linear`` -> ``randn(2, in_features)``; ``Conv{1,2,3}d`` / ``ConvTranspose{1,2,3}d`` ->
      ``randn(2, in_channels, 32[, 32[, 16, ...]])`` (16 per side in 3-D; at least the dilated kernel);
      ``Embedding`` -> token ids ``(2, 16)`` below ``num_embeddings``; ``LSTM`` / ``GRU`` / ``RNN`` ->
      ``(2, 8, input_size)`` (``(8, 2, .)`` unless ``batch_first``); ``MultiheadAttention`` ->
      ``(2, 8, embed_dim)`` likewise (``(x, x, x)`` for the module itself); HF ``Conv1D`` ->
      ``randn(2, in)``.

    Floating inputs take the dtype and device of the model's first floating parameter. Samples come
    from a ``torch.Generator`` seeded with 0: same model, same bits; the global RNG is not touched.
    The first layer in module order is a guess at the first one called, and spatial sizes are
    guesses too (a CNN ending in ``Linear(64 * 7 * 7, 10)`` wants 28 x 28): pass inputs when it fails.

    Args:
        model: any ``nn.Module``; nothing in it changes.
        batch: examples per built input, an integer >= 1 (a Python or NumPy int; not a bool). A
            Hugging Face model's ``dummy_inputs``, used when the config cannot build inputs, keep theirs.

    Returns:
        ``(inputs, description)``: a tensor, a tuple or a dict of keyword inputs; the description
        goes to :attr:`Graph.inputs_from` (``"built from Linear 'fc1' in_features=784: randn(2, 784)"``).

    Raises:
        InitlabError: nothing to build from (no weighted layer the vocabulary knows); the message
            names the model and says to pass ``example_inputs``. ``batch`` not an integer >= 1. A lazy
            module not materialised yet (its sizes are unknown: ``LazyLinear`` has ``in_features=0``).

    >>> x, how = example_inputs(nn.Sequential(nn.Linear(784, 10)))
    >>> x.shape, how
    (torch.Size([2, 784]), "built from Linear '0' in_features=784: randn(2, 784)")
    """
    if isinstance(batch, bool) or not isinstance(batch, numbers.Integral) or batch < 1:
        raise InitlabError(f"example_inputs batch={batch!r} is invalid: pass an int >= 1")
    batch = int(batch)
    refuse_lazy(model, f"cannot build example inputs for {type(model).__name__}")
    if _is_hf(model) and (built := _from_hf(model, batch)) is not None:
        return built
    for qualname, m in _weighted_leaves(model):
        builder = _builder(m)
        if builder is None:
            continue
        inputs, what = builder(model, m, batch)
        size = next((f" {a}={getattr(m, a)}" for a in ("in_features", "in_channels", "num_embeddings",
                                                        "input_size", "embed_dim") if hasattr(m, a)), "")
        return inputs, f"built from {type(m).__name__} '{qualname}'{size}: {what}"
    raise InitlabError(
        f"cannot build example inputs for {type(model).__name__}: it has no Linear, Conv, Embedding, RNN or "
        "MultiheadAttention layer to read an input size from; pass example_inputs"
    )
