"""One handler per module family, found through the registry by the module's type (its MRO):
``linear`` (Linear, Conv, ConvTranspose, transformers' Conv1D), ``attention``
(MultiheadAttention), ``recurrent`` (RNN, LSTM, GRU), ``bilinear``, ``embedding``, ``norm`` (also
norms recognised by what they compute), ``activation`` (PReLU) and ``reparametrized``
(weight_norm, spectral_norm).
:func:`register_handler` adds a family."""

from initlab.model.handlers import (
    activation,
    attention,
    bilinear,
    embedding,
    linear,
    norm,
    recurrent,
    reparametrized,
)
from initlab.model.handlers.registry import Handler, handle, handler_for, register_fallback, register_handler

__all__ = ["Handler", "handle", "handler_for", "register_fallback", "register_handler",
           "activation", "attention", "bilinear", "embedding", "linear", "norm", "recurrent",
           "reparametrized"]
