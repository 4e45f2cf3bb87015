"""A real text corpus that ships with every Python: the standard library's own ``.py`` source, as
bytes (one token per byte), with a deterministic train/validation split by file."""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

import numpy as np

from initlab.errors import InitlabError

__all__ = ["stdlib_dir", "stdlib_files", "split_files", "read_bytes", "stdlib_bytes", "stdlib_split"]

#: Top-level folders of the stdlib directory left out by default: installed third-party packages
#: (not the standard library) and CPython's regression tests (odd data, encodings on purpose).
EXCLUDED: tuple[str, ...] = ("site-packages", "dist-packages", "test")


def stdlib_dir() -> Path:
    """The running interpreter's standard-library directory, ``sysconfig.get_paths()["stdlib"]``.

    >>> (stdlib_dir() / "os.py").is_file()
    True
    """
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(root: str | os.PathLike | None = None,
                 exclude: tuple[str, ...] = EXCLUDED) -> list[Path]:
    """Every ``.py`` file under ``root`` (default :func:`stdlib_dir`), in sorted path order, less
    those under a top-level folder named in ``exclude``.

    Raises:
        InitlabError: no ``.py`` file there (the message names the directory).

    >>> stdlib_files()[0].suffix
    '.py'
    """
    base = Path(root) if root is not None else stdlib_dir()
    files = sorted(f for f in base.rglob("*.py")
                   if f.is_file() and f.relative_to(base).parts[0] not in exclude)
    if not files:
        raise InitlabError(f"no .py files under {str(base)!r}: pass root= a directory of Python source "
                           "(the standard library lives at sysconfig.get_paths()['stdlib'])")
    return files


def split_files(files: list[Path], valid_fraction: float = 0.1, *,
                seed: int = 0) -> tuple[list[Path], list[Path]]:
    """Split ``files`` into disjoint train and validation lists by file: a seeded permutation
    (``numpy.random.default_rng(seed)``), the first ``max(1, round(valid_fraction * n))`` files
    to validation; each list keeps the permuted order (same files and seed, same split).

    Raises:
        InitlabError: ``valid_fraction`` outside ``(0, 1)``; fewer than 2 files.

    >>> train, valid = split_files([Path(f"{i}.py") for i in range(10)], 0.2)
    >>> len(train), len(valid), set(train) & set(valid)
    (8, 2, set())
    """
    if not 0.0 < valid_fraction < 1.0:
        raise InitlabError(f"valid_fraction={valid_fraction!r} is invalid: pass a fraction in (0, 1)")
    if len(files) < 2:
        raise InitlabError(f"{len(files)} file(s) cannot be split: pass 2 or more")
    order = np.random.default_rng(seed).permutation(len(files))
    n_valid = min(len(files) - 1, max(1, round(valid_fraction * len(files))))
    return [files[i] for i in order[n_valid:]], [files[i] for i in order[:n_valid]]


def read_bytes(files: list[Path], max_bytes: int | None = None) -> np.ndarray:
    """The bytes of ``files`` concatenated in the given order, cut at ``max_bytes`` (``None``: all),
    as a ``uint8`` array of shape ``(n,)``.

    >>> read_bytes(stdlib_files()[:3], 10).dtype
    dtype('uint8')
    """
    chunks, total = [], 0
    for f in files:
        if max_bytes is not None and total >= max_bytes:
            break
        data = f.read_bytes()
        chunks.append(data)
        total += len(data)
    out = np.frombuffer(b"".join(chunks), dtype=np.uint8)
    return out[:max_bytes].copy() if max_bytes is not None else out.copy()


def stdlib_bytes(max_bytes: int | None = 4_000_000, *, seed: int | None = None,
                 root: str | os.PathLike | None = None) -> np.ndarray:
    """The standard library's source as a ``uint8`` array (bytes as tokens, vocabulary 256):
    :func:`stdlib_files` in sorted order (``seed=None``) or in a seeded random order, concatenated
    and cut at ``max_bytes``.

    Raises:
        InitlabError: no ``.py`` file under ``root``.

    >>> stdlib_bytes(6).shape
    (6,)
    """
    files = stdlib_files(root)
    if seed is not None:
        files = [files[i] for i in np.random.default_rng(seed).permutation(len(files))]
    return read_bytes(files, max_bytes)


def stdlib_split(max_train_bytes: int | None = 4_000_000, max_valid_bytes: int | None = 400_000, *,
                 valid_fraction: float = 0.1, seed: int = 0,
                 root: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation bytes of the standard library, split by file (:func:`split_files`: no
    file is in both), each a ``uint8`` array cut at its byte budget.

    Raises:
        InitlabError: no ``.py`` file under ``root``; a bad ``valid_fraction``.

    >>> train, valid = stdlib_split(1000, 100)
    >>> train.shape, valid.shape
    ((1000,), (100,))
    """
    train, valid = split_files(stdlib_files(root), valid_fraction, seed=seed)
    return read_bytes(train, max_train_bytes), read_bytes(valid, max_valid_bytes)
