"""Model transforms that add the parameters residual-family init schemes need (skip gates, Fixup
scalars): a re-export of :mod:`initlab.model.transforms`."""

from initlab.model.transforms import (
    FIXUP_BIAS_IN,
    FIXUP_BIAS_OUT,
    FIXUP_SCALE,
    SKIP_GATE,
    TRANSFORM_PARAMS,
    BranchEdit,
    TransformReport,
    add_fixup_scalars,
    add_skip_gates,
    gated_modules,
)

__all__ = [
    "SKIP_GATE",
    "FIXUP_BIAS_IN",
    "FIXUP_BIAS_OUT",
    "FIXUP_SCALE",
    "TRANSFORM_PARAMS",
    "BranchEdit",
    "TransformReport",
    "add_skip_gates",
    "add_fixup_scalars",
    "gated_modules",
]
