"""The reader: the passes' synced values turned into tidy records (one per layer, kind and stat;
histogram bins, the model's output, the notes)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from initlab.errors import InitlabError
from initlab.fans import compute_fans
from initlab.probe.classify import _units_in_dim1
from initlab.probe.weights import _weight_of

if TYPE_CHECKING:
    from initlab.probe.hooks import _Layer, _Session

#: Stat names the probe emits (stable: other modules and the report read them).
STATS: tuple[str, ...] = (
    "mean", "std", "min", "max", "q01", "q50", "q99", "nonfinite_fraction", "zero_fraction",
    "saturation", "dead_fraction", "grad_mean", "grad_std", "grad_norm", "weight_mean",
    "weight_std", "weight_norm", "expected_weight_std", "distinct_units", "param_grad_std",
    "param_grad_norm", "grad_to_weight_ratio", "count", "predicted_mean", "predicted_std",
    "local_predicted_std",
)

#: The pseudo-layer of the records about the model's output (``kind="output"``: its ``mean``,
#: ``std``, ``predicted_std``); not in :attr:`ProbeResult.layers`.
OUTPUT_LAYER = "(output)"
#: The pseudo-layer of the probe's notes (``kind="note"``, the text in the record's ``note``).
NOTE_LAYER = "(probe)"


def _nonfinite_fraction(bad: float, k: float, m: int, n: int) -> float:
    """Host side: exactly 0 when ``bad`` (see :func:`~initlab.probe.partials._finish_core`) is 0;
    else the sample's non-finite fraction ``(m - k) / m`` (exact when the sample is the whole
    tensor), at least ``1 / n``."""
    if bad == 0:
        return 0.0
    return max((m - k) / m, 1.0 / n)


def _decode(kind: str, layout: list[str], values: list[float], meta: dict[str, Any]
            ) -> tuple[dict[str, float], list[float], float, float]:
    """Host side: the public stats of one entry, its histogram counts and range."""
    raw = dict(zip(layout, values[: len(layout)], strict=True))
    counts = values[len(layout):]
    nan = float("nan")
    if kind == "param_grad":
        n = meta["n"]
        mean = raw["_sum"] / n
        var = max(raw["_sumsq"] / n - mean * mean, 0.0)
        return {"param_grad_std": math.sqrt(var), "param_grad_norm": math.sqrt(raw["_sumsq"])}, [], nan, nan
    m, n = meta["m"], meta["n"]
    nonfinite = _nonfinite_fraction(raw["_bad"], raw["_k"], m, n)
    if kind == "weight":
        norm = math.sqrt(raw["std"] ** 2 + raw["mean"] ** 2) * math.sqrt(n)
        return {"weight_mean": raw["mean"], "weight_std": raw["std"], "weight_norm": norm,
                "nonfinite_fraction": nonfinite, "distinct_units": raw["extra"]}, [], nan, nan
    if kind == "backward":
        norm = math.sqrt(raw["std"] ** 2 + raw["mean"] ** 2) * math.sqrt(n)
        stats = {"grad_mean": raw["mean"], "grad_std": raw["std"], "grad_norm": norm,
                 "nonfinite_fraction": nonfinite}
        return stats, counts, raw["_bin_lo"], raw["_bin_hi"]
    stats = {s: raw[s] for s in ("mean", "std", "min", "max", "q01", "q50", "q99")}
    if nonfinite == 1.0:
        stats = dict.fromkeys(stats, nan)
    stats["nonfinite_fraction"] = nonfinite
    stats["zero_fraction"] = raw["_zeros"] / m
    if meta.get("saturating"):
        stats["saturation"] = raw["_sat"] / m
    if meta.get("dead"):
        stats["dead_fraction"] = raw["extra"]
    return stats, counts, raw["_bin_lo"], raw["_bin_hi"]


def _expected(layer: _Layer, scheme: str) -> tuple[float | None, float, str]:
    """``(expected_weight_std, gain, spec description)`` of ``layer``'s weight under ``scheme``
    (see :func:`~initlab.probe.probe`); ``None`` when its fans cannot be read."""
    from initlab.schemes import named_spec  # noqa: PLC0415

    m = layer.module
    w = _weight_of(layer)
    groups = int(getattr(m, "groups", 1))
    try:
        fans = compute_fans(tuple(w.shape), groups=groups, transposed=_units_in_dim1(m))
    except InitlabError:  # a weight whose layout the fans cannot read: no expectation
        return None, 1.0, ""
    gain = _gain(layer.activation) if layer.input_from_activation else 1.0
    spec = named_spec(scheme, fans, gain)
    return spec.expected_std, gain, spec.describe()


@dataclass
class _Extra:
    """What the records add to the passes' statistics: the predicted stats by layer (and
    :data:`OUTPUT_LAYER`), the output's measured stats (and ``shape``), the notes."""

    predicted: dict[str, dict[str, float]]
    output: dict[str, Any]
    notes: list[str]


