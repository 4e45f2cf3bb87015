"""The probe package's layout: the public names re-exported by ``initlab.probe``, one frozen
config of tuning knobs, one verdict check per kind."""

from __future__ import annotations

import dataclasses
import sys

import pytest

import initlab
import initlab.probe  # noqa: F401  (binds the submodule first: initlab.probe must stay the function)
from initlab.probe import VERDICT_KINDS, run, tuning, verdicts


def test_public_names_are_re_exported_and_probe_stays_the_function():
    package = sys.modules["initlab.probe"]
    assert set(package.__all__) == {"probe", "ProbeResult", "Verdict", "Thresholds", "STATS", "VERDICT_KINDS",
                                    "OUTPUT_LAYER", "NOTE_LAYER"}
    for name in package.__all__:
        assert getattr(package, name) is not None
    assert initlab.probe is package.probe is run.probe


def test_tuning_knobs_are_one_frozen_config():
    assert tuning.TUNING == tuning.Tuning()
    with pytest.raises(dataclasses.FrozenInstanceError):
        tuning.TUNING.cpu_shortcuts = False  # type: ignore[misc]


def test_every_verdict_kind_has_one_check():
    assert set(verdicts._CHECKS) == set(VERDICT_KINDS)
