"""Model families of the sweepable experiments: one registry, name -> builder and input kind.

``mlp`` (:func:`initlab.models.mlp`), ``cnn`` (:func:`initlab.zoo.plain_cnn`), ``resnet``
(:func:`initlab.zoo.cifar_resnet`), ``gpt`` (:func:`initlab.zoo.char_gpt`) and ``FILE.py:FUNCTION``,
a factory of your own. A family says what its inputs are (``features``, ``images``, ``tokens``),
so the experiments feed it the right tensors.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from initlab.errors import InitlabError

__all__ = ["ModelArgs", "Family", "FAMILIES", "is_factory", "check_model", "build_model", "input_kind",
           "factory_sha256", "image_side"]


@dataclass(frozen=True)
class ModelArgs:
    """What a family builds from: ``depth`` (hidden layers / convs / blocks), ``width`` (units,
    channels or embedding width), ``activation``, ``norm`` (``None``: the family's default; ResNet:
    BatchNorm, GPT: pre-LN; ``False``: without), ``n_features`` (flat input size; images are
    square, ``side = sqrt(n_features)``), ``n_classes``, ``context`` (GPT tokens)."""

    depth: int
    width: int
    activation: str
    norm: bool | None
    n_features: int
    n_classes: int
    context: int = 128


@dataclass(frozen=True)
class Family:
    """One built-in family: ``build(args)`` and the ``inputs`` it takes."""

    name: str
    build: Callable[[ModelArgs], nn.Module]
    inputs: str


def image_side(n_features: int) -> int:
    """The side of a square one-channel image of ``n_features`` pixels.

    Raises:
        InitlabError: ``n_features`` is not a perfect square.

    >>> image_side(784)
    28
    """
    side = math.isqrt(int(n_features))
    if side * side != n_features:
        raise InitlabError(f"{n_features} features are not a square image: use an image data set "
                           "(mnist5k, digits, fashion-mnist, mnist) with model cnn or resnet")
    return side


def _no_norm(args: ModelArgs, family: str) -> None:
    if args.norm:
        raise InitlabError(f"norm=true is invalid for model {family!r}: it has no normalization layer")


def _mlp(args: ModelArgs) -> nn.Module:
    from initlab.models import mlp

    _no_norm(args, "mlp")
    return mlp(args.n_features, args.width, args.depth, args.n_classes, args.activation)


def _cnn(args: ModelArgs) -> nn.Module:
    from initlab import zoo

    _no_norm(args, "cnn")
    image_side(args.n_features)
    return zoo.plain_cnn(args.depth, args.width, args.activation, in_channels=1, classes=args.n_classes)


def _resnet(args: ModelArgs) -> nn.Module:
    from initlab import zoo

    image_side(args.n_features)
    return zoo.cifar_resnet(args.depth, norm=args.norm is not False, in_channels=1, classes=args.n_classes,
                            width=args.width)


def _gpt(args: ModelArgs) -> nn.Module:
    from initlab import zoo

    return zoo.char_gpt(args.depth, width=args.width, context=args.context,
                        ln="none" if args.norm is False else "pre")


#: The built-in families by name.
FAMILIES: dict[str, Family] = {
    "mlp": Family("mlp", _mlp, "features"),
    "cnn": Family("cnn", _cnn, "images"),
    "resnet": Family("resnet", _resnet, "images"),
    "gpt": Family("gpt", _gpt, "tokens"),
}


def is_factory(model: str) -> bool:
    """Whether ``model`` names a factory ``FILE.py:FUNCTION`` rather than a built-in family.

    >>> is_factory("mlp"), is_factory("nets.py:build")
    (False, True)
    """
    path, sep, fn = str(model).rpartition(":")
    return bool(sep and path.endswith(".py") and fn)


def check_model(model: str) -> str:
    """Return ``model`` if it is a built-in family or an existing ``FILE.py:FUNCTION``.

    Raises:
        InitlabError: an unknown family; a factory file that does not exist.
    """
    if is_factory(model):
        path = Path(str(model).rpartition(":")[0])
        if not path.is_file():
            raise InitlabError(f"model={model!r}: {str(path)!r} is not a file: pass an existing "
                               "FILE.py:FUNCTION")
        return model
    if model not in FAMILIES:
        raise InitlabError(f"model={model!r} is invalid: use one of {', '.join(FAMILIES)} or "
                           "FILE.py:FUNCTION")
    return model


def factory_sha256(model: str) -> str | None:
    """SHA-256 of the factory file of a ``FILE.py:FUNCTION`` model (``None`` for a built-in family):
    a sweep keys its cells on the code, not on where the file lies."""
    if not is_factory(model):
        return None
    return hashlib.sha256(Path(str(model).rpartition(":")[0]).read_bytes()).hexdigest()


def input_kind(model: str, dataset: str) -> str:
    """``features``, ``images`` or ``tokens``: what ``model`` is fed (a factory gets tokens on the
    ``stdlib`` corpus, flat features otherwise)."""
    if is_factory(model):
        return "tokens" if dataset == "stdlib" else "features"
    return check_and_get(model).inputs


def check_and_get(model: str) -> Family:
    """The built-in :class:`Family` called ``model`` (:func:`check_model` first)."""
    return FAMILIES[check_model(model)]


def _load_factory(target: str) -> Callable[..., nn.Module]:
    path_s, _, fn_name = str(target).rpartition(":")
    path = Path(path_s).resolve()
    name = f"_initlab_sweep_{hashlib.sha256(str(path).encode()).hexdigest()[:16]}"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise InitlabError(f"cannot import {path_s!r}: pass a Python source file")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise InitlabError(f"{path_s!r} has no function {fn_name!r}: pass FILE.py:FUNCTION")
    return fn


def build_model(model: str, args: ModelArgs) -> nn.Module:
    """Build ``model`` (a family name or ``FILE.py:FUNCTION``) from ``args``. A factory is called
    with the keywords of :class:`ModelArgs` it declares (all of them if it takes ``**kwargs``) and
    must return an ``nn.Module``.

    Raises:
        InitlabError: unknown family, bad sizes for it, a factory that is missing or returns
            something else.

    >>> build_model("mlp", ModelArgs(2, 8, "relu", None, 4, 3)).out
    Linear(in_features=8, out_features=3, bias=True)
    """
    if not is_factory(model):
        return check_and_get(model).build(args)
    fn = _load_factory(check_model(model))
    params = inspect.signature(fn).parameters
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs = {k: v for k, v in vars(args).items() if takes_all or k in params}
    built = fn(**kwargs)
    if not isinstance(built, nn.Module):
        raise InitlabError(f"{model} returned {type(built).__name__}, not an nn.Module: return the model")
    return built
