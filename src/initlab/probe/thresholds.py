"""When the probe calls a layer unhealthy: the :class:`Thresholds` of its verdicts."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from initlab.errors import InitlabError


@dataclass(frozen=True)
class Thresholds:
    """When :meth:`ProbeResult.verdicts` calls a layer unhealthy, and what counts as saturated.

    Attributes:
        vanishing: forward ``std`` below ``vanishing`` times the first layer's of the same kind
            (weight-layer outputs and activation outputs are compared separately) is vanishing;
            backward ``grad_norm`` below ``vanishing`` times the LAST layer's (where the backward
            pass starts) is a vanishing gradient. Default ``1e-3``. The gradient is compared by
            its norm ``||dL/da||`` (= ``sqrt(B)`` times the per-example RMS norm, ``B`` the batch,
            the same for every layer), not its per-element std: the norm is what backprop
            through a layer's Jacobian preserves when the layer is healthy (dynamical isometry),
            while the per-element std also shrinks with the number of elements per example, e.g.
            by ``1 / (H W)`` through global average pooling, which would flag a healthy CNN.
        exploding: the same ratios above ``exploding`` (default ``1e3``) are exploding.
        saturated: ``saturation`` above this fraction is saturated (default ``0.5``).
        dead: ``dead_fraction`` above this fraction is dead (default ``0.5``).
        saturation_level: an output counts as saturated when ``|a| > level`` (tanh, softsign),
            ``a > level * max_val`` or ``a < level * min_val`` (hardtanh, relu6), or
            ``a < 1 - level`` or ``a > level`` (sigmoid, hardsigmoid). Default ``0.99``.
        symmetry_rtol, symmetry_atol: two units of a weight layer count as one when their
            weight rows (length ``k``) differ by at most ``sqrt(k) * (atol + rtol * max|W|)`` in
            Euclidean norm (tested on 8 fixed random projections; rows equal within
            ``atol + rtol * max|W|`` entry-wise always pass).
        logits_low, logits_high: the model's output std outside ``[logits_low, logits_high]``
            (default ``[0.3, 3]``) is a ``logits`` verdict. Over 10 classes, iid logits of std 3
            give the argmax a median softmax weight of 0.66 and a first cross-entropy of 5.1 (twice
            ``log 10 = 2.3``); std 8 gives 0.96 and 12.4: the softmax starts saturated. Below 0.3 the
            output barely depends on the input (by design after a zeroed head: then ignore it).
            ``logits_low=0`` and ``logits_high=math.inf`` turn it off.
        mismatch: the relative tolerance of the ``mismatch`` verdict (default ``0.25``): a layer's
            measured ``std`` off its ``local_predicted_std`` by more than a factor ``1 + tol``
            either way, where ``tol = mismatch * max(1, sqrt(mismatch_units / units))`` and
            ``units`` are the layer's features (channels for a conv). Why: the std estimated from
            ``n`` entries has a standard error of ``std / sqrt(2 n)`` (negligible here), but the
            entries of one unit share its weights: the part of its mean square set by its weight row
            (``w_j^T S w_j``, ``S`` the batch's second-moment matrix) is one draw per unit, so over
            ``U`` units the measured second moment spreads by up to ``sqrt(2 / U)`` relative, the
            std by up to ``1 / sqrt(2 U)``. The default ``0.25`` at ``128`` units is 4 such
            standard errors (``4 / sqrt(256)``), and widens as ``1 / sqrt(units)`` below (a head
            of 10 classes: ``0.89``). The comparison is local (each layer against what its own
            measured input predicts), so the finite-width drift that builds up along depth (the
            end-to-end ``predicted_std`` of a healthy 30-layer ReLU MLP at width 256 is off by
            20-50 %) cannot trigger it. ``math.inf`` turns it off.
        mismatch_units: see ``mismatch`` (default ``128``; ``1`` keeps ``mismatch`` at every width).

    Raises:
        InitlabError: a non-positive, non-finite or boolean threshold, ``vanishing >= exploding``,
            a fraction outside ``[0, 1]``, ``saturation_level`` outside ``(0.5, 1]``,
            ``logits_low`` negative or not below ``logits_high``.

    >>> Thresholds(vanishing=1e-2).exploding
    1000.0
    """

    vanishing: float = 1e-3
    exploding: float = 1e3
    saturated: float = 0.5
    dead: float = 0.5
    saturation_level: float = 0.99
    symmetry_rtol: float = 1e-4
    symmetry_atol: float = 1e-12
    logits_low: float = 0.3
    logits_high: float = 3.0
    mismatch: float = 0.25
    mismatch_units: int = 128

    def __post_init__(self) -> None:
        def number(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        for name in ("vanishing", "exploding", "symmetry_rtol"):
            v = getattr(self, name)
            if not (number(v) and v > 0):
                raise InitlabError(f"Thresholds.{name}={v!r} is invalid: pass a finite number > 0")
        if self.vanishing >= self.exploding:
            raise InitlabError(f"Thresholds.vanishing={self.vanishing!r} >= exploding={self.exploding!r}: "
                               "pass vanishing < exploding (defaults 1e-3 and 1e3)")
        for name in ("saturated", "dead"):
            v = getattr(self, name)
            if not (number(v) and 0.0 <= v <= 1.0):
                raise InitlabError(f"Thresholds.{name}={v!r} is invalid: pass a fraction in [0, 1]")
        if not (number(self.saturation_level) and 0.5 < self.saturation_level <= 1.0):
            raise InitlabError(f"Thresholds.saturation_level={self.saturation_level!r} is invalid: pass a "
                               "fraction in (0.5, 1] (at or below 0.5 every sigmoid output would count)")
        if not (number(self.symmetry_atol) and self.symmetry_atol >= 0):
            raise InitlabError(f"Thresholds.symmetry_atol={self.symmetry_atol!r} is invalid: pass a finite "
                               "number >= 0")
        lo, hi = self.logits_low, self.logits_high
        if not (number(lo) and lo >= 0 and isinstance(hi, (int, float)) and not isinstance(hi, bool)
                and hi > lo):
            raise InitlabError(f"Thresholds.logits_low={lo!r}, logits_high={hi!r} are invalid: pass "
                               "0 <= logits_low < logits_high (math.inf allowed; defaults 0.3 and 3)")
        tol = self.mismatch
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol > 0:
            raise InitlabError(f"Thresholds.mismatch={self.mismatch!r} is invalid: pass a relative tolerance "
                               "> 0 (e.g. 0.25), or math.inf to turn the verdict off")
        units = self.mismatch_units
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise InitlabError(f"Thresholds.mismatch_units={units!r} is invalid: pass an integer >= 1")

    def mismatch_tolerance(self, units: int | None) -> float:
        """The relative tolerance of the ``mismatch`` verdict for a layer of ``units`` units (see
        ``mismatch``; ``None``: ``mismatch`` itself).

        >>> round(Thresholds().mismatch_tolerance(32), 3), Thresholds().mismatch_tolerance(512)
        (0.5, 0.25)
        """
        if not units or units >= self.mismatch_units:
            return float(self.mismatch)
        return float(self.mismatch) * math.sqrt(self.mismatch_units / units)
