"""Readers of the CLI's arguments: an ``--input-shape`` and a ``FILE.py:FUNCTION`` target (they
move into ``cli/`` when the CLI becomes a package)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from initlab.errors import InitlabError

if TYPE_CHECKING:
    from torch import nn


def parse_shape(text: str) -> tuple[int, ...]:
    """Parse ``"1,3,32,32"`` (or ``"1x3x32x32"``) into a shape tuple.

    Raises:
        InitlabError: empty text, a non-integer or a non-positive dimension.

    >>> parse_shape("1,3,32,32")
    (1, 3, 32, 32)
    """
    text_s = str(text).strip()
    parts = [s.strip() for s in text_s.split("," if "," in text_s else "x")]
    try:
        dims = tuple(int(s) for s in parts)
    except ValueError:
        dims = ()
    if not dims or any(d < 1 for d in dims):
        raise InitlabError(f"--input-shape {text!r} is invalid: pass positive integers, e.g. 1,3,32,32")
    return dims


def parse_shapes(text: str) -> list[tuple[int, ...]]:
    """Parse one input shape or several, for a forward that takes several positional tensors:
    ``"2,7,32"`` -> ``[(2, 7, 32)]``; ``"2,7,32;2,5,32"`` (``nn.Transformer``'s ``src`` and ``tgt``)
    -> ``[(2, 7, 32), (2, 5, 32)]``.

    Raises:
        InitlabError: empty text, or a shape :func:`parse_shape` refuses (the message quotes it).

    >>> parse_shapes("2,7,32; 2,5,32")
    [(2, 7, 32), (2, 5, 32)]
    """
    parts = str(text).split(";")
    if not any(t.strip() for t in parts) or (len(parts) > 1 and not all(t.strip() for t in parts)):
        raise InitlabError(f"--input-shape {text!r} is invalid: pass positive integers, e.g. 1,3,32,32, and "
                           "separate the shapes of several inputs by ';' (2,7,32;2,5,32)")
    try:
        return [parse_shape(t) for t in parts]
    except InitlabError:
        raise InitlabError(f"--input-shape {text!r} is invalid: pass positive integers, e.g. 1,3,32,32, and "
                           "separate the shapes of several inputs by ';' (2,7,32;2,5,32)") from None


def load_factory(target: str) -> Callable[[], nn.Module]:
    """Load ``"path/to/file.py:build_model"``: import the file by path and return the function.

    The file's folder is on ``sys.path`` while it is imported (as with ``python FILE.py``), so
    it may import modules next to it.

    Raises:
        InitlabError: no ``:`` in ``target``; ``FILE.py`` is a directory; importing it raised
            (a syntax error, a missing module, ``sys.exit``: the message names the exception);
            the function is missing or not callable.
        FileNotFoundError: the file does not exist.

    >>> load_factory("no_colon")
    Traceback (most recent call last):
    ...
    initlab.errors.InitlabError: 'no_colon' is not FILE.py:FUNCTION: pass e.g. model.py:build_model
    """
    path_s, sep, fn_name = str(target).rpartition(":")
    if not sep or not path_s or not fn_name:
        raise InitlabError(f"{target!r} is not FILE.py:FUNCTION: pass e.g. model.py:build_model")
    path = Path(path_s)
    if path.is_dir():
        raise InitlabError(f"model file {str(path)!r} is a directory: pass the path of a .py file")
    if not path.is_file():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist: pass the path of a .py file")
    mod_name = f"_initlab_plan_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise InitlabError(f"cannot import {str(path)!r}: pass a Python source file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    folder = str(path.resolve().parent)  # as `python FILE.py` does: the file may import its siblings
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # the user's code: SyntaxError, ImportError, sys.exit(), ...
        sys.modules.pop(mod_name, None)
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise InitlabError(f"importing {str(path)!r} failed: {type(exc).__name__}: {msg}") from exc
    finally:
        if added and folder in sys.path:
            sys.path.remove(folder)
    fn = getattr(module, fn_name, None)
    if fn is None or not callable(fn):
        have = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))
        what = (f"has no function {fn_name!r}" if not hasattr(module, fn_name)
                else f"defines {fn_name!r}, but it is not a function (type {type(fn).__name__})")
        raise InitlabError(f"{str(path)!r} {what}: use one of {', '.join(have) or '(none)'}")
    return fn

