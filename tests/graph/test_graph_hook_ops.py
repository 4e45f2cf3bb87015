"""The transforms' hooks are in the graph (fx and recorded alike): a SkipInit gate is a SCALE by its
value, Fixup's scalars a shift before and a scale and shift after the module; the propagated moments
follow them exactly, and the probe reads a gate at 0 or a zeroed branch end as the 0 it is meant to
be, not as vanishing, symmetric or a mismatch. Seeded, CPU; moments compared by the formula."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from initlab import init_model, probe, zoo
from initlab.graph import Kind, trace
from initlab.graph.hook_ops import HookOp, declare_graph_ops, expose_hook_ops, module_output_node
from initlab.graph.moments import Moments, propagate
from initlab.transforms import add_fixup_scalars, add_skip_gates

METHODS = ("fx", "recorded")


def _gated_resnet(transform):
    net = zoo.build("resnet20_nonorm")
    transform(net, verbose=False)
    return net


@pytest.mark.parametrize("method", METHODS)
def test_gate_is_a_scale_by_its_value_after_the_gated_module(method):
    net = _gated_resnet(add_skip_gates)
    g = trace(net, torch.randn(2, 3, 32, 32), method=method)
    gates = [n for n in g if n.params.get("hook_of")]
    assert len(gates) == 9  # one per residual branch of a ResNet-20
    for n in gates:
        assert n.kind is Kind.SCALE and n.params["factor"] == 0.0
        assert n.params["parameter"] == f"{n.params['hook_of']}.skip_gate"
        assert g[n.inputs[0]].module == n.params["hook_of"]
        assert module_output_node(g, n.inputs[0]) == n.id
    assert all(n.id == i for i, n in enumerate(g))  # renumbered in execution order


@pytest.mark.parametrize("method", METHODS)
def test_a_zero_gate_leaves_each_residual_sum_equal_to_its_skip(method):
    net = _gated_resnet(add_skip_gates)
    g = trace(net, torch.randn(2, 3, 32, 32), method=method)
    m = propagate(g, Moments(0.0, 1.0), model=net)
    adds = [n for n in g.of_kind(Kind.ADD) if len(n.inputs) == 2]
    assert adds
    for n in adds:
        branch, skip = (m[i] for i in n.inputs)
        assert branch.second == 0.0
        assert m[n.id].second == pytest.approx(skip.second, rel=1e-12)


def test_fixup_scalars_shift_and_scale_the_propagated_moments():
    """One Linear with Fixup's pre-hook (x + b_in) and post-hook (y * s + b_out): the moments follow
    ``E[y'] = s E[y] + b_out``, ``E[y'^2] = s^2 E[y^2] + 2 s b_out E[y] + b_out^2``, with ``y`` the
    Linear's output on ``x + b_in``."""
    torch.manual_seed(0)
    lin = nn.Linear(8, 8)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), lin)
    b_in, s, b_out = 0.25, 2.0, 0.5  # exact in float32
    lin.register_parameter("fixup_bias_in", nn.Parameter(torch.tensor(b_in)))
    lin.register_parameter("fixup_scale", nn.Parameter(torch.tensor(s)))
    lin.register_parameter("fixup_bias_out", nn.Parameter(torch.tensor(b_out)))
    from initlab.model.transforms import _fixup_in_hook, _fixup_out_hook

    lin.register_forward_pre_hook(_fixup_in_hook)
    lin.register_forward_hook(_fixup_out_hook)
    bare = trace(nn.Sequential(*model), torch.randn(4, 8))  # the same modules: hooks included
    g = expose_hook_ops(model, bare)
    assert g is bare  # trace already exposed them: nothing left to insert
    ops = [(n.kind, n.params.get("value", n.params.get("factor"))) for n in g if n.params.get("hook_of")]
    assert ops == [(Kind.ADD, b_in), (Kind.SCALE, s), (Kind.ADD, b_out)]
    m = propagate(g, Moments(0.0, 1.0), model=model)
    lin_node = g.module_nodes("2")[0]
    y, out = m[lin_node.id], m[module_output_node(g, lin_node.id)]
    assert out.mean == pytest.approx(s * y.mean + b_out, rel=1e-12)
    assert out.second == pytest.approx(s * s * y.second + 2 * s * b_out * y.mean + b_out**2, rel=1e-12)


def test_a_hook_without_declared_ops_changes_nothing():
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh())
    model[0].register_forward_hook(lambda mod, args, out: out * 3.0)
    g = trace(model, torch.randn(2, 4))
    assert not any(n.params.get("hook_of") for n in g)


def test_declared_op_on_a_parameter_the_module_lacks_is_skipped():
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh())
    model[0].register_forward_hook(declare_graph_ops(lambda mod, args, out: out, HookOp("scale", "nope")))
    assert not any(n.params.get("hook_of") for n in trace(model, torch.randn(2, 4)))
    with pytest.raises(ValueError, match="'rotate' is unknown"):
        HookOp("rotate", "nope")


@pytest.mark.parametrize(("transform", "scheme"),
                         [(add_skip_gates, "skipinit"), (add_fixup_scalars, "fixup")])
def test_probe_reads_intended_zeros_as_intended(transform, scheme):
    """SkipInit's gates at 0, Fixup's zeroed branch ends and classifier: no vanishing (forward or
    gradient), no symmetric unit, no mismatch of the prediction: those zeros are the scheme's."""
    net = _gated_resnet(transform)
    init_model(net, scheme, generator=torch.Generator().manual_seed(0))
    res = probe(net, torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(1)))
    kinds = {v.kind for v in res.verdicts()}
    assert not kinds & {"vanishing", "vanishing_gradient", "symmetric", "mismatch"}, res.verdicts()


def test_probe_still_flags_an_all_zero_network():
    """The ``zeros`` scheme: every weight 0, nothing will ever move: symmetric is still reported."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3))
    for m in net:
        if isinstance(m, nn.Linear):
            nn.init.zeros_(m.weight)
    res = probe(net, torch.randn(32, 10))
    assert "symmetric" in {v.kind for v in res.verdicts()}


def test_a_gated_model_traces_the_same_moments_both_ways():
    net = _gated_resnet(add_fixup_scalars)
    init_model(net, "fixup", generator=torch.Generator().manual_seed(0))
    x = torch.randn(2, 3, 32, 32)
    outs = []
    for method in METHODS:
        g = trace(net, x, method=method)
        m = propagate(g, Moments(0.0, 1.0), model=net)
        outs.append(m[g.of_kind(Kind.OUTPUT)[-1].id])
    assert math.isclose(outs[0].second, outs[1].second, rel_tol=1e-9, abs_tol=1e-30)
