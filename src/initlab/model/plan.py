"""The init plan: one :class:`PlanRow` per parameter, in an :class:`InitPlan`, and the writes
(:class:`Fill`) each row will make."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch

from initlab import schemes
from initlab.records import records_to_json

#: Specs whose entries are independent and identically distributed.
_IID_SPECS = (schemes.Normal, schemes.Uniform, schemes.TruncatedNormal, schemes.Constant)


class Fill(NamedTuple):
    """One write of a row: ``spec`` (a Spec, a :class:`~initlab.model.chain.CenteringBias` or a
    rule's callable) into ``index`` of the parameter (``None``: all of it), in ``chunks`` blocks
    along ``axis``. Blocks along axis 1 (a Conv1D's output axis) are filled through the transposed
    view, whose dim 0 it is."""

    index: Any
    spec: Any
    chunks: int = 1
    axis: int = 0

    def view(self, tensor: torch.Tensor) -> torch.Tensor:
        """The part of ``tensor`` this fill writes, with its blocks along dim 0."""
        part = tensor if self.index is None else tensor[self.index]
        return part.transpose(0, 1) if self.axis == 1 and not self.iid else part

    @property
    def iid(self) -> bool:
        """Every entry drawn alike, whatever the block: the stored layout is filled directly (a
        contiguous draw, ~5x faster than through a transposed view)."""
        return self.chunks <= 1 and isinstance(self.spec, _IID_SPECS)


@dataclass
class PlanRow:
    """One parameter of the plan.

    Attributes:
        name: qualified parameter name (``"layer1.0.conv1.weight"``).
        module: qualified name of the owning module; module_type its class name.
        shape: the parameter's shape.
        fan_in, fan_out: fans of one block (per chunk for packed weights), ``None`` for vectors.
        chunks: number of blocks a packed weight is split into (QKV 3, LSTM 4, GRU 3).
        activation: the nonlinearity consuming the layer's output (``"linear"`` when none);
            found_by: how it was found (``"fx"``, ``"hooks"``, ``"module_order"``, ``"structure"``,
            ``"-"`` for parameters that do not need one).
        gain: the gain used (``"propagated"`` rows: ``std * sqrt(fan_in)``, the forward gain of the
            activation that feeds the layer); scheme: the scheme's name; spec: what is sampled, per
            block.
        std: std of the entries (for orthogonal blocks ``gain / sqrt(max(rows, cols))``);
            bound: half-width of a uniform or truncated normal, else ``None``.
        rule: the rule that decided this row (``None`` when the scheme did); note: free text.
        q_in, q_out: the second moments ``E[x^2]`` of the layer's input and output at init under
            this plan, propagated through the model's graph (:mod:`initlab.graph.moments`;
            standardised data assumed; a ``MultiheadAttention``'s rows: the module's input and
            output), ``None`` where the graph could not say.
        applied: whether the parameter was written.
    """

    name: str
    module: str
    module_type: str
    shape: tuple[int, ...]
    fan_in: int | None = None
    fan_out: int | None = None
    chunks: int = 1
    activation: str | None = None
    found_by: str = "-"
    input_activation: str | None = None
    gain: float | None = None
    scheme: str = ""
    spec: str = ""
    std: float | None = None
    bound: float | None = None
    rule: str | None = None
    note: str = ""
    q_in: float | None = None
    q_out: float | None = None
    applied: bool = False
    _fills: list[Fill] = field(default_factory=list, repr=False, compare=False)
    _axis: int = field(default=0, repr=False, compare=False)  # the output axis: 1 for a Conv1D weight

    def as_dict(self) -> dict[str, Any]:
        """The row as a plain dict (JSON-ready)."""
        return {
            "name": self.name, "module": self.module, "module_type": self.module_type,
            "shape": list(self.shape), "fan_in": self.fan_in, "fan_out": self.fan_out,
            "chunks": self.chunks, "activation": self.activation, "found_by": self.found_by,
            "input_activation": self.input_activation,
            "gain": self.gain, "scheme": self.scheme, "spec": self.spec, "std": self.std,
            "bound": self.bound, "rule": self.rule, "note": self.note, "q_in": self.q_in,
            "q_out": self.q_out, "applied": self.applied,
        }


@dataclass
class InitPlan:
    """What :func:`init_model` did (or, with ``dry_run=True``, would do): one row per parameter.

    Attributes:
        scheme: the scheme asked for.
        rows: list of :class:`PlanRow`, in ``named_modules`` order.
        skipped: modules with their own parameters that no handler knows and no rule decides,
            left alone: dicts ``{"module", "type", "params", "why"}``; :func:`init_model` names
            them in one :class:`SkippedParameterWarning`.
        detection: the activation detection that ran (``"fx"``, ``"hooks"``, ``"module_order"``);
            detection_note: why an earlier method was not used.
        propagation: how the graph behind the rows' ``q_in`` / ``q_out`` (and, under ``"auto"`` and
            ``"variance"``, the propagated scales) was built, or why it could not be.
        applied: ``False`` for a dry run.
    """

    scheme: str
    rows: list[PlanRow]
    skipped: list[dict[str, Any]]
    detection: str
    detection_note: str | None = None
    propagation: str | None = None
    applied: bool = False

    def __iter__(self):
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, name: str) -> PlanRow:
        """The row of parameter ``name``.

        Raises:
            KeyError: no such parameter (the message lists a few names).
        """
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"no parameter {name!r} in the plan: have {', '.join(r.name for r in self.rows[:8])}")

    @property
    def records(self) -> list[dict[str, Any]]:
        """Tidy records (:mod:`initlab.records`): per row ``std``, ``fan_in``, ``fan_out`` and
        ``gain`` (those that are defined), with the row's other fields as extras."""
        out = []
        for r in self.rows:
            for stat in ("std", "bound", "fan_in", "fan_out", "gain"):
                value = getattr(r, stat)
                if value is None:
                    continue
                out.append({
                    "experiment": "init_plan", "scheme": r.scheme, "activation": r.activation,
                    "layer": r.name, "stat": stat, "value": value, "epoch": None, "seed": None,
                    "module_type": r.module_type, "found_by": r.found_by, "rule": r.rule,
                })
        return out

    def to_json(self, indent: int | None = 2) -> str:
        """The plan as JSON: ``{"scheme", "detection", "detection_note", "applied", "rows",
        "skipped"}``; NaN becomes ``null``."""
        rows = json.loads(records_to_json([r.as_dict() for r in self.rows]))
        return json.dumps({
            "scheme": self.scheme, "detection": self.detection, "detection_note": self.detection_note,
            "propagation": self.propagation, "applied": self.applied, "rows": rows, "skipped": self.skipped,
        }, indent=indent)

    def table(self) -> str:
        """A fixed-width text table, one line per parameter, then the skipped modules."""
        def fmt(x: Any) -> str:
            if x is None:
                return "-"
            if isinstance(x, float):
                return f"{x:.4g}"
            return str(x)

        head = ("parameter", "shape", "fan_in", "fan_out", "input", "activation", "found", "gain",
                "scheme", "spec", "std", "bound", "E[x^2] in", "E[y^2] out", "rule")
        body = []
        for r in self.rows:
            fans_in = fmt(r.fan_in) + (f"x{r.chunks}" if r.chunks > 1 and r.fan_in else "")
            body.append((
                r.name, "x".join(map(str, r.shape)) or "()", fans_in, fmt(r.fan_out),
                fmt(r.input_activation), fmt(r.activation), r.found_by, fmt(r.gain), r.scheme, r.spec,
                fmt(r.std), fmt(r.bound), fmt(r.q_in), fmt(r.q_out), fmt(r.rule),
            ))
        widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
        lines = [
            f"init plan: scheme={self.scheme}  detection={self.detection}"
            + (f" ({self.detection_note})" if self.detection_note else "")
            + ("" if self.applied else "  [dry run: nothing written]")
            + (f"\ngraph: {self.propagation}" if self.propagation else ""),
            "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip(),
            "  ".join("-" * w for w in widths),
        ]
        lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)).rstrip() for b in body]
        for s in self.skipped:
            lines.append(f"skipped ({s.get('why', 'unknown module')}, left alone): {s['module'] or '(root)'} "
                         f"({s['type']}): "
                         + ", ".join(s["params"]))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()
