"""Old import path of whole-model initialization: re-exports :mod:`initlab.model` (``init_model``,
the plan, detection, rules) and the CLI helpers of :mod:`initlab.cli_helpers`. New code imports
from :mod:`initlab.model`, where each behaviour is documented by the function that owns it."""

from __future__ import annotations

from initlab.cli_helpers import load_factory, parse_shape
from initlab.model import (
    RELU_FAMILY,
    SCHEMES,
    DetectionFallbackWarning,
    InitPlan,
    Packed,
    PlanRow,
    SkippedParameterWarning,
    detect_activations,
    fallback_message,
    init_model,
    residual_scaling_rule,
)

__all__ = [
    "init_model",
    "InitPlan",
    "PlanRow",
    "SCHEMES",
    "RELU_FAMILY",
    "residual_scaling_rule",
    "detect_activations",
    "load_factory",
    "parse_shape",
    "Packed",
    "DetectionFallbackWarning",
    "SkippedParameterWarning",
    "fallback_message",
]