def _build_records(session: _Session, fwd: list, bwd: list, scheme: str | None,
                   tags: dict[str, Any], extra: _Extra | None = None) -> list[dict[str, Any]]:
    """The records of a probe: each synced entry of the forward (``fwd``) and backward (``bwd``)
    pass decoded into one record per stat (plus the expected weight std, the gradient-to-weight
    ratio, the predicted stats and the histogram bins), then the output's and the notes'."""
    base = _layer_bases(session, scheme, tags)
    records: list[dict[str, Any]] = []
    weight_norms: dict[str, float] = {}
    for name, kind, layout, values, meta in list(fwd) + list(bwd):
        b = base[name]
        layer = session.layers[name]
        stats, counts, lo, hi = _decode(kind, layout, values, meta)
        for s, v in stats.items():
            r = dict(b, kind=kind, stat=s, value=v)
            if kind == "forward":
                r["shape"] = list(layer.shape)
            if s == "distinct_units":
                r["units"] = meta["units"]
            records.append(r)
        if kind == "weight":
            weight_norms[name] = stats["weight_norm"]
            if scheme is not None:
                exp, gain, desc = _expected(layer, scheme)
                if exp is not None:
                    records.append(dict(b, kind="weight", stat="expected_weight_std", value=float(exp),
                                        gain=gain, spec=desc))
        if kind == "param_grad" and name in weight_norms:
            wn = weight_norms[name]
            ratio = stats["param_grad_norm"] / wn if wn > 0 else float("inf")
            records.append(dict(b, kind="param_grad", stat="grad_to_weight_ratio", value=ratio))
        if kind == "forward" and extra is not None and name in extra.predicted:
            for s, v in extra.predicted[name].items():
                records.append(dict(b, kind="forward", stat=s, value=v, shape=list(layer.shape),
                                    out_units=layer.units))
        if counts and kind in _HIST_KINDS:
            records += _hist_records(b, _HIST_KINDS[kind], counts, lo, hi)
    if extra is not None:
        records += _extra_records(extra, tags)
    return records


def _layer_bases(session: _Session, scheme: str | None, tags: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The fields every record of a layer carries: the tags, the scheme, the layer's name, index,
    category, module and activation."""
    base: dict[str, dict[str, Any]] = {}
    for layer in session.layers.values():
        b = dict(tags)
        if scheme is not None:
            b["scheme"] = scheme
        b.update(layer=layer.name, index=layer.index, layer_type=layer.layer_type,
                 module=layer.module_type, activation=layer.activation)
        base[layer.name] = b
    return base


#: The histogram records' kind of each pass's kind.
_HIST_KINDS = {"forward": "hist", "backward": "grad_hist"}


def _hist_records(b: dict[str, Any], kind: str, counts: list[float], lo: float, hi: float
                  ) -> list[dict[str, Any]]:
    """One ``count`` record per bin of ``[lo, hi]`` (equal bins; the last ends at ``hi``)."""
    width = (hi - lo) / len(counts)
    out = []
    for i, c in enumerate(counts):
        top = hi if i == len(counts) - 1 else lo + (i + 1) * width
        out.append(dict(b, kind=kind, stat="count", value=c, bin=i, bin_lo=lo + i * width, bin_hi=top))
    return out


def _extra_records(extra: _Extra, tags: dict[str, Any]) -> list[dict[str, Any]]:
    """The output's records (``kind="output"``, with its ``shape`` and ``from_layer``: the weight
    layer that made it, or ``None``) and the notes' (``kind="note"``)."""
    out = []
    stats = {k: v for k, v in extra.output.items() if k not in ("shape", "from_layer")}
    stats.update(extra.predicted.get(OUTPUT_LAYER, {}))
    for s, v in stats.items():
        out.append(dict(tags, layer=OUTPUT_LAYER, kind="output", stat=s, value=v,
                        shape=extra.output.get("shape"), from_layer=extra.output.get("from_layer")))
    for text in extra.notes:
        out.append(dict(tags, layer=NOTE_LAYER, kind="note", stat="note", value=math.nan, note=text))
    return out


def _gain(activation: str | None) -> float:
    """``initlab.gains.gain(activation)`` (forward criterion); 1 for no / a linear activation or
    one :mod:`initlab.gains` does not know (e.g. ``tanhshrink``)."""
    if activation in (None, "linear", "identity"):
        return 1.0
    from initlab import gains  # noqa: PLC0415  (math layer, imported when a scheme is named)

    try:
        return float(gains.gain(activation))
    except (ValueError, TypeError, KeyError):
        return 1.0
