"""The handler registry: which function plans the parameters of a module, by the module's type,
looked up through its MRO (so subclasses resolve and users can register their own)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from torch import nn

from initlab.errors import InitlabError

if TYPE_CHECKING:
    from initlab.model.plan import PlanRow
    from initlab.model.policies import SchemeContext

#: ``handler(ctx, qualname, module) -> rows``: the :class:`~initlab.model.plan.PlanRow` of each
#: parameter ``module`` owns that the handler knows (others are left to rules), or ``None`` when it
#: does not know the module after all.
Handler = Callable[["SchemeContext", str, nn.Module], "list[PlanRow] | None"]

_BY_TYPE: dict[type, Handler] = {}
_BY_NAME: dict[tuple[str, str], Handler] = {}  # (module, class) of classes initlab never imports
_FALLBACKS: list[Handler] = []


def register_handler(cls: type | str, fn: Handler) -> Handler:
    """Make ``fn`` the handler of ``cls`` and its subclasses (unless one of them has its own).

    Args:
        cls: an ``nn.Module`` subclass, or the dotted name of one that is looked up in
            ``sys.modules`` only, never imported (``"transformers.pytorch_utils.Conv1D"``).
        fn: ``fn(ctx, qualname, module) -> list[PlanRow] | None`` (:data:`Handler`); ``ctx`` is a
            :class:`~initlab.model.policies.SchemeContext` (``ctx.scheme``, ``ctx.weight_spec``,
            ``ctx.bias_spec``); rows are made with :func:`initlab.model.rows.own_rows` and decided
            with :func:`initlab.model.rows.set_spec`.

    Returns:
        ``fn``, so that it also works as a decorator body.

    Raises:
        InitlabError: ``cls`` is neither an ``nn.Module`` subclass nor a dotted name, or ``fn`` is
            not callable.

    >>> import torch
    >>> from initlab import schemes
    >>> from initlab.model import init_model
    >>> from initlab.model.rows import own_rows, set_spec
    >>> class Scale(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.alpha = nn.Parameter(torch.zeros(1))
    >>> def ones(ctx, q, m):
    ...     rows = [row for _, row in own_rows(q, m)]
    ...     for row in rows:
    ...         set_spec(row, "ones", schemes.Constant(1.0))
    ...     return rows
    >>> _ = register_handler(Scale, ones)
    >>> init_model(nn.Sequential(Scale()), dry_run=True)["0.alpha"].spec
    'constant(1)'
    """
    if not callable(fn):
        raise InitlabError(f"register_handler: fn={fn!r} is not callable: pass fn(ctx, qualname, module)")
    if isinstance(cls, str):
        mod, sep, name = cls.rpartition(".")
        if not sep or not mod or not name:
            raise InitlabError(f"register_handler: {cls!r} is not a dotted class name: pass e.g. "
                               "'transformers.pytorch_utils.Conv1D'")
        _BY_NAME[(mod, name)] = fn
    elif isinstance(cls, type) and issubclass(cls, nn.Module):
        _BY_TYPE[cls] = fn
    else:
        raise InitlabError(f"register_handler: cls={cls!r} must be an nn.Module subclass or a dotted "
                           "class name")
    return fn


def register_fallback(fn: Handler) -> Handler:
    """Try ``fn`` on every module no registered type matches (in registration order; the first
    that returns rows decides): modules recognised by what they compute, not by their class."""
    _FALLBACKS.append(fn)
    return fn


def handler_for(cls: type) -> Handler | None:
    """The handler registered for ``cls`` or the nearest class in its MRO, else ``None``."""
    table = dict(_loaded_names())
    table.update(_BY_TYPE)
    for klass in cls.__mro__:
        fn = table.get(klass)
        if fn is not None:
            return fn
    return None


def _loaded_names() -> dict[type, Handler]:
    """The classes registered by name whose module is loaded."""
    found = {}
    for (mod, name), fn in _BY_NAME.items():
        klass = getattr(sys.modules.get(mod), name, None)
        if isinstance(klass, type) and issubclass(klass, nn.Module):
            found[klass] = fn
    return found


def handle(ctx: SchemeContext, q: str, m: nn.Module) -> list[PlanRow] | None:
    """The rows of the parameters ``m`` owns under ``ctx``; ``None`` for an unknown module."""
    fn = handler_for(type(m))
    if fn is not None:
        return fn(ctx, q, m)
    for fallback in _FALLBACKS:
        rows = fallback(ctx, q, m)
        if rows is not None:
            return rows
    return None
