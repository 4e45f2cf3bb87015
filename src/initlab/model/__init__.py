"""The model level: decide every parameter's initialization from how the model computes.

:func:`init_model` detects the activations (``detect``), builds the scheme's context
(``policies``; a plain MLP's or CNN's isometric ``chain``, the propagated scales of ``propagation`` and
``predict``), plans each parameter once (``traverse``: one handler per module family in
``handlers``, then ``rules``), and writes the :class:`InitPlan` (``plan``, ``write``).
"""

from initlab.model.api import init_model
from initlab.model.detect import DetectionFallbackWarning, detect_activations, fallback_message
from initlab.model.handlers import register_handler
from initlab.model.plan import InitPlan, PlanRow
from initlab.model.policies import RELU_FAMILY, SCHEMES
from initlab.model.propagation import RESIDUAL_GROWTH, LayerScale, PropagationPlan, plan_scales
from initlab.model.rules import Packed, residual_scaling_rule
from initlab.model.traverse import SkippedParameterWarning

__all__ = [
    "RESIDUAL_GROWTH", "LayerScale", "PropagationPlan", "plan_scales",
    "init_model", "InitPlan", "PlanRow", "SCHEMES", "RELU_FAMILY", "residual_scaling_rule",
    "detect_activations", "Packed", "DetectionFallbackWarning", "SkippedParameterWarning",
    "fallback_message", "register_handler",
]
