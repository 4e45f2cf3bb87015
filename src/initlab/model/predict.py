"""What the model's graph says about a plan: the propagated scales ``"auto"`` and ``"variance"``
read (:func:`propagation_plans`), and the moments the finished plan predicts (:func:`predict_moments`)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from initlab import schemes
from initlab.graph import Graph
from initlab.model.plan import PlanRow
from initlab.model.propagation import PropagationPlan, plan_scales
from initlab.model.rows import spec_std_bound


def propagation_plans(
    model: nn.Module, graph: Graph | None, why: str | None, scheme: str, rules: list[tuple[Any, Any]],
    chain: dict[str, Any] | None, embedding_std: float,
    conv_targets: tuple[dict[str, float], str] | None = None,
) -> tuple[dict[str, PropagationPlan], str | None]:
    """The graph-wide plans the schemes in use need: ``"auto"`` (unless ``chain``, the isometric
    roles of a plain chain, decides every layer) with the residual-branch, tied-embedding and
    joined-parameter rules; ``"variance"`` with each layer's local solve only. When the model
    cannot be traced (``graph`` is ``None``; ``why`` says why), ``({}, note)``: the per-layer rule
    decides those rows instead.

    The propagation (:func:`initlab.model.plan_scales`): on the model's data-flow graph, traced once
    by detection (:func:`initlab.graph.trace`: fx, else a recorded forward on ``example_inputs`` or on
    inputs built from the model), the second moment of every tensor propagated through it
    (:mod:`initlab.graph.moments`; standardised data). Each weighted layer gets zero-mean normal
    weights with :math:`\\mathrm{Var}(w) = q_{target} / (fan_{in}\\,\\mathbb{E}[x^2])`,
    :math:`\\mathbb{E}[x^2]` the propagated second moment of *its own* input and
    :math:`q_{target} = 1` (a pre-activation): He et al. 2015's argument with the input's actual
    second moment, so no gain table is needed (after a ReLU :math:`\\mathbb{E}[x^2] = 1/2`, after a
    tanh :math:`\\mathbb{E}[\\tanh(z)^2]`, after a sigmoid its mean included, after a norm 1). Zero
    padding lowers a conv's output second moment (a fraction of its taps read real entries) and an
    average over positions lowers the second moment of what it averages, so these stds depend on
    the spatial size of the example input (given, or built). Under ``"auto"`` only:

    * the last layer of a residual branch (no norm between it and the add) targets
      :math:`q_{skip} (2^{1/L} - 1)` with ``L`` such branches: the stream's second moment doubles
      over the whole depth rather than per block (Radford et al. 2019; Zhang et al. 2019); in a
      network without any normalization layer it starts at 0 (Zhang et al. 2019; De & Smith 2020:
      measured faster, :data:`initlab.model.propagation.ZERO_ENDS_WITHOUT_NORM`) — unless the
      model holds SkipInit gates (:func:`initlab.transforms.add_skip_gates`): they start the branches
      at 0 (set by the gate's own rule), and the weights follow the variance rule, ends not zeroed
      (a zero end behind a zero gate never trains; on the no-norm ResNet-56 of
      ``benchmarks/time_to_accuracy_arch.py`` SkipInit reached 80 % in a median 240 steps, the
      zeroed, Fixup-scaled ends in 320);
    * the hidden layers of a plain CNN whose links are not looks-linear (``conv_targets``:
      :func:`initlab.model.chain.conv_chain_targets`) target the depth-aware ``q*`` of
      :func:`initlab.theory.depth_point` (:data:`initlab.model.chain.CONV_DEPTH_NOTE`);
    * an ``Embedding`` tied to an output head (GPT-2's ``lm_head``) gets
      :math:`\\mathbb{E}[w^2] = 1 / (d\\,\\mathbb{E}[h^2])`, ``h`` the head's input, so the logits
      start at unit second moment when ``h`` does not scale with the table (a final norm, as
      GPT-2's ``ln_f``); the embeddings added to it (positions) get the same scale;
    * a parameter the forward adds to or concatenates with the data (a class token, position
      embeddings) gets the second moment of the tensor it joins.

    The rows these plans decide are written by :func:`initlab.model.rows.set_propagated`.
    """
    wanted = {scheme} | {t for _, t in rules if isinstance(t, str)}
    from initlab.model.residual_family import family_plans

    kept = _kept_layers(model, rules)
    family, family_note = family_plans(model, graph, why, wanted, kept, embedding_std)  # raises InitlabError
    plans: dict[str, PropagationPlan] = dict(family)
    if graph is None and wanted & {"auto", "variance"}:
        return {}, f"not propagated (not traced: {why}): the per-layer rule decides every layer"
    try:
        if "auto" in wanted and not chain and _has_skip_gates(model):
            # SkipInit's gates start the branches at 0: weights by the variance rule, ends not zeroed
            # (a zero end behind a zero gate never trains); measured faster than zeroed ends
            plans["auto"] = plan_scales(model, residual_growth=None, embedding_second=embedding_std**2,
                                        kept=kept, graph=graph)
            plans["auto"].notes.append("auto: skip_gate parameters found: the gates start the residual "
                                       "branches at 0 and the branch weights follow the variance rule")
        elif "auto" in wanted and not chain:
            plans["auto"] = plan_scales(model, embedding_second=embedding_std**2, kept=kept, graph=graph,
                                        layer_targets=conv_targets[0] if conv_targets else None)
            if conv_targets:
                plans["auto"].notes.append(f"auto: {conv_targets[1]}")
        if "variance" in wanted:
            plans["variance"] = plan_scales(model, residual_growth=None, tied=False,
                                            embedding_second=embedding_std**2, kept=kept, graph=graph)
    except Exception as exc:  # noqa: BLE001  (untraceable, lazy, meta: the per-layer rule decides)
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        note = f"not propagated ({why}): the per-layer rule decides every layer"
        return family, "; ".join(filter(None, [note, family_note]))
    if not plans:
        return plans, None
    p = next(iter(plans.values()))
    how = p.graph.method + (f" ({p.graph.reason})" if p.graph.reason else "")
    note = (f"{how}; inputs {p.graph.inputs_from}" if p.graph.inputs_from else how) + (
        f"; {p.residual} residual branches scaled" if p.residual else "")
    auto_notes = [n for n in plans["auto"].notes if n.startswith("auto:")] if "auto" in plans else []
    return plans, "; ".join(filter(None, [note, *auto_notes, family_note]))


def _has_skip_gates(model: nn.Module) -> bool:
    """Whether ``model`` holds SkipInit / ReZero gates (:func:`initlab.transforms.add_skip_gates`)."""
    from initlab.model.residual_family import SKIP_GATE

    return any(name.rsplit(".", 1)[-1] == SKIP_GATE for name, _ in model.named_parameters())


def _kept_layers(model: nn.Module, rules: list[tuple[Any, Any]]) -> set[str]:
    """Modules whose ``weight`` a ``"keep"`` rule leaves as it is (first match wins, as for rows)."""
    from initlab.model.rules import first_match

    kept = set()
    for q, m in model.named_modules():
        if "weight" in m._parameters:
            hit = first_match(rules, f"{q}.weight" if q else "weight", m)
            if hit is not None and isinstance(hit[1], str) and hit[1] == "keep":
                kept.add(q)
    return kept


def predict_moments(
    model: nn.Module, rows: list[PlanRow], graph: Graph | None, why: str | None = None,
    skip: set[str] | frozenset[str] = frozenset(), scales: dict[str, PropagationPlan] | None = None,
) -> str | None:
    """Fill each layer row's ``q_in`` / ``q_out``: the moments propagated through the model's graph
    with the planned stds (:func:`initlab.graph.moments.propagate`), under any scheme (an
    attention's rows: the whole module's input and output). Informational: a model the graph
    cannot trace keeps ``None`` and the reason is returned. Layers in ``skip`` (an isometric plain
    chain: mirrored blocks and centring biases, which mean field does not see; each row's note
    gives its link's ``q``) keep ``None``. ``graph``: the model's graph as detection traced it
    (``None``: it could not, ``why`` says why); the prediction works on a fresh copy, or on the graph
    of a propagation plan in ``scales`` (it knows the planned stds of joined parameters)."""
    from initlab.graph import Kind
    from initlab.graph.moments import propagate

    if graph is None:
        return f"no predicted moments (not traced: {why})"
    by_name = {r.name: r for r in rows}
    try:
        graph = next(iter(scales.values())).graph if scales else graph.fresh()
        stats = planned_stats(model, by_name)
        propagate(graph, model=model, layer_stats=stats, tap_energy=stats.tap_energy)
    except Exception as exc:  # noqa: BLE001  (a prediction never stops an init)
        return f"no predicted moments ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    for node in graph:
        if node.kind is not Kind.LAYER or node.module is None or node.meta.get("moments") is None:
            continue
        x = graph[node.inputs[0]].meta.get("moments") if node.inputs else None
        for r in rows:
            if r.module in skip:
                continue
            if r.module == node.module or r.module.startswith(node.module + ".out_proj"):
                if r.q_out is None:
                    r.q_in = x.second if x is not None else None
                    r.q_out = node.meta["moments"].second
    return None


def planned_stats(model: nn.Module, by_name: dict[str, PlanRow]):
    """A layer-statistics callback reading the planned std of each weight (tied rows resolved),
    and the model's current tensors for what the plan leaves alone."""
    from initlab.graph.layer_stats import model_layer_stats

    return _PlannedStats(model, by_name, model_layer_stats(model))


class _PlannedStats:
    """The callback of :func:`planned_stats`: ``stats(node, part, x) -> LayerStats``."""

    #: The rows that hold each part of a layer, by the part's name in the graph.
    _PARTS = {"weight": ("weight", "weight_v", "weight_orig", "parametrizations.weight.original1",
                         "parametrizations.weight.original"), "query": ("in_proj_weight", "q_proj_weight"),
              "key": ("in_proj_weight", "k_proj_weight"), "value": ("in_proj_weight", "v_proj_weight"),
              "out": ("out_proj.weight",)}

    def __init__(self, model: nn.Module, by_name: dict[str, PlanRow], read: Any) -> None:
        self.model, self.by_name, self.read = model, by_name, read

    def __call__(self, node, part, x):
        from initlab.graph.layer_stats import LayerStats, part_params

        model, row_of = self.model, self.row_of
        p = part_params(model, node, part) if node.module is not None else None
        if p is not None and isinstance(m := model.get_submodule(node.module), nn.RNNBase):
            return self.rnn_stats(node, part, m, p.fan_in) or self.read(node, part, x)
        r = next((row_of(node.module, n) for n in self._PARTS.get(part, ()) if row_of(node.module, n)), None)
        if r is None or r.std is None or p is None:
            return self.read(node, part, x)
        b = row_of(node.module, "out_proj.bias" if part == "out" else "bias")
        bias_second = b.std**2 if b is not None and b.std is not None and part in ("weight", "out") else 0.0
        return LayerStats(p.fan_in, r.std**2, bias_second=bias_second)

    def tap_energy(self, node: Any) -> Any:
        """How the conv at ``node`` will spread its weight over its taps (the ``tap_energy`` of
        :func:`initlab.graph.moments.propagate`): a planned delta kernel (``delta_*``: the centre tap,
        ``k // 2``), a planned iid draw ``None`` (even), a weight the plan leaves alone its own."""
        import numpy as np

        from initlab.graph import spatial
        from initlab.graph.layer_stats import part_params

        p = part_params(self.model, node, "weight") if node.module is not None else None
        if p is None or p.lookup or p.weight is None or p.weight.ndim < 3:
            return None
        rows = (self.row_of(node.module, n) for n in self._PARTS["weight"])
        r = next((row for row in rows if row is not None), None)
        if r is None or r.std is None:
            return spatial.tap_energy(p.weight)
        if str(r.spec).startswith("delta_"):
            kernel = tuple(p.weight.shape[2:])
            energy = np.zeros(kernel)
            energy[tuple(k // 2 for k in kernel)] = 1.0
            return energy.reshape(-1)
        return None

    def row_of(self, module: str, pname: str) -> PlanRow | None:
        """The row of ``module``'s parameter ``pname``; a tied row resolves to the one it is tied to."""
        r = self.by_name.get(f"{module}.{pname}" if module else pname)
        while r is not None and r.scheme == "tied":
            r = self.by_name.get(r.spec[len("tied to "):])
        return r

    @staticmethod
    def entries(row: PlanRow | None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(E[w], E[w^2])`` per index along dim 0 as the row's fills plan them (a later fill wins;
        a constant's value is a mean, not a spread); ``None`` for a fill whose moments are unknown."""
        if row is None or not row._fills:
            return None
        n = row.shape[0]
        mean, second = torch.zeros(n, dtype=torch.float64), torch.full((n,), math.nan, dtype=torch.float64)
        for f in row._fills:
            rows_only = f.index is None or (isinstance(f.index, slice) and f.axis == 0)
            if not isinstance(f.spec, schemes.Spec) or not rows_only:
                return None
            idx = slice(None) if f.index is None else f.index
            std = spec_std_bound(f.spec, (len(range(n)[idx]), *row.shape[1:]), max(f.chunks, 1))[0]
            if std is None:
                return None
            mu = (f.spec.value if isinstance(f.spec, schemes.Constant) else (f.spec.low + f.spec.high) / 2
                  if isinstance(f.spec, schemes.Uniform) else float(getattr(f.spec, "mean", 0.0)))
            mean[idx], second[idx] = mu, mu * mu + std * std
        return None if bool(second.isnan().any()) else (mean, second)

    def rnn_stats(self, node, part: str, m: nn.RNNBase, fan_in: int):
        """An RNN part (``"ih_l0"``, ``"hh_l0:f"``, ``"hr_l0"``, as
        :func:`initlab.graph.layer_stats.part_params` names them) from the planned rows of its weight
        and biases, a gate's block of rows alone; ``None`` where a row's moments are unknown."""
        from initlab.graph.layer_stats import RNN_GATES, LayerStats

        base, _, gate = part.partition(":")
        kind, sfx = base[:2], base[2:]
        gi, h = RNN_GATES.get(m.mode, ()).index(gate) if gate else 0, m.hidden_size
        rows = slice(gi * h, (gi + 1) * h) if gate else slice(None)
        w = self.entries(self.row_of(node.module, f"weight_{base}"))
        if w is None:
            return None
        biases = ([] if kind == "hr" or not m.bias else [kind] if (m.mode, gate) == ("GRU", "n")
                  else ["ih", "hh"] if kind == "ih" else [])  # as part_params sums them
        bm = b2 = torch.zeros(1, dtype=torch.float64)
        for k in biases:  # bias_ih + bias_hh: independent draws, entry by entry
            e = self.entries(self.row_of(node.module, f"bias_{k}{sfx}"))
            if e is None:
                return None
            bm, b2 = bm + e[0][rows], b2 + e[1][rows] + 2 * bm * e[0][rows]
        return LayerStats(fan_in, float(w[1][rows].mean()), float(w[0][rows].mean()),
                          float(bm.mean()), float(b2.mean()))
