"""The handler of embedding tables (``nn.Embedding``, ``nn.EmbeddingBag``)."""

from __future__ import annotations

from torch import nn

from initlab import schemes
from initlab.model.handlers.registry import register_handler
from initlab.model.plan import Fill, PlanRow
from initlab.model.policies import SchemeContext
from initlab.model.rows import own_rows, set_propagated, set_spec


def handle_embedding(ctx: SchemeContext, q: str, m: nn.Embedding | nn.EmbeddingBag) -> list[PlanRow]:
    """The row of an embedding table: ``N(0, embedding_std^2)`` (default 1), padding row 0.

    Under ``"auto"`` a table tied to an output head (GPT-2's ``lm_head``) gets the propagated
    :math:`\\mathbb{E}[w^2] = 1 / (d\\,\\mathbb{E}[h^2])`, ``h`` the head's input
    (:func:`initlab.model.plan_scales`), and the embeddings added to it (positions) the same scale.
    ``"torch_default"``: ``N(0, 1)``; ``"keras_default"``: ``U(±0.05)``."""
    rows = []
    for pname, row in own_rows(q, m):
        if ctx.scheme == "keras_default":
            set_spec(row, "keras_default", schemes.Uniform(-0.05, 0.05))
        elif ctx.scheme == "torch_default":
            set_spec(row, "torch_default", schemes.Normal(1.0))
        elif pname == "weight" and (s := ctx.scale(q, "weight")) is not None:
            set_propagated(row, s, 1)
        else:
            set_spec(row, "embedding", schemes.Normal(ctx.embedding_std))
        if getattr(m, "padding_idx", None) is not None:
            row._fills.append(Fill(slice(m.padding_idx, m.padding_idx + 1), schemes.Constant(0.0)))
            row.note = f"padding row {m.padding_idx} zero"
        rows.append(row)
    return rows


register_handler(nn.Embedding, handle_embedding)
register_handler(nn.EmbeddingBag, handle_embedding)
