"""What :func:`~initlab.probe.probe` returns: :class:`ProbeResult`, its records with accessors, a
table, verdicts and JSON/CSV."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from initlab.errors import InitlabError
from initlab.probe.classify import _WEIGHT_TYPES
from initlab.probe.thresholds import Thresholds
from initlab.probe.verdicts import Verdict, diagnose
from initlab.records import records_to_csv, records_to_json


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if v == 0:
            return "0"
        return f"{v:.3g}"
    return str(v)


class ProbeResult:
    """What :func:`probe` saw: tidy records plus accessors, a table and verdicts.

    Attributes:
        records: list of dicts with keys ``layer, kind, stat, value`` and extras ``index`` (order
            of the layer's first call), ``layer_type`` (``linear`` — also transformers'
            ``Conv1D`` —, ``conv``, ``conv_transpose``, ``activation``, ``module``), ``module``
            (class or function name), ``activation``
            (an activation layer's own activation; for a weight layer the activation that
            its output reaches, directly or through norm, dropout, identity, flatten or pooling
            modules), ``shape`` (forward records), ``bin,
            bin_lo, bin_hi`` (histogram records), ``units`` (``distinct_units``), ``gain`` and
            ``spec`` (``expected_weight_std``), plus ``scheme`` and any ``tags`` given to probe.
            The model's output has records of ``kind="output"`` under the pseudo-layer
            :data:`OUTPUT_LAYER`, with ``from_layer`` (the weight layer whose output it is, as
            returned or only reshaped, sliced or cast; ``None`` for any other output); each note
            one of ``kind="note"`` under :data:`NOTE_LAYER`.
            Built on first use (a probe's cost is its passes; materialising thousands of dicts
            is left to whoever reads them).
        layers: layer names in the order of their first call.
        loss: the scalar loss the backward pass started from (``None`` without backward).
        thresholds: the :class:`Thresholds` :meth:`verdicts` uses by default.
        notes: what the probe could not do, one line each (``"prediction: none (...)"``: why no
            layer has a ``predicted_std``).

    ``ProbeResult(records, layers)`` rebuilds a result from records (e.g. read back from JSON).
    """

    def __init__(self, records: Iterable[dict[str, Any]] | None = None, layers: Sequence[str] | None = None,
                 loss: float | None = None, thresholds: Thresholds | None = None, *,
                 build: Callable[[], list[dict[str, Any]]] | None = None,
                 notes: Sequence[str] | None = None) -> None:
        if records is None and build is None:
            raise InitlabError("ProbeResult needs records: pass the records list")
        self._records = list(records) if records is not None else None
        self._build = build
        if layers is None:
            seen: dict[str, int] = {}
            for r in self.records:
                if r.get("kind") not in ("output", "note"):
                    seen.setdefault(r["layer"], r.get("index", len(seen)))
            layers = sorted(seen, key=seen.__getitem__)
        if notes is None:
            notes = [str(r.get("note")) for r in (self.records if records is not None else ())
                     if r.get("kind") == "note"]
        self.layers = list(layers)
        self.loss = loss
        self.notes = list(notes)
        self.thresholds = thresholds if thresholds is not None else Thresholds()
        self._cache: tuple[dict, dict] | None = None
        self._hists: dict[tuple[str, str], list[dict[str, Any]]] = {}

    @property
    def records(self) -> list[dict[str, Any]]:
        if self._records is None:
            assert self._build is not None
            self._records, self._build = self._build(), None
        return self._records

    def _indexes(self) -> tuple[dict[tuple[str, str, str], Any], dict[str, dict[str, Any]]]:
        if self._cache is None:
            index: dict[tuple[str, str, str], Any] = {}
            info: dict[str, dict[str, Any]] = {}
            hists: dict[tuple[str, str], list[dict[str, Any]]] = {}
            for r in self.records:
                kind = r.get("kind")
                if kind in ("hist", "grad_hist"):
                    hists.setdefault((r["layer"], kind), []).append(r)
                    continue
                index.setdefault((r["layer"], kind, r["stat"]), r["value"])
                if r["layer"] not in info:
                    info[r["layer"]] = {k: r[k] for k in ("index", "layer_type", "module", "activation")
                                        if k in r}
                if "shape" in r:
                    info[r["layer"]].setdefault("shape", tuple(r["shape"]))
                if "units" in r:
                    info[r["layer"]].setdefault("units", r["units"])
                if "out_units" in r:
                    info[r["layer"]].setdefault("out_units", r["out_units"])
                if "from_layer" in r:
                    info[r["layer"]].setdefault("from_layer", r["from_layer"])
            self._cache = (index, info)
            self._hists = hists
        return self._cache

    @property
    def _index(self) -> dict[tuple[str, str, str], Any]:
        return self._indexes()[0]

    @property
    def _info(self) -> dict[str, dict[str, Any]]:
        return self._indexes()[1]

    def __repr__(self) -> str:
        return f"ProbeResult({len(self.layers)} layers, loss={_fmt(self.loss)})"

    def _check_layer(self, layer: str) -> None:
        if layer not in self._info:
            raise InitlabError(f"layer {layer!r} was not probed: use one of {', '.join(self.layers)}")

    def info(self, layer: str) -> dict[str, Any]:
        """``{index, layer_type, module, activation, shape}`` of ``layer``."""
        self._check_layer(layer)
        return dict(self._info[layer])

    def stat(self, layer: str, stat: str, kind: str | None = None) -> float:
        """The value of ``stat`` for ``layer`` (``kind`` disambiguates, e.g. ``nonfinite_fraction``
        exists for ``forward``, ``backward`` and ``weight``; without it the first of forward,
        weight, backward, param_grad, output wins). ``stat(OUTPUT_LAYER, "std")`` is the model
        output's.

        Raises:
            InitlabError: unknown layer, or a stat the layer does not have (the message lists
                the ones it has).
        """
        self._check_layer(layer)
        kinds = (kind,) if kind is not None else ("forward", "weight", "backward", "param_grad", "output")
        for k in kinds:
            key = (layer, k, stat)
            if key in self._index:
                v = self._index[key]
                return float("nan") if v is None else float(v)
        have = sorted({f"{k}:{s}" for (lay, k, s) in self._index if lay == layer})
        raise InitlabError(
            f"layer {layer!r} has no stat {stat!r}" + (f" of kind {kind!r}" if kind else "")
            + f": it has {', '.join(have)}"
        )

    def series(
        self, stat: str, kind: str = "forward", layer_type: str | Iterable[str] | None = None
    ) -> list[tuple[str, float]]:
        """``[(layer, value), ...]`` of ``stat`` in layer order, for the layers that have it.

        ``layer_type`` keeps only layers whose category (``"linear"``, ``"conv"``,
        ``"conv_transpose"``, ``"activation"``, ``"module"``, or ``"weight"`` for the first three),
        module class name (``"Tanh"``) or activation name (``"tanh"``) matches.
        """
        if isinstance(layer_type, str):
            wanted: set[str] | None = {layer_type}
        else:
            wanted = None if layer_type is None else set(layer_type)
        out = []
        for layer in self.layers:
            key = (layer, kind, stat)
            if key not in self._index:
                continue
            if wanted is not None:
                info = self._info[layer]
                tags = {info.get("layer_type"), info.get("module")}
                if info.get("layer_type") == "activation":
                    tags.add(info.get("activation"))
                if info.get("layer_type") in _WEIGHT_TYPES:
                    tags.add("weight")
                if not tags & wanted:
                    continue
            v = self._index[key]
            out.append((layer, float("nan") if v is None else float(v)))
        return out

    def histogram(self, layer: str, kind: str = "hist") -> tuple[list[float], list[float]]:
        """``(edges, counts)`` of ``layer``'s histogram: ``len(edges) == len(counts) + 1``.
        ``kind="grad_hist"`` gives the gradient's histogram. Non-finite entries are not counted."""
        self._check_layer(layer)
        rows = sorted(self._hists.get((layer, kind), []), key=lambda r: r["bin"])
        if not rows:
            raise InitlabError(f"layer {layer!r} has no {kind!r} histogram (was it probed with bins > 0?)")
        edges = [float(r["bin_lo"]) for r in rows] + [float(rows[-1]["bin_hi"])]
        return edges, [float(r["value"]) for r in rows]

    def table(self) -> str:
        """A fixed-width text table, one row per layer (forward std next to the propagated
        ``predicted_std``, saturation/dead, backward grad std, weight std observed vs expected,
        distinct units)."""
        cols = [("layer", 0), ("type", 0), ("act", 0), ("shape", 0), ("mean", 1), ("std", 1),
                ("pred_std", 1), ("q01", 1), ("q99", 1), ("sat", 1), ("dead", 1), ("grad_std", 1),
                ("w_std", 1), ("w_expect", 1), ("units", 1)]
        rows = []
        for layer in self.layers:
            info = self._info.get(layer, {})

            def get(kind: str, stat: str, layer: str = layer) -> Any:
                return self._index.get((layer, kind, stat))

            shape = info.get("shape")
            rows.append([
                layer, str(info.get("module", "")), str(info.get("activation") or "-"),
                "x".join(str(s) for s in shape) if shape else "-",
                _fmt(get("forward", "mean")), _fmt(get("forward", "std")),
                _fmt(get("forward", "predicted_std")), _fmt(get("forward", "q01")),
                _fmt(get("forward", "q99")), _fmt(get("forward", "saturation")),
                _fmt(get("forward", "dead_fraction")), _fmt(get("backward", "grad_std")),
                _fmt(get("weight", "weight_std")), _fmt(get("weight", "expected_weight_std")),
                _fmt(get("weight", "distinct_units")),
            ])
        widths = [max([len(c[0])] + [len(r[i]) for r in rows]) for i, c in enumerate(cols)]

        def line(cells: list[str]) -> str:
            padded = zip(cells, cols, widths, strict=True)
            return "  ".join(v.rjust(w) if c[1] else v.ljust(w) for v, c, w in padded)

        lines = [line([c[0] for c in cols]), "  ".join("-" * w for w in widths)]
        lines += [line(r) for r in rows]
        return "\n".join(lines)

    def verdicts(self, thresholds: Thresholds | None = None) -> list[Verdict]:
        """Diagnoses, each naming the first offending layer (see :class:`Thresholds`):

        * ``nonfinite`` — any NaN/inf in a layer's output or weight (else in a gradient);
        * ``vanishing`` / ``exploding`` — forward std below ``vanishing`` / above ``exploding``
          times the first layer's of the same kind;
        * ``vanishing_gradient`` / ``exploding_gradient`` — backward ``grad_norm`` relative to the
          last layer's of the same kind, first offender in backward order (see
          :class:`Thresholds` for why the norm and not the per-element std);
        * ``saturated`` — ``saturation > saturated``; ``dead`` — ``dead_fraction > dead``;
        * ``symmetric`` — a weight layer with more than one unit but 1 distinct unit;
        * ``logits`` — the model output's std outside ``[logits_low, logits_high]``, when a
          weight layer made the output (its ``from_layer``; an output of a sigmoid is no logits);
        * ``mismatch`` — a layer's measured ``std`` off the ``local_predicted_std`` (what
          :func:`initlab.graph.moments.propagate` predicts from its measured input) by more than
          the width's tolerance (see :class:`Thresholds`), first offender in layer order.

        Returns:
            list of :class:`Verdict`, empty when the network looks healthy, in the order of
            :data:`VERDICT_KINDS`.
        """
        return diagnose(self, thresholds or self.thresholds)

    def to_json(self, *, indent: int | None = None) -> str:
        """The records as a JSON array (NaN/inf become ``null``)."""
        return records_to_json(self.records, indent=indent)

    def to_csv(self) -> str:
        """The records as CSV text (standard record fields first, then the extras)."""
        return records_to_csv(self.records)
