"""What every figure module of the demo report shares: :class:`FigureInfo`, scheme names, saving
through :mod:`initlab.report.style`, and record selection."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from initlab.experiments.common import SCHEME_LABELS
from initlab.report import style

__all__ = ["FigureInfo", "scheme_label", "save_info", "select", "ordered"]


@dataclass(frozen=True)
class FigureInfo:
    """One written figure: ``file`` (path relative to the report, e.g. ``figures/x.png``),
    ``title``, ``section`` (the report section it belongs to), ``alt`` text, and the size to
    show it at, ``width`` x ``height`` CSS pixels (its physical size: see
    :mod:`initlab.report.style`)."""

    file: str
    title: str
    section: str
    alt: str
    width: int = 0
    height: int = 0


def scheme_label(scheme: str) -> str:
    """Display name of a scheme.

    >>> scheme_label("he_normal")
    'He normal'
    """
    return SCHEME_LABELS.get(scheme, scheme)


def save_info(fig: Any, directory: Path, name: str, title: str, section: str, alt: str) -> FigureInfo:
    """Save ``fig`` as ``directory/name`` with :func:`initlab.report.style.save` and describe it."""
    width, height = style.save(fig, directory / name)
    return FigureInfo(f"{directory.name}/{name}", title, section, alt, width, height)


def select(records: Iterable[dict[str, Any]], **where: Any) -> list[dict[str, Any]]:
    """The records whose fields equal ``where``'s values."""
    return [r for r in records if all(r.get(k) == v for k, v in where.items())]


def ordered(values: Iterable[Any]) -> list[Any]:
    """Distinct values in first-seen order."""
    return list(dict.fromkeys(values))
