"""The model level: decide every parameter's initialization from how the model computes."""

from initlab.model.propagation import RESIDUAL_GROWTH, LayerScale, PropagationPlan, plan_scales

__all__ = ["RESIDUAL_GROWTH", "LayerScale", "PropagationPlan", "plan_scales"]
