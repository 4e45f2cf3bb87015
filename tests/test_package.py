"""The package's public surface: every advertised name resolves, and the function names stay
functions even after their submodules are imported."""

from __future__ import annotations

import importlib

import pytest

import initlab


@pytest.mark.parametrize("name", initlab.__all__)
def test_every_public_name_resolves(name):
    assert getattr(initlab, name) is not None


def test_every_module_of_the_package_is_reachable_as_an_attribute():
    for module in ("fans", "gains", "schemes", "init", "numpy_init", "apply", "lsuv", "pretrain",
                   "theory", "data", "models", "records", "errors", "experiments", "report"):
        assert getattr(initlab, module) is importlib.import_module(f"initlab.{module}")


def test_functions_are_not_shadowed_by_their_modules():
    importlib.import_module("initlab.probe")
    assert callable(initlab.probe) and not isinstance(initlab.probe, type(initlab))
    assert callable(initlab.init_model) and callable(initlab.lsuv_) and callable(initlab.gain)


def test_dir_lists_the_lazy_public_names():
    """dir(initlab) (tab completion) shows names that are imported only on first use."""
    names = dir(initlab)
    assert {"init_model", "gain", "theory", "lsuv_", "probe"} <= set(names)
    assert set(initlab.__all__) <= set(names)
