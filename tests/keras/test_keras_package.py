"""Importing ``initlab.keras``: the backend it picks, and one clear line when Keras is missing."""

from __future__ import annotations

import importlib
import json
import sys

import pytest

import initlab.keras as ik


def test_keras_json_backend_counts_only_when_installed(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "keras.json").write_text(json.dumps({"backend": "no_such_backend_pkg"}), encoding="utf-8")
    assert ik._configured_backend_installed() is False  # Keras's default file names an absent backend: torch
    (tmp_path / "keras.json").write_text(json.dumps({"backend": "numpy"}), encoding="utf-8")
    assert ik._configured_backend_installed() is True
    (tmp_path / "keras.json").write_text("not json", encoding="utf-8")
    assert ik._configured_backend_installed() is False


def test_missing_keras_is_one_line_with_the_install_command(monkeypatch):
    for name in [m for m in sys.modules if m == "initlab.keras" or m.startswith("initlab.keras.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "keras", None)  # `import keras` raises ImportError
    message = r"^initlab.keras needs Keras 3: pip install 'initlab\[keras\]'"
    with pytest.raises(ImportError, match=message) as info:
        importlib.import_module("initlab.keras")
    assert "\n" not in str(info.value)
