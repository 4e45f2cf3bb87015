"""initlab.apply, the old import path, re-exports the model level and the CLI helpers."""

from __future__ import annotations

import initlab
from initlab import apply, cli_helpers, model


def test_every_name_of_the_old_path_is_the_new_object():
    for name in apply.__all__:
        new = getattr(model, name, None) or getattr(cli_helpers, name)
        assert getattr(apply, name) is new, name
    assert initlab.init_model is model.init_model and initlab.InitPlan is model.InitPlan
