"""Shared by the propagation tests: the measured moments of a tensor, with standard errors."""

from __future__ import annotations

import math

import torch

from initlab.graph.moments import Moments

#: Standard errors a prediction may be off by.
N_SE = 5.0


def measure(y: torch.Tensor) -> tuple[Moments, tuple[float, float, float]]:
    """Moments of a ``(groups, positions, units)`` tensor and their standard errors over units.

    ``cross`` is the unbiased pairwise estimate ``((sum_p y)^2 - sum_p y^2) / (P (P - 1))`` per group
    and unit (two different positions of one example; for one group, two different examples),
    clamped into ``[mean^2, second]``.
    """
    y = y.detach().double()
    _, p, j = y.shape
    m_j, q_j = y.mean((0, 1)), y.square().mean((0, 1))
    s = y.sum(1)
    c_j = ((s.square() - y.square().sum(1)) / (p * (p - 1))).mean(0)
    m, q, c = float(m_j.mean()), float(q_j.mean()), float(c_j.mean())
    se = tuple(float(t.std()) / math.sqrt(j) for t in (m_j, q_j, c_j))
    return Moments(m, q, min(max(c, m * m), q)), se  # type: ignore[return-value]

